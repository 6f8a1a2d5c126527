//! `.reg` export/import against the hivex 1.3.23 oracle (`hivexregedit`).
//!
//! The `.hivex.reg` files beside the fixtures were made by `hivexregedit --export FILE '\'`;
//! the `*_live_*` tests run hivexregedit here for other keys and for hives edited by
//! this crate.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{fixture, read_fixture, require_tool, HIVES};
use ufd_formats::hive::regtext::{self, ExportOptions, NameEncoding, RegEntry};
use ufd_formats::hive::{Editor, Hive, NewHive};
use ufd_formats::Format;

/// Panic with the first differing line (both versions, shortened) instead of dumping
/// megabytes of text.
fn assert_same_text(what: &str, got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let short = |l: &[u8]| {
        let s = String::from_utf8_lossy(l);
        if s.len() > 300 {
            format!(
                "{}… ({} bytes)",
                s.chars().take(300).collect::<String>(),
                l.len()
            )
        } else {
            s.into_owned()
        }
    };
    let mut g = got.split(|&b| b == b'\n');
    let mut w = want.split(|&b| b == b'\n');
    let mut n = 1;
    loop {
        match (g.next(), w.next()) {
            (Some(a), Some(b)) if a == b => n += 1,
            (a, b) => panic!(
                "{what}: first difference at line {n} (got {} bytes, want {} bytes)\n  ours : {}\n  hivex: {}",
                got.len(),
                want.len(),
                a.map(short).unwrap_or_else(|| "<end of text>".into()),
                b.map(short).unwrap_or_else(|| "<end of text>".into()),
            ),
        }
    }
}

/// `hivexregedit --export FILE KEY`: (exit success, stdout).
fn hivex_export(file: &Path, key: &str) -> (bool, Vec<u8>) {
    let out = Command::new(require_tool("hivexregedit"))
        .arg("--export")
        .arg(file)
        .arg(key)
        .output()
        .unwrap();
    (out.status.success(), out.stdout)
}

fn export_bytes(data: &[u8], key: &str) -> Vec<u8> {
    let hive = Hive::parse(data).unwrap();
    let mut out = Vec::new();
    regtext::export_bytes(&hive, key, &mut out).unwrap_or_else(|e| panic!("export {key}: {e}"));
    out
}

#[test]
fn fixture_export_matches_hivex_for_every_hive() {
    for rel in HIVES {
        let data = read_fixture(rel);
        let want = read_fixture(&format!("{rel}.hivex.reg"));
        let hive = Hive::parse(&data).unwrap_or_else(|e| panic!("{rel}: {e}"));

        let mut exact = Vec::new();
        let t = Instant::now();
        regtext::export_bytes(&hive, "\\", &mut exact).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let elapsed = t.elapsed();
        assert_same_text(rel, &exact, &want);

        // None of the fixtures has a name with only Latin-1 non-ASCII characters, so the
        // UTF-8 `String` API gives the same bytes.
        let mut text = String::new();
        regtext::export(&hive, "\\", &mut text).unwrap();
        assert_same_text(&format!("{rel} (String)"), text.as_bytes(), &want);
        println!("{rel}: {} bytes in {elapsed:?}", exact.len());
    }
}

// Speed is a benchmark, not a test: `cargo xtask bench` compares this export with
// hivexregedit on the same file in the same run.

#[test]
fn fixture_export_sub_keys_match_live_hivexregedit() {
    let cases: &[(&str, &[&str])] = &[
        (
            "hives/win7-sp1-x86/SYSTEM",
            &[
                "\\Select",
                "\\ControlSet001\\Control\\Session Manager\\Memory Management",
                "\\ControlSet001\\Control\\PnP",
                // case-insensitive lookup, no leading `\`, trailing `\`: hivex prints stored names
                "controlset002\\CONTROL\\pnp\\",
                "\\ControlSet001\\Enum\\Root",
            ],
        ),
        (
            "bcd/ntloader/bcd",
            &[
                "\\Objects",
                "\\Description",
                "\\Objects\\{19260817-6666-8888-abcd-000000000001}",
            ],
        ),
        (
            "bcd/win10-uefi/BCD",
            &[
                "\\Objects\\{9dea862c-5cdd-4e70-acc1-f32b344d4795}",
                "Description",
            ],
        ),
        ("bcd/template-desktop/BCDTemplate", &["\\Objects"]),
        (
            "hives/win10-mobile/DEFAULT",
            &["\\Control Panel\\International"],
        ),
    ];
    for (rel, keys) in cases {
        let path = fixture(rel);
        let data = std::fs::read(&path).unwrap();
        for key in *keys {
            let (ok, want) = hivex_export(&path, key);
            assert!(ok, "hivexregedit failed for {rel} {key}");
            assert!(want.len() > 40, "{rel} {key}: hivex exported nothing");
            assert_same_text(&format!("{rel} {key}"), &export_bytes(&data, key), &want);
        }
    }
}

