//! NTFS below the file level: the boot sector (BPB), multi-sector-protected records
//! (`FILE`, `INDX`) with their update-sequence fixups, the attributes of a `FILE` record, the
//! mapping pairs of a non-resident attribute, and the resident `$FILE_NAME` value.
//!
//! The byte-level primitives the boot-record installer (`ufd-bootcode`, the extent table of
//! `\bootmgr`) and the provisioner (`ufd-provision`, valid-data-length and attribute patches)
//! share. Reading whole files (directories, attribute lists) is not done here: the inspector and
//! the guest walker use the `ntfs` crate for that.
//!
//! Like the rest of the crate: no I/O (callers hand in byte slices and the absolute byte offset
//! of their first byte, `base`, which every [`Error`] reports), never a panic on input,
//! `forbid(unsafe_code)`.
//!
//! ## Layouts
//!
//! All little-endian. Source: the Linux-NTFS project's NTFS documentation as implemented by
//! ntfs-3g `layout.h` (`NTFS_BOOT_SECTOR`, `NTFS_RECORD`, `MFT_RECORD`, `ATTR_RECORD`,
//! `FILE_NAME_ATTR`, `STANDARD_INFORMATION`) and `mst.c` (`ntfs_mst_post_read_fixup`,
//! `ntfs_mst_pre_write_fixup`). **Verified** against volumes made by mkntfs (ntfs-3g 2022) with
//! 512 B to 128 KiB clusters: `tests/ntfs.rs` compares this module's reading of the boot
//! sector and of a copied file's runs with `ntfsinfo`'s.
//!
//! * boot sector: OEM id `NTFS    ` @3, bytes/sector u16 @0x0B, sectors/cluster u8 @0x0D
//!   (1..=128, or 0xF4..=0xFF meaning 2^(256 − value): mkntfs writes 0xF8 for 128 KiB clusters
//!   on 512-byte sectors), hidden sectors u32 @0x1C, total sectors u64 @0x28, `$MFT` LCN u64
//!   @0x30, `$MFTMirr` LCN u64 @0x38, clusters per MFT record i8 @0x40 and per index record i8
//!   @0x44 (positive n = n clusters, negative n = 2^−n bytes), volume serial u64 @0x48;
//! * multi-sector record: magic @0, update-sequence array offset u16 @4 and count u16 @6 (the
//!   update sequence number, then one saved u16 per 512-byte block: the last two bytes of
//!   every block hold the USN on disk, which detects a torn write);
//! * `FILE` record: sequence u16 @0x10, first attribute u16 @0x14, flags u16 @0x16 (1 in use,
//!   2 directory), bytes in use u32 @0x18, bytes allocated u32 @0x1C, base record reference
//!   u64 @0x20 (0 for a base record), record number u32 @0x2C (NTFS 3.1);
//! * attribute header: type u32 @0, length u32 @4, non-resident u8 @8, name length u8 @9
//!   (UTF-16 units), name offset u16 @0x0A, flags u16 @0x0C (0x00FF compression, 0x4000
//!   encrypted, 0x8000 sparse); resident: value length u32 @0x10, value offset u16 @0x14;
//!   non-resident: lowest VCN @0x10, highest VCN @0x18, mapping pairs offset u16 @0x20,
//!   allocated size @0x28, data size @0x30, initialized size (the valid data length) @0x38;
//! * mapping pairs: a header byte (low nibble = bytes of run length, high nibble = bytes of the
//!   signed LCN delta from the previous run; no delta bytes = a sparse run), the length, the
//!   delta, …, until a 0 byte.

use alloc::format;
use alloc::vec::Vec;

use crate::bytes::Bytes;
use crate::error::{Error, Format, Result};

const F: Format = Format::Ntfs;

/// Update sequences protect every 512-byte block of a record, whatever the sector size.
pub const FIXUP_BLOCK: usize = 512;
/// Largest MFT or index record this module accepts (ntfs-3g refuses larger ones too).
pub const MAX_RECORD_SIZE: u32 = 65536;
/// Record number of `$MFT`, whose unnamed `$DATA` maps the MFT itself.
pub const MFT_RECORD: u64 = 0;
/// Record number of the root directory.
pub const ROOT_DIRECTORY_RECORD: u64 = 5;
/// Magic of an MFT record.
pub const FILE_MAGIC: &[u8; 4] = b"FILE";
/// Magic of a directory index block (`$INDEX_ALLOCATION`).
pub const INDX_MAGIC: &[u8; 4] = b"INDX";

/// Attribute type codes (ntfs-3g `layout.h` `ATTR_TYPES`).
pub mod attr_type {
    pub const STANDARD_INFORMATION: u32 = 0x10;
    pub const ATTRIBUTE_LIST: u32 = 0x20;
    pub const FILE_NAME: u32 = 0x30;
    pub const DATA: u32 = 0x80;
    pub const INDEX_ROOT: u32 = 0x90;
    pub const INDEX_ALLOCATION: u32 = 0xA0;
    /// Ends the attribute list of a record.
    pub const END: u32 = 0xFFFF_FFFF;
}

/// Attribute header flags (u16 @0x0C).
pub mod attr_flags {
    /// Any compression method (Windows uses 0x0001, LZNT1).
    pub const COMPRESSION_MASK: u16 = 0x00FF;
    pub const ENCRYPTED: u16 = 0x4000;
    pub const SPARSE: u16 = 0x8000;
}

/// `FILE` record header flags (u16 @0x16).
pub mod record_flags {
    pub const IN_USE: u16 = 0x0001;
    pub const DIRECTORY: u16 = 0x0002;
}

/// File attribute bits of `$STANDARD_INFORMATION` and `$FILE_NAME` (ntfs-3g `FILE_ATTR_*`, the
/// Win32 `FILE_ATTRIBUTE_*` values).
pub mod file_attribute {
    pub const READONLY: u32 = 0x0001;
    pub const HIDDEN: u32 = 0x0002;
    pub const SYSTEM: u32 = 0x0004;
    pub const SPARSE_FILE: u32 = 0x0200;
    pub const COMPRESSED: u32 = 0x0800;
    pub const ENCRYPTED: u32 = 0x4000;
}

