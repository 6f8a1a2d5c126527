//! Binary device elements (format 1, REG_BINARY): decoder and encoder.
//!
//! Layout (formats.md §2, all little-endian, offsets within the element value):
//!
//! ```text
//! 0x00 GUID  options object ({ramdiskoptions} for ramdisk=..., else zero), Windows byte order
//! 0x10 descriptor: { u32 type, u32 flags, u32 size (from this header), u32 reserved } + body
//! ```
//!
//! Descriptor types handled here (every layout marked \[V\] was re-encoded byte-for-byte from a
//! real store — the ntloader store, win7-bios, win10-uefi and win10-iso-ramdisk fixtures):
//!
//! | type | body | [`Device`] |
//! |---|---|---|
//! | 5 | 0x38 zero bytes | [`Device::Boot`] \[V\] |
//! | 6 | partition id\[16\], local type 0, style (1 MBR / 0 GPT), disk id\[16\], 16 zero | [`Device::Partition`] \[V\] |
//! | 6 | same with local type 6 (virtual disk) followed by the VHD's file descriptor | [`Device::VhdPartition`] (formats.md §2.6b, BCD-SYS form) \[S\] |
//! | 0 | local type 5 (file): file-path descriptor {1, len, 5, parent descriptor, UTF-16 path} | [`Device::File`] \[V\] |
//! | 0 | local type 3 (ramdisk, header flags 1): u64 base, u64 size, u32 offset, file-path descriptor | [`Device::Ramdisk`] \[V\] |
//! | 0 | local type 6 (virtual disk): style, disk id\[16\], file descriptor of the .vhd | [`Device::VirtualDisk`] \[V\] (inside 2.6a) |
//! | 8 | locate: u32 kind, u32 element, u32 parent offset (from the header), UTF-16 path, parent | [`Device::Locate`] \[V\] (2.6a) |
//!
//! `vhd=[X:]\file.vhd` as bcdedit writes it (formats.md §2.6a, \[V\] byte-exact against the ntloader
//! store) is `Locate { kind 0, element 0x12000002 (device) / 0x22000002 (osdevice), path "",
//! parent: VirtualDisk { style 0, id 0, file: File { parent: Partition, path } } }`: build it with
//! [`DeviceElement::vhd`]. `vhd=[locate]\file.vhd` ([`DeviceElement::vhd_locate`]) is
//! **\[reconstructed\]**: no real store with that form has been examined; it uses the same outer
//! structure with the file's parent replaced by a parentless string locate (`kind 1`) of the VHD
//! path — treat it as unverified until compared against bcdedit output.
//!
//! Lossless decoding: a descriptor is decoded into a typed variant only if re-encoding the
//! variant reproduces its bytes exactly; otherwise (unknown type, unknown local type,
//! non-canonical padding or flags, unterminated path ...) it is kept verbatim as
//! [`Device::Raw`]. Structural damage — a header or a declared size/offset that runs past its
//! enclosing descriptor, nesting deeper than [`MAX_DEPTH`] — is an error whose offset is the byte
//! offset within the element value.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::guid::Guid;
use crate::bytes::Bytes;
use crate::error::{Error, Format, Result};

/// Deepest descriptor nesting accepted (2.6a nests 4 deep, 2.6c 5).
pub const MAX_DEPTH: usize = 8;

const HDR: usize = 16;
/// Device types (descriptor header).
pub const DEVICE_BLOCK_IO: u32 = 0;
pub const DEVICE_BOOT: u32 = 5;
pub const DEVICE_PARTITION: u32 = 6;
pub const DEVICE_LOCATE: u32 = 8;
/// Block-io (local) types.
pub const LOCAL_HARD_DISK: u32 = 0;
pub const LOCAL_RAMDISK: u32 = 3;
pub const LOCAL_FILE: u32 = 5;
pub const LOCAL_VIRTUAL_DISK: u32 = 6;
/// Partition styles in partition records (ReactOS numbering; WMI's are different).
pub const STYLE_GPT: u32 = 0;
pub const STYLE_MBR: u32 = 1;
/// Locate kinds (WMI `BcdDeviceLocateData.Type`; bcdedit's VHD form stores 0, see §2.6a).
pub const LOCATE_ELEMENT: u32 = 0;
pub const LOCATE_STRING: u32 = 1;

/// Where a partition is: what a qualified partition record (`partition=X:`) stores.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "style", rename_all = "snake_case"))]
pub enum PartitionLocation {
    /// MBR disk signature (the 4 bytes at MBR offset 0x1B8, as a LE u32) and the partition's
    /// start in bytes (LBA × 512).
    Mbr { disk_signature: u32, offset: u64 },
    /// GPT disk GUID and unique partition GUID.
    Gpt { disk: Guid, partition: Guid },
}

