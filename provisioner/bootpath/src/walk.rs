//! The boot path, hop by hop, as Windows Boot Manager, winload and the kernel walk it on the
//! UFD: MBR → partitions → BCD (FAT32 ESP `\EFI\Microsoft\Boot\BCD`, or NTFS `\Boot\BCD`) →
//! `{bootmgr}` default loader → its `device` resolved against THIS disk (MBR signature +
//! partition byte offset) → the host NTFS partition → the VHD file (through its data runs) →
//! fixed-VHD footer → inner MBR → inner NTFS → the loader's `path` (winload) exists → SYSTEM
//! hive → `Select\Default` → the values the kernel and the OEM rules care about.
//!
//! The `system-hive` hop also gathers IMG-GENERALIZED's evidence, as `ufd inspect` does: the
//! hive root's `Setup` values ([`ufd_formats::system::setup_values`]) and
//! `\Windows\Setup\State\State.ini` read from the same inner NTFS volume. Neither is on the
//! boot path, so an absent or unreadable State.ini is evidence for the verdict, never a failed
//! hop; a `Setup` value of the wrong type fails the hop (the hive is malformed where a rule
//! reads it, which `ufd inspect` also reports as an unreadable hive).
//!
//! VHDX (Hyper-V Server 2012, issue #7): when the loader's file is named `*.vhdx` or starts
//! with `vhdxfile`, the `vhd-footer` hop opens it with [`ufd_formats::vhdx::Vhdx`] instead
//! (file identifier, current header, region table, metadata, BAT) and requires it fixed; a
//! dynamic, dirty-log, differencing or truncated VHDX fails that hop with the refusal's name
//! (`not-fixed`, `dirty-log`, `differencing`, `truncated`) first in the evidence. The inner
//! hops then read the virtual disk through the BAT ([`crate::dev::VhdxDisk`]), unchanged.
//!
//! Every hop becomes a [`Hop`] with a status and evidence; the walk stops at the first hop it
//! cannot get past and marks the rest "not reached". Bad bytes anywhere are a failed hop,
//! never a panic. The same record comes out on the host (tests, `ufd inspect`-like tools)
//! and in the guest (UEFI probe, BIOS stand-in), because only [`Dev`] differs.
//!
//! Facts vs reconstruction: the BCD element IDs (`23000003` default, `11000001` device,
//! `21000001` osdevice, `12000002` path) and the VHD device forms are those of
//! `ufd_formats::bcd` (formats.md §2.6); that the boot manager matches an MBR partition by disk
//! signature and byte offset is documented for `bcdedit` qualified partitions and is what
//! `ufd inspect` checks too.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use ufd_formats::bcd::guid::well_known;
use ufd_formats::bcd::{
    Device, ElementType, ElementValue, Guid, ObjectType, PartitionLocation, Store,
};
use ufd_formats::hive::Hive;
use ufd_formats::mbr::{Mbr, PartitionEntry};
use ufd_formats::policy::image::{judge_generalized, state_ini_image_state, SetupValues};
use ufd_formats::policy::{self, Outcome, Verdict};
use ufd_formats::vhd::{read_footer, DiskType, Footer, ReadError};
use ufd_formats::vhdx::{Refusal, Vhdx};

use crate::dev::{read_vec, Dev, Runs, Slice, VhdxDisk};
use crate::fat::Fat;
use crate::ntfsvol::{Volume, ATTR_IS_COMPRESSED, ATTR_IS_ENCRYPTED, ATTR_IS_SPARSE};

/// Where the UEFI boot manager keeps its store on the system partition (bcdboot /f UEFI).
pub const UEFI_BCD_PATH: &str = "\\EFI\\Microsoft\\Boot\\BCD";
/// Where the BIOS boot manager keeps it on the active partition (bcdboot /f BIOS).
pub const BIOS_BCD_PATH: &str = "\\Boot\\BCD";
/// The SYSTEM hive inside the Windows volume.
pub const SYSTEM_HIVE_PATH: &str = "\\Windows\\System32\\config\\SYSTEM";
/// Where Setup and sysprep record the image's state (`ImageState`, Microsoft Learn "Windows
/// Setup States").
pub const STATE_INI_PATH: &str = "\\Windows\\Setup\\State\\State.ini";
/// Largest State.ini read (the cap `ufd inspect` uses; the real file is a few dozen bytes).
pub const STATE_INI_MAX_BYTES: u64 = 1 << 20;
/// The values read from the SYSTEM hive's default control set, read by the shared reader
/// that `ufd inspect` and the provisioner use too.
pub use ufd_formats::system::{SystemValues, USB_SERVICES};

