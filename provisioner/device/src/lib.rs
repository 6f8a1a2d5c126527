//! # ufd-device
//!
//! Real targets (issue #6): block devices and loop devices on Linux.
//!
//! - [`sysfs`]: what the kernel reports about a block device — size, the SCSI removable bit,
//!   vendor/model, and for USB disks the USB device, interface, speed, hubs, host controller and
//!   the other devices sharing it. Read from a sysfs root (`/` normally, a fixture tree in tests).
//! - [`check`]: the seed's hardware rules (UFD-NONREMOVABLE, UFD-USB2, UFD-MSC-CLASS,
//!   UFD-CAPACITY, TOPO-NO-NESTED-HUB, TOPO-DEDICATED-CONTROLLER) judged from those facts with the
//!   rule IDs of `ufd_formats::policy`, for `ufd check-device`.
//! - [`safety`]: the checks before writing a device (mounted, holds `/`, swap, read-only, too
//!   small), its [`safety::Identity`] and re-identification right before the write, `O_EXCL` open.
//! - [`loopdev`]: attach an image as a loop device with partitions, detached on every exit path.
//! - [`mod@write`]: copy a sparse image onto a device or file, counting only bytes flushed to it,
//!   MBR zeroed first and written last, cancellable, verified by reading back.
//! - [`fakesys`]: synthetic sysfs trees modelled on real layouts (tests and `--sysfs-root` demos).
//!
//! Linux only. Errors are one line naming the device or file and what is wrong.

#![cfg(target_os = "linux")]

pub mod check;
pub mod fakesys;
pub mod loopdev;
pub mod safety;
pub mod sysfs;
pub mod write;

/// A device or file that cannot be read, checked or written: one line naming it and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Error {}

impl Error {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
}

/// A device number as the kernel shows it in sysfs `dev` files and `/proc/self/mountinfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct DevT {
    pub major: u32,
    pub minor: u32,
}

impl DevT {
    /// Parse `"8:16"`.
    pub fn parse(s: &str) -> Option<DevT> {
        let (a, b) = s.trim().split_once(':')?;
        Some(DevT {
            major: a.parse().ok()?,
            minor: b.parse().ok()?,
        })
    }
    /// From a `st_rdev`/`st_dev` value (the glibc/kernel "huge" encoding).
    pub fn from_raw(dev: u64) -> DevT {
        DevT {
            major: (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)) as u32,
            minor: ((dev & 0xff) | ((dev >> 12) & !0xff)) as u32,
        }
    }
}

impl std::fmt::Display for DevT {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("8:16", Some((8, 16)))]
    #[case("259:0\n", Some((259, 0)))]
    #[case("8", None)]
    #[case("a:b", None)]
    fn devt_parse(#[case] s: &str, #[case] want: Option<(u32, u32)>) {
        assert_eq!(DevT::parse(s).map(|d| (d.major, d.minor)), want);
    }

    #[test]
    fn devt_raw_matches_the_kernel_encoding() {
        use std::os::unix::fs::MetadataExt;
        // /dev/null is 1:3 on every Linux system.
        let rdev = std::fs::metadata("/dev/null").unwrap().rdev();
        assert_eq!(DevT::from_raw(rdev), DevT { major: 1, minor: 3 });
        // major 259 (blkext), minor 300: bits spread over the high word
        let raw = (259u64 & 0xfff) << 8 | (300u64 & 0xff) | ((300u64 & !0xff) << 12);
        assert_eq!(
            DevT::from_raw(raw),
            DevT {
                major: 259,
                minor: 300
            }
        );
    }
}
