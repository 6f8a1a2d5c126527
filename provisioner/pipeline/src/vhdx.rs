//! The fixed VHDX container of `ufd provision --format vhdx` (issue #7, item 2): Hyper-V
//! Server 2012's native-boot container, built around the inner partition file the way
//! [`crate::sparse::wrap_partition`] builds the fixed VHD — without copying the partition.
//!
//! # What is built
//!
//! A **fixed** VHDX (`FileParameters.LeaveBlocksAllocated` = 1, every payload block
//! `PAYLOAD_BLOCK_FULLY_PRESENT`) of exactly `vhd_size` virtual bytes, 512-byte logical
//! sectors, whose virtual disk is the inner MBR at LBA 0 and the NTFS partition at 1 MiB — the
//! same disk as the VHD route. Windows 8 / Server 2012 and later boot VHDX files natively
//! \[S: Microsoft Learn hh825689, "Understanding Virtual Hard Disks with Native Boot", applies
//! to Windows 8 / Server 2012\]; Windows 7 / 2008 R2 know VHD only, so the seed's VHD
//! route stays what 2008 R2 needs.
//!
//! # How (zero copy)
//!
//! 1. `qemu-img create -f vhdx -o subformat=fixed,block_state_zero=off,block_size=B T SIZE`
//!    writes a template `T` beside the output: headers, region tables, log, BAT and metadata
//!    in its first `P` bytes, then the payload (a hole: qemu only truncates the file to
//!    `P + SIZE`). **`block_state_zero=off` is required**: qemu's default (`on`, "non-standard,
//!    but default", `qemu-img create -f vhdx -o help`) marks every block of a *fixed* file
//!    `PAYLOAD_BLOCK_ZERO` with file offset 0 — a reader then returns zeros for the whole
//!    disk, whatever we put into the payload (verified here with qemu-img 7.2: BAT state 2,
//!    offset 0; with `off`: state 6 = fully present, offsets `P + i·B`).
//! 2. The template's layout is read back with the project's own reader
//!    ([`ufd_formats::vhdx`]): fixed, the virtual size asked for, logical sector 512, every
//!    block fully present, and **the payload contiguous and in order**: block `i` at file
//!    offset `P + i·B` (qemu 7.2 puts `P` at 8 MiB for every size and block size tried:
//!    64 MiB … 12 GiB, 1 … 32 MiB blocks; [`VhdxLayout::payload_offset`]).
//! 3. The partition file (data at `[0, vhd_size − 1 MiB)`) gets `P + 1 MiB` bytes of hole
//!    inserted at its front (`FALLOC_FL_INSERT_RANGE`; `P` is a multiple of 1 MiB because VHDX
//!    BAT entries address whole MiB, so the length suits any file-system block size): the
//!    partition now sits at file offset `P + 1 MiB` = virtual offset 1 MiB. The template's
//!    data extents below `P` (a few hundred KiB) are copied into the front, the inner MBR is
//!    written at `P` (virtual LBA 0), and the file gets the template's length. The file is
//!    renamed to the output; the template is removed.
//!
//! Fallback (reported in [`VhdxContainer::fallback_reason`]): where the file system cannot
//! insert ranges (tmpfs, btrfs: `EOPNOTSUPP`/`EINVAL`), or where the template's payload is not
//! one contiguous run (a qemu-img that lays fixed files out differently), the partition's
//! data extents are copied *into the template* through the BAT (each extent split at block
//! boundaries and written at its block's file offset), the MBR likewise; the template becomes
//! the output and the partition file is removed. Both routes give files a reader cannot tell
//! apart (tests/vhdx_container.rs).
//!
//! # Identity: random by default, pinned on request
//!
//! Two files qemu-img 7.2 creates alike differ only in their identity: FileWriteGuid and
//! DataWriteGuid (the same in both headers), header 1's sequence number (random; header 2's is
//! that + 1), the metadata's Page 83 Data item (the Virtual Disk ID, [MS-VHDX] §2.6.2.3) and
//! the header checksums (verified: `cmp -l` of two created files). By default they stay
//! qemu-img's random values, which is what Hyper-V's own `New-VHD` / DiskPart `create vdisk`
//! do too: fresh random GUIDs at creation \[reconstructed from §2.2.2 and §2.6.2.3, which
//! ask for unique identifiers; not observed on Windows here\]. With a [`VhdxIdentity`], the
//! template's two headers get its write GUIDs and the sequence numbers 1 and 2 (the current
//! header stays current; re-sealed with CRC-32C, [`ufd_formats::vhdx::pin_headers`]) and its
//! Page 83 Data item gets the disk id, right after qemu-img made it and before either route
//! reads it — so the zero-copy and the copy route both carry it, and the same inputs give a
//! byte-identical file (tests/vhdx_container.rs). The finished file is read back and must
//! carry the identity in both headers and the metadata.
//!
//! What Windows does with them afterwards \[S: [MS-VHDX] §2.2.2, §2.2.2.1; Windows' own
//! behaviour reconstructed from the specification, not observed\]: on every open that may
//! write, an implementation "MUST change" FileWriteGuid "before the first modification is made
//! to the file", log replay included (read-only opens may skip it), and writes a new
//! DataWriteGuid before the first change of user-visible data ("SHOULD NOT" change it
//! earlier). So a pinned file keeps its pinned write GUIDs only until the first native boot
//! opens it for writing; the pinned values make the *provisioned* image reproducible, nothing
//! more. The Page 83 id is the disk's identity and is not rewritten on open; every image made
//! with the same identity therefore shows Windows the same disk id — do not attach two of
//! them to one host at the same time \[reconstructed\].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ufd_formats::bytes::ReadAt;
use ufd_formats::vhdx::{guids, Guid, Header, PayloadState, Vhdx, HEADER_OFFSETS, HEADER_SIZE};

