//! The OEM rules only the server itself can answer — the processor and how the UFD hangs off
//! the USB bus — judged from evidence a firmware-side probe collected (CPUID/MSRs, the boot
//! device's device path, UsbIo descriptors, BlockIo media). Pure functions over plain facts,
//! like `ufd_formats::policy` (candidates to move there; the same rule IDs).
//! Rule texts: shared/design/policy-rules.md.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use ufd_formats::policy::{self, Outcome, Verdict};

/// What the processor reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuFacts {
    /// CPUID 0x80000001 EDX bit 29.
    pub long_mode: bool,
    /// CPUID 0x80000001 EDX bit 20 (NX/XD).
    pub nx: bool,
    /// EFER.NXE (bit 11) as the firmware left it, if read.
    pub efer_nxe: Option<bool>,
    /// CPUID 1 ECX bit 5 (Intel VT-x).
    pub vmx: bool,
    /// CPUID 0x80000001 ECX bit 2 (AMD-V).
    pub svm: bool,
    /// IA32_FEATURE_CONTROL (MSR 0x3A), if read: bit 0 lock, bit 2 VMX outside SMX.
    pub feature_control: Option<u64>,
    /// AMD VM_CR (MSR 0xC0010114), if read: bit 4 SVMDIS.
    pub vm_cr: Option<u64>,
    /// CPUID 0 vendor string.
    pub vendor: String,
    /// CPUID 0x40000000 hypervisor vendor, when running under one.
    pub hypervisor: Option<String>,
}

/// HOST-X64: long mode.
pub fn judge_x64(c: &CpuFacts, source: &str) -> Verdict {
    let outcome = if c.long_mode {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    Verdict::new(
        policy::HOST_X64,
        outcome,
        format!("CPUID 80000001h EDX.LM = {}", u8::from(c.long_mode)),
        source,
    )
}

/// HOST-NX: NX available; when EFER was read, whether the firmware enabled it is quoted (a
/// UEFI firmware that leaves NXE clear still lets Windows enable it, so only availability fails).
pub fn judge_nx(c: &CpuFacts, source: &str) -> Verdict {
    let nxe = c
        .efer_nxe
        .map_or(String::new(), |e| format!(", EFER.NXE = {}", u8::from(e)));
    let outcome = if c.nx { Outcome::Pass } else { Outcome::Fail };
    Verdict::new(
        policy::HOST_NX,
        outcome,
        format!("CPUID 80000001h EDX.NX = {}{nxe}", u8::from(c.nx)),
        source,
    )
}

/// HOST-VT: VMX or SVM present, and not locked off by the firmware where the MSR was read
/// (Intel: FEATURE_CONTROL locked with VMX-outside-SMX clear; AMD: VM_CR.SVMDIS set).
pub fn judge_vt(c: &CpuFacts, source: &str) -> Verdict {
    let mut ev = format!("CPUID VMX = {}, SVM = {}", u8::from(c.vmx), u8::from(c.svm));
    if let Some(fc) = c.feature_control {
        ev.push_str(&format!(", IA32_FEATURE_CONTROL = {fc:#x}"));
    }
    if let Some(vc) = c.vm_cr {
        ev.push_str(&format!(", VM_CR = {vc:#x}"));
    }
    if let Some(h) = &c.hypervisor {
        ev.push_str(&format!(", under hypervisor {h:?}"));
    }
    let intel_off = c.vmx && c.feature_control.is_some_and(|f| f & 1 != 0 && f & 4 == 0);
    let amd_off = c.svm && c.vm_cr.is_some_and(|v| v & 0x10 != 0);
    let outcome = if !(c.vmx || c.svm) {
        ev.push_str(": no hardware virtualization");
        Outcome::Fail
    } else if (intel_off || !c.vmx) && (amd_off || !c.svm) {
        ev.push_str(": disabled by firmware");
        Outcome::Fail
    } else {
        Outcome::Pass
    };
    Verdict::new(policy::HOST_VT, outcome, ev, source)
}

/// USB host controller kind, from the PCI class code 0C03h programming interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostController {
    Uhci,
    Ohci,
    Ehci,
    Xhci,
    Other(u8),
}

impl HostController {
    /// From PCI prog-if (class 0Ch, subclass 03h): 00 UHCI, 10 OHCI, 20 EHCI, 30 xHCI.
    pub fn from_prog_if(p: u8) -> Self {
        match p {
            0x00 => HostController::Uhci,
            0x10 => HostController::Ohci,
            0x20 => HostController::Ehci,
            0x30 => HostController::Xhci,
            o => HostController::Other(o),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            HostController::Uhci => "UHCI",
            HostController::Ohci => "OHCI",
            HostController::Ehci => "EHCI",
            HostController::Xhci => "xHCI",
            HostController::Other(_) => "other",
        }
    }
}

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

