//! An NTFS volume read through the `ntfs` crate: path lookup, directory listings, and the facts
//! of a file's unnamed `$DATA` attribute that matter for native VHD boot (sparse and compressed
//! flags, valid data length, data runs), plus a [`Dev`] over the file's data.
//!
//! The crate does not expose the non-resident attribute header's sizes (allocated, data,
//! initialized = valid data length) or the compression unit; they are read here from the
//! attribute's MFT record after the update-sequence fixups (layout: flatcap.github.io
//! linux-ntfs `attribute_header`, the same offsets ntfs-3g's `ATTR_RECORD` uses [V: ntfsinfo
//! agrees on the test images]).

use std::sync::Arc;

use ntfs::indexes::NtfsFileNameIndex;
use ntfs::structured_values::NtfsAttributeList;
use ntfs::{Ntfs, NtfsAttribute, NtfsAttributeType, NtfsFile};

use crate::io::{read_vec, DevRef, Mapped, MemDev, Run, Stream};

/// `$STANDARD_INFORMATION` file attribute bits (winnt.h `FILE_ATTRIBUTE_*`).
pub const FILE_ATTRIBUTE_SPARSE_FILE: u32 = 0x0200;
pub const FILE_ATTRIBUTE_COMPRESSED: u32 = 0x0800;
pub const FILE_ATTRIBUTE_ENCRYPTED: u32 = 0x4000;
/// Attribute header flags (`ATTR_IS_*`).
pub const ATTR_IS_COMPRESSED: u16 = 0x0001;
pub const ATTR_IS_ENCRYPTED: u16 = 0x4000;
pub const ATTR_IS_SPARSE: u16 = 0x8000;

/// What a file's unnamed `$DATA` looks like on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFacts {
    /// MFT record number.
    pub record: u64,
    /// `$STANDARD_INFORMATION` file attributes.
    pub file_attributes: u32,
    /// Flags of the `$DATA` attribute header (of its first piece when split).
    pub attr_flags: u16,
    pub resident: bool,
    /// Data described by an `$ATTRIBUTE_LIST` (split over several MFT records).
    pub attribute_list: bool,
    pub data_size: u64,
    pub allocated_size: u64,
    /// Valid data length: bytes beyond it read as zeros and are not stored.
    pub initialized_size: u64,
    /// Non-resident data runs (empty for resident data).
    pub runs: Vec<Run>,
}

impl DataFacts {
    /// Number of sparse runs and the bytes they cover.
    pub fn holes(&self) -> (usize, u64) {
        self.runs
            .iter()
            .filter(|r| r.physical.is_none())
            .fold((0, 0), |(n, b), r| (n + 1, b + r.len))
    }
    /// Every reason Windows would not treat this data as plain, fully allocated bytes.
    pub fn irregularities(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.file_attributes & FILE_ATTRIBUTE_SPARSE_FILE != 0 {
            out.push("FILE_ATTRIBUTE_SPARSE_FILE set in $STANDARD_INFORMATION".to_string());
        }
        if self.attr_flags & ATTR_IS_SPARSE != 0 {
            out.push("$DATA attribute flag SPARSE (0x8000) set".to_string());
        }
        let (n, bytes) = self.holes();
        if n > 0 {
            out.push(format!("{n} sparse run(s) covering {bytes} bytes"));
        }
        if self.file_attributes & FILE_ATTRIBUTE_COMPRESSED != 0
            || self.attr_flags & ATTR_IS_COMPRESSED != 0
        {
            out.push("compressed (NTFS LZNT1)".to_string());
        }
        if self.file_attributes & FILE_ATTRIBUTE_ENCRYPTED != 0
            || self.attr_flags & ATTR_IS_ENCRYPTED != 0
        {
            out.push("encrypted (EFS)".to_string());
        }
        if self.initialized_size != self.data_size {
            out.push(format!(
                "valid data length {} != data size {} (the tail is not written)",
                self.initialized_size, self.data_size
            ));
        }
        out
    }
}

/// A file's `$DATA` facts and, for resident data, its bytes.
type FileData = (DataFacts, Option<Vec<u8>>);

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
    /// Data size as recorded in the directory index (`$FILE_NAME`; may lag the file's own).
    pub size: u64,
}

