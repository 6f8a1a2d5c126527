//! Zero-copy, lazily validated reader for regf hives.
//!
//! Layout facts follow Maxim Suhanov's "Windows registry file format specification"
//! (msuhanov/regf) [V]; what hivex accepts follows hivex `lib/handle.c` [V]. Offsets
//! stored in the hive ("cell offsets") are relative to the start of the hive-bins data,
//! i.e. file offset − 0x1000. Every [`Error`] from this module carries the ABSOLUTE file
//! offset; messages about a cell also name the hbin-relative cell offset.
//!
//! Validation is lazy but safe: [`Hive::parse`] checks the base block and the first
//! hbin header; every cell access checks that the cell lies inside the hive-bins data,
//! is allocated (negative size), is at least 8 bytes and holds the record it is read
//! as. [`Hive::check`] walks the complete hbin chain and the whole key tree (what hivex
//! does when it opens a hive) and reports the first structural error.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::ControlFlow;

use super::names::{utf16_until_nul, RawName};
use super::value_type::*;
use crate::error::{Error, ErrorKind, Format, Result};

/// Size of the base block; hive-bins data starts here.
pub const BASE_BLOCK_SIZE: usize = 0x1000;
/// "No cell" marker used in every offset field.
pub const NIL: u32 = 0xFFFF_FFFF;
/// Maximum data bytes in one `db` segment / the `db` threshold (msuhanov: 16344).
pub const BIG_DATA_SEGMENT: usize = 16344;
/// Deepest key nesting accepted when walking (Windows limits key paths to 512 levels).
pub const MAX_DEPTH: usize = 512;

pub(crate) const NK_FLAGS: usize = 2;
pub(crate) const NK_TIMESTAMP: usize = 4;
pub(crate) const NK_ACCESS: usize = 12;
pub(crate) const NK_PARENT: usize = 16;
pub(crate) const NK_SUBKEY_COUNT: usize = 20;
pub(crate) const NK_SUBKEY_LIST: usize = 28;
pub(crate) const NK_VOLATILE_LIST: usize = 32;
pub(crate) const NK_VALUE_COUNT: usize = 36;
pub(crate) const NK_VALUE_LIST: usize = 40;
pub(crate) const NK_SK: usize = 44;
pub(crate) const NK_CLASS: usize = 48;
pub(crate) const NK_MAX_NAME: usize = 52;
pub(crate) const NK_MAX_CLASS: usize = 56;
pub(crate) const NK_MAX_VALUE_NAME: usize = 60;
pub(crate) const NK_MAX_VALUE_DATA: usize = 64;
pub(crate) const NK_NAME_LEN: usize = 72;
pub(crate) const NK_CLASS_LEN: usize = 74;
pub(crate) const NK_NAME: usize = 76;

pub(crate) const VK_NAME_LEN: usize = 2;
pub(crate) const VK_DATA_SIZE: usize = 4;
pub(crate) const VK_DATA_OFF: usize = 8;
pub(crate) const VK_TYPE: usize = 12;
pub(crate) const VK_FLAGS: usize = 16;
pub(crate) const VK_NAME: usize = 20;

/// nk flag: root key of the hive.
pub const KEY_HIVE_ENTRY: u16 = 0x0004;
/// nk flag: key cannot be deleted.
pub const KEY_NO_DELETE: u16 = 0x0008;
/// nk flag: symbolic link.
pub const KEY_SYM_LINK: u16 = 0x0010;
/// nk flag: name stored one byte per character.
pub const KEY_COMP_NAME: u16 = 0x0020;
/// vk flag: name stored one byte per character.
pub const VALUE_COMP_NAME: u16 = 0x0001;

#[inline]
pub(crate) fn rd16(b: &[u8], i: usize) -> u16 {
    match b.get(i..i.wrapping_add(2)) {
        Some(&[x, y]) => u16::from_le_bytes([x, y]),
        _ => 0,
    }
}
#[inline]
pub(crate) fn rd32(b: &[u8], i: usize) -> u32 {
    match b.get(i..i.wrapping_add(4)) {
        Some(&[a, c, d, e]) => u32::from_le_bytes([a, c, d, e]),
        _ => 0,
    }
}
#[inline]
pub(crate) fn rd64(b: &[u8], i: usize) -> u64 {
    (rd32(b, i) as u64) | ((rd32(b, i.wrapping_add(4)) as u64) << 32)
}

/// File offset of the size field of the cell at hbin-relative `off`.
#[inline]
pub(crate) fn cell_file_offset(off: u32) -> u64 {
    BASE_BLOCK_SIZE as u64 + off as u64
}

/// XOR of the 127 dwords at 0..508 (the plain value, before Windows' substitutions).
pub fn base_block_xor(b: &[u8]) -> u32 {
    (0..127).fold(0u32, |x, i| x ^ rd32(b, i * 4))
}

/// The checksum Windows writes: the XOR, with 0xFFFFFFFF stored as 0xFFFFFFFE and 0 as 1
/// (`HvpHeaderCheckSum`) [V: msuhanov + ReactOS `hivesum.c`].
pub fn windows_checksum(b: &[u8]) -> u32 {
    match base_block_xor(b) {
        0xFFFF_FFFF => 0xFFFF_FFFE,
        0 => 1,
        x => x,
    }
}

/// The base block (file header), decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseBlock {
    pub seq1: u32,
    pub seq2: u32,
    /// Last-written FILETIME.
    pub timestamp: u64,
    pub major: u32,
    pub minor: u32,
    /// 0 = primary file (1/6 = transaction log; rejected).
    pub file_type: u32,
    pub file_format: u32,
    /// Root nk cell offset (hbin-relative).
    pub root: u32,
    /// Hive-bins data size as stored.
    pub bins_size: u32,
    pub clustering: u32,
    /// The UTF-16LE file-name field (up to the first NUL; debug information only).
    pub name: String,
    /// The stored checksum at 508.
    pub checksum_stored: u32,
    /// The plain XOR of dwords 0..127.
    pub checksum_xor: u32,
}

