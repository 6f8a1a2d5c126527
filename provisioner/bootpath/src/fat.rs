//! A small read-only FAT12/16/32 reader: enough to find `\EFI\Microsoft\Boot\BCD` on a UEFI
//! system partition (what `bcdboot /f UEFI` writes, and where Windows Boot Manager for UEFI
//! reads its store).
//!
//! Why not a crate: `fatfs` 0.3 (the crates.io release) needs the nightly-only `core_io`
//! crate for `no_std`, and 0.4 is unreleased; this reader is ~300 lines, read-only, and bounded.
//!
//! Layout (Microsoft "FAT: General Overview of On-Disk Format" 1.03): the BPB in sector 0, the
//! FAT type decided by the count of data clusters only (< 4085 FAT12, < 65525 FAT16, else
//! FAT32), long names in VFAT LFN entries (attribute 0x0F) before their 8.3 entry. Names are
//! compared case-insensitively (ASCII), as the firmware's FAT driver and Windows do.
//! Every chain walk is bounded by the volume's cluster count, so a looping FAT is an error.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::dev::Dev;

/// Which FAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatKind {
    Fat12,
    Fat16,
    Fat32,
}

impl FatKind {
    pub fn name(self) -> &'static str {
        match self {
            FatKind::Fat12 => "FAT12",
            FatKind::Fat16 => "FAT16",
            FatKind::Fat32 => "FAT32",
        }
    }
}

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The long name when there is one, else the 8.3 name (`NAME.EXT`).
    pub name: String,
    pub is_dir: bool,
    pub size: u32,
    pub first_cluster: u32,
}

const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0F;

/// An opened FAT volume.
pub struct Fat<'a> {
    dev: &'a mut dyn Dev,
    pub kind: FatKind,
    pub bytes_per_sector: u32,
    pub cluster_size: u32,
    fat_offset: u64,
    /// FAT12/16: the fixed root directory region (offset, bytes).
    root_region: Option<(u64, u64)>,
    /// FAT32: the root directory's first cluster.
    root_cluster: u32,
    data_offset: u64,
    /// Data clusters (numbered 2 ..= clusters + 1).
    pub clusters: u32,
}

fn le16(b: &[u8], o: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[o], b[o + 1]]))
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

