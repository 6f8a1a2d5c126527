//! File edges: whole-file reads with clear errors, atomic replacement, clocks.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::CliError;

pub fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    fs::read(path).map_err(|e| CliError::io(path, e))
}

/// Write `data` to `path` atomically: a temporary file in the same directory is written,
/// fsynced and renamed over `path`, then the directory is fsynced. Readers see either the
/// old file or the new one, never a mix; a crash leaves no partial file under `path`.
/// The file's permissions are kept when it already exists.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), CliError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| CliError::usage(format!("{}: not a file path", path.display())))?;
    let mut tmp = PathBuf::from(dir);
    tmp.push(format!(
        ".{}.ufd-tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        if let Ok(meta) = fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(CliError::io(path, e));
    }
    Ok(())
}

/// Now as a Windows FILETIME (100 ns ticks since 1601-01-01 UTC).
pub fn filetime_now() -> u64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (since_unix.as_secs() + 11_644_473_600) * 10_000_000
        + u64::from(since_unix.subsec_nanos() / 100)
}
