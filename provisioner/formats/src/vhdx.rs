//! VHDX version 1 reader: Hyper-V Server 2012's native-boot container.
//!
//! Follows Microsoft's Open Specification **[MS-VHDX] "Virtual Hard Disk v2 (VHDX) File
//! Format"**, v1.0 (learn.microsoft.com/openspecs/windows_protocols/ms-vhdx); section numbers
//! below are that document's. All integers are little-endian; GUIDs are stored in Microsoft's
//! mixed-endian form (`Data1` u32 LE, `Data2`/`Data3` u16 LE, `Data4` 8 bytes).
//!
//! ## Layout (§2.1)
//!
//! | file offset | size | structure |
//! |---|---|---|
//! | 0 | 64 KiB | file type identifier: `vhdxfile` + creator, UTF-16LE, 512 bytes (§2.2.1) |
//! | 64 KiB | 4 KiB (in a 64 KiB slot) | header 1 (§2.2.2) |
//! | 128 KiB | 4 KiB (in a 64 KiB slot) | header 2 |
//! | 192 KiB | 64 KiB | region table 1 (§2.2.3) |
//! | 256 KiB | 64 KiB | region table 2 (identical copy) |
//! | ≥ 1 MiB | | log, BAT region, metadata region, payload blocks — anywhere, 1 MiB aligned |
//!
//! **Headers** (§2.2.2): `head`, CRC-32C over the 4 KiB with the checksum field as zero,
//! sequence number, FileWriteGuid, DataWriteGuid, LogGuid, LogVersion (0), Version (1),
//! LogLength, LogOffset. "A header is current if it is the only valid header or if it is valid
//! and its SequenceNumber field is greater than the other header's" (§2.2.2.1); a valid header
//! is one whose signature and checksum verify. Microsoft's Disk2VHD writes two identical headers
//! with the same sequence number; like qemu (`block/vhdx.c`, `vhdx_parse_header`) this reader
//! accepts that case (header 1 is used) and rejects two *different* valid headers with equal
//! sequence numbers.
//!
//! **Log** (§2.3): a non-zero LogGuid in the current header means log entries may have to be
//! replayed before any other structure can be trusted ("the file was not closed cleanly").
//! This reader never replays and never reads past such a header: [`Vhdx::open`] fails with a
//! [`Refusal::DirtyLog`] error. Replay with Hyper-V (attach the disk once) or
//! `qemu-img check -r all`.
//!
//! **Region table** (§2.2.3): `regi`, CRC-32C over the 64 KiB, entry count (≤ 2047), then
//! 32-byte entries: GUID, FileOffset (u64, 1 MiB multiple ≥ 1 MiB), Length (u32, 1 MiB
//! multiple), Required (bit 0). Known regions: BAT `2DC27766-F623-4200-9D64-115E9BFD4A08` and
//! metadata `8B7CA206-4790-4B9A-B8FE-575F050F886E` (§2.2.3.2). An unknown region with Required
//! set is an error ("the implementation MUST fail to open the file"); an unknown optional one is
//! listed in [`Vhdx::notes`]. Both copies are read; the first valid one is used.
//!
//! **Metadata region** (§2.6): a 64 KiB table (`metadata`, entry count ≤ 2047, 32-byte entries:
//! ItemId, Offset (u32, ≥ 64 KiB, relative to the region), Length (u32, ≤ 1 MiB), flags IsUser
//! bit 0, IsVirtualDisk bit 1, IsRequired bit 2) followed by the items (§2.6.2):
//! File Parameters (BlockSize u32, 1–256 MiB power of two; bit 0 LeaveBlockAllocated, bit 1
//! HasParent), Virtual Disk Size (u64), Virtual Disk ID (the SCSI page 83 GUID), Logical
//! Sector Size (512 or 4096), Physical Sector Size (512 or 4096), Parent Locator
//! (differencing disks only). Differencing disks (HasParent) are refused
//! ([`Refusal::Differencing`]): native boot from a UFD needs one self-contained file.
//!
//! **BAT** (§2.5): one u64 per block: State in bits 0–2, FileOffsetMB in bits 20–63. Payload
//! and sector-bitmap entries are interleaved: after every `chunk ratio` payload entries comes
//! one sector-bitmap entry, chunk ratio = 2^23 × LogicalSectorSize / BlockSize (§2.4, the number
//! of payload blocks one 1 MiB sector-bitmap block covers). Payload block *i* is BAT entry
//! *i + ⌊i / chunk ratio⌋*; a fixed or dynamic disk has ⌈VirtualDiskSize / BlockSize⌉ payload
//! blocks and (that − 1) / chunk ratio bitmap entries in between (§2.5). Payload states
//! (§2.5.1.1): NOT_PRESENT 0, UNDEFINED 1, ZERO 2, UNMAPPED 3, FULLY_PRESENT 6,
//! PARTIALLY_PRESENT 7 (differencing only); 4 and 5 are reserved.
//!
//! ## Fixed versus dynamic, and what qemu-img makes (verified, qemu-img 7.2, Debian 12)
//!
//! VHDX has no disk-type field: a fixed disk is one whose File Parameters carry
//! LeaveBlockAllocated and whose every payload block is FULLY_PRESENT, so the whole virtual disk
//! is laid out in the file and never moves ([`Vhdx::is_fixed`]).
//! - `qemu-img create -f vhdx -o subformat=fixed,block_state_zero=off`: LeaveBlockAllocated,
//!   every block FULLY_PRESENT, contiguous from file offset 8 MiB whatever the block size
//!   (1, 8 and 16 MiB observed; before it: header section, 1 MiB log at 1 MiB, BAT at 2 MiB,
//!   metadata at 3 MiB); the file is 8 MiB + the virtual size (created sparse). This is fixed.
//!   qemu's default block size depends on the size (8 MiB for 20 MiB, 16 MiB for 2 GiB).
//! - `-o subformat=fixed` **without** `block_state_zero=off` (qemu's default is on): the
//!   blocks are reserved in the file but every BAT entry is PAYLOAD_BLOCK_ZERO with offset 0,
//!   and the first write to a block makes qemu allocate a *new* block at the end of the file
//!   (observed: a 20 MiB disk grew from 28 to 36 MiB). That file is not fixed by the
//!   definition above, and [`Vhdx::require_fixed`] says so and how to make one.
//! - `-o subformat=dynamic`: no LeaveBlockAllocated, blocks ZERO or NOT_PRESENT until written.
//! - qemu writes both headers at creation with sequence numbers n (header 1) and n + 1
//!   (header 2); header 2 is current in a fresh file. Both region-table copies are identical
//!   and its BAT and metadata entries have Required = 0.
//! - Two files qemu-img creates with the same options differ only in `n` (a random 32-bit
//!   value), the FileWriteGuid and DataWriteGuid (the same in both headers), the page 83 id
//!   and the header checksums (`cmp -l` of two 64 MiB files). [`pin_headers`] and
//!   [`Vhdx::metadata_item`] let a writer fix those for a byte-reproducible file.
//!
//! ## Errors
//!
//! Every failure is a [`crate::Error`] with the absolute file offset of the field at fault
//! (the [`Format`] is [`Format::Vhd`] until the error type grows a VHDX variant; every field
//! name starts with "VHDX"). [`Refusal::of`] names the refusals a caller reports specially:
//! dirty log, differencing disk, not fixed, truncated file. Nothing here panics on input; the
//! BAT is bounded by its region, which is bounded by the file length.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::bytes::{Bytes, ReadAt};
use crate::error::{Error, ErrorKind, Format, Result};
use crate::vhd::ReadError;

/// CRC-32C (Castagnoli), the checksum of VHDX headers, region tables and log entries (§2.2.2:
/// "CRC-32C hash over the entire 4 KB structure, with the Checksum field taking the value of
/// zero during the computation"). Reflected polynomial 0x82F63B78, initial value and final XOR
/// 0xFFFFFFFF — the iSCSI CRC (RFC 3720 §B.4). Table-driven, table built at compile time.
pub mod crc32c {
    const POLY: u32 = 0x82F6_3B78;

    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };

    /// Continue a running CRC (start with [`INIT`], finish with [`finish`]).
    pub fn update(mut state: u32, data: &[u8]) -> u32 {
        for &b in data {
            state = TABLE[((state ^ u32::from(b)) & 0xFF) as usize] ^ (state >> 8);
        }
        state
    }

    /// Initial state.
    pub const INIT: u32 = 0xFFFF_FFFF;

    /// Final XOR.
    pub fn finish(state: u32) -> u32 {
        !state
    }

    /// CRC-32C of `data`.
    pub fn checksum(data: &[u8]) -> u32 {
        finish(update(INIT, data))
    }

    /// CRC-32C of `data` with the 4 bytes at `field` counted as zero (how VHDX structures are
    /// checksummed); `field` past the end is ignored.
    pub fn checksum_with_zeroed_field(data: &[u8], field: usize) -> u32 {
        match (data.get(..field), data.get(field.saturating_add(4)..)) {
            (Some(head), Some(tail)) => finish(update(update(update(INIT, head), &[0; 4]), tail)),
            _ => checksum(data),
        }
    }
}

/// The format errors are reported under (see the module docs).
const FMT: Format = Format::Vhdx;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// `vhdxfile`, at file offset 0 (§2.2.1).
pub const FILE_SIGNATURE: &[u8; 8] = b"vhdxfile";

/// A header field a writer sets (§2.2.2), for [`set_header_fields`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderField {
    /// SequenceNumber (header offset 8): of two valid headers, the one with the greater number
    /// is current (§2.2.2.1).
    SequenceNumber(u64),
    /// FileWriteGuid (header offset 16): identifies the file's contents; §2.2.2 has a writer
    /// change it "before the first modification is made to the file" on every open.
    FileWriteGuid(Guid),
    /// DataWriteGuid (header offset 32): identifies the virtual disk's data; §2.2.2 has a
    /// writer change it before the first modification of user-visible data.
    DataWriteGuid(Guid),
    /// LogGuid (header offset 48): non-zero means the log holds entries that must be replayed
    /// (§2.3).
    LogGuid(Guid),
}

