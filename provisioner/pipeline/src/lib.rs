//! # ufd-provision
//!
//! The seed's deployment procedure ("Deploying Microsoft Hyper-V Server 2008 R2 on USB Flash
//! Drive", steps 1–7) as a Linux pipeline that needs no root, no loop devices and no mounts: the
//! NTFS volumes are regular files written by `mkntfs`, `wimapply` (wimlib's NTFS-3G mode) and the
//! ntfs-3g tools; everything those tools do not do — MBRs, the VHD footer, placing the VHD into the
//! UFD's NTFS as a non-sparse file, the BCD store, the SYSTEM-hive edit — is done here in Rust
//! with `ufd-formats` (host-pipeline.md, "rootless" pipeline).
//!
//! | seed step | here ([`Step`]) | what happens |
//! |---|---|---|
//! | 1 create vdisk, partition, format | [`Step::CreateVdisk`] | partition file of `vhd_size − 1 MiB` (sparse), `mkntfs -Q -L hyperV -p 2048 -H 255 -S 63` |
//! | 2 imagex /apply | [`Step::ApplyImage`] | `wiminfo` checks (before anything is written), `wimapply WIM INDEX partition-file` |
//! | 6 reg load/add/delete | [`Step::DisablePaging`] | `ntfscat` SYSTEM out, in-place hive edit, `ntfscp -f` back — before the VHD is copied, so the copy carries it |
//! | 1 (diskpart create vdisk) / 2 detach | [`Step::AssembleVhd`] | 1 MiB inserted in front (`FALLOC_FL_INSERT_RANGE`, zero copy), inner MBR, DiskPart-style footer |
//! | 3 prepare the UFD | [`Step::PrepareUfd`] | UFD (NTFS) partition file, `mkntfs -Q -p <start LBA> -H 255 -S 63` |
//! | 3 (UEFI) system partition | [`Step::PrepareEsp`] | `--firmware uefi|both` only: ESP partition file, `mkfs.fat -F 32 -S 512 -s 1 -h 2048` |
//! | 4.1 copy the VHD | [`Step::CopyVhd`] | `ntfscp` empty file, `ntfsfallocate` (real clusters), VDL and `$FILE_NAME` sizes set in the MFT record ([`ntfs::set_valid_data_length`]); then [`VhdRoute::Embed`] (default): holes inserted into the VHD file (`FALLOC_FL_INSERT_RANGE`, zero copy, [`embed`]) so each run sits at `partition offset + LCN × cluster`: the VHD file becomes the UFD image; or [`VhdRoute::Copy`] (forced, or the fallback where the file system cannot insert ranges — reported): the VHD's data extents written at its clusters ([`ntfs::write_at_runs`]) |
//! | 5 bcdboot | [`Step::Bcdboot`] | boot files out of the WIM, `\Boot\BCD` built ([`bcd::build_store`]), both put on the UFD with a tiny WIM + `wimapply`, `\bootmgr` R+H+S and `\Boot` H+S ([`BOOTMGR_ATTRIBUTES`], reconstructed); UEFI: `\EFI\...` + `\EFI\Microsoft\Boot\BCD` onto the ESP with `mcopy -s` |
//! | 4.2 bootsect /nt60 /mbr, 3 active | [`Step::AssembleUfd`] | boot record into the partition file; embed route: the partition file's own data extents (NTFS metadata, boot files — checked disjoint from the VHD's clusters), the ESP (UEFI) and the MBR copied into the embedded image, final length set (sparse tail); copy route: hole inserted in front of the partition file (zero copy), ESP data copied in (UEFI), MBR (see [`Firmware`] for the partitions and the active one) |
//! | 7 detach | [`Step::Commit`] | rename of the finished image to `--out` |
//!
//! Bytes written ([`StepReport::bytes_written`], [`BYTES_WRITTEN_METHOD`]): the kernel's task
//! I/O accounting of our thread plus every tool's own counter, so what `wimapply`, `mkntfs` and
//! the ntfs-3g tools write is counted with what we write. Inserting holes writes no file data
//! (only the host file system's extent-tree metadata, which task accounting does not see).
//!
//! Durability: the scratch files are never fsynced; the finished image is, once, in
//! [`Step::Commit`] (and its directory after the rename). So the embed route's UFD partition
//! file, copied into the image and deleted within seconds, mostly never reaches the device
//! (task accounting still counts it as written; the bench prints the kernel's
//! `cancelled_write_bytes` beside it).
//!
//! Atomicity: everything is built in a temporary directory beside `out` and renamed onto `out`
//! only when every step passed; on any error the temporary directory is removed and nothing
//! named `out` is created. The output image stays sparse on the host (host-pipeline.md pitfall 12:
//! write it to a stick with a tool that writes every block, or zero the stick first).
//!
//! Boot code (`bootsect /nt60 /mbr`) comes from crate `ufd-bootcode` (the project's own code,
//! no Microsoft bytes). `--keep-language` (the seed's "remove language packs that are not
//! required") filters the applied image ([`language`]).
//!
//! UEFI layouts (`firmware` = [`Firmware::Uefi`] / [`Firmware::Both`]; formats.md §3 "UEFI
//! target", §10 item 7): Windows To Go's MBR layout — partition 1 a FAT32 EFI system
//! partition (type 0x0C, [`DEFAULT_ESP_SIZE`] 100 MiB, active for `Uefi`) with
//! `\EFI\BOOT\BOOTX64.EFI` (= the image's `bootmgfw.efi`, the removable-media path firmware
//! starts) and `\EFI\Microsoft\Boot\{bootmgfw.efi, bootmgr.efi, memtest.efi, <ll-CC>\,
//! Fonts\, BCD}`; partition 2 NTFS right after it with `\hyperV.vhd`. The store's
//! `{bootmgr}` is the ESP (path `\EFI\Microsoft\Boot\bootmgfw.efi`), the loader
//! `vhd=[partition 2]\hyperV.vhd` with `\Windows\system32\winload.efi`. `Both` adds the BIOS
//! pieces on the NTFS partition, which is then the active one (details at [`Firmware`]).
//! Nothing is mounted: `mkfs.fat` and `mcopy -i` work on the partition file. Not done
//! (reported in [`Report::not_done`]): GPT layouts.

pub mod bcd;
pub mod embed;
pub mod error;
pub mod language;
pub mod ntfs;
pub mod plan;
pub mod sparse;
pub mod stale;
pub mod system;
pub mod tools;
pub mod vhdx;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ufd_formats::bcd::Store;
use ufd_formats::mbr::{partition_type, Geometry, Mbr, PartitionEntry};
use ufd_formats::ntfs::file_attribute;
use ufd_formats::policy::{self, Outcome, Verdict};
use ufd_formats::vhd::{unix_to_vhd_timestamp, Creator, Footer};

pub use bcd::VhdDeviceForm;
pub use error::ProvisionError;

/// DiskPart (Windows 7+) and the seed's UFD layout start the first partition at 1 MiB.
pub const PARTITION_LBA: u32 = 2048;
pub const PARTITION_OFFSET: u64 = PARTITION_LBA as u64 * 512;
/// The seed's VHD: `create vdisk ... maximum=12288` (MiB).
pub const SEED_VHD_SIZE: u64 = 12288 * 1024 * 1024;
/// A "16 GB" stick (decimal, as flash is sold).
pub const SEED_UFD_SIZE: u64 = 16_000_000_000;
/// The seed's VHD file name (`copy c:\hvvhd\hyperV.vhd z:`).
pub const VHD_NAME: &str = "hyperV.vhd";

/// Default size of the EFI system partition of the UEFI layouts: Windows To Go's creation
/// steps make a 350 MB system partition (room for several boot-file generations); the boot
/// files of a 2008 R2 image take under 10 MiB, so 100 MiB (what Windows setup makes on
/// 512-byte-sector disks) is plenty.
pub const DEFAULT_ESP_SIZE: u64 = 100 << 20;
/// Smallest accepted ESP: FAT32 needs at least 65 525 clusters (32 MiB at one 512-byte
/// sector per cluster, what `mkfs.fat -s 1` makes); 64 MiB leaves room for the files.
pub const MIN_ESP_SIZE: u64 = 64 << 20;
/// Largest accepted ESP (a sanity bound; Windows To Go uses 350 MB).
pub const MAX_ESP_SIZE: u64 = 2048 << 20;
/// MBR partition type of the ESP: FAT32 with LBA addressing (0x0C), what DiskPart's
/// `format fs=fat32` leaves and what Windows To Go's MBR system partition is \[I\]. OVMF
/// (EDK2 PartitionDxe + FAT driver) does not look at the MBR type: it starts
/// `\EFI\BOOT\BOOTX64.EFI` from any FAT file system on the disk (verified here by booting the
/// probe under OVMF, tests/uefi.rs).
pub const ESP_PARTITION_TYPE: u8 = 0x0C;

/// Firmware the UFD is laid out for.
///
/// | | partition 1 | partition 2 | MBR / boot records |
/// |---|---|---|---|
/// | `Bios` (seed) | NTFS 0x07 ACTIVE at 1 MiB: `\hyperV.vhd`, `\bootmgr`, `\Boot\BCD` | — | ufd-bootcode MBR + NTFS boot record |
/// | `Uefi` (Windows To Go on MBR) | FAT32 ESP 0x0C ACTIVE at 1 MiB, `esp_size`: `\EFI\BOOT\BOOTX64.EFI`, `\EFI\Microsoft\Boot\{bootmgfw.efi,BCD,memtest.efi,<ll-CC>,Fonts}` | NTFS 0x07 right after the ESP: `\hyperV.vhd` | ufd-bootcode MBR (BIOS boot would reach the FAT boot sector's "not a system disk" message) |
/// | `Both` | the same ESP, NOT active | the same NTFS, ACTIVE, plus `\bootmgr` + `\Boot\BCD` | ufd-bootcode MBR + NTFS boot record on partition 2 |
///
/// `Both` boots BIOS machines through the active NTFS partition (our MBR code chains to the
/// active partition; our boot record only knows NTFS) and UEFI machines through the ESP
/// (firmware ignores the active flag). Two stores: `\Boot\BCD` on the NTFS partition
/// (`{bootmgr}` = partition 2) and `\EFI\Microsoft\Boot\BCD` on the ESP (`{bootmgr}` =
/// partition 1); both loaders name `vhd=[partition 2]\hyperV.vhd`. Windows' own `bcdboot /f ALL`
/// puts both on one FAT32 system partition instead, which needs a FAT32 BOOTMGR boot record
/// this project does not have (formats.md §3, §10 item 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Firmware {
    /// The seed's layout: one active NTFS partition, BOOTMGR via MBR + NTFS boot record.
    Bios,
    /// Windows To Go-style: active FAT32 EFI system partition + NTFS partition with the VHD.
    Uefi,
    /// The UEFI layout, bootable by BIOS too through the active NTFS partition.
    Both,
}

