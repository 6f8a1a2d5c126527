//! The few NTFS structures the pipeline patches itself: the valid data length and the
//! `$FILE_NAME` sizes of one file (enough to write a file's content straight into the clusters
//! `ntfsfallocate` reserved for it, host-pipeline.md §5, "The extents route") and the file
//! attributes of a file and its parent's index entries. The byte-level parsing — boot sector,
//! update-sequence fixups, attributes, mapping pairs — is [`ufd_formats::ntfs`] (layouts and
//! sources there); this module adds the volume file I/O, the refusals (what it cannot patch
//! safely) and the patches. Verified by ntfs-3g's `ntfsinfo`/`ntfscat` reading back every file
//! this module patched, in the tests.
//!
//! Nothing here calls fsync: the volume files are scratch files of the pipeline (discarded on
//! any error), and the finished image is made durable once, in `Step::Commit`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ufd_formats::ntfs::{
    self, attr_flags, attr_type, file_attribute, offsets, BootSector, Run, FILE_MAGIC, INDX_MAGIC,
};

use crate::error::ProvisionError;
use crate::sparse;

const STEP: &str = "copy the VHD to the UFD";
/// Index entry flag: the last entry of a node (carries no key).
const INDEX_ENTRY_END: u16 = 0x02;

/// A [`ufd_formats::Error`] (absolute offset in the volume file) as this step's error.
fn format_err(path: &Path) -> impl Fn(ufd_formats::Error) -> ProvisionError + '_ {
    move |e| ProvisionError::format(STEP, path, e)
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

/// Find the unnamed `$DATA` attribute in a fixed-up record; refuse what this module cannot
/// patch safely (attribute lists, resident, compressed, encrypted or sparse data, a
/// `$STANDARD_INFORMATION` marking the file sparse/compressed/encrypted).
pub fn data_attr(rec: &[u8], path: &Path, rec_off: u64) -> Result<DataAttr, ProvisionError> {
    let fmt = format_err(path);
    let err = |o: u64, m: String| ProvisionError::ntfs(STEP, path, o, m);
    if !ntfs::record_header(rec, rec_off).map_err(&fmt)?.in_use() {
        return Err(err(rec_off + 0x16, "file record is not in use".into()));
    }
    let mut found = None;
    for a in ntfs::attributes(rec, rec_off).map_err(&fmt)? {
        match a.type_code() {
            attr_type::ATTRIBUTE_LIST => {
                return Err(err(
                    a.base(),
                    "the file has an $ATTRIBUTE_LIST (too fragmented for one record); refusing to patch".into(),
                ))
            }
            attr_type::STANDARD_INFORMATION if !a.non_resident() => {
                let (vo, v) = a.resident_value().map_err(&fmt)?;
                let fa_off = offsets::STANDARD_INFORMATION_FILE_ATTRIBUTES;
                if let Some(fa) = v.get(fa_off..fa_off + 4) {
                    let fa = le32(fa, 0);
                    let refused = file_attribute::SPARSE_FILE
                        | file_attribute::COMPRESSED
                        | file_attribute::ENCRYPTED;
                    if fa & refused != 0 {
                        return Err(err(
                            a.base() + (vo + fa_off) as u64,
                            format!("file attributes {fa:#x} mark the file sparse/compressed/encrypted; a VHD for native boot must be none of these"),
                        ));
                    }
                }
            }
            attr_type::DATA if a.name_len() == 0 => {
                if !a.non_resident() {
                    return Err(err(
                        a.base() + 8,
                        "$DATA is resident (file too small to place)".into(),
                    ));
                }
                let flags = a.flags();
                if flags
                    & (attr_flags::COMPRESSION_MASK | attr_flags::ENCRYPTED | attr_flags::SPARSE)
                    != 0
                {
                    return Err(err(
                        a.base() + 0x0C,
                        format!("$DATA flags {flags:#06x}: sparse/compressed/encrypted data is refused"),
                    ));
                }
                let nr = a.non_resident_info().map_err(&fmt)?;
                if nr.lowest_vcn != 0 {
                    return Err(err(
                        a.base() + 0x10,
                        format!("$DATA starts at VCN {}, not 0", nr.lowest_vcn),
                    ));
                }
                found = Some(DataAttr {
                    runs: nr.runs,
                    flags,
                    allocated_size: nr.allocated_size,
                    data_size: nr.data_size,
                    initialized_size: nr.initialized_size,
                    init_field: a.offset() + offsets::INITIALIZED_SIZE,
                });
            }
            _ => {}
        }
    }
    found.ok_or_else(|| err(rec_off + 0x14, "no unnamed $DATA attribute".into()))
}

