//! VHDX images (Hyper-V Server 2012, issue #7) inspected as VHD images are: a qemu-img-made
//! fixed VHDX holding an MBR, an mkntfs volume and a SYSTEM hive, copied onto the UFD's NTFS
//! with ntfscp, judged through its BAT; dynamic, dirty-log, differencing and truncated VHDX
//! files fail IMG-VHD-FIXED with the refusal named; the file given directly and in a
//! directory. Needs the Debian packages `qemu-utils`, `ntfs-3g` and `wimtools`.

mod common;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;
use rstest::rstest;
use ufd_formats::policy::Outcome;
use ufd_formats::vhd::{Creator, Footer};
use ufd_formats::vhdx::{guids, Vhdx};
use ufd_inspect::{inspect, Report, EXIT_REQUIREMENT_FAILED};
use ufd_testkit::{cut_short, dirty_vhdx_log, vhdx_from_raw, FileReader};

/// What to do to the VHDX after qemu-img made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Make {
    /// `subformat=fixed,block_state_zero=off`: what the deployment needs.
    Fixed,
    /// `subformat=dynamic`.
    Dynamic,
    /// Fixed, then a LogGuid in the current header (its CRC-32C repaired).
    DirtyLog,
    /// Fixed, then HasParent set in the File Parameters item (metadata items carry no checksum).
    Differencing,
    /// Fixed, cut 4 MiB short (an interrupted copy).
    Truncated,
}

fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// `dir/hyperV.vhdx`: the virtual disk (inner MBR + NTFS with the Windows files at 1 MiB)
/// converted by `qemu-img convert -O vhdx`, then damaged per `make`.
fn build_vhdx(dir: &Path, make: Make) -> PathBuf {
    let win = dir.join("win");
    windows_tree(&win, &system_hive(Some(30000), true), false);
    let inner = ntfs_partition(dir, "inner.part", VHD_BYTES - MIB, "HyperV", &win);
    let raw = dir.join("virtual.raw");
    {
        let f = File::create(&raw).unwrap();
        f.set_len(VHD_BYTES).unwrap();
        f.write_all_at(&mbr(VHD_SIG, VHD_BYTES, false), 0).unwrap();
        splice(&f, MIB, &inner);
    }
    let out = dir.join("hyperV.vhdx");
    vhdx_from_raw(&raw, &out, make != Make::Dynamic);
    std::fs::remove_file(&raw).unwrap();
    let f = open_rw(&out);
    match make {
        Make::DirtyLog => dirty_vhdx_log(&out, ufd_formats::vhdx::Guid([0xD1; 16])),
        Make::Differencing => {
            let x = Vhdx::open(&mut FileReader::new(f.try_clone().unwrap())).unwrap();
            let item = x
                .metadata
                .entries
                .iter()
                .find(|m| m.item_id == guids::FILE_PARAMETERS)
                .unwrap();
            let flags_at = x.regions.metadata.file_offset + u64::from(item.offset) + 4;
            let mut flags = [0u8; 4];
            f.read_exact_at(&mut flags, flags_at).unwrap();
            flags[0] |= 2; // HasParent
            f.write_all_at(&flags, flags_at).unwrap();
        }
        Make::Truncated => cut_short(&out, 4 * MIB),
        Make::Fixed | Make::Dynamic => {}
    }
    out
}

/// The seed's layout: one active NTFS partition at 1 MiB holding `\Boot\BCD` (default loader
/// `vhd=[UFD partition]\<name>`), `\bootmgr` and the VHDX copied in with ntfscp as `name`.
fn build_ufd(dir: &Path, make: Make, name: &str) -> PathBuf {
    build_ufd_bcd(dir, make, name, UFD_SIG)
}

/// [`build_ufd`] with the BCD's device naming the disk with MBR signature `bcd_signature`.
fn build_ufd_bcd(dir: &Path, make: Make, name: &str, bcd_signature: u32) -> PathBuf {
    let vhdx = build_vhdx(dir, make);
    let boot = dir.join("boot");
    write(
        &boot.join("Boot/BCD"),
        &store(
            bcd_signature,
            MIB,
            &format!("\\{name}"),
            WINLOAD,
            Some("en-US"),
        )
        .to_hive(FILETIME)
        .unwrap(),
    );
    write(&boot.join("bootmgr"), &[0x90u8; 4096]);
    let outer = ntfs_partition(dir, "ufd.part", UFD_BYTES - MIB, "UFD", &boot);
    run(
        "ntfscp",
        &["-q", outer.to_str().unwrap(), vhdx.to_str().unwrap(), name],
        "ntfs-3g",
    );
    let img = dir.join("ufd.img");
    let f = File::create(&img).unwrap();
    f.set_len(UFD_BYTES).unwrap();
    f.write_all_at(&mbr(UFD_SIG, UFD_BYTES, true), 0).unwrap();
    splice(&f, MIB, &outer);
    std::fs::remove_file(&outer).unwrap();
    std::fs::remove_file(&vhdx).unwrap();
    img
}

