//! MBR and VHD-footer interop tests against external oracles (sfdisk, qemu-img), and the
//! fuzz regression corpus for both parsers.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::require_tool;
use ufd_formats::bytes::ReadAt;
use ufd_formats::mbr::{partition_type, Chs, Geometry, Mbr, PartitionEntry};
use ufd_formats::vhd::{
    read_dynamic_header, read_footer, Creator, DiskType, Footer, ReadError, VhdGeometry,
    FOOTER_SIZE,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// `ReadAt` over a host file, as the `ufd` CLI implements it.
struct FileReader(File);

impl ReadAt for FileReader {
    type Error = std::io::Error;
    fn size(&self) -> u64 {
        self.0.metadata().map(|m| m.len()).unwrap_or(0)
    }
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        FileExt::read_exact_at(&self.0, buf, offset)
    }
}

fn read_vhd(path: &Path) -> Result<Footer, ReadError<std::io::Error>> {
    read_footer(&mut FileReader(File::open(path).unwrap()))
}

/// Run `sfdisk` with `script` on a new sparse image of `size` bytes; return its sector 0.
fn sfdisk_sector0(dir: &Path, size: u64, script: &str) -> [u8; 512] {
    let sfdisk = require_tool("sfdisk");
    let img = dir.join("disk.img");
    File::create(&img).unwrap().set_len(size).unwrap();
    let mut child = Command::new(sfdisk)
        .arg("--no-reread")
        .arg("--no-tell-kernel")
        .arg(&img)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sfdisk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut s = [0u8; 512];
    File::open(&img).unwrap().read_exact_at(&mut s, 0).unwrap();
    s
}

/// The UFD layout of formats.md §10 on a 16 GiB disk: one active NTFS partition at 1 MiB to the
/// end of the disk, geometry 255/63. Our table must equal sfdisk's 64 bytes.
#[test]
fn sfdisk_one_active_ntfs_partition_table_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let disk = 16 * GIB;
    let theirs = sfdisk_sector0(
        dir.path(),
        disk,
        "label: dos\nlabel-id: 0x1a2b3c4d\nstart=2048, type=7, bootable\n",
    );
    let sectors = (disk / 512) as u32;
    let mut ours = Mbr::new(0x1a2b_3c4d);
    ours.partitions[0] = PartitionEntry::new(
        true,
        partition_type::NTFS,
        2048,
        sectors - 2048,
        Geometry::LBA_ASSIST_255_63,
    )
    .unwrap();
    let bytes = ours.to_bytes();
    assert_eq!(
        &bytes[0x1BE..0x1FE],
        &theirs[0x1BE..0x1FE],
        "partition table differs from sfdisk's"
    );
    assert_eq!(
        &bytes[0x1B8..],
        &theirs[0x1B8..],
        "signature/table/55AA differ from sfdisk's"
    );
    let parsed = Mbr::parse(&theirs).unwrap();
    assert_eq!(parsed.partitions, ours.partitions);
    assert_eq!(
        parsed.partitions[0].chs_start,
        Chs {
            cylinder: 0,
            head: 32,
            sector: 33
        }
    );
    assert_eq!(parsed.partitions[0].chs_end, Chs::MAX_255_63);
    assert!(parsed
        .validate(Some(disk / 512), Some(Geometry::LBA_ASSIST_255_63))
        .is_empty());
}

/// Four partitions, two of them starting beyond cylinder 1023 (FE FF FF on both ends), and
/// CHS values below the limit with non-zero cylinder high bits.
#[test]
fn sfdisk_four_partitions_table_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let disk = 16 * GIB;
    let script = "label: dos\nlabel-id: 0xdeadbeef\n\
                  start=2048, size=204800, type=7, bootable\n\
                  start=206848, size=16384000, type=c\n\
                  start=20971520, size=2097152, type=83\n\
                  start=23068672, type=ef\n";
    let theirs = sfdisk_sector0(dir.path(), disk, script);
    let g = Geometry::LBA_ASSIST_255_63;
    let mut ours = Mbr::new(0xdead_beef);
    ours.partitions = [
        PartitionEntry::new(true, 0x07, 2048, 204_800, g).unwrap(),
        PartitionEntry::new(false, 0x0C, 206_848, 16_384_000, g).unwrap(),
        PartitionEntry::new(false, 0x83, 20_971_520, 2_097_152, g).unwrap(),
        PartitionEntry::new(false, 0xEF, 23_068_672, (disk / 512) as u32 - 23_068_672, g).unwrap(),
    ];
    assert_eq!(&ours.to_bytes()[0x1B8..], &theirs[0x1B8..]);
    assert_eq!(Mbr::parse(&theirs).unwrap(), ours);
    // 206848 + 16384000 - 1 = 16590847 → cylinder 1032 > 1023: clamped.
    assert_eq!(ours.partitions[1].chs_end, Chs::MAX_255_63);
}

