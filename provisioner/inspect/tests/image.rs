//! Real UFD images, built the way the provisioner builds them (mkntfs on partition files,
//! wimlib applying a tree into NTFS, ntfscp for the VHD, an MBR spliced in front), then
//! inspected and judged. Needs Debian `ntfs-3g` (mkntfs, ntfscp, ntfstruncate) and `wimtools`.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ufd_formats::bcd::guid::well_known;
use ufd_formats::bcd::{
    Device, DeviceElement, Element, ElementValue, Guid, Object, ObjectType, PartitionLocation,
    Store,
};
use ufd_formats::hive::{value_type as vt, Editor, NewHive};
use ufd_formats::mbr::{Geometry, Mbr, PartitionEntry};
use ufd_formats::policy::Outcome;
use ufd_formats::vhd::{Creator, Footer};
use ufd_inspect::{inspect, Report, EXIT_REQUIREMENT_FAILED};

const MIB: u64 = 1 << 20;
const UFD_SIG: u32 = 0x1DF0_2024;
const VHD_SIG: u32 = 0x0FE1_2024;
const LOADER: &str = "{7e0c5a51-4c2b-4f5e-9d3a-1b2c3d4e5f60}";
/// Disk, VHD and partition sizes: small, so tests are fast (the UFD is far below 8 GB, so
/// UFD-CAPACITY fails: that is also the exit-code test).
const UFD_BYTES: u64 = 64 * MIB;
const VHD_BYTES: u64 = 24 * MIB;
const FILETIME: u64 = 130_000_000_000_000_000;

fn run(cmd: &str, args: &[&str], package: &str) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}: install the Debian package {package}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// What goes wrong in a test image.
#[derive(Clone, Copy, Default)]
struct Faults {
    no_vhd: bool,
    bcd_signature: Option<u32>,
    sparse_vhd: bool,
    dirty_system: bool,
    corrupt_system: bool,
    specialized: bool,
}

fn system_hive() -> Vec<u8> {
    let mut ed = Editor::new_hive(&NewHive {
        root_name: "SYSTEM".into(),
        ..NewHive::default()
    })
    .unwrap();
    ed.create_key("Select").unwrap();
    for n in ["Current", "Default"] {
        ed.set_value("Select", n, vt::REG_DWORD, &1u32.to_le_bytes())
            .unwrap();
    }
    let mm = "ControlSet001\\Control\\Session Manager\\Memory Management";
    ed.create_key(mm).unwrap();
    ed.set_value(mm, "PagingFiles", vt::REG_MULTI_SZ, &[0, 0, 0, 0])
        .unwrap();
    ed.create_key("ControlSet001\\Control\\PnP").unwrap();
    ed.set_value(
        "ControlSet001\\Control\\PnP",
        "PollBootPartitionTimeout",
        vt::REG_DWORD,
        &30000u32.to_le_bytes(),
    )
    .unwrap();
    ed.set_value(
        "ControlSet001\\Control",
        "BootDriverFlags",
        vt::REG_DWORD,
        &4u32.to_le_bytes(),
    )
    .unwrap();
    ed.create_key("ControlSet001\\Services\\usbstor").unwrap();
    ed.set_value(
        "ControlSet001\\Services\\usbstor",
        "Start",
        vt::REG_DWORD,
        &3u32.to_le_bytes(),
    )
    .unwrap();
    ed.create_key("Setup").unwrap();
    ed.set_value(
        "Setup",
        "SystemSetupInProgress",
        vt::REG_DWORD,
        &1u32.to_le_bytes(),
    )
    .unwrap();
    ed.set_value(
        "Setup",
        "CmdLine",
        vt::REG_SZ,
        &utf16z("oobe\\windeploy.exe"),
    )
    .unwrap();
    ed.finish(FILETIME)
}