/// UFD-NONREMOVABLE from BlockIo `RemovableMedia`.
pub fn judge_removable(u: &UsbFacts, source: &str) -> Verdict {
    match u.removable {
        None => Verdict::new(
            policy::UFD_NONREMOVABLE,
            Outcome::NotJudged,
            "RemovableMedia not read",
            source,
        ),
        Some(r) => Verdict::new(
            policy::UFD_NONREMOVABLE,
            if r { Outcome::Fail } else { Outcome::Pass },
            format!(
                "BlockIo RemovableMedia = {} ({})",
                u8::from(r),
                if r {
                    "the UFD reports removable media (RMB = 1)"
                } else {
                    "fixed media"
                }
            ),
            source,
        ),
    }
}

/// UFD-USB2: `bcdUSB` at least 2.00 (a USB 3 stick is USB 2.0 compatible).
pub fn judge_usb2(u: &UsbFacts, source: &str) -> Verdict {
    let Some(b) = u.bcd_usb else {
        return Verdict::new(
            policy::UFD_USB2,
            Outcome::NotJudged,
            "no USB device descriptor read",
            source,
        );
    };
    let version = format!("bcdUSB = {:x}.{:02x}", b >> 8, b & 0xFF);
    if b < 0x0200 {
        return Verdict::new(policy::UFD_USB2, Outcome::Fail, version, source);
    }
    // The stick may speak USB 2.0, but behind a USB 1.1 host controller (a UHCI/OHCI root, e.g.
    // an EHCI's companion) the boot device runs at full speed, 12 Mb/s: the server is not
    // giving the UFD the USB 2.0 path the seed requires.
    match u.controller {
        Some(c @ (HostController::Uhci | HostController::Ohci)) => Verdict::new(
            policy::UFD_USB2,
            Outcome::Fail,
            format!(
                "{version}, but attached through a USB 1.1 {c:?} controller (full speed, 12 Mb/s)"
            ),
            source,
        ),
        Some(c) => Verdict::new(
            policy::UFD_USB2,
            Outcome::Pass,
            format!("{version} on a {c:?} controller"),
            source,
        ),
        None => Verdict::new(
            policy::UFD_USB2,
            Outcome::Pass,
            format!("{version} (controller not identified)"),
            source,
        ),
    }
}

/// UFD-MSC-CLASS: interface class 08h. Subclass 06h (SCSI transparent) with protocol 50h
/// (bulk-only) is what Windows' usbstor.sys boots from; other subclasses are quoted.
pub fn judge_msc_class(u: &UsbFacts, source: &str) -> Verdict {
    match u.interface {
        None => Verdict::new(
            policy::UFD_MSC_CLASS,
            Outcome::NotJudged,
            "no USB interface descriptor read",
            source,
        ),
        Some((c, s, p)) => Verdict::new(
            policy::UFD_MSC_CLASS,
            if c == 0x08 {
                Outcome::Pass
            } else {
                Outcome::Fail
            },
            format!("interface class {c:02x}h subclass {s:02x}h protocol {p:02x}h"),
            source,
        ),
    }
}

/// TOPO-NO-NESTED-HUB: the seed says "do not expose the flash device over a nested hub". The
/// project reads that as: no external hub between the controller's root hub and the UFD, i.e.
/// exactly one `USB()` node in its device path (a hub adds one node per level).
pub fn judge_nested_hub(u: &UsbFacts, source: &str) -> Verdict {
    let outcome = match u.usb_nodes {
        0 => Outcome::NotJudged,
        1 => Outcome::Pass,
        _ => Outcome::Fail,
    };
    let ev = match u.usb_nodes {
        0 => format!("not a USB device path: {}", u.path),
        1 => format!("on a root port: {}", u.path),
        n => format!("behind {} hub level(s): {}", n - 1, u.path),
    };
    Verdict::new(policy::TOPO_NO_NESTED_HUB, outcome, ev, source)
}

/// TOPO-DEDICATED-CONTROLLER: alone on its controller passes; sharing the controller but not
/// the root port misses the recommendation's first choice (warn); sharing the root port warns
/// with the devices named.
pub fn judge_dedicated(u: &UsbFacts, source: &str) -> Verdict {
    if u.usb_nodes == 0 {
        return Verdict::new(
            policy::TOPO_DEDICATED_CONTROLLER,
            Outcome::NotJudged,
            "the boot device is not on USB",
            source,
        );
    }
    let ctl = format!(
        "{} controller {}",
        u.controller.map_or("USB", HostController::name),
        u.controller_path
    );
    let (outcome, ev) = if u.others_on_controller.is_empty() {
        (
            Outcome::Pass,
            format!("{ctl}: the UFD is its only USB device"),
        )
    } else if u.others_on_root_port.is_empty() {
        (
            Outcome::Warn,
            format!(
                "{ctl} is shared ({}); the UFD's root port is dedicated",
                u.others_on_controller.join(", ")
            ),
        )
    } else {
        (
            Outcome::Warn,
            format!(
                "{ctl} is shared and so is the UFD's root port ({})",
                u.others_on_root_port.join(", ")
            ),
        )
    };
    Verdict::new(policy::TOPO_DEDICATED_CONTROLLER, outcome, ev, source)
}

