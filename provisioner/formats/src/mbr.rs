//! MBR partition tables: parse, validate and write the first sector of a disk.
//!
//! Layout of sector 0 (all multi-byte fields little-endian):
//!
//! | offset | length | field |
//! |---|---|---|
//! | 0x000 | 440 | boot code (`bootsect /nt60 /mbr`, syslinux `mbr.bin`, ms-sys `-7` write only this) |
//! | 0x1B8 | 4 | disk signature (Windows identifies MBR disks — and BCD qualified-partition devices — by it) |
//! | 0x1BC | 2 | reserved (normally 0; some tools use it as a copy-protect marker `5A 5A`) |
//! | 0x1BE | 4 × 16 | primary partition entries |
//! | 0x1FE | 2 | boot signature `55 AA` |
//!
//! Partition entry (16 bytes): status (0x80 active/bootable, 0x00 inactive), CHS of the first
//! sector (3 bytes), partition type, CHS of the last sector (3 bytes), LBA of the first sector
//! (u32), number of sectors (u32).
//!
//! The boot code is kept apart from the table ([`Mbr::boot_code`], [`install_boot_code`]) because
//! installing MBR code must not touch the disk signature or the table: that is what
//! `bootsect /nt60 X: /mbr` does ("updates the master boot record without changing the partition
//! table") and what `dd bs=440 count=1 conv=notrunc` does with syslinux's `mbr.bin`.
//!
//! ## CHS fields
//!
//! CHS values are computed for a caller-chosen [`Geometry`] with the standard encoding: byte 0 =
//! head, byte 1 = sector (1-based, bits 0–5) | cylinder bits 8–9 (bits 6–7), byte 2 = cylinder
//! bits 0–7. An address whose cylinder does not fit in 10 bits (cylinder > 1023) is written as
//! the last addressable CHS, cylinder 1023 / head `heads − 1` / sector `sectors_per_track`.
//! For the 255-head/63-sector geometry that Windows, DiskPart and util-linux use on disks and
//! image files this is `FE FF FF` (1023/254/63). **Verified** against `sfdisk` (util-linux 2.38.1)
//! on a sparse 16 GiB image file: it reports 2088 cylinders/255 heads/63 sectors for the file and
//! writes `20 21 00` / `FE FF FF` for a partition at LBA 2048 running to the end of the disk, and
//! `FE FF FF` for both ends of partitions that start beyond cylinder 1023 (see `tests/mbr_vhd.rs`).
//! util-linux's rule is the same for other geometries (clamp to `1023/(heads−1)/spt`).
//! Modern firmware and Windows address partitions by LBA only; the CHS fields matter for old
//! BIOSes and for tools that cross-check them.
//!
//! Extended partitions (0x05/0x0F/0x85) are reported as entries; their EBR chain is not followed.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::bytes::{put_u32le, Bytes};
use crate::error::{Error, Format, Result};

/// Bytes per sector assumed by the MBR format (LBA units).
pub const SECTOR_SIZE: usize = 512;
/// Length of the boot-code area, 0x000..0x1B8.
pub const BOOT_CODE_LEN: usize = 440;
/// Offset of the 32-bit disk signature.
pub const DISK_SIGNATURE_OFFSET: usize = 0x1B8;
/// Offset of the two bytes between the disk signature and the table.
pub const RESERVED_OFFSET: usize = 0x1BC;
/// Offset of the first of the four partition entries.
pub const PARTITION_TABLE_OFFSET: usize = 0x1BE;
/// Size of one partition entry.
pub const PARTITION_ENTRY_LEN: usize = 16;
/// Offset of the `55 AA` boot signature.
pub const BOOT_SIGNATURE_OFFSET: usize = 0x1FE;
/// The boot signature bytes.
pub const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xAA];

/// Status byte of an active (bootable) partition.
pub const STATUS_ACTIVE: u8 = 0x80;
/// Status byte of an inactive partition.
pub const STATUS_INACTIVE: u8 = 0x00;

