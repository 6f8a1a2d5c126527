//! The harness machinery under real QEMU with a 1-sector SeaBIOS guest (TCG): hot-unplug and
//! replug on the hand-off line on every controller type and topology, block statistics on a
//! per-run overlay (the source image stays pristine), deadline kill with artifacts (screendump
//! PNG), no orphan QEMU after drop or Ctrl-C, and KVM-internal-error detection.
//!
//! Needs (Debian): qemu-system-x86 (SeaBIOS included), qemu-utils, binutils, ovmf.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rstest::rstest;
use support::{gone, guest_image, Mode};
use ufd_harness::machine::{Accel, AccelChoice, FirmwareKind, Machine};
use ufd_harness::run::{run, RunEnd, RunSpec};

fn machine(toml_text: &str) -> Machine {
    let mut m: Machine = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"));
    m.firmware = FirmwareKind::Seabios;
    m.accel = AccelChoice::Tcg;
    m.memory_mib = 256;
    m.probe_channel = ufd_harness::machine::ProbeChannel::Serial;
    m
}

fn spec(name: &str, m: Machine, image: &Path, timeout_s: u64) -> RunSpec {
    RunSpec {
        name: name.into(),
        machine: m,
        image: image.into(),
        firmware: None,
        bios_firmware: None,
        accel: None,
        timeout: Duration::from_secs(timeout_s),
        late: None,
        artifacts: None,
        probe_disk: None,
        stop_on_event: None,
    }
}

const EHCI: &str = r#"
[[usb.controllers]]
id = "ehci"
kind = "ehci"
[usb.ufd]
controller = "ehci"
"#;

#[rstest]
#[case::ehci_root(EHCI)]
#[case::ich9_root(
    r#"
[[usb.controllers]]
id = "ich9"
kind = "ich9"
[usb.ufd]
controller = "ich9"
port = 2
removable = true
"#
)]
#[case::ich9_one_hub_on_the_uhci_companion(
    r#"
[[usb.controllers]]
id = "ich9"
kind = "ich9"
[usb.ufd]
controller = "ich9"
hubs = 1
"#
)]
#[case::xhci_two_hubs(
    r#"
[[usb.controllers]]
id = "xhci"
kind = "xhci"
[usb.ufd]
controller = "xhci"
port = 3
hubs = 2
removable = true
"#
)]
#[case::uhci_usb11(
    r#"
[[usb.controllers]]
id = "uhci"
kind = "uhci"
[usb.ufd]
controller = "uhci"
"#
)]
#[case::xhci_shared_with_kbd_and_tablet(
    r#"
[[usb.controllers]]
id = "xhci"
kind = "xhci"
[usb.ufd]
controller = "xhci"
[[usb.devices]]
driver = "usb-kbd"
controller = "xhci"
port = 2
[[usb.devices]]
driver = "usb-tablet"
controller = "xhci"
port = 4
"#
)]
fn qemu_handoff_unplugs_and_replugs_the_ufd(#[case] topology: &str) {
    let dir = tempfile::tempdir().unwrap();
    let img = guest_image(dir.path(), Mode::Tick);
    let tag = topology.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut s = spec(&format!("hotplug-{tag:016x}"), machine(topology), &img, 20);
    s.late = Some(Duration::from_millis(300));
    s.stop_on_event = Some("tick".into());
    // Kept for diagnosis if the run does not end as expected.
    s.artifacts = Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("harness-artifacts"));
    let out = run(&s, &|o| o.end != RunEnd::StopEvent).unwrap_or_else(|e| panic!("{e}"));
    let hp = out.hotplug.clone().expect("hot-plug report");
    assert_eq!(
        out.end,
        RunEnd::StopEvent,
        "{:?} {hp:?}, artifacts {:?}",
        out.end,
        out.artifacts
    );
    assert_eq!(hp.error, None, "{out:#?}");
    let (del, add) = (hp.deleted_ms.unwrap(), hp.added_ms.unwrap());
    assert!(hp.handoff_ms <= del && del + 300 <= add, "{hp:?}");
    // The UFD is attached again (same id, node, bus, port): the final sample found it.
    assert!(out.ufd_io.final_sample, "{out:#?}");
    // SeaBIOS read the boot sector before the unplug; counters were summed across re-add.
    assert!(out.ufd_io.rd_bytes >= 512, "{:?}", out.ufd_io);
    let ticks_after = out
        .records
        .iter()
        .filter(|r| r.value["event"] == "tick" && r.t_ms >= add)
        .count();
    assert_eq!(ticks_after, 1, "stopped at the first tick after the replug");
    assert!(gone(out.pid), "QEMU {} still exists after the run", out.pid);
}

