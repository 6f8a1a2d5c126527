//! The walker through a VHDX (issue #7): a qemu-img-made fixed VHDX holding an MBR and an
//! mkntfs volume walks every hop; dynamic, dirty-log and truncated VHDX files fail the
//! `vhd-footer` hop with the refusal named. Needs the Debian packages `qemu-utils`, `ntfs-3g`
//! and `wimtools` (the NTFS tree is applied by `ufd_testkit::ntfs_partition`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rstest::rstest;
use ufd_bootpath::dev::Disk;
use ufd_bootpath::walk::{walk, BootPath, Options, Status, HOPS};
use ufd_formats::bcd::guid::well_known;
use ufd_formats::bcd::{
    Device, DeviceElement, Element, ElementValue, Guid, Object, ObjectType, PartitionLocation,
    Store,
};
use ufd_formats::policy::{self, Outcome};
use ufd_testkit::{
    cut_short, dirty_vhdx_log, mbr, ntfs_partition, run, splice, system_hive, vhdx_from_raw, write,
    FileReader, FILETIME, LOADER, MIB, UFD_SIG, VHD_SIG,
};

/// The virtual disk: MBR + one NTFS partition from 1 MiB.
const VIRTUAL_BYTES: u64 = 12 * MIB;
/// The UFD's NTFS partition (holds the ~20 MiB VHDX file).
const DATA_BYTES: u64 = 48 * MIB;

/// What to do to the VHDX before it goes onto the UFD.
#[derive(Clone, Copy, Debug)]
enum Make {
    /// `subformat=fixed,block_state_zero=off`.
    Fixed,
    /// `subformat=dynamic`.
    Dynamic,
    /// Fixed, then a LogGuid in the current header (checksum repaired).
    DirtyLog,
    /// Fixed, cut 4 MiB short.
    Truncated,
}

/// The raw virtual disk converted by `qemu-img convert -O vhdx`, then damaged per `make`.
fn build_vhdx(dir: &Path, make: Make) -> PathBuf {
    let win = dir.join("win");
    write(
        &win.join("Windows/System32/config/SYSTEM"),
        &system_hive(Some(30000), false),
    );
    write(&win.join("Windows/System32/winload.exe"), b"MZ winload");
    let inner = ntfs_partition(dir, "inner.part", VIRTUAL_BYTES - MIB, "HyperV", &win);
    let raw = dir.join("virtual.raw");
    let f = File::create(&raw).unwrap();
    f.set_len(VIRTUAL_BYTES).unwrap();
    f.write_all_at(&mbr(VHD_SIG, VIRTUAL_BYTES, true), 0)
        .unwrap();
    splice(&f, MIB, &inner);
    let out = dir.join("hyperV.vhdx");
    vhdx_from_raw(&raw, &out, !matches!(make, Make::Dynamic));
    match make {
        Make::DirtyLog => dirty_vhdx_log(&out, ufd_formats::vhdx::Guid([0xD1; 16])),
        Make::Truncated => cut_short(&out, 4 * MIB),
        Make::Fixed | Make::Dynamic => {}
    }
    out
}

/// A store whose default loader boots `vhd=[<sig, offset>]<name>`.
fn store(host_offset: u64, name: &str) -> Store {
    let part = PartitionLocation::Mbr {
        disk_signature: UFD_SIG,
        offset: host_offset,
    };
    let loader = Guid::parse(LOADER).unwrap();
    let mut st = Store::new();
    let mut bm = Object::new(well_known::BOOTMGR, ObjectType::BOOTMGR);
    bm.set(Element::new(
        0x1100_0001,
        ElementValue::Device(DeviceElement::partition(part)),
    ));
    bm.set(Element::new(0x2300_0003, ElementValue::Object(loader)));
    st.insert(bm);
    let host = Device::Partition(part);
    let mut os = Object::new(loader, ObjectType::OSLOADER);
    os.set(Element::new(
        0x1100_0001,
        ElementValue::Device(DeviceElement::vhd(host.clone(), name, 0x1200_0002)),
    ));
    os.set(Element::new(
        0x1200_0002,
        ElementValue::String("\\Windows\\system32\\winload.exe".into()),
    ));
    os.set(Element::new(
        0x1200_0004,
        ElementValue::String("Hyper-V Server 2012".into()),
    ));
    os.set(Element::new(
        0x2100_0001,
        ElementValue::Device(DeviceElement::vhd(host, name, 0x2200_0002)),
    ));
    st.insert(os);
    st
}

