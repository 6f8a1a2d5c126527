//! `--firmware uefi|both` on the built-in synthetic Hyper-V Server image, read back only with
//! tools we did not write: sfdisk, mtools (mdir, mcopy, minfo), dosfstools (fsck.fat), hivex,
//! ntfs-3g, wimlib — plus the boot-path walker `ufd-bootpath`, and finally the guest probe booted
//! by OVMF from an emulated USB stick as `\EFI\BOOT\BOOTX64.EFI` of the provisioned image.

mod common;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run, tool};
use ufd_bootpath::dev::Disk;
use ufd_bootpath::walk::{walk, BootPath, Options, HOPS};
use ufd_formats::bytes::ReadAt;
use ufd_provision::{Firmware, ProvisionOptions, Report, Step};

const MIB: u64 = 1 << 20;
const SIG: u32 = 0x1234_5678;
const ESP_MIB: u64 = 100;
const BOOTMGR: &str = "{9dea862c-5cdd-4e70-acc1-f32b344d4795}";
const MEMDIAG: &str = "{b2721d73-1db4-4c62-bf78-c548a880142d}";

fn synthetic(dir: &Path, overrides: &[ufd_synthetic::Override]) -> PathBuf {
    ufd_synthetic::build("hyperv-2008r2", &dir.join("vm"), overrides)
        .expect("build the synthetic image")
        .wim
}

fn options(wim: &Path, out: &Path, firmware: Firmware) -> ProvisionOptions {
    let mut o = ProvisionOptions::seed(wim, out);
    o.vhd_size = 256 * MIB;
    o.ufd_size = 512 * MIB;
    o.policy_preflight = false;
    o.disk_signature = Some(SIG);
    o.firmware = firmware;
    o.poll_boot_partition_timeout = Some(30_000);
    o
}

fn provision(o: &ProvisionOptions) -> Report {
    ufd_provision::provision(o, &mut |_| {}).unwrap_or_else(|e| panic!("provision: {e}"))
}

struct FileDisk {
    file: File,
    size: u64,
}

