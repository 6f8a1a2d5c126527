//! The few NTFS structures the pipeline reads and patches itself: the boot sector, MFT file
//! records (with their update-sequence fixups) and the non-resident `$DATA` attribute of one
//! file — enough to write a file's content straight into the clusters `ntfsfallocate` reserved
//! for it and to set its valid data length (host-pipeline.md §5, "The extents route").
//!
//! Layouts (all little-endian; the NTFS documentation of the Linux-NTFS project, as
//! implemented by ntfs-3g `layout.h`; verified here by ntfs-3g's `ntfsinfo`/`ntfscat` reading back
//! every file this module patched, in the tests):
//!
//! * boot sector: bytes/sector u16 @0x0B, sectors/cluster u8 @0x0D, `$MFT` LCN u64 @0x30,
//!   clusters per file record i8 @0x40 (negative n = 2^-n bytes);
//! * file record: `FILE` @0, update-sequence array offset u16 @4 and count u16 @6 (the USN and
//!   one saved u16 per 512-byte block), flags u16 @0x16 (1 = in use), first attribute @0x14;
//! * attribute header: type u32 @0, length u32 @4, non-resident u8 @8, name length u8 @9,
//!   flags u16 @0x0C (0x0001 compressed, 0x4000 encrypted, 0x8000 sparse); non-resident:
//!   lowest VCN @0x10, mapping pairs offset u16 @0x20, allocated size @0x28, data size @0x30,
//!   initialized size (the valid data length, VDL) @0x38;
//! * mapping pairs: a header byte (low nibble = length bytes, high nibble = offset bytes), the run
//!   length, the signed LCN delta (no delta bytes = a sparse run), until a 0 byte.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::ProvisionError;
use crate::sparse;

const STEP: &str = "copy the VHD to the UFD";
/// The fixup stride: update sequences protect every 512-byte block, whatever the sector size.
const FIXUP_BLOCK: usize = 512;
const ATTR_STANDARD_INFORMATION: u32 = 0x10;
const ATTR_ATTRIBUTE_LIST: u32 = 0x20;
const ATTR_FILE_NAME: u32 = 0x30;
const ATTR_DATA: u32 = 0x80;
const ATTR_END: u32 = 0xFFFF_FFFF;
const FLAG_COMPRESSED: u16 = 0x0001;
const FLAG_ENCRYPTED: u16 = 0x4000;
const FLAG_SPARSE: u16 = 0x8000;
/// `$STANDARD_INFORMATION` file attribute bits.
const FILE_ATTRIBUTE_SPARSE: u32 = 0x200;
const FILE_ATTRIBUTE_COMPRESSED: u32 = 0x800;
const FILE_ATTRIBUTE_ENCRYPTED: u32 = 0x4000;

/// The volume parameters of an NTFS boot sector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Geometry {
    pub bytes_per_sector: u32,
    pub cluster_size: u64,
    pub record_size: u64,
    pub mft_lcn: u64,
}

/// One run of a non-resident attribute: `len` clusters from `vcn`, at `lcn` (`None` = sparse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Run {
    pub vcn: u64,
    pub lcn: Option<u64>,
    pub len: u64,
}

/// The unnamed `$DATA` attribute of a file record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataAttr {
    pub runs: Vec<Run>,
    pub flags: u16,
    pub allocated_size: u64,
    pub data_size: u64,
    pub initialized_size: u64,
    /// Offset of the initialized-size field inside the record.
    init_field: usize,
}

/// What [`place_file`] did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    pub inode: u64,
    pub runs: Vec<Run>,
    pub data_size: u64,
    /// Bytes of the source that were data extents (copied); the rest were holes (zeros).
    pub copied_bytes: u64,
    pub vdl_before: u64,
    pub vdl_after: u64,
    /// Byte offset of the patched file record in the volume.
    pub record_offset: u64,
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