/// An opened NTFS volume.
pub struct Volume {
    dev: DevRef,
    fs: Stream,
    ntfs: Ntfs,
    /// Volume label (`$VOLUME_NAME`), if any.
    pub label: Option<String>,
    pub cluster_size: u32,
    pub size: u64,
}

fn e(what: &str, err: impl std::fmt::Display) -> String {
    format!("{what}: {err}")
}

fn u16le(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u64le(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

impl Volume {
    /// Open the NTFS volume on `dev` (a partition). Errors name what failed (boot sector, MFT,
    /// upcase table) in the `ntfs` crate's words, which carry byte positions.
    pub fn open(dev: DevRef) -> Result<Volume, String> {
        let mut fs = Stream::new(dev.clone());
        let mut ntfs = Ntfs::new(&mut fs).map_err(|x| e("NTFS boot sector", x))?;
        ntfs.read_upcase_table(&mut fs)
            .map_err(|x| e("NTFS $UpCase", x))?;
        let label = match ntfs.volume_name(&mut fs) {
            Some(Ok(n)) => Some(n.name().to_string_lossy()),
            Some(Err(x)) => return Err(e("NTFS $Volume name", x)),
            None => None,
        };
        let cluster_size = ntfs.cluster_size();
        let size = ntfs.size();
        Ok(Volume {
            dev,
            fs,
            ntfs,
            label,
            cluster_size,
            size,
        })
    }

    fn lookup<'n>(
        ntfs: &'n Ntfs,
        fs: &mut Stream,
        path: &str,
    ) -> Result<Option<NtfsFile<'n>>, String> {
        let mut cur = ntfs
            .root_directory(fs)
            .map_err(|x| e("NTFS root directory", x))?;
        for comp in path.split(['\\', '/']).filter(|c| !c.is_empty()) {
            if !cur.is_directory() {
                return Ok(None);
            }
            let index = cur
                .directory_index(fs)
                .map_err(|x| e(&format!("directory index above {comp:?}"), x))?;
            let mut finder = index.finder();
            let next = match NtfsFileNameIndex::find(&mut finder, ntfs, fs, comp) {
                None => return Ok(None),
                Some(Err(x)) => return Err(e(&format!("looking up {comp:?}"), x)),
                Some(Ok(entry)) => entry
                    .to_file(ntfs, fs)
                    .map_err(|x| e(&format!("MFT record of {comp:?}"), x))?,
            };
            cur = next;
        }
        Ok(Some(cur))
    }

    /// Whether `path` (`\`-separated, case-insensitive as Windows compares) exists, and
    /// whether it is a directory.
    pub fn stat(&mut self, path: &str) -> Result<Option<bool>, String> {
        let Volume { ntfs, fs, .. } = self;
        Ok(Self::lookup(ntfs, fs, path)?.map(|f| f.is_directory()))
    }

    /// The entries of directory `path` (without `.`), or `None` if it does not exist.
    pub fn list_dir(&mut self, path: &str) -> Result<Option<Vec<DirEntry>>, String> {
        let Volume { ntfs, fs, .. } = self;
        let Some(dir) = Self::lookup(ntfs, fs, path)? else {
            return Ok(None);
        };
        if !dir.is_directory() {
            return Ok(None);
        }
        let index = dir
            .directory_index(fs)
            .map_err(|x| e(&format!("directory index of {path}"), x))?;
        let mut it = index.entries();
        let mut out: Vec<DirEntry> = Vec::new();
        while let Some(entry) = it.next(fs) {
            let entry = entry.map_err(|x| e(&format!("directory {path}"), x))?;
            let Some(key) = entry.key() else { continue };
            let key = key.map_err(|x| e(&format!("directory {path}"), x))?;
            // DOS 8.3 aliases duplicate Win32 names: keep one entry per file.
            if key.namespace() == ntfs::structured_values::NtfsFileNamespace::Dos {
                continue;
            }
            let name = key.name().to_string_lossy();
            if name == "." {
                continue;
            }
            out.push(DirEntry {
                name,
                is_dir: key.is_directory(),
                size: key.data_size(),
            });
        }
        Ok(Some(out))
    }
}

/// How pieces of `$DATA` are read: the volume device, its record and cluster sizes.
struct Geometry<'a> {
    dev: &'a DevRef,
    record_size: usize,
    cluster_size: u32,
}