impl BaseBlock {
    /// Does the stored checksum match? Accepted: the value Windows writes (XOR with the
    /// 0→1 / 0xFFFFFFFF→0xFFFFFFFE substitutions) or the plain XOR (hivex writes the
    /// plain XOR and does not apply the substitutions) — the two differ only when the
    /// XOR is 0 or 0xFFFFFFFF.
    pub fn checksum_ok(&self) -> bool {
        let sub = match self.checksum_xor {
            0xFFFF_FFFF => 0xFFFF_FFFE,
            0 => 1,
            x => x,
        };
        self.checksum_stored == sub || self.checksum_stored == self.checksum_xor
    }
    /// A hive is dirty (Windows would replay its transaction logs) when the sequence
    /// numbers differ or the checksum is wrong (msuhanov, "Dirty state of a hive").
    pub fn is_dirty(&self) -> bool {
        self.seq1 != self.seq2 || !self.checksum_ok()
    }
}

/// Which kind of subkey list a key has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// `li`: offsets only.
    Li,
    /// `lf`: offsets + 4-byte name hint (hives 1.3/1.4).
    Lf,
    /// `lh`: offsets + name hash (hives 1.5+).
    Lh,
    /// `ri`: a list of leaves.
    Ri,
}

impl ListKind {
    pub fn signature(self) -> &'static [u8; 2] {
        match self {
            ListKind::Li => b"li",
            ListKind::Lf => b"lf",
            ListKind::Lh => b"lh",
            ListKind::Ri => b"ri",
        }
    }
    pub(crate) fn from_sig(s: &[u8]) -> Option<ListKind> {
        match s {
            b"li" => Some(ListKind::Li),
            b"lf" => Some(ListKind::Lf),
            b"lh" => Some(ListKind::Lh),
            b"ri" => Some(ListKind::Ri),
            _ => None,
        }
    }
    /// Bytes per entry.
    pub fn entry_size(self) -> usize {
        match self {
            ListKind::Lf | ListKind::Lh => 8,
            ListKind::Li | ListKind::Ri => 4,
        }
    }
}

/// Bounds-checked access to the cells of a hive (Copy; shared by keys and values).
#[derive(Clone, Copy)]
pub(crate) struct Cells<'a> {
    pub data: &'a [u8],
    /// Absolute end of the hive-bins data (clamped to the file length).
    pub end: usize,
    pub minor: u32,
}

impl core::fmt::Debug for Cells<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Cells {{ len: {:#x}, bins_end: {:#x}, minor: {} }}",
            self.data.len(),
            self.end,
            self.minor
        )
    }
}

impl<'a> Cells<'a> {
    /// The data of the allocated cell at hbin-relative `off` (without the size field).
    pub fn cell(&self, off: u32, what: &'static str) -> Result<&'a [u8]> {
        let abs = BASE_BLOCK_SIZE + off as usize;
        let fo = abs as u64;
        if off == NIL {
            return Err(Error::not_found(
                Format::Hive,
                fo,
                what,
                "cell offset is 0xFFFFFFFF (none)",
            ));
        }
        if off % 8 != 0 {
            return Err(Error::invalid(
                Format::Hive,
                fo,
                what,
                format!("cell offset {off:#x} (file offset {fo:#x}) is not 8-byte aligned"),
            ));
        }
        if abs.checked_add(4).is_none_or(|e| e > self.end) {
            return Err(Error::invalid(
                Format::Hive,
                fo,
                what,
                format!(
                    "cell offset {off:#x} (file offset {fo:#x}) is outside the hive-bins data (which ends at file offset {:#x}); not a valid cell",
                    self.end
                ),
            ));
        }
        let size = rd32(self.data, abs) as i32;
        if size >= 0 {
            return Err(Error::invalid(
                Format::Hive,
                fo,
                what,
                format!("cell {off:#x} (file offset {fo:#x}) is not allocated (size field {size:#x} is not negative)"),
            ));
        }
        let len = size.unsigned_abs() as usize;
        if len < 8 || abs + len > self.end {
            return Err(Error::invalid(
                Format::Hive,
                fo,
                what,
                format!("cell {off:#x} (file offset {fo:#x}) has an impossible size {len:#x}"),
            ));
        }
        Ok(&self.data[abs + 4..abs + len])
    }

    /// A cell that must start with a 2-byte signature.
    pub fn record(&self, off: u32, sig: &'static [u8; 2], what: &'static str) -> Result<&'a [u8]> {
        let c = self.cell(off, what)?;
        let found = c.get(..2).unwrap_or(c);
        if found != sig {
            return Err(Error::signature(
                Format::Hive,
                cell_file_offset(off) + 4,
                what,
                sig,
                found,
            ));
        }
        Ok(c)
    }

