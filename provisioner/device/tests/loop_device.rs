//! Real loop devices (needs root and /dev/loop-control, as on the project's machines and CI):
//! attach with partitions, detach on drop and on panic, `check-device` on a real loop device,
//! and the safety checks refusing a mounted one. Tools: partx, mkfs.ext4, mount, umount
//! (Debian util-linux, e2fsprogs, mount).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ufd_device::check::{check_device, CheckOptions};
use ufd_device::loopdev::{attach, AttachOptions};
use ufd_device::safety::{open_exclusive, preflight, PreflightOptions, Refusal};
use ufd_device::sysfs::{Sysfs, Transport};
use ufd_formats::mbr::{Geometry, Mbr, PartitionEntry};
use ufd_formats::policy::{self, Outcome};

const MIB: u64 = 1 << 20;

/// A sparse image of `size` bytes with one partition (type `ptype`) from 1 MiB to the end.
fn image(dir: &Path, size: u64, ptype: u8) -> PathBuf {
    let p = dir.join("disk.img");
    let f = fs::File::create(&p).unwrap();
    f.set_len(size).unwrap();
    let mut mbr = Mbr::new(0x5546_4430);
    mbr.partitions[0] = PartitionEntry::new(
        true,
        ptype,
        2048,
        (size / 512 - 2048) as u32,
        Geometry::new(255, 63).unwrap(),
    )
    .unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&mbr.to_bytes(), 0).unwrap();
    p
}

fn tool(name: &str, package: &str, args: &[&str]) {
    let out = Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e}: install {package}"));
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Wait (bounded) until `name` is no longer bound to `image`. Tests run in parallel: once
/// detached, the same loop device may already serve another test's image.
fn detached(name: &str, image: &Path) -> bool {
    let f = PathBuf::from(format!("/sys/block/{name}/loop/backing_file"));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        match fs::read_to_string(&f) {
            Ok(b) if Path::new(b.trim()) == image => {}
            _ => return true,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[rstest::rstest]
#[case::loop_configure(false)]
#[case::set_fd_and_status64(true)]
fn attach_shows_partitions_and_detach_removes_them(#[case] legacy_ioctls: bool) {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path(), 64 * MIB, 0x83);
    let ld = attach(
        &img,
        AttachOptions {
            legacy_ioctls,
            ..AttachOptions::default()
        },
    )
    .unwrap();
    let name = ld.name();
    assert_eq!(ld.partitions(), &[PathBuf::from(format!("/dev/{name}p1"))]);
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::metadata(&ld.partitions()[0])
        .unwrap()
        .file_type()
        .is_block_device());
    let facts = Sysfs::system().block(&name).unwrap();
    assert_eq!(facts.size_bytes, 64 * MIB);
    assert_eq!(facts.partitions.len(), 1);
    assert_eq!(facts.partitions[0].start_sectors, Some(2048));
    match &facts.transport {
        Transport::Loop(l) => {
            assert_eq!(l.backing_file.as_deref(), Some(img.to_str().unwrap()));
            assert_eq!(l.autoclear, Some(true));
            assert_eq!(l.partscan, Some(true));
        }
        t => panic!("not a loop device: {t:?}"),
    }
    assert!(Path::new(&format!("/sys/block/{name}/{name}p1/partition")).exists());
    ld.detach().unwrap();
    assert!(detached(&name, &img), "{name} still attached");
    // Its partition went with it (unless another test re-bound the device meanwhile).
    if !Path::new(&format!("/sys/block/{name}/loop")).exists() {
        assert!(!Path::new(&format!("/sys/block/{name}/{name}p1")).exists());
    }
}

#[test]
fn a_panic_detaches_the_device() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path(), 16 * MIB, 0x83);
    let name = std::sync::Mutex::new(String::new());
    let r = std::panic::catch_unwind(|| {
        let ld = attach(&img, AttachOptions::default()).unwrap();
        *name.lock().unwrap() = ld.name();
        panic!("interrupted while attached");
    });
    assert!(r.is_err());
    let name = name.into_inner().unwrap();
    assert!(name.starts_with("loop"));
    assert!(
        detached(&name, &img),
        "{name} still attached after the panic"
    );
}

#[test]
fn check_device_on_a_real_loop_device() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path(), 32 * MIB, 0x07);
    let ld = attach(&img, AttachOptions::default()).unwrap();
    let r = check_device(&Sysfs::system(), ld.path(), CheckOptions::default()).unwrap();
    for v in &r.verdicts {
        let want = if v.rule == policy::UFD_CAPACITY {
            Outcome::Fail
        } else {
            Outcome::NotJudged
        };
        assert_eq!(v.outcome, want, "{}", r.text());
    }
    let cap = r.verdict(policy::UFD_CAPACITY).unwrap();
    assert!(
        cap.evidence.starts_with("33554432 bytes"),
        "{}",
        cap.evidence
    );
    assert!(r
        .verdict(policy::UFD_USB2)
        .unwrap()
        .evidence
        .contains(img.to_str().unwrap()));
}

struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn safety_refuses_a_mounted_loop_device() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path(), 32 * MIB, 0x83);
    let ld = attach(&img, AttachOptions::default()).unwrap();
    let p1 = ld.partitions()[0].to_str().unwrap().to_string();
    tool("mkfs.ext4", "e2fsprogs", &["-q", "-F", &p1]);
    let mnt = d.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    tool("mount", "mount", &[&p1, mnt.to_str().unwrap()]);
    let guard = Unmount(mnt.clone());
    let sys = Sysfs::system();
    let p = preflight(&sys, ld.path(), 0, PreflightOptions::default()).unwrap();
    let part = format!("{}p1", ld.name());
    assert!(
        matches!(&p.refusals[..], [Refusal::Mounted { device, mount_point, .. }] if *device == part && Path::new(mount_point) == mnt),
        "{:?}",
        p.refusals
    );
    let e = open_exclusive(ld.path()).unwrap_err();
    assert!(
        e.0.ends_with("in use (mounted or opened exclusively by another program)"),
        "{e}"
    );
    drop(guard);
    let p = preflight(&sys, ld.path(), 0, PreflightOptions::default()).unwrap();
    assert!(p.ok(), "{:?}", p.refusals);
    let f = open_exclusive(ld.path()).unwrap();
    drop(f);
    let id = p.into_result().unwrap();
    assert!(id.location.contains("disk.img"));
    ufd_device::safety::reidentify(&id).unwrap();
}
