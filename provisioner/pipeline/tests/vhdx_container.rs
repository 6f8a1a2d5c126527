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
use ufd_formats::vhdx::{Mapping, Vhdx};

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
    let c = vhdx::assemble_fixed_vhdx(&part, &out, vhd_size, &mbr, block_size, zero_copy)
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
    let c = vhdx::assemble_fixed_vhdx(&part, &out, vhd_size, &mbr, vhdx::DEFAULT_BLOCK_SIZE, true)
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
    let e = vhdx::assemble_fixed_vhdx(&part, &out, 64 * MIB, &[0; 512], 32 * MIB, true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("p.ntfs") && e.contains("10485760 bytes") && e.contains("66060288"),
        "{e}"
    );
    assert!(part.exists() && !out.exists());
    let e = vhdx::assemble_fixed_vhdx(&part, &out, 64 * MIB, &[0; 512], 3 * MIB, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("block size 3145728"), "{e}");
    let e = vhdx::assemble_fixed_vhdx(&part, &out, 64 * MIB + 512, &[0; 512], MIB, true)
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
    let c = vhdx::assemble_fixed_vhdx(&part, &out, vhd_size, &mbr, 8 * MIB, true)
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
