//! `ufd check-device` end to end: the real binary on synthetic sysfs trees (materialised by
//! `ufd_device::fakesys`, the generator beside the fixtures) and on a real loop device.

use std::process::Command;

use rstest::rstest;
use serde_json::Value;

fn ufd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ufd"))
}

fn verdict<'a>(report: &'a Value, rule: &str) -> &'a str {
    report["verdicts"]
        .as_array()
        .expect("verdicts array")
        .iter()
        .find(|v| v["rule"] == rule)
        .and_then(|v| v["outcome"].as_str())
        .unwrap_or_else(|| panic!("no verdict for {rule}: {report}"))
}

#[rstest]
#[case::conformant("conformant", 0, &[("UFD-NONREMOVABLE", "pass"), ("UFD-USB2", "pass"), ("UFD-MSC-CLASS", "pass"), ("UFD-CAPACITY", "pass"), ("TOPO-NO-NESTED-HUB", "pass"), ("TOPO-DEDICATED-CONTROLLER", "pass")])]
#[case::removable("removable-stick", 3, &[("UFD-NONREMOVABLE", "fail")])]
#[case::two_hubs("two-hubs", 3, &[("TOPO-NO-NESTED-HUB", "fail"), ("UFD-NONREMOVABLE", "pass")])]
#[case::shared("shared-controller", 0, &[("TOPO-DEDICATED-CONTROLLER", "warn")])]
#[case::small("too-small-4gb", 3, &[("UFD-CAPACITY", "fail")])]
#[case::twelve("warn-12gb", 0, &[("UFD-CAPACITY", "warn")])]
#[case::sata("sata-disk", 0, &[("UFD-USB2", "not-judged"), ("UFD-CAPACITY", "pass")])]
fn judges_recorded_sysfs_trees(
    #[case] case: &str,
    #[case] exit: i32,
    #[case] want: &[(&str, &str)],
) {
    let (dev, tree) = ufd_device::fakesys::case(case).expect("known case");
    let root = tempfile::tempdir().unwrap();
    tree.materialize(root.path()).unwrap();
    let out = ufd()
        .args([
            "check-device",
            &format!("/dev/{dev}"),
            "--json",
            "--sysfs-root",
        ])
        .arg(root.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(exit),
        "{case}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    for (rule, outcome) in want {
        assert_eq!(verdict(&report, rule), *outcome, "{case} {rule}: {report}");
    }
    // The text form names every rule too.
    let text = ufd()
        .args(["check-device", &format!("/dev/{dev}"), "--sysfs-root"])
        .arg(root.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for (rule, _) in want {
        assert!(text.contains(rule), "{text}");
    }
}

#[test]
fn unknown_device_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let out = ufd()
        .args(["check-device", "/dev/sdzz", "--sysfs-root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("ufd: /dev/sdzz"), "{err}");
}