/// Parse the boot sector (the first 512 bytes of the volume).
pub fn parse_boot(sector: &[u8], path: &Path) -> Result<Geometry, ProvisionError> {
    if sector.len() < 512 || &sector[3..11] != b"NTFS    " {
        return Err(ProvisionError::ntfs(
            STEP,
            path,
            3,
            "no `NTFS    ` OEM id in the boot sector",
        ));
    }
    let bps = u32::from(le16(sector, 0x0B));
    let spc = u64::from(sector[0x0D]);
    if !(256..=4096).contains(&bps) || !bps.is_power_of_two() || spc == 0 || !spc.is_power_of_two()
    {
        return Err(ProvisionError::ntfs(
            STEP,
            path,
            0x0B,
            format!("unsupported geometry: {bps} bytes/sector, {spc} sectors/cluster"),
        ));
    }
    let cluster_size = u64::from(bps) * spc;
    let cpr = sector[0x40] as i8;
    let record_size = if cpr < 0 {
        let shift = u32::from(cpr.unsigned_abs());
        if shift > 16 {
            return Err(ProvisionError::ntfs(
                STEP,
                path,
                0x40,
                format!("file record size 2^{shift} is out of range"),
            ));
        }
        1u64 << shift
    } else {
        u64::from(cpr as u8) * cluster_size
    };
    if record_size < FIXUP_BLOCK as u64 || record_size > 65536 {
        return Err(ProvisionError::ntfs(
            STEP,
            path,
            0x40,
            format!("file record size {record_size} is out of range"),
        ));
    }
    Ok(Geometry {
        bytes_per_sector: bps,
        cluster_size,
        record_size,
        mft_lcn: le64(sector, 0x30),
    })
}

/// Undo the update-sequence fixups of a record read from disk (in place).
pub fn unfix(rec: &mut [u8], path: &Path, rec_off: u64) -> Result<(), ProvisionError> {
    if rec.len() < 0x30 || &rec[0..4] != b"FILE" {
        return Err(ProvisionError::ntfs(
            STEP,
            path,
            rec_off,
            "file record has no `FILE` signature",
        ));
    }
    let usa_ofs = usize::from(le16(rec, 4));
    let usa_count = usize::from(le16(rec, 6));
    if usa_count != rec.len() / FIXUP_BLOCK + 1 || usa_ofs + 2 * usa_count > rec.len() {
        return Err(ProvisionError::ntfs(
            STEP,
            path,
            rec_off + 4,
            format!(
                "update sequence array (offset {usa_ofs}, {usa_count} entries) does not fit a {}-byte record",
                rec.len()
            ),
        ));
    }
    let usn = [rec[usa_ofs], rec[usa_ofs + 1]];
    for i in 1..usa_count {
        let end = i * FIXUP_BLOCK - 2;
        if rec[end..end + 2] != usn {
            return Err(ProvisionError::ntfs(
                STEP,
                path,
                rec_off + end as u64,
                "update sequence number mismatch (torn or corrupt file record)",
            ));
        }
        rec[end] = rec[usa_ofs + 2 * i];
        rec[end + 1] = rec[usa_ofs + 2 * i + 1];
    }
    Ok(())
}

/// Apply the fixups before writing a record back: a new USN (incremented, skipping 0 and
/// 0xFFFF as ntfs-3g's `ntfs_mst_pre_write_fixup` does), the protected words saved in the array.
pub fn refix(rec: &mut [u8]) {
    let usa_ofs = usize::from(le16(rec, 4));
    let usa_count = usize::from(le16(rec, 6));
    let mut usn = le16(rec, usa_ofs).wrapping_add(1);
    if usn == 0 || usn == 0xFFFF {
        usn = 1;
    }
    rec[usa_ofs..usa_ofs + 2].copy_from_slice(&usn.to_le_bytes());
    for i in 1..usa_count {
        let end = i * FIXUP_BLOCK - 2;
        rec[usa_ofs + 2 * i] = rec[end];
        rec[usa_ofs + 2 * i + 1] = rec[end + 1];
        rec[end..end + 2].copy_from_slice(&usn.to_le_bytes());
    }
}

