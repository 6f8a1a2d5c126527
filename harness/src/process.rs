//! QEMU process supervision: spawn in its own process group, kill and reap on drop, on
//! deadline and on Ctrl-C (SIGINT/SIGTERM/SIGHUP), and a process-wide bound on how many VMs run
//! at once (TCG guests take a whole core each: qemu.md §6).
//!
//! No orphans: every child is registered in a fixed table that the signal handler walks with
//! `kill(2)` (async-signal-safe); the child also gets `PR_SET_PDEATHSIG(SIGKILL)`, so it dies
//! when the spawning thread dies even if the harness itself is SIGKILLed. Because that signal is
//! tied to the *thread* that spawned it, a [`Qemu`] guard is deliberately `!Send`.

use std::fs::File;
use std::io::Read;
use std::marker::PhantomData;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Condvar, Mutex, Once};
use std::time::Duration;

use nix::sys::signal::{self, SigHandler, Signal};
use nix::unistd::Pid;

use crate::error::{require_tool, Error, Result};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

const MAX_CHILDREN: usize = 64;
static CHILDREN: [AtomicI32; MAX_CHILDREN] = [const { AtomicI32::new(0) }; MAX_CHILDREN];
static HANDLER: Once = Once::new();

extern "C" fn on_signal(sig: std::ffi::c_int) {
    for slot in &CHILDREN {
        let pid = slot.load(Ordering::SeqCst);
        if pid > 0 {
            // The child leads its own process group: kill the group.
            let _ = signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    // Re-raise with the default action so the harness ends the way the user asked.
    if let Ok(s) = Signal::try_from(sig) {
        // SAFETY: restoring the default disposition is async-signal-safe (sigaction(2)).
        unsafe {
            let _ = signal::signal(s, SigHandler::SigDfl);
        }
        let _ = signal::raise(s);
    }
}

fn install_handler() {
    HANDLER.call_once(|| {
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            // SAFETY: the handler only reads atomics and calls kill/sigaction/raise, all
            // async-signal-safe.
            unsafe {
                let _ = signal::signal(s, SigHandler::Handler(on_signal));
            }
        }
    });
}

fn register(pid: i32) -> Option<usize> {
    CHILDREN.iter().position(|s| {
        s.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })
}

/// PIDs of the QEMU processes this process currently supervises.
pub fn live_children() -> Vec<i32> {
    CHILDREN
        .iter()
        .map(|s| s.load(Ordering::SeqCst))
        .filter(|&p| p > 0)
        .collect()
}

/// A running QEMU. Killing and reaping happen in [`Drop`].
pub struct Qemu {
    child: Child,
    slot: Option<usize>,
    status: Option<ExitStatus>,
    stderr_path: PathBuf,
    _not_send: PhantomData<*const ()>,
    _permit: Permit,
}

impl Qemu {
    /// Start `qemu-system-x86_64 argv` with stdin/stdout on /dev/null and stderr into
    /// `stderr_path`. Blocks until a VM slot is free (see [`set_max_parallel`]).
    pub fn spawn(argv: &[String], stderr_path: &Path) -> Result<Qemu> {
        let qemu = require_tool(QEMU, "qemu-system-x86")?;
        let permit = Permit::acquire();
        install_handler();
        let stderr = File::create(stderr_path)
            .map_err(|e| Error::io(stderr_path, "create the QEMU stderr log", e))?;
        let mut cmd = Command::new(qemu);
        cmd.args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        // SAFETY: prctl(2) and getppid(2) are async-signal-safe; nothing allocates.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| Error::Process {
            what: format!("start {QEMU}"),
            detail: e.to_string(),
        })?;
        let slot = register(child.id() as i32);
        let mut q = Qemu {
            child,
            slot,
            status: None,
            stderr_path: stderr_path.to_path_buf(),
            _not_send: PhantomData,
            _permit: permit,
        };
        if q.slot.is_none() {
            q.kill();
            return Err(Error::config(format!(
                "more than {MAX_CHILDREN} QEMU processes at once"
            )));
        }
        Ok(q)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if QEMU has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                self.unregister();
            }
        }
        self.status
    }

    /// Wait up to `timeout` for QEMU to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = std::time::Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            if std::time::Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL the process group and reap the child.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            let _ = signal::killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.kill();
            if let Ok(st) = self.child.wait() {
                self.status = Some(st);
            }
            self.unregister();
        }
        self.status
    }

    /// QEMU's stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn unregister(&mut self) {
        if let Some(i) = self.slot.take() {
            CHILDREN[i].store(0, Ordering::SeqCst);
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

static SLOTS: Mutex<(usize, usize)> = Mutex::new((0, 0));
static SLOT_FREED: Condvar = Condvar::new();

/// Bound the number of QEMU processes this process runs at once (default: `UFD_QEMU_JOBS`, else
/// the number of CPUs).
pub fn set_max_parallel(n: usize) {
    let mut g = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
    g.1 = n.max(1);
    SLOT_FREED.notify_all();
}

/// The current bound.
pub fn max_parallel() -> usize {
    let g = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
    effective_max(g.1)
}

fn effective_max(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::env::var("UFD_QEMU_JOBS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
}

struct Permit;

impl Permit {
    fn acquire() -> Permit {
        let mut g = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
        while g.0 >= effective_max(g.1) {
            g = SLOT_FREED.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        g.0 += 1;
        Permit
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut g = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
        g.0 -= 1;
        SLOT_FREED.notify_one();
    }
}

/// Incremental reader of a file another process appends to (QEMU's `-serial file:` and
/// `-debugcon file:`): returns complete lines, ANSI escape sequences and CRs removed.
pub struct Tail {
    path: PathBuf,
    file: Option<File>,
    pending: Vec<u8>,
}

impl Tail {
    pub fn new(path: &Path) -> Tail {
        Tail {
            path: path.to_path_buf(),
            file: None,
            pending: Vec::new(),
        }
    }

    /// New complete lines since the last call.
    pub fn poll(&mut self) -> Vec<String> {
        if self.file.is_none() {
            self.file = File::open(&self.path).ok();
        }
        let Some(f) = self.file.as_mut() else {
            return Vec::new();
        };
        let mut buf = [0u8; 8192];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
        let mut lines = Vec::new();
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            lines.push(clean_line(&line[..line.len() - 1]));
        }
        lines
    }

    /// The unterminated rest (after the process ended).
    pub fn rest(&mut self) -> Option<String> {
        let mut lines = self.poll();
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            lines.push(clean_line(&rest));
        }
        if lines.is_empty() {
            None
        } else {
            Some(lines.join("\n"))
        }
    }
}

/// Remove ANSI CSI/escape sequences, CR and other control bytes (OVMF's serial console emits
/// `ESC[2J ESC[01;01H ESC[=3h` and CRLF, qemu.md §7).
pub fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte in '@'..='~'.
                for c2 in chars.by_ref() {
                    if ('@'..='~').contains(&c2) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_line_strips_ovmf_escapes() {
        assert_eq!(
            clean_line(b"\x1b[2J\x1b[01;01H\x1b[=3hUFDPROBE {}\r"),
            "UFDPROBE {}"
        );
        assert_eq!(clean_line(b"a\tb\x07c"), "a\tbc");
    }

    #[test]
    fn tail_returns_complete_lines_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut t = Tail::new(&p);
        assert!(t.poll().is_empty());
        std::fs::write(&p, b"one\r\ntw").unwrap();
        assert_eq!(t.poll(), vec!["one"]);
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        std::io::Write::write_all(&mut f, b"o\nthree").unwrap();
        assert_eq!(t.poll(), vec!["two"]);
        assert_eq!(t.rest().as_deref(), Some("three"));
    }
}
