//! The little NTFS the provisioner needs to fill [`BootmgrExtents`]: the BPB, MFT
//! records with update-sequence fixups, attribute walking, mapping pairs, and a linear
//! scan of the MFT for the root directory's `bootmgr`.
//!
//! Structures follow the NTFS 3.1 layout as documented by the Linux-NTFS project /
//! ntfs-3g `layout.h` and checked against mkntfs + ntfscp output in this crate's tests.
//! No I/O of its own: the caller hands the partition as a [`ReadAt`] (byte offsets are
//! relative to the partition start).

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Display;

use ufd_formats::bytes::ReadAt;
use ufd_formats::{Error, Format, Result};

use crate::vbr::BootmgrExtents;

const F: Format = Format::Vbr;

/// `$DATA` attribute type.
pub const AT_DATA: u32 = 0x80;
/// `$FILE_NAME` attribute type.
pub const AT_FILE_NAME: u32 = 0x30;
/// `$ATTRIBUTE_LIST` attribute type.
pub const AT_ATTRIBUTE_LIST: u32 = 0x20;
/// MFT record number of the root directory.
pub const ROOT_DIRECTORY_RECORD: u64 = 5;
/// Update-sequence stride: NTFS protects every 512-byte block of a record.
const USA_STRIDE: usize = 512;

/// The BPB fields the boot code and the provisioner use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bpb {
    pub bytes_per_sector: u16,
    pub bytes_per_cluster: u64,
    /// HiddenSectors (0x1C): the partition's start LBA; the boot code adds it to every read.
    pub hidden_sectors: u32,
    /// Total sectors (0x28): partition sectors − 1; the backup boot sector is at this sector.
    pub total_sectors: u64,
    pub mft_lcn: u64,
    pub mft_record_size: u32,
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

impl Bpb {
    /// Parse and validate an NTFS boot sector (at least 512 bytes). Errors name the BPB
    /// offset. Only 512-byte sectors are supported (the boot code's update-sequence and
    /// DAP arithmetic assume it; every UFD seen uses 512).
    pub fn parse(sector: &[u8]) -> Result<Bpb> {
        if sector.len() < 512 {
            return Err(Error::truncated(
                F,
                0,
                "NTFS boot sector",
                512,
                sector.len() as u64,
            ));
        }
        if &sector[3..11] != b"NTFS    " {
            return Err(Error::signature(
                F,
                3,
                "OEM id",
                b"NTFS    ",
                &sector[3..11],
            ));
        }
        let bps = le16(sector, 0x0B);
        if bps != 512 {
            return Err(Error::mismatch(
                F,
                0x0B,
                "bytes per sector",
                512,
                bps.into(),
            ));
        }
        let spc_raw = sector[0x0D];
        let spc: u64 = match spc_raw {
            1 | 2 | 4 | 8 | 16 | 32 | 64 | 128 => spc_raw.into(),
            0xF4..=0xFF => 1u64 << (256 - u32::from(spc_raw)),
            _ => {
                return Err(Error::invalid(
                    F,
                    0x0D,
                    "sectors per cluster",
                    format!("{spc_raw:#04x} is not a power of two (or an NTFS 2^-n encoding)"),
                ))
            }
        };
        let bytes_per_cluster = spc * 512;
        let hidden_sectors = le32(sector, 0x1C);
        if hidden_sectors == 0 {
            return Err(Error::invalid(
                F,
                0x1C,
                "HiddenSectors",
                "is 0; the boot code finds the partition through it: run mkntfs with \
                 -p <partition start LBA>",
            ));
        }
        let total_sectors = le64(sector, 0x28);
        let mft_lcn = le64(sector, 0x30);
        if mft_lcn == 0 || mft_lcn.saturating_mul(spc) >= total_sectors {
            return Err(Error::invalid(
                F,
                0x30,
                "MFT LCN",
                format!("{mft_lcn} lies outside the volume ({total_sectors} sectors)"),
            ));
        }
        let cpr = sector[0x40] as i8;
        let mft_record_size: u64 = if cpr > 0 {
            (cpr as u64) * bytes_per_cluster
        } else if (-31..=-9).contains(&cpr) {
            1u64 << (-(cpr as i32))
        } else {
            return Err(Error::invalid(
                F,
                0x40,
                "clusters per MFT record",
                format!("{:#04x} gives no valid record size", sector[0x40]),
            ));
        };
        if !(512..=4096).contains(&mft_record_size) {
            return Err(Error::unsupported(
                F,
                0x40,
                "clusters per MFT record",
                format!(
                    "MFT record size {mft_record_size} bytes; the boot code handles 512..=4096"
                ),
            ));
        }
        Ok(Bpb {
            bytes_per_sector: bps,
            bytes_per_cluster,
            hidden_sectors,
            total_sectors,
            mft_lcn,
            mft_record_size: mft_record_size as u32,
        })
    }
}