/// BCD element types used by the walk (formats.md §2).
pub mod element {
    pub const DEVICE: u32 = 0x1100_0001;
    pub const PATH: u32 = 0x1200_0002;
    pub const DESCRIPTION: u32 = 0x1200_0004;
    pub const DEFAULT_OBJECT: u32 = 0x2300_0003;
    pub const OSDEVICE: u32 = 0x2100_0001;
}

/// The hops, in walking order.
pub const HOPS: &[&str] = &[
    "mbr",
    "partitions",
    "bcd",
    "default-loader",
    "loader-device",
    "host-ntfs",
    "vhd-file",
    "vhd-footer",
    "inner-mbr",
    "inner-ntfs",
    "winload",
    "system-hive",
    "select",
    "system-values",
];

/// How a hop went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Fail,
    /// An earlier hop failed.
    NotReached,
}

impl Status {
    pub fn text(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "fail",
            Status::NotReached => "not-reached",
        }
    }
}

/// One hop of the boot path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// One of [`HOPS`].
    pub step: &'static str,
    pub status: Status,
    /// What was read (ok) or what is wrong (fail), with offsets where they matter.
    pub evidence: String,
}

/// Walk settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Byte offset of the partition the firmware loaded the boot manager from (UEFI: from
    /// the LoadedImage device path's `HD()` node); searched first for the BCD.
    pub boot_partition_offset: Option<u64>,
    /// Largest BCD or hive read whole (a 2008 R2 SYSTEM hive is ~10-20 MB).
    pub max_hive_bytes: u64,
    /// Where the evidence was read, prefixed to verdict sources (e.g. `firmware BlockIo`).
    pub source: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            boot_partition_offset: None,
            max_hive_bytes: 128 << 20,
            source: "disk".to_string(),
        }
    }
}

/// What `\Windows\Setup\State\State.ini` gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateIni {
    /// No such file (an image sysprep never ran on, or one made without Setup).
    Absent,
    /// Read: its `ImageState` value, if it has one.
    Read(Option<String>),
    /// It exists but could not be read (the NTFS error).
    Unreadable(String),
}

impl StateIni {
    /// The `ImageState` IMG-GENERALIZED judges first (`None` unless the file was read and has
    /// one).
    pub fn image_state(&self) -> Option<&str> {
        match self {
            StateIni::Read(s) => s.as_deref(),
            _ => None,
        }
    }
}

/// IMG-GENERALIZED's evidence, gathered in the `system-hive` hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupState {
    /// The SYSTEM hive root's `Setup` values (`None`: no `Setup` key).
    pub setup: Option<SetupValues>,
    pub state_ini: StateIni,
}

/// Everything the walk found.
#[derive(Clone, Debug, Default)]
pub struct BootPath {
    pub disk_size: u64,
    pub disk_signature: Option<u32>,
    /// The disk signature the BCD's default loader names (what the kernel phase waits for).
    pub loader_disk_signature: Option<u32>,
    /// The store, and where it was read.
    pub store: Option<(Store, String)>,
    pub loader: Option<Guid>,
    /// The loader's `path` element (winload).
    pub loader_path: Option<String>,
    /// The VHD path on the host partition and the host partition's byte offset.
    pub vhd: Option<(String, u64)>,
    /// The VHD file's data size, when it exists on the host partition.
    pub vhd_file_size: Option<u64>,
    pub vhd_footer: Option<Footer>,
    /// The VHDX, when the loader's file is one (then `vhd_footer` is `None`).
    pub vhdx: Option<Vhdx>,
    pub system: Option<SystemValues>,
    /// IMG-GENERALIZED's evidence (`None`: the `system-hive` hop did not pass that far).
    pub setup_state: Option<SetupState>,
    pub hops: Vec<Hop>,
    pub verdicts: Vec<Verdict>,
}

impl BootPath {
    /// The hop named `step`.
    pub fn hop(&self, step: &str) -> Option<&Hop> {
        self.hops.iter().find(|h| h.step == step)
    }
    /// The verdict of `rule`.
    pub fn verdict(&self, rule: &str) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.rule == rule)
    }
    /// Whether every hop passed.
    pub fn complete(&self) -> bool {
        self.hops.len() == HOPS.len() && self.hops.iter().all(|h| h.status == Status::Ok)
    }
}

