//! Bounds-checked little/big-endian field access over byte slices, and the
//! small `ReadAt` trait through which the guest probe and the host hand disks
//! to the parsers. Nothing here panics on short input: every accessor returns a
//! `Truncated` error carrying the absolute offset.

use crate::error::{Error, Format, Result};

/// Positioned reads from a disk, a file or a firmware block device.
///
/// The formats crate never performs I/O itself; callers implement this for a
/// `std::fs::File` (host) or a UEFI `BlockIO`/BIOS INT13 reader (guest).
pub trait ReadAt {
    /// Error type of the underlying device.
    type Error;
    /// Total size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`; short reads are errors.
    fn read_exact_at(
        &mut self,
        offset: u64,
        buf: &mut [u8],
    ) -> core::result::Result<(), Self::Error>;
}

impl ReadAt for &[u8] {
    type Error = Error;
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset).ok();
        let end = start.and_then(|s| s.checked_add(buf.len()));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.len() => {
                buf.copy_from_slice(&self[s..e]);
                Ok(())
            }
            _ => Err(Error::truncated(
                Format::Disk,
                offset,
                "read",
                buf.len() as u64,
                (self.len() as u64).saturating_sub(offset),
            )),
        }
    }
}

/// A byte slice that knows its absolute position in the input, so that every
/// error can name the absolute offset of the field that failed.
#[derive(Clone, Copy, Debug)]
pub struct Bytes<'a> {
    pub data: &'a [u8],
    /// Absolute offset of `data[0]` in the original input.
    pub base: u64,
    pub format: Format,
}

impl<'a> Bytes<'a> {
    pub fn new(format: Format, data: &'a [u8]) -> Self {
        Bytes {
            data,
            base: 0,
            format,
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// A sub-slice `[off, off+len)`, or a `Truncated` error naming `field`.
    pub fn slice(&self, off: usize, len: usize, field: &'static str) -> Result<Bytes<'a>> {
        match off.checked_add(len) {
            Some(end) if end <= self.data.len() => Ok(Bytes {
                data: &self.data[off..end],
                base: self.base + off as u64,
                format: self.format,
            }),
            _ => Err(Error::truncated(
                self.format,
                self.base + off as u64,
                field,
                len as u64,
                self.data.len().saturating_sub(off) as u64,
            )),
        }
    }

    pub fn array<const N: usize>(&self, off: usize, field: &'static str) -> Result<[u8; N]> {
        let s = self.slice(off, N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s.data);
        Ok(a)
    }

    pub fn u8(&self, off: usize, field: &'static str) -> Result<u8> {
        Ok(self.array::<1>(off, field)?[0])
    }
    pub fn u16le(&self, off: usize, field: &'static str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(off, field)?))
    }
    pub fn u32le(&self, off: usize, field: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(off, field)?))
    }
    pub fn i32le(&self, off: usize, field: &'static str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array(off, field)?))
    }
    pub fn u64le(&self, off: usize, field: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(off, field)?))
    }
    pub fn u16be(&self, off: usize, field: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(off, field)?))
    }
    pub fn u32be(&self, off: usize, field: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(off, field)?))
    }
    pub fn u64be(&self, off: usize, field: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(off, field)?))
    }

    /// Absolute offset of relative position `off`.
    pub fn abs(&self, off: usize) -> u64 {
        self.base + off as u64
    }

    /// Require `sig` at `off`.
    pub fn expect_sig(&self, off: usize, sig: &'static [u8], field: &'static str) -> Result<()> {
        let found = self.slice(off, sig.len(), field)?;
        if found.data == sig {
            Ok(())
        } else {
            Err(Error::signature(
                self.format,
                self.abs(off),
                field,
                sig,
                found.data,
            ))
        }
    }
}

/// Little-endian writers for building structures in a `Vec<u8>` or a fixed buffer.
/// Callers size their buffers first; these panic only on caller bugs (never on input).
pub fn put_u16le(buf: &mut [u8], off: usize, v: u16) {
    buf[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u32le(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u64le(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u16be(buf: &mut [u8], off: usize, v: u16) {
    buf[off..off + 2].copy_from_slice(&v.to_be_bytes());
}
pub fn put_u32be(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_be_bytes());
}
pub fn put_u64be(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_be_bytes());
}
