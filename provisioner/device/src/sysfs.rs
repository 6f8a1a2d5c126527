//! What the kernel reports about a block device, read from sysfs.
//!
//! Layout (kernel `Documentation/ABI/stable/sysfs-block`, `.../stable/sysfs-bus-usb`,
//! `drivers/usb/core/sysfs.c`; checked against the `udevadm info -a` walk of a real USB stick:
//! `/devices/pci0000:00/0000:00:1d.7/usb5/5-1/5-1:1.0/host27/target27:0:0/27:0:0:0/block/sdb`):
//!
//! ```text
//! /sys/block/sdb -> ../devices/pci0000:00/0000:00:1d.7/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb
//!   size        512-byte sectors, whatever the logical block size
//!   removable   the SCSI INQUIRY RMB bit (1 = removable media)
//!   ro, dev     read-only flag, "major:minor"
//!   sdb1/       partitions: partition, start, size, dev
//!   holders/    device-mapper/md devices stacked on it
//!   device -> ../../../6:0:0:0   SCSI device: vendor (8 chars), model (16), rev (4), space-padded
//! 0000:00:1d.7/           the host controller (PCI): class 0x0c03PP, PP = prog-if (00 UHCI,
//!                         10 OHCI, 20 EHCI, 30 xHCI)
//!   usb2/                 its root hub (bus 2): idVendor 1d6b, bDeviceClass 09, devpath 0
//!     2-1/                a device on root port 1 (devpath "1"); behind a hub on that port it
//!       2-1.3/            would be 2-1.3 (devpath "1.3"), nested inside the hub's directory
//!       2-1:1.0/          interface 0 of configuration 1: bInterfaceClass 08 (mass storage),
//!                         bInterfaceSubClass 06 (SCSI), bInterfaceProtocol 50 (bulk-only) / 62 (UAS)
//!     2-1 files: idVendor, idProduct, manufacturer, product, serial, busnum, devnum, devpath,
//!                speed (Mb/s: 1.5, 12, 480, 5000, 10000, 20000), version (bcdUSB as "%2x.%02x",
//!                e.g. " 2.00"), bDeviceClass (09 = hub), maxchild (ports of a hub)
//! ```
//!
//! The walk follows the resolved `/sys/block/X` link upwards: the innermost directory with an
//! `idVendor` whose name is a port path (`2-1.3`) is the USB device; the path component below
//! it is the interface the disk hangs off; the USB devices between the root hub (`usbN`) and it
//! are hubs; the root hub's parent is the host controller. Every path in the facts is shown as
//! it is on a live system (`/sys/...`), whatever the sysfs root, so evidence reads the same in
//! tests and on hardware.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{DevT, Error};

/// A sysfs tree: `/` on a live system, a fixture directory holding `sys/...` in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysfs {
    root: PathBuf,
}

/// USB host controller kind, from the PCI class code 0C03h programming interface: the one
/// type of `ufd_formats::policy` (the guest probe reads the same prog-if from PCI config space).
pub use ufd_formats::policy::ControllerKind as HostController;

/// Everything read about one block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockFacts {
    /// Kernel name: `sdb`, `loop0`, `nvme0n1`.
    pub name: String,
    /// `/sys/block/<name>`.
    pub sys_path: String,
    /// Where that link resolves: `/sys/devices/.../block/<name>`.
    pub device_path: String,
    pub dev: Option<DevT>,
    /// `size`: 512-byte sectors.
    pub size_sectors: u64,
    pub size_bytes: u64,
    /// `removable` (SCSI RMB for SCSI disks); None when the file is absent.
    pub removable: Option<bool>,
    pub ro: Option<bool>,
    /// The SCSI device (`device/vendor`, `model`, `rev`), when there is one.
    pub scsi: Option<ScsiFacts>,
    pub partitions: Vec<PartitionFacts>,
    /// Names in `holders/` (device-mapper, md) of the disk itself.
    pub holders: Vec<String>,
    pub transport: Transport,
}

impl BlockFacts {
    /// The USB facts, when the disk is on USB.
    pub fn usb(&self) -> Option<&UsbFacts> {
        match &self.transport {
            Transport::Usb(u) => Some(u),
            _ => None,
        }
    }
    /// `vendor model` of the SCSI device, or of the USB device, or the kernel name.
    pub fn description(&self) -> String {
        if let Some(s) = &self.scsi {
            let d = format!("{} {}", s.vendor, s.model).trim().to_string();
            if !d.is_empty() {
                return d;
            }
        }
        if let Some(u) = self.usb() {
            if let Some(p) = &u.product {
                return p.clone();
            }
        }
        self.name.clone()
    }
}

