//! Copy a (sparse) disk image onto a device or file, honestly.
//!
//! - **Only data is written.** The image's extents are found with `lseek(SEEK_DATA/SEEK_HOLE)`
//!   and only they are copied; the target's bytes under the image's holes keep whatever they
//!   held. That is safe for what `ufd provision` builds, for the same reason a quick format is:
//!   a hole is a range no tool ever wrote, i.e. free space of an NTFS volume (mkntfs -Q, like
//!   Windows' quick format, does not clear free clusters; NTFS finds its clusters through
//!   `$Bitmap` and its records through the `$MFT` bitmap and never interprets a free cluster),
//!   and the same areas inside the VHD, which the UFD's NTFS holds in allocated clusters whose
//!   content the inner NTFS treats the same way. Stale bytes stay readable in free space (a
//!   privacy concern, not a correctness one): [`WriteOptions::zero_holes`] clears them
//!   (BLKZEROOUT on block devices, which the device can serve with a TRIM-like zeroing command;
//!   `fallocate(PUNCH_HOLE|KEEP_SIZE)` on files).
//! - **The stick's previous partitioning is cleared the way the seed's `diskpart clean` does.**
//!   The seed prepares the stick with `clean` before `create partition primary`. Microsoft's
//!   diskpart reference says only that `clean` overwrites "the MBR partitioning information and
//!   hidden sector information" (MBR disks) or "the GPT partitioning information, including the
//!   Protective MBR" (GPT disks) (learn.microsoft.com, windows-commands/clean). What is cleared
//!   is documented for the VDS call underneath: `IVdsAdvancedDisk::Clean` with `bFullClean`
//!   FALSE "cleans only the first and the last megabytes on the disk" (learn.microsoft.com,
//!   vds.h, IVdsAdvancedDisk::Clean); third-party write-ups of diskpart say the same ("the first
//!   and last 1MB of the disk are zeroed", t.zoukankan.com/fdyang-p-3041255.html).
//!   *Reconstructed*: that diskpart's `clean` is that VDS call with `bFullClean` FALSE, that a
//!   "megabyte" is 1 MiB, and that it is zeros (not observed on Windows). So:
//!   - the first [`HEAD_BYTES`] (1 MiB) are always written from the image, zeros included: the
//!     MBR, LBA 1–33 where a primary GPT header and entries sit, and the gap before partition 1
//!     (which our images put at 1 MiB, as Windows Vista and later align it), i.e. what `clean`
//!     followed by `create partition` leaves. This also removes signatures that live in the gap,
//!     e.g. the ISO 9660 volume descriptor at 32 KiB of a stick that held a hybrid ISO;
//!   - the last [`TAIL_BYTES`] (1 MiB) of the **target** are zeroed wherever the image does not
//!     write data there: beyond the image's end when the target is larger than the image (the
//!     backup GPT header in the last LBA and its entries in the 32 LBAs before it, which would
//!     otherwise survive from the stick's previous life; with 4096-byte sectors, the last 5),
//!     and the image's own holes in that range when the target is the image's size. Counted in
//!     [`WriteSummary::cleared_bytes`], in the progress total and in the read-back.
//!
//!   Bytes of a larger target between the image's end and its last MiB keep what they held
//!   (no partition references them; `clean` does not touch them either).
//!   A **regular file** target is treated as a disk of its current size (a virtual stick for
//!   QEMU, a loop device's backing file): a shorter one is extended to the image's size, a
//!   longer one keeps its size and gets the same clean (pass a new, empty file to get a copy of
//!   the image). Before this, a stale backup GPT of a larger target survived: invisible to
//!   firmware and Windows (no protective MBR, type EEh) but found by `wipefs`/libblkid (udev,
//!   udisks) and offered for recovery by GPT tools.
//! - **The MBR goes first as zeros and last as data.** Sector 0 is zeroed and flushed before
//!   anything else; then the rest of the head and the target's last MiB are written and flushed
//!   (from then on the target holds no partitioning at all, as after `clean`), then the image's
//!   other extents (and holes, with `zero_holes`); sector 0 is written from the image only after
//!   everything else is flushed: a device whose write was interrupted has no partition table,
//!   so no firmware boots it and no one mistakes it for a finished UFD ([`INTERRUPTED_STATE`]).
//! - **Progress counts flushed bytes.** Every [`WriteOptions::flush_every`] bytes the target is
//!   `fdatasync`ed (on a block device that writes the page cache and issues a cache flush to
//!   the device) and only then are the bytes reported, with rate and ETA. Progress bars that
//!   "finish" while gigabytes still sit in the page cache were a top user complaint of peers
//!   (peers.md A.3 #3).
//! - **Cancellable**: a flag (set by the CLI's SIGINT handler) is checked between chunks (of the
//!   copy and of the clean alike); the write flushes and returns [`WriteError::Interrupted`]
//!   saying what state the target is in.
//! - **Verified**: after the write, the cached pages of the target are dropped
//!   (`posix_fadvise(DONTNEED)`) and every written extent is read back and compared, and every
//!   cleared range is read back and must be zeros.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::unistd::Whence;
use serde::Serialize;

