//! Real UFD images for the walker tests, built the way the provisioner builds them: mkntfs on
//! partition files, wimlib applying a tree into NTFS, ntfscp for the VHD, mkfs.fat + mtools
//! for the UEFI system partition, an MBR spliced in front. Needs the Debian packages
//! `ntfs-3g`, `wimtools`, `dosfstools` and `mtools`.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ufd_formats::bcd::guid::well_known;
use ufd_formats::bcd::Device;
use ufd_formats::bcd::{
    DeviceElement, Element, ElementValue, Guid, Object, ObjectType, PartitionLocation, Store,
};
use ufd_formats::hive::{value_type as vt, Editor, NewHive};
use ufd_formats::mbr::{Geometry, Mbr, PartitionEntry};
use ufd_formats::vhd::{Creator, Footer};

pub const MIB: u64 = 1 << 20;
pub const UFD_SIG: u32 = 0x1DF0_2024;
pub const VHD_SIG: u32 = 0x0FE1_2024;
pub const LOADER: &str = "{7e0c5a51-4c2b-4f5e-9d3a-1b2c3d4e5f60}";
pub const VHD_BYTES: u64 = 16 * MIB;
pub const FILETIME: u64 = 130_000_000_000_000_000;
/// UEFI layout: ESP (FAT32) at 1 MiB, then the NTFS data partition.
pub const ESP_BYTES: u64 = 40 * MIB;
pub const DATA_BYTES: u64 = 32 * MIB;

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

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// What goes wrong in a test image.
#[derive(Clone, Copy, Default)]
pub struct Faults {
    pub no_vhd: bool,
    pub bcd_signature: Option<u32>,
    pub corrupt_bcd: bool,
    pub no_poll_timeout: bool,
    pub corrupt_footer: bool,
    /// PollBootPartitionTimeout other than the Hyper-V 30000 ms.
    pub poll_ms: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Layout {
    /// The seed's: one active NTFS partition with `\Boot\BCD`, `\bootmgr` and the VHD.
    Bios,
    /// `bcdboot /f UEFI`: a FAT32 ESP with `\EFI\Microsoft\Boot\BCD`, the VHD on NTFS.
    Uefi,
}

pub fn system_hive(poll: Option<u32>) -> Vec<u8> {
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
    if let Some(p) = poll {
        ed.set_value(
            "ControlSet001\\Control\\PnP",
            "PollBootPartitionTimeout",
            vt::REG_DWORD,
            &p.to_le_bytes(),
        )
        .unwrap();
    }
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
        "CmdLine",
        vt::REG_SZ,
        &utf16z("oobe\\windeploy.exe"),
    )
    .unwrap();
    ed.finish(FILETIME)
}

/// A bcdboot-like store whose default loader boots `vhd=[<sig, offset>]\hyperV.vhd`.
pub fn store(signature: u32, host_offset: u64, winload: &str) -> Store {
    let part = PartitionLocation::Mbr {
        disk_signature: signature,
        offset: host_offset,
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
        ElementValue::Device(DeviceElement::vhd(
            host.clone(),
            "\\hyperV.vhd",
            0x1200_0002,
        )),
    ));
    os.set(Element::new(0x1200_0002, s(winload)));
    os.set(Element::new(
        0x1200_0004,
        s("Microsoft Hyper-V Server 2008 R2"),
    ));
    os.set(Element::new(
        0x2100_0001,
        ElementValue::Device(DeviceElement::vhd(host, "\\hyperV.vhd", 0x2200_0002)),
    ));
    os.set(Element::new(0x2200_0002, s("\\Windows")));
    st.insert(os);
    st
}

/// An NTFS partition file holding `tree` (applied by wimlib).
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