impl Firmware {
    /// Whether the layout has an EFI system partition.
    pub fn has_esp(self) -> bool {
        !matches!(self, Firmware::Bios)
    }
    /// Whether BIOS boot code, `\bootmgr` and `\Boot\BCD` go on the NTFS partition.
    pub fn has_bios(self) -> bool {
        !matches!(self, Firmware::Uefi)
    }
}

/// One partition of the UFD's MBR.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PartitionReport {
    /// 1-based MBR slot.
    pub number: u8,
    pub start_lba: u32,
    pub sectors: u32,
    pub partition_type: u8,
    pub active: bool,
    /// `NTFS` or `FAT32`.
    pub file_system: &'static str,
    /// What it is for.
    pub role: &'static str,
}

/// Where the partitions go (all 1 MiB aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UfdLayout {
    pub firmware: Firmware,
    /// ESP start LBA and sector count (`None` for BIOS).
    pub esp: Option<(u32, u32)>,
    /// NTFS partition start LBA and sector count.
    pub ntfs: (u32, u32),
}

impl UfdLayout {
    /// The layout of `opts` (sizes already checked by [`preflight`]).
    pub fn of(opts: &ProvisionOptions) -> UfdLayout {
        let total = opts.ufd_size / 512;
        if opts.firmware.has_esp() {
            let esp_sectors = (opts.esp_size / 512) as u32;
            let ntfs_lba = PARTITION_LBA + esp_sectors;
            UfdLayout {
                firmware: opts.firmware,
                esp: Some((PARTITION_LBA, esp_sectors)),
                ntfs: (ntfs_lba, total.saturating_sub(u64::from(ntfs_lba)) as u32),
            }
        } else {
            UfdLayout {
                firmware: opts.firmware,
                esp: None,
                ntfs: (
                    PARTITION_LBA,
                    total.saturating_sub(u64::from(PARTITION_LBA)) as u32,
                ),
            }
        }
    }
    /// Byte offset of the NTFS partition.
    pub fn ntfs_offset(&self) -> u64 {
        u64::from(self.ntfs.0) * 512
    }
    /// Byte offset of the ESP.
    pub fn esp_offset(&self) -> Option<u64> {
        self.esp.map(|(l, _)| u64::from(l) * 512)
    }
    /// The MBR: 255x63 LBA-assist CHS, as DiskPart writes for large disks.
    pub fn mbr(&self, signature: u32) -> Result<Mbr, ufd_formats::Error> {
        let mut mbr = Mbr::new(signature);
        let g = Geometry::LBA_ASSIST_255_63;
        match self.esp {
            None => {
                mbr.partitions[0] =
                    PartitionEntry::new(true, partition_type::NTFS, self.ntfs.0, self.ntfs.1, g)?;
            }
            Some((lba, n)) => {
                let bios = self.firmware.has_bios();
                mbr.partitions[0] = PartitionEntry::new(!bios, ESP_PARTITION_TYPE, lba, n, g)?;
                mbr.partitions[1] =
                    PartitionEntry::new(bios, partition_type::NTFS, self.ntfs.0, self.ntfs.1, g)?;
            }
        }
        Ok(mbr)
    }
    /// The partitions, for the report.
    pub fn report(&self) -> Vec<PartitionReport> {
        let bios = self.firmware.has_bios();
        let mut v = Vec::new();
        if let Some((lba, n)) = self.esp {
            v.push(PartitionReport {
                number: 1,
                start_lba: lba,
                sectors: n,
                partition_type: ESP_PARTITION_TYPE,
                active: !bios,
                file_system: "FAT32",
                role: "EFI system partition: \\EFI\\BOOT\\BOOTX64.EFI, \\EFI\\Microsoft\\Boot\\BCD",
            });
        }
        v.push(PartitionReport {
            number: v.len() as u8 + 1,
            start_lba: self.ntfs.0,
            sectors: self.ntfs.1,
            partition_type: partition_type::NTFS,
            active: bios,
            file_system: "NTFS",
            role: if bios {
                "\\hyperV.vhd, \\bootmgr, \\Boot\\BCD (BIOS boot)"
            } else {
                "\\hyperV.vhd"
            },
        });
        v
    }
}

/// The native-boot container the Windows volume lives in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageFormat {
    /// Fixed VHD (the seed's `create vdisk ... type=fixed`; Windows 7 / Server 2008 R2 and
    /// later boot it natively).
    #[default]
    Vhd,
    /// Fixed VHDX (Hyper-V Server 2012: `create vdisk file=...vhdx type=fixed`; native boot
    /// from VHDX needs NT 6.2 or later — Windows 8 / Server 2012, hh825689).
    Vhdx,
}

impl ImageFormat {
    /// The container's file name on the UFD (the BCD's `vhd=[...]\<name>`).
    pub fn file_name(self) -> &'static str {
        match self {
            ImageFormat::Vhd => VHD_NAME,
            ImageFormat::Vhdx => vhdx::VHDX_NAME,
        }
    }

    /// The container file's size for a virtual disk of `vhd_size` bytes: VHD = data + the
    /// 512-byte footer; VHDX = qemu-img's header area (measured, [`vhdx::EXPECTED_HEADER_BYTES`])
    /// + data.
    pub fn file_bytes(self, vhd_size: u64) -> u64 {
        match self {
            ImageFormat::Vhd => vhd_size + 512,
            ImageFormat::Vhdx => vhd_size + vhdx::EXPECTED_HEADER_BYTES,
        }
    }
}

/// Everything `ufd provision` decides.
#[derive(Clone, Debug)]
pub struct ProvisionOptions {
    /// VHD (default, the seed's) or VHDX (Hyper-V Server 2012).
    pub format: ImageFormat,
    /// The Hyper-V Server WIM (`sources\install.wim` or a customized one).
    pub wim: PathBuf,
    /// 1-based image index (`imagex /apply <wim> 1`).
    pub index: u32,
    /// The UFD image to write (a regular file; created atomically).
    pub out: PathBuf,
    /// UFD capacity in bytes (multiple of 512).
    pub ufd_size: u64,
    /// VHD virtual size in bytes (whole MiB, as DiskPart's `maximum=`).
    pub vhd_size: u64,
    /// UFD MBR disk signature; `None` = random non-zero (diskpart `clean` + `create partition`).
    pub disk_signature: Option<u32>,
    /// The VHD's own disk signature; `None` = random non-zero.
    pub vhd_disk_signature: Option<u32>,
    /// Volume label of the VHD's NTFS (`format quick fs=ntfs label=hyperV`).
    pub vhd_label: String,
    /// BCD locale (`bcdboot /l`, default `en-US`).
    pub locale: String,
    /// Loader description; `None` = from the image's BCD-Template, else the Hyper-V Server name.
    pub description: Option<String>,
    pub vhd_device_form: VhdDeviceForm,
    /// Set `Control\PnP\PollBootPartitionTimeout` (ms); `None` leaves the image's value.
    pub poll_boot_partition_timeout: Option<u32>,
    pub firmware: Firmware,
    /// The seed's step 6 (PagingFiles emptied, ExistingPageFiles deleted). On by default;
    /// off only to build the "technician skipped step 6" image the harness checks.
    pub disable_paging: bool,
    /// Size of the EFI system partition (whole MiB, [`MIN_ESP_SIZE`]..=[`MAX_ESP_SIZE`]) for
    /// [`Firmware::Uefi`] / [`Firmware::Both`]; default [`DEFAULT_ESP_SIZE`].
    pub esp_size: u64,
    /// Recommendation misses become errors; 16 GB becomes a requirement.
    pub strict: bool,
    /// `false` skips the capacity requirement so tests can use small images. The report says
    /// so (`Report::preflight.enforced`); the VHD must still fit.
    pub policy_preflight: bool,
    /// Replace an existing `out`.
    pub overwrite: bool,
    /// `--keep-language`: the UI languages to keep; every other language folder is left out
    /// of the applied image ([`language`]). Empty = keep every language (the seed's default).
    pub keep_languages: Vec<String>,
    /// The OS loader object's GUID in `\Boot\BCD`; `None` = random (what bcdboot does).
    /// Pinned by tests and snapshots for reproducible output.
    pub loader_guid: Option<ufd_formats::bcd::Guid>,
    /// FILETIME written into the edited hives (SYSTEM, `\Boot\BCD`); `None` = now. Pinned by
    /// tests and snapshots for reproducible output.
    pub filetime: Option<u64>,
    /// How seed step 4.1 puts the VHD into the UFD's NTFS: [`VhdRoute::Embed`] (default, zero
    /// copy; falls back to the copy route where the host file system cannot insert ranges, and
    /// says so in the step's detail and [`Report::vhd_route`]) or [`VhdRoute::Copy`].
    pub vhd_route: VhdRoute,
    /// The VHD footer's time stamp (seconds since 2000-01-01 00:00:00 UTC, footer offset
    /// 0x18); `None` = now (what DiskPart's `create vdisk` writes). Pinned for deterministic
    /// images.
    pub vhd_timestamp: Option<u32>,
    /// The VHD footer's unique id (offset 0x44); `None` = random (DiskPart writes a new GUID).
    /// Pinned for deterministic images.
    pub vhd_unique_id: Option<[u8; 16]>,
    /// [`ImageFormat::Vhdx`]: the VHDX identity (both headers' FileWriteGuid and
    /// DataWriteGuid, the Page 83 disk id); `None` = qemu-img's random GUIDs (Hyper-V also
    /// draws new ones at creation). Pinned for deterministic images; Windows replaces the
    /// write GUIDs when it first writes the file ([`vhdx::VhdxIdentity`]).
    pub vhdx_identity: Option<vhdx::VhdxIdentity>,
    /// Also leave a (host-sparse) copy of the finished standalone VHD file here, taken before
    /// step 4.1 places it (the embed route consumes the pipeline's own VHD file). For
    /// verification and for booting the VHD on its own; costs one copy of its data extents,
    /// counted in [`Step::AssembleVhd`]'s bytes. `None` (default) = no copy.
    pub keep_vhd_copy: Option<PathBuf>,
}