use crate::error::ProvisionError;
use crate::sparse;
use crate::tools::{self, Tool};

/// `qemu-img` (Debian qemu-utils) makes the VHDX headers, region tables, BAT and metadata.
pub const QEMU_IMG: Tool = Tool {
    name: "qemu-img",
    package: "qemu-utils",
};

/// The VHDX file name on the UFD, the VHDX counterpart of [`crate::VHD_NAME`]; the BCD
/// loader's `device`/`osdevice` must name this file (`vhd=[...]\hyperV.vhdx`).
pub const VHDX_NAME: &str = "hyperV.vhdx";

/// Default payload block size: 32 MiB, the block size Hyper-V is commonly reported to give new
/// VHDX files \[?: from memory; the New-VHD reference (`-BlockSizeBytes`) states no default\].
/// For a fixed disk the block size only sizes the BAT (8 bytes per block) and nothing reads
/// it at boot; qemu-img accepts 1 … 256 MiB, powers of 2.
pub const DEFAULT_BLOCK_SIZE: u64 = 32 << 20;

/// Bytes qemu-img puts in front of the payload of a fixed VHDX (header section, 1 MiB log,
/// BAT, metadata, padding): 8 MiB with qemu-img 7.2 for every size (64 MiB … 12 GiB) and block
/// size (1 … 32 MiB) tried. For size estimates before the file exists (preflight: the VHDX file
/// is `vhd_size + EXPECTED_HEADER_BYTES`); the real offset is read from the file
/// ([`VhdxContainer::payload_offset`]).
pub const EXPECTED_HEADER_BYTES: u64 = 8 << 20;

/// The inner partition starts at virtual offset 1 MiB (LBA 2048), as in the VHD route.
pub const PARTITION_OFFSET: u64 = 1 << 20;

const STEP: &str = "assemble VHDX";
const MIB: u64 = 1 << 20;

/// The identity fields of a VHDX file that qemu-img (and Windows) choose at random at
/// creation; pinned for byte-reproducible images (module docs, "Identity").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VhdxIdentity {
    /// FileWriteGuid of both headers ([MS-VHDX] §2.2.2). Windows replaces it on the first
    /// open for writing.
    pub file_write: Guid,
    /// DataWriteGuid of both headers (§2.2.2). Windows replaces it before the first write to
    /// the virtual disk's data.
    pub data_write: Guid,
    /// The Page 83 Data item (§2.6.2.3): the Virtual Disk ID, the identity Windows reports
    /// for the disk (SCSI VPD page 0x83).
    pub disk_id: Guid,
}

impl VhdxIdentity {
    /// The identity of the VHDX file `path` as our reader sees it: the write GUIDs of the
    /// *current* header and the Page 83 id. See [`read_headers`] for both headers.
    pub fn read(path: &Path) -> Result<VhdxIdentity, ProvisionError> {
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        let v = open_vhdx(&file, path)?;
        let h = &v.headers.current;
        Ok(VhdxIdentity {
            file_write: h.file_write_guid,
            data_write: h.data_write_guid,
            disk_id: v.disk_id(),
        })
    }
}

