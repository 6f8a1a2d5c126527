//! `check-device` against the synthetic sysfs trees of `ufd_device::fakesys` (one per rule
//! outcome), materialised into a temporary directory at test time. Their reviewed listings are
//! committed as `tests/fixtures/sysfs/<case>.tree`; `UFD_UPDATE_FIXTURES=1` rewrites them.

use std::path::{Path, PathBuf};

use rstest::rstest;
use ufd_device::check::{check_device, CheckOptions, DeviceReport, EXIT_REQUIREMENT_FAILED};
use ufd_device::fakesys;
use ufd_device::sysfs::Sysfs;
use ufd_formats::policy::{self, Outcome};

fn run(case: &str) -> (tempfile::TempDir, DeviceReport) {
    let (name, tree) = fakesys::case(case).expect("known case");
    let dir = tempfile::tempdir().unwrap();
    tree.materialize(dir.path()).unwrap();
    let sys = Sysfs::new(dir.path());
    let r = check_device(&sys, &Path::new("/dev").join(name), CheckOptions::default()).unwrap();
    (dir, r)
}

use Outcome::{Fail, NotJudged as Nj, Pass, Warn};

#[rstest]
//       case                    nonremovable usb2  msc   capacity dedicated nested
#[case("conformant",           [Pass, Pass, Pass, Pass, Pass, Pass])]
#[case("removable-stick",      [Fail, Pass, Pass, Pass, Pass, Pass])]
#[case("usb3-xhci",            [Pass, Pass, Pass, Pass, Warn, Pass])]
#[case("one-hub",              [Pass, Pass, Pass, Pass, Pass, Fail])]
#[case("two-hubs",             [Pass, Pass, Pass, Pass, Pass, Fail])]
#[case("shared-controller",    [Pass, Pass, Pass, Pass, Warn, Pass])]
#[case("shared-root-port",     [Pass, Pass, Pass, Pass, Warn, Fail])]
#[case("companion-keyboard",   [Pass, Pass, Pass, Pass, Warn, Pass])]
#[case("full-speed-companion", [Pass, Fail, Pass, Pass, Warn, Pass])]
#[case("too-small-4gb",        [Pass, Pass, Pass, Fail, Pass, Pass])]
#[case("warn-12gb",            [Pass, Pass, Pass, Warn, Pass, Pass])]
#[case("storage-not-msc",      [Pass, Pass, Fail, Pass, Pass, Pass])]
#[case("sata-disk",            [Pass, Nj,   Nj,   Pass, Nj,   Nj])]
#[case("loop-device",          [Nj,   Nj,   Nj,   Pass, Nj,   Nj])]
fn each_case_judges_as_expected(#[case] case: &str, #[case] want: [Outcome; 6]) {
    let (_d, r) = run(case);
    let got: Vec<(&str, Outcome)> = r.verdicts.iter().map(|v| (v.rule, v.outcome)).collect();
    let expected: Vec<(&str, Outcome)> = ufd_device::check::DEVICE_RULES
        .iter()
        .copied()
        .zip(want)
        .collect();
    assert_eq!(got, expected, "{case}:\n{}", r.text());
    for v in &r.verdicts {
        assert!(!v.evidence.is_empty() && !v.source.is_empty(), "{v:?}");
        assert!(v.level().is_some());
    }
    let requirement_failed = r
        .verdicts
        .iter()
        .any(|v| v.outcome == Fail && v.level() == Some(policy::Level::Requirement));
    assert_eq!(
        r.exit_code,
        if requirement_failed {
            EXIT_REQUIREMENT_FAILED
        } else {
            0
        }
    );
}

