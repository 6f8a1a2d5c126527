//! In-place hive editor and new-hive builder.
//!
//! The editor changes an existing hive the way the Windows configuration manager (and
//! hivex `lib/write.c`) do, touching as little as possible:
//!
//! * cells come from the first free cell that is large enough (first fit; split when the
//!   rest is at least 8 bytes; sizes 8-aligned), else from a new hbin appended at the end
//!   (size a multiple of 4096; the base block's hive-bins size is updated);
//! * freed cells get a positive size and are coalesced with free neighbours in the same bin;
//! * subkey lists are rewritten in the kind the key already has (`lf`/`lh`/`li`; under an
//!   `ri` the leaf that covers the name is updated), sorted by upcased name in UTF-16
//!   code-unit order; a key without a list gets `lf` when minor ≤ 4 and `lh` otherwise
//!   (the kinds Windows writes for those versions [V: fixtures]);
//! * a list cell that still has room is rewritten in place, else it is moved;
//! * the parent nk's counts, "largest name/value" fields and timestamp are kept
//!   consistent. Like Windows (ReactOS `CmDeleteValueKey`/`CmDeleteKey` [S]) the maxima
//!   grow on insert and are reset to 0 only when the last value/subkey goes;
//! * new keys inherit the parent's security cell (refcount + 1); deleting a key
//!   decrements it and frees + unlinks the sk cell when it reaches 0;
//! * data of ≤ 4 bytes is stored inline in the vk; data > 16344 bytes is split in `db`
//!   segments when minor ≥ 4 and kept in one cell on 1.3 hives (Windows'
//!   `CmpIsHKeyValueBig`);
//! * names are stored compressed (one byte per char) when every UTF-16 unit is < 0x100.
//!
//! Deleting a value rewrites only the value list (in place), the nk (count, timestamp)
//! and frees the vk and its data cells; nothing else moves.
//!
//! [`Editor::finish`] sets seq1 += 1, seq2 = seq1, the base-block and first-hbin
//! timestamps, the timestamps of every key changed, and the Windows checksum.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::ops::ControlFlow;

use super::names::{cmp_units_ignore_case, encode_name, lf_hint, lh_hash, utf16_bytes};
use super::reader::*;
use crate::error::{Error, ErrorKind, Format, Result};

/// Root security descriptor of a `bcdedit /createstore` store (owner BA, DACL {BA full,
/// SY full}). Data copied from the sk cell at 0x80 of
/// `fixtures/bcd/empty-createstore/BCD` (116 bytes).
pub const BCD_ROOT_SD: [u8; 116] = [
    0x01, 0x00, 0x04, 0x80, 0x48, 0x00, 0x00, 0x00, 0x58, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00, 0x02, 0x00, 0x34, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x18, 0x00,
    0x3f, 0x00, 0x0f, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x20, 0x00, 0x00, 0x00,
    0x20, 0x02, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x3f, 0x00, 0x0f, 0x00, 0x01, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x05, 0x12, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
    0x20, 0x00, 0x00, 0x00, 0x20, 0x02, 0x00, 0x00, 0x01, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
    0x15, 0x00, 0x00, 0x00, 0x30, 0xff, 0xf4, 0xfc, 0x2b, 0x73, 0x06, 0x06, 0x94, 0xe7, 0x1c, 0x02,
    0x01, 0x02, 0x00, 0x00,
];

/// Security descriptor shared by every non-root key of a `bcdedit /createstore` store
/// (DACL {BA 0x00060019 = KEY_READ|WRITE_DAC|WRITE_OWNER, SY full}). Data copied from
/// the sk cell at 0x178 of `fixtures/bcd/empty-createstore/BCD` (116 bytes).
pub const BCD_CHILD_SD: [u8; 116] = [
    0x01, 0x00, 0x04, 0x80, 0x48, 0x00, 0x00, 0x00, 0x58, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00, 0x02, 0x00, 0x34, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x18, 0x00,
    0x19, 0x00, 0x06, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x20, 0x00, 0x00, 0x00,
    0x20, 0x02, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x3f, 0x00, 0x0f, 0x00, 0x01, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x05, 0x12, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
    0x20, 0x00, 0x00, 0x00, 0x20, 0x02, 0x00, 0x00, 0x01, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
    0x15, 0x00, 0x00, 0x00, 0x30, 0xff, 0xf4, 0xfc, 0x2b, 0x73, 0x06, 0x06, 0x94, 0xe7, 0x1c, 0x02,
    0x01, 0x02, 0x00, 0x00,
];

/// Parameters of a new, empty hive ([`Editor::new_hive`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewHive {
    /// Name of the root key (`NewStoreRoot` for bcdedit stores, `ROOT` for many system hives).
    pub root_name: String,
    /// Minor version: 3 for BCD stores, 5 for Windows XP+ system hives.
    pub minor: u32,
    /// Base-block file-name field (debug only). Windows keeps the last 31 UTF-16 units.
    pub file_name: String,
    /// Subkey-list kind for new lists; `None` = `lf` when minor ≤ 4, else `lh`.
    pub list_kind: Option<ListKind>,
    /// Security descriptor of the root key.
    pub root_sd: Vec<u8>,
    /// If set, one sk cell with this descriptor is shared by every non-root key (as
    /// bcdedit does); if `None`, new keys inherit their parent's sk.
    pub child_sd: Option<Vec<u8>>,
    /// Initial base-block / key timestamp (FILETIME).
    pub timestamp: u64,
    /// nk "access bits" dword for the root and new keys (bcdedit on Windows 8+ writes 2).
    pub access_bits: u32,
}

impl Default for NewHive {
    /// Root `ROOT`, minor 5 (`lh`), the bcdedit root descriptor, children inherit.
    fn default() -> Self {
        NewHive {
            root_name: String::from("ROOT"),
            minor: 5,
            file_name: String::new(),
            list_kind: None,
            root_sd: BCD_ROOT_SD.to_vec(),
            child_sd: None,
            timestamp: 0,
            access_bits: 0,
        }
    }
}

