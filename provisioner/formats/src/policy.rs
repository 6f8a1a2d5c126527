//! The seed's OEM rules, one set for every place that judges them: `ufd inspect` (images),
//! `ufd check-device` (sysfs), and the guest probe (firmware view). IDs and levels follow
//! `shared/design/policy-rules.md`; a verdict means the same thing wherever it is printed.
//!
//! The judges here take evidence that was already read (numbers, hive values, a parsed MBR)
//! and never do I/O. The USB and topology rules live in [`usb`] (facts in, outcome plus the
//! deciding fact out; `ufd check-device` and the guest probe word the evidence), the processor
//! rules in [`host`], the image rules (generalized, language packs) in [`image`]. Each verdict carries its evidence and where it was read. A rule that
//! cannot be judged in a setting is reported as [`Outcome::NotJudged`], never as passed.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

pub mod host;
pub mod image;
pub mod usb;

pub use host::CpuFacts;
pub use usb::{ControllerKind, UsbDeviceFacts};

/// How binding a rule is, in the seed's own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "kebab-case")
)]
pub enum Level {
    /// "must", "required", "may not".
    Requirement,
    /// "should", "we recommend".
    Recommendation,
    /// A step of the deployment procedure (what DiskPart/bootsect/bcdboot/reg produce).
    Procedure,
}

/// One rule of the seed.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub id: &'static str,
    pub level: Level,
    /// What the rule says, shortly.
    pub summary: &'static str,
}

macro_rules! rules {
    ($($konst:ident = $id:literal, $level:ident, $summary:literal;)*) => {
        $(pub const $konst: &str = $id;)*
        /// Every rule of the seed, in the order of `policy-rules.md`.
        pub const RULES: &[Rule] = &[$(Rule { id: $id, level: Level::$level, summary: $summary }),*];
    };
}

rules! {
    UFD_NONREMOVABLE = "UFD-NONREMOVABLE", Requirement, "UFD is internal and reports non-removable media (RMB = 0)";
    UFD_USB2 = "UFD-USB2", Requirement, "standard mass-storage device, USB 2.0 compatible";
    UFD_MSC_CLASS = "UFD-MSC-CLASS", Requirement, "interface class 08h (mass storage)";
    UFD_CAPACITY = "UFD-CAPACITY", Requirement, "at least 8 GB; 16 GB recommended";
    UFD_WEAR_RESERVE = "UFD-WEAR-RESERVE", Recommendation, "at least 25% of the UFD left free for wear levelling";
    UFD_ENDURANCE = "UFD-ENDURANCE", Recommendation, "flash survives 7-10 years of the OEM's write profile";
    UFD_LAYOUT = "UFD-LAYOUT", Procedure, "one primary NTFS partition spanning the UFD, marked active";
    UFD_BOOTCODE = "UFD-BOOTCODE", Procedure, "MBR and boot record are BOOTMGR-compatible (bootsect /nt60 /mbr)";
    UFD_BCD = "UFD-BCD", Procedure, "BCD store on the UFD whose default entry boots the VHD (bcdboot)";
    IMG_VHD_FIXED = "IMG-VHD-FIXED", Procedure, "the VHD is fixed-type with a valid footer";
    IMG_GENERALIZED = "IMG-GENERALIZED", Requirement, "the image is generalized (sysprep), not specialized";
    IMG_LANGPACKS = "IMG-LANGPACKS", Recommendation, "language packs that are not required are removed";
    IMG_PAGING_OFF = "IMG-PAGING-OFF", Requirement, "paging disabled: PagingFiles empty, ExistingPageFiles deleted";
    IMG_BOOT_DEVICE_WAIT = "IMG-BOOT-DEVICE-WAIT", Requirement, "PollBootPartitionTimeout lets the kernel wait for the UFD (30000 ms)";
    IMG_USB_BOOT_DRIVERS = "IMG-USB-BOOT-DRIVERS", Requirement, "USB drivers load during boot, not on demand";
    HOST_X64 = "HOST-X64", Requirement, "x64 processor";
    HOST_VT = "HOST-VT", Requirement, "hardware-assisted virtualization present and enabled";
    HOST_NX = "HOST-NX", Requirement, "hardware DEP (NX/XD) available and enabled";
    HOST_USB_BOOT = "HOST-USB-BOOT", Requirement, "firmware boots from the internal USB port";
    TOPO_DEDICATED_CONTROLLER = "TOPO-DEDICATED-CONTROLLER", Recommendation, "dedicated USB controller, else a dedicated root port";
    TOPO_NO_NESTED_HUB = "TOPO-NO-NESTED-HUB", Requirement, "the UFD is not behind a nested hub";
}

