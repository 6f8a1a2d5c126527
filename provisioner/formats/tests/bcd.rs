//! BCD model tests against the real Windows-made stores in shared/fixtures/bcd.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{read_fixture, require_tool, BCD_STORES};
use ufd_formats::bcd::device::{Device, DeviceElement, PartitionLocation};
use ufd_formats::bcd::element::{ElementFormat, ElementType, ElementValue};
use ufd_formats::bcd::guid::{resolve_alias, well_known, Guid};
use ufd_formats::bcd::object::ObjectType;
use ufd_formats::bcd::{render_enum, RenderOptions, Store};
use ufd_formats::hive::value_type::{REG_BINARY, REG_SZ};
use ufd_formats::hive::Hive;

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../../snapshots"), prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!(name, text);
    });
}

fn load(rel: &str) -> (Vec<u8>, Store) {
    let bytes = read_fixture(rel);
    let store = {
        let hive = Hive::parse(&bytes).unwrap_or_else(|e| panic!("{rel}: {e}"));
        Store::from_hive(&hive).unwrap_or_else(|e| panic!("{rel}: {e}"))
    };
    (bytes, store)
}

/// Every `(object, element key) -> (value type, data)` of a store hive, read directly.
fn raw_elements(bytes: &[u8]) -> BTreeMap<(String, String), (u32, Vec<u8>)> {
    let hive = Hive::parse(bytes).unwrap();
    let objects = hive.open("Objects").unwrap().unwrap();
    let mut out = BTreeMap::new();
    for o in objects.subkeys().unwrap() {
        let oname = o.name().unwrap().to_ascii_lowercase();
        let Some(els) = o.subkey("Elements").unwrap() else {
            continue;
        };
        for e in els.subkeys().unwrap() {
            let v = e.value("Element").unwrap().unwrap();
            out.insert(
                (oname.clone(), e.name().unwrap().to_ascii_lowercase()),
                (v.value_type(), v.data().unwrap().into_owned()),
            );
        }
    }
    out
}

#[test]
fn fixture_every_store_parses_and_renders() {
    for rel in BCD_STORES {
        let (_, store) = load(rel);
        let dir = rel.split('/').nth(1).unwrap();
        let text = render_enum(&store, &RenderOptions { verbose: true });
        // every object has a section, every element a line (object lists may add lines)
        assert_eq!(
            text.matches("\nidentifier ").count(),
            store.objects.len(),
            "{rel}"
        );
        let elements: usize = store.objects.iter().map(|o| o.elements.len()).sum();
        let lines = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with(' '))
            .count();
        assert_eq!(lines, elements + 3 * store.objects.len(), "{rel}");
        snapshot(&format!("bcd__{dir}__enum"), &text);
    }
}

#[test]
fn fixture_ntloader_enum_with_aliases() {
    let (_, store) = load("bcd/ntloader/bcd");
    let text = render_enum(&store, &RenderOptions { verbose: false });
    assert!(text.contains("identifier              {bootmgr}\n"));
    assert!(text.contains("identifier              {default}\n"));
    snapshot("bcd__ntloader__enum_aliases", &text);
}

#[test]
fn fixture_store_level_values_are_kept() {
    let (_, s) = load("bcd/win10-uefi/BCD");
    for name in ["KeyName", "System", "TreatAsSystem", "GuidCache"] {
        assert!(s.description_value(name).is_some(), "{name}");
    }
    assert_eq!(s.root_name, "NewStoreRoot");
    let fw = s.object(&well_known::FWBOOTMGR).unwrap();
    assert_eq!(fw.object_type, ObjectType::FWBOOTMGR);
    let with_fw_var = s
        .objects
        .iter()
        .filter(|o| {
            o.description_extra
                .iter()
                .any(|v| v.name == "FirmwareVariable")
        })
        .count();
    assert_eq!(
        with_fw_var, 4,
        "{{bootmgr}} and three firmware applications carry FirmwareVariable"
    );
    let (_, t) = load("bcd/template-desktop/BCDTemplate");
    assert_eq!(t.root_name, "System");
    // upper-case element keys (1600000B) are read
    let memdiag = t.object(&well_known::MEMDIAG).unwrap();
    assert_eq!(
        memdiag.element(ElementType(0x1600000b)).unwrap().value,
        ElementValue::Boolean(true)
    );
    // class-4 custom elements are kept, not dropped
    assert!(t
        .objects
        .iter()
        .any(|o| o.element(ElementType(0x47000005)).is_some()));
    // a short integer (1 byte) decodes by zero extension
    let (_, iso) = load("bcd/win10-iso-ramdisk/bcd");
    let bm = iso.object(&well_known::BOOTMGR).unwrap();
    assert_eq!(
        bm.element(ElementType(0x25000004)).unwrap().value,
        ElementValue::Integer(30)
    );
    let dbg = iso.object(&well_known::DBGSETTINGS).unwrap();
    assert_eq!(
        dbg.element(ElementType(0x15000014)).unwrap().value,
        ElementValue::Integer(115200)
    );
}

