//! Accelerator detection: KVM where it works for the firmware, TCG otherwise — never hang.
//!
//! On the test host `/dev/kvm` is kvm_pvm, which emulates guest ring-0 code and dies in OVMF's
//! SEC on the first x87 instruction with `KVM internal error. Suberror: 1`; QEMU then stays
//! paused forever (qemu.md §0.1, §3). So "KVM works" means: `/dev/kvm` opens read-write AND a
//! short boot of the same firmware under KVM is still `running` after [`PROBE_WINDOW`] without
//! an internal error. The probe VM is killed either way. Results are cached per firmware.
//!
//! A legacy BIOS (SeaBIOS) does not die under kvm_pvm, it crawls: from QEMU's start, SeaBIOS
//! runs the race disk's boot sector after ~0.09 s under TCG here and after ~2.8 s under
//! kvm_pvm (QEMU 7.2, measured 3 times each), so "still running" says nothing. For a BIOS the probe is a race measured in the same run
//! ([`bios_race`]): the firmware boots a small disk whose boot sector writes `UFD` to COM1, first
//! under TCG, then under KVM; KVM is chosen only when it gets there within
//! [`KVM_SLOWDOWN_ALLOWED`] × TCG's time (+[`KVM_SLACK`]). A KVM that really runs the firmware
//! (common CI runners) is faster than TCG; the emulating one here is ~30× slower. A BIOS that never
//! boots the sector (a custom build without disk boot) gets TCG, never a hang.

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

/// How much slower than TCG a KVM boot of a legacy BIOS may be and still be chosen.
pub const KVM_SLOWDOWN_ALLOWED: u32 = 4;
/// Fixed allowance on top of that (process start-up noise).
pub const KVM_SLACK: Duration = Duration::from_millis(500);
/// How long the TCG leg of the BIOS race may take before the firmware is declared unable to
/// boot the race disk.
pub const BIOS_RACE_TCG_LIMIT: Duration = Duration::from_secs(20);

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

/// Whether the host's KVM module offers nested virtualization (`kvm_intel`/`kvm_amd`
/// parameter `nested` = `Y` or `1`), i.e. whether a KVM guest can be shown VT-x/AMD-V.
pub fn kvm_offers_nested_vt() -> bool {
    ["kvm_intel", "kvm_amd"].iter().any(|m| {
        std::fs::read_to_string(format!("/sys/module/{m}/parameters/nested"))
            .is_ok_and(|v| nested_enabled(&v))
    })
}

