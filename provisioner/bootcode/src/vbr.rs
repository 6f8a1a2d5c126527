//! The NTFS partition boot record: placement around mkntfs's BPB and the BOOTMGR extent
//! table the 16-bit code reads (see the crate docs for the design).
//!
//! `$Boot` area layout after [`install_vbr`] (offsets from the partition start):
//!
//! | bytes | content |
//! |---|---|
//! | 0x000–0x00A | `EB 52 90 'NTFS    '` (ours; identical to what mkntfs writes) |
//! | 0x00B–0x053 | BPB — never written |
//! | 0x054–0x1FD | stage 1 (INT 13h extension check, loads sectors 1–15 to 0000:7E00) |
//! | 0x1FE–0x1FF | 55 AA |
//! | 0x200–0xFFF | stage 2 (MFT-record guard, run loader) |
//! | 0x1000–0x1FFF | extent table ([`TABLE_OFFSET`]) |
//!
//! Extent table (little-endian):
//!
//! | off | size | field |
//! |---|---|---|
//! | 0x00 | 8 | magic `UFDBMX1\0` |
//! | 0x08 | 2 | table version (1) |
//! | 0x0A | 2 | number of runs |
//! | 0x0C | 2 | sectors per MFT record |
//! | 0x10 | 8 | bootmgr's MFT record number |
//! | 0x18 | 8 | partition-relative sector of that record |
//! | 0x20 | 8 | bootmgr file size in bytes |
//! | 0x28 | 2 | length of the recorded `$DATA` attribute |
//! | 0x30 | ≤ 512 | the `$DATA` attribute bytes (compared at boot) |
//! | 0x240 | 16 × n | runs: u64 partition-relative start sector, u32 sectors, u32 0 |

use alloc::format;
use alloc::vec::Vec;

use ufd_formats::{Error, Format, Result};

use ufd_formats::ntfs::{self, attr_type, Run};

use crate::ntfs::{boot_geometry, data_attribute_of_raw_record};

const F: Format = Format::Vbr;

static VBR_BIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ntfs_vbr.bin"));

/// Signature string embedded in sector 0 of our NTFS boot record.
pub const VBR_SIGNATURE: &[u8] = b"UFDVBR1";
/// Version of our NTFS boot record (the digit at the end of [`VBR_SIGNATURE`]).
pub const VBR_VERSION: u8 = 1;
/// Bytes of the `$Boot` area that [`install_vbr`] needs and writes (the first 16 sectors;
/// mkntfs's `$Boot` is exactly this long).
pub const VBR_AREA_LEN: usize = 8192;
/// Offset of the extent table inside the `$Boot` area.
pub const TABLE_OFFSET: usize = 0x1000;
/// Largest bootmgr the record loads: 2000:0000 up to 0x98000, below any plausible EBDA
/// (Windows 7 SP1's bootmgr is ~375 KiB).
pub const MAX_BOOTMGR_SIZE: u64 = 0x98000 - 0x20000;
/// Largest `$DATA` attribute the table can hold.
pub const MAX_DATA_ATTRIBUTE_LEN: usize = 512;
/// Largest number of sector runs the table can hold.
pub const MAX_RUNS: usize = (VBR_AREA_LEN - TABLE_OFFSET - RUNS_OFFSET) / 16;

const TABLE_MAGIC: &[u8; 8] = b"UFDBMX1\0";
const RUNS_OFFSET: usize = 0x240;
const BPB_RANGE: core::ops::Range<usize> = 0x0B..0x54;

/// The NTFS boot record image (`asm/ntfs_vbr.S`): [`TABLE_OFFSET`] bytes, with zeros where
/// the BPB goes. Use [`install_vbr`] to place it; never write it over a boot sector raw.
pub fn vbr_code() -> &'static [u8] {
    VBR_BIN
}