impl Geometry<'_> {
    /// The MFT record holding `file`'s attribute `attr`, fixed up, and the attribute's offset.
    fn raw_header(
        &self,
        file: &NtfsFile<'_>,
        attr: &NtfsAttribute<'_, '_>,
    ) -> Result<(Vec<u8>, usize), String> {
        let fpos = file.position().value().map(|v| v.get());
        let apos = attr.position().value().map(|v| v.get());
        let (Some(fpos), Some(apos)) = (fpos, apos) else {
            return Err("attribute has no position on the volume".into());
        };
        let size = self.record_size;
        let mut rec = read_vec(self.dev.as_ref(), fpos, size)
            .map_err(|x| e(&format!("MFT record at volume byte {fpos}"), x))?;
        // update sequence array: the last 2 bytes of every 512-byte block were moved there
        let usa_off = usize::from(u16le(&rec, 4).unwrap_or(0));
        let usa_count = usize::from(u16le(&rec, 6).unwrap_or(0));
        for i in 1..usa_count {
            let end = i * 512;
            let fix = rec
                .get(usa_off + 2 * i..usa_off + 2 * i + 2)
                .map(|s| [s[0], s[1]]);
            match (fix, rec.get_mut(end - 2..end)) {
                (Some(f), Some(slot)) => slot.copy_from_slice(&f),
                _ => {
                    return Err(format!(
                        "MFT record at volume byte {fpos}: update sequence array ({usa_count} entries at {usa_off}) does not fit the {size}-byte record"
                    ))
                }
            }
        }
        Ok((rec, (apos - fpos) as usize))
    }

    /// One `$DATA` attribute piece: header flags, sizes (valid in the piece with lowest VCN 0),
    /// lowest VCN, runs.
    fn data_piece(
        &self,
        fs: &mut Stream,
        file: &NtfsFile<'_>,
        attr: &NtfsAttribute<'_, '_>,
        facts: &mut DataFacts,
        memory: &mut Option<Vec<u8>>,
    ) -> Result<(), String> {
        let (rec, off) = self.raw_header(file, attr)?;
        let flags = u16le(&rec, off + 0x0C).unwrap_or(0);
        if attr.is_resident() {
            facts.resident = true;
            facts.attr_flags = flags;
            let value = attr.value(fs).map_err(|x| e("resident $DATA", x))?;
            if let ntfs::attribute_value::NtfsAttributeValue::Resident(v) = value {
                facts.data_size = v.len();
                facts.allocated_size = v.len();
                facts.initialized_size = v.len();
                *memory = Some(v.data().to_vec());
            }
            return Ok(());
        }
        let field = |o: usize, name: &str| {
            u64le(&rec, off + o).ok_or_else(|| {
                format!("$DATA header field {name} beyond its MFT record (offset {off})")
            })
        };
        let lowest_vcn = field(0x10, "lowest VCN")?;
        if lowest_vcn == 0 {
            facts.attr_flags = flags;
            facts.allocated_size = field(0x28, "allocated size")?;
            facts.data_size = field(0x30, "data size")?;
            facts.initialized_size = field(0x38, "initialized size")?;
        }
        let value = attr.value(fs).map_err(|x| e("non-resident $DATA", x))?;
        let ntfs::attribute_value::NtfsAttributeValue::NonResident(v) = value else {
            return Err("$DATA piece is not a plain non-resident value".into());
        };
        let mut logical = lowest_vcn.saturating_mul(u64::from(self.cluster_size));
        for run in v.data_runs() {
            let run = run.map_err(|x| e("$DATA data run", x))?;
            let len = run.allocated_size();
            facts.runs.push(Run {
                logical,
                len,
                physical: run.data_position().value().map(|p| p.get()),
            });
            logical = logical.saturating_add(len);
        }
        Ok(())
    }
}