/// Every device element of every fixture decodes to a typed device (never `Raw`) and
/// re-encodes byte for byte.
#[test]
fn fixture_every_device_element_reencodes_exactly() {
    let mut n = 0;
    for rel in BCD_STORES {
        let bytes = read_fixture(rel);
        for ((obj, el), (t, data)) in raw_elements(&bytes) {
            let ty = ElementType::from_key_name(&el).unwrap();
            if ty.format() != ElementFormat::Device {
                continue;
            }
            assert_eq!(t, REG_BINARY, "{rel} {obj} {el}");
            let d =
                DeviceElement::decode(&data).unwrap_or_else(|e| panic!("{rel} {obj} {el}: {e}"));
            assert!(!contains_raw(&d.device), "{rel} {obj} {el}: {d:?}");
            assert_eq!(d.encode(), data, "{rel} {obj} {el}");
            n += 1;
        }
    }
    assert_eq!(n, 34, "device elements in the six fixture stores");
}

fn contains_raw(d: &Device) -> bool {
    match d {
        Device::Raw { .. } => true,
        Device::File { parent, .. } | Device::Ramdisk { parent, .. } => contains_raw(parent),
        Device::VirtualDisk { file, .. } | Device::VhdPartition { file, .. } => contains_raw(file),
        Device::Locate { parent, .. } => parent.as_deref().is_some_and(contains_raw),
        Device::Boot | Device::Partition(_) => false,
    }
}

#[test]
fn fixture_ramdisk_and_gpt_devices_decode() {
    let (_, iso) = load("bcd/win10-iso-ramdisk/bcd");
    let setup = iso
        .object(&Guid::parse("{7619dcc9-fafe-11d9-b411-000476eba25f}").unwrap())
        .unwrap();
    let ElementValue::Device(d) = &setup.element(ElementType(0x11000001)).unwrap().value else {
        panic!()
    };
    assert_eq!(
        *d,
        DeviceElement::ramdisk(
            Device::Boot,
            "\\sources\\boot.wim",
            Guid::parse("{7619dcc8-fafe-11d9-b411-000476eba25f}").unwrap()
        )
    );
    assert_eq!(d.encode().len(), 176);
    let (_, uefi) = load("bcd/win10-uefi/BCD");
    let bm = uefi.object(&well_known::BOOTMGR).unwrap();
    let ElementValue::Device(d) = &bm.element(ElementType(0x11000001)).unwrap().value else {
        panic!()
    };
    assert!(
        matches!(d.device, Device::Partition(PartitionLocation::Gpt { .. })),
        "{d:?}"
    );
    let (_, w7) = load("bcd/win7-bios/BCD");
    let ElementValue::Device(d) = &w7
        .object(&well_known::BOOTMGR)
        .unwrap()
        .element(ElementType(0x11000001))
        .unwrap()
        .value
    else {
        panic!()
    };
    assert_eq!(
        d.device,
        Device::Partition(PartitionLocation::Mbr {
            disk_signature: 0xA33B6C03,
            offset: 0x100000
        })
    );
}

// ---------------------------------------------------------------------------------------
// The ntloader oracle: replay bcd.bat against the store bcdedit produced from it.

/// Split a command line into words; double quotes group and are removed.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

fn expand(line: &str, vars: &BTreeMap<String, String>) -> String {
    let mut s = line.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("%{k}%"), v);
    }
    assert!(!s.contains('%'), "unexpanded variable in {s:?}");
    s
}