/// What the provisioner records about `\bootmgr`, and how the boot record finds it.
///
/// Fill it with [`crate::locate_bootmgr`] (reads the volume) or
/// [`BootmgrExtents::from_mft_record`] (when the caller already has the raw record):
///
/// * `mft_record_number` — bootmgr's MFT record (base record, not an extension);
/// * `mft_record_sector` — partition-relative 512-byte sector where that record starts
///   (the record must be contiguous on disk; found through `$MFT`'s own extents, so a
///   fragmented MFT is fine);
/// * `mft_record_size` — bytes per MFT record (BPB 0x40), 512..=4096;
/// * `data_attribute` — the record's unnamed `$DATA` attribute exactly as stored (after
///   update-sequence fixups): the whole attribute, header + mapping pairs, `length`
///   bytes. It must be non-resident, uncompressed, unencrypted, not sparse, start at VCN 0
///   and hold the complete stream; the boot record compares it byte-for-byte at boot;
/// * `file_size` — the `$DATA` data size (must equal the value inside the attribute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootmgrExtents {
    pub mft_record_number: u64,
    pub mft_record_sector: u64,
    pub mft_record_size: u32,
    pub data_attribute: Vec<u8>,
    pub file_size: u64,
}

impl BootmgrExtents {
    /// Build from a raw MFT record as read from disk (fixups not yet applied).
    /// `record_sector` is its partition-relative sector. Validates the record and `$DATA`.
    pub fn from_mft_record(record_number: u64, record_sector: u64, raw: &[u8]) -> Result<Self> {
        let base = record_sector.saturating_mul(512);
        let attr = data_attribute_of_raw_record(record_number, raw, base)?;
        let e = BootmgrExtents {
            mft_record_number: record_number,
            mft_record_sector: record_sector,
            mft_record_size: raw.len() as u32,
            file_size: parse_data_attribute(&attr)?.data_size,
            data_attribute: attr,
        };
        Ok(e)
    }
}

