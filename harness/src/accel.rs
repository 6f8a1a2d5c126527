//! Accelerator detection: KVM where it works for the firmware, TCG otherwise — never hang.
//!
//! On the test host `/dev/kvm` is kvm_pvm, which emulates guest ring-0 code and dies in OVMF's
//! SEC on the first x87 instruction with `KVM internal error. Suberror: 1`; QEMU then stays
//! paused forever (qemu.md §0.1, §3). So "KVM works" means: `/dev/kvm` opens read-write AND a
//! short boot of the same firmware under KVM is still `running` after [`PROBE_WINDOW`] without
//! an internal error. The probe VM is killed either way. Results are cached per firmware.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::firmware::{prepare, FirmwareSource};
use crate::machine::{Accel, CpuVendor, FirmwareFiles};
use crate::process::Qemu;
use crate::qmp::Qmp;

/// How long the KVM probe boot runs before KVM is declared usable.
pub const PROBE_WINDOW: Duration = Duration::from_millis(2500);

static CACHE: Mutex<Option<HashMap<String, Accel>>> = Mutex::new(None);

/// The stderr text QEMU prints when KVM cannot run the guest.
pub fn is_kvm_internal_error(stderr: &str) -> bool {
    stderr.contains("KVM internal error") || stderr.contains("emulation failure")
}

/// Whether `/dev/kvm` can be opened read-write.
pub fn kvm_available() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// The host CPU vendor (`/proc/cpuinfo`); AMD unless the host says GenuineIntel.
pub fn host_vendor() -> CpuVendor {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if info
        .lines()
        .any(|l| l.starts_with("vendor_id") && l.contains("GenuineIntel"))
    {
        CpuVendor::Intel
    } else {
        CpuVendor::Amd
    }
}

/// Pick the accelerator for `firmware` (cached).
pub fn detect(firmware: &FirmwareSource) -> Result<Accel> {
    let key = format!("{firmware:?}");
    if let Some(a) = CACHE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .get(&key)
    {
        return Ok(*a);
    }
    let accel = if kvm_available() {
        probe_kvm(firmware)?
    } else {
        Accel::Tcg
    };
    CACHE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(key, accel);
    Ok(accel)
}

fn probe_kvm(firmware: &FirmwareSource) -> Result<Accel> {
    let dir = tempfile::Builder::new()
        .prefix("ufd-kvmprobe-")
        .tempdir()
        .map_err(|e| {
            crate::error::Error::io(Path::new("/tmp"), "create a temporary directory", e)
        })?;
    let files = prepare(firmware, dir.path())?;
    let sock = dir.path().join("qmp.sock");
    let mut argv: Vec<String> = [
        "-nodefaults",
        "-machine",
        "q35,accel=kvm",
        "-cpu",
        "qemu64",
        "-m",
        "256",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.push("-qmp".into());
    argv.push(format!("unix:{},server=on,wait=off", sock.display()));
    match &files {
        FirmwareFiles::Builtin => {}
        FirmwareFiles::Pflash { code, vars } => {
            argv.push("-drive".into());
            argv.push(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                code.display()
            ));
            argv.push("-drive".into());
            argv.push(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
        }
        FirmwareFiles::PflashSingle { image } => {
            argv.push("-drive".into());
            argv.push(format!(
                "if=pflash,format=raw,unit=0,file={}",
                image.display()
            ));
        }
        FirmwareFiles::Bios { image } => {
            argv.push("-bios".into());
            argv.push(image.display().to_string());
        }
    }
    let mut q = Qemu::spawn(&argv, &dir.path().join("stderr.log"))?;
    let start = Instant::now();
    let deadline = start + PROBE_WINDOW + Duration::from_secs(5);
    let mut qmp = match Qmp::connect(&sock, deadline, || q.try_wait().is_none()) {
        Ok(c) => c,
        Err(_) => return Ok(Accel::Tcg),
    };
    loop {
        if is_kvm_internal_error(&q.stderr_text()) || q.try_wait().is_some() {
            return Ok(Accel::Tcg);
        }
        match qmp.status(deadline) {
            Ok(s) if s == "internal-error" => return Ok(Accel::Tcg),
            Ok(_) => {}
            Err(_) => return Ok(Accel::Tcg),
        }
        if start.elapsed() >= PROBE_WINDOW {
            return Ok(Accel::Kvm);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
