//! Shared helpers: a tiny Windows-shaped WIM captured with `wimcapture` from a temp tree, and
//! independent read-back with tools we did not write (sfdisk, util-linux fallocate, ntfs-3g,
//! hivex, qemu-img).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ufd_formats::bcd::Store;
use ufd_formats::hive::{value_type as vt, Editor, NewHive};

pub fn tool(name: &str, package: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
                .any(|d| d.join(name).is_file())
        })
        .unwrap_or(false);
    assert!(
        found,
        "`{name}` is missing: install the Debian package {package}"
    );
    let mut c = Command::new(name);
    c.env("LC_ALL", "C");
    c
}

pub fn run(mut c: Command) -> String {
    let o = c.output().expect("spawn");
    assert!(
        o.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn msz(items: &[&str]) -> Vec<u8> {
    let mut v: Vec<u8> = items
        .iter()
        .flat_map(|s| s.encode_utf16().chain([0]).flat_map(u16::to_le_bytes))
        .collect();
    v.extend([0, 0]);
    v
}

fn sz(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// A SYSTEM hive shaped like Hyper-V Server 2008 R2's before step 6 (paging on).
pub fn system_hive() -> Vec<u8> {
    let mut ed = Editor::new_hive(&NewHive {
        root_name: "SYSTEM".into(),
        ..NewHive::default()
    })
    .unwrap();
    ed.create_key("Select").unwrap();
    for (n, v) in [
        ("Current", 1u32),
        ("Default", 1),
        ("Failed", 0),
        ("LastKnownGood", 1),
    ] {
        ed.set_value("Select", n, vt::REG_DWORD, &v.to_le_bytes())
            .unwrap();
    }
    let mm = "ControlSet001\\Control\\Session Manager\\Memory Management";
    ed.create_key(mm).unwrap();
    ed.set_value(
        mm,
        "PagingFiles",
        vt::REG_MULTI_SZ,
        &msz(&["?:\\pagefile.sys"]),
    )
    .unwrap();
    ed.set_value(
        mm,
        "ExistingPageFiles",
        vt::REG_MULTI_SZ,
        &msz(&["\\??\\C:\\pagefile.sys"]),
    )
    .unwrap();
    let env = "ControlSet001\\Control\\Session Manager\\Environment";
    ed.create_key(env).unwrap();
    ed.set_value(env, "PROCESSOR_ARCHITECTURE", vt::REG_SZ, &sz("AMD64"))
        .unwrap();
    ed.create_key("ControlSet001\\Control\\PnP").unwrap();
    ed.set_value(
        "ControlSet001\\Control\\PnP",
        "PollBootPartitionTimeout",
        vt::REG_DWORD,
        &30000u32.to_le_bytes(),
    )
    .unwrap();
    ed.set_value(
        "ControlSet001\\Control",
        "BootDriverFlags",
        vt::REG_DWORD,
        &4u32.to_le_bytes(),
    )
    .unwrap();
    for s in ["usbehci", "usbohci", "usbuhci", "usbhub", "usbstor"] {
        let k = format!("ControlSet001\\Services\\{s}");
        ed.create_key(&k).unwrap();
        ed.set_value(&k, "Start", vt::REG_DWORD, &0u32.to_le_bytes())
            .unwrap();
    }
    ed.finish(0)
}

fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Build the tree and capture it. `template` adds a BCD-Template; `payload` adds that many
/// bytes of incompressible data (for ENOSPC tests).
pub fn make_wim(dir: &Path, template: bool, payload: usize) -> PathBuf {
    let t = dir.join("tree");
    let w = |rel: &str, data: &[u8]| {
        let p = t.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    w("Windows/System32/config/SYSTEM", &system_hive());
    w(
        "Windows/System32/config/SOFTWARE",
        &Editor::new_hive(&NewHive::default()).unwrap().finish(0),
    );
    w(
        "Windows/System32/winload.exe",
        &[b"MZ winload".as_slice(), &pseudo_random(20000, 1)].concat(),
    );
    w("Windows/System32/en-US/winload.exe.mui", b"MZ mui");
    w("Windows/System32/de-DE/winload.exe.mui", b"MZ mui de");
    w("Windows/Boot/PCAT/bootmgr", &pseudo_random(383_786, 2));
    w("Windows/Boot/PCAT/memtest.exe", &pseudo_random(50_000, 3));
    w(
        "Windows/Boot/PCAT/en-US/bootmgr.exe.mui",
        &pseudo_random(3000, 4),
    );
    w(
        "Windows/Boot/PCAT/de-DE/bootmgr.exe.mui",
        &pseudo_random(3000, 5),
    );
    w(
        "Windows/Boot/Fonts/wgl4_boot.ttf",
        &pseudo_random(40_000, 6),
    );
    if template {
        let mut st = Store::new();
        st.root_name = "System".into();
        let mut os = ufd_formats::bcd::Object::new(
            ufd_provision::bcd::OS_TEMPLATE_PCAT,
            ufd_formats::bcd::ObjectType::OSLOADER,
        );
        os.set(ufd_formats::bcd::Element::new(
            0x1200_0004,
            ufd_formats::bcd::ElementValue::String("Hyper-V Server (template)".into()),
        ));
        st.insert(os);
        let mut g = ufd_formats::bcd::Object::new(
            ufd_formats::bcd::guid::well_known::GLOBALSETTINGS,
            ufd_formats::bcd::ObjectType::INHERIT_LIBRARY,
        );
        g.set(ufd_formats::bcd::Element::new(
            0x1400_0006,
            ufd_formats::bcd::ElementValue::ObjectList(vec![
                ufd_formats::bcd::guid::well_known::DBGSETTINGS,
            ]),
        ));
        st.insert(g);
        w(
            "Windows/System32/config/BCD-Template",
            &st.to_hive(0).unwrap(),
        );
    }
    if payload > 0 {
        w("Program Files/payload.bin", &pseudo_random(payload, 7));
    }
    let wim = dir.join("test.wim");
    let mut c = tool("wimcapture", "wimtools");
    c.arg(&t)
        .arg(&wim)
        .arg("Hyper-V Server")
        .arg("--compress=none");
    run(c);
    wim
}

pub fn options(wim: &Path, out: &Path) -> ufd_provision::ProvisionOptions {
    let mut o = ufd_provision::ProvisionOptions::seed(wim, out);
    o.vhd_size = 256 << 20;
    o.ufd_size = 512 << 20;
    o.policy_preflight = false;
    o.disk_signature = Some(0x1234_5678);
    o
}

/// Only `out` (and what the test put there) may be in `dir`: no temp leftovers.
pub fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("ufd-tmp"))
        .collect()
}

/// Turn a whole-disk image into its first partition (at 1 MiB) in place with util-linux's
/// `fallocate --collapse-range` (zero copy; an independent tool).
pub fn collapse_to_partition(img: &Path) {
    let mut c = tool("fallocate", "util-linux");
    c.args(["--collapse-range", "--offset", "0", "--length", "1MiB"])
        .arg(img);
    run(c);
}