/// Look a rule up by ID.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// The result of judging one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "kebab-case")
)]
pub enum Outcome {
    Pass,
    /// A requirement is not met, or the procedure's result is missing or wrong.
    Fail,
    /// A recommendation is not met.
    Warn,
    /// The evidence is not available where this verdict was made.
    NotJudged,
}

/// A verdict: rule, outcome, the evidence, and where the evidence was read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Verdict {
    pub rule: &'static str,
    pub outcome: Outcome,
    pub evidence: String,
    pub source: String,
}

impl Verdict {
    pub fn new(
        rule: &'static str,
        outcome: Outcome,
        evidence: impl Into<String>,
        source: impl Into<String>,
    ) -> Self {
        Verdict {
            rule,
            outcome,
            evidence: evidence.into(),
            source: source.into(),
        }
    }
    /// The rule's level (all verdicts use IDs from [`RULES`]).
    pub fn level(&self) -> Option<Level> {
        rule(self.rule).map(|r| r.level)
    }
}

/// The exit code of `ufd inspect` and `ufd check-device` when a requirement fails.
pub const EXIT_REQUIREMENT_FAILED: u8 = 3;

/// 0, or [`EXIT_REQUIREMENT_FAILED`] when a requirement-level rule failed (`strict`: a
/// procedure step too).
pub fn exit_code(verdicts: &[Verdict], strict: bool) -> u8 {
    let bad = verdicts.iter().any(|v| {
        v.outcome == Outcome::Fail
            && match v.level() {
                Some(Level::Requirement) => true,
                Some(Level::Procedure) => strict,
                _ => false,
            }
    });
    if bad {
        EXIT_REQUIREMENT_FAILED
    } else {
        0
    }
}

/// PASS/FAIL/WARN/n/j as the verdict tables print them.
pub fn outcome_text(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "PASS",
        Outcome::Fail => "FAIL",
        Outcome::Warn => "WARN",
        Outcome::NotJudged => "n/j ",
    }
}

/// The verdict table `ufd inspect` and `ufd check-device` print: a header, one line per verdict
/// (outcome, rule ID, level, evidence, source), the counts, and the failed requirements.
pub fn render_verdicts(verdicts: &[Verdict]) -> String {
    use core::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "policy verdicts (rule IDs: shared/design/policy-rules.md)"
    );
    for v in verdicts {
        let level = match v.level() {
            Some(Level::Requirement) => "requirement",
            Some(Level::Recommendation) => "recommendation",
            Some(Level::Procedure) => "procedure",
            None => "?",
        };
        let _ = writeln!(
            s,
            "  {}  {:<26} {:<14} {}  [{}]",
            outcome_text(v.outcome),
            v.rule,
            level,
            v.evidence,
            v.source
        );
    }
    let count = |o| verdicts.iter().filter(|v| v.outcome == o).count();
    let _ = writeln!(
        s,
        "summary: {} pass, {} warn, {} fail, {} not judged here",
        count(Outcome::Pass),
        count(Outcome::Warn),
        count(Outcome::Fail),
        count(Outcome::NotJudged)
    );
    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|v| v.outcome == Outcome::Fail && v.level() == Some(Level::Requirement))
        .map(|v| v.rule)
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "requirements not met: {}", failed.join(", "));
    }
    s
}

/// Decimal gigabyte: flash vendors (and the seed's "8 gigabyte"/"16 GB") count in 10^9 bytes.
pub const GB: u64 = 1_000_000_000;

/// UFD-CAPACITY. Below 8 GB fails the requirement; 8 GB up to 16 GB misses the recommendation.
/// The seed contradicts itself ("must be at least 16 GB" in Prerequisites): `strict` makes 16 GB a
/// requirement. Sticks sold as "16 GB" often hold a little less than 16 x 10^9 bytes; they are
/// reported as a recommendation miss with the exact byte count, not rounded up.
pub fn judge_capacity(bytes: u64, strict: bool, source: &str) -> Verdict {
    let shown = format!(
        "{bytes} bytes ({}.{:02} GB)",
        bytes / GB,
        (bytes % GB) / (GB / 100)
    );
    let outcome = if bytes < 8 * GB {
        Outcome::Fail
    } else if bytes < 16 * GB {
        if strict {
            Outcome::Fail
        } else {
            Outcome::Warn
        }
    } else {
        Outcome::Pass
    };
    let evidence = match outcome {
        Outcome::Fail if bytes < 8 * GB => format!("{shown}: below the 8 GB minimum"),
        Outcome::Fail => {
            format!("{shown}: below 16 GB (strict mode: the Prerequisites' \"at least 16 GB\")")
        }
        Outcome::Warn => format!("{shown}: at least 8 GB but below the recommended 16 GB"),
        _ => format!("{shown}: at least 16 GB"),
    };
    Verdict::new(UFD_CAPACITY, outcome, evidence, source)
}