/// A `nested` module parameter's text: `Y`/`1` on, `N`/`0` off.
fn nested_enabled(text: &str) -> bool {
    matches!(text.trim(), "Y" | "y" | "1")
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
    if matches!(firmware, FirmwareSource::Builtin | FirmwareSource::Bios(_)) {
        return Ok(bios_race(firmware)?.choice());
    }
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
    argv.extend(files.argv());
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

/// The boot sector of the BIOS race: `cli; mov dx,0x3f8; out 'U','F','D'; hlt; jmp hlt`,
/// then the 55AAh signature.
pub fn race_boot_sector() -> [u8; 512] {
    let code: [u8; 17] = [
        0xFA, // cli
        0xBA, 0xF8, 0x03, // mov dx, 0x3f8
        0xB0, b'U', 0xEE, // mov al, 'U'; out dx, al
        0xB0, b'F', 0xEE, // mov al, 'F'; out dx, al
        0xB0, b'D', 0xEE, // mov al, 'D'; out dx, al
        0xF4, // hlt
        0xEB, 0xFD, // jmp back to hlt
        0x90,
    ];
    let mut s = [0u8; 512];
    s[..code.len()].copy_from_slice(&code);
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

/// What the BIOS race measured: the time from QEMU's start to the boot sector's `UFD` on COM1
/// under each accelerator (`None`: not within its limit, or KVM failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BiosRace {
    pub tcg: Option<Duration>,
    pub kvm: Option<Duration>,
}

impl BiosRace {
    /// The most KVM may take, given TCG's time.
    pub fn kvm_limit(tcg: Duration) -> Duration {
        tcg * KVM_SLOWDOWN_ALLOWED + KVM_SLACK
    }

    /// KVM when it booted the race disk within [`BiosRace::kvm_limit`] of TCG's time.
    pub fn choice(&self) -> Accel {
        match (self.tcg, self.kvm) {
            (Some(t), Some(k)) if k <= Self::kvm_limit(t) => Accel::Kvm,
            _ => Accel::Tcg,
        }
    }
}

/// Race a legacy BIOS under TCG and KVM (see the module docs). KVM runs only when `/dev/kvm`
/// opens; each leg is killed at its limit.
pub fn bios_race(firmware: &FirmwareSource) -> Result<BiosRace> {
    let dir = tempfile::Builder::new()
        .prefix("ufd-biosrace-")
        .tempdir()
        .map_err(|e| {
            crate::error::Error::io(Path::new("/tmp"), "create a temporary directory", e)
        })?;
    let disk = dir.path().join("race.img");
    // 1 MiB: SeaBIOS refuses to boot a disk of a single sector ("could not read the boot disk").
    std::fs::write(&disk, race_boot_sector())
        .and_then(|()| std::fs::OpenOptions::new().write(true).open(&disk))
        .and_then(|f| f.set_len(1 << 20))
        .map_err(|e| crate::error::Error::io(&disk, "write the race disk", e))?;
    let files = prepare(firmware, dir.path())?;
    let tcg = time_to_boot(dir.path(), &disk, &files, Accel::Tcg, BIOS_RACE_TCG_LIMIT)?;
    let kvm = match tcg {
        Some(t) if kvm_available() => time_to_boot(
            dir.path(),
            &disk,
            &files,
            Accel::Kvm,
            BiosRace::kvm_limit(t),
        )?,
        _ => None,
    };
    Ok(BiosRace { tcg, kvm })
}

/// Boot `disk` under `accel` and return how long the boot sector took to print `UFD` on COM1;
/// `None` when it did not within `limit`, QEMU exited, or KVM reported an internal error.
fn time_to_boot(
    dir: &Path,
    disk: &Path,
    files: &FirmwareFiles,
    accel: Accel,
    limit: Duration,
) -> Result<Option<Duration>> {
    let name = match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    let serial = dir.join(format!("serial-{name}.log"));
    let _ = std::fs::remove_file(&serial);
    let mut argv: Vec<String> = vec![
        "-nodefaults".into(),
        "-machine".into(),
        format!("q35,accel={name}"),
        "-cpu".into(),
        "qemu64".into(),
        "-m".into(),
        "128".into(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-serial".into(),
        format!("file:{}", serial.display()),
        "-drive".into(),
        format!("if=none,id=race,format=raw,file={}", disk.display()),
        "-device".into(),
        "ide-hd,drive=race,bus=ide.0".into(),
    ];
    argv.extend(files.argv());
    let mut q = Qemu::spawn(&argv, &dir.join(format!("stderr-{name}.log")))?;
    let start = Instant::now();
    loop {
        let out = std::fs::read(&serial).unwrap_or_default();
        if out.windows(3).any(|w| w == b"UFD") {
            let took = start.elapsed();
            q.kill();
            return Ok(Some(took));
        }
        if start.elapsed() >= limit
            || q.try_wait().is_some()
            || is_kvm_internal_error(&q.stderr_text())
        {
            q.kill();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_race_picks_kvm_only_when_it_keeps_up_with_tcg() {
        let ms = Duration::from_millis;
        let race = |tcg, kvm| BiosRace { tcg, kvm }.choice();
        // A KVM that runs the firmware natively: faster than TCG.
        assert_eq!(race(Some(ms(300)), Some(ms(150))), Accel::Kvm);
        // Within 4x + 500 ms.
        assert_eq!(race(Some(ms(90)), Some(ms(860))), Accel::Kvm);
        assert_eq!(race(Some(ms(90)), Some(ms(861))), Accel::Tcg);
        // kvm_pvm as measured here: ~30x slower.
        assert_eq!(race(Some(ms(90)), Some(ms(2750))), Accel::Tcg);
        // KVM failed, or the BIOS never booted the disk.
        assert_eq!(race(Some(ms(300)), None), Accel::Tcg);
        assert_eq!(race(None, None), Accel::Tcg);
    }

    #[test]
    fn nested_parameter_texts() {
        assert!(nested_enabled("Y\n"));
        assert!(nested_enabled("1\n"));
        assert!(!nested_enabled("N\n"));
        assert!(!nested_enabled("0"));
        assert!(!nested_enabled(""));
    }

    #[test]
    fn the_race_sector_is_bootable_and_prints_ufd() {
        let s = race_boot_sector();
        assert_eq!(&s[510..], &[0x55, 0xAA]);
        // The three bytes written to COM1, in order.
        let outs: Vec<u8> = s
            .windows(3)
            .filter(|w| w[0] == 0xB0 && w[2] == 0xEE)
            .map(|w| w[1])
            .collect();
        assert_eq!(outs, b"UFD");
    }
}
