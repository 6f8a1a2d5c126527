//! The processor rules — HOST-X64, HOST-NX, HOST-VT — judged from CPUID and the MSRs a
//! firmware-side program read (the UEFI probe and the BIOS stand-in, through
//! `ufd_bootpath::report::cpu_facts`). Only a program running on the server can collect these
//! facts, so the evidence is worded in CPUID/MSR terms here; `source` names the reader.
//!
//! Bits (Intel SDM: the CPUID instruction reference and the IA32_FEATURE_CONTROL MSR 3Ah;
//! AMD APM Vol. 2, Secure Virtual Machine: the VM_CR MSR C001_0114h): CPUID leaf 1 ECX.VMX
//! bit 5, leaf 80000001h EDX.LM bit 29, EDX.NX/XD bit 20, ECX.SVM bit 2; FEATURE_CONTROL bit 0
//! lock, bit 2 VMX outside SMX; VM_CR bit 4 SVMDIS; EFER.NXE bit 11. Moved unchanged from
//! `ufd_bootpath::guest`, so the probes' evidence strings are the same bytes.

use alloc::format;
use alloc::string::String;

use super::{Outcome, Verdict};

/// What the processor reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuFacts {
    /// CPUID 0x80000001 EDX bit 29.
    pub long_mode: bool,
    /// CPUID 0x80000001 EDX bit 20 (NX/XD).
    pub nx: bool,
    /// EFER.NXE (bit 11) as the firmware left it, if read.
    pub efer_nxe: Option<bool>,
    /// CPUID 1 ECX bit 5 (Intel VT-x).
    pub vmx: bool,
    /// CPUID 0x80000001 ECX bit 2 (AMD-V).
    pub svm: bool,
    /// IA32_FEATURE_CONTROL (MSR 0x3A), if read: bit 0 lock, bit 2 VMX outside SMX.
    pub feature_control: Option<u64>,
    /// AMD VM_CR (MSR 0xC0010114), if read: bit 4 SVMDIS.
    pub vm_cr: Option<u64>,
    /// CPUID 0 vendor string.
    pub vendor: String,
    /// CPUID 0x40000000 hypervisor vendor, when running under one.
    pub hypervisor: Option<String>,
}