impl Volume {
    /// The facts of the unnamed `$DATA` of `path`, and (for resident data) its bytes.
    /// `None` when the path does not exist; an error for a directory.
    fn data(&mut self, path: &str) -> Result<Option<FileData>, String> {
        let ntfs: &Ntfs = &self.ntfs;
        let geo = Geometry {
            dev: &self.dev,
            record_size: ntfs.file_record_size() as usize,
            cluster_size: self.cluster_size,
        };
        let fs = &mut self.fs;
        let Some(file) = Volume::lookup(ntfs, fs, path)? else {
            return Ok(None);
        };
        if file.is_directory() {
            return Err(format!("{path} is a directory"));
        }
        let info = file.info().map_err(|x| e("$STANDARD_INFORMATION", x))?;
        let mut facts = DataFacts {
            record: file.file_record_number(),
            file_attributes: info.file_attributes().bits(),
            attr_flags: 0,
            resident: false,
            attribute_list: false,
            data_size: 0,
            allocated_size: 0,
            initialized_size: 0,
            runs: Vec::new(),
        };
        let mut memory = None;
        let mut list = None;
        let mut direct = Vec::new();
        for attr in file.attributes_raw() {
            let attr = attr.map_err(|x| e("MFT attribute", x))?;
            match attr.ty() {
                Ok(NtfsAttributeType::AttributeList) => {
                    let l = attr
                        .structured_value::<_, NtfsAttributeList>(fs)
                        .map_err(|x| e("$ATTRIBUTE_LIST", x))?;
                    list = Some(l);
                }
                Ok(NtfsAttributeType::Data)
                    if attr.name().map(|n| n.is_empty()).unwrap_or(false) =>
                {
                    direct.push(attr);
                }
                _ => {}
            }
        }
        if let Some(list) = list {
            facts.attribute_list = true;
            let mut entries = list.entries();
            while let Some(entry) = entries.next(fs) {
                let entry = entry.map_err(|x| e("$ATTRIBUTE_LIST entry", x))?;
                if !matches!(entry.ty(), Ok(NtfsAttributeType::Data)) || !entry.name().is_empty() {
                    continue;
                }
                let owner = entry
                    .to_file(ntfs, fs)
                    .map_err(|x| e("MFT record named by $ATTRIBUTE_LIST", x))?;
                if owner.file_record_number() != entry.base_file_reference().file_record_number() {
                    return Err("$ATTRIBUTE_LIST names a record that reads back as another".into());
                }
                let attr = entry
                    .to_attribute(&owner)
                    .map_err(|x| e("$DATA named by $ATTRIBUTE_LIST", x))?;
                geo.data_piece(fs, &owner, &attr, &mut facts, &mut memory)?;
            }
        } else {
            for attr in &direct {
                geo.data_piece(fs, &file, attr, &mut facts, &mut memory)?;
            }
        }
        Ok(Some((facts, memory)))
    }

    /// Facts of the unnamed `$DATA` of `path` (`None`: no such file).
    pub fn data_facts(&mut self, path: &str) -> Result<Option<DataFacts>, String> {
        Ok(self.data(path)?.map(|(f, _)| f))
    }

    /// A device over the data of `path`, as Windows reads the file (sparse runs and bytes past
    /// the valid data length read as zeros). Compressed or encrypted data is refused: its
    /// stored bytes are not the file's bytes.
    pub fn open_file(&mut self, path: &str) -> Result<Option<(DataFacts, DevRef)>, String> {
        let Some((facts, memory)) = self.data(path)? else {
            return Ok(None);
        };
        if facts.attr_flags & (ATTR_IS_COMPRESSED | ATTR_IS_ENCRYPTED) != 0 {
            return Err(format!(
                "{path}: $DATA is compressed or encrypted (flags {:#06x}); not read",
                facts.attr_flags
            ));
        }
        let dev: DevRef = match memory {
            Some(bytes) => Arc::new(MemDev(bytes)),
            None => Arc::new(Mapped::new(
                self.dev.clone(),
                facts.runs.clone(),
                facts.data_size,
                facts.initialized_size,
            )),
        };
        Ok(Some((facts, dev)))
    }

    /// The whole content of a small file (hives, BCD, State.ini), at most `max` bytes.
    pub fn read_file(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        let Some((facts, dev)) = self.open_file(path)? else {
            return Ok(None);
        };
        if facts.data_size > max {
            return Err(format!(
                "{path} is {} bytes, more than the {max} bytes read for it",
                facts.data_size
            ));
        }
        read_vec(dev.as_ref(), 0, facts.data_size as usize)
            .map(Some)
            .map_err(|x| e(path, x))
    }
}