struct Walker<'o> {
    out: BootPath,
    opts: &'o Options,
}

impl Walker<'_> {
    fn ok(&mut self, step: &'static str, evidence: String) {
        self.out.hops.push(Hop {
            step,
            status: Status::Ok,
            evidence,
        });
    }
    /// Record a failure and mark every later hop "not reached".
    fn fail(&mut self, step: &'static str, evidence: String) {
        self.out.hops.push(Hop {
            step,
            status: Status::Fail,
            evidence: evidence.clone(),
        });
        let from = HOPS
            .iter()
            .position(|h| *h == step)
            .map_or(HOPS.len(), |p| p + 1);
        for s in &HOPS[from..] {
            self.out.hops.push(Hop {
                step: s,
                status: Status::NotReached,
                evidence: format!("{step} failed"),
            });
        }
    }
    fn src(&self, what: &str) -> String {
        format!("{} {what}", self.opts.source)
    }
}

fn part_text(i: usize, p: &PartitionEntry) -> String {
    format!(
        "{}: type {:02x}{} LBA {}+{}",
        i + 1,
        p.partition_type,
        if p.active { " active" } else { "" },
        p.lba_start,
        p.sector_count
    )
}

/// Walk the boot path on `disk`. Never panics on bad bytes: problems are failed hops.
pub fn walk(disk: &mut dyn Dev, opts: &Options) -> BootPath {
    let mut w = Walker {
        out: BootPath {
            disk_size: disk.size(),
            ..BootPath::default()
        },
        opts,
    };
    w.out.verdicts.push(policy::judge_capacity(
        disk.size(),
        false,
        &w.src("disk size"),
    ));
    walk_disk(&mut w, disk);
    judge(&mut w);
    w.out
}