struct Oracle<'a> {
    store: &'a Store,
    raw: BTreeMap<(String, String), (u32, Vec<u8>)>,
    /// (object, element) pairs some command wrote.
    written: BTreeSet<(Guid, u32)>,
    /// What `C:` is on the runner, learned from the first `partition=C:`.
    drive_c: Option<PartitionLocation>,
    devices_checked: usize,
}

impl Oracle<'_> {
    fn value(&self, id: Guid, ty: ElementType) -> &ElementValue {
        let o = self
            .store
            .object(&id)
            .unwrap_or_else(|| panic!("object {id} missing"));
        &o.element(ty)
            .unwrap_or_else(|| panic!("{id} has no element {:08x}", ty.0))
            .value
    }

    fn raw(&self, id: Guid, ty: ElementType) -> &(u32, Vec<u8>) {
        &self.raw[&(id.to_string(), ty.key_name())]
    }

    fn c_drive(&mut self, d: &Device) -> PartitionLocation {
        let Device::Partition(loc) = d else {
            panic!("expected a partition, found {d:?}")
        };
        *self.drive_c.get_or_insert(*loc)
    }

    fn parent(&mut self, spec: &str, found: &Device) -> Device {
        match spec {
            "C:" => Device::Partition(self.c_drive(found)),
            "boot" => Device::Boot,
            other => panic!("parent {other} not used by bcd.bat"),
        }
    }

    /// `bcdedit /set {id} <name> <value>`: the element is there with that value.
    fn set(&mut self, id: Guid, name: &str, value: &str) {
        let obj = self
            .store
            .object(&id)
            .unwrap_or_else(|| panic!("object {id} missing"));
        let ty = ElementType::from_name(name, obj.object_type).unwrap_or_else(|| {
            panic!(
                "no element named {name} in a {:08x} object",
                obj.object_type.0
            )
        });
        self.written.insert((id, ty.0));
        let got = self.value(id, ty).clone();
        match ty.format() {
            ElementFormat::Device => self.device(id, ty, value, &got),
            ElementFormat::String => {
                assert_eq!(got, ElementValue::String(value.into()), "{id} {name}")
            }
            ElementFormat::Object => {
                assert_eq!(
                    got,
                    ElementValue::Object(resolve_alias(value).unwrap()),
                    "{id} {name}"
                )
            }
            ElementFormat::ObjectList => {
                let ElementValue::ObjectList(list) = &got else {
                    panic!("{id} {name}: {got:?}")
                };
                assert!(
                    list.contains(&resolve_alias(value).unwrap()),
                    "{id} {name}: {list:?}"
                );
            }
            ElementFormat::Integer => {
                let want = ty
                    .parse_integer(obj.object_type, value)
                    .unwrap_or_else(|| panic!("{name} {value}"));
                assert_eq!(got, ElementValue::Integer(want), "{id} {name} {value}");
                assert_eq!(
                    self.raw(id, ty).1.len(),
                    8,
                    "bcdedit writes 8-byte integers"
                );
            }
            ElementFormat::Boolean => {
                let want = matches!(
                    value.to_ascii_lowercase().as_str(),
                    "true" | "yes" | "on" | "1"
                );
                assert_eq!(got, ElementValue::Boolean(want), "{id} {name} {value}");
                assert_eq!(
                    self.raw(id, ty).1.len(),
                    1,
                    "bcdedit writes 1-byte booleans"
                );
            }
            other => panic!("bcd.bat does not set {other:?} elements"),
        }
        // the value re-encodes to exactly the bytes bcdedit wrote
        assert_eq!(
            &got.encode(),
            self.raw(id, ty),
            "{id} {name}: re-encoding differs"
        );
    }

    fn device(&mut self, id: Guid, ty: ElementType, value: &str, got: &ElementValue) {
        let ElementValue::Device(found) = got else {
            panic!("{id} {:08x}: {got:?}", ty.0)
        };
        // the default locate element of a VHD device: the application path for `device`,
        // the system root for `osdevice`
        let locate_element = if ty.0 == 0x11000001 {
            0x12000002
        } else {
            0x22000002
        };
        let inner = |d: &Device| -> Device {
            match d {
                Device::File { parent, .. } | Device::Ramdisk { parent, .. } => (**parent).clone(),
                Device::Locate {
                    parent: Some(p), ..
                } => match &**p {
                    Device::VirtualDisk { file, .. } => match &**file {
                        Device::File { parent, .. } => (**parent).clone(),
                        other => other.clone(),
                    },
                    other => other.clone(),
                },
                other => other.clone(),
            }
        };
        let expected = if value == "boot" {
            DeviceElement::boot()
        } else if let Some(drive) = value.strip_prefix("partition=") {
            assert_eq!(drive, "C:");
            DeviceElement::partition(self.c_drive(&found.device))
        } else if let Some(rest) = value.strip_prefix("vhd=[") {
            let (parent, path) = rest.split_once(']').unwrap();
            let parent = self.parent(parent, &inner(&found.device));
            DeviceElement::vhd(parent, path, locate_element)
        } else if let Some(rest) = value.strip_prefix("ramdisk=[") {
            let (parent, rest) = rest.split_once(']').unwrap();
            let (path, options) = rest.rsplit_once(',').unwrap();
            let parent = self.parent(parent, &inner(&found.device));
            DeviceElement::ramdisk(parent, path, resolve_alias(options).unwrap())
        } else {
            panic!("device syntax {value} not used by bcd.bat")
        };
        assert_eq!(*found, expected, "{id} {:08x} = {value}", ty.0);
        let (t, bytes) = self.raw(id, ty);
        assert_eq!(*t, REG_BINARY);
        assert_eq!(
            &expected.encode(),
            bytes,
            "{id} {:08x} = {value}: not byte-exact",
            ty.0
        );
        self.devices_checked += 1;
    }
}

