//! Fixed-VHD footers (Microsoft Virtual Hard Disk Image Format Specification).