/// The seed's BIOS layout: one active NTFS partition at 1 MiB with `\Boot\BCD` and the VHDX
/// (copied in with ntfscp as `name`).
fn build_ufd(dir: &Path, make: Make, name: &str) -> PathBuf {
    let vhdx = build_vhdx(dir, make);
    let bcd = store(MIB, &format!("\\{name}")).to_hive(FILETIME).unwrap();
    let tree = dir.join("boot");
    write(&tree.join("bootmgr"), &[0x90u8; 4096]);
    write(&tree.join("Boot/BCD"), &bcd);
    let outer = ntfs_partition(dir, "ufd.part", DATA_BYTES, "UFD", &tree);
    run(
        "ntfscp",
        &["-q", outer.to_str().unwrap(), vhdx.to_str().unwrap(), name],
        "ntfs-3g",
    );
    let img = dir.join("ufd.img");
    let f = File::create(&img).unwrap();
    f.set_len(MIB + DATA_BYTES).unwrap();
    f.write_all_at(&mbr(UFD_SIG, MIB + DATA_BYTES, true), 0)
        .unwrap();
    splice(&f, MIB, &outer);
    img
}

fn walk_image(img: &Path) -> BootPath {
    walk(
        &mut Disk::new(FileReader::open(img)),
        &Options {
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

/// A fixed VHDX walks every hop, named `.vhdx` or (detected by its signature) `.vhd`.
#[rstest]
#[case("hyperV.vhdx", false)]
#[case("hyperV.vhd", true)]
fn fixed_vhdx_walks_every_hop(#[case] name: &str, #[case] renamed: bool) {
    let dir = tempfile::tempdir().unwrap();
    let p = walk_image(&build_ufd(dir.path(), Make::Fixed, name));
    assert!(p.complete(), "{}", show(&p));
    assert_eq!(p.hops.len(), HOPS.len());
    let ev = &p.hop("vhd-footer").unwrap().evidence;
    assert!(
        ev.starts_with("VHDX v1 fixed, virtual size 12 MiB (12582912 bytes), block "),
        "{ev}"
    );
    assert!(ev.contains("sectors 512/512, header "), "{ev}");
    assert!(ev.contains("payload in 1 file extent(s)"), "{ev}");
    assert!(ev.contains("; header 1 is older (seq "), "{ev}");
    assert_eq!(ev.contains("does not end in .vhdx"), renamed, "{ev}");
    let x = p.vhdx.as_ref().unwrap();
    assert!(x.is_fixed());
    assert!(p.vhd_footer.is_none());
    assert!(p
        .hop("inner-mbr")
        .unwrap()
        .evidence
        .starts_with(&format!("signature {VHD_SIG:#010x}")));
    assert!(p
        .hop("inner-ntfs")
        .unwrap()
        .evidence
        .contains("label \"HyperV\""));
    assert_eq!(
        p.system.as_ref().unwrap().poll_boot_partition_timeout,
        Some(30000)
    );
    let v = p.verdict(policy::IMG_VHD_FIXED).unwrap();
    assert_eq!(v.outcome, Outcome::Pass, "{v:?}");
    assert!(p.verdict(policy::UFD_WEAR_RESERVE).is_some());
}

/// Each bad VHDX stops the walk at `vhd-footer` with the refusal named, and fails IMG-VHD-FIXED.
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
#[case(Make::Truncated, "truncated: ", "block past the end of the file")]
fn bad_vhdx_fails_the_footer_hop(#[case] make: Make, #[case] refusal: &str, #[case] detail: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = walk_image(&build_ufd(dir.path(), make, "hyperV.vhdx"));
    let h = p.hop("vhd-footer").unwrap();
    assert_eq!(h.status, Status::Fail, "{}", show(&p));
    assert!(
        h.evidence.starts_with(&format!("\\hyperV.vhdx: {refusal}")),
        "{}",
        h.evidence
    );
    assert!(h.evidence.contains(detail), "{}", h.evidence);
    let after = HOPS.iter().position(|s| *s == "vhd-footer").unwrap() + 1;
    assert!(p.hops[after..]
        .iter()
        .all(|h| h.status == Status::NotReached));
    assert_eq!(
        p.verdict(policy::IMG_VHD_FIXED).unwrap().outcome,
        Outcome::Fail
    );
}