struct DataAttr {
    data_size: u64,
    runs: Vec<Run>,
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

/// Validate a `$DATA` attribute for the boot record. Offsets in errors are within the attribute.
fn parse_data_attribute(a: &[u8]) -> Result<DataAttr> {
    if a.len() < 0x40 {
        return Err(Error::truncated(
            F,
            0,
            "bootmgr $DATA attribute",
            0x40,
            a.len() as u64,
        ));
    }
    if le32(a, 0) != attr_type::DATA || a[9] != 0 {
        return Err(Error::invalid(
            F,
            0,
            "bootmgr $DATA attribute",
            "not the unnamed $DATA attribute",
        ));
    }
    if le32(a, 4) as usize != a.len() {
        return Err(Error::mismatch(
            F,
            4,
            "attribute length",
            a.len() as u64,
            le32(a, 4).into(),
        ));
    }
    if a.len() > MAX_DATA_ATTRIBUTE_LEN {
        return Err(Error::unsupported(F, 4, "attribute length", format!("{} bytes: bootmgr has too many extents for the boot record (max {MAX_DATA_ATTRIBUTE_LEN})", a.len())));
    }
    if a[8] == 0 {
        return Err(Error::unsupported(
            F,
            8,
            "non-resident flag",
            "bootmgr's data is resident in the MFT record (file too small to be a real bootmgr)",
        ));
    }
    let flags = le16(a, 0x0C);
    if flags & 0x00FF != 0 {
        return Err(Error::unsupported(
            F,
            0x0C,
            "attribute flags",
            "BOOTMGR is compressed; copy it uncompressed",
        ));
    }
    if flags & 0x4000 != 0 {
        return Err(Error::unsupported(
            F,
            0x0C,
            "attribute flags",
            "bootmgr is encrypted",
        ));
    }
    if flags & 0x8000 != 0 {
        return Err(Error::unsupported(
            F,
            0x0C,
            "attribute flags",
            "bootmgr is sparse",
        ));
    }
    if le64(a, 0x10) != 0 {
        return Err(Error::unsupported(
            F,
            0x10,
            "starting VCN",
            "attribute does not start at VCN 0 (extents in extension records)",
        ));
    }
    let data_size = le64(a, 0x30);
    let init = le64(a, 0x38);
    if init != data_size {
        return Err(Error::mismatch(
            F,
            0x38,
            "initialized size",
            data_size,
            init,
        ));
    }
    if data_size == 0 || data_size > MAX_BOOTMGR_SIZE {
        return Err(Error::unsupported(F, 0x30, "bootmgr data size", format!("{data_size} bytes; the boot record loads 1..={MAX_BOOTMGR_SIZE} bytes to 2000:0000")));
    }
    let nr = ntfs::Attr::parse(a, 0)?.non_resident_info()?;
    let runs = nr.runs;
    if runs.iter().any(|r| r.lcn.is_none()) {
        return Err(Error::unsupported(
            F,
            nr.mapping_pairs_offset as u64,
            "mapping pairs",
            "bootmgr has a sparse hole",
        ));
    }
    Ok(DataAttr { data_size, runs })
}

/// Partition-relative byte offset of the NTFS backup boot sector (the volume's last
/// sector = BPB total sectors × 512). After [`install_vbr`], copy the new sector 0 there
/// too so `chkdsk`/`ntfsfix` recovery restores our code, not mkntfs's. Whether bootsect
/// itself refreshes the backup is unknown [formats.md §4: ?].
pub fn backup_boot_sector_offset(boot_sector: &[u8]) -> Result<u64> {
    let bpb = boot_geometry(boot_sector)?;
    Ok(bpb.total_sectors * u64::from(bpb.bytes_per_sector))
}

/// Install our NTFS boot record into `boot_area` (the first [`VBR_AREA_LEN`] bytes of the
/// partition; longer slices are accepted, only the first 8 KiB are written) and record
/// `bootmgr`'s extents. The BPB (0x0B..0x54) is validated and never modified. Nothing is
/// written when an error is returned.
pub fn install_vbr(boot_area: &mut [u8], bootmgr: &BootmgrExtents) -> Result<()> {
    if boot_area.len() < VBR_AREA_LEN {
        return Err(Error::truncated(
            F,
            0,
            "$Boot area",
            VBR_AREA_LEN as u64,
            boot_area.len() as u64,
        ));
    }
    let bpb = boot_geometry(&boot_area[..512])?;
    if bootmgr.mft_record_size != bpb.record_size {
        return Err(Error::mismatch(
            F,
            0x40,
            "MFT record size (BPB vs recorded extents)",
            bpb.record_size.into(),
            bootmgr.mft_record_size.into(),
        ));
    }
    let rec_sectors = u64::from(bootmgr.mft_record_size / 512);
    if bootmgr.mft_record_sector == 0
        || bootmgr.mft_record_sector.saturating_add(rec_sectors) > bpb.total_sectors
    {
        return Err(Error::invalid(
            F,
            0x28,
            "bootmgr MFT record sector",
            format!(
                "{} is outside the volume ({} sectors)",
                bootmgr.mft_record_sector, bpb.total_sectors
            ),
        ));
    }
    if u32::try_from(bootmgr.mft_record_number).is_err() {
        return Err(Error::unsupported(
            F,
            0,
            "bootmgr MFT record number",
            format!(
                "{} does not fit the 32-bit record-number field",
                bootmgr.mft_record_number
            ),
        ));
    }
    let attr = parse_data_attribute(&bootmgr.data_attribute)?;
    if attr.data_size != bootmgr.file_size {
        return Err(Error::mismatch(
            F,
            0x30,
            "bootmgr data size (attribute vs recorded)",
            bootmgr.file_size,
            attr.data_size,
        ));
    }
    // Clusters -> partition-relative sector runs, clipped to the sectors the file needs.
    let spc = bpb.cluster_size / 512;
    let mut need = attr.data_size.div_ceil(512);
    let mut runs: Vec<(u64, u32)> = Vec::new();
    for r in &attr.runs {
        if need == 0 {
            break;
        }
        let lcn = r.lcn.unwrap_or(0);
        let start = lcn.checked_mul(spc);
        let count = r.len.checked_mul(spc).map(|c| c.min(need));
        let (Some(start), Some(count)) = (start, count) else {
            return Err(Error::invalid(
                F,
                0x20,
                "bootmgr run",
                "cluster arithmetic overflows",
            ));
        };
        if start.saturating_add(count) > bpb.total_sectors {
            return Err(Error::invalid(
                F,
                0x20,
                "bootmgr run",
                format!(
                    "sectors {start}+{count} lie outside the volume ({} sectors)",
                    bpb.total_sectors
                ),
            ));
        }
        runs.push((start, count as u32));
        need -= count;
    }
    if need != 0 {
        return Err(Error::invalid(
            F,
            0x20,
            "bootmgr mapping pairs",
            format!(
                "the extents cover {} sectors fewer than the file size",
                need
            ),
        ));
    }
    if runs.len() > MAX_RUNS {
        return Err(Error::unsupported(
            F,
            0x20,
            "bootmgr extents",
            format!(
                "{} runs (max {MAX_RUNS}); defragment the volume and copy bootmgr again",
                runs.len()
            ),
        ));
    }

    // Everything validated: write.
    let code = vbr_code();
    boot_area[..BPB_RANGE.start].copy_from_slice(&code[..BPB_RANGE.start]);
    boot_area[BPB_RANGE.end..TABLE_OFFSET].copy_from_slice(&code[BPB_RANGE.end..TABLE_OFFSET]);
    let t = &mut boot_area[TABLE_OFFSET..VBR_AREA_LEN];
    t.fill(0);
    t[0..8].copy_from_slice(TABLE_MAGIC);
    t[8..10].copy_from_slice(&1u16.to_le_bytes());
    t[0x0A..0x0C].copy_from_slice(&(runs.len() as u16).to_le_bytes());
    t[0x0C..0x0E].copy_from_slice(&(rec_sectors as u16).to_le_bytes());
    t[0x10..0x18].copy_from_slice(&bootmgr.mft_record_number.to_le_bytes());
    t[0x18..0x20].copy_from_slice(&bootmgr.mft_record_sector.to_le_bytes());
    t[0x20..0x28].copy_from_slice(&bootmgr.file_size.to_le_bytes());
    let alen = bootmgr.data_attribute.len();
    t[0x28..0x2A].copy_from_slice(&(alen as u16).to_le_bytes());
    t[0x30..0x30 + alen].copy_from_slice(&bootmgr.data_attribute);
    for (i, (start, count)) in runs.iter().enumerate() {
        let o = RUNS_OFFSET + 16 * i;
        t[o..o + 8].copy_from_slice(&start.to_le_bytes());
        t[o + 8..o + 12].copy_from_slice(&count.to_le_bytes());
    }
    Ok(())
}

/// What an NTFS partition's boot sector contains (for `ufd inspect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VbrKind {
    /// Ours; `version` is the digit after `UFDVBR`.
    Ours { version: u8 },
    /// An NT6 boot record that loads BOOTMGR (bootsect /nt60, ms-sys -n, Windows format).
    WindowsBootmgr,
    /// An NT5 boot record that loads NTLDR.
    WindowsNtldr,
    /// mkntfs's placeholder ("This is not a bootable disk").
    MkntfsNotBootable,
    /// An NTFS boot sector with other (or no) code.
    OtherNtfs,
    /// Not an NTFS boot sector (OEM id is not `NTFS    `) or shorter than 512 bytes.
    NotNtfs,
}

