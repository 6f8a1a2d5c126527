//! One BCD device element value: decode; whatever decodes re-encodes to bytes that decode
//! to the same value, and renders as text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ufd_formats::bcd::DeviceElement;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = DeviceElement::decode(data) {
        let bytes = d.encode();
        let again =
            DeviceElement::decode(&bytes).expect("re-encoded device element does not decode");
        assert_eq!(
            again, d,
            "device element changed in an encode/decode round trip"
        );
        let _ = d.text(&|g| g.to_string(), 0x11000001);
    }
});
