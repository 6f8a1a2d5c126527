use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn cargo(root: &std::path::Path) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root);
    if std::env::var_os("CI").is_some() {
        // A clean CI build never reuses incremental state: without it the target dir is
        // ~0.8 GB smaller (measured on a clean clone: debug/incremental 823 MB).
        c.env("CARGO_INCREMENTAL", "0");
    }
    c
}

/// Run and capture stdout; non-zero exit is an error that includes stderr.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A named, timed step whose output streams to the terminal.
pub struct Step {
    name: String,
}

impl Step {
    pub fn new(name: &str) -> Self {
        Step {
            name: name.to_string(),
        }
    }
    pub fn run(self, cmd: &mut Command) -> Result<(), String> {
        println!("==> {}", self.name);
        let t = Instant::now();
        let status = cmd
            .status()
            .map_err(|e| format!("{}: cannot start {cmd:?}: {e}", self.name))?;
        let secs = t.elapsed().as_secs_f64();
        if status.success() {
            println!("<== {} ok ({secs:.1} s)", self.name);
            Ok(())
        } else {
            Err(format!(
                "step `{}` failed ({status}) after {secs:.1} s",
                self.name
            ))
        }
    }
}