impl NewHive {
    /// The shape `bcdedit /createstore` writes: root `NewStoreRoot`, hive 1.3, `lf`
    /// lists, its two security descriptors, access bits 2.
    pub fn bcd() -> Self {
        NewHive {
            root_name: String::from("NewStoreRoot"),
            minor: 3,
            file_name: String::new(),
            list_kind: Some(ListKind::Lf),
            root_sd: BCD_ROOT_SD.to_vec(),
            child_sd: Some(BCD_CHILD_SD.to_vec()),
            timestamp: 0,
            access_bits: 2,
        }
    }
}

const fn align8(n: usize) -> usize {
    (n + 7) & !7
}

#[inline]
fn at(off: u32, field: usize) -> usize {
    BASE_BLOCK_SIZE + off as usize + 4 + field
}

fn ed_err(off: u32, field: &'static str, why: String) -> Error {
    Error::invalid(Format::Hive, cell_file_offset(off), field, why)
}

fn path_components(path: &str) -> Vec<&str> {
    path.split('\\').filter(|c| !c.is_empty()).collect()
}

/// In-place editor over an owned hive buffer.
#[derive(Clone)]
pub struct Editor {
    buf: Vec<u8>,
    minor: u32,
    default_kind: ListKind,
    /// Free cells (offset, size), sorted by offset.
    free: Vec<(u32, u32)>,
    bins: Vec<BinInfo>,
    /// nk cells whose timestamp `finish` must set.
    modified: BTreeSet<u32>,
    child_sd: Option<Vec<u8>>,
    child_sk: Option<u32>,
    access_bits: Option<u32>,
    now: u64,
}

impl core::fmt::Debug for Editor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Editor")
            .field("len", &self.buf.len())
            .field("minor", &self.minor)
            .field("default_kind", &self.default_kind)
            .field("free_cells", &self.free.len())
            .field("bins", &self.bins.len())
            .finish()
    }
}

impl Editor {
    /// Open an existing hive for editing. Refuses dirty hives (sequence numbers differ or
    /// bad checksum: Windows would first replay the `.LOG1/.LOG2` files) and hives that do
    /// not pass [`Hive::check`].
    pub fn open(buf: Vec<u8>) -> Result<Editor> {
        let (minor, bins, free, now) = {
            let h = Hive::parse(&buf)?;
            let b = h.base();
            if b.seq1 != b.seq2 {
                return Err(Error::new(
                    Format::Hive,
                    4,
                    "sequence numbers",
                    ErrorKind::Invalid(format!(
                        "hive is dirty (primary sequence {} != secondary {}): its transaction logs must be replayed by Windows first; refusing to edit",
                        b.seq1, b.seq2
                    )),
                ));
            }
            if !b.checksum_ok() {
                return Err(Error::new(
                    Format::Hive,
                    508,
                    "base block checksum",
                    ErrorKind::Checksum {
                        expected: windows_checksum(&buf),
                        found: b.checksum_stored,
                    },
                ));
            }
            h.check()?;
            let bins = h.bins()?;
            let mut free = Vec::new();
            for bin in &bins {
                h.bin_cells(*bin, &mut |o, s| {
                    if s > 0 {
                        free.push((o, s as u32));
                    }
                })?;
            }
            (b.minor, bins, free, b.timestamp)
        };
        Ok(Editor {
            buf,
            minor,
            default_kind: if minor <= 4 {
                ListKind::Lf
            } else {
                ListKind::Lh
            },
            free,
            bins,
            modified: BTreeSet::new(),
            child_sd: None,
            child_sk: None,
            access_bits: None,
            now,
        })
    }

    /// Build a new, empty hive: base block + one 4 KiB hbin holding the root nk at 0x20,
    /// its sk, and one free cell.
    pub fn new_hive(p: &NewHive) -> Result<Editor> {
        if !(2..=6).contains(&p.minor) {
            return Err(Error::unsupported(
                Format::Hive,
                24,
                "minor version",
                format!("1.{}", p.minor),
            ));
        }
        let kind = match p.list_kind {
            Some(ListKind::Ri) => {
                return Err(Error::invalid(
                    Format::Hive,
                    0,
                    "list kind",
                    "ri is not a leaf list kind",
                ))
            }
            Some(k) => k,
            None if p.minor <= 4 => ListKind::Lf,
            None => ListKind::Lh,
        };
        check_name(&p.root_name)?;
        let (name, compressed) = encode_name(&p.root_name);
        let nk_size = align8(4 + NK_NAME + name.len());
        let sk_size = align8(4 + 20 + p.root_sd.len());
        let bins_size = align_bin(32 + nk_size + sk_size + 8);
        let mut buf = vec![0u8; BASE_BLOCK_SIZE + bins_size];
        // Base block.
        buf[0..4].copy_from_slice(b"regf");
        put32(&mut buf, 20, 1);
        put32(&mut buf, 24, p.minor);
        put32(&mut buf, 32, 1);
        put32(&mut buf, 36, 0x20);
        put32(&mut buf, 40, bins_size as u32);
        put32(&mut buf, 44, 1);
        put64(&mut buf, 12, p.timestamp);
        let units: Vec<u16> = p.file_name.encode_utf16().collect();
        let keep = &units[units.len().saturating_sub(31)..];
        for (i, u) in keep.iter().enumerate() {
            put16(&mut buf, 48 + 2 * i, *u);
        }
        // hbin header.
        let hb = BASE_BLOCK_SIZE;
        buf[hb..hb + 4].copy_from_slice(b"hbin");
        put32(&mut buf, hb + 8, bins_size as u32);
        put64(&mut buf, hb + 20, p.timestamp);
        // Root nk.
        let root = 0x20u32;
        let sk = root + nk_size as u32;
        put32(
            &mut buf,
            at(root, 0) - 4,
            (nk_size as i32).wrapping_neg() as u32,
        );
        let n = at(root, 0);
        buf[n..n + 2].copy_from_slice(b"nk");
        put16(
            &mut buf,
            n + NK_FLAGS,
            KEY_HIVE_ENTRY | KEY_NO_DELETE | if compressed { KEY_COMP_NAME } else { 0 },
        );
        put64(&mut buf, n + NK_TIMESTAMP, p.timestamp);
        put32(&mut buf, n + NK_ACCESS, p.access_bits);
        put32(&mut buf, n + NK_PARENT, NIL);
        put32(&mut buf, n + NK_SUBKEY_LIST, NIL);
        put32(&mut buf, n + NK_VOLATILE_LIST, NIL);
        put32(&mut buf, n + NK_VALUE_LIST, NIL);
        put32(&mut buf, n + NK_SK, sk);
        put32(&mut buf, n + NK_CLASS, NIL);
        put16(&mut buf, n + NK_NAME_LEN, name.len() as u16);
        buf[n + NK_NAME..n + NK_NAME + name.len()].copy_from_slice(&name);
        // Root sk (a one-element circular list).
        put32(
            &mut buf,
            at(sk, 0) - 4,
            (sk_size as i32).wrapping_neg() as u32,
        );
        let s = at(sk, 0);
        buf[s..s + 2].copy_from_slice(b"sk");
        put32(&mut buf, s + 4, sk);
        put32(&mut buf, s + 8, sk);
        put32(&mut buf, s + 12, 1);
        put32(&mut buf, s + 16, p.root_sd.len() as u32);
        buf[s + 20..s + 20 + p.root_sd.len()].copy_from_slice(&p.root_sd);
        // The rest of the bin is one free cell.
        let fr = sk + sk_size as u32;
        let fsize = bins_size as u32 - fr;
        put32(&mut buf, at(fr, 0) - 4, fsize);
        let ck = windows_checksum(&buf);
        put32(&mut buf, 508, ck);
        Ok(Editor {
            buf,
            minor: p.minor,
            default_kind: kind,
            free: vec![(fr, fsize)],
            bins: vec![BinInfo {
                offset: 0,
                size: bins_size as u32,
            }],
            modified: BTreeSet::new(),
            child_sd: p.child_sd.clone(),
            child_sk: None,
            access_bits: Some(p.access_bits),
            now: p.timestamp,
        })
    }