/// Partition type codes used by this project.
pub mod partition_type {
    pub const EMPTY: u8 = 0x00;
    /// NTFS, exFAT or HPFS (IFS). The type of the UFD's data partition (formats.md §10).
    pub const NTFS: u8 = 0x07;
    pub const FAT32_CHS: u8 = 0x0B;
    pub const FAT32_LBA: u8 = 0x0C;
    pub const EXTENDED_CHS: u8 = 0x05;
    pub const EXTENDED_LBA: u8 = 0x0F;
    pub const LINUX: u8 = 0x83;
    pub const LINUX_EXTENDED: u8 = 0x85;
    pub const GPT_PROTECTIVE: u8 = 0xEE;
    pub const EFI_SYSTEM: u8 = 0xEF;
}

/// Human-readable name of a partition type byte, for the common types (`None` for others).
pub fn partition_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        0x00 => "empty",
        0x01 => "FAT12",
        0x04 => "FAT16 (<32 MiB)",
        0x05 => "extended (CHS)",
        0x06 => "FAT16",
        0x07 => "NTFS/exFAT/HPFS",
        0x0B => "FAT32 (CHS)",
        0x0C => "FAT32 (LBA)",
        0x0E => "FAT16 (LBA)",
        0x0F => "extended (LBA)",
        0x11 => "hidden FAT12",
        0x14 => "hidden FAT16 (<32 MiB)",
        0x16 => "hidden FAT16",
        0x17 => "hidden NTFS/exFAT/HPFS",
        0x1B => "hidden FAT32 (CHS)",
        0x1C => "hidden FAT32 (LBA)",
        0x1E => "hidden FAT16 (LBA)",
        0x27 => "Windows RE (hidden NTFS)",
        0x42 => "Windows dynamic disk (LDM)",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x85 => "Linux extended",
        0x8E => "Linux LVM",
        0xA5 => "FreeBSD",
        0xA6 => "OpenBSD",
        0xA8 => "Apple UFS",
        0xA9 => "NetBSD",
        0xAB => "Apple boot",
        0xAF => "Apple HFS/HFS+",
        0xEE => "GPT protective",
        0xEF => "EFI system",
        0xFB => "VMware VMFS",
        0xFD => "Linux RAID autodetect",
        _ => return None,
    })
}

/// Is `t` an extended-partition container type (its EBR chain is not followed here)?
pub fn is_extended_type(t: u8) -> bool {
    matches!(
        t,
        partition_type::EXTENDED_CHS
            | partition_type::EXTENDED_LBA
            | partition_type::LINUX_EXTENDED
    )
}

/// A cylinder/head/sector address as stored in a partition entry.
///
/// `cylinder` holds 10 bits (0..=1023), `sector` 6 bits (1..=63; 0 only in empty entries).
/// [`Chs::encode`] masks to those widths; [`Chs::decode`] of any 3 bytes round-trips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Chs {
    pub cylinder: u16,
    pub head: u8,
    pub sector: u8,
}

impl Chs {
    /// The last addressable CHS with 255 heads and 63 sectors/track: 1023/254/63 = `FE FF FF`.
    pub const MAX_255_63: Chs = Chs {
        cylinder: 1023,
        head: 254,
        sector: 63,
    };

    /// The 3 on-disk bytes: head, sector | (cylinder bits 8–9) << 6, cylinder bits 0–7.
    pub fn encode(self) -> [u8; 3] {
        let c = self.cylinder & 0x3FF;
        [
            self.head,
            (self.sector & 0x3F) | (((c >> 8) as u8) << 6),
            (c & 0xFF) as u8,
        ]
    }

    /// Decode the 3 on-disk bytes (never fails; every bit pattern is a CHS).
    pub fn decode(b: [u8; 3]) -> Chs {
        Chs {
            cylinder: (u16::from(b[1] & 0xC0) << 2) | u16::from(b[2]),
            head: b[0],
            sector: b[1] & 0x3F,
        }
    }
}

impl fmt::Display for Chs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.cylinder, self.head, self.sector)
    }
}

/// A BIOS disk geometry used to compute CHS fields (heads 1..=255, sectors/track 1..=63).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    pub heads: u8,
    pub sectors_per_track: u8,
}