/// Field offsets inside attributes and their values, for callers that patch them in place.
pub mod offsets {
    /// Non-resident attribute header: allocated size (u64).
    pub const ALLOCATED_SIZE: usize = 0x28;
    /// Non-resident attribute header: data size (u64).
    pub const DATA_SIZE: usize = 0x30;
    /// Non-resident attribute header: initialized size, the valid data length (u64).
    pub const INITIALIZED_SIZE: usize = 0x38;
    /// `$STANDARD_INFORMATION` value: file attributes (u32).
    pub const STANDARD_INFORMATION_FILE_ATTRIBUTES: usize = 0x20;
    /// `$FILE_NAME` value (and the key of a `$I30` index entry): allocated size (u64).
    pub const FILE_NAME_ALLOCATED_SIZE: usize = 0x28;
    /// `$FILE_NAME` value: data size (u64).
    pub const FILE_NAME_DATA_SIZE: usize = 0x30;
    /// `$FILE_NAME` value: file attributes (u32).
    pub const FILE_NAME_FILE_ATTRIBUTES: usize = 0x38;
}

/// The low 48 bits of a file reference: the MFT record number (the high 16 are the sequence).
pub const fn reference_record(reference: u64) -> u64 {
    reference & 0x0000_FFFF_FFFF_FFFF
}

/// Decode the i8 "clusters per record" encoding of BPB 0x40 and 0x44.
fn record_size(raw: u8, cluster_size: u64, off: usize, field: &'static str) -> Result<u32> {
    let v = raw as i8;
    let size = if v > 0 {
        u64::from(v as u8).checked_mul(cluster_size)
    } else if v < 0 {
        // 2^-v bytes; -v is at most 128, so cap before shifting
        let shift = u32::from(v.unsigned_abs());
        (shift < 32).then(|| 1u64 << shift)
    } else {
        None
    };
    match size {
        Some(s) if (FIXUP_BLOCK as u64..=u64::from(MAX_RECORD_SIZE)).contains(&s) && s.is_power_of_two() => {
            Ok(s as u32)
        }
        _ => Err(Error::invalid(
            F,
            off as u64,
            field,
            format!(
                "{raw:#04x} gives no record size that is a power of two in {FIXUP_BLOCK}..={MAX_RECORD_SIZE} bytes \
                 (cluster {cluster_size} bytes)"
            ),
        )),
    }
}

/// The volume parameters of an NTFS boot sector (BPB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BootSector {
    /// 256..=4096, a power of two.
    pub bytes_per_sector: u16,
    /// Decoded (the 2^−n encoding applied).
    pub sectors_per_cluster: u32,
    pub cluster_size: u64,
    /// HiddenSectors (0x1C): the partition's start LBA as mkntfs `-p` wrote it.
    pub hidden_sectors: u32,
    /// Total sectors (0x28): the volume's sectors − 1 (the last one holds the backup boot sector).
    pub total_sectors: u64,
    pub mft_lcn: u64,
    pub mft_mirror_lcn: u64,
    /// Bytes per MFT record.
    pub record_size: u32,
    /// Bytes per directory index block.
    pub index_record_size: u32,
    pub serial: u64,
}

impl BootSector {
    /// Parse and validate the first sector of an NTFS volume (at least 512 bytes; offsets in
    /// errors are relative to the volume start).
    pub fn parse(sector: &[u8]) -> Result<BootSector> {
        let b = Bytes::new(F, sector);
        b.slice(0, 512, "NTFS boot sector")?;
        b.expect_sig(3, b"NTFS    ", "OEM id")?;
        let bps = b.u16le(0x0B, "bytes per sector")?;
        if !(256..=4096).contains(&bps) || !bps.is_power_of_two() {
            return Err(Error::invalid(
                F,
                0x0B,
                "bytes per sector",
                format!("{bps} is not a power of two in 256..=4096"),
            ));
        }
        let spc_raw = b.u8(0x0D, "sectors per cluster")?;
        let spc: u32 = match spc_raw {
            1 | 2 | 4 | 8 | 16 | 32 | 64 | 128 => spc_raw.into(),
            0xF4..=0xFF => 1 << (256 - u32::from(spc_raw)),
            _ => {
                return Err(Error::invalid(
                    F,
                    0x0D,
                    "sectors per cluster",
                    format!("{spc_raw:#04x} is not a power of two (or an NTFS 2^-n encoding)"),
                ))
            }
        };
        let cluster_size = u64::from(bps) * u64::from(spc);
        let total_sectors = b.u64le(0x28, "total sectors")?;
        let mft_lcn = b.u64le(0x30, "MFT LCN")?;
        let spc64 = u64::from(spc);
        if mft_lcn == 0 || mft_lcn.saturating_mul(spc64) >= total_sectors {
            return Err(Error::invalid(
                F,
                0x30,
                "MFT LCN",
                format!("{mft_lcn} lies outside the volume ({total_sectors} sectors)"),
            ));
        }
        let mft_mirror_lcn = b.u64le(0x38, "MFT mirror LCN")?;
        if mft_mirror_lcn.saturating_mul(spc64) >= total_sectors {
            return Err(Error::invalid(
                F,
                0x38,
                "MFT mirror LCN",
                format!("{mft_mirror_lcn} lies outside the volume ({total_sectors} sectors)"),
            ));
        }
        let record_size = record_size(
            b.u8(0x40, "clusters per MFT record")?,
            cluster_size,
            0x40,
            "clusters per MFT record",
        )?;
        let index_record_size =
            record_size_index(b.u8(0x44, "clusters per index record")?, cluster_size)?;
        Ok(BootSector {
            bytes_per_sector: bps,
            sectors_per_cluster: spc,
            cluster_size,
            hidden_sectors: b.u32le(0x1C, "hidden sectors")?,
            total_sectors,
            mft_lcn,
            mft_mirror_lcn,
            record_size,
            index_record_size,
            serial: b.u64le(0x48, "volume serial number")?,
        })
    }

    /// Volume byte offset of the first MFT record (`$MFT` itself).
    pub fn mft_offset(&self) -> u64 {
        // bounded by parse: mft_lcn * sectors_per_cluster < total_sectors
        self.mft_lcn * self.cluster_size
    }
}

fn record_size_index(raw: u8, cluster_size: u64) -> Result<u32> {
    record_size(raw, cluster_size, 0x44, "clusters per index record")
}

