//! The checks before anything is written to a device, and the device's identity.
//!
//! Anchor: Rufus, which eliminates system disks, disks with mounted partitions and (unless the
//! user opts in) non-USB disks, and the complaint it answers — "a wrong disk wiped" (peers.md
//! A.3 #4). A write goes through, in this order:
//!
//! 1. [`preflight`]: reads the device's [`Identity`] and every reason to refuse it
//!    ([`Refusal`]): a partition (or the disk, or a device-mapper/md device stacked on it) is
//!    mounted or used as swap, it backs `/`, something holds it, it is read-only, it is smaller
//!    than the image, it has no medium, it is not on USB (unless allowed).
//! 2. The user confirms what [`Identity::summary`] shows (model, serial, size, bus path).
//! 3. [`reidentify`] right before opening: vendor, model, serial, size, device number and bus
//!    path are read again and must equal what was confirmed (a stick swapped for another in the
//!    same port gets the same `/dev/sdX`).
//! 4. [`open_exclusive`]: `O_EXCL` on a block device fails with EBUSY while any partition is
//!    mounted or another program holds it exclusively — the kernel's own last word.
//!
//! Mounts are matched by device number (`major:minor` in `/proc/self/mountinfo` against the
//! `dev` files of the disk, its partitions and their holders), never by name. Files under
//! `/proc` are read below the same root as sysfs, so tests can provide their own.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::sysfs::{BlockFacts, Sysfs, Transport};
use crate::{DevT, Error};

/// What identifies a device: shown to the user before the write and checked again right
/// before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The device as given (`/dev/sdb`, `/dev/disk/by-id/...`).
    pub path: PathBuf,
    /// Kernel name (`sdb`).
    pub name: String,
    pub vendor: Option<String>,
    pub model: Option<String>,
    /// USB serial number (`iSerialNumber`), when the device has one.
    pub serial: Option<String>,
    pub size_bytes: u64,
    pub dev_t: Option<DevT>,
    /// Where it sits: the USB device directory, the loop backing file, or the device path.
    pub location: String,
    /// The root the facts were read below (`/` on a live system).
    pub sysfs_root: PathBuf,
}

impl Identity {
    /// From facts read by [`Sysfs::block`].
    pub fn from_facts(path: &Path, sysfs: &Sysfs, f: &BlockFacts) -> Identity {
        let usb = f.usb();
        Identity {
            path: path.to_path_buf(),
            name: f.name.clone(),
            vendor: f
                .scsi
                .as_ref()
                .map(|s| s.vendor.clone())
                .or_else(|| usb.and_then(|u| u.manufacturer.clone())),
            model: f
                .scsi
                .as_ref()
                .map(|s| s.model.clone())
                .or_else(|| usb.and_then(|u| u.product.clone())),
            serial: usb.and_then(|u| u.serial.clone()),
            size_bytes: f.size_bytes,
            dev_t: f.dev,
            location: match &f.transport {
                Transport::Usb(u) => format!("USB {} ({})", u.name, u.dir),
                Transport::Loop(l) => format!(
                    "loop device backed by {}",
                    l.backing_file.as_deref().unwrap_or("nothing")
                ),
                Transport::Other { bus } => format!("{bus} disk {}", f.device_path),
            },
            sysfs_root: sysfs.root().to_path_buf(),
        }
    }

    /// Read the identity of `path` now.
    pub fn read(sysfs: &Sysfs, path: &Path) -> Result<Identity, Error> {
        let name = sysfs.name_for(path)?;
        let f = sysfs.block(&name)?;
        Ok(Identity::from_facts(path, sysfs, &f))
    }

