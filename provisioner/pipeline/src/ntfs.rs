//! The few NTFS structures the pipeline reads and patches itself: the boot sector, MFT file
//! records (with their update-sequence fixups) and the non-resident `$DATA` attribute of one
//! file — enough to write a file's content straight into the clusters `ntfsfallocate` reserved
//! for it and to set its valid data length (host-pipeline.md §5, "The extents route").
//!
//! Nothing here calls fsync: the volume files are scratch files of the pipeline (discarded on
//! any error), and the finished image is made durable once, in `Step::Commit`.
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
const ATTR_INDEX_ROOT: u32 = 0x90;
const ATTR_INDEX_ALLOCATION: u32 = 0xA0;
/// Index entry flag: the last entry of a node (carries no key).
const INDEX_ENTRY_END: u16 = 0x02;
const ATTR_END: u32 = 0xFFFF_FFFF;
const FLAG_COMPRESSED: u16 = 0x0001;
const FLAG_ENCRYPTED: u16 = 0x4000;
const FLAG_SPARSE: u16 = 0x8000;
/// `$STANDARD_INFORMATION` / `$FILE_NAME` file attribute bits (ntfs-3g `layout.h`
/// `FILE_ATTR_*`, the Win32 `FILE_ATTRIBUTE_*` values).
pub const FILE_ATTRIBUTE_READONLY: u32 = 0x1;
pub const FILE_ATTRIBUTE_HIDDEN: u32 = 0x2;
pub const FILE_ATTRIBUTE_SYSTEM: u32 = 0x4;
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

/// Where a file's clusters are and what was done to its record ([`set_valid_data_length`],
/// [`place_file`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    pub inode: u64,
    /// The volume's cluster size (the runs' unit).
    pub cluster_size: u64,
    pub runs: Vec<Run>,
    pub data_size: u64,
    /// Bytes of the source that were data extents, copied into the clusters (the copy route);
    /// 0 when the data was not copied (the embed route, [`crate::embed`]).
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

/// Undo the update-sequence fixups of a file record read from disk (in place).
pub fn unfix(rec: &mut [u8], path: &Path, rec_off: u64) -> Result<(), ProvisionError> {
    unfix_magic(rec, b"FILE", path, rec_off)
}