/// Apply the update-sequence fixups of a `FILE` (or `INDX`) record in place. `base` is the
/// record's byte offset on the volume, only used in error messages.
pub fn apply_fixups(record: &mut [u8], base: u64) -> Result<()> {
    if record.len() < 0x30 || record.len() % USA_STRIDE != 0 {
        return Err(Error::invalid(
            F,
            base,
            "MFT record",
            format!("length {} is not a multiple of 512", record.len()),
        ));
    }
    let usa_off = usize::from(le16(record, 4));
    let usa_cnt = usize::from(le16(record, 6));
    let blocks = record.len() / USA_STRIDE;
    if usa_cnt != blocks + 1 || usa_off + 2 * usa_cnt > USA_STRIDE - 2 || usa_off < 0x28 {
        return Err(Error::invalid(
            F,
            base + 4,
            "update sequence array",
            format!(
                "offset {usa_off:#x}, count {usa_cnt} do not fit a {}-byte record",
                record.len()
            ),
        ));
    }
    let usn = le16(record, usa_off);
    for i in 0..blocks {
        let end = (i + 1) * USA_STRIDE - 2;
        let found = le16(record, end);
        if found != usn {
            return Err(Error::mismatch(
                F,
                base + end as u64,
                "update sequence number (torn record)",
                usn.into(),
                found.into(),
            ));
        }
        let saved = usa_off + 2 * (i + 1);
        record[end] = record[saved];
        record[end + 1] = record[saved + 1];
    }
    Ok(())
}

/// One extent of a non-resident attribute: `lcn` is `None` for a sparse hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub lcn: Option<u64>,
    pub clusters: u64,
}

/// Decode NTFS mapping pairs (stops at the 0x00 terminator). `base` is for errors.
pub fn decode_mapping_pairs(mp: &[u8], base: u64) -> Result<Vec<Run>> {
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
        if ls == 0 || ls > 8 || os > 8 || i + 1 + ls + os > mp.len() {
            return Err(Error::invalid(
                F,
                base + i as u64,
                "mapping pair header",
                format!("{h:#04x} (length {ls}, offset {os} bytes) does not fit"),
            ));
        }
        let mut len: u64 = 0;
        for k in 0..ls {
            len |= u64::from(mp[i + 1 + k]) << (8 * k);
        }
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
            let mut d: i64 = 0;
            for k in 0..os {
                d |= i64::from(mp[i + 1 + ls + k]) << (8 * k);
            }
            let shift = 64 - 8 * os as u32;
            if shift < 64 {
                d = (d << shift) >> shift; // sign-extend
            }
            lcn = lcn.checked_add(d).filter(|v| *v >= 0).ok_or_else(|| {
                Error::invalid(
                    F,
                    base + i as u64,
                    "run offset",
                    "LCN becomes negative or overflows",
                )
            })?;
            Some(lcn as u64)
        };
        runs.push(Run {
            lcn: run_lcn,
            clusters: len,
        });
        i += 1 + ls + os;
    }
}

/// An attribute found in a record: its offset in the record and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Attr<'a> {
    pub offset: usize,
    pub bytes: &'a [u8],
}

impl Attr<'_> {
    pub fn type_code(&self) -> u32 {
        le32(self.bytes, 0)
    }
    pub fn non_resident(&self) -> bool {
        self.bytes[8] != 0
    }
    pub fn name_len(&self) -> u8 {
        self.bytes[9]
    }
}

/// Iterate the attributes of a fixed-up MFT record, with bounds checks.
pub fn attributes(record: &[u8], base: u64) -> Result<Vec<Attr<'_>>> {
    let mut out = Vec::new();
    let mut off = usize::from(le16(record, 0x14));
    loop {
        if off + 4 > record.len() {
            return Err(Error::truncated(
                F,
                base + off as u64,
                "attribute type",
                4,
                record.len().saturating_sub(off) as u64,
            ));
        }
        if le32(record, off) == 0xFFFF_FFFF {
            return Ok(out);
        }
        if off + 0x18 > record.len() {
            return Err(Error::truncated(
                F,
                base + off as u64,
                "attribute header",
                0x18,
                (record.len() - off) as u64,
            ));
        }
        let len = le32(record, off + 4) as usize;
        if len < 0x18 || len % 8 != 0 || off + len > record.len() {
            return Err(Error::invalid(
                F,
                base + off as u64 + 4,
                "attribute length",
                format!("{len} bytes"),
            ));
        }
        out.push(Attr {
            offset: off,
            bytes: &record[off..off + len],
        });
        off += len;
    }
}

