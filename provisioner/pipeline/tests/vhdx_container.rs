//! The fixed VHDX container (`src/vhdx.rs`, `ufd provision --format vhdx`): built around an
//! mkntfs-made partition file, then read back through tools we did not write (`qemu-img
//! check`, `qemu-img info`, `qemu-img convert -O raw`, ntfs-3g's `ntfsinfo`/`ntfscat`) and
//! through the project's VHDX reader (`ufd_formats::vhdx`).
//!
//! Debian packages: qemu-utils (qemu-img), ntfs-3g (mkntfs, ntfscp, ntfsinfo, ntfscat).

mod common;

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use rstest::rstest;
use ufd_formats::mbr::{partition_type, Geometry, Mbr, PartitionEntry};
use ufd_formats::vhdx::{Guid, Header, Mapping, Vhdx, HEADER_OFFSETS, HEADER_SIZE};

use common::{run, tool};
use ufd_provision::vhdx;

const MIB: u64 = 1 << 20;

/// The inner MBR the pipeline writes: one NTFS partition at LBA 2048 to the end of the disk.
fn inner_mbr(vhd_size: u64) -> [u8; 512] {
    let mut mbr = Mbr::new(0x4879_7056);
    mbr.partitions[0] = PartitionEntry::new(
        false,
        partition_type::NTFS,
        2048,
        (vhd_size / 512 - 2048) as u32,
        Geometry::LBA_ASSIST_255_63,
    )
    .unwrap();
    mbr.to_bytes()
}

/// An NTFS partition file of `vhd_size − 1 MiB` made like Step::CreateVdisk (mkntfs -p 2048),
/// holding `\hello.txt`.
fn ntfs_partition(dir: &Path, vhd_size: u64, hello: &[u8]) -> PathBuf {
    let part = dir.join("vhd-partition.ntfs");
    File::create(&part)
        .unwrap()
        .set_len(vhd_size - MIB)
        .unwrap();
    let mut c = tool("mkntfs", "ntfs-3g");
    c.args([
        "-F", "-Q", "-q", "-s", "512", "-p", "2048", "-H", "255", "-S", "63", "-L", "hyperV",
    ])
    .arg(&part);
    run(c);
    let src = dir.join("hello.txt");
    std::fs::write(&src, hello).unwrap();
    let mut c = tool("ntfscp", "ntfs-3g");
    c.arg("-f").arg(&part).arg(&src).arg("/hello.txt");
    run(c);
    part
}

fn open_reader(path: &Path) -> (Vhdx, File) {
    let f = File::open(path).unwrap();
    let size = f.metadata().unwrap().len();
    let mut at = At { f: &f, size };
    let v = Vhdx::open(&mut at).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (v, f)
}

struct At<'a> {
    f: &'a File,
    size: u64,
}

impl ufd_formats::bytes::ReadAt for At<'_> {
    type Error = std::io::Error;
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.f.read_exact_at(buf, offset)
    }
}

fn qemu_img_check_and_info(path: &Path, vhd_size: u64) {
    let mut c = tool("qemu-img", "qemu-utils");
    c.args(["check", "-f", "vhdx"]).arg(path);
    let out = run(c);
    assert!(out.contains("No errors were found on the image."), "{out}");
    let mut c = tool("qemu-img", "qemu-utils");
    c.args(["info", "-f", "vhdx", "--output=json"]).arg(path);
    let info = run(c);
    assert!(info.contains("\"format\": \"vhdx\""), "{info}");
    assert!(
        info.contains(&format!("\"virtual-size\": {vhd_size},")),
        "{info}"
    );
    assert!(info.contains("\"dirty-flag\": false"), "{info}");
}

