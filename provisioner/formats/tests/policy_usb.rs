//! The shared USB and topology judges of `ufd_formats::policy::usb`: every outcome of every
//! rule (pass / fail / warn / not judged) with the finding that decided it. `ufd check-device`
//! and the guest probe only word these decisions; their own suites pin the wording.

use rstest::rstest;
use ufd_formats::policy::usb::{
    self, ControllerKind, ControllerSharing, Dedicated, LinkSpeed, MscClass, MscTransport,
    NestedHub, Removable, Usb2, UsbDeviceFacts, UsbInterface,
};
use ufd_formats::policy::Outcome::{self, Fail, NotJudged, Pass, Warn};

use ControllerKind::{Ehci, Ohci, Other, Uhci, Xhci};

/// A conformant stick: fixed, USB 2.0 at 480 Mb/s, bulk-only MSC, on a root port of a
/// dedicated EHCI.
fn conformant() -> UsbDeviceFacts {
    UsbDeviceFacts {
        removable: Some(false),
        bcd_usb: Some(0x0200),
        speed: Some(LinkSpeed::High),
        interface: Some(UsbInterface {
            class: 0x08,
            subclass: Some(0x06),
            protocol: Some(0x50),
        }),
        hubs_between: Some(0),
        controller: Some(Ehci),
        sharing: Some(ControllerSharing::default()),
    }
}

#[test]
fn the_conformant_stick_passes_every_usb_rule() {
    let f = conformant();
    assert_eq!(usb::judge_removable(&f).outcome, Pass);
    assert_eq!(usb::judge_usb2(&f).outcome, Pass);
    assert_eq!(usb::judge_msc_class(&f).outcome, Pass);
    assert_eq!(usb::judge_nested_hub(&f).outcome, Pass);
    assert_eq!(usb::judge_dedicated(&f).outcome, Pass);
    assert_eq!(usb::judge_usb_boot(true), Pass);
}

#[test]
fn nothing_observed_is_never_a_pass() {
    let f = UsbDeviceFacts::default();
    assert_eq!(
        usb::judge_removable(&f).finding,
        Removable::NotObserved,
        "removable"
    );
    assert_eq!(usb::judge_usb2(&f).finding, Usb2::NoDescriptor);
    assert_eq!(usb::judge_msc_class(&f).finding, MscClass::NoInterface);
    assert_eq!(usb::judge_nested_hub(&f).finding, NestedHub::NotObserved);
    assert_eq!(usb::judge_dedicated(&f).finding, Dedicated::NotObserved);
    for o in [
        usb::judge_removable(&f).outcome,
        usb::judge_usb2(&f).outcome,
        usb::judge_msc_class(&f).outcome,
        usb::judge_nested_hub(&f).outcome,
        usb::judge_dedicated(&f).outcome,
        usb::judge_usb_boot(false),
    ] {
        assert_eq!(o, NotJudged);
    }
}

#[rstest]
#[case(Some(false), Pass, Removable::FixedMedia)]
#[case(Some(true), Fail, Removable::RemovableMedia)]
#[case(None, NotJudged, Removable::NotObserved)]
fn removable(#[case] r: Option<bool>, #[case] o: Outcome, #[case] finding: Removable) {
    let f = UsbDeviceFacts {
        removable: r,
        ..conformant()
    };
    let j = usb::judge_removable(&f);
    assert_eq!((j.outcome, j.finding), (o, finding));
}

