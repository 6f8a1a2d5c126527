//! Integration tests for the regf reader, editor and builder (`ufd_formats::hive`).
//!
//! The oracle is hivex 1.3.23 (`hivexregedit --export`): the fixtures' `.hivex.reg`
//! files and exports of the hives we write.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use common::{read_fixture, require_tool, HIVES};
use rstest::rstest;
use ufd_formats::hive::value_type::*;
use ufd_formats::hive::{
    lf_hint, lh_hash, upcase_unit, Editor, Hive, Key, ListKind, NewHive, BCD_CHILD_SD, BCD_ROOT_SD,
};

/// key path (as hivex prints it, `\A\B`) -> value name -> (type, data)
type Dump = BTreeMap<String, BTreeMap<String, (u32, Vec<u8>)>>;

fn key_path(parent: &str, name: &str) -> String {
    if parent == "\\" {
        format!("\\{name}")
    } else {
        format!("{parent}\\{name}")
    }
}

/// Everything our reader sees, in the same shape as a hivex export.
fn reader_dump(h: &Hive) -> Dump {
    let mut out = Dump::new();
    let mut stack: Vec<(String, Key)> = vec![("\\".to_string(), h.root().unwrap())];
    while let Some((path, k)) = stack.pop() {
        let mut vals = BTreeMap::new();
        for v in k.values().unwrap() {
            vals.insert(
                v.name().unwrap(),
                (v.value_type(), v.data().unwrap().into_owned()),
            );
        }
        for s in k.subkeys().unwrap() {
            stack.push((key_path(&path, &s.name().unwrap()), s));
        }
        assert!(
            out.insert(path.clone(), vals).is_none(),
            "duplicate key {path}"
        );
    }
    out
}

fn unescape_name(s: &str) -> (String, &str) {
    // s starts after the opening quote; returns (name, rest after the closing quote)
    let mut name = String::new();
    let mut it = s.char_indices();
    while let Some((i, c)) = it.next() {
        match c {
            '\\' => name.push(it.next().unwrap().1),
            '"' => return (name, &s[i + 1..]),
            _ => name.push(c),
        }
    }
    panic!("unterminated value name in {s:?}");
}

