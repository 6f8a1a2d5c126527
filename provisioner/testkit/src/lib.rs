//! Test support only (a dev-dependency, never published): the builders the `ufd-bootpath` and
//! `ufd-inspect` integration tests share to make real UFD images the way the provisioner makes
//! them — mkntfs on sparse partition files, wimlib applying a directory tree into NTFS, mkfs.fat
//! and mtools for a FAT32 UEFI system partition, an MBR written in front and the partition files
//! spliced in behind it — plus the synthetic SYSTEM hive, State.ini and the bcdboot-like BCD store
//! those images carry. Every byte format goes through `ufd-formats`; nothing is re-implemented here.
//!
//! What each crate's images differ in (sizes, faults, the Windows tree) stays in that crate's
//! `tests/common`. Needs the Debian packages `ntfs-3g` and `wimtools` ([`ntfs_partition`]) and
//! `dosfstools` and `mtools` ([`fat_partition`]); a missing tool panics with the package to
//! install.

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

pub const MIB: u64 = 1 << 20;
/// The UFD's MBR disk signature in the test images (what the BCD's boot device names).
pub const UFD_SIG: u32 = 0x1DF0_2024;
/// The virtual disk's MBR signature inside the VHD or VHDX.
pub const VHD_SIG: u32 = 0x0FE1_2024;
/// The Windows Boot Loader object of [`store`].
pub const LOADER: &str = "{7e0c5a51-4c2b-4f5e-9d3a-1b2c3d4e5f60}";
/// The FILETIME every test hive is finished with (fixed, so images are reproducible).
pub const FILETIME: u64 = 130_000_000_000_000_000;

/// Run `cmd args`, panicking with its output if it fails or with "install the Debian package
/// `package`" if it cannot be started.
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

/// `s` as REG_SZ data: UTF-16LE with the terminating NUL.
pub fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// A synthetic SYSTEM hive with what the seed's rules read, in `ControlSet001` (which
/// `Select\Current` and `Select\Default` name): paging off (`PagingFiles` an empty
/// REG_MULTI_SZ), `BootDriverFlags` 4, `usbstor` start type 3, `Setup\CmdLine`
/// `oobe\windeploy.exe`, and `Control\PnP\PollBootPartitionTimeout` = `poll` ms when `Some`
/// (the key exists either way). `setup_in_progress` adds `Setup\SystemSetupInProgress` = 1, as
/// a generalized image carries it. Values are written in a fixed order, so equal arguments give
/// equal bytes.
pub fn system_hive(poll: Option<u32>, setup_in_progress: bool) -> Vec<u8> {
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
    if setup_in_progress {
        ed.set_value(
            "Setup",
            "SystemSetupInProgress",
            vt::REG_DWORD,
            &1u32.to_le_bytes(),
        )
        .unwrap();
    }
    ed.set_value(
        "Setup",
        "CmdLine",
        vt::REG_SZ,
        &utf16z("oobe\\windeploy.exe"),
    )
    .unwrap();
    ed.finish(FILETIME)
}

/// Where Setup and sysprep record the image state, as a path in a Windows tree
/// (`\Windows\Setup\State\State.ini` on the volume).
pub const STATE_INI: &str = "Windows/Setup/State/State.ini";
/// `ImageState` of a `sysprep /generalize /oobe` image (what vm-images/synthetic's State.ini
/// carries; Microsoft Learn "Windows Setup States").
pub const GENERALIZED: &str = "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE";
/// `ImageState` of an installed, specialized Windows (IMG-GENERALIZED fails it).
pub const SPECIALIZED: &str = "IMAGE_STATE_COMPLETE";

/// A State.ini with `ImageState` = `image_state`, as vm-images/synthetic writes it: an ANSI
/// `[State]` section, CRLF line ends.
pub fn state_ini(image_state: &str) -> Vec<u8> {
    format!("[State]\r\nImageState={image_state}\r\n").into_bytes()
}

