//! The report both guest stand-ins print — the UEFI probe (`vm-images/probe`) and the BIOS
//! stand-in for `\bootmgr` (`vm-images/bios-probe`) — assembled here once, so that the two
//! firmware paths cannot disagree on what a verdict list, a refusal, the kernel hand-off or the
//! final `done` record look like. Each probe gathers its firmware's facts (BlockIo/UsbIo, or
//! INT 13h/EDD) and its own I/O; everything after the walk is these functions.
//!
//! Lines are JSON objects (see [`crate::json`]), printed by the probes after [`PREFIX`]. The
//! functions returning [`Obj`] leave the object open so a probe can append firmware-specific
//! fields before `finish()`; the UEFI probe appends none.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use ufd_formats::policy::{self, Outcome, Verdict};

use crate::guest::{self, CpuFacts};
use crate::json::Obj;
use crate::walk::{BootPath, Status};

/// Every report line starts with this.
pub const PREFIX: &str = "UFDPROBE ";

/// `done` outcome: the kernel found its boot disk.
pub const OUTCOME_BOOTS: &str = "boots";
/// `done` outcome: the kernel's boot-device wait ran out (STOP 0x7B).
pub const OUTCOME_BUGCHECK_7B: &str = "bugcheck 0x7B";
/// `done` outcome: the boot manager or winload stopped at a failed hop.
pub const OUTCOME_REFUSED: &str = "refused";

/// Where the wait comes from when the hive has no PollBootPartitionTimeout.
pub const DEFAULT_WAIT_SOURCE: &str = "PollBootPartitionTimeout absent: ufd_formats::policy::effective_boot_device_wait_ms (nt!PnpBootDeviceWait, Windows 10/11 disassembly; Windows 7 unverified) = no wait";

/// The processor facts from CPUID results (`cpuid(leaf)` → `[eax, ebx, ecx, edx]` of subleaf
/// 0) and, when the probe read it, IA32_EFER. Leaf 0 vendor, leaf 1 ECX.VMX (bit 5) and
/// ECX.hypervisor (bit 31), leaf 0x40000000 hypervisor vendor, leaf 0x80000001 EDX.LM
/// (bit 29), EDX.NX (bit 20), ECX.SVM (bit 2). FEATURE_CONTROL / VM_CR are not read (a #GP
/// under a hypervisor without them would kill the probe).
pub fn cpu_facts(cpuid: &dyn Fn(u32) -> [u32; 4], efer: Option<u64>) -> CpuFacts {
    let text = |regs: &[u32]| -> String {
        regs.iter()
            .flat_map(|r| r.to_le_bytes())
            .filter(|b| *b != 0)
            .map(char::from)
            .collect()
    };
    let l0 = cpuid(0);
    let l1 = cpuid(1);
    let max_ext = cpuid(0x8000_0000)[0];
    let e1 = if max_ext >= 0x8000_0001 {
        cpuid(0x8000_0001)
    } else {
        l0
    };
    let hv = l1[2] & (1 << 31) != 0;
    let hypervisor = hv.then(|| {
        let h = cpuid(0x4000_0000);
        text(&[h[1], h[2], h[3]])
    });
    CpuFacts {
        long_mode: max_ext >= 0x8000_0001 && e1[3] & (1 << 29) != 0,
        nx: max_ext >= 0x8000_0001 && e1[3] & (1 << 20) != 0,
        efer_nxe: efer.map(|e| e & (1 << 11) != 0),
        vmx: l1[2] & (1 << 5) != 0,
        svm: max_ext >= 0x8000_0001 && e1[2] & (1 << 2) != 0,
        feature_control: None,
        vm_cr: None,
        vendor: text(&[l0[1], l0[3], l0[2]]),
        hypervisor,
    }
}

/// The CPU fields of the `platform` record, appended to `o`.
pub fn platform_cpu(o: Obj, c: &CpuFacts) -> Obj {
    o.str("cpu_vendor", &c.vendor)
        .opt_str("hypervisor", c.hypervisor.as_deref())
        .bool("long_mode", c.long_mode)
        .bool("nx", c.nx)
        .bool("efer_nxe", c.efer_nxe.unwrap_or(false))
        .bool("vmx", c.vmx)
        .bool("svm", c.svm)
}

