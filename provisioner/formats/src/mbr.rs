//! MBR partition tables.
