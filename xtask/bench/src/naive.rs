//! The naive pipeline of host-pipeline.md §6 (`naive.sh`): Microsoft's steps followed literally
//! with loop devices, kernel partitions (`partx -a`, since the test kernel has no MBR parser,
//! §0) and ntfs-3g FUSE mounts. Every step ends with a global `sync`, inside its timing, as in
//! the baseline. Needs root, loop devices and `/dev/fuse` ([`unavailable`]).
//!
//! The boot files are copied as in the baseline: `bootmgr`, `\Boot\Fonts` and a `\Boot\BCD`;
//! the BCD is the image's `BCD-Template` copied as a stand-in store (the baseline also used a
//! placeholder BCD: it only costs a small file copy either way).
//!
//! Loop devices and mounts are held by [`Attached`], whose `Drop` unmounts and detaches on
//! every exit path; leftovers of an interrupted earlier run (found by backing file and
//! mount point) are removed before starting.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::measure::{require, run, sync, Device, Meter, Sample, Scratch};

/// The reason the naive baseline cannot run here, or `None` when it can.
pub fn unavailable() -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Some(format!(
            "not root (effective uid {euid}): loop devices and mounts need root"
        ));
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control (kernel without loop devices)".into());
    }
    match Command::new("losetup").arg("-f").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Some(format!(
                "no free loop device: losetup -f: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => return Some(format!("losetup: cannot run ({e}); install util-linux")),
    }
    if let Err(e) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return Some(format!("/dev/fuse: {e}"));
    }
    None
}

/// Loop devices and mounts of this run; `Drop` undoes whatever is still in place.
#[derive(Default)]
struct Attached {
    loops: Vec<String>,
    mounts: Vec<PathBuf>,
}

impl Attached {
    fn attach(&mut self, file: &Path) -> Result<String, String> {
        let dev = run(
            Command::new("losetup").args(["-f", "--show"]).arg(file),
            &format!("losetup -f --show {}", file.display()),
        )?
        .trim()
        .to_string();
        if dev.is_empty() {
            return Err(format!("losetup {}: printed no device", file.display()));
        }
        self.loops.push(dev.clone());
        Ok(dev)
    }

