//! Real UFD images, built the way the provisioner builds them (mkntfs on partition files,
//! wimlib applying a tree into NTFS, ntfscp for the VHD, an MBR spliced in front), then
//! inspected and judged. Needs Debian `ntfs-3g` (mkntfs, ntfscp, ntfstruncate) and `wimtools`.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use ufd_formats::policy::Outcome;
use ufd_formats::vhd::{Creator, Footer};
use ufd_inspect::{inspect, EXIT_REQUIREMENT_FAILED};

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
/// Build `ufd.img` in `dir` and return its path.
fn build(dir: &Path, faults: Faults) -> PathBuf {
    // the Windows volume inside the VHD
    let win = dir.join("win");
    let mut system = system_hive(Some(30000), true);
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
    windows_tree(&win, &system, faults.specialized);
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
        &store(
            faults.bcd_signature.unwrap_or(UFD_SIG),
            MIB,
            "\\hyperV.vhd",
            WINLOAD,
            Some("en-US"),
        )
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