/// How seed step 4.1 (`copy hyperV.vhd z:`) puts the VHD file into the UFD's NTFS partition.
/// Both routes first reserve the file's clusters (`ntfsfallocate`: a non-sparse file) and set
/// its valid data length in its MFT record; they differ in how the VHD's data reaches those
/// clusters, and give images a reader cannot tell apart (tests/embed.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VhdRoute {
    /// Zero copy (host-pipeline.md §5 "Zero-copy variant", [`embed`]): holes are inserted into
    /// the VHD file (`FALLOC_FL_INSERT_RANGE`) until each of its runs sits at its clusters'
    /// disk offset, so the VHD file becomes the UFD image; only the UFD partition's metadata,
    /// the ESP and the MBR are then copied into it. Falls back to [`VhdRoute::Copy`] (reported)
    /// when the host file system cannot insert ranges (tmpfs, btrfs) or the runs are not in
    /// ascending order.
    Embed,
    /// The VHD's data extents are written into the reserved clusters of the UFD partition file
    /// (host-pipeline.md §5 "The extents route", [`ntfs::write_at_runs`]), which then becomes
    /// the image: the VHD's data is written twice.
    Copy,
}

/// Which route step 4.1 took, and what it moved.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VhdRouteReport {
    pub requested: VhdRoute,
    pub taken: VhdRoute,
    /// Why the embed route was not taken when it was requested (`None` when it was taken or
    /// not requested).
    pub fallback_reason: Option<String>,
    /// Embed route: bytes of holes inserted into the VHD file (no data moved).
    pub hole_bytes: u64,
    /// Embed route: bytes of the UFD partition file's own data extents (NTFS metadata, boot
    /// files, boot record) copied into the image around the VHD's clusters.
    pub metadata_bytes_copied: u64,
}

impl ProvisionOptions {
    /// The seed's sizes and defaults for `wim` → `out`.
    pub fn seed(wim: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        ProvisionOptions {
            wim: wim.into(),
            index: 1,
            out: out.into(),
            ufd_size: SEED_UFD_SIZE,
            vhd_size: SEED_VHD_SIZE,
            disk_signature: None,
            vhd_disk_signature: None,
            vhd_label: "hyperV".into(),
            locale: "en-US".into(),
            description: None,
            vhd_device_form: VhdDeviceForm::Partition,
            poll_boot_partition_timeout: None,
            firmware: Firmware::Bios,
            disable_paging: true,
            esp_size: DEFAULT_ESP_SIZE,
            strict: false,
            policy_preflight: true,
            overwrite: false,
            keep_languages: Vec::new(),
            loader_guid: None,
            filetime: None,
            vhd_route: VhdRoute::Embed,
            format: ImageFormat::Vhd,
            vhd_timestamp: None,
            vhd_unique_id: None,
            vhdx_identity: None,
            keep_vhd_copy: None,
        }
    }
}

/// The pipeline's steps, in execution order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Preflight,
    CreateVdisk,
    ApplyImage,
    DisablePaging,
    AssembleVhd,
    PrepareUfd,
    PrepareEsp,
    CopyVhd,
    Bcdboot,
    AssembleUfd,
    Commit,
}

impl Step {
    /// The seed step this mirrors.
    pub fn seed_step(self) -> &'static str {
        match self {
            Step::Preflight => "policy (hardware requirements) and prerequisites",
            Step::CreateVdisk => {
                "Step 1: create vdisk, create partition primary, format quick fs=ntfs label=hyperV"
            }
            Step::ApplyImage => "Step 2: imagex /apply <wim> <index> r:\\",
            Step::DisablePaging => "Step 6: reg add PagingFiles \"\", reg delete ExistingPageFiles",
            Step::AssembleVhd => {
                "Step 1/2: the fixed VHD file (partition table + footer), detach vdisk"
            }
            Step::PrepareUfd => {
                "Step 3: clean, create partition primary, active, format quick fs=ntfs"
            }
            Step::PrepareEsp => {
                "Step 3 (UEFI, Windows To Go): create partition primary, format quick fs=fat32 (the system partition)"
            }
            Step::CopyVhd => "Step 4.1: copy hyperV.vhd z:",
            Step::Bcdboot => "Step 5: bcdboot r:\\windows /s z:",
            Step::AssembleUfd => "Step 3/4.2: UFD partition table (active), bootsect /nt60 /mbr",
            Step::Commit => "Step 7: detach",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::CreateVdisk => "create vdisk",
            Step::ApplyImage => "apply image",
            Step::DisablePaging => "disable paging",
            Step::AssembleVhd => "assemble VHD",
            Step::PrepareUfd => "prepare the UFD",
            Step::PrepareEsp => "prepare the ESP",
            Step::CopyVhd => "copy the VHD to the UFD",
            Step::Bcdboot => "bcdboot",
            Step::AssembleUfd => "assemble the UFD",
            Step::Commit => "commit",
        }
    }
}

/// One finished step.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepReport {
    pub step: Step,
    pub seed_step: &'static str,
    pub seconds: f64,
    /// Bytes this step caused to be written to storage (see [`BYTES_WRITTEN_METHOD`]).
    pub bytes_written: u64,
    pub detail: String,
}

/// How [`StepReport::bytes_written`] is measured.
pub const BYTES_WRITTEN_METHOD: &str = "Linux task I/O accounting: write_bytes of /proc/thread-self/io (our writes) plus /proc/<pid>/io of every tool read after it exited (waitid WNOWAIT); counts page-cache pages dirtied, not device writes after deduplication";

/// Progress events.
#[derive(Clone, Debug)]
pub enum Event {
    Started(Step),
    Finished(StepReport),
    Warning(String),
}

/// What the WIM holds for the chosen index.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WimInfo {
    pub path: PathBuf,
    pub index: u32,
    pub image_count: u32,
    pub name: Option<String>,
    pub architecture: Option<String>,
    pub total_bytes: Option<u64>,
}

/// The policy preflight.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Preflight {
    /// `false` when `policy_preflight` was off (tests): the capacity requirement was not applied.
    pub enforced: bool,
    pub strict: bool,
    pub verdicts: Vec<Verdict>,
}

/// The BCD that was written.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BcdReport {
    pub loader: String,
    pub description: String,
    pub vhd_device_form: VhdDeviceForm,
    pub from_template: bool,
    pub objects: usize,
    pub bytes: usize,
}

/// What `--keep-language` removed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LanguageReport {
    #[serde(flatten)]
    pub plan: language::LanguagePlan,
    /// `UILanguages` keys deleted from the image's SYSTEM hive.
    pub hive_keys_deleted: Vec<String>,
    /// Language folders not copied to the UFD's `\Boot` by the bcdboot step.
    pub boot_folders_skipped: Vec<String>,
}

/// Everything `provision` did (serializable to JSON).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub out: PathBuf,
    pub ufd_size: u64,
    pub vhd_size: u64,
    pub ufd_disk_signature: String,
    pub vhd_disk_signature: String,
    pub firmware: Firmware,
    /// The UFD's MBR partitions.
    pub partitions: Vec<PartitionReport>,
    pub wim: WimInfo,
    pub preflight: Preflight,
    pub warnings: Vec<String>,
    pub steps: Vec<StepReport>,
    pub system: system::SystemEdit,
    pub vhd_placement: ntfs::Placement,
    /// How step 4.1 put the VHD on the UFD (embed or copy, and why a fallback happened).
    pub vhd_route: VhdRouteReport,
    /// The BIOS store `\Boot\BCD` on the NTFS partition (`Bios`, `Both`), else the UEFI store.
    pub bcd: BcdReport,
    /// The UEFI store `\EFI\Microsoft\Boot\BCD` on the ESP when the layout has both stores
    /// (`Both`); `None` otherwise.
    pub efi_bcd: Option<BcdReport>,
    /// Files put on the UFD by the bcdboot step (ESP files as `ESP:\EFI\...`).
    pub boot_files: Vec<String>,
    /// What `--keep-language` removed (`None` when every language was kept).
    pub languages: Option<LanguageReport>,
    /// Whether the VHD / UFD were assembled without copying the VHD's data (insert-range; the
    /// UFD: the embed route, or the copy route's partition file shifted in place).
    pub vhd_zero_copy: bool,
    pub ufd_zero_copy: bool,
    /// Allocated bytes of the output image on the host.
    pub out_allocated_bytes: u64,
    pub total_seconds: f64,
    pub total_bytes_written: u64,
    pub bytes_written_method: &'static str,
    pub not_done: Vec<String>,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let mut got = 0;
    while got < N {
        // SAFETY: writes at most N - got bytes into b[got..].
        let r = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), N - got, 0) };
        if r <= 0 {
            break;
        }
        got += r as usize;
    }
    b
}

/// A random non-zero disk signature (what diskpart's `create partition` on a clean disk leaves).
pub fn random_signature() -> u32 {
    loop {
        let s = u32::from_le_bytes(random_bytes::<4>());
        if s != 0 {
            return s;
        }
    }
}

fn filetime_now() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_secs() + 11_644_473_600) * 10_000_000 + u64::from(now.subsec_nanos() / 100)
}

/// Rough NTFS overhead of a fresh volume of `bytes` (mkntfs: $LogFile up to 64 MiB, MFT, bitmap,
/// boot files) plus room for the boot files; used only to refuse sizes that cannot fit.
fn ntfs_overhead(bytes: u64) -> u64 {
    let mib = 1024 * 1024;
    (bytes / 50).clamp(2 * mib, 64 * mib) + bytes / 400 + 16 * mib
}

