//! The guest probe (vm-images/probe) booted by OVMF from an emulated USB stick, on a UEFI-layout
//! UFD image built like the walker tests' (FAT32 ESP with the BCD and the probe as
//! `\EFI\BOOT\BOOTX64.EFI`, NTFS partition with a fixed VHD). Asserts the JSON report lines.
//!
//! Builds the probe itself (`cargo build --release --target x86_64-unknown-uefi`, its own
//! target dir under CARGO_TARGET_TMPDIR; needs `rustup target add x86_64-unknown-uefi`), unless
//! `UFD_PROBE_EFI` names a built one.
//! Runs QEMU with TCG (OVMF cannot run under the kvm_pvm KVM of the test machines:
//! shared/reference/qemu.md §0) with a hard timeout, killing only its own child.
//! Needs Debian `qemu-system-x86`, `ovmf`, plus the image tools of `common`.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{build_ufd, Faults, Layout};
use ufd_testkit::{MIB, UFD_SIG};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// TCG boot of Debian OVMF takes ~4 s, the probe's connect + walk a few more.
const TIMEOUT: Duration = Duration::from_secs(90);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Build the probe and return the path of `ufd-probe.efi`. `UFD_PROBE_EFI` names an already
/// built probe instead (e.g. one `cargo xtask` built once for every consumer).
fn build_probe() -> PathBuf {
    if let Some(p) = std::env::var_os("UFD_PROBE_EFI") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "UFD_PROBE_EFI={} is not a file", p.display());
        return p;
    }
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ufd-probe");
    let manifest = workspace().join("vm-images/probe/Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "x86_64-unknown-uefi",
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("cargo");
    assert!(
        out.status.success(),
        "building the probe failed (is the target installed? `rustup target add x86_64-unknown-uefi`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir.join("x86_64-unknown-uefi/release/ufd-probe.efi")
}

/// The `UFDPROBE {json}` lines of a debugcon log, JSON parsed.
fn report(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| l.strip_prefix("UFDPROBE "))
        .map(|j| serde_json::from_str(j).unwrap_or_else(|e| panic!("bad JSON {j:?}: {e}")))
        .collect()
}

struct Run {
    lines: Vec<serde_json::Value>,
    serial: String,
}

/// QMP `device_del` of `id` over the monitor socket (capabilities negotiated first).
fn qmp_device_del(sock: &Path, id: &str) {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    let s = UnixStream::connect(sock).expect("QMP socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut line = String::new();
    r.read_line(&mut line).unwrap(); // greeting
    for cmd in [
        r#"{"execute":"qmp_capabilities"}"#.to_string(),
        format!(r#"{{"execute":"device_del","arguments":{{"id":"{id}"}}}}"#),
    ] {
        writeln!(w, "{cmd}").unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.contains("\"return\"") {
                break;
            }
            assert!(!line.contains("\"error\""), "QMP {cmd}: {line}");
        }
    }
}

fn boot(dir: &Path, img: &Path, usb: &[&str]) -> Run {
    boot_with(dir, img, usb, None)
}

/// Boot; with `unplug_at_handoff`, `device_del` that device when the probe's hand-off record
/// appears (what the harness's late-surfacing scenarios do).
fn boot_with(dir: &Path, img: &Path, usb: &[&str], unplug_at_handoff: Option<&str>) -> Run {
    // One VM at a time: TCG keeps a core busy per VM (qemu.md §6), and parallel VMs on a
    // 2-core machine only stretch every boot towards the timeout.
    static ONE_VM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_ok(),
        "qemu-system-x86_64 missing: install the Debian package qemu-system-x86"
    );
    assert!(
        Path::new(OVMF_CODE).exists(),
        "{OVMF_CODE} missing: install the Debian package ovmf"
    );
    let vars = dir.join("vars.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();
    let dbg = dir.join("debugcon.log");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-machine",
        "q35,accel=tcg",
        "-m",
        "512",
        "-display",
        "none",
        "-monitor",
        "none",
    ])
    .args(["-serial", "stdio"])
    .arg("-drive")
    .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
    .arg("-drive")
    .arg(format!("if=pflash,format=raw,file={}", vars.display()))
    .arg("-drive")
    .arg(format!("if=none,id=ufd,format=raw,file={}", img.display()))
    .args(usb)
    .arg("-debugcon")
    .arg(format!("file:{}", dbg.display()))
    .arg("-qmp")
    .arg(format!(
        "unix:{},server=on,wait=off",
        dir.join("qmp.sock").display()
    ))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("qemu-system-x86_64: install qemu-system-x86");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let start = Instant::now();
    let mut unplug = unplug_at_handoff;
    let status = loop {
        if let Some(id) = unplug {
            if std::fs::read_to_string(&dbg).is_ok_and(|l| l.contains(r#""event":"handoff""#)) {
                qmp_device_del(&dir.join("qmp.sock"), id);
                unplug = None;
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let serial = reader.join().unwrap();
    let log = std::fs::read_to_string(&dbg).unwrap_or_default();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        status.is_some(),
        "QEMU did not power off within {TIMEOUT:?} (killed); debugcon:\n{log}\nserial tail:\n{}",
        &serial[serial.len().saturating_sub(2000)..]
    );
    assert!(status.unwrap().success(), "QEMU failed: {err}\n{log}");
    eprintln!(
        "QEMU powered off after {:?}; debugcon:\n{log}",
        start.elapsed()
    );
    Run {
        lines: report(&log),
        serial,
    }
}

fn event<'a>(r: &'a Run, name: &str) -> &'a serde_json::Value {
    r.lines
        .iter()
        .find(|l| l["event"] == name)
        .unwrap_or_else(|| panic!("no {name} line in {:#?}", r.lines))
}