/// The image rules, judged from the Windows volume inside the VHDX as for a VHD
/// (IMG-LANGPACKS needs the BCD's locale too).
fn assert_image_rules_judged(r: &Report) {
    let text = r.text();
    for rule in [
        "IMG-PAGING-OFF",
        "IMG-BOOT-DEVICE-WAIT",
        "IMG-USB-BOOT-DRIVERS",
        "IMG-GENERALIZED",
    ] {
        assert_eq!(outcome(r, rule), Outcome::Pass, "{rule}\n{text}");
        assert!(
            r.verdict(rule).unwrap().source.contains("partition 1"),
            "{rule}\n{text}"
        );
    }
    assert_eq!(
        evidence(r, "IMG-BOOT-DEVICE-WAIT"),
        "PollBootPartitionTimeout = 30000 ms",
        "{text}"
    );
    if r.store.is_some() {
        // en-US is the BCD locale; de-DE is a language pack to remove.
        assert_eq!(outcome(r, "IMG-LANGPACKS"), Outcome::Warn, "{text}");
        assert!(
            evidence(r, "IMG-LANGPACKS").contains("remove de-DE (5000 bytes)"),
            "{text}"
        );
    } else {
        // the folders are read, but without a BCD no locale says which one is needed
        assert_eq!(outcome(r, "IMG-LANGPACKS"), Outcome::NotJudged, "{text}");
        assert!(
            evidence(r, "IMG-LANGPACKS")
                .starts_with("language folders: de-DE (5000 bytes), en-US (3000 bytes)"),
            "{text}"
        );
    }
}