#[test]
fn qemu_done_reports_bytes_written_to_an_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let img = guest_image(dir.path(), Mode::WriteThenDone);
    let before = std::fs::read(&img).unwrap();
    let out =
        run(&spec("write", machine(EHCI), &img, 20), &|_| false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.end, RunEnd::Done, "{out:#?}");
    assert_eq!(
        out.summary().outcome,
        Some(ufd_harness::probe::BootOutcome::Boots)
    );
    assert!(out.ufd_io.final_sample, "{out:#?}");
    assert_eq!(
        (out.ufd_io.wr_bytes, out.ufd_io.wr_operations),
        (512, 1),
        "{out:#?}"
    );
    assert_eq!(
        std::fs::read(&img).unwrap(),
        before,
        "the source image was written"
    );
    assert!(out.artifacts.is_none());
    assert!(gone(out.pid));
}

#[test]
fn qemu_deadline_kills_and_keeps_artifacts_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let img = guest_image(dir.path(), Mode::Tick);
    let arts = dir.path().join("artifacts");
    let mut s = spec("deadline case", machine(EHCI), &img, 3);
    s.artifacts = Some(arts.clone());
    let out = run(&s, &|o| o.end == RunEnd::Deadline).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.end, RunEnd::Deadline);
    assert!(gone(out.pid), "QEMU {} survived the deadline", out.pid);
    let a = out.artifacts.clone().expect("artifacts kept");
    assert_eq!(a, arts.join("deadline_case"));
    let serial = std::fs::read_to_string(a.join("serial.log")).unwrap();
    assert!(
        serial.contains("UFDPROBE {\"event\":\"handoff\""),
        "{serial}"
    );
    assert!(std::fs::read_to_string(a.join("debugcon.log"))
        .unwrap()
        .contains("\"tick\""));
    let qmp = std::fs::read_to_string(a.join("qmp.log")).unwrap();
    assert!(
        qmp.contains("-> {\"execute\":\"qmp_capabilities\""),
        "{qmp}"
    );
    assert!(qmp.contains("\"screendump\""), "{qmp}");
    let cmd = std::fs::read_to_string(a.join("qemu.cmdline")).unwrap();
    assert!(
        cmd.starts_with("qemu-system-x86_64 -nodefaults") && cmd.contains("usb-storage,id=ufd0"),
        "{cmd}"
    );
    let png = std::fs::read(a.join("screen.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("run.json")).unwrap()).unwrap();
    assert_eq!(json["end"]["kind"], "deadline");
    assert!(a.join("qemu.stderr").is_file());
}

#[test]
fn qemu_guard_kills_and_reaps_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let argv: Vec<String> = [
        "-nodefaults",
        "-machine",
        "q35,accel=tcg",
        "-display",
        "none",
        "-monitor",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let q = ufd_harness::process::Qemu::spawn(&argv, &dir.path().join("stderr")).unwrap();
    let pid = q.pid();
    assert!(ufd_harness::process::live_children().contains(&(pid as i32)));
    assert!(!gone(pid));
    drop(q);
    assert!(gone(pid), "QEMU {pid} survived drop");
    assert!(!ufd_harness::process::live_children().contains(&(pid as i32)));
}

#[test]
fn qemu_ctrl_c_leaves_no_orphan() {
    let exe = std::env::current_exe().unwrap();
    let child_bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/sigint_child");
    if !child_bin.is_file() {
        // `cargo test --test qemu_machinery` does not build examples; build it now.
        let target = exe.parent().unwrap().parent().unwrap().parent().unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let st = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "ufd-harness",
                "--example",
                "sigint_child",
            ])
            .env("CARGO_TARGET_DIR", target)
            .status()
            .unwrap();
        assert!(
            st.success() && child_bin.is_file(),
            "cannot build {}",
            child_bin.display()
        );
    }
    let mut child = Command::new(&child_bin)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: u32 = line
        .trim()
        .strip_prefix("PID ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    assert!(!gone(pid));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let st = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(2),
        "{st:?}"
    );
    let mut waited = 0;
    while !gone(pid) && waited < 100 {
        std::thread::sleep(Duration::from_millis(20));
        waited += 1;
    }
    assert!(gone(pid), "QEMU {pid} orphaned after Ctrl-C");
}