/// Undo the update-sequence fixups of a `FILE` or `INDX` record (in place).
fn unfix_magic(
    rec: &mut [u8],
    magic: &[u8; 4],
    path: &Path,
    rec_off: u64,
) -> Result<(), ProvisionError> {
    if rec.len() < 0x30 || &rec[0..4] != magic {
        return Err(ProvisionError::ntfs(
            STEP,
            path,
            rec_off,
            format!(
                "record has no `{}` signature",
                String::from_utf8_lossy(magic)
            ),
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
/// (by `ntfsfallocate`), then set its valid data length to its size: the copy route of seed
/// step 4.1 ([`set_valid_data_length`] then [`write_at_runs`]).
///
/// Preconditions checked: `$DATA` is non-resident, not sparse/compressed/encrypted, has no
/// sparse runs, its data size equals `src`'s length and its runs cover it. The clusters are
/// first turned into holes in the host file (so the VHD's own holes read as zeros whatever the
/// volume held there), then only `src`'s data extents are copied (`copy_file_range`).
pub fn place_file(volume: &Path, inode: u64, src: &Path) -> Result<Placement, ProvisionError> {
    let src_len = std::fs::metadata(src)
        .map_err(|e| ProvisionError::io(STEP, src, e))?
        .len();
    let mut p = set_valid_data_length(volume, inode, src_len)?;
    p.copied_bytes = write_at_runs(volume, &p, src)?;
    Ok(p)
}

/// Check that file `inode` has `len` bytes of allocated, non-sparse data (what `ntfsfallocate`
/// leaves), then set its valid data length (`initialized_size`) to its data size and the
/// sizes in its own `$FILE_NAME` attributes (`ntfsfallocate` leaves VDL 0 and those sizes 0,
/// host-pipeline.md pitfall 8), and read the record back. No file data is written: the caller
/// puts the data into the clusters ([`write_at_runs`], or the embed route, [`crate::embed`]).
/// The returned placement has `copied_bytes` 0.
pub fn set_valid_data_length(
    volume: &Path,
    inode: u64,
    len: u64,
) -> Result<Placement, ProvisionError> {
    let vol = Volume::open(volume, true)?;
    let cs = vol.geometry.cluster_size;
    let (mut rec, rec_off) = vol.read_record(inode)?;
    let attr = data_attr(&rec, volume, rec_off)?;
    if attr.data_size != len {
        return Err(ProvisionError::ntfs(
            STEP,
            volume,
            rec_off,
            format!(
                "file record {inode}: data size {} differs from the file to place ({len} bytes)",
                attr.data_size
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
    if covered < len {
        return Err(ProvisionError::ntfs(
            STEP,
            volume,
            rec_off,
            format!("file record {inode}: runs cover {covered} bytes, the file has {len}"),
        ));
    }
    let vdl_before = attr.initialized_size;
    rec[attr.init_field..attr.init_field + 8].copy_from_slice(&attr.data_size.to_le_bytes());
    set_file_name_sizes(&mut rec, attr.allocated_size, attr.data_size);
    refix(&mut rec);
    vol.write_record(inode, &rec)?;
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
        cluster_size: cs,
        runs: attr.runs,
        data_size: attr.data_size,
        copied_bytes: 0,
        vdl_before,
        vdl_after: after.initialized_size,
        record_offset: rec_off,
    })
}

/// The copy route's data path: turn the clusters of `placement` into holes in the volume file,
/// then copy only `src`'s data extents to `lcn × cluster_size`. Returns the bytes copied.
pub fn write_at_runs(
    volume: &Path,
    placement: &Placement,
    src: &Path,
) -> Result<u64, ProvisionError> {
    let vol = Volume::open(volume, true)?;
    let cs = vol.geometry.cluster_size;
    let rec_off = placement.record_offset;
    let src_file = File::open(src).map_err(|e| ProvisionError::io(STEP, src, e))?;
    for r in &placement.runs {
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
            let r = placement
                .runs
                .iter()
                .find(|r| vcn >= r.vcn && vcn < r.vcn + r.len)
                .ok_or_else(|| {
                    ProvisionError::ntfs(STEP, volume, rec_off, format!("VCN {vcn} is not mapped"))
                })?;
            let run_end = (r.vcn + r.len) * cs;
            let n = (e - at).min(run_end - at);
            let lcn = r.lcn.ok_or_else(|| {
                ProvisionError::ntfs(STEP, volume, rec_off, format!("VCN {vcn} is sparse"))
            })?;
            let dst = (lcn + vcn - r.vcn) * cs + at % cs;
            sparse::copy_range(&src_file, at, &vol.file, dst, n)
                .map_err(|e| ProvisionError::io(STEP, volume, e))?;
            copied += n;
            at += n;
        }
    }
    Ok(copied)
}

/// What [`add_file_attributes`] changed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AttributeChange {
    pub inode: u64,
    /// `$STANDARD_INFORMATION` file attributes before and after.
    pub before: u32,
    pub after: u32,
    /// `$FILE_NAME` attributes updated in the file's own record.
    pub file_names: usize,
    /// Index entries (the `$FILE_NAME` copies in the parent directory's `$I30` index) updated.
    pub index_entries: usize,
}

/// Visit the attributes of a fixed-up record: `f(type, offset, length, non_resident)`.
fn for_each_attr(rec: &[u8], mut f: impl FnMut(u32, usize, usize, bool)) {
    let mut off = usize::from(le16(rec, 0x14));
    while off + 0x18 <= rec.len() {
        let ty = le32(rec, off);
        let len = le32(rec, off + 4) as usize;
        if ty == ATTR_END || len < 0x18 || off + len > rec.len() {
            break;
        }
        f(ty, off, len, rec[off + 8] != 0);
        off += len;
    }
}

/// OR `add` into the file attributes of every index entry of `node` (an index header at
/// `hdr`: entries offset u32 @0 and index length u32 @4, both relative to `hdr`) whose file
/// reference names `inode`; returns how many were changed.
fn patch_index_node(node: &mut [u8], hdr: usize, inode: u64, add: u32) -> usize {
    if hdr + 8 > node.len() {
        return 0;
    }
    let mut at = hdr + le32(node, hdr) as usize;
    let end = (hdr + le32(node, hdr + 4) as usize).min(node.len());
    let mut n = 0;
    while at + 0x10 <= end {
        let len = usize::from(le16(node, at + 8));
        let key_len = usize::from(le16(node, at + 10));
        let flags = le16(node, at + 12);
        if flags & INDEX_ENTRY_END != 0 || len < 0x10 || at + len > end {
            break;
        }
        // file reference: MFT record number in the low 48 bits
        if le64(node, at) & 0xFFFF_FFFF_FFFF == inode && key_len >= 0x42 && 0x10 + key_len <= len {
            let fa = at + 0x10 + 0x38;
            let v = le32(node, fa) | add;
            node[fa..fa + 4].copy_from_slice(&v.to_le_bytes());
            n += 1;
        }
        at += len;
    }
    n
}

/// Set file attribute bits (`add`, e.g. [`FILE_ATTRIBUTE_HIDDEN`] | [`FILE_ATTRIBUTE_SYSTEM`])
/// on file or directory `inode` whose directory is `parent`, everywhere NTFS keeps them:
/// `$STANDARD_INFORMATION` (value offset 0x20, what Windows reports), the file's own
/// `$FILE_NAME` attributes (value offset 0x38) and their copies in the parent's `$I30` index
/// entries (`$INDEX_ROOT` and every `INDX` block of `$INDEX_ALLOCATION`; key offset 0x38) —
/// what Windows' `SetFileAttributes` leaves (chkdsk compares the copies). Layouts: ntfs-3g
/// `layout.h` (`STANDARD_INFORMATION`, `FILE_NAME_ATTR`, `INDEX_ROOT`, `INDEX_BLOCK`,
/// `INDEX_ENTRY`); read back by ntfs-3g's `ntfsinfo` in the tests.
pub fn add_file_attributes(
    volume: &Path,
    inode: u64,
    parent: u64,
    add: u32,
) -> Result<AttributeChange, ProvisionError> {
    let vol = Volume::open(volume, true)?;
    let (mut rec, rec_off) = vol.read_record(inode)?;
    let mut si = None;
    let mut fns = Vec::new();
    for_each_attr(&rec, |ty, off, len, nonres| {
        if nonres {
            return;
        }
        let vo = usize::from(le16(&rec, off + 0x14));
        let vl = le32(&rec, off + 0x10) as usize;
        if ty == ATTR_STANDARD_INFORMATION && vl >= 0x24 && vo + vl <= len {
            si = Some(off + vo + 0x20);
        }
        if ty == ATTR_FILE_NAME && vl >= 0x42 && vo + vl <= len {
            fns.push(off + vo + 0x38);
        }
    });
    let si = si.ok_or_else(|| {
        ProvisionError::ntfs(
            STEP,
            volume,
            rec_off,
            format!("file record {inode} has no resident $STANDARD_INFORMATION"),
        )
    })?;
    let before = le32(&rec, si);
    let after = before | add;
    for o in std::iter::once(si).chain(fns.iter().copied()) {
        let v = le32(&rec, o) | add;
        rec[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
    refix(&mut rec);
    vol.write_record(inode, &rec)?;

    // the parent directory's $I30 index
    let (mut prec, prec_off) = vol.read_record(parent)?;
    let mut root = None;
    let mut alloc = None;
    for_each_attr(&prec, |ty, off, len, nonres| match (ty, nonres) {
        (ATTR_INDEX_ROOT, false) => {
            let vo = usize::from(le16(&prec, off + 0x14));
            if vo + 0x20 <= len {
                root = Some(off + vo);
            }
        }
        (ATTR_INDEX_ALLOCATION, true) => {
            let mp = usize::from(le16(&prec, off + 0x20));
            if mp < len {
                alloc = decode_runs(&prec[off + mp..off + len], le64(&prec, off + 0x10))
                    .map(|r| (r, le64(&prec, off + 0x30)));
            }
        }
        _ => {}
    });
    let root = root.ok_or_else(|| {
        ProvisionError::ntfs(
            STEP,
            volume,
            prec_off,
            format!("directory record {parent} has no $INDEX_ROOT"),
        )
    })?;
    let block_size = le32(&prec, root + 8) as usize;
    let mut index_entries = patch_index_node(&mut prec, root + 0x10, inode, add);
    if index_entries > 0 {
        refix(&mut prec);
        vol.write_record(parent, &prec)?;
    }
    if let Some((runs, data_size)) = alloc {
        let cs = vol.geometry.cluster_size;
        if !(FIXUP_BLOCK..=65536).contains(&block_size) || !block_size.is_power_of_two() {
            return Err(ProvisionError::ntfs(
                STEP,
                volume,
                prec_off,
                format!("directory record {parent}: index block size {block_size} is out of range"),
            ));
        }
        // the allocation stream, block by block (a block lies in one run when blocks are
        // no larger than clusters; larger blocks are read cluster by cluster)
        let mut pos = 0u64;
        while pos + block_size as u64 <= data_size {
            let mut pieces = Vec::new();
            let mut at = pos;
            while at < pos + block_size as u64 {
                let vcn = at / cs;
                let r = runs
                    .iter()
                    .find(|r| vcn >= r.vcn && vcn < r.vcn + r.len)
                    .and_then(|r| r.lcn.map(|l| (l + vcn - r.vcn) * cs + at % cs))
                    .ok_or_else(|| {
                        ProvisionError::ntfs(
                            STEP,
                            volume,
                            prec_off,
                            format!("directory record {parent}: index VCN {vcn} is not mapped"),
                        )
                    })?;
                let n = (cs - at % cs).min(pos + block_size as u64 - at) as usize;
                pieces.push((r, n));
                at += n as u64;
            }
            let mut block = Vec::with_capacity(block_size);
            for (o, n) in &pieces {
                let mut b = vec![0u8; *n];
                vol.file
                    .read_exact_at(&mut b, *o)
                    .map_err(|e| ProvisionError::ntfs(STEP, volume, *o, e.to_string()))?;
                block.extend(b);
            }
            pos += block_size as u64;
            // blocks not in use (never written, or freed) do not carry a valid INDX record
            if &block[0..4] != b"INDX"
                || unfix_magic(&mut block, b"INDX", volume, pieces[0].0).is_err()
            {
                continue;
            }
            let n = patch_index_node(&mut block, 0x18, inode, add);
            if n > 0 {
                refix(&mut block);
                let mut at = 0usize;
                for (o, len) in &pieces {
                    vol.file
                        .write_all_at(&block[at..at + len], *o)
                        .map_err(|e| ProvisionError::io(STEP, volume, e))?;
                    at += len;
                }
                index_entries += n;
            }
        }
    }
    if index_entries == 0 {
        return Err(ProvisionError::ntfs(
            STEP,
            volume,
            prec_off,
            format!("no index entry of directory record {parent} names file record {inode}"),
        ));
    }
    Ok(AttributeChange {
        inode,
        before,
        after,
        file_names: fns.len(),
        index_entries,
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