/// Build, then read back four ways: qemu-img (check, info, convert to raw and compare with
/// the partition as it was), ntfs-3g on the converted partition, and our reader's map().
#[rstest]
#[case::mib64_default_blocks(64 * MIB, vhdx::DEFAULT_BLOCK_SIZE, true)]
#[case::mib300_1mib_blocks(300 * MIB, MIB, true)]
#[case::mib64_copy_route(64 * MIB, 8 * MIB, false)]
fn container_reads_back_through_qemu_img_ntfs3g_and_the_reader(
    #[case] vhd_size: u64,
    #[case] block_size: u64,
    #[case] zero_copy: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let hello = b"hello from inside the VHDX\r\n";
    let part = ntfs_partition(dir.path(), vhd_size, hello);
    let before = std::fs::read(&part).unwrap();
    let mbr = inner_mbr(vhd_size);
    let out = dir.path().join(vhdx::VHDX_NAME);
    let c = vhdx::assemble_fixed_vhdx(&part, &out, vhd_size, &mbr, block_size, zero_copy, None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.path, out);
    assert_eq!(c.zero_copy, zero_copy, "{c:?}");
    assert_eq!(
        c.payload_offset,
        vhdx::EXPECTED_HEADER_BYTES,
        "qemu-img 7.2 layout: {c:?}"
    );
    if zero_copy {
        assert_eq!(c.fallback_reason, None);
        assert_eq!(c.data_bytes_copied, 0);
        assert!(c.detail.contains("(zero copy)"), "{}", c.detail);
    } else {
        assert_eq!(c.fallback_reason.as_deref(), Some("copy route requested"));
        assert!(c.data_bytes_copied >= hello.len() as u64, "{c:?}");
    }
    assert!(!part.exists(), "the partition file is consumed");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(names.is_empty(), "template left behind: {names:?}");
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        c.payload_offset + vhd_size
    );

    qemu_img_check_and_info(&out, vhd_size);

    // qemu's reading of the virtual disk: MBR at 0, the partition byte for byte at 1 MiB.
    let raw = dir.path().join("disk.raw");
    let mut cv = tool("qemu-img", "qemu-utils");
    cv.args(["convert", "-f", "vhdx", "-O", "raw"])
        .arg(&out)
        .arg(&raw);
    run(cv);
    let disk = std::fs::read(&raw).unwrap();
    assert_eq!(disk.len() as u64, vhd_size);
    assert_eq!(&disk[..512], &mbr[..]);
    assert!(disk[512..MIB as usize].iter().all(|&b| b == 0));
    assert!(disk[MIB as usize..] == before[..], "partition differs");

    // ntfs-3g on the partition as qemu reads it.
    let p2 = dir.path().join("p1.ntfs");
    std::fs::write(&p2, &disk[MIB as usize..]).unwrap();
    let mut ni = tool("ntfsinfo", "ntfs-3g");
    ni.arg("-m").arg(&p2);
    let info = run(ni);
    assert!(info.contains("Volume Name: hyperV"), "{info}");
    let mut cat = tool("ntfscat", "ntfs-3g");
    cat.arg(&p2).arg("/hello.txt");
    assert_eq!(run(cat).as_bytes(), hello);

    // Our reader: fixed, MBR where virtual offset 0 maps, the partition's boot sector at 1 MiB.
    let (v, f) = open_reader(&out);
    assert!(v.is_fixed(), "{v}");
    v.require_fixed().unwrap();
    assert_eq!(v.virtual_size(), vhd_size);
    assert_eq!(u64::from(v.block_size()), block_size);
    assert_eq!(v.logical_sector_size(), 512);
    assert_eq!(
        v.map(0).unwrap(),
        Mapping::File {
            offset: c.payload_offset,
            len: block_size.min(vhd_size)
        }
    );
    assert_eq!(
        v.map(vhd_size - 1).unwrap(),
        Mapping::File {
            offset: c.payload_offset + vhd_size - 1,
            len: 1
        }
    );
    let mut at = At {
        f: &f,
        size: f.metadata().unwrap().len(),
    };
    let mut sector = [0u8; 512];
    v.read(&mut at, 0, &mut sector).unwrap();
    assert_eq!(sector, mbr);
    v.read(&mut at, MIB, &mut sector).unwrap();
    assert_eq!(&sector[3..11], b"NTFS    ");
    assert_eq!(&sector[..], &before[..512]);
}

