//! The seed's own boot path under BIOS firmware: SeaBIOS boots the UFD the provisioner wrote in
//! the BIOS layout (one active NTFS partition, our MBR code and NTFS boot record, `\bootmgr`,
//! `\Boot\BCD`, `\hyperV.vhd`) from an emulated usb-storage stick on EHCI, the boot record
//! loads `\bootmgr` — here the BIOS stand-in `vm-images/bios-probe`, placed as the synthetic
//! image's `\Windows\Boot\PCAT\bootmgr` so the bcdboot step copies it to the UFD root as
//! Windows does — and the stand-in walks the boot path through INT 13h and reports.
//!
//! The stand-in is built with `xtask/src/biosprobe.rs` (included below) unless
//! `UFD_BIOS_PROBE` names a built file.
//!
//! Needs (Debian): qemu-system-x86 (SeaBIOS), qemu-utils, binutils, ntfs-3g, wimtools,
//! util-linux; rustup target x86_64-unknown-none.

#[path = "../../xtask/src/biosprobe.rs"]
mod biosprobe;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ufd_harness::machine::{
    AccelChoice, Controller, ControllerKind, Cpu, FirmwareKind, Machine, ProbeChannel, Ufd, Usb,
};
use ufd_harness::probe::{BootOutcome, Summary};
use ufd_harness::run::{run, RunOutput, RunSpec};
use ufd_provision::{Firmware, ProvisionOptions};

/// The UFD's disk signature in these images (what the BCD loader's device names).
const SIGNATURE: u32 = 0x5EAB_1005;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

fn stand_in() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| match std::env::var_os("UFD_BIOS_PROBE") {
        Some(p) => PathBuf::from(p),
        None => biosprobe::build_bios_probe(&workspace())
            .unwrap_or_else(|e| panic!("build the BIOS stand-in: {e}")),
    })
    .clone()
}

/// Provision `name` in the BIOS layout from the synthetic hyperv-2008r2 image with the
/// stand-in as its `\Windows\Boot\PCAT\bootmgr`; `sizes` = (UFD, VHD) bytes.
/// Returns the image, the provisioning report and the NTFS partition's byte offset.
fn provision(dir: &Path, name: &str, sizes: (u64, u64)) -> (PathBuf, ufd_provision::Report, u64) {
    // One provisioning at a time: each one runs mkntfs/wimapply processes on the 2 cores.
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let overrides = [ufd_synthetic::Override {
        image_path: "Windows\\Boot\\PCAT\\bootmgr".into(),
        source: stand_in(),
    }];
    let built = ufd_synthetic::build("hyperv-2008r2", &dir.join("wim"), &overrides)
        .unwrap_or_else(|e| panic!("synthetic image: {e}"));
    let out = dir.join(format!("{name}.img"));
    let mut o = ProvisionOptions::seed(&built.wim, &out);
    o.firmware = Firmware::Bios;
    o.ufd_size = sizes.0;
    o.vhd_size = sizes.1;
    o.policy_preflight = false;
    o.disk_signature = Some(SIGNATURE);
    o.poll_boot_partition_timeout = Some(30_000);
    let rep = ufd_provision::provision(&o, &mut |_| {})
        .unwrap_or_else(|e| panic!("provision {name}: {e}"));
    (out, rep, ufd_provision::UfdLayout::of(&o).ntfs_offset())
}

/// The small seed-layout image (512 MiB stick, 256 MiB VHD) in `dir`.
fn small_image(dir: &Path) -> PathBuf {
    provision(dir, "small", (512 << 20, 256 << 20)).0
}

/// A sparse copy of `src` with `patch` applied at byte `offset`.
fn patched(src: &Path, name: &str, offset: u64, patch: &[u8]) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let dst = src.with_file_name(format!("{name}.img"));
    let st = std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(src)
        .arg(&dst)
        .status()
        .expect("run cp (coreutils)");
    assert!(st.success(), "cp {} {}", src.display(), dst.display());
    let f = std::fs::OpenOptions::new().write(true).open(&dst).unwrap();
    f.write_all_at(patch, offset).unwrap();
    dst
}

