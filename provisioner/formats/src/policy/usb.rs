//! The USB and topology rules — UFD-NONREMOVABLE, UFD-USB2, UFD-MSC-CLASS, TOPO-NO-NESTED-HUB,
//! TOPO-DEDICATED-CONTROLLER, HOST-USB-BOOT — decided once, for every vantage point.
//!
//! Two callers read the same facts from different places: `ufd check-device` from sysfs
//! (`ufd_device::check`) and the guest probe from the firmware (`ufd_bootpath::guest`: BlockIo,
//! UsbIo, the device path). Each fills a [`UsbDeviceFacts`], with `None` wherever its vantage
//! point cannot observe a fact; each judge here returns a [`Judgement`]: the outcome and the
//! decisive fact (a per-rule finding). The caller words the evidence and names its source
//! (sysfs file paths, firmware protocol names), so a verdict means the same thing wherever it
//! is printed while each report quotes what it actually read. A fact that is `None` makes its
//! rule [`Outcome::NotJudged`], never a pass.
//!
//! Reference: shared/design/policy-rules.md (IDs, levels); the seed's "Additional Information"
//! (USB 2.0, class 08h, EHCI controller, nested hubs); USB 2.0 spec §9.6.1 (bcdUSB), §9.6.5
//! (interface class); USB Mass Storage Class Overview 1.4 (subclass 06h SCSI transparent,
//! protocol 50h bulk-only, 62h UAS); PCI Code and ID Assignment spec, class 0Ch subclass 03h
//! programming interfaces.

use super::Outcome;

/// USB host controller kind, from the PCI class code 0C03h programming interface (PCI Code and
/// ID Assignment spec): 00h UHCI, 10h OHCI, 20h EHCI, 30h xHCI. Both the firmware view (PCI
/// config space through port CF8h/CFCh) and sysfs (`class` = `0x0c03PP`) read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "lowercase")
)]
pub enum ControllerKind {
    /// Universal Host Controller (USB 1.1, full/low speed; Intel's EHCI companions).
    Uhci,
    /// Open Host Controller (USB 1.1, full/low speed; non-Intel EHCI companions).
    Ohci,
    /// Enhanced Host Controller (USB 2.0 high speed).
    Ehci,
    /// eXtensible Host Controller (USB 3.x and USB 2.0 on one controller).
    Xhci,
    /// Any other programming interface (80h "unspecified", FEh "USB device", ...).
    Other(u8),
}

impl ControllerKind {
    /// From PCI prog-if (class 0Ch, subclass 03h): 00 UHCI, 10 OHCI, 20 EHCI, 30 xHCI.
    pub fn from_prog_if(p: u8) -> Self {
        match p {
            0x00 => ControllerKind::Uhci,
            0x10 => ControllerKind::Ohci,
            0x20 => ControllerKind::Ehci,
            0x30 => ControllerKind::Xhci,
            o => ControllerKind::Other(o),
        }
    }

    /// `UHCI`, `OHCI`, `EHCI`, `xHCI`, `other`.
    pub fn name(self) -> &'static str {
        match self {
            ControllerKind::Uhci => "UHCI",
            ControllerKind::Ohci => "OHCI",
            ControllerKind::Ehci => "EHCI",
            ControllerKind::Xhci => "xHCI",
            ControllerKind::Other(_) => "other",
        }
    }

    /// A USB 1.1 controller: every device on it runs at full speed (12 Mb/s) at best, whatever
    /// its bcdUSB. On a chipset with EHCI and companions this is where a port lands when the
    /// EHCI does not own it (no EHCI driver, or the port routed to the companion).
    pub fn is_usb11(self) -> bool {
        matches!(self, ControllerKind::Uhci | ControllerKind::Ohci)
    }
}