impl Geometry {
    /// 255 heads × 63 sectors/track: what Windows, DiskPart and util-linux use for disks and
    /// image files larger than a few MiB ("LBA-assist" translation). Verified for sfdisk on a
    /// 16 GiB image file (`sfdisk -g` prints "2088 cylinders, 255 heads, 63 sectors/track").
    pub const LBA_ASSIST_255_63: Geometry = Geometry {
        heads: 255,
        sectors_per_track: 63,
    };

    /// A geometry, checked: heads must be 1..=255 and sectors/track 1..=63.
    pub fn new(heads: u8, sectors_per_track: u8) -> Result<Geometry> {
        if heads == 0 {
            return Err(Error::invalid(
                Format::Mbr,
                0,
                "geometry heads",
                "heads must be 1..=255, found 0",
            ));
        }
        if sectors_per_track == 0 || sectors_per_track > 63 {
            return Err(Error::invalid(
                Format::Mbr,
                0,
                "geometry sectors per track",
                format!("sectors per track must be 1..=63, found {sectors_per_track}"),
            ));
        }
        Ok(Geometry {
            heads,
            sectors_per_track,
        })
    }

    fn sectors_per_cylinder(&self) -> u64 {
        u64::from(self.heads) * u64::from(self.sectors_per_track)
    }

    /// The last CHS address this geometry can express: 1023/(heads−1)/spt.
    pub fn max_chs(&self) -> Chs {
        Chs {
            cylinder: 1023,
            head: self.heads.saturating_sub(1),
            sector: self.sectors_per_track.max(1),
        }
    }

    /// LBA → CHS. Addresses beyond cylinder 1023 give [`Geometry::max_chs`] (`FE FF FF` for
    /// 255/63), as util-linux and Windows write them. A geometry with a zero field (only
    /// constructible by hand, bypassing [`Geometry::new`]) gives the maximum too.
    pub fn lba_to_chs(&self, lba: u64) -> Chs {
        let spc = self.sectors_per_cylinder();
        if spc == 0 {
            return self.max_chs();
        }
        let cylinder = lba / spc;
        if cylinder > 1023 {
            return self.max_chs();
        }
        let rem = lba % spc;
        let spt = u64::from(self.sectors_per_track);
        // rem < heads*spt, so rem/spt < heads <= 255 and rem%spt + 1 <= 63: the casts are exact.
        Chs {
            cylinder: cylinder as u16,
            head: (rem / spt) as u8,
            sector: (rem % spt + 1) as u8,
        }
    }

    /// CHS → LBA, or `None` when the address is not valid for this geometry (sector 0,
    /// sector > spt, head ≥ heads).
    pub fn chs_to_lba(&self, chs: Chs) -> Option<u64> {
        if chs.sector == 0 || chs.sector > self.sectors_per_track || chs.head >= self.heads {
            return None;
        }
        Some(
            u64::from(chs.cylinder) * self.sectors_per_cylinder()
                + u64::from(chs.head) * u64::from(self.sectors_per_track)
                + u64::from(chs.sector - 1),
        )
    }
}

/// One of the four primary partition entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PartitionEntry {
    /// Status byte 0x80 (`true`) or 0x00 (`false`); other values are rejected by [`Mbr::parse`].
    pub active: bool,
    pub chs_start: Chs,
    pub partition_type: u8,
    pub chs_end: Chs,
    pub lba_start: u32,
    pub sector_count: u32,
}

impl PartitionEntry {
    /// An entry covering `sector_count` sectors from `lba_start`, with both CHS fields computed
    /// for `geometry`. A zero `sector_count` is a caller error (an entry describes ≥ 1 sector).
    pub fn new(
        active: bool,
        partition_type: u8,
        lba_start: u32,
        sector_count: u32,
        geometry: Geometry,
    ) -> Result<Self> {
        if sector_count == 0 {
            return Err(Error::invalid(
                Format::Mbr,
                0,
                "partition sector count",
                "a partition needs at least one sector",
            ));
        }
        let last = u64::from(lba_start) + u64::from(sector_count) - 1;
        if last > u64::from(u32::MAX) {
            return Err(Error::invalid(
                Format::Mbr,
                0,
                "partition sector count",
                format!("partition ends at LBA {last}, beyond the 32-bit LBA limit of an MBR (2 TiB with 512-byte sectors)"),
            ));
        }
        Ok(PartitionEntry {
            active,
            chs_start: geometry.lba_to_chs(u64::from(lba_start)),
            partition_type,
            chs_end: geometry.lba_to_chs(last),
            lba_start,
            sector_count,
        })
    }