/// A 100 MiB partition ending at cylinder 12 and one ending at cylinder 650 (high bits 0b10).
#[test]
fn sfdisk_small_partitions_chs_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let disk = 8 * GIB;
    let script = "label: dos\nlabel-id: 0x00000001\nstart=2048, size=204800, type=7\nstart=206848, size=10240000, type=83, bootable\n";
    let theirs = sfdisk_sector0(dir.path(), disk, script);
    let g = Geometry::LBA_ASSIST_255_63;
    let mut ours = Mbr::new(1);
    ours.partitions[0] = PartitionEntry::new(false, 0x07, 2048, 204_800, g).unwrap();
    ours.partitions[1] = PartitionEntry::new(true, 0x83, 206_848, 10_240_000, g).unwrap();
    assert_eq!(&ours.to_bytes()[0x1B8..], &theirs[0x1B8..]);
    assert!(ours.partitions[1].chs_end.cylinder > 511);
}

fn qemu_img(args: &[&str]) -> String {
    let q = require_tool("qemu-img");
    let out = Command::new(q).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn qemu_virtual_size(path: &Path) -> u64 {
    let json = qemu_img(&["info", "-f", "vpc", "--output=json", path.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["virtual-size"].as_u64().unwrap()
}

/// A sparse raw image of `size` bytes with `footer` appended.
fn write_fixed_vhd(path: &PathBuf, size: u64, footer: &Footer) {
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .unwrap();
    f.set_len(size).unwrap();
    f.write_all_at(&footer.to_bytes(), size).unwrap();
}

/// qemu sizes a `win ` VHD by current size: our footer on a 100 MiB raw file (not a whole
/// number of spec cylinders: CHS capacity 1003×12×17×512 = 104,761,344) is reported at exactly
/// 104,857,600 bytes; the same footer with creator `vpc ` is reported at the CHS capacity.
#[test]
fn qemu_reads_our_win_footer_by_current_size() {
    let dir = tempfile::tempdir().unwrap();
    for size in [100 * MIB, 3 * GIB + 512] {
        let footer = Footer::new_fixed(size, 0x2000_0000, [0x42; 16], Creator::WINDOWS).unwrap();
        let p = dir.path().join("win.vhd");
        write_fixed_vhd(&p, size, &footer);
        assert_eq!(
            qemu_virtual_size(&p),
            size,
            "qemu must size a `win ` VHD by current size"
        );
        assert_eq!(read_vhd(&p).unwrap(), footer);
    }
    let vpc = Creator {
        application: *b"vpc ",
        version: 0x0005_0000,
        host_os: *b"Wi2k",
    };
    let footer = Footer::new_fixed(100 * MIB, 0x2000_0000, [0x42; 16], vpc).unwrap();
    assert_eq!(footer.geometry.capacity(), 104_761_344);
    let p = dir.path().join("vpc.vhd");
    write_fixed_vhd(&p, 100 * MIB, &footer);
    assert_eq!(
        qemu_virtual_size(&p),
        104_761_344,
        "qemu sizes a `vpc ` VHD by CHS"
    );
    assert!(footer.notes().iter().any(|n| n.contains("by CHS")));
}

#[test]
fn qemu_force_size_fixed_footer_parses() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fs.vhd");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vpc",
        "-o",
        "subformat=fixed,force_size=on",
        p.to_str().unwrap(),
        "100M",
    ]);
    let f = read_vhd(&p).unwrap();
    assert_eq!(f.creator, Creator::QEMU_FORCE_SIZE);
    assert_eq!(f.disk_type, DiskType::Fixed);
    assert_eq!((f.original_size, f.current_size), (100 * MIB, 100 * MIB));
    assert_eq!(f.geometry, VhdGeometry::QEMU_FORCE_SIZE_MARKER);
    assert_eq!(
        (f.features, f.file_format_version, f.data_offset),
        (2, 0x0001_0000, u64::MAX)
    );
    assert_eq!(f.footer_size, FOOTER_SIZE);
    assert!(f.require_fixed().is_ok());
    // Re-serialising the parsed footer gives qemu's bytes back.
    let mut tail = [0u8; 512];
    File::open(&p)
        .unwrap()
        .read_exact_at(&mut tail, 100 * MIB)
        .unwrap();
    assert_eq!(f.to_bytes(), tail);
    let notes = f.notes();
    assert_eq!(
        notes,
        vec!["geometry 65535/16/255: qemu force_size marker (size is current size)".to_string()]
    );
}

