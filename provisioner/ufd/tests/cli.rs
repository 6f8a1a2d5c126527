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

fn ufd_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ufd"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run ufd")
}

fn verdicts(o: &Output) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)));
    v
}

fn outcome(report: &serde_json::Value, rule: &str) -> String {
    report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["rule"] == rule)
        .unwrap_or_else(|| panic!("{rule}"))["outcome"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The README's main job, minus the build: provision the seed's full-size UFD (16 GB image,
/// 12288 MiB VHD, sparse on the host) from the built-in synthetic image, then inspect it.
#[test]
fn provision_full_seed_size_then_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let img = dir.path().join("ufd.img");
    let env = [("UFD_SYNTHETIC_CACHE", cache.as_path())];
    let o = ufd_env(
        &[
            "provision",
            "--out",
            img.to_str().unwrap(),
            "--disk-signature",
            "0x55464431",
            "--json",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(report.is_object(), "{report}");
    // The seed's own sizes miss its 25% reserve: a warning, not an error.
    assert!(stderr(&o).contains("UFD-WEAR-RESERVE"), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 16_000_000_000);

    let o = ufd(&["inspect", img.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = verdicts(&o);
    for rule in [
        "UFD-CAPACITY",
        "UFD-LAYOUT",
        "UFD-BOOTCODE",
        "UFD-BCD",
        "IMG-VHD-FIXED",
        "IMG-GENERALIZED",
        "IMG-PAGING-OFF",
        "IMG-BOOT-DEVICE-WAIT",
        "IMG-USB-BOOT-DRIVERS",
    ] {
        assert_eq!(outcome(&v, rule), "pass", "{rule}: {v}");
    }
    assert_eq!(outcome(&v, "UFD-WEAR-RESERVE"), "warn");
    assert_eq!(
        outcome(&v, "IMG-LANGPACKS"),
        "warn",
        "de-DE and ja-JP are not the BCD locale"
    );
    assert_eq!(outcome(&v, "UFD-NONREMOVABLE"), "not-judged");
    assert_eq!(
        v["verdicts"].as_array().unwrap().len(),
        21,
        "every rule is reported once"
    );

    // A UFD whose disk signature no longer matches the BCD fails UFD-BCD at the hop where the
    // boot manager would: it cannot find the partition that holds the VHD.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let mut mbr = vec![0u8; 512];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut mbr, 0).unwrap();
    mbr[0x1B8] ^= 0xff;
    std::os::unix::fs::FileExt::write_all_at(&f, &mbr, 0).unwrap();
    let o = ufd(&["inspect", img.to_str().unwrap(), "--json"]);
    assert_eq!(outcome(&verdicts(&o), "UFD-BCD"), "fail");
}

/// Windows Server 2008 R2 leaves PollBootPartitionTimeout unset: a requirement fails, and
/// `ufd inspect` exits 3.
#[test]
fn provision_ws2008r2_then_inspect_fails_the_boot_device_wait() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let img = dir.path().join("ws.img");
    let env = [("UFD_SYNTHETIC_CACHE", cache.as_path())];
    let o = ufd_env(
        &[
            "provision",
            "--synthetic",
            "ws2008r2",
            "--out",
            img.to_str().unwrap(),
            "--size",
            "512M",
            "--vhd-size",
            "256M",
            "--no-policy-preflight",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ufd(&["inspect", img.to_str().unwrap(), "--json"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "a failed requirement exits 3: {}",
        stderr(&o)
    );
    let v = verdicts(&o);
    assert_eq!(outcome(&v, "IMG-BOOT-DEVICE-WAIT"), "fail");
    assert_eq!(outcome(&v, "UFD-CAPACITY"), "fail", "512 MB is below 8 GB");
    assert_eq!(outcome(&v, "IMG-PAGING-OFF"), "pass");
}

/// Bad input never leaves anything under the output name.
#[test]
fn provision_refuses_a_missing_wim_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("out.img");
    let o = ufd(&[
        "provision",
        "--wim",
        dir.path().join("absent.wim").to_str().unwrap(),
        "--out",
        img.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("absent.wim"), "{}", stderr(&o));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
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