#[test]
fn fixture_export_missing_key_fails_like_hivex() {
    let path = fixture("bcd/ntloader/bcd");
    let data = std::fs::read(&path).unwrap();
    let hive = Hive::parse(&data).unwrap();
    for key in [
        "\\NoSuchKey",
        "\\Objects\\\\Description",
        "\\Description\\KeyName",
    ] {
        let (ok, hivex_out) = hivex_export(&path, key);
        assert!(!ok, "hivexregedit accepted {key}");
        let mut out = Vec::new();
        let e = regtext::export_bytes(&hive, key, &mut out).unwrap_err();
        assert_eq!(e.format, Format::Hive);
        assert!(e.to_string().contains("path not found"), "{e}");
        // hivexregedit has printed the header before failing; so have we.
        assert_eq!(out, hivex_out, "{key}");
    }
}

#[test]
fn fixture_export_corrupt_sub_key_list_names_the_offset() {
    let rel = "hives/corrupt/corrupt_sub_key_list.hiv";
    let data = read_fixture(rel);
    let hive = Hive::parse(&data).unwrap();
    let mut out = Vec::new();
    let e = regtext::export_bytes(&hive, "\\", &mut out).unwrap_err();
    // hivex (HIVEX_DEBUG=1): "subkey is not a valid block (0x5480)".
    assert_eq!(e.offset, 0x5480, "{e}");
    assert_eq!(e.format, Format::Hive);
    // The same partial output as hivex: the header and `[\]` with its empty line.
    assert_eq!(out, read_fixture(&format!("{rel}.hivex.reg")));
    assert_eq!(out, b"Windows Registry Editor Version 5.00\n\n[\\]\n\n");
}

#[test]
fn fixture_export_with_prefix_and_without_header() {
    let data = read_fixture("bcd/empty-createstore/BCD");
    let hive = Hive::parse(&data).unwrap();
    let mut out = Vec::new();
    let opts = ExportOptions {
        header: false,
        prefix: Some("HKEY_LOCAL_MACHINE\\BCD00000001\\"),
        names: NameEncoding::Utf8,
    };
    regtext::export_with(&hive, "\\", &opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("[HKEY_LOCAL_MACHINE\\BCD00000001\\]\n\n[HKEY_LOCAL_MACHINE\\BCD00000001\\Description]\n"), "{text}");
    assert!(!text.contains("Windows Registry Editor"));
    // Same as `hivexregedit --prefix`.
    let out = Command::new(require_tool("hivexregedit"))
        .args(["--export", "--prefix", "HKEY_LOCAL_MACHINE\\BCD00000001\\"])
        .arg(fixture("bcd/empty-createstore/BCD"))
        .arg("\\")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        format!("{}\n\n{text}", regtext::HEADER_V5).as_bytes(),
        out.stdout.as_slice()
    );
}

