//! `ufd sample --out DIR`: the built-in sample artefacts behind `cargo xtask demo`.
//!
//! Until the provisioner lands (it applies a real WIM into a real NTFS volume), the demo shows
//! every format this project writes, shaped exactly as the seed's procedure shapes them:
//!
//! | file | seed step | what it is |
//! |---|---|---|
//! | `ufd.img` | 3 (diskpart: clean, create partition primary, active) | a 16 GB sparse UFD image: MBR, one active type-07 partition at 1 MiB spanning the device |
//! | `hyperV.vhd` | 1 (diskpart: create vdisk maximum=12288 type=fixed, create partition primary) | a 12 GiB sparse fixed VHD: inner MBR, one partition at 1 MiB, DiskPart-style footer |
//! | `BCD` | 5 (bcdboot) | a store whose `{bootmgr}` lives on the UFD partition and whose default loader boots `vhd=[UFD partition]\hyperV.vhd` |
//! | `SYSTEM` | 6 (reg add / reg delete) | a SYSTEM-shaped hive holding what Hyper-V Server ships (PollBootPartitionTimeout 30000, USB drivers at boot), then edited in place to disable paging |
//!
//! Not here yet (and reported by `ufd inspect` as not judged, never as passed): NTFS file
//! systems, the applied image, boot code (bootsect) and the boot files.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use ufd_formats::bcd::guid::well_known;
use ufd_formats::bcd::{
    DeviceElement, Element, ElementValue, Guid, Object, ObjectType, PartitionLocation, Store,
};
use ufd_formats::hive::{value_type as vt, Editor, NewHive};
use ufd_formats::mbr::{Geometry, Mbr, PartitionEntry};
use ufd_formats::vhd::{unix_to_vhd_timestamp, Creator, Footer};

use crate::fsutil::{filetime_now, write_atomic};
use crate::CliError;

/// The sample UFD: 16 x 10^9 bytes, what a "16 GB" stick is sold as.
pub const UFD_BYTES: u64 = 16_000_000_000;
/// The seed's VHD: `maximum=12288` (MiB).
pub const VHD_BYTES: u64 = 12288 * 1024 * 1024;
/// Fixed disk signatures, so the sample and its inspection are reproducible.
pub const UFD_SIGNATURE: u32 = 0x5546_4431; // "1DFU" in the MBR's little-endian bytes
pub const VHD_SIGNATURE: u32 = 0x5648_4431;
/// DiskPart (Windows 7+) aligns the first partition at 1 MiB.
pub const PARTITION_LBA: u32 = 2048;
/// The sample's OS loader object.
pub const LOADER: &str = "{6f1d3e9c-2b0a-4c8e-9a57-0d2c8a1f5e21}";

fn e(from: impl std::fmt::Display) -> CliError {
    CliError::other(from.to_string())
}

fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    // The kernel's CSPRNG; a failure here leaves zeros, which only makes the id less unique.
    if let Ok(mut f) = File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b
}

/// A sparse disk image: `size` bytes, `sector0` at offset 0, `tail` at the end.
fn write_sparse_image(path: &Path, size: u64, sector0: &[u8], tail: &[u8]) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.ufd-tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.set_len(size)?;
        f.write_all(sector0)?;
        f.seek(SeekFrom::Start(size - tail.len() as u64))?;
        f.write_all(tail)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|err| {
        let _ = std::fs::remove_file(&tmp);
        CliError::io(path, err)
    })
}

fn one_partition_mbr(signature: u32, disk_bytes: u64, active: bool) -> Result<Mbr, CliError> {
    let sectors = u32::try_from(disk_bytes / 512 - u64::from(PARTITION_LBA)).map_err(e)?;
    let mut mbr = Mbr::new(signature);
    // 255 heads x 63 sectors: what DiskPart and the BIOS translate a large USB disk to.
    let geometry = Geometry::new(255, 63).map_err(e)?;
    mbr.partitions[0] =
        PartitionEntry::new(active, 0x07, PARTITION_LBA, sectors, geometry).map_err(e)?;
    Ok(mbr)
}