    /// An unused entry: type 0 (the other fields are normally zero too).
    pub fn is_empty(&self) -> bool {
        self.partition_type == partition_type::EMPTY
    }

    /// First LBA after the partition (`lba_start + sector_count`, in 64 bits: never overflows).
    pub fn end_lba_exclusive(&self) -> u64 {
        u64::from(self.lba_start) + u64::from(self.sector_count)
    }

    /// Name of the partition type, if it is a common one.
    pub fn type_name(&self) -> Option<&'static str> {
        partition_type_name(self.partition_type)
    }

    /// Parse one 16-byte entry; `b` must start at the entry. Errors carry absolute offsets.
    fn parse(b: &Bytes<'_>, index: usize) -> Result<Self> {
        const STATUS_FIELD: [&str; 4] = [
            "partition 1 status",
            "partition 2 status",
            "partition 3 status",
            "partition 4 status",
        ];
        let status = b.u8(0, STATUS_FIELD[index & 3])?;
        let active = match status {
            STATUS_ACTIVE => true,
            STATUS_INACTIVE => false,
            other => {
                return Err(Error::invalid(
                    Format::Mbr,
                    b.abs(0),
                    STATUS_FIELD[index & 3],
                    format!(
                        "status byte must be 0x80 (active) or 0x00 (inactive), found {other:#04x}"
                    ),
                ))
            }
        };
        Ok(PartitionEntry {
            active,
            chs_start: Chs::decode(b.array(1, "partition CHS start")?),
            partition_type: b.u8(4, "partition type")?,
            chs_end: Chs::decode(b.array(5, "partition CHS end")?),
            lba_start: b.u32le(8, "partition LBA start")?,
            sector_count: b.u32le(12, "partition sector count")?,
        })
    }

    /// The 16 on-disk bytes.
    pub fn to_bytes(&self) -> [u8; PARTITION_ENTRY_LEN] {
        let mut e = [0u8; PARTITION_ENTRY_LEN];
        e[0] = if self.active {
            STATUS_ACTIVE
        } else {
            STATUS_INACTIVE
        };
        e[1..4].copy_from_slice(&self.chs_start.encode());
        e[4] = self.partition_type;
        e[5..8].copy_from_slice(&self.chs_end.encode());
        put_u32le(&mut e, 8, self.lba_start);
        put_u32le(&mut e, 12, self.sector_count);
        e
    }
}

/// Sector 0 of an MBR-partitioned disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mbr {
    /// Bytes 0x000..0x1B8.
    pub boot_code: [u8; BOOT_CODE_LEN],
    /// Bytes 0x1B8..0x1BC (little-endian).
    pub disk_signature: u32,
    /// Bytes 0x1BC..0x1BE.
    pub reserved: [u8; 2],
    pub partitions: [PartitionEntry; 4],
}

impl Mbr {
    /// An MBR with no boot code, the given disk signature and an empty table.
    pub fn new(disk_signature: u32) -> Mbr {
        Mbr {
            boot_code: [0; BOOT_CODE_LEN],
            disk_signature,
            reserved: [0; 2],
            partitions: [PartitionEntry::default(); 4],
        }
    }

    /// Parse the first 512 bytes of `sector` (longer input is allowed; the rest is ignored).
    ///
    /// Errors: input shorter than 512 bytes, no `55 AA` at 0x1FE, a status byte other than
    /// 0x00/0x80 (the error names the entry's offset).
    pub fn parse(sector: &[u8]) -> Result<Mbr> {
        let b = Bytes::new(Format::Mbr, sector).slice(0, SECTOR_SIZE, "MBR sector")?;
        b.expect_sig(BOOT_SIGNATURE_OFFSET, &BOOT_SIGNATURE, "boot signature")?;
        let mut partitions = [PartitionEntry::default(); 4];
        for (i, p) in partitions.iter_mut().enumerate() {
            let e = b.slice(
                PARTITION_TABLE_OFFSET + i * PARTITION_ENTRY_LEN,
                PARTITION_ENTRY_LEN,
                "partition entry",
            )?;
            *p = PartitionEntry::parse(&e, i)?;
        }
        Ok(Mbr {
            boot_code: b.array(0, "boot code")?,
            disk_signature: b.u32le(DISK_SIGNATURE_OFFSET, "disk signature")?,
            reserved: b.array(RESERVED_OFFSET, "reserved")?,
            partitions,
        })
    }

