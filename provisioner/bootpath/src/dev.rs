//! Layered, bounded, positioned reads: the disk (any [`ReadAt`]), a partition (a byte range of
//! it), a file inside NTFS (its data runs), the virtual disk inside a VHDX file ([`VhdxDisk`]),
//! a partition inside that, and bytes held in memory. Every layer is a [`Dev`]; [`Stream`] turns one into the `Read + Seek` the `ntfs`
//! crate reads through. Nothing here reads more than the caller asks for, so a 16 GB disk
//! costs only the sectors the walk looks at.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Display;

use ufd_formats::bytes::ReadAt;
use ufd_formats::vhdx::{Mapping, Vhdx};

/// A read-only byte device. Errors are one-line texts naming the layer and the offset.
pub trait Dev {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`; reading past [`Dev::size`] is an error.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), String>;
}

fn check(what: &str, offset: u64, len: usize, size: u64) -> Result<(), String> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(format!(
            "{what}: read of {len} bytes at offset {offset} is past the end ({size} bytes)"
        )),
    }
}

/// `len` bytes read from `offset` into a new vector.
pub fn read_vec(dev: &mut dyn Dev, offset: u64, len: usize) -> Result<Vec<u8>, String> {
    let mut v = vec![0u8; len];
    dev.read_at(offset, &mut v)?;
    Ok(v)
}

/// The whole disk: any [`ReadAt`] (a host file, a UEFI BlockIo, BIOS INT 13h).
pub struct Disk<R> {
    inner: R,
}

impl<R: ReadAt> Disk<R>
where
    R::Error: Display,
{
    pub fn new(inner: R) -> Self {
        Disk { inner }
    }
    /// The reader back.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: ReadAt> Dev for Disk<R>
where
    R::Error: Display,
{
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        check("disk", offset, buf.len(), self.inner.size())?;
        self.inner
            .read_exact_at(offset, buf)
            .map_err(|e| format!("disk read of {} bytes at byte {offset}: {e}", buf.len()))
    }
}

/// `len` bytes of a parent device from `base` (a partition).
pub struct Slice<'a> {
    parent: &'a mut dyn Dev,
    base: u64,
    len: u64,
}

impl<'a> Slice<'a> {
    /// A slice clipped to the parent's end (a partition entry may claim more than the disk has;
    /// that is reported by the MBR checks, reads past the real end are errors here).
    pub fn new(parent: &'a mut dyn Dev, base: u64, len: u64) -> Self {
        let avail = parent.size().saturating_sub(base);
        Slice {
            parent,
            base,
            len: len.min(avail),
        }
    }
}

impl Dev for Slice<'_> {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        check("partition", offset, buf.len(), self.len)?;
        self.parent.read_at(self.base + offset, buf)
    }
}

/// Bytes in memory (a resident NTFS attribute, a file read whole).
pub struct Mem(pub Vec<u8>);

impl Dev for Mem {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        check("memory", offset, buf.len(), self.size())?;
        let s = offset as usize;
        buf.copy_from_slice(&self.0[s..s + buf.len()]);
        Ok(())
    }
}

/// One extent of a file: `len` bytes at file offset `logical`, stored at volume byte
/// `physical` (`None`: a sparse run, read as zeros).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub logical: u64,
    pub len: u64,
    pub physical: Option<u64>,
}

/// A file's data read through its runs on the volume device (what a boot manager does with
/// the VHD: it maps the file's extents once and then reads the volume directly).
pub struct Runs<'a> {
    volume: &'a mut dyn Dev,
    runs: Vec<Run>,
    size: u64,
}

impl<'a> Runs<'a> {
    /// `size` is the file's data size; runs past it are ignored, holes read as zeros.
    pub fn new(volume: &'a mut dyn Dev, runs: Vec<Run>, size: u64) -> Self {
        Runs { volume, runs, size }
    }
}

impl Dev for Runs<'_> {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        check("file", offset, buf.len(), self.size)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let Some(run) = self
                .runs
                .iter()
                .find(|r| r.logical <= pos && pos < r.logical.saturating_add(r.len))
            else {
                return Err(format!(
                    "file byte {pos} is not covered by any data run ({} runs)",
                    self.runs.len()
                ));
            };
            let within = pos - run.logical;
            let n = ((run.len - within) as usize).min(buf.len() - done);
            let part = &mut buf[done..done + n];
            match run.physical {
                Some(p) => self.volume.read_at(p + within, part)?,
                None => part.fill(0),
            }
            done += n;
        }
        Ok(())
    }
}

/// The virtual disk inside a VHDX file: reads go through [`Vhdx::map`] to the file's payload
/// blocks (the file itself is any [`Dev`], e.g. [`Runs`] on the host NTFS volume); blocks the
/// file does not hold (ZERO, NOT_PRESENT, UNDEFINED, UNMAPPED) read as zeros, as Hyper-V and
/// qemu return them. The boot path only walks fixed VHDX files, where every block is in the
/// file, but the adapter reads any non-differencing one.
pub struct VhdxDisk<'a> {
    file: &'a mut dyn Dev,
    vhdx: Vhdx,
}

impl<'a> VhdxDisk<'a> {
    /// `vhdx` as opened from `file` ([`Vhdx::open`]).
    pub fn new(file: &'a mut dyn Dev, vhdx: Vhdx) -> Self {
        VhdxDisk { file, vhdx }
    }
    /// The parsed VHDX.
    pub fn vhdx(&self) -> &Vhdx {
        &self.vhdx
    }
}

impl Dev for VhdxDisk<'_> {
    fn size(&self) -> u64 {
        self.vhdx.virtual_size()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        check("VHDX virtual disk", offset, buf.len(), self.size())?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let m = self.vhdx.map(pos).map_err(|e| e.to_string())?;
            let n = usize::try_from(m.len())
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            let part = &mut buf[done..done + n];
            match m {
                Mapping::File { offset: at, .. } => self
                    .file
                    .read_at(at, part)
                    .map_err(|e| format!("VHDX virtual byte {pos} (file byte {at}): {e}"))?,
                Mapping::Zero { .. } | Mapping::NotPresent { .. } => part.fill(0),
            }
            done += n;
        }
        Ok(())
    }
}

/// A [`Dev`] as the `Read + Seek` stream the `ntfs` crate wants. The I/O error type loses
/// the text without `std`, so the last device error is kept in [`Stream::last_error`].
pub struct Stream<'a> {
    dev: &'a mut dyn Dev,
    pos: u64,
    /// The text of the last failed device read.
    pub last_error: Option<String>,
}

impl<'a> Stream<'a> {
    pub fn new(dev: &'a mut dyn Dev) -> Self {
        Stream {
            dev,
            pos: 0,
            last_error: None,
        }
    }
    /// The device underneath.
    pub fn dev(&mut self) -> &mut dyn Dev {
        self.dev
    }
    /// An `ntfs` error, with the device error that caused it if there was one.
    pub fn explain(&mut self, what: &str, err: impl Display) -> String {
        match self.last_error.take() {
            Some(io) => format!("{what}: {err} ({io})"),
            None => format!("{what}: {err}"),
        }
    }
}

impl binrw::io::Read for Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> binrw::io::Result<usize> {
        let size = self.dev.size();
        if self.pos >= size {
            return Ok(0);
        }
        let n = ((size - self.pos).min(buf.len() as u64)) as usize;
        match self.dev.read_at(self.pos, &mut buf[..n]) {
            Ok(()) => {
                self.pos += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.last_error = Some(e.to_string());
                // binrw's no_std `Error` has no `other()`; this line must build both ways.
                #[allow(clippy::io_other_error)]
                Err(binrw::io::Error::new(
                    binrw::io::ErrorKind::Other,
                    "device read failed",
                ))
            }
        }
    }
}

impl binrw::io::Seek for Stream<'_> {
    fn seek(&mut self, pos: binrw::io::SeekFrom) -> binrw::io::Result<u64> {
        let new = match pos {
            binrw::io::SeekFrom::Start(p) => Some(p),
            binrw::io::SeekFrom::End(d) => self.dev.size().checked_add_signed(d),
            binrw::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(binrw::io::Error::new(
                binrw::io::ErrorKind::InvalidInput,
                "seek before the start of the device",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_map_extents_and_holes() {
        let mut vol = Mem((0u8..=255).cycle().take(4096).collect());
        let runs = vec![
            Run {
                logical: 0,
                len: 512,
                physical: Some(1024),
            },
            Run {
                logical: 512,
                len: 512,
                physical: None,
            },
            Run {
                logical: 1024,
                len: 512,
                physical: Some(0),
            },
        ];
        let mut f = Runs::new(&mut vol, runs, 1500);
        let mut buf = [0xAAu8; 8];
        f.read_at(508, &mut buf).unwrap();
        assert_eq!(buf, [252, 253, 254, 255, 0, 0, 0, 0]);
        f.read_at(1020, &mut buf).unwrap();
        assert_eq!(buf, [0, 0, 0, 0, 0, 1, 2, 3]);
        assert!(f
            .read_at(1496, &mut buf)
            .unwrap_err()
            .contains("past the end"));
    }

    #[test]
    fn slice_is_clipped_to_parent() {
        let mut m = Mem(vec![7u8; 1000]);
        let mut s = Slice::new(&mut m, 900, 512);
        assert_eq!(s.size(), 100);
        let mut b = [0u8; 100];
        s.read_at(0, &mut b).unwrap();
        assert!(s.read_at(1, &mut b).is_err());
    }
}