/// A bcdboot-like store: `{bootmgr}` on `partition=[<signature, offset>]` whose default and
/// only display entry is the [`LOADER`] object, which boots `vhd=[<signature, offset>]<file>`
/// (device and osdevice), path `winload`, systemroot `\Windows`. `locale` adds the `locale`
/// element (0x12000005) to both objects, as bcdboot writes it.
pub fn store(
    signature: u32,
    offset: u64,
    file: &str,
    winload: &str,
    locale: Option<&str>,
) -> Store {
    let part = PartitionLocation::Mbr {
        disk_signature: signature,
        offset,
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
    let host = Device::Partition(part);
    let mut os = Object::new(loader, ObjectType::OSLOADER);
    os.set(Element::new(
        0x1100_0001,
        ElementValue::Device(DeviceElement::vhd(host.clone(), file, 0x1200_0002)),
    ));
    os.set(Element::new(0x1200_0002, s(winload)));
    os.set(Element::new(
        0x1200_0004,
        s("Microsoft Hyper-V Server 2008 R2"),
    ));
    os.set(Element::new(
        0x2100_0001,
        ElementValue::Device(DeviceElement::vhd(host, file, 0x2200_0002)),
    ));
    os.set(Element::new(0x2200_0002, s("\\Windows")));
    if let Some(l) = locale {
        // `Object::set` keeps elements sorted by type, so where this goes is fixed.
        bm.set(Element::new(0x1200_0005, s(l)));
        os.set(Element::new(0x1200_0005, s(l)));
    }
    st.insert(bm);
    st.insert(os);
    st
}

/// A sparse `bytes`-long NTFS partition file `dir/name` (mkntfs, 512-byte sectors, hidden
/// sectors 2048 = a partition at 1 MiB, CHS 255/63) holding `tree`, captured into a WIM and
/// applied by wimlib as the provisioner applies the image.
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

/// A sparse `bytes`-long FAT32 partition file `dir/name` (label `ESP`) with `files`
/// (`(path inside, host file)`; the directories on the way are made).
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

/// An MBR partition entry of type `ty` for `bytes` from byte `start` (CHS geometry 255/63).
pub fn entry(active: bool, ty: u8, start: u64, bytes: u64) -> PartitionEntry {
    PartitionEntry::new(
        active,
        ty,
        (start / 512) as u32,
        (bytes / 512) as u32,
        Geometry::new(255, 63).unwrap(),
    )
    .unwrap()
}

/// The MBR of a `disk_bytes` disk with one NTFS (0x07) partition from 1 MiB to the end.
pub fn mbr(signature: u32, disk_bytes: u64, active: bool) -> [u8; 512] {
    let mut m = Mbr::new(signature);
    m.partitions[0] = entry(active, 0x07, MIB, disk_bytes - MIB);
    m.to_bytes()
}

/// Write `data` to `path`, making its parent directories.
pub fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// A file as a `ufd_formats::bytes::ReadAt` (the formats crate does no I/O; tests hand it
/// files through this).
pub struct FileReader {
    file: File,
    size: u64,
}

impl FileReader {
    pub fn new(file: File) -> Self {
        let size = file.metadata().expect("file size").len();
        FileReader { file, size }
    }
    pub fn open(path: &Path) -> Self {
        FileReader::new(File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }
}

impl ufd_formats::bytes::ReadAt for FileReader {
    type Error = std::io::Error;
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

/// `out`: the raw disk image `raw` converted by `qemu-img convert -O vhdx`: fixed (with
/// `block_state_zero=off`, without which qemu's "fixed" blocks read as zeros) or dynamic.
pub fn vhdx_from_raw(raw: &Path, out: &Path, fixed: bool) {
    let opts = if fixed {
        "subformat=fixed,block_state_zero=off"
    } else {
        "subformat=dynamic"
    };
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vhdx",
            "-o",
            opts,
            raw.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
        "qemu-utils",
    );
}

/// Give the VHDX's current header (the one the project's reader chooses) the LogGuid `log`,
/// CRC re-sealed ([`ufd_formats::vhdx::set_log_guid`]): a log that was never replayed.
pub fn dirty_vhdx_log(path: &Path, log: ufd_formats::vhdx::Guid) {
    use ufd_formats::vhdx::{set_log_guid, Vhdx, HEADER_SIZE};
    let at = Vhdx::open(&mut FileReader::open(path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .header_info()
        .current
        .offset;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut h = [0u8; HEADER_SIZE];
    f.read_exact_at(&mut h, at).unwrap();
    set_log_guid(&mut h, &log);
    f.write_all_at(&h, at).unwrap();
}

/// Cut `bytes` off the end of `path` (an interrupted copy).
pub fn cut_short(path: &Path, bytes: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - bytes).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use ufd_formats::bcd::ElementType;
    use ufd_formats::hive::Hive;
    use ufd_formats::system::{default_control_set, SystemValues};

    #[rstest]
    #[case(Some(30000), true)]
    #[case(Some(5000), false)]
    #[case(None, false)]
    fn system_hive_reads_back_through_the_formats_reader(
        #[case] poll: Option<u32>,
        #[case] setup_in_progress: bool,
    ) {
        let bytes = system_hive(poll, setup_in_progress);
        let h = Hive::parse(&bytes).unwrap();
        let cs = default_control_set(&h).unwrap().unwrap();
        assert_eq!(cs, "ControlSet001");
        let v = SystemValues::read(&h, &cs).unwrap();
        assert_eq!(v.poll_boot_partition_timeout, poll);
        assert_eq!(v.paging_files.as_deref(), Some(&[0u8, 0, 0, 0][..]));
        assert_eq!(v.boot_driver_flags, Some(4));
        let usbstor = v.usb_services.iter().find(|(n, _)| n == "usbstor").unwrap();
        assert_eq!(usbstor.1, Some(3));
        let setup = h.open("Setup").unwrap().unwrap();
        assert_eq!(
            setup.value("SystemSetupInProgress").unwrap().is_some(),
            setup_in_progress
        );
        assert_eq!(
            *setup.value("CmdLine").unwrap().unwrap().data().unwrap(),
            utf16z("oobe\\windeploy.exe")
        );
        assert_eq!(bytes, system_hive(poll, setup_in_progress), "reproducible");
    }

    #[rstest]
    #[case(GENERALIZED)]
    #[case(SPECIALIZED)]
    fn state_ini_reads_back_through_the_shared_parser(#[case] state: &str) {
        let data = state_ini(state);
        assert_eq!(
            ufd_formats::policy::image::state_ini_image_state(&data).as_deref(),
            Some(state)
        );
        assert!(data.starts_with(b"[State]\r\n") && data.ends_with(b"\r\n"));
    }

    #[test]
    fn generalized_hive_and_state_ini_pass_img_generalized() {
        use ufd_formats::policy::image::judge_generalized;
        use ufd_formats::policy::Outcome;
        let bytes = system_hive(Some(30000), true);
        let setup = ufd_formats::system::setup_values(&Hive::parse(&bytes).unwrap())
            .unwrap()
            .unwrap();
        let judge = |state: Option<&str>| judge_generalized(state, Some(&setup), "t").outcome;
        assert_eq!(judge(Some(GENERALIZED)), Outcome::Pass);
        assert_eq!(judge(Some(SPECIALIZED)), Outcome::Fail);
        // without State.ini the Setup values alone say generalized
        assert_eq!(judge(None), Outcome::Pass);
    }

    #[rstest]
    #[case(None)]
    #[case(Some("en-US"))]
    fn store_round_trips_with_the_loader_on_the_vhd(#[case] locale: Option<&str>) {
        let st = store(
            UFD_SIG,
            41 * MIB,
            "\\hyperV.vhd",
            "\\w\\winload.efi",
            locale,
        );
        let hive = st.to_hive(FILETIME).unwrap();
        let back = Store::from_hive(&Hive::parse(&hive).unwrap()).unwrap();
        // the hive orders the object keys by name, so compare object by object
        assert_eq!(back.objects.len(), st.objects.len());
        for o in &st.objects {
            assert_eq!(back.object(&o.id), Some(o));
        }
        let loader = back.object(&Guid::parse(LOADER).unwrap()).unwrap();
        let ElementValue::Device(dev) = &loader.element(ElementType(0x1100_0001)).unwrap().value
        else {
            panic!("loader device is not a device element");
        };
        let (host, file) = dev.device.vhd_file().unwrap();
        assert_eq!(file, "\\hyperV.vhd");
        assert_eq!(
            *host,
            Device::Partition(PartitionLocation::Mbr {
                disk_signature: UFD_SIG,
                offset: 41 * MIB
            })
        );
        let bm = back.object(&well_known::BOOTMGR).unwrap();
        for o in [bm, loader] {
            let got = o.element(ElementType(0x1200_0005)).map(|e| e.value.clone());
            assert_eq!(got, locale.map(|l| ElementValue::String(l.into())));
        }
    }

    #[test]
    fn mbr_has_one_ntfs_partition_from_1_mib_to_the_end() {
        let m = Mbr::parse(&mbr(VHD_SIG, 24 * MIB, false)).unwrap();
        assert_eq!(m.disk_signature, VHD_SIG);
        let p = &m.partitions[0];
        assert_eq!(
            (p.active, p.partition_type, p.lba_start, p.sector_count),
            (false, 0x07, 2048, (23 * MIB / 512) as u32)
        );
        assert!(m.partitions[1..].iter().all(|p| p.sector_count == 0));
    }

    #[test]
    fn splice_copies_data_and_leaves_zero_blocks_as_holes() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("p");
        let mut data = vec![0u8; 256 * 1024];
        data[5] = 0xAA;
        data[200 * 1024] = 0xBB;
        std::fs::write(&part, &data).unwrap();
        let disk = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("d"))
            .unwrap();
        disk.set_len(MIB + 256 * 1024).unwrap();
        disk.write_all_at(&[0x11; 64 * 1024], MIB + 64 * 1024)
            .unwrap();
        splice(&disk, MIB, &part);
        let mut back = vec![0u8; 256 * 1024];
        disk.read_exact_at(&mut back, MIB).unwrap();
        assert_eq!(back[5], 0xAA);
        assert_eq!(back[200 * 1024], 0xBB);
        // an all-zero block of the partition is skipped, not written: what was there stays
        assert!(back[64 * 1024..128 * 1024].iter().all(|&b| b == 0x11));
    }

    #[test]
    fn utf16z_is_little_endian_with_the_nul() {
        assert_eq!(utf16z("A\u{e9}"), [0x41, 0, 0xE9, 0, 0, 0]);
    }
}