fn store(signature: u32) -> Store {
    let part = PartitionLocation::Mbr {
        disk_signature: signature,
        offset: MIB,
    };
    let loader = Guid::parse(LOADER).unwrap();
    let s = |t: &str| ElementValue::String(t.into());
    let mut st = Store::new();
    let mut bm = Object::new(well_known::BOOTMGR, ObjectType::BOOTMGR);
    bm.set(Element::new(
        0x1100_0001,
        ElementValue::Device(DeviceElement::partition(part)),
    ));
    bm.set(Element::new(0x1200_0004, s("Windows Boot Manager")));
    bm.set(Element::new(0x1200_0005, s("en-US")));
    bm.set(Element::new(0x2300_0003, ElementValue::Object(loader)));
    bm.set(Element::new(
        0x2400_0001,
        ElementValue::ObjectList(vec![loader]),
    ));
    st.insert(bm);
    let host = Device::Partition(part);
    let mut os = Object::new(loader, ObjectType::OSLOADER);
    os.set(Element::new(
        0x1100_0001,
        ElementValue::Device(DeviceElement::vhd(
            host.clone(),
            "\\hyperV.vhd",
            0x1200_0002,
        )),
    ));
    os.set(Element::new(
        0x1200_0002,
        s("\\Windows\\system32\\winload.exe"),
    ));
    os.set(Element::new(
        0x1200_0004,
        s("Microsoft Hyper-V Server 2008 R2"),
    ));
    os.set(Element::new(0x1200_0005, s("en-US")));
    os.set(Element::new(
        0x2100_0001,
        ElementValue::Device(DeviceElement::vhd(host, "\\hyperV.vhd", 0x2200_0002)),
    ));
    os.set(Element::new(0x2200_0002, s("\\Windows")));
    st.insert(os);
    st
}

/// An NTFS partition file holding `tree` (applied by wimlib, as the provisioner applies the WIM).
fn ntfs_partition(dir: &Path, name: &str, bytes: u64, label: &str, tree: &Path) -> PathBuf {
    let part = dir.join(name);
    File::create(&part).unwrap().set_len(bytes).unwrap();
    let p = part.to_str().unwrap();
    run(
        "mkntfs",
        &[
            "-F", "-Q", "-q", "-s", "512", "-p", "2048", "-H", "255", "-S", "63", "-L", label, p,
        ],
        "ntfs-3g",
    );
    let wim = dir.join(format!("{name}.wim"));
    let w = wim.to_str().unwrap();
    run(
        "wimlib-imagex",
        &[
            "capture",
            tree.to_str().unwrap(),
            w,
            "--compress=none",
            "--no-acls",
        ],
        "wimtools",
    );
    run("wimlib-imagex", &["apply", w, "1", p], "wimtools");
    part
}

/// Copy `part` into `disk` at `offset`, leaving zero blocks as holes (images stay sparse).
fn splice(disk: &File, offset: u64, part: &Path) {
    let mut src = File::open(part).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    loop {
        let n = src.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            disk.write_all_at(&buf[..n], offset + pos).unwrap();
        }
        pos += n as u64;
    }
}

