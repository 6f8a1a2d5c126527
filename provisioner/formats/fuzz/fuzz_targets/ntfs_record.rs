//! NTFS below the file level: never panic. The boot sector parser, the update-sequence fixups
//! (apply then re-seal), the attribute walk, the mapping-pairs decoder and `$FILE_NAME` all take
//! arbitrary bytes; a record that unfixes re-seals, and unfixes again to the same contents (all but the
//! update sequence number, which re-sealing advances).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ufd_formats::ntfs::{
    attributes, decode_runs, file_name, map_offset, record_header, refix, unfix, unnamed_data,
    BootSector, FILE_MAGIC,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = BootSector::parse(data) {
        let _ = b.mft_offset();
    }
    let _ = file_name(data, 0);
    if let Ok(runs) = decode_runs(data, 0, 0) {
        for probe in [0u64, 1, 4095, 4096, u64::MAX] {
            let _ = map_offset(&runs, 4096, probe);
        }
    }
    let mut rec = data.to_vec();
    if unfix(&mut rec, FILE_MAGIC, 0).is_ok() {
        let fixed = rec.clone();
        let _ = record_header(&rec, 0);
        if let Ok(attrs) = attributes(&rec, 0) {
            for a in attrs {
                let _ = a.resident_value();
                if let Ok(nr) = a.non_resident_info() {
                    let _ = nr;
                }
            }
        }
        let _ = unnamed_data(&rec, 0);
        // Re-seal and apply again: the record's contents come back unchanged.
        if refix(&mut rec, 0).is_ok() {
            assert!(unfix(&mut rec, FILE_MAGIC, 0).is_ok());
            let usn = usize::from(u16::from_le_bytes([fixed[4], fixed[5]]));
            assert_ne!(rec[usn..usn + 2], fixed[usn..usn + 2], "the USN advances");
            rec[usn..usn + 2].copy_from_slice(&fixed[usn..usn + 2]);
            assert_eq!(rec, fixed);
        }
    }
});