/// UFD-WEAR-RESERVE: the VHD may use at most 75% of the UFD (12 GB VHD on a 16 GB stick).
pub fn judge_wear_reserve(vhd_bytes: u64, ufd_bytes: u64, source: &str) -> Verdict {
    if ufd_bytes == 0 {
        return Verdict::new(
            UFD_WEAR_RESERVE,
            Outcome::Fail,
            "UFD capacity is 0 bytes",
            source,
        );
    }
    // free share in basis points, without floating point (no_std) and without overflow
    let used_bp = (u128::from(vhd_bytes) * 10_000 / u128::from(ufd_bytes)) as u64;
    let free_bp = 10_000u64.saturating_sub(used_bp);
    let evidence = format!(
        "VHD {vhd_bytes} bytes on a {ufd_bytes}-byte UFD: {}.{:02}% left free (25% recommended)",
        free_bp / 100,
        free_bp % 100
    );
    // Exact test (the percentage above is rounded down for display): vhd <= 75% of the UFD.
    let outcome = if u128::from(vhd_bytes) * 4 <= u128::from(ufd_bytes) * 3 {
        Outcome::Pass
    } else {
        Outcome::Warn
    };
    Verdict::new(UFD_WEAR_RESERVE, outcome, evidence, source)
}

/// IMG-PAGING-OFF from the two values of `Control\Session Manager\Memory Management` in the
/// control set that boots. `paging_files` is the REG_MULTI_SZ data (None = value absent);
/// `existing_present` says whether `ExistingPageFiles` exists.
///
/// "Empty" means the list holds no non-empty string: zero bytes, a lone NUL, or `""` + NUL
/// (what `reg add ... /t REG_MULTI_SZ /d ""` leaves) all mean no page file (WES7 PagingFiles doc).
pub fn judge_paging(
    paging_files: Option<&[u8]>,
    existing_present: bool,
    control_set: &str,
    source: &str,
) -> Verdict {
    let entries: Vec<String> = match paging_files {
        Some(data) => multi_sz_strings(data),
        None => Vec::new(),
    };
    let mut problems = Vec::new();
    if paging_files.is_none() {
        problems.push(String::from(
            "PagingFiles is absent (Windows then uses its default page file)",
        ));
    } else if !entries.is_empty() {
        problems.push(format!("PagingFiles = {entries:?}"));
    }
    if existing_present {
        problems.push(String::from("ExistingPageFiles is present"));
    }
    if problems.is_empty() {
        Verdict::new(
            IMG_PAGING_OFF,
            Outcome::Pass,
            format!("{control_set}: PagingFiles empty, ExistingPageFiles absent"),
            source,
        )
    } else {
        Verdict::new(
            IMG_PAGING_OFF,
            Outcome::Fail,
            format!("{control_set}: {}", problems.join("; ")),
            source,
        )
    }
}

/// Non-empty strings of REG_MULTI_SZ data (UTF-16LE, NUL-separated).
pub fn multi_sz_strings(data: &[u8]) -> Vec<String> {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    units
        .split(|&u| u == 0)
        .filter(|s| !s.is_empty())
        .map(|s| {
            char::decode_utf16(s.iter().copied())
                .map(|r| r.unwrap_or('\u{fffd}'))
                .collect()
        })
        .collect()
}

/// IMG-LANGPACKS: whether a folder name is a Windows language tag (RFC 5646 as Windows
/// spells its resource folders: `ll-CC`, `lll-CC`, or `ll-Ssss-CC` such as `sr-Latn-CS`).
/// The provisioner removes such folders and `inspect` reports them, so both must agree.
pub fn is_language_tag(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    let lang = |s: &str| (2..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase());
    let region = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase());
    let script = |s: &str| {
        s.len() == 4
            && s.as_bytes()[0].is_ascii_uppercase()
            && s.bytes().skip(1).all(|b| b.is_ascii_lowercase())
    };
    match parts.as_slice() {
        [l, r] => lang(l) && region(r),
        [l, s, r] => lang(l) && script(s) && region(r),
        _ => false,
    }
}