#[rstest]
// no descriptor: not judged, whatever else is known
#[case(None, Some(LinkSpeed::High), Some(Ehci), NotJudged, Usb2::NoDescriptor)]
// a USB 1.x device fails first, even on an EHCI or a USB 1.1 controller
#[case(
    Some(0x0110),
    Some(LinkSpeed::Full),
    Some(Ehci),
    Fail,
    Usb2::Usb1Device
)]
#[case(Some(0x0100), None, Some(Uhci), Fail, Usb2::Usb1Device)]
// a USB 2.0 stick behind a USB 1.1 controller runs at 12 Mb/s
#[case(Some(0x0200), None, Some(Uhci), Fail, Usb2::Usb11Controller(Uhci))]
#[case(
    Some(0x0200),
    Some(LinkSpeed::Full),
    Some(Ohci),
    Fail,
    Usb2::Usb11Controller(Ohci)
)]
// ... or behind a USB 1.1 hub on a USB 2.0 controller
#[case(
    Some(0x0200),
    Some(LinkSpeed::Full),
    Some(Ehci),
    Fail,
    Usb2::BelowHighSpeed(LinkSpeed::Full)
)]
#[case(
    Some(0x0210),
    Some(LinkSpeed::Low),
    None,
    Fail,
    Usb2::BelowHighSpeed(LinkSpeed::Low)
)]
// USB 2.0 compatible
#[case(
    Some(0x0200),
    Some(LinkSpeed::High),
    Some(Ehci),
    Pass,
    Usb2::Compatible(Some(LinkSpeed::High))
)]
#[case(
    Some(0x0320),
    Some(LinkSpeed::Super),
    Some(Xhci),
    Pass,
    Usb2::Compatible(Some(LinkSpeed::Super))
)]
#[case(Some(0x0200), None, Some(Ehci), Pass, Usb2::Compatible(None))]
#[case(Some(0x0300), None, Some(Xhci), Pass, Usb2::Compatible(None))]
#[case(Some(0x0200), None, Some(Other(0x80)), Pass, Usb2::Compatible(None))]
#[case(Some(0x0200), None, None, Pass, Usb2::Compatible(None))]
fn usb2(
    #[case] bcd: Option<u16>,
    #[case] speed: Option<LinkSpeed>,
    #[case] controller: Option<ControllerKind>,
    #[case] o: Outcome,
    #[case] finding: Usb2,
) {
    let f = UsbDeviceFacts {
        bcd_usb: bcd,
        speed,
        controller,
        ..conformant()
    };
    let j = usb::judge_usb2(&f);
    assert_eq!((j.outcome, j.finding), (o, finding));
}

#[rstest]
#[case(Some((0x08, Some(0x06), Some(0x50))), Pass, MscClass::MassStorage(MscTransport::BulkOnly))]
#[case(Some((0x08, Some(0x06), Some(0x62))), Pass, MscClass::MassStorage(MscTransport::Uas))]
#[case(Some((0x08, Some(0x05), Some(0x50))), Pass, MscClass::MassStorage(MscTransport::Other))]
#[case(Some((0x08, None, None)), Pass, MscClass::MassStorage(MscTransport::Other))]
#[case(Some((0x03, Some(0x01), Some(0x01))), Fail, MscClass::NotMassStorage(0x03))]
#[case(Some((0xff, None, None)), Fail, MscClass::NotMassStorage(0xff))]
#[case(None, NotJudged, MscClass::NoInterface)]
fn msc_class(
    #[case] i: Option<(u8, Option<u8>, Option<u8>)>,
    #[case] o: Outcome,
    #[case] finding: MscClass,
) {
    let f = UsbDeviceFacts {
        interface: i.map(|(class, subclass, protocol)| UsbInterface {
            class,
            subclass,
            protocol,
        }),
        ..conformant()
    };
    let j = usb::judge_msc_class(&f);
    assert_eq!((j.outcome, j.finding), (o, finding));
}

#[rstest]
#[case(Some(0), Pass, NestedHub::RootPort)]
#[case(Some(1), Fail, NestedHub::BehindHubs(1))]
#[case(Some(2), Fail, NestedHub::BehindHubs(2))]
#[case(None, NotJudged, NestedHub::NotObserved)]
fn nested_hub(#[case] hubs: Option<u32>, #[case] o: Outcome, #[case] finding: NestedHub) {
    let f = UsbDeviceFacts {
        hubs_between: hubs,
        ..conformant()
    };
    let j = usb::judge_nested_hub(&f);
    assert_eq!((j.outcome, j.finding), (o, finding));
}

#[rstest]
#[case("8087:0024", true)]
#[case("8087:0020", true)]
#[case("8087:8000", true)]
#[case("8087:8008", true)]
#[case("8087:0a2b", false)]
#[case("05e3:0608", false)]
#[case("", false)]
fn rate_matching_hubs(#[case] id: &str, #[case] rmh: bool) {
    assert_eq!(usb::is_intel_rate_matching_hub(id), rmh);
}

