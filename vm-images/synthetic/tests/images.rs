//! Integration tests of the synthetic images: the hives (against hivex, the oracle), the BCD
//! template (against our BCD model and hivex), and the WIMs (wimlib's `wiminfo`, `wimapply`
//! into a directory and into an NTFS volume made by `mkntfs`).
//!
//! Debian packages: wimtools (wimcapture, wiminfo, wimapply, wimdir), ntfs-3g (mkntfs,
//! ntfscat), libhivex-bin (hivexget), libwin-hivex-perl (hivexregedit).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rstest::rstest;
use ufd_formats::bcd::Store;
use ufd_formats::hive::{regtext, Hive, ListKind};
use ufd_synthetic::{
    build, build_hive, manifest, overrides_from_dir, require_tool, tree, HiveKind, ManifestKind,
    Override, IMAGES, SOURCES,
};

fn tool(name: &str, package: &str) -> PathBuf {
    match require_tool(name, package) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn hive_of(image: &str, path: &str) -> Vec<u8> {
    let e = manifest(image)
        .unwrap()
        .into_iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("{path} not in the manifest"));
    match e.kind {
        ManifestKind::Hive { kind, source } => build_hive(image, kind, &source).unwrap(),
        other => panic!("{path} is {other:?}"),
    }
}

const SYSTEM: &str = "Windows\\System32\\config\\SYSTEM";
const SOFTWARE: &str = "Windows\\System32\\config\\SOFTWARE";
const BCD_TEMPLATE: &str = "Windows\\System32\\config\\BCD-Template";

#[test]
fn every_source_file_is_embedded() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sources");
    let mut on_disk = Vec::new();
    for sub in fs::read_dir(&dir).unwrap() {
        let sub = sub.unwrap().path();
        for f in fs::read_dir(&sub).unwrap() {
            let f = f.unwrap().path();
            let rel = format!(
                "{}/{}",
                sub.file_name().unwrap().to_string_lossy(),
                f.file_name().unwrap().to_string_lossy()
            );
            on_disk.push((rel, fs::read_to_string(&f).unwrap()));
        }
    }
    on_disk.sort();
    let mut embedded: Vec<(String, String)> = SOURCES
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    embedded.sort();
    assert_eq!(
        on_disk, embedded,
        "SOURCES must list every file in sources/"
    );
}

/// hivexregedit --export of every built hive equals our regtext::export (hivex is the
/// oracle for the hive structure we write).
#[rstest]
fn hives_export_through_hivex_as_modelled(
    #[values("hyperv-2008r2", "ws2008r2", "hyperv-2012")] image: &str,
    #[values(SYSTEM, SOFTWARE, BCD_TEMPLATE)] path: &str,
) {
    let hivexregedit = tool("hivexregedit", "libwin-hivex-perl");
    let bytes = hive_of(image, path);
    let hive = Hive::parse(&bytes).unwrap();
    hive.check().unwrap();
    let b = hive.base();
    assert_eq!(b.seq1, b.seq2);
    assert!(b.checksum_ok());
    let mut ours = String::new();
    regtext::export(&hive, "\\", &mut ours).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("hive");
    fs::write(&f, &bytes).unwrap();
    let theirs = run(Command::new(hivexregedit).arg("--export").arg(&f).arg("\\"));
    assert_eq!(ours, theirs, "{image} {path}");
}

