//! `ufd check-device`: the seed's hardware rules judged from sysfs.
//!
//! One verdict per device rule, in the order of `policy-rules.md`: UFD-NONREMOVABLE, UFD-USB2,
//! UFD-MSC-CLASS, UFD-CAPACITY, TOPO-DEDICATED-CONTROLLER, TOPO-NO-NESTED-HUB. Rule IDs, levels,
//! [`Verdict`] and [`Outcome`] are `ufd_formats::policy`'s, shared with `ufd inspect` and the
//! guest probe; UFD-CAPACITY is judged by `policy::judge_capacity` itself. The USB and topology
//! rules are decided by `ufd_formats::policy::usb` — the same judges the guest probe
//! (`ufd_bootpath::guest`) calls — from the [`UsbDeviceFacts`] that [`policy_facts`] reads out
//! of [`BlockFacts`]; the functions here only word the evidence (naming the sysfs file and the
//! value read) and say why a rule is not judged.
//!
//! A loop device or a non-USB disk gets `NotJudged` for the USB rules, with the reason — never
//! a pass.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Serialize, Serializer};
use ufd_formats::policy::usb::{
    self as rules, ControllerSharing, Dedicated, LinkSpeed, MscClass, MscTransport, NestedHub,
    Removable, Usb2, UsbInterface,
};
use ufd_formats::policy::{self, Level, Outcome, UsbDeviceFacts, Verdict};

use crate::sysfs::{BlockFacts, HostController, Sysfs, Transport};
use crate::Error;

/// Exit code when a requirement fails (same as `ufd inspect`: 1 = error, 2 = usage).
pub use ufd_formats::policy::EXIT_REQUIREMENT_FAILED;

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
    policy::exit_code(verdicts, false)
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

/// The facts the shared judges take, as sysfs shows them. A loop device's `removable` is not
/// an RMB bit (the kernel shows 0 for every loop device), so it is not observed; the USB facts
/// exist only for a USB disk; a `speed` that is not a number is not observed.
pub fn policy_facts(f: &BlockFacts) -> UsbDeviceFacts {
    let removable = match f.transport {
        Transport::Loop(_) => None,
        _ => f.removable,
    };
    let Some(u) = f.usb() else {
        return UsbDeviceFacts {
            removable,
            ..UsbDeviceFacts::default()
        };
    };
    UsbDeviceFacts {
        removable,
        bcd_usb: u.bcd_usb,
        speed: u.speed.as_deref().and_then(LinkSpeed::from_mbps_text),
        interface: u.interface.as_ref().and_then(|i| {
            i.class.map(|class| UsbInterface {
                class,
                subclass: i.subclass,
                protocol: i.protocol,
            })
        }),
        hubs_between: Some(u32::try_from(u.hub_depth()).unwrap_or(u32::MAX)),
        controller: u.controller.as_ref().and_then(|c| c.kind),
        sharing: u.controller.as_ref().map(|_| ControllerSharing {
            others_on_controller: u.others.len(),
            others_on_root_port: u.others.iter().filter(|o| o.same_root_port).count(),
        }),
    }
}

/// The verdict for a USB rule on a disk that is not on USB.
fn not_usb_verdict(f: &BlockFacts, rule: &'static str) -> Verdict {
    Verdict::new(
        rule,
        Outcome::NotJudged,
        not_usb(f).unwrap_or_default(),
        f.device_path.clone(),
    )
}

/// UFD-NONREMOVABLE from `/sys/block/X/removable`, the SCSI INQUIRY RMB bit as the kernel's sd
/// driver read it (the same bit Windows reports as STORAGE_DEVICE_DESCRIPTOR.RemovableMedia;
/// `policy::usb::judge_removable`). A loop device has no INQUIRY data (the kernel shows 0 for
/// every loop device): not judged.
pub fn judge_removable(f: &BlockFacts) -> Verdict {
    let file = format!("{}/removable", f.sys_path);
    let j = rules::judge_removable(&policy_facts(f));
    let mut ev = match (j.finding, &f.transport) {
        (Removable::NotObserved, Transport::Loop(_)) => format!(
            "{}; {file} is 0 for every loop device, it is not a SCSI RMB bit",
            not_usb(f).unwrap_or_default()
        ),
        (Removable::NotObserved, _) => format!("{file} is missing or unreadable"),
        (Removable::RemovableMedia, _) => format!("{file} = 1: the device reports removable media (SCSI RMB = 1); the OEM policy needs a UFD identified as non-removable"),
        (Removable::FixedMedia, _) => format!("{file} = 0 (fixed media, SCSI RMB = 0)"),
    };
    if let (Removable::FixedMedia | Removable::RemovableMedia, Transport::Other { bus }) =
        (j.finding, &f.transport)
    {
        ev.push_str(&format!("; note: a {bus} disk, not a USB flash drive"));
    }
    Verdict::new(policy::UFD_NONREMOVABLE, j.outcome, ev, file)
}

