//! `write_image` onto files, a real loop device and a full filesystem: only data extents
//! written, holes kept or zeroed, MBR zeroed first and written last, cancellation, ENOSPC,
//! progress counting flushed bytes, read-back verification.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use rstest::rstest;
use ufd_device::write::{
    write_image, Phase, Progress, WriteError, WriteOptions, HEAD_BYTES, INTERRUPTED_STATE,
};

mod common;
use common::{dirty_target, loop_target, opts, read_at, MIB};
const SIZE: u64 = 64 * MIB;

/// A sparse 64 MiB image: an MBR-like sector 0, 3 MiB of data at 1 MiB, 64 KiB at 40 MiB and a
/// 512-byte "footer" at the end.
fn image(dir: &Path) -> (PathBuf, Vec<(u64, Vec<u8>)>) {
    let p = dir.join("ufd.img");
    let f = File::create(&p).unwrap();
    f.set_len(SIZE).unwrap();
    let mut mbr = vec![0u8; 512];
    mbr[446] = 0x80;
    mbr[450] = 0x07;
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    let pattern = |n: usize, seed: u8| -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    };
    let parts = vec![
        (0, mbr),
        (MIB, pattern(3 * MIB as usize, 1)),
        (40 * MIB, pattern(64 << 10, 2)),
        (SIZE - 512, pattern(512, 3)),
    ];
    for (off, data) in &parts {
        f.write_all_at(data, *off).unwrap();
    }
    (p, parts)
}

#[rstest]
#[case(false)]
#[case(true)]
fn writes_data_extents_and_keeps_or_zeroes_holes(#[case] zero_holes: bool) {
    let d = tempfile::tempdir().unwrap();
    let (img, parts) = image(d.path());
    let target = dirty_target(&d.path().join("target.img"), SIZE);
    let mut reports: Vec<Progress> = Vec::new();
    let s = write_image(
        &img,
        &target,
        "target.img",
        &WriteOptions {
            zero_holes,
            ..opts()
        },
        &AtomicBool::new(false),
        &mut |p| reports.push(p.clone()),
    )
    .unwrap();
    // The footer's extent is one filesystem block (SEEK_DATA works in blocks).
    use std::os::unix::fs::MetadataExt;
    let blk = fs::metadata(&img).unwrap().blksize().max(512);
    let data = HEAD_BYTES + 3 * MIB + (64 << 10) + blk;
    // The 1 MiB head and the data at 1 MiB are one extent.
    assert_eq!((s.image_bytes, s.extents, s.data_bytes), (SIZE, 3, data));
    // The image's holes in the target's last MiB are cleared (diskpart clean), and verified.
    let cleared = MIB - blk;
    assert_eq!((s.target_bytes, s.cleared_bytes), (SIZE, cleared));
    assert_eq!(s.verified_bytes, data + cleared);
    for (off, bytes) in &parts {
        assert_eq!(
            &read_at(&target, *off, bytes.len() as u64),
            bytes,
            "extent at {off}"
        );
    }
    // LBA 1-33 are always written (zeros from the image's hole).
    assert!(read_at(&target, 512, HEAD_BYTES - 512)
        .iter()
        .all(|&b| b == 0));
    let in_hole = read_at(&target, 20 * MIB, 4096);
    if zero_holes {
        assert!(in_hole.iter().all(|&b| b == 0));
        assert_eq!(
            (s.zeroed_bytes, s.skipped_bytes),
            (SIZE - data - cleared, 0)
        );
        assert_eq!(fs::read(&img).unwrap(), read_at(&target, 0, SIZE));
    } else {
        assert!(in_hole.iter().all(|&b| b == 0xAA), "holes are not written");
        assert_eq!(
            (s.zeroed_bytes, s.skipped_bytes),
            (0, SIZE - data - cleared)
        );
    }
    // Progress: flushed bytes only, non-decreasing, ending at the total; then verification.
    let writing: Vec<&Progress> = reports
        .iter()
        .filter(|p| p.phase == Phase::Writing)
        .collect();
    assert!(writing.len() >= 3, "{}", writing.len());
    assert!(writing.windows(2).all(|w| w[0].done <= w[1].done));
    let last = writing.last().unwrap();
    assert_eq!(last.done, last.total);
    assert_eq!(last.total, data + s.zeroed_bytes + cleared);
    assert_eq!(reports.last().unwrap().phase, Phase::Verifying);
    assert_eq!(reports.last().unwrap().done, data + cleared);
}