fn parse_hex(s: &str) -> Vec<u8> {
    if s.is_empty() {
        return vec![];
    }
    s.split(',')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// Decode hivex output: lines are UTF-8 when Perl printed wide characters, else Latin-1.
fn decode_export(raw: &[u8]) -> String {
    raw.split(|&b| b == b'\n')
        .map(|l| match std::str::from_utf8(l) {
            Ok(s) => s.to_string(),
            Err(_) => l.iter().map(|&b| b as char).collect(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn parse_hivex(text: &str) -> Dump {
    let mut out = Dump::new();
    let mut cur: Option<String> = None;
    for line in text.lines().skip(1) {
        if line.is_empty() {
            continue;
        }
        if let Some(p) = line.strip_prefix('[') {
            let p = p.strip_suffix(']').unwrap().to_string();
            out.insert(p.clone(), BTreeMap::new());
            cur = Some(p);
            continue;
        }
        let (name, rest) = if let Some(r) = line.strip_prefix("@=") {
            (String::new(), r)
        } else {
            let (n, r) = unescape_name(line.strip_prefix('"').unwrap());
            (n, r.strip_prefix('=').unwrap())
        };
        let (t, data) = if let Some(d) = rest.strip_prefix("dword:") {
            (
                4,
                u32::from_str_radix(d, 16).unwrap().to_le_bytes().to_vec(),
            )
        } else {
            let r = rest.strip_prefix("hex(").unwrap();
            let (t, d) = r.split_once("):").unwrap();
            (u32::from_str_radix(t, 16).unwrap(), parse_hex(d))
        };
        out.get_mut(cur.as_ref().unwrap())
            .unwrap()
            .insert(name, (t, data));
    }
    out
}

fn hivex_export_raw(bytes: &[u8]) -> Vec<u8> {
    require_tool("hivexregedit");
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
    let out = Command::new("hivexregedit")
        .arg("--export")
        .arg(f.path())
        .arg("\\")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hivexregedit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn hivex_dump(bytes: &[u8]) -> Dump {
    parse_hivex(&decode_export(&hivex_export_raw(bytes)))
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(|u| u.to_le_bytes())
        .collect()
}

/// Subkey lists of every key are sorted by upcased name and carry correct hints/hashes.
fn assert_lists_well_formed(h: &Hive) {
    let mut stack = vec![h.root().unwrap()];
    while let Some(k) = stack.pop() {
        let subs = k.subkeys().unwrap();
        assert_eq!(subs.len() as u32, k.subkey_count());
        for w in subs.windows(2) {
            let a = w[0].name_raw().units().map(upcase_unit);
            let b = w[1].name_raw().units().map(upcase_unit);
            assert!(
                a.lt(b),
                "subkeys of {:?} not sorted: {:?} !< {:?}",
                k.name().unwrap(),
                w[0].name().unwrap(),
                w[1].name().unwrap()
            );
        }
        if let Some(kind) = k.subkey_list_kind().unwrap() {
            if kind == ListKind::Lf || kind == ListKind::Lh {
                let raw = &h.bytes()[0x1000 + k.subkey_list_offset() as usize + 4..];
                for (i, s) in subs.iter().enumerate() {
                    let aux = u32::from_le_bytes(raw[8 + 8 * i..12 + 8 * i].try_into().unwrap());
                    let want = match kind {
                        ListKind::Lf => u32::from_le_bytes(lf_hint(s.name_raw().units())),
                        _ => lh_hash(s.name_raw().units()),
                    };
                    assert_eq!(aux, want, "bad {kind:?} aux for {:?}", s.name().unwrap());
                }
            }
        }
        let maxn = subs
            .iter()
            .map(|s| 2 * s.name_raw().len_units() as u32)
            .max()
            .unwrap_or(0);
        assert!(
            k.max_subkey_name_len() >= maxn,
            "max subkey name len of {:?}",
            k.name().unwrap()
        );
        let vals = k.values().unwrap();
        let maxv = vals
            .iter()
            .map(|v| 2 * v.name_raw().len_units() as u32)
            .max()
            .unwrap_or(0);
        assert!(k.max_value_name_len() >= maxv);
        let maxd = vals.iter().map(|v| v.data_len()).max().unwrap_or(0);
        assert!(k.max_value_data_len() >= maxd);
        stack.extend(subs);
    }
}

// ------------------------------------------------------------------ reader

#[rstest]
#[case("hives/win7-sp1-x86/SYSTEM", 30756)]
#[case("hives/win10-mobile/SAM", 1)]
#[case("hives/win10-mobile/SECURITY", 4)]
#[case("hives/win10-mobile/ELAM", 1)]
#[case("hives/win10-mobile/BBI", 1)]
#[case("hives/win10-mobile/DRIVERS", 77)]
#[case("hives/win10-mobile/DEFAULT", 106)]
#[case("bcd/win7-bios/BCD", 99)]
#[case("bcd/empty-createstore/BCD", 3)]
#[case("bcd/ntloader/bcd", 85)]
#[case("bcd/win10-iso-ramdisk/bcd", 65)]
#[case("bcd/win10-uefi/BCD", 132)]
#[case("bcd/template-desktop/BCDTemplate", 105)]
fn fixture_hive_parses_with_readme_key_count(#[case] rel: &str, #[case] keys: usize) {
    assert!(HIVES.contains(&rel));
    let data = read_fixture(rel);
    let h = Hive::parse(&data).unwrap();
    assert!(!h.base().is_dirty());
    assert!(h.base().checksum_ok());
    let st = h.check().unwrap();
    assert_eq!(st.keys, keys);
    // Windows' own lists satisfy our sort order, lf hints and lh hashes.
    assert_lists_well_formed(&h);
    let dump = reader_dump(&h);
    assert_eq!(dump.len(), keys);
    // Our reader sees exactly what hivex exported (keys, value names, types, data).
    let oracle = parse_hivex(&decode_export(&read_fixture(&format!("{rel}.hivex.reg"))));
    assert_eq!(dump, oracle);
}

#[test]
fn fixture_system_values() {
    let data = read_fixture("hives/win7-sp1-x86/SYSTEM");
    let h = Hive::parse(&data).unwrap();
    assert_eq!((h.base().major, h.base().minor), (1, 5));
    assert_eq!(
        h.root().unwrap().name().unwrap(),
        "CMI-CreateHive{F10156BE-0E87-4EFB-969E-5DA29D131144}"
    );
    let mm = h
        .open("ControlSet001\\Control\\Session Manager\\Memory Management")
        .unwrap()
        .unwrap();
    assert_eq!(
        mm.value("PagingFiles")
            .unwrap()
            .unwrap()
            .as_multi_sz()
            .unwrap(),
        vec!["?:\\pagefile.sys".to_string()]
    );
    assert_eq!(
        mm.value("ExistingPageFiles")
            .unwrap()
            .unwrap()
            .as_multi_sz()
            .unwrap(),
        vec!["\\??\\C:\\pagefile.sys".to_string()]
    );
    let sel = h.open("\\Select").unwrap().unwrap();
    for n in ["Current", "Default", "LastKnownGood"] {
        let v = sel.value(n).unwrap().unwrap().as_dword().unwrap();
        assert!(v == 1 || v == 2, "{n}={v}");
    }
    assert!(sel.value("Failed").unwrap().is_some());
    let pnp = h.open("ControlSet001\\Control\\PnP").unwrap().unwrap();
    assert_eq!(
        pnp.value("PollBootPartitionTimeout")
            .unwrap()
            .unwrap()
            .as_dword()
            .unwrap(),
        0
    );
    let subs: Vec<String> = pnp
        .subkeys()
        .unwrap()
        .iter()
        .map(|k| k.name().unwrap())
        .collect();
    assert!(subs.contains(&"BusInformation".to_string()) && subs.contains(&"Pci".to_string()));
    // Case-insensitive lookup of keys and values; misses are None.
    let again = h
        .open("controlset001\\CONTROL\\session manager\\MEMORY management")
        .unwrap()
        .unwrap();
    assert_eq!(again.offset(), mm.offset());
    assert!(again.value("pagingfiles").unwrap().is_some());
    assert!(h.open("ControlSet001\\NoSuchKey").unwrap().is_none());
    assert!(mm.value("NoSuchValue").unwrap().is_none());
    // Typed views refuse the wrong type.
    assert!(mm
        .value("PagingFiles")
        .unwrap()
        .unwrap()
        .as_dword()
        .is_err());
    // Class names (Lsa\JD etc.) and security cells are readable.
    let jd = h.open("ControlSet001\\Control\\Lsa\\JD").unwrap().unwrap();
    assert!(jd.class_name().unwrap().is_some());
    let sk = mm.security().unwrap().unwrap();
    assert!(sk.refcount() >= 1);
    assert_eq!(sk.descriptor()[0], 1); // SECURITY_DESCRIPTOR revision 1
}

#[test]
fn fixture_default_utf16_surrogate_names() {
    let data = read_fixture("hives/win10-mobile/DEFAULT");
    let h = Hive::parse(&data).unwrap();
    let k = h
        .open("Control Panel\\International\\🌎🌏🌍")
        .unwrap()
        .unwrap();
    assert!(!k.name_is_compressed());
    assert_eq!(k.name().unwrap(), "🌎🌏🌍");
    assert_eq!(k.name_bytes().len(), 12);
}

#[test]
fn fixture_root_without_hive_entry_flag() {
    for rel in ["hives/win10-mobile/SAM", "hives/win10-mobile/BBI"] {
        let data = read_fixture(rel);
        let h = Hive::parse(&data).unwrap();
        assert_eq!(h.root().unwrap().flags(), 0x20);
    }
}

#[test]
fn fixture_corrupt_sub_key_list_names_offset() {
    let data = read_fixture("hives/corrupt/corrupt_sub_key_list.hiv");
    let h = Hive::parse(&data).unwrap();
    let root = h.root().unwrap();
    assert_eq!(root.name().unwrap(), "TestKey");
    assert_eq!(root.subkey_count(), 100);
    let e = root.subkeys().unwrap_err();
    let msg = e.to_string();
    // hivex: "subkey is not a valid block (0x5480)" — hivex prints FILE offsets; the
    // hbin-relative cell offset stored in the lf list is 0x4480.
    assert_eq!(e.offset, 0x5480, "{msg}");
    assert!(
        msg.contains("cell 0x4480") && msg.contains("file offset 0x5480"),
        "{msg}"
    );
    assert!(root.subkey("anything").is_err());
    let e = h.check().unwrap_err();
    assert!(e.to_string().contains("0x5480"), "{e}");
    assert!(Editor::open(data.clone()).is_err());
}

#[test]
fn fixture_corrupted_system_hive_broken_bin_chain() {
    let data = read_fixture("hives/corrupt/corrupted_system_hive");
    let h = Hive::parse(&data).unwrap();
    assert_eq!(h.base().seq1, 731);
    assert!(!h.base().is_dirty());
    let e = h.check().unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.offset, 0x1a000, "{msg}");
    assert!(
        msg.contains("0x1a000") && msg.contains("after 25 bins"),
        "{msg}"
    );
    // Keys in the first bins are still readable lazily.
    let root = h.root().unwrap();
    assert_eq!(root.name().unwrap(), "$$$PROTO.HIV");
    assert!(Editor::open(data.clone()).is_err());
}

#[test]
fn fixture_system_full_walk_reaches_every_key_and_value() {
    let data = read_fixture("hives/win7-sp1-x86/SYSTEM");
    let t = std::time::Instant::now();
    let h = Hive::parse(&data).unwrap();
    let (mut keys, mut values, mut bytes) = (0usize, 0usize, 0usize);
    let mut stack = vec![h.root().unwrap()];
    while let Some(k) = stack.pop() {
        keys += 1;
        std::hint::black_box(k.name_bytes());
        for v in k.values().unwrap() {
            values += 1;
            std::hint::black_box(v.name_bytes());
            bytes += v.data().unwrap().len();
        }
        stack.extend(k.subkeys().unwrap());
    }
    let el = t.elapsed();
    eprintln!("SYSTEM full walk: {keys} keys, {values} values, {bytes} data bytes in {el:?}");
    assert_eq!(keys, 30756);
    assert!(values > 50_000, "{values}");
}

// ------------------------------------------------------------------ editor

#[test]
fn fixture_editor_seed_step6_matches_hivex() {
    let orig = read_fixture("hives/win7-sp1-x86/SYSTEM");
    let mm = "ControlSet001\\Control\\Session Manager\\Memory Management";
    let mut ed = Editor::open(orig.clone()).unwrap();
    ed.set_value(mm, "PagingFiles", REG_MULTI_SZ, &[0, 0, 0, 0])
        .unwrap();
    assert!(ed.delete_value(mm, "ExistingPageFiles").unwrap());
    assert!(!ed.delete_value(mm, "ExistingPageFiles").unwrap());
    let out = ed.finish(0x01DA_0000_0000_0000);
    // Base block clean, checksum valid, seq advanced.
    let h = Hive::parse(&out).unwrap();
    assert!(!h.base().is_dirty());
    assert_eq!(h.base().seq1, 13984);
    assert_eq!(h.base().timestamp, 0x01DA_0000_0000_0000);
    h.check().unwrap();
    let k = h.open(mm).unwrap().unwrap();
    assert_eq!(
        k.value("PagingFiles")
            .unwrap()
            .unwrap()
            .as_multi_sz()
            .unwrap(),
        Vec::<String>::new()
    );
    assert!(k.value("ExistingPageFiles").unwrap().is_none());
    assert_eq!(k.timestamp(), 0x01DA_0000_0000_0000);
    // hivex: the export differs from the original's in exactly these two lines.
    let before = String::from_utf8(read_fixture("hives/win7-sp1-x86/SYSTEM.hivex.reg")).unwrap();
    let after = String::from_utf8(hivex_export_raw(&out)).unwrap();
    let mut expected = Vec::new();
    let mut section = "";
    let (mut replaced, mut dropped) = (0, 0);
    for line in before.split('\n') {
        if line.starts_with('[') {
            section = line;
        }
        if section == format!("[\\{mm}]") {
            if line.starts_with("\"PagingFiles\"=") {
                expected.push("\"PagingFiles\"=hex(7):00,00,00,00".to_string());
                replaced += 1;
                continue;
            }
            if line.starts_with("\"ExistingPageFiles\"=") {
                dropped += 1;
                continue;
            }
        }
        expected.push(line.to_string());
    }
    assert_eq!((replaced, dropped), (1, 1));
    let after_lines: Vec<&str> = after.split('\n').collect();
    assert_eq!(after_lines.len(), expected.len());
    for (i, (a, e)) in after_lines.iter().zip(&expected).enumerate() {
        assert_eq!(a, e, "line {i}");
    }
}

/// Allocated cells of `h`: offset -> (file range).
fn allocated_cells(h: &Hive) -> BTreeMap<u32, std::ops::Range<usize>> {
    let mut m = BTreeMap::new();
    for b in h.bins().unwrap() {
        h.bin_cells(b, &mut |o, s| {
            if s < 0 {
                let a = 0x1000 + o as usize;
                m.insert(o, a..a + s.unsigned_abs() as usize);
            }
        })
        .unwrap();
    }
    m
}

#[test]
fn fixture_delete_value_touches_only_its_cells() {
    let orig = read_fixture("hives/win7-sp1-x86/SYSTEM");
    let mm = "ControlSet001\\Control\\Session Manager\\Memory Management";
    let h0 = Hive::parse(&orig).unwrap();
    let key = h0.open(mm).unwrap().unwrap();
    let v = key.value("ExistingPageFiles").unwrap().unwrap();
    let data_cell = v.data_offset_field();
    let touched = [key.offset(), key.value_list_offset(), v.offset(), data_cell];
    let mut ed = Editor::open(orig.clone()).unwrap();
    assert!(ed.delete_value(mm, "ExistingPageFiles").unwrap());
    let out = ed.finish(1);
    assert_eq!(out.len(), orig.len());
    let h1 = Hive::parse(&out).unwrap();
    let before = allocated_cells(&h0);
    let after = allocated_cells(&h1);
    let mut compared = 0;
    for (o, r) in &before {
        if touched.contains(o) {
            continue;
        }
        assert_eq!(after.get(o), Some(r), "cell {o:#x} moved or was freed");
        assert_eq!(orig[r.clone()], out[r.clone()], "cell {o:#x} changed");
        compared += 1;
    }
    assert!(compared > 100_000);
    // The vk and the data cell are free now; the value list stayed where it was.
    assert!(!after.contains_key(&v.offset()) && !after.contains_key(&data_cell));
    assert!(after.contains_key(&key.value_list_offset()));
    // The hbins beyond the base block differ only inside the touched cells' byte ranges
    // (and the size field of free cells they were merged with).
    h1.check().unwrap();
}

#[rstest]
#[case(3)]
#[case(5)]
fn fixture_editor_all_types_big_data_many_subkeys(#[case] minor: u32) {
    let mut ed = Editor::new_hive(&NewHive {
        minor,
        root_name: "ROOT".into(),
        ..NewHive::default()
    })
    .unwrap();
    let big: Vec<u8> = (0..40_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let exact: Vec<u8> = (0..16_344u32).map(|i| i as u8).collect();
    ed.create_key("A\\B\\C").unwrap();
    ed.create_key("a\\b\\c").unwrap(); // exists, case-insensitively
    ed.create_key("Ünïcødé\\日本語\\🌎").unwrap();
    let values: Vec<(&str, u32, Vec<u8>)> = vec![
        ("", REG_SZ, utf16z("default")),
        ("none", REG_NONE, vec![]),
        ("sz", REG_SZ, utf16z("hello")),
        ("empty_sz", REG_SZ, utf16z("")),
        ("expand", REG_EXPAND_SZ, utf16z("%SystemRoot%\\x")),
        ("bin", REG_BINARY, vec![1, 2, 3]),
        ("bin5", REG_BINARY, vec![1, 2, 3, 4, 5]),
        ("dword", REG_DWORD, 0xDEADBEEFu32.to_le_bytes().to_vec()),
        ("dwbe", REG_DWORD_BIG_ENDIAN, vec![0, 0, 0, 1]),
        (
            "link",
            REG_LINK,
            utf16z("\\Registry\\Machine\\X")[..36].to_vec(),
        ),
        (
            "multi",
            REG_MULTI_SZ,
            [utf16z("a"), utf16z("bc"), vec![0, 0]].concat(),
        ),
        ("reslist", REG_RESOURCE_LIST, vec![9; 40]),
        ("fullres", REG_FULL_RESOURCE_DESCRIPTOR, vec![8; 12]),
        ("reqlist", REG_RESOURCE_REQUIREMENTS_LIST, vec![7; 100]),
        (
            "qword",
            REG_QWORD,
            0x0123_4567_89AB_CDEFu64.to_le_bytes().to_vec(),
        ),
        ("odd type", 0x1234_5678, vec![0xAA; 7]),
        ("big", REG_BINARY, big.clone()),
        ("exact16344", REG_BINARY, exact.clone()),
        ("wïde näme ✓", REG_SZ, utf16z("x")),
    ];
    for (n, t, d) in &values {
        ed.set_value("A\\B", n, *t, d).unwrap();
    }
    for i in 0..700 {
        ed.create_key(&format!("Many\\Key{:04}", (i * 7919) % 700))
            .unwrap();
    }
    // Replace values in every storage class transition.
    ed.set_value("A\\B", "big", REG_BINARY, &big[..100])
        .unwrap();
    ed.set_value("A\\B", "bin5", REG_BINARY, &big).unwrap();
    ed.set_value("A\\B", "dword", REG_DWORD, &7u32.to_le_bytes())
        .unwrap();
    ed.set_value("A\\B", "sz", REG_SZ, &utf16z("a longer string than before"))
        .unwrap();
    {
        let h = ed.hive().unwrap();
        h.check().unwrap();
        let k = h.open("a\\b").unwrap().unwrap();
        assert_eq!(
            k.value("BIN5").unwrap().unwrap().data().unwrap().as_ref(),
            &big[..]
        );
        let st = k.value("bin5").unwrap().unwrap().storage().unwrap();
        if minor >= 4 {
            assert!(matches!(st, ufd_formats::hive::DataStorage::BigData(_)));
        } else {
            assert!(matches!(st, ufd_formats::hive::DataStorage::Cell(_)));
        }
        assert_eq!(
            k.value("dword").unwrap().unwrap().storage().unwrap(),
            ufd_formats::hive::DataStorage::Inline
        );
        assert_eq!(h.open("Many").unwrap().unwrap().subkey_count(), 700);
        let kind = h
            .open("Many")
            .unwrap()
            .unwrap()
            .subkey_list_kind()
            .unwrap()
            .unwrap();
        assert_eq!(
            kind,
            if minor <= 4 {
                ListKind::Lf
            } else {
                ListKind::Lh
            }
        );
        assert_lists_well_formed(&h);
    }
    let out = ed.finish(5);
    let h = Hive::parse(&out).unwrap();
    let mine = reader_dump(&h);
    let oracle = hivex_dump(&out);
    assert_eq!(mine, oracle);
    let b = &oracle["\\A\\B"];
    assert_eq!(b["bin5"], (REG_BINARY, big.clone()));
    assert_eq!(b["big"], (REG_BINARY, big[..100].to_vec()));
    assert_eq!(b["exact16344"], (REG_BINARY, exact));
    assert_eq!(b["wïde näme ✓"], (REG_SZ, utf16z("x")));
    assert!(oracle.contains_key("\\Ünïcødé\\日本語\\🌎"));
    assert_eq!(
        oracle.keys().filter(|k| k.starts_with("\\Many\\")).count(),
        700
    );

    // Now delete most of it again and check nothing leaks.
    let mut ed = Editor::open(out).unwrap();
    for i in 0..700 {
        if i % 3 != 0 {
            ed.delete_key(&format!("many\\KEY{i:04}")).unwrap();
        }
    }
    for (n, _, _) in &values {
        assert!(ed.delete_value("A\\B", n).unwrap(), "{n}");
    }
    ed.delete_key("Ünïcødé").unwrap();
    assert!(ed.delete_key("Ünïcødé").is_err());
    assert!(ed.delete_key("\\").is_err());
    let out = ed.finish(6);
    let h = Hive::parse(&out).unwrap();
    h.check().unwrap();
    assert_lists_well_formed(&h);
    let b = h.open("A\\B").unwrap().unwrap();
    assert_eq!(
        (
            b.value_count(),
            b.value_list_offset(),
            b.max_value_name_len(),
            b.max_value_data_len()
        ),
        (0, u32::MAX, 0, 0)
    );
    assert_eq!(reader_dump(&h), hivex_dump(&out));
    assert_eq!(h.open("Many").unwrap().unwrap().subkey_count(), 234);
    // Only the root sk remains and its refcount equals the number of keys.
    let st = h.check().unwrap();
    assert_eq!(st.security_cells, 1);
    assert_eq!(
        h.root().unwrap().security().unwrap().unwrap().refcount() as usize,
        st.keys
    );
}

#[test]
fn fixture_editor_on_real_bcd_keeps_lf_and_sk_refcounts() {
    let orig = read_fixture("bcd/win7-bios/BCD");
    let h0 = Hive::parse(&orig).unwrap();
    let objects_sk = h0
        .open("Objects")
        .unwrap()
        .unwrap()
        .security()
        .unwrap()
        .unwrap();
    let rc0 = objects_sk.refcount();
    let mut ed = Editor::open(orig.clone()).unwrap();
    ed.create_key("Objects\\{11111111-2222-3333-4444-555555555555}\\Elements\\12000004")
        .unwrap();
    ed.set_value(
        "Objects\\{11111111-2222-3333-4444-555555555555}\\Elements\\12000004",
        "Element",
        REG_SZ,
        &utf16z("Test"),
    )
    .unwrap();
    let out = ed.finish(7);
    let h = Hive::parse(&out).unwrap();
    h.check().unwrap();
    assert_lists_well_formed(&h);
    let o = h.open("Objects").unwrap().unwrap();
    assert_eq!(o.subkey_list_kind().unwrap(), Some(ListKind::Lf));
    let sk = h
        .open("Objects")
        .unwrap()
        .unwrap()
        .security()
        .unwrap()
        .unwrap();
    assert_eq!(sk.offset(), objects_sk.offset());
    assert_eq!(sk.refcount(), rc0 + 3);
    let mut expect = parse_hivex(&decode_export(&read_fixture("bcd/win7-bios/BCD.hivex.reg")));
    expect.insert(
        "\\Objects\\{11111111-2222-3333-4444-555555555555}".into(),
        BTreeMap::new(),
    );
    expect.insert(
        "\\Objects\\{11111111-2222-3333-4444-555555555555}\\Elements".into(),
        BTreeMap::new(),
    );
    expect.insert(
        "\\Objects\\{11111111-2222-3333-4444-555555555555}\\Elements\\12000004".into(),
        BTreeMap::from([("Element".to_string(), (REG_SZ, utf16z("Test")))]),
    );
    assert_eq!(hivex_dump(&out), expect);
    // Deleting it again restores the refcount and frees the cells.
    let mut ed = Editor::open(out).unwrap();
    ed.delete_key("objects\\{11111111-2222-3333-4444-555555555555}")
        .unwrap();
    let out = ed.finish(8);
    let h = Hive::parse(&out).unwrap();
    assert_eq!(
        h.open("Objects")
            .unwrap()
            .unwrap()
            .security()
            .unwrap()
            .unwrap()
            .refcount(),
        rc0
    );
    assert_eq!(
        reader_dump(&h),
        parse_hivex(&decode_export(&read_fixture("bcd/win7-bios/BCD.hivex.reg")))
    );
}

#[test]
fn fixture_editor_updates_ri_lists_in_system() {
    let orig = read_fixture("hives/win7-sp1-x86/SYSTEM");
    let h0 = Hive::parse(&orig).unwrap();
    // Find a key whose subkey list is an ri (index root).
    let mut stack = vec![("".to_string(), h0.root().unwrap())];
    let mut ri_key = None;
    while let Some((p, k)) = stack.pop() {
        if k.subkey_list_kind().unwrap() == Some(ListKind::Ri) {
            ri_key = Some((p, k.subkey_count()));
            break;
        }
        for s in k.subkeys().unwrap() {
            let n = s.name().unwrap();
            stack.push((if p.is_empty() { n } else { format!("{p}\\{n}") }, s));
        }
    }
    let (path, n) = ri_key.expect("SYSTEM has an ri list");
    let mut ed = Editor::open(orig.clone()).unwrap();
    for name in ["!first", "mmm_ufd_middle", "~~~last", "ZZZZ"] {
        ed.create_key(&format!("{path}\\{name}")).unwrap();
        ed.set_value(
            &format!("{path}\\{name}"),
            "v",
            REG_DWORD,
            &1u32.to_le_bytes(),
        )
        .unwrap();
    }
    ed.delete_key(&format!("{path}\\ZZZZ")).unwrap();
    let out = ed.finish(2);
    let h = Hive::parse(&out).unwrap();
    h.check().unwrap();
    let k = h.open(&path).unwrap().unwrap();
    assert_eq!(k.subkey_list_kind().unwrap(), Some(ListKind::Ri));
    assert_eq!(k.subkey_count(), n + 3);
    let names: Vec<String> = k
        .subkeys()
        .unwrap()
        .iter()
        .map(|s| s.name().unwrap())
        .collect();
    assert_eq!(names.first().unwrap(), "!first");
    assert_eq!(names.last().unwrap(), "~~~last");
    assert_lists_well_formed(&h);
    let mut expect = parse_hivex(&decode_export(&read_fixture(
        "hives/win7-sp1-x86/SYSTEM.hivex.reg",
    )));
    for name in ["!first", "mmm_ufd_middle", "~~~last"] {
        let v = BTreeMap::from([("v".to_string(), (REG_DWORD, 1u32.to_le_bytes().to_vec()))]);
        expect.insert(format!("\\{path}\\{name}"), v);
    }
    assert_eq!(hivex_dump(&out), expect);
}

#[test]
fn fixture_editor_refuses_dirty_hive() {
    let mut data = read_fixture("hives/win10-mobile/SAM");
    data[8..12].copy_from_slice(&0u32.to_le_bytes());
    let ck = ufd_formats::hive::windows_checksum(&data);
    data[508..512].copy_from_slice(&ck.to_le_bytes());
    let h = Hive::parse(&data).unwrap();
    assert!(h.base().is_dirty());
    assert!(h.base().checksum_ok());
    let e = Editor::open(data.clone()).unwrap_err();
    assert!(e.to_string().contains("dirty"), "{e}");
    // Bad checksum: also dirty, also refused.
    let mut data = read_fixture("hives/win10-mobile/SAM");
    data[508] ^= 0x55;
    let h = Hive::parse(&data).unwrap();
    assert!(h.base().is_dirty() && !h.base().checksum_ok());
    assert!(h.check().is_err());
    assert!(Editor::open(data).is_err());
}

// ------------------------------------------------------------------ builder

#[test]
fn fixture_builder_bcd_store_matches_createstore() {
    let mut ed = Editor::new_hive(&NewHive {
        file_name: "\\??\\C:\\Boot\\BCD".into(),
        ..NewHive::bcd()
    })
    .unwrap();
    ed.create_key("Description").unwrap();
    ed.set_value("Description", "KeyName", REG_SZ, &utf16z("BCD00000001"))
        .unwrap();
    ed.create_key("Objects").unwrap();
    let out = ed.finish(0x01D9_CF03_B3A0_ABE5);
    assert_eq!(out.len(), 8192);
    let h = Hive::parse(&out).unwrap();
    assert_eq!(
        (
            h.base().major,
            h.base().minor,
            h.base().root,
            h.base().seq1,
            h.base().seq2
        ),
        (1, 3, 0x20, 1, 1)
    );
    assert_eq!(h.base().name, "\\??\\C:\\Boot\\BCD");
    h.check().unwrap();
    let root = h.root().unwrap();
    assert_eq!(root.flags(), 0x2C);
    assert_eq!(root.name().unwrap(), "NewStoreRoot");
    assert_eq!(root.subkey_list_kind().unwrap(), Some(ListKind::Lf));
    assert_eq!(root.max_subkey_name_len(), 0x16);
    let rsk = root.security().unwrap().unwrap();
    assert_eq!((rsk.refcount(), rsk.descriptor()), (1, &BCD_ROOT_SD[..]));
    let csk = h
        .open("Objects")
        .unwrap()
        .unwrap()
        .security()
        .unwrap()
        .unwrap();
    assert_eq!((csk.refcount(), csk.descriptor()), (2, &BCD_CHILD_SD[..]));
    assert_eq!(
        (rsk.flink(), rsk.blink(), csk.flink(), csk.blink()),
        (csk.offset(), csk.offset(), rsk.offset(), rsk.offset())
    );
    // The SD constants are the fixture's bytes.
    let fx = read_fixture("bcd/empty-createstore/BCD");
    let fh = Hive::parse(&fx).unwrap();
    assert_eq!(
        fh.root().unwrap().security().unwrap().unwrap().descriptor(),
        &BCD_ROOT_SD[..]
    );
    assert_eq!(
        fh.open("Objects")
            .unwrap()
            .unwrap()
            .security()
            .unwrap()
            .unwrap()
            .descriptor(),
        &BCD_CHILD_SD[..]
    );
    // hivex exports exactly what it exports for the bcdedit-made store.
    assert_eq!(
        hivex_export_raw(&out),
        read_fixture("bcd/empty-createstore/BCD.hivex.reg")
    );
}

#[test]
fn fixture_builder_default_minor5_uses_lh() {
    let mut ed = Editor::new_hive(&NewHive::default()).unwrap();
    assert_eq!(ed.default_list_kind(), ListKind::Lh);
    ed.create_key("Software\\Test").unwrap();
    ed.set_value("Software\\Test", "v", REG_DWORD, &1u32.to_le_bytes())
        .unwrap();
    let out = ed.finish(1);
    let h = Hive::parse(&out).unwrap();
    assert_eq!(h.base().minor, 5);
    assert_eq!(
        h.root().unwrap().subkey_list_kind().unwrap(),
        Some(ListKind::Lh)
    );
    // children inherit the root's sk
    assert_eq!(h.root().unwrap().security().unwrap().unwrap().refcount(), 3);
    assert_lists_well_formed(&h);
    assert_eq!(reader_dump(&h), hivex_dump(&out));
}

// ------------------------------------------------------------------ property test

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const NAMES: &[&str] = &[
    "Alpha", "alpha", "Beta", "GAMMA", "delta", "Ärger", "ärger", "αβγ", "ΑΒΓ", "日本", "🌎x",
    "k1", "K2", "zz", "Objects", "a",
];

/// Model: uppercase key path -> (display path, values: uppercase name -> (display, type, data)).
type Model = BTreeMap<String, (String, BTreeMap<String, (String, u32, Vec<u8>)>)>;

fn up(s: &str) -> String {
    String::from_utf16(&s.encode_utf16().map(upcase_unit).collect::<Vec<_>>()).unwrap()
}

fn model_from_dump(d: &Dump) -> Model {
    d.iter()
        .map(|(p, vals)| {
            (
                up(p),
                (
                    p.clone(),
                    vals.iter()
                        .map(|(n, (t, b))| (up(n), (n.clone(), *t, b.clone())))
                        .collect(),
                ),
            )
        })
        .collect()
}

fn random_edits(mut ed: Editor, seed: u64, ops: usize) {
    let mut rng = Rng(seed);
    let mut model = model_from_dump(&reader_dump(&ed.hive().unwrap()));
    for step in 0..ops {
        let keys: Vec<(String, String)> = model
            .iter()
            .map(|(u, (d, _))| (u.clone(), d.clone()))
            .collect();
        let (ku, kd) = keys[rng.below(keys.len())].clone();
        let ed_path = kd.trim_start_matches('\\').to_string();
        match rng.below(10) {
            0..=2 => {
                let name = NAMES[rng.below(NAMES.len())];
                let np = key_path(&kd, name);
                ed.create_key(&np).unwrap();
                model.entry(up(&np)).or_insert((np, BTreeMap::new()));
            }
            3 if ku != "\\" => {
                ed.delete_key(&ed_path).unwrap();
                let prefix = format!("{ku}\\");
                model.retain(|k, _| k != &ku && !k.starts_with(&prefix));
            }
            4..=7 => {
                let name = if rng.below(8) == 0 {
                    ""
                } else {
                    NAMES[rng.below(NAMES.len())]
                };
                let len = match rng.below(6) {
                    0 => 0,
                    1 => rng.below(5),
                    2 | 3 => 5 + rng.below(200),
                    4 => 200 + rng.below(3000),
                    _ => 16_000 + rng.below(20_000),
                };
                let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let t = [
                    REG_SZ,
                    REG_BINARY,
                    REG_DWORD,
                    REG_MULTI_SZ,
                    REG_QWORD,
                    REG_NONE,
                ][rng.below(6)];
                ed.set_value(&ed_path, name, t, &data).unwrap();
                let vals = &mut model.get_mut(&ku).unwrap().1;
                let disp = vals
                    .get(&up(name))
                    .map(|v| v.0.clone())
                    .unwrap_or_else(|| name.to_string());
                vals.insert(up(name), (disp, t, data));
            }
            _ => {
                let vals = &mut model.get_mut(&ku).unwrap().1;
                let name = if !vals.is_empty() && rng.below(4) != 0 {
                    let ks: Vec<String> = vals.values().map(|v| v.0.clone()).collect();
                    ks[rng.below(ks.len())].clone()
                } else {
                    NAMES[rng.below(NAMES.len())].to_string()
                };
                let existed = vals.remove(&up(&name)).is_some();
                assert_eq!(ed.delete_value(&ed_path, &name).unwrap(), existed);
            }
        }
        if step % 25 == 0 {
            let h = ed.hive().unwrap();
            h.check()
                .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
            assert_eq!(
                model_from_dump(&reader_dump(&h)),
                model,
                "seed {seed} step {step}"
            );
        }
    }
    let out = ed.finish(seed);
    let h = Hive::parse(&out).unwrap();
    h.check().unwrap();
    assert_lists_well_formed(&h);
    assert_eq!(
        model_from_dump(&reader_dump(&h)),
        model,
        "seed {seed} final (reader)"
    );
    assert_eq!(
        model_from_dump(&hivex_dump(&out)),
        model,
        "seed {seed} final (hivex)"
    );
    // The result can be edited again.
    Editor::open(out).unwrap();
}

#[rstest]
#[case(3, 1)]
#[case(3, 2)]
#[case(5, 3)]
#[case(5, 4)]
fn fixture_random_edits_on_new_hive(#[case] minor: u32, #[case] seed: u64) {
    let ed = Editor::new_hive(&NewHive {
        minor,
        ..NewHive::default()
    })
    .unwrap();
    random_edits(ed, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 400);
}

#[rstest]
#[case("hives/win10-mobile/DRIVERS", 11)]
#[case("bcd/ntloader/bcd", 12)]
#[case("hives/win10-mobile/DEFAULT", 13)]
fn fixture_random_edits_on_real_hive(#[case] rel: &str, #[case] seed: u64) {
    let ed = Editor::open(read_fixture(rel)).unwrap();
    random_edits(ed, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 400);
}
