//! Hive reader: parse, walk every key/value/data (bounded), check, and export as .reg text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ufd_formats::hive::{regtext, Hive, Key};

/// Depth and node budget: a malformed hive may describe huge or cyclic trees.
const MAX_DEPTH: usize = 64;

fn walk(key: &Key<'_>, depth: usize, budget: &mut u32) {
    if depth > MAX_DEPTH || *budget == 0 {
        return;
    }
    *budget -= 1;
    let _ = key.name();
    let _ = key.class_name();
    let _ = key.timestamp();
    let _ = key.security();
    if let Ok(values) = key.values() {
        for v in values.iter().take(256) {
            let _ = v.name();
            let _ = v.value_type();
            let _ = v.data();
            let _ = v.as_string();
            let _ = v.as_dword();
            let _ = v.as_qword();
            let _ = v.as_multi_sz();
        }
    }
    if let Ok(subkeys) = key.subkeys() {
        for k in subkeys.iter().take(256) {
            walk(k, depth + 1, budget);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(hive) = Hive::parse(data) else { return };
    let _ = hive.base().is_dirty();
    let _ = hive.check();
    if let Ok(root) = hive.root() {
        let mut budget = 4096;
        walk(&root, 0, &mut budget);
    }
    let _ = hive.open("Objects\\{9dea862c-5cdd-4e70-acc1-f32b344d4795}\\Elements");
    let mut out = String::new();
    let _ = regtext::export(&hive, "", &mut out);
});