/// The policy preflight: runs before anything is written.
pub fn preflight(
    opts: &ProvisionOptions,
    warn: &mut dyn FnMut(String),
) -> Result<Preflight, ProvisionError> {
    let mib = 1024 * 1024;
    if opts.vhd_size == 0 || opts.vhd_size % mib != 0 || opts.vhd_size < 16 * mib {
        return Err(ProvisionError::Usage(format!(
            "--vhd-size {} bytes: must be whole MiB (DiskPart's maximum=) and at least 16 MiB",
            opts.vhd_size
        )));
    }
    if opts.firmware.has_esp()
        && (opts.esp_size % mib != 0 || !(MIN_ESP_SIZE..=MAX_ESP_SIZE).contains(&opts.esp_size))
    {
        return Err(ProvisionError::Usage(format!(
            "--esp-size {} bytes: must be whole MiB between {} and {} MiB (FAT32 needs 65525 clusters)",
            opts.esp_size,
            MIN_ESP_SIZE / mib,
            MAX_ESP_SIZE / mib
        )));
    }
    let layout = UfdLayout::of(opts);
    if opts.ufd_size % 512 != 0 || opts.ufd_size <= layout.ntfs_offset() + mib {
        return Err(ProvisionError::Usage(format!(
            "--size {} bytes: must be a multiple of 512 bytes and larger than {} MiB",
            opts.ufd_size,
            layout.ntfs_offset() / mib + 1
        )));
    }
    if opts.ufd_size / 512 - u64::from(PARTITION_LBA) > u64::from(u32::MAX) {
        return Err(ProvisionError::Usage(format!(
            "--size {} bytes: beyond the 2 TiB an MBR partition can describe",
            opts.ufd_size
        )));
    }
    let src = "ufd provision options";
    let vhd_file = opts.format.file_bytes(opts.vhd_size);
    let part = opts.ufd_size - layout.ntfs_offset();
    let need = vhd_file + ntfs_overhead(part);
    if need > part {
        return Err(ProvisionError::Policy {
            rule: policy::UFD_WEAR_RESERVE,
            message: format!(
                "the {vhd_file}-byte VHD file does not fit on a {}-byte UFD: the UFD's {part}-byte NTFS partition needs about {need} bytes (VHD + file-system metadata), let alone the 25% reserve",
                opts.ufd_size
            ),
        });
    }
    let capacity = policy::judge_capacity(opts.ufd_size, opts.strict, src);
    let wear = policy::judge_wear_reserve(vhd_file, opts.ufd_size, src);
    for v in [&capacity, &wear] {
        let requirement = v.level() == Some(policy::Level::Requirement);
        let bad = matches!(v.outcome, Outcome::Fail | Outcome::Warn);
        if !bad {
            continue;
        }
        let fatal =
            opts.policy_preflight && (v.outcome == Outcome::Fail && requirement || opts.strict);
        if fatal {
            return Err(ProvisionError::Policy {
                rule: v.rule,
                message: v.evidence.clone(),
            });
        }
        if !opts.policy_preflight && requirement {
            warn(format!(
                "{}: {} (not enforced: policy preflight disabled)",
                v.rule, v.evidence
            ));
        } else {
            warn(format!("{}: {}", v.rule, v.evidence));
        }
    }
    Ok(Preflight {
        enforced: opts.policy_preflight,
        strict: opts.strict,
        verdicts: vec![capacity, wear],
    })
}

/// `wiminfo` on the WIM and the chosen index: before anything is written.
pub fn check_wim(
    wim: &Path,
    index: u32,
    strict: bool,
    warn: &mut dyn FnMut(String),
) -> Result<WimInfo, ProvisionError> {
    let meta = std::fs::metadata(wim).map_err(|e| ProvisionError::Wim {
        path: wim.to_path_buf(),
        message: format!("cannot read the WIM: {e}"),
    })?;
    if !meta.is_file() {
        return Err(ProvisionError::Wim {
            path: wim.to_path_buf(),
            message: "not a regular file".into(),
        });
    }
    let wim_err = |e: ProvisionError| ProvisionError::Wim {
        path: wim.to_path_buf(),
        message: format!("not a usable WIM: {e}"),
    };
    let all =
        tools::run("check the WIM", tools::WIMINFO, [wim.as_os_str()], None).map_err(wim_err)?;
    let field = |text: &str, name: &str| -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let count: u32 = field(&all.stdout, "Image Count:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ProvisionError::Wim {
            path: wim.to_path_buf(),
            message: "wiminfo printed no image count".into(),
        })?;
    if index == 0 || index > count {
        return Err(ProvisionError::Wim {
            path: wim.to_path_buf(),
            message: format!(
                "image index {index} does not exist: the WIM holds {count} image(s) (1..={count})"
            ),
        });
    }
    let one = tools::run(
        "check the WIM",
        tools::WIMINFO,
        [wim.as_os_str(), index.to_string().as_ref()],
        None,
    )
    .map_err(wim_err)?;
    let architecture = field(&one.stdout, "Architecture:");
    match architecture.as_deref() {
        None | Some("x86_64") => {}
        Some("x86") if !strict => warn(format!(
            "{}: wimlib reports architecture x86 for image {index} (it also says so when the image's SYSTEM hive has no PROCESSOR_ARCHITECTURE); Hyper-V Server is x64-only",
            wim.display()
        )),
        Some(other) => {
            return Err(ProvisionError::Wim {
                path: wim.to_path_buf(),
                message: format!(
                    "image {index} is for architecture {other}; Hyper-V Server 2008 R2 is x64-only ({})",
                    policy::HOST_X64
                ),
            })
        }
    }
    Ok(WimInfo {
        path: wim.to_path_buf(),
        index,
        image_count: count,
        name: field(&one.stdout, "Name:"),
        architecture,
        total_bytes: field(&one.stdout, "Total Bytes:").and_then(|v| v.parse().ok()),
    })
}

/// The temporary build directory; removed on drop unless committed.
struct Scratch {
    dir: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Runner<'a> {
    progress: &'a mut dyn FnMut(Event),
    steps: Vec<StepReport>,
    warnings: Vec<String>,
}

impl Runner<'_> {
    fn step<T>(
        &mut self,
        step: Step,
        f: impl FnOnce(&mut u64) -> Result<(T, String), ProvisionError>,
    ) -> Result<T, ProvisionError> {
        (self.progress)(Event::Started(step));
        let t0 = Instant::now();
        let own0 = tools::own_write_bytes();
        let mut tool_bytes = 0u64;
        let (v, detail) = f(&mut tool_bytes)?;
        let r = StepReport {
            step,
            seed_step: step.seed_step(),
            seconds: t0.elapsed().as_secs_f64(),
            bytes_written: tools::own_write_bytes().saturating_sub(own0) + tool_bytes,
            detail,
        };
        (self.progress)(Event::Finished(r.clone()));
        self.steps.push(r);
        Ok(v)
    }
    fn warn(&mut self, w: String) {
        (self.progress)(Event::Warning(w.clone()));
        self.warnings.push(w);
    }
}

fn run_tool<I, S>(
    bytes: &mut u64,
    step: Step,
    tool: tools::Tool,
    args: I,
    stdout_to: Option<File>,
) -> Result<tools::Ran, ProvisionError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let r = tools::run(step.label(), tool, args, stdout_to)?;
    *bytes += r.write_bytes;
    Ok(r)
}

fn create_sparse(step: Step, path: &Path, len: u64) -> Result<(), ProvisionError> {
    let f = File::create(path).map_err(|e| ProvisionError::io(step.label(), path, e))?;
    f.set_len(len)
        .map_err(|e| ProvisionError::io(step.label(), path, e))
}

fn one_partition_mbr(
    signature: u32,
    disk_bytes: u64,
    active: bool,
) -> Result<Mbr, ufd_formats::Error> {
    let sectors = (disk_bytes / 512 - u64::from(PARTITION_LBA)) as u32;
    let mut mbr = Mbr::new(signature);
    // 255 heads x 63 sectors, as DiskPart and BIOS translation use for large disks.
    mbr.partitions[0] = PartitionEntry::new(
        active,
        partition_type::NTFS,
        PARTITION_LBA,
        sectors,
        Geometry::LBA_ASSIST_255_63,
    )?;
    Ok(mbr)
}

fn mkntfs_args(part: &Path, start_lba: u32, label: Option<&str>) -> Vec<std::ffi::OsString> {
    // -F: regular file; -Q quick; -s 512; -p/-H/-S so HiddenSectors = the start LBA (pitfall 4).
    let lba = start_lba.to_string();
    let mut a: Vec<std::ffi::OsString> = [
        "-F", "-Q", "-q", "-s", "512", "-p", &lba, "-H", "255", "-S", "63",
    ]
    .iter()
    .map(Into::into)
    .collect();
    if let Some(l) = label {
        a.push("-L".into());
        a.push(l.into());
    }
    a.push(part.into());
    a
}

fn mkfs_fat_args(part: &Path, start_lba: u32) -> Vec<std::ffi::OsString> {
    // -F 32 FAT32; -S 512 -s 1: 512-byte clusters, so even the smallest accepted ESP has the
    // 65525 clusters FAT32 needs; -h: HiddenSectors = the partition's start LBA (pitfall 4,
    // as for NTFS); no -g: mkfs.fat 4.2 would round the file system down to whole 63-sector
    // tracks, leaving the partition's tail unused (the BPB's CHS fields matter only to CHS
    // boot code, which UEFI does not run); --mbr=n: no fake partition table in the boot
    // sector (a partition file, not a whole disk); -n: the volume label.
    let lba = start_lba.to_string();
    [
        "-F", "32", "-S", "512", "-s", "1", "-h", &lba, "--mbr=n", "-n", "SYSTEM",
    ]
    .iter()
    .map(Into::into)
    .chain(std::iter::once(part.as_os_str().to_owned()))
    .collect()
}