#[rstest]
#[case(Some(Ehci), Some((0, 0)), Pass, Dedicated::DedicatedEhci)]
// the seed names EHCI: alone on anything else meets only the fallback
#[case(Some(Xhci), Some((0, 0)), Warn, Dedicated::AloneNotEhci(Some(Xhci)))]
#[case(Some(Uhci), Some((0, 0)), Warn, Dedicated::AloneNotEhci(Some(Uhci)))]
#[case(Some(Other(0x80)), Some((0, 0)), Warn, Dedicated::AloneNotEhci(Some(Other(0x80))))]
#[case(None, Some((0, 0)), Warn, Dedicated::AloneNotEhci(None))]
// shared controller, dedicated root port: the fallback
#[case(Some(Ehci), Some((2, 0)), Warn, Dedicated::SharedController)]
#[case(Some(Xhci), Some((1, 0)), Warn, Dedicated::SharedController)]
// shared root port
#[case(Some(Ehci), Some((2, 1)), Warn, Dedicated::SharedRootPort)]
#[case(None, Some((1, 1)), Warn, Dedicated::SharedRootPort)]
#[case(Some(Ehci), None, NotJudged, Dedicated::NotObserved)]
fn dedicated(
    #[case] controller: Option<ControllerKind>,
    #[case] sharing: Option<(usize, usize)>,
    #[case] o: Outcome,
    #[case] finding: Dedicated,
) {
    let f = UsbDeviceFacts {
        controller,
        sharing: sharing.map(|(c, p)| ControllerSharing {
            others_on_controller: c,
            others_on_root_port: p,
        }),
        ..conformant()
    };
    let j = usb::judge_dedicated(&f);
    assert_eq!((j.outcome, j.finding), (o, finding));
}

#[rstest]
#[case(true, Pass)]
#[case(false, NotJudged)]
fn usb_boot(#[case] over_usb: bool, #[case] o: Outcome) {
    assert_eq!(usb::judge_usb_boot(over_usb), o);
}

#[rstest]
#[case(0x00, Uhci, "UHCI", true)]
#[case(0x10, Ohci, "OHCI", true)]
#[case(0x20, Ehci, "EHCI", false)]
#[case(0x30, Xhci, "xHCI", false)]
#[case(0x80, Other(0x80), "other", false)]
#[case(0xfe, Other(0xfe), "other", false)]
fn controller_kinds(
    #[case] prog_if: u8,
    #[case] kind: ControllerKind,
    #[case] name: &str,
    #[case] usb11: bool,
) {
    let k = ControllerKind::from_prog_if(prog_if);
    assert_eq!((k, k.name(), k.is_usb11()), (kind, name, usb11));
}

#[cfg(feature = "serde")]
#[test]
fn controller_kinds_serialize_as_check_device_always_did() {
    assert_eq!(serde_json::to_value(Ehci).unwrap(), "ehci");
    assert_eq!(serde_json::to_value(Xhci).unwrap(), "xhci");
    assert_eq!(
        serde_json::to_value(Other(0x80)).unwrap(),
        serde_json::json!({"other": 128})
    );
}

#[rstest]
#[case("1.5", Some(LinkSpeed::Low))]
#[case("12", Some(LinkSpeed::Full))]
#[case("480", Some(LinkSpeed::High))]
#[case("480\n", Some(LinkSpeed::High))]
#[case("5000", Some(LinkSpeed::Super))]
#[case("10000", Some(LinkSpeed::SuperPlus))]
#[case("20000", Some(LinkSpeed::SuperPlus))]
#[case("479.9", Some(LinkSpeed::Full))]
#[case("99999999999999999999999", Some(LinkSpeed::SuperPlus))]
#[case("", None)]
#[case("fast", None)]
#[case("-480", None)]
#[case(".5", None)]
#[case("4.8e2", None)]
fn link_speeds(#[case] text: &str, #[case] want: Option<LinkSpeed>) {
    assert_eq!(LinkSpeed::from_mbps_text(text), want);
}