impl ReadAt for FileDisk {
    type Error = std::io::Error;
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

fn walk_image(img: &Path, boot_offset: Option<u64>) -> BootPath {
    let file = File::open(img).unwrap();
    let size = file.metadata().unwrap().len();
    walk(
        &mut Disk::new(FileDisk { file, size }),
        &Options {
            boot_partition_offset: boot_offset,
            source: "test image".into(),
            ..Options::default()
        },
    )
}

fn show(p: &BootPath) -> String {
    p.hops
        .iter()
        .map(|h| format!("{} {:?} {}", h.step, h.status, h.evidence))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `[offset, offset+len)` of `img` as a file of its own, holes kept (1 MiB zero chunks skipped).
fn extract(img: &Path, offset: u64, len: u64, to: &Path) {
    let src = File::open(img).unwrap();
    let dst = File::create(to).unwrap();
    dst.set_len(len).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(MIB) as usize;
        src.read_exact_at(&mut buf[..n], offset + pos).unwrap();
        if buf[..n].iter().any(|&b| b != 0) {
            dst.write_all_at(&buf[..n], pos).unwrap();
        }
        pos += n as u64;
    }
}

fn mtools(name: &str) -> Command {
    let mut c = tool(name, "mtools");
    c.env("MTOOLS_SKIP_CHECK", "1");
    c
}

fn mcopy_out(esp: &Path, inside: &str, to: &Path) -> Vec<u8> {
    let mut c = mtools("mcopy");
    c.arg("-n")
        .arg("-i")
        .arg(esp)
        .arg(format!("::{inside}"))
        .arg(to);
    run(c);
    std::fs::read(to).unwrap()
}

fn mdir(esp: &Path, inside: &str) -> String {
    let mut c = mtools("mdir");
    c.arg("-i").arg(esp).arg(format!("::{inside}"));
    run(c)
}

/// A value of a BCD element key, by hivexget (REG_SZ as text).
fn bcd_string(hive: &Path, object: &str, element: &str) -> String {
    let mut c = tool("hivexget", "libhivex-bin");
    c.arg(hive)
        .arg(format!("\\Objects\\{object}\\Elements\\{element}"))
        .arg("Element");
    run(c).trim().to_string()
}

/// The bytes of `path` in the WIM, by wimextract.
fn from_wim(wim: &Path, path: &str, dir: &Path) -> Vec<u8> {
    let dest = dir.join("from-wim");
    let mut c = tool("wimextract", "wimtools");
    c.arg(wim)
        .arg("1")
        .arg(path)
        .arg(format!("--dest-dir={}", dest.display()))
        .arg("--no-acls");
    run(c);
    let name = path.rsplit('/').next().unwrap();
    std::fs::read(dest.join(name)).unwrap()
}

fn sfdisk_partitions(img: &Path) -> Vec<serde_json::Value> {
    let mut c = tool("sfdisk", "fdisk");
    c.arg("-J").arg(img);
    let j: serde_json::Value = serde_json::from_str(&run(c)).unwrap();
    assert_eq!(j["partitiontable"]["label"], "dos");
    assert_eq!(j["partitiontable"]["id"], "0x12345678");
    j["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn uefi_layout_read_back_by_independent_tools() {
    let dir = tempfile::tempdir().unwrap();
    let wim = synthetic(dir.path(), &[]);
    let out = dir.path().join("ufd.img");
    let rep = provision(&options(&wim, &out, Firmware::Uefi));
    let ntfs_lba = 2048 + ESP_MIB * MIB / 512;
    let ntfs_off = ntfs_lba * 512;

    // report
    let steps: Vec<Step> = rep.steps.iter().map(|s| s.step).collect();
    assert!(steps.contains(&Step::PrepareEsp), "{steps:?}");
    assert_eq!(steps.len(), 11);
    assert_eq!(rep.partitions.len(), 2);
    assert!(rep.partitions[0].active && !rep.partitions[1].active);
    assert!(rep.efi_bcd.is_none());
    assert!(rep
        .boot_files
        .iter()
        .any(|f| f == "ESP:\\EFI\\BOOT\\BOOTX64.EFI"));
    assert!(!rep.boot_files.iter().any(|f| f == "\\bootmgr"));
    assert_eq!(rep.vhd_placement.vdl_after, 256 * MIB + 512);
    assert!(common::leftovers(dir.path()).is_empty());
    let json = serde_json::to_string(&rep).unwrap();
    assert!(json.contains("\"firmware\":\"uefi\""), "{json}");

    // MBR, by sfdisk: the active FAT32 ESP (0x0C) at 1 MiB, NTFS right after it to the end
    let parts = sfdisk_partitions(&out);
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0]["start"], 2048);
    assert_eq!(parts[0]["size"], ESP_MIB * MIB / 512);
    assert_eq!(parts[0]["type"], "c");
    assert_eq!(parts[0]["bootable"], true);
    assert_eq!(parts[1]["start"], ntfs_lba);
    assert_eq!(parts[1]["size"], 512 * MIB / 512 - ntfs_lba);
    assert_eq!(parts[1]["type"], "7");
    assert!(parts[1].get("bootable").is_none(), "{:?}", parts[1]);

    // the walker: every hop, the store on the FAT32 ESP, the VHD on partition 2
    for boot in [Some(MIB), None] {
        let p = walk_image(&out, boot);
        assert!(p.complete(), "{}", show(&p));
        let bcd = &p.hop("bcd").unwrap().evidence;
        assert!(
            bcd.starts_with("partition 1 (FAT32) \\EFI\\Microsoft\\Boot\\BCD"),
            "{bcd}"
        );
        assert_eq!(
            p.loader_path.as_deref(),
            Some("\\Windows\\system32\\winload.efi")
        );
        assert_eq!(p.vhd.as_ref().map(|v| v.1), Some(ntfs_off));
    }