    /// Read view of the current bytes.
    pub fn hive(&self) -> Result<Hive<'_>> {
        Hive::parse(&self.buf)
    }

    /// The current bytes (base block not yet updated; see [`Editor::finish`]).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Subkey-list kind used for keys that have no list yet.
    pub fn default_list_kind(&self) -> ListKind {
        self.default_kind
    }

    fn cells(&self) -> Cells<'_> {
        let end = (BASE_BLOCK_SIZE + rd32(&self.buf, 40) as usize).min(self.buf.len());
        Cells {
            data: &self.buf,
            end,
            minor: self.minor,
        }
    }

    fn get32(&self, off: u32, field: usize) -> u32 {
        rd32(&self.buf, at(off, field))
    }
    fn set16(&mut self, off: u32, field: usize, v: u16) {
        put16(&mut self.buf, at(off, field), v)
    }
    fn set32(&mut self, off: u32, field: usize, v: u32) {
        put32(&mut self.buf, at(off, field), v)
    }
    fn set_bytes(&mut self, off: u32, field: usize, b: &[u8]) {
        let p = at(off, field);
        if let Some(d) = self.buf.get_mut(p..p + b.len()) {
            d.copy_from_slice(b);
        }
    }
    fn cell_cap(&self, off: u32) -> usize {
        (rd32(&self.buf, at(off, 0) - 4) as i32).unsigned_abs() as usize - 4
    }

    // ----------------------------------------------------------------- allocator

    /// Allocate a cell with room for `len` data bytes; the data is zeroed.
    fn alloc(&mut self, len: usize) -> Result<u32> {
        let need = align8(
            len.checked_add(4)
                .filter(|&n| n < 0x4000_0000)
                .ok_or_else(|| {
                    Error::invalid(
                        Format::Hive,
                        0,
                        "cell size",
                        format!("a cell of {len} bytes is too large"),
                    )
                })?,
        )
        .max(8);
        let mut pick = None;
        for (i, &(_, size)) in self.free.iter().enumerate() {
            if size as usize >= need {
                pick = Some(i);
                break;
            }
        }
        let off = match pick {
            Some(i) => {
                let (off, size) = self.free[i];
                let rest = size as usize - need;
                if rest >= 8 {
                    let r = off + need as u32;
                    self.free[i] = (r, rest as u32);
                    put32(&mut self.buf, at(r, 0) - 4, rest as u32);
                    self.write_size(off, need, true);
                } else {
                    self.free.remove(i);
                    self.write_size(off, size as usize, true);
                }
                off
            }
            None => self.append_bin(need)?,
        };
        let cap = self.cell_cap(off);
        let p = at(off, 0);
        if let Some(d) = self.buf.get_mut(p..p + cap) {
            d.fill(0);
        }
        Ok(off)
    }

    fn write_size(&mut self, off: u32, size: usize, allocated: bool) {
        let v = if allocated {
            (size as i32).wrapping_neg() as u32
        } else {
            size as u32
        };
        put32(&mut self.buf, at(off, 0) - 4, v);
    }

    /// Append an hbin large enough for a cell of `need` bytes; returns that cell.
    fn append_bin(&mut self, need: usize) -> Result<u32> {
        let bins_size = rd32(&self.buf, 40) as usize;
        let size = align_bin(need + 32);
        let new_total = bins_size
            .checked_add(size)
            .filter(|&t| t <= 0x7FFF_F000)
            .ok_or_else(|| {
                Error::invalid(
                    Format::Hive,
                    40,
                    "hive bins data size",
                    "the hive would exceed 2 GiB",
                )
            })?;
        let pos = BASE_BLOCK_SIZE + bins_size;
        if self.buf.len() < pos + size {
            self.buf.resize(pos + size, 0);
        }
        self.buf[pos..pos + size].fill(0);
        self.buf[pos..pos + 4].copy_from_slice(b"hbin");
        put32(&mut self.buf, pos + 4, bins_size as u32);
        put32(&mut self.buf, pos + 8, size as u32);
        put32(&mut self.buf, 40, new_total as u32);
        // Keep the base block self-consistent while editing (finish() rewrites it anyway).
        let ck = windows_checksum(&self.buf);
        put32(&mut self.buf, 508, ck);
        let bin = bins_size as u32;
        self.bins.push(BinInfo {
            offset: bin,
            size: size as u32,
        });
        let cell = bin + 32;
        self.write_size(cell, need, true);
        let rest = size - 32 - need;
        if rest >= 8 {
            let r = cell + need as u32;
            self.write_size(r, rest, false);
            self.free.push((r, rest as u32));
        } else if rest > 0 {
            // Cannot happen: sizes are 8-aligned and the bin is 4096-aligned; keep the bin
            // exactly filled anyway.
            self.write_size(cell, need + rest, true);
        }
        Ok(cell)
    }

    fn bin_of(&self, off: u32) -> Option<BinInfo> {
        let i = self.bins.partition_point(|b| b.offset <= off);
        i.checked_sub(1)
            .and_then(|i| self.bins.get(i))
            .copied()
            .filter(|b| off < b.offset + b.size)
    }

    /// Mark a cell free and coalesce it with free neighbours in the same bin.
    fn free_cell(&mut self, off: u32) {
        if off == NIL {
            return;
        }
        let raw = rd32(&self.buf, at(off, 0) - 4) as i32;
        if raw >= 0 {
            return; // already free
        }
        self.modified.remove(&off);
        if self.child_sk == Some(off) {
            self.child_sk = None;
        }
        let mut start = off;
        let mut size = raw.unsigned_abs();
        let Some(bin) = self.bin_of(off) else { return };
        let bin_end = bin.offset + bin.size;
        let mut idx = self.free.partition_point(|&(o, _)| o < off);
        // Next neighbour.
        if let Some(&(no, ns)) = self.free.get(idx) {
            if no == start + size && no < bin_end {
                size += ns;
                self.free.remove(idx);
            }
        }
        // Previous neighbour.
        if idx > 0 {
            let (po, ps) = self.free[idx - 1];
            if po + ps == start && po >= bin.offset + 32 {
                start = po;
                size += ps;
                idx -= 1;
                self.free.remove(idx);
            }
        }
        self.write_size(start, size as usize, false);
        self.free.insert(idx, (start, size));
    }

    // ----------------------------------------------------------------- lookups

    fn find_key(&self, path: &str) -> Result<Option<u32>> {
        Ok(self.hive()?.open(path)?.map(|k| k.offset()))
    }

    fn require_key(&self, path: &str) -> Result<u32> {
        self.find_key(path)?.ok_or_else(|| {
            Error::not_found(
                Format::Hive,
                0,
                "key path",
                format!("key {path:?} does not exist"),
            )
        })
    }

    fn mark(&mut self, nk: u32) {
        self.modified.insert(nk);
        let now = self.now;
        put64(&mut self.buf, at(nk, NK_TIMESTAMP), now);
    }

    // ----------------------------------------------------------------- keys

    /// Create `path` and any missing intermediate keys. An existing key is not an error.
    pub fn create_key(&mut self, path: &str) -> Result<()> {
        let root = self.hive()?.root()?.offset();
        let mut cur = root;
        for comp in path_components(path) {
            let found = self.cells().key(cur)?.subkey(comp)?.map(|k| k.offset());
            cur = match found {
                Some(o) => o,
                None => self.add_subkey(cur, comp)?,
            };
        }
        Ok(())
    }

    fn add_subkey(&mut self, parent: u32, name: &str) -> Result<u32> {
        check_name(name)?;
        let (bytes, compressed) = encode_name(name);
        let sk = match self.child_sd.clone() {
            Some(sd) => self.ensure_child_sk(&sd)?,
            None => self.get32(parent, NK_SK),
        };
        let access = self
            .access_bits
            .unwrap_or_else(|| self.get32(parent, NK_ACCESS));
        let nk = self.alloc(NK_NAME + bytes.len())?;
        self.set_bytes(nk, 0, b"nk");
        self.set16(nk, NK_FLAGS, if compressed { KEY_COMP_NAME } else { 0 });
        self.set32(nk, NK_ACCESS, access);
        self.set32(nk, NK_PARENT, parent);
        self.set32(nk, NK_SUBKEY_LIST, NIL);
        self.set32(nk, NK_VOLATILE_LIST, NIL);
        self.set32(nk, NK_VALUE_LIST, NIL);
        self.set32(nk, NK_SK, sk);
        self.set32(nk, NK_CLASS, NIL);
        self.set16(nk, NK_NAME_LEN, bytes.len() as u16);
        self.set_bytes(nk, NK_NAME, &bytes);
        if sk != NIL {
            let rc = self.get32(sk, 12).saturating_add(1);
            self.set32(sk, 12, rc);
        }
        self.mark(nk);
        self.list_insert(parent, nk, name)?;
        let cnt = self.get32(parent, NK_SUBKEY_COUNT).saturating_add(1);
        self.set32(parent, NK_SUBKEY_COUNT, cnt);
        let m = self.get32(parent, NK_MAX_NAME);
        let want = utf16_bytes(name);
        if want > (m & 0xFFFF) {
            self.set32(parent, NK_MAX_NAME, (m & 0xFFFF_0000) | want);
        }
        self.mark(parent);
        Ok(nk)
    }

    /// The shared child sk of a built hive, created on first use and linked after the
    /// root's sk in the sk list.
    fn ensure_child_sk(&mut self, sd: &[u8]) -> Result<u32> {
        if let Some(s) = self.child_sk {
            return Ok(s);
        }
        let root = self.hive()?.root()?.offset();
        let anchor = self.get32(root, NK_SK);
        let s = self.alloc(20 + sd.len())?;
        self.set_bytes(s, 0, b"sk");
        self.set32(s, 16, sd.len() as u32);
        self.set_bytes(s, 20, sd);
        if anchor == NIL {
            self.set32(s, 4, s);
            self.set32(s, 8, s);
        } else {
            let next = self.get32(anchor, 4);
            self.set32(s, 4, next);
            self.set32(s, 8, anchor);
            self.set32(next, 8, s);
            self.set32(anchor, 4, s);
        }
        self.child_sk = Some(s);
        Ok(s)
    }

    /// Read a leaf list: (kind, entries as (nk offset, aux dword)).
    fn read_leaf(&self, list: u32) -> Result<(ListKind, Vec<(u32, u32)>)> {
        let c = self.cells().cell(list, "subkey list")?;
        let sig = c.get(..2).unwrap_or(c);
        let kind = ListKind::from_sig(sig).ok_or_else(|| {
            Error::signature(
                Format::Hive,
                cell_file_offset(list) + 4,
                "subkey list signature",
                b"lf/lh/li/ri",
                sig,
            )
        })?;
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
        let e = (0..n)
            .map(|i| {
                (
                    rd32(c, 4 + i * es),
                    if es == 8 { rd32(c, 8 + i * es) } else { 0 },
                )
            })
            .collect();
        Ok((kind, e))
    }

    /// Write a list (any kind) into `list` if it fits, else into a new cell (the old one is
    /// freed). Returns the list's offset.
    fn write_list(
        &mut self,
        list: Option<u32>,
        kind: ListKind,
        entries: &[(u32, u32)],
    ) -> Result<u32> {
        if entries.len() > 0xFFFF {
            return Err(Error::unsupported(
                Format::Hive,
                list.map_or(0, cell_file_offset),
                "subkey list",
                "more than 65535 entries in one list (splitting into an ri list is not implemented)",
            ));
        }
        let es = kind.entry_size();
        let len = 4 + entries.len() * es;
        let target = match list {
            Some(l) if self.cell_cap(l) >= len => l,
            _ => {
                let n = self.alloc(len)?;
                if let Some(l) = list {
                    self.free_cell(l);
                }
                n
            }
        };
        self.set_bytes(target, 0, kind.signature());
        self.set16(target, 2, entries.len() as u16);
        for (i, &(o, aux)) in entries.iter().enumerate() {
            self.set32(target, 4 + i * es, o);
            if es == 8 {
                self.set32(target, 8 + i * es, aux);
            }
        }
        Ok(target)
    }

    fn name_of(&self, nk: u32) -> Result<Vec<u16>> {
        Ok(self.cells().key(nk)?.name_raw().units().collect())
    }

    fn aux_for(kind: ListKind, name: &str) -> u32 {
        match kind {
            ListKind::Lf => u32::from_le_bytes(lf_hint(name.encode_utf16())),
            ListKind::Lh => lh_hash(name.encode_utf16()),
            _ => 0,
        }
    }

    /// Insert `child` (named `name`) into `parent`'s subkey list in sorted position.
    fn list_insert(&mut self, parent: u32, child: u32, name: &str) -> Result<()> {
        let list = self.get32(parent, NK_SUBKEY_LIST);
        if self.get32(parent, NK_SUBKEY_COUNT) == 0 || list == NIL {
            let kind = self.default_kind;
            let l = self.write_list(None, kind, &[(child, Self::aux_for(kind, name))])?;
            self.set32(parent, NK_SUBKEY_LIST, l);
            return Ok(());
        }
        let (kind, entries) = self.read_leaf(list)?;
        if kind == ListKind::Ri {
            // Pick the first leaf whose last name sorts after the new name, else the last.
            let mut chosen = entries.len().saturating_sub(1);
            for (i, &(leaf, _)) in entries.iter().enumerate() {
                let (_, le) = self.read_leaf(leaf)?;
                if let Some(&(last, _)) = le.last() {
                    let ln = self.name_of(last)?;
                    if cmp_units_ignore_case(name.encode_utf16(), ln.into_iter()) == Ordering::Less
                    {
                        chosen = i;
                        break;
                    }
                }
            }
            let Some(&(leaf, _)) = entries.get(chosen) else {
                return Err(ed_err(list, "ri list", String::from("empty ri list")));
            };
            let new_leaf = self.leaf_insert(leaf, child, name)?;
            if new_leaf != leaf {
                self.set32(list, 4 + chosen * 4, new_leaf);
            }
            return Ok(());
        }
        let nl = self.leaf_insert(list, child, name)?;
        self.set32(parent, NK_SUBKEY_LIST, nl);
        Ok(())
    }

    fn leaf_insert(&mut self, leaf: u32, child: u32, name: &str) -> Result<u32> {
        let (kind, mut entries) = self.read_leaf(leaf)?;
        if kind == ListKind::Ri {
            return Err(ed_err(
                leaf,
                "ri entry",
                String::from("an ri list may not point to another ri list"),
            ));
        }
        // Binary search on the (sorted) names.
        let (mut lo, mut hi) = (0usize, entries.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let mn = self.name_of(entries[mid].0)?;
            if cmp_units_ignore_case(mn.into_iter(), name.encode_utf16()) == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        entries.insert(lo, (child, Self::aux_for(kind, name)));
        self.write_list(Some(leaf), kind, &entries)
    }

    /// Remove `child` from `parent`'s list; frees emptied leaves/ri.
    fn list_remove(&mut self, parent: u32, child: u32) -> Result<()> {
        let list = self.get32(parent, NK_SUBKEY_LIST);
        let (kind, mut entries) = self.read_leaf(list)?;
        if kind == ListKind::Ri {
            for i in 0..entries.len() {
                let leaf = entries[i].0;
                let (lk, mut le) = self.read_leaf(leaf)?;
                if let Some(p) = le.iter().position(|e| e.0 == child) {
                    le.remove(p);
                    if le.is_empty() {
                        self.free_cell(leaf);
                        entries.remove(i);
                        if entries.is_empty() {
                            self.free_cell(list);
                            self.set32(parent, NK_SUBKEY_LIST, NIL);
                        } else {
                            self.write_list(Some(list), ListKind::Ri, &entries)?;
                        }
                    } else {
                        self.write_list(Some(leaf), lk, &le)?;
                    }
                    return Ok(());
                }
            }
        } else if let Some(p) = entries.iter().position(|e| e.0 == child) {
            entries.remove(p);
            if entries.is_empty() {
                self.free_cell(list);
                self.set32(parent, NK_SUBKEY_LIST, NIL);
            } else {
                self.write_list(Some(list), kind, &entries)?;
            }
            return Ok(());
        }
        Err(ed_err(
            list,
            "subkey list",
            format!("key {child:#x} is not in its parent's subkey list"),
        ))
    }

    /// Delete the key at `path` and everything below it. The root cannot be deleted; a
    /// missing key is a `NotFound` error.
    pub fn delete_key(&mut self, path: &str) -> Result<()> {
        let comps = path_components(path);
        if comps.is_empty() {
            return Err(Error::invalid(
                Format::Hive,
                0,
                "key path",
                "the root key cannot be deleted",
            ));
        }
        let key = self.require_key(path)?;
        let parent = self.get32(key, NK_PARENT);
        self.list_remove(parent, key)?;
        self.free_subtree(key)?;
        let cnt = self.get32(parent, NK_SUBKEY_COUNT).saturating_sub(1);
        self.set32(parent, NK_SUBKEY_COUNT, cnt);
        if cnt == 0 {
            let m = self.get32(parent, NK_MAX_NAME);
            self.set32(parent, NK_MAX_NAME, m & 0xFFFF_0000);
            self.set32(parent, NK_MAX_CLASS, 0);
        }
        self.mark(parent);
        Ok(())
    }

    fn free_subtree(&mut self, top: u32) -> Result<()> {
        let mut stack = vec![(top, 0usize)];
        let mut seen = BTreeSet::new();
        while let Some((nk, depth)) = stack.pop() {
            if depth > MAX_DEPTH || !seen.insert(nk) {
                return Err(ed_err(
                    nk,
                    "key tree",
                    String::from("key tree too deep or cyclic"),
                ));
            }
            let (children, lists, values, vlist, class, sk) = {
                let k = self.cells().key(nk)?;
                let mut children = Vec::new();
                k.visit_subkeys(&mut |c| {
                    children.push(c);
                    Ok(ControlFlow::Continue(()))
                })?;
                let mut lists = Vec::new();
                let l = k.subkey_list_offset();
                if k.subkey_count() > 0 && l != NIL {
                    if k.subkey_list_kind()? == Some(ListKind::Ri) {
                        lists.extend(self.read_leaf(l)?.1.into_iter().map(|e| e.0));
                    }
                    lists.push(l);
                }
                let values: Vec<u32> = k
                    .value_offsets()?
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let vlist = if values.is_empty() {
                    NIL
                } else {
                    k.value_list_offset()
                };
                (
                    children,
                    lists,
                    values,
                    vlist,
                    k.class_offset(),
                    k.security_offset(),
                )
            };
            for c in children {
                stack.push((c, depth + 1));
            }
            for v in values {
                self.free_value(v)?;
            }
            self.free_cell(vlist);
            for l in lists {
                self.free_cell(l);
            }
            if class != NIL {
                self.cells().cell(class, "class name")?;
                self.free_cell(class);
            }
            self.sk_release(sk)?;
            self.free_cell(nk);
        }
        Ok(())
    }

    fn sk_release(&mut self, sk: u32) -> Result<()> {
        if sk == NIL {
            return Ok(());
        }
        let (rc, f, b) = {
            let s = Security::read(self.cells(), sk)?;
            (s.refcount().saturating_sub(1), s.flink(), s.blink())
        };
        self.set32(sk, 12, rc);
        if rc == 0 {
            if f != sk {
                Security::read(self.cells(), f)?;
                Security::read(self.cells(), b)?;
                self.set32(b, 4, f);
                self.set32(f, 8, b);
            }
            self.free_cell(sk);
        }
        Ok(())
    }

    // ----------------------------------------------------------------- values

    fn free_value(&mut self, vk: u32) -> Result<()> {
        let (storage, segs) = {
            let v = self.cells().value(vk)?;
            let st = v.storage()?;
            let segs = match st {
                DataStorage::BigData(db) => {
                    let mut s = v.big_data_segments(db)?;
                    s.push(rd32(self.cells().cell(db, "db")?, 4));
                    s
                }
                _ => Vec::new(),
            };
            (st, segs)
        };
        match storage {
            DataStorage::Inline => {}
            DataStorage::Cell(o) => self.free_cell(o),
            DataStorage::BigData(db) => {
                for s in segs {
                    self.free_cell(s);
                }
                self.free_cell(db);
            }
        }
        self.free_cell(vk);
        Ok(())
    }

    /// Store `data`; returns (size field, offset field) for the vk.
    fn store_data(&mut self, data: &[u8]) -> Result<(u32, u32)> {
        let len = data.len();
        if len > 0x7FFF_FFFF {
            return Err(Error::invalid(
                Format::Hive,
                0,
                "value data",
                "value data larger than 2 GiB",
            ));
        }
        if len <= 4 {
            let mut b = [0u8; 4];
            b[..len].copy_from_slice(data);
            return Ok((len as u32 | 0x8000_0000, u32::from_le_bytes(b)));
        }
        if self.minor >= 4 && len > BIG_DATA_SEGMENT {
            let chunks: Vec<&[u8]> = data.chunks(BIG_DATA_SEGMENT).collect();
            if chunks.len() > 0xFFFF {
                return Err(Error::invalid(
                    Format::Hive,
                    0,
                    "value data",
                    "too many big-data segments",
                ));
            }
            let mut segs = Vec::with_capacity(chunks.len());
            for c in &chunks {
                let s = self.alloc(BIG_DATA_SEGMENT)?;
                self.set_bytes(s, 0, c);
                segs.push(s);
            }
            let list = self.alloc(segs.len() * 4)?;
            for (i, s) in segs.iter().enumerate() {
                self.set32(list, i * 4, *s);
            }
            let db = self.alloc(8)?;
            self.set_bytes(db, 0, b"db");
            self.set16(db, 2, segs.len() as u16);
            self.set32(db, 4, list);
            return Ok((len as u32, db));
        }
        let c = self.alloc(len)?;
        self.set_bytes(c, 0, data);
        Ok((len as u32, c))
    }

    /// Set (create or replace) value `name` (`""` = default value) of the existing key
    /// `key_path`.
    pub fn set_value(
        &mut self,
        key_path: &str,
        name: &str,
        value_type: u32,
        data: &[u8],
    ) -> Result<()> {
        if name.encode_utf16().count() > 16383 {
            return Err(Error::invalid(
                Format::Hive,
                0,
                "value name",
                "value names are limited to 16383 characters",
            ));
        }
        let key = self.require_key(key_path)?;
        let existing = self.cells().key(key)?.value(name)?.map(|v| v.offset());
        match existing {
            Some(vk) => {
                let storage = self.cells().value(vk)?.storage()?;
                let reuse = match storage {
                    DataStorage::Cell(o)
                        if data.len() > 4
                            && self.cell_cap(o) >= data.len()
                            && !(self.minor >= 4 && data.len() > BIG_DATA_SEGMENT) =>
                    {
                        Some(o)
                    }
                    _ => None,
                };
                let (size, off) = match reuse {
                    Some(o) => {
                        let cap = self.cell_cap(o);
                        let p = at(o, 0);
                        if let Some(d) = self.buf.get_mut(p..p + cap) {
                            d.fill(0);
                            d[..data.len()].copy_from_slice(data);
                        }
                        (data.len() as u32, o)
                    }
                    None => {
                        // Free the old data (keep the vk), then store the new data.
                        match storage {
                            DataStorage::Inline => {}
                            DataStorage::Cell(o) => self.free_cell(o),
                            DataStorage::BigData(db) => {
                                let mut segs = self.cells().value(vk)?.big_data_segments(db)?;
                                segs.push(rd32(self.cells().cell(db, "db")?, 4));
                                for s in segs {
                                    self.free_cell(s);
                                }
                                self.free_cell(db);
                            }
                        }
                        self.store_data(data)?
                    }
                };
                self.set32(vk, VK_DATA_SIZE, size);
                self.set32(vk, VK_DATA_OFF, off);
                self.set32(vk, VK_TYPE, value_type);
            }
            None => {
                let (nb, compressed) = encode_name(name);
                let (size, off) = self.store_data(data)?;
                let vk = self.alloc(VK_NAME + nb.len())?;
                self.set_bytes(vk, 0, b"vk");
                self.set16(vk, VK_NAME_LEN, nb.len() as u16);
                self.set32(vk, VK_DATA_SIZE, size);
                self.set32(vk, VK_DATA_OFF, off);
                self.set32(vk, VK_TYPE, value_type);
                self.set16(vk, VK_FLAGS, if compressed { VALUE_COMP_NAME } else { 0 });
                self.set_bytes(vk, VK_NAME, &nb);
                let n = self.get32(key, NK_VALUE_COUNT) as usize;
                let list = self.get32(key, NK_VALUE_LIST);
                let target = if n > 0 && list != NIL && self.cell_cap(list) >= (n + 1) * 4 {
                    list
                } else {
                    let new = self.alloc((n + 1) * 4)?;
                    if n > 0 && list != NIL {
                        let old: Vec<u8> = self
                            .cells()
                            .cell(list, "value list")?
                            .get(..n * 4)
                            .unwrap_or(&[])
                            .to_vec();
                        self.set_bytes(new, 0, &old);
                        self.free_cell(list);
                    }
                    self.set32(key, NK_VALUE_LIST, new);
                    new
                };
                self.set32(target, n * 4, vk);
                self.set32(key, NK_VALUE_COUNT, n as u32 + 1);
                let mn = utf16_bytes(name);
                if mn > self.get32(key, NK_MAX_VALUE_NAME) {
                    self.set32(key, NK_MAX_VALUE_NAME, mn);
                }
            }
        }
        if data.len() as u32 > self.get32(key, NK_MAX_VALUE_DATA) {
            self.set32(key, NK_MAX_VALUE_DATA, data.len() as u32);
        }
        self.mark(key);
        Ok(())
    }

    /// Delete value `name` of the existing key `key_path`. Returns whether it existed.
    pub fn delete_value(&mut self, key_path: &str, name: &str) -> Result<bool> {
        let key = self.require_key(key_path)?;
        let (idx, vk, list, n) = {
            let k = self.cells().key(key)?;
            let offs = k.value_offsets()?;
            let mut hit = None;
            for (i, c) in offs.chunks_exact(4).enumerate() {
                let o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                if self.cells().value(o)?.name_raw().eq_ignore_case(name) {
                    hit = Some((i, o));
                    break;
                }
            }
            let Some((i, o)) = hit else { return Ok(false) };
            (i, o, k.value_list_offset(), k.value_count() as usize)
        };
        if n == 1 {
            self.free_cell(list);
            self.set32(key, NK_VALUE_LIST, NIL);
            self.set32(key, NK_MAX_VALUE_NAME, 0);
            self.set32(key, NK_MAX_VALUE_DATA, 0);
        } else {
            let p = at(list, 0);
            self.buf
                .copy_within(p + (idx + 1) * 4..p + n * 4, p + idx * 4);
            self.set32(list, (n - 1) * 4, 0);
        }
        self.set32(key, NK_VALUE_COUNT, n as u32 - 1);
        self.free_value(vk)?;
        self.mark(key);
        Ok(true)
    }

    /// Finish: stamp changed keys, the base block and the first hbin with `filetime`,
    /// seq1 += 1 then seq2 = seq1, and write the Windows checksum. Returns the hive bytes.
    pub fn finish(mut self, filetime: u64) -> Vec<u8> {
        let modified = core::mem::take(&mut self.modified);
        for nk in modified {
            let ok = self.cells().key(nk).is_ok();
            if ok {
                put64(&mut self.buf, at(nk, NK_TIMESTAMP), filetime);
            }
        }
        let seq = rd32(&self.buf, 4).wrapping_add(1);
        put32(&mut self.buf, 4, seq);
        put32(&mut self.buf, 8, seq);
        put64(&mut self.buf, 12, filetime);
        put64(&mut self.buf, BASE_BLOCK_SIZE + 20, filetime);
        let ck = windows_checksum(&self.buf);
        put32(&mut self.buf, 508, ck);
        self.buf
    }
}

