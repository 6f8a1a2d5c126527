//! Attach an image file as a loop device with its partitions, and detach it on every exit path.
//!
//! The kernel interface (`linux/loop.h`, loop(4)): `LOOP_CTL_GET_FREE` on `/dev/loop-control`
//! finds a free device; `LOOP_CONFIGURE` (Linux 5.8+) binds the backing file and sets the flags
//! in one call; older kernels take `LOOP_SET_FD` then `LOOP_SET_STATUS64`. Flags used:
//! `LO_FLAGS_PARTSCAN` (the kernel scans the partition table) and `LO_FLAGS_AUTOCLEAR` (the
//! device detaches itself when its last opener closes — so even `kill -9` of this process
//! releases it), plus `LO_FLAGS_READ_ONLY` on request.
//!
//! Partitions: a kernel built without `CONFIG_MSDOS_PARTITION` (this project's test machine,
//! host-pipeline.md §0) finds none even with PARTSCAN; then `partx -a` parses the table in
//! userspace and adds the partitions with BLKPG, and devtmpfs creates `/dev/loopNpK`
//! (host-pipeline.md §2). How many partitions to wait for is read from the image's MBR with
//! `ufd_formats::mbr`.
//!
//! [`LoopDevice`] detaches in `Drop` (so also while a panic unwinds): `partx -d` if partx added
//! the partitions, then `LOOP_CLR_FD`. If something else still has the device open (a mount),
//! the kernel turns the clear into autoclear and detaches when that opener goes.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Error;

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_PARTSCAN: u32 = 8;

/// The kernel ABI (linux/loop.h), kept private: the ioctl wrappers nix generates are `pub`.
mod sys {
    const LO_NAME_SIZE: usize = 64;
    const LO_KEY_SIZE: usize = 32;

    /// `struct loop_info64` (linux/loop.h).
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct LoopInfo64 {
        pub lo_device: u64,
        pub lo_inode: u64,
        pub lo_rdevice: u64,
        pub lo_offset: u64,
        pub lo_sizelimit: u64,
        pub lo_number: u32,
        pub lo_encrypt_type: u32,
        pub lo_encrypt_key_size: u32,
        pub lo_flags: u32,
        pub lo_file_name: [u8; LO_NAME_SIZE],
        pub lo_crypt_name: [u8; LO_NAME_SIZE],
        pub lo_encrypt_key: [u8; LO_KEY_SIZE],
        pub lo_init: [u64; 2],
    }

    impl Default for LoopInfo64 {
        fn default() -> Self {
            LoopInfo64 {
                lo_device: 0,
                lo_inode: 0,
                lo_rdevice: 0,
                lo_offset: 0,
                lo_sizelimit: 0,
                lo_number: 0,
                lo_encrypt_type: 0,
                lo_encrypt_key_size: 0,
                lo_flags: 0,
                lo_file_name: [0; LO_NAME_SIZE],
                lo_crypt_name: [0; LO_NAME_SIZE],
                lo_encrypt_key: [0; LO_KEY_SIZE],
                lo_init: [0; 2],
            }
        }
    }

    /// `struct loop_config` (linux/loop.h, Linux 5.8).
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    pub struct LoopConfig {
        pub fd: u32,
        pub block_size: u32,
        pub info: LoopInfo64,
        pub reserved: [u64; 8],
    }

    // The loop ioctls are "bad" ones: plain numbers without the _IOC direction/size encoding.
    nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
    nix::ioctl_write_int_bad!(loop_set_fd, 0x4C00);
    nix::ioctl_none_bad!(loop_clr_fd, 0x4C01);
    nix::ioctl_write_ptr_bad!(loop_set_status64, 0x4C04, LoopInfo64);
    nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, LoopConfig);
}
use sys::{
    loop_clr_fd, loop_configure, loop_ctl_get_free, loop_set_fd, loop_set_status64, LoopConfig,
    LoopInfo64,
};

/// Options of [`attach`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachOptions {
    pub read_only: bool,
    /// Make the partitions appear (`/dev/loopNpK`).
    pub partitions: bool,
    /// How long to wait for the partition nodes after the kernel scan and again after `partx`.
    pub wait: Duration,
    /// Bind with `LOOP_SET_FD` + `LOOP_SET_STATUS64` even where `LOOP_CONFIGURE` exists: the
    /// path taken on kernels before 5.8 (tests exercise it on newer kernels).
    pub legacy_ioctls: bool,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            read_only: false,
            partitions: true,
            wait: Duration::from_secs(5),
            legacy_ioctls: false,
        }
    }
}

