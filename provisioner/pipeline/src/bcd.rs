//! The store `bcdboot <VHD>\Windows /s <UFD>` leaves in `\Boot\BCD` for the seed (step 5).
//!
//! What is verified and what is reconstructed (formats.md §1.7.1, §2.4, §2.6, §3):
//!
//! * Microsoft documents that bcdboot creates the store from the image's
//!   `Windows\System32\config\BCD-Template` \[V\]: when the image has one, every object of it is
//!   copied, except the OS-loader / resume *target templates* (`{a1943bbc…}`, `{b012b84d…}`,
//!   `{98b02a23…}`, `{0c334284…}`), whose elements seed the new loader instead \[I\].
//! * Without a template (synthetic images) the inherit objects are built from BCD-SYS's
//!   templates (`{globalsettings}`, `{dbgsettings}`, `{emssettings}`, `{badmemory}`,
//!   `{bootloadersettings}`, `{hypervisorsettings}`, `{resumeloadersettings}`) \[S\].
//! * `{bootmgr}`: device = qualified partition of the UFD (disk signature + byte offset,
//!   §2.4, encoding \[V\]), description `Windows Boot Manager`, locale, inherit
//!   `{globalsettings}`, default + displayorder = the loader, timeout 30 \[V: Win7 bcdboot
//!   output, superuser.com 486019\]; toolsdisplayorder `{memdiag}` when `memtest.exe` is copied.
//! * The OS loader (random GUID, as bcdboot does): device/osdevice = `vhd=[UFD partition]\hyperV.vhd`
//!   in bcdedit's locate form (§2.6a, bytes \[V\]; that bcdboot writes this form for a VHD is
//!   \[I\]), path `\Windows\system32\winload.exe`, systemroot `\Windows`, locale, inherit
//!   `{bootloadersettings}`, detecthal \[V: Win7 bcdboot output\]; nx OptOut (the Server
//!   default; Win7 client bcdboot writes OptIn) and hypervisorlaunchtype Auto are
//!   **reconstructed** (Hyper-V Server must start the hypervisor; whether bcdboot or first boot sets
//!   it is not verified, formats.md §9 q4).
//! * UEFI target ([`BootTarget::Efi`], formats.md §3 "UEFI target", §10 item 7): the same
//!   objects, with the loader seeded from the EFI OS-target template `{b012b84d…}` instead of
//!   the PCAT one, `{bootmgr}` on the EFI system partition with path
//!   `\EFI\Microsoft\Boot\bootmgfw.efi` \[S: BCD-SYS / Win8+ bcdboot /f UEFI output; I for Win7\],
//!   loader path `\Windows\system32\winload.efi` \[V: the file the image ships\],
//!   `{memdiag}` path `\EFI\Microsoft\Boot\memtest.efi` on the ESP. The loader's VHD host is
//!   the NTFS partition (a different partition from `{bootmgr}`'s). detecthal is kept as in
//!   the BIOS store \[reconstructed; harmless on x64 UEFI\].
//! * No resume object is written: native VHD boot cannot hibernate (deviation from bcdboot,
//!   which writes one \[S\]).
//! * Root `Description`: `KeyName` = `BCD00000000`, `System` = 1 (a system store; BCD-SYS)
//!   \[V for the value in Windows-made system stores\].

use ufd_formats::bcd::guid::well_known;
use ufd_formats::bcd::{
    Device, DeviceElement, Element, ElementValue, Guid, Object, ObjectType, PartitionLocation,
    RawValue, Store,
};
use ufd_formats::hive::value_type as vt;

