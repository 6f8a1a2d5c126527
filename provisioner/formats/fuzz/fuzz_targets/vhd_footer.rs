//! VHD footer and dynamic header: never panic; a parsed 512-byte footer re-serialises to
//! the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ufd_formats::vhd::{read_dynamic_header, read_footer, DynamicHeader, Footer, FOOTER_SIZE};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Footer::from_tail(data, 0) {
        let _ = f.notes();
        let _ = f.require_fixed();
        let _ = f.unix_time();
        let _ = f.geometry.capacity();
        let bytes = f.to_bytes();
        if f.footer_size == FOOTER_SIZE {
            assert_eq!(&bytes[..], &data[data.len() - FOOTER_SIZE..]);
        }
        assert_eq!(
            Footer::parse(&bytes).as_ref().map(|g| g.current_size),
            Ok(f.current_size)
        );
    }
    let mut r = data;
    if let Ok(f) = read_footer(&mut r) {
        let _ = read_dynamic_header(&mut r, &f);
    }
    let _ = DynamicHeader::parse(data, 0);
    if data.len() >= 8 {
        let size = u64::from_le_bytes(data[..8].try_into().unwrap());
        let _ = ufd_formats::vhd::VhdGeometry::from_size(size);
    }
});