/// An attached loop device; detached when dropped.
#[derive(Debug)]
pub struct LoopDevice {
    number: u32,
    path: PathBuf,
    image: PathBuf,
    /// Held open for the device's lifetime (with AUTOCLEAR, closing it detaches).
    file: Option<File>,
    partitions: Vec<PathBuf>,
    partx_added: bool,
}

fn errno_text(e: nix::errno::Errno) -> String {
    format!("{} ({e:?})", e.desc())
}

/// Attach `image` to a free loop device.
pub fn attach(image: &Path, opts: AttachOptions) -> Result<LoopDevice, Error> {
    let backing = OpenOptions::new()
        .read(true)
        .write(!opts.read_only)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(image)
        .map_err(|e| Error::new(format!("{}: cannot open the image: {e}", image.display())))?;
    let expected = if opts.partitions {
        mbr_partitions(&backing)
    } else {
        Vec::new()
    };
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open("/dev/loop-control")
        .map_err(|e| {
            Error::new(format!(
                "/dev/loop-control: {e} (loop devices need root and a kernel with CONFIG_BLK_DEV_LOOP)"
            ))
        })?;
    let mut flags = LO_FLAGS_AUTOCLEAR;
    if opts.partitions {
        flags |= LO_FLAGS_PARTSCAN;
    }
    if opts.read_only {
        flags |= LO_FLAGS_READ_ONLY;
    }
    // Another process may take the free device between GET_FREE and the bind: retry.
    let mut last = String::new();
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument; the fd is an open loop-control device.
        let n = unsafe { loop_ctl_get_free(control.as_raw_fd()) }.map_err(|e| {
            Error::new(format!(
                "/dev/loop-control: LOOP_CTL_GET_FREE failed: {}",
                errno_text(e)
            ))
        })?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = match OpenOptions::new()
            .read(true)
            .write(!opts.read_only)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                last = format!("{}: {e}", path.display());
                continue;
            }
        };
        match bind(&dev, &backing, flags, opts.legacy_ioctls) {
            Ok(()) => {
                let mut ld = LoopDevice {
                    number: n as u32,
                    path,
                    image: image.to_path_buf(),
                    file: Some(dev),
                    partitions: Vec::new(),
                    partx_added: false,
                };
                if !expected.is_empty() {
                    // On error the guard detaches.
                    ld.wait_for_partitions(&expected, opts.wait)?;
                }
                return Ok(ld);
            }
            Err(nix::errno::Errno::EBUSY) => {
                last = format!("{}: taken by another process", path.display());
                continue;
            }
            Err(e) => {
                return Err(Error::new(format!(
                    "{}: cannot bind {}: {}",
                    path.display(),
                    image.display(),
                    errno_text(e)
                )))
            }
        }
    }
    Err(Error::new(format!(
        "no free loop device could be bound ({last})"
    )))
}

/// LOOP_CONFIGURE, or LOOP_SET_FD + LOOP_SET_STATUS64 on kernels before 5.8.
fn bind(dev: &File, backing: &File, flags: u32, legacy: bool) -> Result<(), nix::errno::Errno> {
    let cfg = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info: LoopInfo64 {
            lo_flags: flags,
            ..LoopInfo64::default()
        },
        reserved: [0; 8],
    };
    if !legacy {
        // SAFETY: `cfg` is a valid `struct loop_config` that outlives the call; both fds are open.
        match unsafe { loop_configure(dev.as_raw_fd(), &cfg) } {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOTTY) => {}
            Err(e) => return Err(e),
        }
    }
    // SAFETY: LOOP_SET_FD takes the backing file descriptor as its integer argument.
    unsafe { loop_set_fd(dev.as_raw_fd(), backing.as_raw_fd()) }?;
    let info = LoopInfo64 {
        // READ_ONLY cannot be set through SET_STATUS64: it follows the backing fd's mode.
        lo_flags: flags & !LO_FLAGS_READ_ONLY,
        ..LoopInfo64::default()
    };
    // SAFETY: `info` is a valid `struct loop_info64`.
    if let Err(e) = unsafe { loop_set_status64(dev.as_raw_fd(), &info) } {
        // SAFETY: undo the bind made above on this fd.
        let _ = unsafe { loop_clr_fd(dev.as_raw_fd()) };
        return Err(e);
    }
    Ok(())
}