    /// One line for the confirmation prompt: `/dev/sdb: SanDisk Cruzer Blade, serial X,
    /// 16008609792 bytes (16.00 GB), USB 2-1 (...)`.
    pub fn summary(&self) -> String {
        let model = format!(
            "{} {}",
            self.vendor.as_deref().unwrap_or(""),
            self.model.as_deref().unwrap_or("")
        );
        let model = model.trim();
        format!(
            "{}: {}, serial {}, {} bytes ({}.{:02} GB), {} [{}]",
            self.path.display(),
            if model.is_empty() {
                "unknown model"
            } else {
                model
            },
            self.serial.as_deref().unwrap_or("none"),
            self.size_bytes,
            self.size_bytes / 1_000_000_000,
            (self.size_bytes % 1_000_000_000) / 10_000_000,
            self.location,
            self.dev_t.map_or("?".to_string(), |d| d.to_string()),
        )
    }
}

/// The device is not the one the user confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub path: PathBuf,
    /// (field, confirmed, now) for every field that changed; empty when the device vanished.
    pub changes: Vec<(&'static str, String, String)>,
    /// Why it could not be read again, if it could not.
    pub unreadable: Option<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.unreadable {
            return write!(
                f,
                "{}: cannot identify the device again ({u}); refusing to write",
                self.path.display()
            );
        }
        let c: Vec<String> = self
            .changes
            .iter()
            .map(|(k, a, b)| format!("{k} was {a:?}, is now {b:?}"))
            .collect();
        write!(
            f,
            "{} is not the device that was confirmed: {}; refusing to write",
            self.path.display(),
            c.join(", ")
        )
    }
}
impl std::error::Error for Mismatch {}

/// Read the device again (sysfs, and on a live system the device node's number) and compare
/// with what was confirmed.
pub fn reidentify(expected: &Identity) -> Result<(), Mismatch> {
    let sysfs = Sysfs::new(&expected.sysfs_root);
    let mismatch = |unreadable: Option<String>, changes| Mismatch {
        path: expected.path.clone(),
        changes,
        unreadable,
    };
    let now = Identity::read(&sysfs, &expected.path).map_err(|e| mismatch(Some(e.0), vec![]))?;
    let mut changes = Vec::new();
    let mut cmp = |field: &'static str, a: String, b: String| {
        if a != b {
            changes.push((field, a, b));
        }
    };
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    cmp("kernel name", expected.name.clone(), now.name.clone());
    cmp("vendor", opt(&expected.vendor), opt(&now.vendor));
    cmp("model", opt(&expected.model), opt(&now.model));
    cmp("serial", opt(&expected.serial), opt(&now.serial));
    cmp(
        "size",
        expected.size_bytes.to_string(),
        now.size_bytes.to_string(),
    );
    let dev = |d: Option<DevT>| d.map_or(String::new(), |d| d.to_string());
    cmp("device number", dev(expected.dev_t), dev(now.dev_t));
    cmp("location", expected.location.clone(), now.location.clone());
    if sysfs.is_live() {
        if let Ok(m) = fs::metadata(&expected.path) {
            if m.file_type().is_block_device() {
                cmp(
                    "device node number",
                    dev(expected.dev_t),
                    DevT::from_raw(m.rdev()).to_string(),
                );
            }
        }
    }
    if changes.is_empty() {
        Ok(())
    } else {
        Err(mismatch(None, changes))
    }
}

/// A reason not to write the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Refusal {
    /// `device` (the disk, a partition or a holder) is mounted at `mount_point`.
    Mounted {
        device: String,
        dev: DevT,
        mount_point: String,
    },
    /// The root filesystem lives on it.
    HoldsRoot {
        device: String,
        dev: DevT,
    },
    /// Used as swap (`/proc/swaps`).
    Swap {
        device: String,
    },
    /// A device-mapper/md/LVM device is stacked on it (`holders/`).
    Held {
        device: String,
        holder: String,
    },
    ReadOnly {
        file: String,
    },
    TooSmall {
        device_bytes: u64,
        image_bytes: u64,
    },
    NoMedium,
    /// Not a USB disk (nor a loop device): refused unless the user opts in.
    NotUsb {
        bus: String,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Mounted {
                device,
                dev,
                mount_point,
            } => {
                write!(
                    f,
                    "{device} ({dev}) is mounted at {mount_point}: unmount it first"
                )
            }
            Refusal::HoldsRoot { device, dev } => {
                write!(
                    f,
                    "{device} ({dev}) holds the root filesystem /: this is the system disk"
                )
            }
            Refusal::Swap { device } => write!(f, "{device} is in use as swap (swapoff it first)"),
            Refusal::Held { device, holder } => write!(
                f,
                "{device} is held by {holder} (device-mapper, md or LVM uses it)"
            ),
            Refusal::ReadOnly { file } => write!(f, "the device is read-only ({file} = 1)"),
            Refusal::TooSmall {
                device_bytes,
                image_bytes,
            } => write!(
                f,
                "the device holds {device_bytes} bytes, the image needs {image_bytes}"
            ),
            Refusal::NoMedium => write!(f, "the device reports size 0 (no medium inserted?)"),
            Refusal::NotUsb { bus } => write!(
                f,
                "not a USB device ({bus} disk): refused unless non-USB disks are explicitly allowed"
            ),
        }
    }
}

