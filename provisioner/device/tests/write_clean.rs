//! `write_image` onto a target carrying a stick's previous partitioning (a GPT made by
//! `sfdisk`): the first and last MiB end up as diskpart `clean` + the image leave them, checked
//! with independent oracles (`wipefs`, `blkid -p`: Debian util-linux; `sfdisk`: Debian fdisk)
//! on real loop devices (root, as the crate's other loop tests) and on files; the clean covers
//! exactly the target's last MiB; an interrupted write leaves sector 0 zero.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use rstest::rstest;
use ufd_device::write::{
    write_image, WriteError, WriteOptions, WriteSummary, HEAD_BYTES, INTERRUPTED_STATE, TAIL_BYTES,
};
use ufd_formats::mbr::{Geometry, Mbr, PartitionEntry};

mod common;
use common::{dirty_target, loop_target, opts, read_at, MIB};
const IMAGE: u64 = 32 * MIB;

/// Run a tool from Debian `package`, failing loudly when it is missing; its stdout.
fn tool(name: &str, package: &str, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(name)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e}: install {package}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The signatures libblkid finds on `dev` (whole-disk probing, as udev does): "TYPE OFFSET".
fn signatures(dev: &Path) -> Vec<String> {
    tool(
        "wipefs",
        "util-linux",
        &[
            "--no-act",
            "--noheadings",
            "--output",
            "TYPE,OFFSET",
            dev.to_str().unwrap(),
        ],
        "",
    )
    .lines()
    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
    .collect()
}

/// A used stick: `size` bytes of 0xAA with a GPT (protective MBR, primary and backup header
/// and entries, one partition from LBA 2048 to the end) written by sfdisk.
fn gpt_stick(path: &Path, size: u64) {
    drop(dirty_target(path, size));
    tool(
        "sfdisk",
        "fdisk",
        &["--quiet", path.to_str().unwrap()],
        "label: gpt\nstart=2048\n",
    );
    let backup = format!("gpt {:#x}", size - 512);
    assert_eq!(
        signatures(path),
        ["gpt 0x200", backup.as_str(), "PMBR 0x1fe"],
        "the stale GPT the test starts from"
    );
}

/// A sparse 32 MiB image like the UFD's: an MBR with one NTFS partition from 1 MiB to the end,
/// 64 KiB of data at 1 MiB, 128 KiB of data in the last MiB ending 128 KiB before the end, and
/// a hole in the last sector (where a stale backup GPT header would sit).
fn image(dir: &Path) -> PathBuf {
    let p = dir.join("ufd.img");
    let f = File::create(&p).unwrap();
    f.set_len(IMAGE).unwrap();
    let mut mbr = Mbr::new(0x5546_4430);
    mbr.partitions[0] = PartitionEntry::new(
        true,
        0x07,
        2048,
        (IMAGE / 512 - 2048) as u32,
        Geometry::new(255, 63).unwrap(),
    )
    .unwrap();
    f.write_all_at(&mbr.to_bytes(), 0).unwrap();
    f.write_all_at(&[0x11; 64 << 10], MIB).unwrap();
    f.write_all_at(&[0x22; 128 << 10], IMAGE - (256 << 10))
        .unwrap();
    p
}

/// The summary's bytes add up to the target, and what was verified is what was written.
fn assert_accounted(s: &WriteSummary) {
    assert_eq!(
        s.data_bytes + s.zeroed_bytes + s.skipped_bytes + s.cleared_bytes,
        s.target_bytes,
        "{s:?}"
    );
    assert_eq!(s.verified_bytes, s.data_bytes + s.cleared_bytes, "{s:?}");
}