    /// The 64 bytes of the partition table (0x1BE..0x1FE).
    pub fn table_bytes(&self) -> [u8; 4 * PARTITION_ENTRY_LEN] {
        let mut t = [0u8; 4 * PARTITION_ENTRY_LEN];
        for (chunk, p) in t
            .chunks_exact_mut(PARTITION_ENTRY_LEN)
            .zip(self.partitions.iter())
        {
            chunk.copy_from_slice(&p.to_bytes());
        }
        t
    }

    /// The whole 512-byte sector, with `55 AA` at 0x1FE.
    pub fn to_bytes(&self) -> [u8; SECTOR_SIZE] {
        let mut s = [0u8; SECTOR_SIZE];
        s[..BOOT_CODE_LEN].copy_from_slice(&self.boot_code);
        put_u32le(&mut s, DISK_SIGNATURE_OFFSET, self.disk_signature);
        s[RESERVED_OFFSET..PARTITION_TABLE_OFFSET].copy_from_slice(&self.reserved);
        s[PARTITION_TABLE_OFFSET..BOOT_SIGNATURE_OFFSET].copy_from_slice(&self.table_bytes());
        s[BOOT_SIGNATURE_OFFSET..].copy_from_slice(&BOOT_SIGNATURE);
        s
    }

    /// Consistency checks for `ufd inspect`. Nothing here is fatal; each problem is a [`Finding`].
    ///
    /// - `disk_sectors`: the disk size in 512-byte sectors, when known (partitions beyond it);
    /// - `geometry`: when given, the CHS fields of non-empty entries are compared with the
    ///   values computed from their LBA fields.
    pub fn validate(&self, disk_sectors: Option<u64>, geometry: Option<Geometry>) -> Vec<Finding> {
        let mut out = Vec::new();
        let used: Vec<(usize, &PartitionEntry)> = self
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .collect();

        for (i, p) in self.partitions.iter().enumerate() {
            if p.is_empty() && (p.active || p.lba_start != 0 || p.sector_count != 0) {
                out.push(Finding::EmptyEntryNotZero { index: i });
            }
        }
        let active: Vec<usize> = used
            .iter()
            .filter(|(_, p)| p.active)
            .map(|(i, _)| *i)
            .collect();
        if active.len() > 1 {
            out.push(Finding::MultipleActive { indices: active });
        }
        for &(i, p) in &used {
            if p.sector_count == 0 {
                out.push(Finding::ZeroSectors { index: i });
                continue;
            }
            if p.lba_start == 0 {
                out.push(Finding::CoversMbr { index: i });
            }
            if let Some(n) = disk_sectors {
                if p.end_lba_exclusive() > n {
                    out.push(Finding::BeyondDisk {
                        index: i,
                        end_lba: p.end_lba_exclusive(),
                        disk_sectors: n,
                    });
                }
            }
            if let Some(g) = geometry {
                let start = g.lba_to_chs(u64::from(p.lba_start));
                if start != p.chs_start {
                    out.push(Finding::ChsMismatch {
                        index: i,
                        which: "start",
                        expected: start,
                        found: p.chs_start,
                    });
                }
                let end = g.lba_to_chs(p.end_lba_exclusive() - 1);
                if end != p.chs_end {
                    out.push(Finding::ChsMismatch {
                        index: i,
                        which: "end",
                        expected: end,
                        found: p.chs_end,
                    });
                }
            }
        }
        for (a, &(i, p)) in used.iter().enumerate() {
            for &(j, q) in used.iter().skip(a + 1) {
                if p.sector_count != 0
                    && q.sector_count != 0
                    && u64::from(p.lba_start) < q.end_lba_exclusive()
                    && u64::from(q.lba_start) < p.end_lba_exclusive()
                {
                    out.push(Finding::Overlap {
                        first: i,
                        second: j,
                    });
                }
            }
        }
        out
    }
}