    // the ESP, by mtools and dosfstools
    let esp = dir.path().join("esp.part");
    extract(&out, MIB, ESP_MIB * MIB, &esp);
    let mut c = tool("fsck.fat", "dosfstools");
    c.arg("-n").arg(&esp);
    run(c);
    let mut c = mtools("minfo");
    c.arg("-i").arg(&esp).arg("::");
    let info = run(c);
    for want in [
        "hidden sectors: 2048",
        "cluster size: 1 sectors",
        "big size: 204800 sectors",
    ] {
        assert!(info.contains(want), "{want}:\n{info}");
    }
    let listing = mdir(&esp, "/EFI/BOOT");
    assert!(listing.contains("BOOTX64  EFI"), "{listing}");
    let mb = mdir(&esp, "/EFI/Microsoft/Boot");
    for name in [
        "bootmgfw", "bootmgr", "memtest", "BCD", "Fonts", "en-US", "de-DE",
    ] {
        assert!(mb.contains(name), "{name}:\n{mb}");
    }
    assert!(mdir(&esp, "/EFI/Microsoft/Boot/Fonts").contains("wgl4_boot"));
    let bootmgfw = from_wim(&wim, "/Windows/Boot/EFI/bootmgfw.efi", dir.path());
    let bootx64 = mcopy_out(&esp, "/EFI/BOOT/BOOTX64.EFI", &dir.path().join("bootx64"));
    assert!(
        bootx64 == bootmgfw,
        "BOOTX64.EFI differs from the image's bootmgfw.efi"
    );
    let copied = mcopy_out(
        &esp,
        "/EFI/Microsoft/Boot/bootmgfw.efi",
        &dir.path().join("bootmgfw"),
    );
    assert!(copied == bootmgfw);

    // the UEFI store, by hivex
    let bcd = dir.path().join("BCD");
    mcopy_out(&esp, "/EFI/Microsoft/Boot/BCD", &bcd);
    assert_eq!(
        bcd_string(&bcd, BOOTMGR, "12000002"),
        "\\EFI\\Microsoft\\Boot\\bootmgfw.efi"
    );
    let loader = bcd_string(&bcd, BOOTMGR, "23000003");
    assert_eq!(
        bcd_string(&bcd, &loader, "12000002"),
        "\\Windows\\system32\\winload.efi"
    );
    assert_eq!(
        bcd_string(&bcd, MEMDIAG, "12000002"),
        "\\EFI\\Microsoft\\Boot\\memtest.efi"
    );

    // partition 2, by ntfs-3g: the VHD is there, not sparse, VDL = size; no BIOS files
    let part = dir.path().join("ntfs.part");
    std::fs::rename(&out, &part).unwrap();
    let mut c = tool("fallocate", "util-linux");
    c.args(["--collapse-range", "--offset", "0", "--length"])
        .arg(ntfs_off.to_string())
        .arg(&part);
    run(c);
    let mut c = tool("ntfsinfo", "ntfs-3g");
    c.args(["-v", "-F", "/hyperV.vhd"]).arg(&part);
    let info = run(c);
    assert!(
        !info.contains("SPARSE") && !info.contains("<HOLE>"),
        "{info}"
    );
    let init = info
        .lines()
        .find(|l| l.contains("Initialized size"))
        .unwrap_or_default();
    assert!(init.contains(&(256 * MIB + 512).to_string()), "{init}");
    let mut c = tool("ntfsls", "ntfs-3g");
    c.arg(&part);
    let ls = run(c);
    assert!(ls.contains("hyperV.vhd"), "{ls}");
    assert!(!ls.contains("bootmgr") && !ls.contains("Boot"), "{ls}");
}