#[test]
fn evidence_names_the_sysfs_file_and_value() {
    let (_d, r) = run("conformant");
    let v = r.verdict(policy::UFD_NONREMOVABLE).unwrap();
    assert_eq!(
        v.evidence,
        "/sys/block/sdb/removable = 0 (fixed media, SCSI RMB = 0)"
    );
    let v = r.verdict(policy::UFD_USB2).unwrap();
    assert!(
        v.evidence.starts_with(
            "bcdUSB 2.00, speed 480 Mb/s (USB 2.0 high speed) on EHCI controller 0000:00:1d.7"
        ),
        "{}",
        v.evidence
    );
    assert_eq!(
        v.source,
        "/sys/devices/pci0000:00/0000:00:1d.7/usb2/2-1/version, /sys/devices/pci0000:00/0000:00:1d.7/usb2/2-1/speed"
    );
    let v = r.verdict(policy::UFD_MSC_CLASS).unwrap();
    assert!(v.evidence.contains("2-1:1.0/bInterfaceClass = 08, subclass 06h, protocol 50h (mass storage, SCSI, bulk-only)"), "{}", v.evidence);
    let v = r.verdict(policy::UFD_CAPACITY).unwrap();
    assert!(
        v.evidence.starts_with("16008609792 bytes (16.00 GB)"),
        "{}",
        v.evidence
    );
    assert_eq!(
        v.source,
        "/sys/block/sdb/size = 31266816 sectors of 512 bytes"
    );
    let v = r.verdict(policy::TOPO_NO_NESTED_HUB).unwrap();
    assert_eq!(
        v.evidence,
        "2-1 is on root port usb2 port 1 (devpath 1: no hub)"
    );
    let v = r.verdict(policy::TOPO_DEDICATED_CONTROLLER).unwrap();
    assert!(
        v.evidence.contains("EHCI controller 0000:00:1d.7")
            && v.evidence.contains("class 0x0c0320"),
        "{}",
        v.evidence
    );
}

#[test]
fn facts_of_the_conformant_stick() {
    let (_d, r) = run("conformant");
    let f = &r.facts;
    assert_eq!(
        f.device_path,
        "/sys/devices/pci0000:00/0000:00:1d.7/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb"
    );
    assert_eq!(f.dev.unwrap().to_string(), "8:16");
    assert_eq!(f.scsi.as_ref().unwrap().vendor, "SanDisk");
    assert_eq!(f.scsi.as_ref().unwrap().model, "Cruzer Blade");
    assert_eq!(f.partitions.len(), 1);
    assert_eq!(f.partitions[0].start_sectors, Some(2048));
    let u = f.usb().unwrap();
    assert_eq!(u.serial.as_deref(), Some("4C530001230518115442"));
    assert_eq!(u.bcd_usb, Some(0x0200));
    assert_eq!(u.root_hub.as_deref(), Some("usb2"));
    assert!(u.hubs.is_empty() && u.others.is_empty());
    assert_eq!(
        u.controller.as_ref().unwrap().kind,
        Some(ufd_device::sysfs::HostController::Ehci)
    );
}

#[test]
fn hubs_and_shared_ports_are_named() {
    let (_d, r) = run("two-hubs");
    let v = r.verdict(policy::TOPO_NO_NESTED_HUB).unwrap();
    assert!(
        v.evidence.contains("behind 2 hub level(s)")
            && v.evidence.contains("2-1 (05e3:0608 USB2.0 Hub) -> 2-1.2"),
        "{}",
        v.evidence
    );
    assert_eq!(
        v.source,
        "/sys/devices/pci0000:00/0000:00:1d.7/usb2/2-1/2-1.2/2-1.2.3/devpath = 1.2.3"
    );
    let (_d, r) = run("shared-root-port");
    let v = r.verdict(policy::TOPO_DEDICATED_CONTROLLER).unwrap();
    assert!(
        v.evidence
            .contains("so is the UFD's root port (2-1.1 (046d:c31c USB Keyboard))"),
        "{}",
        v.evidence
    );
    let (_d, r) = run("companion-keyboard");
    let v = r.verdict(policy::TOPO_DEDICATED_CONTROLLER).unwrap();
    assert!(
        v.evidence
            .contains("3-2 (046d:c31c USB Keyboard) on companion 0000:00:1d.0"),
        "{}",
        v.evidence
    );
    let (_d, r) = run("full-speed-companion");
    let v = r.verdict(policy::UFD_USB2).unwrap();
    assert!(
        v.evidence.contains("USB 1.1 UHCI controller"),
        "{}",
        v.evidence
    );
}