/// Set `fields` in one 4 KiB header (in order; a later field wins) and re-seal its CRC-32C
/// (§2.2.2: over the whole 4 KiB, the Checksum field at offset 4 counted as zero). Only the
/// named bytes and the checksum change; the signature is not checked (see [`Header::parse`]).
pub fn set_header_fields(header: &mut [u8; HEADER_SIZE], fields: &[HeaderField]) {
    for field in fields {
        let (at, bytes): (usize, &[u8]) = match field {
            HeaderField::SequenceNumber(n) => (8, &n.to_le_bytes()[..]),
            HeaderField::FileWriteGuid(g) => (16, &g.0[..]),
            HeaderField::DataWriteGuid(g) => (32, &g.0[..]),
            HeaderField::LogGuid(g) => (48, &g.0[..]),
        };
        header[at..at + bytes.len()].copy_from_slice(bytes);
    }
    let crc = crc32c::checksum_with_zeroed_field(&header[..], 4);
    header[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Set a header's LogGuid and re-seal its CRC-32C (§2.2.2): what a writer does before its
/// first log entry. Left so, the file has a log that must be replayed (a "dirty log") for every
/// reader, this one included. ufd never writes a LogGuid when it provisions; this serves the
/// scenario damage (`ufd run`) and the tests that must produce such a file.
pub fn set_log_guid(header: &mut [u8; HEADER_SIZE], log: &Guid) {
    set_header_fields(header, &[HeaderField::LogGuid(*log)]);
}

/// Give both headers of a freshly created VHDX the write GUIDs `file_write` and `data_write`
/// and the sequence numbers 1 and 2, keeping which header is current, and re-seal both
/// (`headers[0]` is the 4 KiB at [`HEADER_OFFSETS`]\[0\], `headers[1]` at \[1\]). With the
/// GUIDs fixed, the headers no longer depend on the creating tool's random numbers (qemu-img
/// 7.2 draws both GUIDs and header 1's sequence number at random, header 2 getting that + 1 —
/// verified by comparing two created files byte for byte); this is what makes a VHDX file
/// byte-reproducible. The page 83 id is the third identity field and lives in the metadata
/// ([`Vhdx::metadata_item`]).
///
/// Both headers must be valid (signature and checksum) with LogGuid zero, and one must be
/// current (§2.2.2.1): a header that fails its checksum is never resealed into a valid one,
/// and a file with a log is never stamped as if it had none. The newer header gets sequence
/// number 2 and the older 1; two identical copies (Disk2VHD, same number) both get 1 and stay
/// identical. Errors name the absolute offset of the field at fault.
pub fn pin_headers(
    headers: [&mut [u8; HEADER_SIZE]; 2],
    file_write: &Guid,
    data_write: &Guid,
) -> Result<()> {
    let [h1, h2] = headers;
    let p1 = Header::parse(&h1[..], 1, HEADER_OFFSETS[0])?;
    let p2 = Header::parse(&h2[..], 2, HEADER_OFFSETS[1])?;
    for p in [&p1, &p2] {
        if !p.log_guid.is_zero() {
            return Err(Error::unsupported(
                FMT,
                p.offset + 48,
                F_LOG_GUID,
                format!(
                    "header {} has a log (LogGuid {}): replay it before the headers are rewritten",
                    p.copy, p.log_guid
                ),
            ));
        }
    }
    let (s1, s2) = if p1.sequence_number > p2.sequence_number {
        (2, 1)
    } else if p2.sequence_number > p1.sequence_number {
        (1, 2)
    } else if p1.raw == p2.raw {
        (1, 1)
    } else {
        return Err(Error::invalid(
            FMT,
            HEADER_OFFSETS[1] + 8,
            "VHDX header 2 sequence number",
            format!(
                "both headers have the sequence number {} but differ: no current header (§2.2.2.1)",
                p1.sequence_number
            ),
        ));
    };
    for (h, seq) in [(h1, s1), (h2, s2)] {
        set_header_fields(
            h,
            &[
                HeaderField::SequenceNumber(seq),
                HeaderField::FileWriteGuid(*file_write),
                HeaderField::DataWriteGuid(*data_write),
            ],
        );
    }
    Ok(())
}

/// How the boot manager and `ufd inspect` tell the loader's file is a VHDX: `Some(false)`
/// when it is named `*.vhdx` (whatever it holds: Windows picks the container format by the
/// extension \[reconstructed\]); `Some(true)` when another name starts with
/// [`FILE_SIGNATURE`] (§2.2.1; the callers note the misnaming); `None`: treat it as a VHD.
/// `head` is the file's first bytes (at least 8 for the signature to count).
pub fn is_vhdx(file_name: &str, head: &[u8]) -> Option<bool> {
    let named = file_name
        .len()
        .checked_sub(5)
        .and_then(|i| file_name.get(i..))
        .is_some_and(|ext| ext.eq_ignore_ascii_case(".vhdx"));
    if named {
        return Some(false);
    }
    head.get(..8)
        .is_some_and(|h| h == FILE_SIGNATURE)
        .then_some(true)
}
/// `head` (§2.2.2).
pub const HEADER_SIGNATURE: &[u8; 4] = b"head";
/// `regi` (§2.2.3).
pub const REGION_TABLE_SIGNATURE: &[u8; 4] = b"regi";
/// `metadata` (§2.6.1.1).
pub const METADATA_SIGNATURE: &[u8; 8] = b"metadata";
/// File offsets of header 1 and header 2.
pub const HEADER_OFFSETS: [u64; 2] = [64 * KIB, 128 * KIB];
/// Bytes covered by a header's checksum.
pub const HEADER_SIZE: usize = 4096;
/// File offsets of region table 1 and region table 2.
pub const REGION_TABLE_OFFSETS: [u64; 2] = [192 * KIB, 256 * KIB];
/// Size of a region table (and of the metadata table).
pub const TABLE_SIZE: usize = 64 * 1024;
/// The header section: everything before it is fixed-position.
pub const HEADER_SECTION_SIZE: u64 = MIB;
/// Most entries a region or metadata table may hold.
pub const MAX_TABLE_ENTRIES: u32 = 2047;
/// Largest virtual disk the specification allows (§2.6.2.2): 64 TiB.
pub const MAX_VIRTUAL_SIZE: u64 = 64 * 1024 * 1024 * MIB;

// Field names of the refusals, matched by [`Refusal::of`].
const F_LOG_GUID: &str = "VHDX log guid";
const F_HAS_PARENT: &str = "VHDX file parameters HasParent";
const F_NOT_FIXED: &str = "VHDX block allocation";

/// A GUID as stored (Microsoft mixed-endian bytes); `Display` gives the registry form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The all-zero GUID.
    pub const ZERO: Guid = Guid([0; 16]);

    /// From the textual fields `{d1-d2-d3-d4}`.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.0;
        write!(
            f,
            "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-",
            u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
            u16::from_le_bytes([g[4], g[5]]),
            u16::from_le_bytes([g[6], g[7]]),
            g[8],
            g[9]
        )?;
        for b in &g[10..] {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{self}}}")
    }
}

/// Region and metadata item GUIDs (§2.2.3.2, §2.6.2).
pub mod guids {
    use super::Guid;
    /// BAT region.
    pub const BAT: Guid = Guid::from_fields(
        0x2DC2_7766,
        0xF623,
        0x4200,
        [0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08],
    );
    /// Metadata region.
    pub const METADATA: Guid = Guid::from_fields(
        0x8B7C_A206,
        0x4790,
        0x4B9A,
        [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E],
    );
    /// File Parameters item (§2.6.2.1).
    pub const FILE_PARAMETERS: Guid = Guid::from_fields(
        0xCAA1_6737,
        0xFA36,
        0x4D43,
        [0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B],
    );
    /// Virtual Disk Size item (§2.6.2.2).
    pub const VIRTUAL_DISK_SIZE: Guid = Guid::from_fields(
        0x2FA5_4224,
        0xCD1B,
        0x4876,
        [0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8],
    );
    /// Virtual Disk ID (page 83 data) item (§2.6.2.3).
    pub const PAGE_83_DATA: Guid = Guid::from_fields(
        0xBECA_12AB,
        0xB2E6,
        0x4523,
        [0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46],
    );
    /// Logical Sector Size item (§2.6.2.4).
    pub const LOGICAL_SECTOR_SIZE: Guid = Guid::from_fields(
        0x8141_BF1D,
        0xA96F,
        0x4709,
        [0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F],
    );
    /// Physical Sector Size item (§2.6.2.5).
    pub const PHYSICAL_SECTOR_SIZE: Guid = Guid::from_fields(
        0xCDA3_48C7,
        0x445D,
        0x4471,
        [0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56],
    );
    /// Parent Locator item (§2.6.2.6), differencing disks only.
    pub const PARENT_LOCATOR: Guid = Guid::from_fields(
        0xA8D3_5F2D,
        0xB30B,
        0x454D,
        [0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C],
    );
}

/// The refusals a caller names in its own words (inspect, the boot-path report).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The current header's LogGuid is not zero: the log must be replayed first.
    DirtyLog,
    /// HasParent: a differencing disk.
    Differencing,
    /// A readable VHDX that is not fixed, where a fixed one is required ([`Vhdx::require_fixed`]).
    NotFixed,
    /// The file ends before a structure or payload block it describes.
    Truncated,
}

impl Refusal {
    /// Which refusal, if any, `e` (from this module) is.
    pub fn of(e: &Error) -> Option<Refusal> {
        if !e.field.starts_with("VHDX") {
            return None;
        }
        match (e.field, &e.kind) {
            (F_LOG_GUID, _) => Some(Refusal::DirtyLog),
            (F_HAS_PARENT, _) => Some(Refusal::Differencing),
            (F_NOT_FIXED, _) => Some(Refusal::NotFixed),
            (_, ErrorKind::Truncated { .. }) => Some(Refusal::Truncated),
            _ => None,
        }
    }

    /// A short name for reports: `dirty-log`, `differencing`, `not-fixed`, `truncated`.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::DirtyLog => "dirty-log",
            Refusal::Differencing => "differencing",
            Refusal::NotFixed => "not-fixed",
            Refusal::Truncated => "truncated",
        }
    }
}

/// One parsed header (§2.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// 1 or 2.
    pub copy: u8,
    /// File offset (64 KiB or 128 KiB).
    pub offset: u64,
    pub checksum: u32,
    pub sequence_number: u64,
    pub file_write_guid: Guid,
    pub data_write_guid: Guid,
    pub log_guid: Guid,
    pub log_version: u16,
    pub version: u16,
    pub log_length: u32,
    pub log_offset: u64,
    /// The bytes the checksum covers that have a meaning (first 80; the rest is reserved).
    raw: [u8; 80],
}

impl Header {
    fn field(copy: u8, one: &'static str, two: &'static str) -> &'static str {
        if copy == 1 {
            one
        } else {
            two
        }
    }

    /// Parse and verify one 4 KiB header read from `offset` (copy 1 or 2).
    pub fn parse(bytes: &[u8], copy: u8, offset: u64) -> Result<Header> {
        let b = Bytes {
            data: bytes,
            base: offset,
            format: FMT,
        };
        let f_sig = Self::field(copy, "VHDX header 1 signature", "VHDX header 2 signature");
        let f_crc = Self::field(copy, "VHDX header 1 checksum", "VHDX header 2 checksum");
        b.slice(0, HEADER_SIZE, f_sig)?;
        b.expect_sig(0, HEADER_SIGNATURE, f_sig)?;
        let stored = b.u32le(4, f_crc)?;
        let computed = crc32c::checksum_with_zeroed_field(&bytes[..HEADER_SIZE], 4);
        if stored != computed {
            return Err(Error::new(
                FMT,
                offset + 4,
                f_crc,
                ErrorKind::Checksum {
                    expected: computed,
                    found: stored,
                },
            ));
        }
        let g = |off: usize| -> Result<Guid> { Ok(Guid(b.array(off, "VHDX header guid")?)) };
        Ok(Header {
            copy,
            offset,
            checksum: stored,
            sequence_number: b.u64le(8, "VHDX header sequence number")?,
            file_write_guid: g(16)?,
            data_write_guid: g(32)?,
            log_guid: g(48)?,
            log_version: b.u16le(64, "VHDX header log version")?,
            version: b.u16le(66, "VHDX header version")?,
            log_length: b.u32le(68, "VHDX header log length")?,
            log_offset: b.u64le(72, "VHDX header log offset")?,
            raw: b.array(0, "VHDX header")?,
        })
    }
}

