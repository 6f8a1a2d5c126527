//! # ufd-bootcode
//!
//! The project's own BOOTMGR-compatible boot code — the Linux replacement for
//! `bootsect /nt60 X: /force /mbr` (provisioner step 6; shared/reference/formats.md §4, §10).
//! No Microsoft bytes: both programs are written from the documented behaviour in
//! 16-bit GNU `as` syntax (`asm/mbr.S`, `asm/ntfs_vbr.S`), assembled by `build.rs` with
//! binutils and embedded here.
//!
//! ## The two programs
//!
//! * **MBR code** ([`mbr_code`], ≤ 440 bytes, signature [`MBR_SIGNATURE`]): the Windows 7 MBR
//!   contract \[V: formats.md §4\] — relocate to 0000:0600, exactly one 0x80 entry, INT 13h
//!   AH=42h read of the entry's first sector (CHS AH=02h fallback below cylinder 1024 only
//!   when the BIOS lacks extensions), 55 AA check, jump to 0000:7C00 with DL = drive and
//!   DS:SI/DS:BP → the entry. Windows' three messages, also echoed to COM1.
//! * **NTFS partition boot record** ([`vbr_code`], signature [`VBR_SIGNATURE`]): replaces
//!   bytes 0x000–0x00A and 0x054–end of the first [`VBR_AREA_LEN`] bytes of the 8 KiB
//!   `$Boot` area, keeping mkntfs's BPB (0x00B–0x053) untouched, exactly the split that
//!   `bootsect /nt60` uses \[V: formats.md §4\]. It loads `\bootmgr` to 2000:0000 and jumps
//!   there with DL = drive and the boot sector (BPB, HiddenSectors) still at 0000:7C00,
//!   which is what BOOTMGR's 16-bit start-up expects from the NT6 boot record and from
//!   the open chain-loaders (syslinux `chain.c32 ntldr=`, GRUB `ntldr`) \[S\].
//!
//! ## Design choice for the NTFS record: a recorded extent table, verified at boot
//!
//! Two designs were possible: (a) a 16-bit NTFS reader (root-directory B+tree walk of
//! `$INDEX_ROOT`/`$INDEX_ALLOCATION`, upcase collation, `$ATTRIBUTE_LIST`, mapping-pair
//! decoding) or (b) an extent table written at provisioning time. We chose **(b) with a
//! boot-time guard**:
//!
//! * The provisioner ([`locate_bootmgr`] + [`install_vbr`]) records bootmgr's MFT record
//!   number, the sector of that record, a byte copy of its unnamed non-resident `$DATA`
//!   attribute (header + mapping pairs, i.e. size, flags and every extent), and the
//!   extents already converted to partition-relative sector runs.
//! * At boot the record re-reads that MFT record, applies the update-sequence fixups,
//!   checks `FILE`, the in-use flag and the record number, finds the unnamed `$DATA`
//!   attribute and compares it byte-for-byte with the recorded copy. Any change — file
//!   defragmented/moved (`ntfsmove`, Windows defrag), replaced by a new file, resized,
//!   compressed, deleted — is detected and the record **refuses** to boot with
//!   "BOOTMGR has moved: re-run ufd provision" (or "BOOTMGR is missing"/"is compressed")
//!   instead of jumping into stale clusters. Re-running the provisioner's boot-code step
//!   (`install_vbr`) repairs it.
//!
//! Why: the UFD is written once by `ufd provision` and bootmgr is copied by us, so the
//! table is exact by construction; the guard makes a later change a clear, recoverable
//! message rather than a hang. The whole program is ~700 bytes of simple, reviewable
//! 16-bit code (no tree walk, no collation, no attribute lists), every path of which the
//! QEMU integration tests execute. The cost, stated plainly: a Windows servicing update
//! that rewrites `\bootmgr` on the UFD makes the UFD refuse to boot until
//! `ufd provision` (boot-code step) is re-run — design (a) would survive that. Design (a)
//! remains possible later behind the same [`install_vbr`] API.
//!
//! Verified facts this relies on (checked with mkntfs from ntfs-3g 2022 here):
//! mkntfs writes its own "not bootable" code into sector 0 only and leaves `$Boot`
//! sectors 1–15 zero; the backup boot sector is the partition's last sector
//! (BPB total sectors at 0x28 = partition sectors − 1, see [`backup_boot_sector_offset`]).
//!
//! `#![no_std]` (+ `alloc`) and `#![forbid(unsafe_code)]`: the guest probe can link it to
//! recognise boot code on a disk it reads.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod ntfs;
pub mod vbr;

pub use ntfs::locate_bootmgr;
pub use vbr::{
    backup_boot_sector_offset, install_vbr, recognise_vbr, vbr_code, BootmgrExtents, VbrKind,
    MAX_BOOTMGR_SIZE, TABLE_OFFSET, VBR_AREA_LEN, VBR_SIGNATURE,
};

use ufd_formats::mbr::{install_boot_code, BOOT_CODE_LEN, SECTOR_SIZE};
use ufd_formats::Result;

/// The assembled MBR program (`asm/mbr.S`).
static MBR_BIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mbr.bin"));

/// Signature string embedded in our MBR code; the digit after it is the version.
pub const MBR_SIGNATURE: &[u8] = b"UFDMBR1";

/// Version of our MBR code (the digit at the end of [`MBR_SIGNATURE`]).
pub const MBR_VERSION: u8 = 1;

