//! The OEM rules only the server itself can answer — the processor and how the UFD hangs off
//! the USB bus — as the firmware-side probe sees them (CPUID/MSRs, the boot device's device
//! path, UsbIo descriptors, BlockIo media).
//!
//! The decisions are `ufd_formats::policy`'s, shared with `ufd check-device`: the USB and
//! topology judges here turn [`UsbFacts`] into a [`policy::UsbDeviceFacts`], let
//! `policy::usb` decide, and word the evidence in firmware terms (BlockIo, UsbIo, device path)
//! — the strings the probes print and the e2e snapshots record. The processor facts and judges
//! are `policy::host`'s, re-exported here. Rule texts: shared/design/policy-rules.md.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use ufd_formats::policy::usb::{
    self as rules, ControllerSharing, Dedicated, MscClass, NestedHub, Removable, Usb2, UsbInterface,
};
use ufd_formats::policy::{self, UsbDeviceFacts, Verdict};

/// The processor facts and the HOST-X64/NX/VT judges (moved to `ufd_formats::policy::host`).
pub use ufd_formats::policy::host::{judge_nx, judge_vt, judge_x64, CpuFacts};

/// USB host controller kind from the PCI prog-if: `ufd_formats::policy::ControllerKind` (the
/// same type `ufd check-device` reads from sysfs).
pub use ufd_formats::policy::ControllerKind as HostController;

/// How the boot device hangs off the USB bus, as the firmware sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsbFacts {
    /// Device path text of the UFD (whole disk).
    pub path: String,
    /// Text of the host controller's path (up to the first `USB()` node).
    pub controller_path: String,
    pub controller: Option<HostController>,
    /// Number of `USB()` nodes: 1 = on a root port, 2 = behind one hub, ...
    pub usb_nodes: usize,
    /// BlockIo `RemovableMedia` (OVMF follows the SCSI INQUIRY RMB bit).
    pub removable: Option<bool>,
    /// Device descriptor `bcdUSB` (BCD, e.g. 0x0200).
    pub bcd_usb: Option<u16>,
    /// Interface class, subclass, protocol.
    pub interface: Option<(u8, u8, u8)>,
    /// Paths of the other USB devices on the same controller.
    pub others_on_controller: Vec<String>,
    /// Of those, the ones behind the same root port.
    pub others_on_root_port: Vec<String>,
}

impl UsbFacts {
    /// The facts the shared judges take. UsbIo does not report the link speed; the hub depth
    /// and the controller's population exist only for a USB device path.
    pub fn policy_facts(&self) -> UsbDeviceFacts {
        let on_usb = self.usb_nodes > 0;
        UsbDeviceFacts {
            removable: self.removable,
            bcd_usb: self.bcd_usb,
            speed: None,
            interface: self.interface.map(|(class, s, p)| UsbInterface {
                class,
                subclass: Some(s),
                protocol: Some(p),
            }),
            hubs_between: self
                .usb_nodes
                .checked_sub(1)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            controller: self.controller,
            sharing: on_usb.then_some(ControllerSharing {
                others_on_controller: self.others_on_controller.len(),
                others_on_root_port: self.others_on_root_port.len(),
            }),
        }
    }
}

/// UFD-NONREMOVABLE from BlockIo `RemovableMedia` (`policy::usb::judge_removable`).
pub fn judge_removable(u: &UsbFacts, source: &str) -> Verdict {
    let j = rules::judge_removable(&u.policy_facts());
    let ev = match j.finding {
        Removable::NotObserved => String::from("RemovableMedia not read"),
        Removable::FixedMedia => String::from("BlockIo RemovableMedia = 0 (fixed media)"),
        Removable::RemovableMedia => {
            String::from("BlockIo RemovableMedia = 1 (the UFD reports removable media (RMB = 1))")
        }
    };
    Verdict::new(policy::UFD_NONREMOVABLE, j.outcome, ev, source)
}

/// UFD-USB2 from the UsbIo device descriptor's `bcdUSB` and the controller kind
/// (`policy::usb::judge_usb2`; the firmware does not show the link speed).
pub fn judge_usb2(u: &UsbFacts, source: &str) -> Verdict {
    let j = rules::judge_usb2(&u.policy_facts());
    let b = u.bcd_usb.unwrap_or(0);
    let version = format!("bcdUSB = {:x}.{:02x}", b >> 8, b & 0xFF);
    // Controller kinds are quoted with their Debug names (`Ehci`), as the probes always did.
    let ev = match j.finding {
        Usb2::NoDescriptor => String::from("no USB device descriptor read"),
        Usb2::Usb1Device => version,
        Usb2::Usb11Controller(c) => format!(
            "{version}, but attached through a USB 1.1 {c:?} controller (full speed, 12 Mb/s)"
        ),
        Usb2::BelowHighSpeed(s) => {
            format!("{version}, but the link runs at {s:?} speed, below high speed (480 Mb/s)")
        }
        Usb2::Compatible(_) => match u.controller {
            Some(c) => format!("{version} on a {c:?} controller"),
            None => format!("{version} (controller not identified)"),
        },
    };
    Verdict::new(policy::UFD_USB2, j.outcome, ev, source)
}