/// Bytes at the start that are always written from the image, zeros included: diskpart
/// `clean`'s first megabyte (MBR, primary GPT area LBA 1–33, gap before partition 1).
pub const HEAD_BYTES: u64 = 1 << 20;
/// Bytes at the end of the target zeroed wherever the image writes no data there: diskpart
/// `clean`'s last megabyte, which holds a backup GPT (see the module docs).
pub const TAIL_BYTES: u64 = 1 << 20;
/// The state of a target whose write stopped before the end.
pub const INTERRUPTED_STATE: &str =
    "partition table not written: the device does not boot and is not a valid UFD";

/// Block-layer ioctls (linux/fs.h), kept private: the wrappers nix generates are `pub`.
mod sys {
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);
}
use sys::{blkgetsize64, blkzeroout};

/// How to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Zero the target under the image's holes (see the module docs for why it is optional).
    pub zero_holes: bool,
    /// Bytes per read/write call.
    pub chunk: usize,
    /// Flush (fdatasync) and report progress after this many bytes.
    pub flush_every: u64,
    /// Read every written extent back and compare.
    pub verify: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            zero_holes: false,
            chunk: 1 << 20,
            flush_every: 32 << 20,
            verify: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Writing,
    Verifying,
}

/// A progress report: `done` bytes are flushed to the target (writing) or compared (verifying).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
    pub elapsed: Duration,
    /// Bytes per second over the phase so far.
    pub rate: f64,
    pub eta: Option<Duration>,
}

/// What a finished write did. `data_bytes + zeroed_bytes + skipped_bytes + cleared_bytes ==
/// target_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteSummary {
    pub image_bytes: u64,
    /// Size of the target: the block device's size, or the file's length after the write.
    pub target_bytes: u64,
    /// Data extents copied (after merging in [`HEAD_BYTES`]).
    pub extents: usize,
    pub data_bytes: u64,
    /// Bytes zeroed under the image's holes before the target's last MiB (`zero_holes`), else 0.
    pub zeroed_bytes: u64,
    /// Bytes of the target left as they were: the image's holes before the target's last MiB
    /// (unless `zero_holes`) and, on a larger target, the bytes between the image's end and the
    /// target's last MiB.
    pub skipped_bytes: u64,
    /// Bytes zeroed in the target's last [`TAIL_BYTES`] where the image writes no data (beyond
    /// the image's end and under its holes), as diskpart `clean` does: no stale backup GPT.
    pub cleared_bytes: u64,
    /// Bytes read back and compared: the data extents and the cleared ranges.
    pub verified_bytes: u64,
    pub elapsed: Duration,
}

/// Why a write stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The cancel flag was set; everything up to `flushed_bytes` is on the target.
    Interrupted { flushed_bytes: u64, state: String },
    /// ENOSPC (or a target smaller than the image) at `offset`.
    NoSpace {
        target: String,
        offset: u64,
        image_bytes: u64,
    },
    /// Any other failure, naming the operation and the offset.
    Io {
        target: String,
        op: &'static str,
        offset: u64,
        error: String,
    },
    /// Read-back differs.
    VerifyMismatch { target: String, offset: u64 },
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Interrupted { flushed_bytes, state } => {
                write!(f, "interrupted after {flushed_bytes} bytes flushed: {state}")
            }
            WriteError::NoSpace { target, offset, image_bytes } => write!(
                f,
                "{target}: no space left at byte offset {offset} (ENOSPC): the target is smaller than the {image_bytes}-byte image"
            ),
            WriteError::Io { target, op, offset, error } => {
                write!(f, "{target}: {op} at byte offset {offset} failed: {error}")
            }
            WriteError::VerifyMismatch { target, offset } => write!(
                f,
                "{target}: read-back differs from the image at byte offset {offset}: the device did not keep what was written"
            ),
        }
    }
}
impl std::error::Error for WriteError {}

fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(nix::libc::EIO) => {
            format!("{e}: the device failed the transfer (worn out, unplugged or a bad cable?)")
        }
        _ => e.to_string(),
    }
}

/// The data extents `[start, end)` of `f` (length `len`), merged with `[0, HEAD_BYTES)`.
/// A filesystem without SEEK_DATA support gives one extent covering everything.
pub fn data_extents(f: &File, len: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let fd = f.as_raw_fd();
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut off = 0u64;
    while off < len {
        let start = match nix::unistd::lseek64(fd, off as i64, Whence::SeekData) {
            Ok(s) => s as u64,
            Err(Errno::ENXIO) => break,
            Err(Errno::EINVAL) | Err(Errno::EOPNOTSUPP) => {
                out = vec![(0, len)];
                break;
            }
            Err(e) => return Err(e.into()),
        };
        let end = match nix::unistd::lseek64(fd, start as i64, Whence::SeekHole) {
            Ok(e) => (e as u64).min(len),
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            break;
        }
        out.push((start, end));
        off = end;
    }
    let head = HEAD_BYTES.min(len);
    if head > 0 {
        out.push((0, head));
    }
    out.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in out {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    Ok(merged)
}

/// The ranges of `[0, len)` not covered by `extents` (sorted, disjoint).
fn holes(extents: &[(u64, u64)], len: u64) -> Vec<(u64, u64)> {
    let mut h = Vec::new();
    let mut pos = 0;
    for &(s, e) in extents {
        let s = s.min(len);
        if s > pos {
            h.push((pos, s));
        }
        pos = pos.max(e);
    }
    if pos < len {
        h.push((pos, len));
    }
    h
}

/// `ranges` (sorted, disjoint) intersected with `[lo, hi)`.
fn clip(ranges: &[(u64, u64)], lo: u64, hi: u64) -> Vec<(u64, u64)> {
    ranges
        .iter()
        .map(|&(s, e)| (s.max(lo), e.min(hi)))
        .filter(|(s, e)| s < e)
        .collect()
}

fn total(ranges: &[(u64, u64)]) -> u64 {
    ranges.iter().map(|(s, e)| e - s).sum()
}

struct Target<'a> {
    file: &'a File,
    name: &'a str,
    block: bool,
    image_bytes: u64,
}

impl Target<'_> {
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), WriteError> {
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| self.err("write", offset, e))
    }
    fn err(&self, op: &'static str, offset: u64, e: std::io::Error) -> WriteError {
        if e.raw_os_error() == Some(nix::libc::ENOSPC) || e.kind() == std::io::ErrorKind::WriteZero
        {
            WriteError::NoSpace {
                target: self.name.to_string(),
                offset,
                image_bytes: self.image_bytes,
            }
        } else {
            WriteError::Io {
                target: self.name.to_string(),
                op,
                offset,
                error: io_text(&e),
            }
        }
    }
    /// fdatasync; `offset` is where the unflushed range began (for the message).
    fn flush(&self, offset: u64) -> Result<(), WriteError> {
        self.file
            .sync_data()
            .map_err(|e| self.err("flush (fdatasync) of the range starting", offset, e))
    }
    /// Zero `[start, end)`.
    fn zero(&self, start: u64, end: u64) -> Result<(), WriteError> {
        let len = end - start;
        if self.block && start % 512 == 0 && len % 512 == 0 {
            let range = [start, len];
            // SAFETY: BLKZEROOUT reads a `u64[2]` {start, length} that outlives the call.
            return unsafe { blkzeroout(self.file.as_raw_fd(), &range) }
                .map(drop)
                .map_err(|e| self.err("BLKZEROOUT", start, e.into()));
        }
        if !self.block {
            use nix::fcntl::FallocateFlags as F;
            let r = nix::fcntl::fallocate(
                self.file.as_raw_fd(),
                F::FALLOC_FL_PUNCH_HOLE | F::FALLOC_FL_KEEP_SIZE,
                start as i64,
                len as i64,
            );
            if r.is_ok() {
                return Ok(());
            }
        }
        // Unaligned on a block device, or a filesystem that cannot punch holes: plain zeros.
        let zeros = vec![0u8; (1 << 20).min(len as usize)];
        let mut off = start;
        while off < end {
            let n = (end - off).min(zeros.len() as u64) as usize;
            self.write_at(&zeros[..n], off)?;
            off += n as u64;
        }
        Ok(())
    }
}