#[rstest]
#[case("hyperv-2008r2", Some(30000), 4)]
#[case("ws2008r2", None, 0)]
#[case("hyperv-2012", Some(30000), 4)]
fn system_hive_boot_settings(
    #[case] image: &str,
    #[case] poll: Option<u32>,
    #[case] boot_driver_flags: u32,
) {
    let hivexget = tool("hivexget", "libhivex-bin");
    let bytes = hive_of(image, SYSTEM);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("SYSTEM");
    fs::write(&f, &bytes).unwrap();
    for cs in ["ControlSet001", "ControlSet002"] {
        let out = Command::new(&hivexget)
            .arg(&f)
            .arg(format!("\\{cs}\\Control\\PnP"))
            .arg("PollBootPartitionTimeout")
            .output()
            .unwrap();
        match poll {
            Some(v) => {
                assert!(out.status.success(), "{image} {cs}: {out:?}");
                assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), v.to_string());
            }
            None => assert!(
                !out.status.success() && out.stdout.is_empty(),
                "{image} {cs}: PollBootPartitionTimeout must be absent: {out:?}"
            ),
        }
        let flags = run(Command::new(&hivexget)
            .arg(&f)
            .arg(format!("\\{cs}\\Control"))
            .arg("BootDriverFlags"));
        assert_eq!(flags.trim(), boot_driver_flags.to_string());
    }

    let hive = Hive::parse(&bytes).unwrap();
    assert_eq!(
        hive.root().unwrap().name().unwrap(),
        "CMI-CreateHive{F10156BE-0E87-4EFB-969E-5DA29D131144}"
    );
    assert_eq!(hive.base().minor, 5);
    assert_eq!(
        hive.open("ControlSet001")
            .unwrap()
            .unwrap()
            .subkey_list_kind()
            .unwrap(),
        Some(ListKind::Lh)
    );
    let select = hive.open("Select").unwrap().unwrap();
    for (name, v) in [
        ("Current", 1),
        ("Default", 1),
        ("Failed", 0),
        ("LastKnownGood", 2),
    ] {
        assert_eq!(select.value(name).unwrap().unwrap().as_dword().unwrap(), v);
    }
    // ControlSet002 is an exact copy of ControlSet001.
    let (mut a, mut b) = (String::new(), String::new());
    regtext::export(&hive, "ControlSet001", &mut a).unwrap();
    regtext::export(&hive, "ControlSet002", &mut b).unwrap();
    assert_eq!(a.replace("ControlSet001", "ControlSet002"), b);
    let mm = hive
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
    let env = hive
        .open("ControlSet001\\Control\\Session Manager\\Environment")
        .unwrap()
        .unwrap();
    assert_eq!(
        env.value("PROCESSOR_ARCHITECTURE")
            .unwrap()
            .unwrap()
            .as_string()
            .unwrap(),
        "AMD64"
    );
    for svc in [
        "usbehci", "usbuhci", "usbohci", "usbhub", "usbccgp", "USBSTOR",
    ] {
        let k = hive
            .open(&format!("ControlSet001\\services\\{svc}"))
            .unwrap()
            .unwrap_or_else(|| panic!("{svc}"));
        assert_eq!(
            k.value("BootFlags").unwrap().unwrap().as_dword().unwrap(),
            4
        );
        assert_eq!(k.value("Start").unwrap().unwrap().as_dword().unwrap(), 3);
    }
    let setup = hive.open("Setup").unwrap().unwrap();
    assert_eq!(
        setup
            .value("SystemSetupInProgress")
            .unwrap()
            .unwrap()
            .as_dword()
            .unwrap(),
        1
    );
    assert_eq!(
        setup
            .value("CmdLine")
            .unwrap()
            .unwrap()
            .as_string()
            .unwrap(),
        "oobe\\windeploy.exe"
    );
}