    pub fn key(&self, off: u32) -> Result<Key<'a>> {
        let nk = self.record(off, b"nk", "nk signature")?;
        let name_len = rd16(nk, NK_NAME_LEN) as usize;
        if nk.len() < NK_NAME + name_len {
            return Err(Error::truncated(
                Format::Hive,
                cell_file_offset(off) + 4,
                "nk record",
                (NK_NAME + name_len) as u64,
                nk.len() as u64,
            ));
        }
        Ok(Key {
            cells: *self,
            off,
            nk,
        })
    }

    pub fn value(&self, off: u32) -> Result<Value<'a>> {
        let vk = self.record(off, b"vk", "vk signature")?;
        let name_len = rd16(vk, VK_NAME_LEN) as usize;
        if vk.len() < VK_NAME + name_len {
            return Err(Error::truncated(
                Format::Hive,
                cell_file_offset(off) + 4,
                "vk record",
                (VK_NAME + name_len) as u64,
                vk.len() as u64,
            ));
        }
        Ok(Value {
            cells: *self,
            off,
            vk,
        })
    }

    /// Visit the nk offsets of a subkey list (leaf or `ri`), in on-disk order.
    pub fn visit_list(
        &self,
        list: u32,
        depth: u8,
        f: &mut dyn FnMut(u32) -> Result<ControlFlow<()>>,
    ) -> Result<ControlFlow<()>> {
        let c = self.cell(list, "subkey list")?;
        let sig = c.get(..2).unwrap_or(c);
        let Some(kind) = ListKind::from_sig(sig) else {
            return Err(Error::signature(
                Format::Hive,
                cell_file_offset(list) + 4,
                "subkey list signature",
                b"lf/lh/li/ri",
                sig,
            ));
        };
        let n = rd16(c, 2) as usize;
        let es = kind.entry_size();
        if c.len() < 4 + n * es {
            return Err(Error::truncated(
                Format::Hive,
                cell_file_offset(list) + 4,
                "subkey list entries",
                (4 + n * es) as u64,
                c.len() as u64,
            ));
        }
        for i in 0..n {
            let e = rd32(c, 4 + i * es);
            if kind == ListKind::Ri {
                if depth > 0 {
                    return Err(Error::invalid(
                        Format::Hive,
                        cell_file_offset(list) + 4,
                        "ri entry",
                        "an ri list may not point to another ri list",
                    ));
                }
                if self.visit_list(e, depth + 1, f)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            } else if f(e)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// A parsed hive: a base block plus lazy access to the cells.
#[derive(Clone, Debug)]
pub struct Hive<'a> {
    pub(crate) cells: Cells<'a>,
    base: BaseBlock,
}

/// Counts produced by [`Hive::check`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HiveStats {
    pub bins: usize,
    pub keys: usize,
    pub values: usize,
    pub security_cells: usize,
    pub allocated_cells: usize,
    pub free_cells: usize,
    pub free_bytes: u64,
}

/// One hbin, as found by [`Hive::bins`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinInfo {
    /// hbin-relative offset of the bin.
    pub offset: u32,
    pub size: u32,
}

impl<'a> Hive<'a> {
    /// Parse the base block and the first hbin header. The tree is read lazily.
    ///
    /// A dirty hive (sequence numbers differ or bad checksum) still parses so that tools
    /// can report it: see [`BaseBlock::is_dirty`].
    pub fn parse(data: &'a [u8]) -> Result<Hive<'a>> {
        let b = crate::bytes::Bytes::new(Format::Hive, data);
        b.slice(0, BASE_BLOCK_SIZE, "base block")?;
        b.expect_sig(0, b"regf", "base block signature")?;
        let major = rd32(data, 20);
        let minor = rd32(data, 24);
        if major != 1 {
            return Err(Error::mismatch(
                Format::Hive,
                20,
                "major version",
                1,
                major as u64,
            ));
        }
        if !(2..=6).contains(&minor) {
            return Err(Error::unsupported(
                Format::Hive,
                24,
                "minor version",
                format!("hive version 1.{minor} (1.2..=1.6 are read)"),
            ));
        }
        let file_type = rd32(data, 28);
        if file_type != 0 {
            return Err(Error::new(
                Format::Hive,
                28,
                "file type",
                ErrorKind::Invalid(format!(
                    "file type {file_type} is a transaction log, not a primary hive file (0)"
                )),
            ));
        }
        let file_format = rd32(data, 32);
        if file_format != 1 {
            return Err(Error::mismatch(
                Format::Hive,
                32,
                "file format",
                1,
                file_format as u64,
            ));
        }
        let bins_size = rd32(data, 40);
        if bins_size == 0 || bins_size % 4096 != 0 {
            return Err(Error::invalid(
                Format::Hive,
                40,
                "hive bins data size",
                format!("{bins_size:#x} is not a non-zero multiple of 4096"),
            ));
        }
        let name_bytes = data.get(48..112).unwrap_or(&[]);
        let base = BaseBlock {
            seq1: rd32(data, 4),
            seq2: rd32(data, 8),
            timestamp: rd64(data, 12),
            major,
            minor,
            file_type,
            file_format,
            root: rd32(data, 36),
            bins_size,
            clustering: rd32(data, 44),
            name: utf16_until_nul(name_bytes),
            checksum_stored: rd32(data, 508),
            checksum_xor: base_block_xor(data),
        };
        let end = (BASE_BLOCK_SIZE + bins_size as usize).min(data.len());
        b.expect_sig(BASE_BLOCK_SIZE, b"hbin", "first hbin signature")?;
        let first_size = rd32(data, BASE_BLOCK_SIZE + 8);
        if rd32(data, BASE_BLOCK_SIZE + 4) != 0 {
            return Err(Error::mismatch(
                Format::Hive,
                BASE_BLOCK_SIZE as u64 + 4,
                "first hbin offset",
                0,
                rd32(data, BASE_BLOCK_SIZE + 4) as u64,
            ));
        }
        if first_size < 4096 || first_size % 4096 != 0 {
            return Err(Error::invalid(
                Format::Hive,
                BASE_BLOCK_SIZE as u64 + 8,
                "first hbin size",
                format!("{first_size:#x} is not a non-zero multiple of 4096"),
            ));
        }
        Ok(Hive {
            cells: Cells { data, end, minor },
            base,
        })
    }

    pub fn base(&self) -> &BaseBlock {
        &self.base
    }

    /// The whole input.
    pub fn bytes(&self) -> &'a [u8] {
        self.cells.data
    }