/// Both headers of the VHDX file `path`, parsed and checksum-verified (header 1 at 64 KiB,
/// header 2 at 128 KiB): what a pinned identity must be found in. An invalid header is a
/// format error naming its absolute offset.
pub fn read_headers(path: &Path) -> Result<[Header; 2], ProvisionError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let read = |copy: usize| -> Result<Header, ProvisionError> {
        let mut h = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut h, HEADER_OFFSETS[copy])
            .map_err(|e| io_err(path, e))?;
        Header::parse(&h, copy as u8 + 1, HEADER_OFFSETS[copy]).map_err(|e| fmt_err(path, e))
    };
    Ok([read(0)?, read(1)?])
}

/// Write `id` into the VHDX file `path` in place: both headers (write GUIDs, sequence numbers
/// 1 and 2 keeping the current one current, CRC-32C re-sealed) and the Page 83 Data item.
/// The file must open cleanly with our reader and both headers must be valid with no log
/// ([`ufd_formats::vhdx::pin_headers`]); errors name the file and the absolute offset.
pub fn pin_identity(path: &Path, id: &VhdxIdentity) -> Result<(), ProvisionError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    let v = open_vhdx(&f, path)?;
    let at = v
        .metadata_item(&guids::PAGE_83_DATA)
        .filter(|&(_, len)| len >= 16)
        .map(|(at, _)| at)
        .ok_or_else(|| {
            usage(format!(
                "{STEP}: {}: no 16-byte Page 83 Data item in the metadata region at {:#x}",
                path.display(),
                v.regions.metadata.file_offset
            ))
        })?;
    let mut h1 = [0u8; HEADER_SIZE];
    let mut h2 = [0u8; HEADER_SIZE];
    f.read_exact_at(&mut h1, HEADER_OFFSETS[0])
        .map_err(|e| io_err(path, e))?;
    f.read_exact_at(&mut h2, HEADER_OFFSETS[1])
        .map_err(|e| io_err(path, e))?;
    ufd_formats::vhdx::pin_headers([&mut h1, &mut h2], &id.file_write, &id.data_write)
        .map_err(|e| fmt_err(path, e))?;
    f.write_all_at(&h1, HEADER_OFFSETS[0])
        .map_err(|e| io_err(path, e))?;
    f.write_all_at(&h2, HEADER_OFFSETS[1])
        .map_err(|e| io_err(path, e))?;
    f.write_all_at(&id.disk_id.0, at)
        .map_err(|e| io_err(path, e))?;
    Ok(())
}

/// Read back what [`pin_identity`] wrote: both headers and the Page 83 id must be `id`.
fn check_identity(path: &Path, id: &VhdxIdentity) -> Result<(), ProvisionError> {
    let got = VhdxIdentity::read(path)?;
    let headers = read_headers(path)?;
    let stale = headers
        .iter()
        .find(|h| h.file_write_guid != id.file_write || h.data_write_guid != id.data_write);
    if got.disk_id != id.disk_id || stale.is_some() {
        return Err(usage(format!(
            "{STEP}: {}: read back, the VHDX identity is not the pinned one (page 83 id {}, header write GUIDs {} / {}; wanted {} and {} / {})",
            path.display(),
            got.disk_id,
            stale.map_or(got.file_write, |h| h.file_write_guid),
            stale.map_or(got.data_write, |h| h.data_write_guid),
            id.disk_id,
            id.file_write,
            id.data_write
        )));
    }
    Ok(())
}

/// The layout of a VHDX file, as this module needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VhdxLayout {
    /// Virtual disk size (metadata `VirtualDiskSize`).
    pub virtual_size: u64,
    /// Payload block size (metadata `FileParameters.BlockSize`).
    pub block_size: u64,
    /// Logical sector size (metadata `LogicalSectorSize`).
    pub logical_sector_size: u32,
    /// `FileParameters.LeaveBlocksAllocated` (a fixed disk).
    pub fixed: bool,
    /// File offset of each payload block, in block order; `None` for a block that is not
    /// fully present (its data would not be read from the file).
    pub blocks: Vec<Option<u64>>,
    /// The file's length in bytes.
    pub file_len: u64,
}