/// A fixed VHDX on the UFD: its structures in the details, IMG-VHD-FIXED passes with the
/// VHDX's facts and the placement on the UFD's NTFS, the Windows volume is read through the
/// BAT and every image rule is judged; UFD-WEAR-RESERVE weighs the virtual size. Named
/// `.vhdx`, or (detected by its signature, with a note) `.vhd`.
#[rstest]
#[case("hyperV.vhdx", false)]
#[case("hyperV.vhd", true)]
fn fixed_vhdx_on_the_ufd_is_judged_like_a_vhd(#[case] name: &str, #[case] renamed: bool) {
    let dir = tempfile::tempdir().unwrap();
    let r = inspect(&build_ufd(dir.path(), Make::Fixed, name)).unwrap();
    let text = r.text();
    assert_eq!(r.verdicts.len(), 21, "{text}");
    let ev = evidence(&r, "IMG-VHD-FIXED");
    assert_eq!(outcome(&r, "IMG-VHD-FIXED"), Outcome::Pass, "{text}");
    assert!(
        ev.starts_with("VHDX v1 fixed, virtual size 24 MiB (25165824 bytes), block "),
        "{ev}"
    );
    assert!(ev.contains("sectors 512/512, header "), "{ev}");
    assert!(ev.contains("payload in 1 file extent(s)"), "{ev}");
    assert!(ev.contains("not sparse, not compressed"), "{ev}");
    assert_eq!(ev.contains("does not end in .vhdx"), renamed, "{ev}");
    assert!(
        r.verdict("IMG-VHD-FIXED")
            .unwrap()
            .source
            .ends_with(&format!("ufd.img partition 1 \\{name}")),
        "{text}"
    );
    assert_eq!(outcome(&r, "UFD-WEAR-RESERVE"), Outcome::Pass, "{text}");
    assert!(
        evidence(&r, "UFD-WEAR-RESERVE").starts_with("VHD 25165824 bytes on a 67108864-byte UFD"),
        "{text}"
    );
    assert_eq!(outcome(&r, "UFD-BCD"), Outcome::Pass, "{text}");
    assert!(
        evidence(&r, "UFD-BCD").contains(&format!("\\{name} exists")),
        "{text}"
    );
    assert_image_rules_judged(&r);
    // The VHDX's facts, then the inner disk read through the BAT.
    for needle in [
        &format!("partition 1 \\{name}: VHDX v1 fixed, virtual size 24 MiB"),
        "creator: \"QEMU v",
        "log empty",
        "region table 1 used; BAT at 0x",
        "disk id (page 83) ",
        "LeaveBlockAllocated 1",
        "fully present, 0 zero, 0 not present",
        &format!("inner MBR signature {VHD_SIG:#010x}"),
        "partition 1: NTFS, label \"HyperV\"",
        "BCD-Template: ",
        "ImageState=IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    // The one failed requirement: a 64 MiB stick is below 8 GB.
    assert_eq!(r.failed_requirements().len(), 1, "{text}");
    assert_eq!(outcome(&r, "UFD-CAPACITY"), Outcome::Fail);
}

/// Each VHDX the deployment cannot use fails IMG-VHD-FIXED with the refusal named first and
/// the reader's detail (field and byte offset). A dynamic VHDX is still readable through its
/// BAT, so its Windows volume is judged; the others are not opened further, and the rules that
/// need the volume or the virtual size say so instead of passing.
#[rstest]
#[case(
    Make::Dynamic,
    "not-fixed: ",
    "dynamic VHDX (LeaveBlockAllocated not set"
)]
#[case(
    Make::DirtyLog,
    "dirty-log: ",
    "dirty log: the file was not closed cleanly"
)]
#[case(Make::Differencing, "differencing: ", "differencing VHDX (HasParent)")]
#[case(Make::Truncated, "truncated: ", "block past the end of the file")]
fn bad_vhdx_on_the_ufd_fails_with_the_refusal_named(
    #[case] make: Make,
    #[case] refusal: &str,
    #[case] detail: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let r = inspect(&build_ufd(dir.path(), make, "hyperV.vhdx")).unwrap();
    let text = r.text();
    assert_eq!(r.verdicts.len(), 21, "{text}");
    assert_eq!(outcome(&r, "IMG-VHD-FIXED"), Outcome::Fail, "{text}");
    let ev = evidence(&r, "IMG-VHD-FIXED");
    assert!(ev.starts_with(refusal), "{ev}");
    assert!(ev.contains(detail), "{ev}");
    assert!(ev.contains(" at byte 0x"), "{ev}");
    assert!(
        text.contains(&format!("partition 1 \\hyperV.vhdx: {refusal}"))
            || text.contains("partition 1 \\hyperV.vhdx: VHDX v1 dynamic"),
        "{text}"
    );
    // the file exists on the UFD: the BCD's part is fine
    assert_eq!(outcome(&r, "UFD-BCD"), Outcome::Pass, "{text}");
    // IMG-VHD-FIXED is a procedure step: it fails the exit code with --strict
    assert_eq!(r.exit_code(true), EXIT_REQUIREMENT_FAILED);
    if make == Make::Dynamic {
        assert_image_rules_judged(&r);
        assert_eq!(outcome(&r, "UFD-WEAR-RESERVE"), Outcome::Pass, "{text}");
        assert!(text.contains("note: not fixed; the virtual disk is still read"));
    } else {
        for rule in ["IMG-PAGING-OFF", "IMG-GENERALIZED", "UFD-WEAR-RESERVE"] {
            assert_eq!(outcome(&r, rule), Outcome::NotJudged, "{rule}\n{text}");
        }
        assert!(
            evidence(&r, "UFD-WEAR-RESERVE").starts_with("the virtual disk size is unknown"),
            "{text}"
        );
        assert!(!text.contains("inner MBR"), "{text}");
    }
}

/// A BCD naming another disk fails UFD-BCD where the boot manager would; the container is
/// still found under the seed's names (`\hyperV.vhd` is absent, `\hyperV.vhdx` is there)
/// and judged.
#[test]
fn bcd_naming_another_disk_still_judges_the_seeds_vhdx() {
    let dir = tempfile::tempdir().unwrap();
    let img = build_ufd_bcd(dir.path(), Make::Fixed, "hyperV.vhdx", 0xDEAD_BEEF);
    let r = inspect(&img).unwrap();
    let text = r.text();
    assert_eq!(outcome(&r, "UFD-BCD"), Outcome::Fail, "{text}");
    assert!(
        evidence(&r, "UFD-BCD").contains("will not find the VHD"),
        "{text}"
    );
    assert_eq!(outcome(&r, "IMG-VHD-FIXED"), Outcome::Pass, "{text}");
    assert!(
        r.verdict("IMG-VHD-FIXED")
            .unwrap()
            .source
            .ends_with("partition 1 \\hyperV.vhdx"),
        "{text}"
    );
    assert_image_rules_judged(&r);
}