    /// The root key (the nk at the base block's root offset). The KEY_HIVE_ENTRY flag is
    /// not required: Windows 10 Mobile's SAM and BBI have root flags 0x20.
    pub fn root(&self) -> Result<Key<'a>> {
        self.cells.key(self.base.root)
    }

    /// The key at hbin-relative cell offset `off`.
    pub fn key_at(&self, off: u32) -> Result<Key<'a>> {
        self.cells.key(off)
    }

    /// The value at hbin-relative cell offset `off`.
    pub fn value_at(&self, off: u32) -> Result<Value<'a>> {
        self.cells.value(off)
    }

    /// Open a key by backslash-separated path, case-insensitively. `""` and `"\\"` are the
    /// root; leading/trailing/doubled backslashes are ignored.
    pub fn open(&self, path: &str) -> Result<Option<Key<'a>>> {
        let mut k = self.root()?;
        for comp in path.split('\\').filter(|c| !c.is_empty()) {
            match k.subkey(comp)? {
                Some(s) => k = s,
                None => return Ok(None),
            }
        }
        Ok(Some(k))
    }

    /// Walk the hbin chain from 0x1000 to the end of the hive-bins data (what hivex does on
    /// open) and return every bin; errors name the file offset where the chain breaks.
    pub fn bins(&self) -> Result<Vec<BinInfo>> {
        let data = self.cells.data;
        let want_end = BASE_BLOCK_SIZE + self.base.bins_size as usize;
        if data.len() < want_end {
            return Err(Error::truncated(
                Format::Hive,
                data.len() as u64,
                "hive bins data",
                want_end as u64 - BASE_BLOCK_SIZE as u64,
                data.len().saturating_sub(BASE_BLOCK_SIZE) as u64,
            ));
        }
        let mut bins = Vec::new();
        let mut pos = BASE_BLOCK_SIZE;
        while pos < want_end {
            let sig = data.get(pos..pos + 4).unwrap_or(&[]);
            if sig != b"hbin" {
                return Err(Error::new(
                    Format::Hive,
                    pos as u64,
                    "hbin signature",
                    ErrorKind::Invalid(format!(
                        "hbin chain broken: trailing garbage at file offset {pos:#x} after {} bins, before the end of the hive-bins data at {want_end:#x} (expected \"hbin\", found {:02x?})",
                        bins.len(),
                        sig
                    )),
                ));
            }
            let off = rd32(data, pos + 4);
            let size = rd32(data, pos + 8) as usize;
            if off as usize != pos - BASE_BLOCK_SIZE {
                return Err(Error::mismatch(
                    Format::Hive,
                    pos as u64 + 4,
                    "hbin offset field",
                    (pos - BASE_BLOCK_SIZE) as u64,
                    off as u64,
                ));
            }
            if size < 4096 || size % 4096 != 0 || pos + size > want_end {
                return Err(Error::invalid(
                    Format::Hive,
                    pos as u64 + 8,
                    "hbin size",
                    format!("{size:#x} is not a multiple of 4096 inside the hive-bins data"),
                ));
            }
            bins.push(BinInfo {
                offset: off,
                size: size as u32,
            });
            pos += size;
        }
        Ok(bins)
    }

    /// Visit every cell of one bin: (hbin-relative offset, signed size field; negative =
    /// allocated). Errors on a cell size that is not a multiple of 8 or overruns the bin.
    pub fn bin_cells(&self, bin: BinInfo, f: &mut dyn FnMut(u32, i32)) -> Result<()> {
        let data = self.cells.data;
        let start = BASE_BLOCK_SIZE + bin.offset as usize;
        let end = start + bin.size as usize;
        let mut pos = start + 32;
        while pos < end {
            let size = rd32(data, pos) as i32;
            let len = size.unsigned_abs() as usize;
            if len < 8 || len % 8 != 0 || pos + len > end {
                return Err(Error::invalid(
                    Format::Hive,
                    pos as u64,
                    "cell size",
                    format!("cell {:#x} has size field {size:#x}: must be a multiple of 8, at least 8, and end inside its hbin ({:#x}..{end:#x})", pos - BASE_BLOCK_SIZE, start),
                ));
            }
            f((pos - BASE_BLOCK_SIZE) as u32, size);
            pos += len;
        }
        Ok(())
    }

    /// Full validation: base block checksum, the hbin chain, every cell size, and the whole
    /// key tree from the root (every nk, subkey list, value list, vk, data cell, sk and
    /// class cell). Returns counts. A dirty base block is reported as an error.
    pub fn check(&self) -> Result<HiveStats> {
        if !self.base.checksum_ok() {
            return Err(Error::new(
                Format::Hive,
                508,
                "base block checksum",
                ErrorKind::Checksum {
                    expected: windows_checksum(self.cells.data),
                    found: self.base.checksum_stored,
                },
            ));
        }
        if self.base.seq1 != self.base.seq2 {
            return Err(Error::new(
                Format::Hive,
                4,
                "sequence numbers",
                ErrorKind::Invalid(format!(
                    "hive is dirty: primary sequence {} != secondary {}",
                    self.base.seq1, self.base.seq2
                )),
            ));
        }
        let mut st = HiveStats::default();
        let bins = self.bins()?;
        st.bins = bins.len();
        // Every allocated cell start, sorted (bins are in ascending order).
        let mut allocated: Vec<u32> = Vec::new();
        for b in &bins {
            let mut r = (0usize, 0u64);
            self.bin_cells(*b, &mut |o, size| {
                if size < 0 {
                    allocated.push(o);
                } else {
                    r.0 += 1;
                    r.1 += size as u64;
                }
            })?;
            st.free_cells += r.0;
            st.free_bytes += r.1;
        }
        st.allocated_cells = allocated.len();
        // A referenced cell must start exactly at an allocated cell of the bin walk.
        let is_cell = |off: u32, what: &'static str| -> Result<()> {
            if allocated.binary_search(&off).is_ok() {
                Ok(())
            } else {
                Err(Error::invalid(
                    Format::Hive,
                    cell_file_offset(off),
                    what,
                    format!("cell offset {off:#x} (file offset {:#x}) is not the start of an allocated cell", cell_file_offset(off)),
                ))
            }
        };
        let mut sks = alloc::collections::BTreeSet::new();
        let mut stack: Vec<(u32, usize)> = alloc::vec![(self.base.root, 0)];
        while let Some((off, depth)) = stack.pop() {
            if depth > MAX_DEPTH {
                return Err(Error::invalid(
                    Format::Hive,
                    cell_file_offset(off),
                    "key depth",
                    format!("keys nested deeper than {MAX_DEPTH} levels (cycle?)"),
                ));
            }
            is_cell(off, "nk cell")?;
            let k = self.cells.key(off)?;
            st.keys += 1;
            if k.class_bytes()?.is_some() {
                is_cell(k.class_offset(), "class name cell")?;
            }
            if let Some(sk) = k.security()? {
                is_cell(sk.offset(), "sk cell")?;
                sks.insert(sk.offset());
            }
            if k.value_count() > 0 {
                is_cell(k.value_list_offset(), "value list cell")?;
            }
            for v in k.values()? {
                st.values += 1;
                is_cell(v.offset(), "vk cell")?;
                match v.storage()? {
                    DataStorage::Inline => {}
                    DataStorage::Cell(o) => is_cell(o, "value data cell")?,
                    DataStorage::BigData(db) => {
                        is_cell(db, "db cell")?;
                        is_cell(rd32(self.cells.cell(db, "db")?, 4), "db segment list")?;
                        for s in v.big_data_segments(db)? {
                            is_cell(s, "db segment")?;
                        }
                    }
                }
                v.data()?;
            }
            if let Some(kind) = k.subkey_list_kind()? {
                let l = k.subkey_list_offset();
                is_cell(l, "subkey list cell")?;
                if kind == ListKind::Ri {
                    let c = self.cells.cell(l, "ri list")?;
                    for i in 0..rd16(c, 2) as usize {
                        is_cell(rd32(c, 4 + 4 * i), "ri leaf cell")?;
                    }
                }
            }
            let n = k.subkey_count();
            let mut seen = 0u32;
            k.visit_subkeys(&mut |c| {
                seen += 1;
                stack.push((c, depth + 1));
                Ok(ControlFlow::Continue(()))
            })?;
            if seen != n {
                return Err(Error::mismatch(
                    Format::Hive,
                    cell_file_offset(off) + 4 + NK_SUBKEY_COUNT as u64,
                    "nk subkey count",
                    seen as u64,
                    n as u64,
                ));
            }
            if st.keys > allocated.len() {
                return Err(Error::invalid(
                    Format::Hive,
                    cell_file_offset(off),
                    "key tree",
                    "more keys than cells: the tree has a cycle",
                ));
            }
        }
        st.security_cells = sks.len();
        Ok(st)
    }
}