/// The seed's 12 GiB VHD size, sparse: zero copy must not allocate the disk.
#[test]
fn seed_size_container_stays_sparse() {
    let vhd_size = 12288 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("vhd-partition.ntfs");
    let f = File::create(&part).unwrap();
    f.set_len(vhd_size - MIB).unwrap();
    f.write_all_at(b"FIRST-SECTOR", 0).unwrap();
    f.write_all_at(b"LAST-SECTOR", vhd_size - MIB - 512)
        .unwrap();
    drop(f);
    let mbr = inner_mbr(vhd_size);
    let out = dir.path().join(vhdx::VHDX_NAME);
    let c = vhdx::assemble_fixed_vhdx(
        &part,
        &out,
        vhd_size,
        &mbr,
        vhdx::DEFAULT_BLOCK_SIZE,
        true,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.zero_copy, "{c:?}");
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(meta.len(), c.payload_offset + vhd_size);
    assert!(
        meta.blocks() * 512 < 16 * MIB,
        "{} bytes allocated",
        meta.blocks() * 512
    );
    assert!(c.metadata_bytes_copied < 4 * MIB, "{c:?}");
    qemu_img_check_and_info(&out, vhd_size);
    let (v, f) = open_reader(&out);
    assert!(v.is_fixed());
    let mut at = At {
        f: &f,
        size: meta.len(),
    };
    let mut buf = [0u8; 12];
    v.read(&mut at, MIB, &mut buf).unwrap();
    assert_eq!(&buf, b"FIRST-SECTOR");
    let mut buf = [0u8; 11];
    v.read(&mut at, vhd_size - 512, &mut buf).unwrap();
    assert_eq!(&buf, b"LAST-SECTOR");
    let mut sector = [0u8; 512];
    v.read(&mut at, 0, &mut sector).unwrap();
    assert_eq!(sector, mbr);
}

#[test]
fn wrong_partition_length_is_a_usage_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("p.ntfs");
    File::create(&part).unwrap().set_len(10 * MIB).unwrap();
    let out = dir.path().join("x.vhdx");
    let e = vhdx::assemble_fixed_vhdx(&part, &out, 64 * MIB, &[0; 512], 32 * MIB, true, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("p.ntfs") && e.contains("10485760 bytes") && e.contains("66060288"),
        "{e}"
    );
    assert!(part.exists() && !out.exists());
    let e = vhdx::assemble_fixed_vhdx(&part, &out, 64 * MIB, &[0; 512], 3 * MIB, true, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("block size 3145728"), "{e}");
    let e = vhdx::assemble_fixed_vhdx(&part, &out, 64 * MIB + 512, &[0; 512], MIB, true, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("multiple of 1 MiB"), "{e}");
}

/// Where the file system refuses FALLOC_FL_INSERT_RANGE (tmpfs), the partition's extents are
/// copied into qemu-img's file instead, and the step says why.
#[test]
fn tmpfs_refuses_insert_range_and_the_copy_route_is_taken() {
    let shm = Path::new("/dev/shm");
    assert!(shm.is_dir(), "/dev/shm (tmpfs) is needed for this test");
    let dir = tempfile::tempdir_in(shm).unwrap();
    let vhd_size = 64 * MIB;
    let hello = b"copied, not inserted";
    let part = ntfs_partition(dir.path(), vhd_size, hello);
    let before = std::fs::read(&part).unwrap();
    let mbr = inner_mbr(vhd_size);
    let out = dir.path().join(vhdx::VHDX_NAME);
    let c = vhdx::assemble_fixed_vhdx(&part, &out, vhd_size, &mbr, 8 * MIB, true, None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.zero_copy);
    let why = c.fallback_reason.as_deref().unwrap_or_default();
    assert!(why.contains("cannot insert ranges"), "{why}");
    assert!(c.detail.contains("cannot insert ranges"), "{}", c.detail);
    qemu_img_check_and_info(&out, vhd_size);
    let (v, f) = open_reader(&out);
    let mut at = At {
        f: &f,
        size: f.metadata().unwrap().len(),
    };
    let mut disk = vec![0u8; vhd_size as usize];
    v.read(&mut at, 0, &mut disk).unwrap();
    assert_eq!(&disk[..512], &mbr[..]);
    assert!(disk[MIB as usize..] == before[..], "partition differs");
}