/// Check a record's header (`FILE`, size fields) and apply fixups.
fn fixup_record(record: &mut [u8], base: u64) -> Result<()> {
    if &record[0..4] != b"FILE" {
        return Err(Error::signature(
            F,
            base,
            "MFT record",
            b"FILE",
            &record[0..4],
        ));
    }
    apply_fixups(record, base)?;
    let first = usize::from(le16(record, 0x14));
    if first < 0x30 || first >= record.len() {
        return Err(Error::invalid(
            F,
            base + 0x14,
            "first attribute offset",
            format!("{first:#x}"),
        ));
    }
    Ok(())
}

/// Where the bytes `[vcn_byte, vcn_byte + len)` of an attribute live on the volume, if they
/// lie in one extent.
fn locate_in_runs(runs: &[Run], cluster: u64, vcn_byte: u64, len: u64) -> Option<u64> {
    let mut start = 0u64;
    for r in runs {
        let bytes = r.clusters.checked_mul(cluster)?;
        if vcn_byte >= start && vcn_byte < start + bytes {
            if vcn_byte + len > start + bytes {
                return None;
            }
            return r.lcn.map(|l| l * cluster + (vcn_byte - start));
        }
        start += bytes;
    }
    None
}

fn read<R: ReadAt>(part: &mut R, offset: u64, buf: &mut [u8], what: &'static str) -> Result<()>
where
    R::Error: Display,
{
    part.read_exact_at(offset, buf)
        .map_err(|e| Error::invalid(Format::Disk, offset, what, format!("read failed: {e}")))
}

/// The unnamed `$DATA` attribute of a fixed-up record, if any.
pub fn unnamed_data(record: &[u8], base: u64) -> Result<Option<Attr<'_>>> {
    Ok(attributes(record, base)?
        .into_iter()
        .find(|a| a.type_code() == AT_DATA && a.name_len() == 0))
}

/// Find `\bootmgr` on an NTFS partition and return what [`crate::install_vbr`] records.
///
/// `part` reads the partition (offset 0 = its boot sector). The MFT is scanned linearly
/// (records in use, base records only) for a `$FILE_NAME` whose parent is the root
/// directory (record 5) and whose name is `bootmgr` (ASCII case-insensitive, as Windows
/// treats it); no directory-index walk is needed. Errors when the file is absent, when it
/// has an `$ATTRIBUTE_LIST` (too fragmented for one record) or when its `$DATA` is not a
/// plain non-resident stream (see [`BootmgrExtents::from_mft_record`]).
pub fn locate_bootmgr<R: ReadAt>(part: &mut R) -> Result<BootmgrExtents>
where
    R::Error: Display,
{
    let mut bs = [0u8; 512];
    read(part, 0, &mut bs, "NTFS boot sector")?;
    let bpb = Bpb::parse(&bs)?;
    let rs = bpb.mft_record_size as usize;
    let cluster = bpb.bytes_per_cluster;
    let mft0 = bpb.mft_lcn * cluster;
    let mut rec = vec![0u8; rs];
    read(part, mft0, &mut rec, "$MFT record 0")?;
    fixup_record(&mut rec, mft0)?;
    let data = unnamed_data(&rec, mft0)?
        .filter(|a| a.non_resident() && a.bytes.len() >= 0x40)
        .ok_or_else(|| {
            Error::not_found(F, mft0, "$MFT $DATA", "record 0 has no non-resident $DATA")
        })?;
    let mp_off = usize::from(le16(data.bytes, 0x20));
    if mp_off >= data.bytes.len() {
        return Err(Error::invalid(
            F,
            mft0 + data.offset as u64 + 0x20,
            "mapping pairs offset",
            format!("{mp_off:#x}"),
        ));
    }
    let mft_runs =
        decode_mapping_pairs(&data.bytes[mp_off..], mft0 + (data.offset + mp_off) as u64)?;
    let mft_size = le64(data.bytes, 0x30);
    let count = mft_size / rs as u64;
    for n in 0..count {
        let Some(at) = locate_in_runs(&mft_runs, cluster, n * rs as u64, rs as u64) else {
            continue; // straddles extents or lies in a hole: cannot be the boot code's record anyway
        };
        read(part, at, &mut rec, "MFT record")?;
        if &rec[0..4] != b"FILE" || le16(&rec, 0x16) & 1 == 0 || le64(&rec, 0x20) != 0 {
            continue; // unused, free, or an extension record
        }
        fixup_record(&mut rec, at)?;
        let is_bootmgr = attributes(&rec, at)?.iter().any(|a| {
            if a.type_code() != AT_FILE_NAME || a.non_resident() {
                return false;
            }
            let voff = usize::from(le16(a.bytes, 0x14));
            let Some(v) = a.bytes.get(voff..) else {
                return false;
            };
            if v.len() < 0x42 || le64(v, 0) & 0x0000_FFFF_FFFF_FFFF != ROOT_DIRECTORY_RECORD {
                return false;
            }
            let nlen = usize::from(v[0x40]);
            let Some(name) = v.get(0x42..0x42 + 2 * nlen) else {
                return false;
            };
            nlen == 7
                && name
                    .chunks_exact(2)
                    .zip(b"bootmgr")
                    .all(|(c, &e)| c[1] == 0 && c[0].eq_ignore_ascii_case(&e))
        });
        if !is_bootmgr {
            continue;
        }
        if at % 512 != 0 {
            return Err(Error::unsupported(
                F,
                at,
                "bootmgr MFT record",
                "record is not sector-aligned",
            ));
        }
        // Re-read raw (the extents type applies fixups itself).
        read(part, at, &mut rec, "MFT record")?;
        return BootmgrExtents::from_mft_record(n, at / 512, &rec);
    }
    Err(Error::not_found(
        F,
        mft0,
        "\\bootmgr",
        "no file named bootmgr in the root directory of the NTFS volume",
    ))
}