impl PartitionLocation {
    fn encode_ids(&self) -> ([u8; 16], u32, [u8; 16]) {
        match *self {
            PartitionLocation::Mbr {
                disk_signature,
                offset,
            } => {
                let mut p = [0u8; 16];
                p[..8].copy_from_slice(&offset.to_le_bytes());
                let mut d = [0u8; 16];
                d[..4].copy_from_slice(&disk_signature.to_le_bytes());
                (p, STYLE_MBR, d)
            }
            PartitionLocation::Gpt { disk, partition } => {
                (partition.to_bytes_le(), STYLE_GPT, disk.to_bytes_le())
            }
        }
    }

    fn decode_ids(part: [u8; 16], style: u32, disk: [u8; 16]) -> Option<PartitionLocation> {
        match style {
            STYLE_MBR => {
                let mut off = [0u8; 8];
                off.copy_from_slice(&part[..8]);
                let mut sig = [0u8; 4];
                sig.copy_from_slice(&disk[..4]);
                Some(PartitionLocation::Mbr {
                    disk_signature: u32::from_le_bytes(sig),
                    offset: u64::from_le_bytes(off),
                })
            }
            STYLE_GPT => Some(PartitionLocation::Gpt {
                disk: Guid::from_bytes_le(disk),
                partition: Guid::from_bytes_le(part),
            }),
            _ => None,
        }
    }

    /// Offline notation: `<disk 0x43da9ab1, offset 525336576>` or
    /// `<disk {guid}, partition {guid}>` (bcdedit would print a drive letter or
    /// `\Device\HarddiskVolumeN`, which needs the running system).
    pub fn text(&self) -> String {
        match self {
            PartitionLocation::Mbr {
                disk_signature,
                offset,
            } => format!("<disk {disk_signature:#010x}, offset {offset}>"),
            PartitionLocation::Gpt { disk, partition } => {
                format!("<disk {disk}, partition {partition}>")
            }
        }
    }
}

/// A device descriptor.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "device", rename_all = "snake_case"))]
pub enum Device {
    /// `boot`: the device the boot manager was loaded from.
    Boot,
    /// `partition=`: a qualified partition on a hard disk.
    Partition(PartitionLocation),
    /// formats.md §2.6b: a partition inside a VHD, followed by the VHD's file device.
    VhdPartition {
        partition: PartitionLocation,
        file: Box<Device>,
    },
    /// `file=[parent]path`.
    File { parent: Box<Device>, path: String },
    /// `ramdisk=[parent]path` (the options object is the element's [`DeviceElement::options`]).
    Ramdisk {
        image_base: u64,
        image_size: u64,
        image_offset: u32,
        parent: Box<Device>,
        path: String,
    },
    /// Block-io virtual disk: the disk inside a VHD file (`file`, normally a [`Device::File`]).
    /// `style`/`disk_id` name the VHD's own partitioning; bcdedit's VHD form leaves both zero.
    VirtualDisk {
        style: u32,
        disk_id: [u8; 16],
        file: Box<Device>,
    },
    /// `locate`: find the partition that holds `path`, or the path in element `element` of the
    /// loading application; with a `parent`, search inside that device (the VHD form).
    Locate {
        kind: u32,
        element: u32,
        path: String,
        parent: Option<Box<Device>>,
    },
    /// Anything else, kept verbatim: the whole descriptor including its 16-byte header.
    Raw { bytes: Vec<u8> },
}

impl Device {
    /// The VHD file a native-boot device points at: its host device and path (e.g. the UFD
    /// partition and `\hyperV.vhd`), for every VHD form this module decodes — bcdedit's
    /// locate form (§2.6a), the explicit inner-partition form (§2.6b) and a bare virtual disk.
    /// `None` for devices that are not VHDs. The host and the guest probe both resolve the
    /// loader's `device`/`osdevice` through this, so they agree on what "points at the VHD" means.
    pub fn vhd_file(&self) -> Option<(&Device, &str)> {
        fn file_of(d: &Device) -> Option<(&Device, &str)> {
            match d {
                Device::File { parent, path } => Some((parent, path)),
                _ => None,
            }
        }
        match self {
            Device::Locate {
                parent: Some(p), ..
            } => match p.as_ref() {
                Device::VirtualDisk { file, .. } => file_of(file),
                _ => None,
            },
            Device::VirtualDisk { file, .. } | Device::VhdPartition { file, .. } => file_of(file),
            _ => None,
        }
    }
}