/// Set the allocated/data size fields (value offsets 0x28 and 0x30, ntfs-3g `layout.h`
/// `FILE_NAME_ATTR`) of every resident `$FILE_NAME` attribute of a fixed-up record (at volume
/// offset `rec_off`) to the unnamed `$DATA`'s sizes. `ntfsfallocate` leaves the record's own
/// `$FILE_NAME` data size at 0 (it updates only the parent directory's index entry, through
/// ntfs-3g's `ntfs_inode_sync_file_name`, which already carries both sizes); chkdsk compares
/// the two. Returns how many attributes were set; a malformed `$FILE_NAME` is an error (and
/// nothing is changed).
pub fn set_file_name_sizes(
    rec: &mut [u8],
    rec_off: u64,
    allocated: u64,
    data: u64,
) -> ufd_formats::Result<usize> {
    let mut values = Vec::new();
    for a in ntfs::attributes(rec, rec_off)? {
        if a.type_code() == attr_type::FILE_NAME && !a.non_resident() {
            let (vo, v) = a.resident_value()?;
            ntfs::file_name(v, a.base() + vo as u64)?;
            values.push(a.offset() + vo);
        }
    }
    for v in &values {
        let at = v + offsets::FILE_NAME_ALLOCATED_SIZE;
        rec[at..at + 8].copy_from_slice(&allocated.to_le_bytes());
        let at = v + offsets::FILE_NAME_DATA_SIZE;
        rec[at..at + 8].copy_from_slice(&data.to_le_bytes());
    }
    Ok(values.len())
}

/// A volume file opened for reading and patching records.
pub struct Volume<'p> {
    file: File,
    path: &'p Path,
    pub boot: BootSector,
    mft_runs: Vec<Run>,
}

impl<'p> Volume<'p> {
    pub fn open(path: &'p Path, write: bool) -> Result<Volume<'p>, ProvisionError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .map_err(|e| ProvisionError::io(STEP, path, e))?;
        let mut sector = [0u8; 512];
        file.read_exact_at(&mut sector, 0)
            .map_err(|e| ProvisionError::io(STEP, path, e))?;
        let boot = BootSector::parse(&sector).map_err(format_err(path))?;
        let mut v = Volume {
            file,
            path,
            boot,
            mft_runs: vec![Run {
                vcn: 0,
                lcn: Some(boot.mft_lcn),
                len: u64::from(boot.record_size).div_ceil(boot.cluster_size),
            }],
        };
        // Record 0 ($MFT) maps the MFT itself.
        let (rec, off) = v.read_record(ntfs::MFT_RECORD)?;
        v.mft_runs = data_attr(&rec, path, off)?.runs;
        Ok(v)
    }

    /// The volume pieces (offset, len) holding record `inode`, one per contiguous stretch.
    fn record_pieces(&self, inode: u64) -> Result<Vec<(u64, usize)>, ProvisionError> {
        let rs = u64::from(self.boot.record_size);
        let cs = self.boot.cluster_size;
        let unmapped = |at: u64| {
            ProvisionError::ntfs(
                STEP,
                self.path,
                self.boot.mft_offset(),
                format!("MFT byte {at} (record {inode}) is not mapped by $MFT's runs"),
            )
        };
        let mut pieces = Vec::new();
        let mut at = inode.checked_mul(rs).ok_or_else(|| unmapped(u64::MAX))?;
        let end = at + rs;
        while at < end {
            let Some((Some(o), left)) = ntfs::map_offset(&self.mft_runs, cs, at) else {
                return Err(unmapped(at));
            };
            let n = left.min(end - at);
            pieces.push((o, n as usize));
            at += n;
        }
        Ok(pieces)
    }

    /// Read and un-fix record `inode`; returns it and its first byte's volume offset.
    pub fn read_record(&self, inode: u64) -> Result<(Vec<u8>, u64), ProvisionError> {
        let pieces = self.record_pieces(inode)?;
        let mut rec = Vec::with_capacity(self.boot.record_size as usize);
        for (o, n) in &pieces {
            let mut b = vec![0u8; *n];
            self.file
                .read_exact_at(&mut b, *o)
                .map_err(|e| ProvisionError::io(STEP, self.path, e))?;
            rec.extend(b);
        }
        let off = pieces[0].0;
        ntfs::unfix(&mut rec, FILE_MAGIC, off).map_err(format_err(self.path))?;
        Ok((rec, off))
    }

