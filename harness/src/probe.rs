//! The guest probe's output protocol, parsed generically.
//!
//! The probe (`vm-images/probe`, records built by `ufd_bootpath::json`) prints one JSON object
//! per line, prefixed `UFDPROBE `, on ConOut/COM1 and on the debugcon port 0xE9. Lines are kept
//! as [`serde_json::Value`]; typed *views* read the fields the harness needs and ignore
//! everything else, so the probe can add fields freely:
//!
//! * hand-off — `{"event":"kernel","phase":"handoff", ...}` (the probe's form) or
//!   `{"event":"handoff", ...}`: the harness starts a late-surfacing unplug/replug here
//!   ([`is_handoff`]).
//! * `{"event":"hop","hop":"winload","status":"ok|fail|not-reached", ...}` — one hop of the boot
//!   path (`ufd_bootpath::walk::HOPS`; `step`/`name` are accepted for `hop`).
//! * `{"event":"verdict","rule":"HOST-NX","outcome":"pass", ...}` — a policy verdict
//!   (`verdict`/`status` accepted for `outcome`; `pass`, `fail`, `warn`, `not-judged`, any case).
//! * `{"event":"kernel","phase":"surfaced"|"stop","code":"0x0000007B", ...}` — the kernel's
//!   wait for the boot device.
//! * `{"event":"refused","hop":"bcd", ...}` — the boot manager/winload stop at a failed hop.
//! * `{"event":"done","outcome":"boots"|"bugcheck 0x7B"|"refused", ...}` — the end; the probe
//!   then powers off.
//!
//! The outcome ([`Summary::outcome`]) is, in this order: the `outcome` (or `bugcheck`) field of
//! `done`; else `refused` when a `refused` record came or a boot-path hop failed (the boot
//! manager or winload stop with an error screen before the kernel runs); else `bugcheck <code>`
//! from a kernel `stop`; else `boots` from a kernel `surfaced`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Line prefix of every probe record.
pub const PREFIX: &str = "UFDPROBE ";

/// One probe record with its arrival time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Milliseconds since QEMU started.
    pub t_ms: u64,
    pub value: Value,
}

/// Parse one cleaned console line; `None` if it is not a probe record. A line whose JSON does
/// not parse is returned as `Err(text)` so the run can report it.
pub fn parse_line(line: &str) -> Option<Result<Value, String>> {
    let start = line.find(PREFIX)?;
    let json = line[start + PREFIX.len()..].trim();
    Some(match serde_json::from_str::<Value>(json) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(format!("UFDPROBE record is not a JSON object: {json}")),
        Err(e) => Err(format!("UFDPROBE record is not JSON ({e}): {json}")),
    })
}

fn str_field<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| v.get(*k).and_then(Value::as_str))
}

/// `event` of a record.
pub fn event(v: &Value) -> Option<&str> {
    v.get("event").and_then(Value::as_str)
}

/// Whether the record announces the hand-off to the OS (`{"event":"handoff"}` or
/// `{"event":"kernel","phase":"handoff"}`).
pub fn is_handoff(v: &Value) -> bool {
    match event(v) {
        Some("handoff") => true,
        Some("kernel") => v.get("phase").and_then(Value::as_str) == Some("handoff"),
        _ => false,
    }
}

/// A verdict record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictView {
    pub rule: String,
    pub outcome: String,
    pub evidence: Option<String>,
}

/// A hop record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopView {
    pub step: String,
    /// `ok`, `fail`, `not-reached` (absent means `ok`).
    pub status: String,
    /// What the hop read or why it failed.
    #[serde(default)]
    pub evidence: Option<String>,
}

impl VerdictView {
    pub fn of(v: &Value) -> Option<VerdictView> {
        let rule = str_field(v, &["rule", "id"])?;
        let outcome = str_field(v, &["outcome", "verdict", "status"])?;
        if event(v).is_some_and(|e| e != "verdict") && v.get("rule").is_none() {
            return None;
        }
        Some(VerdictView {
            rule: rule.to_string(),
            outcome: normalize(outcome),
            evidence: match v.get("evidence") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                Some(other) => Some(other.to_string()),
            },
        })
    }
}

impl HopView {
    pub fn of(v: &Value) -> Option<HopView> {
        if v.get("rule").is_some() || event(v).is_some_and(|e| e != "hop") {
            return None;
        }
        let step = str_field(v, &["hop", "step", "name"])?;
        Some(HopView {
            step: step.to_string(),
            status: str_field(v, &["status"])
                .map(normalize)
                .unwrap_or_else(|| "ok".into()),
            evidence: str_field(v, &["evidence"]).map(str::to_string),
        })
    }
}