/// Decode mapping pairs starting at `b[0]`, with the attribute's lowest VCN.
pub fn decode_runs(b: &[u8], mut vcn: u64) -> Option<Vec<Run>> {
    let mut runs = Vec::new();
    let mut p = 0usize;
    let mut lcn: i64 = 0;
    loop {
        let h = *b.get(p)?;
        if h == 0 {
            return Some(runs);
        }
        let (ln, lo) = (usize::from(h & 0x0F), usize::from(h >> 4));
        if ln == 0 || ln > 8 || lo > 8 {
            return None;
        }
        let lb = b.get(p + 1..p + 1 + ln)?;
        let mut len = 0u64;
        for (i, x) in lb.iter().enumerate() {
            len |= u64::from(*x) << (8 * i);
        }
        let run_lcn = if lo == 0 {
            None
        } else {
            let ob = b.get(p + 1 + ln..p + 1 + ln + lo)?;
            let mut d: i64 = 0;
            for (i, x) in ob.iter().enumerate() {
                d |= i64::from(*x) << (8 * i);
            }
            // sign-extend
            let shift = 64 - 8 * lo as u32;
            d = if shift == 0 { d } else { (d << shift) >> shift };
            lcn = lcn.checked_add(d)?;
            Some(u64::try_from(lcn).ok()?)
        };
        runs.push(Run {
            vcn,
            lcn: run_lcn,
            len,
        });
        vcn = vcn.checked_add(len)?;
        p += 1 + ln + lo;
    }
}

/// Find the unnamed `$DATA` attribute in a fixed-up record; refuse what this module cannot
/// patch safely (attribute lists, resident, compressed, encrypted or sparse data).
pub fn data_attr(rec: &[u8], path: &Path, rec_off: u64) -> Result<DataAttr, ProvisionError> {
    let err = |o: usize, m: String| ProvisionError::ntfs(STEP, path, rec_off + o as u64, m);
    if le16(rec, 0x16) & 1 == 0 {
        return Err(err(0x16, "file record is not in use".into()));
    }
    let mut off = usize::from(le16(rec, 0x14));
    let mut found = None;
    while off + 16 <= rec.len() {
        let ty = le32(rec, off);
        if ty == ATTR_END {
            break;
        }
        let len = le32(rec, off + 4) as usize;
        if len < 16 || off + len > rec.len() {
            return Err(err(
                off + 4,
                format!("attribute length {len} runs past the record"),
            ));
        }
        let non_resident = rec[off + 8] != 0;
        let name_len = rec[off + 9];
        let flags = le16(rec, off + 0x0C);
        match ty {
            ATTR_ATTRIBUTE_LIST => {
                return Err(err(
                    off,
                    "the file has an $ATTRIBUTE_LIST (too fragmented for one record); refusing to patch".into(),
                ))
            }
            ATTR_STANDARD_INFORMATION if !non_resident && len >= 0x18 => {
                let vo = usize::from(le16(rec, off + 0x14));
                if off + vo + 0x24 <= off + len {
                    let fa = le32(rec, off + vo + 0x20);
                    if fa & (FILE_ATTRIBUTE_SPARSE | FILE_ATTRIBUTE_COMPRESSED | FILE_ATTRIBUTE_ENCRYPTED) != 0 {
                        return Err(err(
                            off + vo + 0x20,
                            format!("file attributes {fa:#x} mark the file sparse/compressed/encrypted; a VHD for native boot must be none of these"),
                        ));
                    }
                }
            }
            ATTR_DATA if name_len == 0 => {
                if !non_resident {
                    return Err(err(off + 8, "$DATA is resident (file too small to place)".into()));
                }
                if flags & (FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_SPARSE) != 0 {
                    return Err(err(
                        off + 0x0C,
                        format!("$DATA flags {flags:#06x}: sparse/compressed/encrypted data is refused"),
                    ));
                }
                if len < 0x40 {
                    return Err(err(off + 4, "non-resident $DATA header too short".into()));
                }
                let lowest_vcn = le64(rec, off + 0x10);
                if lowest_vcn != 0 {
                    return Err(err(off + 0x10, format!("$DATA starts at VCN {lowest_vcn}, not 0")));
                }
                let mp = usize::from(le16(rec, off + 0x20));
                if mp >= len {
                    return Err(err(off + 0x20, "mapping pairs offset past the attribute".into()));
                }
                let runs = decode_runs(&rec[off + mp..off + len], 0)
                    .ok_or_else(|| err(off + mp, "malformed mapping pairs".into()))?;
                found = Some(DataAttr {
                    runs,
                    flags,
                    allocated_size: le64(rec, off + 0x28),
                    data_size: le64(rec, off + 0x30),
                    initialized_size: le64(rec, off + 0x38),
                    init_field: off + 0x38,
                });
            }
            _ => {}
        }
        off += len;
    }
    found.ok_or_else(|| err(0x14, "no unnamed $DATA attribute".into()))
}

