//! `ufd inspect PATH`: what a UFD disk image, a VHD, a hive or a BCD store holds, with the
//! seed's policy verdicts (rule IDs from `ufd_formats::policy`, shared with `check-device`
//! and the guest probe). A directory is inspected as a set: `ufd.img`, `hyperV.vhd`, `BCD`,
//! `SYSTEM` (what `ufd sample` writes), and the cross-checks between them are judged — the
//! BCD's loader device must name the UFD's disk signature and partition.
//!
//! Rules that cannot be judged from the files at hand are listed as "not judged" with the
//! reason, never as passed.

use std::path::Path;

use serde_json::json;
use ufd_formats::bcd::guid::well_known;
use ufd_formats::bcd::{Device, ElementType, ElementValue, ObjectType, PartitionLocation, Store};
use ufd_formats::hive::Hive;
use ufd_formats::mbr::{Mbr, PartitionEntry};
use ufd_formats::policy::{self, Outcome, Verdict};
use ufd_formats::vhd::{read_footer, DiskType, Footer};

use crate::fsutil::{read, FileReader};
use crate::CliError;

/// What was learnt from the files, for the verdicts.
#[derive(Default)]
struct Findings {
    lines: Vec<String>,
    verdicts: Vec<Verdict>,
    ufd: Option<(Mbr, u64, String)>,
    vhd: Option<(Footer, String)>,
    store: Option<(Store, String)>,
}

fn fmt_err(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::other(format!("{}: {e}", path.display()))
}

fn partition_line(i: usize, p: &PartitionEntry) -> String {
    format!(
        "    partition {}  {}  type {:02x} ({})  LBA {} + {} sectors ({} bytes at byte offset {})",
        i + 1,
        if p.active { "active  " } else { "inactive" },
        p.partition_type,
        p.type_name().unwrap_or("unknown"),
        p.lba_start,
        p.sector_count,
        u64::from(p.sector_count) * 512,
        u64::from(p.lba_start) * 512,
    )
}

fn inspect_disk(path: &Path, f: &mut Findings) -> Result<(), CliError> {
    let mut r = FileReader::open(path)?;
    let size = ufd_formats::bytes::ReadAt::size(&r);
    let sector = r.read_vec(0, 512).map_err(|e| fmt_err(path, e))?;
    let mbr = Mbr::parse(&sector).map_err(|e| CliError::format(path, e))?;
    f.lines.push(format!(
        "{}: MBR disk, signature {:#010x}, {size} bytes",
        path.display(),
        mbr.disk_signature
    ));
    for (i, p) in mbr
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.is_empty())
    {
        f.lines.push(partition_line(i, p));
    }
    for finding in mbr.validate(Some(size / 512), None) {
        f.lines.push(format!("    problem: {finding}"));
    }
    f.ufd = Some((mbr, size, path.display().to_string()));
    Ok(())
}

fn inspect_vhd(path: &Path, f: &mut Findings) -> Result<(), CliError> {
    let mut r = FileReader::open(path)?;
    let footer = read_footer(&mut r).map_err(|e| fmt_err(path, e))?;
    let app = String::from_utf8_lossy(&footer.creator.application).into_owned();
    let host = String::from_utf8_lossy(&footer.creator.host_os).into_owned();
    f.lines.push(format!(
        "{}: {} VHD, current size {} bytes, CHS {}, creator {app:?} {}.{} on {host:?}, checksum {:#010x}",
        path.display(),
        footer.disk_type,
        footer.current_size,
        footer.geometry,
        footer.creator.version >> 16,
        footer.creator.version & 0xffff,
        footer.checksum,
    ));
    for note in footer.notes() {
        f.lines.push(format!("    note: {note}"));
    }
    if footer.disk_type == DiskType::Fixed {
        let sector = r.read_vec(0, 512).map_err(|e| fmt_err(path, e))?;
        match Mbr::parse(&sector) {
            Ok(inner) => {
                f.lines.push(format!(
                    "    inner MBR signature {:#010x}",
                    inner.disk_signature
                ));
                for (i, p) in inner
                    .partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !p.is_empty())
                {
                    f.lines.push(partition_line(i, p));
                }
            }
            Err(e) => f.lines.push(format!("    inner disk: {e}")),
        }
    }
    f.vhd = Some((footer, path.display().to_string()));
    Ok(())
}

fn is_bcd(h: &Hive<'_>) -> bool {
    matches!(
        (h.open("Objects"), h.open("Description")),
        (Ok(Some(_)), Ok(Some(_)))
    )
}