/// Options of [`preflight`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreflightOptions {
    /// Accept non-USB disks (Rufus' "List USB Hard Drives" is the USB-side equivalent).
    pub allow_non_usb: bool,
}

/// The identity and every refusal found; writing is allowed when `refusals` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preflight {
    pub identity: Identity,
    pub refusals: Vec<Refusal>,
}

impl Preflight {
    pub fn ok(&self) -> bool {
        self.refusals.is_empty()
    }
    /// `Ok(identity)` or one line listing every refusal.
    pub fn into_result(self) -> Result<Identity, Error> {
        if self.refusals.is_empty() {
            return Ok(self.identity);
        }
        let r: Vec<String> = self.refusals.iter().map(|r| r.to_string()).collect();
        Err(Error::new(format!(
            "refusing to write {}: {}",
            self.identity.path.display(),
            r.join("; ")
        )))
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub dev: DevT,
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
}

/// Undo mountinfo's octal escapes (`\040` = space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse `/proc/self/mountinfo` (proc(5)): `id parent major:minor root mount-point options
/// [optional fields...] - fstype source super-options`. Malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            Some(Mount {
                dev: DevT::parse(f.get(2)?)?,
                mount_point: unescape(f.get(4)?),
                fstype: p.first()?.to_string(),
                source: unescape(p.get(1).unwrap_or(&"")),
            })
        })
        .collect()
}

/// The disk, its partitions and everything stacked on them (holders, recursively): name → dev.
fn device_stack(sysfs: &Sysfs, f: &BlockFacts) -> Vec<(String, Option<DevT>, Option<String>)> {
    // (name, dev, holder-of)
    let mut out: Vec<(String, Option<DevT>, Option<String>)> = vec![(f.name.clone(), f.dev, None)];
    let mut queue: Vec<(String, String)> = f
        .holders
        .iter()
        .map(|h| (h.clone(), f.name.clone()))
        .collect();
    for p in &f.partitions {
        out.push((p.name.clone(), p.dev, None));
        queue.extend(p.holders.iter().map(|h| (h.clone(), p.name.clone())));
    }
    let mut seen = 0;
    while let Some((h, of)) = queue.pop() {
        seen += 1;
        if seen > 256 || out.iter().any(|(n, _, _)| *n == h) {
            continue;
        }
        let dir = sysfs.path(&format!("/sys/class/block/{h}"));
        let dev = fs::read_to_string(dir.join("dev"))
            .ok()
            .and_then(|s| DevT::parse(&s));
        if let Ok(rd) = fs::read_dir(dir.join("holders")) {
            for e in rd.flatten() {
                queue.push((e.file_name().to_string_lossy().into_owned(), h.clone()));
            }
        }
        out.push((h, dev, Some(of)));
    }
    out
}