/// The value Hyper-V Server 2008 R2 ships for `Control\PnP\PollBootPartitionTimeout` (seed,
/// "Additional Information").
pub const HYPERV_POLL_BOOT_PARTITION_TIMEOUT_MS: u32 = 30_000;

/// How the kernel treats PollBootPartitionTimeout, as far as it is known: a public disassembly of
/// `nt!PnpBootDeviceWait` (Windows 10/11 x64; the Windows 7 code is not verified) shows values
/// below 200 ms mean no wait, values above 180000 ms are clamped, and an absent value means no
/// wait at all. Returns the effective wait in milliseconds.
pub fn effective_boot_device_wait_ms(value: Option<u32>) -> u32 {
    match value {
        None => 0,
        Some(v) if v < 200 => 0,
        Some(v) => v.min(180_000),
    }
}

/// IMG-BOOT-DEVICE-WAIT from `Control\PnP\PollBootPartitionTimeout` (REG_DWORD, ms).
pub fn judge_boot_device_wait(value: Option<u32>, control_set: &str, source: &str) -> Verdict {
    let eff = effective_boot_device_wait_ms(value);
    let (outcome, evidence) = match value {
        None => (
            Outcome::Fail,
            format!("{control_set}\\Control\\PnP\\PollBootPartitionTimeout is absent: the kernel does not wait for a late boot device"),
        ),
        Some(v) if eff < HYPERV_POLL_BOOT_PARTITION_TIMEOUT_MS => (
            Outcome::Fail,
            format!("PollBootPartitionTimeout = {v} ms (effective wait {eff} ms), below the {HYPERV_POLL_BOOT_PARTITION_TIMEOUT_MS} ms Hyper-V Server ships"),
        ),
        Some(v) if v > 180_000 => (Outcome::Pass, format!("PollBootPartitionTimeout = {v} ms (the kernel clamps it to 180000 ms)")),
        Some(v) => (Outcome::Pass, format!("PollBootPartitionTimeout = {v} ms")),
    };
    Verdict::new(IMG_BOOT_DEVICE_WAIT, outcome, evidence, source)
}

/// `CM_SERVICE_USB_DISK_BOOT_LOAD`: with this bit in `Control\BootDriverFlags`, winload loads
/// services whose `BootFlags` carry it as boot drivers (windows-driver-docs, INF AddService).
pub const CM_SERVICE_USB_DISK_BOOT_LOAD: u32 = 0x4;