fn verdict<'a>(r: &'a Run, rule: &str) -> &'a serde_json::Value {
    r.lines
        .iter()
        .find(|l| l["event"] == "verdict" && l["rule"] == rule)
        .unwrap_or_else(|| panic!("no verdict {rule}"))
}

#[test]
fn probe_boots_from_a_usb_stick_and_walks_the_boot_path() {
    let probe = build_probe();
    let dir = tempfile::tempdir().unwrap();
    let img = build_ufd(
        dir.path(),
        Layout::Uefi,
        Faults::default(),
        &[("EFI/BOOT/BOOTX64.EFI", probe.as_path())],
    );
    let r = boot(
        dir.path(),
        &img,
        &[
            "-device",
            "qemu-xhci,id=xhci,addr=0x4",
            "-device",
            "usb-storage,bus=xhci.0,port=1,drive=ufd,removable=off",
        ],
    );
    // the same lines reach the serial port (ConOut)
    assert!(
        r.serial.contains("UFDPROBE {\"event\":\"hello\""),
        "serial: {}",
        r.serial
    );

    let p = event(&r, "platform");
    assert_eq!(p["long_mode"], true);
    assert_eq!(p["hypervisor"], "TCGTCGTCGTCG");
    assert!(p["memory_bytes"].as_u64().unwrap() > 256 * MIB);

    let d = event(&r, "boot-device");
    assert_eq!(
        d["disk_path"], "PciRoot(0x0)/Pci(0x4,0x0)/USB(0x0,0x0)",
        "{d}"
    );
    assert_eq!(d["partition_offset"], MIB);
    assert_eq!(d["controller"], "xHCI");
    assert_eq!(d["pci_class"], "0c0330");
    assert_eq!(d["usb_nodes"], 1);
    assert_eq!(d["removable"], false);
    assert_eq!(d["interface_class"], 8);
    assert_eq!(d["interface_subclass"], 6);
    assert_eq!(d["interface_protocol"], 0x50);
    assert_eq!(d["disk_signature"], format!("{UFD_SIG:#010x}"));
    assert!(d["bcd_usb"].as_str().unwrap() >= "2.00", "{d}");

    let hops: Vec<&serde_json::Value> = r.lines.iter().filter(|l| l["event"] == "hop").collect();
    assert_eq!(hops.len(), ufd_bootpath::walk::HOPS.len());
    for h in &hops {
        assert_eq!(h["status"], "ok", "{h}");
    }
    assert!(hops[2]["evidence"].as_str().unwrap().contains("FAT32"));

    for (rule, outcome) in [
        ("UFD-NONREMOVABLE", "pass"),
        ("UFD-MSC-CLASS", "pass"),
        ("UFD-USB2", "pass"),
        ("TOPO-NO-NESTED-HUB", "pass"),
        // Alone on a qemu-xhci: dedicated, but the seed recommends a dedicated EHCI
        // (Windows Server 2008 R2 has no inbox xHCI driver) — the shared policy warns, as
        // `ufd check-device` does for the same facts.
        ("TOPO-DEDICATED-CONTROLLER", "warn"),
        ("HOST-X64", "pass"),
        ("HOST-USB-BOOT", "pass"),
        ("UFD-BCD", "pass"),
        ("IMG-VHD-FIXED", "pass"),
        ("IMG-GENERALIZED", "pass"),
        ("IMG-PAGING-OFF", "pass"),
        ("IMG-BOOT-DEVICE-WAIT", "pass"),
        ("UFD-CAPACITY", "fail"),
    ] {
        assert_eq!(
            verdict(&r, rule)["outcome"],
            outcome,
            "{}",
            verdict(&r, rule)
        );
    }

    let h = event(&r, "handoff");
    assert_eq!(h["timeout_ms"], 30000);
    assert_eq!(h["wait_for_signature"], format!("{UFD_SIG:#010x}"));
    let k = event(&r, "kernel");
    assert_eq!(k["phase"], "surfaced", "{k}");
    assert_eq!(event(&r, "done")["outcome"], "boots");
    assert_eq!(event(&r, "done")["hops_ok"], hops.len());
}

