//! What the `write_image` test suites share: the write options, a used stick's bytes, reads,
//! and a real loop device opened the way `ufd provision --device` opens a stick.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use ufd_device::loopdev::{attach, AttachOptions, LoopDevice};
use ufd_device::safety::open_exclusive;
use ufd_device::write::WriteOptions;

pub const MIB: u64 = 1 << 20;

/// Default options, flushing (and reporting) every MiB.
pub fn opts() -> WriteOptions {
    WriteOptions {
        flush_every: MIB,
        ..WriteOptions::default()
    }
}

/// A target file of `size` bytes full of 0xAA (not sparse), as a used stick would be.
pub fn dirty_target(path: &Path, size: u64) -> File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let junk = vec![0xAAu8; MIB as usize];
    let mut off = 0;
    while off < size {
        let n = (size - off).min(MIB) as usize;
        f.write_all_at(&junk[..n], off).unwrap();
        off += n as u64;
    }
    f
}

pub fn read_at(f: &File, off: u64, n: u64) -> Vec<u8> {
    let mut b = vec![0u8; n as usize];
    f.read_exact_at(&mut b, off).unwrap();
    b
}

/// `backing` as a whole-disk loop device (no partition scan) and that device opened with
/// `O_EXCL`, as the CLI opens a stick; the device detaches when the first value drops.
pub fn loop_target(backing: &Path) -> (LoopDevice, File) {
    let ld = attach(
        backing,
        AttachOptions {
            partitions: false,
            ..AttachOptions::default()
        },
    )
    .unwrap();
    let dev = open_exclusive(ld.path()).unwrap();
    (ld, dev)
}
