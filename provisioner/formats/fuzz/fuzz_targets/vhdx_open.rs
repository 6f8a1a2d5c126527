//! VHDX: never panic. The input patches a valid fixed VHDX built in memory (`build_fixed`), so
//! the fuzzer reaches the headers, region tables, metadata and BAT instead of stopping at the
//! file signature: the first byte picks whether the header and region CRCs are re-sealed after
//! patching (else the patches mostly exercise the CRC refusals), then every 5 bytes are one
//! patch (u32 offset into the first `data_offset` bytes, new byte). Whatever opens must map
//! and read without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ufd_formats::bytes::ReadAt;
use ufd_formats::vhdx::{build_fixed, crc32c, FixedParams, Guid, Vhdx};

/// The template's head with the patches laid over it (no copy of the multi-MiB head per run),
/// then zeros to `len` (the payload of a fresh fixed disk).
struct File {
    head: &'static [u8],
    patches: std::collections::BTreeMap<usize, u8>,
    len: u64,
}

impl File {
    fn bytes(&self, start: usize, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        let stop = (start + len).min(self.head.len());
        if start < stop {
            v[..stop - start].copy_from_slice(&self.head[start..stop]);
        }
        for (&at, &b) in self.patches.range(start..start + len) {
            v[at - start] = b;
        }
        v
    }

    /// Re-seal the CRC-32C of a 4 KiB header or 64 KiB region table at `at` (checksum at +4).
    fn seal(&mut self, at: usize, len: usize) {
        let crc = crc32c::checksum_with_zeroed_field(&self.bytes(at, len), 4);
        for (i, b) in crc.to_le_bytes().into_iter().enumerate() {
            self.patches.insert(at + 4 + i, b);
        }
    }
}

impl ReadAt for File {
    type Error = ();
    fn size(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ()> {
        let end = offset.checked_add(buf.len() as u64).ok_or(())?;
        if end > self.len {
            return Err(());
        }
        buf.copy_from_slice(&self.bytes(offset as usize, buf.len()));
        Ok(())
    }
}

/// The valid template, built once.
fn template() -> Option<&'static (Vec<u8>, u64)> {
    static T: std::sync::OnceLock<Option<(Vec<u8>, u64)>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        build_fixed(&FixedParams {
            virtual_size: 8 << 20,
            block_size: 1 << 20,
            logical_sector_size: 512,
            physical_sector_size: 4096,
            disk_id: Guid([7; 16]),
            file_write_guid: Guid([1; 16]),
            data_write_guid: Guid([2; 16]),
            creator: "ufd fuzz",
        })
        .ok()
        .map(|l| (l.head, l.file_len))
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some((template, file_len)) = template() else {
        return;
    };
    let mut f = File {
        head: template,
        patches: std::collections::BTreeMap::new(),
        len: *file_len,
    };
    let (reseal, patches) = match data.split_first() {
        Some((b, rest)) => (b & 1 == 1, rest),
        None => (false, data),
    };
    for p in patches.chunks_exact(5) {
        let off = u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize % template.len();
        f.patches.insert(off, p[4]);
    }
    if reseal {
        for at in [64 << 10, 128 << 10] {
            f.seal(at, 4096);
        }
        for at in [192 << 10, 256 << 10] {
            f.seal(at, 64 << 10);
        }
    }
    if let Ok(v) = Vhdx::open(&mut f) {
        let _ = v.is_fixed();
        let _ = v.require_fixed();
        let _ = v.notes();
        let _ = format!("{v}");
        let size = v.virtual_size();
        for off in [0, size / 2, size.saturating_sub(1), size, u64::MAX] {
            let _ = v.map(off);
            let mut buf = [0u8; 600];
            let _ = v.read(&mut f, off, &mut buf);
        }
    }
});