/// Check the update-sequence array of a multi-sector record and return (offset, count).
/// As strict as ntfs-3g's `ntfs_mst_post_read_fixup`: the length is a multiple of 512, the
/// count is blocks + 1, the array is 2-aligned, starts after the 8-byte header and ends inside
/// the first block (before its protected last word).
fn usa(rec: &[u8], base: u64) -> Result<(usize, usize)> {
    if rec.len() < FIXUP_BLOCK || rec.len() % FIXUP_BLOCK != 0 {
        return Err(Error::invalid(
            F,
            base,
            "record length",
            format!("{} bytes is not a multiple of {FIXUP_BLOCK}", rec.len()),
        ));
    }
    let b = Bytes {
        data: rec,
        base,
        format: F,
    };
    let usa_off = usize::from(b.u16le(4, "update sequence array offset")?);
    let usa_cnt = usize::from(b.u16le(6, "update sequence array count")?);
    let blocks = rec.len() / FIXUP_BLOCK;
    if usa_cnt != blocks + 1
        || usa_off % 2 != 0
        || usa_off < 8
        || usa_off + 2 * usa_cnt > FIXUP_BLOCK - 2
    {
        return Err(Error::invalid(
            F,
            base + 4,
            "update sequence array",
            format!(
                "offset {usa_off:#x}, count {usa_cnt} do not fit a {}-byte record",
                rec.len()
            ),
        ));
    }
    Ok((usa_off, usa_cnt))
}

/// Undo the update-sequence fixups of a record read from disk, in place: check its `magic`
/// (`FILE` or `INDX`), that the last word of every 512-byte block holds the update sequence
/// number (a mismatch is a torn or corrupt write: the error names that word's absolute offset)
/// and put the saved words back. `base` is the record's absolute byte offset.
pub fn unfix(rec: &mut [u8], magic: &'static [u8; 4], base: u64) -> Result<()> {
    Bytes {
        data: rec,
        base,
        format: F,
    }
    .expect_sig(0, magic, "record magic")?;
    let (usa_off, usa_cnt) = usa(rec, base)?;
    let usn = [rec[usa_off], rec[usa_off + 1]];
    for i in 1..usa_cnt {
        let end = i * FIXUP_BLOCK - 2;
        if rec[end..end + 2] != usn {
            return Err(Error::mismatch(
                F,
                base + end as u64,
                "update sequence number (torn or corrupt record)",
                u16::from_le_bytes(usn).into(),
                u16::from_le_bytes([rec[end], rec[end + 1]]).into(),
            ));
        }
        rec[end] = rec[usa_off + 2 * i];
        rec[end + 1] = rec[usa_off + 2 * i + 1];
    }
    Ok(())
}

/// Re-seal a record (fixed up by [`unfix`], then edited) before writing it back: a new update
/// sequence number (incremented, skipping 0 and 0xFFFF as ntfs-3g's
/// `ntfs_mst_pre_write_fixup` does), each block's last word saved in the array and replaced by
/// the USN. `base` is for errors only.
pub fn refix(rec: &mut [u8], base: u64) -> Result<()> {
    let (usa_off, usa_cnt) = usa(rec, base)?;
    let mut usn = u16::from_le_bytes([rec[usa_off], rec[usa_off + 1]]).wrapping_add(1);
    if usn == 0 || usn == 0xFFFF {
        usn = 1;
    }
    rec[usa_off..usa_off + 2].copy_from_slice(&usn.to_le_bytes());
    for i in 1..usa_cnt {
        let end = i * FIXUP_BLOCK - 2;
        rec[usa_off + 2 * i] = rec[end];
        rec[usa_off + 2 * i + 1] = rec[end + 1];
        rec[end..end + 2].copy_from_slice(&usn.to_le_bytes());
    }
    Ok(())
}

/// The header of a fixed-up `FILE` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub sequence: u16,
    /// Offset of the first attribute in the record.
    pub first_attribute: usize,
    /// [`record_flags`].
    pub flags: u16,
    pub bytes_in_use: u32,
    /// 0 for a base record; else the file reference of the base record (an extension record).
    pub base_record: u64,
    /// The record's own number (NTFS 3.1 headers; 0 in NTFS 3.0 records).
    pub record_number: u32,
}

impl RecordHeader {
    pub fn in_use(&self) -> bool {
        self.flags & record_flags::IN_USE != 0
    }
}

/// Read and check the header of a `FILE` record (fixed up or not: the header lies before the
/// first protected word). The first attribute must start 8-aligned after the update-sequence
/// array and inside the record.
pub fn record_header(rec: &[u8], base: u64) -> Result<RecordHeader> {
    let b = Bytes {
        data: rec,
        base,
        format: F,
    };
    b.expect_sig(0, FILE_MAGIC, "record magic")?;
    let (usa_off, usa_cnt) = usa(rec, base)?;
    let first = usize::from(b.u16le(0x14, "first attribute offset")?);
    if first < 0x30 || first < usa_off + 2 * usa_cnt || first % 8 != 0 || first + 4 > rec.len() {
        return Err(Error::invalid(
            F,
            base + 0x14,
            "first attribute offset",
            format!("{first:#x} is not an 8-aligned offset after the update sequence array"),
        ));
    }
    Ok(RecordHeader {
        sequence: b.u16le(0x10, "sequence number")?,
        first_attribute: first,
        flags: b.u16le(0x16, "record flags")?,
        bytes_in_use: b.u32le(0x18, "bytes in use")?,
        base_record: b.u64le(0x20, "base record reference")?,
        record_number: b.u32le(0x2C, "record number")?,
    })
}

/// One attribute of a `FILE` record, as [`attributes`] found it (at least a 0x18-byte header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    offset: usize,
    base: u64,
    bytes: &'a [u8],
}