#[test]
fn both_boots_bios_through_the_active_ntfs_and_uefi_through_the_esp() {
    let dir = tempfile::tempdir().unwrap();
    let wim = synthetic(dir.path(), &[]);
    let out = dir.path().join("ufd.img");
    let rep = provision(&options(&wim, &out, Firmware::Both));
    assert!(rep.efi_bcd.is_some());
    assert!(rep.boot_files.iter().any(|f| f == "\\bootmgr"));
    assert!(rep
        .boot_files
        .iter()
        .any(|f| f == "ESP:\\EFI\\BOOT\\BOOTX64.EFI"));

    let parts = sfdisk_partitions(&out);
    assert_eq!(parts[0]["type"], "c");
    assert!(parts[0].get("bootable").is_none(), "{:?}", parts[0]);
    assert_eq!(parts[1]["type"], "7");
    assert_eq!(parts[1]["bootable"], true);

    let ntfs_off = (2048 + ESP_MIB * MIB / 512) * 512;
    let mut head = vec![0u8; 8192];
    File::open(&out)
        .unwrap()
        .read_exact_at(&mut head[..512], 0)
        .unwrap();
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(
        find(&head[..440], ufd_bootcode::MBR_SIGNATURE),
        "no MBR code"
    );
    File::open(&out)
        .unwrap()
        .read_exact_at(&mut head, ntfs_off)
        .unwrap();
    assert_eq!(&head[3..11], b"NTFS    ");
    assert!(
        find(&head, ufd_bootcode::VBR_SIGNATURE),
        "no NTFS boot record code"
    );

    // BIOS: no firmware boot partition, the active partition's \Boot\BCD
    let bios = walk_image(&out, None);
    assert!(bios.complete(), "{}", show(&bios));
    let ev = &bios.hop("bcd").unwrap().evidence;
    assert!(ev.starts_with("partition 2 (NTFS) \\Boot\\BCD"), "{ev}");
    assert_eq!(
        bios.loader_path.as_deref(),
        Some("\\Windows\\system32\\winload.exe")
    );
    // UEFI: booted from the ESP
    let uefi = walk_image(&out, Some(MIB));
    assert!(uefi.complete(), "{}", show(&uefi));
    let ev = &uefi.hop("bcd").unwrap().evidence;
    assert!(
        ev.starts_with("partition 1 (FAT32) \\EFI\\Microsoft\\Boot\\BCD"),
        "{ev}"
    );
    assert_eq!(
        uefi.loader_path.as_deref(),
        Some("\\Windows\\system32\\winload.efi")
    );
    assert_eq!(bios.loader, uefi.loader);
}

#[test]
fn keep_language_prunes_the_esp_too() {
    let dir = tempfile::tempdir().unwrap();
    let wim = synthetic(dir.path(), &[]);
    let out = dir.path().join("ufd.img");
    let mut o = options(&wim, &out, Firmware::Uefi);
    o.keep_languages = vec!["en-US".into()];
    let rep = provision(&o);
    let l = rep.languages.as_ref().unwrap();
    assert_eq!(
        l.boot_folders_skipped,
        ["EFI\\Microsoft\\Boot\\de-DE", "EFI\\Microsoft\\Boot\\ja-JP"]
    );
    let esp = dir.path().join("esp.part");
    extract(&out, MIB, ESP_MIB * MIB, &esp);
    let mb = mdir(&esp, "/EFI/Microsoft/Boot");
    assert!(mb.contains("en-US"), "{mb}");
    assert!(!mb.contains("de-DE") && !mb.contains("ja-JP"), "{mb}");
    assert!(walk_image(&out, Some(MIB)).complete());
}

#[test]
fn esp_size_out_of_range_is_a_usage_error_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ufd.img");
    for bad in [32 * MIB, 100 * MIB + 512, 4096 * MIB] {
        let mut o = options(Path::new("/nonexistent.wim"), &out, Firmware::Uefi);
        o.esp_size = bad;
        let e = ufd_provision::provision(&o, &mut |_| {}).unwrap_err();
        assert!(
            matches!(e, ufd_provision::ProvisionError::Usage(_)),
            "{bad}: {e}"
        );
        assert!(e.to_string().contains("--esp-size"), "{e}");
        assert!(!out.exists());
    }
    // the BIOS layout has no ESP: the size is not looked at
    let mut o = options(Path::new("/nonexistent.wim"), &out, Firmware::Bios);
    o.esp_size = 0;
    let e = ufd_provision::provision(&o, &mut |_| {}).unwrap_err();
    assert!(!e.to_string().contains("--esp-size"), "{e}");
}

// ---- the real proof: OVMF boots the provisioned image

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// Hard limit for one boot (TCG OVMF boots in ~4 s, the probe's walk a few more).
const QEMU_TIMEOUT: Duration = Duration::from_secs(120);

/// The guest probe (`vm-images/probe`), built for x86_64-unknown-uefi in its own target dir,
/// or the one `UFD_PROBE_EFI` names.
fn build_probe() -> PathBuf {
    if let Some(p) = std::env::var_os("UFD_PROBE_EFI") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "UFD_PROBE_EFI={} is not a file", p.display());
        return p;
    }
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ufd-probe");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vm-images/probe/Cargo.toml");
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
        "building the probe failed (`rustup target add x86_64-unknown-uefi`?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir.join("x86_64-unknown-uefi/release/ufd-probe.efi")
}