#[rstest]
#[case("hyperv-2008r2", "Hyper-V Server 2008 R2")]
#[case("ws2008r2", "Windows Server 2008 R2")]
#[case("hyperv-2012", "Hyper-V Server 2012")]
fn bcd_template_is_a_bcd_store(#[case] image: &str, #[case] description: &str) {
    let bytes = hive_of(image, BCD_TEMPLATE);
    let hive = Hive::parse(&bytes).unwrap();
    assert_eq!(hive.base().minor, 3);
    assert_eq!(hive.root().unwrap().name().unwrap(), "System");
    assert_eq!(
        hive.open("Objects")
            .unwrap()
            .unwrap()
            .subkey_list_kind()
            .unwrap(),
        Some(ListKind::Lf)
    );
    let store = Store::from_hive(&hive).unwrap();
    assert_eq!(store.root_name, "System");
    let ids: Vec<String> = store
        .objects
        .iter()
        .map(|o| o.id.to_registry_string())
        .collect();
    for (guid, ty) in [
        ("{9dea862c-5cdd-4e70-acc1-f32b344d4795}", 0x10100002u32), // {bootmgr}
        ("{7ea2e1ac-2e61-4728-aaa3-896d9d0a9f0e}", 0x20100000),    // {globalsettings}
        ("{4636856e-540f-4170-a130-a84776f4c654}", 0x20100000),    // {dbgsettings}
        ("{0ce4991b-e6b3-4b16-b23c-5e0d9250e5d9}", 0x20100000),    // {emssettings}
        ("{5189b25c-5558-4bf2-bca4-289b11bd29e2}", 0x20100000),    // {badmemory}
        ("{6efb52bf-1766-41db-a6b3-0ee5eff72bd7}", 0x20200003),    // {bootloadersettings}
        ("{7ff607e0-4395-11db-b0de-0800200c9a66}", 0x20200003),    // {hypervisorsettings}
        ("{1afa9c49-16ab-4a5c-901b-212802da9460}", 0x20200004),    // {resumeloadersettings}
        ("{b2721d73-1db4-4c62-bf78-c548a880142d}", 0x10200005),    // {memdiag}
        ("{a1943bbc-ea85-487c-97c7-c9ede908a38a}", 0x10200003),    // OS target PCAT
        ("{b012b84d-c47c-4ed5-b722-c0c42163e569}", 0x10200003),    // OS target EFI
        ("{98b02a23-0674-4ce7-bdad-e0a15a8ff97b}", 0x10200004),    // resume target PCAT
        ("{0c334284-9a41-4de1-99b3-a7e87e8ff07e}", 0x10200004),    // resume target EFI
    ] {
        let i = ids
            .iter()
            .position(|x| x == guid)
            .unwrap_or_else(|| panic!("{guid} missing from {ids:?}"));
        assert_eq!(store.objects[i].object_type.0, ty, "{guid}");
    }
    // The OS-loader templates carry the per-image description, and every element decodes.
    let mut text = String::new();
    regtext::export(&hive, "\\", &mut text).unwrap();
    let utf16: String = description
        .encode_utf16()
        .chain([0])
        .flat_map(|u| u.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        text.matches(&utf16).count(),
        2,
        "{image}: description in PCAT + EFI"
    );
    let mut ed = ufd_formats::hive::Editor::new_hive(&ufd_formats::hive::NewHive::bcd()).unwrap();
    store.write(&mut ed).unwrap();
}