fn walk_disk(w: &mut Walker<'_>, disk: &mut dyn Dev) {
    // 1. MBR
    let mbr = match read_vec(disk, 0, 512).and_then(|s| Mbr::parse(&s).map_err(|e| e.to_string())) {
        Ok(m) => m,
        Err(e) => return w.fail("mbr", format!("LBA 0: {e}")),
    };
    w.out.disk_signature = Some(mbr.disk_signature);
    let findings = mbr.validate(Some(disk.size() / 512), None);
    w.ok(
        "mbr",
        format!(
            "signature {:#010x}, {} bytes{}",
            mbr.disk_signature,
            disk.size(),
            if findings.is_empty() {
                String::new()
            } else {
                let f: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
                format!("; problems: {}", f.join("; "))
            }
        ),
    );
    // 2. partitions
    let used: Vec<(usize, PartitionEntry)> = mbr
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.is_empty())
        .map(|(i, p)| (i, *p))
        .collect();
    if used.is_empty() {
        return w.fail("partitions", "the partition table is empty".into());
    }
    let list: Vec<String> = used.iter().map(|(i, p)| part_text(*i, p)).collect();
    w.ok("partitions", list.join(", "));
    // 3. BCD: the boot partition first, then the active one, then the rest in table order
    let mut order: Vec<(usize, PartitionEntry)> = Vec::new();
    let boot = w.opts.boot_partition_offset;
    for pick in [
        &|p: &PartitionEntry| Some(u64::from(p.lba_start) * 512) == boot,
        &|p: &PartitionEntry| p.active,
        &|_: &PartitionEntry| true,
    ] as [&dyn Fn(&PartitionEntry) -> bool; 3]
    {
        for (i, p) in &used {
            if pick(p) && !order.iter().any(|(j, _)| j == i) {
                order.push((*i, *p));
            }
        }
    }
    let mut tried = Vec::new();
    let mut found: Option<(Vec<u8>, String)> = None;
    for (i, p) in &order {
        let mut part = Slice::new(
            disk,
            u64::from(p.lba_start) * 512,
            u64::from(p.sector_count) * 512,
        );
        match find_bcd(&mut part, w.opts.max_hive_bytes) {
            Ok((data, fs, path)) => {
                found = Some((data, format!("partition {} ({fs}) {path}", i + 1)));
                break;
            }
            Err(e) => tried.push(format!("partition {}: {e}", i + 1)),
        }
    }
    let Some((bcd, bcd_src)) = found else {
        return w.fail("bcd", format!("no BCD store found: {}", tried.join("; ")));
    };
    let store = match Hive::parse(&bcd).and_then(|h| Store::from_hive(&h)) {
        Ok(s) => s,
        Err(e) => {
            return w.fail(
                "bcd",
                format!(
                    "{bcd_src}: {} bytes, not a readable BCD store: {e}",
                    bcd.len()
                ),
            )
        }
    };
    w.ok(
        "bcd",
        format!(
            "{bcd_src}: {} bytes, {} objects",
            bcd.len(),
            store.objects.len()
        ),
    );
    w.out.store = Some((store.clone(), bcd_src.clone()));
    // 4. default loader
    let Some(bm) = store.object(&well_known::BOOTMGR) else {
        return w.fail("default-loader", "the store has no {bootmgr} object".into());
    };
    let Some(ElementValue::Object(default)) = bm
        .element(ElementType(element::DEFAULT_OBJECT))
        .map(|e| &e.value)
    else {
        return w.fail(
            "default-loader",
            "{bootmgr} has no default (23000003)".into(),
        );
    };
    let default = *default;
    let Some(loader) = store.object(&default) else {
        return w.fail(
            "default-loader",
            format!("{{bootmgr}} default {default} is not in the store"),
        );
    };
    if loader.object_type != ObjectType::OSLOADER {
        return w.fail(
            "default-loader",
            format!(
                "default {default} is type {:#010x}, not a Windows Boot Loader (0x10200003)",
                loader.object_type.0
            ),
        );
    }
    let path = match loader.element(ElementType(element::PATH)).map(|e| &e.value) {
        Some(ElementValue::String(s)) => s.clone(),
        _ => {
            return w.fail(
                "default-loader",
                format!("default loader {default} has no path (12000002)"),
            )
        }
    };
    let desc = match loader
        .element(ElementType(element::DESCRIPTION))
        .map(|e| &e.value)
    {
        Some(ElementValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    w.out.loader = Some(default);
    w.out.loader_path = Some(path.clone());
    w.ok("default-loader", format!("{default} {desc:?} path {path}"));
    // 5. the loader's device, resolved against this disk
    let Some(ElementValue::Device(dev)) = loader
        .element(ElementType(element::DEVICE))
        .map(|e| &e.value)
    else {
        return w.fail(
            "loader-device",
            format!("default loader {default} has no device (11000001)"),
        );
    };
    let Some((host, file)) = dev.device.vhd_file() else {
        return w.fail(
            "loader-device",
            "the loader's device is not a VHD device (vhd=[...]\\file)".into(),
        );
    };
    let Device::Partition(PartitionLocation::Mbr {
        disk_signature,
        offset,
    }) = host
    else {
        return w.fail(
            "loader-device",
            "the VHD's host device is not an MBR partition (signature + offset)".into(),
        );
    };
    let (sig, off) = (*disk_signature, *offset);
    w.out.loader_disk_signature = Some(sig);
    if sig != mbr.disk_signature {
        return w.fail(
            "loader-device",
            format!("vhd=[<disk {sig:#010x}, offset {off}>]{file}: this disk's signature is {:#010x}, so the boot manager would not find the VHD here", mbr.disk_signature),
        );
    }
    let Some((hi, hp)) = used
        .iter()
        .find(|(_, p)| u64::from(p.lba_start) * 512 == off)
    else {
        return w.fail(
            "loader-device",
            format!("vhd=[<disk {sig:#010x}, offset {off}>]{file}: no partition of this disk starts at byte {off}"),
        );
    };
    let osdev = match loader
        .element(ElementType(element::OSDEVICE))
        .map(|e| &e.value)
    {
        Some(ElementValue::Device(d)) if d.device.vhd_file() == dev.device.vhd_file() => {
            "; osdevice names the same VHD"
        }
        Some(ElementValue::Device(_)) => "; osdevice names another device",
        _ => "; no osdevice",
    };
    w.out.vhd = Some((file.to_string(), off));
    w.ok(
        "loader-device",
        format!(
            "vhd=[<disk {sig:#010x}, offset {off}>]{file} = partition {} of this disk{osdev}",
            hi + 1
        ),
    );
    // 6. host NTFS
    let mut hpart = Slice::new(disk, off, u64::from(hp.sector_count) * 512);
    let mut vol = match Volume::open(&mut hpart) {
        Ok(v) => v,
        Err(e) => return w.fail("host-ntfs", format!("partition {}: {e}", hi + 1)),
    };
    w.ok(
        "host-ntfs",
        format!(
            "partition {}: NTFS label {:?}, {} bytes, cluster {} bytes",
            hi + 1,
            vol.label.as_deref().unwrap_or(""),
            vol.size,
            vol.cluster_size
        ),
    );
    // 7. the VHD file
    let data = match vol.file_data(file) {
        Ok(Some(d)) => d,
        Ok(None) => {
            return w.fail(
                "vhd-file",
                format!("{file} does not exist on partition {}", hi + 1),
            )
        }
        Err(e) => return w.fail("vhd-file", e),
    };
    if data.flags & (ATTR_IS_COMPRESSED | ATTR_IS_ENCRYPTED) != 0 || data.resident.is_some() {
        return w.fail(
            "vhd-file",
            format!(
                "{file}: $DATA flags {:#06x}{}: native VHD boot reads plain extents",
                data.flags,
                if data.resident.is_some() {
                    ", resident"
                } else {
                    ""
                }
            ),
        );
    }
    w.out.vhd_file_size = Some(data.size);
    let (holes, hole_bytes) = data.holes();
    let evidence = format!(
        "{file}: {} bytes, {} data run(s), MFT record {}{}",
        data.size,
        data.runs.len(),
        data.record,
        if holes > 0 || data.flags & ATTR_IS_SPARSE != 0 {
            format!(", SPARSE: {holes} hole(s) covering {hole_bytes} bytes")
        } else {
            String::new()
        }
    );
    let sparse = holes > 0 || data.flags & ATTR_IS_SPARSE != 0;
    if sparse {
        w.out.hops.push(Hop {
            step: "vhd-file",
            status: Status::Fail,
            evidence,
        });
    } else {
        w.ok("vhd-file", evidence);
    }
    let size = data.size;
    let mut vhd = Runs::new(vol.dev(), data.runs, size);
    // 8. VHDX: headers, region table, metadata and BAT; the virtual disk through the BAT.
    if let Some(renamed) = is_vhdx(file, &mut vhd) {
        let x = match Vhdx::open(&mut DevReader(&mut vhd)) {
            Ok(x) => x,
            Err(e) => return w.fail("vhd-footer", vhdx_refusal(file, &e)),
        };
        w.out.vhdx = Some(x.clone());
        if let Err(e) = x.require_fixed() {
            return w.fail(
                "vhd-footer",
                format!("{file}: {}: {e}", Refusal::NotFixed.name()),
            );
        }
        w.ok(
            "vhd-footer",
            format!(
                "{}; {}; payload in {} file extent(s){}",
                x.short(),
                x.header_info().other_text(),
                x.file_extents,
                if renamed {
                    "; NOTE: the file name does not end in .vhdx (Windows picks the format by extension [reconstructed])"
                } else {
                    ""
                }
            ),
        );
        let mut inner = VhdxDisk::new(&mut vhd, x);
        return walk_inner(w, &mut inner, &path);
    }
    // 8. VHD footer
    let footer = match read_footer(&mut DevReader(&mut vhd)) {
        Ok(f) => f,
        Err(e) => return w.fail("vhd-footer", format!("{file}: {e}")),
    };
    w.out.vhd_footer = Some(footer.clone());
    if let Err(e) = footer.require_fixed() {
        return w.fail("vhd-footer", format!("{file}: {e}"));
    }
    w.ok(
        "vhd-footer",
        format!(
            "fixed VHD, current size {} bytes, checksum {:#010x} valid",
            footer.current_size, footer.checksum
        ),
    );
    if footer.disk_type != DiskType::Fixed {
        return;
    }
    let mut inner = Slice::new(&mut vhd, 0, footer.current_size);
    walk_inner(w, &mut inner, &path);
}

/// Is the loader's file a VHDX? ([`ufd_formats::vhdx::is_vhdx`] on its name and first bytes.)
fn is_vhdx(file: &str, vhd: &mut dyn Dev) -> Option<bool> {
    let mut sig = [0u8; 8];
    let head: &[u8] = if vhd.size() >= 8 && vhd.read_at(0, &mut sig).is_ok() {
        &sig
    } else {
        &[]
    };
    ufd_formats::vhdx::is_vhdx(file, head)
}

/// The `vhd-footer` evidence for a VHDX that cannot be opened: the refusal's name
/// (`dirty-log`, `differencing`, `truncated`) first when it is one of those.
fn vhdx_refusal(file: &str, e: &ReadError<String>) -> String {
    match e {
        ReadError::Format(f) => match Refusal::of(f) {
            Some(r) => format!("{file}: {}: {f}", r.name()),
            None => format!("{file}: {f}"),
        },
        ReadError::Io(io) => format!("{file}: I/O error: {io}"),
    }
}

/// Hops 9–14, inside the virtual disk (a fixed VHD's data or a fixed VHDX's payload).
fn walk_inner(w: &mut Walker<'_>, inner: &mut dyn Dev, path: &str) {
    // 9. inner MBR
    let imbr = match read_vec(inner, 0, 512).and_then(|s| Mbr::parse(&s).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => return w.fail("inner-mbr", format!("VHD LBA 0: {e}")),
    };
    let ntfs_parts: Vec<(usize, PartitionEntry)> = imbr
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.partition_type == ufd_formats::mbr::partition_type::NTFS)
        .map(|(i, p)| (i, *p))
        .collect();
    let Some((ii, ip)) = ntfs_parts
        .iter()
        .find(|(_, p)| p.active)
        .or(ntfs_parts.first())
        .copied()
    else {
        return w.fail(
            "inner-mbr",
            format!(
                "signature {:#010x}: no NTFS (07) partition",
                imbr.disk_signature
            ),
        );
    };
    w.ok(
        "inner-mbr",
        format!(
            "signature {:#010x}, Windows partition {}",
            imbr.disk_signature,
            part_text(ii, &ip)
        ),
    );
    // 10. inner NTFS
    let mut ipart = Slice::new(
        inner,
        u64::from(ip.lba_start) * 512,
        u64::from(ip.sector_count) * 512,
    );
    let mut ivol = match Volume::open(&mut ipart) {
        Ok(v) => v,
        Err(e) => return w.fail("inner-ntfs", format!("VHD partition {}: {e}", ii + 1)),
    };
    w.ok(
        "inner-ntfs",
        format!(
            "VHD partition {}: NTFS label {:?}, {} bytes",
            ii + 1,
            ivol.label.as_deref().unwrap_or(""),
            ivol.size
        ),
    );
    // 11. winload
    match ivol.stat(path) {
        Ok(Some(false)) => w.ok("winload", format!("{path} exists")),
        Ok(Some(true)) => return w.fail("winload", format!("{path} is a directory")),
        Ok(None) => return w.fail("winload", format!("{path} does not exist in the VHD")),
        Err(e) => return w.fail("winload", format!("{path}: {e}")),
    }
    // 12. SYSTEM hive
    let hive_bytes = match ivol.read_file(SYSTEM_HIVE_PATH, w.opts.max_hive_bytes) {
        Ok(Some(b)) => b,
        Ok(None) => return w.fail("system-hive", format!("{SYSTEM_HIVE_PATH} does not exist")),
        Err(e) => return w.fail("system-hive", e),
    };
    let hive = match Hive::parse(&hive_bytes) {
        Ok(h) => h,
        Err(e) => return w.fail("system-hive", format!("{SYSTEM_HIVE_PATH}: {e}")),
    };
    if hive.base().is_dirty() {
        return w.fail(
            "system-hive",
            format!(
                "{SYSTEM_HIVE_PATH}: dirty (sequence {} != {}): the log was not replayed",
                hive.base().seq1,
                hive.base().seq2
            ),
        );
    }
    // IMG-GENERALIZED's evidence: the root `Setup` key and State.ini, as `ufd inspect` reads them.
    let setup = match ufd_formats::system::setup_values(&hive) {
        Ok(s) => s,
        Err(e) => return w.fail("system-hive", format!("{SYSTEM_HIVE_PATH} Setup: {e}")),
    };
    let state_ini = match ivol.read_file(STATE_INI_PATH, STATE_INI_MAX_BYTES) {
        Ok(Some(b)) => StateIni::Read(state_ini_image_state(&b)),
        Ok(None) => StateIni::Absent,
        Err(e) => StateIni::Unreadable(e),
    };
    w.out.setup_state = Some(SetupState { setup, state_ini });
    w.ok(
        "system-hive",
        format!("{SYSTEM_HIVE_PATH}: {} bytes, clean", hive_bytes.len()),
    );
    // 13. Select
    let cs = match ufd_formats::system::dword(&hive, "Select", "Default") {
        Ok(Some(d)) => format!("ControlSet{d:03}"),
        Ok(None) => return w.fail("select", "Select\\Default is absent".into()),
        Err(e) => return w.fail("select", format!("Select\\Default: {e}")),
    };
    match hive.open(&cs) {
        Ok(Some(_)) => w.ok("select", format!("Select\\Default -> {cs}")),
        Ok(None) => {
            return w.fail(
                "select",
                format!("Select\\Default names {cs}, which does not exist"),
            )
        }
        Err(e) => return w.fail("select", format!("{cs}: {e}")),
    }
    // 14. values
    match SystemValues::read(&hive, &cs) {
        Ok(v) => {
            let show = |x: Option<u32>| x.map_or("absent".to_string(), |x| x.to_string());
            let paging = match &v.paging_files {
                None => "absent".to_string(),
                Some(d) => format!("{:?}", policy::multi_sz_strings(d)),
            };
            w.ok(
                "system-values",
                format!(
                    "{cs}: PollBootPartitionTimeout={} PagingFiles={paging} ExistingPageFiles={} BootDriverFlags={}",
                    show(v.poll_boot_partition_timeout),
                    if v.existing_page_files { "present" } else { "absent" },
                    v.boot_driver_flags.map_or("absent".to_string(), |f| format!("{f:#x}")),
                ),
            );
            w.out.system = Some(v);
        }
        Err(e) => w.fail("system-values", format!("{cs}: {e}")),
    }
}