/// `ufd inspect hyperV.vhdx`: the file alone is judged like `ufd inspect hyperV.vhd` —
/// IMG-VHD-FIXED and the image rules; the UFD rules need the UFD.
#[test]
fn vhdx_given_directly() {
    let dir = tempfile::tempdir().unwrap();
    let vhdx = build_vhdx(dir.path(), Make::Fixed);
    let r = inspect(&vhdx).unwrap();
    let text = r.text();
    assert!(
        r.details[0].starts_with(&format!(
            "{}: VHDX v1 fixed, virtual size 24 MiB",
            vhdx.display()
        )),
        "{text}"
    );
    assert_eq!(outcome(&r, "IMG-VHD-FIXED"), Outcome::Pass, "{text}");
    assert!(
        !evidence(&r, "IMG-VHD-FIXED").contains("UFD's NTFS"),
        "{text}"
    );
    assert_image_rules_judged(&r);
    for rule in ["UFD-WEAR-RESERVE", "UFD-LAYOUT", "UFD-BCD"] {
        assert_eq!(outcome(&r, rule), Outcome::NotJudged, "{rule}\n{text}");
    }
    assert_eq!(r.exit_code(true), 0, "{text}");
    // The same file renamed .vhd is still recognised by its signature.
    let renamed = dir.path().join("copy.vhd");
    std::fs::rename(&vhdx, &renamed).unwrap();
    let r = inspect(&renamed).unwrap();
    assert_eq!(outcome(&r, "IMG-VHD-FIXED"), Outcome::Pass, "{}", r.text());
    assert!(evidence(&r, "IMG-VHD-FIXED").contains("does not end in .vhdx"));
}

/// A directory of artefacts holding `hyperV.vhdx` in place of `hyperV.vhd`.
#[test]
fn directory_with_hyperv_vhdx() {
    let dir = tempfile::tempdir().unwrap();
    build_vhdx(dir.path(), Make::Fixed);
    let r = inspect(dir.path()).unwrap();
    let text = r.text();
    assert_eq!(outcome(&r, "IMG-VHD-FIXED"), Outcome::Pass, "{text}");
    assert!(
        r.verdict("IMG-VHD-FIXED")
            .unwrap()
            .source
            .ends_with("hyperV.vhdx"),
        "{text}"
    );
    assert_image_rules_judged(&r);
    assert!(text.contains("ufd.img: absent"), "{text}");
    assert!(!text.contains("hyperV.vhd: absent"), "{text}");
    // With a hyperV.vhd beside it, the VHD is the one judged and the VHDX is said to be there.
    let vhd = dir.path().join("hyperV.vhd");
    let f = File::create(&vhd).unwrap();
    let footer = Footer::new_fixed(MIB, 700_000_000, [7u8; 16], Creator::WINDOWS).unwrap();
    f.write_all_at(&footer.to_bytes(), MIB).unwrap();
    drop(f);
    let r = inspect(dir.path()).unwrap();
    let text = r.text();
    assert!(
        text.contains("hyperV.vhdx: also present, not judged"),
        "{text}"
    );
    assert!(
        r.verdict("IMG-VHD-FIXED")
            .unwrap()
            .source
            .ends_with("hyperV.vhd"),
        "{text}"
    );
}

/// A VHDX given directly that the deployment cannot use is a failed verdict naming the
/// refusal (the file is what it says it is); one whose structures are corrupt, or a file
/// named `.vhdx` that is not one, is the input's one-line error with the byte offset.
#[rstest]
#[case(Make::Dynamic, "not-fixed: ")]
#[case(Make::DirtyLog, "dirty-log: ")]
#[case(Make::Differencing, "differencing: ")]
#[case(Make::Truncated, "truncated: ")]
fn bad_vhdx_given_directly_is_a_named_failed_verdict(#[case] make: Make, #[case] refusal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let vhdx = build_vhdx(dir.path(), make);
    let r = inspect(&vhdx).unwrap();
    let text = r.text();
    assert_eq!(outcome(&r, "IMG-VHD-FIXED"), Outcome::Fail, "{text}");
    assert!(evidence(&r, "IMG-VHD-FIXED").starts_with(refusal), "{text}");
    assert!(
        r.details[0].starts_with(&format!("{}: ", vhdx.display())),
        "{text}"
    );
    assert_eq!(r.exit_code(true), EXIT_REQUIREMENT_FAILED);
}