    /// Re-seal (update sequence) a record read by [`Volume::read_record`] and write it back.
    fn write_record(&self, inode: u64, rec: &mut [u8]) -> Result<(), ProvisionError> {
        let pieces = self.record_pieces(inode)?;
        ntfs::refix(rec, pieces[0].0).map_err(format_err(self.path))?;
        let mut at = 0usize;
        for (o, n) in pieces {
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
    let cs = vol.boot.cluster_size;
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
    set_file_name_sizes(&mut rec, rec_off, attr.allocated_size, attr.data_size)
        .map_err(format_err(volume))?;
    vol.write_record(inode, &mut rec)?;
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
    let cs = vol.boot.cluster_size;
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
            let (dst, left) = ntfs::map_offset(&placement.runs, cs, at).ok_or_else(|| {
                ProvisionError::ntfs(STEP, volume, rec_off, format!("VCN {vcn} is not mapped"))
            })?;
            let n = (e - at).min(left);
            let dst = dst.ok_or_else(|| {
                ProvisionError::ntfs(STEP, volume, rec_off, format!("VCN {vcn} is sparse"))
            })?;
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
        // the entry's file reference, then its key (a $FILE_NAME value) at 0x10
        if ntfs::reference_record(le64(node, at)) == inode
            && key_len >= 0x42
            && 0x10 + key_len <= len
        {
            let fa = at + 0x10 + offsets::FILE_NAME_FILE_ATTRIBUTES;
            let v = le32(node, fa) | add;
            node[fa..fa + 4].copy_from_slice(&v.to_le_bytes());
            n += 1;
        }
        at += len;
    }
    n
}

/// Set file attribute bits (`add`, e.g. [`file_attribute::HIDDEN`] | [`file_attribute::SYSTEM`])
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
    let fmt = format_err(volume);
    let (mut rec, rec_off) = vol.read_record(inode)?;
    let mut si = None;
    let mut fns = Vec::new();
    for a in ntfs::attributes(&rec, rec_off).map_err(&fmt)? {
        let ty = a.type_code();
        if a.non_resident() || (ty != attr_type::STANDARD_INFORMATION && ty != attr_type::FILE_NAME)
        {
            continue;
        }
        let (vo, v) = a.resident_value().map_err(&fmt)?;
        let value = a.offset() + vo;
        if ty == attr_type::STANDARD_INFORMATION
            && v.len() >= offsets::STANDARD_INFORMATION_FILE_ATTRIBUTES + 4
        {
            si = Some(value + offsets::STANDARD_INFORMATION_FILE_ATTRIBUTES);
        }
        if ty == attr_type::FILE_NAME {
            ntfs::file_name(v, a.base() + vo as u64).map_err(&fmt)?;
            fns.push(value + offsets::FILE_NAME_FILE_ATTRIBUTES);
        }
    }
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
    vol.write_record(inode, &mut rec)?;