/// Partition numbers (1-4) of the non-empty MBR entries of the image; empty when sector 0 is
/// not an MBR.
fn mbr_partitions(f: &File) -> Vec<u32> {
    use std::os::unix::fs::FileExt;
    let mut s = [0u8; 512];
    if f.read_exact_at(&mut s, 0).is_err() {
        return Vec::new();
    }
    match ufd_formats::mbr::Mbr::parse(&s) {
        Ok(m) => m
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .map(|(i, _)| i as u32 + 1)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Where the partitions of a device appear: `/dev/loop3p1` (a `p` after a trailing digit).
pub fn partition_path(dev: &Path, n: u32) -> PathBuf {
    let s = dev.display().to_string();
    if s.ends_with(|c: char| c.is_ascii_digit()) {
        PathBuf::from(format!("{s}p{n}"))
    } else {
        PathBuf::from(format!("{s}{n}"))
    }
}

fn wait_until(deadline: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ok() {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run a tool, with a clear message when it is missing and its stderr in the error.
pub(crate) fn run_tool(tool: &str, package: &str, args: &[&str]) -> Result<(), Error> {
    let out = Command::new(tool).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::new(format!("{tool} not found: install {package}"))
        } else {
            Error::new(format!("{tool}: cannot run: {e}"))
        }
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "{tool} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl LoopDevice {
    /// `/dev/loopN`.
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn number(&self) -> u32 {
        self.number
    }
    /// Kernel name, `loopN`.
    pub fn name(&self) -> String {
        format!("loop{}", self.number)
    }
    /// The image it is bound to.
    pub fn image(&self) -> &Path {
        &self.image
    }
    /// The partition nodes that appeared (`/dev/loopNp1`, ...).
    pub fn partitions(&self) -> &[PathBuf] {
        &self.partitions
    }
    /// Whether `partx -a` had to add the partitions (the kernel's scan found none).
    pub fn partitions_added_by_partx(&self) -> bool {
        self.partx_added
    }

    fn wait_for_partitions(&mut self, expected: &[u32], wait: Duration) -> Result<(), Error> {
        let nodes: Vec<PathBuf> = expected
            .iter()
            .map(|&n| partition_path(&self.path, n))
            .collect();
        let all = |nodes: &[PathBuf]| nodes.iter().all(|p| p.exists());
        // The kernel's own scan, when it can parse the table, is done by the time
        // LOOP_CONFIGURE returns; the nodes follow shortly (devtmpfs).
        let scan_wait = wait.min(Duration::from_millis(500));
        if !wait_until(scan_wait, || all(&nodes)) {
            let dev = self.path.display().to_string();
            run_tool("partx", "util-linux", &["-a", &dev])?;
            self.partx_added = true;
            if !wait_until(wait, || all(&nodes)) {
                let missing: Vec<String> = nodes
                    .iter()
                    .filter(|p| !p.exists())
                    .map(|p| p.display().to_string())
                    .collect();
                return Err(Error::new(format!(
                    "{dev}: partition nodes {} did not appear within {} ms after partx -a (is /dev a devtmpfs?)",
                    missing.join(", "),
                    wait.as_millis()
                )));
            }
        }
        self.partitions = nodes;
        Ok(())
    }

    /// Detach now, reporting problems (Drop does the same silently).
    pub fn detach(mut self) -> Result<(), Error> {
        self.detach_inner()
    }

    fn detach_inner(&mut self) -> Result<(), Error> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let mut problems = Vec::new();
        if self.partx_added {
            let dev = self.path.display().to_string();
            if let Err(e) = run_tool("partx", "util-linux", &["-d", &dev]) {
                problems.push(e.0);
            }
        }
        // SAFETY: LOOP_CLR_FD takes no argument; `file` is the open loop device.
        if let Err(e) = unsafe { loop_clr_fd(file.as_raw_fd()) } {
            // ENXIO: already detached (autoclear after an earlier close).
            if e != nix::errno::Errno::ENXIO {
                problems.push(format!(
                    "{}: LOOP_CLR_FD failed: {}",
                    self.path.display(),
                    errno_text(e)
                ));
            }
        }
        drop(file);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::new(problems.join("; ")))
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = self.detach_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_sizes_match_linux_loop_h() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }

    #[test]
    fn partition_paths() {
        assert_eq!(
            partition_path(Path::new("/dev/loop3"), 1),
            Path::new("/dev/loop3p1")
        );
        assert_eq!(
            partition_path(Path::new("/dev/sdb"), 2),
            Path::new("/dev/sdb2")
        );
        assert_eq!(
            partition_path(Path::new("/dev/nvme0n1"), 1),
            Path::new("/dev/nvme0n1p1")
        );
    }

    #[test]
    fn missing_tool_names_the_package() {
        let e = run_tool("ufd-no-such-tool", "some-package", &[]).unwrap_err();
        assert_eq!(e.0, "ufd-no-such-tool not found: install some-package");
    }
}