#[test]
fn fixture_ntloader_oracle_replays_bcd_bat() {
    let bat = String::from_utf8(read_fixture("bcd/ntloader/bcd.bat")).unwrap();
    assert!(bat.contains("\r\n"), "bcd.bat is CRLF text");
    let (bytes, store) = load("bcd/ntloader/bcd");
    let mut o = Oracle {
        store: &store,
        raw: raw_elements(&bytes),
        written: BTreeSet::new(),
        drive_c: None,
        devices_checked: 0,
    };
    let mut vars = BTreeMap::new();
    let mut created = BTreeSet::new();
    let mut commands = 0;
    for line in bat.split("\r\n").map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("REM ") || ["rd ", "md ", "cd "].iter().any(|p| line.starts_with(p)) {
            continue;
        }
        if let Some(assign) = line.strip_prefix("set ") {
            let (k, v) = assign.split_once('=').unwrap();
            vars.insert(k.to_string(), v.to_string());
            continue;
        }
        let w = words(&expand(line, &vars));
        assert_eq!(w[0], "bcdedit", "{line}");
        if w[1] == "/createstore" {
            continue;
        }
        assert_eq!(&w[1..3], ["/store", "bcd"], "{line}");
        let args = &w[3..];
        commands += 1;
        match args[0].as_str() {
            "/create" => {
                let id = resolve_alias(&args[1]).unwrap();
                created.insert(id);
                let mut expected_type = match id {
                    g if g == well_known::BOOTMGR => Some(ObjectType::BOOTMGR),
                    g if g == well_known::GLOBALSETTINGS => Some(ObjectType::INHERIT_LIBRARY),
                    g if g == well_known::BOOTLOADERSETTINGS => Some(ObjectType::INHERIT_OSLOADER),
                    g if g == well_known::RESUMELOADERSETTINGS => Some(ObjectType::INHERIT_RESUME),
                    g if g == well_known::RAMDISKOPTIONS => Some(ObjectType::DEVICE),
                    _ => None,
                };
                let mut i = 2;
                while i < args.len() {
                    match (args[i].as_str(), args[i + 1].as_str()) {
                        ("/d", d) => o.set(id, "description", d),
                        ("/application", "OSLOADER") => expected_type = Some(ObjectType::OSLOADER),
                        ("/application", "RESUME") => expected_type = Some(ObjectType::RESUME),
                        ("/inherit", "OSLOADER") => {
                            expected_type = Some(ObjectType::INHERIT_OSLOADER)
                        }
                        (a, b) => panic!("unexpected /create option {a} {b}"),
                    }
                    i += 2;
                }
                assert_eq!(
                    store.object(&id).unwrap().object_type,
                    expected_type.unwrap(),
                    "{line}"
                );
            }
            "/set" => {
                assert!(
                    args.len() == 4 || (args.len() == 5 && args[4] == "/addlast"),
                    "{line}"
                );
                o.set(resolve_alias(&args[1]).unwrap(), &args[2], &args[3]);
            }
            "/default" => o.set(well_known::BOOTMGR, "default", &args[1]),
            other => panic!("unexpected bcdedit command {other}"),
        }
    }
    assert_eq!(commands, 57);
    assert_eq!(
        o.devices_checked, 9,
        "device+osdevice of 3 loaders, device+filedevice of the resume object, sdidevice"
    );
    // nothing in the store that bcd.bat did not ask for, and nothing missing
    let in_store: BTreeSet<(Guid, u32)> = store
        .objects
        .iter()
        .flat_map(|ob| ob.elements.iter().map(move |e| (ob.id, e.element_type.0)))
        .collect();
    assert_eq!(in_store, o.written);
    let ids: BTreeSet<Guid> = store.objects.iter().map(|ob| ob.id).collect();
    assert_eq!(ids, created);
    assert_eq!(
        o.drive_c,
        Some(PartitionLocation::Mbr {
            disk_signature: 0x43DA9AB1,
            offset: 0x1F50_0000
        })
    );
}

