//! Finding `\bootmgr` on an NTFS partition for the boot record's extent table
//! ([`BootmgrExtents`]): the boot code's limits on the BPB, a linear scan of the MFT for the
//! root directory's `bootmgr`, and the checks on its record.
//!
//! The byte-level NTFS (BPB, update-sequence fixups, attributes, mapping pairs, `$FILE_NAME`)
//! is [`ufd_formats::ntfs`]; its errors carry `Format::Ntfs`, the boot-code-specific refusals
//! here `Format::Vbr`. No I/O of its own: the caller hands the partition as a [`ReadAt`] (byte
//! offsets are relative to the partition start).

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Display;

use ufd_formats::bytes::ReadAt;
use ufd_formats::ntfs::{
    self, attr_type, record_flags, BootSector, FILE_MAGIC, ROOT_DIRECTORY_RECORD,
};
use ufd_formats::{Error, Format, Result};

use crate::vbr::BootmgrExtents;

const F: Format = Format::Vbr;

/// Largest MFT record the boot code handles (its record buffer and guard).
pub const MAX_MFT_RECORD_SIZE: u32 = 4096;

/// Parse an NTFS boot sector ([`BootSector::parse`]) and apply the boot code's own limits:
/// 512-byte sectors (its update-sequence and DAP arithmetic assume them; every UFD seen uses
/// 512), a non-zero HiddenSectors (the boot code adds it to every read) and MFT records of at
/// most [`MAX_MFT_RECORD_SIZE`] bytes. Errors name the BPB offset.
pub fn boot_geometry(sector: &[u8]) -> Result<BootSector> {
    let b = BootSector::parse(sector)?;
    if b.bytes_per_sector != 512 {
        return Err(Error::mismatch(
            F,
            0x0B,
            "bytes per sector",
            512,
            b.bytes_per_sector.into(),
        ));
    }
    if b.hidden_sectors == 0 {
        return Err(Error::invalid(
            F,
            0x1C,
            "HiddenSectors",
            "is 0; the boot code finds the partition through it: run mkntfs with \
             -p <partition start LBA>",
        ));
    }
    if b.record_size > MAX_MFT_RECORD_SIZE {
        return Err(Error::unsupported(
            F,
            0x40,
            "clusters per MFT record",
            format!(
                "MFT record size {} bytes; the boot code handles 512..={MAX_MFT_RECORD_SIZE}",
                b.record_size
            ),
        ));
    }
    Ok(b)
}

