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

/// A firmware block device that reads whole, aligned chunks: UEFI BlockIo `ReadBlocks`, BIOS
/// INT 13h AH=42h. [`ChunkCache`] turns one into a [`ReadAt`].
pub trait ChunkSource {
    /// The device's size in bytes.
    fn size(&self) -> u64;
    /// The `len` bytes at `start` (`start` a multiple of the cache's chunk size, `len` at most
    /// one chunk and never past [`ChunkSource::size`]).
    fn read_chunk(&mut self, start: u64, len: usize) -> Result<Vec<u8>, String>;
}

/// A small round-robin cache of whole chunks over a [`ChunkSource`], as a [`ReadAt`]: the
/// NTFS walk does many small reads, the firmware reads whole blocks. Shared by both guest
/// programs so they differ only in how a chunk is read.
pub struct ChunkCache<S> {
    /// The device (e.g. for its read counters).
    pub source: S,
    chunk: u64,
    slots: usize,
    cache: Vec<(u64, Vec<u8>)>,
    next_victim: usize,
}

impl<S: ChunkSource> ChunkCache<S> {
    /// `chunk` bytes per read (non-zero), `slots` chunks kept (at least one).
    pub fn new(source: S, chunk: u64, slots: usize) -> Self {
        ChunkCache {
            source,
            chunk: chunk.max(512),
            slots: slots.max(1),
            cache: Vec::new(),
            next_victim: 0,
        }
    }

    fn slot(&mut self, index: u64) -> Result<usize, String> {
        if let Some(i) = self.cache.iter().position(|(c, _)| *c == index) {
            return Ok(i);
        }
        let start = index.saturating_mul(self.chunk);
        let len = self.chunk.min(self.source.size().saturating_sub(start)) as usize;
        let buf = self.source.read_chunk(start, len)?;
        if buf.len() != len {
            return Err(format!(
                "chunk at byte {start}: the device returned {} bytes, {len} asked",
                buf.len()
            ));
        }
        if self.cache.len() < self.slots {
            self.cache.push((index, buf));
            Ok(self.cache.len() - 1)
        } else {
            let v = self.next_victim;
            self.next_victim = (v + 1) % self.slots;
            self.cache[v] = (index, buf);
            Ok(v)
        }
    }
}

impl<S: ChunkSource> ReadAt for ChunkCache<S> {
    type Error = String;
    fn size(&self) -> u64 {
        self.source.size()
    }
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        let size = self.source.size();
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|e| *e <= size)
            .ok_or_else(|| {
                format!(
                    "read of {} bytes at {offset} past the disk end {size}",
                    buf.len()
                )
            })?;
        let mut pos = offset;
        while pos < end {
            let i = self.slot(pos / self.chunk)?;
            let within = (pos % self.chunk) as usize;
            let data = &self.cache[i].1;
            let n = data.len().saturating_sub(within).min((end - pos) as usize);
            if n == 0 {
                return Err(format!(
                    "no data at byte {pos} (chunk shorter than expected)"
                ));
            }
            let at = (pos - offset) as usize;
            buf[at..at + n].copy_from_slice(&data[within..within + n]);
            pos += n as u64;
        }
        Ok(())
    }
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

    /// A device of `size` bytes whose byte i is `i % 251`, counting reads.
    struct Pattern {
        size: u64,
        reads: Vec<(u64, usize)>,
    }

    impl ChunkSource for Pattern {
        fn size(&self) -> u64 {
            self.size
        }
        fn read_chunk(&mut self, start: u64, len: usize) -> Result<Vec<u8>, String> {
            self.reads.push((start, len));
            Ok((start..start + len as u64)
                .map(|i| (i % 251) as u8)
                .collect())
        }
    }

    #[test]
    fn chunk_cache_reads_across_chunks_and_the_short_last_one() {
        let mut c = ChunkCache::new(
            Pattern {
                size: 10_000,
                reads: Vec::new(),
            },
            4096,
            2,
        );
        let mut buf = vec![0u8; 3000];
        c.read_exact_at(3000, &mut buf).unwrap();
        assert!(buf
            .iter()
            .enumerate()
            .all(|(i, &b)| b == ((3000 + i) % 251) as u8));
        // The last chunk is short (10_000 - 8192 bytes) and still readable to the end.
        let mut tail = [0u8; 8];
        c.read_exact_at(9_992, &mut tail).unwrap();
        assert_eq!(tail[7], (9_999 % 251) as u8);
        assert_eq!(c.source.reads, vec![(0, 4096), (4096, 4096), (8192, 1808)]);
        // Cached: no new read for chunk 1 (slot kept), chunk 0 was evicted round-robin.
        c.read_exact_at(5000, &mut tail).unwrap();
        assert_eq!(c.source.reads.len(), 3);
        assert!(c.read_exact_at(9_995, &mut tail).is_err(), "past the end");
    }

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