/// HOST-X64: long mode.
pub fn judge_x64(c: &CpuFacts, source: &str) -> Verdict {
    let outcome = if c.long_mode {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    Verdict::new(
        super::HOST_X64,
        outcome,
        format!("CPUID 80000001h EDX.LM = {}", u8::from(c.long_mode)),
        source,
    )
}

/// HOST-NX: NX available; when EFER was read, whether the firmware enabled it is quoted (a
/// UEFI firmware that leaves NXE clear still lets Windows enable it, so only availability fails).
pub fn judge_nx(c: &CpuFacts, source: &str) -> Verdict {
    let nxe = c
        .efer_nxe
        .map_or(String::new(), |e| format!(", EFER.NXE = {}", u8::from(e)));
    let outcome = if c.nx { Outcome::Pass } else { Outcome::Fail };
    Verdict::new(
        super::HOST_NX,
        outcome,
        format!("CPUID 80000001h EDX.NX = {}{nxe}", u8::from(c.nx)),
        source,
    )
}

/// HOST-VT: VMX or SVM present, and not locked off by the firmware where the MSR was read
/// (Intel: FEATURE_CONTROL locked with VMX-outside-SMX clear; AMD: VM_CR.SVMDIS set).
pub fn judge_vt(c: &CpuFacts, source: &str) -> Verdict {
    let mut ev = format!("CPUID VMX = {}, SVM = {}", u8::from(c.vmx), u8::from(c.svm));
    if let Some(fc) = c.feature_control {
        ev.push_str(&format!(", IA32_FEATURE_CONTROL = {fc:#x}"));
    }
    if let Some(vc) = c.vm_cr {
        ev.push_str(&format!(", VM_CR = {vc:#x}"));
    }
    if let Some(h) = &c.hypervisor {
        ev.push_str(&format!(", under hypervisor {h:?}"));
    }
    let intel_off = c.vmx && c.feature_control.is_some_and(|f| f & 1 != 0 && f & 4 == 0);
    let amd_off = c.svm && c.vm_cr.is_some_and(|v| v & 0x10 != 0);
    let outcome = if !(c.vmx || c.svm) {
        ev.push_str(": no hardware virtualization");
        Outcome::Fail
    } else if (intel_off || !c.vmx) && (amd_off || !c.svm) {
        ev.push_str(": disabled by firmware");
        Outcome::Fail
    } else {
        Outcome::Pass
    };
    Verdict::new(super::HOST_VT, outcome, ev, source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(false, false, None, None, Outcome::Fail)]
    #[case(false, true, None, None, Outcome::Pass)]
    #[case(false, true, None, Some(0x10), Outcome::Fail)]
    #[case(true, false, Some(0x1), None, Outcome::Fail)]
    #[case(true, false, Some(0x5), None, Outcome::Pass)]
    #[case(true, false, None, None, Outcome::Pass)]
    #[case(true, true, Some(0x1), Some(0x10), Outcome::Fail)]
    #[case(true, true, Some(0x1), Some(0x0), Outcome::Pass)]
    fn vt(
        #[case] vmx: bool,
        #[case] svm: bool,
        #[case] fc: Option<u64>,
        #[case] vmcr: Option<u64>,
        #[case] o: Outcome,
    ) {
        let c = CpuFacts {
            vmx,
            svm,
            feature_control: fc,
            vm_cr: vmcr,
            ..CpuFacts::default()
        };
        let v = judge_vt(&c, "t");
        assert_eq!(v.outcome, o, "{}", v.evidence);
        assert_eq!(v.rule, crate::policy::HOST_VT);
    }

    #[rstest]
    #[case(true, Outcome::Pass, "CPUID 80000001h EDX.LM = 1")]
    #[case(false, Outcome::Fail, "CPUID 80000001h EDX.LM = 0")]
    fn x64_judged(#[case] lm: bool, #[case] o: Outcome, #[case] ev: &str) {
        let c = CpuFacts {
            long_mode: lm,
            ..CpuFacts::default()
        };
        let v = judge_x64(&c, "t");
        assert_eq!((v.outcome, v.evidence.as_str()), (o, ev));
    }

    #[rstest]
    #[case(true, None, Outcome::Pass, "CPUID 80000001h EDX.NX = 1")]
    #[case(
        true,
        Some(false),
        Outcome::Pass,
        "CPUID 80000001h EDX.NX = 1, EFER.NXE = 0"
    )]
    #[case(
        false,
        Some(false),
        Outcome::Fail,
        "CPUID 80000001h EDX.NX = 0, EFER.NXE = 0"
    )]
    #[case(
        true,
        Some(true),
        Outcome::Pass,
        "CPUID 80000001h EDX.NX = 1, EFER.NXE = 1"
    )]
    fn nx_judged(
        #[case] nx: bool,
        #[case] nxe: Option<bool>,
        #[case] o: Outcome,
        #[case] ev: &str,
    ) {
        let c = CpuFacts {
            nx,
            efer_nxe: nxe,
            ..CpuFacts::default()
        };
        let v = judge_nx(&c, "t");
        assert_eq!((v.outcome, v.evidence.as_str()), (o, ev));
    }

    #[test]
    fn vt_evidence_quotes_msrs_and_hypervisor() {
        let c = CpuFacts {
            vmx: true,
            feature_control: Some(1),
            hypervisor: Some("KVMKVMKVM".into()),
            ..CpuFacts::default()
        };
        assert_eq!(
            judge_vt(&c, "t").evidence,
            "CPUID VMX = 1, SVM = 0, IA32_FEATURE_CONTROL = 0x1, under hypervisor \"KVMKVMKVM\": disabled by firmware"
        );
    }
}