/// UFD-MSC-CLASS from the UsbIo interface descriptor (`policy::usb::judge_msc_class`).
pub fn judge_msc_class(u: &UsbFacts, source: &str) -> Verdict {
    let j = rules::judge_msc_class(&u.policy_facts());
    let ev = match (j.finding, u.interface) {
        (MscClass::NoInterface, _) | (_, None) => String::from("no USB interface descriptor read"),
        (_, Some((c, s, p))) => {
            format!("interface class {c:02x}h subclass {s:02x}h protocol {p:02x}h")
        }
    };
    Verdict::new(policy::UFD_MSC_CLASS, j.outcome, ev, source)
}

/// TOPO-NO-NESTED-HUB from the `USB()` nodes of the UFD's device path: one node = a root
/// port, each hub adds one (`policy::usb::judge_nested_hub`).
pub fn judge_nested_hub(u: &UsbFacts, source: &str) -> Verdict {
    let j = rules::judge_nested_hub(&u.policy_facts());
    let ev = match j.finding {
        NestedHub::NotObserved => format!("not a USB device path: {}", u.path),
        NestedHub::RootPort => format!("on a root port: {}", u.path),
        NestedHub::BehindHubs(n) => format!("behind {n} hub level(s): {}", u.path),
    };
    Verdict::new(policy::TOPO_NO_NESTED_HUB, j.outcome, ev, source)
}

/// TOPO-DEDICATED-CONTROLLER from the device paths of every UsbIo handle
/// (`policy::usb::judge_dedicated`): alone on an EHCI passes; sharing the controller, or its
/// root port, or being alone on a controller not shown to be EHCI warns.
pub fn judge_dedicated(u: &UsbFacts, source: &str) -> Verdict {
    let j = rules::judge_dedicated(&u.policy_facts());
    let ctl = format!(
        "{} controller {}",
        u.controller.map_or("USB", HostController::name),
        u.controller_path
    );
    let ev = match j.finding {
        Dedicated::NotObserved => String::from("the boot device is not on USB"),
        Dedicated::DedicatedEhci => format!("{ctl}: the UFD is its only USB device"),
        Dedicated::SharedController => format!(
            "{ctl} is shared ({}); the UFD's root port is dedicated",
            u.others_on_controller.join(", ")
        ),
        Dedicated::SharedRootPort => format!(
            "{ctl} is shared and so is the UFD's root port ({})",
            u.others_on_root_port.join(", ")
        ),
        Dedicated::AloneNotEhci(kind) => format!(
            "{ctl}: the UFD is its only USB device, but the seed recommends a dedicated EHCI controller{}",
            match kind {
                Some(HostController::Xhci) => " (Windows Server 2008 R2 has no inbox xHCI driver)",
                None => " (the controller's type was not identified)",
                Some(_) => "",
            }
        ),
    };
    Verdict::new(policy::TOPO_DEDICATED_CONTROLLER, j.outcome, ev, source)
}

/// HOST-USB-BOOT: the firmware loaded this very probe from the UFD over USB (its LoadedImage
/// device path has `USB()` nodes); a probe loaded from elsewhere cannot tell
/// (`policy::usb::judge_usb_boot`).
pub fn judge_usb_boot(u: &UsbFacts, source: &str) -> Verdict {
    let over_usb = u.usb_nodes > 0;
    let ev = if over_usb {
        format!("the firmware booted this probe from {}", u.path)
    } else {
        format!("the probe was not loaded from USB ({})", u.path)
    };
    Verdict::new(
        policy::HOST_USB_BOOT,
        rules::judge_usb_boot(over_usb),
        ev,
        source,
    )
}

/// Split a device path text into nodes (`A/B(x,y)/C` → `["A", "B(x,y)", "C"]`).
pub fn path_nodes(path: &str) -> Vec<&str> {
    path.split('/').filter(|n| !n.is_empty()).collect()
}

