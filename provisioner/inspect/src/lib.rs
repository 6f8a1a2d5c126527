//! Read a UFD image (MBR, NTFS, VHD, inner NTFS, hives) and judge the seed's policy rules.