#[rstest]
#[case::larger_device(64 * MIB)]
#[case::same_size_device(IMAGE)]
fn no_gpt_survives_on_a_real_loop_device(#[case] stick: u64) {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let backing = d.path().join("stick.img");
    gpt_stick(&backing, stick);
    let (ld, dev) = loop_target(&backing);
    let s = write_image(
        &img,
        &dev,
        &ld.path().display().to_string(),
        &opts(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    drop(dev);
    // Independent oracles: libblkid sees the new MBR and no GPT, primary or backup.
    assert_eq!(signatures(ld.path()), ["dos 0x1fe"]);
    assert_eq!((s.image_bytes, s.target_bytes), (IMAGE, stick));
    // The last MiB less the image's 128 KiB of data in it (same size); all of it (larger).
    let cleared = if stick == IMAGE {
        TAIL_BYTES - (128 << 10)
    } else {
        TAIL_BYTES
    };
    assert_eq!(s.cleared_bytes, cleared);
    assert_accounted(&s);
    let blkid = tool(
        "blkid",
        "util-linux",
        &["--probe", "--output", "export", ld.path().to_str().unwrap()],
        "",
    );
    assert!(blkid.lines().any(|l| l == "PTTYPE=dos"), "{blkid}");
    assert!(!blkid.contains("gpt"), "{blkid}");
    drop(ld);
    let f = File::open(&backing).unwrap();
    assert_eq!(f.metadata().unwrap().len(), stick);
    assert_eq!(
        read_at(&f, 0, 512),
        read_at(&File::open(&img).unwrap(), 0, 512)
    );
    assert!(read_at(&f, 512, HEAD_BYTES - 512).iter().all(|&b| b == 0));
    assert!(read_at(&f, stick - (16 << 10), 16 << 10)
        .iter()
        .all(|&b| b == 0));
    if stick > IMAGE {
        // Beyond the image and before the last MiB: left as it was (clean leaves it too).
        assert!(read_at(&f, IMAGE, MIB).iter().all(|&b| b == 0xAA));
        assert_eq!(read_at(&f, stick - TAIL_BYTES - 1, 1), [0xAA]);
    }
}

#[rstest]
#[case::same_size(0)]
#[case::one_page_larger(4096)]
#[case::twice_the_size(IMAGE)]
fn the_clean_covers_exactly_the_targets_last_mib(#[case] extra: u64) {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let path = d.path().join("stick.img");
    gpt_stick(&path, IMAGE + extra);
    let target = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let s = write_image(
        &img,
        &target,
        "stick.img",
        &opts(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    let size = IMAGE + extra;
    // A file target is a disk of its size: not truncated to the image, not extended past it.
    assert_eq!(target.metadata().unwrap().len(), size);
    assert_eq!((s.image_bytes, s.target_bytes), (IMAGE, size));
    let tail_from = size - TAIL_BYTES;
    let data_in_tail = if extra < TAIL_BYTES { 128 << 10 } else { 0 };
    assert_eq!(s.cleared_bytes, TAIL_BYTES - data_in_tail);
    assert_eq!(s.zeroed_bytes, 0);
    assert_accounted(&s);
    // The last MiB: the image's data where it has some, zeros elsewhere.
    let source = File::open(&img).unwrap();
    let tail = read_at(&target, tail_from, TAIL_BYTES);
    for (i, &b) in tail.iter().enumerate() {
        let off = tail_from + i as u64;
        let want = if off < IMAGE {
            read_at(&source, off, 1)[0]
        } else {
            0
        };
        assert_eq!(b, want, "byte at {off}");
    }
    // Nothing before it is cleared: the byte just before is the stale 0xAA (an image hole,
    // or beyond the image).
    assert_eq!(read_at(&target, tail_from - 1, 1), [0xAA]);
    assert_eq!(signatures(&path), ["dos 0x1fe"]);
}

#[test]
fn a_new_file_becomes_the_image() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let path = d.path().join("copy.img");
    let target = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    let s = write_image(
        &img,
        &target,
        "copy.img",
        &WriteOptions {
            zero_holes: true,
            ..opts()
        },
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(s.target_bytes, IMAGE);
    assert_eq!(s.skipped_bytes, 0);
    assert_accounted(&s);
    assert!(fs::read(&path).unwrap() == fs::read(&img).unwrap());
}

#[rstest]
#[case::before_anything(true)]
#[case::after_the_clean(false)]
fn an_interrupted_write_leaves_sector_0_zero(#[case] at_start: bool) {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let path = d.path().join("stick.img");
    let size = 64 * MIB;
    gpt_stick(&path, size);
    let target = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let cancel = AtomicBool::new(at_start);
    let e = write_image(&img, &target, "stick.img", &opts(), &cancel, &mut |_| {
        cancel.store(true, Ordering::SeqCst); // the CLI's SIGINT handler, at the first report
    })
    .unwrap_err();
    let flushed = match &e {
        WriteError::Interrupted {
            flushed_bytes,
            state,
        } => {
            assert_eq!(state, INTERRUPTED_STATE);
            *flushed_bytes
        }
        other => panic!("{other:?}"),
    };
    assert!(read_at(&target, 0, 512).iter().all(|&b| b == 0));
    if at_start {
        assert_eq!(flushed, 0);
        // Only sector 0 was written: the stale GPT headers are still there, without their
        // protective MBR.
        assert_eq!(&read_at(&target, 512, 8), b"EFI PART");
    } else {
        // The first report comes after the head and the clean of the last MiB are flushed:
        // no partitioning of any kind is left, as after diskpart clean.
        assert_eq!(flushed, HEAD_BYTES - 512 + TAIL_BYTES);
        assert_eq!(signatures(&path), Vec::<String>::new());
        assert!(read_at(&target, size - TAIL_BYTES, TAIL_BYTES)
            .iter()
            .all(|&b| b == 0));
    }
}