/// OS-loader target template, PCAT (BIOS) [S: third-party table; Server 2016 confirmed].
pub const OS_TEMPLATE_PCAT: Guid = Guid::from_fields(
    0xa1943bbc,
    0xea85,
    0x487c,
    [0x97, 0xc7, 0xc9, 0xed, 0xe9, 0x08, 0xa3, 0x8a],
);
/// OS-loader target template, EFI.
pub const OS_TEMPLATE_EFI: Guid = Guid::from_fields(
    0xb012b84d,
    0xc47c,
    0x4ed5,
    [0xb7, 0x22, 0xc0, 0xc4, 0x21, 0x63, 0xe5, 0x69],
);
/// Resume target templates, PCAT and EFI.
pub const RESUME_TEMPLATE_PCAT: Guid = Guid::from_fields(
    0x98b02a23,
    0x0674,
    0x4ce7,
    [0xbd, 0xad, 0xe0, 0xa1, 0x5a, 0x8f, 0xf9, 0x7b],
);
pub const RESUME_TEMPLATE_EFI: Guid = Guid::from_fields(
    0x0c334284,
    0x9a41,
    0x4de1,
    [0x99, 0xb3, 0xa7, 0xe8, 0x7e, 0x8f, 0xf0, 0x7e],
);

// element types used here (formats.md §1.7)
const DEVICE: u32 = 0x1100_0001;
const PATH: u32 = 0x1200_0002;
const DESCRIPTION: u32 = 0x1200_0004;
const LOCALE: u32 = 0x1200_0005;
const INHERIT: u32 = 0x1400_0006;
const BADMEMORYACCESS: u32 = 0x1600_000b;
const DEBUGTYPE: u32 = 0x1500_0011;
const DEBUGPORT: u32 = 0x1500_0013;
const BAUDRATE: u32 = 0x1500_0014;
const BOOTEMS: u32 = 0x1600_0020;
const DISPLAYORDER: u32 = 0x2400_0001;
const DEFAULT: u32 = 0x2300_0003;
const TIMEOUT: u32 = 0x2500_0004;
const TOOLSDISPLAYORDER: u32 = 0x2400_0010;
const OSDEVICE: u32 = 0x2100_0001;
const SYSTEMROOT: u32 = 0x2200_0002;
const DETECTHAL: u32 = 0x2600_0010;
const NX: u32 = 0x2500_0020;
const HYPERVISORLAUNCHTYPE: u32 = 0x2500_00f0;
const HV_DEBUGTYPE: u32 = 0x2500_00f3;
const HV_DEBUGPORT: u32 = 0x2500_00f4;
const HV_BAUDRATE: u32 = 0x2500_00f5;

/// How the loader's `device`/`osdevice` name the VHD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VhdDeviceForm {
    /// `vhd=[UFD partition]\hyperV.vhd` (formats.md §2.6a, bytes verified against bcdedit):
    /// tied to the UFD's disk signature and partition offset.
    Partition,
    /// `vhd=[locate]\hyperV.vhd` (§2.6c, **reconstructed**, never compared with a real store):
    /// survives a changed disk signature.
    Locate,
}

/// Which boot manager reads the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootTarget {
    /// BIOS `\bootmgr` reading `\Boot\BCD` (the seed's layout).
    Pcat,
    /// UEFI `bootmgfw.efi` reading `\EFI\Microsoft\Boot\BCD` on the EFI system partition.
    Efi,
}

/// Inputs of [`build_store`].
#[derive(Clone, Debug)]
pub struct BcdParams {
    pub target: BootTarget,
    pub ufd_disk_signature: u32,
    /// Start in bytes of the UFD partition that holds `\hyperV.vhd` (the loader's VHD host).
    pub ufd_partition_offset: u64,
    /// Start in bytes of the partition the boot manager and `{memdiag}` live on: the same
    /// NTFS partition for [`BootTarget::Pcat`], the EFI system partition for [`BootTarget::Efi`].
    pub boot_partition_offset: u64,
    /// `\hyperV.vhd`.
    pub vhd_path: String,
    pub loader: Guid,
    /// Loader description; `None` = the template's, else `Microsoft Hyper-V Server 2008 R2`.
    pub description: Option<String>,
    pub locale: String,
    pub vhd_form: VhdDeviceForm,
    pub timeout: u64,
    /// The memory tester (`\Boot\memtest.exe` / `\EFI\Microsoft\Boot\memtest.efi`) was
    /// copied: add `{memdiag}`.
    pub memdiag: bool,
}