/// A whole device element value: options GUID + descriptor.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DeviceElement {
    /// Object whose elements qualify the device (`{ramdiskoptions}`), or [`Guid::NULL`].
    pub options: Guid,
    pub device: Device,
}

fn put_header(out: &mut Vec<u8>, device_type: u32, flags: u32, size: usize) {
    out.extend_from_slice(&device_type.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(size as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(core::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// UTF-16LE text that ends with exactly one NUL at the end of `b` and has no other NUL.
fn read_utf16z_exact(b: &[u8]) -> Option<String> {
    if b.len() < 2 || b.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let (last, text) = units.split_last()?;
    if *last != 0 || text.contains(&0) {
        return None;
    }
    String::from_utf16(text).ok()
}

impl Device {
    /// The descriptor bytes (header + body).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let (device_type, flags) = match self {
            Device::Boot => {
                body.resize(0x38, 0);
                (DEVICE_BOOT, 0)
            }
            Device::Partition(loc) => {
                let (p, style, d) = loc.encode_ids();
                body.extend_from_slice(&p);
                body.extend_from_slice(&LOCAL_HARD_DISK.to_le_bytes());
                body.extend_from_slice(&style.to_le_bytes());
                body.extend_from_slice(&d);
                body.extend_from_slice(&[0u8; 16]);
                (DEVICE_PARTITION, 0)
            }
            Device::VhdPartition { partition, file } => {
                let (p, style, d) = partition.encode_ids();
                body.extend_from_slice(&p);
                body.extend_from_slice(&LOCAL_VIRTUAL_DISK.to_le_bytes());
                body.extend_from_slice(&style.to_le_bytes());
                body.extend_from_slice(&d);
                body.extend(file.encode());
                (DEVICE_PARTITION, 0)
            }
            Device::File { parent, path } => {
                body.extend_from_slice(&LOCAL_FILE.to_le_bytes());
                push_file_path(&mut body, parent, path);
                (DEVICE_BLOCK_IO, 0)
            }
            Device::Ramdisk {
                image_base,
                image_size,
                image_offset,
                parent,
                path,
            } => {
                body.extend_from_slice(&LOCAL_RAMDISK.to_le_bytes());
                body.extend_from_slice(&image_base.to_le_bytes());
                body.extend_from_slice(&image_size.to_le_bytes());
                body.extend_from_slice(&image_offset.to_le_bytes());
                push_file_path(&mut body, parent, path);
                (DEVICE_BLOCK_IO, 1)
            }
            Device::VirtualDisk {
                style,
                disk_id,
                file,
            } => {
                body.extend_from_slice(&LOCAL_VIRTUAL_DISK.to_le_bytes());
                body.extend_from_slice(&style.to_le_bytes());
                body.extend_from_slice(disk_id);
                body.extend(file.encode());
                (DEVICE_BLOCK_IO, 0)
            }
            Device::Locate {
                kind,
                element,
                path,
                parent,
            } => {
                let p = utf16z(path);
                body.extend_from_slice(&kind.to_le_bytes());
                body.extend_from_slice(&element.to_le_bytes());
                let parent_offset = if parent.is_some() {
                    HDR + 12 + p.len()
                } else {
                    0
                };
                body.extend_from_slice(&(parent_offset as u32).to_le_bytes());
                body.extend(p);
                if let Some(parent) = parent {
                    body.extend(parent.encode());
                }
                (DEVICE_LOCATE, 0)
            }
            Device::Raw { bytes } => return bytes.clone(),
        };
        let mut out = Vec::with_capacity(HDR + body.len());
        put_header(&mut out, device_type, flags, HDR + body.len());
        out.extend(body);
        out
    }

    /// Decode one descriptor that starts at the beginning of `b` and may extend to its end.
    /// Returns the device and the descriptor's size.
    fn decode_at(b: Bytes<'_>, depth: usize) -> Result<(Device, usize)> {
        if depth > MAX_DEPTH {
            return Err(Error::invalid(
                Format::Bcd,
                b.abs(0),
                "device descriptor",
                format!("descriptors nested deeper than {MAX_DEPTH}"),
            ));
        }
        let device_type = b.u32le(0, "device type")?;
        let _flags = b.u32le(4, "device flags")?;
        let size = b.u32le(8, "device descriptor size")? as usize;
        b.u32le(12, "device descriptor reserved")?;
        if size < HDR {
            return Err(Error::invalid(
                Format::Bcd,
                b.abs(8),
                "device descriptor size",
                format!("size {size:#x} is smaller than the 16-byte descriptor header"),
            ));
        }
        let desc = b.slice(0, size, "device descriptor (size field)")?;
        let typed = Self::decode_typed(desc, device_type, depth)?;
        let dev = match typed {
            Some(d) if d.encode() == desc.data => d,
            _ => Device::Raw {
                bytes: desc.data.to_vec(),
            },
        };
        Ok((dev, size))
    }

    /// Typed decoding of a descriptor of exactly `desc.len()` bytes; `None` = not a form this
    /// module knows (kept raw by the caller).
    fn decode_typed(desc: Bytes<'_>, device_type: u32, depth: usize) -> Result<Option<Device>> {
        let body = desc.slice(HDR, desc.len() - HDR, "device descriptor body")?;
        match device_type {
            DEVICE_BOOT => Ok(Some(Device::Boot)),
            DEVICE_PARTITION => {
                if body.len() < 0x28 {
                    return Ok(None);
                }
                let part: [u8; 16] = body.array(0, "partition id")?;
                let local = body.u32le(0x10, "partition disk type")?;
                let style = body.u32le(0x14, "partition style")?;
                let disk: [u8; 16] = body.array(0x18, "disk id")?;
                let Some(loc) = PartitionLocation::decode_ids(part, style, disk) else {
                    return Ok(None);
                };
                match local {
                    LOCAL_HARD_DISK => Ok(Some(Device::Partition(loc))),
                    LOCAL_VIRTUAL_DISK => {
                        let rest = body.slice(0x28, body.len() - 0x28, "VHD file descriptor")?;
                        let (file, n) = Self::decode_at(rest, depth + 1)?;
                        if n != rest.len() {
                            return Ok(None);
                        }
                        Ok(Some(Device::VhdPartition {
                            partition: loc,
                            file: Box::new(file),
                        }))
                    }
                    _ => Ok(None),
                }
            }
            DEVICE_BLOCK_IO => {
                if body.len() < 4 {
                    return Ok(None);
                }
                match body.u32le(0, "block-io type")? {
                    LOCAL_FILE => {
                        let fp = body.slice(4, body.len() - 4, "file path descriptor")?;
                        Ok(
                            Self::decode_file_path(fp, depth)?.map(|(parent, path)| Device::File {
                                parent: Box::new(parent),
                                path,
                            }),
                        )
                    }
                    LOCAL_RAMDISK => {
                        if body.len() < 24 {
                            return Ok(None);
                        }
                        let image_base = body.u64le(4, "ramdisk image base")?;
                        let image_size = body.u64le(12, "ramdisk image size")?;
                        let image_offset = body.u32le(20, "ramdisk image offset")?;
                        let fp = body.slice(24, body.len() - 24, "ramdisk file path descriptor")?;
                        Ok(Self::decode_file_path(fp, depth)?.map(|(parent, path)| {
                            Device::Ramdisk {
                                image_base,
                                image_size,
                                image_offset,
                                parent: Box::new(parent),
                                path,
                            }
                        }))
                    }
                    LOCAL_VIRTUAL_DISK => {
                        if body.len() < 24 {
                            return Ok(None);
                        }
                        let style = body.u32le(4, "virtual disk partition style")?;
                        let disk_id: [u8; 16] = body.array(8, "virtual disk id")?;
                        let rest =
                            body.slice(24, body.len() - 24, "virtual disk file descriptor")?;
                        let (file, n) = Self::decode_at(rest, depth + 1)?;
                        if n != rest.len() {
                            return Ok(None);
                        }
                        Ok(Some(Device::VirtualDisk {
                            style,
                            disk_id,
                            file: Box::new(file),
                        }))
                    }
                    _ => Ok(None),
                }
            }
            DEVICE_LOCATE => {
                if body.len() < 12 {
                    return Ok(None);
                }
                let kind = body.u32le(0, "locate type")?;
                let element = body.u32le(4, "locate element")?;
                let parent_offset = body.u32le(8, "locate parent offset")? as usize;
                if parent_offset == 0 {
                    let path = read_utf16z_exact(&body.data[12..]);
                    return Ok(path.map(|path| Device::Locate {
                        kind,
                        element,
                        path,
                        parent: None,
                    }));
                }
                // The parent offset is counted from the descriptor header.
                if parent_offset < HDR + 12 || parent_offset > desc.len() {
                    return Err(Error::invalid(
                        Format::Bcd,
                        body.abs(8),
                        "locate parent offset",
                        format!(
                            "offset {parent_offset:#x} outside the locate descriptor (size {:#x})",
                            desc.len()
                        ),
                    ));
                }
                let Some(path) = read_utf16z_exact(&desc.data[HDR + 12..parent_offset]) else {
                    return Ok(None);
                };
                let rest =
                    desc.slice(parent_offset, desc.len() - parent_offset, "locate parent")?;
                let (parent, n) = Self::decode_at(rest, depth + 1)?;
                if n != rest.len() {
                    return Ok(None);
                }
                Ok(Some(Device::Locate {
                    kind,
                    element,
                    path,
                    parent: Some(Box::new(parent)),
                }))
            }
            _ => Ok(None),
        }
    }

    /// `{u32 version 1, u32 length (from the version field), u32 path type 5, parent, path}`.
    fn decode_file_path(fp: Bytes<'_>, depth: usize) -> Result<Option<(Device, String)>> {
        if fp.len() < 12 {
            return Ok(None);
        }
        let version = fp.u32le(0, "file path version")?;
        let len = fp.u32le(4, "file path length")? as usize;
        let path_type = fp.u32le(8, "file path type")?;
        if len > fp.len() {
            return Err(Error::truncated(
                Format::Bcd,
                fp.abs(4),
                "file path length",
                len as u64,
                fp.len() as u64,
            ));
        }
        if version != 1 || path_type != 5 || len != fp.len() {
            return Ok(None);
        }
        let rest = fp.slice(12, fp.len() - 12, "file parent device")?;
        let (parent, n) = Self::decode_at(rest, depth + 1)?;
        let Some(path) = read_utf16z_exact(&rest.data[n..]) else {
            return Ok(None);
        };
        Ok(Some((parent, path)))
    }
}

fn push_file_path(body: &mut Vec<u8>, parent: &Device, path: &str) {
    let parent = parent.encode();
    let p = utf16z(path);
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&((12 + parent.len() + p.len()) as u32).to_le_bytes());
    body.extend_from_slice(&5u32.to_le_bytes());
    body.extend(parent);
    body.extend(p);
}

impl DeviceElement {
    /// Decode an element value. Errors carry the byte offset within `data`.
    pub fn decode(data: &[u8]) -> Result<DeviceElement> {
        let b = Bytes::new(Format::Bcd, data);
        let options = Guid::from_bytes_le(b.array(0, "device options GUID")?);
        let rest = b.slice(0x10, data.len().saturating_sub(0x10), "device descriptor")?;
        let (device, n) = Device::decode_at(rest, 0)?;
        if n != rest.len() {
            return Err(Error::invalid(
                Format::Bcd,
                rest.abs(8),
                "device descriptor size",
                format!(
                    "descriptor size {n:#x} leaves {} unexplained trailing bytes in the element",
                    rest.len() - n
                ),
            ));
        }
        Ok(DeviceElement { options, device })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.options.to_bytes_le().to_vec();
        out.extend(self.device.encode());
        out
    }

    pub fn new(device: Device) -> DeviceElement {
        DeviceElement {
            options: Guid::NULL,
            device,
        }
    }

    /// `boot`.
    pub fn boot() -> DeviceElement {
        Self::new(Device::Boot)
    }

    /// `partition=X:`.
    pub fn partition(loc: PartitionLocation) -> DeviceElement {
        Self::new(Device::Partition(loc))
    }

    /// `file=[parent]path`.
    pub fn file(parent: Device, path: &str) -> DeviceElement {
        Self::new(Device::File {
            parent: Box::new(parent),
            path: path.into(),
        })
    }

    /// `ramdisk=[parent]path,{options}` (header flags 1, zero image base/size/offset, as
    /// bcdedit writes it).
    pub fn ramdisk(parent: Device, path: &str, options: Guid) -> DeviceElement {
        DeviceElement {
            options,
            device: Device::Ramdisk {
                image_base: 0,
                image_size: 0,
                image_offset: 0,
                parent: Box::new(parent),
                path: path.into(),
            },
        }
    }

    /// `vhd=[parent]path` in bcdedit's form (formats.md §2.6a, \[V\]): `locate_element` is the
    /// element whose path is searched for inside the VHD — 0x12000002 (`path`) for a `device`
    /// element, 0x22000002 (`systemroot`) for `osdevice`. `parent` is normally the
    /// [`Device::Partition`] of the volume holding the .vhd file.
    pub fn vhd(parent: Device, path: &str, locate_element: u32) -> DeviceElement {
        let file = Device::File {
            parent: Box::new(parent),
            path: path.into(),
        };
        Self::new(Device::Locate {
            kind: LOCATE_ELEMENT,
            element: locate_element,
            path: String::new(),
            parent: Some(Box::new(Device::VirtualDisk {
                style: 0,
                disk_id: [0; 16],
                file: Box::new(file),
            })),
        })
    }

    /// `vhd=[locate]path` — **\[reconstructed\]**, never compared with a real store (formats.md
    /// §2.6c): as [`DeviceElement::vhd`] with the file's parent a parentless string locate of
    /// `path`.
    pub fn vhd_locate(path: &str, locate_element: u32) -> DeviceElement {
        let parent = Device::Locate {
            kind: LOCATE_STRING,
            element: 0,
            path: path.into(),
            parent: None,
        };
        Self::vhd(parent, path, locate_element)
    }

    /// Offline bcdedit-style text of the value; `guid_text` prints GUIDs (raw or as aliases),
    /// `element` is the element type holding the value (used to omit the locate element of a
    /// VHD device when it is the default one for that element).
    pub fn text(&self, guid_text: &dyn Fn(&Guid) -> String, element: u32) -> String {
        let mut s = device_text(&self.device, element);
        if !self.options.is_null() {
            s.push(',');
            s.push_str(&guid_text(&self.options));
        }
        s
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Text of a device inside `[...]` (a parent).
fn parent_text(d: &Device) -> String {
    match d {
        Device::Boot => "boot".into(),
        Device::Partition(loc) => loc.text(),
        Device::Locate {
            kind: LOCATE_STRING,
            element: 0,
            parent: None,
            ..
        } => "locate".into(),
        other => format!("<{}>", device_text(other, 0)),
    }
}

/// The VHD form: locate → virtual disk → file.
fn vhd_parts(d: &Device) -> Option<(&Device, &str)> {
    if let Device::VirtualDisk {
        style: 0,
        disk_id,
        file,
    } = d
    {
        if let (true, Device::File { parent, path }) = (disk_id.iter().all(|&b| b == 0), &**file) {
            return Some((parent, path));
        }
    }
    None
}

fn device_text(d: &Device, element: u32) -> String {
    match d {
        Device::Boot => "boot".into(),
        Device::Partition(loc) => format!("partition={}", loc.text()),
        Device::File { parent, path } => format!("file=[{}]{path}", parent_text(parent)),
        Device::Ramdisk {
            image_base,
            image_size,
            image_offset,
            parent,
            path,
        } => {
            let mut s = format!("ramdisk=[{}]{path}", parent_text(parent));
            if (*image_base, *image_size, *image_offset) != (0, 0, 0) {
                s.push_str(&format!(
                    " <image base {image_base:#x}, size {image_size:#x}, offset {image_offset:#x}>"
                ));
            }
            s
        }
        Device::VhdPartition { partition, file } => match &**file {
            Device::File { parent, path } => {
                format!(
                    "vhd=[{}]{path} <partition {} in the VHD>",
                    parent_text(parent),
                    partition.text()
                )
            }
            other => format!(
                "vhd=<{}> <partition {} in the VHD>",
                device_text(other, 0),
                partition.text()
            ),
        },
        Device::VirtualDisk {
            style,
            disk_id,
            file,
        } => match (vhd_parts(d), &**file) {
            (Some((parent, path)), _) => format!("vdisk=[{}]{path}", parent_text(parent)),
            (None, f) => format!(
                "vdisk=<{}> <style {style}, disk id {}>",
                device_text(f, 0),
                hex(disk_id)
            ),
        },
        Device::Locate {
            kind,
            element: el,
            path,
            parent,
        } => match (kind, parent.as_deref()) {
            (&LOCATE_ELEMENT, Some(p)) if path.is_empty() && vhd_parts(p).is_some() => {
                let (vparent, vpath) = vhd_parts(p).unwrap_or((p, ""));
                let mut s = format!("vhd=[{}]{vpath}", parent_text(vparent));
                let default = match element & 0xF0FF_FFFF {
                    0x1000_0001 => 0x1200_0002,
                    0x2000_0001 => 0x2200_0002,
                    _ => 0,
                };
                if *el != default {
                    s.push_str(&format!(",locate=custom:{el:08x}"));
                }
                s
            }
            (&LOCATE_ELEMENT, None) if path.is_empty() => format!("locate=custom:{el:08x}"),
            (&LOCATE_STRING, None) if *el == 0 => format!("locate={path}"),
            (_, None) => format!("locate=<type {kind}, element {el:08x}, path \"{path}\">"),
            (_, Some(p)) => format!(
                "locate=<type {kind}, element {el:08x}, path \"{path}\", in {}>",
                parent_text(p)
            ),
        },
        Device::Raw { bytes } => {
            let t = bytes
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .unwrap_or(0);
            format!("unknown=<device type {t:#x}: {}>", hex(bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bcd::guid::well_known;
    use crate::error::ErrorKind;
    use alloc::vec;

    fn p_c() -> PartitionLocation {
        PartitionLocation::Mbr {
            disk_signature: 0x43DA9AB1,
            offset: 0x1F50_0000,
        }
    }

    /// formats.md §2.4: the ntloader store's `partition=C:`.
    const PARTITION_C: [u8; 88] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
        6, 0, 0, 0, 0, 0, 0, 0, 0x48, 0, 0, 0, 0, 0, 0, 0, //
        0, 0, 0x50, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
        0, 0, 0, 0, 1, 0, 0, 0, 0xb1, 0x9a, 0xda, 0x43, 0, 0, 0, 0, //
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
        0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn vhd_file_resolves_every_vhd_form() {
        let host = Device::Partition(p_c());
        let a = DeviceElement::vhd(host.clone(), "\\hyperV.vhd", 0x2200_0002);
        assert_eq!(a.device.vhd_file(), Some((&host, "\\hyperV.vhd")));
        // Round-tripped through the bytes, as the probe will see it.
        let back = DeviceElement::decode(&a.encode()).unwrap();
        assert_eq!(back.device.vhd_file(), Some((&host, "\\hyperV.vhd")));
        let b = Device::VhdPartition {
            partition: PartitionLocation::Mbr {
                disk_signature: 1,
                offset: 1 << 20,
            },
            file: Box::new(Device::File {
                parent: Box::new(host.clone()),
                path: "\\x.vhd".into(),
            }),
        };
        assert_eq!(b.vhd_file(), Some((&host, "\\x.vhd")));
        assert_eq!(host.vhd_file(), None);
        assert_eq!(Device::Boot.vhd_file(), None);
        let file = Device::File {
            parent: Box::new(host.clone()),
            path: "\\y".into(),
        };
        assert_eq!(file.vhd_file(), None, "a plain file device is not a VHD");
    }

    #[test]
    fn partition_matches_real_bytes() {
        let d = DeviceElement::partition(p_c());
        assert_eq!(d.encode(), PARTITION_C);
        assert_eq!(DeviceElement::decode(&PARTITION_C).unwrap(), d);
    }

    #[test]
    fn boot_is_88_bytes() {
        let bytes = DeviceElement::boot().encode();
        assert_eq!(bytes.len(), 88);
        assert_eq!(&bytes[0x10..0x1c], &[5, 0, 0, 0, 0, 0, 0, 0, 0x48, 0, 0, 0]);
        assert!(bytes[0x1c..].iter().all(|&b| b == 0));
        assert_eq!(DeviceElement::decode(&bytes).unwrap().device, Device::Boot);
    }

    #[test]
    fn gpt_partition_round_trips() {
        let loc = PartitionLocation::Gpt {
            disk: well_known::BOOTMGR,
            partition: well_known::MEMDIAG,
        };
        let bytes = DeviceElement::partition(loc).encode();
        assert_eq!(bytes.len(), 88);
        assert_eq!(bytes[0x34], 0, "GPT style is 0");
        assert_eq!(&bytes[0x20..0x30], &well_known::MEMDIAG.to_bytes_le());
        assert_eq!(&bytes[0x38..0x48], &well_known::BOOTMGR.to_bytes_le());
        assert_eq!(
            DeviceElement::decode(&bytes).unwrap().device,
            Device::Partition(loc)
        );
    }

    #[test]
    fn vhd_forms_round_trip() {
        for d in [
            DeviceElement::vhd(Device::Partition(p_c()), "\\a.vhd", 0x22000002),
            DeviceElement::vhd_locate("\\a.vhd", 0x12000002),
            DeviceElement::new(Device::VhdPartition {
                partition: PartitionLocation::Mbr {
                    disk_signature: 7,
                    offset: 1 << 20,
                },
                file: Box::new(Device::File {
                    parent: Box::new(Device::Partition(p_c())),
                    path: "\\b.vhd".into(),
                }),
            }),
            DeviceElement::file(Device::Boot, "\\x"),
            DeviceElement::new(Device::Locate {
                kind: 1,
                element: 0,
                path: "\\windows".into(),
                parent: None,
            }),
            DeviceElement::new(Device::Locate {
                kind: 0,
                element: 0x22000002,
                path: String::new(),
                parent: None,
            }),
        ] {
            let bytes = d.encode();
            assert_eq!(DeviceElement::decode(&bytes).unwrap(), d, "{d:?}");
        }
    }

    #[test]
    fn vhd_partition_2_6b_layout() {
        let d = DeviceElement::new(Device::VhdPartition {
            partition: PartitionLocation::Mbr {
                disk_signature: 0x11223344,
                offset: 0x100000,
            },
            file: Box::new(Device::File {
                parent: Box::new(Device::Partition(p_c())),
                path: "\\v.vhd".into(),
            }),
        });
        let b = d.encode();
        // total = 0xB0 + 2*(len(path)+1)  (formats.md §2.6b)
        assert_eq!(b.len(), 0xB0 + 2 * 7);
        assert_eq!(&b[0x30..0x34], &6u32.to_le_bytes());
        assert_eq!(&b[0x48..0x4c], &0u32.to_le_bytes());
        assert_eq!(&b[0x58..0x5c], &5u32.to_le_bytes());
    }

    #[test]
    fn unknown_and_non_canonical_descriptors_are_kept_raw() {
        // unknown device type 7
        let mut b = vec![0u8; 16];
        b.extend_from_slice(&[
            7, 0, 0, 0, 0, 0, 0, 0, 0x14, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd,
        ]);
        let d = DeviceElement::decode(&b).unwrap();
        assert_eq!(
            d.device,
            Device::Raw {
                bytes: b[16..].to_vec()
            }
        );
        assert_eq!(d.encode(), b);
        assert!(d
            .text(&|g| alloc::format!("{g}"), 0x11000001)
            .starts_with("unknown=<device type 0x7: 07000000"));
        // boot device with a non-zero byte in its body
        let mut b = DeviceElement::boot().encode();
        b[0x40] = 1;
        let d = DeviceElement::decode(&b).unwrap();
        assert!(matches!(d.device, Device::Raw { .. }));
        assert_eq!(d.encode(), b);
        // partition with style 2
        let mut b = PARTITION_C.to_vec();
        b[0x34] = 2;
        assert!(matches!(
            DeviceElement::decode(&b).unwrap().device,
            Device::Raw { .. }
        ));
    }

    #[test]
    fn structural_damage_is_an_error_with_the_offset_in_the_element() {
        // truncated before the header
        let e = DeviceElement::decode(&PARTITION_C[..20]).unwrap_err();
        assert_eq!(e.format, Format::Bcd);
        assert_eq!(e.offset, 0x14);
        // size larger than the element
        let mut b = PARTITION_C.to_vec();
        b[0x18] = 0x49;
        let e = DeviceElement::decode(&b).unwrap_err();
        assert_eq!(e.offset, 0x10);
        assert!(matches!(e.kind, ErrorKind::Truncated { .. }));
        // size smaller than a header
        b[0x18] = 0x08;
        assert_eq!(DeviceElement::decode(&b).unwrap_err().offset, 0x18);
        // trailing bytes after the descriptor
        let mut b = PARTITION_C.to_vec();
        b.push(0);
        assert_eq!(DeviceElement::decode(&b).unwrap_err().offset, 0x18);
        // locate parent offset pointing outside
        let mut b = DeviceElement::vhd(Device::Partition(p_c()), "\\a.vhd", 0x12000002).encode();
        b[0x28] = 0xff;
        b[0x29] = 0xff;
        let e = DeviceElement::decode(&b).unwrap_err();
        assert_eq!(e.offset, 0x28);
        // file path length beyond the descriptor
        let mut b = DeviceElement::file(Device::Boot, "\\x").encode();
        b[0x28] = 0xff;
        assert_eq!(DeviceElement::decode(&b).unwrap_err().offset, 0x28);
        // nothing at all
        assert!(DeviceElement::decode(&[]).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let mut d = Device::Boot;
        for _ in 0..(MAX_DEPTH + 2) {
            d = Device::File {
                parent: Box::new(d),
                path: "\\x".into(),
            };
        }
        let e = DeviceElement::new(d).encode();
        let err = DeviceElement::decode(&e).unwrap_err();
        assert!(matches!(err.kind, ErrorKind::Invalid(_)), "{err}");
    }

    #[test]
    fn decoder_never_panics_on_mutations() {
        let base =
            DeviceElement::vhd(Device::Partition(p_c()), "\\hyperV.vhd", 0x12000002).encode();
        for i in 0..base.len() {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut b = base.clone();
                b[i] = v;
                if let Ok(d) = DeviceElement::decode(&b) {
                    assert_eq!(d.encode(), b, "lossless at byte {i} = {v:#x}");
                }
            }
            let _ = DeviceElement::decode(&base[..i]);
        }
    }
}
