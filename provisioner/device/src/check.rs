//! `ufd check-device`: the seed's hardware rules judged from sysfs.
//!
//! One verdict per device rule, in the order of `policy-rules.md`: UFD-NONREMOVABLE, UFD-USB2,
//! UFD-MSC-CLASS, UFD-CAPACITY, TOPO-DEDICATED-CONTROLLER, TOPO-NO-NESTED-HUB. Rule IDs, levels,
//! [`Verdict`] and [`Outcome`] are `ufd_formats::policy`'s, shared with `ufd inspect` and the
//! guest probe; UFD-CAPACITY is judged by `policy::judge_capacity` itself. The other judges here
//! are pure functions over [`BlockFacts`] that mirror the firmware-side judges of
//! `ufd_bootpath::guest` (same outcomes for the same situation; the evidence names the sysfs
//! file and the value read). They are candidates to move into `ufd_formats::policy`.
//!
//! A loop device or a non-USB disk gets `NotJudged` for the USB rules, with the reason — never
//! a pass.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Serialize, Serializer};
use ufd_formats::policy::{self, Level, Outcome, Verdict};

use crate::sysfs::{BlockFacts, HostController, Sysfs, Transport, UsbFacts};
use crate::Error;

/// Exit code when a requirement fails (same as `ufd inspect`: 1 = error, 2 = usage).
pub const EXIT_REQUIREMENT_FAILED: u8 = 3;

/// Options of `ufd check-device`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Make 16 GB a requirement (the seed's Prerequisites wording), see `policy::judge_capacity`.
    pub strict_capacity: bool,
}

/// What `ufd check-device` prints (text via [`DeviceReport::text`], JSON via serde).
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    /// The device as given (`/dev/sdb`).
    pub device: String,
    /// The sysfs root read (`/`, or a fixture tree).
    pub sysfs_root: String,
    pub facts: BlockFacts,
    /// Human-readable findings.
    pub details: Vec<String>,
    /// One verdict per device rule, with its level (same JSON shape as `ufd inspect --json`).
    #[serde(serialize_with = "verdicts_json")]
    pub verdicts: Vec<Verdict>,
    pub exit_code: u8,
}

#[derive(Serialize)]
struct VerdictJson<'a> {
    rule: &'a str,
    level: Option<Level>,
    outcome: Outcome,
    evidence: &'a str,
    source: &'a str,
}

fn verdicts_json<S: Serializer>(v: &[Verdict], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|v| VerdictJson {
        rule: v.rule,
        level: v.level(),
        outcome: v.outcome,
        evidence: &v.evidence,
        source: &v.source,
    }))
}

/// The device rules judged here, in `policy::RULES` order.
pub const DEVICE_RULES: &[&str] = &[
    policy::UFD_NONREMOVABLE,
    policy::UFD_USB2,
    policy::UFD_MSC_CLASS,
    policy::UFD_CAPACITY,
    policy::TOPO_DEDICATED_CONTROLLER,
    policy::TOPO_NO_NESTED_HUB,
];

/// Read `device` (`/dev/sdb`, or a plain name with a fixture root) and judge it.
pub fn check_device(
    sysfs: &Sysfs,
    device: &Path,
    opts: CheckOptions,
) -> Result<DeviceReport, Error> {
    let name = sysfs.name_for(device)?;
    let facts = sysfs.block(&name)?;
    Ok(report(device.display().to_string(), sysfs, facts, opts))
}

/// Judge facts that were already read.
pub fn report(
    device: String,
    sysfs: &Sysfs,
    facts: BlockFacts,
    opts: CheckOptions,
) -> DeviceReport {
    let verdicts = judge(&facts, opts);
    let exit_code = exit_code(&verdicts);
    DeviceReport {
        device,
        sysfs_root: sysfs.root().display().to_string(),
        details: details(&facts),
        facts,
        verdicts,
        exit_code,
    }
}