/// The link speed the device runs at (USB 2.0 spec §7.1: low 1.5, full 12, high 480 Mb/s;
/// USB 3.x: 5000, 10000, 20000 Mb/s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinkSpeed {
    /// 1.5 Mb/s.
    Low,
    /// 12 Mb/s.
    Full,
    /// 480 Mb/s: USB 2.0 high speed.
    High,
    /// 5000 Mb/s: USB 3.x SuperSpeed.
    Super,
    /// 10000 or 20000 Mb/s: SuperSpeed+.
    SuperPlus,
}

impl LinkSpeed {
    /// From a speed in Mb/s as text, the way Linux writes a USB device's `speed` attribute
    /// (`1.5`, `12`, `480`, `5000`, `10000`, `20000`; `drivers/usb/core/sysfs.c`). Values between
    /// the standard speeds round down to the slower one; anything not a decimal number is None.
    pub fn from_mbps_text(text: &str) -> Option<Self> {
        let t = text.trim();
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mbps = whole.bytes().fold(0u64, |a, b| {
            a.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        });
        Some(match mbps {
            0..=11 => LinkSpeed::Low,
            12..=479 => LinkSpeed::Full,
            480..=4999 => LinkSpeed::High,
            5000..=9999 => LinkSpeed::Super,
            _ => LinkSpeed::SuperPlus,
        })
    }

    /// At least USB 2.0 high speed (480 Mb/s).
    pub fn is_high_speed_or_faster(self) -> bool {
        self >= LinkSpeed::High
    }
}

/// The interface the disk hangs off (USB 2.0 spec §9.6.5). Subclass and protocol are None when
/// the caller could not read them; the class decides the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsbInterface {
    pub class: u8,
    pub subclass: Option<u8>,
    pub protocol: Option<u8>,
}

/// How crowded the UFD's controller is, as far as the caller can see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControllerSharing {
    /// Other (non-hub) USB devices on the UFD's controller — on a host, its companion
    /// controllers too, since they serve the same physical ports.
    pub others_on_controller: usize,
    /// Of those, the ones behind the UFD's root-hub port (through a hub on that port).
    pub others_on_root_port: usize,
}

/// The facts the USB and topology rules are judged from. `None` = not observable from this
/// vantage point (the rule is then not judged; the caller words why).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsbDeviceFacts {
    /// The SCSI INQUIRY RMB bit as the reader saw it: sysfs `removable`, UEFI BlockIo
    /// `Media->RemovableMedia` (OVMF's UsbMassStorageDxe copies RMB).
    pub removable: Option<bool>,
    /// Device descriptor `bcdUSB` (BCD: 0x0200 = 2.00).
    pub bcd_usb: Option<u16>,
    /// The link speed (sysfs `speed`; UEFI UsbIo does not report it).
    pub speed: Option<LinkSpeed>,
    /// The interface the disk hangs off.
    pub interface: Option<UsbInterface>,
    /// Hubs between the controller's root hub and the UFD (0 = on a root port).
    pub hubs_between: Option<u32>,
    /// The controller kind; None = not identified (then it is not shown to be EHCI).
    pub controller: Option<ControllerKind>,
    /// Who else is on the controller; None = the topology is not observable (not a USB
    /// device, or no controller found above it).
    pub sharing: Option<ControllerSharing>,
}

/// A rule's outcome and the fact that decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement<F> {
    pub outcome: Outcome,
    pub finding: F,
}

impl<F> Judgement<F> {
    fn new(outcome: Outcome, finding: F) -> Self {
        Judgement { outcome, finding }
    }
}

/// UFD-NONREMOVABLE: what decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removable {
    /// The bit was not read (not judged).
    NotObserved,
    /// RMB = 0: fixed media (pass).
    FixedMedia,
    /// RMB = 1: the UFD reports removable media; Windows then shows
    /// `STORAGE_DEVICE_DESCRIPTOR.RemovableMedia` = 1 and the OEM policy is not met (fail).
    RemovableMedia,
}