fn machine(channel: ProbeChannel) -> Machine {
    Machine {
        firmware: FirmwareKind::Seabios,
        machine_type: "q35".into(),
        memory_mib: 1024,
        cpu: Cpu::default(),
        accel: AccelChoice::Tcg,
        usb: Usb {
            controllers: vec![Controller {
                id: "ehci".into(),
                kind: ControllerKind::Ehci,
            }],
            ufd: Ufd {
                controller: "ehci".into(),
                port: 1,
                hubs: 0,
                removable: false,
                bootindex: true,
            },
            devices: Vec::new(),
        },
        probe_channel: channel,
    }
}

fn boot(name: &str, image: &Path, channel: ProbeChannel, timeout_s: u64) -> RunOutput {
    let spec = RunSpec {
        name: name.into(),
        machine: machine(channel),
        image: image.to_path_buf(),
        firmware: None,
        bios_firmware: None,
        accel: None,
        timeout: Duration::from_secs(timeout_s),
        late: None,
        artifacts: None,
        probe_disk: None,
        stop_on_event: None,
    };
    run(&spec, &|_| false).unwrap_or_else(|e| panic!("run {name}: {e}"))
}

fn record<'a>(out: &'a RunOutput, event: &str) -> &'a serde_json::Value {
    out.records
        .iter()
        .map(|r| &r.value)
        .find(|v| v["event"] == event)
        .unwrap_or_else(|| panic!("no {event} record in:\n{}", lines(out)))
}

