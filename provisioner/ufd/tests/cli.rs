//! The `ufd` command line as a user runs it: real files, real exit codes, and hivex as the
//! independent reader of everything the CLI writes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ufd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ufd"))
        .args(args)
        .output()
        .expect("run ufd")
}

fn fixtures() -> PathBuf {
    std::env::var_os("UFD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        })
}

fn fixture(rel: &str) -> PathBuf {
    let p = fixtures().join(rel);
    assert!(
        p.exists(),
        "fixture {} missing (shared/fixtures beside the clone)",
        p.display()
    );
    p
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn hivex(args: &[&str]) -> Output {
    let o = Command::new(args[0]).args(&args[1..]).output();
    o.unwrap_or_else(|e| panic!("{}: {e} (installed by `cargo xtask ci`)", args[0]))
}

fn copy_to_temp(src: &Path, dir: &tempfile::TempDir) -> PathBuf {
    let dst = dir.path().join(src.file_name().unwrap());
    std::fs::copy(src, &dst).unwrap();
    dst
}

#[test]
fn fixture_hive_export_is_hivexregedits_text() {
    for (rel, key) in [
        ("bcd/ntloader/bcd", "\\"),
        ("hives/win10-mobile/DRIVERS", "\\"),
        ("hives/win7-sp1-x86/SYSTEM", "\\Select"),
    ] {
        let path = fixture(rel);
        let ours = ufd(&["hive", "export", path.to_str().unwrap(), key]);
        assert!(ours.status.success(), "{}", stderr(&ours));
        let theirs = hivex(&["hivexregedit", "--export", path.to_str().unwrap(), key]);
        assert!(theirs.status.success());
        assert_eq!(ours.stdout, theirs.stdout, "{rel} {key}");
    }
}

/// The seed's step 6 through the CLI, checked by hivex: exactly the two values change.
#[test]
fn fixture_step6_via_cli_changes_exactly_two_values() {
    let dir = tempfile::tempdir().unwrap();
    let hive = copy_to_temp(&fixture("hives/win7-sp1-x86/SYSTEM"), &dir);
    let h = hive.to_str().unwrap();
    let mm = "ControlSet001\\Control\\Session Manager\\Memory Management";
    let before = hivex(&["hivexregedit", "--export", h, mm]).stdout;
    let o = ufd(&["hive", "set", h, mm, "PagingFiles", "multi-sz", ""]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ufd(&["hive", "delete", h, mm, "ExistingPageFiles"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = hivex(&["hivexregedit", "--export", h, mm]).stdout;
    let b = String::from_utf8(before).unwrap();
    let a = String::from_utf8(after).unwrap();
    let removed: Vec<&str> = b.lines().filter(|l| !a.lines().any(|x| x == *l)).collect();
    let added: Vec<&str> = a.lines().filter(|l| !b.lines().any(|x| x == *l)).collect();
    assert_eq!(removed.len(), 2, "removed lines: {removed:?}");
    assert!(removed
        .iter()
        .any(|l| l.starts_with("\"PagingFiles\"=hex(7):")));
    assert!(removed
        .iter()
        .any(|l| l.starts_with("\"ExistingPageFiles\"=hex(7):")));
    assert_eq!(added, vec!["\"PagingFiles\"=hex(7):00,00,00,00"]);
    // our reader agrees, and the value is gone
    let o = ufd(&["hive", "get", h, mm, "PagingFiles"]);
    assert_eq!(stdout(&o).trim(), "REG_MULTI_SZ = [] (4 bytes)");
    let o = ufd(&["hive", "get", h, mm, "ExistingPageFiles"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("value not found"), "{}", stderr(&o));
    // no temporary file left behind
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn fixture_set_dword_and_create_key_read_back_by_hivexget() {
    let dir = tempfile::tempdir().unwrap();
    let hive = copy_to_temp(&fixture("hives/win7-sp1-x86/SYSTEM"), &dir);
    let h = hive.to_str().unwrap();
    let o = ufd(&[
        "hive",
        "set",
        h,
        "ControlSet001\\Control\\PnP",
        "PollBootPartitionTimeout",
        "dword",
        "30000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ufd(&[
        "hive",
        "set",
        h,
        "ControlSet001\\Services\\UfdTest\\Parameters",
        "Note",
        "sz",
        "hello",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = hivex(&[
        "hivexget",
        h,
        "ControlSet001\\Control\\PnP",
        "PollBootPartitionTimeout",
    ]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "30000");
    let got = hivex(&[
        "hivexget",
        h,
        "ControlSet001\\Services\\UfdTest\\Parameters",
        "Note",
    ]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "hello");
    let o = ufd(&["hive", "delete", h, "ControlSet001\\Services\\UfdTest"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = hivex(&[
        "hivexget",
        h,
        "ControlSet001\\Services\\UfdTest\\Parameters",
        "Note",
    ]);
    assert!(!got.status.success(), "key should be gone");
}

#[test]
fn fixture_bad_hive_is_one_line_with_the_offset() {
    let o = ufd(&[
        "hive",
        "export",
        fixture("hives/corrupt/corrupt_sub_key_list.hiv")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("corrupt_sub_key_list.hiv") && err.contains("0x5480"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    // the editor refuses it and leaves the file untouched
    let dir = tempfile::tempdir().unwrap();
    let bad = copy_to_temp(&fixture("hives/corrupt/corrupted_system_hive"), &dir);
    let before = std::fs::read(&bad).unwrap();
    let o = ufd(&["hive", "set", bad.to_str().unwrap(), "X", "Y", "dword", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert_eq!(std::fs::read(&bad).unwrap(), before);
}

#[test]
fn garbage_and_missing_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"regf this is not a hive").unwrap();
    let o = ufd(&["hive", "export", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!("ufd: {}: hive at byte 0x", junk.display())),
        "{}",
        stderr(&o)
    );
    let o = ufd(&["bcd", "enum", dir.path().join("absent").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such file"), "{}", stderr(&o));
    let o = ufd(&[
        "hive",
        "set",
        junk.to_str().unwrap(),
        "K",
        "V",
        "dword",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn fixture_bcd_enum_text_and_json() {
    let store = fixture("bcd/ntloader/bcd");
    let o = ufd(&["bcd", "enum", store.to_str().unwrap(), "--v"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("vhd=[<disk 0x43da9ab1, offset 525336576>]\\"),
        "{text}"
    );
    let o = ufd(&["bcd", "enum", store.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let objects = v["objects"].as_array().unwrap();
    let loader = objects
        .iter()
        .find(|o| o["id"] == "{19260817-6666-8888-abcd-000000000001}")
        .expect("vhd loader");
    let device = loader["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "0x11000001")
        .unwrap();
    assert_eq!(device["name"], "device");
    assert_eq!(device["format"], "device");
    assert!(
        device["text"][0].as_str().unwrap().starts_with("vhd=["),
        "{device}"
    );
}

/// The README's main job, minus the build: sample artefacts and their joint inspection.
#[test]
fn sample_then_inspect_judges_the_seed_rules() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = ufd(&["sample", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ufd(&["inspect", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let verdict = |rule: &str| {
        v["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["rule"] == rule)
            .unwrap_or_else(|| panic!("{rule}"))["outcome"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(verdict("UFD-BCD"), "pass");
    assert_eq!(verdict("IMG-VHD-FIXED"), "pass");
    assert_eq!(verdict("IMG-PAGING-OFF"), "pass");
    assert_eq!(verdict("IMG-BOOT-DEVICE-WAIT"), "pass");
    assert_eq!(verdict("UFD-LAYOUT"), "pass");
    assert_eq!(verdict("UFD-CAPACITY"), "pass");
    // The seed's own sizes: a 12288 MiB VHD on a 16 GB stick leaves 19.5%, not 25%.
    assert_eq!(verdict("UFD-WEAR-RESERVE"), "warn");
    assert_eq!(verdict("UFD-BOOTCODE"), "fail");
    assert_eq!(verdict("UFD-NONREMOVABLE"), "not-judged");
    assert_eq!(
        v["verdicts"].as_array().unwrap().len(),
        21,
        "every rule is reported once"
    );

    // hivex reads what the sample wrote.
    let sys = out.join("SYSTEM");
    let got = hivex(&[
        "hivexget",
        sys.to_str().unwrap(),
        "ControlSet001\\Control\\PnP",
        "PollBootPartitionTimeout",
    ]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "30000");
    let bcd = hivex(&[
        "hivexregedit",
        "--export",
        out.join("BCD").to_str().unwrap(),
        "\\",
    ]);
    assert!(bcd.status.success());
    assert_eq!(String::from_utf8_lossy(&bcd.stdout).matches("\n[").count(), 3 + 4 * 3 + (7 + 9 + 1 + 1), "keys in the sample BCD: root, Description, Objects; per object its key, Description, Elements; one key per element");

    // A BCD that names another disk fails UFD-BCD at the hop where Windows would.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(out.join("ufd.img"))
        .unwrap();
    let mut mbr = vec![0u8; 512];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut mbr, 0).unwrap();
    mbr[0x1B8] ^= 0xff;
    std::os::unix::fs::FileExt::write_all_at(&f, &mbr, 0).unwrap();
    let o = ufd(&["inspect", out.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let bcd = v["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["rule"] == "UFD-BCD")
        .unwrap()
        .clone();
    assert_eq!(bcd["outcome"], "fail");
    assert!(
        bcd["evidence"]
            .as_str()
            .unwrap()
            .contains("will not find the VHD"),
        "{bcd}"
    );
}

#[test]
fn truncated_vhd_is_reported_with_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    assert!(ufd(&["sample", "--out", out.to_str().unwrap()])
        .status
        .success());
    let vhd = out.join("hyperV.vhd");
    let len = std::fs::metadata(&vhd).unwrap().len();
    // Cut the file as an interrupted copy would, keeping a footer at the new end.
    let footer = {
        let f = std::fs::File::open(&vhd).unwrap();
        let mut b = vec![0u8; 512];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, len - 512).unwrap();
        b
    };
    let f = std::fs::OpenOptions::new().write(true).open(&vhd).unwrap();
    f.set_len(len / 2).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &footer, len / 2 - 512).unwrap();
    let o = ufd(&["inspect", vhd.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("the VHD is truncated") && err.contains(&format!("file is {} bytes", len / 2)),
        "{err}"
    );
}

/// Names with characters above ASCII: hivexregedit prints Latin-1 names as Latin-1 bytes and
/// others as UTF-8; `ufd hive export` matches it byte for byte.
#[test]
fn fixture_export_of_non_ascii_names_matches_hivex_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let hive = copy_to_temp(&fixture("hives/win10-mobile/DRIVERS"), &dir);
    let h = hive.to_str().unwrap();
    for (key, name) in [
        ("Caf\u{e9}", "d\u{e9}j\u{e0}"),
        ("\u{65e5}\u{672c}", "\u{1F30D}"),
    ] {
        let o = ufd(&["hive", "set", h, key, name, "sz", "x"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let ours = ufd(&["hive", "export", h]);
    assert!(ours.status.success(), "{}", stderr(&ours));
    let theirs = hivex(&["hivexregedit", "--export", h, "\\"]);
    assert_eq!(ours.stdout, theirs.stdout);
    assert!(
        ours.stdout.windows(5).any(|w| w == b"[\\Caf"),
        "key present"
    );
    assert!(
        ours.stdout.windows(6).any(|w| w == b"[\\Caf\xe9"),
        "Latin-1 byte, as Perl prints it"
    );
}