/// HOST-X64, HOST-NX, HOST-VT from the CPU facts; `src` names the probe (`guest UEFI`).
pub fn cpu_verdicts(c: &CpuFacts, src: &str) -> [Verdict; 3] {
    let nx_src = if c.efer_nxe.is_some() {
        format!("{src} CPUID + EFER")
    } else {
        format!("{src} CPUID")
    };
    [
        guest::judge_x64(c, &format!("{src} CPUID")),
        guest::judge_nx(c, &nx_src),
        guest::judge_vt(c, &format!("{src} CPUID (FEATURE_CONTROL/VM_CR not read)")),
    ]
}

/// The probe's device and CPU verdicts plus the walk's image verdicts, in `policy::RULES`
/// order (the order of the rules table; a stable sort keeps equal keys as given).
pub fn all_verdicts(mut device: Vec<Verdict>, path: &BootPath) -> Vec<Verdict> {
    device.extend(path.verdicts.iter().cloned());
    device.sort_by_key(|v| policy::RULES.iter().position(|r| r.id == v.rule));
    device
}

/// Whether the boot manager and winload get to the kernel: `Ok(signature)` of the disk the
/// loader names when every hop passed, else `Err((hop, evidence))` of the first failed hop
/// (boot manager and winload stop there with an error screen; a sparse VHD is refused too).
pub fn kernel_or_refusal(path: &BootPath) -> Result<u32, (&'static str, String)> {
    let failed = path.hops.iter().find(|h| h.status == Status::Fail);
    match (failed, path.loader_disk_signature) {
        (None, Some(sig)) => Ok(sig),
        (f, _) => Err(f.map_or(
            ("loader-device", "no boot disk signature".to_string()),
            |h| (h.step, h.evidence.clone()),
        )),
    }
}

/// `{"event":"refused","hop":..,"evidence":..}`
pub fn refused_line(hop: &str, evidence: &str) -> String {
    Obj::new()
        .str("event", "refused")
        .str("hop", hop)
        .str("evidence", evidence)
        .finish()
}

/// The kernel's boot-device wait the SYSTEM hive makes effective.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelWait {
    /// PollBootPartitionTimeout as `policy::effective_boot_device_wait_ms` makes it effective.
    pub wait_ms: u32,
    /// Where the value comes from.
    pub source: String,
}

/// PollBootPartitionTimeout from the walk's SYSTEM values (absent → no wait; < 200 → none;
/// > 180000 → clamped: the public nt!PnpBootDeviceWait disassembly, Windows 7 unverified).
pub fn kernel_wait(path: &BootPath) -> KernelWait {
    let value = path
        .system
        .as_ref()
        .and_then(|s| s.poll_boot_partition_timeout);
    let wait = policy::effective_boot_device_wait_ms(value);
    let source = match value {
        Some(v) => format!(
            "SYSTEM {}\\Control\\PnP\\PollBootPartitionTimeout = {v} ms (effective {wait} ms)",
            path.system.as_ref().map_or("", |s| s.control_set.as_str())
        ),
        None => DEFAULT_WAIT_SOURCE.to_string(),
    };
    KernelWait {
        wait_ms: wait,
        source,
    }
}

/// `{"event":"handoff","to":"kernel",...}` — the record the harness unplugs the stick on.
pub fn handoff_kernel(sig: u32, wait: &KernelWait, settle_ms: u64) -> Obj {
    Obj::new()
        .str("event", "handoff")
        .str("to", "kernel")
        .str("wait_for_signature", &format!("{sig:#010x}"))
        .num("timeout_ms", wait.wait_ms)
        .str("timeout_source", &wait.source)
        .num("settle_ms", settle_ms)
}

/// `{"event":"kernel","phase":"surfaced",...}`: the boot disk was found `after` ms into the
/// wait, at `path` (firmware device path or drive number).
pub fn kernel_surfaced(after: u64, path: &str) -> Obj {
    Obj::new()
        .str("event", "kernel")
        .str("phase", "surfaced")
        .num("after_ms", after)
        .str("text", &format!("surfaced after {after} ms"))
        .str("path", path)
}

/// `{"event":"kernel","phase":"stop","code":"0x0000007B",...}` after `elapsed` ms of waiting.
pub fn kernel_stop(elapsed: u64) -> Obj {
    Obj::new()
        .str("event", "kernel")
        .str("phase", "stop")
        .str("code", "0x0000007B")
        .str(
            "text",
            &format!("STOP 0x0000007B INACCESSIBLE_BOOT_DEVICE after {elapsed} ms"),
        )
        .num("after_ms", elapsed)
}

