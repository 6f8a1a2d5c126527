//! One error type for every format in this crate.
//!
//! Every error names the format, the byte offset in the input where the problem
//! was found, the field that was being read, and what was expected versus what
//! was found. Offsets are absolute within the buffer handed to the parser (for a
//! hive: the file offset, not the hbin-relative cell offset), so a user can open
//! the file in a hex editor at exactly that byte.

use alloc::string::String;
use core::fmt;

/// Which on-disk format an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Mbr,
    Vhd,
    /// VHDX (MS-VHDX v1.0): headers, region tables, metadata, BAT.
    Vhdx,
    Hive,
    Bcd,
    /// `.reg` text ("Windows Registry Editor Version 5.00"); offsets are byte offsets in the text.
    RegText,
    Vbr,
    /// NTFS below the file level: boot sector, MFT and index records, attributes, mapping pairs.
    Ntfs,
    /// A raw read from a disk or buffer, before any format applies (e.g. [`crate::bytes::ReadAt`]).
    Disk,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Mbr => "MBR",
            Format::Vhd => "VHD",
            Format::Vhdx => "VHDX",
            Format::Hive => "hive",
            Format::Bcd => "BCD",
            Format::RegText => ".reg",
            Format::Vbr => "boot record",
            Format::Ntfs => "NTFS",
            Format::Disk => "disk",
        })
    }
}

/// What was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ends before the structure does.
    Truncated { needed: u64, available: u64 },
    /// A magic value did not match. Bytes are shown as escaped ASCII.
    BadSignature {
        expected: &'static [u8],
        found: alloc::vec::Vec<u8>,
    },
    /// A numeric field has a value other than the one required.
    Mismatch { expected: u64, found: u64 },
    /// A checksum does not match the data.
    Checksum { expected: u32, found: u32 },
    /// A field is out of the range the format allows (free text says which range).
    Invalid(String),
    /// Well-formed, but something this crate does not handle (or a caller asked for a
    /// kind of object the input is not, e.g. a dynamic VHD where a fixed one is required).
    Unsupported(String),
    /// A key, value, object or element that was asked for does not exist.
    NotFound(String),
}

/// A parse or edit error: format, byte offset, field, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub format: Format,
    /// Byte offset in the input at which the offending field starts.
    pub offset: u64,
    /// The field or structure being read, e.g. `"nk signature"` or `"footer checksum"`.
    pub field: &'static str,
    pub kind: ErrorKind,
}

pub type Result<T, E = Error> = core::result::Result<T, E>;

impl Error {
    pub fn new(format: Format, offset: u64, field: &'static str, kind: ErrorKind) -> Self {
        Error {
            format,
            offset,
            field,
            kind,
        }
    }
    pub fn truncated(
        format: Format,
        offset: u64,
        field: &'static str,
        needed: u64,
        available: u64,
    ) -> Self {
        Self::new(
            format,
            offset,
            field,
            ErrorKind::Truncated { needed, available },
        )
    }
    pub fn signature(
        format: Format,
        offset: u64,
        field: &'static str,
        expected: &'static [u8],
        found: &[u8],
    ) -> Self {
        Self::new(
            format,
            offset,
            field,
            ErrorKind::BadSignature {
                expected,
                found: found.to_vec(),
            },
        )
    }
    pub fn mismatch(
        format: Format,
        offset: u64,
        field: &'static str,
        expected: u64,
        found: u64,
    ) -> Self {
        Self::new(
            format,
            offset,
            field,
            ErrorKind::Mismatch { expected, found },
        )
    }
    pub fn invalid(
        format: Format,
        offset: u64,
        field: &'static str,
        why: impl Into<String>,
    ) -> Self {
        Self::new(format, offset, field, ErrorKind::Invalid(why.into()))
    }
    pub fn unsupported(
        format: Format,
        offset: u64,
        field: &'static str,
        why: impl Into<String>,
    ) -> Self {
        Self::new(format, offset, field, ErrorKind::Unsupported(why.into()))
    }
    pub fn not_found(
        format: Format,
        offset: u64,
        field: &'static str,
        what: impl Into<String>,
    ) -> Self {
        Self::new(format, offset, field, ErrorKind::NotFound(what.into()))
    }
}

struct Escaped<'a>(&'a [u8]);
impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &b in self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_str("\"")
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Truncated { needed, available } => {
                write!(
                    f,
                    "truncated: needs {needed} bytes, only {available} available"
                )
            }
            ErrorKind::BadSignature { expected, found } => {
                write!(
                    f,
                    "expected {}, found {}",
                    Escaped(expected),
                    Escaped(found)
                )
            }
            ErrorKind::Mismatch { expected, found } => {
                write!(f, "expected {expected:#x}, found {found:#x}")
            }
            ErrorKind::Checksum { expected, found } => {
                write!(
                    f,
                    "checksum mismatch: computed {expected:#010x}, stored {found:#010x}"
                )
            }
            ErrorKind::Invalid(why) => f.write_str(why),
            ErrorKind::Unsupported(why) => write!(f, "unsupported: {why}"),
            ErrorKind::NotFound(what) => write!(f, "not found: {what}"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at byte {:#x}: {}: {}",
            self.format, self.offset, self.field, self.kind
        )
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}