/// What the layout check sees in the two qemu-img files the route must not use: a dynamic
/// VHDX (qemu-img's default subformat) and a "fixed" one made without `block_state_zero=off`.
#[test]
fn dynamic_and_zero_state_files_have_no_payload_offset() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("dyn.vhdx");
    let mut c = tool("qemu-img", "qemu-utils");
    c.args(["create", "-q", "-f", "vhdx"]).arg(&t).arg("64M");
    run(c);
    let l = vhdx::read_layout(&t).unwrap();
    assert!(!l.fixed);
    assert_eq!(l.payload_offset(), None);
    let mut c = tool("qemu-img", "qemu-utils");
    let z = dir.path().join("zero.vhdx");
    c.args(["create", "-q", "-f", "vhdx", "-o", "subformat=fixed"])
        .arg(&z)
        .arg("64M");
    run(c);
    let l = vhdx::read_layout(&z).unwrap();
    assert!(l.fixed, "LeaveBlocksAllocated is set");
    assert_eq!(l.payload_offset(), None);
    assert!(
        l.blocks.iter().all(Option::is_none),
        "block_state_zero=on: every block PAYLOAD_BLOCK_ZERO"
    );
}

/// Steps 1, 2 and the VHDX assembly on the synthetic Hyper-V Server 2012 image: the image
/// applied into the partition with wimapply, the VHDX built around it, and the SYSTEM hive
/// read back out of the virtual disk as qemu-img sees it (ntfs-3g, then our hive reader).
#[test]
fn hyperv_2012_image_applied_inside_the_vhdx_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let wim = ufd_synthetic::build("hyperv-2012", &dir.path().join("vm"), &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .wim;
    let vhd_size = 128 * MIB;
    let part = ntfs_partition(dir.path(), vhd_size, b"x");
    let mut apply = tool("wimapply", "wimtools");
    apply.arg(&wim).arg("1").arg(&part);
    run(apply);
    let out = dir.path().join(vhdx::VHDX_NAME);
    let c = vhdx::assemble_fixed_vhdx(
        &part,
        &out,
        vhd_size,
        &inner_mbr(vhd_size),
        vhdx::DEFAULT_BLOCK_SIZE,
        true,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.zero_copy, "{c:?}");
    qemu_img_check_and_info(&out, vhd_size);

    let raw = dir.path().join("disk.raw");
    let mut cv = tool("qemu-img", "qemu-utils");
    cv.args(["convert", "-f", "vhdx", "-O", "raw"])
        .arg(&out)
        .arg(&raw);
    run(cv);
    let disk = std::fs::read(&raw).unwrap();
    let p1 = dir.path().join("p1.ntfs");
    std::fs::write(&p1, &disk[MIB as usize..]).unwrap();
    let mut cat = tool("ntfscat", "ntfs-3g");
    cat.arg(&p1).arg("/Windows/System32/config/SYSTEM");
    let o = cat.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hive = ufd_formats::hive::Hive::parse(&o.stdout).unwrap();
    let pnp = hive
        .open("ControlSet001\\Control\\PnP")
        .unwrap()
        .expect("Control\\PnP");
    assert_eq!(
        pnp.value("PollBootPartitionTimeout")
            .unwrap()
            .unwrap()
            .as_dword()
            .unwrap(),
        30000
    );
    let mut cat = tool("ntfscat", "ntfs-3g");
    cat.arg(&p1).arg("/Windows/System32/drivers/USBXHCI.SYS");
    assert!(run(cat).starts_with("UFD-STANDIN Windows\\System32\\drivers\\USBXHCI.SYS"));
}