/// Set the allocated/data size fields (value offsets 0x28 and 0x30, ntfs-3g `layout.h`
/// `FILE_NAME_ATTR`) of every resident `$FILE_NAME` attribute of a fixed-up record to the
/// unnamed `$DATA`'s sizes. `ntfsfallocate` leaves the record's own `$FILE_NAME` data size at 0
/// (it updates only the parent directory's index entry, through ntfs-3g's
/// `ntfs_inode_sync_file_name`, which already carries both sizes); chkdsk compares the two.
/// Returns how many attributes were set.
pub fn set_file_name_sizes(rec: &mut [u8], allocated: u64, data: u64) -> usize {
    let mut n = 0;
    let mut off = usize::from(le16(rec, 0x14));
    while off + 0x18 <= rec.len() {
        let ty = le32(rec, off);
        let len = le32(rec, off + 4) as usize;
        if ty == ATTR_END || len < 0x18 || off + len > rec.len() {
            break;
        }
        if ty == ATTR_FILE_NAME && rec[off + 8] == 0 {
            let vo = usize::from(le16(rec, off + 0x14));
            let vl = le32(rec, off + 0x10) as usize;
            if vl >= 0x42 && vo + vl <= len {
                let v = off + vo;
                rec[v + 0x28..v + 0x30].copy_from_slice(&allocated.to_le_bytes());
                rec[v + 0x30..v + 0x38].copy_from_slice(&data.to_le_bytes());
                n += 1;
            }
        }
        off += len;
    }
    n
}

/// A volume file opened for reading and patching records.
pub struct Volume<'p> {
    file: File,
    path: &'p Path,
    pub geometry: Geometry,
    mft_runs: Vec<Run>,
}

impl<'p> Volume<'p> {
    pub fn open(path: &'p Path, write: bool) -> Result<Volume<'p>, ProvisionError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .map_err(|e| ProvisionError::io(STEP, path, e))?;
        let mut boot = [0u8; 512];
        file.read_exact_at(&mut boot, 0)
            .map_err(|e| ProvisionError::io(STEP, path, e))?;
        let geometry = parse_boot(&boot, path)?;
        let mut v = Volume {
            file,
            path,
            geometry,
            mft_runs: vec![Run {
                vcn: 0,
                lcn: Some(geometry.mft_lcn),
                len: geometry.record_size.div_ceil(geometry.cluster_size),
            }],
        };
        // Record 0 ($MFT) maps the MFT itself.
        let (rec, off) = v.read_record(0)?;
        v.mft_runs = data_attr(&rec, path, off)?.runs;
        Ok(v)
    }

    /// Volume byte offset of MFT byte `mft_off` (one cluster at most is contiguous).
    fn mft_to_volume(&self, mft_off: u64) -> Result<u64, ProvisionError> {
        let cs = self.geometry.cluster_size;
        let vcn = mft_off / cs;
        self.mft_runs
            .iter()
            .find(|r| vcn >= r.vcn && vcn < r.vcn + r.len)
            .and_then(|r| r.lcn.map(|l| (l + vcn - r.vcn) * cs + mft_off % cs))
            .ok_or_else(|| {
                ProvisionError::ntfs(
                    STEP,
                    self.path,
                    self.geometry.mft_lcn * cs,
                    format!("MFT byte {mft_off} is not mapped by $MFT's runs"),
                )
            })
    }

    /// The volume pieces (offset, len) holding record `inode`.
    fn record_pieces(&self, inode: u64) -> Result<Vec<(u64, usize)>, ProvisionError> {
        let rs = self.geometry.record_size;
        let cs = self.geometry.cluster_size;
        let mut pieces = Vec::new();
        let mut at = inode * rs;
        let end = at + rs;
        while at < end {
            let n = (cs - at % cs).min(end - at);
            pieces.push((self.mft_to_volume(at)?, n as usize));
            at += n;
        }
        Ok(pieces)
    }

