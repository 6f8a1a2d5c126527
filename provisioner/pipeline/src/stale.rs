//! Interrupted runs: what `kill -9`, SIGINT and SIGTERM leave beside `--out`, and cleaning it up.
//!
//! [`crate::provision`] builds everything in a temporary directory beside `out`, named
//! `.<out file name>.ufd-tmp.<pid>` ([`scratch_dir`]), and renames only the finished image onto
//! `out`, so no interruption ever leaves a file under the final name (tests/robustness.rs of
//! the `ufd` crate kills runs at every step). What an interruption can leave is that directory:
//!
//! * `kill -9` (or a crash, or power loss) runs no destructor: the directory stays. The next
//!   provision into the same directory removes it with [`remove_stale`]: only directories whose
//!   name matches the pattern exactly, that are real directories (not symlinks), owned by the
//!   effective user, whose PID is not a live process, and in which nothing was modified for
//!   `min_idle` (a second guard for a directory shared with another PID namespace or host,
//!   where the PID test cannot see the owner; a live run rewrites its partition files
//!   continuously).
//! * SIGINT, SIGTERM, SIGHUP: [`remove_scratch_on_signal`] installs handlers that kill the
//!   run's tool processes, remove the directory, print one line and exit `128 + signal`.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, SystemTime};

/// The part of a scratch directory's name between the output file name and the PID.
pub const SCRATCH_INFIX: &str = ".ufd-tmp.";

/// Files modified more recently than this keep a scratch directory whose PID looks dead (the
/// value the pipeline should pass to [`remove_stale`]).
pub const MIN_IDLE: Duration = Duration::from_secs(10);

/// The directory `out` is written into (`.` for a bare file name).
pub fn out_dir(out: &Path) -> PathBuf {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The scratch directory of the run with process ID `pid` writing `out` — the name
/// [`crate::provision`] uses: `<dir of out>/.<file name of out>.ufd-tmp.<pid>`.
pub fn scratch_dir(out: &Path, pid: u32) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ufd.img".into());
    out_dir(out).join(format!(".{name}{SCRATCH_INFIX}{pid}"))
}

/// The PID in a scratch directory's name, if the name is exactly `.<non-empty>.ufd-tmp.<pid>`
/// with `<pid>` a canonical decimal number above 0.
pub fn scratch_pid(name: &OsStr) -> Option<u32> {
    let name = name.to_str()?;
    let rest = name.strip_prefix('.')?;
    let at = rest.rfind(SCRATCH_INFIX)?;
    if at == 0 {
        return None;
    }
    let digits = &rest[at + SCRATCH_INFIX.len()..];
    let pid: u32 = digits.parse().ok()?;
    (pid > 0 && pid.to_string() == digits).then_some(pid)
}

/// Whether `pid` names a process this host's PID namespace can see (`kill(pid, 0)`: success
/// or EPERM mean it exists; a zombie counts as alive).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission; nothing is delivered.
    let r = unsafe { libc::kill(p, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The newest modification time of `dir` and the entries directly in it.
fn newest_mtime(dir: &Path) -> io::Result<SystemTime> {
    let mut newest = std::fs::symlink_metadata(dir)?.modified()?;
    for e in std::fs::read_dir(dir)? {
        let m = e?.metadata()?.modified()?;
        newest = newest.max(m);
    }
    Ok(newest)
}

/// Remove the scratch directories of dead runs in `dir` (see the module documentation for
/// exactly which); returns the directories removed. The caller's own PID is never removed.
/// Errors name the directory that could not be read or removed.
pub fn remove_stale(dir: &Path, min_idle: Duration) -> io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    let named = |p: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
    // SAFETY: plain getter.
    let euid = unsafe { libc::geteuid() };
    let me = std::process::id();
    let now = SystemTime::now();
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| named(dir, e))? {
        let entry = entry.map_err(|e| named(dir, e))?;
        let Some(pid) = scratch_pid(&entry.file_name()) else {
            continue;
        };
        let path = entry.path();
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(named(&path, e)),
        };
        if !meta.file_type().is_dir() || meta.uid() != euid || pid == me || pid_alive(pid) {
            continue;
        }
        let idle = match newest_mtime(&path) {
            Ok(t) => now.duration_since(t).unwrap_or(Duration::ZERO),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(named(&path, e)),
        };
        if idle < min_idle {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(named(&path, e)),
        }
    }
    Ok(removed)
}