/// The default description when neither the option nor the template gives one.
pub const DEFAULT_DESCRIPTION: &str = "Microsoft Hyper-V Server 2008 R2";

fn s(t: &str) -> ElementValue {
    ElementValue::String(t.into())
}

fn inherit_defaults(store: &mut Store) {
    // BCD-SYS templates [S]; only added where the template did not bring the object.
    let mut add = |o: Object| {
        if store.object(&o.id).is_none() {
            store.insert(o);
        }
    };
    let mut global = Object::new(well_known::GLOBALSETTINGS, ObjectType::INHERIT_LIBRARY);
    global.set(Element::new(
        INHERIT,
        ElementValue::ObjectList(vec![
            well_known::DBGSETTINGS,
            well_known::EMSSETTINGS,
            well_known::BADMEMORY,
        ]),
    ));
    add(global);
    let mut dbg = Object::new(well_known::DBGSETTINGS, ObjectType::INHERIT_LIBRARY);
    dbg.set(Element::new(DEBUGTYPE, ElementValue::Integer(0))); // Serial [?] for Win7
    dbg.set(Element::new(DEBUGPORT, ElementValue::Integer(1)));
    dbg.set(Element::new(BAUDRATE, ElementValue::Integer(115_200)));
    add(dbg);
    let mut ems = Object::new(well_known::EMSSETTINGS, ObjectType::INHERIT_LIBRARY);
    ems.set(Element::new(BOOTEMS, ElementValue::Boolean(false)));
    add(ems);
    add(Object::new(
        well_known::BADMEMORY,
        ObjectType::INHERIT_LIBRARY,
    ));
    let mut bl = Object::new(well_known::BOOTLOADERSETTINGS, ObjectType::INHERIT_OSLOADER);
    bl.set(Element::new(
        INHERIT,
        ElementValue::ObjectList(vec![
            well_known::GLOBALSETTINGS,
            well_known::HYPERVISORSETTINGS,
        ]),
    ));
    add(bl);
    let mut hv = Object::new(well_known::HYPERVISORSETTINGS, ObjectType::INHERIT_OSLOADER);
    hv.set(Element::new(HV_DEBUGTYPE, ElementValue::Integer(0)));
    hv.set(Element::new(HV_DEBUGPORT, ElementValue::Integer(1)));
    hv.set(Element::new(HV_BAUDRATE, ElementValue::Integer(115_200)));
    add(hv);
    let mut rl = Object::new(well_known::RESUMELOADERSETTINGS, ObjectType::INHERIT_RESUME);
    rl.set(Element::new(
        INHERIT,
        ElementValue::ObjectList(vec![well_known::GLOBALSETTINGS]),
    ));
    add(rl);
}