#[test]
fn non_usb_disks_are_not_judged_with_the_reason() {
    let (_d, r) = run("sata-disk");
    let v = r.verdict(policy::UFD_USB2).unwrap();
    assert!(
        v.evidence
            .starts_with("not a USB device: ATA disk at /sys/devices/pci0000:00/0000:00:1f.2/ata1"),
        "{}",
        v.evidence
    );
    let (_d, r) = run("loop-device");
    let v = r.verdict(policy::UFD_NONREMOVABLE).unwrap();
    assert!(
        v.evidence
            .contains("loop device backed by /var/tmp/ufd.img"),
        "{}",
        v.evidence
    );
}

#[test]
fn strict_capacity_fails_12gb() {
    let (name, tree) = fakesys::case("warn-12gb").unwrap();
    let dir = tempfile::tempdir().unwrap();
    tree.materialize(dir.path()).unwrap();
    let r = check_device(
        &Sysfs::new(dir.path()),
        Path::new(name),
        CheckOptions {
            strict_capacity: true,
        },
    )
    .unwrap();
    assert_eq!(r.verdict(policy::UFD_CAPACITY).unwrap().outcome, Fail);
    assert_eq!(r.exit_code, EXIT_REQUIREMENT_FAILED);
}

#[test]
fn text_and_json_have_the_inspect_layout() {
    let (_d, r) = run("one-hub");
    let t = r.text();
    assert!(
        t.contains("policy verdicts (rule IDs: shared/design/policy-rules.md)"),
        "{t}"
    );
    assert!(
        t.contains(
            "  FAIL  TOPO-NO-NESTED-HUB         requirement    2-1.3 is behind 1 hub level(s)"
        ),
        "{t}"
    );
    assert!(
        t.contains("summary: 5 pass, 0 warn, 1 fail, 0 not judged here"),
        "{t}"
    );
    assert!(
        t.contains("requirements not met: TOPO-NO-NESTED-HUB"),
        "{t}"
    );
    let j = serde_json::to_value(&r).unwrap();
    let v = &j["verdicts"][5];
    assert_eq!(v["rule"], "TOPO-NO-NESTED-HUB");
    assert_eq!(v["level"], "requirement");
    assert_eq!(v["outcome"], "fail");
    assert!(v["source"].as_str().unwrap().ends_with("devpath = 1.3"));
    assert_eq!(j["exit_code"], 3);
    assert_eq!(j["facts"]["transport"]["kind"], "usb");
    assert_eq!(j["facts"]["transport"]["hubs"][0]["id"], "05e3:0608");
}

#[test]
fn missing_device_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = check_device(
        &Sysfs::new(dir.path()),
        Path::new("/dev/sdq"),
        CheckOptions::default(),
    )
    .unwrap_err();
    assert!(e.0.contains("no block device sdq"), "{e}");
    assert!(!e.0.contains('\n'));
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs")
}

/// The committed listings are the reviewed form of the trees: a change to the generator shows
/// up as a diff of these files.
#[test]
fn committed_tree_listings_match_the_generator() {
    let update = std::env::var_os("UFD_UPDATE_FIXTURES").is_some();
    for case in fakesys::CASES {
        let (_, tree) = fakesys::case(case).unwrap();
        let path = fixture_dir().join(format!("{case}.tree"));
        let listing = tree.listing();
        if update {
            std::fs::write(&path, &listing).unwrap();
        }
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UFD_UPDATE_FIXTURES=1)", path.display()));
        assert_eq!(
            committed,
            listing,
            "{} differs from the generator",
            path.display()
        );
    }
}