/// The identity the reproducibility tests pin.
const IDENTITY: vhdx::VhdxIdentity = vhdx::VhdxIdentity {
    file_write: Guid(*b"test-file-write!"),
    data_write: Guid(*b"test-data-write!"),
    disk_id: Guid(*b"test-page83-id!!"),
};

/// A partition file with the same bytes every time (mkntfs would draw a new volume serial
/// number): sparse, with markers at its first and last sector and at a block boundary.
fn fixed_partition(dir: &Path, vhd_size: u64) -> PathBuf {
    let part = dir.join("vhd-partition.raw");
    let f = File::create(&part).unwrap();
    f.set_len(vhd_size - MIB).unwrap();
    f.write_all_at(b"FIRST-SECTOR", 0).unwrap();
    f.write_all_at(b"ACROSS-A-BLOCK-BOUNDARY", 7 * MIB - 8)
        .unwrap();
    f.write_all_at(b"LAST-SECTOR", vhd_size - MIB - 512)
        .unwrap();
    part
}

/// Assemble a 64 MiB VHDX with 8 MiB blocks in a fresh directory under `root`.
fn assemble_in(
    root: &Path,
    name: &str,
    zero_copy: bool,
    identity: Option<&vhdx::VhdxIdentity>,
) -> (PathBuf, vhdx::VhdxContainer) {
    let vhd_size = 64 * MIB;
    let dir = root.join(name);
    std::fs::create_dir(&dir).unwrap();
    let part = fixed_partition(&dir, vhd_size);
    let out = dir.join(vhdx::VHDX_NAME);
    let c = vhdx::assemble_fixed_vhdx(
        &part,
        &out,
        vhd_size,
        &inner_mbr(vhd_size),
        8 * MIB,
        zero_copy,
        identity,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.zero_copy, zero_copy, "{c:?}");
    (out, c)
}

/// The first differing byte offset of two files, `None` when they are byte-identical (same
/// length, same bytes; holes read as zeros).
fn first_difference(a: &Path, b: &Path) -> Option<u64> {
    let (fa, fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (la, lb) = (fa.metadata().unwrap().len(), fb.metadata().unwrap().len());
    if la != lb {
        return Some(la.min(lb));
    }
    let (mut ba, mut bb) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    let mut at = 0;
    while at < la {
        let n = (la - at).min(MIB) as usize;
        fa.read_exact_at(&mut ba[..n], at).unwrap();
        fb.read_exact_at(&mut bb[..n], at).unwrap();
        if let Some(i) = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y) {
            return Some(at + i as u64);
        }
        at += n as u64;
    }
    None
}