fn wiminfo(wim: &Path) -> BTreeMap<String, String> {
    let out = run(Command::new(tool("wiminfo", "wimtools")).arg(wim).arg("1"));
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Every file of a tree (image path with '/' → bytes) and every directory.
fn read_tree(root: &Path) -> (BTreeMap<String, Vec<u8>>, Vec<String>) {
    let mut files = BTreeMap::new();
    let mut dirs = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                dirs.push(rel);
                stack.push(p);
            } else {
                files.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    dirs.sort();
    (files, dirs)
}

fn expected_tree(image: &str, overrides: &[Override]) -> (BTreeMap<String, Vec<u8>>, Vec<String>) {
    let mut files = BTreeMap::new();
    let mut dirs = Vec::new();
    for e in tree(image, overrides).unwrap() {
        let p = e.path.replace('\\', "/");
        match e.content {
            Some(b) => {
                files.insert(p, b);
            }
            None => dirs.push(p),
        }
    }
    dirs.sort();
    (files, dirs)
}

#[rstest]
#[case(
    "hyperv-2008r2",
    "Hyper-V Server 2008 R2 (ufd synthetic)",
    "ServerHyperCore",
    ("1", "7600")
)]
#[case(
    "ws2008r2",
    "Windows Server 2008 R2 SERVERSTANDARD (ufd synthetic)",
    "ServerStandard",
    ("1", "7600")
)]
#[case(
    "hyperv-2012",
    "Hyper-V Server 2012 (ufd synthetic)",
    "ServerHyperCore",
    ("2", "9200")
)]
fn wim_builds_caches_and_applies(
    #[case] image: &str,
    #[case] name: &str,
    #[case] edition: &str,
    #[case] (minor, build_number): (&str, &str),
) {
    let out = tempfile::tempdir().unwrap();
    let built = build(image, out.path(), &[]).unwrap();
    assert!(built.rebuilt);
    assert_eq!(built.wim, out.path().join(format!("{image}.wim")));
    let again = build(image, out.path(), &[]).unwrap();
    assert!(!again.rebuilt, "unchanged sources must not rebuild");
    assert_eq!(again.key, built.key);
    // Only the WIM and its key remain (no stage directory, no temporary WIM).
    let mut names: Vec<String> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![format!("{image}.wim"), format!("{image}.wim.key")]
    );

    let header = run(Command::new(tool("wiminfo", "wimtools"))
        .arg(&built.wim)
        .arg("--header"));
    assert!(
        header.contains("Image Count                 = 1"),
        "{header}"
    );
    let info = wiminfo(&built.wim);
    assert_eq!(info["Name"], name);
    assert_eq!(info["Architecture"], "x86_64");
    assert_eq!(info["Edition ID"], edition);
    assert_eq!(info["Product Type"], "ServerNT");
    assert_eq!(info["Major Version"], "6");
    assert_eq!(info["Minor Version"], minor);
    assert_eq!(info["Build"], build_number);
    assert_eq!(info["Default Language"], "en-US");
    assert_eq!(info["Languages"], "de-DE en-US ja-JP");
    assert_eq!(info["System Root"], "WINDOWS");

    let applied = tempfile::tempdir().unwrap();
    run(Command::new(tool("wimapply", "wimtools"))
        .arg(&built.wim)
        .arg("1")
        .arg(applied.path()));
    let (files, dirs) = read_tree(applied.path());
    let (want_files, want_dirs) = expected_tree(image, &[]);
    assert_eq!(dirs, want_dirs);
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        want_files.keys().collect::<Vec<_>>()
    );
    for (p, b) in &want_files {
        assert!(files[p] == *b, "{p} differs after wimapply");
    }
    assert_eq!(
        files["Windows/Setup/State/State.ini"],
        b"[State]\r\nImageState=IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE\r\n"
    );
    assert!(files["Windows/Boot/PCAT/bootmgr"]
        .starts_with(b"UFD-STANDIN Windows\\Boot\\PCAT\\bootmgr:"));
    for lang in ["en-US", "de-DE", "ja-JP"] {
        for d in ["Windows/System32", "Windows/Boot/PCAT", "Windows/Boot/EFI"] {
            assert!(dirs.contains(&format!("{d}/{lang}")), "{d}/{lang}");
        }
    }
}