/// `/sys/block/X/device/{vendor,model,rev}` (space padding removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScsiFacts {
    pub dir: String,
    pub vendor: String,
    pub model: String,
    pub rev: String,
}

/// One partition directory (`/sys/block/sdb/sdb1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionFacts {
    pub name: String,
    pub dev: Option<DevT>,
    pub start_sectors: Option<u64>,
    pub size_sectors: Option<u64>,
    pub holders: Vec<String>,
}

/// How the disk is attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Transport {
    Usb(Box<UsbFacts>),
    Loop(LoopFacts),
    /// Not USB and not loop: `bus` is what the device path shows (ATA, NVMe, virtio, ...).
    Other {
        bus: String,
    },
}

/// `/sys/block/loopN/loop/*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoopFacts {
    /// None when the loop device is not attached (no `loop/` directory).
    pub backing_file: Option<String>,
    pub offset: Option<u64>,
    pub sizelimit: Option<u64>,
    pub partscan: Option<bool>,
    pub autoclear: Option<bool>,
}

/// The USB device a disk hangs off, and its place on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsbFacts {
    /// `/sys/devices/.../usb2/2-1`.
    pub dir: String,
    /// Port path name, `2-1.3`.
    pub name: String,
    pub busnum: Option<u32>,
    /// `devpath`: `1.3` = root port 1, hub port 3.
    pub devpath: Option<String>,
    pub id_vendor: Option<String>,
    pub id_product: Option<String>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    pub serial: Option<String>,
    /// `speed` as written by the kernel (Mb/s): `480`, `5000`, `12`, `1.5`.
    pub speed: Option<String>,
    /// `version` (bcdUSB), e.g. `2.00`.
    pub version: Option<String>,
    /// `version` as BCD (`0x0200`).
    pub bcd_usb: Option<u16>,
    /// The interface the disk hangs off.
    pub interface: Option<InterfaceFacts>,
    /// Hubs between the root hub and the device, outermost first.
    pub hubs: Vec<HubFacts>,
    /// The root hub directory name (`usb2`).
    pub root_hub: Option<String>,
    /// First component of the port path (the root-hub port).
    pub root_port: Option<u32>,
    pub controller: Option<ControllerFacts>,
    /// Other devices on the same controller (and its companion controllers), hubs excluded.
    pub others: Vec<OtherUsb>,
}

impl UsbFacts {
    /// Hubs between the root hub and the device (0 = on a root port; `devpath` `1.3` = 1).
    pub fn hub_depth(&self) -> usize {
        self.hubs.len()
    }
    /// `speed` in Mb/s.
    pub fn speed_mbps(&self) -> Option<f64> {
        self.speed.as_deref()?.parse().ok()
    }
}

/// `bInterfaceClass`, `bInterfaceSubClass`, `bInterfaceProtocol` of one interface directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfaceFacts {
    pub dir: String,
    pub class: Option<u8>,
    pub subclass: Option<u8>,
    pub protocol: Option<u8>,
}

/// A hub on the way from the root hub to the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HubFacts {
    pub name: String,
    pub dir: String,
    /// `idVendor:idProduct`.
    pub id: String,
    pub product: Option<String>,
}

/// The host controller the root hub belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControllerFacts {
    pub dir: String,
    /// Directory name: the PCI address for PCI controllers (`0000:00:1d.7`).
    pub name: String,
    /// PCI `class` (`0x0c0320`), when present.
    pub class: Option<u32>,
    pub kind: Option<HostController>,
    /// Root hubs (`usbN`) of this controller (an xHCI has one for USB 2 and one for USB 3).
    pub root_hubs: Vec<String>,
    /// Companion controllers (UHCI/OHCI functions in the same PCI slot as an EHCI): they
    /// serve the same physical ports at full/low speed.
    pub companions: Vec<String>,
}

/// Another USB device found on the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtherUsb {
    pub name: String,
    pub dir: String,
    pub id: String,
    pub product: Option<String>,
    pub device_class: Option<u8>,
    /// The controller (directory name) it was found under.
    pub controller: String,
    /// Behind the same root-hub port as the UFD (same root hub, same first port).
    pub same_root_port: bool,
}