/// HOST-USB-BOOT: the firmware loaded this very probe from the UFD over USB (its LoadedImage
/// device path has `USB()` nodes); a probe loaded from elsewhere cannot tell.
pub fn judge_usb_boot(u: &UsbFacts, source: &str) -> Verdict {
    if u.usb_nodes > 0 {
        Verdict::new(
            policy::HOST_USB_BOOT,
            Outcome::Pass,
            format!("the firmware booted this probe from {}", u.path),
            source,
        )
    } else {
        Verdict::new(
            policy::HOST_USB_BOOT,
            Outcome::NotJudged,
            format!("the probe was not loaded from USB ({})", u.path),
            source,
        )
    }
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

    #[rstest]
    #[case(Some(false), Outcome::Pass)]
    #[case(Some(true), Outcome::Fail)]
    #[case(None, Outcome::NotJudged)]
    fn removable(#[case] r: Option<bool>, #[case] o: Outcome) {
        let u = UsbFacts {
            removable: r,
            ..UsbFacts::default()
        };
        assert_eq!(judge_removable(&u, "t").outcome, o);
    }

    #[rstest]
    #[case(0x0110, None, Outcome::Fail)]
    #[case(0x0200, None, Outcome::Pass)]
    #[case(0x0300, Some(HostController::Xhci), Outcome::Pass)]
    #[case(0x0200, Some(HostController::Ehci), Outcome::Pass)]
    #[case(0x0200, Some(HostController::Uhci), Outcome::Fail)]
    #[case(0x0200, Some(HostController::Ohci), Outcome::Fail)]
    fn usb2(#[case] b: u16, #[case] c: Option<HostController>, #[case] o: Outcome) {
        let u = UsbFacts {
            bcd_usb: Some(b),
            controller: c,
            ..UsbFacts::default()
        };
        assert_eq!(judge_usb2(&u, "t").outcome, o);
    }

    #[rstest]
    #[case(1, Outcome::Pass)]
    #[case(2, Outcome::Fail)]
    #[case(0, Outcome::NotJudged)]
    fn nested(#[case] n: usize, #[case] o: Outcome) {
        let u = UsbFacts {
            usb_nodes: n,
            ..UsbFacts::default()
        };
        assert_eq!(judge_nested_hub(&u, "t").outcome, o);
    }

    #[test]
    fn usb_boot() {
        let mut u = UsbFacts {
            usb_nodes: 1,
            ..UsbFacts::default()
        };
        assert_eq!(judge_usb_boot(&u, "t").outcome, Outcome::Pass);
        u.usb_nodes = 0;
        assert_eq!(judge_usb_boot(&u, "t").outcome, Outcome::NotJudged);
    }

    #[test]
    fn dedicated() {
        let mut u = UsbFacts {
            usb_nodes: 1,
            ..UsbFacts::default()
        };
        assert_eq!(judge_dedicated(&u, "t").outcome, Outcome::Pass);
        u.others_on_controller.push("kbd".into());
        assert_eq!(judge_dedicated(&u, "t").outcome, Outcome::Warn);
        u.others_on_root_port.push("kbd".into());
        assert!(judge_dedicated(&u, "t")
            .evidence
            .contains("root port (kbd)"));
    }

    #[rstest]
    #[case(false, false, None, None, Outcome::Fail)]
    #[case(false, true, None, None, Outcome::Pass)]
    #[case(false, true, None, Some(0x10), Outcome::Fail)]
    #[case(true, false, Some(0x1), None, Outcome::Fail)]
    #[case(true, false, Some(0x5), None, Outcome::Pass)]
    #[case(true, false, None, None, Outcome::Pass)]
    fn vt(
        #[case] vmx: bool,
        #[case] svm: bool,
        #[case] fc: Option<u64>,
        #[case] vmcr: Option<u64>,
        #[case] o: Outcome,
    ) {
        let c = CpuFacts {
            vmx,
            svm,
            feature_control: fc,
            vm_cr: vmcr,
            ..CpuFacts::default()
        };
        assert_eq!(judge_vt(&c, "t").outcome, o);
    }

    #[test]
    fn x64_nx() {
        let c = CpuFacts {
            long_mode: true,
            nx: false,
            efer_nxe: Some(false),
            ..CpuFacts::default()
        };
        assert_eq!(judge_x64(&c, "t").outcome, Outcome::Pass);
        let v = judge_nx(&c, "t");
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(v.evidence.contains("EFER.NXE = 0"));
    }
}
