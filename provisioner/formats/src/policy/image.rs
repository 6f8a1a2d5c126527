//! The image rules judged from what the Windows image itself records — IMG-GENERALIZED
//! (`\Windows\Setup\State\State.ini` and the SYSTEM hive's `Setup` key) and IMG-LANGPACKS (the
//! language folders of `\Windows\System32` against the boot locales of the BCD store) — plus
//! the evidence parsers they need (`State.ini`'s `ImageState`, [`bcd_locales`]).
//!
//! Like the rest of [`crate::policy`], these take evidence already read (file bytes, hive
//! values, a parsed [`Store`]) and do no I/O: the reader (`ufd inspect` walking the image's
//! NTFS, or a guest probe walking the boot path) fills them in and names the `source`. Moved
//! unchanged from `ufd-inspect::judge`, so `ufd inspect`'s evidence strings are the same bytes.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::{Outcome, Verdict, IMG_GENERALIZED, IMG_LANGPACKS};
use crate::bcd::guid::well_known;
use crate::bcd::{ElementType, ElementValue, Store};

/// `ImageState` values of `\Windows\Setup\State\State.ini` (Microsoft Learn, "Windows Setup
/// States" [V: documented names]; the file is written by Setup and sysprep).
pub const GENERALIZED_STATES: &[&str] = &[
    "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE",
    "IMAGE_STATE_GENERALIZE_RESEAL_TO_AUDIT",
];
/// States of an image that is specialized (has run specialize, or is installed and running).
pub const SPECIALIZED_STATES: &[&str] = &[
    "IMAGE_STATE_COMPLETE",
    "IMAGE_STATE_UNDEPLOYABLE",
    "IMAGE_STATE_SPECIALIZE_RESEAL_TO_OOBE",
    "IMAGE_STATE_SPECIALIZE_RESEAL_TO_AUDIT",
];

/// `HKLM\SYSTEM\Setup` values that tell a generalized image apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetupValues {
    pub system_setup_in_progress: Option<u32>,
    pub oobe_in_progress: Option<u32>,
    pub setup_type: Option<u32>,
    pub cmd_line: Option<String>,
}

impl SetupValues {
    /// The values as IMG-GENERALIZED quotes them (`absent` for a missing value).
    pub fn text(&self) -> String {
        let d = |v: Option<u32>| v.map_or("absent".to_string(), |v| v.to_string());
        format!(
            "SYSTEM\\Setup: SystemSetupInProgress={}, OOBEInProgress={}, SetupType={}, CmdLine={}",
            d(self.system_setup_in_progress),
            d(self.oobe_in_progress),
            d(self.setup_type),
            self.cmd_line
                .as_deref()
                .map_or("absent".to_string(), |c| format!("{c:?}"))
        )
    }
}

/// The `ImageState` value of a State.ini (ANSI or UTF-16LE with BOM), if any. Undecodable
/// bytes become U+FFFD and an odd trailing byte of UTF-16 is ignored; the key is matched
/// case-insensitively in any section, the value trimmed.
pub fn state_ini_image_state(data: &[u8]) -> Option<String> {
    let text = match data.strip_prefix(&[0xFF, 0xFE]) {
        Some(utf16) => {
            let units: Vec<u16> = utf16
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        None => String::from_utf8_lossy(data).into_owned(),
    };
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("ImageState")
            .then(|| v.trim().to_owned())
    })
}

/// IMG-GENERALIZED. Evidence, in this order:
/// 1. `State.ini` `ImageState` (what Setup itself records): a `GENERALIZE_RESEAL` state passes,
///    any other state fails;
/// 2. without State.ini, `SYSTEM\Setup`: a sysprep-generalized image boots into the specialize
///    pass, i.e. `SystemSetupInProgress` = 1 and `CmdLine` running `oobe\windeploy.exe`
///    \[reconstructed from generalized Windows 7 images; not verified against 2008 R2\];
///    otherwise it fails;
/// 3. neither: not judged.
///
/// The Setup values are always quoted as supporting evidence when present.
pub fn judge_generalized(
    image_state: Option<&str>,
    setup: Option<&SetupValues>,
    source: &str,
) -> Verdict {
    let extra = setup.map(|s| format!("; {}", s.text())).unwrap_or_default();
    if let Some(state) = image_state {
        let outcome = if GENERALIZED_STATES.contains(&state) {
            Outcome::Pass
        } else {
            Outcome::Fail
        };
        let why = if outcome == Outcome::Pass {
            "generalized (sysprep /generalize)"
        } else if SPECIALIZED_STATES.contains(&state) {
            "specialized: run sysprep /generalize before deploying"
        } else {
            "not a known generalized state"
        };
        return Verdict::new(
            IMG_GENERALIZED,
            outcome,
            format!("State.ini ImageState={state}: {why}{extra}"),
            source,
        );
    }
    match setup {
        Some(s) if s.system_setup_in_progress.is_some() || s.cmd_line.is_some() => {
            let windeploy = s
                .cmd_line
                .as_deref()
                .is_some_and(|c| c.to_ascii_lowercase().contains("windeploy"));
            let pass = s.system_setup_in_progress == Some(1) && windeploy;
            Verdict::new(
                IMG_GENERALIZED,
                if pass { Outcome::Pass } else { Outcome::Fail },
                format!(
                    "no State.ini; {}: {}",
                    s.text(),
                    if pass {
                        "Setup resumes with windeploy (generalized)"
                    } else {
                        "not waiting for the specialize pass (specialized or never sysprepped)"
                    }
                ),
                source,
            )
        }
        _ => Verdict::new(
            IMG_GENERALIZED,
            Outcome::NotJudged,
            "neither \\Windows\\Setup\\State\\State.ini nor SYSTEM\\Setup values found",
            source,
        ),
    }
}