/// Every reason not to write `path` with an image of `image_bytes`.
pub fn preflight(
    sysfs: &Sysfs,
    path: &Path,
    image_bytes: u64,
    opts: PreflightOptions,
) -> Result<Preflight, Error> {
    let name = sysfs.name_for(path)?;
    let f = sysfs.block(&name)?;
    let identity = Identity::from_facts(path, sysfs, &f);
    let mut refusals = Vec::new();
    let stack = device_stack(sysfs, &f);
    let mountinfo_path = sysfs.path("/proc/self/mountinfo");
    let mounts = parse_mountinfo(
        &fs::read_to_string(&mountinfo_path)
            .map_err(|e| Error::new(format!("cannot read {}: {e}", mountinfo_path.display())))?,
    );
    for m in &mounts {
        // Filesystems without a block device of their own (btrfs, overlay: major 0) name
        // their device in the source field.
        let dev = if m.dev.major == 0 && sysfs.is_live() && m.source.starts_with("/dev/") {
            match fs::metadata(&m.source) {
                Ok(md) if md.file_type().is_block_device() => DevT::from_raw(md.rdev()),
                _ => continue,
            }
        } else {
            m.dev
        };
        if let Some((n, _, _)) = stack.iter().find(|(_, d, _)| *d == Some(dev)) {
            let r = if m.mount_point == "/" {
                Refusal::HoldsRoot {
                    device: n.clone(),
                    dev,
                }
            } else {
                Refusal::Mounted {
                    device: n.clone(),
                    dev,
                    mount_point: m.mount_point.clone(),
                }
            };
            if !refusals.contains(&r) {
                refusals.push(r);
            }
        }
    }
    if let Ok(swaps) = fs::read_to_string(sysfs.path("/proc/swaps")) {
        for l in swaps.lines().skip(1) {
            let Some(file) = l.split_whitespace().next() else {
                continue;
            };
            let file = unescape(file);
            let by_dev = sysfs.is_live()
                && fs::metadata(&file).is_ok_and(|m| {
                    m.file_type().is_block_device()
                        && stack
                            .iter()
                            .any(|(_, d, _)| *d == Some(DevT::from_raw(m.rdev())))
                });
            let base = Path::new(&file)
                .file_name()
                .map(|b| b.to_string_lossy().into_owned());
            let by_name = base.is_some_and(|b| stack.iter().any(|(n, _, _)| *n == b));
            if by_dev || by_name {
                refusals.push(Refusal::Swap { device: file });
            }
        }
    }
    for (n, _, of) in &stack {
        if let Some(of) = of {
            let mounted = refusals.iter().any(|r| {
                matches!(r, Refusal::Mounted { device, .. } | Refusal::HoldsRoot { device, .. } if device == n)
            });
            if !mounted {
                refusals.push(Refusal::Held {
                    device: of.clone(),
                    holder: n.clone(),
                });
            }
        }
    }
    if f.ro == Some(true) {
        refusals.push(Refusal::ReadOnly {
            file: format!("{}/ro", f.sys_path),
        });
    }
    if f.size_bytes == 0 {
        refusals.push(Refusal::NoMedium);
    } else if f.size_bytes < image_bytes {
        refusals.push(Refusal::TooSmall {
            device_bytes: f.size_bytes,
            image_bytes,
        });
    }
    if let Transport::Other { bus } = &f.transport {
        if !opts.allow_non_usb {
            refusals.push(Refusal::NotUsb { bus: bus.clone() });
        }
    }
    Ok(Preflight { identity, refusals })
}

/// Open a block device (or file) for writing with `O_EXCL`: on a block device the kernel
/// refuses (EBUSY) while a partition is mounted or another program holds it exclusively. On a
/// regular file Linux ignores `O_EXCL` without `O_CREAT` (open(2)): image files open normally.
pub fn open_exclusive(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_EXCL | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::EBUSY) => Error::new(format!(
                "{}: in use (mounted or opened exclusively by another program)",
                path.display()
            )),
            _ => Error::new(format!("{}: cannot open for writing: {e}", path.display())),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakesys;
    use rstest::rstest;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 27 8:17 / /media/my\\040stick rw,relatime shared:5 - vfat /dev/sdb1 rw