/// Run the whole pipeline. `progress` sees every step start and finish and every warning.
pub fn provision(
    opts: &ProvisionOptions,
    progress: &mut dyn FnMut(Event),
) -> Result<Report, ProvisionError> {
    let t_all = Instant::now();
    let vhd_name = opts.format.file_name();
    let mut r = Runner {
        progress,
        steps: Vec::new(),
        warnings: Vec::new(),
    };

    // ---- preflight: nothing is written before this passes
    let mut warns = Vec::new();
    let (pre, wim, lang_plan) = r.step(Step::Preflight, |_| {
        tools::check_all(tools::ALL)?;
        if opts.firmware.has_esp() {
            tools::check_all(tools::UEFI)?;
        }
        if opts.format == ImageFormat::Vhdx {
            tools::check_all(&[vhdx::QEMU_IMG])?;
        }
        let pre = preflight(opts, &mut |w| warns.push(w))?;
        let wim = check_wim(&opts.wim, opts.index, opts.strict, &mut |w| warns.push(w))?;
        let langs = if opts.keep_languages.is_empty() {
            None
        } else {
            language::check_libwim()?;
            Some(language::plan(
                &opts.wim,
                opts.index,
                &opts.keep_languages,
                &opts.locale,
            )?)
        };
        if opts.out.is_dir() {
            return Err(ProvisionError::Usage(format!(
                "{}: --out is a directory; give the image file to write",
                opts.out.display()
            )));
        }
        if opts.out.exists() && !opts.overwrite {
            return Err(ProvisionError::Usage(format!(
                "{}: already exists (pass --force to replace it)",
                opts.out.display()
            )));
        }
        let detail = format!(
            "WIM image {} of {} ({}), architecture {}; policy preflight {}{}",
            wim.index,
            wim.image_count,
            wim.name.as_deref().unwrap_or("unnamed"),
            wim.architecture.as_deref().unwrap_or("not reported"),
            if pre.enforced {
                "enforced"
            } else {
                "NOT enforced (tests)"
            },
            match &langs {
                Some(p) => format!(
                    "; languages {} of {}: {} folder(s), {} file(s), {} bytes left out",
                    p.kept.join(" "),
                    p.present.join(" "),
                    p.folders.len(),
                    p.files,
                    p.bytes_saved
                ),
                None => String::new(),
            }
        );
        Ok(((pre, wim, langs), detail))
    })?;
    for w in warns {
        r.warn(w);
    }

    let out_dir = match opts.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Temporary directories of runs that were killed (kill -9, power loss) before they could
    // remove them: only ours by name, whose process is gone and which stayed idle.
    for p in stale::remove_stale(&out_dir, stale::MIN_IDLE)
        .map_err(|e| ProvisionError::io("prepare", &out_dir, e))?
    {
        r.warn(format!(
            "removed {}: the temporary directory of an interrupted run (its process is gone)",
            p.display()
        ));
    }
    let scratch = Scratch {
        dir: stale::scratch_dir(&opts.out, std::process::id()),
    };
    std::fs::create_dir(&scratch.dir)
        .map_err(|e| ProvisionError::io("prepare", &scratch.dir, e))?;
    let vhd_part = scratch.dir.join("vhd-partition.ntfs");
    let ufd_part = scratch.dir.join("ufd.img");
    let ufd_sig = opts.disk_signature.unwrap_or_else(random_signature);
    let vhd_sig = opts.vhd_disk_signature.unwrap_or_else(random_signature);
    let filetime = opts.filetime.unwrap_or_else(filetime_now);
    let layout = UfdLayout::of(opts);
    let esp_part = scratch.dir.join("esp.fat32");

    // ---- 1: the VHD's partition, formatted
    r.step(Step::CreateVdisk, |b| {
        let len = opts.vhd_size - PARTITION_OFFSET;
        create_sparse(Step::CreateVdisk, &vhd_part, len)?;
        run_tool(
            b,
            Step::CreateVdisk,
            tools::MKNTFS,
            mkntfs_args(&vhd_part, PARTITION_LBA, Some(&opts.vhd_label)),
            None,
        )?;
        Ok((
            (),
            format!(
                "{len}-byte partition at LBA {PARTITION_LBA}, NTFS quick format, label {}",
                opts.vhd_label
            ),
        ))
    })?;

    // ---- 2: apply the image
    r.step(Step::ApplyImage, |b| {
        if let Some(plan) = &lang_plan {
            // wimapply minus the removed languages' folders (language.rs: libwim in-process,
            // the WIM is only read).
            language::apply_filtered(&opts.wim, opts.index, &plan.folders, &vhd_part)?;
            return Ok((
                (),
                format!(
                    "libwim: image {} onto the unmounted NTFS volume without {} ({} folders, {} bytes)",
                    opts.index,
                    plan.removed.join(" "),
                    plan.folders.len(),
                    plan.bytes_saved
                ),
            ));
        }
        let w = opts.wim.as_os_str();
        run_tool(
            b,
            Step::ApplyImage,
            tools::WIMAPPLY,
            [w, opts.index.to_string().as_ref(), vhd_part.as_os_str()],
            None,
        )?;
        Ok((
            (),
            format!(
                "wimapply image {} onto the unmounted NTFS volume",
                opts.index
            ),
        ))
    })?;

    // ---- 6: disable paging in the VHD's SYSTEM hive (before the VHD is copied)
    let (system, lang_keys) = r.step(Step::DisablePaging, |b| {
        let hive_path = scratch.dir.join("SYSTEM");
        let f = File::create(&hive_path)
            .map_err(|e| ProvisionError::io("disable paging", &hive_path, e))?;
        run_tool(
            b,
            Step::DisablePaging,
            tools::NTFSCAT,
            [
                vhd_part.as_os_str(),
                "/Windows/System32/config/SYSTEM".as_ref(),
            ],
            Some(f),
        )?;
        let bytes = std::fs::read(&hive_path)
            .map_err(|e| ProvisionError::io("disable paging", &hive_path, e))?;
        let src = "\\Windows\\System32\\config\\SYSTEM in the VHD";
        let (mut edited, rep) = system::edit_system(
            bytes,
            opts.disable_paging,
            opts.poll_boot_partition_timeout,
            filetime,
            src,
        )
        .map_err(|e| {
            ProvisionError::format(
                "disable paging",
                Path::new("\\Windows\\System32\\config\\SYSTEM"),
                e,
            )
        })?;
        let mut lang_keys = Vec::new();
        if let Some(plan) = &lang_plan {
            // Same hive round trip (one ntfscat, one ntfscp): the UILanguages keys of the
            // removed languages go in a second in-memory Editor pass.
            let sys = Path::new("\\Windows\\System32\\config\\SYSTEM");
            let mut ed = ufd_formats::hive::Editor::open(edited)
                .map_err(|e| ProvisionError::format("disable paging", sys, e))?;
            lang_keys = language::edit_hive(&mut ed, &plan.removed, sys)?;
            edited = ed.finish(filetime);
        }
        std::fs::write(&hive_path, &edited)
            .map_err(|e| ProvisionError::io("disable paging", &hive_path, e))?;
        run_tool(
            b,
            Step::DisablePaging,
            tools::NTFSCP,
            [
                "-f".as_ref(),
                vhd_part.as_os_str(),
                hive_path.as_os_str(),
                "/Windows/System32/config/SYSTEM".as_ref(),
            ],
            None,
        )?;
        let detail = format!(
            "{}: PagingFiles emptied (was {:?}), ExistingPageFiles {}; hive {} -> {} bytes{}",
            rep.control_sets.join(", "),
            rep.paging_files_before,
            if rep.existing_page_files_deleted {
                "deleted"
            } else {
                "was absent"
            },
            rep.size_before,
            rep.size_after,
            if lang_keys.is_empty() {
                String::new()
            } else {
                format!("; deleted {}", lang_keys.join(", "))
            }
        );
        Ok(((rep, lang_keys), detail))
    })?;
    for v in &system.verdicts {
        if v.outcome != Outcome::Pass {
            r.warn(format!("{}: {}", v.rule, v.evidence));
        }
    }

    // ---- 1/2: the VHD file around the partition
    let vhd_file = scratch.dir.join(vhd_name);
    let vhd_zero_copy = r.step(Step::AssembleVhd, |b| {
        let mbr = one_partition_mbr(vhd_sig, opts.vhd_size, false)
            .map_err(|e| ProvisionError::format("assemble VHD", &vhd_file, e))?;
        let (zc, what) = match opts.format {
            ImageFormat::Vhdx => {
                // qemu-img makes the fixed VHDX's header area; the partition file becomes its
                // payload (vhdx.rs): the same zero-copy idea as the VHD's inserted front.
                let c = vhdx::assemble_fixed_vhdx(
                    &vhd_part,
                    &vhd_file,
                    opts.vhd_size,
                    &mbr.to_bytes(),
                    vhdx::DEFAULT_BLOCK_SIZE,
                    opts.vhd_route == VhdRoute::Embed,
                    opts.vhdx_identity.as_ref(),
                )?;
                *b += c.tool_write_bytes;
                (c.zero_copy, c.detail)
            }
            ImageFormat::Vhd => {
                let mut head = vec![0u8; PARTITION_OFFSET as usize];
                head[..512].copy_from_slice(&mbr.to_bytes());
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                let ts = opts
                    .vhd_timestamp
                    .unwrap_or_else(|| unix_to_vhd_timestamp(now).unwrap_or(0));
                let unique_id = opts.vhd_unique_id.unwrap_or_else(random_bytes::<16>);
                let footer = Footer::new_fixed(opts.vhd_size, ts, unique_id, Creator::WINDOWS)
                    .map_err(|e| ProvisionError::format("assemble VHD", &vhd_file, e))?;
                let zc = sparse::wrap_partition(&vhd_part, &head, &footer.to_bytes())
                    .map_err(|e| ProvisionError::io("assemble VHD", &vhd_part, e))?;
                std::fs::rename(&vhd_part, &vhd_file)
                    .map_err(|e| ProvisionError::io("assemble VHD", &vhd_file, e))?;
                (
                    zc,
                    format!(
                        "fixed VHD {} bytes + footer (creator `win `, time stamp {ts}), disk signature {vhd_sig:#010x}, {}",
                        opts.vhd_size,
                        if zc {
                            "1 MiB inserted in front (zero copy)"
                        } else {
                            "data extents copied (file system cannot insert ranges)"
                        }
                    ),
                )
            }
        };
        let kept = match &opts.keep_vhd_copy {
            Some(copy) => {
                let io = |p: &Path, e| ProvisionError::io("assemble VHD", p, e);
                let src = File::open(&vhd_file).map_err(|e| io(&vhd_file, e))?;
                let len = src.metadata().map_err(|e| io(&vhd_file, e))?.len();
                let dst = File::create(copy).map_err(|e| io(copy, e))?;
                dst.set_len(len).map_err(|e| io(copy, e))?;
                let n = sparse::copy_extents_into(&src, &dst, 0).map_err(|e| io(copy, e))?;
                dst.sync_all().map_err(|e| io(copy, e))?;
                format!("; copy kept at {} ({n} data bytes)", copy.display())
            }
            None => String::new(),
        };
        Ok((zc, format!("{what}{kept}")))
    })?;

    // ---- 3: the UFD's (NTFS) partition
    r.step(Step::PrepareUfd, |b| {
        let len = u64::from(layout.ntfs.1) * 512;
        create_sparse(Step::PrepareUfd, &ufd_part, len)?;
        run_tool(
            b,
            Step::PrepareUfd,
            tools::MKNTFS,
            mkntfs_args(&ufd_part, layout.ntfs.0, None),
            None,
        )?;
        Ok((
            (),
            format!(
                "{len}-byte partition at LBA {}, NTFS quick format",
                layout.ntfs.0
            ),
        ))
    })?;

    // ---- 3 (UEFI): the EFI system partition, FAT32
    if let Some((esp_lba, esp_sectors)) = layout.esp {
        r.step(Step::PrepareEsp, |b| {
            let len = u64::from(esp_sectors) * 512;
            create_sparse(Step::PrepareEsp, &esp_part, len)?;
            run_tool(
                b,
                Step::PrepareEsp,
                tools::MKFS_FAT,
                mkfs_fat_args(&esp_part, esp_lba),
                None,
            )?;
            Ok((
                (),
                format!(
                    "{len}-byte partition at LBA {esp_lba}, FAT32 (mkfs.fat, 512-byte clusters, hidden sectors {esp_lba}), label SYSTEM"
                ),
            ))
        })?;
    }

    // ---- 4.1: the VHD onto the UFD's NTFS, not sparse
    // Embed route: the VHD file itself becomes the disk image (`disk_file`); copy route: the
    // UFD partition file does.
    let disk_file = scratch.dir.join("ufd-disk.img");
    let (placement, mut route, plan) = r.step(Step::CopyVhd, |b| {
        let step = "copy the VHD to the UFD";
        let vhd_len = std::fs::metadata(&vhd_file)
            .map_err(|e| ProvisionError::io(step, &vhd_file, e))?
            .len();
        let empty = scratch.dir.join("empty");
        File::create(&empty).map_err(|e| ProvisionError::io(step, &empty, e))?;
        let target = format!("/{vhd_name}");
        run_tool(
            b,
            Step::CopyVhd,
            tools::NTFSCP,
            [ufd_part.as_os_str(), empty.as_os_str(), target.as_ref()],
            None,
        )?;
        run_tool(
            b,
            Step::CopyVhd,
            tools::NTFSFALLOCATE,
            [
                "-l".as_ref(),
                vhd_len.to_string().as_ref(),
                ufd_part.as_os_str(),
                target.as_ref(),
            ],
            None,
        )?;
        let inode = ntfs_inode(b, Step::CopyVhd, &ufd_part, &target)?;
        let mut p = ntfs::set_valid_data_length(&ufd_part, inode, vhd_len)?;
        let mut route = VhdRouteReport {
            requested: opts.vhd_route,
            taken: VhdRoute::Copy,
            fallback_reason: None,
            hole_bytes: 0,
            metadata_bytes_copied: 0,
        };
        let mut plan = None;
        if opts.vhd_route == VhdRoute::Embed {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&vhd_file)
                .map_err(|e| ProvisionError::io(step, &vhd_file, e))?;
            let block =
                embed::host_block_size(&f).map_err(|e| ProvisionError::io(step, &vhd_file, e))?;
            match embed::plan(&p.runs, p.cluster_size, vhd_len, layout.ntfs_offset(), block) {
                Err(embed::NotEmbeddable(why)) => route.fallback_reason = Some(why),
                Ok(pl) => match embed::embed_in_place(&f, &pl)
                    .map_err(|e| ProvisionError::io(step, &vhd_file, e))?
                {
                    embed::Embedded::Unsupported => {
                        route.fallback_reason = Some(format!(
                            "the file system holding {} cannot insert ranges (FALLOC_FL_INSERT_RANGE refused)",
                            scratch.dir.display()
                        ))
                    }
                    embed::Embedded::Done { hole_bytes, .. } => {
                        route.taken = VhdRoute::Embed;
                        route.hole_bytes = hole_bytes;
                        plan = Some(pl);
                    }
                },
            }
            drop(f);
        }
        let how = match route.taken {
            VhdRoute::Embed => {
                std::fs::rename(&vhd_file, &disk_file)
                    .map_err(|e| ProvisionError::io(step, &disk_file, e))?;
                format!(
                    "embedded (zero copy): {} bytes of holes inserted into the VHD file so each run sits at its clusters, no data written",
                    route.hole_bytes
                )
            }
            VhdRoute::Copy => {
                p.copied_bytes = ntfs::write_at_runs(&ufd_part, &p, &vhd_file)?;
                std::fs::remove_file(&vhd_file)
                    .map_err(|e| ProvisionError::io(step, &vhd_file, e))?;
                match &route.fallback_reason {
                    Some(why) => format!(
                        "COPY ROUTE (embed not possible: {why}): {} data bytes written at their clusters",
                        p.copied_bytes
                    ),
                    None => format!("copy route: {} data bytes written at their clusters", p.copied_bytes),
                }
            }
        };
        let detail = format!(
            "\\{vhd_name}: inode {inode}, {} run(s) ({}), VDL {} -> {}; {how}",
            p.runs.len(),
            p.runs
                .iter()
                .map(|r| format!("{} clusters at LCN {}", r.len, r.lcn.unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(", "),
            p.vdl_before,
            p.vdl_after
        );
        Ok(((p, route, plan), detail))
    })?;
    if let Some(why) = &route.fallback_reason {
        r.warn(format!(
            "{vhd_name} was copied into the UFD instead of embedded (zero copy): {why}"
        ));
    }

    // ---- 5: bcdboot
    let boot = r.step(Step::Bcdboot, |b| {
        bcdboot(
            b,
            opts,
            &layout,
            &scratch.dir,
            &ufd_part,
            &esp_part,
            ufd_sig,
            lang_plan.as_ref().map(|p| &p.removed[..]),
            filetime,
        )
    })?;

    // ---- 3/4.2: boot code, then the UFD disk around its partition
    let ufd_zero_copy = r.step(Step::AssembleUfd, |_| {
        let step = "assemble the UFD";
        let vbr = if opts.firmware.has_bios() {
            install_boot_record(&ufd_part)?
        } else {
            "none (UEFI only: the NTFS partition keeps mkntfs's boot sector)".into()
        };
        let mut mbr = layout
            .mbr(ufd_sig)
            .map_err(|e| ProvisionError::format(step, &ufd_part, e))?
            .to_bytes();
        ufd_bootcode::install_mbr(&mut mbr)
            .map_err(|e| ProvisionError::format(step, &ufd_part, e))?;
        let parts: Vec<String> = layout
            .report()
            .iter()
            .map(|p| {
                format!(
                    "partition {} type {:02X}{} at LBA {}",
                    p.number,
                    p.partition_type,
                    if p.active { " ACTIVE" } else { "" },
                    p.start_lba
                )
            })
            .collect();
        let zc = if let Some(plan) = &plan {
            // Embed route: the disk file already holds the VHD's data at its clusters; copy in
            // the partition file's own data extents (never inside the VHD's clusters), the
            // ESP and the MBR, and give it its final (sparse) length.
            use std::os::unix::fs::FileExt;
            let io = |p: &Path, e| ProvisionError::io(step, p, e);
            let disk = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&disk_file)
                .map_err(|e| io(&disk_file, e))?;
            let len = disk.metadata().map_err(|e| io(&disk_file, e))?.len();
            if len > opts.ufd_size {
                return Err(ProvisionError::ntfs(
                    step,
                    &disk_file,
                    len,
                    format!(
                        "the embedded VHD ends at byte {len}, past the {}-byte UFD",
                        opts.ufd_size
                    ),
                ));
            }
            disk.set_len(opts.ufd_size).map_err(|e| io(&disk_file, e))?;
            let part = File::open(&ufd_part).map_err(|e| io(&ufd_part, e))?;
            let extents = sparse::data_extents(&part).map_err(|e| io(&ufd_part, e))?;
            embed::check_disjoint(&extents, &plan.volume_ranges()).map_err(|o| {
                let (e, v) = (o.extent, o.vhd);
                ProvisionError::ntfs(
                    step,
                    &ufd_part,
                    e.0.max(v.0),
                    format!(
                        "the partition file holds data at bytes {}..{}, inside the clusters of \\{vhd_name} (bytes {}..{}): copying it would overwrite the embedded VHD",
                        e.0, e.1, v.0, v.1
                    ),
                )
            })?;
            let off = layout.ntfs_offset();
            let mut meta = 0u64;
            for (s, e) in extents {
                sparse::copy_range(&part, s, &disk, off + s, e - s)
                    .map_err(|e| io(&disk_file, e))?;
                meta += e - s;
            }
            drop(part);
            if let Some(esp_offset) = layout.esp_offset() {
                let esp = File::open(&esp_part).map_err(|e| io(&esp_part, e))?;
                meta += sparse::copy_extents_into(&esp, &disk, esp_offset)
                    .map_err(|e| io(&esp_part, e))?;
                drop(esp);
                std::fs::remove_file(&esp_part).map_err(|e| io(&esp_part, e))?;
            }
            disk.write_all_at(&mbr, 0).map_err(|e| io(&disk_file, e))?;
            drop(disk);
            std::fs::remove_file(&ufd_part).map_err(|e| io(&ufd_part, e))?;
            std::fs::rename(&disk_file, &ufd_part).map_err(|e| io(&ufd_part, e))?;
            route.metadata_bytes_copied = meta;
            true
        } else if layout.esp.is_none() {
            let mut head = vec![0u8; PARTITION_OFFSET as usize];
            head[..512].copy_from_slice(&mbr);
            sparse::wrap_partition(&ufd_part, &head, &[])
                .map_err(|e| ProvisionError::io(step, &ufd_part, e))?
        } else {
            // The NTFS partition file becomes the disk (hole inserted in front, zero copy
            // where the file system can); the ESP's few MiB of data extents are copied into
            // the hole at 1 MiB; the MBR goes into LBA 0.
            use std::os::unix::fs::FileExt;
            let (disk, zc) = sparse::insert_front(&ufd_part, layout.ntfs_offset())
                .map_err(|e| ProvisionError::io(step, &ufd_part, e))?;
            let esp = File::open(&esp_part).map_err(|e| ProvisionError::io(step, &esp_part, e))?;
            sparse::copy_extents_into(&esp, &disk, layout.esp_offset().unwrap_or(PARTITION_OFFSET))
                .map_err(|e| ProvisionError::io(step, &esp_part, e))?;
            disk.write_all_at(&mbr, 0)
                .map_err(|e| ProvisionError::io(step, &ufd_part, e))?;
            disk.sync_all()
                .map_err(|e| ProvisionError::io(step, &ufd_part, e))?;
            drop(esp);
            std::fs::remove_file(&esp_part).map_err(|e| ProvisionError::io(step, &esp_part, e))?;
            zc
        };
        Ok((zc, format!(
            "MBR: ufd-bootcode MBR code, disk signature {ufd_sig:#010x}, {}; NTFS boot record: {vbr}; {}",
            parts.join(", "),
            match (&plan, zc) {
                (Some(_), _) => format!(
                    "embed route: the VHD file is the image; {} bytes of NTFS metadata, boot files{} copied around the VHD's clusters",
                    route.metadata_bytes_copied,
                    if layout.esp.is_some() { " and the ESP" } else { "" }
                ),
                (None, true) => "partition file shifted in place (zero copy)".into(),
                (None, false) => "partition data extents copied (file system cannot insert ranges)".into(),
            }
        )))
    })?;

    // ---- 7: commit
    let allocated = r.step(Step::Commit, |_| {
        let f = File::open(&ufd_part).map_err(|e| ProvisionError::io("commit", &ufd_part, e))?;
        f.sync_all()
            .map_err(|e| ProvisionError::io("commit", &ufd_part, e))?;
        let len = f
            .metadata()
            .map_err(|e| ProvisionError::io("commit", &ufd_part, e))?
            .len();
        if len != opts.ufd_size {
            return Err(ProvisionError::io(
                "commit",
                &ufd_part,
                std::io::Error::other(format!("image is {len} bytes, expected {}", opts.ufd_size)),
            ));
        }
        use std::os::unix::fs::MetadataExt;
        let alloc = f.metadata().map(|m| m.blocks() * 512).unwrap_or(0);
        std::fs::rename(&ufd_part, &opts.out)
            .map_err(|e| ProvisionError::io("commit", &opts.out, e))?;
        if let Ok(d) = File::open(&out_dir) {
            let _ = d.sync_all();
        }
        Ok((
            alloc,
            format!(
                "{} written ({len} bytes, {alloc} allocated on the host)",
                opts.out.display()
            ),
        ))
    })?;
    drop(scratch);

    let total_bytes_written = r.steps.iter().map(|s| s.bytes_written).sum();
    let _ = Write::flush(&mut std::io::sink());
    Ok(Report {
        out: opts.out.clone(),
        ufd_size: opts.ufd_size,
        vhd_size: opts.vhd_size,
        ufd_disk_signature: format!("{ufd_sig:#010x}"),
        vhd_disk_signature: format!("{vhd_sig:#010x}"),
        firmware: opts.firmware,
        partitions: layout.report(),
        wim,
        preflight: pre,
        warnings: r.warnings,
        steps: r.steps,
        system,
        vhd_placement: placement,
        vhd_route: route,
        bcd: boot.bcd,
        efi_bcd: boot.efi_bcd,
        boot_files: boot.files,
        languages: lang_plan.map(|plan| LanguageReport {
            plan,
            hive_keys_deleted: lang_keys,
            boot_folders_skipped: boot.skipped,
        }),
        vhd_zero_copy,
        ufd_zero_copy,
        out_allocated_bytes: allocated,
        total_seconds: t_all.elapsed().as_secs_f64(),
        total_bytes_written,
        bytes_written_method: BYTES_WRITTEN_METHOD,
        not_done: vec!["GPT partitioning (Windows To Go on GPT disks): MBR layouts only".into()],
    })
}