    /// Read and un-fix record `inode`; returns it and its first byte's volume offset.
    pub fn read_record(&self, inode: u64) -> Result<(Vec<u8>, u64), ProvisionError> {
        let pieces = self.record_pieces(inode)?;
        let mut rec = Vec::with_capacity(self.geometry.record_size as usize);
        for (o, n) in &pieces {
            let mut b = vec![0u8; *n];
            self.file
                .read_exact_at(&mut b, *o)
                .map_err(|e| ProvisionError::io(STEP, self.path, e))?;
            rec.extend(b);
        }
        let off = pieces[0].0;
        unfix(&mut rec, self.path, off)?;
        Ok((rec, off))
    }

    fn write_record(&self, inode: u64, rec: &[u8]) -> Result<(), ProvisionError> {
        let mut at = 0usize;
        for (o, n) in self.record_pieces(inode)? {
            self.file
                .write_all_at(&rec[at..at + n], o)
                .map_err(|e| ProvisionError::io(STEP, self.path, e))?;
            at += n;
        }
        Ok(())
    }

    /// The `$DATA` of file record `inode`.
    pub fn data(&self, inode: u64) -> Result<DataAttr, ProvisionError> {
        let (rec, off) = self.read_record(inode)?;
        data_attr(&rec, self.path, off)
    }
}