/// 0, or [`EXIT_REQUIREMENT_FAILED`] when a requirement-level rule fails.
pub fn exit_code(verdicts: &[Verdict]) -> u8 {
    if verdicts
        .iter()
        .any(|v| v.outcome == Outcome::Fail && v.level() == Some(Level::Requirement))
    {
        EXIT_REQUIREMENT_FAILED
    } else {
        0
    }
}

/// Every device rule, in [`DEVICE_RULES`] order.
pub fn judge(f: &BlockFacts, opts: CheckOptions) -> Vec<Verdict> {
    vec![
        judge_removable(f),
        judge_usb2(f),
        judge_msc_class(f),
        judge_capacity(f, opts.strict_capacity),
        judge_dedicated(f),
        judge_nested_hub(f),
    ]
}

/// Why a USB rule cannot be judged for a disk that is not on USB; None for a USB disk.
fn not_usb(f: &BlockFacts) -> Option<String> {
    match &f.transport {
        Transport::Usb(_) => None,
        Transport::Loop(l) => Some(format!(
            "loop device backed by {}: no USB device behind it",
            l.backing_file
                .as_deref()
                .unwrap_or("nothing (not attached)")
        )),
        Transport::Other { bus } => {
            Some(format!("not a USB device: {bus} disk at {}", f.device_path))
        }
    }
}

fn usb_or_not_judged<'a>(f: &'a BlockFacts, rule: &'static str) -> Result<&'a UsbFacts, Verdict> {
    match f.usb() {
        Some(u) => Ok(u),
        None => Err(Verdict::new(
            rule,
            Outcome::NotJudged,
            not_usb(f).unwrap_or_default(),
            f.device_path.clone(),
        )),
    }
}

/// UFD-NONREMOVABLE from `/sys/block/X/removable`, the SCSI INQUIRY RMB bit as the kernel's sd
/// driver read it (the same bit Windows reports as STORAGE_DEVICE_DESCRIPTOR.RemovableMedia).
/// A loop device has no INQUIRY data (the kernel shows 0 for every loop device): not judged.
pub fn judge_removable(f: &BlockFacts) -> Verdict {
    let file = format!("{}/removable", f.sys_path);
    if let Transport::Loop(_) = f.transport {
        return Verdict::new(
            policy::UFD_NONREMOVABLE,
            Outcome::NotJudged,
            format!(
                "{}; {file} is 0 for every loop device, it is not a SCSI RMB bit",
                not_usb(f).unwrap_or_default()
            ),
            file,
        );
    }
    let Some(r) = f.removable else {
        return Verdict::new(
            policy::UFD_NONREMOVABLE,
            Outcome::NotJudged,
            format!("{file} is missing or unreadable"),
            file,
        );
    };
    let mut ev = if r {
        format!("{file} = 1: the device reports removable media (SCSI RMB = 1); the OEM policy needs a UFD identified as non-removable")
    } else {
        format!("{file} = 0 (fixed media, SCSI RMB = 0)")
    };
    if let Transport::Other { bus } = &f.transport {
        ev.push_str(&format!("; note: a {bus} disk, not a USB flash drive"));
    }
    Verdict::new(
        policy::UFD_NONREMOVABLE,
        if r { Outcome::Fail } else { Outcome::Pass },
        ev,
        file,
    )
}