    /// `partx -a DEV` and wait for devtmpfs to create `DEVp1`.
    fn partition(&self, dev: &str) -> Result<String, String> {
        run(
            Command::new("partx").args(["-a", dev]),
            &format!("partx -a {dev}"),
        )?;
        let p1 = format!("{dev}p1");
        let t = Instant::now();
        while !Path::new(&p1).exists() {
            if t.elapsed() > Duration::from_secs(10) {
                return Err(format!("partx -a {dev}: {p1} did not appear within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(p1)
    }

    fn detach(&mut self, dev: &str) -> Result<(), String> {
        // The partition must go first, or the loop device stays busy.
        run(
            Command::new("partx").args(["-d", dev]),
            &format!("partx -d {dev}"),
        )?;
        run(
            Command::new("losetup").args(["-d", dev]),
            &format!("losetup -d {dev}"),
        )?;
        self.loops.retain(|d| d != dev);
        Ok(())
    }

    fn mount(&mut self, dev: &str, mnt: &Path) -> Result<(), String> {
        fs::create_dir_all(mnt).map_err(|e| format!("{}: {e}", mnt.display()))?;
        run(
            Command::new("ntfs-3g").arg(dev).arg(mnt),
            &format!("ntfs-3g {dev} {}", mnt.display()),
        )?;
        self.mounts.push(mnt.to_path_buf());
        Ok(())
    }

    fn umount(&mut self, mnt: &Path) -> Result<(), String> {
        run(
            Command::new("umount").arg(mnt),
            &format!("umount {}", mnt.display()),
        )?;
        self.mounts.retain(|m| m != mnt);
        Ok(())
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        for m in self.mounts.drain(..).rev() {
            let ok = Command::new("umount")
                .arg(&m)
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&m).output();
            }
        }
        for d in self.loops.drain(..).rev() {
            let _ = Command::new("partx").args(["-d", &d]).output();
            let _ = Command::new("losetup").args(["-d", &d]).output();
        }
    }
}

/// Unmount our mount points and detach loop devices backed by our files (an interrupted run).
fn clean_leftovers(mounts: &[&Path], files: &[&Path]) {
    let table = fs::read_to_string("/proc/mounts").unwrap_or_default();
    for m in mounts {
        let m = m.to_string_lossy();
        if table.lines().any(|l| l.split(' ').nth(1) == Some(&*m)) {
            let _ = Command::new("umount").arg("-l").arg(&*m).output();
        }
    }
    for f in files {
        let Ok(o) = Command::new("losetup").arg("-j").arg(f).output() else {
            continue;
        };
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if let Some((dev, _)) = line.split_once(':') {
                let _ = Command::new("partx").args(["-d", dev]).output();
                let _ = Command::new("losetup").args(["-d", dev]).output();
            }
        }
    }
}

/// The naive run: each step's sample, and the whole.
pub struct Naive {
    pub steps: Vec<(&'static str, Sample)>,
    pub total: Sample,
}

/// Run the naive pipeline in `dir` with the seed's sizes.
pub fn run_pipeline(
    dir: &Path,
    wim: &Path,
    vhd_size: u64,
    ufd_size: u64,
    device: Option<&Device>,
) -> Result<Naive, String> {
    for (tool, pkg) in [
        ("qemu-img", "qemu-utils"),
        ("losetup", "mount"),
        ("partx", "util-linux"),
        ("sfdisk", "fdisk"),
        ("mkntfs", "ntfs-3g"),
        ("ntfs-3g", "ntfs-3g"),
        ("wimapply", "wimtools"),
        ("hivexregedit", "libwin-hivex-perl"),
        ("umount", "mount"),
    ] {
        require(tool, pkg)?;
    }
    let vhd = dir.join("naive-hyperv.vhd");
    let ufd = dir.join("naive-ufd.img");
    let mnt_vhd = dir.join("mnt-naive-vhd");
    let mnt_ufd = dir.join("mnt-naive-ufd");
    clean_leftovers(&[&mnt_vhd, &mnt_ufd], &[&vhd, &ufd]);

    // Declared before `att`, so mounts and loops go first on drop, then the files.
    let mut scratch = Scratch::default();
    let vhd = scratch.file(vhd)?;
    let ufd = scratch.file(ufd)?;
    let boot = scratch.dir(dir.join("naive-boot"))?;
    let edit = scratch.file(dir.join("naive-edit.reg"))?;
    let mnt_vhd = scratch.dir(mnt_vhd)?;
    let mnt_ufd = scratch.dir(mnt_ufd)?;
    let mut att = Attached::default();

    let part_sectors = vhd_size / 512 - 2048;
    let mut steps = Vec::new();
    let total = Meter::start(device)?;
    let mut step =
        |name: &'static str, f: &mut dyn FnMut() -> Result<(), String>| -> Result<(), String> {
            let m = Meter::start(device)?;
            f().map_err(|e| format!("naive step \"{name}\": {e}"))?;
            sync()?;
            steps.push((name, m.stop()?));
            Ok(())
        };
    let mut vdev = String::new();
    let mut vp1 = String::new();
    step("1 qemu-img create fixed VHD", &mut || {
        run(
            Command::new("qemu-img")
                .args([
                    "create",
                    "-q",
                    "-f",
                    "vpc",
                    "-o",
                    "subformat=fixed,force_size=on",
                ])
                .arg(&vhd)
                .arg(vhd_size.to_string()),
            "qemu-img create",
        )
        .map(drop)
    })?;
    step("2 losetup+sfdisk+partx (VHD)", &mut || {
        vdev = att.attach(&vhd)?;
        // Explicit size: the loop device includes the footer sector (pitfall 3).
        sfdisk(
            &vdev,
            &format!("label: dos\nstart=2048, size={part_sectors}, type=7\n"),
        )?;
        vp1 = att.partition(&vdev)?;
        Ok(())
    })?;
    step("3 mkntfs -Q (VHD p1)", &mut || mkntfs(&vp1, "hyperV"))?;
    step("4 wimapply -> VHD p1 (NTFS-3G)", &mut || {
        run(
            Command::new("wimapply").arg(wim).arg("1").arg(&vp1),
            &format!("wimapply {} 1 {vp1}", wim.display()),
        )
        .map(drop)
    })?;
    step("5 mount+hive edit+boot files+umount", &mut || {
        att.mount(&vp1, &mnt_vhd)?;
        fs::write(
            &edit,
            "Windows Registry Editor Version 5.00\r\n\r\n\
             [HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Control\\Session Manager\\Memory Management]\r\n\
             \"PagingFiles\"=hex(7):00,00\r\n\
             \"ExistingPageFiles\"=-\r\n",
        )
        .map_err(|e| format!("{}: {e}", edit.display()))?;
        run(
            Command::new("hivexregedit")
                .args(["--merge", "--prefix", "HKEY_LOCAL_MACHINE\\SYSTEM"])
                .arg(mnt_vhd.join("Windows/System32/config/SYSTEM"))
                .arg(&edit),
            "hivexregedit --merge SYSTEM",
        )?;
        fs::create_dir_all(&boot).map_err(|e| format!("{}: {e}", boot.display()))?;
        cp(
            &[&mnt_vhd.join("Windows/Boot/PCAT/bootmgr")],
            &boot.join("bootmgr"),
            &[],
        )?;
        cp(
            &[&mnt_vhd.join("Windows/Boot/Fonts")],
            &boot.join("Fonts"),
            &["-r"],
        )?;
        cp(
            &[&mnt_vhd.join("Windows/System32/config/BCD-Template")],
            &boot.join("BCD"),
            &[],
        )?;
        att.umount(&mnt_vhd)
    })?;
    step("6 detach VHD loop", &mut || att.detach(&vdev))?;
    step("7 truncate UFD image", &mut || {
        fs::File::create(&ufd)
            .and_then(|f| f.set_len(ufd_size))
            .map_err(|e| format!("{}: {e}", ufd.display()))
    })?;
    let mut udev = String::new();
    let mut up1 = String::new();
    step("8 losetup+sfdisk (active)+partx (UFD)", &mut || {
        udev = att.attach(&ufd)?;
        sfdisk(&udev, "label: dos\nstart=2048, type=7, bootable\n")?;
        up1 = att.partition(&udev)?;
        Ok(())
    })?;
    step("9 mkntfs -Q (UFD p1)", &mut || mkntfs(&up1, "HVUSB"))?;
    step("10 mount UFD + cp boot/VHD + umount", &mut || {
        att.mount(&up1, &mnt_ufd)?;
        let b = mnt_ufd.join("Boot");
        fs::create_dir(&b).map_err(|e| format!("{}: {e}", b.display()))?;
        cp(&[&boot.join("bootmgr")], &mnt_ufd, &[])?;
        cp(&[&boot.join("Fonts")], &b, &["-r"])?;
        cp(&[&boot.join("BCD")], &b.join("BCD"), &[])?;
        // Not sparse: ntfs-3g would keep the holes (pitfall 7) and native VHD boot refuses
        // sparse files.
        cp(&[&vhd], &mnt_ufd.join("hyperV.vhd"), &["--sparse=never"])?;
        att.umount(&mnt_ufd)
    })?;
    step("11 detach UFD loop", &mut || att.detach(&udev))?;
    let total = total.stop()?;
    drop(att);
    drop(scratch);
    Ok(Naive { steps, total })
}

fn sfdisk(dev: &str, script: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("sfdisk")
        .args(["-q", "--no-reread", "--no-tell-kernel", dev])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("sfdisk {dev}: cannot run: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("sfdisk {dev}: writing the script: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("sfdisk {dev}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sfdisk {dev} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// mkntfs on a loop partition: start and geometry given explicitly (pitfall 4).
fn mkntfs(dev: &str, label: &str) -> Result<(), String> {
    run(
        Command::new("mkntfs").args([
            "-Q", "-q", "-s", "512", "-L", label, "-p", "2048", "-H", "255", "-S", "63", dev,
        ]),
        &format!("mkntfs {dev}"),
    )
    .map(drop)
}

fn cp(src: &[&Path], dst: &Path, opts: &[&str]) -> Result<(), String> {
    let mut c = Command::new("cp");
    c.args(opts).args(src).arg(dst);
    run(
        &mut c,
        &format!("cp {} -> {}", src[0].display(), dst.display()),
    )
    .map(drop)
}
