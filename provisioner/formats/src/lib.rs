//! # ufd-formats
//!
//! The on-disk formats of a Windows-on-UFD deployment — MBR partition tables,
//! fixed-VHD footers, VHDX, registry hives (regf), BCD stores and NTFS below the file
//! level (boot sector, MFT record fixups and attributes, mapping pairs) — as a `no_std + alloc`
//! library with no I/O. The host provisioner and the in-VM guest probe share it.
//!
//! Invariants (see ARCHITECTURE.md):
//! - no I/O: inputs are byte slices or a caller-supplied [`bytes::ReadAt`];
//! - never panics on input: every malformed byte is an [`Error`] carrying the
//!   absolute byte offset, the field, and expected vs found;
//! - `#![forbid(unsafe_code)]`.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bcd;
pub mod bytes;
pub mod error;
pub mod hive;
pub mod mbr;
pub mod ntfs;
pub mod policy;
pub mod system;
pub mod vhd;
pub mod vhdx;

pub use error::{Error, ErrorKind, Format, Result};
