//! `--format vhdx` end to end at a small size, read back only with tools we did not write:
//! ntfs-3g takes `\hyperV.vhdx` off the UFD, qemu-img checks it and converts it to raw, ntfs-3g
//! and hivex read the Windows volume inside; and the BCD names the `.vhdx`.

mod common;

use common::*;
use std::path::Path;

#[test]
fn vhdx_image_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let wim = make_wim(dir.path(), true, 0);
    let out = dir.path().join("ufd.img");
    let mut opts = options(&wim, &out);
    opts.format = ufd_provision::ImageFormat::Vhdx;
    let rep = ufd_provision::provision(&opts, &mut |_| {}).unwrap();
    assert!(leftovers(dir.path()).is_empty());
    let assemble = rep
        .steps
        .iter()
        .find(|s| format!("{:?}", s.step) == "AssembleVhd")
        .expect("AssembleVhd step");
    assert!(assemble.detail.contains("VHDX"), "{}", assemble.detail);

    // The UFD's NTFS holds \hyperV.vhdx, non-sparse.
    let part = dir.path().join("part.img");
    std::fs::copy(&out, &part).unwrap();
    collapse_to_partition(&part);
    let mut c = tool("ntfsinfo", "ntfs-3g");
    c.args(["-v", "-F", "/hyperV.vhdx"]).arg(&part);
    let info = run(c);
    assert!(!info.contains("SPARSE"), "{info}");
    assert!(!info.contains("<HOLE>"), "{info}");

    // qemu-img: a valid, fixed VHDX of the asked virtual size.
    let vhdx = dir.path().join("hyperV.vhdx");
    let f = std::fs::File::create(&vhdx).unwrap();
    let mut c = tool("ntfscat", "ntfs-3g");
    c.arg(&part).arg("/hyperV.vhdx").stdout(f);
    assert!(c.status().unwrap().success());
    let mut c = tool("qemu-img", "qemu-utils");
    c.args(["check", "-f", "vhdx"]).arg(&vhdx);
    run(c);
    let mut c = tool("qemu-img", "qemu-utils");
    c.args(["info", "--output=json", "-f", "vhdx"]).arg(&vhdx);
    let j: serde_json::Value = serde_json::from_str(&run(c)).unwrap();
    assert_eq!(j["virtual-size"], 256u64 << 20);
    // Our reader agrees it is fixed.
    let bytes = std::fs::read(&vhdx).unwrap();
    let mut r = &bytes[..];
    let v = ufd_formats::vhdx::Vhdx::open(&mut r).unwrap();
    assert!(v.is_fixed(), "{v}");

    // The Windows volume inside, through qemu-img's raw conversion.
    let raw = dir.path().join("inner.raw");
    let mut c = tool("qemu-img", "qemu-utils");
    c.args(["convert", "-f", "vhdx", "-O", "raw"])
        .arg(&vhdx)
        .arg(&raw);
    run(c);
    collapse_to_partition(&raw);
    let hive = dir.path().join("SYSTEM");
    let f = std::fs::File::create(&hive).unwrap();
    let mut c = tool("ntfscat", "ntfs-3g");
    c.arg(&raw).arg("/Windows/System32/config/SYSTEM").stdout(f);
    assert!(c.status().unwrap().success());
    let mut c = tool("hivexget", "libhivex-bin");
    c.arg(&hive)
        .arg("\\ControlSet001\\Control\\Session Manager\\Memory Management")
        .arg("PagingFiles");
    assert_eq!(run(c).trim(), "", "paging disabled inside the VHDX");

    // The BCD's loader names the .vhdx.
    let bcd = dir.path().join("BCD");
    let f = std::fs::File::create(&bcd).unwrap();
    let mut c = tool("ntfscat", "ntfs-3g");
    c.arg(&part).arg("/Boot/BCD").stdout(f);
    assert!(c.status().unwrap().success());
    let store = std::fs::read(&bcd).unwrap();
    let text = String::from_utf16_lossy(
        &store
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect::<Vec<_>>(),
    );
    assert!(text.contains("\\hyperV.vhdx"), "the BCD must name the VHDX");
    assert!(!Path::new(&out).with_extension("vhdx").exists());
}
