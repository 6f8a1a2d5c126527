//! The seed's deployment procedure on Linux: VHD, NTFS, WIM apply, UFD, boot code, BCD, SYSTEM-hive edits.
