//! Bad input stops with a one-line error naming the file or the rule, and leaves nothing named
//! `--out` (and no temporary files) behind.

mod common;

use common::*;
use ufd_provision::{provision, ProvisionError};

fn fails(opts: &ufd_provision::ProvisionOptions) -> ProvisionError {
    let e = provision(opts, &mut |_| {}).unwrap_err();
    let dir = opts.out.parent().unwrap();
    assert!(
        !opts.out.exists(),
        "{} left behind after: {e}",
        opts.out.display()
    );
    assert!(
        leftovers(dir).is_empty(),
        "temp files left after {e}: {:?}",
        leftovers(dir)
    );
    assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
    e
}

#[test]
fn missing_wim() {
    let dir = tempfile::tempdir().unwrap();
    let wim = dir.path().join("nope.wim");
    let e = fails(&options(&wim, &dir.path().join("o.img"))).to_string();
    assert!(
        e.contains("nope.wim") && e.contains("cannot read the WIM"),
        "{e}"
    );
}

#[test]
fn corrupt_wim() {
    let dir = tempfile::tempdir().unwrap();
    let wim = dir.path().join("bad.wim");
    std::fs::write(&wim, vec![0x42u8; 4096]).unwrap();
    let e = fails(&options(&wim, &dir.path().join("o.img"))).to_string();
    assert!(
        e.contains("bad.wim") && e.contains("not a usable WIM") && e.contains("wiminfo"),
        "{e}"
    );
}

#[test]
fn wrong_index() {
    let dir = tempfile::tempdir().unwrap();
    let wim = make_wim(dir.path(), false, 0);
    let mut o = options(&wim, &dir.path().join("o.img"));
    o.index = 2;
    let e = fails(&o).to_string();
    assert!(
        e.contains("index 2 does not exist") && e.contains("1 image"),
        "{e}"
    );
}

#[test]
fn ufd_too_small_for_the_vhd_names_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let wim = make_wim(dir.path(), false, 0);
    let mut o = options(&wim, &dir.path().join("o.img"));
    o.ufd_size = 256 << 20;
    let e = fails(&o);
    assert_eq!(e.rule(), Some("UFD-WEAR-RESERVE"), "{e}");
    assert!(e.to_string().contains("does not fit"), "{e}");
}

#[test]
fn capacity_requirement_is_enforced_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let wim = make_wim(dir.path(), false, 0);
    let mut o = options(&wim, &dir.path().join("o.img"));
    o.policy_preflight = true;
    let e = fails(&o);
    assert_eq!(e.rule(), Some("UFD-CAPACITY"), "{e}");
    assert!(e.to_string().contains("below the 8 GB minimum"), "{e}");
}

#[test]
fn strict_turns_the_wear_reserve_into_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let wim = make_wim(dir.path(), false, 0);
    // the seed's own sizes: 12 GiB on a 16 GB stick leaves 19.47%, below the 25% reserve
    let mut o = ufd_provision::ProvisionOptions::seed(&wim, dir.path().join("o.img"));
    o.strict = true;
    let e = fails(&o);
    assert_eq!(e.rule(), Some("UFD-WEAR-RESERVE"), "{e}");
    // not strict: a warning, and the preflight passes
    o.strict = false;
    let mut warnings = Vec::new();
    let pre = ufd_provision::preflight(&o, &mut |w| warnings.push(w)).unwrap();
    assert!(pre.enforced);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("UFD-WEAR-RESERVE") && w.contains("19.")),
        "{warnings:?}"
    );
}

#[test]
fn image_without_bootmgr_fails_mid_pipeline_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("tree/Windows/System32/config");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(t.join("SYSTEM"), system_hive()).unwrap();
    let wim = dir.path().join("nobootmgr.wim");
    let mut c = tool("wimcapture", "wimtools");
    c.arg(dir.path().join("tree")).arg(&wim);
    run(c);
    let mut seen = Vec::new();
    let e = provision(&options(&wim, &dir.path().join("o.img")), &mut |ev| {
        seen.push(format!("{ev:?}"))
    });
    let e = e.unwrap_err();
    assert!(
        e.to_string().contains("no \\Windows\\Boot\\PCAT\\bootmgr"),
        "{e}"
    );
    assert!(
        seen.iter().any(|s| s.contains("CopyVhd")),
        "failure should come after the VHD copy: {seen:?}"
    );
    assert!(!dir.path().join("o.img").exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn image_without_system_hive_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("tree/Windows/Boot/PCAT");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(t.join("bootmgr"), b"x").unwrap();
    let wim = dir.path().join("nosystem.wim");
    let mut c = tool("wimcapture", "wimtools");
    c.arg(dir.path().join("tree")).arg(&wim);
    run(c);
    let e = fails(&options(&wim, &dir.path().join("o.img"))).to_string();
    assert!(e.contains("disable paging") && e.contains("ntfscat"), "{e}");
}