impl VhdxLayout {
    /// `Some(P)` when every block is fully present and block `i` sits at `P + i·block_size`
    /// (virtual offset `v` at file offset `P + v`), `P` a multiple of 1 MiB, and the file
    /// holds all of it.
    pub fn payload_offset(&self) -> Option<u64> {
        let p = (*self.blocks.first()?)?;
        let contiguous = self.blocks.iter().enumerate().all(|(i, b)| {
            (i as u64)
                .checked_mul(self.block_size)
                .and_then(|o| o.checked_add(p))
                .is_some_and(|want| *b == Some(want))
        });
        (contiguous && p % MIB == 0 && p.checked_add(self.virtual_size)? <= self.file_len)
            .then_some(p)
    }

    /// File offset of virtual offset `v`, and how many bytes from there stay in the same
    /// block. `None` when `v` is beyond the disk or its block is not fully present.
    pub fn map(&self, v: u64) -> Option<(u64, u64)> {
        if v >= self.virtual_size || self.block_size == 0 {
            return None;
        }
        let i = usize::try_from(v / self.block_size).ok()?;
        let within = v % self.block_size;
        let base = (*self.blocks.get(i)?)?;
        let left = (self.block_size - within).min(self.virtual_size - v);
        Some((base + within, left))
    }
}

/// What [`assemble_fixed_vhdx`] built.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VhdxContainer {
    /// The finished VHDX file.
    pub path: PathBuf,
    /// Virtual disk size in bytes.
    pub virtual_size: u64,
    /// Payload block size in bytes.
    pub block_size: u64,
    /// File offset of virtual offset 0 (the inner MBR), `P`.
    pub payload_offset: u64,
    /// `true`: the partition was not copied (hole inserted in front of it).
    pub zero_copy: bool,
    /// Why the zero-copy route was not taken (`None` when it was).
    pub fallback_reason: Option<String>,
    /// Bytes of the template's headers/metadata copied (zero-copy route), plus the MBR.
    pub metadata_bytes_copied: u64,
    /// Bytes of the partition's data extents copied (fallback route; 0 when zero copy).
    pub data_bytes_copied: u64,
    /// Bytes qemu-img wrote (`/proc/<pid>/io`), for the step's byte count: add them to the
    /// step's tool bytes (our own writes are counted by the runner's thread counter).
    pub tool_write_bytes: u64,
    /// `true`: the identity GUIDs were pinned ([`VhdxIdentity`]) and read back; `false`:
    /// qemu-img's random ones.
    pub identity_pinned: bool,
    /// One line for the step report.
    pub detail: String,
}

fn io_err(path: &Path, source: std::io::Error) -> ProvisionError {
    ProvisionError::Io {
        step: STEP,
        path: path.to_path_buf(),
        source,
    }
}

fn usage(msg: String) -> ProvisionError {
    ProvisionError::Usage(msg)
}

/// `ReadAt` over a host file, for the formats crate's VHDX reader.
struct FileAt<'a> {
    file: &'a File,
    size: u64,
}

impl ReadAt for FileAt<'_> {
    type Error = std::io::Error;
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

fn fmt_err(path: &Path, e: ufd_formats::Error) -> ProvisionError {
    ProvisionError::Format {
        step: STEP,
        path: path.to_path_buf(),
        source: e,
    }
}

/// Open `file` (at `path`, for messages) with [`ufd_formats::vhdx::Vhdx::open`].
fn open_vhdx(file: &File, path: &Path) -> Result<Vhdx, ProvisionError> {
    let file_len = file.metadata().map_err(|e| io_err(path, e))?.len();
    let mut at = FileAt {
        file,
        size: file_len,
    };
    Vhdx::open(&mut at).map_err(|e| match e {
        ufd_formats::vhd::ReadError::Io(e) => io_err(path, e),
        ufd_formats::vhd::ReadError::Format(e) => fmt_err(path, e),
    })
}