41 27 0:45 / /srv rw - btrfs /dev/sdc2 rw
bad line
";

    #[test]
    fn mountinfo_is_parsed_with_optional_fields_and_escapes() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 4);
        assert_eq!(
            m[1].dev,
            DevT {
                major: 254,
                minor: 0
            }
        );
        assert_eq!(m[1].mount_point, "/");
        assert_eq!(m[2].mount_point, "/media/my stick");
        assert_eq!(m[2].fstype, "vfat");
        assert_eq!(m[2].source, "/dev/sdb1");
        assert_eq!(m[3].dev.major, 0);
    }

    fn root_with(case: &str, mountinfo: &str, swaps: &str) -> (tempfile::TempDir, Sysfs) {
        let (_, tree) = fakesys::case(case).unwrap();
        let d = tempfile::tempdir().unwrap();
        tree.materialize(d.path()).unwrap();
        fs::create_dir_all(d.path().join("proc/self")).unwrap();
        fs::write(d.path().join("proc/self/mountinfo"), mountinfo).unwrap();
        fs::write(d.path().join("proc/swaps"), swaps).unwrap();
        let s = Sysfs::new(d.path());
        (d, s)
    }

    const SWAPS_HEADER: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";

    #[rstest]
    #[case("27 1 254:0 / / rw - ext4 /dev/vda rw\n", "", 0, vec![])]
    #[case(MOUNTINFO, "", 0, vec!["sdb1 (8:17) is mounted at /media/my stick: unmount it first"])]
    #[case("27 1 8:17 / / rw - ext4 /dev/sdb1 rw\n", "", 0, vec!["sdb1 (8:17) holds the root filesystem /: this is the system disk"])]
    #[case("27 1 8:16 / /mnt rw - ext4 /dev/sdb rw\n", "", 0, vec!["sdb (8:16) is mounted at /mnt: unmount it first"])]
    #[case("", "/dev/sdb1 partition 1024 0 -2\n", 0, vec!["/dev/sdb1 is in use as swap (swapoff it first)"])]
    #[case("", "", 17_000_000_000, vec!["the device holds 16008609792 bytes, the image needs 17000000000"])]
    fn refusals(
        #[case] mi: &str,
        #[case] swaps: &str,
        #[case] image: u64,
        #[case] want: Vec<&str>,
    ) {
        let (_d, s) = root_with("conformant", mi, &format!("{SWAPS_HEADER}{swaps}"));
        let p = preflight(
            &s,
            Path::new("/dev/sdb"),
            image,
            PreflightOptions::default(),
        )
        .unwrap();
        let got: Vec<String> = p.refusals.iter().map(|r| r.to_string()).collect();
        assert_eq!(got, want);
        assert_eq!(p.ok(), want.is_empty());
    }

    #[test]
    fn holders_are_followed_to_a_mounted_root() {
        let (d, s) = root_with(
            "conformant",
            "27 1 253:0 / / rw - ext4 /dev/mapper/vg-root rw\n",
            SWAPS_HEADER,
        );
        // dm-0 stacked on sdb1, as LVM would.
        let part = s.path(&format!("{}/sdb1", s.block("sdb").unwrap().device_path));
        std::os::unix::fs::symlink("../../dm-0", part.join("holders/dm-0")).unwrap();
        fs::create_dir_all(d.path().join("sys/class/block/dm-0/holders")).unwrap();
        fs::write(d.path().join("sys/class/block/dm-0/dev"), "253:0\n").unwrap();
        let p = preflight(&s, Path::new("/dev/sdb"), 0, PreflightOptions::default()).unwrap();
        assert_eq!(
            p.refusals,
            vec![Refusal::HoldsRoot {
                device: "dm-0".into(),
                dev: DevT {
                    major: 253,
                    minor: 0
                }
            }]
        );
        // Unmounted but still held.
        fs::write(d.path().join("proc/self/mountinfo"), "").unwrap();
        let p = preflight(&s, Path::new("/dev/sdb"), 0, PreflightOptions::default()).unwrap();
        assert_eq!(
            p.refusals,
            vec![Refusal::Held {
                device: "sdb1".into(),
                holder: "dm-0".into()
            }]
        );
        let e = p.into_result().unwrap_err();
        assert!(
            e.0.starts_with("refusing to write /dev/sdb: sdb1 is held by dm-0"),
            "{e}"
        );
    }

    #[test]
    fn non_usb_needs_opt_in_and_read_only_is_refused() {
        let (d, s) = root_with("sata-disk", "", SWAPS_HEADER);
        let p = preflight(&s, Path::new("/dev/sda"), 0, PreflightOptions::default()).unwrap();
        assert_eq!(p.refusals, vec![Refusal::NotUsb { bus: "ATA".into() }]);
        let p = preflight(
            &s,
            Path::new("/dev/sda"),
            0,
            PreflightOptions {
                allow_non_usb: true,
            },
        )
        .unwrap();
        assert!(p.ok());
        let ro = d.path().join("sys/block/sda/ro");
        fs::write(&ro, "1\n").unwrap();
        let p = preflight(
            &s,
            Path::new("/dev/sda"),
            0,
            PreflightOptions {
                allow_non_usb: true,
            },
        )
        .unwrap();
        assert_eq!(
            p.refusals,
            vec![Refusal::ReadOnly {
                file: "/sys/block/sda/ro".into()
            }]
        );
    }

    #[test]
    fn reidentify_detects_a_swapped_stick() {
        let (d, s) = root_with("conformant", "", SWAPS_HEADER);
        let id = Identity::read(&s, Path::new("/dev/sdb")).unwrap();
        assert_eq!(id.serial.as_deref(), Some("4C530001230518115442"));
        assert!(id.summary().starts_with(
            "/dev/sdb: SanDisk Cruzer Blade, serial 4C530001230518115442, 16008609792 bytes (16.00 GB), USB 2-1"
        ), "{}", id.summary());
        reidentify(&id).unwrap();
        let serial = d
            .path()
            .join("sys/devices/pci0000:00/0000:00:1d.7/usb2/2-1/serial");
        fs::write(&serial, "OTHER\n").unwrap();
        let m = reidentify(&id).unwrap_err();
        assert_eq!(
            m.changes,
            vec![("serial", "4C530001230518115442".into(), "OTHER".into())]
        );
        assert!(
            m.to_string()
                .contains("serial was \"4C530001230518115442\", is now \"OTHER\""),
            "{m}"
        );
        fs::remove_file(d.path().join("sys/block/sdb")).unwrap();
        let m = reidentify(&id).unwrap_err();
        assert!(
            m.unreadable.is_some() && m.to_string().contains("cannot identify the device again"),
            "{m}"
        );
    }

    /// The live system: the disk holding `/` is refused as the system disk.
    #[test]
    fn the_live_root_disk_is_refused() {
        let sys = Sysfs::system();
        let mounts = parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap());
        let root = mounts.iter().rev().find(|m| m.mount_point == "/").unwrap();
        assert_ne!(
            root.dev.major, 0,
            "this test needs / on a block device: {root:?}"
        );
        // /sys/dev/block/M:m is the disk or a partition of it (whose parent is the disk).
        let dir = fs::canonicalize(format!("/sys/dev/block/{}", root.dev)).unwrap();
        let disk_dir = if dir.join("partition").exists() {
            dir.parent().unwrap().to_path_buf()
        } else {
            dir
        };
        let disk = disk_dir.file_name().unwrap().to_string_lossy().into_owned();
        let node = PathBuf::from(format!("/dev/{disk}"));
        assert!(node.exists(), "{} missing", node.display());
        let p = preflight(
            &sys,
            &node,
            0,
            PreflightOptions {
                allow_non_usb: true,
            },
        )
        .unwrap();
        assert!(
            p.refusals
                .iter()
                .any(|r| matches!(r, Refusal::HoldsRoot { .. })),
            "{:?}",
            p.refusals
        );
    }

    #[test]
    fn exclusive_open_of_files() {
        let f = tempfile::NamedTempFile::new().unwrap();
        open_exclusive(f.path()).unwrap();
        let e = open_exclusive(Path::new("/nonexistent/ufd.img")).unwrap_err();
        assert!(
            e.0.starts_with("/nonexistent/ufd.img: cannot open for writing"),
            "{e}"
        );
    }
}