/// UFD-USB2 from the device's `version` (bcdUSB) and `speed`: bcdUSB at least 2.00 (a USB 3
/// stick is USB 2.0 compatible) and a high-speed (or faster) link. A USB 2.0 stick running at
/// 12 Mb/s (on a UHCI/OHCI companion, or behind a USB 1.1 hub) fails, as in the guest judge:
/// the server does not give the UFD the USB 2.0 path the seed requires.
pub fn judge_usb2(f: &BlockFacts) -> Verdict {
    let u = match usb_or_not_judged(f, policy::UFD_USB2) {
        Ok(u) => u,
        Err(v) => return v,
    };
    let source = format!("{}/version, {}/speed", u.dir, u.dir);
    let (Some(bcd), Some(speed)) = (u.bcd_usb, u.speed.as_deref()) else {
        return Verdict::new(
            policy::UFD_USB2,
            Outcome::NotJudged,
            format!("{}/version or speed is missing", u.dir),
            source,
        );
    };
    let ctl = u.controller.as_ref();
    let ctl_text = ctl.map_or_else(
        || "controller not identified".to_string(),
        |c| {
            format!(
                "on {} controller {}",
                c.kind.map_or("a USB", HostController::name),
                c.name
            )
        },
    );
    let version = format!(
        "bcdUSB {:x}.{:02x}, speed {speed} Mb/s",
        bcd >> 8,
        bcd & 0xff
    );
    let mbps = u.speed_mbps().unwrap_or(0.0);
    let (outcome, ev) = if bcd < 0x0200 {
        (
            Outcome::Fail,
            format!("{version}: a USB 1.x device ({ctl_text})"),
        )
    } else if let Some(k @ (HostController::Uhci | HostController::Ohci)) = ctl.and_then(|c| c.kind)
    {
        (
            Outcome::Fail,
            format!(
                "{version}, but attached through a USB 1.1 {} controller (full speed, 12 Mb/s)",
                k.name()
            ),
        )
    } else if mbps < 480.0 {
        (
            Outcome::Fail,
            format!("{version}: the link runs below high speed (480 Mb/s) ({ctl_text})"),
        )
    } else if mbps >= 5000.0 {
        (
            Outcome::Pass,
            format!("{version} (SuperSpeed; USB 2.0 compatible) {ctl_text}"),
        )
    } else {
        (
            Outcome::Pass,
            format!("{version} (USB 2.0 high speed) {ctl_text}"),
        )
    };
    Verdict::new(policy::UFD_USB2, outcome, ev, source)
}

/// UFD-MSC-CLASS from the `bInterfaceClass` of the interface the disk hangs off. Subclass 06h
/// (SCSI transparent) with protocol 50h (bulk-only) is what Windows' usbstor.sys drives; 62h is
/// UAS (Linux bound the UAS alternate setting; Windows Server 2008 R2 has no UAS driver and
/// uses bulk-only, which UAS devices also offer).
pub fn judge_msc_class(f: &BlockFacts) -> Verdict {
    let u = match usb_or_not_judged(f, policy::UFD_MSC_CLASS) {
        Ok(u) => u,
        Err(v) => return v,
    };
    let Some(i) = &u.interface else {
        return Verdict::new(
            policy::UFD_MSC_CLASS,
            Outcome::NotJudged,
            format!("no USB interface directory between {} and the disk", u.dir),
            u.dir.clone(),
        );
    };
    let hex = |b: Option<u8>| b.map_or("??".to_string(), |b| format!("{b:02x}"));
    let mut ev = format!(
        "{}/bInterfaceClass = {}, subclass {}h, protocol {}h",
        i.dir,
        hex(i.class),
        hex(i.subclass),
        hex(i.protocol)
    );
    let outcome = match i.class {
        Some(0x08) => {
            ev.push_str(match (i.subclass, i.protocol) {
                (Some(0x06), Some(0x50)) => " (mass storage, SCSI, bulk-only)",
                (Some(0x06), Some(0x62)) => {
                    " (mass storage, SCSI, UAS; Windows Server 2008 R2 uses the bulk-only setting)"
                }
                _ => " (mass storage)",
            });
            Outcome::Pass
        }
        None => {
            return Verdict::new(
                policy::UFD_MSC_CLASS,
                Outcome::NotJudged,
                format!("{}/bInterfaceClass is missing or not hex", i.dir),
                i.dir.clone(),
            )
        }
        Some(_) => {
            ev.push_str(": not the mass-storage class 08h");
            Outcome::Fail
        }
    };
    Verdict::new(
        policy::UFD_MSC_CLASS,
        outcome,
        ev,
        format!("{}/bInterfaceClass", i.dir),
    )
}