/// Read the layout of the VHDX file `path` with [`ufd_formats::vhdx`] (headers with CRC-32C,
/// region table, metadata, BAT). Format errors name the absolute byte offset.
pub fn read_layout(path: &Path) -> Result<VhdxLayout, ProvisionError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let vhdx = open_vhdx(&file, path)?;
    let file_len = vhdx.file_len;
    let block_size = u64::from(vhdx.block_size());
    let virtual_size = vhdx.virtual_size();
    let blocks = (0..vhdx.block_count())
        .map(|i| match vhdx.block(i) {
            Some((PayloadState::FullyPresent, off)) => Some(off),
            _ => None,
        })
        .collect();
    Ok(VhdxLayout {
        virtual_size,
        block_size,
        logical_sector_size: vhdx.logical_sector_size(),
        fixed: vhdx.metadata.file_parameters.leave_block_allocated,
        blocks,
        file_len,
    })
}

/// A path qemu-img takes as a plain file name: `foo:bar` (a colon before any `/`) would be
/// parsed as a protocol prefix, so relative paths get `./`.
fn qemu_path(p: &Path) -> std::ffi::OsString {
    if p.is_absolute() {
        p.as_os_str().to_owned()
    } else {
        let mut s = std::ffi::OsString::from("./");
        s.push(p.as_os_str());
        s
    }
}

/// Check the template qemu-img made against what was asked for; the error names the file.
fn check_template(
    template: &Path,
    l: &VhdxLayout,
    vhd_size: u64,
    block_size: u64,
) -> Result<(), ProvisionError> {
    let bad = |what: String| {
        usage(format!(
            "{STEP}: {}: qemu-img made {what}; the VHDX route needs a fixed VHDX of {vhd_size} bytes with {block_size}-byte blocks and 512-byte logical sectors",
            template.display()
        ))
    };
    if !l.fixed {
        return Err(bad("a dynamic VHDX (LeaveBlocksAllocated = 0)".into()));
    }
    if l.virtual_size != vhd_size {
        return Err(bad(format!("a virtual size of {} bytes", l.virtual_size)));
    }
    if l.block_size != block_size {
        return Err(bad(format!("a block size of {} bytes", l.block_size)));
    }
    if l.logical_sector_size != 512 {
        return Err(bad(format!(
            "a logical sector size of {} bytes",
            l.logical_sector_size
        )));
    }
    let want_blocks = vhd_size.div_ceil(block_size);
    if l.blocks.len() as u64 != want_blocks {
        return Err(bad(format!(
            "{} payload blocks where {want_blocks} cover the disk",
            l.blocks.len()
        )));
    }
    if let Some(i) = l.blocks.iter().position(Option::is_none) {
        return Err(bad(format!(
            "payload block {i} not fully present (qemu-img's block_state_zero=on?)"
        )));
    }
    if let Some((i, off)) = l
        .blocks
        .iter()
        .enumerate()
        .find_map(|(i, b)| b.filter(|&o| o % MIB != 0).map(|o| (i, o)))
    {
        return Err(bad(format!(
            "payload block {i} at file offset {off:#x}, not a multiple of 1 MiB"
        )));
    }
    if let Some((i, end)) = l.blocks.iter().enumerate().find_map(|(i, b)| {
        let end = b.map(|o| o + l.block_size.min(vhd_size - i as u64 * l.block_size));
        end.filter(|&e| e > l.file_len).map(|e| (i, e))
    }) {
        return Err(bad(format!(
            "payload block {i} ending at {end:#x}, beyond the file's {} bytes",
            l.file_len
        )));
    }
    Ok(())
}

