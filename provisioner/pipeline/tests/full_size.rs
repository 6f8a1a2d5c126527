//! The seed's sizes: a 12 GiB fixed VHD on a 16 GiB UFD, sparse on the host.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;

#[test]
fn seed_size_image() {
    let dir = tempfile::tempdir().unwrap();
    let wim = make_wim(dir.path(), true, 0);
    let out = dir.path().join("ufd16.img");
    let mut o = ufd_provision::ProvisionOptions::seed(&wim, &out);
    o.ufd_size = 16 << 30;
    let rep = ufd_provision::provision(&o, &mut |_| {}).unwrap();
    assert!(rep.preflight.enforced);
    // 12 GiB + footer on 16 GiB is a hair over 75%: a warning, not an error
    assert!(
        rep.warnings
            .iter()
            .any(|w| w.starts_with("UFD-WEAR-RESERVE")),
        "{:?}",
        rep.warnings
    );
    let m = std::fs::metadata(&out).unwrap();
    assert_eq!(m.len(), 16 << 30);
    assert!(
        m.blocks() * 512 < 512 << 20,
        "output not sparse: {} bytes allocated",
        m.blocks() * 512
    );
    assert_eq!(rep.vhd_placement.data_size, (12u64 << 30) + 512);
    assert!(
        rep.vhd_placement.runs.len() >= 2,
        "{:?}",
        rep.vhd_placement.runs
    );
    assert!(rep.vhd_placement.runs.iter().all(|r| r.lcn.is_some()));
    assert!(leftovers(dir.path()).is_empty());

    let part = dir.path().join("p");
    std::fs::rename(&out, &part).unwrap();
    collapse_to_partition(&part);
    let mut c = tool("ntfsinfo", "ntfs-3g");
    c.args(["-v", "-F", "/hyperV.vhd"]).arg(&part);
    let info = run(c);
    assert!(
        !info.contains("SPARSE") && !info.contains("<HOLE>"),
        "{info}"
    );
    let size = ((12u64 << 30) + 512).to_string();
    let vdl = info
        .lines()
        .find(|l| l.contains("Initialized size"))
        .unwrap_or_default();
    assert!(vdl.contains(&size), "{vdl}");
    let mut c = tool("ntfsinfo", "ntfs-3g");
    c.args(["-F", "/Boot/BCD"]).arg(&part);
    run(c);
}