/// UFD-USB2 from the device's `version` (bcdUSB) and `speed` (`policy::usb::judge_usb2`):
/// bcdUSB at least 2.00 (a USB 3 stick is USB 2.0 compatible) and a high-speed (or faster)
/// link. A USB 2.0 stick running at 12 Mb/s (on a UHCI/OHCI companion, or behind a USB 1.1
/// hub) fails, as in the guest probe: the server does not give the UFD the USB 2.0 path the
/// seed requires. Both files are needed (sysfs has both for every USB device).
pub fn judge_usb2(f: &BlockFacts) -> Verdict {
    let Some(u) = f.usb() else {
        return not_usb_verdict(f, policy::UFD_USB2);
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
    let facts = policy_facts(f);
    if facts.speed.is_none() {
        return Verdict::new(
            policy::UFD_USB2,
            Outcome::NotJudged,
            format!("{}/speed = {speed:?} is not a speed in Mb/s", u.dir),
            source,
        );
    }
    let ctl_text = u.controller.as_ref().map_or_else(
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
    let j = rules::judge_usb2(&facts);
    let ev = match j.finding {
        Usb2::NoDescriptor => format!("{}/version is missing", u.dir),
        Usb2::Usb1Device => format!("{version}: a USB 1.x device ({ctl_text})"),
        Usb2::Usb11Controller(k) => format!(
            "{version}, but attached through a USB 1.1 {} controller (full speed, 12 Mb/s)",
            k.name()
        ),
        Usb2::BelowHighSpeed(_) => {
            format!("{version}: the link runs below high speed (480 Mb/s) ({ctl_text})")
        }
        Usb2::Compatible(Some(s)) if s >= LinkSpeed::Super => {
            format!("{version} (SuperSpeed; USB 2.0 compatible) {ctl_text}")
        }
        Usb2::Compatible(_) => format!("{version} (USB 2.0 high speed) {ctl_text}"),
    };
    Verdict::new(policy::UFD_USB2, j.outcome, ev, source)
}

/// UFD-MSC-CLASS from the `bInterfaceClass` of the interface the disk hangs off
/// (`policy::usb::judge_msc_class`). Subclass 06h (SCSI transparent) with protocol 50h
/// (bulk-only) is what Windows' usbstor.sys drives; 62h is UAS (Linux bound the UAS alternate
/// setting; Windows Server 2008 R2 has no UAS driver and uses bulk-only, which UAS devices
/// also offer).
pub fn judge_msc_class(f: &BlockFacts) -> Verdict {
    let Some(u) = f.usb() else {
        return not_usb_verdict(f, policy::UFD_MSC_CLASS);
    };
    let Some(i) = &u.interface else {
        return Verdict::new(
            policy::UFD_MSC_CLASS,
            Outcome::NotJudged,
            format!("no USB interface directory between {} and the disk", u.dir),
            u.dir.clone(),
        );
    };
    let j = rules::judge_msc_class(&policy_facts(f));
    let hex = |b: Option<u8>| b.map_or("??".to_string(), |b| format!("{b:02x}"));
    let mut ev = format!(
        "{}/bInterfaceClass = {}, subclass {}h, protocol {}h",
        i.dir,
        hex(i.class),
        hex(i.subclass),
        hex(i.protocol)
    );
    match j.finding {
        MscClass::NoInterface => {
            return Verdict::new(
                policy::UFD_MSC_CLASS,
                j.outcome,
                format!("{}/bInterfaceClass is missing or not hex", i.dir),
                i.dir.clone(),
            )
        }
        MscClass::MassStorage(t) => ev.push_str(match t {
            MscTransport::BulkOnly => " (mass storage, SCSI, bulk-only)",
            MscTransport::Uas => {
                " (mass storage, SCSI, UAS; Windows Server 2008 R2 uses the bulk-only setting)"
            }
            MscTransport::Other => " (mass storage)",
        }),
        MscClass::NotMassStorage(_) => ev.push_str(": not the mass-storage class 08h"),
    }
    Verdict::new(
        policy::UFD_MSC_CLASS,
        j.outcome,
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

/// TOPO-NO-NESTED-HUB from the port path (`policy::usb::judge_nested_hub`): the UFD must sit
/// on a root-hub port (`devpath` without dots). As in the guest probe, one external hub
/// already fails; an Intel integrated rate-matching hub is named as such.
pub fn judge_nested_hub(f: &BlockFacts) -> Verdict {
    let Some(u) = f.usb() else {
        return not_usb_verdict(f, policy::TOPO_NO_NESTED_HUB);
    };
    let devpath = u.devpath.clone().unwrap_or_else(|| u.name.clone());
    let source = format!("{}/devpath = {devpath}", u.dir);
    let root = format!(
        "{} port {}",
        u.root_hub.as_deref().unwrap_or("root hub"),
        u.root_port.map_or("?".to_string(), |p| p.to_string())
    );
    let j = rules::judge_nested_hub(&policy_facts(f));
    let ev = match j.finding {
        NestedHub::NotObserved => not_usb(f).unwrap_or_default(),
        NestedHub::RootPort => format!(
            "{} is on root port {root} (devpath {devpath}: no hub)",
            u.name
        ),
        NestedHub::BehindHubs(n) => {
            let chain: Vec<String> = u
                .hubs
                .iter()
                .map(|h| match &h.product {
                    Some(p) => format!("{} ({} {p})", h.name, h.id),
                    None => format!("{} ({})", h.name, h.id),
                })
                .collect();
            let mut ev = format!(
                "{} is behind {n} hub level(s) on {root}: {} (devpath {devpath})",
                u.name,
                chain.join(" -> ")
            );
            if u.hubs
                .iter()
                .any(|h| rules::is_intel_rate_matching_hub(&h.id))
            {
                ev.push_str(
                    "; an Intel integrated rate-matching hub counts as a hub (the firmware sees it too)",
                );
            }
            ev
        }
    };
    Verdict::new(policy::TOPO_NO_NESTED_HUB, j.outcome, ev, source)
}

/// TOPO-DEDICATED-CONTROLLER (`policy::usb::judge_dedicated`): a dedicated EHCI controller
/// passes; sharing the controller (or its companion UHCI/OHCI, which serve the same ports) but
/// not the root port warns, sharing the root port warns with the devices named, as in the
/// guest probe. A UFD alone on a controller that is not EHCI also warns: the seed recommends
/// "a dedicated USB EHCI controller", and Windows Server 2008 R2 has no inbox xHCI driver.
pub fn judge_dedicated(f: &BlockFacts) -> Verdict {
    let Some(u) = f.usb() else {
        return not_usb_verdict(f, policy::TOPO_DEDICATED_CONTROLLER);
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
    let list = |same_port_only: bool| -> String {
        u.others
            .iter()
            .filter(|o| !same_port_only || o.same_root_port)
            .map(label)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let j = rules::judge_dedicated(&policy_facts(f));
    let ev = match j.finding {
        Dedicated::NotObserved => format!("no host controller found above {}", u.dir),
        Dedicated::SharedRootPort => format!(
            "{ctl} is shared and so is the UFD's root port ({})",
            list(true)
        ),
        Dedicated::SharedController => format!(
            "{ctl} is shared ({}); the UFD's root port is dedicated",
            list(false)
        ),
        Dedicated::AloneNotEhci(k) => format!(
            "{ctl}: the UFD is its only USB device, but the seed recommends a dedicated EHCI controller{}",
            if k == Some(HostController::Xhci) {
                " (Windows Server 2008 R2 has no inbox xHCI driver)"
            } else {
                ""
            }
        ),
        Dedicated::DedicatedEhci => format!("{ctl}: the UFD is its only USB device"),
    };
    Verdict::new(
        policy::TOPO_DEDICATED_CONTROLLER,
        j.outcome,
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
pub use ufd_formats::policy::outcome_text;

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
        s.push_str(&policy::render_verdicts(&self.verdicts));
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
        assert!(rules::is_intel_rate_matching_hub("8087:0024"));
        assert!(!rules::is_intel_rate_matching_hub("05e3:0608"));
    }
}
