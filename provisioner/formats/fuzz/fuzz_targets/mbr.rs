//! MBR parser: never panics; whatever parses re-serialises to the same 512 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ufd_formats::mbr::{install_boot_code, Geometry, Mbr, SECTOR_SIZE};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Mbr::parse(data) {
        let sectors = data.len() as u64 / 512;
        let _ = m.validate(Some(sectors), Some(Geometry::LBA_ASSIST_255_63));
        let _ = m.validate(None, Geometry::new(16, 63).ok());
        for f in m.validate(Some(1), None) {
            let _ = f.to_string();
        }
        // Status bytes are the only fields parse restricts; every other byte is kept,
        // so the round trip is byte-exact.
        let bytes = m.to_bytes();
        assert_eq!(&bytes[..], &data[..SECTOR_SIZE]);
        for p in &m.partitions {
            let _ = p.type_name();
            let g = Geometry::LBA_ASSIST_255_63;
            let _ = g.chs_to_lba(p.chs_start);
            let _ = g.lba_to_chs(u64::from(p.lba_start));
        }
    }
    if data.len() >= SECTOR_SIZE {
        let mut sector = [0u8; SECTOR_SIZE];
        sector.copy_from_slice(&data[..SECTOR_SIZE]);
        let before = sector;
        let _ = install_boot_code(&mut sector, &data[SECTOR_SIZE..]);
        assert_eq!(
            &sector[440..],
            &before[440..],
            "install_boot_code touched the table"
        );
    }
});