impl<'a> Attr<'a> {
    /// An attribute held on its own (e.g. a copy of a record's `$DATA` attribute, as the boot
    /// record's extent table keeps it): `bytes` is exactly the attribute, whose length field
    /// must equal `bytes.len()` (8-aligned, at least the 0x18-byte header). `base` is the
    /// absolute offset of `bytes[0]` for errors; [`Attr::offset`] is 0.
    pub fn parse(bytes: &'a [u8], base: u64) -> Result<Attr<'a>> {
        let b = Bytes {
            data: bytes,
            base,
            format: F,
        };
        b.slice(0, 0x18, "attribute header")?;
        let len = b.u32le(4, "attribute length")?;
        if len as usize != bytes.len() || len % 8 != 0 {
            return Err(Error::invalid(
                F,
                base + 4,
                "attribute length",
                format!(
                    "{len} bytes (8-aligned, equal to the {} bytes given)",
                    bytes.len()
                ),
            ));
        }
        Ok(Attr {
            offset: 0,
            base,
            bytes,
        })
    }

    /// Offset of the attribute in the record.
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// Absolute byte offset of the attribute (record base + [`Attr::offset`]).
    pub fn base(&self) -> u64 {
        self.base
    }
    /// The whole attribute (header, name, value or mapping pairs): its `length` bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    fn b(&self) -> Bytes<'a> {
        Bytes {
            data: self.bytes,
            base: self.base,
            format: F,
        }
    }
    /// [`attr_type`].
    pub fn type_code(&self) -> u32 {
        u32::from_le_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])
    }
    pub fn non_resident(&self) -> bool {
        self.bytes[8] != 0
    }
    /// Name length in UTF-16 units (0 = unnamed).
    pub fn name_len(&self) -> u8 {
        self.bytes[9]
    }
    /// [`attr_flags`].
    pub fn flags(&self) -> u16 {
        u16::from_le_bytes([self.bytes[0x0C], self.bytes[0x0D]])
    }

    /// A resident attribute's value: (its offset in the attribute, its bytes).
    pub fn resident_value(&self) -> Result<(usize, &'a [u8])> {
        if self.non_resident() {
            return Err(Error::invalid(
                F,
                self.base + 8,
                "non-resident flag",
                "attribute is non-resident, a resident value was expected",
            ));
        }
        let b = self.b();
        let len = b.u32le(0x10, "value length")? as usize;
        let off = usize::from(b.u16le(0x14, "value offset")?);
        let v = b.slice(off, len, "resident value")?;
        Ok((off, v.data))
    }

    /// A non-resident attribute's sizes and runs.
    pub fn non_resident_info(&self) -> Result<NonResident> {
        if !self.non_resident() {
            return Err(Error::invalid(
                F,
                self.base + 8,
                "non-resident flag",
                "attribute is resident, a non-resident one was expected",
            ));
        }
        let b = self.b();
        b.slice(0, 0x40, "non-resident attribute header")?;
        let lowest_vcn = b.u64le(0x10, "lowest VCN")?;
        let mp = usize::from(b.u16le(0x20, "mapping pairs offset")?);
        if !(0x40..self.bytes.len()).contains(&mp) {
            return Err(Error::invalid(
                F,
                self.base + 0x20,
                "mapping pairs offset",
                format!(
                    "{mp:#x} is outside the attribute's mapping-pairs area 0x40..{:#x}",
                    self.bytes.len()
                ),
            ));
        }
        Ok(NonResident {
            lowest_vcn,
            highest_vcn: b.u64le(0x18, "highest VCN")?,
            mapping_pairs_offset: mp,
            allocated_size: b.u64le(offsets::ALLOCATED_SIZE, "allocated size")?,
            data_size: b.u64le(offsets::DATA_SIZE, "data size")?,
            initialized_size: b.u64le(offsets::INITIALIZED_SIZE, "initialized size")?,
            runs: decode_runs(&self.bytes[mp..], lowest_vcn, self.base + mp as u64)?,
        })
    }
}

/// The header fields and runs of a non-resident attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonResident {
    pub lowest_vcn: u64,
    /// `u64::MAX` (−1) for an empty stream.
    pub highest_vcn: u64,
    /// Offset of the mapping pairs in the attribute.
    pub mapping_pairs_offset: usize,
    pub allocated_size: u64,
    pub data_size: u64,
    /// The valid data length (VDL): bytes past it read as zeros.
    pub initialized_size: u64,
    pub runs: Vec<Run>,
}

/// The attributes of a fixed-up `FILE` record, in order, up to the end marker. Every attribute
/// is checked to be at least a 0x18-byte header long, 8-aligned in length, and inside the
/// record; a record without the end marker is an error.
pub fn attributes(rec: &[u8], base: u64) -> Result<Vec<Attr<'_>>> {
    let b = Bytes {
        data: rec,
        base,
        format: F,
    };
    let mut off = record_header(rec, base)?.first_attribute;
    let mut out = Vec::new();
    loop {
        let ty = b.u32le(off, "attribute type")?;
        if ty == attr_type::END {
            return Ok(out);
        }
        b.slice(off, 0x18, "attribute header")?;
        let len = b.u32le(off + 4, "attribute length")? as usize;
        if len < 0x18 || len % 8 != 0 || len > rec.len() - off {
            return Err(Error::invalid(
                F,
                base + off as u64 + 4,
                "attribute length",
                format!("{len} bytes (8-aligned, at least 0x18, inside the record)"),
            ));
        }
        out.push(Attr {
            offset: off,
            base: base + off as u64,
            bytes: &rec[off..off + len],
        });
        off += len;
    }
}

/// The unnamed `$DATA` attribute of a fixed-up `FILE` record, if it has one.
pub fn unnamed_data(rec: &[u8], base: u64) -> Result<Option<Attr<'_>>> {
    Ok(attributes(rec, base)?
        .into_iter()
        .find(|a| a.type_code() == attr_type::DATA && a.name_len() == 0))
}

/// One run of a non-resident attribute: `len` clusters from `vcn`, at `lcn` (`None`: sparse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Run {
    pub vcn: u64,
    pub lcn: Option<u64>,
    pub len: u64,
}

/// Decode mapping pairs (from `mp[0]` up to the 0x00 terminator) of an attribute whose lowest
/// VCN is `vcn`. Errors (at the offending byte, `base` + index): a missing terminator, a header
/// whose sizes exceed 8 bytes or the buffer, a zero-length run, an LCN that becomes negative or
/// overflows through the signed deltas, VCN overflow.
pub fn decode_runs(mp: &[u8], mut vcn: u64, base: u64) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    let mut i = 0usize;
    let mut lcn: i64 = 0;
    loop {
        let Some(&h) = mp.get(i) else {
            return Err(Error::truncated(
                F,
                base + i as u64,
                "mapping pairs terminator",
                1,
                0,
            ));
        };
        if h == 0 {
            return Ok(runs);
        }
        let (ls, os) = (usize::from(h & 0x0F), usize::from(h >> 4));
        if ls == 0 || ls > 8 || os > 8 || 1 + ls + os > mp.len() - i {
            return Err(Error::invalid(
                F,
                base + i as u64,
                "mapping pair header",
                format!("{h:#04x} (length {ls}, offset {os} bytes) does not fit"),
            ));
        }
        let len = mp[i + 1..i + 1 + ls]
            .iter()
            .rev()
            .fold(0u64, |a, &x| (a << 8) | u64::from(x));
        if len == 0 || len > i64::MAX as u64 {
            return Err(Error::invalid(
                F,
                base + i as u64 + 1,
                "run length",
                format!("{len} clusters"),
            ));
        }
        let run_lcn = if os == 0 {
            None
        } else {
            let raw = mp[i + 1 + ls..i + 1 + ls + os]
                .iter()
                .rev()
                .fold(0u64, |a, &x| (a << 8) | u64::from(x));
            // sign-extend the os-byte delta
            let shift = 64 - 8 * os as u32;
            let d = ((raw << shift) as i64) >> shift;
            lcn = lcn.checked_add(d).filter(|v| *v >= 0).ok_or_else(|| {
                Error::invalid(
                    F,
                    base + (i + 1 + ls) as u64,
                    "run offset",
                    format!("LCN delta {d} makes the LCN negative or overflow"),
                )
            })?;
            Some(lcn as u64)
        };
        runs.push(Run {
            vcn,
            lcn: run_lcn,
            len,
        });
        vcn = vcn
            .checked_add(len)
            .ok_or_else(|| Error::invalid(F, base + i as u64 + 1, "run length", "VCN overflows"))?;
        i += 1 + ls + os;
    }
}