/// OVMF's pflash argv is accepted and the run stays under the deadline's control.
#[test]
fn qemu_ovmf_under_tcg_starts_and_is_killed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let img = guest_image(dir.path(), Mode::Tick);
    let mut m = machine(EHCI);
    m.firmware = FirmwareKind::Ovmf;
    let out = run(&spec("ovmf", m, &img, 3), &|_| false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.end, RunEnd::Deadline, "{}", out.qemu_stderr);
    assert!(out.cmdline.contains("if=pflash"), "{}", out.cmdline);
    assert!(gone(out.pid));
}

/// On a kvm_pvm host (qemu.md §0.1) OVMF under KVM hits a KVM internal error: detection
/// picks TCG, and a forced KVM run ends with `KvmInternalError` instead of hanging.
#[test]
fn qemu_kvm_internal_error_is_detected_not_hung() {
    let src = ufd_harness::firmware::discover(FirmwareKind::Ovmf, None).unwrap();
    let detected = ufd_harness::accel::detect(&src).unwrap();
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    if !ufd_harness::accel::kvm_available() || pvm {
        assert_eq!(detected, Accel::Tcg);
    }
    if ufd_harness::accel::kvm_available() && pvm {
        let dir = tempfile::tempdir().unwrap();
        let img = guest_image(dir.path(), Mode::Tick);
        let mut m = machine(EHCI);
        m.firmware = FirmwareKind::Ovmf;
        m.accel = AccelChoice::Kvm;
        let out = run(&spec("kvm", m, &img, 15), &|_| false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.end, RunEnd::KvmInternalError, "{}", out.qemu_stderr);
        assert!(gone(out.pid));
    }
}

/// A command line QEMU refuses ends the run at once with QEMU's own message.
#[test]
fn qemu_refusing_the_command_line_is_reported_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let img = guest_image(dir.path(), Mode::Tick);
    let mut m = machine(EHCI);
    m.machine_type = "no-such-board".into();
    let out = run(&spec("refused", m, &img, 10), &|_| false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.end, RunEnd::Exited(Some(1)), "{out:#?}");
    assert!(
        out.qemu_stderr.contains("unsupported machine type"),
        "{}",
        out.qemu_stderr
    );
    assert!(gone(out.pid));
}

/// SeaBIOS under kvm_pvm crawls instead of failing (qemu.md §5): the race measures both
/// accelerators on a small disk and picks TCG here; on a host whose KVM runs the firmware
/// it picks KVM only when KVM kept up.
#[test]
fn qemu_bios_race_measures_both_and_never_picks_a_crawling_kvm() {
    let src = ufd_harness::firmware::discover(FirmwareKind::Seabios, None).unwrap();
    let race = ufd_harness::accel::bios_race(&src).unwrap();
    let tcg = race
        .tcg
        .expect("SeaBIOS under TCG boots the race sector and it prints UFD on COM1");
    eprintln!("BIOS race: {race:?} -> {:?}", race.choice());
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    if !ufd_harness::accel::kvm_available() {
        assert_eq!(race.kvm, None);
    }
    if ufd_harness::accel::kvm_available() && pvm {
        assert_eq!(race.choice(), Accel::Tcg, "{race:?}");
        assert_eq!(ufd_harness::accel::detect(&src).unwrap(), Accel::Tcg);
    }
    if race.choice() == Accel::Kvm {
        let kvm = race.kvm.unwrap();
        assert!(
            kvm <= ufd_harness::accel::BiosRace::kvm_limit(tcg),
            "{race:?}"
        );
    }
}
