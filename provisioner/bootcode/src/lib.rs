//! BOOTMGR-compatible MBR and NTFS boot-record code (the project's own, no Microsoft bytes).