/// Classify a partition's first sector (≥ 512 bytes; only the first 512 are examined).
pub fn recognise_vbr(sector: &[u8]) -> VbrKind {
    let Some(s) = sector.get(..512) else {
        return VbrKind::NotNtfs;
    };
    if &s[3..11] != b"NTFS    " {
        return VbrKind::NotNtfs;
    }
    let has = |n: &[u8]| s.windows(n.len()).any(|w| w == n);
    if let Some(i) = s.windows(6).position(|w| w == b"UFDVBR") {
        if let Some(d) = s.get(i + 6).filter(|d| d.is_ascii_digit()) {
            return VbrKind::Ours { version: d - b'0' };
        }
    }
    if has(b"BOOTMGR") {
        VbrKind::WindowsBootmgr
    } else if has(b"NTLDR") {
        VbrKind::WindowsNtldr
    } else if has(b"This is not a bootable disk") {
        VbrKind::MkntfsNotBootable
    } else {
        VbrKind::OtherNtfs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use rstest::rstest;

    /// A synthetic mkntfs-like boot area: 512-byte sectors, 8 sectors/cluster, partition at
    /// LBA 2048, 129023 sectors, MFT at LCN 4, 1 KiB records (0xF6).
    fn area() -> Vec<u8> {
        let mut a = vec![0u8; VBR_AREA_LEN];
        a[0..3].copy_from_slice(&[0xEB, 0x52, 0x90]);
        a[3..11].copy_from_slice(b"NTFS    ");
        a[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        a[0x0D] = 8;
        a[0x15] = 0xF8;
        a[0x18] = 63;
        a[0x1A] = 255;
        a[0x1C..0x20].copy_from_slice(&2048u32.to_le_bytes());
        a[0x24] = 0x80;
        a[0x28..0x30].copy_from_slice(&129_023u64.to_le_bytes());
        a[0x30..0x38].copy_from_slice(&4u64.to_le_bytes());
        a[0x38..0x40].copy_from_slice(&0x1F7Fu64.to_le_bytes());
        a[0x40] = 0xF6;
        a[0x44] = 1;
        a[0x48..0x50].copy_from_slice(&0x2B22_6F35_5DFF_1A75u64.to_le_bytes());
        a[0x71..0x8C].copy_from_slice(b"This is not a bootable disk");
        a[0x1FE] = 0x55;
        a[0x1FF] = 0xAA;
        a
    }

    /// A non-resident $DATA attribute for `size` bytes with the given mapping pairs.
    fn data_attr(size: u64, mp: &[u8], flags: u16) -> Vec<u8> {
        let len = (0x40 + mp.len() + 1).div_ceil(8) * 8;
        let mut a = vec![0u8; len];
        a[0..4].copy_from_slice(&0x80u32.to_le_bytes());
        a[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        a[8] = 1;
        a[0x0A] = 0x40;
        a[0x0C..0x0E].copy_from_slice(&flags.to_le_bytes());
        a[0x20] = 0x40;
        let alloc_sz = size.div_ceil(4096) * 4096;
        a[0x28..0x30].copy_from_slice(&alloc_sz.to_le_bytes());
        a[0x30..0x38].copy_from_slice(&size.to_le_bytes());
        a[0x38..0x40].copy_from_slice(&size.to_le_bytes());
        a[0x40..0x40 + mp.len()].copy_from_slice(mp);
        a
    }

    fn extents(attr: Vec<u8>, size: u64) -> BootmgrExtents {
        BootmgrExtents {
            mft_record_number: 64,
            mft_record_sector: 32 + 128,
            mft_record_size: 1024,
            data_attribute: attr,
            file_size: size,
        }
    }

    #[test]
    fn vbr_image_layout() {
        let c = vbr_code();
        assert_eq!(c.len(), TABLE_OFFSET);
        assert_eq!(&c[0..11], b"\xEB\x52\x90NTFS    ");
        assert!(c[BPB_RANGE].iter().all(|&b| b == 0));
        assert_eq!(&c[0x1FE..0x200], &[0x55, 0xAA]);
        let s0 = &c[..512];
        assert!(s0.windows(7).any(|w| w == VBR_SIGNATURE));
        for m in [
            &b"A disk read error occurred\0"[..],
            b"Press Ctrl+Alt+Del to restart\0",
        ] {
            assert!(s0.windows(m.len()).any(|w| w == m));
        }
        for m in [
            &b"BOOTMGR is missing\0"[..],
            b"BOOTMGR is compressed\0",
            b"BOOTMGR has moved: re-run ufd provision\0",
        ] {
            assert!(c.windows(m.len()).any(|w| w == m));
        }
    }

    #[test]
    fn install_keeps_bpb_and_writes_table() {
        let mut a = area();
        let before = a.clone();
        // Two extents: 3 clusters at LCN 0x100, 2 clusters at LCN 0x80; file 18000 bytes (36 sectors).
        let attr = data_attr(18_000, &[0x21, 0x03, 0x00, 0x01, 0x21, 0x02, 0x80, 0xFF], 0);
        install_vbr(&mut a, &extents(attr.clone(), 18_000)).unwrap();
        assert_eq!(&a[BPB_RANGE], &before[BPB_RANGE]);
        assert_eq!(&a[..0x0B], &vbr_code()[..0x0B]);
        assert_eq!(&a[0x54..TABLE_OFFSET], &vbr_code()[0x54..]);
        assert_eq!(&a[0x1FE..0x200], &[0x55, 0xAA]);
        let t = &a[TABLE_OFFSET..];
        assert_eq!(&t[0..8], b"UFDBMX1\0");
        assert_eq!(le16(t, 0x0A), 2);
        assert_eq!(le16(t, 0x0C), 2);
        assert_eq!(le64(t, 0x10), 64);
        assert_eq!(le64(t, 0x18), 160);
        assert_eq!(le64(t, 0x20), 18_000);
        assert_eq!(usize::from(le16(t, 0x28)), attr.len());
        assert_eq!(&t[0x30..0x30 + attr.len()], &attr[..]);
        // run 0: LCN 0x100 * 8 = sector 2048, 24 sectors; run 1: LCN 0x80 -> 1024, 12 sectors (clipped).
        assert_eq!((le64(t, 0x240), le32(t, 0x248)), (2048, 24));
        assert_eq!((le64(t, 0x250), le32(t, 0x258)), (1024, 12));
        assert_eq!(le64(t, 0x260), 0);
        assert_eq!(
            recognise_vbr(&a),
            VbrKind::Ours {
                version: VBR_VERSION
            }
        );
        assert_eq!(recognise_vbr(&before), VbrKind::MkntfsNotBootable);
        assert_eq!(backup_boot_sector_offset(&a).unwrap(), 129_023 * 512);
    }

    #[rstest]
    #[case::bad_oem(3, b"EXFAT   ", 3)]
    #[case::sector_4k(0x0B, &4096u16.to_le_bytes(), 0x0B)]
    #[case::no_hidden(0x1C, &[0, 0, 0, 0], 0x1C)]
    #[case::mft_zero(0x30, &[0; 8], 0x30)]
    #[case::bad_spc(0x0D, &[3], 0x0D)]
    fn bad_bpb_is_refused_untouched(
        #[case] off: usize,
        #[case] bytes: &[u8],
        #[case] err_off: u64,
    ) {
        let mut a = area();
        a[off..off + bytes.len()].copy_from_slice(bytes);
        let before = a.clone();
        let e = install_vbr(
            &mut a,
            &extents(data_attr(4096, &[0x11, 0x01, 0x40, 0x00], 0), 4096),
        )
        .unwrap_err();
        assert_eq!(e.offset, err_off, "{e}");
        assert_eq!(a, before);
    }

    #[rstest]
    #[case::compressed(data_attr(4096, &[0x11, 0x01, 0x40, 0x00], 0x0001), 4096, "compressed")]
    #[case::sparse_hole(data_attr(8192, &[0x11, 0x01, 0x40, 0x01, 0x01, 0x00], 0), 8192, "sparse")]
    #[case::too_big(data_attr(MAX_BOOTMGR_SIZE + 1, &[0x21, 0x79, 0x00, 0x01, 0x00], 0), MAX_BOOTMGR_SIZE + 1, "loads")]
    #[case::short_runs(data_attr(9000, &[0x11, 0x01, 0x40, 0x00], 0), 9000, "fewer")]
    #[case::size_mismatch(data_attr(4096, &[0x11, 0x01, 0x40, 0x00], 0), 4000, "data size")]
    fn bad_extents_are_refused(#[case] attr: Vec<u8>, #[case] size: u64, #[case] why: &str) {
        let mut a = area();
        let before = a.clone();
        let e = install_vbr(&mut a, &extents(attr, size)).unwrap_err();
        let msg = alloc::string::ToString::to_string(&e);
        assert!(msg.contains(why), "{msg}");
        assert_eq!(a, before);
    }

    #[test]
    fn short_area_is_an_error() {
        let mut a = vec![0u8; 512];
        assert!(install_vbr(
            &mut a,
            &extents(data_attr(4096, &[0x11, 0x01, 0x40, 0x00], 0), 4096)
        )
        .is_err());
    }

    #[rstest]
    #[case::short(&[0u8; 100][..], VbrKind::NotNtfs)]
    #[case::fat(b"\xEB\x3C\x90MSDOS5.0", VbrKind::NotNtfs)]
    fn recognise_other(#[case] s: &[u8], #[case] k: VbrKind) {
        let mut v = s.to_vec();
        if v.len() > 11 {
            v.resize(512, 0);
        }
        assert_eq!(recognise_vbr(&v), k);
    }

    #[test]
    fn recognise_windows_kinds() {
        let mut a = area();
        a[0x180..0x192].copy_from_slice(b"BOOTMGR is missing");
        assert_eq!(recognise_vbr(&a), VbrKind::WindowsBootmgr);
        let mut b = area();
        b[0x180..0x190].copy_from_slice(b"NTLDR is missing");
        b[0x71..0x8C].fill(0);
        assert_eq!(recognise_vbr(&b), VbrKind::WindowsNtldr);
    }
}
