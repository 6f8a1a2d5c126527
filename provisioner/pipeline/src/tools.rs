//! Host tools run as processes (mkntfs and the ntfs-3g tools, wimlib's tools), with their
//! stderr captured into the error, and the bytes they wrote measured.
//!
//! Bytes written by a child are read from `/proc/<pid>/io` `write_bytes` after the child has
//! exited but before it is reaped (`waitid(WNOWAIT)`): the kernel's storage-level write
//! accounting of that process (page-cache pages it dirtied, counted when dirtied — so it is what
//! the tool caused to be written, not what reached the device by the time it exited). Our own
//! writes are measured the same way on `/proc/thread-self/io` (the pipeline runs on one
//! thread, so concurrent work of other threads in the same process is not counted).

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::ProvisionError;

/// A host tool and the Debian package that ships it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tool {
    pub name: &'static str,
    pub package: &'static str,
}

pub const MKNTFS: Tool = Tool {
    name: "mkntfs",
    package: "ntfs-3g",
};
pub const NTFSCP: Tool = Tool {
    name: "ntfscp",
    package: "ntfs-3g",
};
pub const NTFSCAT: Tool = Tool {
    name: "ntfscat",
    package: "ntfs-3g",
};
pub const NTFSINFO: Tool = Tool {
    name: "ntfsinfo",
    package: "ntfs-3g",
};
pub const NTFSFALLOCATE: Tool = Tool {
    name: "ntfsfallocate",
    package: "ntfs-3g",
};
pub const WIMINFO: Tool = Tool {
    name: "wiminfo",
    package: "wimtools",
};
pub const WIMAPPLY: Tool = Tool {
    name: "wimapply",
    package: "wimtools",
};
pub const WIMEXTRACT: Tool = Tool {
    name: "wimextract",
    package: "wimtools",
};
pub const WIMCAPTURE: Tool = Tool {
    name: "wimcapture",
    package: "wimtools",
};
pub const WIMDIR: Tool = Tool {
    name: "wimdir",
    package: "wimtools",
};

pub const MKFS_FAT: Tool = Tool {
    name: "mkfs.fat",
    package: "dosfstools",
};
pub const MCOPY: Tool = Tool {
    name: "mcopy",
    package: "mtools",
};

/// Every tool the BIOS pipeline runs (checked before anything is written).
pub const ALL: &[Tool] = &[
    MKNTFS,
    NTFSCP,
    NTFSCAT,
    NTFSINFO,
    NTFSFALLOCATE,
    WIMINFO,
    WIMAPPLY,
    WIMEXTRACT,
    WIMCAPTURE,
    WIMDIR,
];

/// The extra tools of the UEFI layouts (`--firmware uefi|both`): the EFI system partition is
/// formatted by `mkfs.fat` and filled by `mcopy`, both on the partition file (no mounting).
pub const UEFI: &[Tool] = &[MKFS_FAT, MCOPY];

/// The full path of `tool` in `PATH` (plus the sbin directories, where Debian puts mkntfs and
/// ntfscp, which are not in a normal user's PATH).
pub fn find(tool: Tool) -> Result<PathBuf, ProvisionError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        PathBuf::from("/usr/sbin"),
        PathBuf::from("/sbin"),
        PathBuf::from("/usr/local/sbin"),
    ];
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(tool.name))
        .find(|p| is_executable(p))
        .ok_or(ProvisionError::MissingTool {
            tool: tool.name,
            package: tool.package,
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Check every tool in `tools`; the first missing one is the error.
pub fn check_all(tools: &[Tool]) -> Result<(), ProvisionError> {
    for t in tools {
        find(*t)?;
    }
    Ok(())
}

/// What a finished tool left: its stdout (when not redirected) and the bytes it wrote.
#[derive(Debug, Default)]
pub struct Ran {
    pub stdout: String,
    pub write_bytes: u64,
}

/// Run `tool args...`; fail with its stderr when it exits non-zero. `stdout_to` redirects
/// standard output into a file (for `ntfscat`).
pub fn run<I, S>(
    step: &'static str,
    tool: Tool,
    args: I,
    stdout_to: Option<File>,
) -> Result<Ran, ProvisionError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let exe = find(tool)?;
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let command = std::iter::once(tool.name.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new(&exe);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        // mtools: the ESP partition file has no drive geometry to check against.
        .env("MTOOLS_SKIP_CHECK", "1");
    // A tool must not outlive a `ufd` that was killed (kill -9 leaves no destructor to stop
    // it): the kernel sends it SIGKILL when the thread that started it is gone.
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls between fork and exec (prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("ufd exited while starting the tool"));
                }
                Ok(())
            });
        }
    }
    let redirected = stdout_to.is_some();
    match stdout_to {
        Some(f) => cmd.stdout(Stdio::from(f)),
        None => cmd.stdout(Stdio::piped()),
    };
    let mut child = cmd.spawn().map_err(|e| ProvisionError::Tool {
        step,
        command: command.clone(),
        status: "could not start".into(),
        stderr: e.to_string(),
    })?;
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut v);
        }
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut v);
        }
        v
    });
    let write_bytes = wait_exited_not_reaped(child.id())
        .then(|| read_io_write_bytes(&format!("/proc/{}/io", child.id())))
        .flatten()
        .unwrap_or(0);
    let status = child.wait().map_err(|e| ProvisionError::Tool {
        step,
        command: command.clone(),
        status: "wait failed".into(),
        stderr: e.to_string(),
    })?;
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    if !status.success() {
        let mut text = String::from_utf8_lossy(&stderr).replace('\r', "\n");
        if text.trim().is_empty() && !redirected {
            // wimlib prints some errors on stdout
            text = String::from_utf8_lossy(&stdout).replace('\r', "\n");
        }
        return Err(ProvisionError::Tool {
            step,
            command,
            status: status.to_string(),
            stderr: text,
        });
    }
    Ok(Ran {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        write_bytes,
    })
}

/// Block until child `pid` has exited, leaving it a zombie so `/proc/<pid>/io` still holds its
/// final counters. `false` if waiting failed (the caller then reaps normally).
fn wait_exited_not_reaped(pid: u32) -> bool {
    loop {
        // SAFETY: siginfo_t is plain data; waitid only writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our own child, not yet reaped (std reaps only in wait()).
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return true;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

/// The `write_bytes` line of a `/proc/.../io` file.
pub fn read_io_write_bytes(path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Bytes this thread has caused to be written so far (`/proc/thread-self/io`).
pub fn own_write_bytes() -> u64 {
    read_io_write_bytes("/proc/thread-self/io").unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_the_package() {
        let t = Tool {
            name: "ufd-no-such-tool-xyz",
            package: "no-such-package",
        };
        let e = find(t).unwrap_err().to_string();
        assert!(
            e.contains("ufd-no-such-tool-xyz") && e.contains("apt-get install no-such-package"),
            "{e}"
        );
    }

    #[test]
    fn failing_tool_reports_stderr() {
        let e = run("test", WIMINFO, ["/nonexistent/x.wim"], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("wiminfo /nonexistent/x.wim") && e.contains("exit status"),
            "{e}"
        );
    }

    #[test]
    fn own_io_counter_is_readable() {
        assert!(read_io_write_bytes("/proc/thread-self/io").is_some());
    }
}