#[test]
fn cancel_leaves_no_partition_table() {
    let d = tempfile::tempdir().unwrap();
    let (img, _) = image(d.path());
    let target = dirty_target(&d.path().join("target.img"), SIZE);
    let cancel = AtomicBool::new(false);
    let e = write_image(&img, &target, "target.img", &opts(), &cancel, &mut |p| {
        if p.done >= MIB {
            cancel.store(true, Ordering::SeqCst); // what the CLI's SIGINT handler does
        }
    })
    .unwrap_err();
    match &e {
        WriteError::Interrupted {
            flushed_bytes,
            state,
        } => {
            assert!(
                *flushed_bytes >= MIB && *flushed_bytes < 3 * MIB,
                "{flushed_bytes}"
            );
            assert_eq!(state, INTERRUPTED_STATE);
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("partition table not written"));
    assert!(
        read_at(&target, 0, 512).iter().all(|&b| b == 0),
        "sector 0 must be zeroed first"
    );
}

#[test]
fn verification_catches_a_target_that_did_not_keep_the_data() {
    // A fake-capacity stick returns other data than was written. Simulated by changing the
    // target behind the writer's back once the write phase reported completion.
    let d = tempfile::tempdir().unwrap();
    let (img, _) = image(d.path());
    let path = d.path().join("target.img");
    let target = dirty_target(&path, SIZE);
    let e = write_image(
        &img,
        &target,
        "target.img",
        &opts(),
        &AtomicBool::new(false),
        &mut |p| {
            if p.phase == Phase::Writing && p.done == p.total {
                let f = OpenOptions::new().write(true).open(&path).unwrap();
                f.write_all_at(&[0xEE], 40 * MIB + 7).unwrap();
                f.sync_all().unwrap();
            }
        },
    )
    .unwrap_err();
    assert_eq!(
        e,
        WriteError::VerifyMismatch {
            target: "target.img".into(),
            offset: 40 * MIB + 7
        }
    );
    assert!(
        e.to_string()
            .contains("read-back differs from the image at byte offset 41943047"),
        "{e}"
    );
}

#[test]
fn a_device_smaller_than_the_image_is_refused_before_writing() {
    let d = tempfile::tempdir().unwrap();
    let (img, _) = image(d.path());
    let small = d.path().join("small.img");
    let f = dirty_target(&small, 8 * MIB);
    drop(f);
    let (ld, dev) = loop_target(&small);
    let name = ld.path().display().to_string();
    let e = write_image(
        &img,
        &dev,
        &name,
        &opts(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(
        e,
        WriteError::NoSpace {
            target: name.clone(),
            offset: 8 * MIB,
            image_bytes: SIZE
        }
    );
    assert_eq!(
        e.to_string(),
        format!("{name}: no space left at byte offset 8388608 (ENOSPC): the target is smaller than the 67108864-byte image")
    );
    drop(dev);
    drop(ld);
    assert!(
        fs::read(&small).unwrap().iter().all(|&b| b == 0xAA),
        "nothing written"
    );
}

#[rstest]
#[case(false)]
#[case(true)]
fn writes_a_real_loop_device(#[case] zero_holes: bool) {
    let d = tempfile::tempdir().unwrap();
    let (img, _) = image(d.path());
    let backing = d.path().join("stick.img");
    drop(dirty_target(&backing, SIZE));
    let (ld, dev) = loop_target(&backing);
    let s = write_image(
        &img,
        &dev,
        &ld.path().display().to_string(),
        &WriteOptions {
            zero_holes,
            ..opts()
        },
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(s.verified_bytes, s.data_bytes + s.cleared_bytes);
    drop(dev);
    drop(ld);
    let written = fs::read(&backing).unwrap();
    let want = fs::read(&img).unwrap();
    if zero_holes {
        assert!(written == want, "zeroed device must equal the image");
    } else {
        assert_eq!(written[..512], want[..512]);
        assert_eq!(written[20 * MIB as usize], 0xAA);
    }
}

struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn enospc_names_the_offset() {
    let d = tempfile::tempdir().unwrap();
    let (img, _) = image(d.path());
    let mnt = d.path().join("full");
    fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=2m",
            "tmpfs",
            mnt.to_str().unwrap(),
        ])
        .status()
        .expect("mount: install mount");
    assert!(st.success(), "mount -t tmpfs failed (needs root)");
    let _g = Unmount(mnt.clone());
    let target = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(mnt.join("t.img"))
        .unwrap();
    let e = write_image(
        &img,
        &target,
        "t.img",
        &opts(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    match &e {
        WriteError::NoSpace { offset, .. } => {
            assert!(*offset >= MIB && *offset < 3 * MIB, "{offset}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string()
            .starts_with("t.img: no space left at byte offset "),
        "{e}"
    );
}