#[test]
fn wim_applies_into_ntfs_volume() {
    let mkntfs = tool("mkntfs", "ntfs-3g");
    let ntfscat = tool("ntfscat", "ntfs-3g");
    let out = tempfile::tempdir().unwrap();
    let built = build("hyperv-2008r2", out.path(), &[]).unwrap();
    let vol = out.path().join("ntfs.img");
    fs::File::create(&vol).unwrap().set_len(64 << 20).unwrap();
    run(Command::new(mkntfs)
        .args(["-F", "-Q", "-L", "hyperV"])
        .arg(&vol));
    run(Command::new(tool("wimapply", "wimtools"))
        .arg(&built.wim)
        .arg("1")
        .arg(&vol));
    let (want, _) = expected_tree("hyperv-2008r2", &[]);
    for p in [
        "Windows/System32/config/SYSTEM",
        "Windows/System32/config/BCD-Template",
        "Windows/Boot/PCAT/bootmgr",
        "Windows/Boot/PCAT/de-DE/bootmgr.exe.mui",
        "Windows/Setup/State/State.ini",
    ] {
        let o = Command::new(&ntfscat).arg(&vol).arg(p).output().unwrap();
        assert!(
            o.status.success(),
            "ntfscat {p}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.stdout == want[p], "{p} differs in the NTFS volume");
    }
}

#[test]
fn overrides_replace_standins_and_change_the_cache_key() {
    let ov = tempfile::tempdir().unwrap();
    let probe = ov.path().join("Windows/Boot/PCAT");
    fs::create_dir_all(&probe).unwrap();
    fs::write(probe.join("bootmgr"), b"REAL PROBE BOOTMGR").unwrap();
    let overrides = overrides_from_dir(ov.path()).unwrap();
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0].image_path, "Windows\\Boot\\PCAT\\bootmgr");
    let t = tree("ws2008r2", &overrides).unwrap();
    let e = t
        .iter()
        .find(|e| e.path == "Windows\\Boot\\PCAT\\bootmgr")
        .unwrap();
    assert_eq!(e.content.as_deref(), Some(&b"REAL PROBE BOOTMGR"[..]));

    let wimlib = "wimlib-imagex test";
    let plain = ufd_synthetic::content_hash("ws2008r2", &[], wimlib).unwrap();
    let with = ufd_synthetic::content_hash("ws2008r2", &overrides, wimlib).unwrap();
    assert_ne!(plain, with);
    assert_eq!(
        plain,
        ufd_synthetic::content_hash("ws2008r2", &[], wimlib).unwrap()
    );

    let bad = [Override {
        image_path: "Windows\\Boot\\PCAT\\bootmgr.typo".into(),
        source: probe.join("bootmgr"),
    }];
    let err = tree("ws2008r2", &bad).unwrap_err();
    assert!(
        err.contains("override Windows\\Boot\\PCAT\\bootmgr.typo: no such file"),
        "{err}"
    );
}

#[test]
fn manifest_has_both_images_and_hive_kinds() {
    for image in IMAGES {
        let m = manifest(image).unwrap();
        let kinds: Vec<HiveKind> = m
            .iter()
            .filter_map(|e| match &e.kind {
                ManifestKind::Hive { kind, .. } => Some(*kind),
                _ => None,
            })
            .collect();
        assert_eq!(
            kinds,
            vec![HiveKind::System, HiveKind::Software, HiveKind::BcdTemplate]
        );
    }
}

/// Two captures of the same sources have the same file metadata (the fixed 2009-07-14
/// timestamps) and the same resources; wimlib only varies the header GUID and the image's
/// XML CREATIONTIME / LASTMODIFICATIONTIME (capture time), so the files differ in those
/// bytes only — documented in vm-images/README.md.
#[test]
fn captures_are_reproducible_except_guid_and_capture_time() {
    let wimdir = tool("wimdir", "wimtools");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let wa = build("ws2008r2", a.path(), &[]).unwrap().wim;
    let wb = build("ws2008r2", b.path(), &[]).unwrap().wim;
    let list = |w: &Path| run(Command::new(&wimdir).arg(w).arg("1").arg("--detailed"));
    let la = list(&wa);
    assert!(
        la.contains("Last Write Time     = Tue Jul 14 00:00:00 2009 UTC"),
        "{la}"
    );
    assert_eq!(la, list(&wb));
    let (ba, bb) = (fs::read(&wa).unwrap(), fs::read(&wb).unwrap());
    assert_eq!(ba.len(), bb.len());
    let differing = ba.iter().zip(&bb).filter(|(x, y)| x != y).count();
    // GUID (16 bytes at 0x18) + two FILETIMEs printed as hex digits in UTF-16 XML.
    assert!(differing <= 16 + 2 * 16, "{differing} bytes differ");
    let info = |w: &Path| {
        let mut m = wiminfo(w);
        m.retain(|k, _| !k.contains("Time"));
        m
    };
    assert_eq!(info(&wa), info(&wb));
}