fn inspect_hive(path: &Path, data: &[u8], f: &mut Findings) -> Result<(), CliError> {
    let h = Hive::parse(data).map_err(|e| CliError::format(path, e))?;
    let b = h.base();
    let state = if b.is_dirty() {
        "DIRTY (sequence numbers differ: a log must be replayed)"
    } else {
        "clean"
    };
    let root = h
        .root()
        .and_then(|r| r.name())
        .map_err(|e| CliError::format(path, e))?;
    f.lines.push(format!(
        "{}: registry hive {}.{}, root {root:?}, {state}",
        path.display(),
        b.major,
        b.minor
    ));
    if let Err(e) = h.check() {
        f.lines.push(format!("    integrity: {e}"));
    }
    if is_bcd(&h) {
        let store = Store::from_hive(&h).map_err(|e| CliError::format(path, e))?;
        f.lines.push(format!(
            "    BCD store with {} objects",
            store.objects.len()
        ));
        f.store = Some((store, path.display().to_string()));
    } else if h
        .open("Select")
        .map_err(|e| CliError::format(path, e))?
        .is_some()
    {
        system_verdicts(path, &h, f)?;
    }
    Ok(())
}

fn dword(h: &Hive<'_>, key: &str, value: &str) -> Result<Option<u32>, ufd_formats::Error> {
    match h.open(key)? {
        Some(k) => match k.value(value)? {
            Some(v) => Ok(Some(v.as_dword()?)),
            None => Ok(None),
        },
        None => Ok(None),
    }
}

/// IMG-PAGING-OFF, IMG-BOOT-DEVICE-WAIT, IMG-USB-BOOT-DRIVERS from a SYSTEM hive, in the
/// control set `Select\Default` names (offline there is no CurrentControlSet).
fn system_verdicts(path: &Path, h: &Hive<'_>, f: &mut Findings) -> Result<(), CliError> {
    let err = |e| CliError::format(path, e);
    let Some(default) = dword(h, "Select", "Default").map_err(err)? else {
        f.lines
            .push("    Select\\Default is absent: no control set to judge".into());
        return Ok(());
    };
    let cs = format!("ControlSet{default:03}");
    f.lines
        .push(format!("    Select\\Default = {default} -> {cs}"));
    let src = format!("{} {cs}", path.display());
    let mm = h
        .open(&format!(
            "{cs}\\Control\\Session Manager\\Memory Management"
        ))
        .map_err(err)?;
    let (paging, existing) = match &mm {
        Some(k) => (
            k.value("PagingFiles")
                .map_err(err)?
                .map(|v| v.data().map(|d| d.into_owned()))
                .transpose()
                .map_err(err)?,
            k.value("ExistingPageFiles").map_err(err)?.is_some(),
        ),
        None => (None, false),
    };
    f.verdicts
        .push(policy::judge_paging(paging.as_deref(), existing, &cs, &src));
    let poll = dword(
        h,
        &format!("{cs}\\Control\\PnP"),
        "PollBootPartitionTimeout",
    )
    .map_err(err)?;
    f.verdicts
        .push(policy::judge_boot_device_wait(poll, &cs, &src));
    let flags = dword(h, &format!("{cs}\\Control"), "BootDriverFlags").map_err(err)?;
    let names = ["usbehci", "usbuhci", "usbohci", "usbhub", "usbstor"];
    let mut services = Vec::new();
    for n in names {
        services.push((
            n,
            dword(h, &format!("{cs}\\Services\\{n}"), "Start").map_err(err)?,
        ));
    }
    f.verdicts
        .push(policy::judge_usb_boot_drivers(flags, &services, &src));
    Ok(())
}

fn active_partition(mbr: &Mbr) -> Option<(usize, &PartitionEntry)> {
    mbr.partitions
        .iter()
        .enumerate()
        .find(|(_, p)| p.active && !p.is_empty())
}

/// UFD-LAYOUT: one primary NTFS-type partition, active, spanning the device (DiskPart leaves
/// at most the alignment remainder, < 1 MiB, unused at the end).
fn layout_verdict(mbr: &Mbr, size: u64, src: &str) -> Verdict {
    let used: Vec<(usize, &PartitionEntry)> = mbr
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let mut problems = Vec::new();
    if used.len() != 1 {
        problems.push(format!(
            "{} partitions (the seed's layout has exactly one)",
            used.len()
        ));
    }
    if let Some((i, p)) = used.first() {
        if p.partition_type != 0x07 {
            problems.push(format!(
                "partition {} has type {:02x}, not 07 (NTFS)",
                i + 1,
                p.partition_type
            ));
        }
        if !p.active {
            problems.push(format!(
                "partition {} is not active (diskpart `active` not run)",
                i + 1
            ));
        }
        let unused_tail = (size / 512).saturating_sub(p.end_lba_exclusive());
        if unused_tail >= 2048 {
            problems.push(format!(
                "{unused_tail} sectors after partition {} are unused (it does not span the device)",
                i + 1
            ));
        }
    }
    for finding in mbr.validate(Some(size / 512), None) {
        problems.push(finding.to_string());
    }
    if problems.is_empty() {
        let (_, p) = used[0];
        Verdict::new(
            policy::UFD_LAYOUT,
            Outcome::Pass,
            format!(
                "one active type-07 partition, LBA {} + {} sectors",
                p.lba_start, p.sector_count
            ),
            src,
        )
    } else {
        Verdict::new(policy::UFD_LAYOUT, Outcome::Fail, problems.join("; "), src)
    }
}