/// Where byte `offset` of a stream with these runs lies: `Some((volume byte offset or None for
/// a sparse run, bytes left in that run from there))`; `None` when no run maps it or the
/// arithmetic overflows.
pub fn map_offset(runs: &[Run], cluster_size: u64, offset: u64) -> Option<(Option<u64>, u64)> {
    let vcn = offset / cluster_size;
    let r = runs.iter().find(|r| vcn >= r.vcn && vcn - r.vcn < r.len)?;
    let left = (r.vcn.checked_add(r.len)?).checked_mul(cluster_size)? - offset;
    let at = match r.lcn {
        None => None,
        Some(l) => Some(
            l.checked_add(vcn - r.vcn)?
                .checked_mul(cluster_size)?
                .checked_add(offset % cluster_size)?,
        ),
    };
    Some((at, left))
}

/// The fields of a `$FILE_NAME` value (also the key of a directory `$I30` index entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileName<'a> {
    /// File reference of the parent directory.
    pub parent: u64,
    pub allocated_size: u64,
    pub data_size: u64,
    /// [`file_attribute`].
    pub file_attributes: u32,
    /// 0 POSIX, 1 Win32, 2 DOS, 3 Win32 and DOS.
    pub namespace: u8,
    /// The name as UTF-16LE bytes.
    pub name: &'a [u8],
}

impl FileName<'_> {
    /// The record number of the parent directory.
    pub fn parent_record(&self) -> u64 {
        reference_record(self.parent)
    }
    /// Whether the name is `ascii` (ASCII case-insensitively, as Windows matches names of
    /// ASCII letters).
    pub fn name_eq_ignore_ascii_case(&self, ascii: &[u8]) -> bool {
        self.name.len() == 2 * ascii.len()
            && self
                .name
                .chunks_exact(2)
                .zip(ascii)
                .all(|(c, e)| c[1] == 0 && c[0].eq_ignore_ascii_case(e))
    }
}