/// The hop before any boot-manager record: firmware → MBR code → partition boot record →
/// boot manager. The probe cannot report it (it is not running yet); the harness does, from
/// the boot code's messages on COM1 or from the absence of any probe record.
pub const BOOT_CODE_HOP: &str = "boot-code";

/// The messages of the project's MBR code and NTFS boot record (provisioner/bootcode/asm;
/// the same texts as Windows' own, formats.md §4), which both print on the screen and COM1,
/// and what each means.
pub const BOOT_CODE_MESSAGES: &[(&str, &str)] = &[
    (
        "Invalid partition table",
        "MBR code: a boot flag other than 00/80, or more than one active partition",
    ),
    (
        "Error loading operating system",
        "MBR code: the active partition's boot record could not be read",
    ),
    (
        "Missing operating system",
        "MBR code: no active partition, or its boot record lacks 55 AA",
    ),
    (
        "A disk read error occurred",
        "NTFS boot record: a disk read failed",
    ),
    (
        "BOOTMGR is missing",
        "NTFS boot record: \\bootmgr not found",
    ),
    (
        "BOOTMGR is compressed",
        "NTFS boot record: \\bootmgr is compressed",
    ),
    (
        "BOOTMGR has moved",
        "NTFS boot record: \\bootmgr's clusters differ from those recorded at provisioning",
    ),
];

/// The boot-code hop of a run in which no boot manager reported (`hello` never arrived): the
/// first boot-code message on the channel, or "nothing reported". `None` when a probe started.
pub fn boot_code_failure(records: &[Record], lines: &[(u64, String)]) -> Option<HopView> {
    if records.iter().any(|r| event(&r.value) == Some("hello")) {
        return None;
    }
    let found = lines.iter().find_map(|(_, l)| {
        BOOT_CODE_MESSAGES
            .iter()
            .find(|(m, _)| l.contains(m))
            .map(|(m, why)| format!("{m:?} on the console: {why}"))
    });
    Some(HopView {
        step: BOOT_CODE_HOP.into(),
        status: "fail".into(),
        evidence: Some(found.unwrap_or_else(|| {
            "no boot manager started: no boot-code message and no probe record (the boot code did not chain, or the firmware found nothing to boot)".into()
        })),
    })
}

/// Lower-case, `_`/space → `-` (`NotJudged`, `not_judged` and `not-judged` compare equal).
pub fn normalize(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.trim().chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 && !out.ends_with('-') {
            out.push('-');
        }
        out.push(match c {
            '_' | ' ' => '-',
            c => c.to_ascii_lowercase(),
        });
    }
    out
}

/// How a boot ended, as the probe (or the harness) saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootOutcome {
    /// The loaded system came up.
    Boots,
    /// A STOP error (`bugcheck 0x7B` = INACCESSIBLE_BOOT_DEVICE).
    Bugcheck(u32),
    /// Firmware or boot manager refused the stick (no boot, an error screen, policy refusal).
    Refused,
    /// Anything else the probe says (kept verbatim).
    Other(String),
}

impl BootOutcome {
    /// Parse `boots`, `bugcheck 0x7B` (also `bugcheck 7b`, `stop 0x0000007B`), `refused`.
    pub fn parse(s: &str) -> BootOutcome {
        let t = s.trim().to_ascii_lowercase();
        let mut words = t.split_whitespace();
        match words.next() {
            Some("boots") | Some("booted") | Some("boot") => BootOutcome::Boots,
            Some("refused") => BootOutcome::Refused,
            Some("bugcheck") | Some("stop") => words
                .next()
                .and_then(|c| u32::from_str_radix(c.trim_start_matches("0x"), 16).ok())
                .map(BootOutcome::Bugcheck)
                .unwrap_or_else(|| BootOutcome::Other(s.trim().to_string())),
            _ => BootOutcome::Other(s.trim().to_string()),
        }
    }

    /// The outcome of a `done` record.
    pub fn of_done(v: &Value) -> Option<BootOutcome> {
        if let Some(o) = str_field(v, &["outcome", "result"]) {
            return Some(BootOutcome::parse(o));
        }
        match v.get("bugcheck").or_else(|| v.get("code")) {
            Some(Value::String(c)) => Some(BootOutcome::parse(&format!("bugcheck {c}"))),
            Some(Value::Number(n)) => n.as_u64().map(|c| BootOutcome::Bugcheck(c as u32)),
            _ => None,
        }
    }
}

impl std::fmt::Display for BootOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootOutcome::Boots => f.write_str("boots"),
            BootOutcome::Bugcheck(c) => write!(f, "bugcheck 0x{c:02X}"),
            BootOutcome::Refused => f.write_str("refused"),
            BootOutcome::Other(s) => f.write_str(s),
        }
    }
}