/// UFD-NONREMOVABLE from the RMB bit (Windows' `RemovableMedia` is the INQUIRY RMB bit).
pub fn judge_removable(f: &UsbDeviceFacts) -> Judgement<Removable> {
    match f.removable {
        None => Judgement::new(Outcome::NotJudged, Removable::NotObserved),
        Some(false) => Judgement::new(Outcome::Pass, Removable::FixedMedia),
        Some(true) => Judgement::new(Outcome::Fail, Removable::RemovableMedia),
    }
}

/// UFD-USB2: what decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usb2 {
    /// No device descriptor was read (not judged).
    NoDescriptor,
    /// bcdUSB below 2.00: a USB 1.x device (fail).
    Usb1Device,
    /// A USB 2.0 (or later) device behind a USB 1.1 controller, so at full speed (fail).
    Usb11Controller(ControllerKind),
    /// A USB 2.0 (or later) device whose link runs below high speed, e.g. behind a USB 1.1
    /// hub (fail).
    BelowHighSpeed(LinkSpeed),
    /// USB 2.0 compatible on a USB 2.0 path (pass); the speed when the caller saw it.
    Compatible(Option<LinkSpeed>),
}

/// UFD-USB2: bcdUSB at least 2.00 (a USB 3 stick is USB 2.0 compatible), not on a USB 1.1
/// controller, and — where the link speed is observable — at least high speed. A USB 2.0 stick
/// on a UHCI/OHCI root (an EHCI's companion) or behind a USB 1.1 hub runs at 12 Mb/s: the
/// server does not give the UFD the USB 2.0 path the seed requires. An unidentified controller
/// with no observed speed passes on bcdUSB alone (the firmware view of a controller behind a
/// PCI bridge); the caller says so in the evidence.
pub fn judge_usb2(f: &UsbDeviceFacts) -> Judgement<Usb2> {
    let Some(bcd) = f.bcd_usb else {
        return Judgement::new(Outcome::NotJudged, Usb2::NoDescriptor);
    };
    if bcd < 0x0200 {
        return Judgement::new(Outcome::Fail, Usb2::Usb1Device);
    }
    match (f.controller, f.speed) {
        (Some(c), _) if c.is_usb11() => Judgement::new(Outcome::Fail, Usb2::Usb11Controller(c)),
        (_, Some(s)) if !s.is_high_speed_or_faster() => {
            Judgement::new(Outcome::Fail, Usb2::BelowHighSpeed(s))
        }
        (_, s) => Judgement::new(Outcome::Pass, Usb2::Compatible(s)),
    }
}

/// How a mass-storage interface transports commands (USB MSC Overview 1.4 §2, §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MscTransport {
    /// Subclass 06h (SCSI transparent), protocol 50h (bulk-only): what Windows' usbstor.sys
    /// drives and boots from.
    BulkOnly,
    /// Subclass 06h, protocol 62h (USB Attached SCSI). Windows Server 2008 R2 has no UAS
    /// driver; UAS devices also offer a bulk-only alternate setting, which it uses.
    Uas,
    /// Another subclass/protocol of class 08h (or one that was not read).
    Other,
}

/// UFD-MSC-CLASS: what decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MscClass {
    /// No interface descriptor (or no class) was read (not judged).
    NoInterface,
    /// Class 08h (pass).
    MassStorage(MscTransport),
    /// Another class (fail).
    NotMassStorage(u8),
}

/// UFD-MSC-CLASS: interface class 08h (mass storage); subclass/protocol only qualify it.
pub fn judge_msc_class(f: &UsbDeviceFacts) -> Judgement<MscClass> {
    match f.interface {
        None => Judgement::new(Outcome::NotJudged, MscClass::NoInterface),
        Some(UsbInterface {
            class: 0x08,
            subclass,
            protocol,
        }) => {
            let t = match (subclass, protocol) {
                (Some(0x06), Some(0x50)) => MscTransport::BulkOnly,
                (Some(0x06), Some(0x62)) => MscTransport::Uas,
                _ => MscTransport::Other,
            };
            Judgement::new(Outcome::Pass, MscClass::MassStorage(t))
        }
        Some(i) => Judgement::new(Outcome::Fail, MscClass::NotMassStorage(i.class)),
    }
}