/// Build the UFD's store, from the image's BCD-Template when there is one.
pub fn build_store(template: Option<&Store>, p: &BcdParams) -> Store {
    let ufd = PartitionLocation::Mbr {
        disk_signature: p.ufd_disk_signature,
        offset: p.ufd_partition_offset,
    };
    let boot_part = PartitionLocation::Mbr {
        disk_signature: p.ufd_disk_signature,
        offset: p.boot_partition_offset,
    };
    let (os_template, winload, memtest, bootmgr_path) = match p.target {
        BootTarget::Pcat => (
            OS_TEMPLATE_PCAT,
            "\\Windows\\system32\\winload.exe",
            "\\boot\\memtest.exe",
            None,
        ),
        BootTarget::Efi => (
            OS_TEMPLATE_EFI,
            "\\Windows\\system32\\winload.efi",
            "\\EFI\\Microsoft\\Boot\\memtest.efi",
            Some("\\EFI\\Microsoft\\Boot\\bootmgfw.efi"),
        ),
    };
    let mut store = Store::new();
    store.root_name = template.map_or_else(|| "NewStoreRoot".into(), |t| t.root_name.clone());
    store.description = vec![
        RawValue {
            name: "KeyName".into(),
            value_type: vt::REG_SZ,
            data: ufd_formats::bcd::element::encode_sz("BCD00000000"),
        },
        RawValue {
            name: "System".into(),
            value_type: vt::REG_DWORD,
            data: 1u32.to_le_bytes().to_vec(),
        },
    ];
    let targets = [
        OS_TEMPLATE_PCAT,
        OS_TEMPLATE_EFI,
        RESUME_TEMPLATE_PCAT,
        RESUME_TEMPLATE_EFI,
    ];
    let mut loader = Object::new(p.loader, ObjectType::OSLOADER);
    if let Some(t) = template {
        for o in &t.objects {
            if !targets.contains(&o.id) {
                store.insert(o.clone());
            }
        }
        if let Some(os) = t.object(&os_template) {
            // Class-4 elements (0x4xxxxxxx, "hidden"/setup) of the OS-target template
            // parameterise the template itself: 0x42000002 holds the winload path that bcdboot
            // writes as the loader's 0x12000002 (set below) [S: BCD-SYS `winload.sh`]. They are
            // not copied. Reconstructed: a real loader may still carry class-4 elements that
            // Windows itself sets later (shared/fixtures/bcd/win10-uefi: the WinRE loader has
            // 46000010), which is a different source than the template.
            for e in os.elements.iter().filter(|e| e.element_type.class() != 4) {
                loader.set(e.clone());
            }
        }
    }
    inherit_defaults(&mut store);

    let host = Device::Partition(ufd);
    let vhd_dev = |element: u32| match p.vhd_form {
        VhdDeviceForm::Partition => DeviceElement::vhd(host.clone(), &p.vhd_path, element),
        VhdDeviceForm::Locate => DeviceElement::vhd_locate(&p.vhd_path, element),
    };
    loader.set(Element::new(DEVICE, ElementValue::Device(vhd_dev(PATH))));
    loader.set(Element::new(PATH, s(winload)));
    let description = p.description.clone().or_else(|| {
        loader
            .element(ufd_formats::bcd::ElementType(DESCRIPTION))
            .and_then(|e| match &e.value {
                ElementValue::String(d) if !d.is_empty() => Some(d.clone()),
                _ => None,
            })
    });
    loader.set(Element::new(
        DESCRIPTION,
        s(description.as_deref().unwrap_or(DEFAULT_DESCRIPTION)),
    ));
    loader.set(Element::new(LOCALE, s(&p.locale)));
    loader.set(Element::new(
        INHERIT,
        ElementValue::ObjectList(vec![well_known::BOOTLOADERSETTINGS]),
    ));
    loader.set(Element::new(
        OSDEVICE,
        ElementValue::Device(vhd_dev(SYSTEMROOT)),
    ));
    loader.set(Element::new(SYSTEMROOT, s("\\Windows")));
    loader.set(Element::new(DETECTHAL, ElementValue::Boolean(true)));
    loader.set(Element::new(NX, ElementValue::Integer(1))); // OptOut [reconstructed]
    loader.set(Element::new(HYPERVISORLAUNCHTYPE, ElementValue::Integer(1))); // Auto [reconstructed]
    store.insert(loader);

    if p.memdiag {
        let mut md = store
            .object(&well_known::MEMDIAG)
            .cloned()
            .unwrap_or_else(|| Object::new(well_known::MEMDIAG, ObjectType::MEMDIAG));
        md.set(Element::new(
            DEVICE,
            ElementValue::Device(DeviceElement::partition(boot_part)),
        ));
        md.set(Element::new(PATH, s(memtest)));
        if md
            .element(ufd_formats::bcd::ElementType(DESCRIPTION))
            .is_none()
        {
            md.set(Element::new(DESCRIPTION, s("Windows Memory Diagnostic")));
        }
        md.set(Element::new(LOCALE, s(&p.locale)));
        md.set(Element::new(
            INHERIT,
            ElementValue::ObjectList(vec![well_known::GLOBALSETTINGS]),
        ));
        md.set(Element::new(BADMEMORYACCESS, ElementValue::Boolean(true)));
        store.insert(md);
    }

    let mut bm = store
        .object(&well_known::BOOTMGR)
        .cloned()
        .unwrap_or_else(|| Object::new(well_known::BOOTMGR, ObjectType::BOOTMGR));
    bm.set(Element::new(
        DEVICE,
        ElementValue::Device(DeviceElement::partition(boot_part)),
    ));
    if let Some(path) = bootmgr_path {
        bm.set(Element::new(PATH, s(path)));
    }
    bm.set(Element::new(DESCRIPTION, s("Windows Boot Manager")));
    bm.set(Element::new(LOCALE, s(&p.locale)));
    bm.set(Element::new(
        INHERIT,
        ElementValue::ObjectList(vec![well_known::GLOBALSETTINGS]),
    ));
    bm.set(Element::new(DEFAULT, ElementValue::Object(p.loader)));
    bm.set(Element::new(
        DISPLAYORDER,
        ElementValue::ObjectList(vec![p.loader]),
    ));
    if p.memdiag {
        bm.set(Element::new(
            TOOLSDISPLAYORDER,
            ElementValue::ObjectList(vec![well_known::MEMDIAG]),
        ));
    }
    bm.set(Element::new(TIMEOUT, ElementValue::Integer(p.timeout)));
    store.insert(bm);
    // {bootmgr} first, as bcdedit lists it
    store.objects.sort_by_key(|o| o.id != well_known::BOOTMGR);
    store
}

