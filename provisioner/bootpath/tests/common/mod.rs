//! Real UFD images for the walker tests, built with `ufd-testkit` the way the provisioner builds
//! them: mkntfs on partition files, wimlib applying a tree into NTFS, ntfscp for the VHD, mkfs.fat
//! and mtools for the UEFI system partition, an MBR spliced in front. What is the walker tests'
//! own lives here: the faults, the two layouts and their sizes. Needs the Debian packages
//! `ntfs-3g`, `wimtools`, `dosfstools` and `mtools`.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ufd_formats::mbr::Mbr;
use ufd_formats::vhd::{Creator, Footer};
use ufd_testkit::{
    entry, fat_partition, mbr, ntfs_partition, run, splice, state_ini, store, system_hive, write,
    FILETIME, GENERALIZED, MIB, SPECIALIZED, STATE_INI, UFD_SIG, VHD_SIG,
};

pub const VHD_BYTES: u64 = 16 * MIB;
/// UEFI layout: ESP (FAT32) at 1 MiB, then the NTFS data partition.
pub const ESP_BYTES: u64 = 40 * MIB;
pub const DATA_BYTES: u64 = 32 * MIB;

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
    /// State.ini says IMAGE_STATE_COMPLETE (an installed, specialized Windows).
    pub specialized: bool,
    /// No State.ini (IMG-GENERALIZED is then judged from the hive's `Setup` values).
    pub no_state_ini: bool,
    /// The SYSTEM hive's `regf` signature overwritten: the `system-hive` hop fails.
    pub corrupt_hive: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Layout {
    /// The seed's: one active NTFS partition with `\Boot\BCD`, `\bootmgr` and the VHD.
    Bios,
    /// `bcdboot /f UEFI`: a FAT32 ESP with `\EFI\Microsoft\Boot\BCD`, the VHD on NTFS.
    Uefi,
}

/// The fixed VHD: MBR + one NTFS partition with winload, the SYSTEM hive and State.ini of a
/// generalized image (`Setup\SystemSetupInProgress` = 1, `CmdLine` = `oobe\windeploy.exe`,
/// `ImageState` = IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE, as vm-images/synthetic), unless a
/// fault says otherwise.
pub fn build_vhd(dir: &Path, faults: Faults) -> PathBuf {
    let win = dir.join("win");
    let poll = if faults.no_poll_timeout {
        None
    } else {
        Some(faults.poll_ms.unwrap_or(30000))
    };
    let mut hive = system_hive(poll, true);
    if faults.corrupt_hive {
        hive[0..4].copy_from_slice(b"XXXX");
    }
    write(&win.join("Windows/System32/config/SYSTEM"), &hive);
    if !faults.no_state_ini {
        let state = if faults.specialized {
            SPECIALIZED
        } else {
            GENERALIZED
        };
        write(&win.join(STATE_INI), &state_ini(state));
    }
    write(&win.join("Windows/System32/winload.exe"), b"MZ winload");
    write(&win.join("Windows/System32/winload.efi"), b"MZ winload efi");
    let inner = ntfs_partition(dir, "inner.part", VHD_BYTES - MIB, "HyperV", &win);
    let vhd = dir.join("hyperV.vhd");
    let f = File::create(&vhd).unwrap();
    f.set_len(VHD_BYTES + 512).unwrap();
    f.write_all_at(&mbr(VHD_SIG, VHD_BYTES, true), 0).unwrap();
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
    let mut bcd = store(
        faults.bcd_signature.unwrap_or(UFD_SIG),
        ntfs_off,
        "\\hyperV.vhd",
        winload,
        None,
    )
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