impl<'a> Fat<'a> {
    /// Read the boot sector's BPB. Errors name the field and its byte offset in the partition.
    pub fn open(dev: &'a mut dyn Dev) -> Result<Fat<'a>, String> {
        let mut bs = [0u8; 512];
        dev.read_at(0, &mut bs)?;
        if bs[510..512] != [0x55, 0xAA] {
            return Err(format!(
                "FAT boot sector: signature at byte 510 is {:02x} {:02x}, not 55 aa",
                bs[510], bs[511]
            ));
        }
        let bps = le16(&bs, 11);
        if !matches!(bps, 512 | 1024 | 2048 | 4096) {
            return Err(format!(
                "FAT BPB: bytes per sector (byte 11) is {bps}, not 512/1024/2048/4096"
            ));
        }
        let spc = u32::from(bs[13]);
        if spc == 0 || !spc.is_power_of_two() {
            return Err(format!(
                "FAT BPB: sectors per cluster (byte 13) is {spc}, not a power of two"
            ));
        }
        let reserved = le16(&bs, 14);
        let nfats = u32::from(bs[16]);
        let root_entries = le16(&bs, 17);
        let total = match le16(&bs, 19) {
            0 => le32(&bs, 32),
            t => t,
        };
        let fat_size = match le16(&bs, 22) {
            0 => le32(&bs, 36),
            s => s,
        };
        if reserved == 0 || nfats == 0 || fat_size == 0 {
            return Err(format!(
                "FAT BPB: reserved sectors {reserved} (byte 14), FATs {nfats} (byte 16), FAT size {fat_size} (bytes 22/36): none may be 0"
            ));
        }
        let root_sectors = (root_entries * 32).div_ceil(bps);
        let meta =
            u64::from(reserved) + u64::from(nfats) * u64::from(fat_size) + u64::from(root_sectors);
        let Some(data_sectors) = u64::from(total).checked_sub(meta) else {
            return Err(format!(
                "FAT BPB: {total} total sectors (bytes 19/32) do not hold the {meta} sectors of reserved area, FATs and root directory"
            ));
        };
        let clusters = (data_sectors / u64::from(spc)) as u32;
        let kind = if clusters < 4085 {
            FatKind::Fat12
        } else if clusters < 65525 {
            FatKind::Fat16
        } else {
            FatKind::Fat32
        };
        let bps64 = u64::from(bps);
        let fat_offset = u64::from(reserved) * bps64;
        let root_offset = fat_offset + u64::from(nfats) * u64::from(fat_size) * bps64;
        let (root_region, root_cluster) = if kind == FatKind::Fat32 {
            (None, le32(&bs, 44))
        } else {
            (Some((root_offset, u64::from(root_entries) * 32)), 0)
        };
        let data_offset = root_offset + u64::from(root_sectors) * bps64;
        Ok(Fat {
            dev,
            kind,
            bytes_per_sector: bps,
            cluster_size: bps * spc,
            fat_offset,
            root_region,
            root_cluster,
            data_offset,
            clusters,
        })
    }

    fn next_cluster(&mut self, c: u32) -> Result<Option<u32>, String> {
        let (off, bits) = match self.kind {
            FatKind::Fat12 => (u64::from(c) + u64::from(c / 2), 12),
            FatKind::Fat16 => (u64::from(c) * 2, 16),
            FatKind::Fat32 => (u64::from(c) * 4, 32),
        };
        let mut b = [0u8; 4];
        let n = if bits == 32 { 4 } else { 2 };
        self.dev.read_at(self.fat_offset + off, &mut b[..n])?;
        let v = match self.kind {
            FatKind::Fat12 => {
                let w = le16(&b, 0);
                if c & 1 == 1 {
                    w >> 4
                } else {
                    w & 0xFFF
                }
            }
            FatKind::Fat16 => le16(&b, 0),
            FatKind::Fat32 => le32(&b, 0) & 0x0FFF_FFFF,
        };
        let eoc = match self.kind {
            FatKind::Fat12 => 0xFF8,
            FatKind::Fat16 => 0xFFF8,
            FatKind::Fat32 => 0x0FFF_FFF8,
        };
        if v >= eoc {
            return Ok(None);
        }
        if v < 2 || v > self.clusters + 1 {
            return Err(format!(
                "{}: cluster {c} is followed by {v:#x}, outside the data clusters 2..={}",
                self.kind.name(),
                self.clusters + 1
            ));
        }
        Ok(Some(v))
    }

    /// The clusters of a chain starting at `first` (bounded: a loop is an error).
    fn chain(&mut self, first: u32) -> Result<Vec<u32>, String> {
        let mut out = Vec::new();
        if first < 2 || first > self.clusters + 1 {
            return Err(format!(
                "{}: chain starts at cluster {first}, outside the data clusters 2..={}",
                self.kind.name(),
                self.clusters + 1
            ));
        }
        let mut c = Some(first);
        while let Some(cur) = c {
            if out.len() > self.clusters as usize {
                return Err(format!(
                    "{}: the chain from cluster {first} loops",
                    self.kind.name()
                ));
            }
            out.push(cur);
            c = self.next_cluster(cur)?;
        }
        Ok(out)
    }

    fn cluster_offset(&self, c: u32) -> u64 {
        self.data_offset + u64::from(c - 2) * u64::from(self.cluster_size)
    }

    /// The raw bytes of a directory (`None` = the root).
    fn dir_bytes(&mut self, first: Option<u32>) -> Result<Vec<u8>, String> {
        match (first, self.root_region) {
            (None, Some((off, len))) => {
                let mut v = vec![0u8; len as usize];
                self.dev.read_at(off, &mut v)?;
                Ok(v)
            }
            (first, _) => {
                let start = first.unwrap_or(self.root_cluster);
                let chain = self.chain(start)?;
                // a directory holds at most 65536 entries (2 MiB)
                let cs = self.cluster_size as usize;
                let max = (2 << 20) / cs + 1;
                let mut v = vec![0u8; chain.len().min(max) * cs];
                for (i, c) in chain.iter().take(max).enumerate() {
                    let off = self.cluster_offset(*c);
                    self.dev.read_at(off, &mut v[i * cs..(i + 1) * cs])?;
                }
                Ok(v)
            }
        }
    }

    /// The entries of a directory (`None` = the root), without `.`/`..` and volume labels.
    pub fn list(&mut self, first: Option<u32>) -> Result<Vec<Entry>, String> {
        let raw = self.dir_bytes(first)?;
        let mut out = Vec::new();
        let mut lfn: Vec<(u8, [u16; 13])> = Vec::new();
        for e in raw.chunks_exact(32) {
            match e[0] {
                0x00 => break,
                0xE5 => {
                    lfn.clear();
                    continue;
                }
                _ => {}
            }
            let attr = e[11];
            if attr & 0x3F == ATTR_LONG_NAME {
                let mut units = [0u16; 13];
                let pos = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
                for (u, p) in units.iter_mut().zip(pos) {
                    *u = u16::from_le_bytes([e[p], e[p + 1]]);
                }
                lfn.push((e[0] & 0x1F, units));
                continue;
            }
            if attr & ATTR_VOLUME_ID != 0 {
                lfn.clear();
                continue;
            }
            let short = short_name(&e[..11]);
            let name = if lfn.is_empty() {
                short
            } else {
                lfn.sort_by_key(|(ord, _)| *ord);
                let units: Vec<u16> = lfn
                    .iter()
                    .flat_map(|(_, u)| u.iter().copied())
                    .take_while(|&u| u != 0 && u != 0xFFFF)
                    .collect();
                lfn.clear();
                String::from_utf16(&units).unwrap_or(short)
            };
            if name == "." || name == ".." {
                continue;
            }
            let hi = if self.kind == FatKind::Fat32 {
                le16(e, 20) << 16
            } else {
                0
            };
            out.push(Entry {
                name,
                is_dir: attr & ATTR_DIRECTORY != 0,
                size: le32(e, 28),
                first_cluster: hi | le16(e, 26),
            });
        }
        Ok(out)
    }

    /// Look up a `\`- or `/`-separated path (case-insensitive). `None`: it does not exist.
    pub fn find(&mut self, path: &str) -> Result<Option<Entry>, String> {
        let mut dir: Option<u32> = None;
        let mut found: Option<Entry> = None;
        for comp in path.split(['\\', '/']).filter(|c| !c.is_empty()) {
            if let Some(f) = &found {
                if !f.is_dir {
                    return Ok(None);
                }
                // cluster 0 in a `..`-style entry means the root
                dir = (f.first_cluster != 0).then_some(f.first_cluster);
            }
            let entries = self.list(dir)?;
            match entries
                .into_iter()
                .find(|e| e.name.eq_ignore_ascii_case(comp))
            {
                Some(e) => found = Some(e),
                None => return Ok(None),
            }
        }
        Ok(found)
    }

    /// The content of file `path` (at most `max` bytes), `None` when it does not exist.
    pub fn read_file(&mut self, path: &str, max: u32) -> Result<Option<Vec<u8>>, String> {
        let Some(e) = self.find(path)? else {
            return Ok(None);
        };
        if e.is_dir {
            return Err(format!("{path} is a directory"));
        }
        if e.size > max {
            return Err(format!(
                "{path} is {} bytes, more than the {max} bytes read for it",
                e.size
            ));
        }
        let mut out = vec![0u8; e.size as usize];
        if e.size == 0 {
            return Ok(Some(out));
        }
        let chain = self.chain(e.first_cluster)?;
        let cs = self.cluster_size as usize;
        if chain.len() * cs < out.len() {
            return Err(format!(
                "{path}: {} bytes but its cluster chain holds only {} clusters of {cs} bytes",
                e.size,
                chain.len()
            ));
        }
        for (i, c) in chain.iter().enumerate() {
            let start = i * cs;
            if start >= out.len() {
                break;
            }
            let end = (start + cs).min(out.len());
            let off = self.cluster_offset(*c);
            self.dev.read_at(off, &mut out[start..end])?;
        }
        Ok(Some(out))
    }
}

fn short_name(n: &[u8]) -> String {
    let trim = |s: &[u8]| -> String {
        let end = s.iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1);
        s[..end]
            .iter()
            .map(|&b| if b == 0x05 { '\u{e5}' } else { char::from(b) })
            .collect()
    };
    let base = trim(&n[..8]);
    let ext = trim(&n[8..11]);
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}