/// Why the current header was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderChoice {
    /// The other header is not valid (signature or checksum); its error.
    OtherInvalid(Error),
    /// Both valid; this one has the higher sequence number (the other's is given).
    HigherSequence { other_sequence: u64 },
    /// Both valid, byte-identical, same sequence number (Disk2VHD): header 1 is used.
    IdenticalCopies,
}

/// Which header is current and why (§2.2.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    pub current: Header,
    pub choice: HeaderChoice,
}

impl HeaderInfo {
    /// What the other header is: "header 1 is older (seq 4)", "header 1 rejected: …",
    /// "header 2 is an identical copy (same seq)".
    pub fn other_text(&self) -> String {
        let other = 3 - self.current.copy;
        match &self.choice {
            HeaderChoice::OtherInvalid(e) => format!("header {other} rejected: {e}"),
            HeaderChoice::HigherSequence { other_sequence } => {
                format!("header {other} is older (seq {other_sequence})")
            }
            HeaderChoice::IdenticalCopies => {
                format!("header {other} is an identical copy (same seq)")
            }
        }
    }
}

impl fmt::Display for HeaderInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.current;
        write!(
            f,
            "header {} current (seq {}); {}",
            c.copy,
            c.sequence_number,
            self.other_text()
        )
    }
}

/// One region table entry (§2.2.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionEntry {
    pub guid: Guid,
    pub file_offset: u64,
    pub length: u32,
    pub required: bool,
    /// File offset of this entry in the region table that was used.
    pub entry_offset: u64,
}

impl RegionEntry {
    fn end(&self) -> u64 {
        self.file_offset.saturating_add(u64::from(self.length))
    }
}

/// What the region table copy that was not used looked like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OtherTable {
    /// Valid and the same entries.
    Identical,
    /// Valid, but its entries differ from the copy used (reported, not fatal).
    Differs,
    /// Not valid: its error.
    Invalid(Error),
}

/// The region table in use and what was found in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Regions {
    /// 1 or 2: the copy used (the first valid one).
    pub copy: u8,
    pub other: OtherTable,
    pub bat: RegionEntry,
    pub metadata: RegionEntry,
    /// Unknown regions without the Required flag (ignored, as §2.2.3.2 allows).
    pub unknown_optional: Vec<RegionEntry>,
}

fn parse_region_table(bytes: &[u8], copy: u8, offset: u64) -> Result<Vec<RegionEntry>> {
    let b = Bytes {
        data: bytes,
        base: offset,
        format: FMT,
    };
    let f_sig = if copy == 1 {
        "VHDX region table 1 signature"
    } else {
        "VHDX region table 2 signature"
    };
    let f_crc = if copy == 1 {
        "VHDX region table 1 checksum"
    } else {
        "VHDX region table 2 checksum"
    };
    b.slice(0, TABLE_SIZE, f_sig)?;
    b.expect_sig(0, REGION_TABLE_SIGNATURE, f_sig)?;
    let stored = b.u32le(4, f_crc)?;
    let computed = crc32c::checksum_with_zeroed_field(&bytes[..TABLE_SIZE], 4);
    if stored != computed {
        return Err(Error::new(
            FMT,
            offset + 4,
            f_crc,
            ErrorKind::Checksum {
                expected: computed,
                found: stored,
            },
        ));
    }
    let count = b.u32le(8, "VHDX region table entry count")?;
    if count > MAX_TABLE_ENTRIES {
        return Err(Error::invalid(
            FMT,
            offset + 8,
            "VHDX region table entry count",
            format!("{count} entries, at most {MAX_TABLE_ENTRIES} allowed (§2.2.3.1)"),
        ));
    }
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let e = b.slice(16 + 32 * i, 32, "VHDX region table entry")?;
        out.push(RegionEntry {
            guid: Guid(e.array(0, "VHDX region guid")?),
            file_offset: e.u64le(16, "VHDX region file offset")?,
            length: e.u32le(24, "VHDX region length")?,
            required: e.u32le(28, "VHDX region required flag")? & 1 != 0,
            entry_offset: e.base,
        });
    }
    Ok(out)
}

/// File Parameters (§2.6.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileParameters {
    pub block_size: u32,
    pub leave_block_allocated: bool,
    pub has_parent: bool,
}

/// A metadata table entry (§2.6.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataEntry {
    pub item_id: Guid,
    /// Offset relative to the metadata region.
    pub offset: u32,
    pub length: u32,
    pub is_user: bool,
    pub is_virtual_disk: bool,
    pub is_required: bool,
    /// File offset of the table entry.
    pub entry_offset: u64,
}

/// The known metadata items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    pub file_parameters: FileParameters,
    pub virtual_size: u64,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    /// Virtual Disk ID: the SCSI VPD page 0x83 identifier Windows reports for the disk.
    pub disk_id: Guid,
    /// Every table entry, in table order.
    pub entries: Vec<MetadataEntry>,
}

/// Payload block state (§2.5.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadState {
    /// 0: not in this file (a differencing disk reads its parent; others: undefined, read as zero).
    NotPresent,
    /// 1: contents undefined.
    Undefined,
    /// 2: contents are zero.
    Zero,
    /// 3: unmapped (trimmed); contents undefined.
    Unmapped,
    /// 6: all of the block is in the file at FileOffsetMB.
    FullyPresent,
    /// 7: differencing disks only; the sector bitmap says which sectors are here.
    PartiallyPresent,
}

impl PayloadState {
    pub fn from_code(code: u8) -> Option<PayloadState> {
        Some(match code {
            0 => PayloadState::NotPresent,
            1 => PayloadState::Undefined,
            2 => PayloadState::Zero,
            3 => PayloadState::Unmapped,
            6 => PayloadState::FullyPresent,
            7 => PayloadState::PartiallyPresent,
            _ => return None,
        })
    }
    pub fn code(self) -> u8 {
        match self {
            PayloadState::NotPresent => 0,
            PayloadState::Undefined => 1,
            PayloadState::Zero => 2,
            PayloadState::Unmapped => 3,
            PayloadState::FullyPresent => 6,
            PayloadState::PartiallyPresent => 7,
        }
    }
    /// The specification's name.
    pub fn name(self) -> &'static str {
        match self {
            PayloadState::NotPresent => "PAYLOAD_BLOCK_NOT_PRESENT",
            PayloadState::Undefined => "PAYLOAD_BLOCK_UNDEFINED",
            PayloadState::Zero => "PAYLOAD_BLOCK_ZERO",
            PayloadState::Unmapped => "PAYLOAD_BLOCK_UNMAPPED",
            PayloadState::FullyPresent => "PAYLOAD_BLOCK_FULLY_PRESENT",
            PayloadState::PartiallyPresent => "PAYLOAD_BLOCK_PARTIALLY_PRESENT",
        }
    }
}

/// Where a virtual-disk offset lives. Every length runs from the asked offset to the end of
/// its payload block (or of the virtual disk), never further.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// `len` bytes stored contiguously at file offset `offset`.
    File { offset: u64, len: u64 },
    /// `len` bytes defined as zero (PAYLOAD_BLOCK_ZERO).
    Zero { len: u64 },
    /// `len` bytes the file does not hold (NOT_PRESENT, UNDEFINED, UNMAPPED); readers
    /// (Hyper-V, qemu) return zeros.
    NotPresent { len: u64, state: PayloadState },
}

impl Mapping {
    pub fn len(&self) -> u64 {
        match *self {
            Mapping::File { len, .. } | Mapping::Zero { len } | Mapping::NotPresent { len, .. } => {
                len
            }
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How many payload blocks are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub not_present: u64,
    pub undefined: u64,
    pub zero: u64,
    pub unmapped: u64,
    pub fully_present: u64,
}

/// An opened VHDX: header, regions, metadata and the payload entries of the BAT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vhdx {
    /// Length of the file it was read from.
    pub file_len: u64,
    /// The file type identifier's creator string (e.g. "QEMU v7.2.22", "Microsoft Windows 6.2.9200.16384").
    pub creator: String,
    pub headers: HeaderInfo,
    pub regions: Regions,
    pub metadata: Metadata,
    /// Payload blocks per sector-bitmap block (§2.4).
    pub chunk_ratio: u64,
    /// Raw BAT entries of the payload blocks, in virtual order (sector-bitmap entries removed).
    payload: Vec<u64>,
    pub counts: StateCounts,
    /// Sector-bitmap entries that are not NOT_PRESENT (expected 0 in a non-differencing disk).
    pub sector_bitmaps_present: u64,
    /// Maximal runs of FULLY_PRESENT blocks that are contiguous in the file, in virtual order.
    pub file_extents: u64,
}

fn read<R: ReadAt>(
    r: &mut R,
    offset: u64,
    len: usize,
    field: &'static str,
) -> core::result::Result<Vec<u8>, ReadError<R::Error>> {
    let size = r.size();
    let fits = offset
        .checked_add(len as u64)
        .is_some_and(|end| end <= size);
    if !fits {
        return Err(
            Error::truncated(FMT, offset, field, len as u64, size.saturating_sub(offset)).into(),
        );
    }
    let mut buf = vec![0u8; len];
    r.read_exact_at(offset, &mut buf).map_err(ReadError::Io)?;
    Ok(buf)
}

fn size_text(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, unit) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} B")
}