/// The MFT record number of `path` (absolute, `/`-separated) on the NTFS volume file `part`,
/// as ntfs-3g's `ntfsinfo -F` names it ("Dumping Inode N").
fn ntfs_inode(bytes: &mut u64, step: Step, part: &Path, path: &str) -> Result<u64, ProvisionError> {
    let info = run_tool(
        bytes,
        step,
        tools::NTFSINFO,
        ["-F".as_ref(), path.as_ref(), part.as_os_str()],
        None,
    )?;
    info.stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Dumping Inode "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            ProvisionError::ntfs(
                step.label(),
                part,
                0,
                format!("ntfsinfo did not name the inode of {path}"),
            )
        })
}

/// MFT record of an NTFS volume's root directory (`FILE_root`, ntfs-3g `layout.h`).
const NTFS_ROOT_RECORD: u64 = ufd_formats::ntfs::ROOT_DIRECTORY_RECORD;

/// The file attributes bcdboot leaves on the BIOS boot files: `\bootmgr` read-only, hidden
/// and system; `\Boot` hidden and system (what `attrib` shows as `SHR` / `SH` on a Windows 7
/// system partition). **Reconstructed**: widely documented behaviour, not checked against a
/// Windows-made volume here (no fixture carries NTFS file attributes); the boot path does not
/// depend on them (BOOTMGR and our boot record ignore attributes).
pub const BOOTMGR_ATTRIBUTES: u32 =
    file_attribute::READONLY | file_attribute::HIDDEN | file_attribute::SYSTEM;