/// Size of a block device (BLKGETSIZE64), or None for other files.
pub fn block_device_size(f: &File) -> std::io::Result<Option<u64>> {
    if !f.metadata()?.file_type().is_block_device() {
        return Ok(None);
    }
    let mut size = 0u64;
    // SAFETY: BLKGETSIZE64 writes one u64 into `size`.
    unsafe { blkgetsize64(f.as_raw_fd(), &mut size) }.map_err(std::io::Error::from)?;
    Ok(Some(size))
}

struct Meter<'a> {
    phase: Phase,
    total: u64,
    start: Instant,
    cb: &'a mut dyn FnMut(&Progress),
}

impl Meter<'_> {
    fn report(&mut self, done: u64) {
        let elapsed = self.start.elapsed();
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let eta = (rate > 0.0)
            .then(|| Duration::from_secs_f64(self.total.saturating_sub(done) as f64 / rate));
        (self.cb)(&Progress {
            phase: self.phase,
            done,
            total: self.total,
            elapsed,
            rate,
            eta,
        });
    }
}

/// One step of the write, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Copy `[start, end)` from the image.
    Copy(u64, u64),
    /// Zero `[start, end)` of the target.
    Zero(u64, u64),
    /// Flush what is pending (and report it).
    Flush,
}

/// Bytes written but not yet flushed, and bytes flushed.
struct Flushed {
    done: u64,
    pending: u64,
    /// Where the unflushed range began (for messages).
    from: u64,
    every: u64,
}

impl Flushed {
    fn add(
        &mut self,
        t: &Target,
        meter: &mut Meter,
        offset: u64,
        n: u64,
    ) -> Result<(), WriteError> {
        if self.pending == 0 {
            self.from = offset;
        }
        self.pending += n;
        if self.pending >= self.every {
            self.flush(t, meter)?;
        }
        Ok(())
    }
    fn flush(&mut self, t: &Target, meter: &mut Meter) -> Result<(), WriteError> {
        if self.pending > 0 {
            t.flush(self.from)?;
            self.done += self.pending;
            self.pending = 0;
            meter.report(self.done);
        }
        Ok(())
    }
    /// Flush what is pending and say where the write stopped.
    fn interrupted(&self, t: &Target) -> WriteError {
        match t.flush(self.from) {
            Ok(()) => WriteError::Interrupted {
                flushed_bytes: self.done + self.pending,
                state: INTERRUPTED_STATE.into(),
            },
            Err(e) => e,
        }
    }
}