/// A problem found by [`Mbr::validate`]. Partition indices are 0-based (entry 0 at 0x1BE);
/// the `Display` text numbers them 1..=4 as fdisk does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Two non-empty partitions share sectors.
    Overlap { first: usize, second: usize },
    /// A partition ends after the last sector of the disk.
    BeyondDisk {
        index: usize,
        end_lba: u64,
        disk_sectors: u64,
    },
    /// More than one entry has status 0x80; MBR boot code boots the first one it finds (or
    /// refuses: the Windows 7 MBR code prints "Invalid partition table").
    MultipleActive { indices: Vec<usize> },
    /// A typed entry with zero sectors.
    ZeroSectors { index: usize },
    /// A partition that starts at LBA 0 and so contains the MBR itself.
    CoversMbr { index: usize },
    /// An entry of type 0 (unused) with a non-zero status, start or length.
    EmptyEntryNotZero { index: usize },
    /// A CHS field differs from the value computed from the LBA fields for the given geometry.
    ChsMismatch {
        index: usize,
        which: &'static str,
        expected: Chs,
        found: Chs,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Overlap { first, second } => {
                write!(f, "partitions {} and {} overlap", first + 1, second + 1)
            }
            Finding::BeyondDisk { index, end_lba, disk_sectors } => write!(
                f,
                "partition {} ends at sector {end_lba} but the disk has only {disk_sectors} sectors",
                index + 1
            ),
            Finding::MultipleActive { indices } => {
                let list: Vec<String> = indices.iter().map(|i| format!("{}", i + 1)).collect();
                write!(f, "more than one active partition: {}", list.join(", "))
            }
            Finding::ZeroSectors { index } => write!(f, "partition {} has a type but 0 sectors", index + 1),
            Finding::CoversMbr { index } => write!(f, "partition {} starts at LBA 0 and contains the MBR", index + 1),
            Finding::EmptyEntryNotZero { index } => {
                write!(f, "partition entry {} is unused (type 0) but not all zero", index + 1)
            }
            Finding::ChsMismatch { index, which, expected, found } => write!(
                f,
                "partition {} CHS {which} is {found}, expected {expected} for the given geometry",
                index + 1
            ),
        }
    }
}

