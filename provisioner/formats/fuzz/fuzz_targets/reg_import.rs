//! .reg text import: parse arbitrary UTF-8; when it parses, apply it to a new hive and read
//! the result back (the editor must always produce a hive the reader accepts).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ufd_formats::hive::{regtext, Editor, Hive, NewHive};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reg) = regtext::parse(text) else {
        return;
    };
    let Ok(mut ed) = Editor::new_hive(&NewHive::default()) else {
        return;
    };
    if regtext::apply(&reg, &mut ed, "").is_err() {
        return;
    }
    let bytes = ed.finish(0);
    let hive = Hive::parse(&bytes).expect("editor output does not parse");
    let mut out = String::new();
    regtext::export(&hive, "", &mut out).expect("editor output does not export");
});
