//! The harness's error type: one-line messages that name the file or the QEMU step.

use std::fmt;
use std::path::Path;

/// Everything that can go wrong while preparing or supervising a run.
#[derive(Debug)]
pub enum Error {
    /// A machine description or scenario file is wrong (names the field).
    Config(String),
    /// A file could not be read or written.
    Io {
        path: String,
        what: String,
        source: std::io::Error,
    },
    /// A required program is missing.
    MissingTool { tool: String, package: String },
    /// An external process failed (stderr included).
    Process { what: String, detail: String },
    /// The QMP conversation failed.
    Qmp(String),
    /// A deadline passed.
    Timeout(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn config(msg: impl Into<String>) -> Error {
        Error::Config(msg.into())
    }
    pub fn io(path: &Path, what: &str, source: std::io::Error) -> Error {
        Error::Io {
            path: path.display().to_string(),
            what: what.to_string(),
            source,
        }
    }
    pub fn qmp(msg: impl Into<String>) -> Error {
        Error::Qmp(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) => write!(f, "invalid configuration: {m}"),
            Error::Io { path, what, source } => write!(f, "{path}: cannot {what}: {source}"),
            Error::MissingTool { tool, package } => {
                write!(
                    f,
                    "`{tool}` not found: install the Debian package `{package}`"
                )
            }
            Error::Process { what, detail } => write!(f, "{what}: {detail}"),
            Error::Qmp(m) => write!(f, "QMP: {m}"),
            Error::Timeout(m) => write!(f, "deadline passed: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Find `tool` on `PATH` (and in the sbin directories), or say which package to install.
pub fn require_tool(tool: &str, package: &str) -> Result<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.push("/sbin".into());
    dirs.into_iter()
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::MissingTool {
            tool: tool.into(),
            package: package.into(),
        })
}
