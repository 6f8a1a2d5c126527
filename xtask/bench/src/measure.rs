//! Wall clock and bytes written, and running tools.
//!
//! Two byte counts are taken for every measured step, because neither alone is right for all
//! three pipelines:
//!
//! * **task I/O** — `write_bytes` of `/proc/self/io`. It covers this process and every child it
//!   has reaped (the kernel adds a reaped child's counters to the parent's), i.e. the provisioner
//!   (in process) and the tools it or the floor runs. It counts pages dirtied in the page cache
//!   (4 KiB granularity), is immune to other processes on the machine, and is what the
//!   provisioner's own `Report` uses (`ufd_provision::BYTES_WRITTEN_METHOD`). It does **not** see
//!   the naive pipeline's real writes: the ntfs-3g daemon detaches from us (it is reparented),
//!   and loop-device I/O is written to the backing file by kernel workers.
//! * **device** — the change in `/proc/diskstats` "sectors written" (×512) of the block device
//!   holding the bench directory, read after a global `sync`. This is the host-pipeline.md §6
//!   method (the naive baseline's 16.2 GB), counts real writes including file-system journal
//!   and metadata, but is whole-machine: anything else writing to that device at the same time
//!   is counted too.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `write_bytes` of this process and its reaped children.
pub fn task_write_bytes() -> Result<u64, String> {
    task_io("write_bytes")
}

/// One counter of `/proc/self/io`.
fn task_io(name: &str) -> Result<u64, String> {
    let io = fs::read_to_string("/proc/self/io").map_err(|e| format!("/proc/self/io: {e}"))?;
    io.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            format!("/proc/self/io: no {name} line (kernel without task I/O accounting)")
        })
}

/// The block device holding a directory, as found in `/proc/diskstats`.
#[derive(Clone, Debug)]
pub struct Device {
    pub name: String,
    major: u64,
    minor: u64,
}

impl Device {
    /// The `/proc/diskstats` entry of the device holding `dir`; `None` when the file system
    /// is not on a block device listed there (tmpfs, overlayfs, btrfs subvolumes, ...).
    pub fn holding(dir: &Path) -> Option<Device> {
        use std::os::unix::fs::MetadataExt;
        let dev = fs::metadata(dir).ok()?.dev();
        // glibc's gnu_dev_major / gnu_dev_minor.
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        let stats = fs::read_to_string("/proc/diskstats").ok()?;
        stats.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[0].parse() == Ok(major) && f[1].parse() == Ok(minor)).then(|| {
                Device {
                    name: f[2].to_string(),
                    major,
                    minor,
                }
            })
        })
    }

    /// Bytes written to the device so far (sectors written × 512).
    pub fn written(&self) -> Result<u64, String> {
        let stats =
            fs::read_to_string("/proc/diskstats").map_err(|e| format!("/proc/diskstats: {e}"))?;
        stats
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 9 && f[0].parse() == Ok(self.major) && f[1].parse() == Ok(self.minor))
                    .then(|| f[9].parse::<u64>().ok())
                    .flatten()
            })
            .map(|s| s * 512)
            .ok_or_else(|| format!("/proc/diskstats: device {} disappeared", self.name))
    }
}

/// Counters at the start of a measured region.
pub struct Meter<'a> {
    device: Option<&'a Device>,
    start: Instant,
    task0: u64,
    cancelled0: u64,
    dev0: Option<u64>,
}

/// One measured region.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub time: Duration,
    pub task_bytes: u64,
    /// `cancelled_write_bytes` of the same accounting: dirty page-cache bytes dropped before
    /// writeback because their file was truncated or deleted (written, then undone: they never
    /// reach the device). Printed beside `task_bytes`, not subtracted in any verdict.
    pub task_cancelled: u64,
    /// `None` when the device could not be determined.
    pub device_bytes: Option<u64>,
}

impl<'a> Meter<'a> {
    /// Flush everything dirty so far (untimed), then start the clock and the counters.
    pub fn start(device: Option<&'a Device>) -> Result<Meter<'a>, String> {
        sync()?;
        Ok(Meter {
            device,
            task0: task_write_bytes()?,
            cancelled0: task_io("cancelled_write_bytes")?,
            dev0: device.map(Device::written).transpose()?,
            start: Instant::now(),
        })
    }

    /// Stop the clock now (the caller has already made its own output durable), then flush
    /// globally (untimed) so the device counter includes every write of the region.
    pub fn stop(self) -> Result<Sample, String> {
        let time = self.start.elapsed();
        let task_bytes = task_write_bytes()?.saturating_sub(self.task0);
        let task_cancelled = task_io("cancelled_write_bytes")?.saturating_sub(self.cancelled0);
        sync()?;
        let device_bytes = match (self.device, self.dev0) {
            (Some(d), Some(d0)) => Some(d.written()?.saturating_sub(d0)),
            _ => None,
        };
        Ok(Sample {
            time,
            task_bytes,
            task_cancelled,
            device_bytes,
        })
    }
}

/// `sync` (coreutils): flush every file system.
pub fn sync() -> Result<(), String> {
    run(&mut Command::new("sync"), "sync").map(drop)
}

/// fsync one file (its data and metadata).
pub fn fsync(path: &Path) -> Result<(), String> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("{}: fsync: {e}", path.display()))
}

/// `tool` on PATH, else an error naming the Debian package.
pub fn require(tool: &str, package: &str) -> Result<PathBuf, String> {
    ufd_synthetic::require_tool(tool, package)
}

/// Run a command to completion; the error carries its stderr. Returns stdout.
pub fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // wimlib's progress uses '\r' (host-pipeline.md pitfall 11): keep the last line.
        let tail: Vec<&str> = stderr
            .lines()
            .flat_map(|l| l.rsplit('\r').next())
            .filter(|l| !l.trim().is_empty())
            .collect();
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            tail[tail.len().saturating_sub(6)..].join(" | ")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Remove a file if it exists.
pub fn remove(path: &Path) -> Result<(), String> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: remove: {e}", path.display())),
    }
}

/// Removes the files it holds when dropped (every exit path, including errors).
#[derive(Default)]
pub struct Scratch(Vec<PathBuf>);

impl Scratch {
    /// Remove `path` now if it exists (a leftover of an interrupted run) and again on drop.
    pub fn file(&mut self, path: PathBuf) -> Result<PathBuf, String> {
        remove(&path)?;
        self.0.push(path.clone());
        Ok(path)
    }
    /// Remove a directory tree now if it exists and again on drop.
    pub fn dir(&mut self, path: PathBuf) -> Result<PathBuf, String> {
        if path.exists() {
            fs::remove_dir_all(&path).map_err(|e| format!("{}: remove: {e}", path.display()))?;
        }
        self.0.push(path.clone());
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            if p.is_dir() {
                let _ = fs::remove_dir_all(p);
            } else {
                let _ = fs::remove_file(p);
            }
        }
    }
}

/// Bytes as "12.89 GB" (decimal, as host-pipeline.md).
pub fn gb(b: u64) -> String {
    if b >= 1_000_000_000 {
        format!("{:.2} GB", b as f64 / 1e9)
    } else {
        format!("{:.1} MB", b as f64 / 1e6)
    }
}