fn mbr(signature: u32, disk_bytes: u64, active: bool) -> [u8; 512] {
    let mut m = Mbr::new(signature);
    let sectors = (disk_bytes - MIB) / 512;
    m.partitions[0] = PartitionEntry::new(
        active,
        0x07,
        2048,
        sectors as u32,
        Geometry::new(255, 63).unwrap(),
    )
    .unwrap();
    m.to_bytes()
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Build `ufd.img` in `dir` and return its path.
fn build(dir: &Path, faults: Faults) -> PathBuf {
    // the Windows volume inside the VHD
    let win = dir.join("win");
    let mut system = system_hive();
    if faults.dirty_system {
        let seq = u32::from_le_bytes(system[4..8].try_into().unwrap()) + 1;
        system[4..8].copy_from_slice(&seq.to_le_bytes());
        // as Windows leaves it: a valid header whose sequence numbers differ
        let sum = ufd_formats::hive::windows_checksum(&system);
        system[0x1FC..0x200].copy_from_slice(&sum.to_le_bytes());
    }
    if faults.corrupt_system {
        // the root key's cell: overwrite the "nk" signature
        let root = u32::from_le_bytes(system[0x24..0x28].try_into().unwrap()) as usize;
        system[0x1000 + root + 4..0x1000 + root + 6].copy_from_slice(b"XX");
    }
    write(&win.join("Windows/System32/config/SYSTEM"), &system);
    write(
        &win.join("Windows/System32/config/BCD-Template"),
        &Store::new().to_hive(FILETIME).unwrap(),
    );
    let state = if faults.specialized {
        "IMAGE_STATE_COMPLETE"
    } else {
        "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"
    };
    write(
        &win.join("Windows/Setup/State/State.ini"),
        format!("[State]\r\nImageState={state}\r\n").as_bytes(),
    );
    write(
        &win.join("Windows/System32/en-US/winload.exe.mui"),
        &[1u8; 3000],
    );
    write(
        &win.join("Windows/System32/de-DE/winload.exe.mui"),
        &[2u8; 5000],
    );
    write(&win.join("Windows/System32/winload.exe"), b"MZ");
    let inner = ntfs_partition(dir, "inner.part", VHD_BYTES - MIB, "HyperV", &win);
    let vhd = dir.join("hyperV.vhd");
    {
        let f = File::create(&vhd).unwrap();
        f.set_len(VHD_BYTES + 512).unwrap();
        f.write_all_at(&mbr(VHD_SIG, VHD_BYTES, false), 0).unwrap();
        splice(&f, MIB, &inner);
        let footer =
            Footer::new_fixed(VHD_BYTES, 700_000_000, [7u8; 16], Creator::WINDOWS).unwrap();
        f.write_all_at(&footer.to_bytes(), VHD_BYTES).unwrap();
    }
    // the UFD's volume
    let boot = dir.join("boot");
    write(
        &boot.join("Boot/BCD"),
        &store(faults.bcd_signature.unwrap_or(UFD_SIG))
            .to_hive(FILETIME)
            .unwrap(),
    );
    write(&boot.join("bootmgr"), &[0x90u8; 4096]);
    let outer = ntfs_partition(dir, "ufd.part", UFD_BYTES - MIB, "UFD", &boot);
    if !faults.no_vhd {
        let o = outer.to_str().unwrap();
        if faults.sparse_vhd {
            // a VHD whose tail is a hole: its first 2 MiB copied, then the file extended
            let head = dir.join("head.vhd");
            let mut data = vec![0u8; 2 * MIB as usize];
            File::open(&vhd).unwrap().read_exact(&mut data).unwrap();
            std::fs::write(&head, &data).unwrap();
            run(
                "ntfscp",
                &["-q", o, head.to_str().unwrap(), "hyperV.vhd"],
                "ntfs-3g",
            );
            let info = Command::new("ntfsinfo")
                .args(["-F", "/hyperV.vhd", o])
                .output()
                .expect("ntfsinfo: install ntfs-3g");
            let text = String::from_utf8_lossy(&info.stdout);
            let inode = text
                .split("Dumping Inode ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .expect("inode number from ntfsinfo");
            let size = (VHD_BYTES + 512).to_string();
            run("ntfstruncate", &[o, inode, &size], "ntfs-3g");
        } else {
            run(
                "ntfscp",
                &["-q", o, vhd.to_str().unwrap(), "hyperV.vhd"],
                "ntfs-3g",
            );
        }
    }
    let img = dir.join("ufd.img");
    let f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&img)
        .unwrap();
    f.set_len(UFD_BYTES).unwrap();
    f.write_all_at(&mbr(UFD_SIG, UFD_BYTES, true), 0).unwrap();
    splice(&f, MIB, &outer);
    f.sync_all().unwrap();
    let _ = std::fs::remove_file(&vhd);
    img
}

fn outcome(r: &Report, rule: &str) -> Outcome {
    r.verdict(rule)
        .unwrap_or_else(|| panic!("{rule} missing"))
        .outcome
}

fn evidence(r: &Report, rule: &str) -> String {
    r.verdict(rule).unwrap().evidence.clone()
}

#[test]
fn full_image_is_read_through_both_ntfs_layers() {
    let dir = tempfile::tempdir().unwrap();
    let img = build(dir.path(), Faults::default());
    let r = inspect(&img).unwrap();
    let text = r.text();
    assert_eq!(r.verdicts.len(), 21, "{text}");
    assert_eq!(outcome(&r, "UFD-LAYOUT"), Outcome::Pass, "{text}");
    assert_eq!(outcome(&r, "UFD-BCD"), Outcome::Pass, "{text}");
    assert!(
        evidence(&r, "UFD-BCD").contains("\\hyperV.vhd exists"),
        "{text}"
    );
    assert_eq!(outcome(&r, "IMG-VHD-FIXED"), Outcome::Pass, "{text}");
    assert!(
        evidence(&r, "IMG-VHD-FIXED").contains("not sparse"),
        "{text}"
    );
    assert_eq!(outcome(&r, "UFD-WEAR-RESERVE"), Outcome::Pass, "{text}");
    assert_eq!(outcome(&r, "IMG-PAGING-OFF"), Outcome::Pass, "{text}");
    assert_eq!(outcome(&r, "IMG-BOOT-DEVICE-WAIT"), Outcome::Pass, "{text}");
    assert_eq!(outcome(&r, "IMG-USB-BOOT-DRIVERS"), Outcome::Pass, "{text}");
    assert_eq!(outcome(&r, "IMG-GENERALIZED"), Outcome::Pass, "{text}");
    // mkntfs's boot record is a "not bootable" stub and the MBR has no code
    assert_eq!(outcome(&r, "UFD-BOOTCODE"), Outcome::Fail, "{text}");
    assert!(evidence(&r, "UFD-BOOTCODE").contains("mkntfs"), "{text}");
    // en-US is the BCD locale; de-DE is a language pack to remove
    assert_eq!(outcome(&r, "IMG-LANGPACKS"), Outcome::Warn, "{text}");
    assert!(
        evidence(&r, "IMG-LANGPACKS").contains("remove de-DE (5000 bytes)"),
        "{text}"
    );
    // a 64 MiB stick is below 8 GB: the one failed requirement
    assert_eq!(outcome(&r, "UFD-CAPACITY"), Outcome::Fail);
    assert_eq!(r.exit_code(false), EXIT_REQUIREMENT_FAILED);
    assert!(
        text.contains("label \"UFD\"") && text.contains("label \"HyperV\""),
        "{text}"
    );
    assert!(text.contains("BCD-Template: "), "{text}");
    let store = r.store.as_ref().expect("the UFD's BCD");
    assert_eq!(store.objects.len(), 2);
}

#[test]
fn missing_vhd_fails_the_bcd_and_the_vhd_rules() {
    let dir = tempfile::tempdir().unwrap();
    let img = build(
        dir.path(),
        Faults {
            no_vhd: true,
            ..Faults::default()
        },
    );
    let r = inspect(&img).unwrap();
    let text = r.text();
    assert_eq!(outcome(&r, "IMG-VHD-FIXED"), Outcome::Fail, "{text}");
    assert!(
        evidence(&r, "IMG-VHD-FIXED").contains("no \\hyperV.vhd"),
        "{text}"
    );
    assert_eq!(outcome(&r, "UFD-BCD"), Outcome::Fail, "{text}");
    assert!(evidence(&r, "UFD-BCD").contains("does not exist"), "{text}");
    assert_eq!(outcome(&r, "IMG-PAGING-OFF"), Outcome::NotJudged, "{text}");
    assert_eq!(
        outcome(&r, "UFD-WEAR-RESERVE"),
        Outcome::NotJudged,
        "{text}"
    );
}

#[test]
fn bcd_naming_another_disk_fails_where_the_boot_manager_would() {
    let dir = tempfile::tempdir().unwrap();
    let img = build(
        dir.path(),
        Faults {
            bcd_signature: Some(0xDEAD_BEEF),
            ..Faults::default()
        },
    );
    let r = inspect(&img).unwrap();
    assert_eq!(outcome(&r, "UFD-BCD"), Outcome::Fail);
    let ev = evidence(&r, "UFD-BCD");
    assert!(
        ev.contains("0xdeadbeef") && ev.contains("will not find the VHD"),
        "{ev}"
    );
    // the seed's VHD name is still read and judged
    assert_eq!(outcome(&r, "IMG-VHD-FIXED"), Outcome::Pass, "{}", r.text());
}

#[test]
fn sparse_vhd_fails_with_the_ntfs_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let img = build(
        dir.path(),
        Faults {
            sparse_vhd: true,
            ..Faults::default()
        },
    );
    let r = inspect(&img).unwrap();
    let ev = evidence(&r, "IMG-VHD-FIXED");
    assert_eq!(outcome(&r, "IMG-VHD-FIXED"), Outcome::Fail, "{ev}");
    assert!(ev.contains("SPARSE (0x8000)"), "{ev}");
    assert!(
        ev.contains("valid data length 2097152 != data size"),
        "{ev}"
    );
}

