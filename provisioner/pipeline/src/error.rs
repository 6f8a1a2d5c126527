//! The pipeline's error: one line naming the step, the file and what is wrong.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why provisioning stopped. Every variant renders as a single line; nothing named `--out` is
/// left behind when any of these is returned (see [`crate::provision`]).
#[derive(Debug)]
pub enum ProvisionError {
    /// A policy requirement failed in the preflight (nothing was written). `rule` is the rule ID
    /// of `ufd_formats::policy` (e.g. `UFD-CAPACITY`).
    Policy { rule: &'static str, message: String },
    /// Bad options (sizes not multiples of 512, VHD larger than the UFD, ...).
    Usage(String),
    /// A required host tool is missing.
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    /// A tool ran and failed; `stderr` is its captured standard error (trimmed).
    Tool {
        step: &'static str,
        command: String,
        status: String,
        stderr: String,
    },
    /// An I/O error on a file.
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A format error (hive, BCD, MBR, VHD) in a file; the error names the byte offset.
    Format {
        step: &'static str,
        path: PathBuf,
        source: ufd_formats::Error,
    },
    /// The input WIM is unusable (missing, corrupt, no such index, wrong architecture).
    Wim { path: PathBuf, message: String },
    /// An NTFS structure read back from a volume file is not what the pipeline expects
    /// (e.g. the VHD ended up sparse); `offset` is the byte offset in the volume file.
    Ntfs {
        step: &'static str,
        path: PathBuf,
        offset: u64,
        message: String,
    },
}

impl ProvisionError {
    pub(crate) fn io(step: &'static str, path: &Path, source: std::io::Error) -> Self {
        ProvisionError::Io {
            step,
            path: path.to_path_buf(),
            source,
        }
    }
    pub(crate) fn format(step: &'static str, path: &Path, source: ufd_formats::Error) -> Self {
        ProvisionError::Format {
            step,
            path: path.to_path_buf(),
            source,
        }
    }
    pub(crate) fn ntfs(
        step: &'static str,
        path: &Path,
        offset: u64,
        message: impl Into<String>,
    ) -> Self {
        ProvisionError::Ntfs {
            step,
            path: path.to_path_buf(),
            offset,
            message: message.into(),
        }
    }
    /// The policy rule this error is about, if any.
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            ProvisionError::Policy { rule, .. } => Some(rule),
            _ => None,
        }
    }
}

impl fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProvisionError::Policy { rule, message } => write!(f, "policy {rule}: {message}"),
            ProvisionError::Usage(m) => f.write_str(m),
            ProvisionError::MissingTool { tool, package } => write!(
                f,
                "`{tool}` not found in PATH: install the Debian package {package} (apt-get install {package})"
            ),
            ProvisionError::Tool {
                step,
                command,
                status,
                stderr,
            } => {
                let one_line: String = stderr
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" | ");
                write!(f, "{step}: `{command}` failed ({status})")?;
                if !one_line.is_empty() {
                    write!(f, ": {one_line}")?;
                }
                Ok(())
            }
            ProvisionError::Io { step, path, source } => {
                write!(f, "{step}: {}: {source}", path.display())
            }
            ProvisionError::Format { step, path, source } => {
                write!(f, "{step}: {}: {source}", path.display())
            }
            ProvisionError::Wim { path, message } => write!(f, "{}: {message}", path.display()),
            ProvisionError::Ntfs {
                step,
                path,
                offset,
                message,
            } => write!(
                f,
                "{step}: {}: NTFS at byte {offset:#x}: {message}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ProvisionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProvisionError::Io { source, .. } => Some(source),
            ProvisionError::Format { source, .. } => Some(source),
            _ => None,
        }
    }
}