impl Vhdx {
    /// Open a VHDX through `r` (whose [`ReadAt::size`] is the file length): file type
    /// identifier, both headers, both region tables, the metadata table and items, and the
    /// BAT's payload entries. Reads about 200 KiB plus the BAT (8 bytes per block), never the
    /// payload. Fails on a dirty log, a differencing disk, unknown required regions or
    /// metadata items, and any block or structure past the end of the file.
    pub fn open<R: ReadAt>(r: &mut R) -> core::result::Result<Vhdx, ReadError<R::Error>> {
        let file_len = r.size();
        if file_len < HEADER_SECTION_SIZE {
            return Err(Error::truncated(
                FMT,
                0,
                "VHDX header section",
                HEADER_SECTION_SIZE,
                file_len,
            )
            .into());
        }
        // §2.2.1 file type identifier.
        let id = read(r, 0, 8 + 512, "VHDX file type identifier")?;
        let idb = Bytes::new(FMT, &id);
        idb.expect_sig(0, FILE_SIGNATURE, "VHDX file type identifier")?;
        let units = id[8..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0);
        let creator: String = char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect();

        let headers = Self::read_headers(r)?;
        let cur = &headers.current;
        // §2.3: a non-empty log must be replayed before anything else is trusted.
        if !cur.log_guid.is_zero() {
            return Err(Error::unsupported(
                FMT,
                cur.offset + 48,
                F_LOG_GUID,
                format!(
                    "dirty log: the file was not closed cleanly (header {} LogGuid {}); replay it with Hyper-V \
                     (attach the disk once) or `qemu-img check -r all`",
                    cur.copy, cur.log_guid
                ),
            )
            .into());
        }
        if cur.version != 1 {
            return Err(Error::unsupported(
                FMT,
                cur.offset + 66,
                "VHDX header version",
                format!(
                    "version {} (only VHDX version 1 is defined, §2.2.2)",
                    cur.version
                ),
            )
            .into());
        }

        let regions = Self::read_regions(r, file_len)?;
        let metadata = Self::read_metadata(r, &regions.metadata)?;
        let mut v = Vhdx {
            file_len,
            creator,
            headers,
            regions,
            chunk_ratio: 0,
            payload: Vec::new(),
            counts: StateCounts::default(),
            sector_bitmaps_present: 0,
            file_extents: 0,
            metadata,
        };
        v.read_bat(r)?;
        Ok(v)
    }

    fn read_headers<R: ReadAt>(r: &mut R) -> core::result::Result<HeaderInfo, ReadError<R::Error>> {
        let mut parsed: [Option<Result<Header>>; 2] = [None, None];
        for (i, &off) in HEADER_OFFSETS.iter().enumerate() {
            let bytes = read(r, off, HEADER_SIZE, "VHDX header")?;
            parsed[i] = Some(Header::parse(&bytes, i as u8 + 1, off));
        }
        let [Some(h1), Some(h2)] = parsed else {
            return Err(Error::invalid(FMT, HEADER_OFFSETS[0], "VHDX headers", "not read").into());
        };
        let info = match (h1, h2) {
            (Ok(a), Err(e)) => HeaderInfo {
                current: a,
                choice: HeaderChoice::OtherInvalid(e),
            },
            (Err(e), Ok(b)) => HeaderInfo {
                current: b,
                choice: HeaderChoice::OtherInvalid(e),
            },
            (Err(e1), Err(e2)) => {
                return Err(Error::invalid(
                    FMT,
                    HEADER_OFFSETS[0],
                    "VHDX headers",
                    format!("no valid header, the file is corrupt (§2.2.2.1): header 1: {e1}; header 2: {e2}"),
                )
                .into())
            }
            (Ok(a), Ok(b)) => {
                if a.sequence_number > b.sequence_number {
                    HeaderInfo {
                        choice: HeaderChoice::HigherSequence {
                            other_sequence: b.sequence_number,
                        },
                        current: a,
                    }
                } else if b.sequence_number > a.sequence_number {
                    HeaderInfo {
                        choice: HeaderChoice::HigherSequence {
                            other_sequence: a.sequence_number,
                        },
                        current: b,
                    }
                } else if a.raw == b.raw {
                    HeaderInfo {
                        current: a,
                        choice: HeaderChoice::IdenticalCopies,
                    }
                } else {
                    return Err(Error::invalid(
                        FMT,
                        HEADER_OFFSETS[1] + 8,
                        "VHDX header 2 sequence number",
                        format!(
                            "both headers are valid with the same sequence number {} but differ: no current header, \
                             the file is corrupt (§2.2.2.1)",
                            a.sequence_number
                        ),
                    )
                    .into());
                }
            }
        };
        Ok(info)
    }