#[test]
fn dirty_and_corrupt_system_hives_fail_with_the_byte_offset() {
    for (faults, needle) in [
        (
            Faults {
                dirty_system: true,
                ..Faults::default()
            },
            "at byte 0x4",
        ),
        (
            Faults {
                corrupt_system: true,
                ..Faults::default()
            },
            "at byte 0x",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let img = build(dir.path(), faults);
        let r = inspect(&img).unwrap();
        for rule in [
            "IMG-PAGING-OFF",
            "IMG-BOOT-DEVICE-WAIT",
            "IMG-USB-BOOT-DRIVERS",
        ] {
            assert_eq!(outcome(&r, rule), Outcome::Fail, "{}", r.text());
            let ev = evidence(&r, rule);
            assert!(
                ev.contains("SYSTEM hive unreadable") && ev.contains(needle),
                "{ev}"
            );
        }
        assert_eq!(r.exit_code(false), EXIT_REQUIREMENT_FAILED);
    }
}

#[test]
fn specialized_image_fails_generalized() {
    let dir = tempfile::tempdir().unwrap();
    let img = build(
        dir.path(),
        Faults {
            specialized: true,
            ..Faults::default()
        },
    );
    let r = inspect(&img).unwrap();
    assert_eq!(outcome(&r, "IMG-GENERALIZED"), Outcome::Fail);
    assert!(evidence(&r, "IMG-GENERALIZED").contains("IMAGE_STATE_COMPLETE"));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junk.img");
    std::fs::write(&p, vec![0xA5u8; 4096]).unwrap();
    let e = inspect(&p).unwrap_err();
    assert!(e.0.contains("junk.img") && e.0.contains("0x1fe"), "{e}");
    // an MBR whose partition holds garbage: reported, not fatal
    let f = File::create(&p).unwrap();
    f.set_len(16 * MIB).unwrap();
    f.write_all_at(&mbr(1, 16 * MIB, true), 0).unwrap();
    f.write_all_at(&[0xFFu8; 8192], MIB).unwrap();
    drop(f);
    let r = inspect(&p).unwrap();
    assert!(r.text().contains("no NTFS file system"), "{}", r.text());
    assert_eq!(r.verdict("UFD-LAYOUT").unwrap().outcome, Outcome::Pass);
}

#[test]
fn snapshot_of_the_text_report() {
    let dir = tempfile::tempdir().unwrap();
    let img = build(dir.path(), Faults::default());
    let r = inspect(&img).unwrap();
    let text = r.text().replace(dir.path().to_str().unwrap(), "[dir]");
    insta::with_settings!({snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../../snapshots"), prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("inspect__full_image_text", text);
    });
}