impl OtherUsb {
    /// `2-4 (046d:c31c USB Keyboard)`.
    pub fn label(&self) -> String {
        match &self.product {
            Some(p) => format!("{} ({} {p})", self.name, self.id),
            None => format!("{} ({})", self.name, self.id),
        }
    }
}

/// Read a sysfs attribute: trimmed (sysfs values end in "\n"; SCSI strings are space-padded).
fn read_attr(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn read_u64(p: &Path) -> Option<u64> {
    read_attr(p)?.parse().ok()
}

fn read_bool(p: &Path) -> Option<bool> {
    match read_attr(p)?.as_str() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

fn read_hex_u8(p: &Path) -> Option<u8> {
    u8::from_str_radix(&read_attr(p)?, 16).ok()
}

/// `version` ("%2x.%02x" of bcdUSB) to BCD: `2.00` → 0x0200, `3.10` → 0x0310.
pub fn parse_bcd_usb(v: &str) -> Option<u16> {
    let (maj, min) = v.trim().split_once('.')?;
    let maj = u16::from_str_radix(maj, 16).ok()?;
    let min = u16::from_str_radix(min, 16).ok()?;
    (maj <= 0xff && min <= 0xff).then_some(maj << 8 | min)
}

/// A USB device directory name: `<bus>-<port>[.<port>...]`.
fn is_usb_device_name(n: &str) -> bool {
    match n.split_once('-') {
        Some((bus, ports)) => {
            !bus.is_empty()
                && bus.bytes().all(|b| b.is_ascii_digit())
                && !ports.is_empty()
                && ports
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        }
        None => false,
    }
}

/// A root hub directory name: `usb<bus>`.
fn is_root_hub_name(n: &str) -> bool {
    n.strip_prefix("usb")
        .is_some_and(|b| !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()))
}

fn sorted_dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A real (non-symlink) directory: sysfs directories hold `subsystem`/`driver` links that
/// lead back up the tree, so walks never follow links.
fn is_real_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

impl Sysfs {
    /// A sysfs tree under `root` (which holds `sys/`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }
    /// The live system's `/sys`.
    pub fn system() -> Self {
        Sysfs::new("/")
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Whether this is the live system (root `/`).
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `rel` ("/sys/block/sdb") under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// How a path under the root is shown: as on a live system (`/sys/...`).
    pub fn show(&self, p: &Path) -> String {
        let root = fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        match p
            .strip_prefix(&root)
            .or_else(|_| p.strip_prefix(&self.root))
        {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => p.display().to_string(),
        }
    }

    /// The kernel name of a device argument: `/dev/sdb` → `sdb`. On the live system a block
    /// special file is resolved through its device number (`/sys/dev/block/M:m`), so
    /// `/dev/disk/by-id/...` links work; otherwise (fixture roots, plain names) the file name is
    /// taken as the name.
    pub fn name_for(&self, device: &Path) -> Result<String, Error> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if self.is_live() {
            if let Ok(m) = fs::metadata(device) {
                if !m.file_type().is_block_device() {
                    return Err(Error::new(format!(
                        "{}: not a block device",
                        device.display()
                    )));
                }
                let d = DevT::from_raw(m.rdev());
                let link = self.path(&format!("/sys/dev/block/{d}"));
                let target = fs::canonicalize(&link).map_err(|e| {
                    Error::new(format!(
                        "{}: device {d} has no sysfs entry {}: {e}",
                        device.display(),
                        link.display()
                    ))
                })?;
                return target
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| Error::new(format!("{}: bad sysfs link", link.display())));
            }
        }
        let name = device
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        validate_name(&name)?;
        Ok(name)
    }

    /// Read everything about block device `name` (`sdb`, `loop0`; not a partition).
    pub fn block(&self, name: &str) -> Result<BlockFacts, Error> {
        validate_name(name)?;
        let sys_path = format!("/sys/block/{name}");
        let link = self.path(&sys_path);
        if fs::symlink_metadata(&link).is_err() {
            return Err(Error::new(format!(
                "no block device {name}: {sys_path} does not exist (a whole disk is needed, not a partition; see lsblk)"
            )));
        }
        let dir = fs::canonicalize(&link)
            .map_err(|e| Error::new(format!("{sys_path}: cannot resolve the link: {e}")))?;
        let size_file = dir.join("size");
        let size_text = read_attr(&size_file).ok_or_else(|| {
            Error::new(format!("{}: missing or unreadable", self.show(&size_file)))
        })?;
        let size_sectors: u64 = size_text.parse().map_err(|_| {
            Error::new(format!(
                "{}: {size_text:?} is not a sector count",
                self.show(&size_file)
            ))
        })?;
        let scsi = {
            let d = dir.join("device");
            // SCSI devices have vendor and model; a virtio device's `vendor` is a PCI ID.
            let model = read_attr(&d.join("model"));
            read_attr(&d.join("vendor"))
                .filter(|_| model.is_some())
                .map(|vendor| ScsiFacts {
                    dir: self.show(&fs::canonicalize(&d).unwrap_or(d.clone())),
                    vendor,
                    model: model.clone().unwrap_or_default(),
                    rev: read_attr(&d.join("rev")).unwrap_or_default(),
                })
        };
        let mut partitions = Vec::new();
        for n in sorted_dir_names(&dir) {
            let p = dir.join(&n);
            if is_real_dir(&p) && p.join("partition").exists() {
                partitions.push(PartitionFacts {
                    dev: read_attr(&p.join("dev")).and_then(|s| DevT::parse(&s)),
                    start_sectors: read_u64(&p.join("start")),
                    size_sectors: read_u64(&p.join("size")),
                    holders: sorted_dir_names(&p.join("holders")),
                    name: n,
                });
            }
        }
        let transport = if name.starts_with("loop") && dir.to_string_lossy().contains("/virtual/") {
            let l = dir.join("loop");
            Transport::Loop(LoopFacts {
                backing_file: read_attr(&l.join("backing_file")),
                offset: read_u64(&l.join("offset")),
                sizelimit: read_u64(&l.join("sizelimit")),
                partscan: read_bool(&l.join("partscan")),
                autoclear: read_bool(&l.join("autoclear")),
            })
        } else if let Some(u) = self.usb_facts(&dir) {
            Transport::Usb(Box::new(u))
        } else {
            Transport::Other {
                bus: bus_of(&self.show(&dir)),
            }
        };
        Ok(BlockFacts {
            name: name.to_string(),
            device_path: self.show(&dir),
            sys_path,
            dev: read_attr(&dir.join("dev")).and_then(|s| DevT::parse(&s)),
            size_sectors,
            size_bytes: size_sectors.saturating_mul(512),
            removable: read_bool(&dir.join("removable")),
            ro: read_bool(&dir.join("ro")),
            scsi,
            partitions,
            holders: sorted_dir_names(&dir.join("holders")),
            transport,
        })
    }

    /// Walk up from the block directory to the USB device, interface, hubs and controller.
    fn usb_facts(&self, block_dir: &Path) -> Option<UsbFacts> {
        // Innermost ancestor that is a USB device (not a root hub).
        let mut dev_dir = None;
        let mut below = None; // the component just below it on the way down: the interface
        let mut prev: Option<&Path> = None;
        for a in block_dir.ancestors() {
            let n = a.file_name()?.to_string_lossy();
            if n == "devices" {
                break;
            }
            if is_usb_device_name(&n) && a.join("idVendor").exists() {
                dev_dir = Some(a.to_path_buf());
                below = prev.map(Path::to_path_buf);
                break;
            }
            prev = Some(a);
        }
        let dev_dir = dev_dir?;
        let name = dev_dir.file_name()?.to_string_lossy().into_owned();
        let interface = below
            .filter(|b| b.join("bInterfaceClass").exists())
            .map(|b| InterfaceFacts {
                dir: self.show(&b),
                class: read_hex_u8(&b.join("bInterfaceClass")),
                subclass: read_hex_u8(&b.join("bInterfaceSubClass")),
                protocol: read_hex_u8(&b.join("bInterfaceProtocol")),
            });
        // Hubs and root hub: ancestors of the device directory.
        let mut hubs = Vec::new();
        let mut root_hub_dir = None;
        for a in dev_dir.ancestors().skip(1) {
            let n = a.file_name()?.to_string_lossy().into_owned();
            if is_root_hub_name(&n) {
                root_hub_dir = Some(a.to_path_buf());
                break;
            }
            if is_usb_device_name(&n) {
                hubs.push(HubFacts {
                    dir: self.show(a),
                    id: usb_id(a),
                    product: read_attr(&a.join("product")),
                    name: n,
                });
            } else {
                break;
            }
        }
        hubs.reverse();
        let root_port = name
            .split_once('-')
            .and_then(|(_, p)| p.split('.').next())
            .and_then(|p| p.parse().ok());
        let controller = root_hub_dir
            .as_ref()
            .and_then(|r| r.parent())
            .map(|c| self.controller_facts(c));
        let mut others = Vec::new();
        if let (Some(rh), Some(ctl_dir)) = (
            &root_hub_dir,
            root_hub_dir.as_ref().and_then(|r| r.parent()),
        ) {
            let rh_name = rh.file_name().map(|n| n.to_string_lossy().into_owned());
            let mut ctl_dirs = vec![ctl_dir.to_path_buf()];
            if let (Some(c), Some(parent)) = (&controller, ctl_dir.parent()) {
                ctl_dirs.extend(c.companions.iter().map(|n| parent.join(n)));
            }
            for cd in ctl_dirs {
                let cname = cd
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                for r in sorted_dir_names(&cd)
                    .into_iter()
                    .filter(|n| is_root_hub_name(n))
                {
                    let same_hub = Some(&r) == rh_name.as_ref();
                    self.collect_devices(
                        &cd.join(&r),
                        &dev_dir,
                        same_hub,
                        root_port,
                        &cname,
                        &mut others,
                    );
                }
            }
        }
        let version = read_attr(&dev_dir.join("version"));
        Some(UsbFacts {
            dir: self.show(&dev_dir),
            busnum: read_attr(&dev_dir.join("busnum")).and_then(|s| s.parse().ok()),
            devpath: read_attr(&dev_dir.join("devpath")),
            id_vendor: read_attr(&dev_dir.join("idVendor")),
            id_product: read_attr(&dev_dir.join("idProduct")),
            manufacturer: read_attr(&dev_dir.join("manufacturer")),
            product: read_attr(&dev_dir.join("product")),
            serial: read_attr(&dev_dir.join("serial")),
            speed: read_attr(&dev_dir.join("speed")),
            bcd_usb: version.as_deref().and_then(parse_bcd_usb),
            version,
            interface,
            hubs,
            root_hub: root_hub_dir
                .and_then(|r| r.file_name().map(|n| n.to_string_lossy().into_owned())),
            root_port,
            controller,
            others,
            name,
        })
    }

    fn controller_facts(&self, dir: &Path) -> ControllerFacts {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let class = pci_class(dir);
        let kind = class
            .filter(|c| c >> 8 == 0x0c03)
            .map(|c| HostController::from_prog_if(c as u8));
        let root_hubs = sorted_dir_names(dir)
            .into_iter()
            .filter(|n| is_root_hub_name(n))
            .collect();
        // Companions: other USB controller functions of the same PCI slot (domain:bus:dev).
        let mut companions = Vec::new();
        if let (Some((slot, _func)), Some(parent)) = (name.rsplit_once('.'), dir.parent()) {
            for n in sorted_dir_names(parent) {
                if n != name
                    && n.rsplit_once('.').is_some_and(|(s, _)| s == slot)
                    && pci_class(&parent.join(&n)).is_some_and(|c| c >> 8 == 0x0c03)
                {
                    companions.push(n);
                }
            }
        }
        ControllerFacts {
            dir: self.show(dir),
            name,
            class,
            kind,
            root_hubs,
            companions,
        }
    }

    /// USB devices under `dir` (a root hub or hub), recursively through hubs; hubs themselves
    /// and `skip` (the UFD) are left out.
    fn collect_devices(
        &self,
        dir: &Path,
        skip: &Path,
        same_root_hub: bool,
        root_port: Option<u32>,
        controller: &str,
        out: &mut Vec<OtherUsb>,
    ) {
        for n in sorted_dir_names(dir) {
            let p = dir.join(&n);
            if !is_usb_device_name(&n) || !is_real_dir(&p) {
                continue;
            }
            let class = read_hex_u8(&p.join("bDeviceClass"));
            if class == Some(0x09) {
                self.collect_devices(&p, skip, same_root_hub, root_port, controller, out);
                continue;
            }
            if p == skip {
                continue;
            }
            let port: Option<u32> = n
                .split_once('-')
                .and_then(|(_, q)| q.split('.').next())
                .and_then(|q| q.parse().ok());
            out.push(OtherUsb {
                dir: self.show(&p),
                id: usb_id(&p),
                product: read_attr(&p.join("product")),
                device_class: class,
                controller: controller.to_string(),
                same_root_port: same_root_hub && port.is_some() && port == root_port,
                name: n,
            });
        }
    }
}