/// `BcdLibraryString_PreferredLocale` (`locale`, a library element any application may carry).
const LOCALE: ElementType = ElementType(0x1200_0005);
/// `BcdBootMgrObject_DefaultObject` (`default` of `{bootmgr}`; see [`crate::bcd::element`]).
const BOOTMGR_DEFAULT: ElementType = ElementType(0x2300_0003);

/// The languages the boot path uses: the `locale` of `{bootmgr}` and of its default loader.
/// These are what this crate calls "required": the boot manager and winload load their
/// `.mui` resources from these folders; any other language folder is a language pack the
/// seed says should be removed.
pub fn bcd_locales(store: &Store) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |v: Option<&ElementValue>| {
        if let Some(ElementValue::String(s)) = v {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(s)) {
                out.push(s.clone());
            }
        }
    };
    if let Some(bm) = store.object(&well_known::BOOTMGR) {
        push(bm.element(LOCALE).map(|e| &e.value));
        if let Some(ElementValue::Object(d)) = bm.element(BOOTMGR_DEFAULT).map(|e| &e.value) {
            if let Some(l) = store.object(d) {
                push(l.element(LOCALE).map(|e| &e.value));
            }
        }
    }
    out
}

/// IMG-LANGPACKS: `present` language folders of `\Windows\System32` with their sizes (bytes
/// of their direct files; folders named by [`super::is_language_tag`]), `required` the boot
/// locales ([`bcd_locales`]). Passes when every folder present is required; warns (a
/// recommendation) naming the ones to remove.
pub fn judge_langpacks(present: &[(String, u64)], required: &[String], source: &str) -> Verdict {
    let list = |v: &[&(String, u64)]| {
        v.iter()
            .map(|(n, b)| format!("{n} ({b} bytes)"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all: Vec<&(String, u64)> = present.iter().collect();
    let all_text = if all.is_empty() {
        String::from("none")
    } else {
        list(&all)
    };
    if required.is_empty() {
        return Verdict::new(
            IMG_LANGPACKS,
            Outcome::NotJudged,
            format!("language folders: {all_text}; no BCD locale to tell the required language"),
            source,
        );
    }
    let extra: Vec<&(String, u64)> = present
        .iter()
        .filter(|(n, _)| !required.iter().any(|r| r.eq_ignore_ascii_case(n)))
        .collect();
    let missing: Vec<&String> = required
        .iter()
        .filter(|r| !present.iter().any(|(n, _)| n.eq_ignore_ascii_case(r)))
        .collect();
    let mut evidence = format!(
        "language folders: {all_text}; required (BCD locale): {}",
        required.join(", ")
    );
    if !missing.is_empty() {
        evidence.push_str(&format!(
            "; the BCD locale {missing:?} has no folder (boot messages fall back to the built-in language)"
        ));
    }
    if extra.is_empty() {
        Verdict::new(IMG_LANGPACKS, Outcome::Pass, evidence, source)
    } else {
        let bytes: u64 = extra.iter().map(|(_, b)| b).sum();
        evidence.push_str(&format!(
            "; remove {} ({bytes} bytes)",
            extra
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Verdict::new(IMG_LANGPACKS, Outcome::Warn, evidence, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bcd::{Element, Guid, Object, ObjectType};
    use alloc::vec;
    use rstest::rstest;

    #[rstest]
    #[case("en-US", true)]
    #[case("sr-Latn-CS", true)]
    #[case("qps-PL", true)]
    #[case("config", false)]
    #[case("EN-us", false)]
    #[case("en-US-x", false)]
    fn language_folders(#[case] name: &str, #[case] yes: bool) {
        assert_eq!(super::super::is_language_tag(name), yes);
    }

    fn utf16_with_bom(s: &str) -> Vec<u8> {
        [0xFF, 0xFE]
            .into_iter()
            .chain(s.encode_utf16().flat_map(u16::to_le_bytes))
            .collect()
    }

    #[rstest]
    #[case(b"[State]\r\nImageState=IMAGE_STATE_COMPLETE\r\n".to_vec(), Some("IMAGE_STATE_COMPLETE"))]
    #[case(b"[State]\nimagestate = X \n".to_vec(), Some("X"))]
    #[case(b"nothing".to_vec(), None)]
    #[case(utf16_with_bom("ImageState=A\r\n"), Some("A"))]
    #[case(
        utf16_with_bom("[State]\r\nImageState=IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE\r\n"),
        Some("IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE")
    )]
    #[case(vec![0xFF, 0xFE, b'x'], None)]
    #[case(vec![0xFF], None)]
    fn state_ini(#[case] data: Vec<u8>, #[case] want: Option<&str>) {
        assert_eq!(state_ini_image_state(&data).as_deref(), want);
    }

    #[test]
    fn generalized() {
        let v = judge_generalized(Some("IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"), None, "t");
        assert_eq!(v.outcome, Outcome::Pass);
        assert_eq!(v.rule, IMG_GENERALIZED);
        let v = judge_generalized(Some("IMAGE_STATE_COMPLETE"), None, "t");
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(v.evidence.contains("specialized"));
        let s = SetupValues {
            system_setup_in_progress: Some(1),
            cmd_line: Some("oobe\\windeploy.exe".into()),
            ..Default::default()
        };
        assert_eq!(
            judge_generalized(None, Some(&s), "t").outcome,
            Outcome::Pass
        );
        let s = SetupValues {
            system_setup_in_progress: Some(0),
            cmd_line: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(
            judge_generalized(None, Some(&s), "t").outcome,
            Outcome::Fail
        );
        assert_eq!(
            judge_generalized(None, Some(&SetupValues::default()), "t").outcome,
            Outcome::NotJudged
        );
    }

    #[test]
    fn generalized_state_wins_and_quotes_setup() {
        let s = SetupValues {
            system_setup_in_progress: Some(1),
            cmd_line: Some("oobe\\windeploy.exe".into()),
            ..Default::default()
        };
        let v = judge_generalized(Some("IMAGE_STATE_COMPLETE"), Some(&s), "src");
        assert_eq!(v.outcome, Outcome::Fail);
        assert_eq!(v.source, "src");
        assert_eq!(
            v.evidence,
            "State.ini ImageState=IMAGE_STATE_COMPLETE: specialized: run sysprep /generalize \
             before deploying; SYSTEM\\Setup: SystemSetupInProgress=1, OOBEInProgress=absent, \
             SetupType=absent, CmdLine=\"oobe\\\\windeploy.exe\""
        );
        let v = judge_generalized(Some("SOMETHING_ELSE"), None, "t");
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(v.evidence.contains("not a known generalized state"));
    }

    #[test]
    fn langpacks() {
        let p = |v: &[&str]| v.iter().map(|s| (s.to_string(), 10)).collect::<Vec<_>>();
        let req = vec!["en-US".to_string()];
        assert_eq!(
            judge_langpacks(&p(&["en-US"]), &req, "t").outcome,
            Outcome::Pass
        );
        let v = judge_langpacks(&p(&["en-US", "de-DE"]), &req, "t");
        assert_eq!(v.outcome, Outcome::Warn);
        assert_eq!(v.rule, IMG_LANGPACKS);
        assert!(
            v.evidence.contains("remove de-DE (10 bytes)"),
            "{}",
            v.evidence
        );
        assert_eq!(
            judge_langpacks(&p(&["en-US"]), &[], "t").outcome,
            Outcome::NotJudged
        );
        let v = judge_langpacks(&p(&[]), &req, "t");
        assert_eq!(v.outcome, Outcome::Pass);
        assert!(v.evidence.contains("has no folder"), "{}", v.evidence);
    }

    fn store(bootmgr_locale: Option<&str>, loader_locale: Option<&str>) -> Store {
        let loader = Guid::parse("{19260817-6666-8888-abcd-000000000001}").unwrap();
        let mut bm = Object::new(well_known::BOOTMGR, ObjectType::BOOTMGR);
        if let Some(l) = bootmgr_locale {
            bm.set(Element::new(0x12000005, ElementValue::String(l.into())));
        }
        bm.set(Element::new(0x23000003, ElementValue::Object(loader)));
        let mut ld = Object::new(loader, ObjectType::OSLOADER);
        if let Some(l) = loader_locale {
            ld.set(Element::new(0x12000005, ElementValue::String(l.into())));
        }
        let mut s = Store::new();
        s.insert(bm);
        s.insert(ld);
        s
    }

    #[rstest]
    #[case(Some("en-US"), Some("en-US"), &["en-US"])]
    #[case(Some("en-US"), Some("EN-us"), &["en-US"])]
    #[case(Some("en-US"), Some("de-DE"), &["en-US", "de-DE"])]
    #[case(None, Some("de-DE"), &["de-DE"])]
    #[case(None, None, &[])]
    fn locales(#[case] bm: Option<&str>, #[case] ld: Option<&str>, #[case] want: &[&str]) {
        assert_eq!(bcd_locales(&store(bm, ld)), want);
    }

    #[test]
    fn no_bootmgr_no_locales() {
        assert!(bcd_locales(&Store::new()).is_empty());
    }
}