/// UFD-CAPACITY through `policy::judge_capacity` from `/sys/block/X/size` (512-byte sectors).
pub fn judge_capacity(f: &BlockFacts, strict: bool) -> Verdict {
    policy::judge_capacity(
        f.size_bytes,
        strict,
        &format!(
            "{}/size = {} sectors of 512 bytes",
            f.sys_path, f.size_sectors
        ),
    )
}

/// Intel's integrated "rate matching hubs" (8087:0020, 8087:0024, 8087:8000, 8087:8008): on
/// Intel 5-series and later chipsets every EHCI port sits behind one.
fn is_intel_rmh(id: &str) -> bool {
    matches!(id, "8087:0020" | "8087:0024" | "8087:8000" | "8087:8008")
}

/// TOPO-NO-NESTED-HUB from the port path: the UFD must sit on a root-hub port (`devpath`
/// without dots). As in the guest judge, one external hub already fails ("do not expose the
/// flash device over a nested hub": the project reads it as no hub between the controller's
/// root hub and the UFD).
pub fn judge_nested_hub(f: &BlockFacts) -> Verdict {
    let u = match usb_or_not_judged(f, policy::TOPO_NO_NESTED_HUB) {
        Ok(u) => u,
        Err(v) => return v,
    };
    let devpath = u.devpath.clone().unwrap_or_else(|| u.name.clone());
    let source = format!("{}/devpath = {devpath}", u.dir);
    let root = format!(
        "{} port {}",
        u.root_hub.as_deref().unwrap_or("root hub"),
        u.root_port.map_or("?".to_string(), |p| p.to_string())
    );
    if u.hubs.is_empty() {
        return Verdict::new(
            policy::TOPO_NO_NESTED_HUB,
            Outcome::Pass,
            format!(
                "{} is on root port {root} (devpath {devpath}: no hub)",
                u.name
            ),
            source,
        );
    }
    let chain: Vec<String> = u
        .hubs
        .iter()
        .map(|h| match &h.product {
            Some(p) => format!("{} ({} {p})", h.name, h.id),
            None => format!("{} ({})", h.name, h.id),
        })
        .collect();
    let mut ev = format!(
        "{} is behind {} hub level(s) on {root}: {} (devpath {devpath})",
        u.name,
        u.hubs.len(),
        chain.join(" -> ")
    );
    if u.hubs.iter().any(|h| is_intel_rmh(&h.id)) {
        ev.push_str(
            "; an Intel integrated rate-matching hub counts as a hub (the firmware sees it too)",
        );
    }
    Verdict::new(policy::TOPO_NO_NESTED_HUB, Outcome::Fail, ev, source)
}

