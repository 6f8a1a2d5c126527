//! An NTFS volume read through the `ntfs` crate (no_std + alloc): path lookup (case-insensitive
//! through `$UpCase`, as Windows compares), small files read whole (BCD, hives), and the data
//! runs of a large file (the VHD), so the VHD is then read straight from the volume the way the
//! boot manager's VHD driver maps it.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use ntfs::attribute_value::NtfsAttributeValue;
use ntfs::indexes::NtfsFileNameIndex;
use ntfs::{Ntfs, NtfsFile};

use crate::dev::{Dev, Run, Stream};

/// `$DATA` attribute header flags (`ATTR_IS_*`, linux-ntfs `attribute_header`).
pub const ATTR_IS_COMPRESSED: u16 = 0x0001;
pub const ATTR_IS_ENCRYPTED: u16 = 0x4000;
pub const ATTR_IS_SPARSE: u16 = 0x8000;

/// Where a file's data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileData {
    /// MFT record number.
    pub record: u64,
    /// Data size in bytes.
    pub size: u64,
    /// `$DATA` attribute flags.
    pub flags: u16,
    /// Resident data (small files), else empty.
    pub resident: Option<Vec<u8>>,
    /// Non-resident data runs, in file order.
    pub runs: Vec<Run>,
}

impl FileData {
    /// Sparse runs and the bytes they cover.
    pub fn holes(&self) -> (usize, u64) {
        self.runs
            .iter()
            .filter(|r| r.physical.is_none())
            .fold((0, 0), |(n, b), r| (n + 1, b + r.len))
    }
}

/// An opened NTFS volume over a partition device.
pub struct Volume<'a> {
    fs: Stream<'a>,
    ntfs: Ntfs,
    pub label: Option<String>,
    pub cluster_size: u32,
    pub size: u64,
}