fn check_name(name: &str) -> Result<()> {
    let n = name.encode_utf16().count();
    if n == 0 || n > 255 || name.contains('\\') {
        return Err(Error::invalid(
            Format::Hive,
            0,
            "key name",
            format!("{name:?}: key names are 1..=255 characters without '\\'"),
        ));
    }
    Ok(())
}

fn align_bin(n: usize) -> usize {
    n.div_ceil(4096) * 4096
}

fn put16(b: &mut [u8], p: usize, v: u16) {
    if let Some(d) = b.get_mut(p..p + 2) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}
fn put32(b: &mut [u8], p: usize, v: u32) {
    if let Some(d) = b.get_mut(p..p + 4) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}
fn put64(b: &mut [u8], p: usize, v: u64) {
    if let Some(d) = b.get_mut(p..p + 8) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hive::value_type::*;

    fn free_cells(b: &[u8]) -> Vec<(u32, i32)> {
        let h = Hive::parse(b).unwrap();
        let mut v = Vec::new();
        for bin in h.bins().unwrap() {
            h.bin_cells(bin, &mut |o, s| {
                if s > 0 {
                    v.push((o, s))
                }
            })
            .unwrap();
        }
        v
    }

    #[test]
    fn new_hive_layout() {
        let ed = Editor::new_hive(&NewHive {
            root_name: "R".into(),
            timestamp: 9,
            ..NewHive::default()
        })
        .unwrap();
        let out = ed.finish(10);
        assert_eq!(out.len(), 8192);
        let h = Hive::parse(&out).unwrap();
        assert_eq!(
            (
                h.base().seq1,
                h.base().seq2,
                h.base().timestamp,
                h.base().root
            ),
            (1, 1, 10, 0x20)
        );
        assert_eq!(rd64(&out, 0x1000 + 20), 10);
        assert_eq!(h.root().unwrap().flags(), 0x2C);
        assert_eq!(free_cells(&out).len(), 1);
        assert_eq!(h.check().unwrap().keys, 1);
    }

    #[test]
    fn freed_cells_coalesce_and_are_reused_first_fit() {
        let mut ed = Editor::new_hive(&NewHive::default()).unwrap();
        let base_free = free_cells(ed.bytes());
        ed.create_key("K").unwrap();
        for i in 0..20 {
            ed.set_value("K", &alloc::format!("v{i}"), REG_BINARY, &[i as u8; 40])
                .unwrap();
        }
        for i in 0..20 {
            assert!(ed.delete_value("K", &alloc::format!("v{i}")).unwrap());
        }
        ed.delete_key("K").unwrap();
        // Everything freed merges back into the single tail cell of the bin.
        assert_eq!(free_cells(ed.bytes()), base_free);
        // Growing past the bin appends a new 4 KiB-multiple bin and updates the header.
        ed.create_key("K").unwrap();
        ed.set_value("K", "big", REG_BINARY, &[7; 10_000]).unwrap();
        let h = ed.hive().unwrap();
        let bins = h.bins().unwrap();
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[1].size, 12288);
        assert_eq!(h.base().bins_size, 4096 + 12288);
        h.check().unwrap();
    }

    #[test]
    fn names_stored_compressed_only_when_latin1() {
        let mut ed = Editor::new_hive(&NewHive::default()).unwrap();
        ed.create_key("Ärger").unwrap();
        ed.create_key("Ω").unwrap();
        ed.set_value("Ω", "é", REG_DWORD, &1u32.to_le_bytes())
            .unwrap();
        ed.set_value("Ω", "ω", REG_DWORD, &1u32.to_le_bytes())
            .unwrap();
        let h = ed.hive().unwrap();
        let a = h.open("ärger").unwrap().unwrap();
        assert!(a.name_is_compressed());
        assert_eq!(a.name_bytes(), &[0xC4, b'r', b'g', b'e', b'r']);
        let o = h.open("ω").unwrap().unwrap(); // case-insensitive Greek
        assert!(!o.name_is_compressed());
        let v = o.values().unwrap();
        assert_eq!(v[0].flags() & VALUE_COMP_NAME, VALUE_COMP_NAME);
        assert_eq!(v[1].flags() & VALUE_COMP_NAME, 0);
        assert_eq!(o.max_value_name_len(), 2);
    }

    #[test]
    fn errors_for_missing_keys_and_bad_names() {
        let mut ed = Editor::new_hive(&NewHive::default()).unwrap();
        assert!(matches!(
            ed.set_value("Nope", "v", REG_DWORD, &[0; 4])
                .unwrap_err()
                .kind,
            ErrorKind::NotFound(_)
        ));
        assert!(ed.delete_value("Nope", "v").is_err());
        assert!(ed.create_key(&"x".repeat(256)).is_err());
        assert!(Editor::new_hive(&NewHive {
            list_kind: Some(ListKind::Ri),
            ..NewHive::default()
        })
        .is_err());
        assert!(Editor::new_hive(&NewHive {
            minor: 9,
            ..NewHive::default()
        })
        .is_err());
    }
}