/// Hyper-V Server 2012 (NT 6.2.9200): wimlib reads its identity from the hives (name,
/// description, product, version); it carries the 2008 R2 boot settings (assumed same), paging
/// still enabled for step 6 to clear, and the USB 3.0 driver files new in Windows 8. Applied
/// into an NTFS volume made by mkntfs and read back with ntfs-3g and hivex.
#[test]
fn hyperv_2012_is_nt_6_2_with_the_2008r2_boot_settings() {
    let mkntfs = tool("mkntfs", "ntfs-3g");
    let ntfscat = tool("ntfscat", "ntfs-3g");
    let hivexget = tool("hivexget", "libhivex-bin");
    let out = tempfile::tempdir().unwrap();
    let built = build("hyperv-2012", out.path(), &[]).unwrap();
    let info = wiminfo(&built.wim);
    assert_eq!(info["Name"], "Hyper-V Server 2012 (ufd synthetic)");
    assert!(
        info["Description"]
            .starts_with("Synthetic Windows-shaped image: Hyper-V Server 2012 x64, NT 6.2.9200"),
        "{info:?}"
    );
    assert_eq!(info["Product Name"], "Hyper-V Server 2012");
    assert_eq!(info["Installation Type"], "Server Core");
    assert_eq!(
        (
            info["Major Version"].as_str(),
            info["Minor Version"].as_str(),
            info["Build"].as_str()
        ),
        ("6", "2", "9200")
    );
    assert_eq!(info["Languages"], "de-DE en-US ja-JP");

    let vol = out.path().join("ntfs.img");
    fs::File::create(&vol).unwrap().set_len(64 << 20).unwrap();
    run(Command::new(mkntfs)
        .args(["-F", "-Q", "-L", "hyperV"])
        .arg(&vol));
    run(Command::new(tool("wimapply", "wimtools"))
        .arg(&built.wim)
        .arg("1")
        .arg(&vol));
    let (want, _) = expected_tree("hyperv-2012", &[]);
    for p in [
        "Windows/System32/winload.exe",
        "Windows/System32/winload.efi",
        "Windows/Boot/PCAT/bootmgr",
        "Windows/Boot/EFI/bootmgfw.efi",
        "Windows/System32/config/BCD-Template",
        "Windows/System32/drivers/USBXHCI.SYS",
        "Windows/System32/drivers/UCX01000.SYS",
        "Windows/System32/drivers/USBHUB3.SYS",
    ] {
        let o = Command::new(&ntfscat).arg(&vol).arg(p).output().unwrap();
        assert!(
            o.status.success(),
            "ntfscat {p}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.stdout == want[p], "{p} differs in the NTFS volume");
    }
    // The SYSTEM hive as applied: paging enabled (step 6 has something to do), the seed's
    // boot-partition timeout.
    let sys = Command::new(&ntfscat)
        .arg(&vol)
        .arg("Windows/System32/config/SYSTEM")
        .output()
        .unwrap();
    assert!(sys.status.success());
    let f = out.path().join("SYSTEM");
    fs::write(&f, &sys.stdout).unwrap();
    let mm = "\\ControlSet001\\Control\\Session Manager\\Memory Management";
    let paging = run(Command::new(&hivexget).arg(&f).arg(mm).arg("PagingFiles"));
    assert_eq!(paging.trim(), "?:\\pagefile.sys");
    let poll = run(Command::new(&hivexget)
        .arg(&f)
        .arg("\\ControlSet001\\Control\\PnP")
        .arg("PollBootPartitionTimeout"));
    assert_eq!(poll.trim(), "30000");
}