impl Serialize for BootOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for BootOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(BootOutcome::parse(&s))
    }
}

/// What a run's records say, in summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Last verdict per rule, in first-seen order.
    pub verdicts: Vec<VerdictView>,
    /// Every hop record, in order.
    pub hops: Vec<HopView>,
    pub handoff_seen: bool,
    pub done: Option<Value>,
    pub outcome: Option<BootOutcome>,
}

impl Summary {
    pub fn of(records: &[Record]) -> Summary {
        let mut s = Summary::default();
        let mut explicit = None;
        let mut kernel = None;
        for r in records {
            let v = &r.value;
            if is_handoff(v) {
                s.handoff_seen = true;
            }
            match event(v) {
                Some("done") => {
                    explicit = BootOutcome::of_done(v);
                    s.done = Some(v.clone());
                }
                Some("kernel") => match v.get("phase").and_then(Value::as_str) {
                    Some("surfaced") => kernel = Some(BootOutcome::Boots),
                    Some("stop") => {
                        let code = str_field(v, &["code"]).unwrap_or("?");
                        kernel = Some(BootOutcome::parse(&format!("bugcheck {code}")));
                    }
                    _ => {}
                },
                _ => {}
            }
            if let Some(vv) = VerdictView::of(v) {
                match s.verdicts.iter_mut().find(|x| x.rule == vv.rule) {
                    Some(x) => *x = vv,
                    None => s.verdicts.push(vv),
                }
            } else if let Some(h) = HopView::of(v) {
                s.hops.push(h);
            }
        }
        let hop_failed = s.hops.iter().any(|h| h.status == "fail")
            || records.iter().any(|r| event(&r.value) == Some("refused"));
        s.outcome = match (explicit, hop_failed, kernel) {
            (Some(o), _, _) => Some(o),
            (None, true, _) => Some(BootOutcome::Refused),
            (None, false, k) => k,
        };
        s
    }

    /// The last hop that was reached (status other than `not-reached`).
    pub fn last_hop(&self) -> Option<&HopView> {
        self.hops.iter().rev().find(|h| h.status != "not-reached")
    }

