//! `--keep-language` on the built-in synthetic Hyper-V Server image (en-US, de-DE, ja-JP),
//! read back with ntfs-3g (`ntfsls`), hivex and `ufd-inspect`'s IMG-LANGPACKS verdict.

mod common;

use common::*;
use std::path::Path;

fn synthetic(dir: &Path) -> std::path::PathBuf {
    ufd_synthetic::build("hyperv-2008r2", &dir.join("vm"), &[])
        .expect("build the synthetic image")
        .wim
}

fn ntfscat(part: &Path, path: &str, to: &Path) {
    let f = std::fs::File::create(to).unwrap();
    let mut c = tool("ntfscat", "ntfs-3g");
    c.arg(part).arg(path).stdout(f);
    assert!(c.status().unwrap().success(), "ntfscat {path}");
}

fn ntfsls(part: &Path, dir: &str) -> Vec<String> {
    let mut c = tool("ntfsls", "ntfs-3g");
    c.arg("-p").arg(dir).arg(part);
    run(c)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && l != "." && l != "..")
        .collect()
}

#[test]
fn keep_en_us_leaves_only_en_us() {
    let dir = tempfile::tempdir().unwrap();
    let wim = synthetic(dir.path());
    let wim_before = std::fs::read(&wim).unwrap();
    let out = dir.path().join("ufd.img");
    let mut opts = options(&wim, &out);
    opts.keep_languages = vec!["en-US".into()];
    let rep = ufd_provision::provision(&opts, &mut |_| {}).unwrap();

    let l = rep.languages.as_ref().expect("language report");
    assert_eq!(l.plan.kept, ["en-US"]);
    assert_eq!(l.plan.removed, ["de-DE", "ja-JP"]);
    assert_eq!(l.plan.folders.len(), 6, "{:?}", l.plan.folders);
    assert_eq!(l.plan.files, 20);
    // vm-images/synthetic/sources/common/files.txt: the de-DE and ja-JP stand-ins.
    assert_eq!(l.plan.bytes_saved, 1_550_336 + 1_334_272);
    assert_eq!(l.hive_keys_deleted.len(), 4, "{:?}", l.hive_keys_deleted);
    assert_eq!(l.boot_folders_skipped, ["de-DE", "ja-JP"]);
    assert!(!rep.not_done.iter().any(|n| n.contains("language")));
    assert_eq!(
        std::fs::read(&wim).unwrap(),
        wim_before,
        "the WIM was modified"
    );

    // ufd-inspect: IMG-LANGPACKS passes
    let ins = ufd_inspect::inspect(&out).unwrap();
    let v = ins.verdict("IMG-LANGPACKS").expect("IMG-LANGPACKS judged");
    assert_eq!(v.outcome, ufd_formats::policy::Outcome::Pass, "{v:?}");

    // the UFD's \Boot has en-US only
    let part = dir.path().join("ufd-part");
    std::fs::rename(&out, &part).unwrap();
    collapse_to_partition(&part);
    let boot = ntfsls(&part, "/Boot");
    assert!(boot.contains(&"en-US".to_string()), "{boot:?}");
    assert!(
        !boot.iter().any(|n| n == "de-DE" || n == "ja-JP"),
        "{boot:?}"
    );

    // the VHD's NTFS: en-US only in System32, Boot\PCAT, Boot\EFI
    let vhd = dir.path().join("hyperV.vhd");
    ntfscat(&part, "/hyperV.vhd", &vhd);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&vhd)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    collapse_to_partition(&vhd);
    for d in [
        "/Windows/System32",
        "/Windows/Boot/PCAT",
        "/Windows/Boot/EFI",
    ] {
        let names = ntfsls(&vhd, d);
        let langs: Vec<&String> = names
            .iter()
            .filter(|n| ufd_provision::language::is_language_tag(n))
            .collect();
        assert_eq!(langs, ["en-US"], "{d}: {names:?}");
    }
    assert!(ntfsls(&vhd, "/Windows/System32/en-US").contains(&"ntoskrnl.exe.mui".to_string()));

    // the SYSTEM hive, by hivex: only en-US registered
    let sys = dir.path().join("SYSTEM");
    ntfscat(&vhd, "/Windows/System32/config/SYSTEM", &sys);
    let mut c = tool("hivexregedit", "libwin-hivex-perl");
    c.args(["--export", "--prefix", "HKLM\\SYSTEM"])
        .arg(&sys)
        .arg("\\ControlSet001\\Control\\MUI\\UILanguages");
    let reg = run(c);
    assert!(reg.contains("UILanguages\\en-US]"), "{reg}");
    assert!(!reg.contains("de-DE") && !reg.contains("ja-JP"), "{reg}");
}

#[test]
fn a_language_the_image_lacks_is_an_error_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let wim = synthetic(dir.path());
    let out = dir.path().join("ufd.img");
    let mut opts = options(&wim, &out);
    opts.keep_languages = vec!["en-US".into(), "fr-FR".into()];
    let mut started = Vec::new();
    let e = ufd_provision::provision(&opts, &mut |e| {
        if let ufd_provision::Event::Started(s) = e {
            started.push(s)
        }
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("fr-FR") && e.contains("de-DE, en-US, ja-JP"),
        "{e}"
    );
    assert_eq!(started, [ufd_provision::Step::Preflight]);
    assert!(!out.exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn the_install_language_cannot_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let wim = synthetic(dir.path());
    let out = dir.path().join("ufd.img");
    let mut opts = options(&wim, &out);
    opts.keep_languages = vec!["de-DE".into()];
    opts.locale = "de-DE".into();
    let e = ufd_provision::provision(&opts, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("install language") && e.contains("en-US"), "{e}");
    assert!(!out.exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn the_bcd_locale_must_be_kept() {
    let dir = tempfile::tempdir().unwrap();
    let wim = synthetic(dir.path());
    let out = dir.path().join("ufd.img");
    let mut opts = options(&wim, &out);
    opts.keep_languages = vec!["ja-JP".into()];
    let e = ufd_provision::provision(&opts, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("--locale en-US"), "{e}");
    assert!(!out.exists());
}