fn pci_class(dir: &Path) -> Option<u32> {
    let s = read_attr(&dir.join("class"))?;
    u32::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

fn usb_id(dir: &Path) -> String {
    format!(
        "{}:{}",
        read_attr(&dir.join("idVendor")).unwrap_or_else(|| "????".into()),
        read_attr(&dir.join("idProduct")).unwrap_or_else(|| "????".into())
    )
}

/// The bus a non-USB disk sits on, from its device path.
fn bus_of(device_path: &str) -> String {
    let has = |s: &str| device_path.split('/').any(|c| c.starts_with(s));
    if device_path.contains("/virtual/") {
        "virtual".into()
    } else if has("nvme") {
        "NVMe".into()
    } else if has("ata") {
        "ATA".into()
    } else if has("virtio") {
        "virtio".into()
    } else if has("mmc") {
        "MMC/SD".into()
    } else if has("host") {
        "SCSI".into()
    } else {
        "unknown".into()
    }
}

fn validate_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(Error::new(format!("{name:?} is not a block device name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(" 2.00", Some(0x0200))]
    #[case(" 1.10", Some(0x0110))]
    #[case(" 3.20", Some(0x0320))]
    #[case("2", None)]
    #[case("x.00", None)]
    fn bcd(#[case] s: &str, #[case] want: Option<u16>) {
        assert_eq!(parse_bcd_usb(s), want);
    }

    #[rstest]
    #[case("2-1", true)]
    #[case("2-1.3.4", true)]
    #[case("2-1:1.0", false)]
    #[case("usb2", false)]
    #[case("2-", false)]
    #[case("-1", false)]
    #[case("2-1..3", false)]
    fn device_names(#[case] n: &str, #[case] want: bool) {
        assert_eq!(is_usb_device_name(n), want);
    }

    #[rstest]
    #[case(
        "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda",
        "ATA"
    )]
    #[case("/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1", "NVMe")]
    #[case("/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda", "virtio")]
    #[case("/sys/devices/virtual/block/zram0", "virtual")]
    fn buses(#[case] p: &str, #[case] want: &str) {
        assert_eq!(bus_of(p), want);
    }

    #[test]
    fn names_are_validated() {
        let s = Sysfs::new("/nonexistent-root");
        assert!(s.block("../etc").is_err());
        let e = s.block("sdz").unwrap_err();
        assert!(e.0.contains("/sys/block/sdz does not exist"), "{e}");
        assert_eq!(s.name_for(Path::new("/dev/sdz")).unwrap(), "sdz");
    }

    #[test]
    fn a_virtio_vendor_id_is_not_a_scsi_vendor() {
        let mut t = crate::fakesys::Tree::default();
        let d = "sys/devices/pci0000:00/0000:00:02.0/virtio1";
        t.attrs(d, &[("vendor", "0x1af4"), ("device", "0x0002")]);
        t.attrs(
            &format!("{d}/block/vda"),
            &[
                ("size", "2048"),
                ("removable", "0"),
                ("ro", "0"),
                ("dev", "254:0"),
            ],
        );
        t.link(format!("{d}/block/vda/device"), "../../../virtio1");
        t.link(
            "sys/block/vda",
            "../devices/pci0000:00/0000:00:02.0/virtio1/block/vda",
        );
        let root = tempfile::tempdir().unwrap();
        t.materialize(root.path()).unwrap();
        let f = Sysfs::new(root.path()).block("vda").unwrap();
        assert_eq!(f.scsi, None);
        assert_eq!(
            f.transport,
            Transport::Other {
                bus: "virtio".into()
            }
        );
        assert_eq!(f.description(), "vda");
    }

    #[test]
    fn live_system_block_device_reads() {
        // Every Linux machine has loop0 or some disk; read whichever exists first.
        let sys = Sysfs::system();
        let names = sorted_dir_names(Path::new("/sys/block"));
        let name = names
            .first()
            .expect("this machine has no block device in /sys/block");
        let f = sys.block(name).unwrap();
        assert_eq!(f.size_bytes, f.size_sectors * 512);
        assert!(
            f.device_path.starts_with("/sys/devices/"),
            "{}",
            f.device_path
        );
        assert!(f.dev.is_some());
    }
}