    // the parent directory's $I30 index
    let (mut prec, prec_off) = vol.read_record(parent)?;
    let mut root = None;
    let mut alloc = None;
    for a in ntfs::attributes(&prec, prec_off).map_err(&fmt)? {
        match (a.type_code(), a.non_resident()) {
            (attr_type::INDEX_ROOT, false) => {
                let (vo, v) = a.resident_value().map_err(&fmt)?;
                // INDEX_ROOT: block size u32 @8, then the index header @0x10 (0x10 bytes)
                if v.len() >= 0x20 {
                    root = Some(a.offset() + vo);
                }
            }
            (attr_type::INDEX_ALLOCATION, true) => {
                let nr = a.non_resident_info().map_err(&fmt)?;
                alloc = Some((nr.runs, nr.data_size));
            }
            _ => {}
        }
    }
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
        vol.write_record(parent, &mut prec)?;
    }
    if let Some((runs, data_size)) = alloc {
        let cs = vol.boot.cluster_size;
        if !(ntfs::FIXUP_BLOCK..=ntfs::MAX_RECORD_SIZE as usize).contains(&block_size)
            || !block_size.is_power_of_two()
        {
            return Err(ProvisionError::ntfs(
                STEP,
                volume,
                prec_off,
                format!("directory record {parent}: index block size {block_size} is out of range"),
            ));
        }
        // the allocation stream, block by block, each block in as many contiguous pieces as
        // the runs give it
        let mut pos = 0u64;
        while pos + block_size as u64 <= data_size {
            let mut pieces = Vec::new();
            let mut at = pos;
            while at < pos + block_size as u64 {
                let Some((Some(o), left)) = ntfs::map_offset(&runs, cs, at) else {
                    return Err(ProvisionError::ntfs(
                        STEP,
                        volume,
                        prec_off,
                        format!(
                            "directory record {parent}: index VCN {} is not mapped",
                            at / cs
                        ),
                    ));
                };
                let n = left.min(pos + block_size as u64 - at) as usize;
                pieces.push((o, n));
                at += n as u64;
            }
            let mut block = Vec::with_capacity(block_size);
            for (o, n) in &pieces {
                let mut b = vec![0u8; *n];
                vol.file
                    .read_exact_at(&mut b, *o)
                    .map_err(|e| ProvisionError::io(STEP, volume, e))?;
                block.extend(b);
            }
            pos += block_size as u64;
            // blocks not in use (never written, or freed) do not carry a valid INDX record
            let base = pieces[0].0;
            if ntfs::unfix(&mut block, INDX_MAGIC, base).is_err() {
                continue;
            }
            let n = patch_index_node(&mut block, 0x18, inode, add);
            if n > 0 {
                ntfs::refix(&mut block, base).map_err(&fmt)?;
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

    fn attr(ty: u32, non_resident: bool, body: &[u8]) -> Vec<u8> {
        let len = (0x18 + body.len())
            .next_multiple_of(8)
            .max(if non_resident { 0x48 } else { 0x18 });
        let mut a = vec![0u8; len];
        a[0..4].copy_from_slice(&ty.to_le_bytes());
        a[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        a[8] = non_resident.into();
        if non_resident {
            // lowest VCN 0, mapping pairs at 0x40: 2 clusters at LCN 0x40; sizes 8192/5000/0
            a[0x20] = 0x40;
            a[0x28..0x30].copy_from_slice(&8192u64.to_le_bytes());
            a[0x30..0x38].copy_from_slice(&5000u64.to_le_bytes());
            a[0x40..0x44].copy_from_slice(&[0x11, 0x02, 0x40, 0x00]);
        } else {
            a[0x10..0x14].copy_from_slice(&(body.len() as u32).to_le_bytes());
            a[0x14] = 0x18;
            a[0x18..0x18 + body.len()].copy_from_slice(body);
        }
        a
    }

    fn record(attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut r = vec![0u8; 1024];
        r[0..4].copy_from_slice(b"FILE");
        r[4] = 0x30;
        r[6] = 3;
        r[0x14] = 0x38;
        r[0x16] = 1;
        let mut at = 0x38;
        for a in attrs {
            r[at..at + a.len()].copy_from_slice(a);
            at += a.len();
        }
        r[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        r
    }

    fn file_name(name: &str) -> Vec<u8> {
        let mut v = vec![0u8; 0x42 + 2 * name.len()];
        v[0] = 5;
        v[0x40] = name.len() as u8;
        for (i, c) in name.bytes().enumerate() {
            v[0x42 + 2 * i] = c;
        }
        v
    }

    fn standard_information(fa: u32) -> Vec<u8> {
        let mut v = vec![0u8; 0x48];
        v[0x20..0x24].copy_from_slice(&fa.to_le_bytes());
        v
    }

    fn data() -> Vec<u8> {
        attr(attr_type::DATA, true, &[])
    }

    #[test]
    fn data_attr_of_a_plain_file() {
        let si = attr(
            attr_type::STANDARD_INFORMATION,
            false,
            &standard_information(0x20),
        );
        let rec = record(&[
            si.clone(),
            attr(attr_type::FILE_NAME, false, &file_name("x")),
            data(),
        ]);
        let d = data_attr(&rec, Path::new("v"), 4096).unwrap();
        assert_eq!(
            d.runs,
            [Run {
                vcn: 0,
                lcn: Some(0x40),
                len: 2
            }]
        );
        assert_eq!(
            (d.allocated_size, d.data_size, d.initialized_size),
            (8192, 5000, 0)
        );
        let data_at = 0x38 + si.len() + 0x18 + 0x48;
        assert_eq!(d.init_field, data_at + 0x38);
    }

    fn with(f: impl FnOnce(&mut Vec<Vec<u8>>)) -> Vec<u8> {
        let mut attrs = vec![
            attr(
                attr_type::STANDARD_INFORMATION,
                false,
                &standard_information(0),
            ),
            data(),
        ];
        f(&mut attrs);
        record(&attrs)
    }

    #[rstest]
    #[case::attribute_list(with(|a| a.insert(1, attr(attr_type::ATTRIBUTE_LIST, false, &[0; 8]))), "$ATTRIBUTE_LIST")]
    #[case::sparse_file(with(|a| a[0] = attr(attr_type::STANDARD_INFORMATION, false, &standard_information(0x200))), "sparse/compressed/encrypted")]
    #[case::encrypted_file(with(|a| a[0] = attr(attr_type::STANDARD_INFORMATION, false, &standard_information(0x4000))), "sparse/compressed/encrypted")]
    #[case::resident_data(with(|a| a[1] = attr(attr_type::DATA, false, b"tiny")), "resident")]
    #[case::compressed_data(with(|a| a[1][0x0C] = 1), "flags 0x0001")]
    #[case::sparse_data(with(|a| a[1][0x0D] = 0x80), "flags 0x8000")]
    #[case::starts_past_vcn_0(with(|a| a[1][0x10] = 1), "VCN 1")]
    #[case::bad_runs(with(|a| a[1][0x42] = 0xF0), "run offset")]
    #[case::no_data(with(|a| { a.pop(); }), "no unnamed $DATA")]
    #[case::not_in_use({ let mut r = with(|_| {}); r[0x16] = 0; r }, "not in use")]
    fn data_attr_refusals(#[case] rec: Vec<u8>, #[case] why: &str) {
        let e = data_attr(&rec, Path::new("v.ntfs"), 8192)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(why) && e.contains("v.ntfs") && e.contains("NTFS at byte 0x2"),
            "{e}"
        );
    }

    #[test]
    fn file_name_sizes_are_set_in_every_file_name() {
        let fa = attr(attr_type::FILE_NAME, false, &file_name("hyperV.vhd"));
        let fb = attr(attr_type::FILE_NAME, false, &file_name("HYPERV~1.VHD"));
        let mut rec = record(&[fa.clone(), fb, data()]);
        assert_eq!(set_file_name_sizes(&mut rec, 0, 8192, 5000).unwrap(), 2);
        for v in [0x38 + 0x18, 0x38 + fa.len() + 0x18] {
            assert_eq!(le64(&rec, v + 0x28), 8192);
            assert_eq!(le64(&rec, v + 0x30), 5000);
        }
        // a $FILE_NAME too short for its name: an error, nothing written
        let mut bad = file_name("x");
        bad[0x40] = 40;
        let mut rec = record(&[
            attr(attr_type::FILE_NAME, false, &file_name("a")),
            attr(attr_type::FILE_NAME, false, &bad),
        ]);
        let before = rec.clone();
        assert!(set_file_name_sizes(&mut rec, 0, 1, 1).is_err());
        assert_eq!(rec, before);
    }

    #[test]
    fn index_node_entries_of_the_inode_are_patched() {
        // index header at 0: entries at 0x10, then entries for records 70 and 71 and the end
        let mut node = vec![0u8; 0x10 + 2 * 0x58 + 0x10];
        node[0..4].copy_from_slice(&0x10u32.to_le_bytes());
        let n = node.len() as u32;
        node[4..8].copy_from_slice(&n.to_le_bytes());
        for (i, rec) in [70u64, 71].iter().enumerate() {
            let e = 0x10 + i * 0x58;
            node[e..e + 8].copy_from_slice(&(rec | (3 << 48)).to_le_bytes());
            node[e + 8..e + 10].copy_from_slice(&0x58u16.to_le_bytes());
            node[e + 10..e + 12].copy_from_slice(&0x44u16.to_le_bytes());
            node[e + 0x48..e + 0x4C].copy_from_slice(&0x20u32.to_le_bytes());
        }
        let end = 0x10 + 2 * 0x58;
        node[end + 8] = 0x10;
        node[end + 12] = INDEX_ENTRY_END as u8;
        assert_eq!(patch_index_node(&mut node, 0, 71, 0x6), 1);
        assert_eq!(le32(&node, 0x10 + 0x48), 0x20);
        assert_eq!(le32(&node, 0x10 + 0x58 + 0x48), 0x26);
        assert_eq!(patch_index_node(&mut node, 0, 72, 0x6), 0);
        assert_eq!(patch_index_node(&mut node[..4], 0, 71, 0x6), 0);
    }
}