/// Fixed-up copy of the unnamed `$DATA` attribute of a raw record, after checking it is the
/// base record `number`. Used by [`BootmgrExtents::from_mft_record`].
pub(crate) fn data_attribute_of_raw_record(number: u64, raw: &[u8], base: u64) -> Result<Vec<u8>> {
    if !(512..=4096).contains(&raw.len()) {
        return Err(Error::invalid(
            F,
            base,
            "MFT record",
            format!("length {} (512..=4096 supported)", raw.len()),
        ));
    }
    let mut rec = raw.to_vec();
    fixup_record(&mut rec, base)?;
    if le16(&rec, 0x16) & 1 == 0 {
        return Err(Error::invalid(
            F,
            base + 0x16,
            "MFT record flags",
            "record is not in use (file deleted?)",
        ));
    }
    let recno = le32(&rec, 0x2C);
    if u64::from(recno) != number {
        return Err(Error::mismatch(
            F,
            base + 0x2C,
            "MFT record number",
            number,
            recno.into(),
        ));
    }
    let attrs = attributes(&rec, base)?;
    if attrs.iter().any(|a| a.type_code() == AT_ATTRIBUTE_LIST) {
        return Err(Error::unsupported(
            F,
            base,
            "bootmgr $ATTRIBUTE_LIST",
            "bootmgr is so fragmented its extents spill into extension records; copy it again onto a defragmented volume",
        ));
    }
    let data = attrs
        .iter()
        .find(|a| a.type_code() == AT_DATA && a.name_len() == 0)
        .ok_or_else(|| {
            Error::not_found(
                F,
                base,
                "bootmgr $DATA",
                "record has no unnamed $DATA attribute",
            )
        })?;
    Ok(data.bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(&[0x21, 0x18, 0x34, 0x56, 0x00], &[Run { lcn: Some(0x5634), clusters: 0x18 }])]
    #[case(&[0x11, 0x30, 0x20, 0x01, 0x60, 0x11, 0x10, 0xF0, 0x00], &[Run { lcn: Some(0x20), clusters: 0x30 }, Run { lcn: None, clusters: 0x60 }, Run { lcn: Some(0x10), clusters: 0x10 }])]
    fn mapping_pairs(#[case] mp: &[u8], #[case] want: &[Run]) {
        assert_eq!(decode_mapping_pairs(mp, 0).unwrap(), want);
    }

    #[rstest]
    #[case::no_terminator(&[0x11, 0x01, 0x02])]
    #[case::negative(&[0x11, 0x01, 0xF0, 0x00])]
    #[case::oversized_header(&[0x19, 0x01, 0x00])]
    #[case::zero_length(&[0x11, 0x00, 0x05, 0x00])]
    fn mapping_pairs_errors(#[case] mp: &[u8]) {
        assert!(decode_mapping_pairs(mp, 100).is_err());
    }

    #[test]
    fn fixups_detect_torn_records() {
        let mut r = vec![0u8; 1024];
        r[0..4].copy_from_slice(b"FILE");
        r[4] = 0x30;
        r[6] = 3;
        r[0x30..0x32].copy_from_slice(&[0x07, 0x00]);
        r[0x32..0x34].copy_from_slice(&[0xAA, 0xBB]);
        r[0x34..0x36].copy_from_slice(&[0xCC, 0xDD]);
        r[510..512].copy_from_slice(&[0x07, 0x00]);
        r[1022..1024].copy_from_slice(&[0x07, 0x00]);
        let mut ok = r.clone();
        apply_fixups(&mut ok, 0).unwrap();
        assert_eq!(&ok[510..512], &[0xAA, 0xBB]);
        assert_eq!(&ok[1022..1024], &[0xCC, 0xDD]);
        r[1022] = 0x08;
        let e = apply_fixups(&mut r, 4096).unwrap_err();
        assert_eq!(e.offset, 4096 + 1022);
    }
}