/// Write the image at `source` onto `target` (opened for writing by the caller: a block device
/// through `safety::open_exclusive`, or a regular file); `target_name` names it in messages.
/// The target may be larger than the image: its last [`TAIL_BYTES`] are cleared (module docs).
pub fn write_image(
    source: &Path,
    target: &File,
    target_name: &str,
    opts: &WriteOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<WriteSummary, WriteError> {
    let started = Instant::now();
    let src_err = |op: &'static str, offset: u64, e: std::io::Error| WriteError::Io {
        target: source.display().to_string(),
        op,
        offset,
        error: io_text(&e),
    };
    let src = File::open(source).map_err(|e| src_err("open", 0, e))?;
    let len = src.metadata().map_err(|e| src_err("stat", 0, e))?.len();
    let extents = data_extents(&src, len).map_err(|e| src_err("SEEK_DATA/SEEK_HOLE scan", 0, e))?;
    let data_bytes = total(&extents);
    let block_size = block_device_size(target).map_err(|e| WriteError::Io {
        target: target_name.to_string(),
        op: "size query (BLKGETSIZE64)",
        offset: 0,
        error: io_text(&e),
    })?;
    let t = Target {
        file: target,
        name: target_name,
        block: block_size.is_some(),
        image_bytes: len,
    };
    let target_bytes = match block_size {
        Some(size) if size < len => {
            return Err(WriteError::NoSpace {
                target: target_name.to_string(),
                offset: size,
                image_bytes: len,
            })
        }
        Some(size) => size,
        None => {
            let current = target.metadata().map_err(|e| t.err("stat", 0, e))?.len();
            if current < len {
                target
                    .set_len(len)
                    .map_err(|e| t.err("set length", len, e))?;
            }
            current.max(len)
        }
    };

    // What diskpart clean zeroes at the end, less what the image writes there; the image's holes
    // before it are zeroed (zero_holes) or skipped, as are a larger target's bytes before it.
    let tail_from = target_bytes.saturating_sub(TAIL_BYTES);
    let clear = clip(&holes(&extents, target_bytes), tail_from, target_bytes);
    let cleared_bytes = total(&clear);
    let image_holes = clip(&holes(&extents, len), 0, tail_from);
    let (zero_list, zeroed_bytes, skipped_bytes) = if opts.zero_holes {
        (image_holes.clone(), total(&image_holes), 0)
    } else {
        (Vec::new(), 0, total(&image_holes))
    };
    let skipped_bytes = skipped_bytes + tail_from.saturating_sub(len);

    let mut meter = Meter {
        phase: Phase::Writing,
        total: data_bytes + zeroed_bytes + cleared_bytes,
        start: Instant::now(),
        cb: progress,
    };
    let chunk = opts.chunk.max(512);

    // 1. Sector 0 zeroed and flushed before anything else.
    let head0 = 512.min(len);
    if head0 > 0 {
        t.write_at(&vec![0u8; head0 as usize], 0)?;
        t.flush(0)?;
    }
    // 2. The rest of the head and the clean of the end, flushed: no partitioning is left. Then
    //    the other extents and (zero_holes) the holes; sector 0 stays zero until 3.
    let head_end = HEAD_BYTES.min(len);
    let mut plan: Vec<Step> = Vec::new();
    plan.extend(
        clip(&extents, head0, head_end)
            .into_iter()
            .map(|(s, e)| Step::Copy(s, e)),
    );
    plan.extend(clear.iter().map(|&(s, e)| Step::Zero(s, e)));
    plan.push(Step::Flush);
    plan.extend(
        clip(&extents, head_end, len)
            .into_iter()
            .map(|(s, e)| Step::Copy(s, e)),
    );
    plan.extend(zero_list.iter().map(|&(s, e)| Step::Zero(s, e)));
    let mut f = Flushed {
        done: 0,
        pending: 0,
        from: 0,
        every: opts.flush_every.max(chunk as u64),
    };
    let mut buf = vec![0u8; chunk];
    for step in plan {
        let (s, e, copy) = match step {
            Step::Copy(s, e) => (s, e, true),
            Step::Zero(s, e) => (s, e, false),
            Step::Flush => {
                f.flush(&t, &mut meter)?;
                continue;
            }
        };
        let mut off = s;
        while off < e {
            if cancel.load(Ordering::SeqCst) {
                return Err(f.interrupted(&t));
            }
            let n = if copy {
                let n = (e - off).min(chunk as u64);
                let b = &mut buf[..n as usize];
                src.read_exact_at(b, off)
                    .map_err(|e| src_err("read", off, e))?;
                t.write_at(b, off)?;
                n
            } else {
                let n = (e - off).min(64 * chunk as u64);
                t.zero(off, off + n)?;
                n
            };
            f.add(&t, &mut meter, off, n)?;
            off += n;
        }
    }
    if cancel.load(Ordering::SeqCst) {
        return Err(f.interrupted(&t));
    }
    t.flush(f.from)?;
    let mut flushed = f.done + f.pending;

    // 3. Sector 0 last.
    if head0 > 0 {
        let mut s0 = vec![0u8; head0 as usize];
        src.read_exact_at(&mut s0, 0)
            .map_err(|e| src_err("read", 0, e))?;
        t.write_at(&s0, 0)?;
        t.flush(0)?;
        flushed += head0;
    }
    meter.report(flushed);

    // 4. Read back what was written, from the device rather than the page cache: the image's
    //    extents, then the cleared ranges (zeros).
    let mut verified = 0u64;
    if opts.verify {
        let _ = nix::fcntl::posix_fadvise(
            target.as_raw_fd(),
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
        let mut meter = Meter {
            phase: Phase::Verifying,
            total: data_bytes + cleared_bytes,
            start: Instant::now(),
            cb: meter.cb,
        };
        let ranges = extents
            .iter()
            .map(|&(s, e)| (s, e, true))
            .chain(clear.iter().map(|&(s, e)| (s, e, false)));
        let mut back = vec![0u8; chunk];
        let mut since = 0u64;
        let every = opts.flush_every.max(chunk as u64);
        for (s, e, from_image) in ranges {
            let mut off = s;
            while off < e {
                if cancel.load(Ordering::SeqCst) {
                    return Err(WriteError::Interrupted {
                        flushed_bytes: flushed,
                        state: "the image was written and flushed completely; read-back verification was not finished".into(),
                    });
                }
                let n = (e - off).min(chunk as u64) as usize;
                let want = &mut buf[..n];
                if from_image {
                    src.read_exact_at(want, off)
                        .map_err(|e| src_err("read", off, e))?;
                } else {
                    want.fill(0);
                }
                target
                    .read_exact_at(&mut back[..n], off)
                    .map_err(|e| t.err("read-back", off, e))?;
                if let Some(i) = want.iter().zip(&back[..n]).position(|(a, b)| a != b) {
                    return Err(WriteError::VerifyMismatch {
                        target: target_name.to_string(),
                        offset: off + i as u64,
                    });
                }
                off += n as u64;
                verified += n as u64;
                since += n as u64;
                if since >= every {
                    since = 0;
                    meter.report(verified);
                }
            }
        }
        meter.report(verified);
    }
    Ok(WriteSummary {
        image_bytes: len,
        target_bytes,
        extents: extents.len(),
        data_bytes,
        zeroed_bytes,
        skipped_bytes,
        cleared_bytes,
        verified_bytes: verified,
        elapsed: started.elapsed(),
    })
}

static SIGINT_CANCEL: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: nix::libc::c_int) {
    // Async-signal-safe: an atomic store; on a second Ctrl-C, the default action (the user
    // insists: the device stays without a partition table, see INTERRUPTED_STATE).
    if SIGINT_CANCEL.swap(true, Ordering::SeqCst) {
        // SAFETY: signal(2) and raise(3) are async-signal-safe.
        unsafe {
            nix::libc::signal(nix::libc::SIGINT, nix::libc::SIG_DFL);
            nix::libc::raise(nix::libc::SIGINT);
        }
    }
}