#[test]
fn qemu_fixed_without_force_size_rounds_up_to_its_chs() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fx.vhd");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vpc",
        "-o",
        "subformat=fixed",
        p.to_str().unwrap(),
        "100M",
    ]);
    let f = read_vhd(&p).unwrap();
    assert_eq!(f.creator, Creator::QEMU);
    assert_eq!(
        f.geometry,
        VhdGeometry {
            cylinders: 1004,
            heads: 12,
            sectors_per_track: 17
        }
    );
    assert_eq!(f.current_size, 104_865_792);
    assert_eq!(f.geometry.capacity(), f.current_size);
}

#[test]
fn qemu_dynamic_footer_and_header_parse() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dy.vhd");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vpc",
        "-o",
        "subformat=dynamic",
        p.to_str().unwrap(),
        "100M",
    ]);
    let mut r = FileReader(File::open(&p).unwrap());
    let f = read_footer(&mut r).unwrap();
    assert_eq!(f.disk_type, DiskType::Dynamic);
    assert_eq!(f.data_offset, 512);
    assert_eq!(f.creator, Creator::QEMU);
    let e = f.require_fixed().unwrap_err();
    assert!(
        e.to_string()
            .contains("dynamic VHD: a fixed VHD is required for native boot"),
        "{e}"
    );
    let h = read_dynamic_header(&mut r, &f).unwrap();
    assert_eq!(h.table_offset, 0x600);
    assert_eq!(h.block_size, 2 * MIB as u32);
    assert_eq!(h.header_version, 0x0001_0000);
    assert_eq!(
        u64::from(h.max_table_entries),
        f.current_size.div_ceil(2 * MIB)
    );
    assert_eq!(h.parent_name, "");
    // The copy of the footer at offset 0 is the same footer.
    let mut head = [0u8; 512];
    File::open(&p).unwrap().read_exact_at(&mut head, 0).unwrap();
    assert_eq!(Footer::parse(&head).unwrap(), f);
}

/// A fixed VHD cut short (e.g. an interrupted copy) is reported with both lengths.
#[test]
fn qemu_truncated_fixed_vhd_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.vhd");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vpc",
        "-o",
        "subformat=fixed,force_size=on",
        p.to_str().unwrap(),
        "10M",
    ]);
    let mut footer = [0u8; 512];
    let file = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    file.read_exact_at(&mut footer, 10 * MIB).unwrap();
    file.set_len(5 * MIB).unwrap();
    file.write_all_at(&footer, 5 * MIB - 512).unwrap();
    let Err(ReadError::Format(e)) = read_vhd(&p) else {
        panic!("truncated VHD accepted")
    };
    let t = e.to_string();
    assert!(
        t.contains("file is 5242880 bytes")
            && t.contains("10486272 bytes")
            && t.contains("truncated"),
        "{t}"
    );
}

/// Every file under tests/regressions/<target>/ (fuzz crashes and hand-made malformed inputs)
/// must be handled without panicking.
fn regression_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/regressions")
        .join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no regression inputs in {}", dir.display());
    v
}

#[test]
fn regressions_mbr_never_panic() {
    for (p, data) in regression_inputs("mbr") {
        let r = std::panic::catch_unwind(|| {
            if let Ok(m) = Mbr::parse(&data) {
                let _ = m.validate(
                    Some(data.len() as u64 / 512),
                    Some(Geometry::LBA_ASSIST_255_63),
                );
                assert_eq!(Mbr::parse(&m.to_bytes()).unwrap(), m);
            }
        });
        assert!(r.is_ok(), "panic on {}", p.display());
    }
}

#[test]
fn regressions_vhd_footer_never_panic() {
    for (p, data) in regression_inputs("vhd_footer") {
        let r = std::panic::catch_unwind(|| {
            if let Ok(f) = Footer::from_tail(&data, 0) {
                let _ = f.notes();
                let _ = f.require_fixed();
                assert_eq!(
                    Footer::parse(&f.to_bytes())
                        .map(|g| g.current_size)
                        .unwrap(),
                    f.current_size
                );
            }
            let _ = read_footer(&mut data.as_slice());
        });
        assert!(r.is_ok(), "panic on {}", p.display());
    }
}
