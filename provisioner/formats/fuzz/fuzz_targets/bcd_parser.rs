//! BCD model: hive → Store → bcdedit-style render (plain and /v) → write back to a new hive
//! → read again. Never panics; a store that was read can always be written and re-read with
//! the same objects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ufd_formats::bcd::{render_enum, RenderOptions, Store};
use ufd_formats::hive::Hive;

fuzz_target!(|data: &[u8]| {
    let Ok(hive) = Hive::parse(data) else { return };
    let Ok(store) = Store::from_hive(&hive) else {
        return;
    };
    let _ = render_enum(&store, &RenderOptions::default());
    let _ = render_enum(&store, &RenderOptions { verbose: true });
    if let Ok(bytes) = store.to_hive(0) {
        let hive2 = Hive::parse(&bytes).expect("Store::to_hive output does not parse");
        let store2 =
            Store::from_hive(&hive2).expect("Store::to_hive output is not a readable store");
        let _ = render_enum(&store2, &RenderOptions::default());
    }
});