/// The MBR boot code: at most 440 bytes, to be placed at sector 0 offset 0.
pub fn mbr_code() -> &'static [u8] {
    MBR_BIN
}

/// Write our MBR code into `sector0[0..440]` (rest of the boot-code area zeroed). The
/// disk signature (0x1B8), reserved bytes, partition table and 55 AA are not touched —
/// `bootsect /mbr` semantics. The boot flag (0x80) is the partitioner's job, as with
/// diskpart `active`.
pub fn install_mbr(sector0: &mut [u8; SECTOR_SIZE]) -> Result<()> {
    install_boot_code(sector0, mbr_code())
}

/// What kind of MBR boot code a sector's first 440 bytes contain (for `ufd inspect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MbrCodeKind {
    /// Ours; `version` is the digit after `UFDMBR`.
    Ours { version: u8 },
    /// All 440 bytes are zero (e.g. a fresh `sfdisk`/`parted` table): not bootable.
    Empty,
    /// Carries the Windows MBR messages ("Invalid partition table", "Error loading operating
    /// system", "Missing operating system") but not our signature: Windows 7-style code
    /// (bootsect, ms-sys `-7`, Rufus).
    Windows7Like,
    /// syslinux/ISOLINUX `mbr.bin` family ("Missing operating system." + "Operating system load error.").
    Syslinux,
    /// GRUB 2 `boot.img` / GRUB legacy stage1 ("GRUB" plus "Geom"/"Hard Disk"/"Read").
    Grub,
    /// Anything else.
    Unknown,
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Classify MBR boot code. `code` may be a whole sector or just the boot-code area; only
/// the first 440 bytes are looked at. Never panics; a short slice is classified as given.
pub fn recognise_mbr(code: &[u8]) -> MbrCodeKind {
    let code = &code[..code.len().min(BOOT_CODE_LEN)];
    if let Some(i) = find(code, b"UFDMBR") {
        if let Some(d) = code.get(i + 6).filter(|d| d.is_ascii_digit()) {
            return MbrCodeKind::Ours { version: d - b'0' };
        }
    }
    if code.iter().all(|&b| b == 0) {
        return MbrCodeKind::Empty;
    }
    if contains(code, b"Operating system load error") {
        return MbrCodeKind::Syslinux;
    }
    if contains(code, b"Invalid partition table")
        || contains(code, b"Error loading operating system")
    {
        return MbrCodeKind::Windows7Like;
    }
    if contains(code, b"GRUB")
        && (contains(code, b"Geom") || contains(code, b"Hard Disk") || contains(code, b"Read"))
    {
        return MbrCodeKind::Grub;
    }
    MbrCodeKind::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn mbr_code_fits_and_is_signed() {
        let c = mbr_code();
        assert!(c.len() <= BOOT_CODE_LEN, "MBR code is {} bytes", c.len());
        assert!(contains(c, MBR_SIGNATURE));
        for m in [
            &b"Invalid partition table\0"[..],
            b"Error loading operating system\0",
            b"Missing operating system\0",
        ] {
            assert!(contains(c, m), "{}", core::str::from_utf8(m).unwrap());
        }
        // First instruction is `cli`, the relocation far jump targets 0000:06xx.
        assert_eq!(c[0], 0xFA);
        // (`rep movsw` = F3 A5 at 0x16, then `ljmp 0x0000:0x061D`).
        assert_eq!(&c[0x16..0x1D], &[0xF3, 0xA5, 0xEA, 0x1D, 0x06, 0x00, 0x00]);
    }

    #[test]
    fn install_mbr_touches_only_boot_code() {
        let mut s = [0xA5u8; SECTOR_SIZE];
        s[0x1FE] = 0x55;
        s[0x1FF] = 0xAA;
        let before = s;
        install_mbr(&mut s).unwrap();
        assert_eq!(&s[0x1B8..], &before[0x1B8..]);
        assert_eq!(&s[..mbr_code().len()], mbr_code());
        assert!(s[mbr_code().len()..0x1B8].iter().all(|&b| b == 0));
    }

    #[rstest]
    #[case::ours(mbr_code().to_vec(), MbrCodeKind::Ours { version: MBR_VERSION })]
    #[case::empty(alloc::vec![0u8; 512], MbrCodeKind::Empty)]
    #[case::windows(b"\x33\xc0Invalid partition table\0Error loading operating system\0Missing operating system".to_vec(), MbrCodeKind::Windows7Like)]
    #[case::syslinux(b"\xfa\x31\xc0Missing operating system.\r\nOperating system load error.\r\n".to_vec(), MbrCodeKind::Syslinux)]
    #[case::grub(b"\xeb\x63\x90GRUB \0Geom\0Hard Disk\0Read\0 Error".to_vec(), MbrCodeKind::Grub)]
    #[case::unknown(b"\xeb\xfe random".to_vec(), MbrCodeKind::Unknown)]
    #[case::short(alloc::vec![], MbrCodeKind::Empty)]
    fn recognise(#[case] code: alloc::vec::Vec<u8>, #[case] kind: MbrCodeKind) {
        assert_eq!(recognise_mbr(&code), kind);
    }

    #[test]
    fn signature_beyond_440_is_ignored() {
        let mut s = alloc::vec![0u8; 512];
        s[0x1C0..0x1C7].copy_from_slice(MBR_SIGNATURE);
        assert_eq!(recognise_mbr(&s), MbrCodeKind::Empty);
    }
}