/// Turn the inner partition file `part` (an NTFS volume of `vhd_size − 1 MiB` bytes, data
/// extents only) into the fixed VHDX `out` whose virtual disk is `inner_mbr` at LBA 0 and the
/// partition at 1 MiB. Zero copy where the file system can insert ranges and `zero_copy` is
/// set (module docs; `false` = the copy route, as `VhdRoute::Copy` asks for the VHD);
/// `part` is consumed either way (renamed to `out`, or copied and removed). `block_size`: see
/// [`DEFAULT_BLOCK_SIZE`]. `identity`: `Some` pins the identity GUIDs (module docs,
/// "Identity"; the same inputs then give the same bytes), `None` keeps qemu-img's random ones.
/// On error, `part` may have been modified; the caller's scratch directory is discarded (as
/// for the VHD route).
pub fn assemble_fixed_vhdx(
    part: &Path,
    out: &Path,
    vhd_size: u64,
    inner_mbr: &[u8; 512],
    block_size: u64,
    zero_copy: bool,
    identity: Option<&VhdxIdentity>,
) -> Result<VhdxContainer, ProvisionError> {
    if vhd_size % MIB != 0 || vhd_size <= PARTITION_OFFSET {
        return Err(usage(format!(
            "{STEP}: {}: VHDX size {vhd_size} must be a multiple of 1 MiB and larger than 1 MiB",
            out.display()
        )));
    }
    if !(MIB..=256 * MIB).contains(&block_size) || !block_size.is_power_of_two() {
        return Err(usage(format!(
            "{STEP}: VHDX block size {block_size} must be a power of two from 1 MiB to 256 MiB"
        )));
    }
    let part_len = std::fs::metadata(part).map_err(|e| io_err(part, e))?.len();
    if part_len != vhd_size - PARTITION_OFFSET {
        return Err(usage(format!(
            "{STEP}: {}: partition file is {part_len} bytes; a {vhd_size}-byte disk with the partition at 1 MiB needs {}",
            part.display(),
            vhd_size - PARTITION_OFFSET
        )));
    }
    tools::find(QEMU_IMG)?;

    // 1. The template: qemu-img's fixed VHDX of the same size, beside the output.
    let mut tname = out.file_name().unwrap_or_default().to_owned();
    tname.push(".qemu-img.tmp");
    let template = out.with_file_name(tname);
    let _ = std::fs::remove_file(&template);
    let ran = tools::run(
        STEP,
        QEMU_IMG,
        [
            std::ffi::OsString::from("create"),
            "-q".into(),
            "-f".into(),
            "vhdx".into(),
            "-o".into(),
            format!("subformat=fixed,block_state_zero=off,block_size={block_size}").into(),
            qemu_path(&template),
            vhd_size.to_string().into(),
        ],
        None,
    )?;
    // 1b. The pinned identity goes into the template, which both routes take the header
    // area from.
    let result = identity
        .map_or(Ok(()), |id| pin_identity(&template, id))
        .and_then(|()| {
            build(
                part, out, &template, vhd_size, inner_mbr, block_size, zero_copy,
            )
        })
        .and_then(|mut c| {
            c.tool_write_bytes = ran.write_bytes;
            if let Some(id) = identity {
                check_identity(&c.path, id)?;
                c.identity_pinned = true;
                c.detail.push_str(&format!(
                    ", identity pinned (page 83 id {}, write GUIDs {} / {})",
                    id.disk_id, id.file_write, id.data_write
                ));
            }
            Ok(c)
        });
    let _ = std::fs::remove_file(&template);
    result
}

fn build(
    part: &Path,
    out: &Path,
    template: &Path,
    vhd_size: u64,
    inner_mbr: &[u8; 512],
    block_size: u64,
    zero_copy: bool,
) -> Result<VhdxContainer, ProvisionError> {
    // 2. Its layout.
    let layout = read_layout(template)?;
    check_template(template, &layout, vhd_size, block_size)?;
    let contiguous = layout.payload_offset();

    // 3. Zero copy: hole of P + 1 MiB in front of the partition.
    let fallback_reason = match contiguous {
        None => format!(
            "{}: qemu-img's payload blocks are not one contiguous run",
            template.display()
        ),
        Some(_) if !zero_copy => "copy route requested".to_string(),
        Some(p) => {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(part)
                .map_err(|e| io_err(part, e))?;
            if sparse::insert_range(&f, 0, p + PARTITION_OFFSET).map_err(|e| io_err(part, e))? {
                let meta =
                    embed_into_partition(&f, part, template, &layout, p, vhd_size, inner_mbr)?;
                drop(f);
                std::fs::rename(part, out).map_err(|e| io_err(out, e))?;
                let c = VhdxContainer {
                    path: out.to_path_buf(),
                    virtual_size: vhd_size,
                    block_size,
                    payload_offset: p,
                    zero_copy: true,
                    fallback_reason: None,
                    metadata_bytes_copied: meta + 512,
                    data_bytes_copied: 0,
                    tool_write_bytes: 0,
                    identity_pinned: false,
                    detail: String::new(),
                };
                return verify(c, inner_mbr);
            }
            format!(
                "the file system holding {} cannot insert ranges (FALLOC_FL_INSERT_RANGE refused)",
                part.display()
            )
        }
    };

    // Fallback: copy the partition's data extents into the template through its BAT.
    let src = File::open(part).map_err(|e| io_err(part, e))?;
    let dst = OpenOptions::new()
        .read(true)
        .write(true)
        .open(template)
        .map_err(|e| io_err(template, e))?;
    let unmapped = |v: u64| {
        usage(format!(
            "{STEP}: {}: virtual offset {v:#x} has no payload block",
            template.display()
        ))
    };
    let (mbr_at, _) = layout.map(0).ok_or_else(|| unmapped(0))?;
    dst.write_all_at(inner_mbr, mbr_at)
        .map_err(|e| io_err(template, e))?;
    let mut data = 0u64;
    for (s, e) in sparse::data_extents(&src).map_err(|e| io_err(part, e))? {
        let mut pos = s;
        while pos < e {
            let v = PARTITION_OFFSET + pos;
            let (at, left) = layout.map(v).ok_or_else(|| unmapped(v))?;
            let n = left.min(e - pos);
            sparse::copy_range(&src, pos, &dst, at, n).map_err(|e| io_err(template, e))?;
            pos += n;
            data += n;
        }
    }
    dst.sync_all().map_err(|e| io_err(template, e))?;
    drop((src, dst));
    std::fs::rename(template, out).map_err(|e| io_err(out, e))?;
    std::fs::remove_file(part).map_err(|e| io_err(part, e))?;
    let c = VhdxContainer {
        path: out.to_path_buf(),
        virtual_size: vhd_size,
        block_size,
        payload_offset: mbr_at,
        zero_copy: false,
        fallback_reason: Some(fallback_reason),
        metadata_bytes_copied: 512,
        data_bytes_copied: data,
        tool_write_bytes: 0,
        identity_pinned: false,
        detail: String::new(),
    };
    verify(c, inner_mbr)
}