/// IMG-USB-BOOT-DRIVERS from `Control\BootDriverFlags` and the start types of the USB boot-path
/// services (`usbehci`, `usbuhci`, `usbohci`, `usbhub`, `usbstor`, ...; Start 0 = boot).
/// Passes when BootDriverFlags has the USB bit, or when every listed service starts at boot.
pub fn judge_usb_boot_drivers(
    boot_driver_flags: Option<u32>,
    services: &[(&str, Option<u32>)],
    source: &str,
) -> Verdict {
    let flags = boot_driver_flags.map_or(String::from("absent"), |f| format!("{f:#x}"));
    let starts: Vec<String> = services
        .iter()
        .map(|(name, start)| match start {
            Some(s) => format!("{name} Start={s}"),
            None => format!("{name} absent"),
        })
        .collect();
    let evidence = format!("BootDriverFlags {flags}; {}", starts.join(", "));
    let usb_flag = boot_driver_flags.is_some_and(|f| f & CM_SERVICE_USB_DISK_BOOT_LOAD != 0);
    let all_boot_start = !services.is_empty() && services.iter().all(|(_, s)| *s == Some(0));
    let outcome = if usb_flag || all_boot_start {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    Verdict::new(IMG_USB_BOOT_DRIVERS, outcome, evidence, source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn every_rule_of_the_design_document_is_listed_once() {
        assert_eq!(RULES.len(), 21);
        for (i, r) in RULES.iter().enumerate() {
            assert!(
                RULES[i + 1..].iter().all(|o| o.id != r.id),
                "duplicate {}",
                r.id
            );
        }
        assert_eq!(
            rule("UFD-WEAR-RESERVE").unwrap().level,
            Level::Recommendation
        );
        assert_eq!(
            rule("TOPO-NO-NESTED-HUB").unwrap().level,
            Level::Requirement
        );
        assert!(rule("NOPE").is_none());
    }

    #[rstest]
    #[case(4 * GB, false, Outcome::Fail)]
    #[case(8 * GB - 1, false, Outcome::Fail)]
    #[case(8 * GB, false, Outcome::Warn)]
    #[case(15_518_924_800, false, Outcome::Warn)]
    #[case(15_518_924_800, true, Outcome::Fail)]
    #[case(16 * GB, false, Outcome::Pass)]
    #[case(64 * GB, true, Outcome::Pass)]
    fn capacity(#[case] bytes: u64, #[case] strict: bool, #[case] expected: Outcome) {
        let v = judge_capacity(bytes, strict, "test");
        assert_eq!(v.outcome, expected, "{}", v.evidence);
        assert!(v.evidence.contains(&format!("{bytes} bytes")));
    }

    #[rstest]
    #[case(12 * 1024 * 1024 * 1024, 16 * GB, Outcome::Warn)] // 12 GiB on 16 GB: 19.47% free
    #[case(12 * GB, 16 * GB, Outcome::Pass)] // exactly 25%
    #[case(12 * GB + 1, 16 * GB, Outcome::Warn)]
    #[case(1, 0, Outcome::Fail)]
    #[case(u64::MAX, u64::MAX, Outcome::Warn)]
    fn wear_reserve(#[case] vhd: u64, #[case] ufd: u64, #[case] expected: Outcome) {
        assert_eq!(judge_wear_reserve(vhd, ufd, "test").outcome, expected);
    }

    fn msz(items: &[&str]) -> Vec<u8> {
        let mut v: Vec<u8> = Vec::new();
        for s in items {
            v.extend(s.encode_utf16().chain([0]).flat_map(u16::to_le_bytes));
        }
        v.extend([0, 0]);
        v
    }

    #[test]
    fn paging() {
        assert_eq!(
            judge_paging(Some(&[]), false, "ControlSet001", "t").outcome,
            Outcome::Pass
        );
        assert_eq!(
            judge_paging(Some(&msz(&[])), false, "ControlSet001", "t").outcome,
            Outcome::Pass
        );
        assert_eq!(
            judge_paging(Some(&msz(&[""])), false, "ControlSet001", "t").outcome,
            Outcome::Pass
        );
        let v = judge_paging(
            Some(&msz(&["?:\\pagefile.sys"])),
            true,
            "ControlSet001",
            "t",
        );
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(
            v.evidence.contains("?:\\\\pagefile.sys") && v.evidence.contains("ExistingPageFiles"),
            "{}",
            v.evidence
        );
        assert_eq!(
            judge_paging(None, false, "ControlSet001", "t").outcome,
            Outcome::Fail
        );
        assert_eq!(
            judge_paging(Some(&msz(&[])), true, "ControlSet001", "t").outcome,
            Outcome::Fail
        );
    }

    #[rstest]
    #[case(None, 0, Outcome::Fail)]
    #[case(Some(0), 0, Outcome::Fail)]
    #[case(Some(199), 0, Outcome::Fail)]
    #[case(Some(200), 200, Outcome::Fail)]
    #[case(Some(30_000), 30_000, Outcome::Pass)]
    #[case(Some(500_000), 180_000, Outcome::Pass)]
    fn boot_device_wait(
        #[case] value: Option<u32>,
        #[case] effective: u32,
        #[case] expected: Outcome,
    ) {
        assert_eq!(effective_boot_device_wait_ms(value), effective);
        assert_eq!(
            judge_boot_device_wait(value, "ControlSet001", "t").outcome,
            expected
        );
    }

    #[test]
    fn usb_boot_drivers() {
        let svcs = [("usbehci", Some(3)), ("usbstor", Some(3))];
        assert_eq!(
            judge_usb_boot_drivers(Some(4), &svcs, "t").outcome,
            Outcome::Pass
        );
        assert_eq!(
            judge_usb_boot_drivers(Some(0), &svcs, "t").outcome,
            Outcome::Fail
        );
        assert_eq!(
            judge_usb_boot_drivers(None, &[("usbehci", Some(0)), ("usbstor", Some(0))], "t")
                .outcome,
            Outcome::Pass
        );
        let v = judge_usb_boot_drivers(None, &[("usbehci", Some(0)), ("usbstor", None)], "t");
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(v.evidence.contains("usbstor absent"));
    }
}