fn read<R: ReadAt>(part: &mut R, offset: u64, buf: &mut [u8], what: &'static str) -> Result<()>
where
    R::Error: Display,
{
    part.read_exact_at(offset, buf)
        .map_err(|e| Error::invalid(Format::Disk, offset, what, format!("read failed: {e}")))
}

/// Whether a fixed-up record has a `$FILE_NAME` `bootmgr` (ASCII case-insensitive, as Windows
/// treats it) in the root directory.
fn names_root_bootmgr(rec: &[u8], base: u64) -> Result<bool> {
    Ok(ntfs::attributes(rec, base)?.iter().any(|a| {
        a.type_code() == attr_type::FILE_NAME
            && a.resident_value()
                .and_then(|(voff, v)| ntfs::file_name(v, a.base() + voff as u64))
                .is_ok_and(|f| {
                    f.parent_record() == ROOT_DIRECTORY_RECORD
                        && f.name_eq_ignore_ascii_case(b"bootmgr")
                })
    }))
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
    let bpb = boot_geometry(&bs)?;
    let rs = bpb.record_size as usize;
    let cluster = bpb.cluster_size;
    let mft0 = bpb.mft_offset();
    let mut rec = vec![0u8; rs];
    read(part, mft0, &mut rec, "$MFT record 0")?;
    ntfs::unfix(&mut rec, FILE_MAGIC, mft0)?;
    let mft = ntfs::unnamed_data(&rec, mft0)?
        .filter(|a| a.non_resident())
        .ok_or_else(|| {
            Error::not_found(F, mft0, "$MFT $DATA", "record 0 has no non-resident $DATA")
        })?
        .non_resident_info()?;
    let count = mft.data_size / rs as u64;
    for n in 0..count {
        // A record that straddles extents or lies in a hole cannot be the boot code's record.
        let Some((Some(at), left)) = ntfs::map_offset(&mft.runs, cluster, n * rs as u64) else {
            continue;
        };
        if left < rs as u64 {
            continue;
        }
        read(part, at, &mut rec, "MFT record")?;
        // unused, free, or an extension record (header fields lie before the first fixup)
        let flags = u16::from_le_bytes([rec[0x16], rec[0x17]]);
        let base_ref = u64::from_le_bytes(rec[0x20..0x28].try_into().unwrap_or([0xFF; 8]));
        if &rec[0..4] != FILE_MAGIC || flags & record_flags::IN_USE == 0 || base_ref != 0 {
            continue;
        }
        ntfs::unfix(&mut rec, FILE_MAGIC, at)?;
        if !names_root_bootmgr(&rec, at)? {
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
    ntfs::unfix(&mut rec, FILE_MAGIC, base)?;
    let header = ntfs::record_header(&rec, base)?;
    if !header.in_use() {
        return Err(Error::invalid(
            F,
            base + 0x16,
            "MFT record flags",
            "record is not in use (file deleted?)",
        ));
    }
    if u64::from(header.record_number) != number {
        return Err(Error::mismatch(
            F,
            base + 0x2C,
            "MFT record number",
            number,
            header.record_number.into(),
        ));
    }
    let attrs = ntfs::attributes(&rec, base)?;
    if attrs
        .iter()
        .any(|a| a.type_code() == attr_type::ATTRIBUTE_LIST)
    {
        return Err(Error::unsupported(
            F,
            base,
            "bootmgr $ATTRIBUTE_LIST",
            "bootmgr is so fragmented its extents spill into extension records; copy it again onto a defragmented volume",
        ));
    }
    let data = attrs
        .iter()
        .find(|a| a.type_code() == attr_type::DATA && a.name_len() == 0)
        .ok_or_else(|| {
            Error::not_found(
                F,
                base,
                "bootmgr $DATA",
                "record has no unnamed $DATA attribute",
            )
        })?;
    Ok(data.bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use ufd_formats::ErrorKind;

    fn boot_sector(bps: u16, hidden: u32, cpr: u8) -> [u8; 512] {
        let mut s = [0u8; 512];
        s[3..11].copy_from_slice(b"NTFS    ");
        s[0x0B..0x0D].copy_from_slice(&bps.to_le_bytes());
        s[0x0D] = 8;
        s[0x1C..0x20].copy_from_slice(&hidden.to_le_bytes());
        s[0x28..0x30].copy_from_slice(&129_023u64.to_le_bytes());
        s[0x30..0x38].copy_from_slice(&4u64.to_le_bytes());
        s[0x40] = cpr;
        s[0x44] = 1;
        s
    }

    #[rstest]
    #[case::sectors_4k(4096, 2048, 0xF6, Format::Vbr, 0x0B)]
    #[case::no_hidden_sectors(512, 0, 0xF6, Format::Vbr, 0x1C)]
    #[case::record_8k(512, 2048, 0xF3, Format::Vbr, 0x40)]
    #[case::record_zero(512, 2048, 0x00, Format::Ntfs, 0x40)]
    fn boot_code_limits(
        #[case] bps: u16,
        #[case] hidden: u32,
        #[case] cpr: u8,
        #[case] format: Format,
        #[case] offset: u64,
    ) {
        let e = boot_geometry(&boot_sector(bps, hidden, cpr)).unwrap_err();
        assert_eq!((e.format, e.offset), (format, offset), "{e}");
    }

    #[test]
    fn boot_geometry_accepts_mkntfs_defaults() {
        let b = boot_geometry(&boot_sector(512, 2048, 0xF6)).unwrap();
        assert_eq!(
            (b.cluster_size, b.record_size, b.mft_offset()),
            (4096, 1024, 16384)
        );
    }

    /// A sealed 1024-byte record number `n` holding one unnamed non-resident `$DATA`.
    fn raw_record(n: u32, flags: u16, extra: Option<u32>) -> Vec<u8> {
        let mut r = vec![0u8; 1024];
        r[0..4].copy_from_slice(b"FILE");
        r[4] = 0x30;
        r[6] = 3;
        r[0x14] = 0x38;
        r[0x16..0x18].copy_from_slice(&flags.to_le_bytes());
        r[0x2C..0x30].copy_from_slice(&n.to_le_bytes());
        let mut at = 0x38;
        if let Some(ty) = extra {
            r[at..at + 4].copy_from_slice(&ty.to_le_bytes());
            r[at + 4] = 0x18;
            at += 0x18;
        }
        let a = &mut r[at..at + 0x48];
        a[0] = 0x80;
        a[4] = 0x48;
        a[8] = 1;
        a[0x20] = 0x40;
        a[0x30] = 0x10;
        a[0x38] = 0x10;
        a[0x40..0x44].copy_from_slice(&[0x11, 0x01, 0x40, 0x00]);
        r[at + 0x48..at + 0x4C].copy_from_slice(&u32::MAX.to_le_bytes());
        ntfs::refix(&mut r, 0).unwrap();
        r
    }

    #[test]
    fn data_attribute_of_a_good_record() {
        let a = data_attribute_of_raw_record(64, &raw_record(64, 1, None), 0x14000).unwrap();
        assert_eq!(
            (a.len(), a[0], &a[0x40..0x44]),
            (0x48, 0x80, &[0x11, 0x01, 0x40, 0x00][..])
        );
    }

    #[test]
    fn data_attribute_refusals() {
        let base = 0x14000;
        let mut torn = raw_record(64, 1, None);
        torn[1022] ^= 1;
        let e = data_attribute_of_raw_record(64, &torn, base).unwrap_err();
        assert_eq!((e.format, e.offset), (Format::Ntfs, base + 1022), "{e}");
        let e = data_attribute_of_raw_record(64, &raw_record(64, 0, None), base).unwrap_err();
        assert_eq!((e.format, e.offset), (Format::Vbr, base + 0x16), "{e}");
        let e = data_attribute_of_raw_record(65, &raw_record(64, 1, None), base).unwrap_err();
        assert!(
            matches!(
                e.kind,
                ErrorKind::Mismatch {
                    expected: 65,
                    found: 64
                }
            ),
            "{e}"
        );
        let list = raw_record(64, 1, Some(attr_type::ATTRIBUTE_LIST));
        let e = data_attribute_of_raw_record(64, &list, base).unwrap_err();
        assert_eq!(e.field, "bootmgr $ATTRIBUTE_LIST", "{e}");
        let short = &raw_record(64, 1, None)[..256];
        let e = data_attribute_of_raw_record(64, short, base).unwrap_err();
        assert_eq!((e.format, e.field), (Format::Vbr, "MFT record"), "{e}");
        let e =
            data_attribute_of_raw_record(64, &raw_record(64, 1, None)[..600], base).unwrap_err();
        assert_eq!((e.format, e.field), (Format::Ntfs, "record length"), "{e}");
    }
}