    fn read_regions<R: ReadAt>(
        r: &mut R,
        file_len: u64,
    ) -> core::result::Result<Regions, ReadError<R::Error>> {
        let t1 = read(
            r,
            REGION_TABLE_OFFSETS[0],
            TABLE_SIZE,
            "VHDX region table 1",
        )?;
        let t2 = read(
            r,
            REGION_TABLE_OFFSETS[1],
            TABLE_SIZE,
            "VHDX region table 2",
        )?;
        let p1 = parse_region_table(&t1, 1, REGION_TABLE_OFFSETS[0]);
        let p2 = parse_region_table(&t2, 2, REGION_TABLE_OFFSETS[1]);
        let same = |a: &[RegionEntry], b: &[RegionEntry]| {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    (x.guid, x.file_offset, x.length, x.required)
                        == (y.guid, y.file_offset, y.length, y.required)
                })
        };
        let (copy, entries, other) = match (p1, p2) {
            (Ok(a), Ok(b)) => {
                let o = if same(&a, &b) {
                    OtherTable::Identical
                } else {
                    OtherTable::Differs
                };
                (1u8, a, o)
            }
            (Ok(a), Err(e)) => (1, a, OtherTable::Invalid(e)),
            (Err(e), Ok(b)) => (2, b, OtherTable::Invalid(e)),
            (Err(e1), Err(e2)) => {
                return Err(Error::invalid(
                    FMT,
                    REGION_TABLE_OFFSETS[0],
                    "VHDX region tables",
                    format!("no valid region table (§2.2.3): table 1: {e1}; table 2: {e2}"),
                )
                .into())
            }
        };
        let mut bat = None;
        let mut metadata = None;
        let mut unknown_optional = Vec::new();
        for e in &entries {
            if e.file_offset % MIB != 0 || e.file_offset < HEADER_SECTION_SIZE {
                return Err(Error::invalid(
                    FMT,
                    e.entry_offset + 16,
                    "VHDX region file offset",
                    format!(
                        "region {} at {:#x}: must be a multiple of 1 MiB and at least 1 MiB (§2.2.3.2)",
                        e.guid, e.file_offset
                    ),
                )
                .into());
            }
            if e.length == 0 || u64::from(e.length) % MIB != 0 {
                return Err(Error::invalid(
                    FMT,
                    e.entry_offset + 24,
                    "VHDX region length",
                    format!(
                        "region {} is {} bytes: must be a non-zero multiple of 1 MiB (§2.2.3.2)",
                        e.guid, e.length
                    ),
                )
                .into());
            }
            if e.end() > file_len {
                return Err(Error::truncated(
                    FMT,
                    e.file_offset,
                    "VHDX region (past the end of the file)",
                    u64::from(e.length),
                    file_len.saturating_sub(e.file_offset),
                )
                .into());
            }
            let slot = if e.guid == guids::BAT {
                &mut bat
            } else if e.guid == guids::METADATA {
                &mut metadata
            } else if e.required {
                return Err(Error::unsupported(
                    FMT,
                    e.entry_offset,
                    "VHDX region guid",
                    format!(
                        "unknown region {} is marked required: this reader cannot open the file (§2.2.3.2)",
                        e.guid
                    ),
                )
                .into());
            } else {
                unknown_optional.push(*e);
                continue;
            };
            if slot.is_some() {
                return Err(Error::invalid(
                    FMT,
                    e.entry_offset,
                    "VHDX region guid",
                    format!("region {} appears twice", e.guid),
                )
                .into());
            }
            *slot = Some(*e);
        }
        for (i, a) in entries.iter().enumerate() {
            for b in &entries[i + 1..] {
                if a.file_offset < b.end() && b.file_offset < a.end() {
                    return Err(Error::invalid(
                        FMT,
                        b.entry_offset + 16,
                        "VHDX region file offset",
                        format!(
                            "region {} [{:#x}, {:#x}) overlaps region {} [{:#x}, {:#x})",
                            b.guid,
                            b.file_offset,
                            b.end(),
                            a.guid,
                            a.file_offset,
                            a.end()
                        ),
                    )
                    .into());
                }
            }
        }
        let table_at = REGION_TABLE_OFFSETS[usize::from(copy) - 1];
        let missing = |what: &str| -> ReadError<R::Error> {
            Error::not_found(
                FMT,
                table_at,
                "VHDX region table",
                format!("the {what} region (a VHDX must have one, §2.2.3.2)"),
            )
            .into()
        };
        let bat = bat.ok_or_else(|| missing("BAT"))?;
        let metadata = metadata.ok_or_else(|| missing("metadata"))?;
        Ok(Regions {
            copy,
            other,
            bat,
            metadata,
            unknown_optional,
        })
    }

    fn read_metadata<R: ReadAt>(
        r: &mut R,
        region: &RegionEntry,
    ) -> core::result::Result<Metadata, ReadError<R::Error>> {
        let base = region.file_offset;
        let table = read(r, base, TABLE_SIZE, "VHDX metadata table")?;
        let b = Bytes {
            data: &table,
            base,
            format: FMT,
        };
        b.expect_sig(0, METADATA_SIGNATURE, "VHDX metadata table signature")?;
        let count = b.u16le(10, "VHDX metadata entry count")?;
        if u32::from(count) > MAX_TABLE_ENTRIES {
            return Err(Error::invalid(
                FMT,
                base + 10,
                "VHDX metadata entry count",
                format!("{count} entries, at most {MAX_TABLE_ENTRIES} allowed (§2.6.1.1)"),
            )
            .into());
        }
        let mut entries = Vec::with_capacity(usize::from(count));
        for i in 0..usize::from(count) {
            let e = b.slice(32 + 32 * i, 32, "VHDX metadata entry")?;
            let flags = e.u32le(24, "VHDX metadata entry flags")?;
            let m = MetadataEntry {
                item_id: Guid(e.array(0, "VHDX metadata item id")?),
                offset: e.u32le(16, "VHDX metadata item offset")?,
                length: e.u32le(20, "VHDX metadata item length")?,
                is_user: flags & 1 != 0,
                is_virtual_disk: flags & 2 != 0,
                is_required: flags & 4 != 0,
                entry_offset: e.base,
            };
            let (off, len) = (u64::from(m.offset), u64::from(m.length));
            let bad_place = if len == 0 {
                false
            } else {
                off < TABLE_SIZE as u64 || len > MIB || off + len > u64::from(region.length)
            };
            if bad_place {
                return Err(Error::invalid(
                    FMT,
                    m.entry_offset + 16,
                    "VHDX metadata item offset",
                    format!(
                        "item {} at region offset {off:#x}, {len} bytes: must lie after the 64 KiB table, within the \
                         {}-byte region, and be at most 1 MiB (§2.6.1.2)",
                        m.item_id, region.length
                    ),
                )
                .into());
            }
            if entries
                .iter()
                .any(|x: &MetadataEntry| x.item_id == m.item_id && x.is_user == m.is_user)
            {
                return Err(Error::invalid(
                    FMT,
                    m.entry_offset,
                    "VHDX metadata item id",
                    format!("item {} appears twice (§2.6.1.2)", m.item_id),
                )
                .into());
            }
            let known = !m.is_user
                && [
                    guids::FILE_PARAMETERS,
                    guids::VIRTUAL_DISK_SIZE,
                    guids::PAGE_83_DATA,
                    guids::LOGICAL_SECTOR_SIZE,
                    guids::PHYSICAL_SECTOR_SIZE,
                    guids::PARENT_LOCATOR,
                ]
                .contains(&m.item_id);
            if !known && m.is_required {
                return Err(Error::unsupported(
                    FMT,
                    m.entry_offset,
                    "VHDX metadata item id",
                    format!(
                        "unknown metadata item {} is marked required: this reader cannot open the file (§2.6.1.2)",
                        m.item_id
                    ),
                )
                .into());
            }
            entries.push(m);
        }
        // Read one system item: its bytes (at least `min` of them) and their file offset.
        let mut item = |id: Guid,
                        name: &'static str,
                        min: usize|
         -> core::result::Result<(Vec<u8>, u64), ReadError<R::Error>> {
            let Some(m) = entries.iter().find(|m| m.item_id == id && !m.is_user) else {
                return Err(Error::not_found(
                    FMT,
                    base,
                    name,
                    format!("metadata item {id} (required in every VHDX, §2.6.2)"),
                )
                .into());
            };
            let at = base + u64::from(m.offset);
            if (m.length as usize) < min {
                return Err(Error::invalid(
                    FMT,
                    m.entry_offset + 20,
                    name,
                    format!("item is {} bytes, needs {min}", m.length),
                )
                .into());
            }
            Ok((read(r, at, min, name)?, at))
        };
        let (fp, fp_at) = item(guids::FILE_PARAMETERS, "VHDX file parameters", 8)?;
        let (vs, vs_at) = item(guids::VIRTUAL_DISK_SIZE, "VHDX virtual disk size", 8)?;
        let (id, _) = item(guids::PAGE_83_DATA, "VHDX virtual disk id", 16)?;
        let (ls, ls_at) = item(guids::LOGICAL_SECTOR_SIZE, "VHDX logical sector size", 4)?;
        let (ps, ps_at) = item(guids::PHYSICAL_SECTOR_SIZE, "VHDX physical sector size", 4)?;

        let fpb = Bytes {
            data: &fp,
            base: fp_at,
            format: FMT,
        };
        let block_size = fpb.u32le(0, "VHDX block size")?;
        let flags = fpb.u32le(4, "VHDX file parameters flags")?;
        let file_parameters = FileParameters {
            block_size,
            leave_block_allocated: flags & 1 != 0,
            has_parent: flags & 2 != 0,
        };
        if !(MIB..=256 * MIB).contains(&u64::from(block_size)) || !block_size.is_power_of_two() {
            return Err(Error::invalid(
                FMT,
                fp_at,
                "VHDX block size",
                format!(
                    "{block_size} bytes: must be a power of two from 1 MiB to 256 MiB (§2.6.2.1)"
                ),
            )
            .into());
        }
        if file_parameters.has_parent {
            return Err(Error::unsupported(
                FMT,
                fp_at + 4,
                F_HAS_PARENT,
                "differencing VHDX (HasParent): its data lives partly in a parent file; native boot from the UFD \
                 needs one self-contained fixed VHDX (merge it, e.g. `qemu-img convert -O vhdx -o \
                 subformat=fixed,block_state_zero=off`)",
            )
            .into());
        }
        let sector = |v: &[u8], at: u64, name: &'static str| -> Result<u32> {
            let s = Bytes {
                data: v,
                base: at,
                format: FMT,
            }
            .u32le(0, name)?;
            if s != 512 && s != 4096 {
                return Err(Error::invalid(
                    FMT,
                    at,
                    name,
                    format!("{s}: must be 512 or 4096 (§2.6.2.4, §2.6.2.5)"),
                ));
            }
            Ok(s)
        };
        let logical_sector_size = sector(&ls, ls_at, "VHDX logical sector size")?;
        let physical_sector_size = sector(&ps, ps_at, "VHDX physical sector size")?;
        let virtual_size = Bytes {
            data: &vs,
            base: vs_at,
            format: FMT,
        }
        .u64le(0, "VHDX virtual disk size")?;
        if virtual_size == 0
            || virtual_size > MAX_VIRTUAL_SIZE
            || virtual_size % u64::from(logical_sector_size) != 0
        {
            return Err(Error::invalid(
                FMT,
                vs_at,
                "VHDX virtual disk size",
                format!(
                    "{virtual_size} bytes: must be a non-zero multiple of the {logical_sector_size}-byte logical sector, \
                     at most 64 TiB (§2.6.2.2)"
                ),
            )
            .into());
        }
        let mut disk_id = [0u8; 16];
        disk_id.copy_from_slice(&id[..16]);
        Ok(Metadata {
            file_parameters,
            virtual_size,
            logical_sector_size,
            physical_sector_size,
            disk_id: Guid(disk_id),
            entries,
        })
    }

    fn read_bat<R: ReadAt>(&mut self, r: &mut R) -> core::result::Result<(), ReadError<R::Error>> {
        let bs = u64::from(self.metadata.file_parameters.block_size);
        // Both factors are validated: 2^23 × {512, 4096} / {2^20 ..= 2^28} ∈ [16, 32768].
        self.chunk_ratio = (1u64 << 23) * u64::from(self.metadata.logical_sector_size) / bs;
        let blocks = self.metadata.virtual_size.div_ceil(bs);
        let total = blocks + (blocks - 1) / self.chunk_ratio;
        let region = self.regions.bat;
        let needed = total * 8;
        if needed > u64::from(region.length) {
            return Err(Error::invalid(
                FMT,
                region.entry_offset + 24,
                "VHDX BAT region length",
                format!(
                    "{} bytes, but {blocks} payload blocks of {} need {total} entries = {needed} bytes (§2.5)",
                    region.length,
                    size_text(bs)
                ),
            )
            .into());
        }
        // The region is inside the file (checked), so `blocks` ≤ file length / 8.
        let mut payload = Vec::with_capacity(blocks as usize);
        let mut counts = StateCounts::default();
        let mut sb_present = 0u64;
        let mut extents = 0u64;
        let mut prev_end: Option<u64> = None;
        let log = &self.headers.current;
        let reserved_areas = [
            (0, HEADER_SECTION_SIZE, "the header section"),
            (region.file_offset, region.end(), "the BAT region"),
            (
                self.regions.metadata.file_offset,
                self.regions.metadata.end(),
                "the metadata region",
            ),
            (
                log.log_offset,
                log.log_offset.saturating_add(u64::from(log.log_length)),
                "the log",
            ),
        ];
        const CHUNK: u64 = 64 * 1024;
        let mut j = 0u64;
        while j < total {
            let n = (total - j).min(CHUNK / 8);
            let at = region.file_offset + j * 8;
            let buf = read(r, at, (n * 8) as usize, "VHDX BAT")?;
            for (k, e) in buf.chunks_exact(8).enumerate() {
                let idx = j + k as u64;
                let entry_at = at + 8 * k as u64;
                let raw = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
                let code = (raw & 7) as u8;
                if (idx + 1) % (self.chunk_ratio + 1) == 0 {
                    // Sector-bitmap entry: NOT_PRESENT (0) or PRESENT (6) (§2.5.1.2).
                    match code {
                        0 => {}
                        6 => sb_present += 1,
                        _ => {
                            return Err(Error::invalid(
                                FMT,
                                entry_at,
                                "VHDX BAT sector bitmap entry",
                                format!(
                                "state {code} (0 NOT_PRESENT and 6 PRESENT are defined, §2.5.1.2)"
                            ),
                            )
                            .into())
                        }
                    }
                    continue;
                }
                let block = payload.len() as u64;
                let Some(state) = PayloadState::from_code(code) else {
                    return Err(Error::invalid(
                        FMT,
                        entry_at,
                        "VHDX BAT payload entry",
                        format!("block {block}: state {code} is reserved (§2.5.1.1)"),
                    )
                    .into());
                };
                match state {
                    PayloadState::NotPresent => counts.not_present += 1,
                    PayloadState::Undefined => counts.undefined += 1,
                    PayloadState::Zero => counts.zero += 1,
                    PayloadState::Unmapped => counts.unmapped += 1,
                    PayloadState::FullyPresent => counts.fully_present += 1,
                    PayloadState::PartiallyPresent => {
                        return Err(Error::invalid(
                            FMT,
                            entry_at,
                            "VHDX BAT payload entry",
                            format!(
                                "block {block} is PARTIALLY_PRESENT, which only a differencing disk may use (§2.5.1.1)"
                            ),
                        )
                        .into())
                    }
                }
                if state == PayloadState::FullyPresent {
                    let off = raw & !0xF_FFFF;
                    let used = bs.min(self.metadata.virtual_size - block * bs);
                    for (lo, hi, what) in reserved_areas {
                        if off < hi && lo < off.saturating_add(bs) {
                            return Err(Error::invalid(
                                FMT,
                                entry_at,
                                "VHDX BAT payload entry",
                                format!("block {block} at file offset {off:#x} overlaps {what} [{lo:#x}, {hi:#x})"),
                            )
                            .into());
                        }
                    }
                    if off.checked_add(used).is_none_or(|e| e > self.file_len) {
                        return Err(Error::truncated(
                            FMT,
                            entry_at,
                            "VHDX BAT payload entry (block past the end of the file)",
                            used,
                            self.file_len.saturating_sub(off),
                        )
                        .into());
                    }
                    if prev_end != Some(off) {
                        extents += 1;
                    }
                    prev_end = Some(off + bs);
                } else {
                    prev_end = None;
                }
                payload.push(raw);
            }
            j += n;
        }
        self.payload = payload;
        self.counts = counts;
        self.sector_bitmaps_present = sb_present;
        self.file_extents = extents;
        Ok(())
    }

    /// Virtual disk size in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.metadata.virtual_size
    }
    /// Payload block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.metadata.file_parameters.block_size
    }
    pub fn logical_sector_size(&self) -> u32 {
        self.metadata.logical_sector_size
    }
    pub fn physical_sector_size(&self) -> u32 {
        self.metadata.physical_sector_size
    }
    /// The page 83 (Virtual Disk ID) GUID.
    pub fn disk_id(&self) -> Guid {
        self.metadata.disk_id
    }
    /// Absolute file offset and length of the system metadata item `id` (IsUser clear,
    /// §2.6.1.2): the metadata region's file offset plus the entry's region-relative Offset.
    /// `None` when the table has no such item. For the items [`Vhdx::open`] requires (the
    /// five of §2.6.2.1–§2.6.2.5) the offset and length were checked to lie inside the region
    /// and the length to cover the item, e.g. 16 bytes for [`guids::PAGE_83_DATA`], the page 83
    /// id a writer pins for a reproducible file (see [`pin_headers`]). Metadata items carry no
    /// checksum (§2.6), so rewriting one needs no re-sealing.
    pub fn metadata_item(&self, id: &Guid) -> Option<(u64, u32)> {
        self.metadata
            .entries
            .iter()
            .find(|m| m.item_id == *id && !m.is_user)
            .map(|m| {
                (
                    self.regions
                        .metadata
                        .file_offset
                        .saturating_add(u64::from(m.offset)),
                    m.length,
                )
            })
    }
    /// Which header is current and why.
    pub fn header_info(&self) -> &HeaderInfo {
        &self.headers
    }
    /// Number of payload blocks.
    pub fn block_count(&self) -> u64 {
        self.payload.len() as u64
    }

    /// State and file offset of payload block `block` (`None` past the last block).
    pub fn block(&self, block: u64) -> Option<(PayloadState, u64)> {
        let raw = *self.payload.get(usize::try_from(block).ok()?)?;
        // Entries were validated when read.
        let state = PayloadState::from_code((raw & 7) as u8)?;
        Some((state, raw & !0xF_FFFF))
    }

    /// Fixed: LeaveBlockAllocated and every payload block FULLY_PRESENT — the whole virtual
    /// disk is in the file and no write will move it (see the module docs).
    pub fn is_fixed(&self) -> bool {
        self.metadata.file_parameters.leave_block_allocated
            && self.counts.fully_present == self.block_count()
    }

    /// `"fixed"` or `"dynamic"`.
    pub fn kind(&self) -> &'static str {
        if self.is_fixed() {
            "fixed"
        } else {
            "dynamic"
        }
    }

    /// An error unless [`Vhdx::is_fixed`]: the deployment procedure needs a fixed container.
    /// The message says what was found and how to make a fixed one.
    pub fn require_fixed(&self) -> Result<()> {
        if self.is_fixed() {
            return Ok(());
        }
        let c = &self.counts;
        let n = self.block_count();
        let found = if self.metadata.file_parameters.leave_block_allocated {
            format!(
                "LeaveBlockAllocated is set but only {} of {n} payload blocks are FULLY_PRESENT ({} ZERO, {} NOT_PRESENT, \
                 {} UNDEFINED, {} UNMAPPED){}",
                c.fully_present,
                c.zero,
                c.not_present,
                c.undefined,
                c.unmapped,
                if c.zero > 0 {
                    " — qemu-img's default block_state_zero=on makes such files"
                } else {
                    ""
                }
            )
        } else {
            format!(
                "dynamic VHDX (LeaveBlockAllocated not set; {} of {n} payload blocks present)",
                c.fully_present
            )
        };
        let fp_at = self
            .metadata
            .entries
            .iter()
            .find(|m| m.item_id == guids::FILE_PARAMETERS)
            .map_or(self.regions.metadata.file_offset, |m| {
                self.regions.metadata.file_offset + u64::from(m.offset) + 4
            });
        Err(Error::unsupported(
            FMT,
            fp_at,
            F_NOT_FIXED,
            format!(
                "{found}: a fixed VHDX is required for native boot from the UFD (make one with `qemu-img convert -O vhdx \
                 -o subformat=fixed,block_state_zero=off`)"
            ),
        ))
    }

    /// Where virtual byte `offset` is: a file range, zeros, or not present, up to the end of
    /// its payload block. Errors past the end of the virtual disk.
    pub fn map(&self, offset: u64) -> Result<Mapping> {
        let vs = self.metadata.virtual_size;
        if offset >= vs {
            return Err(Error::invalid(
                FMT,
                self.regions.metadata.file_offset,
                "VHDX virtual offset",
                format!("virtual offset {offset} is past the end of the {vs}-byte virtual disk"),
            ));
        }
        let bs = u64::from(self.metadata.file_parameters.block_size);
        let block = offset / bs;
        let within = offset % bs;
        let len = (bs - within).min(vs - offset);
        let Some((state, file_offset)) = self.block(block) else {
            return Err(Error::invalid(
                FMT,
                self.regions.bat.file_offset,
                "VHDX BAT payload entry",
                format!("no BAT entry for block {block}"),
            ));
        };
        Ok(match state {
            PayloadState::FullyPresent => Mapping::File {
                offset: file_offset + within,
                len,
            },
            PayloadState::Zero => Mapping::Zero { len },
            s => Mapping::NotPresent { len, state: s },
        })
    }

    /// Fill `buf` with the virtual disk's bytes at `offset` (zeros where the file holds none).
    pub fn read<R: ReadAt>(
        &self,
        r: &mut R,
        offset: u64,
        buf: &mut [u8],
    ) -> core::result::Result<(), ReadError<R::Error>> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.metadata.virtual_size) {
            return Err(Error::truncated(
                FMT,
                offset,
                "VHDX virtual disk read",
                buf.len() as u64,
                self.metadata.virtual_size.saturating_sub(offset),
            )
            .into());
        }
        let mut done = 0usize;
        while done < buf.len() {
            let m = self.map(offset + done as u64)?;
            let n = usize::try_from(m.len())
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            let part = &mut buf[done..done + n];
            match m {
                Mapping::File { offset, .. } => {
                    r.read_exact_at(offset, part).map_err(ReadError::Io)?
                }
                Mapping::Zero { .. } | Mapping::NotPresent { .. } => part.fill(0),
            }
            done += n;
        }
        Ok(())
    }

    /// One line for a boot-path hop: "VHDX v1 fixed, virtual size 20 MiB, block 8 MiB,
    /// sectors 512/512, header 2 seq 5".
    pub fn short(&self) -> String {
        format!(
            "VHDX v{} {}, virtual size {} ({} bytes), block {}, sectors {}/{}, header {} seq {}",
            self.headers.current.version,
            self.kind(),
            size_text(self.virtual_size()),
            self.virtual_size(),
            size_text(u64::from(self.block_size())),
            self.logical_sector_size(),
            self.physical_sector_size(),
            self.headers.current.copy,
            self.headers.current.sequence_number
        )
    }

    /// Non-fatal observations for `ufd inspect`.
    pub fn notes(&self) -> Vec<String> {
        let mut n = Vec::new();
        if let HeaderChoice::OtherInvalid(e) = &self.headers.choice {
            n.push(format!(
                "header {} is not valid and was ignored: {e}",
                3 - self.headers.current.copy
            ));
        }
        match &self.regions.other {
            OtherTable::Identical => {}
            OtherTable::Differs => n.push(format!(
                "region table {} differs from table {} (table {} used)",
                3 - self.regions.copy,
                self.regions.copy,
                self.regions.copy
            )),
            OtherTable::Invalid(e) => n.push(format!(
                "region table {} is not valid and was ignored: {e}",
                3 - self.regions.copy
            )),
        }
        for r in &self.regions.unknown_optional {
            n.push(format!(
                "unknown optional region {} at {:#x} ({} bytes) ignored",
                r.guid, r.file_offset, r.length
            ));
        }
        for m in &self.metadata.entries {
            let known = !m.is_user
                && [
                    guids::FILE_PARAMETERS,
                    guids::VIRTUAL_DISK_SIZE,
                    guids::PAGE_83_DATA,
                    guids::LOGICAL_SECTOR_SIZE,
                    guids::PHYSICAL_SECTOR_SIZE,
                ]
                .contains(&m.item_id);
            if !known {
                n.push(format!(
                    "{} metadata item {} ({} bytes) ignored",
                    if m.is_user {
                        "user"
                    } else {
                        "unknown optional"
                    },
                    m.item_id,
                    m.length
                ));
            }
        }
        if self.sector_bitmaps_present > 0 {
            n.push(format!(
                "{} sector bitmap blocks are marked present in a non-differencing disk (ignored)",
                self.sector_bitmaps_present
            ));
        }
        if self.is_fixed() && self.file_extents > 1 {
            n.push(format!(
                "the payload is in {} separate file extents rather than one",
                self.file_extents
            ));
        }
        n
    }
}