/// TOPO-NO-NESTED-HUB: what decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NestedHub {
    /// The topology was not observed (not judged).
    NotObserved,
    /// On a root-hub port (pass).
    RootPort,
    /// Behind this many hub levels (fail).
    BehindHubs(u32),
}

/// TOPO-NO-NESTED-HUB: the seed says "do not expose the flash device over a nested hub" and
/// calls it unsupported. The project reads that as: no hub between the controller's root hub
/// and the UFD, so one external hub already fails. An integrated rate-matching hub
/// ([`is_intel_rate_matching_hub`]) counts: the firmware and Windows see it as a hub too.
pub fn judge_nested_hub(f: &UsbDeviceFacts) -> Judgement<NestedHub> {
    match f.hubs_between {
        None => Judgement::new(Outcome::NotJudged, NestedHub::NotObserved),
        Some(0) => Judgement::new(Outcome::Pass, NestedHub::RootPort),
        Some(n) => Judgement::new(Outcome::Fail, NestedHub::BehindHubs(n)),
    }
}

/// Intel's integrated "rate matching hubs" (`8087:0020`, `8087:0024`, `8087:8000`,
/// `8087:8008`, as `idVendor:idProduct` the way sysfs and lsusb print them): on Intel 5-series and
/// later chipsets every EHCI port sits behind one, so a UFD on such a "root" port is one hub
/// level down.
pub fn is_intel_rate_matching_hub(vendor_product: &str) -> bool {
    matches!(
        vendor_product,
        "8087:0020" | "8087:0024" | "8087:8000" | "8087:8008"
    )
}

/// TOPO-DEDICATED-CONTROLLER: what decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dedicated {
    /// The controller and its devices were not observed (not judged).
    NotObserved,
    /// Others share the UFD's root port (warn).
    SharedRootPort,
    /// Others share the controller, the UFD's root port is its own (warn: the seed's fallback).
    SharedController,
    /// Alone on a controller that is not (known to be) EHCI (warn). `Some(Xhci)`: Windows
    /// Server 2008 R2 has no inbox xHCI driver.
    AloneNotEhci(Option<ControllerKind>),
    /// Alone on an EHCI controller (pass).
    DedicatedEhci,
}

/// TOPO-DEDICATED-CONTROLLER: the seed recommends "a dedicated USB EHCI controller" for the
/// UFD, else "a dedicated root-hub port with all other USB devices away from it". Alone on an
/// EHCI passes; sharing the controller but not the root port is the fallback (warn); sharing
/// the root port warns too; alone on a controller not shown to be EHCI (xHCI, UHCI/OHCI, or
/// unidentified) meets at best the fallback (warn).
pub fn judge_dedicated(f: &UsbDeviceFacts) -> Judgement<Dedicated> {
    let Some(s) = f.sharing else {
        return Judgement::new(Outcome::NotJudged, Dedicated::NotObserved);
    };
    if s.others_on_root_port > 0 {
        Judgement::new(Outcome::Warn, Dedicated::SharedRootPort)
    } else if s.others_on_controller > 0 {
        Judgement::new(Outcome::Warn, Dedicated::SharedController)
    } else if f.controller != Some(ControllerKind::Ehci) {
        Judgement::new(Outcome::Warn, Dedicated::AloneNotEhci(f.controller))
    } else {
        Judgement::new(Outcome::Pass, Dedicated::DedicatedEhci)
    }
}

/// HOST-USB-BOOT: the firmware loaded the judging program from the UFD over USB (pass). When
/// it was loaded from elsewhere (a probe disk, or a BIOS that does not say over which bus) the
/// firmware's ability to boot USB is not shown either way: not judged, never failed.
pub fn judge_usb_boot(loaded_over_usb: bool) -> Outcome {
    if loaded_over_usb {
        Outcome::Pass
    } else {
        Outcome::NotJudged
    }
}