/// A key (nk cell). Cheap to copy; borrows the hive bytes.
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    pub(crate) cells: Cells<'a>,
    off: u32,
    nk: &'a [u8],
}

impl<'a> Key<'a> {
    /// hbin-relative cell offset of the nk.
    pub fn offset(&self) -> u32 {
        self.off
    }
    /// The nk cell data (after the size field), zero-copy.
    pub fn raw(&self) -> &'a [u8] {
        self.nk
    }
    pub fn flags(&self) -> u16 {
        rd16(self.nk, NK_FLAGS)
    }
    /// Last-written FILETIME.
    pub fn timestamp(&self) -> u64 {
        rd64(self.nk, NK_TIMESTAMP)
    }
    /// The "access bits" dword at nk+12 (Windows 8+ writes 2 for keys accessed after boot).
    pub fn access_bits(&self) -> u32 {
        rd32(self.nk, NK_ACCESS)
    }
    pub fn parent_offset(&self) -> u32 {
        rd32(self.nk, NK_PARENT)
    }
    /// Number of (stable) subkeys recorded in the nk.
    pub fn subkey_count(&self) -> u32 {
        rd32(self.nk, NK_SUBKEY_COUNT)
    }
    /// Number of values recorded in the nk.
    pub fn value_count(&self) -> u32 {
        rd32(self.nk, NK_VALUE_COUNT)
    }
    pub fn subkey_list_offset(&self) -> u32 {
        rd32(self.nk, NK_SUBKEY_LIST)
    }
    pub fn value_list_offset(&self) -> u32 {
        rd32(self.nk, NK_VALUE_LIST)
    }
    pub fn security_offset(&self) -> u32 {
        rd32(self.nk, NK_SK)
    }
    pub fn class_offset(&self) -> u32 {
        rd32(self.nk, NK_CLASS)
    }
    /// Largest subkey name length (UTF-16 bytes; low 16 bits of nk+52).
    pub fn max_subkey_name_len(&self) -> u32 {
        rd32(self.nk, NK_MAX_NAME) & 0xFFFF
    }
    pub fn max_subkey_class_len(&self) -> u32 {
        rd32(self.nk, NK_MAX_CLASS)
    }
    pub fn max_value_name_len(&self) -> u32 {
        rd32(self.nk, NK_MAX_VALUE_NAME)
    }
    pub fn max_value_data_len(&self) -> u32 {
        rd32(self.nk, NK_MAX_VALUE_DATA)
    }
    /// The stored name (zero-copy) and its encoding.
    pub fn name_raw(&self) -> RawName<'a> {
        let n = rd16(self.nk, NK_NAME_LEN) as usize;
        RawName {
            bytes: self.nk.get(NK_NAME..NK_NAME + n).unwrap_or(&[]),
            compressed: self.flags() & KEY_COMP_NAME != 0,
        }
    }
    /// The stored name bytes (Latin-1 if [`Key::name_is_compressed`], else UTF-16LE).
    pub fn name_bytes(&self) -> &'a [u8] {
        self.name_raw().bytes
    }
    pub fn name_is_compressed(&self) -> bool {
        self.flags() & KEY_COMP_NAME != 0
    }
    /// The decoded name (unpaired UTF-16 surrogates become U+FFFD).
    pub fn name(&self) -> Result<String> {
        Ok(self.name_raw().to_string_lossy())
    }
    /// Case-insensitive name comparison without allocation.
    pub fn name_eq(&self, s: &str) -> bool {
        self.name_raw().eq_ignore_case(s)
    }
    /// The class name cell (UTF-16LE), zero-copy; `None` when the key has no class.
    pub fn class_bytes(&self) -> Result<Option<&'a [u8]>> {
        let off = self.class_offset();
        let len = rd16(self.nk, NK_CLASS_LEN) as usize;
        if off == NIL || len == 0 {
            return Ok(None);
        }
        let c = self.cells.cell(off, "class name")?;
        match c.get(..len) {
            Some(b) => Ok(Some(b)),
            None => Err(Error::truncated(
                Format::Hive,
                cell_file_offset(off) + 4,
                "class name",
                len as u64,
                c.len() as u64,
            )),
        }
    }
    pub fn class_name(&self) -> Result<Option<String>> {
        Ok(self.class_bytes()?.map(|b| {
            let u = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
            char::decode_utf16(u)
                .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()
        }))
    }
    /// The key's security cell (`None` if the offset is 0xFFFFFFFF).
    pub fn security(&self) -> Result<Option<Security<'a>>> {
        let off = self.security_offset();
        if off == NIL {
            return Ok(None);
        }
        Security::read(self.cells, off).map(Some)
    }
    /// The kind of the key's subkey list, `None` when it has none.
    pub fn subkey_list_kind(&self) -> Result<Option<ListKind>> {
        let off = self.subkey_list_offset();
        if off == NIL || self.subkey_count() == 0 {
            return Ok(None);
        }
        let c = self.cells.cell(off, "subkey list")?;
        let sig = c.get(..2).unwrap_or(c);
        ListKind::from_sig(sig).map(Some).ok_or_else(|| {
            Error::signature(
                Format::Hive,
                cell_file_offset(off) + 4,
                "subkey list signature",
                b"lf/lh/li/ri",
                sig,
            )
        })
    }
    /// Visit the nk offsets of the subkeys in on-disk order.
    pub fn visit_subkeys(&self, f: &mut dyn FnMut(u32) -> Result<ControlFlow<()>>) -> Result<()> {
        let off = self.subkey_list_offset();
        if self.subkey_count() == 0 || off == NIL {
            return Ok(());
        }
        self.cells.visit_list(off, 0, f).map(|_| ())
    }
    /// The subkeys, in on-disk (sorted) order.
    pub fn subkeys(&self) -> Result<Vec<Key<'a>>> {
        let mut v = Vec::with_capacity(self.subkey_count().min(4096) as usize);
        let cells = self.cells;
        self.visit_subkeys(&mut |o| {
            v.push(cells.key(o)?);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(v)
    }
    /// The subkey named `name` (case-insensitive), no allocation.
    pub fn subkey(&self, name: &str) -> Result<Option<Key<'a>>> {
        let mut found = None;
        let cells = self.cells;
        self.visit_subkeys(&mut |o| {
            let k = cells.key(o)?;
            if k.name_eq(name) {
                found = Some(k);
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(found)
    }
    /// The value-list offsets (zero-copy view of the list cell's used part).
    pub fn value_offsets(&self) -> Result<&'a [u8]> {
        let n = self.value_count() as usize;
        if n == 0 {
            return Ok(&[]);
        }
        let off = self.value_list_offset();
        let c = self.cells.cell(off, "value list")?;
        c.get(..n * 4).ok_or_else(|| {
            Error::truncated(
                Format::Hive,
                cell_file_offset(off) + 4,
                "value list",
                (n * 4) as u64,
                c.len() as u64,
            )
        })
    }
    /// The values, in value-list order.
    pub fn values(&self) -> Result<Vec<Value<'a>>> {
        let l = self.value_offsets()?;
        l.chunks_exact(4)
            .map(|c| {
                self.cells
                    .value(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            })
            .collect()
    }
    /// The value named `name` (case-insensitive; `""` = the default value).
    pub fn value(&self, name: &str) -> Result<Option<Value<'a>>> {
        for c in self.value_offsets()?.chunks_exact(4) {
            let v = self
                .cells
                .value(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))?;
            if v.name_raw().eq_ignore_case(name) {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

/// A value (vk cell).
#[derive(Clone, Copy, Debug)]
pub struct Value<'a> {
    cells: Cells<'a>,
    off: u32,
    vk: &'a [u8],
}

/// Where a value's data lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataStorage {
    /// In the vk's data-offset field (size bit 31 set).
    Inline,
    /// In one cell at this offset.
    Cell(u32),
    /// In a `db` big-data record at this offset.
    BigData(u32),
}

impl<'a> Value<'a> {
    pub fn offset(&self) -> u32 {
        self.off
    }
    pub fn raw(&self) -> &'a [u8] {
        self.vk
    }
    pub fn flags(&self) -> u16 {
        rd16(self.vk, VK_FLAGS)
    }
    pub fn name_raw(&self) -> RawName<'a> {
        let n = rd16(self.vk, VK_NAME_LEN) as usize;
        RawName {
            bytes: self.vk.get(VK_NAME..VK_NAME + n).unwrap_or(&[]),
            compressed: self.flags() & VALUE_COMP_NAME != 0,
        }
    }
    pub fn name_bytes(&self) -> &'a [u8] {
        self.name_raw().bytes
    }
    /// The name; `""` for the default value.
    pub fn name(&self) -> Result<String> {
        Ok(self.name_raw().to_string_lossy())
    }
    pub fn value_type(&self) -> u32 {
        rd32(self.vk, VK_TYPE)
    }
    /// Data length in bytes (bit 31 masked off).
    pub fn data_len(&self) -> u32 {
        rd32(self.vk, VK_DATA_SIZE) & 0x7FFF_FFFF
    }
    /// The raw data-offset field.
    pub fn data_offset_field(&self) -> u32 {
        rd32(self.vk, VK_DATA_OFF)
    }
    /// Where the data lives (reads the data cell's signature for large data).
    pub fn storage(&self) -> Result<DataStorage> {
        let raw = rd32(self.vk, VK_DATA_SIZE);
        let len = (raw & 0x7FFF_FFFF) as usize;
        let off = self.data_offset_field();
        if raw & 0x8000_0000 != 0 {
            if len > 4 {
                return Err(Error::invalid(
                    Format::Hive,
                    cell_file_offset(self.off) + 4 + 4,
                    "vk data size",
                    format!("inline data of {len} bytes (at most 4 fit)"),
                ));
            }
            return Ok(DataStorage::Inline);
        }
        if len == 0 {
            return Ok(DataStorage::Inline);
        }
        let c = self.cells.cell(off, "value data")?;
        // Windows uses db when minor >= 4 and len > 16344; hivex writes one big cell on any
        // version, so accept a single cell whenever it is large enough.
        if self.cells.minor >= 4
            && len > BIG_DATA_SEGMENT
            && c.len() < len
            && c.get(..2) == Some(b"db")
        {
            return Ok(DataStorage::BigData(off));
        }
        Ok(DataStorage::Cell(off))
    }
    /// The data: borrowed unless it is split into `db` segments.
    pub fn data(&self) -> Result<Cow<'a, [u8]>> {
        let len = self.data_len() as usize;
        match self.storage()? {
            DataStorage::Inline => Ok(Cow::Borrowed(
                self.vk.get(VK_DATA_OFF..VK_DATA_OFF + len).unwrap_or(&[]),
            )),
            DataStorage::Cell(off) => {
                let c = self.cells.cell(off, "value data")?;
                c.get(..len).map(Cow::Borrowed).ok_or_else(|| {
                    Error::truncated(
                        Format::Hive,
                        cell_file_offset(off) + 4,
                        "value data",
                        len as u64,
                        c.len() as u64,
                    )
                })
            }
            DataStorage::BigData(off) => {
                let segs = self.big_data_segments(off)?;
                let mut out = Vec::with_capacity(len);
                for s in segs {
                    let c = self.cells.cell(s, "db segment")?;
                    let take = (len - out.len()).min(BIG_DATA_SEGMENT).min(c.len());
                    out.extend_from_slice(&c[..take]);
                    if out.len() == len {
                        break;
                    }
                }
                if out.len() != len {
                    return Err(Error::truncated(
                        Format::Hive,
                        cell_file_offset(off) + 4,
                        "db segments",
                        len as u64,
                        out.len() as u64,
                    ));
                }
                Ok(Cow::Owned(out))
            }
        }
    }
    /// Offsets of the segment cells of a `db` record.
    pub(crate) fn big_data_segments(&self, db: u32) -> Result<Vec<u32>> {
        let c = self.cells.record(db, b"db", "db signature")?;
        let n = rd16(c, 2) as usize;
        let list = rd32(c, 4);
        let l = self.cells.cell(list, "db segment list")?;
        let l = l.get(..n * 4).ok_or_else(|| {
            Error::truncated(
                Format::Hive,
                cell_file_offset(list) + 4,
                "db segment list",
                (n * 4) as u64,
                l.len() as u64,
            )
        })?;
        Ok(l.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn wrong_type(&self, want: &str) -> Error {
        Error::new(
            Format::Hive,
            cell_file_offset(self.off) + 4 + VK_TYPE as u64,
            "value type",
            ErrorKind::Invalid(format!(
                "value {:?} has type {}, not {want}",
                self.name_raw().to_string_lossy(),
                self.value_type()
            )),
        )
    }
    /// REG_SZ / REG_EXPAND_SZ / REG_LINK as a string (UTF-16LE up to the first NUL).
    pub fn as_string(&self) -> Result<String> {
        match self.value_type() {
            REG_SZ | REG_EXPAND_SZ | REG_LINK => Ok(utf16_until_nul(&self.data()?)),
            _ => Err(self.wrong_type("REG_SZ/REG_EXPAND_SZ/REG_LINK")),
        }
    }
    /// REG_DWORD (little-endian) or REG_DWORD_BIG_ENDIAN; data must be 4 bytes.
    pub fn as_dword(&self) -> Result<u32> {
        let t = self.value_type();
        if t != REG_DWORD && t != REG_DWORD_BIG_ENDIAN {
            return Err(self.wrong_type("REG_DWORD"));
        }
        let d = self.data()?;
        match *d {
            [a, b, c, e] if t == REG_DWORD => Ok(u32::from_le_bytes([a, b, c, e])),
            [a, b, c, e] => Ok(u32::from_be_bytes([a, b, c, e])),
            _ => Err(Error::mismatch(
                Format::Hive,
                cell_file_offset(self.off) + 4 + 4,
                "REG_DWORD data size",
                4,
                d.len() as u64,
            )),
        }
    }
    /// REG_QWORD; data must be 8 bytes.
    pub fn as_qword(&self) -> Result<u64> {
        if self.value_type() != REG_QWORD {
            return Err(self.wrong_type("REG_QWORD"));
        }
        let d = self.data()?;
        match *d {
            [a, b, c, e, f, g, h, i] => Ok(u64::from_le_bytes([a, b, c, e, f, g, h, i])),
            _ => Err(Error::mismatch(
                Format::Hive,
                cell_file_offset(self.off) + 4 + 4,
                "REG_QWORD data size",
                8,
                d.len() as u64,
            )),
        }
    }
    /// REG_MULTI_SZ as a list of strings (stops at the first empty string, i.e. the
    /// double NUL; an empty value or a lone NUL pair is an empty list).
    pub fn as_multi_sz(&self) -> Result<Vec<String>> {
        if self.value_type() != REG_MULTI_SZ {
            return Err(self.wrong_type("REG_MULTI_SZ"));
        }
        let d = self.data()?;
        let units: Vec<u16> = d
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let mut out = Vec::new();
        for s in units.split(|&u| u == 0) {
            if s.is_empty() {
                break;
            }
            out.push(
                char::decode_utf16(s.iter().copied())
                    .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect(),
            );
        }
        Ok(out)
    }
}

/// A security cell (`sk`).
#[derive(Clone, Copy, Debug)]
pub struct Security<'a> {
    off: u32,
    sk: &'a [u8],
}