/// TOPO-DEDICATED-CONTROLLER: a dedicated EHCI controller passes; sharing the controller (or
/// its companion UHCI/OHCI, which serve the same ports) but not the root port warns, sharing the
/// root port warns with the devices named (as the guest judge). A UFD alone on a controller
/// that is not EHCI also warns: the seed recommends "a dedicated USB EHCI controller", and
/// Windows Server 2008 R2 has no inbox xHCI driver.
pub fn judge_dedicated(f: &BlockFacts) -> Verdict {
    let u = match usb_or_not_judged(f, policy::TOPO_DEDICATED_CONTROLLER) {
        Ok(u) => u,
        Err(v) => return v,
    };
    let Some(c) = &u.controller else {
        return Verdict::new(
            policy::TOPO_DEDICATED_CONTROLLER,
            Outcome::NotJudged,
            format!("no host controller found above {}", u.dir),
            u.dir.clone(),
        );
    };
    let kind = c.kind.map_or("USB", HostController::name);
    let class = c
        .class
        .map_or(String::new(), |cl| format!(", class {cl:#08x}"));
    let ctl = format!("{kind} controller {} ({}{class})", c.name, c.dir);
    let label = |o: &crate::sysfs::OtherUsb| {
        if o.controller == c.name {
            o.label()
        } else {
            format!("{} on companion {}", o.label(), o.controller)
        }
    };
    let on_port: Vec<String> = u
        .others
        .iter()
        .filter(|o| o.same_root_port)
        .map(label)
        .collect();
    let all: Vec<String> = u.others.iter().map(label).collect();
    let (outcome, ev) = if !on_port.is_empty() {
        (
            Outcome::Warn,
            format!(
                "{ctl} is shared and so is the UFD's root port ({})",
                on_port.join(", ")
            ),
        )
    } else if !all.is_empty() {
        (
            Outcome::Warn,
            format!(
                "{ctl} is shared ({}); the UFD's root port is dedicated",
                all.join(", ")
            ),
        )
    } else if c.kind != Some(HostController::Ehci) {
        (
            Outcome::Warn,
            format!(
                "{ctl}: the UFD is its only USB device, but the seed recommends a dedicated EHCI controller{}",
                if c.kind == Some(HostController::Xhci) {
                    " (Windows Server 2008 R2 has no inbox xHCI driver)"
                } else {
                    ""
                }
            ),
        )
    } else {
        (
            Outcome::Pass,
            format!("{ctl}: the UFD is its only USB device"),
        )
    };
    Verdict::new(
        policy::TOPO_DEDICATED_CONTROLLER,
        outcome,
        ev,
        c.dir.clone(),
    )
}

/// Findings as text lines.
pub fn details(f: &BlockFacts) -> Vec<String> {
    let mut l = Vec::new();
    l.push(format!(
        "device {} ({}) at {}",
        f.name,
        f.dev.map_or("?".to_string(), |d| d.to_string()),
        f.device_path
    ));
    let flag = |b: Option<bool>| b.map_or("?", |b| if b { "1" } else { "0" });
    let ident = match &f.scsi {
        Some(s) => format!("{} {} rev {}", s.vendor, s.model, s.rev)
            .trim()
            .to_string(),
        None => f.description(),
    };
    l.push(format!(
        "  {ident}: {} bytes ({} sectors of 512), removable {}, read-only {}",
        f.size_bytes,
        f.size_sectors,
        flag(f.removable),
        flag(f.ro)
    ));
    for p in &f.partitions {
        l.push(format!(
            "  partition {} ({}): start {} sectors, {} sectors",
            p.name,
            p.dev.map_or("?".to_string(), |d| d.to_string()),
            p.start_sectors.map_or("?".to_string(), |s| s.to_string()),
            p.size_sectors.map_or("?".to_string(), |s| s.to_string()),
        ));
    }
    if !f.holders.is_empty() {
        l.push(format!("  holders: {}", f.holders.join(", ")));
    }
    match &f.transport {
        Transport::Loop(lp) => l.push(format!(
            "  loop device backed by {} (offset {}, partscan {})",
            lp.backing_file
                .as_deref()
                .unwrap_or("nothing: not attached"),
            lp.offset.map_or("?".to_string(), |o| o.to_string()),
            flag(lp.partscan)
        )),
        Transport::Other { bus } => l.push(format!("  {bus} disk, not on USB")),
        Transport::Usb(u) => {
            let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "?".into());
            l.push(format!(
                "  USB device {}: {}:{} {} {}, serial {}, speed {} Mb/s, bcdUSB {}",
                u.name,
                opt(&u.id_vendor),
                opt(&u.id_product),
                opt(&u.manufacturer),
                opt(&u.product),
                opt(&u.serial),
                opt(&u.speed),
                opt(&u.version)
            ));
            if let Some(i) = &u.interface {
                let hex = |b: Option<u8>| b.map_or("??".to_string(), |b| format!("{b:02x}"));
                l.push(format!(
                    "  interface {}: class {}h subclass {}h protocol {}h",
                    i.dir.rsplit('/').next().unwrap_or_default(),
                    hex(i.class),
                    hex(i.subclass),
                    hex(i.protocol)
                ));
            }
            let hubs: Vec<String> = u
                .hubs
                .iter()
                .map(|h| format!("{} ({})", h.name, h.id))
                .collect();
            l.push(format!(
                "  topology: {} root port {}, {}",
                u.root_hub.as_deref().unwrap_or("?"),
                u.root_port.map_or("?".to_string(), |p| p.to_string()),
                if hubs.is_empty() {
                    "no hub".to_string()
                } else {
                    format!("hubs {}", hubs.join(" -> "))
                }
            ));
            if let Some(c) = &u.controller {
                l.push(format!(
                    "  controller {}: {}{}, root hubs {}{}",
                    c.name,
                    c.kind
                        .map_or("not a PCI USB controller", HostController::name),
                    c.class
                        .map_or(String::new(), |cl| format!(" (class {cl:#08x})")),
                    c.root_hubs.join(", "),
                    if c.companions.is_empty() {
                        String::new()
                    } else {
                        format!(", companions {}", c.companions.join(", "))
                    }
                ));
            }
            let others: Vec<String> = u.others.iter().map(|o| o.label()).collect();
            l.push(format!(
                "  other USB devices on the controller: {}",
                if others.is_empty() {
                    "none".to_string()
                } else {
                    others.join(", ")
                }
            ));
        }
    }
    l
}