/// `(bytes, file system, path)` of the BCD on a partition: FAT → the UEFI path; NTFS → the
/// BIOS path, then the UEFI path.
fn find_bcd(part: &mut dyn Dev, max: u64) -> Result<(Vec<u8>, &'static str, &'static str), String> {
    let head = read_vec(part, 0, 512)?;
    if head.get(3..11) == Some(b"NTFS    ") {
        let mut vol = Volume::open(part)?;
        for p in [BIOS_BCD_PATH, UEFI_BCD_PATH] {
            if let Some(b) = vol.read_file(p, max)? {
                return Ok((b, "NTFS", p));
            }
        }
        return Err(format!("NTFS, neither {BIOS_BCD_PATH} nor {UEFI_BCD_PATH}"));
    }
    let mut fat = Fat::open(part)?;
    let kind = fat.kind.name();
    match fat.read_file(UEFI_BCD_PATH, max.min(u64::from(u32::MAX)) as u32)? {
        Some(b) => Ok((b, kind, UEFI_BCD_PATH)),
        None => Err(format!("{kind}, no {UEFI_BCD_PATH}")),
    }
}

/// A [`Dev`] as a [`ufd_formats::bytes::ReadAt`] (for `read_footer`).
struct DevReader<'a>(&'a mut dyn Dev);