#[test]
fn fixture_every_hivex_export_parses() {
    for rel in HIVES {
        let text = String::from_utf8(read_fixture(&format!("{rel}.hivex.reg"))).unwrap();
        let reg = regtext::parse(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(reg.header.as_deref(), Some(regtext::HEADER_V5));
        let keys = text.lines().filter(|l| l.starts_with('[')).count();
        assert_eq!(reg.entries.len(), keys, "{rel}");
        let values = text
            .lines()
            .filter(|l| l.starts_with('"') || l.starts_with('@'))
            .count();
        let parsed: usize = reg
            .entries
            .iter()
            .map(|e| match e {
                RegEntry::Key { values, .. } => values.len(),
                RegEntry::DeleteKey { .. } => panic!("{rel}: hivex wrote a delete"),
            })
            .sum();
        assert_eq!(parsed, values, "{rel}");
    }
}

// ---------------------------------------------------------------------------------------
// Import and round trips (need the editor)
// ---------------------------------------------------------------------------------------

/// An empty hive with the same root name and minor version as `data`.
fn empty_like(data: &[u8]) -> Editor {
    let hive = Hive::parse(data).unwrap();
    let p = NewHive {
        root_name: hive.root().unwrap().name().unwrap(),
        minor: hive.base().minor,
        ..NewHive::default()
    };
    Editor::new_hive(&p).unwrap()
}

fn hivex_export_bytes(hive_bytes: &[u8], key: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hive");
    std::fs::write(&file, hive_bytes).unwrap();
    let (ok, out) = hivex_export(&file, key);
    assert!(
        ok,
        "hivexregedit could not export a hive written by the editor"
    );
    out
}

const ROUND_TRIP: &[&str] = &[
    "bcd/win7-bios/BCD",
    "bcd/empty-createstore/BCD",
    "bcd/ntloader/bcd",
    "bcd/win10-iso-ramdisk/bcd",
    "bcd/win10-uefi/BCD",
    "bcd/template-desktop/BCDTemplate",
    "hives/win10-mobile/DRIVERS",
    "hives/win10-mobile/DEFAULT",
    "hives/win10-mobile/SECURITY",
];

/// export → parse → apply to a new hive with the same root → export again: identical
/// text, from our reader and from hivexregedit reading the rebuilt hive.
#[test]
fn fixture_round_trip_export_parse_apply_export() {
    for rel in ROUND_TRIP {
        let data = read_fixture(rel);
        let hive = Hive::parse(&data).unwrap();
        let mut text = String::new();
        regtext::export(&hive, "\\", &mut text).unwrap();

        let reg = regtext::parse(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let mut ed = empty_like(&data);
        regtext::apply(&reg, &mut ed, "").unwrap_or_else(|e| panic!("{rel}: {e}"));
        let rebuilt = ed.finish(0x01d9_0000_0000_0000);

        assert_same_text(
            &format!("{rel} rebuilt (ours)"),
            &export_bytes(&rebuilt, "\\"),
            text.as_bytes(),
        );
        assert_same_text(
            &format!("{rel} rebuilt (hivex)"),
            &hivex_export_bytes(&rebuilt, "\\"),
            text.as_bytes(),
        );
    }
}

/// The same through a prefixed export (`[HKEY_LOCAL_MACHINE\BCD00000000\…]`) applied with
/// that prefix, for a sub-tree of SYSTEM.
#[test]
fn fixture_round_trip_with_prefix() {
    let data = read_fixture("hives/win7-sp1-x86/SYSTEM");
    let hive = Hive::parse(&data).unwrap();
    let key = "\\ControlSet001\\Control";
    let mut text = Vec::new();
    let opts = ExportOptions {
        prefix: Some("HKEY_LOCAL_MACHINE\\SYSTEM"),
        names: NameEncoding::Utf8,
        ..ExportOptions::default()
    };
    regtext::export_with(&hive, key, &opts, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("\n[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Control\\PnP]\n"));

    let reg = regtext::parse(&text).unwrap();
    let mut ed = empty_like(&data);
    regtext::apply(&reg, &mut ed, "hkey_local_machine\\system\\").unwrap();
    let rebuilt = ed.finish(1);
    let want = export_bytes(&data, key);
    assert_same_text(
        "SYSTEM Control rebuilt (ours)",
        &export_bytes(&rebuilt, key),
        &want,
    );
    assert_same_text(
        "SYSTEM Control rebuilt (hivex)",
        &hivex_export_bytes(&rebuilt, key),
        &want,
    );
}

/// A `.reg` file using every syntax element both tools accept, merged into copies of
/// the ntloader store by `apply` and by `hivexregedit --merge --prefix`: same result.
#[test]
fn fixture_apply_matches_hivexregedit_merge() {
    let rel = "bcd/ntloader/bcd";
    let data = read_fixture(rel);
    let text = concat!(
        "\u{feff}Windows Registry Editor Version 5.00\r\n",
        "\r\n",
        "; a comment between sections\r\n",
        "[HKEY_LOCAL_MACHINE\\BCD00000000\\Objects\\{19260817-6666-8888-abcd-000000000001}\\Elements\\12000004]\r\n",
        "\"Element\"=\"Quoted \\\"name\\\" with \\\\ backslash\"\r\n",
        "\r\n",
        "[HKEY_LOCAL_MACHINE\\BCD00000000\\Objects\\{19260817-6666-8888-abcd-000000000001}\\Elements\\25000004]\r\n",
        "\"Element\"=hex:10,27,00,00,\\\r\n",
        "  00,00,00,00\r\n",
        "\r\n",
        "[-HKEY_LOCAL_MACHINE\\BCD00000000\\Objects\\{19260817-6666-8888-abcd-000000000003}]\r\n",
        "\r\n",
        "[HKEY_LOCAL_MACHINE\\BCD00000000\\Description]\r\n",
        "\"KeyName\"=-\r\n",
        "\"New \\\"dword\\\"\"=dword:0000abcd\r\n",
        "@=hex(7):41,00,00,00,42,00,00,00,00,00\r\n",
        "\"Qword\"=hex(b):01,02,03,04,05,06,07,08\r\n",
        "\"Expand\"=hex(2):25,00,50,00,25,00,00,00\r\n",
        "\"Odd type\"=hex(80000000):ff\r\n",
        "\"Empty\"=hex:\r\n",
        "\"Wine\"=str(2):\"%SystemRoot%\"\r\n",
        "\r\n",
        "[HKEY_LOCAL_MACHINE\\BCD00000000\\NewKey]\r\n",
        "\r\n",
        "[HKEY_LOCAL_MACHINE\\BCD00000000\\NewKey\\Child]\r\n",
        "@=\"default\"\r\n",
        "\"Latin1 é\"=dword:00000001\r\n",
    );
    let prefix = "HKEY_LOCAL_MACHINE\\BCD00000000";

    let reg = regtext::parse(text).unwrap();
    let mut ed = Editor::open(data.clone()).unwrap();
    regtext::apply(&reg, &mut ed, prefix).unwrap();
    let ours = ed.finish(2);

    let dir = tempfile::tempdir().unwrap();
    let hive_file = dir.path().join("bcd");
    let reg_file = dir.path().join("in.reg");
    std::fs::write(&hive_file, &data).unwrap();
    std::fs::write(&reg_file, text).unwrap();
    let st = Command::new(require_tool("hivexregedit"))
        .args(["--merge", "--prefix", prefix])
        .arg(&hive_file)
        .arg(&reg_file)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "hivexregedit --merge: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let (ok, theirs) = hivex_export(&hive_file, "\\");
    assert!(ok);

    let ours_text = hivex_export_bytes(&ours, "\\");
    assert_same_text(
        "merged by apply vs hivexregedit --merge",
        &ours_text,
        &theirs,
    );
    assert_same_text(
        "our export of our merge",
        &export_bytes(&ours, "\\"),
        &theirs,
    );
    // And the edits really happened.
    let s = String::from_utf8_lossy(&theirs);
    assert!(!s.contains("{19260817-6666-8888-abcd-000000000003}"));
    // hivexregedit prints the Latin-1-only name with the single byte 0xE9.
    let child: &[u8] = b"[\\NewKey\\Child]\n@=hex(1):64,00,65,00,66,00,61,00,75,00,6c,00,74,00,00,00\n\"Latin1 \xe9\"=dword:00000001\n";
    assert!(theirs.windows(child.len()).any(|w| w == child));
    assert!(s.contains("\"Odd type\"=hex(80000000):ff\n"));
}

/// Names with Latin-1 characters only are printed by hivexregedit as single bytes;
/// names with any character above U+00FF as UTF-8 ("Wide character in print").
#[test]
fn export_names_are_encoded_like_perl() {
    let mut ed = Editor::new_hive(&NewHive::default()).unwrap();
    for k in [
        "caf\u{e9}",
        "caf\u{e9}\\\u{20ac}",
        "\u{20ac}",
        "B",
        "_",
        "a",
        "Z\u{1f30e}",
    ] {
        ed.create_key(k).unwrap();
    }
    ed.set_value("caf\u{e9}", "n\u{e9}", 4, &1u32.to_le_bytes())
        .unwrap();
    ed.set_value("caf\u{e9}", "\u{20ac}", 3, &[1]).unwrap();
    ed.set_value("caf\u{e9}", "q\"\\", 1, b"x\0\0\0").unwrap();
    ed.set_value("caf\u{e9}", "", 3, &[]).unwrap();
    let bytes = ed.finish(3);
    let hive = Hive::parse(&bytes).unwrap();

    let mut exact = Vec::new();
    regtext::export_bytes(&hive, "\\", &mut exact).unwrap();
    assert_same_text("Latin-1 names", &exact, &hivex_export_bytes(&bytes, "\\"));
    let want: &[u8] = b"Windows Registry Editor Version 5.00\n\n[\\]\n\n[\\B]\n\n[\\Z\xf0\x9f\x8c\x8e]\n\n[\\_]\n\n[\\a]\n\n\
[\\caf\xe9]\n@=hex(3):\n\"n\xe9\"=dword:00000001\n\"q\\\"\\\\\"=hex(1):78,00,00,00\n\"\xe2\x82\xac\"=hex(3):01\n\n\
[\\caf\xc3\xa9\\\xe2\x82\xac]\n\n[\\\xe2\x82\xac]\n\n";
    assert_same_text("Latin-1 names (literal)", &exact, want);

    // The String API writes UTF-8 throughout, and parses back to the same hive.
    let mut text = String::new();
    regtext::export(&hive, "\\", &mut text).unwrap();
    assert!(
        text.contains("[\\caf\u{e9}]\n@=hex(3):\n\"n\u{e9}\"=dword:00000001\n"),
        "{text}"
    );
    let mut again = Editor::new_hive(&NewHive::default()).unwrap();
    regtext::apply(&regtext::parse(&text).unwrap(), &mut again, "").unwrap();
    let mut text2 = String::new();
    regtext::export(&Hive::parse(&again.finish(4)).unwrap(), "\\", &mut text2).unwrap();
    assert_eq!(text2, text);
}

#[test]
fn apply_errors_name_the_line() {
    let mut ed = Editor::new_hive(&NewHive::default()).unwrap();
    // Wrong prefix: error at the key line (offset of `[` on line 3).
    let text = "REGEDIT4\n\n[HKEY_CURRENT_USER\\X]\n\"a\"=dword:1\n";
    let reg = regtext::parse(text).unwrap();
    let e = regtext::apply(&reg, &mut ed, "HKEY_LOCAL_MACHINE\\SOFTWARE").unwrap_err();
    assert_eq!((e.format, e.offset), (Format::RegText, 10));
    assert!(e.to_string().contains("line 3:"), "{e}");

    // The root cannot be deleted.
    let reg = regtext::parse("[-\\]\n").unwrap();
    let e = regtext::apply(&reg, &mut ed, "").unwrap_err();
    assert_eq!((e.format, e.offset), (Format::RegText, 0));

    // Deleting absent keys and values is not an error; sets and deletes apply in order.
    let reg = regtext::parse(
        "[-\\Nope\\Deeper]\n[\\K\\L]\n\"x\"=-\n\"v\"=dword:00000002\n\"w\"=\"1\"\n\"w\"=-\n",
    )
    .unwrap();
    regtext::apply(&reg, &mut ed, "").unwrap();
    let bytes = ed.finish(5);
    let hive = Hive::parse(&bytes).unwrap();
    let mut out = String::new();
    regtext::export(&hive, "\\K", &mut out).unwrap();
    assert_eq!(
        out,
        "Windows Registry Editor Version 5.00\n\n[\\K]\n\n[\\K\\L]\n\"v\"=dword:00000002\n\n"
    );
}

/// A subkey list that points back at its own key must end the export with an error
/// naming the key's offset, not loop forever.
#[test]
fn export_detects_a_cycle_in_the_subkey_lists() {
    let mut ed = Editor::new_hive(&NewHive::default()).unwrap();
    ed.create_key("A\\B").unwrap();
    let mut bytes = ed.finish(7);
    let (a_off, list_off) = {
        let hive = Hive::parse(&bytes).unwrap();
        let a = hive.open("A").unwrap().unwrap();
        (a.offset(), a.subkey_list_offset())
    };
    // lh/lf list: size (4), signature (2), count (2), then (offset, hash) pairs.
    let entry = 4096 + list_off as usize + 8;
    bytes[entry..entry + 4].copy_from_slice(&a_off.to_le_bytes());
    let hive = Hive::parse(&bytes).unwrap();
    let mut out = Vec::new();
    let e = regtext::export_bytes(&hive, "\\", &mut out).unwrap_err();
    assert_eq!(e.format, Format::Hive);
    assert_eq!(e.offset, 4096 + u64::from(a_off), "{e}");
    assert!(e.to_string().contains("cycle"), "{e}");
    assert!(
        out.ends_with(b"[\\]\n\n[\\A]\n\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}