// ---------------------------------------------------------------------------------------

/// Is `new` what bcdedit's encoding of the value read from `old` gives? Only the two
/// normalisations documented in `bcd::element` are allowed: short integers widened to 8
/// bytes, and REG_SZ slack after the first NUL dropped.
fn normalised(old: &(u32, Vec<u8>), new: &(u32, Vec<u8>), ty: ElementType) -> bool {
    if old == new {
        return true;
    }
    match ty.format() {
        ElementFormat::Integer => {
            old.0 == new.0
                && old.1.len() < 8
                && new.1.starts_with(&old.1)
                && new.1[old.1.len()..].iter().all(|&b| b == 0)
        }
        ElementFormat::String | ElementFormat::Object => {
            old.0 == REG_SZ
                && new.0 == REG_SZ
                && old.1.len() > new.1.len()
                && old.1.starts_with(&new.1)
        }
        _ => false,
    }
}

#[test]
fn fixture_round_trip_through_a_new_hive() {
    let hivexregedit = require_tool("hivexregedit");
    let dir = tempfile::tempdir().unwrap();
    for rel in BCD_STORES {
        let (orig_bytes, store) = load(rel);
        let out = store.to_hive(0x01d7_0000_0000_0000).unwrap();
        let again =
            Store::from_hive(&Hive::parse(&out).unwrap()).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(again, store, "{rel}");
        // element bytes: identical, except the two documented normalisations
        let (old, new) = (raw_elements(&orig_bytes), raw_elements(&out));
        assert_eq!(
            old.keys().collect::<Vec<_>>(),
            new.keys().collect::<Vec<_>>(),
            "{rel}"
        );
        let mut changed = Vec::new();
        for (k, v) in &old {
            let ty = ElementType::from_key_name(&k.1).unwrap();
            assert!(
                normalised(v, &new[k], ty),
                "{rel} {k:?}: {v:?} -> {:?}",
                new[k]
            );
            if v != &new[k] {
                changed.push(k.clone());
            }
        }
        let expected_changes = match *rel {
            "bcd/win10-iso-ramdisk/bcd" => 4, // 1- and 3-byte integers widened
            "bcd/template-desktop/BCDTemplate" => 16, // 1- and 3-byte integers widened
            "bcd/win7-bios/BCD" => 3,         // REG_SZ slack after the NUL ("Ramdisk Options\0%")
            "bcd/win10-uefi/BCD" => 7,        // REG_SZ with two or more NULs
            _ => 0,
        };
        assert_eq!(changed.len(), expected_changes, "{rel}: {changed:?}");
        // the new hive is readable by hivex, key for key
        let path = dir.path().join(rel.replace('/', "_"));
        std::fs::write(&path, &out).unwrap();
        let o = std::process::Command::new(&hivexregedit)
            .arg("--export")
            .arg(&path)
            .arg("\\")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{rel}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8(o.stdout).unwrap();
        let keys = text.lines().filter(|l| l.starts_with('[')).count();
        let elements: usize = store.objects.iter().map(|ob| ob.elements.len()).sum();
        assert_eq!(keys, 3 + 3 * store.objects.len() + elements, "{rel}");
    }
}

#[test]
fn fixture_empty_createstore_matches_store_new() {
    let (_, s) = load("bcd/empty-createstore/BCD");
    assert_eq!(s, Store::new());
}