/// Set by the first [`remove_scratch_on_signal`].
static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Write end of the self-pipe the signal handler writes the signal number into.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; one byte from a local.
        unsafe {
            libc::write(fd, std::ptr::addr_of!(b).cast(), 1);
        }
    }
}

/// PIDs of this process's children (`/proc/*/stat` field 4).
fn children() -> Vec<libc::pid_t> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: libc::pid_t = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let after = &stat[stat.rfind(')')? + 1..];
        let ppid = after.split_whitespace().nth(1)?;
        (ppid == me).then_some(pid)
    })
    .collect()
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Identity of a file (device, inode), to tell a committed `out` from the one there before.
fn identity(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// On SIGINT, SIGTERM or SIGHUP while this process provisions `out`: SIGKILL the tool
/// processes it started (its children), remove its scratch directory
/// ([`scratch_dir`]`(out, own pid)`), print one line saying what `out` holds, and exit with
/// `128 + signal`. Call once, before the run starts. A self-pipe carries the signal to a
/// watcher thread (handlers use only `write(2)`); handlers are installed with `SA_RESTART`
/// and are reset to the default in the tools by `execve`.
///
/// Whether `out` was committed is decided by its identity (device, inode) against the one it
/// had when this was called: the rename onto `out` is atomic, so `out` is either what was there
/// before (or nothing) or the complete new image. A scratch directory created by the pipeline
/// after the watcher removed it (a window of a few instructions before `exit`) is removed by
/// the next run's [`remove_stale`].
///
/// The watcher holds the standard output and error locks from the signal to `_exit`, so the
/// pipeline thread cannot print a "tool failed" error for the tool it kills and exit first.
/// Known limit: if the pipeline thread is blocked writing a progress line into a pipe nobody
/// reads (stdout full), the watcher waits for that lock too. A second call is an error
/// (`AlreadyExists`): one process provisions one output.
pub fn remove_scratch_on_signal(out: &Path) -> io::Result<()> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the interrupt handlers are already installed for another output",
        ));
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    SIGNAL_PIPE.store(fds[1], Ordering::SeqCst);
    let scratch = scratch_dir(out, std::process::id());
    let out = out.to_path_buf();
    let before = identity(&out);
    let read_fd = fds[0];
    std::thread::Builder::new()
        .name("ufd-signals".into())
        .spawn(move || {
            let mut b = 0u8;
            loop {
                // SAFETY: reads one byte into a local from the pipe this thread owns.
                let n = unsafe { libc::read(read_fd, std::ptr::addr_of_mut!(b).cast(), 1) };
                if n == 1 {
                    break;
                }
                if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return;
            }
            let sig = libc::c_int::from(b);
            // Hold both output locks until _exit: every way the pipeline thread can end
            // (progress line, report, error message, panic message) writes to one of them
            // first, so it cannot exit with its own status while this thread cleans up.
            let _stdout = std::io::stdout().lock();
            let mut stderr = std::io::stderr().lock();
            // Stop the tools: a stopped child does not exit, so the pipeline thread (waiting
            // for it) does not go on to the next step.
            let stop = |pids: &mut Vec<libc::pid_t>| {
                for pid in children() {
                    if !pids.contains(&pid) {
                        // SAFETY: kill(2) on our own child.
                        unsafe {
                            libc::kill(pid, libc::SIGSTOP);
                        }
                        pids.push(pid);
                    }
                }
            };
            let mut stopped = Vec::new();
            // Until the directory is gone: the pipeline thread is not stopped (it is this
            // process) and may be between tools, creating or renaming a file in the scratch
            // directory while it is removed (`remove_dir_all` then fails with ENOTEMPTY), or
            // starting a tool that the next scan catches. Once the directory itself is gone,
            // nothing recreates it: the pipeline creates it only at the start. Bounded (2 s).
            for _ in 0..200 {
                stop(&mut stopped);
                let _ = std::fs::remove_dir_all(&scratch);
                if std::fs::symlink_metadata(&scratch).is_err() {
                    stop(&mut stopped);
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            for &pid in &stopped {
                // SAFETY: kill(2) on our own child (SIGKILL also ends a stopped process).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            let now = identity(&out);
            let state = match (before, now) {
                (_, None) => "nothing was written under it".to_string(),
                (b, n) if b == n => "it is unchanged (the previous file)".to_string(),
                _ => "it was already committed and is complete".to_string(),
            };
            let _ = writeln!(
                stderr,
                "ufd: interrupted by {} while provisioning {}: {state}; temporary directory {} removed",
                signal_name(sig),
                out.display(),
                scratch.display()
            );
            // SAFETY: _exit(2) ends the process at once, before the pipeline thread can react
            // to its killed tools.
            unsafe { libc::_exit(128 + sig) }
        })?;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: sigaction is plain data; the handler only calls write(2).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(".ufd.img.ufd-tmp.1234", Some(1234))]
    #[case(".a.b.ufd-tmp.7", Some(7))]
    #[case(".ufd.img.ufd-tmp.0", None)]
    #[case(".ufd.img.ufd-tmp.0123", None)]
    #[case(".ufd.img.ufd-tmp.12x", None)]
    #[case(".ufd.img.ufd-tmp.", None)]
    #[case("ufd.img.ufd-tmp.1234", None)]
    #[case("..ufd-tmp.1234", None)]
    #[case(".ufd.img.ufd-tmp.99999999999", None)]
    #[case(".ufd.img", None)]
    fn names(#[case] name: &str, #[case] pid: Option<u32>) {
        assert_eq!(scratch_pid(OsStr::new(name)), pid);
    }

    #[test]
    fn scratch_dir_matches_the_pattern() {
        let d = scratch_dir(Path::new("/srv/x/ufd.img"), 42);
        assert_eq!(d, Path::new("/srv/x/.ufd.img.ufd-tmp.42"));
        assert_eq!(scratch_pid(d.file_name().unwrap()), Some(42));
        assert_eq!(
            scratch_dir(Path::new("ufd.img"), 9),
            Path::new("./.ufd.img.ufd-tmp.9")
        );
    }

    /// A PID that is not running: a child that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        assert!(!pid_alive(pid));
        pid
    }

    fn age(dir: &Path, by: Duration) {
        let t = SystemTime::now() - by;
        for e in std::fs::read_dir(dir).unwrap() {
            let f = std::fs::File::options()
                .write(true)
                .open(e.unwrap().path())
                .unwrap();
            f.set_modified(t).unwrap();
        }
        std::fs::File::open(dir).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn removes_only_dead_idle_matching_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let dead = dead_pid();
        let mk = |name: &str| {
            let p = d.join(name);
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("vhd-partition.ntfs"), b"x").unwrap();
            p
        };
        let stale = mk(&format!(".ufd.img.ufd-tmp.{dead}"));
        let alive = mk(&format!(".ufd.img.ufd-tmp.{}", std::process::id()));
        let parent = mk(&format!(
            ".other.img.ufd-tmp.{}",
            std::os::unix::process::parent_id()
        ));
        let fresh = mk(&format!(".fresh.img.ufd-tmp.{dead}"));
        let unrelated = mk(&format!("ufd.img.ufd-tmp.{dead}"));
        let file = d.join(format!(".file.img.ufd-tmp.{dead}"));
        std::fs::write(&file, b"not a directory").unwrap();
        let target = mk("target");
        let link = d.join(format!(".link.img.ufd-tmp.{dead}"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for p in [&stale, &alive, &parent, &unrelated, &target] {
            age(p, Duration::from_secs(120));
        }
        let removed = remove_stale(d, MIN_IDLE).unwrap();
        assert_eq!(removed, std::slice::from_ref(&stale));
        assert!(!stale.exists());
        for p in [&alive, &parent, &fresh, &unrelated, &file, &target, &link] {
            assert!(p.symlink_metadata().is_ok(), "{} was removed", p.display());
        }
        assert!(target.join("vhd-partition.ntfs").exists());
        // The fresh one goes once it is idle long enough.
        assert_eq!(remove_stale(d, Duration::ZERO).unwrap(), [fresh]);
    }

    #[test]
    fn an_unreadable_directory_is_named_in_the_error() {
        let e = remove_stale(Path::new("/nonexistent/ufd-out"), MIN_IDLE).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ufd-out"), "{e}");
    }
}