/// A FAT32 partition file with `files` (`(path inside, host file)`; directories are made).
pub fn fat_partition(dir: &Path, name: &str, bytes: u64, files: &[(&str, &Path)]) -> PathBuf {
    let part = dir.join(name);
    File::create(&part).unwrap().set_len(bytes).unwrap();
    let p = part.to_str().unwrap();
    run(
        "mkfs.fat",
        &["-F", "32", "-S", "512", "-s", "1", "-n", "ESP", p],
        "dosfstools",
    );
    let mut made: Vec<String> = Vec::new();
    for (inside, host) in files {
        let comps: Vec<&str> = inside.split('/').filter(|c| !c.is_empty()).collect();
        for i in 1..comps.len() {
            let d = format!("::/{}", comps[..i].join("/"));
            if !made.contains(&d) {
                run("mmd", &["-i", p, &d], "mtools");
                made.push(d);
            }
        }
        run(
            "mcopy",
            &[
                "-i",
                p,
                host.to_str().unwrap(),
                &format!("::/{}", comps.join("/")),
            ],
            "mtools",
        );
    }
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

fn entry(active: bool, ty: u8, start: u64, bytes: u64) -> PartitionEntry {
    PartitionEntry::new(
        active,
        ty,
        (start / 512) as u32,
        (bytes / 512) as u32,
        Geometry::new(255, 63).unwrap(),
    )
    .unwrap()
}

pub fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// The fixed VHD: MBR + one NTFS partition with winload and the SYSTEM hive.
pub fn build_vhd(dir: &Path, faults: Faults) -> PathBuf {
    let win = dir.join("win");
    let poll = if faults.no_poll_timeout {
        None
    } else {
        Some(faults.poll_ms.unwrap_or(30000))
    };
    write(
        &win.join("Windows/System32/config/SYSTEM"),
        &system_hive(poll),
    );
    write(&win.join("Windows/System32/winload.exe"), b"MZ winload");
    write(&win.join("Windows/System32/winload.efi"), b"MZ winload efi");
    let inner = ntfs_partition(dir, "inner.part", VHD_BYTES - MIB, "HyperV", &win);
    let vhd = dir.join("hyperV.vhd");
    let f = File::create(&vhd).unwrap();
    f.set_len(VHD_BYTES + 512).unwrap();
    let mut m = Mbr::new(VHD_SIG);
    m.partitions[0] = entry(true, 0x07, MIB, VHD_BYTES - MIB);
    f.write_all_at(&m.to_bytes(), 0).unwrap();
    splice(&f, MIB, &inner);
    let footer = Footer::new_fixed(VHD_BYTES, 700_000_000, [7u8; 16], Creator::WINDOWS).unwrap();
    let mut fb = footer.to_bytes();
    if faults.corrupt_footer {
        fb[70] ^= 0xFF;
    }
    f.write_all_at(&fb, VHD_BYTES).unwrap();
    vhd
}

/// Build `ufd.img` in `dir`. `extra_esp` adds files to the ESP (UEFI layout only), e.g. the
/// probe as `EFI/BOOT/BOOTX64.EFI`.
pub fn build_ufd(
    dir: &Path,
    layout: Layout,
    faults: Faults,
    extra_esp: &[(&str, &Path)],
) -> PathBuf {
    let vhd = build_vhd(dir, faults);
    let (ntfs_off, ntfs_bytes, disk_bytes) = match layout {
        Layout::Bios => (MIB, DATA_BYTES, MIB + DATA_BYTES),
        Layout::Uefi => (MIB + ESP_BYTES, DATA_BYTES, MIB + ESP_BYTES + DATA_BYTES),
    };
    let winload = match layout {
        Layout::Bios => "\\Windows\\system32\\winload.exe",
        Layout::Uefi => "\\Windows\\system32\\winload.efi",
    };
    let mut bcd = store(faults.bcd_signature.unwrap_or(UFD_SIG), ntfs_off, winload)
        .to_hive(FILETIME)
        .unwrap();
    if faults.corrupt_bcd {
        bcd[0..4].copy_from_slice(b"XXXX");
    }
    let tree = dir.join("boot");
    std::fs::create_dir_all(&tree).unwrap();
    write(&tree.join("bootmgr"), &[0x90u8; 4096]);
    if layout == Layout::Bios {
        write(&tree.join("Boot/BCD"), &bcd);
    }
    let outer = ntfs_partition(dir, "ufd.part", ntfs_bytes, "UFD", &tree);
    if !faults.no_vhd {
        run(
            "ntfscp",
            &[
                "-q",
                outer.to_str().unwrap(),
                vhd.to_str().unwrap(),
                "hyperV.vhd",
            ],
            "ntfs-3g",
        );
    }
    let img = dir.join("ufd.img");
    let f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&img)
        .unwrap();
    f.set_len(disk_bytes).unwrap();
    let mut m = Mbr::new(UFD_SIG);
    match layout {
        Layout::Bios => m.partitions[0] = entry(true, 0x07, MIB, ntfs_bytes),
        Layout::Uefi => {
            let bcd_file = dir.join("BCD");
            std::fs::write(&bcd_file, &bcd).unwrap();
            let mut files: Vec<(&str, &Path)> =
                vec![("EFI/Microsoft/Boot/BCD", bcd_file.as_path())];
            files.extend_from_slice(extra_esp);
            let esp = fat_partition(dir, "esp.part", ESP_BYTES, &files);
            splice(&f, MIB, &esp);
            m.partitions[0] = entry(false, 0xEF, MIB, ESP_BYTES);
            m.partitions[1] = entry(true, 0x07, ntfs_off, ntfs_bytes);
        }
    }
    f.write_all_at(&m.to_bytes(), 0).unwrap();
    splice(&f, ntfs_off, &outer);
    img
}