/// UFD-BCD: the default loader's `device` and `osdevice` are VHD devices on the UFD's own
/// partition (same disk signature, same byte offset).
fn bcd_verdict(store: &Store, ufd: Option<&Mbr>, src: &str) -> Verdict {
    let fail = |why: String| Verdict::new(policy::UFD_BCD, Outcome::Fail, why, src);
    let Some(bootmgr) = store.object(&well_known::BOOTMGR) else {
        return fail("no {bootmgr} object".into());
    };
    let Some(ElementValue::Object(default)) =
        bootmgr.element(ElementType(0x2300_0003)).map(|e| &e.value)
    else {
        return fail("{bootmgr} has no default object (23000003)".into());
    };
    let Some(loader) = store.object(default) else {
        return fail(format!(
            "{{bootmgr}} default {default} does not exist in the store"
        ));
    };
    if loader.object_type != ObjectType::OSLOADER {
        return fail(format!(
            "default {default} is type {:#010x}, not a Windows Boot Loader",
            loader.object_type.0
        ));
    }
    let mut evidence = Vec::new();
    for (id, name) in [(0x1100_0001u32, "device"), (0x2100_0001, "osdevice")] {
        let Some(ElementValue::Device(d)) = loader.element(ElementType(id)).map(|e| &e.value)
        else {
            return fail(format!("default loader {default} has no {name}"));
        };
        let Some((host, file)) = d.device.vhd_file() else {
            return fail(format!("default loader {name} is not a VHD device"));
        };
        let Device::Partition(PartitionLocation::Mbr {
            disk_signature,
            offset,
        }) = host
        else {
            return fail(format!("{name}: the VHD's host is not an MBR partition"));
        };
        if let Some(mbr) = ufd {
            if *disk_signature != mbr.disk_signature {
                return fail(format!(
                    "{name} names disk {disk_signature:#010x}, the UFD's signature is {:#010x}: the boot manager will not find the VHD",
                    mbr.disk_signature
                ));
            }
            match active_partition(mbr) {
                Some((i, p)) if u64::from(p.lba_start) * 512 == *offset => {
                    evidence.push(format!("{name} = vhd=[UFD partition {}]{file}", i + 1))
                }
                _ => return fail(format!("{name} names partition offset {offset}, which is not the UFD's active partition")),
            }
        } else {
            evidence.push(format!("{name} = vhd=[<disk {disk_signature:#010x}, offset {offset}>]{file} (no UFD image to resolve it against)"));
        }
    }
    let outcome = if ufd.is_some() {
        Outcome::Pass
    } else {
        Outcome::NotJudged
    };
    Verdict::new(
        policy::UFD_BCD,
        outcome,
        format!(
            "default loader {default}: {} (presence of the file on NTFS not checked yet)",
            evidence.join("; ")
        ),
        src,
    )
}