/// EHCI, a stick that reports removable media, and a BCD naming another disk: the device
/// rules fail with evidence, the walk stops at the loader's device, and the boot is refused
/// before any kernel.
#[test]
fn probe_reports_a_removable_stick_and_a_foreign_bcd() {
    let probe = build_probe();
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults {
        bcd_signature: Some(0xDEAD_BEEF),
        ..Faults::default()
    };
    let img = build_ufd(
        dir.path(),
        Layout::Uefi,
        faults,
        &[("EFI/BOOT/BOOTX64.EFI", probe.as_path())],
    );
    let r = boot(
        dir.path(),
        &img,
        &[
            "-device",
            "usb-ehci,id=ehci,addr=0x5",
            "-device",
            "usb-storage,bus=ehci.0,port=1,drive=ufd,removable=on",
        ],
    );
    let d = event(&r, "boot-device");
    assert_eq!(
        d["disk_path"], "PciRoot(0x0)/Pci(0x5,0x0)/USB(0x0,0x0)",
        "{d}"
    );
    assert_eq!(d["controller"], "EHCI");
    assert_eq!(d["removable"], true);
    assert_eq!(d["bcd_usb"], "2.00");
    assert_eq!(verdict(&r, "UFD-NONREMOVABLE")["outcome"], "fail");
    assert_eq!(verdict(&r, "UFD-BCD")["outcome"], "fail");
    let hop = r
        .lines
        .iter()
        .find(|l| l["event"] == "hop" && l["hop"] == "loader-device")
        .unwrap();
    assert_eq!(hop["status"], "fail");
    assert!(
        hop["evidence"].as_str().unwrap().contains("0xdeadbeef"),
        "{hop}"
    );
    // the boot manager cannot find the VHD: no hand-off to a kernel
    assert_eq!(event(&r, "refused")["hop"], "loader-device");
    assert!(!r
        .lines
        .iter()
        .any(|l| l["event"] == "handoff" || l["event"] == "kernel"));
    assert_eq!(event(&r, "done")["outcome"], "refused");
}

/// The stick is pulled at the hand-off and never comes back: the probe polls the firmware's
/// handle list (never the pulled device) and stops with 0x7B when PollBootPartitionTimeout
/// (2000 ms here) runs out.
#[test]
fn probe_stops_with_0x7b_when_the_boot_disk_does_not_surface() {
    let probe = build_probe();
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults {
        poll_ms: Some(2000),
        ..Faults::default()
    };
    let img = build_ufd(
        dir.path(),
        Layout::Uefi,
        faults,
        &[("EFI/BOOT/BOOTX64.EFI", probe.as_path())],
    );
    let r = boot_with(
        dir.path(),
        &img,
        &[
            "-device",
            "qemu-xhci,id=xhci,addr=0x4",
            "-device",
            "usb-storage,bus=xhci.0,port=1,drive=ufd,removable=off,id=ufd0",
        ],
        Some("ufd0"),
    );
    assert_eq!(event(&r, "handoff")["timeout_ms"], 2000);
    let k = event(&r, "kernel");
    assert_eq!(k["phase"], "stop", "{k}");
    let after = k["after_ms"].as_u64().unwrap();
    assert!((2000..10_000).contains(&after), "{k}");
    assert_eq!(
        k["text"],
        format!("STOP 0x0000007B INACCESSIBLE_BOOT_DEVICE after {after} ms")
    );
    assert_eq!(event(&r, "done")["outcome"], "bugcheck 0x7B");
    // IMG-BOOT-DEVICE-WAIT judged the short value
    assert_eq!(verdict(&r, "IMG-BOOT-DEVICE-WAIT")["outcome"], "fail");
}