/// Parse a `$FILE_NAME` value (0x42 bytes + the name). `base` is the value's absolute offset.
pub fn file_name(value: &[u8], base: u64) -> Result<FileName<'_>> {
    let b = Bytes {
        data: value,
        base,
        format: F,
    };
    let nlen = usize::from(b.u8(0x40, "file name length")?);
    Ok(FileName {
        parent: b.u64le(0, "parent directory reference")?,
        allocated_size: b.u64le(offsets::FILE_NAME_ALLOCATED_SIZE, "allocated size")?,
        data_size: b.u64le(offsets::FILE_NAME_DATA_SIZE, "data size")?,
        file_attributes: b.u32le(offsets::FILE_NAME_FILE_ATTRIBUTES, "file attributes")?,
        namespace: b.u8(0x41, "file name namespace")?,
        name: b.slice(0x42, 2 * nlen, "file name")?.data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use rstest::rstest;

    fn run(vcn: u64, lcn: Option<u64>, len: u64) -> Run {
        Run { vcn, lcn, len }
    }

    #[rstest]
    // 0x21: 1-byte length 0x18, 2-byte offset 0x5634
    #[case::one_run(&[0x21, 0x18, 0x34, 0x56, 0x00], 0, vec![run(0, Some(0x5634), 0x18)])]
    // +0x20, then a negative one-byte delta (-0x10), then a sparse run of 5
    #[case::negative_then_sparse(&[0x11, 0x04, 0x20, 0x11, 0x02, 0xF0, 0x01, 0x05, 0x00], 0,
        vec![run(0, Some(0x20), 4), run(4, Some(0x10), 2), run(6, None, 5)])]
    // sparse run between two real ones: the delta after the hole is from the last real LCN
    #[case::hole_keeps_lcn(&[0x11, 0x30, 0x20, 0x01, 0x60, 0x11, 0x10, 0xF0, 0x00], 0,
        vec![run(0, Some(0x20), 0x30), run(0x30, None, 0x60), run(0x90, Some(0x10), 0x10)])]
    // a 3-byte negative delta (-0x010000) and a lowest VCN other than 0
    #[case::wide_negative(&[0x31, 0x01, 0x00, 0x00, 0x02, 0x31, 0x01, 0x00, 0x00, 0xFF, 0x00], 7,
        vec![run(7, Some(0x20000), 1), run(8, Some(0x10000), 1)])]
    // 8-byte delta and 8-byte length (the widest encodings)
    #[case::widest(&[0x88, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0], 0, vec![run(0, Some(5), 1)])]
    #[case::empty(&[0x00], 0, vec![])]
    fn decode_runs_ok(#[case] mp: &[u8], #[case] vcn: u64, #[case] want: Vec<Run>) {
        assert_eq!(decode_runs(mp, vcn, 0).unwrap(), want);
    }

    #[rstest]
    #[case::no_terminator(&[0x11, 0x01, 0x02], 103, "mapping pairs terminator")]
    #[case::empty_input(&[], 100, "mapping pairs terminator")]
    #[case::negative_lcn(&[0x11, 0x01, 0xF0, 0x00], 102, "run offset")]
    #[case::negative_after_positive(&[0x11, 0x01, 0x05, 0x11, 0x01, 0xFA, 0x00], 105, "run offset")]
    #[case::nine_length_bytes(&[0x19, 0x01, 0x00], 100, "mapping pair header")]
    #[case::nine_offset_bytes(&[0x91, 0x01, 0x00], 100, "mapping pair header")]
    #[case::no_length_bytes(&[0x10, 0x01, 0x00], 100, "mapping pair header")]
    #[case::cut_length(&[0x21, 0x18], 100, "mapping pair header")]
    #[case::cut_offset(&[0x11, 0x01], 100, "mapping pair header")]
    #[case::zero_length(&[0x11, 0x00, 0x05, 0x00], 101, "run length")]
    #[case::length_over_i64(&[0x08, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x00], 101, "run length")]
    fn decode_runs_errors(#[case] mp: &[u8], #[case] offset: u64, #[case] field: &str) {
        let e = decode_runs(mp, 0, 100).unwrap_err();
        assert_eq!(
            (e.format, e.offset, e.field),
            (Format::Ntfs, offset, field),
            "{e}"
        );
    }

    #[test]
    fn decode_runs_vcn_overflow() {
        let e = decode_runs(&[0x11, 0x02, 0x01, 0x00], u64::MAX - 1, 0).unwrap_err();
        assert_eq!(e.field, "run length");
    }

    /// A plain 1024-byte FILE record as mkntfs lays it out: USA at 0x30 (3 entries), first
    /// attribute at 0x38, in use, the given attributes, then the end marker.
    fn record(attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut r = vec![0u8; 1024];
        r[0..4].copy_from_slice(b"FILE");
        r[4..6].copy_from_slice(&0x30u16.to_le_bytes());
        r[6..8].copy_from_slice(&3u16.to_le_bytes());
        r[0x14..0x16].copy_from_slice(&0x38u16.to_le_bytes());
        r[0x16..0x18].copy_from_slice(&1u16.to_le_bytes());
        r[0x2C..0x30].copy_from_slice(&64u32.to_le_bytes());
        let mut at = 0x38;
        for a in attrs {
            r[at..at + a.len()].copy_from_slice(a);
            at += a.len();
        }
        r[at..at + 4].copy_from_slice(&attr_type::END.to_le_bytes());
        r[0x18..0x1C].copy_from_slice(&(at as u32 + 8).to_le_bytes());
        r
    }

    fn resident(ty: u32, name: &[u8], value: &[u8]) -> Vec<u8> {
        let voff = (0x18 + name.len() * 2).next_multiple_of(8);
        let len = (voff + value.len()).next_multiple_of(8);
        let mut a = vec![0u8; len];
        a[0..4].copy_from_slice(&ty.to_le_bytes());
        a[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        a[9] = name.len() as u8;
        a[0x0A..0x0C].copy_from_slice(&0x18u16.to_le_bytes());
        for (i, c) in name.iter().enumerate() {
            a[0x18 + 2 * i] = *c;
        }
        a[0x10..0x14].copy_from_slice(&(value.len() as u32).to_le_bytes());
        a[0x14..0x16].copy_from_slice(&(voff as u16).to_le_bytes());
        a[voff..voff + value.len()].copy_from_slice(value);
        a
    }

    fn non_resident(name: &[u8], mp: &[u8], sizes: [u64; 3]) -> Vec<u8> {
        let mpoff = (0x40 + name.len() * 2).next_multiple_of(8);
        let len = (mpoff + mp.len()).next_multiple_of(8);
        let mut a = vec![0u8; len];
        a[0..4].copy_from_slice(&attr_type::DATA.to_le_bytes());
        a[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        a[8] = 1;
        a[9] = name.len() as u8;
        a[0x0A..0x0C].copy_from_slice(&0x40u16.to_le_bytes());
        for (i, c) in name.iter().enumerate() {
            a[0x40 + 2 * i] = *c;
        }
        a[0x20..0x22].copy_from_slice(&(mpoff as u16).to_le_bytes());
        for (k, v) in sizes.iter().enumerate() {
            a[0x28 + 8 * k..0x30 + 8 * k].copy_from_slice(&v.to_le_bytes());
        }
        a[mpoff..mpoff + mp.len()].copy_from_slice(mp);
        a
    }

    fn file_name_value(parent: u64, name: &str) -> Vec<u8> {
        let mut v = vec![0u8; 0x42 + 2 * name.len()];
        v[0..8].copy_from_slice(&parent.to_le_bytes());
        v[0x28..0x30].copy_from_slice(&8192u64.to_le_bytes());
        v[0x30..0x38].copy_from_slice(&5000u64.to_le_bytes());
        v[0x38..0x3C].copy_from_slice(&6u32.to_le_bytes());
        v[0x40] = name.len() as u8;
        v[0x41] = 3;
        for (i, c) in name.bytes().enumerate() {
            v[0x42 + 2 * i] = c;
        }
        v
    }

    #[test]
    fn fixups_roundtrip() {
        let mut rec = record(&[]);
        rec[510] = 0xAA;
        rec[1022] = 0xBB;
        let plain = rec.clone();
        refix(&mut rec, 0).unwrap();
        assert_eq!(&rec[510..512], &[1, 0], "first USN after 0 is 1");
        assert_eq!(&rec[1022..1024], &[1, 0]);
        assert_eq!(&rec[0x32..0x36], &[0xAA, 0, 0xBB, 0]);
        let mut back = rec.clone();
        unfix(&mut back, FILE_MAGIC, 0).unwrap();
        assert_eq!(&back[0x38..], &plain[0x38..]);
        assert_eq!((back[510], back[1022]), (0xAA, 0xBB));
        // a second seal increments the USN
        refix(&mut back, 0).unwrap();
        assert_eq!(&back[0x30..0x32], &[2, 0]);
    }

    #[rstest]
    #[case(0xFFFE, [1, 0])] // 0xFFFF is skipped
    #[case(0xFFFF, [1, 0])] // wraps to 0, skipped
    fn refix_skips_reserved_usns(#[case] usn: u16, #[case] want: [u8; 2]) {
        let mut rec = record(&[]);
        rec[0x30..0x32].copy_from_slice(&usn.to_le_bytes());
        refix(&mut rec, 0).unwrap();
        assert_eq!(rec[0x30..0x32], want);
    }

    #[rstest]
    #[case::second_block(1022, 4096 + 1022)]
    #[case::first_block(510, 4096 + 510)]
    fn torn_record_names_the_word(#[case] at: usize, #[case] offset: u64) {
        let mut rec = record(&[]);
        refix(&mut rec, 0).unwrap();
        rec[at] ^= 0x40;
        let e = unfix(&mut rec, FILE_MAGIC, 4096).unwrap_err();
        assert_eq!(e.offset, offset, "{e}");
        assert!(
            matches!(e.kind, crate::ErrorKind::Mismatch { expected: 1, .. }),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with(&format!("NTFS at byte {offset:#x}: update sequence number")),
            "{e}"
        );
    }

    #[rstest]
    #[case::count_too_small(2u16, 0x30u16, 4100, "update sequence array")]
    #[case::count_too_large(4, 0x30, 4100, "update sequence array")]
    #[case::odd_offset(3, 0x31, 4100, "update sequence array")]
    #[case::inside_header(3, 0x06, 4100, "update sequence array")]
    #[case::past_first_block(3, 0x1FC, 4100, "update sequence array")]
    fn bad_update_sequence_array(
        #[case] count: u16,
        #[case] off: u16,
        #[case] offset: u64,
        #[case] field: &str,
    ) {
        let mut rec = record(&[]);
        rec[4..6].copy_from_slice(&off.to_le_bytes());
        rec[6..8].copy_from_slice(&count.to_le_bytes());
        let e = unfix(&mut rec.clone(), FILE_MAGIC, 4096).unwrap_err();
        assert_eq!((e.offset, e.field), (offset, field), "{e}");
        assert!(refix(&mut rec, 4096).is_err());
    }

    #[test]
    fn unfix_checks_magic_and_length() {
        let mut rec = record(&[]);
        let e = unfix(&mut rec, INDX_MAGIC, 8192).unwrap_err();
        assert_eq!((e.offset, e.field), (8192, "record magic"));
        let e = unfix(&mut rec[..1000], FILE_MAGIC, 0).unwrap_err();
        assert_eq!(e.field, "record length");
        let e = unfix(&mut rec[..3], FILE_MAGIC, 0).unwrap_err();
        assert!(matches!(e.kind, crate::ErrorKind::Truncated { .. }));
    }

    fn boot_sector(spc: u8, cpr: u8, cpi: u8) -> [u8; 512] {
        let mut s = [0u8; 512];
        s[3..11].copy_from_slice(b"NTFS    ");
        s[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        s[0x0D] = spc;
        s[0x1C..0x20].copy_from_slice(&2048u32.to_le_bytes());
        s[0x28..0x30].copy_from_slice(&(1u64 << 24).to_le_bytes());
        s[0x30..0x38].copy_from_slice(&4u64.to_le_bytes());
        s[0x38..0x40].copy_from_slice(&2u64.to_le_bytes());
        s[0x40] = cpr;
        s[0x44] = cpi;
        s[0x48..0x50].copy_from_slice(&0x1234_5678_9abc_def0u64.to_le_bytes());
        s
    }

    #[rstest]
    // mkntfs's defaults: 4 KiB clusters, records 2^10, index blocks 1 cluster
    #[case::mkntfs_4k(8, 0xF6, 0x01, 4096, 1024, 4096)]
    #[case::clusters_512(1, 0x02, 0x08, 512, 1024, 4096)]
    #[case::record_one_cluster(2, 0x01, 0xF4, 1024, 1024, 4096)]
    // 128 KiB clusters: mkntfs writes 0xF8 (2^8 sectors) and 2^-n record sizes
    #[case::clusters_128k(0xF8, 0xF6, 0xF4, 131072, 1024, 4096)]
    #[case::clusters_2m(0xF4, 0xF6, 0xF4, 2 << 20, 1024, 4096)]
    #[case::record_64k(8, 0xF0, 0x10, 4096, 65536, 65536)]
    fn boot_sector_geometry(
        #[case] spc: u8,
        #[case] cpr: u8,
        #[case] cpi: u8,
        #[case] cluster: u64,
        #[case] rec: u32,
        #[case] idx: u32,
    ) {
        let b = BootSector::parse(&boot_sector(spc, cpr, cpi)).unwrap();
        assert_eq!(
            (b.cluster_size, b.record_size, b.index_record_size),
            (cluster, rec, idx)
        );
        assert_eq!(b.cluster_size, u64::from(b.sectors_per_cluster) * 512);
        assert_eq!(
            (b.hidden_sectors, b.mft_lcn, b.mft_mirror_lcn),
            (2048, 4, 2)
        );
        assert_eq!(b.serial, 0x1234_5678_9abc_def0);
        assert_eq!(b.mft_offset(), 4 * cluster);
    }

    #[rstest]
    #[case::spc_not_power(3, 0xF6, 1, 0x0D)]
    #[case::spc_zero(0, 0xF6, 1, 0x0D)]
    #[case::spc_bad_exponent(0xF3, 0xF6, 1, 0x0D)]
    #[case::record_zero(8, 0x00, 1, 0x40)]
    #[case::record_too_small(8, 0xF8, 1, 0x40)] // 2^8 = 256 < one fixup block
    #[case::record_too_large(8, 0xEF, 1, 0x40)] // 2^17
    #[case::record_shift_huge(8, 0x80, 1, 0x40)] // 2^128
    #[case::record_not_power(1, 0x03, 1, 0x40)] // 3 × 512
    #[case::record_many_clusters(8, 0x7F, 1, 0x40)] // 127 × 4096
    #[case::index_zero(8, 0xF6, 0, 0x44)]
    fn boot_sector_bad_fields(#[case] spc: u8, #[case] cpr: u8, #[case] cpi: u8, #[case] at: u64) {
        let e = BootSector::parse(&boot_sector(spc, cpr, cpi)).unwrap_err();
        assert_eq!((e.format, e.offset), (Format::Ntfs, at), "{e}");
    }

    #[test]
    fn boot_sector_other_errors() {
        let good = boot_sector(8, 0xF6, 1);
        let e = BootSector::parse(&good[..511]).unwrap_err();
        assert!(matches!(
            e.kind,
            crate::ErrorKind::Truncated {
                needed: 512,
                available: 511
            }
        ));
        let mut s = good;
        s[3] = b'F';
        assert_eq!(BootSector::parse(&s).unwrap_err().field, "OEM id");
        let mut s = good;
        s[0x0B..0x0D].copy_from_slice(&520u16.to_le_bytes());
        assert_eq!(BootSector::parse(&s).unwrap_err().offset, 0x0B);
        let mut s = good;
        s[0x30..0x38].fill(0);
        assert_eq!(BootSector::parse(&s).unwrap_err().offset, 0x30);
        let mut s = good;
        s[0x30..0x38].copy_from_slice(&(1u64 << 21).to_le_bytes()); // × 8 = total sectors
        assert_eq!(BootSector::parse(&s).unwrap_err().offset, 0x30);
        let mut s = good;
        s[0x38..0x40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(BootSector::parse(&s).unwrap_err().offset, 0x38);
    }

    #[test]
    fn attributes_and_unnamed_data() {
        let si = resident(attr_type::STANDARD_INFORMATION, b"", &[0u8; 0x48]);
        let fname = resident(
            attr_type::FILE_NAME,
            b"",
            &file_name_value(5 | (5 << 48), "BOOTMGR"),
        );
        let named = non_resident(b"Zone", &[0x11, 0x01, 0x09, 0x00], [4096, 10, 10]);
        // two runs: 8 clusters at 0x100, then 4 at 0x100 - 0x80
        let data = non_resident(
            b"",
            &[0x21, 0x08, 0x00, 0x01, 0x11, 0x04, 0x80, 0x00],
            [49152, 40000, 30000],
        );
        let rec = record(&[si.clone(), fname.clone(), named.clone(), data.clone()]);
        let base = 0xC_0000;
        let attrs = attributes(&rec, base).unwrap();
        let types: Vec<_> = attrs
            .iter()
            .map(|a| (a.type_code(), a.non_resident(), a.name_len()))
            .collect();
        assert_eq!(
            types,
            [
                (0x10, false, 0),
                (0x30, false, 0),
                (0x80, true, 4),
                (0x80, true, 0)
            ]
        );
        assert_eq!(attrs[1].offset(), 0x38 + si.len());
        assert_eq!(attrs[1].base(), base + attrs[1].offset() as u64);
        let (voff, v) = attrs[1].resident_value().unwrap();
        assert_eq!(voff, 0x18);
        let f = file_name(v, attrs[1].base() + voff as u64).unwrap();
        assert_eq!(
            (
                f.parent_record(),
                f.allocated_size,
                f.data_size,
                f.file_attributes,
                f.namespace
            ),
            (5, 8192, 5000, 6, 3)
        );
        assert!(f.name_eq_ignore_ascii_case(b"bootmgr"));
        assert!(!f.name_eq_ignore_ascii_case(b"bootmg"));

        let d = unnamed_data(&rec, base).unwrap().unwrap();
        assert_eq!(d.bytes(), &data[..]);
        let nr = d.non_resident_info().unwrap();
        assert_eq!(
            (nr.allocated_size, nr.data_size, nr.initialized_size),
            (49152, 40000, 30000)
        );
        assert_eq!(nr.runs, [run(0, Some(0x100), 8), run(8, Some(0x80), 4)]);
        assert_eq!(nr.mapping_pairs_offset, 0x40);
        assert!(d.resident_value().is_err());
        assert!(attrs[0].non_resident_info().is_err());

        let only_named = record(&[si, fname, named]);
        assert_eq!(unnamed_data(&only_named, 0).unwrap(), None);
    }

    #[test]
    fn attribute_errors_name_the_offset() {
        let si = resident(attr_type::STANDARD_INFORMATION, b"", &[0u8; 0x48]);
        let mut rec = record(core::slice::from_ref(&si));
        rec[0x38 + 4] = 0x1C; // length not 8-aligned
        let e = attributes(&rec, 1 << 20).unwrap_err();
        assert_eq!(
            (e.offset, e.field),
            ((1 << 20) + 0x3C, "attribute length"),
            "{e}"
        );
        rec[0x38 + 4..0x38 + 8].copy_from_slice(&2048u32.to_le_bytes()); // past the record
        assert_eq!(attributes(&rec, 0).unwrap_err().offset, 0x3C);
        // no end marker: attributes fill the record to the last byte
        let mut rec = record(&[]);
        let filler = 1024 - 0x38;
        rec[0x38..0x3C].copy_from_slice(&0x40u32.to_le_bytes());
        rec[0x3C..0x40].copy_from_slice(&(filler as u32).to_le_bytes());
        let e = attributes(&rec, 0).unwrap_err();
        assert!(matches!(e.kind, crate::ErrorKind::Truncated { .. }), "{e}");
        // first attribute inside the update sequence array
        let mut rec = record(&[si]);
        rec[0x14] = 0x30;
        assert_eq!(
            attributes(&rec, 0).unwrap_err().field,
            "first attribute offset"
        );
        rec[0x14] = 0x3C;
        assert_eq!(attributes(&rec, 0).unwrap_err().offset, 0x14);
    }

    #[test]
    fn standalone_attribute() {
        let data = non_resident(b"", &[0x11, 0x02, 0x09, 0x00], [8192, 5000, 5000]);
        let a = Attr::parse(&data, 0x1000).unwrap();
        assert_eq!(
            (a.type_code(), a.offset(), a.base()),
            (attr_type::DATA, 0, 0x1000)
        );
        assert_eq!(a.non_resident_info().unwrap().runs, [run(0, Some(9), 2)]);
        let e = Attr::parse(&data[..data.len() - 8], 0x1000).unwrap_err();
        assert_eq!((e.offset, e.field), (0x1004, "attribute length"));
        assert!(matches!(
            Attr::parse(&data[..0x10], 0).unwrap_err().kind,
            crate::ErrorKind::Truncated { .. }
        ));
    }

    #[test]
    fn non_resident_header_checks() {
        let mut data = non_resident(b"", &[0x11, 0x01, 0x09, 0x00], [4096, 10, 10]);
        data[0x20] = 0x38; // mapping pairs inside the header
        let rec = record(&[data]);
        let d = unnamed_data(&rec, 0).unwrap().unwrap();
        let e = d.non_resident_info().unwrap_err();
        assert_eq!((e.offset, e.field), (0x38 + 0x20, "mapping pairs offset"));
        // a bad mapping pair reports its absolute offset
        let data = non_resident(b"", &[0x11, 0x01, 0xF0, 0x00], [4096, 10, 10]);
        let rec = record(&[data]);
        let e = unnamed_data(&rec, 4096)
            .unwrap()
            .unwrap()
            .non_resident_info()
            .unwrap_err();
        assert_eq!((e.offset, e.field), (4096 + 0x38 + 0x42, "run offset"));
    }

    #[test]
    fn record_header_fields() {
        let mut rec = record(&[]);
        rec[0x20..0x28].copy_from_slice(&(7u64 | (1 << 48)).to_le_bytes());
        let h = record_header(&rec, 0).unwrap();
        assert!(h.in_use());
        assert_eq!(
            (
                h.first_attribute,
                h.record_number,
                reference_record(h.base_record),
                h.bytes_in_use
            ),
            (0x38, 64, 7, 0x40)
        );
        rec[0x16] = 0;
        assert!(!record_header(&rec, 0).unwrap().in_use());
    }

    #[rstest]
    #[case::first_cluster(0, Some((Some(0x100 * 512), 8 * 512)))]
    #[case::inside(3 * 512 + 7, Some((Some(0x103 * 512 + 7), 5 * 512 - 7)))]
    #[case::second_run(8 * 512, Some((Some(0x80 * 512), 4 * 512)))]
    #[case::hole(12 * 512 + 1, Some((None, 2 * 512 - 1)))]
    #[case::unmapped(14 * 512, None)]
    fn map_offset_cases(#[case] off: u64, #[case] want: Option<(Option<u64>, u64)>) {
        let runs = [
            run(0, Some(0x100), 8),
            run(8, Some(0x80), 4),
            run(12, None, 2),
        ];
        assert_eq!(map_offset(&runs, 512, off), want);
    }

    #[test]
    fn map_offset_overflow_is_none() {
        assert_eq!(map_offset(&[run(0, Some(u64::MAX / 2), 4)], 4096, 0), None);
    }
}