/// Write MBR boot code into `sector[0..440]` without touching the disk signature, the
/// reserved bytes, the partition table or the boot signature. `code` may be shorter than 440
/// bytes; the rest of the boot-code area is then zeroed so no stale code remains.
///
/// Errors when `code` is longer than 440 bytes (e.g. a whole 512-byte sector was passed:
/// take its first 440 bytes explicitly).
pub fn install_boot_code(sector: &mut [u8; SECTOR_SIZE], code: &[u8]) -> Result<()> {
    if code.len() > BOOT_CODE_LEN {
        return Err(Error::invalid(
            Format::Mbr,
            DISK_SIGNATURE_OFFSET as u64,
            "boot code",
            format!(
                "boot code is {} bytes; the MBR boot-code area is 440 bytes (0x000..0x1B8), \
                 the disk signature and partition table follow it",
                code.len()
            ),
        ));
    }
    sector[..code.len()].copy_from_slice(code);
    sector[code.len()..BOOT_CODE_LEN].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use rstest::rstest;

    #[rstest]
    #[case(0, Chs { cylinder: 0, head: 0, sector: 1 })]
    #[case(62, Chs { cylinder: 0, head: 0, sector: 63 })]
    #[case(63, Chs { cylinder: 0, head: 1, sector: 1 })]
    #[case(2048, Chs { cylinder: 0, head: 32, sector: 33 })]
    #[case(206_847, Chs { cylinder: 12, head: 223, sector: 19 })]
    #[case(2_303_999, Chs { cylinder: 143, head: 106, sector: 27 })]
    #[case(1024 * 16065 - 1, Chs { cylinder: 1023, head: 254, sector: 63 })]
    #[case(1024 * 16065, Chs::MAX_255_63)]
    #[case(33_554_431, Chs::MAX_255_63)]
    #[case(u64::MAX, Chs::MAX_255_63)]
    fn lba_to_chs_255_63(#[case] lba: u64, #[case] chs: Chs) {
        let g = Geometry::LBA_ASSIST_255_63;
        assert_eq!(g.lba_to_chs(lba), chs);
        if lba < 1024 * 16065 {
            assert_eq!(g.chs_to_lba(chs), Some(lba));
        }
    }

    #[rstest]
    #[case(Chs { cylinder: 0, head: 32, sector: 33 }, [0x20, 0x21, 0x00])]
    #[case(Chs { cylinder: 12, head: 223, sector: 19 }, [0xDF, 0x13, 0x0C])]
    #[case(Chs { cylinder: 0x2A5, head: 7, sector: 5 }, [0x07, 0x85, 0xA5])]
    #[case(Chs::MAX_255_63, [0xFE, 0xFF, 0xFF])]
    fn chs_encoding(#[case] chs: Chs, #[case] bytes: [u8; 3]) {
        assert_eq!(chs.encode(), bytes);
        assert_eq!(Chs::decode(bytes), chs);
    }

    #[test]
    fn chs_decode_encode_is_lossless_for_every_pattern() {
        for b1 in 0..=255u8 {
            for b2 in [0u8, 1, 0x7F, 0xFF] {
                let b = [0xA5, b1, b2];
                assert_eq!(Chs::decode(b).encode(), b);
            }
        }
    }

    #[test]
    fn other_geometry_clamps_to_its_own_maximum() {
        let g = Geometry::new(16, 63).unwrap();
        assert_eq!(
            g.lba_to_chs(1024 * 16 * 63),
            Chs {
                cylinder: 1023,
                head: 15,
                sector: 63
            }
        );
        assert_eq!(
            g.lba_to_chs(1024 * 16 * 63 - 1),
            Chs {
                cylinder: 1023,
                head: 15,
                sector: 63
            }
        );
        assert_eq!(
            g.lba_to_chs(1008),
            Chs {
                cylinder: 1,
                head: 0,
                sector: 1
            }
        );
        assert_eq!(
            g.chs_to_lba(Chs {
                cylinder: 0,
                head: 16,
                sector: 1
            }),
            None
        );
        assert_eq!(
            g.chs_to_lba(Chs {
                cylinder: 0,
                head: 0,
                sector: 0
            }),
            None
        );
    }

    #[rstest]
    #[case(0, 63)]
    #[case(255, 0)]
    #[case(255, 64)]
    fn bad_geometry_is_rejected(#[case] heads: u8, #[case] spt: u8) {
        assert!(Geometry::new(heads, spt).is_err());
    }

    fn ufd_layout() -> Mbr {
        let mut m = Mbr::new(0x1234_5678);
        m.partitions[0] = PartitionEntry::new(
            true,
            partition_type::NTFS,
            2048,
            33_552_384,
            Geometry::LBA_ASSIST_255_63,
        )
        .unwrap();
        m
    }

    #[test]
    fn round_trip_and_layout() {
        let mut m = ufd_layout();
        m.boot_code[0] = 0xFA;
        m.boot_code[439] = 0x9A;
        m.reserved = [0x5A, 0x5A];
        let s = m.to_bytes();
        assert_eq!(&s[0x1B8..0x1BC], &[0x78, 0x56, 0x34, 0x12]);
        assert_eq!(&s[0x1BC..0x1BE], &[0x5A, 0x5A]);
        assert_eq!(
            &s[0x1BE..0x1CE],
            &[
                0x80, 0x20, 0x21, 0x00, 0x07, 0xFE, 0xFF, 0xFF, 0x00, 0x08, 0, 0, 0x00, 0xF8, 0xFF,
                0x01
            ]
        );
        assert_eq!(&s[0x1CE..0x1FE], &[0u8; 48][..]);
        assert_eq!(&s[0x1FE..], &[0x55, 0xAA]);
        assert_eq!(Mbr::parse(&s).unwrap(), m);
    }

    #[test]
    fn bad_status_names_the_entry_offset() {
        let mut s = ufd_layout().to_bytes();
        s[0x1CE] = 0x81;
        let e = Mbr::parse(&s).unwrap_err();
        assert_eq!(e.offset, 0x1CE);
        assert_eq!(e.field, "partition 2 status");
        assert!(
            matches!(e.kind, ErrorKind::Invalid(ref t) if t.contains("0x81")),
            "{e}"
        );
    }

    #[test]
    fn missing_boot_signature_and_short_input() {
        let mut s = ufd_layout().to_bytes();
        s[0x1FF] = 0;
        let e = Mbr::parse(&s).unwrap_err();
        assert_eq!((e.offset, e.field), (0x1FE, "boot signature"));
        let e = Mbr::parse(&s[..300]).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::Truncated {
                needed: 512,
                available: 300
            }
        );
    }

    #[test]
    fn install_boot_code_touches_only_the_code_area() {
        let before = ufd_layout().to_bytes();
        let mut s = before;
        install_boot_code(&mut s, &[0xEB; 440]).unwrap();
        assert_eq!(&s[..440], &[0xEB; 440][..]);
        assert_eq!(&s[440..], &before[440..]);
        install_boot_code(&mut s, &[0x33, 0xC0]).unwrap();
        assert_eq!(&s[..2], &[0x33, 0xC0]);
        assert_eq!(&s[2..440], &[0u8; 438][..]);
        assert_eq!(&s[440..], &before[440..]);
        let e = install_boot_code(&mut s, &[0; 512]).unwrap_err();
        assert_eq!(e.offset, 0x1B8);
        assert_eq!(&s[440..], &before[440..]);
    }

    #[test]
    fn validate_reports_findings() {
        let g = Geometry::LBA_ASSIST_255_63;
        let mut m = Mbr::new(1);
        m.partitions[0] = PartitionEntry::new(true, 0x07, 2048, 4096, g).unwrap();
        m.partitions[1] = PartitionEntry::new(true, 0x0C, 4000, 4096, g).unwrap();
        m.partitions[2] = PartitionEntry::new(false, 0x83, 100_000, 1000, g).unwrap();
        m.partitions[2].chs_end = Chs::default();
        m.partitions[3] = PartitionEntry {
            lba_start: 5,
            ..Default::default()
        };
        let f = m.validate(Some(100_500), Some(g));
        assert_eq!(
            f,
            vec![
                Finding::EmptyEntryNotZero { index: 3 },
                Finding::MultipleActive {
                    indices: vec![0, 1]
                },
                Finding::BeyondDisk {
                    index: 2,
                    end_lba: 101_000,
                    disk_sectors: 100_500
                },
                Finding::ChsMismatch {
                    index: 2,
                    which: "end",
                    expected: g.lba_to_chs(100_999),
                    found: Chs::default()
                },
                Finding::Overlap {
                    first: 0,
                    second: 1
                },
            ]
        );
        assert_eq!(f[4].to_string(), "partitions 1 and 2 overlap");
        assert_eq!(f[1].to_string(), "more than one active partition: 1, 2");
        assert!(ufd_layout().validate(Some(33_554_432), Some(g)).is_empty());
    }

    #[test]
    fn partition_entry_limits() {
        let g = Geometry::LBA_ASSIST_255_63;
        assert!(PartitionEntry::new(false, 7, 10, 0, g).is_err());
        assert!(PartitionEntry::new(false, 7, u32::MAX, 2, g).is_err());
        let p = PartitionEntry::new(false, 7, u32::MAX - 1, 2, g).unwrap();
        assert_eq!(p.end_lba_exclusive(), 1 << 32);
    }

    #[test]
    fn type_names() {
        assert_eq!(partition_type_name(0x07), Some("NTFS/exFAT/HPFS"));
        assert_eq!(partition_type_name(0xEE), Some("GPT protective"));
        assert_eq!(partition_type_name(0xEF), Some("EFI system"));
        assert_eq!(partition_type_name(0x0C), Some("FAT32 (LBA)"));
        assert_eq!(
            partition_type_name(0x42),
            Some("Windows dynamic disk (LDM)")
        );
        assert_eq!(partition_type_name(0x99), None);
        assert!(is_extended_type(0x0F) && !is_extended_type(0x07));
    }
}