/// The zero-copy route after the hole is inserted: the template's data extents below `P`
/// (headers, region tables, BAT, metadata) and past the payload (none with qemu 7.2) into the
/// partition file at the same offsets, the inner MBR at `P`, the template's length. Returns
/// the bytes copied.
fn embed_into_partition(
    f: &File,
    part: &Path,
    template: &Path,
    layout: &VhdxLayout,
    p: u64,
    vhd_size: u64,
    inner_mbr: &[u8; 512],
) -> Result<u64, ProvisionError> {
    let t = File::open(template).map_err(|e| io_err(template, e))?;
    let mut meta = 0u64;
    for (s, e) in sparse::data_extents(&t).map_err(|e| io_err(template, e))? {
        let ranges = [(s, e.min(p)), (s.max(p + vhd_size), e)];
        for (a, b) in ranges.into_iter().filter(|(a, b)| a < b) {
            sparse::copy_range(&t, a, f, a, b - a).map_err(|e| io_err(part, e))?;
            meta += b - a;
        }
    }
    f.write_all_at(inner_mbr, p).map_err(|e| io_err(part, e))?;
    let want = layout.file_len.max(p + vhd_size);
    if f.metadata().map_err(|e| io_err(part, e))?.len() != want {
        f.set_len(want).map_err(|e| io_err(part, e))?;
    }
    f.sync_all().map_err(|e| io_err(part, e))?;
    Ok(meta)
}