    pub fn verdict(&self, rule: &str) -> Option<&VerdictView> {
        self.verdicts.iter().find(|v| v.rule == rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("boots", BootOutcome::Boots)]
    #[case("bugcheck 0x7B", BootOutcome::Bugcheck(0x7B))]
    #[case("STOP 0x0000007b", BootOutcome::Bugcheck(0x7B))]
    #[case("refused", BootOutcome::Refused)]
    #[case("hang", BootOutcome::Other("hang".into()))]
    fn outcomes_parse(#[case] text: &str, #[case] want: BootOutcome) {
        assert_eq!(BootOutcome::parse(text), want);
    }

    #[test]
    fn outcome_display_round_trips() {
        assert_eq!(BootOutcome::Bugcheck(0x7B).to_string(), "bugcheck 0x7B");
        assert_eq!(
            BootOutcome::parse(&BootOutcome::Bugcheck(0x7B).to_string()),
            BootOutcome::Bugcheck(0x7B)
        );
    }

    #[test]
    fn records_are_parsed_tolerantly() {
        assert_eq!(parse_line("no record"), None);
        assert!(matches!(parse_line("UFDPROBE {oops"), Some(Err(_))));
        let lines = [
            r#"[ 12ms] UFDPROBE {"event":"hop","step":"mbr","status":"ok","evidence":"sig 0x1","extra":[1]}"#,
            r#"UFDPROBE {"event":"verdict","rule":"HOST-NX","outcome":"NotJudged","source":"cpuid"}"#,
            r#"UFDPROBE {"event":"verdict","rule":"HOST-NX","verdict":"pass","evidence":{"nx":1}}"#,
            r#"UFDPROBE {"event":"handoff","to":"winload"}"#,
            r#"UFDPROBE {"event":"hop","step":"winload","status":"fail"}"#,
            r#"UFDPROBE {"event":"hop","step":"system-hive","status":"not-reached"}"#,
            r#"UFDPROBE {"event":"done","outcome":"bugcheck 0x7B","t":5}"#,
        ];
        let records: Vec<Record> = lines
            .iter()
            .map(|l| Record {
                t_ms: 0,
                value: parse_line(l).unwrap().unwrap(),
            })
            .collect();
        let s = Summary::of(&records);
        assert!(s.handoff_seen);
        assert_eq!(s.verdicts.len(), 1);
        assert_eq!(s.verdict("HOST-NX").unwrap().outcome, "pass");
        assert_eq!(
            s.verdict("HOST-NX").unwrap().evidence.as_deref(),
            Some(r#"{"nx":1}"#)
        );
        assert_eq!(s.hops.len(), 3);
        assert_eq!(
            s.last_hop().unwrap(),
            &HopView {
                step: "winload".into(),
                status: "fail".into(),
                evidence: None,
            }
        );
        assert_eq!(s.outcome, Some(BootOutcome::Bugcheck(0x7B)));
        assert_eq!(normalize("not_judged"), "not-judged");
    }

    #[rstest]
    #[case(&["SeaBIOS (version 1.16.2)", "Booting from Hard Disk...", "Missing operating system"], Some("\"Missing operating system\" on the console: MBR code: no active partition"))]
    #[case(&["BOOTMGR has moved: re-run ufd provision"], Some("\"BOOTMGR has moved\" on the console: NTFS boot record"))]
    #[case(&["Booting from Hard Disk..."], Some("no boot manager started"))]
    fn boot_code_hop_from_console(#[case] console: &[&str], #[case] evidence_prefix: Option<&str>) {
        let lines: Vec<(u64, String)> = console.iter().map(|l| (0, l.to_string())).collect();
        let h = boot_code_failure(&[], &lines).expect("no probe record: a boot-code hop");
        assert_eq!(h.step, BOOT_CODE_HOP);
        assert_eq!(h.status, "fail");
        let ev = h.evidence.unwrap();
        assert!(ev.starts_with(evidence_prefix.unwrap()), "{ev}");
    }

    #[test]
    fn no_boot_code_hop_once_a_probe_said_hello() {
        let hello = Record {
            t_ms: 0,
            value: parse_line(r#"UFDPROBE {"event":"hello","probe":"ufd-bios-probe"}"#)
                .unwrap()
                .unwrap(),
        };
        let lines = vec![(0, "Missing operating system".to_string())];
        assert_eq!(boot_code_failure(&[hello], &lines), None);
    }

    fn summary(lines: &[&str]) -> Summary {
        let records: Vec<Record> = lines
            .iter()
            .map(|l| Record {
                t_ms: 0,
                value: parse_line(l).unwrap().unwrap(),
            })
            .collect();
        Summary::of(&records)
    }

    /// The records exactly as `vm-images/probe` and `ufd_bootpath::json` print them.
    #[test]
    fn probe_records_give_handoff_hops_and_outcome() {
        let ok = [
            r#"UFDPROBE {"event":"hop","hop":"mbr","status":"ok","evidence":"x"}"#,
            r#"UFDPROBE {"event":"hop","hop":"system-values","status":"ok","evidence":"x"}"#,
            r#"UFDPROBE {"event":"verdict","rule":"TOPO-NO-NESTED-HUB","outcome":"pass","evidence":"on a root port","source":"guest UEFI"}"#,
            r#"UFDPROBE {"event":"kernel","phase":"handoff","wait_for_signature":"0x12345678","timeout_ms":30000}"#,
            r#"UFDPROBE {"event":"kernel","phase":"surfaced","after_ms":10012,"text":"surfaced after 10012 ms"}"#,
            r#"UFDPROBE {"event":"done","hops_ok":14,"hops":14,"pass":9}"#,
        ];
        assert!(is_handoff(&parse_line(ok[3]).unwrap().unwrap()));
        let s = summary(&ok);
        assert!(s.handoff_seen);
        assert_eq!(s.outcome, Some(BootOutcome::Boots));
        assert_eq!(s.last_hop().unwrap().step, "system-values");
        assert_eq!(s.verdict("TOPO-NO-NESTED-HUB").unwrap().outcome, "pass");

        let stop = summary(&[
            ok[0],
            r#"UFDPROBE {"event":"kernel","phase":"stop","code":"0x0000007B","after_ms":30000}"#,
            r#"UFDPROBE {"event":"done"}"#,
        ]);
        assert_eq!(stop.outcome, Some(BootOutcome::Bugcheck(0x7B)));

        let refused = summary(&[
            ok[0],
            r#"UFDPROBE {"event":"hop","hop":"bcd","status":"fail","evidence":"bad hive"}"#,
            r#"UFDPROBE {"event":"hop","hop":"default-loader","status":"not-reached","evidence":"bcd failed"}"#,
            r#"UFDPROBE {"event":"refused","hop":"bcd","evidence":"bad hive"}"#,
            r#"UFDPROBE {"event":"done"}"#,
        ]);
        assert_eq!(refused.hops.len(), 3, "the refused record is not a hop");
        assert_eq!(refused.outcome, Some(BootOutcome::Refused));
        assert_eq!(refused.last_hop().unwrap().step, "bcd");
    }
}
