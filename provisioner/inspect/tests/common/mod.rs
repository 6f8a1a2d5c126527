//! Shared by the image tests: building UFD images the way the provisioner builds them
//! (mkntfs on partition files, wimlib applying a tree into NTFS, ntfscp for the container,
//! an MBR spliced in front). Needs Debian `ntfs-3g` and `wimtools`.
#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ufd_formats::bcd::guid::well_known;
use ufd_formats::bcd::{
    Device, DeviceElement, Element, ElementValue, Guid, Object, ObjectType, PartitionLocation,
    Store,
};
use ufd_formats::hive::{value_type as vt, Editor, NewHive};
use ufd_formats::mbr::{Geometry, Mbr, PartitionEntry};
use ufd_formats::policy::Outcome;
use ufd_inspect::Report;

pub const MIB: u64 = 1 << 20;
pub const UFD_SIG: u32 = 0x1DF0_2024;
pub const VHD_SIG: u32 = 0x0FE1_2024;
pub const LOADER: &str = "{7e0c5a51-4c2b-4f5e-9d3a-1b2c3d4e5f60}";
/// Disk, VHD and partition sizes: small, so tests are fast (the UFD is far below 8 GB, so
/// UFD-CAPACITY fails: that is also the exit-code test).
pub const UFD_BYTES: u64 = 64 * MIB;
pub const VHD_BYTES: u64 = 24 * MIB;
pub const FILETIME: u64 = 130_000_000_000_000_000;

pub fn run(cmd: &str, args: &[&str], package: &str) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}: install the Debian package {package}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}
pub fn system_hive() -> Vec<u8> {
    let mut ed = Editor::new_hive(&NewHive {
        root_name: "SYSTEM".into(),
        ..NewHive::default()
    })
    .unwrap();
    ed.create_key("Select").unwrap();
    for n in ["Current", "Default"] {
        ed.set_value("Select", n, vt::REG_DWORD, &1u32.to_le_bytes())
            .unwrap();
    }
    let mm = "ControlSet001\\Control\\Session Manager\\Memory Management";
    ed.create_key(mm).unwrap();
    ed.set_value(mm, "PagingFiles", vt::REG_MULTI_SZ, &[0, 0, 0, 0])
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
    ed.create_key("ControlSet001\\Services\\usbstor").unwrap();
    ed.set_value(
        "ControlSet001\\Services\\usbstor",
        "Start",
        vt::REG_DWORD,
        &3u32.to_le_bytes(),
    )
    .unwrap();
    ed.create_key("Setup").unwrap();
    ed.set_value(
        "Setup",
        "SystemSetupInProgress",
        vt::REG_DWORD,
        &1u32.to_le_bytes(),
    )
    .unwrap();
    ed.set_value(
        "Setup",
        "CmdLine",
        vt::REG_SZ,
        &utf16z("oobe\\windeploy.exe"),
    )
    .unwrap();
    ed.finish(FILETIME)
}

/// A store whose default loader boots `vhd=[<signature, 1 MiB>]file` (device and osdevice).
pub fn store(signature: u32, file: &str) -> Store {
    let part = PartitionLocation::Mbr {
        disk_signature: signature,
        offset: MIB,
    };
    let loader = Guid::parse(LOADER).unwrap();
    let s = |t: &str| ElementValue::String(t.into());
    let mut st = Store::new();
    let mut bm = Object::new(well_known::BOOTMGR, ObjectType::BOOTMGR);
    bm.set(Element::new(
        0x1100_0001,
        ElementValue::Device(DeviceElement::partition(part)),
    ));
    bm.set(Element::new(0x1200_0004, s("Windows Boot Manager")));
    bm.set(Element::new(0x1200_0005, s("en-US")));
    bm.set(Element::new(0x2300_0003, ElementValue::Object(loader)));
    bm.set(Element::new(
        0x2400_0001,
        ElementValue::ObjectList(vec![loader]),
    ));
    st.insert(bm);
    let host = Device::Partition(part);
    let mut os = Object::new(loader, ObjectType::OSLOADER);
    os.set(Element::new(
        0x1100_0001,
        ElementValue::Device(DeviceElement::vhd(host.clone(), file, 0x1200_0002)),
    ));
    os.set(Element::new(
        0x1200_0002,
        s("\\Windows\\system32\\winload.exe"),
    ));
    os.set(Element::new(
        0x1200_0004,
        s("Microsoft Hyper-V Server 2008 R2"),
    ));
    os.set(Element::new(0x1200_0005, s("en-US")));
    os.set(Element::new(
        0x2100_0001,
        ElementValue::Device(DeviceElement::vhd(host, file, 0x2200_0002)),
    ));
    os.set(Element::new(0x2200_0002, s("\\Windows")));
    st.insert(os);
    st
}

