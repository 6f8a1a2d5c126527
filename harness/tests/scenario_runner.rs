//! `run_scenario`/`run_all` end to end with a scripted SeaBIOS guest that speaks the probe
//! protocol: verdict, hops, hand-off (late surfacing), `done`, power-off; expectations met and
//! missed, artifacts of the failing scenario, JUnit XML and the results table.
//!
//! Needs (Debian): qemu-system-x86, qemu-utils, binutils.

mod support;

use std::path::Path;

use support::{script_image, Script};
use ufd_harness::probe::BootOutcome;
use ufd_harness::scenario::{junit_xml, results_table, run_all, RunOptions, Scenario};

const SCENARIO: &str = r#"
description = "scripted guest"
timeout_s = 20

[image]
synthetic = "hyperv-2008r2"

[machine]
firmware = "seabios"
memory_mib = 256
accel = "tcg"
probe_channel = "serial"

[[machine.usb.controllers]]
id = "ehci"
kind = "ehci"

[machine.usb.ufd]
controller = "ehci"

[late]
delay_s = 0.3

[expect]
outcome = "bugcheck 0x7B"
last_hop = "bcd"

[expect.verdicts]
HOST-NX = "pass"
"#;

#[test]
fn qemu_scenarios_run_in_parallel_and_are_judged() {
    let dir = tempfile::tempdir().unwrap();
    let img = script_image(
        dir.path(),
        "probe.img",
        &Script {
            before: &[
                r#"UFDPROBE {"step":"mbr"}"#,
                r#"UFDPROBE {"rule":"HOST-NX","outcome":"pass"}"#,
                r#"UFDPROBE {"event":"handoff"}"#,
            ],
            ticks: Some(3),
            write: false,
            after: &[
                r#"UFDPROBE {"step":"bcd","status":"fail"}"#,
                r#"UFDPROBE {"event":"done","bugcheck":"0x7B"}"#,
            ],
        },
    );
    let good = Scenario::from_toml(SCENARIO, Path::new("scripted-good.toml")).unwrap();
    let bad_text = SCENARIO
        .replace("outcome = \"bugcheck 0x7B\"", "outcome = \"boots\"")
        .replace(
            "HOST-NX = \"pass\"",
            "HOST-NX = \"fail\"\nHOST-VT = \"pass\"",
        );
    let bad = Scenario::from_toml(&bad_text, Path::new("scripted-bad.toml")).unwrap();
    let arts = dir.path().join("artifacts");
    let opts = RunOptions {
        image: Some(img),
        artifacts: Some(arts.clone()),
        jobs: 2,
        ..Default::default()
    };
    let results = run_all(&[good, bad], &opts);

    let g = &results[0];
    assert_eq!(g.name, "scripted-good");
    assert!(g.passed, "{:#?}", g.mismatches);
    assert_eq!(g.outcome, Some(BootOutcome::Bugcheck(0x7B)));
    assert_eq!(g.last_hop.as_deref(), Some("bcd"));
    assert_eq!(g.written_bytes, Some(0));
    let run = g.run.as_ref().unwrap();
    let hp = run.hotplug.as_ref().unwrap();
    assert!(hp.error.is_none() && hp.added_ms.is_some(), "{hp:?}");
    assert!(run.artifacts.is_none());

    let b = &results[1];
    assert!(!b.passed);
    assert_eq!(
        b.mismatches,
        vec![
            "outcome: expected boots, got bugcheck 0x7B".to_string(),
            "HOST-NX: expected fail, got pass".to_string(),
            "HOST-VT: expected pass, no verdict".to_string(),
        ]
    );
    let a = b
        .run
        .as_ref()
        .unwrap()
        .artifacts
        .clone()
        .expect("artifacts of the failing scenario");
    assert_eq!(a, arts.join("scripted-bad"));
    for f in [
        "serial.log",
        "debugcon.log",
        "qmp.log",
        "qemu.cmdline",
        "qemu.stderr",
        "screen.png",
        "run.json",
    ] {
        assert!(a.join(f).is_file(), "{f} missing in {}", a.display());
    }

    let xml = junit_xml("ufd-e2e", &results);
    assert!(
        xml.contains(r#"<testsuite name="ufd-e2e" tests="2" failures="1" errors="0""#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<failure message="outcome: expected boots, got bugcheck 0x7B">"#),
        "{xml}"
    );
    let table = results_table(&results);
    assert!(
        table.contains("scripted-bad")
            && table.contains("    - HOST-VT: expected pass, no verdict"),
        "{table}"
    );
    assert!(table.ends_with("1 of 2 scenarios passed\n"), "{table}");
}

#[test]
fn scenario_without_image_is_an_error_not_a_panic() {
    let s = Scenario::from_toml(SCENARIO, Path::new("x.toml")).unwrap();
    let r = ufd_harness::scenario::run_scenario(&s, &RunOptions::default());
    assert!(!r.passed);
    assert_eq!(r.error.as_deref(), Some("no image: pass --image IMAGE"));
    let provider =
        |_: &ufd_harness::scenario::ImageRecipe| -> ufd_harness::Result<std::path::PathBuf> {
            Err(ufd_harness::Error::config("synthetic image not built"))
        };
    let opts = RunOptions {
        image_provider: Some(&provider),
        ..Default::default()
    };
    let r = ufd_harness::scenario::run_scenario(&s, &opts);
    assert_eq!(
        r.error.as_deref(),
        Some("image hyperv-2008r2: invalid configuration: synthetic image not built")
    );
    let xml = junit_xml("s", &[r]);
    assert!(
        xml.contains(r#"errors="1""#) && xml.contains("<error message="),
        "{xml}"
    );
}