/// Read the finished file back through the reader: the same layout rules as the template,
/// and the inner MBR where virtual offset 0 maps. Fills in the detail line.
fn verify(mut c: VhdxContainer, inner_mbr: &[u8; 512]) -> Result<VhdxContainer, ProvisionError> {
    let l = read_layout(&c.path)?;
    check_template(&c.path, &l, c.virtual_size, c.block_size)?;
    let (at, _) = l.map(0).ok_or_else(|| {
        usage(format!(
            "{STEP}: {}: virtual offset 0 has no payload block",
            c.path.display()
        ))
    })?;
    let f = File::open(&c.path).map_err(|e| io_err(&c.path, e))?;
    let mut got = [0u8; 512];
    f.read_exact_at(&mut got, at)
        .map_err(|e| io_err(&c.path, e))?;
    if at != c.payload_offset || got != *inner_mbr {
        return Err(usage(format!(
            "{STEP}: {}: read back, virtual LBA 0 (file offset {at:#x}) does not hold the inner MBR written at {:#x}",
            c.path.display(),
            c.payload_offset
        )));
    }
    c.detail = format!(
        "fixed VHDX {} bytes (qemu-img: {} MiB blocks, 512-byte sectors, payload at file offset {:#x}), inner MBR at virtual LBA 0, {}",
        c.virtual_size,
        c.block_size >> 20,
        c.payload_offset,
        if c.zero_copy {
            format!(
                "{} MiB inserted in front of the partition (zero copy), {} bytes of VHDX headers/metadata copied",
                (c.payload_offset + PARTITION_OFFSET) >> 20,
                c.metadata_bytes_copied - 512
            )
        } else {
            format!(
                "{} partition data bytes copied into qemu-img's file ({})",
                c.data_bytes_copied,
                c.fallback_reason.as_deref().unwrap_or("copy route")
            )
        }
    );
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(blocks: Vec<Option<u64>>, virtual_size: u64, file_len: u64) -> VhdxLayout {
        VhdxLayout {
            virtual_size,
            block_size: 8 * MIB,
            logical_sector_size: 512,
            fixed: true,
            blocks,
            file_len,
        }
    }

    #[test]
    fn contiguous_payload_has_one_offset() {
        let l = layout(
            vec![Some(8 * MIB), Some(16 * MIB), Some(24 * MIB)],
            20 * MIB,
            28 * MIB,
        );
        assert_eq!(l.payload_offset(), Some(8 * MIB));
        assert_eq!(l.map(0), Some((8 * MIB, 8 * MIB)));
        assert_eq!(l.map(17 * MIB + 5), Some((25 * MIB + 5, 3 * MIB - 5)));
        assert_eq!(l.map(20 * MIB), None);
    }

    #[test]
    fn out_of_order_or_missing_blocks_are_not_contiguous() {
        let swapped = layout(vec![Some(16 * MIB), Some(8 * MIB)], 16 * MIB, 24 * MIB);
        assert_eq!(swapped.payload_offset(), None);
        assert_eq!(swapped.map(9 * MIB), Some((9 * MIB, 7 * MIB)));
        let hole = layout(vec![Some(8 * MIB), None], 16 * MIB, 24 * MIB);
        assert_eq!(hole.payload_offset(), None);
        assert_eq!(hole.map(8 * MIB), None);
        let short = layout(vec![Some(8 * MIB), Some(16 * MIB)], 16 * MIB, 23 * MIB);
        assert_eq!(short.payload_offset(), None, "file shorter than P + size");
        let unaligned = layout(vec![Some(8 * MIB + 4096)], 8 * MIB, 17 * MIB);
        assert_eq!(unaligned.payload_offset(), None);
    }

    #[test]
    fn check_template_names_what_is_wrong() {
        let p = Path::new("/x/t.vhdx");
        let good = layout(vec![Some(8 * MIB), Some(16 * MIB)], 16 * MIB, 24 * MIB);
        check_template(p, &good, 16 * MIB, 8 * MIB).unwrap();
        let mut dynamic = good.clone();
        dynamic.fixed = false;
        let e = check_template(p, &dynamic, 16 * MIB, 8 * MIB)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/x/t.vhdx") && e.contains("dynamic"), "{e}");
        let e = check_template(p, &good, 32 * MIB, 8 * MIB)
            .unwrap_err()
            .to_string();
        assert!(e.contains("virtual size of 16777216"), "{e}");
        let mut sect = good.clone();
        sect.logical_sector_size = 4096;
        let e = check_template(p, &sect, 16 * MIB, 8 * MIB)
            .unwrap_err()
            .to_string();
        assert!(e.contains("logical sector size of 4096"), "{e}");
        let zero = layout(vec![Some(8 * MIB), None], 16 * MIB, 24 * MIB);
        let e = check_template(p, &zero, 16 * MIB, 8 * MIB)
            .unwrap_err()
            .to_string();
        assert!(e.contains("payload block 1 not fully present"), "{e}");
        let short = layout(vec![Some(8 * MIB), Some(16 * MIB)], 16 * MIB, 20 * MIB);
        let e = check_template(p, &short, 16 * MIB, 8 * MIB)
            .unwrap_err()
            .to_string();
        assert!(e.contains("beyond the file's 20971520 bytes"), "{e}");
    }

    #[test]
    fn relative_paths_cannot_look_like_protocols() {
        assert_eq!(qemu_path(Path::new("a:b.vhdx")), "./a:b.vhdx");
        assert_eq!(qemu_path(Path::new("/t/a:b")), "/t/a:b");
    }
}