impl<'a> Volume<'a> {
    /// Open the volume: boot sector, MFT, `$UpCase`, `$Volume` name.
    pub fn open(dev: &'a mut dyn Dev) -> Result<Volume<'a>, String> {
        let mut fs = Stream::new(dev);
        let mut ntfs = match Ntfs::new(&mut fs) {
            Ok(n) => n,
            Err(e) => return Err(fs.explain("NTFS boot sector", e)),
        };
        if let Err(e) = ntfs.read_upcase_table(&mut fs) {
            return Err(fs.explain("NTFS $UpCase", e));
        }
        let label = match ntfs.volume_name(&mut fs) {
            Some(Ok(n)) => Some(n.name().to_string_lossy()),
            Some(Err(e)) => return Err(fs.explain("NTFS $Volume name", e)),
            None => None,
        };
        let cluster_size = ntfs.cluster_size();
        let size = ntfs.size();
        Ok(Volume {
            fs,
            ntfs,
            label,
            cluster_size,
            size,
        })
    }

    /// The partition device underneath (for reading a file through its runs).
    pub fn dev(&mut self) -> &mut dyn Dev {
        self.fs.dev()
    }

    fn lookup<'n>(
        ntfs: &'n Ntfs,
        fs: &mut Stream<'_>,
        path: &str,
    ) -> Result<Option<NtfsFile<'n>>, String> {
        let mut cur = match ntfs.root_directory(fs) {
            Ok(r) => r,
            Err(e) => return Err(fs.explain("NTFS root directory", e)),
        };
        for comp in path.split(['\\', '/']).filter(|c| !c.is_empty()) {
            if !cur.is_directory() {
                return Ok(None);
            }
            let index = match cur.directory_index(fs) {
                Ok(i) => i,
                Err(e) => return Err(fs.explain(&format!("directory index above {comp:?}"), e)),
            };
            let mut finder = index.finder();
            let next = match NtfsFileNameIndex::find(&mut finder, ntfs, fs, comp) {
                None => return Ok(None),
                Some(Err(e)) => return Err(fs.explain(&format!("looking up {comp:?}"), e)),
                Some(Ok(entry)) => match entry.to_file(ntfs, fs) {
                    Ok(f) => f,
                    Err(e) => return Err(fs.explain(&format!("MFT record of {comp:?}"), e)),
                },
            };
            cur = next;
        }
        Ok(Some(cur))
    }

    /// Whether `path` exists, and whether it is a directory.
    pub fn stat(&mut self, path: &str) -> Result<Option<bool>, String> {
        let Volume { ntfs, fs, .. } = self;
        Ok(Self::lookup(ntfs, fs, path)?.map(|f| f.is_directory()))
    }

    /// Where the unnamed `$DATA` of `path` lives (`None`: no such file). Resident data is read;
    /// of non-resident data only the runs are collected. Data split over an `$ATTRIBUTE_LIST`
    /// is refused with a clear error (the VHD a provisioner copies onto a fresh volume has a
    /// handful of runs in one record).
    pub fn file_data(&mut self, path: &str) -> Result<Option<FileData>, String> {
        let Volume { ntfs, fs, .. } = self;
        let ntfs: &Ntfs = ntfs;
        let Some(file) = Self::lookup(ntfs, fs, path)? else {
            return Ok(None);
        };
        if file.is_directory() {
            return Err(format!("{path} is a directory"));
        }
        let item = match file.data(fs, "") {
            None => return Err(format!("{path} has no unnamed $DATA attribute")),
            Some(Err(e)) => return Err(fs.explain(&format!("{path} $DATA"), e)),
            Some(Ok(i)) => i,
        };
        let attr = match item.to_attribute() {
            Ok(a) => a,
            Err(e) => return Err(fs.explain(&format!("{path} $DATA"), e)),
        };
        let flags = attr.flags().bits();
        let value = match attr.value(fs) {
            Ok(v) => v,
            Err(e) => return Err(fs.explain(&format!("{path} $DATA value"), e)),
        };
        let mut data = FileData {
            record: file.file_record_number(),
            size: value.len(),
            flags,
            resident: None,
            runs: Vec::new(),
        };
        match value {
            NtfsAttributeValue::Resident(r) => data.resident = Some(r.data().to_vec()),
            NtfsAttributeValue::NonResident(nr) => {
                let mut logical = 0u64;
                for run in nr.data_runs() {
                    let run = match run {
                        Ok(r) => r,
                        Err(e) => return Err(fs.explain(&format!("{path} data run"), e)),
                    };
                    let len = run.allocated_size();
                    data.runs.push(Run {
                        logical,
                        len,
                        physical: run.data_position().value().map(|p| p.get()),
                    });
                    logical = logical.saturating_add(len);
                }
            }
            NtfsAttributeValue::AttributeListNonResident(_) => {
                return Err(format!(
                    "{path}: $DATA is split over an $ATTRIBUTE_LIST (too fragmented); this reader maps single-record data runs only"
                ))
            }
        }
        Ok(Some(data))
    }

    /// The content of a small file (BCD, hives), at most `max` bytes. `None`: no such file.
    pub fn read_file(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        let Some(d) = self.file_data(path)? else {
            return Ok(None);
        };
        if d.size > max {
            return Err(format!(
                "{path} is {} bytes, more than the {max} bytes read for it",
                d.size
            ));
        }
        if d.flags & (ATTR_IS_COMPRESSED | ATTR_IS_ENCRYPTED) != 0 {
            return Err(format!(
                "{path}: $DATA is compressed or encrypted (flags {:#06x})",
                d.flags
            ));
        }
        if let Some(r) = d.resident {
            return Ok(Some(r));
        }
        let mut out = vec![0u8; d.size as usize];
        let mut f = crate::dev::Runs::new(self.fs.dev(), d.runs, d.size);
        f.read_at(0, &mut out).map_err(|e| format!("{path}: {e}"))?;
        Ok(Some(out))
    }
}
