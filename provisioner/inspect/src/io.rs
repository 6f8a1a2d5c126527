//! Bounded positioned reads over the layers of a UFD image: the image file, a partition (a byte
//! range of it), a file inside NTFS (its data runs), the virtual disk inside a VHDX file
//! ([`VhdxDev`], mapped by `ufd_formats::vhdx`), and a partition inside that.
//!
//! Every layer is a [`Dev`]: a size and `read_at`. Nothing here reads more than the caller
//! asks for, so a 16 GB sparse image costs only the sectors actually looked at.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// A read-only byte device.
pub trait Dev: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`; reading past [`Dev::size`] is an `UnexpectedEof` error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// A shared device handle (layers stack by holding their parent).
pub type DevRef = Arc<dyn Dev>;

fn past_end(offset: u64, len: usize, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("read of {len} bytes at offset {offset} is past the end ({size} bytes)"),
    )
}

fn check(offset: u64, len: usize, size: u64) -> io::Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(past_end(offset, len, size)),
    }
}

/// A regular file (an image, a VHD), read with `pread`.
pub struct FileDev {
    file: File,
    size: u64,
}

impl FileDev {
    pub fn open(path: &Path) -> io::Result<FileDev> {
        let mut file = File::open(path)?;
        // A block device's metadata says 0 bytes; its size is where a seek to the end lands
        // (the same number BLKGETSIZE64 gives). Regular files answer both ways alike.
        let size = match file.metadata()?.len() {
            0 => std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?,
            n => n,
        };
        Ok(FileDev { file, size })
    }
}

impl Dev for FileDev {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check(offset, buf.len(), self.size)?;
        self.file.read_exact_at(buf, offset)
    }
}

/// Bytes held in memory (a resident NTFS attribute).
pub struct MemDev(pub Vec<u8>);

impl Dev for MemDev {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check(offset, buf.len(), self.size())?;
        let s = offset as usize;
        buf.copy_from_slice(&self.0[s..s + buf.len()]);
        Ok(())
    }
}

/// `len` bytes of `parent` from `base` (a partition).
pub struct Slice {
    parent: DevRef,
    base: u64,
    len: u64,
}

impl Slice {
    /// A range of `parent`; a range reaching past the parent's end is cut at the end (the
    /// caller reports the mismatch; reads beyond it fail).
    pub fn new(parent: DevRef, base: u64, len: u64) -> Slice {
        let avail = parent.size().saturating_sub(base);
        Slice {
            parent,
            base,
            len: len.min(avail),
        }
    }
}

impl Dev for Slice {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check(offset, buf.len(), self.len)?;
        self.parent.read_at(self.base + offset, buf)
    }
}

/// One run of a non-resident NTFS attribute: `len` bytes of the file from byte `logical`,
/// stored at volume byte `physical` (`None`: a sparse run, reads as zeros).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub logical: u64,
    pub len: u64,
    pub physical: Option<u64>,
}

/// A file's data inside an NTFS volume, through its data runs. Bytes at or beyond the valid
/// data length (`initialized`) read as zeros, as Windows returns them.
pub struct Mapped {
    volume: DevRef,
    runs: Vec<Run>,
    size: u64,
    initialized: u64,
}

impl Mapped {
    /// `runs` sorted by `logical` (as NTFS stores them).
    pub fn new(volume: DevRef, mut runs: Vec<Run>, size: u64, initialized: u64) -> Mapped {
        runs.sort_by_key(|r| r.logical);
        Mapped {
            volume,
            runs,
            size,
            initialized: initialized.min(size),
        }
    }
}

impl Dev for Mapped {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check(offset, buf.len(), self.size)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let want = buf.len() - done;
            if pos >= self.initialized {
                buf[done..].fill(0);
                return Ok(());
            }
            // the run holding `pos` (binary search on the sorted starts)
            let i = self.runs.partition_point(|r| r.logical <= pos);
            let run = i.checked_sub(1).map(|i| self.runs[i]);
            let n = match run {
                Some(r) if pos < r.logical + r.len => {
                    let n = want
                        .min((r.logical + r.len - pos) as usize)
                        .min((self.initialized - pos) as usize);
                    match r.physical {
                        Some(p) => self
                            .volume
                            .read_at(p + (pos - r.logical), &mut buf[done..done + n])?,
                        None => buf[done..done + n].fill(0),
                    }
                    n
                }
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("file offset {pos} is below the data size but in no data run"),
                    ))
                }
            };
            done += n;
        }
        Ok(())
    }
}

/// The virtual disk inside a VHDX file (issue #7): every read goes through
/// [`Vhdx::read`](ufd_formats::vhdx::Vhdx::read), which maps virtual offsets to payload blocks
/// through the BAT — the same mapper `ufd_bootpath::dev::VhdxDisk` uses in the guest, so the
/// host and the firmware view cannot disagree on where a virtual byte lives. Blocks the file
/// does not hold (ZERO, NOT_PRESENT, UNDEFINED, UNMAPPED) read as zeros, as Hyper-V and qemu
/// return them. The file itself is any [`Dev`]: a host file, or [`Mapped`] data runs on the
/// UFD's NTFS.
pub struct VhdxDev {
    file: DevRef,
    vhdx: Arc<ufd_formats::vhdx::Vhdx>,
}

impl VhdxDev {
    /// `vhdx` as opened from `file` ([`Vhdx::open`](ufd_formats::vhdx::Vhdx::open)).
    pub fn new(file: DevRef, vhdx: Arc<ufd_formats::vhdx::Vhdx>) -> VhdxDev {
        VhdxDev { file, vhdx }
    }
}

impl Dev for VhdxDev {
    /// The virtual disk size.
    fn size(&self) -> u64 {
        self.vhdx.virtual_size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check(offset, buf.len(), self.size())?;
        let mut file = Stream::new(self.file.clone());
        self.vhdx.read(&mut file, offset, buf).map_err(|e| match e {
            ufd_formats::vhd::ReadError::Io(io) => io::Error::new(
                io.kind(),
                format!("VHDX virtual bytes {offset}+{}: {io}", buf.len()),
            ),
            ufd_formats::vhd::ReadError::Format(f) => {
                io::Error::new(io::ErrorKind::InvalidData, f.to_string())
            }
        })
    }
}

/// `Read + Seek` over a [`Dev`] (for the `ntfs` crate) and `ReadAt` (for `ufd_formats`).
pub struct Stream {
    pub dev: DevRef,
    pos: u64,
}

impl Stream {
    pub fn new(dev: DevRef) -> Stream {
        Stream { dev, pos: 0 }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.dev.size().saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.dev.read_at(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Stream {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.dev.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start",
            )),
        }
    }
}

impl ufd_formats::bytes::ReadAt for Stream {
    type Error = io::Error;
    fn size(&self) -> u64 {
        self.dev.size()
    }
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.dev.read_at(offset, buf)
    }
}

/// Read `len` bytes at `offset` into a new buffer.
pub fn read_vec(dev: &dyn Dev, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; len];
    dev.read_at(offset, &mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_reads_runs_holes_and_zeroes_past_valid_length() {
        let vol: DevRef = Arc::new(MemDev((0u8..=255).cycle().take(4096).collect()));
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
                len: 1024,
                physical: Some(0),
            },
        ];
        let m = Mapped::new(vol, runs, 2000, 1500);
        let mut b = vec![0xAAu8; 2000];
        m.read_at(0, &mut b).unwrap();
        assert_eq!(b[0], 0); // volume byte 1024 = 1024 % 256
        assert_eq!(b[511], 255);
        assert!(b[512..1024].iter().all(|&x| x == 0));
        assert_eq!(b[1024 + 7], 7);
        assert!(
            b[1500..].iter().all(|&x| x == 0),
            "beyond the valid data length"
        );
        assert!(m.read_at(1999, &mut [0u8; 2]).is_err());
        let gap = Mapped::new(
            Arc::new(MemDev(vec![0; 16])),
            vec![Run {
                logical: 0,
                len: 8,
                physical: Some(0),
            }],
            16,
            16,
        );
        let e = gap.read_at(8, &mut [0u8; 4]).unwrap_err();
        assert!(e.to_string().contains("no data run"), "{e}");
    }

    /// A fixed VHDX built in memory by `ufd_formats::vhdx::build_fixed` (1 MiB blocks):
    /// virtual bytes come from `data_offset + offset`, across block boundaries; reads past the
    /// virtual end and payload the file does not hold are errors, not panics.
    #[test]
    fn vhdx_dev_reads_the_virtual_disk_through_the_bat() {
        use ufd_formats::vhdx::{build_fixed, FixedParams, Guid, Vhdx};
        const MIB: u64 = 1 << 20;
        let l = build_fixed(&FixedParams {
            virtual_size: 3 * MIB,
            block_size: 1 << 20,
            logical_sector_size: 512,
            physical_sector_size: 512,
            disk_id: Guid([1; 16]),
            file_write_guid: Guid([2; 16]),
            data_write_guid: Guid([3; 16]),
            creator: "test",
        })
        .unwrap();
        let mut file = l.head.clone();
        file.extend((0..3 * MIB).map(|i| (i / 512 % 251) as u8));
        assert_eq!(file.len() as u64, l.file_len);
        let fdev: DevRef = Arc::new(MemDev(file));
        let x = Vhdx::open(&mut Stream::new(fdev.clone())).unwrap();
        assert!(x.is_fixed());
        let v = VhdxDev::new(fdev, Arc::new(x));
        assert_eq!(v.size(), 3 * MIB);
        let mut b = vec![0u8; 1024];
        v.read_at(MIB - 512, &mut b).unwrap(); // sectors 2047 and 2048: two blocks
        assert!(b[..512].iter().all(|&x| x == (2047 % 251) as u8));
        assert!(b[512..].iter().all(|&x| x == (2048 % 251) as u8));
        let e = v.read_at(3 * MIB - 512, &mut b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        // the same structures over a file cut short: the last block is not there
        let short: DevRef = Arc::new(MemDev(l.head.clone()));
        let x = Vhdx::open(&mut Stream::new(Arc::new(MemDev({
            let mut f = l.head.clone();
            f.resize(l.file_len as usize, 0);
            f
        }))))
        .unwrap();
        let v = VhdxDev::new(short, Arc::new(x));
        let e = v.read_at(0, &mut b).unwrap_err();
        assert!(e.to_string().contains("VHDX virtual bytes 0+1024"), "{e}");
    }

    #[test]
    fn slice_and_stream_stay_in_bounds() {
        let base: DevRef = Arc::new(MemDev((0u8..100).collect()));
        let s: DevRef = Arc::new(Slice::new(base, 90, 50));
        assert_eq!(s.size(), 10);
        let mut st = Stream::new(s);
        let mut b = [0u8; 16];
        assert_eq!(st.read(&mut b).unwrap(), 10);
        assert_eq!(b[0], 90);
        assert_eq!(st.read(&mut b).unwrap(), 0);
        assert!(st.seek(SeekFrom::Current(-20)).is_err());
    }
}