/// A random version-4 GUID (the loader's identifier, as bcdboot creates one per store).
pub fn random_guid(bytes: [u8; 16]) -> Guid {
    let mut b = bytes;
    b[7] = (b[7] & 0x0F) | 0x40; // Data3 high nibble (little-endian u16 at 6..8)
    b[8] = (b[8] & 0x3F) | 0x80;
    Guid::from_bytes_le(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ufd_formats::bcd::ElementType;

    fn params() -> BcdParams {
        BcdParams {
            target: BootTarget::Pcat,
            ufd_disk_signature: 0x1234_5678,
            ufd_partition_offset: 1 << 20,
            boot_partition_offset: 1 << 20,
            vhd_path: "\\hyperV.vhd".into(),
            loader: random_guid([7; 16]),
            description: None,
            locale: "en-US".into(),
            vhd_form: VhdDeviceForm::Partition,
            timeout: 30,
            memdiag: true,
        }
    }

    #[test]
    fn loader_devices_are_the_verified_vhd_bytes() {
        let p = params();
        let st = build_store(None, &p);
        let os = st.object(&p.loader).unwrap();
        let dev = os.element(ElementType(DEVICE)).unwrap();
        let ElementValue::Device(d) = &dev.value else {
            panic!("device element is not a device")
        };
        // formats.md §2.6a example: 214 bytes, element 0x12000002, signature 0x12345678
        let b = d.encode();
        assert_eq!(b.len(), 214);
        assert_eq!(&b[0x24..0x28], &0x1200_0002u32.to_le_bytes());
        assert_eq!(&b[0x9E..0xA2], &0x1234_5678u32.to_le_bytes());
        assert_eq!(&b[0x86..0x8E], &(1u64 << 20).to_le_bytes());
        let ElementValue::Device(od) = &os.element(ElementType(OSDEVICE)).unwrap().value else {
            panic!("osdevice is not a device")
        };
        assert_eq!(od.encode()[0x27], 0x22);
        assert_eq!(st.objects[0].id, well_known::BOOTMGR);
        let hive = st.to_hive(0).unwrap();
        let back = Store::from_hive(&ufd_formats::hive::Hive::parse(&hive).unwrap()).unwrap();
        assert_eq!(back.objects.len(), st.objects.len());
    }

    #[test]
    fn template_objects_are_copied_and_seed_the_loader() {
        let mut t = Store::new();
        let mut os = Object::new(OS_TEMPLATE_PCAT, ObjectType::OSLOADER);
        os.set(Element::new(DESCRIPTION, s("Hyper-V Server from template")));
        os.set(Element::new(0x2600_0081, ElementValue::Boolean(false)));
        t.insert(os);
        let mut g = Object::new(well_known::GLOBALSETTINGS, ObjectType::INHERIT_LIBRARY);
        g.set(Element::new(
            INHERIT,
            ElementValue::ObjectList(vec![well_known::DBGSETTINGS]),
        ));
        t.insert(g.clone());
        let p = params();
        let st = build_store(Some(&t), &p);
        assert!(st.object(&OS_TEMPLATE_PCAT).is_none());
        assert_eq!(st.object(&well_known::GLOBALSETTINGS), Some(&g));
        let l = st.object(&p.loader).unwrap();
        assert_eq!(
            l.element(ElementType(DESCRIPTION)).unwrap().value,
            s("Hyper-V Server from template")
        );
        assert!(l.element(ElementType(0x2600_0081)).is_some());
    }

    #[test]
    fn efi_store_points_bootmgr_at_the_esp_and_the_loader_at_the_ntfs_partition() {
        let mut p = params();
        p.target = BootTarget::Efi;
        p.boot_partition_offset = 1 << 20;
        p.ufd_partition_offset = 101 << 20;
        let mut t = Store::new();
        let mut efi = Object::new(OS_TEMPLATE_EFI, ObjectType::OSLOADER);
        efi.set(Element::new(DESCRIPTION, s("from the EFI template")));
        t.insert(efi);
        let mut pcat = Object::new(OS_TEMPLATE_PCAT, ObjectType::OSLOADER);
        pcat.set(Element::new(DESCRIPTION, s("from the PCAT template")));
        t.insert(pcat);
        let st = build_store(Some(&t), &p);
        let bm = st.object(&well_known::BOOTMGR).unwrap();
        assert_eq!(
            bm.element(ElementType(PATH)).unwrap().value,
            s("\\EFI\\Microsoft\\Boot\\bootmgfw.efi")
        );
        let ElementValue::Device(d) = &bm.element(ElementType(DEVICE)).unwrap().value else {
            panic!("bootmgr device is not a device")
        };
        assert_eq!(
            d.device,
            Device::Partition(PartitionLocation::Mbr {
                disk_signature: 0x1234_5678,
                offset: 1 << 20
            })
        );
        let l = st.object(&p.loader).unwrap();
        assert_eq!(
            l.element(ElementType(PATH)).unwrap().value,
            s("\\Windows\\system32\\winload.efi")
        );
        assert_eq!(
            l.element(ElementType(DESCRIPTION)).unwrap().value,
            s("from the EFI template")
        );
        let ElementValue::Device(vd) = &l.element(ElementType(DEVICE)).unwrap().value else {
            panic!("loader device is not a device")
        };
        assert_eq!(&vd.encode()[0x86..0x8E], &(101u64 << 20).to_le_bytes());
        let md = st.object(&well_known::MEMDIAG).unwrap();
        assert_eq!(
            md.element(ElementType(PATH)).unwrap().value,
            s("\\EFI\\Microsoft\\Boot\\memtest.efi")
        );
        // the BIOS store has no {bootmgr} path (bootmgr is the file the VBR loads)
        let bios = build_store(None, &params());
        let bm = bios.object(&well_known::BOOTMGR).unwrap();
        assert!(bm.element(ElementType(PATH)).is_none());
    }

    #[test]
    fn random_guid_is_v4() {
        let g = random_guid([0xFF; 16]);
        let t = g.to_string();
        assert_eq!(&t[15..16], "4", "{t}");
    }
}