/// Install a SIGINT handler that sets the returned flag (pass it to [`write_image`] as
/// `cancel`): the first Ctrl-C stops the write cleanly at the next chunk, flushed, with
/// [`WriteError::Interrupted`]; a second one terminates the process as usual.
pub fn cancel_on_sigint() -> Result<&'static AtomicBool, crate::Error> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let sa = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only touches an atomic and async-signal-safe libc calls.
    unsafe { sigaction(Signal::SIGINT, &sa) }.map_err(|e| {
        crate::Error::new(format!("cannot install the SIGINT handler: {}", e.desc()))
    })?;
    Ok(&SIGINT_CANCEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigint_sets_the_cancel_flag() {
        let flag = cancel_on_sigint().unwrap();
        assert!(!flag.load(Ordering::SeqCst));
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT).unwrap();
        assert!(flag.load(Ordering::SeqCst));
    }

    #[test]
    fn holes_between_extents() {
        assert_eq!(holes(&[(0, 10), (20, 30)], 40), vec![(10, 20), (30, 40)]);
        assert_eq!(holes(&[(0, 40)], 40), vec![]);
        assert_eq!(holes(&[], 5), vec![(0, 5)]);
    }

    #[test]
    fn clip_intersects_ranges() {
        let r = [(0, 10), (20, 30), (40, 50)];
        assert_eq!(clip(&r, 5, 25), vec![(5, 10), (20, 25)]);
        assert_eq!(clip(&r, 30, 40), vec![]);
        assert_eq!(clip(&r, 0, 100), r.to_vec());
        // The clean of a target larger than the image: its last part past the image's data.
        assert_eq!(clip(&holes(&[(0, 10)], 100), 90, 100), vec![(90, 100)]);
        assert_eq!(clip(&holes(&[(0, 95)], 100), 90, 100), vec![(95, 100)]);
    }

    #[test]
    fn extents_of_a_sparse_file_include_the_head() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 4 << 20).unwrap();
        let e = data_extents(&f, 8 << 20).unwrap();
        assert_eq!(e, vec![(0, HEAD_BYTES), (4 << 20, (4 << 20) + 4096)]);
        let empty = tempfile::tempfile().unwrap();
        assert_eq!(data_extents(&empty, 0).unwrap(), vec![]);
    }
}