fn cross_verdicts(f: &mut Findings) {
    if let Some((mbr, size, src)) = &f.ufd {
        f.verdicts
            .push(policy::judge_capacity(*size, false, &format!("{src} size")));
        f.verdicts.push(layout_verdict(mbr, *size, src));
        let code_empty = mbr.boot_code.iter().all(|&b| b == 0);
        f.verdicts.push(if code_empty {
            Verdict::new(policy::UFD_BOOTCODE, Outcome::Fail, "MBR boot code area is all zero (bootsect /nt60 /mbr not done)", src.clone())
        } else {
            Verdict::new(policy::UFD_BOOTCODE, Outcome::NotJudged, "boot code present; recognising BOOTMGR-compatible code arrives with the provisioner", src.clone())
        });
    }
    if let Some((footer, src)) = &f.vhd {
        f.verdicts.push(match footer.require_fixed() {
            Ok(()) => Verdict::new(
                policy::IMG_VHD_FIXED,
                Outcome::Pass,
                format!(
                    "fixed VHD, footer checksum valid, file = {} + 512 bytes",
                    footer.current_size
                ),
                src.clone(),
            ),
            Err(e) => Verdict::new(
                policy::IMG_VHD_FIXED,
                Outcome::Fail,
                e.to_string(),
                src.clone(),
            ),
        });
        if let Some((_, size, usrc)) = &f.ufd {
            f.verdicts.push(policy::judge_wear_reserve(
                footer.current_size,
                *size,
                &format!("{src} on {usrc}"),
            ));
        }
    }
    if let Some((store, src)) = &f.store {
        f.verdicts
            .push(bcd_verdict(store, f.ufd.as_ref().map(|u| &u.0), src));
    }
    let judged: Vec<&str> = f.verdicts.iter().map(|v| v.rule).collect();
    for r in policy::RULES {
        if judged.contains(&r.id) {
            continue;
        }
        let why = match r.id {
            "UFD-NONREMOVABLE" | "UFD-USB2" | "UFD-MSC-CLASS" => "a property of the device: `ufd check-device` (sysfs) or the harness (firmware view)",
            id if id.starts_with("HOST-") || id.starts_with("TOPO-") => "a property of the server: judged in the VM by the harness",
            "UFD-ENDURANCE" => "needs a write profile: measured by the harness",
            _ => "needs the files inside the NTFS volumes (applied image): arrives with the provisioner",
        };
        f.verdicts
            .push(Verdict::new(r.id, Outcome::NotJudged, why, "-"));
    }
}

fn outcome_text(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "PASS",
        Outcome::Fail => "FAIL",
        Outcome::Warn => "WARN",
        Outcome::NotJudged => "n/j ",
    }
}

pub fn run(path: &Path, json: bool) -> Result<u8, CliError> {
    let mut f = Findings::default();
    if path.is_dir() {
        for (name, kind) in [("ufd.img", 0), ("hyperV.vhd", 1), ("BCD", 2), ("SYSTEM", 2)] {
            let p = path.join(name);
            if !p.exists() {
                f.lines.push(format!("{}: absent", p.display()));
                continue;
            }
            match kind {
                0 => inspect_disk(&p, &mut f)?,
                1 => inspect_vhd(&p, &mut f)?,
                _ => inspect_hive(&p, &read(&p)?, &mut f)?,
            }
        }
    } else {
        let mut r = FileReader::open(path)?;
        let size = ufd_formats::bytes::ReadAt::size(&r);
        let head = r
            .read_vec(0, size.min(4) as usize)
            .map_err(|e| fmt_err(path, e))?;
        let tail = r
            .read_vec(size.saturating_sub(512), size.min(512) as usize)
            .map_err(|e| fmt_err(path, e))?;
        if head == b"regf" {
            inspect_hive(path, &read(path)?, &mut f)?;
        } else if tail.starts_with(b"conectix") || tail.get(1..9) == Some(b"conectix") {
            inspect_vhd(path, &mut f)?;
        } else if size >= 512 {
            inspect_disk(path, &mut f)?;
        } else {
            return Err(CliError::other(format!(
                "{}: not a disk image, VHD, hive or BCD store ({size} bytes)",
                path.display()
            )));
        }
    }
    cross_verdicts(&mut f);

    if json {
        let verdicts: Vec<_> = f
            .verdicts
            .iter()
            .map(|v| json!({"rule": v.rule, "level": v.level(), "outcome": v.outcome, "evidence": v.evidence, "source": v.source}))
            .collect();
        let store = f
            .store
            .as_ref()
            .map(|(s, _)| crate::bcdcmd::store_json(s, false));
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"path": path, "details": f.lines, "bcd": store, "verdicts": verdicts})
            )
            .unwrap_or_default()
        );
    } else {
        for l in &f.lines {
            println!("{l}");
        }
        if let Some((store, _)) = &f.store {
            println!();
            print!(
                "{}",
                ufd_formats::bcd::render_enum(
                    store,
                    &ufd_formats::bcd::RenderOptions { verbose: false }
                )
            );
        }
        println!();
        println!("policy verdicts (rule IDs: shared/design/policy-rules.md)");
        for v in &f.verdicts {
            let level = match v.level() {
                Some(policy::Level::Requirement) => "requirement",
                Some(policy::Level::Recommendation) => "recommendation",
                Some(policy::Level::Procedure) => "procedure",
                None => "?",
            };
            println!(
                "  {}  {:<26} {:<14} {}  [{}]",
                outcome_text(v.outcome),
                v.rule,
                level,
                v.evidence,
                v.source
            );
        }
        let count = |o| f.verdicts.iter().filter(|v| v.outcome == o).count();
        println!(
            "summary: {} pass, {} warn, {} fail, {} not judged here",
            count(Outcome::Pass),
            count(Outcome::Warn),
            count(Outcome::Fail),
            count(Outcome::NotJudged)
        );
    }
    Ok(0)
}