/// The store bcdboot would leave on the UFD for the seed (BIOS): the elements of
/// formats.md §1.7.1 that the seed's boot needs. `{bootmgr}` and the loader are the ones
/// bcdboot writes [V: real Windows 7 stores]; `hypervisorlaunchtype Auto` on the loader is
/// reconstructed (Hyper-V Server needs the hypervisor launched; whether bcdboot or first boot
/// sets it is not verified).
pub fn seed_store() -> Result<Store, CliError> {
    let ufd_partition = PartitionLocation::Mbr {
        disk_signature: UFD_SIGNATURE,
        offset: u64::from(PARTITION_LBA) * 512,
    };
    let loader = Guid::parse(LOADER).ok_or_else(|| e("bad built-in loader GUID"))?;
    let mut store = Store::new();
    // A system store (bcdboot's), not a /createstore one: KeyName BCD00000000, System = 1.
    store.description = vec![
        ufd_formats::bcd::RawValue {
            name: "KeyName".into(),
            value_type: vt::REG_SZ,
            data: ufd_formats::bcd::element::encode_sz("BCD00000000"),
        },
        ufd_formats::bcd::RawValue {
            name: "System".into(),
            value_type: vt::REG_DWORD,
            data: 1u32.to_le_bytes().to_vec(),
        },
    ];
    let s = |t: &str| ElementValue::String(t.into());

    let mut bootmgr = Object::new(well_known::BOOTMGR, ObjectType::BOOTMGR);
    bootmgr.set(Element::new(
        0x1100_0001,
        ElementValue::Device(DeviceElement::partition(ufd_partition)),
    ));
    bootmgr.set(Element::new(0x1200_0004, s("Windows Boot Manager")));
    bootmgr.set(Element::new(0x1200_0005, s("en-US")));
    bootmgr.set(Element::new(
        0x1400_0006,
        ElementValue::ObjectList(vec![well_known::GLOBALSETTINGS]),
    ));
    bootmgr.set(Element::new(0x2300_0003, ElementValue::Object(loader)));
    bootmgr.set(Element::new(
        0x2400_0001,
        ElementValue::ObjectList(vec![loader]),
    ));
    bootmgr.set(Element::new(0x2500_0004, ElementValue::Integer(30)));
    store.insert(bootmgr);

    let host = ufd_formats::bcd::Device::Partition(ufd_partition);
    let mut os = Object::new(loader, ObjectType::OSLOADER);
    // device: the partition inside the VHD that holds `path`; osdevice: the one holding `systemroot`.
    os.set(Element::new(
        0x1100_0001,
        ElementValue::Device(DeviceElement::vhd(
            host.clone(),
            "\\hyperV.vhd",
            0x1200_0002,
        )),
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
        0x1400_0006,
        ElementValue::ObjectList(vec![well_known::BOOTLOADERSETTINGS]),
    ));
    os.set(Element::new(
        0x2100_0001,
        ElementValue::Device(DeviceElement::vhd(host, "\\hyperV.vhd", 0x2200_0002)),
    ));
    os.set(Element::new(0x2200_0002, s("\\Windows")));
    os.set(Element::new(0x2500_0020, ElementValue::Integer(1))); // nx OptOut
    os.set(Element::new(0x2500_00f0, ElementValue::Integer(1))); // hypervisorlaunchtype Auto [reconstructed]
    store.insert(os);

    let mut global = Object::new(well_known::GLOBALSETTINGS, ObjectType::INHERIT_LIBRARY);
    global.set(Element::new(
        0x1400_0006,
        ElementValue::ObjectList(vec![
            well_known::DBGSETTINGS,
            well_known::EMSSETTINGS,
            well_known::BADMEMORY,
        ]),
    ));
    store.insert(global);
    let mut loader_settings =
        Object::new(well_known::BOOTLOADERSETTINGS, ObjectType::INHERIT_OSLOADER);
    loader_settings.set(Element::new(
        0x1400_0006,
        ElementValue::ObjectList(vec![
            well_known::GLOBALSETTINGS,
            well_known::HYPERVISORSETTINGS,
        ]),
    ));
    store.insert(loader_settings);
    Ok(store)
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

fn multi_sz(items: &[&str]) -> Vec<u8> {
    let mut v: Vec<u8> = items.iter().flat_map(|s| utf16z(s)).collect();
    v.extend([0, 0]);
    v
}

/// A SYSTEM-shaped hive as an image ships it (paging on), before step 6.
pub fn system_hive_before_step6() -> Result<Vec<u8>, CliError> {
    let mut ed = Editor::new_hive(&NewHive {
        root_name: "SYSTEM".into(),
        ..NewHive::default()
    })
    .map_err(e)?;
    let fail = |err: ufd_formats::Error| e(format!("building the sample SYSTEM hive: {err}"));
    for (name, v) in [
        ("Current", 1u32),
        ("Default", 1),
        ("Failed", 0),
        ("LastKnownGood", 2),
    ] {
        ed.create_key("Select").map_err(fail)?;
        ed.set_value("Select", name, vt::REG_DWORD, &v.to_le_bytes())
            .map_err(fail)?;
    }
    let mm = "ControlSet001\\Control\\Session Manager\\Memory Management";
    ed.create_key(mm).map_err(fail)?;
    ed.set_value(
        mm,
        "PagingFiles",
        vt::REG_MULTI_SZ,
        &multi_sz(&["?:\\pagefile.sys"]),
    )
    .map_err(fail)?;
    ed.set_value(
        mm,
        "ExistingPageFiles",
        vt::REG_MULTI_SZ,
        &multi_sz(&["\\??\\C:\\pagefile.sys"]),
    )
    .map_err(fail)?;
    // What the seed's "Additional Information" says Hyper-V Server 2008 R2 ships.
    ed.create_key("ControlSet001\\Control\\PnP").map_err(fail)?;
    ed.set_value(
        "ControlSet001\\Control\\PnP",
        "PollBootPartitionTimeout",
        vt::REG_DWORD,
        &30000u32.to_le_bytes(),
    )
    .map_err(fail)?;
    for svc in ["usbehci", "usbuhci", "usbohci", "usbhub", "usbstor"] {
        let k = format!("ControlSet001\\Services\\{svc}");
        ed.create_key(&k).map_err(fail)?;
        ed.set_value(&k, "Start", vt::REG_DWORD, &0u32.to_le_bytes())
            .map_err(fail)?;
        ed.set_value(&k, "Group", vt::REG_SZ, &utf16z("Boot Bus Extender"))
            .map_err(fail)?;
    }
    Ok(ed.finish(filetime_now()))
}

/// The seed's step 6 as an in-place edit: `reg add ... /v PagingFiles /t REG_MULTI_SZ /d ""`
/// and `reg delete ... /v ExistingPageFiles`, in the control set `Select\Default` names.
pub fn disable_paging(hive: Vec<u8>) -> Result<Vec<u8>, ufd_formats::Error> {
    let mut ed = Editor::open(hive)?;
    let default = {
        let h = ed.hive()?;
        let select = h.open("Select")?.ok_or_else(|| {
            ufd_formats::Error::not_found(
                ufd_formats::Format::Hive,
                0,
                "Select",
                "key Select (no control set selection)",
            )
        })?;
        let v = select.value("Default")?.ok_or_else(|| {
            ufd_formats::Error::not_found(
                ufd_formats::Format::Hive,
                0,
                "Select",
                "value Select\\Default",
            )
        })?;
        v.as_dword()?
    };
    let mm = format!("ControlSet{default:03}\\Control\\Session Manager\\Memory Management");
    // reg.exe /d "" stores one empty string: its NUL and the list's terminating NUL.
    ed.set_value(&mm, "PagingFiles", vt::REG_MULTI_SZ, &[0, 0, 0, 0])?;
    ed.delete_value(&mm, "ExistingPageFiles")?;
    Ok(ed.finish(filetime_now()))
}

pub fn run(out: &Path) -> Result<u8, CliError> {
    std::fs::create_dir_all(out).map_err(|err| CliError::io(out, err))?;

    let ufd = one_partition_mbr(UFD_SIGNATURE, UFD_BYTES, true)?;
    write_sparse_image(&out.join("ufd.img"), UFD_BYTES, &ufd.to_bytes(), &[])?;
    println!("step 3  prepare the UFD      {}: {UFD_BYTES} bytes, active NTFS-type partition at LBA {PARTITION_LBA}", out.join("ufd.img").display());

    let inner = one_partition_mbr(VHD_SIGNATURE, VHD_BYTES, false)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(e)?
        .as_secs();
    let ts = unix_to_vhd_timestamp(now as i64)
        .ok_or_else(|| e("clock outside the VHD timestamp range"))?;
    let footer = Footer::new_fixed(VHD_BYTES, ts, random16(), Creator::WINDOWS).map_err(e)?;
    write_sparse_image(
        &out.join("hyperV.vhd"),
        VHD_BYTES + 512,
        &inner.to_bytes(),
        &footer.to_bytes(),
    )?;
    println!(
        "step 1  create vdisk         {}: fixed VHD, {VHD_BYTES} bytes + footer",
        out.join("hyperV.vhd").display()
    );

    let store = seed_store()?;
    let bcd = store.to_hive(filetime_now()).map_err(e)?;
    write_atomic(&out.join("BCD"), &bcd)?;
    println!(
        "step 5  bcdboot              {}: default loader boots vhd=[UFD partition]\\hyperV.vhd",
        out.join("BCD").display()
    );

    let system = disable_paging(system_hive_before_step6()?).map_err(e)?;
    write_atomic(&out.join("SYSTEM"), &system)?;
    println!("step 6  disable paging       {}: PagingFiles emptied, ExistingPageFiles deleted (in place)", out.join("SYSTEM").display());
    Ok(0)
}