/// The final `done` record: outcome, hop and verdict counts, timings.
pub fn done_line(
    outcome: &str,
    path: &BootPath,
    verdicts: &[Verdict],
    walk_ms: u64,
    total_ms: u64,
) -> String {
    let count = |o: Outcome| verdicts.iter().filter(|v| v.outcome == o).count() as u64;
    Obj::new()
        .str("event", "done")
        .str("outcome", outcome)
        .num(
            "hops_ok",
            path.hops.iter().filter(|h| h.status == Status::Ok).count() as u64,
        )
        .num("hops", path.hops.len() as u64)
        .num("pass", count(Outcome::Pass))
        .num("fail", count(Outcome::Fail))
        .num("warn", count(Outcome::Warn))
        .num("not_judged", count(Outcome::NotJudged))
        .num("walk_ms", walk_ms)
        .num("total_ms", total_ms)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::Hop;

    fn qemu64(leaf: u32) -> [u32; 4] {
        match leaf {
            0 => [0xD, 0x6874_7541, 0x444D_4163, 0x6974_6E65], // "AuthenticAMD"
            1 => [0x663, 0, 0x8000_0000 | (1 << 5), 0],
            0x4000_0000 => [0x4000_0001, 0x4D56_4B54, 0x564B_4D56, 0x0000_004D], // some hypervisor vendor
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0001 => [0, 0, 1 << 2, (1 << 29) | (1 << 20)],
            _ => [0; 4],
        }
    }

    #[test]
    fn cpu_facts_decode_cpuid() {
        let c = cpu_facts(&qemu64, Some(1 << 11));
        assert!(c.long_mode && c.nx && c.vmx && c.svm);
        assert_eq!(c.efer_nxe, Some(true));
        assert_eq!(c.vendor, "AuthenticAMD");
        assert!(c.hypervisor.is_some());
        let v = cpu_verdicts(&c, "guest BIOS");
        assert!(v.iter().all(|v| v.outcome == Outcome::Pass));
        assert_eq!(v[1].source, "guest BIOS CPUID + EFER");
        let none = cpu_facts(&|_| [0; 4], None);
        assert!(!none.long_mode && !none.nx && none.hypervisor.is_none());
        assert_eq!(cpu_verdicts(&none, "g")[1].source, "g CPUID");
    }

    #[test]
    fn refusal_names_the_first_failed_hop() {
        let mut p = BootPath::default();
        assert_eq!(
            kernel_or_refusal(&p),
            Err(("loader-device", "no boot disk signature".to_string()))
        );
        p.loader_disk_signature = Some(0x5EAB_1005);
        assert_eq!(kernel_or_refusal(&p), Ok(0x5EAB_1005));
        p.hops.push(Hop {
            step: "vhd-file",
            status: Status::Fail,
            evidence: "gone".into(),
        });
        assert_eq!(kernel_or_refusal(&p), Err(("vhd-file", "gone".to_string())));
        assert_eq!(
            refused_line("vhd-file", "gone"),
            r#"{"event":"refused","hop":"vhd-file","evidence":"gone"}"#
        );
    }

    #[test]
    fn verdicts_follow_the_rules_table_and_done_counts_them() {
        let p = BootPath::default();
        let v = all_verdicts(
            alloc::vec![
                Verdict::new(policy::HOST_VT, Outcome::Pass, "e", "s"),
                Verdict::new(policy::UFD_NONREMOVABLE, Outcome::NotJudged, "e", "s"),
            ],
            &p,
        );
        let pos = |id: &str| policy::RULES.iter().position(|r| r.id == id);
        assert!(pos(v[0].rule) <= pos(v[1].rule));
        let d = done_line(OUTCOME_BOOTS, &p, &v, 1, 2);
        assert!(d.contains(r#""outcome":"boots""#) && d.contains(r#""pass":1"#));
        assert!(d.contains(r#""not_judged":1"#));
    }

    #[test]
    fn kernel_wait_and_lines() {
        let p = BootPath::default();
        let w = kernel_wait(&p);
        assert_eq!(w.wait_ms, 0);
        assert_eq!(w.source, DEFAULT_WAIT_SOURCE);
        let h = handoff_kernel(0x1234, &w, 1500).finish();
        assert!(
            h.starts_with(r#"{"event":"handoff","to":"kernel","wait_for_signature":"0x00001234""#)
        );
        assert!(kernel_stop(7)
            .finish()
            .contains("INACCESSIBLE_BOOT_DEVICE after 7 ms"));
        assert!(kernel_surfaced(3, "x")
            .finish()
            .contains(r#""text":"surfaced after 3 ms""#));
    }
}