#[test]
fn corrupt_vhdx_given_directly_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let vhdx = build_vhdx(dir.path(), Make::Fixed);
    // both headers' signatures destroyed: no current header
    let f = open_rw(&vhdx);
    f.write_all_at(b"HEAD", 0x10000).unwrap();
    f.write_all_at(b"HEAD", 0x20000).unwrap();
    drop(f);
    let e = inspect(&vhdx).unwrap_err();
    assert!(
        e.0.starts_with(&format!("{}: ", vhdx.display())) && e.0.contains("no valid header"),
        "{e}"
    );
    assert!(e.0.contains("at byte 0x10000"), "{e}");
    assert_eq!(e.0.lines().count(), 1, "{e}");
    // a file named .vhdx that holds something else
    let junk = dir.path().join("junk.vhdx");
    std::fs::write(&junk, vec![0xA5u8; 4 * MIB as usize]).unwrap();
    let e = inspect(&junk).unwrap_err();
    assert!(
        e.0.contains("junk.vhdx") && e.0.contains("not a VHDX") && e.0.contains("vhdxfile"),
        "{e}"
    );
}

/// Every prefix of a fixed VHDX, given directly, is an error or a failed IMG-VHD-FIXED —
/// never a panic and never a pass.
#[test]
fn every_cut_of_a_vhdx_fails() {
    let dir = tempfile::tempdir().unwrap();
    let full = build_vhdx(dir.path(), Make::Fixed);
    let len = std::fs::metadata(&full).unwrap().len();
    let cut = dir.path().join("cut.vhdx");
    for at in [
        0,
        7,
        8,
        520,
        0x10000 + 100,
        0x30000,
        MIB,
        2 * MIB + 4096,
        3 * MIB + 4096,
        8 * MIB,
        len / 2,
        len - 1,
    ] {
        std::fs::copy(&full, &cut).unwrap();
        open_rw(&cut).set_len(at).unwrap();
        match inspect(&cut) {
            Err(e) => assert!(e.0.contains("cut.vhdx"), "cut at {at}: {e}"),
            Ok(r) => {
                let v = r.verdict("IMG-VHD-FIXED").unwrap();
                assert_eq!(v.outcome, Outcome::Fail, "cut at {at}: {}", r.text());
                assert!(v.evidence.starts_with("truncated: "), "cut at {at}: {v:?}");
            }
        }
    }
}

/// `ufd provision --format vhdx` on the built-in synthetic Hyper-V Server 2012 image, then
/// `ufd inspect`: the provisioner's fixed VHDX passes IMG-VHD-FIXED through its BAT, the BCD
/// names it, and every image rule is judged inside it.
#[test]
fn provisioned_hyperv_2012_vhdx_inspects_clean() {
    let dir = tempfile::tempdir().unwrap();
    let wim = ufd_synthetic::build("hyperv-2012", &dir.path().join("vm"), &[])
        .unwrap()
        .wim;
    let out = dir.path().join("ufd.img");
    let mut opts = ufd_provision::ProvisionOptions::seed(&wim, &out);
    opts.format = ufd_provision::ImageFormat::Vhdx;
    opts.vhd_size = 256 << 20;
    opts.ufd_size = 512 << 20;
    opts.policy_preflight = false;
    ufd_provision::provision(&opts, &mut |_| {}).unwrap();
    let r = inspect(&out).unwrap();
    let text = r.text();
    assert_eq!(r.verdicts.len(), 21, "{text}");
    let ev = evidence(&r, "IMG-VHD-FIXED");
    assert_eq!(outcome(&r, "IMG-VHD-FIXED"), Outcome::Pass, "{text}");
    assert!(
        ev.starts_with("VHDX v1 fixed, virtual size 256 MiB (268435456 bytes), block "),
        "{ev}"
    );
    assert!(
        ev.contains("payload in 1 file extent(s)") && ev.contains("not sparse"),
        "{ev}"
    );
    assert!(
        evidence(&r, "UFD-BCD").contains("osdevice = vhd=[UFD partition 1]\\hyperV.vhdx"),
        "{text}"
    );
    for rule in [
        "UFD-LAYOUT",
        "UFD-BOOTCODE",
        "UFD-BCD",
        "UFD-WEAR-RESERVE",
        "IMG-GENERALIZED",
        "IMG-PAGING-OFF",
        "IMG-BOOT-DEVICE-WAIT",
        "IMG-USB-BOOT-DRIVERS",
    ] {
        assert_eq!(outcome(&r, rule), Outcome::Pass, "{rule}\n{text}");
    }
    assert!(
        evidence(&r, "UFD-WEAR-RESERVE").starts_with("VHD 268435456 bytes on a 536870912-byte UFD"),
        "{text}"
    );
    // the synthetic image keeps de-DE and ja-JP (no --remove-languages)
    assert_eq!(outcome(&r, "IMG-LANGPACKS"), Outcome::Warn, "{text}");
    // the one failed requirement: a 512 MiB test UFD is below 8 GB
    let failed: Vec<&str> = r.failed_requirements().iter().map(|v| v.rule).collect();
    assert_eq!(failed, ["UFD-CAPACITY"], "{text}");
}
