//! insta snapshots (snapshots/provision__*.snap) of a provisioned synthetic image with pinned
//! disk signatures, loader GUID and hive timestamps: the bcdedit-style `\Boot\BCD`, the SYSTEM
//! keys the paging step touches (before and after), and the `ufd inspect` text.

mod common;

use common::*;
use std::path::Path;

use ufd_formats::bcd::{render::render_enum, render::RenderOptions, Guid, Store};
use ufd_formats::hive::{regtext::export_bytes, Hive};

const TOUCHED: &[&str] = &[
    "ControlSet001\\Control\\Session Manager\\Memory Management",
    "ControlSet001\\Control\\PnP",
];

fn snap(name: &str, text: &str) {
    insta::with_settings!({snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../../snapshots"), prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!(format!("provision__{name}"), text);
    });
}

fn ntfscat(part: &Path, path: &str) -> Vec<u8> {
    let mut c = tool("ntfscat", "ntfs-3g");
    c.arg(part).arg(path);
    let o = c.output().unwrap();
    assert!(o.status.success(), "ntfscat {path}");
    o.stdout
}

fn export_touched(hive: &[u8]) -> String {
    let h = Hive::parse(hive).unwrap();
    let mut out = Vec::new();
    for k in TOUCHED {
        export_bytes(&h, k, &mut out).unwrap();
    }
    String::from_utf8(out).unwrap().replace("\r\n", "\n")
}

#[test]
fn provisioned_synthetic_image() {
    let dir = tempfile::tempdir().unwrap();
    let wim = ufd_synthetic::build("hyperv-2008r2", &dir.path().join("vm"), &[])
        .unwrap()
        .wim;
    let out = dir.path().join("ufd.img");
    let mut opts = options(&wim, &out);
    opts.vhd_disk_signature = Some(0x0bad_cafe);
    opts.loader_guid = Guid::parse("{6d1f4e5a-1b2c-4d3e-8f40-5a6b7c8d9e0f}");
    opts.filetime = Some(129_000_000_000_000_000);
    opts.poll_boot_partition_timeout = Some(30_000);
    ufd_provision::provision(&opts, &mut |_| {}).unwrap();

    // (iii) ufd inspect, temp path normalised
    let ins = ufd_inspect::inspect(&out).unwrap();
    // The footer checksum covers its creation time and random unique ID: normalised (its
    // validity is judged by IMG-VHD-FIXED in the same text).
    let text = ins
        .text()
        .replace(&dir.path().display().to_string(), "<tmp>")
        .lines()
        .map(|l| match l.find(", checksum 0x") {
            Some(i) if l.contains("fixed VHD") => format!("{}, checksum <varies>", &l[..i]),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    snap("inspect", &text);

    // SYSTEM before the paging step: straight out of the WIM
    let mut c = tool("wimextract", "wimtools");
    c.arg(&wim)
        .arg("1")
        .arg("/Windows/System32/config/SYSTEM")
        .arg("--to-stdout");
    let o = c.output().unwrap();
    assert!(o.status.success());
    snap("system_before", &export_touched(&o.stdout));

    let part = dir.path().join("ufd-part");
    std::fs::rename(&out, &part).unwrap();
    collapse_to_partition(&part);

    // (i) \Boot\BCD, bcdedit /enum all /v style
    let bcd = ntfscat(&part, "/Boot/BCD");
    let store = Store::from_hive(&Hive::parse(&bcd).unwrap()).unwrap();
    snap(
        "bcd_enum_v",
        &render_enum(&store, &RenderOptions { verbose: true }),
    );

    // (ii) SYSTEM after the paging step, from the VHD's NTFS
    let vhd = dir.path().join("hyperV.vhd");
    std::fs::write(&vhd, ntfscat(&part, "/hyperV.vhd")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&vhd)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    collapse_to_partition(&vhd);
    let sys = ntfscat(&vhd, "/Windows/System32/config/SYSTEM");
    snap("system_after", &export_touched(&sys));
}

/// Hyper-V Server 2012 in a fixed VHDX: the store bcdboot's counterpart writes, with the
/// loader's `device`/`osdevice` naming `\hyperV.vhdx`.
#[test]
fn provisioned_vhdx_2012_bcd() {
    let dir = tempfile::tempdir().unwrap();
    let wim = ufd_synthetic::build("hyperv-2012", &dir.path().join("vm"), &[])
        .unwrap()
        .wim;
    let out = dir.path().join("ufd.img");
    let mut opts = options(&wim, &out);
    opts.format = ufd_provision::ImageFormat::Vhdx;
    opts.vhd_disk_signature = Some(0x0bad_cafe);
    opts.loader_guid = Guid::parse("{6d1f4e5a-1b2c-4d3e-8f40-5a6b7c8d9e12}");
    opts.filetime = Some(129_000_000_000_000_000);
    ufd_provision::provision(&opts, &mut |_| {}).unwrap();
    let part = dir.path().join("ufd-part");
    std::fs::rename(&out, &part).unwrap();
    collapse_to_partition(&part);
    let bcd = ntfscat(&part, "/Boot/BCD");
    let store = Store::from_hive(&Hive::parse(&bcd).unwrap()).unwrap();
    let text = render_enum(&store, &RenderOptions { verbose: true });
    assert!(text.contains("\\hyperV.vhdx"), "{text}");
    snap("vhdx_2012_bcd_enum_v", &text);
}