/// An NTFS partition file holding `tree` (applied by wimlib, as the provisioner applies the WIM).
pub fn ntfs_partition(dir: &Path, name: &str, bytes: u64, label: &str, tree: &Path) -> PathBuf {
    let part = dir.join(name);
    File::create(&part).unwrap().set_len(bytes).unwrap();
    let p = part.to_str().unwrap();
    run(
        "mkntfs",
        &[
            "-F", "-Q", "-q", "-s", "512", "-p", "2048", "-H", "255", "-S", "63", "-L", label, p,
        ],
        "ntfs-3g",
    );
    let wim = dir.join(format!("{name}.wim"));
    let w = wim.to_str().unwrap();
    run(
        "wimlib-imagex",
        &[
            "capture",
            tree.to_str().unwrap(),
            w,
            "--compress=none",
            "--no-acls",
        ],
        "wimtools",
    );
    run("wimlib-imagex", &["apply", w, "1", p], "wimtools");
    part
}

/// Copy `part` into `disk` at `offset`, leaving zero blocks as holes (images stay sparse).
pub fn splice(disk: &File, offset: u64, part: &Path) {
    let mut src = File::open(part).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    loop {
        let n = src.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            disk.write_all_at(&buf[..n], offset + pos).unwrap();
        }
        pos += n as u64;
    }
}

pub fn mbr(signature: u32, disk_bytes: u64, active: bool) -> [u8; 512] {
    let mut m = Mbr::new(signature);
    let sectors = (disk_bytes - MIB) / 512;
    m.partitions[0] = PartitionEntry::new(
        active,
        0x07,
        2048,
        sectors as u32,
        Geometry::new(255, 63).unwrap(),
    )
    .unwrap();
    m.to_bytes()
}

pub fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}
/// The Windows volume's files the rules read: SYSTEM, BCD-Template, State.ini (generalized
/// unless `specialized`), winload and two language folders (en-US, de-DE).
pub fn windows_tree(win: &Path, system: &[u8], specialized: bool) {
    write(&win.join("Windows/System32/config/SYSTEM"), system);
    write(
        &win.join("Windows/System32/config/BCD-Template"),
        &Store::new().to_hive(FILETIME).unwrap(),
    );
    let state = if specialized {
        "IMAGE_STATE_COMPLETE"
    } else {
        "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"
    };
    write(
        &win.join("Windows/Setup/State/State.ini"),
        format!("[State]\r\nImageState={state}\r\n").as_bytes(),
    );
    write(
        &win.join("Windows/System32/en-US/winload.exe.mui"),
        &[1u8; 3000],
    );
    write(
        &win.join("Windows/System32/de-DE/winload.exe.mui"),
        &[2u8; 5000],
    );
    write(&win.join("Windows/System32/winload.exe"), b"MZ");
}

pub fn outcome(r: &Report, rule: &str) -> Outcome {
    r.verdict(rule)
        .unwrap_or_else(|| panic!("{rule} missing"))
        .outcome
}

pub fn evidence(r: &Report, rule: &str) -> String {
    r.verdict(rule).unwrap().evidence.clone()
}