fn lines(out: &RunOutput) -> String {
    out.lines
        .iter()
        .map(|(_, l)| l.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every hop ok through system-values, outcome boots, the rules the BIOS cannot judge
/// not-judged (never pass), the CPU rules judged, the device's last sector readable.
fn assert_boots(out: &RunOutput, s: &Summary) {
    let all = lines(out);
    let hops: Vec<(&str, &str)> = s
        .hops
        .iter()
        .map(|h| (h.step.as_str(), h.status.as_str()))
        .collect();
    assert_eq!(
        hops.iter().map(|h| h.0).collect::<Vec<_>>(),
        ufd_bootpath_hops(),
        "{all}"
    );
    assert!(hops.iter().all(|h| h.1 == "ok"), "{hops:?}\n{all}");
    assert_eq!(s.outcome, Some(BootOutcome::Boots), "{all}");
    for rule in [
        "UFD-NONREMOVABLE",
        "UFD-USB2",
        "UFD-MSC-CLASS",
        "TOPO-NO-NESTED-HUB",
        "TOPO-DEDICATED-CONTROLLER",
    ] {
        let v = s
            .verdict(rule)
            .unwrap_or_else(|| panic!("no {rule}: {all}"));
        assert_eq!(v.outcome, "not-judged", "{rule}: {v:?}");
        assert!(
            v.evidence
                .as_deref()
                .is_some_and(|e| e.contains("INT 13h") || e.contains("BIOS")),
            "{v:?}"
        );
    }
    for rule in ["HOST-X64", "HOST-NX", "HOST-VT"] {
        assert_eq!(
            s.verdict(rule).map(|v| v.outcome.as_str()),
            Some("pass"),
            "{rule}\n{all}"
        );
    }
    let fw = record(out, "firmware-handoff");
    assert_eq!(fw["boot_drive"], "0x80", "{fw}");
    assert_eq!(fw["int13_ext"], true, "{fw}");
    assert_eq!(fw["edd"], true, "{fw}");
    assert_eq!(fw["last_sector_read"], true, "{fw}");
    let k = record(out, "kernel");
    assert_eq!(k["phase"], "surfaced", "{k}");
    let h = record(out, "handoff");
    assert_eq!(h["wait_for_signature"], format!("{SIGNATURE:#010x}"), "{h}");
    assert_eq!(h["timeout_ms"], 30_000, "{h}");
}

/// The hop names of the shared walk (`ufd_bootpath::walk::HOPS`), spelled out here because
/// the harness does not depend on ufd-bootpath.
fn ufd_bootpath_hops() -> Vec<&'static str> {
    vec![
        "mbr",
        "partitions",
        "bcd",
        "default-loader",
        "loader-device",
        "host-ntfs",
        "vhd-file",
        "vhd-footer",
        "inner-mbr",
        "inner-ntfs",
        "winload",
        "system-hive",
        "select",
        "system-values",
    ]
}

#[test]
fn bios_seed_layout_boots_under_seabios() {
    let dir = tempfile::tempdir().unwrap();
    let img = small_image(dir.path());
    let out = boot("bios-seed-layout", &img, ProbeChannel::Debugcon, 240);
    let s = out.summary();
    assert_boots(&out, &s);
    let fw = record(&out, "firmware-handoff");
    assert_eq!(fw["edd_sectors"], (512u64 << 20) / 512, "{fw}");
    let bd = record(&out, "boot-device");
    assert_eq!(bd["partition_offset"], 1 << 20, "{bd}");
    assert_eq!(bd["disk_signature"], format!("{SIGNATURE:#010x}"), "{bd}");
}

#[test]
fn bios_wrong_disk_signature_is_refused_at_the_loader_device() {
    // The MBR disk signature no longer matches the one the BCD's loader device names: the
    // boot manager cannot find the VHD's host partition and stops there.
    let dir = tempfile::tempdir().unwrap();
    let img = patched(
        &small_image(dir.path()),
        "wrong-signature",
        0x1B8,
        &0x0BAD_0BADu32.to_le_bytes(),
    );
    let out = boot("bios-wrong-signature", &img, ProbeChannel::Debugcon, 240);
    let s = out.summary();
    let all = lines(&out);
    assert_eq!(s.outcome, Some(BootOutcome::Refused), "{all}");
    assert_eq!(record(&out, "refused")["hop"], "loader-device", "{all}");
    let ok: Vec<&str> = s
        .hops
        .iter()
        .take_while(|h| h.status == "ok")
        .map(|h| h.step.as_str())
        .collect();
    assert_eq!(ok, ["mbr", "partitions", "bcd", "default-loader"], "{all}");
    assert!(
        !out.records.iter().any(|r| r.value["event"] == "kernel"),
        "{all}"
    );
}

#[test]
fn bios_missing_active_flag_stops_in_the_mbr() {
    // No active partition: our MBR code says so on COM1 and hands back to the BIOS (INT 18h);
    // the stand-in never runs, so there is no report.
    let dir = tempfile::tempdir().unwrap();
    let img = patched(&small_image(dir.path()), "no-active", 0x1BE, &[0x00]);
    let out = boot("bios-no-active", &img, ProbeChannel::Serial, 20);
    let all = lines(&out);
    assert!(all.contains("Missing operating system"), "{all}");
    assert!(out.records.is_empty(), "{all}");
}

#[test]
fn bios_vhd_beyond_8_gib_is_read_through_int13_extensions() {
    // The seed's sizes: a 12 GiB VHD on a 16 GB stick (sparse). The VHD's end — its footer,
    // read by the vhd-footer hop — lies beyond LBA 2^24 (8 GiB), which only INT 13h
    // extensions (AH=42h, 64-bit LBA) reach.
    let dir = tempfile::tempdir().unwrap();
    let (img, rep, part) = provision(
        dir.path(),
        "seed-size",
        (ufd_provision::SEED_UFD_SIZE, ufd_provision::SEED_VHD_SIZE),
    );
    let p = &rep.vhd_placement;
    let last = p
        .runs
        .iter()
        .filter_map(|r| r.lcn.map(|l| part + (l + r.len) * p.cluster_size))
        .max()
        .expect("the VHD has allocated runs");
    assert!(last > 8 << 30, "VHD ends at byte {last}, below 8 GiB");
    let out = boot("bios-seed-size", &img, ProbeChannel::Debugcon, 300);
    let s = out.summary();
    assert_boots(&out, &s);
    let fw = record(&out, "firmware-handoff");
    assert!(fw["last_lba"].as_u64().is_some_and(|l| l > 1 << 24), "{fw}");
}