/// formats.md §2.6a: `vhd=[Z:]\hyperV.vhd`, UFD MBR signature 0x12345678, partition at 1 MiB.
#[test]
fn vhd_2_6a_example_bytes() {
    let hexdump = "
        00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
        08 00 00 00 00 00 00 00 c6 00 00 00 00 00 00 00
        00 00 00 00 02 00 00 12 1e 00 00 00 00 00 00 00
        00 00 00 00 00 00 a8 00 00 00 00 00 00 00 06 00
        00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
        00 00 00 00 00 00 00 00 00 00 00 00 00 00 80 00
        00 00 00 00 00 00 05 00 00 00 01 00 00 00 6c 00
        00 00 05 00 00 00 06 00 00 00 00 00 00 00 48 00
        00 00 00 00 00 00 00 00 10 00 00 00 00 00 00 00
        00 00 00 00 00 00 00 00 00 00 01 00 00 00 78 56
        34 12 00 00 00 00 00 00 00 00 00 00 00 00 00 00
        00 00 00 00 00 00 00 00 00 00 00 00 00 00 5c 00
        68 00 79 00 70 00 65 00 72 00 56 00 2e 00 76 00
        68 00 64 00 00 00";
    let expected: Vec<u8> = hexdump
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    assert_eq!(expected.len(), 214);
    let ufd = Device::Partition(PartitionLocation::Mbr {
        disk_signature: 0x12345678,
        offset: 1 << 20,
    });
    let device = DeviceElement::vhd(ufd.clone(), "\\hyperV.vhd", 0x12000002);
    assert_eq!(device.encode(), expected);
    assert_eq!(DeviceElement::decode(&expected).unwrap(), device);
    // osdevice: identical except byte 0x27 (element 0x22000002)
    let mut os = expected.clone();
    os[0x27] = 0x22;
    assert_eq!(
        DeviceElement::vhd(ufd, "\\hyperV.vhd", 0x22000002).encode(),
        os
    );
}

#[test]
fn fixture_element_errors_name_object_and_element() {
    // Damage the size field of a `partition=C:` device of the ntloader store and check the
    // error that Store::from_hive reports.
    let bytes = read_fixture("bcd/ntloader/bcd");
    let (_, data) = raw_elements(&bytes)[&(
        "{19260817-6666-8888-abcd-000000000002}".into(),
        "11000001".into(),
    )]
        .clone();
    let pos = bytes
        .windows(data.len())
        .position(|w| w == data)
        .expect("element data stored contiguously");
    let mut broken = bytes.clone();
    broken[pos + 0x18] = 0xff; // descriptor size beyond the element
    let hive = Hive::parse(&broken).unwrap();
    let e = Store::from_hive(&hive).unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.offset, 0x10, "offset within the element value: {msg}");
    // the same 88 bytes are stored in several partition=C: elements; the first copy found is
    // in one of the objects that use it directly
    assert!(
        msg.contains("object {19260817-6666-8888-abcd-00000000000"),
        "{msg}"
    );
    assert!(
        msg.contains("element 11000001") || msg.contains("element 21000001"),
        "{msg}"
    );
}

#[cfg(feature = "serde")]
#[test]
fn fixture_store_serializes_to_json() {
    let (_, store) = load("bcd/ntloader/bcd");
    let v = serde_json::to_value(&store).unwrap();
    assert_eq!(v["root_name"], "NewStoreRoot");
    let bm = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == "{9dea862c-5cdd-4e70-acc1-f32b344d4795}")
        .unwrap();
    assert_eq!(bm["object_type"], 0x10100002);
    let timeout = bm["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["element_type"] == 0x25000004)
        .unwrap();
    assert_eq!(
        timeout["value"],
        serde_json::json!({"format": "integer", "value": 1})
    );
}

/// A new empty store exports (hivex) exactly like the one `bcdedit /createstore` made.
#[test]
fn fixture_new_store_exports_like_createstore() {
    let hivexregedit = require_tool("hivexregedit");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("BCD");
    std::fs::write(&path, Store::new().to_hive(0).unwrap()).unwrap();
    let o = std::process::Command::new(hivexregedit)
        .arg("--export")
        .arg(&path)
        .arg("\\")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        o.stdout,
        read_fixture("bcd/empty-createstore/BCD.hivex.reg")
    );
}
