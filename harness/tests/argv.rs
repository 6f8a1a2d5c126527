//! Exact QEMU argv of every shipped scenario and of the remaining topologies, as insta
//! snapshots (`snapshots/harness__*.snap`). Paths are fixed placeholders so the snapshots do
//! not depend on the run directory.

use std::path::{Path, PathBuf};

use rstest::rstest;
use ufd_harness::machine::{Accel, CpuVendor, FirmwareFiles, FirmwareKind, Machine, RunPaths};
use ufd_harness::scenario;

fn paths() -> RunPaths {
    RunPaths::in_dir(Path::new("/run/ufd"))
}

fn ovmf() -> FirmwareFiles {
    FirmwareFiles::Pflash {
        code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
        vars: "/run/ufd/OVMF_VARS.fd".into(),
    }
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn snap(name: &str, text: String) {
    insta::with_settings!({snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots"), prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!(format!("harness__{name}"), text);
    });
}

#[test]
fn every_scenario_file_loads_and_has_a_reviewed_argv() {
    let all = scenario::load(&scenarios_dir()).unwrap_or_else(|e| panic!("{e}"));
    assert!(all.len() >= 13, "{} scenarios", all.len());
    for s in &all {
        let firmware = match s.machine.firmware {
            FirmwareKind::Ovmf => ovmf(),
            FirmwareKind::Seabios => FirmwareFiles::Builtin,
        };
        let argv = s
            .machine
            .argv(&paths(), &firmware, Accel::Tcg, CpuVendor::Amd)
            .unwrap();
        snap(&format!("scenario_{}", s.name), argv.join("\n"));
    }
}

fn machine(toml_text: &str) -> Machine {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"))
}

#[rstest]
#[case::xhci_hub2_kvm_intel(
    "xhci_hub2_kvm_intel",
    r#"
firmware = "ovmf"
[cpu]
nx = true
vt = true
[[usb.controllers]]
id = "xhci"
kind = "xhci"
[usb.ufd]
controller = "xhci"
port = 2
hubs = 2
removable = true
bootindex = false
"#,
    Accel::Kvm,
    CpuVendor::Intel
)]
#[case::seabios_ich9_root_kvm_amd_masked(
    "seabios_ich9_root_kvm_amd_masked",
    r#"
firmware = "seabios"
memory_mib = 256
[cpu]
nx = false
vt = false
[[usb.controllers]]
id = "ich9"
kind = "ich9"
[usb.ufd]
controller = "ich9"
port = 1
"#,
    Accel::Kvm,
    CpuVendor::Amd
)]
fn argv_variants(
    #[case] name: &str,
    #[case] text: &str,
    #[case] accel: Accel,
    #[case] host: CpuVendor,
) {
    let m = machine(text);
    let fw = if m.firmware == ufd_harness::machine::FirmwareKind::Seabios {
        FirmwareFiles::Builtin
    } else {
        ovmf()
    };
    snap(name, m.argv(&paths(), &fw, accel, host).unwrap().join("\n"));
}

#[test]
fn probe_disk_takes_the_boot_index_and_user_firmware_is_one_pflash() {
    let m = machine(
        r#"
[[usb.controllers]]
id = "ehci"
kind = "ehci"
[usb.ufd]
controller = "ehci"
"#,
    );
    let mut p = paths();
    p.probe_disk = Some("/run/ufd/probe-esp.img".into());
    let fw = FirmwareFiles::PflashSingle {
        image: "/run/ufd/OVMF.fd".into(),
    };
    snap(
        "probe_disk_single_pflash",
        m.argv(&p, &fw, Accel::Tcg, CpuVendor::Amd)
            .unwrap()
            .join("\n"),
    );
    let add = m.ufd_device_add_args().unwrap();
    assert_eq!(
        add,
        serde_json::json!({"driver":"usb-storage","id":"ufd0","drive":"ufd","bus":"ehci.0","port":"1","removable":false})
    );
}

#[rstest]
#[case(
    r#"
[[usb.controllers]]
id = "ehci"
kind = "ehci"
[usb.ufd]
controller = "ehci"
hubs = 1
"#,
    "plain usb-ehci refuses it"
)]
#[case(
    r#"
[[usb.controllers]]
id = "x"
kind = "xhci"
[usb.ufd]
controller = "y"
"#,
    "no USB controller with id \"y\""
)]
#[case(
    r#"
[[usb.controllers]]
id = "x"
kind = "xhci"
[usb.ufd]
controller = "x"
hubs = 3
"#,
    "0, 1 or 2 nested hubs"
)]
#[case(
    r#"
[[usb.controllers]]
id = "x"
kind = "xhci"
[usb.ufd]
controller = "x"
[[usb.devices]]
driver = "usb-kbd"
controller = "x"
port = 1
"#,
    "uses the UFD's root port 1"
)]
#[case(
    r#"
[[usb.controllers]]
id = "x"
kind = "uhci"
[usb.ufd]
controller = "x"
port = 3
"#,
    "is not a root port"
)]
fn invalid_machines_are_refused_with_the_reason(#[case] text: &str, #[case] want: &str) {
    let e = machine(text).validate().unwrap_err().to_string();
    assert!(e.contains(want), "{e}");
}

#[test]
fn scenario_errors_name_the_file_and_field() {
    let f = Path::new("scenarios/bad.toml");
    let base = std::fs::read_to_string(scenarios_dir().join("conformant.toml")).unwrap();
    let e = scenario::Scenario::from_toml(&base.replace("HOST-NX", "HOST-NXX"), f)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("scenarios/bad.toml") && e.contains("unknown rule \"HOST-NXX\""),
        "{e}"
    );
    let e = scenario::Scenario::from_toml(
        &base.replace("outcome = \"boots\"", "outcome = \"hangs\""),
        f,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("expect.outcome"), "{e}");
    let e = scenario::Scenario::from_toml(&base.replace("memory_mib", "memory_mb"), f)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("scenarios/bad.toml") && e.contains("memory_mb"),
        "{e}"
    );
    let s = scenario::Scenario::from_toml(&base, f).unwrap();
    assert_eq!(s.name, "bad");
    assert_eq!(
        s.expect.outcome,
        Some(ufd_harness::probe::BootOutcome::Boots)
    );
}

/// `--bios-firmware FILE` (a firmware team's new SeaBIOS build): `-bios FILE`, never pflash.
#[test]
fn seabios_user_image_is_passed_with_dash_bios() {
    let all = scenario::load(&scenarios_dir().join("bios-conformant.toml")).unwrap();
    let argv = all[0]
        .machine
        .argv(
            &paths(),
            &FirmwareFiles::Bios {
                image: "/opt/seabios-next/bios.bin".into(),
            },
            Accel::Tcg,
            CpuVendor::Amd,
        )
        .unwrap();
    let at = argv.iter().position(|a| a == "-bios").expect("-bios");
    assert_eq!(argv[at + 1], "/opt/seabios-next/bios.bin");
    assert!(!argv.iter().any(|a| a.contains("pflash")), "{argv:?}");
}