impl<'a> Security<'a> {
    pub(crate) fn read(cells: Cells<'a>, off: u32) -> Result<Security<'a>> {
        let sk = cells.record(off, b"sk", "sk signature")?;
        let n = rd32(sk, 16) as usize;
        if sk.len() < 20 + n {
            return Err(Error::truncated(
                Format::Hive,
                cell_file_offset(off) + 4,
                "sk descriptor",
                (20 + n) as u64,
                sk.len() as u64,
            ));
        }
        Ok(Security { off, sk })
    }
    pub fn offset(&self) -> u32 {
        self.off
    }
    pub fn flink(&self) -> u32 {
        rd32(self.sk, 4)
    }
    pub fn blink(&self) -> u32 {
        rd32(self.sk, 8)
    }
    /// Number of keys that use this descriptor.
    pub fn refcount(&self) -> u32 {
        rd32(self.sk, 12)
    }
    /// The self-relative SECURITY_DESCRIPTOR bytes.
    pub fn descriptor(&self) -> &'a [u8] {
        let n = rd32(self.sk, 16) as usize;
        self.sk.get(20..20 + n).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hive::{Editor, NewHive};
    use rstest::rstest;

    fn small_hive() -> Vec<u8> {
        let mut ed = Editor::new_hive(&NewHive::default()).unwrap();
        ed.create_key("A\\B").unwrap();
        ed.set_value("A", "v", REG_SZ, &[b'x', 0, 0, 0, b'y', 0])
            .unwrap();
        ed.set_value("A", "d", REG_DWORD, &5u32.to_le_bytes())
            .unwrap();
        ed.finish(42)
    }

    /// Make the plain XOR of the base block equal `target` by adjusting a reserved dword.
    fn force_xor(b: &mut [u8], target: u32) {
        put(b, 200, 0);
        let x = base_block_xor(b);
        put(b, 200, x ^ target);
        assert_eq!(base_block_xor(b), target);
    }
    fn put(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[rstest]
    #[case(0, 1, true)] // Windows substitution 0 -> 1
    #[case(0, 0, true)] // plain XOR (hivex)
    #[case(0xFFFF_FFFF, 0xFFFF_FFFE, true)]
    #[case(0xFFFF_FFFF, 0xFFFF_FFFF, true)]
    #[case(0, 2, false)]
    #[case(0x1234, 0x1234, true)]
    #[case(0x1234, 0x1235, false)]
    fn checksum_accepts_windows_and_plain(#[case] xor: u32, #[case] stored: u32, #[case] ok: bool) {
        let mut b = small_hive();
        force_xor(&mut b, xor);
        put(&mut b, 508, stored);
        let h = Hive::parse(&b).unwrap();
        assert_eq!(h.base().checksum_ok(), ok);
        assert_eq!(h.base().is_dirty(), !ok);
        assert_eq!(h.check().is_ok(), ok);
    }

    #[test]
    fn windows_checksum_substitutes() {
        let mut b = small_hive();
        force_xor(&mut b, 0);
        assert_eq!(windows_checksum(&b), 1);
        force_xor(&mut b, 0xFFFF_FFFF);
        assert_eq!(windows_checksum(&b), 0xFFFF_FFFE);
    }

    #[rstest]
    #[case::short(100, None, 0)]
    #[case::signature(8192, Some((0usize, 0x1234_5678u32)), 0)]
    #[case::major(8192, Some((20, 2)), 20)]
    #[case::log_file(8192, Some((28, 1)), 28)]
    #[case::bins_size(8192, Some((40, 123)), 40)]
    #[case::first_hbin(8192, Some((0x1000, 0)), 0x1000)]
    fn parse_errors_carry_offsets(
        #[case] len: usize,
        #[case] patch: Option<(usize, u32)>,
        #[case] off: u64,
    ) {
        let mut b = small_hive();
        b.truncate(len);
        if let Some((at, v)) = patch {
            put(&mut b, at, v);
        }
        let e = Hive::parse(&b).unwrap_err();
        assert_eq!(e.offset, off, "{e}");
    }

    #[test]
    fn cell_access_is_bounds_checked() {
        let b = small_hive();
        let h = Hive::parse(&b).unwrap();
        let e = h.key_at(0x10_0000).unwrap_err();
        assert!(e.to_string().contains("outside the hive-bins data"), "{e}");
        assert!(h.key_at(0x24).unwrap_err().to_string().contains("aligned"));
        let e = h.key_at(0xFF8).unwrap_err(); // the free tail cell or beyond
        assert!(e.offset >= 0x1FF8);
        // an sk read as an nk: wrong signature, offset = cell data (file offset)
        let sk = h.root().unwrap().security_offset();
        let e = h.key_at(sk).unwrap_err();
        assert_eq!(e.offset, 0x1000 + sk as u64 + 4);
        assert!(matches!(e.kind, ErrorKind::BadSignature { .. }));
    }

    #[test]
    fn typed_views() {
        let b = small_hive();
        let h = Hive::parse(&b).unwrap();
        let a = h.open("\\a\\").unwrap().unwrap();
        let v = a.value("V").unwrap().unwrap();
        assert_eq!(v.as_string().unwrap(), "x");
        assert!(v.as_qword().is_err());
        assert_eq!(a.value("d").unwrap().unwrap().as_dword().unwrap(), 5);
        assert_eq!(h.open("").unwrap().unwrap().offset(), h.base().root);
    }

    /// Flipping bytes anywhere in a hive never panics the reader.
    #[test]
    fn corrupted_bytes_never_panic() {
        let orig = small_hive();
        let mut x = 0x1234_5678_9ABC_DEF0u64;
        for _ in 0..3000 {
            let mut b = orig.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = 0x1000 + (x as usize % (b.len() - 0x1000));
                b[i] = (x >> 32) as u8;
            }
            if let Ok(h) = Hive::parse(&b) {
                let _ = h.check();
                if let Ok(r) = h.root() {
                    let mut stack = alloc::vec![(r, 0)];
                    while let Some((k, d)) = stack.pop() {
                        let _ = k.name();
                        let _ = k.class_name();
                        let _ = k.security();
                        for v in k.values().unwrap_or_default() {
                            let _ = v.data();
                            let _ = v.as_multi_sz();
                        }
                        if d < 8 {
                            stack.extend(
                                k.subkeys()
                                    .unwrap_or_default()
                                    .into_iter()
                                    .map(|s| (s, d + 1)),
                            );
                        }
                    }
                }
            }
        }
    }
}