impl fmt::Display for Vhdx {
    /// A multi-line summary for `ufd inspect`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.short())?;
        writeln!(
            f,
            "creator: {:?}; file {} bytes",
            self.creator, self.file_len
        )?;
        writeln!(f, "{}; log empty", self.headers)?;
        writeln!(
            f,
            "region table {} used; BAT at {:#x} ({}), metadata at {:#x} ({})",
            self.regions.copy,
            self.regions.bat.file_offset,
            size_text(u64::from(self.regions.bat.length)),
            self.regions.metadata.file_offset,
            size_text(u64::from(self.regions.metadata.length))
        )?;
        let fp = &self.metadata.file_parameters;
        writeln!(
            f,
            "disk id (page 83) {}; LeaveBlockAllocated {}; chunk ratio {}",
            self.disk_id(),
            u8::from(fp.leave_block_allocated),
            self.chunk_ratio
        )?;
        let c = &self.counts;
        write!(
            f,
            "payload blocks {}: {} fully present, {} zero, {} not present, {} undefined, {} unmapped; {} file extent(s)",
            self.block_count(),
            c.fully_present,
            c.zero,
            c.not_present,
            c.undefined,
            c.unmapped,
            self.file_extents
        )?;
        for note in self.notes() {
            write!(f, "\nnote: {note}")?;
        }
        Ok(())
    }
}

/// What [`build_fixed`] makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedParams<'a> {
    /// Virtual disk size: a non-zero multiple of `logical_sector_size`, at most 64 TiB.
    pub virtual_size: u64,
    /// Payload block size: a power of two from 1 MiB to 256 MiB (Hyper-V's default is 32 MiB).
    pub block_size: u32,
    /// 512 (what Windows 8 / Server 2012 creates by default) or 4096.
    pub logical_sector_size: u32,
    /// 512 or 4096 (Hyper-V's default for new VHDX files is 4096).
    pub physical_sector_size: u32,
    /// The page 83 id Windows reports for the disk.
    pub disk_id: Guid,
    pub file_write_guid: Guid,
    pub data_write_guid: Guid,
    /// The file type identifier's creator (at most 256 UTF-16 units).
    pub creator: &'a str,
}

/// A fixed VHDX: `head` is the first `data_offset` bytes of the file; the virtual disk's bytes
/// follow it unchanged (payload block *i* at `data_offset + i × block_size`), and the file is
/// `file_len` bytes long (the last block padded to a whole block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedLayout {
    pub head: Vec<u8>,
    pub data_offset: u64,
    pub file_len: u64,
}