/// Number of `USB(` nodes, the controller prefix (nodes before the first one), and the first
/// `USB()` node (the root port).
pub fn usb_topology(path: &str) -> (usize, String, Option<String>) {
    let nodes = path_nodes(path);
    let first = nodes.iter().position(|n| n.starts_with("USB("));
    let count = nodes.iter().filter(|n| n.starts_with("USB(")).count();
    match first {
        Some(i) => (count, nodes[..i].join("/"), Some(nodes[i].into())),
        None => (0, path.into(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use ufd_formats::policy::Outcome;

    #[rstest]
    #[case(
        "PciRoot(0x0)/Pci(0x4,0x0)/USB(0x0,0x0)",
        1,
        "PciRoot(0x0)/Pci(0x4,0x0)",
        Some("USB(0x0,0x0)")
    )]
    #[case(
        "PciRoot(0x0)/Pci(0x4,0x0)/USB(0x5,0x0)/USB(0x3,0x0)/USB(0x4,0x0)",
        3,
        "PciRoot(0x0)/Pci(0x4,0x0)",
        Some("USB(0x5,0x0)")
    )]
    #[case("PciRoot(0x0)/Pci(0x3,0x0)", 0, "PciRoot(0x0)/Pci(0x3,0x0)", None)]
    fn topology(#[case] p: &str, #[case] n: usize, #[case] ctl: &str, #[case] port: Option<&str>) {
        let (c, prefix, root) = usb_topology(p);
        assert_eq!((c, prefix.as_str(), root.as_deref()), (n, ctl, port));
    }

    const DISK: &str = "PciRoot(0x0)/Pci(0x4,0x0)/USB(0x0,0x0)";

    fn on_root_port() -> UsbFacts {
        UsbFacts {
            path: DISK.into(),
            controller_path: "PciRoot(0x0)/Pci(0x4,0x0)".into(),
            controller: Some(HostController::Ehci),
            usb_nodes: 1,
            ..UsbFacts::default()
        }
    }

    /// The firmware wording of every finding; the e2e snapshots record the passing ones.
    #[rstest]
    #[case(Some(false), Outcome::Pass, "BlockIo RemovableMedia = 0 (fixed media)")]
    #[case(
        Some(true),
        Outcome::Fail,
        "BlockIo RemovableMedia = 1 (the UFD reports removable media (RMB = 1))"
    )]
    #[case(None, Outcome::NotJudged, "RemovableMedia not read")]
    fn removable(#[case] r: Option<bool>, #[case] o: Outcome, #[case] ev: &str) {
        let u = UsbFacts {
            removable: r,
            ..UsbFacts::default()
        };
        let v = judge_removable(&u, "t");
        assert_eq!(
            (v.rule, v.outcome, v.evidence.as_str()),
            (policy::UFD_NONREMOVABLE, o, ev)
        );
    }

    #[rstest]
    #[case(None, None, Outcome::NotJudged, "no USB device descriptor read")]
    #[case(Some(0x0110), None, Outcome::Fail, "bcdUSB = 1.10")]
    #[case(
        Some(0x0110),
        Some(HostController::Uhci),
        Outcome::Fail,
        "bcdUSB = 1.10"
    )]
    #[case(
        Some(0x0200),
        None,
        Outcome::Pass,
        "bcdUSB = 2.00 (controller not identified)"
    )]
    #[case(
        Some(0x0300),
        Some(HostController::Xhci),
        Outcome::Pass,
        "bcdUSB = 3.00 on a Xhci controller"
    )]
    #[case(
        Some(0x0200),
        Some(HostController::Ehci),
        Outcome::Pass,
        "bcdUSB = 2.00 on a Ehci controller"
    )]
    #[case(
        Some(0x0200),
        Some(HostController::Other(0x80)),
        Outcome::Pass,
        "bcdUSB = 2.00 on a Other(128) controller"
    )]
    #[case(
        Some(0x0200),
        Some(HostController::Uhci),
        Outcome::Fail,
        "bcdUSB = 2.00, but attached through a USB 1.1 Uhci controller (full speed, 12 Mb/s)"
    )]
    #[case(
        Some(0x0200),
        Some(HostController::Ohci),
        Outcome::Fail,
        "bcdUSB = 2.00, but attached through a USB 1.1 Ohci controller (full speed, 12 Mb/s)"
    )]
    fn usb2(
        #[case] b: Option<u16>,
        #[case] c: Option<HostController>,
        #[case] o: Outcome,
        #[case] ev: &str,
    ) {
        let u = UsbFacts {
            bcd_usb: b,
            controller: c,
            ..UsbFacts::default()
        };
        let v = judge_usb2(&u, "t");
        assert_eq!(
            (v.rule, v.outcome, v.evidence.as_str()),
            (policy::UFD_USB2, o, ev)
        );
    }

    #[rstest]
    #[case(Some((8, 6, 0x50)), Outcome::Pass, "interface class 08h subclass 06h protocol 50h")]
    #[case(Some((8, 6, 0x62)), Outcome::Pass, "interface class 08h subclass 06h protocol 62h")]
    #[case(Some((3, 1, 1)), Outcome::Fail, "interface class 03h subclass 01h protocol 01h")]
    #[case(None, Outcome::NotJudged, "no USB interface descriptor read")]
    fn msc_class(#[case] i: Option<(u8, u8, u8)>, #[case] o: Outcome, #[case] ev: &str) {
        let u = UsbFacts {
            interface: i,
            ..UsbFacts::default()
        };
        let v = judge_msc_class(&u, "t");
        assert_eq!(
            (v.rule, v.outcome, v.evidence.as_str()),
            (policy::UFD_MSC_CLASS, o, ev)
        );
    }

    #[rstest]
    #[case(1, Outcome::Pass, "on a root port: P")]
    #[case(2, Outcome::Fail, "behind 1 hub level(s): P")]
    #[case(3, Outcome::Fail, "behind 2 hub level(s): P")]
    #[case(0, Outcome::NotJudged, "not a USB device path: P")]
    fn nested(#[case] n: usize, #[case] o: Outcome, #[case] ev: &str) {
        let u = UsbFacts {
            path: "P".into(),
            usb_nodes: n,
            ..UsbFacts::default()
        };
        let v = judge_nested_hub(&u, "t");
        assert_eq!(
            (v.rule, v.outcome, v.evidence.as_str()),
            (policy::TOPO_NO_NESTED_HUB, o, ev)
        );
    }

    #[test]
    fn usb_boot() {
        let mut u = on_root_port();
        let v = judge_usb_boot(&u, "t");
        assert_eq!(v.outcome, Outcome::Pass);
        assert_eq!(
            v.evidence,
            format!("the firmware booted this probe from {DISK}")
        );
        u.usb_nodes = 0;
        u.path = "PciRoot(0x0)/Pci(0x3,0x0)".into();
        let v = judge_usb_boot(&u, "t");
        assert_eq!(v.outcome, Outcome::NotJudged);
        assert_eq!(
            v.evidence,
            "the probe was not loaded from USB (PciRoot(0x0)/Pci(0x3,0x0))"
        );
    }

    #[test]
    fn dedicated() {
        let mut u = on_root_port();
        let ev = |u: &UsbFacts| {
            let v = judge_dedicated(u, "t");
            (v.outcome, v.evidence)
        };
        assert_eq!(
            ev(&u),
            (
                Outcome::Pass,
                "EHCI controller PciRoot(0x0)/Pci(0x4,0x0): the UFD is its only USB device".into()
            )
        );
        u.controller = Some(HostController::Xhci);
        assert_eq!(
            ev(&u),
            (
                Outcome::Warn,
                "xHCI controller PciRoot(0x0)/Pci(0x4,0x0): the UFD is its only USB device, but the seed recommends a dedicated EHCI controller (Windows Server 2008 R2 has no inbox xHCI driver)".into()
            )
        );
        u.controller = None;
        assert_eq!(
            ev(&u),
            (
                Outcome::Warn,
                "USB controller PciRoot(0x0)/Pci(0x4,0x0): the UFD is its only USB device, but the seed recommends a dedicated EHCI controller (the controller's type was not identified)".into()
            )
        );
        u.controller = Some(HostController::Ehci);
        u.others_on_controller.push("kbd".into());
        assert_eq!(
            ev(&u),
            (
                Outcome::Warn,
                "EHCI controller PciRoot(0x0)/Pci(0x4,0x0) is shared (kbd); the UFD's root port is dedicated".into()
            )
        );
        u.others_on_root_port.push("kbd".into());
        assert_eq!(
            ev(&u),
            (
                Outcome::Warn,
                "EHCI controller PciRoot(0x0)/Pci(0x4,0x0) is shared and so is the UFD's root port (kbd)".into()
            )
        );
        u.usb_nodes = 0;
        assert_eq!(
            ev(&u),
            (Outcome::NotJudged, "the boot device is not on USB".into())
        );
    }

    #[test]
    fn cpu_judges_are_the_policy_ones() {
        let c = CpuFacts {
            long_mode: true,
            nx: false,
            efer_nxe: Some(false),
            ..CpuFacts::default()
        };
        assert_eq!(judge_x64(&c, "t").outcome, Outcome::Pass);
        let v = judge_nx(&c, "t");
        assert_eq!(v.outcome, Outcome::Fail);
        assert_eq!(v.evidence, "CPUID 80000001h EDX.NX = 0, EFER.NXE = 0");
    }
}