/// PASS/FAIL/WARN/n/j as printed (same as `ufd inspect`).
pub fn outcome_text(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "PASS",
        Outcome::Fail => "FAIL",
        Outcome::Warn => "WARN",
        Outcome::NotJudged => "n/j ",
    }
}

impl DeviceReport {
    /// The verdict of `rule`.
    pub fn verdict(&self, rule: &str) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.rule == rule)
    }

    /// The text `ufd check-device` prints: details, the verdicts (same layout as `ufd inspect`),
    /// a summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        if self.sysfs_root != "/" {
            let _ = writeln!(s, "sysfs root: {}", self.sysfs_root);
        }
        for l in &self.details {
            let _ = writeln!(s, "{l}");
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "policy verdicts (rule IDs: shared/design/policy-rules.md)"
        );
        for v in &self.verdicts {
            let level = match v.level() {
                Some(Level::Requirement) => "requirement",
                Some(Level::Recommendation) => "recommendation",
                Some(Level::Procedure) => "procedure",
                None => "?",
            };
            let _ = writeln!(
                s,
                "  {}  {:<26} {:<14} {}  [{}]",
                outcome_text(v.outcome),
                v.rule,
                level,
                v.evidence,
                v.source
            );
        }
        let count = |o| self.verdicts.iter().filter(|v| v.outcome == o).count();
        let _ = writeln!(
            s,
            "summary: {} pass, {} warn, {} fail, {} not judged here",
            count(Outcome::Pass),
            count(Outcome::Warn),
            count(Outcome::Fail),
            count(Outcome::NotJudged)
        );
        let failed: Vec<&str> = self
            .verdicts
            .iter()
            .filter(|v| v.outcome == Outcome::Fail && v.level() == Some(Level::Requirement))
            .map(|v| v.rule)
            .collect();
        if !failed.is_empty() {
            let _ = writeln!(s, "requirements not met: {}", failed.join(", "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_rules_follow_the_policy_order_and_exist() {
        let order: Vec<&str> = policy::RULES
            .iter()
            .map(|r| r.id)
            .filter(|id| DEVICE_RULES.contains(id))
            .collect();
        assert_eq!(order, DEVICE_RULES);
    }

    #[test]
    fn rmh_ids() {
        assert!(is_intel_rmh("8087:0024"));
        assert!(!is_intel_rmh("05e3:0608"));
    }
}