/// Build the metadata of a fixed VHDX for a raw disk (pure, no I/O): file type identifier,
/// two headers (sequence 1 and 2, header 2 current, LogGuid zero), two identical region
/// tables, an empty 1 MiB log at 1 MiB, the BAT at 2 MiB (every payload block FULLY_PRESENT
/// and contiguous, sector-bitmap entries NOT_PRESENT), the metadata region after it
/// (LeaveBlockAllocated set, the five system items laid out as qemu-img lays them out), then
/// the payload. Putting `head` in front of a raw disk image (and padding it to `file_len`)
/// yields a file [`Vhdx::open`] reads as fixed and qemu-img checks clean
/// (tests/vhdx.rs: `built_fixed_vhdx_is_read_by_qemu_and_the_vhdx_crate`).
///
/// Reconstructed, not copied from a Windows-made file: the BAT and metadata regions are
/// marked Required (§2.2.3.2 says an implementation must refuse a required region it does not
/// know; qemu-img 7.2 leaves the flag clear on both) and the layout order log/BAT/metadata is
/// qemu's.
pub fn build_fixed(p: &FixedParams<'_>) -> Result<FixedLayout> {
    use crate::bytes::{put_u16le, put_u32le, put_u64le};
    let bs = u64::from(p.block_size);
    let bad = |field: &'static str, why: String| Err(Error::invalid(FMT, 0, field, why));
    if !(MIB..=256 * MIB).contains(&bs) || !p.block_size.is_power_of_two() {
        return bad(
            "VHDX block size",
            format!(
                "{}: must be a power of two from 1 MiB to 256 MiB",
                p.block_size
            ),
        );
    }
    for (v, field) in [
        (p.logical_sector_size, "VHDX logical sector size"),
        (p.physical_sector_size, "VHDX physical sector size"),
    ] {
        if v != 512 && v != 4096 {
            return bad(field, format!("{v}: must be 512 or 4096"));
        }
    }
    if p.virtual_size == 0
        || p.virtual_size > MAX_VIRTUAL_SIZE
        || p.virtual_size % u64::from(p.logical_sector_size) != 0
    {
        return bad(
            "VHDX virtual disk size",
            format!(
                "{}: must be a non-zero multiple of the logical sector size, at most 64 TiB",
                p.virtual_size
            ),
        );
    }
    let creator: Vec<u16> = p.creator.encode_utf16().collect();
    if creator.len() > 256 {
        return bad(
            "VHDX creator",
            format!("{} UTF-16 units, at most 256", creator.len()),
        );
    }
    let chunk_ratio = (1u64 << 23) * u64::from(p.logical_sector_size) / bs;
    let blocks = p.virtual_size.div_ceil(bs);
    let entries = blocks + (blocks - 1) / chunk_ratio;
    const LOG_AT: u64 = MIB;
    const LOG_LEN: u64 = MIB;
    let bat_at = LOG_AT + LOG_LEN;
    let bat_len = (entries * 8).div_ceil(MIB) * MIB;
    let meta_at = bat_at + bat_len;
    let data_offset = meta_at + MIB;
    let (Ok(head_len), Ok(bat_len32)) = (usize::try_from(data_offset), u32::try_from(bat_len))
    else {
        return bad("VHDX BAT", format!("{entries} BAT entries do not fit"));
    };
    let mut h = vec![0u8; head_len];
    // §2.2.1 file type identifier.
    h[..8].copy_from_slice(FILE_SIGNATURE);
    for (i, u) in creator.iter().enumerate() {
        put_u16le(&mut h, 8 + 2 * i, *u);
    }
    // §2.2.2 headers.
    for (i, &at) in HEADER_OFFSETS.iter().enumerate() {
        let at = at as usize;
        h[at..at + 4].copy_from_slice(HEADER_SIGNATURE);
        put_u64le(&mut h, at + 8, i as u64 + 1);
        h[at + 16..at + 32].copy_from_slice(&p.file_write_guid.0);
        h[at + 32..at + 48].copy_from_slice(&p.data_write_guid.0);
        put_u16le(&mut h, at + 64, 0);
        put_u16le(&mut h, at + 66, 1);
        put_u32le(&mut h, at + 68, LOG_LEN as u32);
        put_u64le(&mut h, at + 72, LOG_AT);
        let c = crc32c::checksum(&h[at..at + HEADER_SIZE]);
        put_u32le(&mut h, at + 4, c);
    }
    // §2.2.3 region tables.
    for &at in &REGION_TABLE_OFFSETS {
        let at = at as usize;
        h[at..at + 4].copy_from_slice(REGION_TABLE_SIGNATURE);
        put_u32le(&mut h, at + 8, 2);
        for (k, (g, off, len)) in [
            (guids::BAT, bat_at, bat_len32),
            (guids::METADATA, meta_at, MIB as u32),
        ]
        .into_iter()
        .enumerate()
        {
            let e = at + 16 + 32 * k;
            h[e..e + 16].copy_from_slice(&g.0);
            put_u64le(&mut h, e + 16, off);
            put_u32le(&mut h, e + 24, len);
            put_u32le(&mut h, e + 28, 1);
        }
        let c = crc32c::checksum(&h[at..at + TABLE_SIZE]);
        put_u32le(&mut h, at + 4, c);
    }
    // §2.5 BAT: payload block i at data_offset + i × block size.
    for j in 0..entries {
        if (j + 1) % (chunk_ratio + 1) == 0 {
            continue;
        }
        let block = j - j / (chunk_ratio + 1);
        put_u64le(
            &mut h,
            (bat_at + 8 * j) as usize,
            (data_offset + block * bs) | u64::from(PayloadState::FullyPresent.code()),
        );
    }
    // §2.6 metadata table and items.
    let m = meta_at as usize;
    h[m..m + 8].copy_from_slice(METADATA_SIGNATURE);
    put_u16le(&mut h, m + 10, 5);
    let items: [(Guid, u32, u32, u32); 5] = [
        (guids::FILE_PARAMETERS, 0, 8, 4),
        (guids::VIRTUAL_DISK_SIZE, 8, 8, 6),
        (guids::PAGE_83_DATA, 16, 16, 6),
        (guids::LOGICAL_SECTOR_SIZE, 32, 4, 6),
        (guids::PHYSICAL_SECTOR_SIZE, 36, 4, 6),
    ];
    for (k, (g, rel, len, flags)) in items.into_iter().enumerate() {
        let e = m + 32 + 32 * k;
        h[e..e + 16].copy_from_slice(&g.0);
        put_u32le(&mut h, e + 16, TABLE_SIZE as u32 + rel);
        put_u32le(&mut h, e + 20, len);
        put_u32le(&mut h, e + 24, flags);
    }
    let d = m + TABLE_SIZE;
    put_u32le(&mut h, d, p.block_size);
    put_u32le(&mut h, d + 4, 1); // LeaveBlockAllocated
    put_u64le(&mut h, d + 8, p.virtual_size);
    h[d + 16..d + 32].copy_from_slice(&p.disk_id.0);
    put_u32le(&mut h, d + 32, p.logical_sector_size);
    put_u32le(&mut h, d + 36, p.physical_sector_size);
    Ok(FixedLayout {
        head: h,
        data_offset,
        file_len: data_offset + blocks * bs,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn set_log_guid_reseals_the_header() {
        let layout = build_fixed(&FixedParams {
            virtual_size: 4 << 20,
            block_size: 1 << 20,
            logical_sector_size: 512,
            physical_sector_size: 512,
            disk_id: Guid([3; 16]),
            file_write_guid: Guid([1; 16]),
            data_write_guid: Guid([2; 16]),
            creator: "t",
        })
        .unwrap();
        let mut file = layout.head.clone();
        file.resize(layout.file_len as usize, 0);
        let at = HEADER_OFFSETS[1] as usize;
        let mut h = [0u8; HEADER_SIZE];
        h.copy_from_slice(&file[at..at + HEADER_SIZE]);
        set_log_guid(&mut h, &Guid([0xD1; 16]));
        file[at..at + HEADER_SIZE].copy_from_slice(&h);
        let mut r = &file[..];
        let e = Vhdx::open(&mut r).unwrap_err();
        assert!(e.to_string().contains("dirty log"), "{e}");
    }

    /// A whole small fixed VHDX (4 MiB virtual, 1 MiB blocks) in memory.
    fn small_file(file_write: Guid, data_write: Guid, disk_id: Guid) -> Vec<u8> {
        let l = build_fixed(&FixedParams {
            virtual_size: 4 * MIB,
            block_size: 1 << 20,
            logical_sector_size: 512,
            physical_sector_size: 512,
            disk_id,
            file_write_guid: file_write,
            data_write_guid: data_write,
            creator: "t",
        })
        .unwrap();
        let mut file = l.head;
        file.resize(l.file_len as usize, 0);
        file
    }

    fn header_copy(file: &[u8], copy: usize) -> [u8; HEADER_SIZE] {
        let at = HEADER_OFFSETS[copy] as usize;
        let mut h = [0u8; HEADER_SIZE];
        h.copy_from_slice(&file[at..at + HEADER_SIZE]);
        h
    }

    fn put_header(file: &mut [u8], copy: usize, h: &[u8; HEADER_SIZE]) {
        let at = HEADER_OFFSETS[copy] as usize;
        file[at..at + HEADER_SIZE].copy_from_slice(h);
    }

    /// Pin both headers of `file` in place.
    fn pin(file: &mut [u8], fw: &Guid, dw: &Guid) -> Result<()> {
        let mut h1 = header_copy(file, 0);
        let mut h2 = header_copy(file, 1);
        pin_headers([&mut h1, &mut h2], fw, dw)?;
        put_header(file, 0, &h1);
        put_header(file, 1, &h2);
        Ok(())
    }

    /// Each field lands at its §2.2.2 offset, nothing else but the checksum changes, and the
    /// checksum is the CRC-32C of the header with bytes 4..8 zeroed (computed here
    /// independently of the helper the writer uses).
    #[rstest]
    #[case::sequence(HeaderField::SequenceNumber(0x0102_0304_0506_0708), 8, 8)]
    #[case::file_write(HeaderField::FileWriteGuid(Guid([0xA1; 16])), 16, 16)]
    #[case::data_write(HeaderField::DataWriteGuid(Guid([0xB2; 16])), 32, 16)]
    #[case::log(HeaderField::LogGuid(Guid([0xC3; 16])), 48, 16)]
    fn set_header_fields_writes_one_field_and_reseals(
        #[case] field: HeaderField,
        #[case] at: usize,
        #[case] len: usize,
    ) {
        let file = small_file(Guid([1; 16]), Guid([2; 16]), Guid([3; 16]));
        let before = header_copy(&file, 1);
        let mut h = before;
        set_header_fields(&mut h, &[field]);
        for i in (0..HEADER_SIZE).filter(|i| !(4..8).contains(i) && !(at..at + len).contains(i)) {
            assert_eq!(h[i], before[i], "byte {i} changed");
        }
        let mut zeroed = h;
        zeroed[4..8].fill(0);
        let want = crc32c::checksum(&zeroed);
        assert_eq!(h[4..8], want.to_le_bytes());
        let p = Header::parse(&h, 2, HEADER_OFFSETS[1]).unwrap();
        assert_eq!(p.checksum, want);
        match field {
            HeaderField::SequenceNumber(n) => assert_eq!(p.sequence_number, n),
            HeaderField::FileWriteGuid(g) => assert_eq!(p.file_write_guid, g),
            HeaderField::DataWriteGuid(g) => assert_eq!(p.data_write_guid, g),
            HeaderField::LogGuid(g) => assert_eq!(p.log_guid, g),
        }
    }

    /// Two files that differ in every identity field end up byte-identical once both headers
    /// are pinned and the page 83 item (found with `metadata_item`) rewritten; the reader
    /// reads the pinned values from both headers, and the current header stays current.
    #[rstest]
    #[case::header_2_newer(None, 1, [1, 2])]
    #[case::header_1_newer(Some((9, 4)), 0, [2, 1])]
    #[case::identical_copies(Some((5, 5)), 0, [1, 1])]
    fn pinned_identity_is_reproducible_and_reads_back(
        #[case] seqs: Option<(u64, u64)>,
        #[case] current: usize,
        #[case] want_seq: [u64; 2],
    ) {
        let (fw, dw, id) = (Guid([0x11; 16]), Guid([0x22; 16]), Guid([0x33; 16]));
        let mut files = [
            small_file(Guid([0xF1; 16]), Guid([0xD1; 16]), Guid([0x81; 16])),
            small_file(Guid([0xF2; 16]), Guid([0xD2; 16]), Guid([0x82; 16])),
        ];
        for (k, file) in files.iter_mut().enumerate() {
            if let Some((s1, s2)) = seqs {
                // Start from different random-looking numbers in each file.
                for (copy, s) in [(0, s1), (1, s2)] {
                    let mut h = header_copy(file, copy);
                    set_header_fields(&mut h, &[HeaderField::SequenceNumber(s + 100 * k as u64)]);
                    put_header(file, copy, &h);
                }
            }
            assert_eq!(
                Vhdx::open(&mut &file[..]).unwrap().headers.current.copy as usize,
                current + 1
            );
            pin(file, &fw, &dw).unwrap();
            let v = Vhdx::open(&mut &file[..]).unwrap();
            let (at, len) = v.metadata_item(&guids::PAGE_83_DATA).unwrap();
            assert_eq!(len, 16);
            assert_eq!(
                Guid(file[at as usize..at as usize + 16].try_into().unwrap()),
                v.disk_id()
            );
            file[at as usize..at as usize + 16].copy_from_slice(&id.0);
        }
        assert!(files[0] == files[1], "pinned files differ");
        let v = Vhdx::open(&mut &files[0][..]).unwrap();
        assert_eq!(v.disk_id(), id);
        assert_eq!(v.headers.current.copy as usize, current + 1);
        for copy in 0..2 {
            let h = Header::parse(
                &header_copy(&files[0], copy),
                copy as u8 + 1,
                HEADER_OFFSETS[copy],
            )
            .unwrap();
            assert_eq!(h.file_write_guid, fw);
            assert_eq!(h.data_write_guid, dw);
            assert!(h.log_guid.is_zero());
            assert_eq!(h.sequence_number, want_seq[copy]);
        }
    }

    #[test]
    fn pin_headers_refuses_a_bad_checksum_a_log_and_an_ambiguous_pair() {
        let (fw, dw) = (Guid([0x11; 16]), Guid([0x22; 16]));
        let fresh = small_file(Guid([1; 16]), Guid([2; 16]), Guid([3; 16]));
        // Header 1 damaged: never resealed into a valid header.
        let mut file = fresh.clone();
        file[HEADER_OFFSETS[0] as usize + 200] ^= 0xFF;
        let e = pin(&mut file, &fw, &dw).unwrap_err();
        assert_eq!(e.offset, HEADER_OFFSETS[0] + 4, "{e}");
        assert!(matches!(e.kind, ErrorKind::Checksum { .. }), "{e}");
        // A log in header 2.
        let mut file = fresh.clone();
        let mut h = header_copy(&file, 1);
        set_log_guid(&mut h, &Guid([0xD1; 16]));
        put_header(&mut file, 1, &h);
        let e = pin(&mut file, &fw, &dw).unwrap_err();
        assert_eq!(e.offset, HEADER_OFFSETS[1] + 48, "{e}");
        assert_eq!(Refusal::of(&e), Some(Refusal::DirtyLog));
        // Same sequence number, different contents: no current header.
        let mut file = fresh;
        let mut h = header_copy(&file, 1);
        set_header_fields(
            &mut h,
            &[
                HeaderField::SequenceNumber(1),
                HeaderField::FileWriteGuid(Guid([9; 16])),
            ],
        );
        put_header(&mut file, 1, &h);
        let e = pin(&mut file, &fw, &dw).unwrap_err();
        assert_eq!(e.offset, HEADER_OFFSETS[1] + 8, "{e}");
        assert!(e.to_string().contains("no current header"), "{e}");
    }

    #[test]
    fn metadata_item_offsets_follow_the_region() {
        let file = small_file(Guid([1; 16]), Guid([2; 16]), Guid([3; 16]));
        let v = Vhdx::open(&mut &file[..]).unwrap();
        let base = v.regions.metadata.file_offset;
        // build_fixed lays the items out as qemu-img does: 64 KiB table, then 8+8+16+4+4 bytes.
        assert_eq!(
            v.metadata_item(&guids::FILE_PARAMETERS),
            Some((base + 64 * KIB, 8))
        );
        assert_eq!(
            v.metadata_item(&guids::PAGE_83_DATA),
            Some((base + 64 * KIB + 16, 16))
        );
        assert_eq!(v.metadata_item(&guids::PARENT_LOCATOR), None);
    }

    #[test]
    fn vhdx_by_name_or_signature() {
        assert_eq!(is_vhdx("\\hyperV.vhdx", b""), Some(false));
        assert_eq!(is_vhdx("\\HYPERV.VHDX", b"conectix"), Some(false));
        assert_eq!(is_vhdx("\\hyperV.vhd", b"vhdxfile\0\0"), Some(true));
        assert_eq!(is_vhdx("\\hyperV.vhd", b"vhdxfil"), None);
        assert_eq!(is_vhdx("\\hyperV.vhd", &[0; 512]), None);
        assert_eq!(is_vhdx("x", b""), None);
    }
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(b"", 0x0000_0000)]
    #[case(b"123456789", 0xE306_9283)]
    #[case(b"a", 0xC1D0_4330)]
    fn crc32c_check_values(#[case] data: &[u8], #[case] want: u32) {
        assert_eq!(crc32c::checksum(data), want);
    }

    /// RFC 3720 §B.4 test vectors: 32 bytes of zeros, of 0xFF, and 0..=31.
    #[test]
    fn crc32c_rfc3720_vectors() {
        assert_eq!(crc32c::checksum(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c::checksum(&[0xFFu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c::checksum(&inc), 0x46DD_794E);
    }

    #[test]
    fn zeroed_field_crc() {
        let mut d = [7u8; 64];
        let a = crc32c::checksum_with_zeroed_field(&d, 4);
        d[4..8].copy_from_slice(&[0; 4]);
        assert_eq!(a, crc32c::checksum(&d));
        assert_eq!(
            crc32c::checksum_with_zeroed_field(&d, 62),
            crc32c::checksum(&d)
        );
    }

    #[test]
    fn guid_text_matches_the_specification() {
        assert_eq!(
            format!("{}", guids::BAT),
            "2DC27766-F623-4200-9D64-115E9BFD4A08"
        );
        // The bytes qemu-img writes for the BAT region GUID.
        assert_eq!(
            guids::BAT.0,
            [
                0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd,
                0x4a, 0x08
            ]
        );
        assert_eq!(
            format!("{:?}", guids::METADATA),
            "{8B7CA206-4790-4B9A-B8FE-575F050F886E}"
        );
    }

    #[test]
    fn refusal_names() {
        let e = Error::unsupported(FMT, 1, F_LOG_GUID, "x");
        assert_eq!(Refusal::of(&e), Some(Refusal::DirtyLog));
        assert_eq!(Refusal::DirtyLog.name(), "dirty-log");
        let t = Error::truncated(FMT, 1, "VHDX BAT", 8, 0);
        assert_eq!(Refusal::of(&t), Some(Refusal::Truncated));
        let other = Error::truncated(FMT, 1, "footer", 8, 0);
        assert_eq!(Refusal::of(&other), None);
    }

    fn params(size: u64, block: u32) -> FixedParams<'static> {
        FixedParams {
            virtual_size: size,
            block_size: block,
            logical_sector_size: 512,
            physical_sector_size: 4096,
            disk_id: Guid([0xD1; 16]),
            file_write_guid: Guid([0xF1; 16]),
            data_write_guid: Guid([0xDA; 16]),
            creator: "ufd test",
        }
    }

    /// A built file (head + payload) reads back as fixed with the given geometry, and every
    /// virtual byte maps to `data_offset + virtual offset`.
    #[rstest]
    #[case(3 * MIB, 1 << 20)]
    #[case(20 * MIB, 8 << 20)]
    #[case(4097 * MIB, 1 << 20)] // > one chunk (4 GiB at 1 MiB blocks): sector-bitmap entries
    fn built_fixed_reads_back(#[case] size: u64, #[case] block: u32) {
        let l = build_fixed(&params(size, block)).unwrap();
        assert_eq!(l.head.len() as u64, l.data_offset);
        // Head + 1 MiB of payload: the BAT points past the end.
        let mut short = l.head.clone();
        short.resize(short.len() + MIB as usize, 0);
        let Err(ReadError::Format(e)) = Vhdx::open(&mut short.as_slice()) else {
            panic!("a short file must be refused")
        };
        assert_eq!(Refusal::of(&e), Some(Refusal::Truncated), "{e}");
        // The whole file, sparse in the sense that `ReadAt` only sees the length.
        struct Sparse<'a>(&'a [u8], u64);
        impl ReadAt for Sparse<'_> {
            type Error = Error;
            fn size(&self) -> u64 {
                self.1
            }
            fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
                buf.fill(0);
                let n = (self.0.len() as u64)
                    .saturating_sub(offset)
                    .min(buf.len() as u64);
                if n > 0 {
                    buf[..n as usize]
                        .copy_from_slice(&self.0[offset as usize..offset as usize + n as usize]);
                }
                Ok(())
            }
        }
        let v = Vhdx::open(&mut Sparse(&l.head, l.file_len)).unwrap();
        assert!(v.is_fixed(), "{v}");
        assert_eq!(v.virtual_size(), size);
        assert_eq!(v.block_size(), block);
        assert_eq!(v.physical_sector_size(), 4096);
        assert_eq!(v.disk_id(), Guid([0xD1; 16]));
        assert_eq!(v.creator, "ufd test");
        assert_eq!(v.file_extents, 1);
        assert_eq!(v.headers.current.copy, 2);
        assert!(v.notes().is_empty(), "{:?}", v.notes());
        for off in [0, size / 3, size - 1] {
            let Mapping::File { offset, .. } = v.map(off).unwrap() else {
                panic!()
            };
            assert_eq!(offset, l.data_offset + off);
        }
    }

    #[test]
    fn build_fixed_rejects_bad_parameters() {
        assert!(build_fixed(&params(MIB, 3 << 20)).is_err());
        assert!(build_fixed(&params(1000, 1 << 20)).is_err());
        assert!(build_fixed(&params(0, 1 << 20)).is_err());
        let mut p = params(MIB, 1 << 20);
        p.logical_sector_size = 1024;
        assert!(build_fixed(&p).is_err());
    }

    #[test]
    fn tiny_inputs_are_errors_not_panics() {
        for len in [0usize, 8, 520, 70_000, 1 << 20] {
            let v = vec![0u8; len];
            assert!(Vhdx::open(&mut v.as_slice()).is_err(), "len {len}");
        }
    }
}