/// See [`BOOTMGR_ATTRIBUTES`].
pub const BOOT_DIR_ATTRIBUTES: u32 = file_attribute::HIDDEN | file_attribute::SYSTEM;

/// Set [`BOOTMGR_ATTRIBUTES`] on `\bootmgr` and [`BOOT_DIR_ATTRIBUTES`] on `\Boot` of the
/// UFD's NTFS partition file, in `$STANDARD_INFORMATION`, their `$FILE_NAME`s and the root
/// index ([`ntfs::add_file_attributes`]). Returns a one-line summary.
fn boot_file_attributes(bytes: &mut u64, part: &Path) -> Result<String, ProvisionError> {
    let mut out = Vec::new();
    for (path, add) in [
        ("/bootmgr", BOOTMGR_ATTRIBUTES),
        ("/Boot", BOOT_DIR_ATTRIBUTES),
    ] {
        let inode = ntfs_inode(bytes, Step::Bcdboot, part, path)?;
        let c = ntfs::add_file_attributes(part, inode, NTFS_ROOT_RECORD, add)?;
        out.push(format!(
            "{} {:#x} -> {:#x}",
            path.replace('/', "\\"),
            c.before,
            c.after
        ));
    }
    Ok(format!("attributes {}", out.join(", ")))
}

/// `ReadAt` over a partition file, for `ufd_bootcode::locate_bootmgr`.
struct FileAt {
    file: File,
    size: u64,
}

impl ufd_formats::bytes::ReadAt for FileAt {
    type Error = std::io::Error;
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }
}

/// Seed step 4.2 (`bootsect /nt60`): the project's NTFS boot record (crate `ufd-bootcode`) into
/// the UFD partition's `$Boot` area, with `\bootmgr`'s extents, and the same sector 0 into the
/// backup boot sector (the volume's last sector). Returns a one-line summary.
fn install_boot_record(part: &Path) -> Result<String, ProvisionError> {
    use std::os::unix::fs::FileExt;
    let step = "assemble the UFD";
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(part)
        .map_err(|e| ProvisionError::io(step, part, e))?;
    let size = file
        .metadata()
        .map_err(|e| ProvisionError::io(step, part, e))?
        .len();
    let mut reader = FileAt { file, size };
    let extents = ufd_bootcode::locate_bootmgr(&mut reader)
        .map_err(|e| ProvisionError::format(step, part, e))?;
    let file = reader.file;
    let mut area = vec![0u8; ufd_bootcode::VBR_AREA_LEN];
    file.read_exact_at(&mut area, 0)
        .map_err(|e| ProvisionError::io(step, part, e))?;
    ufd_bootcode::install_vbr(&mut area, &extents)
        .map_err(|e| ProvisionError::format(step, part, e))?;
    file.write_all_at(&area, 0)
        .map_err(|e| ProvisionError::io(step, part, e))?;
    let backup = ufd_bootcode::backup_boot_sector_offset(&area[..512])
        .map_err(|e| ProvisionError::format(step, part, e))?;
    if backup + 512 <= size {
        file.write_all_at(&area[..512], backup)
            .map_err(|e| ProvisionError::io(step, part, e))?;
    }
    Ok(format!(
        "ufd-bootcode VBR loading \\bootmgr (MFT record {}, {} bytes), backup boot sector at byte {backup}",
        extents.mft_record_number, extents.file_size
    ))
}

/// The bcdboot step's results.
struct BootOutcome {
    /// `\Boot\BCD` (BIOS layouts), else `\EFI\Microsoft\Boot\BCD`.
    bcd: BcdReport,
    /// `\EFI\Microsoft\Boot\BCD` when both stores were written (`Both`).
    efi_bcd: Option<BcdReport>,
    files: Vec<String>,
    /// Language folders left out (`<tag>` for `\Boot`, `EFI\Microsoft\Boot\<tag>` for the ESP).
    skipped: Vec<String>,
}