impl ufd_formats::bytes::ReadAt for DevReader<'_> {
    type Error = String;
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        self.0.read_at(offset, buf)
    }
}

/// The verdicts the image side of the walk can give (device and CPU rules: [`crate::guest`]).
fn judge(w: &mut Walker<'_>) {
    let hops = w.out.hops.clone();
    let hop = |s: &str| hops.iter().find(|h| h.step == s).cloned();
    let first_fail = w
        .out
        .hops
        .iter()
        .find(|h| h.status == Status::Fail)
        .cloned();
    let why_not = |upto: &str| -> String {
        match &first_fail {
            Some(f) => format!("not reached: hop {} failed ({})", f.step, f.evidence),
            None => format!("not reached: {upto}"),
        }
    };
    let bcd_src = w
        .out
        .store
        .as_ref()
        .map_or_else(|| w.src("BCD"), |(_, s)| format!("{} {s}", w.opts.source));
    // UFD-BCD: the default loader's VHD is on this disk and exists there.
    let bcd = match (hop("loader-device"), w.out.vhd_file_size) {
        (Some(d), Some(size)) if d.status == Status::Ok => Verdict::new(
            policy::UFD_BCD,
            Outcome::Pass,
            format!(
                "default loader {}: {}; the file exists ({size} bytes)",
                w.out.loader.map(|g| g.to_string()).unwrap_or_default(),
                d.evidence
            ),
            bcd_src,
        ),
        _ => {
            let failed = [
                "mbr",
                "partitions",
                "bcd",
                "default-loader",
                "loader-device",
                "host-ntfs",
                "vhd-file",
            ]
            .iter()
            .filter_map(|s| hop(s))
            .find(|h| h.status == Status::Fail);
            match failed {
                Some(h) => Verdict::new(
                    policy::UFD_BCD,
                    Outcome::Fail,
                    format!("{}: {}", h.step, h.evidence),
                    bcd_src,
                ),
                None => Verdict::new(
                    policy::UFD_BCD,
                    Outcome::NotJudged,
                    why_not("the BCD"),
                    bcd_src,
                ),
            }
        }
    };
    w.out.verdicts.push(bcd);
    // IMG-VHD-FIXED: a footer that says fixed, and a file that is not sparse.
    let vsrc = match &w.out.vhd {
        Some((f, off)) => format!("{} partition at byte {off} {f}", w.opts.source),
        None => w.src("VHD"),
    };
    let vhd = match (hop("vhd-file"), hop("vhd-footer")) {
        (Some(f), _) if f.status == Status::Fail => Verdict::new(
            policy::IMG_VHD_FIXED,
            Outcome::Fail,
            f.evidence.clone(),
            vsrc.clone(),
        ),
        (_, Some(h)) if h.status == Status::Ok => Verdict::new(
            policy::IMG_VHD_FIXED,
            Outcome::Pass,
            h.evidence.clone(),
            vsrc.clone(),
        ),
        (_, Some(h)) if h.status == Status::Fail => Verdict::new(
            policy::IMG_VHD_FIXED,
            Outcome::Fail,
            h.evidence.clone(),
            vsrc.clone(),
        ),
        _ => Verdict::new(
            policy::IMG_VHD_FIXED,
            Outcome::NotJudged,
            why_not("the VHD"),
            vsrc.clone(),
        ),
    };
    w.out.verdicts.push(vhd);
    // The virtual size, as for a VHD (a fixed VHDX file is that plus about 8 MiB of headers).
    let vsize = match (&w.out.vhd_footer, &w.out.vhdx) {
        (Some(f), _) => Some(f.current_size),
        (None, Some(x)) => Some(x.virtual_size()),
        (None, None) => None,
    };
    if let Some(size) = vsize {
        w.out
            .verdicts
            .push(policy::judge_wear_reserve(size, w.out.disk_size, &vsrc));
    }
    // SYSTEM hive rules.
    let ssrc = w.src(&format!("VHD {SYSTEM_HIVE_PATH}"));
    // IMG-GENERALIZED: State.ini first, then the hive's Setup values (the shared judge).
    let generalized = match &w.out.setup_state {
        Some(s) => {
            let src = match &s.state_ini {
                StateIni::Read(_) => w.src(&format!("VHD {STATE_INI_PATH}")),
                _ => format!("{ssrc} Setup"),
            };
            let mut v = judge_generalized(s.state_ini.image_state(), s.setup.as_ref(), &src);
            if let StateIni::Unreadable(e) = &s.state_ini {
                v.evidence
                    .push_str(&format!("; {STATE_INI_PATH} unreadable: {e}"));
            }
            v
        }
        None => match hop("system-hive").filter(|h| h.status == Status::Fail) {
            Some(h) => Verdict::new(
                policy::IMG_GENERALIZED,
                Outcome::Fail,
                format!("{}: {}", h.step, h.evidence),
                ssrc.clone(),
            ),
            None => Verdict::new(
                policy::IMG_GENERALIZED,
                Outcome::NotJudged,
                why_not("the SYSTEM hive"),
                ssrc.clone(),
            ),
        },
    };
    w.out.verdicts.push(generalized);
    match &w.out.system {
        Some(v) => {
            let src = format!("{ssrc} {}", v.control_set);
            w.out.verdicts.extend(v.verdicts(&src));
        }
        None => {
            let failed = ["system-hive", "select", "system-values"]
                .iter()
                .filter_map(|s| hop(s))
                .find(|h| h.status == Status::Fail);
            for rule in [
                policy::IMG_PAGING_OFF,
                policy::IMG_BOOT_DEVICE_WAIT,
                policy::IMG_USB_BOOT_DRIVERS,
            ] {
                let v = match &failed {
                    Some(h) => Verdict::new(
                        rule,
                        Outcome::Fail,
                        format!("{}: {}", h.step, h.evidence),
                        ssrc.clone(),
                    ),
                    None => Verdict::new(
                        rule,
                        Outcome::NotJudged,
                        why_not("the SYSTEM hive"),
                        ssrc.clone(),
                    ),
                };
                w.out.verdicts.push(v);
            }
        }
    }
}
