//! # ufd-bootpath
//!
//! The UFD's boot path as the firmware, Windows Boot Manager, winload and the kernel walk it —
//! MBR → partitions → BCD → default loader → its VHD device resolved against this disk →
//! NTFS → VHD (through its data runs) → fixed footer → inner MBR → inner NTFS → winload →
//! SYSTEM hive → `Select` → `PollBootPartitionTimeout`, `PagingFiles`, `ExistingPageFiles`,
//! `BootDriverFlags` — over any [`ufd_formats::bytes::ReadAt`] disk, each hop a typed
//! [`walk::Hop`] with evidence, plus the policy verdicts a guest can judge (same rule IDs as
//! `ufd inspect`, from `ufd_formats::policy`, and [`guest`] for CPU and USB topology).
//!
//! Firmware-agnostic: the UEFI probe hands it a BlockIo reader, the BIOS stand-in an INT 13h
//! reader, the host tests a file. `no_std` + `alloc`, no `unsafe`, never panics on bad bytes.
//!
//! ```no_run
//! # fn demo(bytes: &[u8]) {
//! use ufd_bootpath::{dev::Disk, walk::{walk, Options}};
//! let mut disk = Disk::new(bytes);
//! let path = walk(&mut disk, &Options::default());
//! for hop in &path.hops { let _ = ufd_bootpath::json::hop_line(hop); }
//! # }
//! ```
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acpi;
pub mod dev;
pub mod fat;
pub mod guest;
pub mod json;
pub mod ntfsvol;
pub mod report;
pub mod walk;

pub use walk::{walk, BootPath, Hop, Options, Status};