/// Boot `img` from an xHCI usb-storage stick (removable=off) under OVMF with TCG; the
/// probe's `UFDPROBE {json}` lines from the serial log. Kills only its own QEMU child.
fn boot_ovmf(dir: &Path, img: &Path) -> Vec<serde_json::Value> {
    assert!(
        Path::new(OVMF_CODE).exists(),
        "{OVMF_CODE} missing: install the Debian package ovmf"
    );
    let vars = dir.join("vars.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();
    let serial = dir.join("serial.log");
    let mut child = tool("qemu-system-x86_64", "qemu-system-x86")
        .args([
            "-machine",
            "q35,accel=tcg",
            "-m",
            "512",
            "-display",
            "none",
            "-monitor",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()))
        .arg("-drive")
        .arg(format!("if=none,id=ufd,format=raw,file={}", img.display()))
        .args(["-device", "qemu-xhci,id=xhci,addr=0x4"])
        .args([
            "-device",
            "usb-storage,bus=xhci.0,port=1,drive=ufd,removable=off",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > QEMU_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        status.is_some(),
        "QEMU did not power off within {QEMU_TIMEOUT:?} (killed); serial tail:\n{}",
        &log[log.len().saturating_sub(3000)..]
    );
    assert!(status.unwrap().success(), "QEMU failed: {err}");
    eprintln!("serial log:\n{log}");
    log.lines()
        .filter_map(|l| l.find("UFDPROBE ").map(|i| &l[i + 9..]))
        .map(|j| serde_json::from_str(j.trim()).unwrap_or_else(|e| panic!("bad JSON {j:?}: {e}")))
        .collect()
}

#[test]
fn ovmf_boots_the_provisioned_uefi_image_and_the_probe_walks_every_hop() {
    let probe = build_probe();
    let dir = tempfile::tempdir().unwrap();
    // The probe stands in for bootmgfw.efi in the image: the provisioner copies it to
    // \EFI\Microsoft\Boot\bootmgfw.efi and \EFI\BOOT\BOOTX64.EFI like the real one.
    let wim = synthetic(
        dir.path(),
        &[ufd_synthetic::Override {
            image_path: "Windows\\Boot\\EFI\\bootmgfw.efi".into(),
            source: probe,
        }],
    );
    let out = dir.path().join("ufd.img");
    provision(&options(&wim, &out, Firmware::Uefi));
    let lines = boot_ovmf(dir.path(), &out);
    let event = |name: &str| {
        lines
            .iter()
            .find(|l| l["event"] == name)
            .unwrap_or_else(|| panic!("no {name} line in {lines:#?}"))
    };
    let d = event("boot-device");
    assert_eq!(d["partition_offset"], MIB, "{d}");
    assert_eq!(d["disk_signature"], format!("{SIG:#010x}"));
    assert_eq!(d["removable"], false);
    let hops: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "hop").collect();
    assert_eq!(hops.len(), HOPS.len(), "{hops:#?}");
    for h in &hops {
        assert_eq!(h["status"], "ok", "{h}");
    }
    let bcd = hops.iter().find(|h| h["hop"] == "bcd").unwrap();
    assert!(
        bcd["evidence"]
            .as_str()
            .unwrap()
            .starts_with("partition 1 (FAT32) \\EFI\\Microsoft\\Boot\\BCD"),
        "{bcd}"
    );
    for rule in [
        "UFD-BCD",
        "IMG-VHD-FIXED",
        "IMG-PAGING-OFF",
        "IMG-BOOT-DEVICE-WAIT",
    ] {
        let v = lines
            .iter()
            .find(|l| l["event"] == "verdict" && l["rule"] == rule)
            .unwrap_or_else(|| panic!("no verdict {rule}"));
        assert_eq!(v["outcome"], "pass", "{v}");
    }
    assert_eq!(
        event("handoff")["wait_for_signature"],
        format!("{SIG:#010x}")
    );
    assert_eq!(event("done")["outcome"], "boots", "{lines:#?}");
    assert_eq!(event("done")["hops_ok"], HOPS.len());
}