/// Both headers as our reader parses them (signature and CRC-32C verified).
fn both_headers(path: &Path) -> [Header; 2] {
    let f = File::open(path).unwrap();
    [0, 1].map(|i| {
        let mut h = [0u8; HEADER_SIZE];
        f.read_exact_at(&mut h, HEADER_OFFSETS[i]).unwrap();
        Header::parse(&h, i as u8 + 1, HEADER_OFFSETS[i])
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// With a pinned identity, the same inputs give byte-identical files — twice on each route,
/// and the zero-copy and copy routes give the same bytes too. The identity is in both headers
/// (sequence numbers 1 and 2, header 2 current, as qemu-img leaves it) and in the Page 83
/// item, and qemu-img checks the file clean.
#[test]
fn pinned_identity_gives_byte_identical_files_on_both_routes() {
    let root = tempfile::tempdir().unwrap();
    let runs = [
        assemble_in(root.path(), "zc1", true, Some(&IDENTITY)),
        assemble_in(root.path(), "zc2", true, Some(&IDENTITY)),
        assemble_in(root.path(), "copy1", false, Some(&IDENTITY)),
        assemble_in(root.path(), "copy2", false, Some(&IDENTITY)),
    ];
    for (out, c) in &runs {
        assert!(c.identity_pinned, "{c:?}");
        assert!(c.detail.contains("identity pinned"), "{}", c.detail);
        qemu_img_check_and_info(out, 64 * MIB);
        let (v, _) = open_reader(out);
        assert_eq!(v.disk_id(), IDENTITY.disk_id);
        assert_eq!(v.headers.current.copy, 2, "{}", v.headers);
        for (h, seq) in both_headers(out).iter().zip([1, 2]) {
            assert_eq!(h.file_write_guid, IDENTITY.file_write, "header {}", h.copy);
            assert_eq!(h.data_write_guid, IDENTITY.data_write, "header {}", h.copy);
            assert!(h.log_guid.is_zero());
            assert_eq!(h.sequence_number, seq, "header {}", h.copy);
        }
        assert_eq!(vhdx::VhdxIdentity::read(out).unwrap(), IDENTITY);
    }
    for (out, _) in &runs[1..] {
        assert_eq!(
            first_difference(&runs[0].0, out),
            None,
            "{} and {} differ",
            runs[0].0.display(),
            out.display()
        );
    }
}

/// Without an identity the GUIDs are qemu-img's random ones: two runs differ in all three,
/// and so do their bytes (so the test above can fail).
#[test]
fn unpinned_identity_is_random() {
    let root = tempfile::tempdir().unwrap();
    let (a, ca) = assemble_in(root.path(), "a", true, None);
    let (b, _) = assemble_in(root.path(), "b", true, None);
    assert!(!ca.identity_pinned);
    let (ia, ib) = (
        vhdx::VhdxIdentity::read(&a).unwrap(),
        vhdx::VhdxIdentity::read(&b).unwrap(),
    );
    assert_ne!(ia.file_write, ib.file_write);
    assert_ne!(ia.data_write, ib.data_write);
    assert_ne!(ia.disk_id, ib.disk_id);
    let d = first_difference(&a, &b).expect("two unpinned files must differ");
    assert!(
        d < vhdx::EXPECTED_HEADER_BYTES,
        "they differ in the header area only, first at {d:#x}"
    );
    for h in both_headers(&a) {
        assert_eq!(
            h.file_write_guid, ia.file_write,
            "qemu-img: both headers alike"
        );
    }
}

/// A file whose header has a log is not stamped as if it had none: the error names the file
/// and the LogGuid's absolute offset, and the file is left as it was.
#[test]
fn pin_identity_refuses_a_dirty_log() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("dirty.vhdx");
    let mut c = tool("qemu-img", "qemu-utils");
    c.args([
        "create",
        "-q",
        "-f",
        "vhdx",
        "-o",
        "subformat=fixed,block_state_zero=off,block_size=1048576",
    ])
    .arg(&t)
    .arg("8M");
    run(c);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&t)
        .unwrap();
    let mut h = [0u8; HEADER_SIZE];
    f.read_exact_at(&mut h, HEADER_OFFSETS[1]).unwrap();
    ufd_formats::vhdx::set_log_guid(&mut h, &Guid(*b"test-dirty-log!!"));
    f.write_all_at(&h, HEADER_OFFSETS[1]).unwrap();
    drop(f);
    let before = std::fs::read(&t).unwrap();
    let e = vhdx::pin_identity(&t, &IDENTITY).unwrap_err().to_string();
    assert!(e.contains("dirty.vhdx") && e.contains("dirty log"), "{e}");
    assert!(e.contains("at byte 0x20030"), "{e}");
    assert!(std::fs::read(&t).unwrap() == before, "the file was changed");
}