/// Create `root/rel` (components separated by `/`) one level at a time below `root`, which
/// must exist. Unlike `create_dir_all` it never recreates a missing `root`: the scratch
/// directory that the interrupt handler ([`stale::remove_scratch_on_signal`]) has just removed
/// stays removed, and the pipeline thread fails with `NotFound` instead.
fn create_dirs_below(root: &Path, rel: &str) -> std::io::Result<PathBuf> {
    let mut p = root.to_path_buf();
    for part in rel.split('/').filter(|c| !c.is_empty()) {
        p.push(part);
        match std::fs::create_dir(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    Ok(p)
}

/// Copy a host directory tree (the fonts go to both `\Boot\Fonts` and the ESP for `Both`);
/// `dst`'s parent must exist (see [`create_dirs_below`]).
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dst) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

/// Build one store and serialize it; returns the hive bytes and the report.
fn write_store(
    template: Option<&Store>,
    params: &bcd::BcdParams,
    filetime: u64,
    name: &str,
    to: &Path,
) -> Result<BcdReport, ProvisionError> {
    let store = bcd::build_store(template, params);
    let bytes = store
        .to_hive(filetime)
        .map_err(|e| ProvisionError::format("bcdboot", Path::new(name), e))?;
    std::fs::write(to, &bytes).map_err(|e| ProvisionError::io("bcdboot", to, e))?;
    let description = store
        .object(&params.loader)
        .and_then(|o| o.element(ufd_formats::bcd::ElementType(0x1200_0004)))
        .map(|e| match &e.value {
            ufd_formats::bcd::ElementValue::String(s) => s.clone(),
            _ => String::new(),
        })
        .unwrap_or_default();
    Ok(BcdReport {
        loader: params.loader.to_string(),
        description,
        vhd_device_form: params.vhd_form,
        from_template: template.is_some(),
        objects: store.objects.len(),
        bytes: bytes.len(),
    })
}

/// Seed step 5: boot files and the store(s). BIOS (`Bios`, `Both`): `\bootmgr`, `\Boot\*`,
/// `\Boot\Fonts`, `\Boot\BCD` onto the NTFS partition (formats.md §3 BIOS target). UEFI
/// (`Uefi`, `Both`): `\Windows\Boot\EFI\*` → `\EFI\Microsoft\Boot\`, `\Windows\Boot\Fonts` →
/// `\EFI\Microsoft\Boot\Fonts`, `\EFI\Microsoft\Boot\BCD`, and `bootmgfw.efi` again as
/// `\EFI\BOOT\BOOTX64.EFI`, the removable-media path firmware starts without a boot entry
/// (formats.md §3 UEFI target, §10 item 7) onto the ESP with `mcopy`.
#[allow(clippy::too_many_arguments)]
fn bcdboot(
    bytes: &mut u64,
    opts: &ProvisionOptions,
    layout: &UfdLayout,
    scratch: &Path,
    ufd_part: &Path,
    esp_part: &Path,
    ufd_sig: u32,
    removed_languages: Option<&[String]>,
    filetime: u64,
) -> Result<(BootOutcome, String), ProvisionError> {
    let step = Step::Bcdboot;
    let vhd_name = opts.format.file_name();
    let io = |p: &Path, e: std::io::Error| ProvisionError::io("bcdboot", p, e);
    let bios = opts.firmware.has_bios();
    let efi = opts.firmware.has_esp();
    let ex = scratch.join("extracted");
    std::fs::create_dir(&ex).map_err(|e| io(&ex, e))?;
    let dest = format!("--dest-dir={}", ex.display());
    let mut args: Vec<std::ffi::OsString> =
        vec![opts.wim.clone().into(), opts.index.to_string().into()];
    if bios {
        args.push("/Windows/Boot/PCAT".into());
    }
    if efi {
        args.push("/Windows/Boot/EFI".into());
    }
    for a in [
        "/Windows/Boot/Fonts",
        "/Windows/System32/config/BCD-Template",
        dest.as_str(),
        "--preserve-dir-structure",
        "--nullglob",
        "--no-acls",
    ] {
        args.push(a.into());
    }
    run_tool(bytes, step, tools::WIMEXTRACT, &args, None)?;
    let missing = |what: &str| ProvisionError::Wim {
        path: opts.wim.clone(),
        message: format!(
            "image {} has no {what}: nothing for bcdboot to copy (is this a Windows image?)",
            opts.index
        ),
    };
    let pcat = ex.join("Windows/Boot/PCAT");
    let efi_src = ex.join("Windows/Boot/EFI");
    if bios && !pcat.join("bootmgr").is_file() {
        return Err(missing("\\Windows\\Boot\\PCAT\\bootmgr"));
    }
    if efi && !efi_src.join("bootmgfw.efi").is_file() {
        return Err(missing("\\Windows\\Boot\\EFI\\bootmgfw.efi"));
    }
    let template_path = ex.join("Windows/System32/config/BCD-Template");
    let template = if template_path.is_file() {
        let t = std::fs::read(&template_path).map_err(|e| io(&template_path, e))?;
        let tp = Path::new("\\Windows\\System32\\config\\BCD-Template");
        let hive = ufd_formats::hive::Hive::parse(&t)
            .map_err(|e| ProvisionError::format("bcdboot", tp, e))?;
        Some(Store::from_hive(&hive).map_err(|e| ProvisionError::format("bcdboot", tp, e))?)
    } else {
        None
    };
    let fonts = ex.join("Windows/Boot/Fonts");
    let loader = opts
        .loader_guid
        .unwrap_or_else(|| bcd::random_guid(random_bytes::<16>()));
    let params = |target: bcd::BootTarget, boot_offset: u64, memdiag: bool| bcd::BcdParams {
        target,
        ufd_disk_signature: ufd_sig,
        ufd_partition_offset: layout.ntfs_offset(),
        boot_partition_offset: boot_offset,
        vhd_path: format!("\\{vhd_name}"),
        loader,
        description: opts.description.clone(),
        locale: opts.locale.clone(),
        vhd_form: opts.vhd_device_form,
        timeout: 30,
        memdiag,
    };
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut details = Vec::new();

    // ---- BIOS: the NTFS partition's \bootmgr, \Boot
    let mut bios_rep = None;
    if bios {
        // bcdboot copies the boot files of the applied image, which no longer has the removed
        // languages: leave their folders out of \Boot too.
        if let Some(removed) = removed_languages {
            skipped.extend(language::prune_host_dir(&pcat, removed).map_err(|e| io(&pcat, e))?);
        }
        // Staging tree = the partition root as bcdboot leaves it (formats.md §3 [S]).
        let stage = scratch.join("stage");
        let boot = create_dirs_below(scratch, "stage/Boot").map_err(|e| io(&stage, e))?;
        let bootmgr = pcat.join("bootmgr");
        std::fs::rename(&bootmgr, stage.join("bootmgr")).map_err(|e| io(&bootmgr, e))?;
        files.push("\\bootmgr".to_string());
        let mut memdiag = false;
        for entry in std::fs::read_dir(&pcat).map_err(|e| io(&pcat, e))? {
            let entry = entry.map_err(|e| io(&pcat, e))?;
            let name = entry.file_name();
            let name_s = name.to_string_lossy().into_owned();
            memdiag |= name_s.eq_ignore_ascii_case("memtest.exe");
            std::fs::rename(entry.path(), boot.join(&name)).map_err(|e| io(&entry.path(), e))?;
            files.push(format!("\\Boot\\{name_s}"));
        }
        if fonts.is_dir() {
            copy_tree(&fonts, &boot.join("Fonts")).map_err(|e| io(&fonts, e))?;
            files.push("\\Boot\\Fonts\\".into());
        }
        let p = params(bcd::BootTarget::Pcat, layout.ntfs_offset(), memdiag);
        let rep = write_store(
            template.as_ref(),
            &p,
            filetime,
            "\\Boot\\BCD",
            &boot.join("BCD"),
        )?;
        files.push("\\Boot\\BCD".into());
        // ntfscp cannot create directories (pitfall 9): a tiny WIM of the staging tree, applied
        // onto the non-empty volume, creates them.
        let boot_wim = scratch.join("boot.wim");
        run_tool(
            bytes,
            step,
            tools::WIMCAPTURE,
            [
                stage.as_os_str(),
                boot_wim.as_os_str(),
                "boot files".as_ref(),
                "--compress=none".as_ref(),
            ],
            None,
        )?;
        run_tool(
            bytes,
            step,
            tools::WIMAPPLY,
            [boot_wim.as_os_str(), "1".as_ref(), ufd_part.as_os_str()],
            None,
        )?;
        details.push(format!(
            "\\Boot\\BCD {} bytes, {} objects, {{bootmgr}} on partition at {}",
            rep.bytes,
            rep.objects,
            layout.ntfs_offset()
        ));
        details.push(boot_file_attributes(bytes, ufd_part)?);
        bios_rep = Some(rep);
    }

    // ---- UEFI: the ESP's \EFI
    let mut efi_rep = None;
    if let Some(esp_offset) = layout.esp_offset() {
        if let Some(removed) = removed_languages {
            skipped.extend(
                language::prune_host_dir(&efi_src, removed)
                    .map_err(|e| io(&efi_src, e))?
                    .into_iter()
                    .map(|t| format!("EFI\\Microsoft\\Boot\\{t}")),
            );
        }
        let stage = scratch.join("esp-stage");
        let mb = create_dirs_below(scratch, "esp-stage/EFI/Microsoft/Boot")
            .map_err(|e| io(&stage, e))?;
        let fallback =
            create_dirs_below(scratch, "esp-stage/EFI/BOOT").map_err(|e| io(&stage, e))?;
        let bootmgfw = efi_src.join("bootmgfw.efi");
        let bootx64 = fallback.join("BOOTX64.EFI");
        std::fs::copy(&bootmgfw, &bootx64).map_err(|e| io(&bootmgfw, e))?;
        files.push("ESP:\\EFI\\BOOT\\BOOTX64.EFI".into());
        let mut memdiag = false;
        let mut names: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(&efi_src).map_err(|e| io(&efi_src, e))? {
            let entry = entry.map_err(|e| io(&efi_src, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        for name in names {
            memdiag |= name.eq_ignore_ascii_case("memtest.efi");
            let from = efi_src.join(&name);
            std::fs::rename(&from, mb.join(&name)).map_err(|e| io(&from, e))?;
            files.push(format!("ESP:\\EFI\\Microsoft\\Boot\\{name}"));
        }
        if fonts.is_dir() {
            copy_tree(&fonts, &mb.join("Fonts")).map_err(|e| io(&fonts, e))?;
            files.push("ESP:\\EFI\\Microsoft\\Boot\\Fonts\\".into());
        }
        let p = params(bcd::BootTarget::Efi, esp_offset, memdiag);
        let rep = write_store(
            template.as_ref(),
            &p,
            filetime,
            "\\EFI\\Microsoft\\Boot\\BCD",
            &mb.join("BCD"),
        )?;
        files.push("ESP:\\EFI\\Microsoft\\Boot\\BCD".into());
        // mtools writes into the FAT32 partition file directly (-i); -s recursive, -Q stop
        // at the first error.
        let efi_dir = stage.join("EFI");
        run_tool(
            bytes,
            step,
            tools::MCOPY,
            [
                "-s".as_ref(),
                "-Q".as_ref(),
                "-i".as_ref(),
                esp_part.as_os_str(),
                efi_dir.as_os_str(),
                "::/".as_ref(),
            ],
            None,
        )?;
        details.push(format!(
            "\\EFI\\Microsoft\\Boot\\BCD {} bytes, {} objects, {{bootmgr}} on the ESP at {esp_offset}",
            rep.bytes, rep.objects
        ));
        efi_rep = Some(rep);
    }

    let (bcd, efi_bcd) = match (bios_rep, efi_rep) {
        (Some(b), e) => (b, e),
        (None, Some(e)) => (e, None),
        (None, None) => {
            return Err(ProvisionError::Usage(format!(
                "--firmware {:?}: the layout has neither a BIOS nor an EFI boot store",
                opts.firmware
            )))
        }
    };
    let detail = format!(
        "{} files; {} ({}), default {} \"{}\" on vhd=[disk {ufd_sig:#010x}, offset {}]\\{vhd_name}",
        files.len(),
        details.join("; "),
        if template.is_some() {
            "from the image's BCD-Template"
        } else {
            "no BCD-Template in the image: built-in inherit objects"
        },
        loader,
        bcd.description,
        layout.ntfs_offset()
    );
    Ok((
        BootOutcome {
            bcd,
            efi_bcd,
            files,
            skipped,
        },
        detail,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(Firmware::Bios, None, (2048, 1_046_528), true)]
    #[case(Firmware::Uefi, Some((2048, 204_800)), (206_848, 841_728), false)]
    #[case(Firmware::Both, Some((2048, 204_800)), (206_848, 841_728), true)]
    fn layouts(
        #[case] firmware: Firmware,
        #[case] esp: Option<(u32, u32)>,
        #[case] ntfs: (u32, u32),
        #[case] ntfs_active: bool,
    ) {
        let mut o = ProvisionOptions::seed("x.wim", "x.img");
        o.ufd_size = 512 << 20;
        o.firmware = firmware;
        let l = UfdLayout::of(&o);
        assert_eq!((l.esp, l.ntfs), (esp, ntfs));
        let mbr = l.mbr(0x1234_5678).unwrap();
        let used: Vec<_> = mbr.partitions.iter().filter(|p| !p.is_empty()).collect();
        assert_eq!(used.len(), 1 + usize::from(esp.is_some()));
        let n = used.last().unwrap();
        assert_eq!(
            (n.partition_type, n.lba_start, n.active),
            (partition_type::NTFS, ntfs.0, ntfs_active)
        );
        if esp.is_some() {
            assert_eq!(used[0].partition_type, ESP_PARTITION_TYPE);
            assert_eq!(used[0].active, !ntfs_active);
        }
        assert_eq!(
            l.report().iter().filter(|p| p.active).count(),
            1,
            "exactly one active partition"
        );
    }

    #[test]
    fn a_too_small_ufd_for_esp_and_ntfs_is_a_usage_error() {
        let mut o = ProvisionOptions::seed("x.wim", "x.img");
        o.firmware = Firmware::Uefi;
        o.ufd_size = 101 << 20;
        o.vhd_size = 16 << 20;
        let e = preflight(&o, &mut |_| {}).unwrap_err();
        assert!(
            matches!(e, ProvisionError::Usage(_)) && e.to_string().contains("--size"),
            "{e}"
        );
    }
}