/// Write `src`'s content into the clusters already allocated to file `inode` of the volume
/// (by `ntfsfallocate`), then set its valid data length to its size.
///
/// Preconditions checked: `$DATA` is non-resident, not sparse/compressed/encrypted, has no
/// sparse runs, its data size equals `src`'s length and its runs cover it. The clusters are
/// first turned into holes in the host file (so the VHD's own holes read as zeros whatever the
/// volume held there), then only `src`'s data extents are copied (`copy_file_range`).
pub fn place_file(volume: &Path, inode: u64, src: &Path) -> Result<Placement, ProvisionError> {
    let vol = Volume::open(volume, true)?;
    let cs = vol.geometry.cluster_size;
    let (mut rec, rec_off) = vol.read_record(inode)?;
    let attr = data_attr(&rec, volume, rec_off)?;
    let src_file = File::open(src).map_err(|e| ProvisionError::io(STEP, src, e))?;
    let src_len = src_file
        .metadata()
        .map_err(|e| ProvisionError::io(STEP, src, e))?
        .len();
    if attr.data_size != src_len {
        return Err(ProvisionError::ntfs(
            STEP,
            volume,
            rec_off,
            format!(
                "file record {inode}: data size {} differs from {} ({src_len} bytes)",
                attr.data_size,
                src.display()
            ),
        ));
    }
    let mut covered = 0u64;
    for r in &attr.runs {
        if r.lcn.is_none() {
            return Err(ProvisionError::ntfs(
                STEP,
                volume,
                rec_off,
                format!(
                    "file record {inode}: sparse run at VCN {} (the file must not be sparse)",
                    r.vcn
                ),
            ));
        }
        covered += r.len * cs;
    }
    if covered < src_len {
        return Err(ProvisionError::ntfs(
            STEP,
            volume,
            rec_off,
            format!("file record {inode}: runs cover {covered} bytes, the file has {src_len}"),
        ));
    }
    // zero the reserved clusters (holes in the host file)
    for r in &attr.runs {
        if let Some(l) = r.lcn {
            sparse::punch_hole(&vol.file, l * cs, r.len * cs)
                .map_err(|e| ProvisionError::io(STEP, volume, e))?;
        }
    }
    let extents = sparse::data_extents(&src_file).map_err(|e| ProvisionError::io(STEP, src, e))?;
    let mut copied = 0u64;
    for (s, e) in extents {
        let mut at = s;
        while at < e {
            let vcn = at / cs;
            let r = attr
                .runs
                .iter()
                .find(|r| vcn >= r.vcn && vcn < r.vcn + r.len)
                .ok_or_else(|| {
                    ProvisionError::ntfs(STEP, volume, rec_off, format!("VCN {vcn} is not mapped"))
                })?;
            let run_end = (r.vcn + r.len) * cs;
            let n = (e - at).min(run_end - at);
            let lcn = r.lcn.unwrap_or(0);
            let dst = (lcn + vcn - r.vcn) * cs + at % cs;
            sparse::copy_range(&src_file, at, &vol.file, dst, n)
                .map_err(|e| ProvisionError::io(STEP, volume, e))?;
            copied += n;
            at += n;
        }
    }
    vol.file
        .sync_data()
        .map_err(|e| ProvisionError::io(STEP, volume, e))?;
    let vdl_before = attr.initialized_size;
    rec[attr.init_field..attr.init_field + 8].copy_from_slice(&attr.data_size.to_le_bytes());
    set_file_name_sizes(&mut rec, attr.allocated_size, attr.data_size);
    refix(&mut rec);
    vol.write_record(inode, &rec)?;
    vol.file
        .sync_all()
        .map_err(|e| ProvisionError::io(STEP, volume, e))?;
    // read back through our own parser: fixups valid and VDL set
    let after = vol.data(inode)?;
    if after.initialized_size != after.data_size {
        return Err(ProvisionError::ntfs(
            STEP,
            volume,
            rec_off,
            "valid data length did not stick",
        ));
    }
    Ok(Placement {
        inode,
        runs: attr.runs,
        data_size: attr.data_size,
        copied_bytes: copied,
        vdl_before,
        vdl_after: after.initialized_size,
        record_offset: rec_off,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    // 0x21: 1-byte length 0x18, 2-byte offset 0x5634
    #[case(&[0x21, 0x18, 0x34, 0x56, 0x00], vec![Run { vcn: 0, lcn: Some(0x5634), len: 0x18 }])]
    // second run negative delta (-0x10), then a sparse run of 5
    #[case(&[0x11, 0x04, 0x20, 0x11, 0x02, 0xF0, 0x01, 0x05, 0x00],
        vec![Run { vcn: 0, lcn: Some(0x20), len: 4 }, Run { vcn: 4, lcn: Some(0x10), len: 2 }, Run { vcn: 6, lcn: None, len: 5 }])]
    fn mapping_pairs(#[case] b: &[u8], #[case] want: Vec<Run>) {
        assert_eq!(decode_runs(b, 0).unwrap(), want);
    }

    #[rstest]
    #[case(&[0x21, 0x18])] // truncated
    #[case(&[0x90, 0x01, 0x00])] // 9 offset bytes
    #[case(&[0x11, 0x01])] // missing offset byte
    fn bad_mapping_pairs(#[case] b: &[u8]) {
        assert!(decode_runs(b, 0).is_none());
    }

    #[test]
    fn fixups_roundtrip_and_detect_tears() {
        let mut rec = vec![0u8; 1024];
        rec[0..4].copy_from_slice(b"FILE");
        rec[4..6].copy_from_slice(&0x30u16.to_le_bytes());
        rec[6..8].copy_from_slice(&3u16.to_le_bytes());
        rec[510] = 0xAA;
        rec[1022] = 0xBB;
        let plain = rec.clone();
        refix(&mut rec);
        assert_eq!(le16(&rec, 510), le16(&rec, 0x30));
        let p = Path::new("x");
        let mut back = rec.clone();
        unfix(&mut back, p, 0).unwrap();
        assert_eq!(&back[..0x30], &plain[..0x30]);
        assert_eq!(back[510], 0xAA);
        assert_eq!(back[1022], 0xBB);
        rec[1022] ^= 1;
        let e = unfix(&mut rec, p, 4096).unwrap_err().to_string();
        assert!(e.contains("0x13fe") && e.contains("mismatch"), "{e}");
    }

    #[test]
    fn boot_sector_checks() {
        let mut s = [0u8; 512];
        assert!(parse_boot(&s, Path::new("v"))
            .unwrap_err()
            .to_string()
            .contains("OEM"));
        s[3..11].copy_from_slice(b"NTFS    ");
        s[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        s[0x0D] = 8;
        s[0x30..0x38].copy_from_slice(&4u64.to_le_bytes());
        s[0x40] = 0xF6; // -10 -> 1024
        let g = parse_boot(&s, Path::new("v")).unwrap();
        assert_eq!((g.cluster_size, g.record_size, g.mft_lcn), (4096, 1024, 4));
    }
}
