//! Key and value names: the two on-disk encodings, Windows-style case folding,
//! the `lf` name hint and the `lh` hash.
//!
//! Names are stored either "compressed" (flag `KEY_COMP_NAME` 0x20 on an nk,
//! `VALUE_COMP_NAME` 0x1 on a vk), where every byte is one character with code
//! 0..=0xFF (Latin-1, *not* only ASCII: Windows compresses a name when every UTF-16
//! code unit is below 0x100 — msuhanov calls it "ASCII string", `CmpCompressedName`
//! tests `< 0x100`), or as UTF-16LE. Both forms are handled here as a sequence of
//! UTF-16 code units, which is how the kernel compares them.
//!
//! Case folding: the kernel upcases each UTF-16 code unit with `RtlUpcaseUnicodeChar`
//! (a one-to-one table; surrogate code units are left alone). We reproduce it with
//! Unicode *simple* uppercase mapping: `char::to_uppercase` when it yields exactly one
//! BMP character, else the unit unchanged. [I: matches Windows' table for every
//! character in the fixtures; the Windows table is not public and may differ for a few
//! exotic characters.]

use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Ordering;

/// Windows-style upcase of one UTF-16 code unit (see module doc).
#[inline]
pub fn upcase_unit(u: u16) -> u16 {
    if u < 0x80 {
        return (u as u8).to_ascii_uppercase() as u16;
    }
    if (0xD800..0xE000).contains(&u) {
        return u;
    }
    let Some(c) = char::from_u32(u as u32) else {
        return u;
    };
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(x), None) if (x as u32) <= 0xFFFF => x as u16,
        _ => u,
    }
}

/// A stored name: raw bytes plus the encoding flag. Zero-copy view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawName<'a> {
    pub bytes: &'a [u8],
    /// `true` = one byte per character (Latin-1), `false` = UTF-16LE.
    pub compressed: bool,
}

impl<'a> RawName<'a> {
    /// The UTF-16 code units of the name (an odd trailing byte of a UTF-16 name is ignored).
    pub fn units(&self) -> impl Iterator<Item = u16> + 'a {
        let compressed = self.compressed;
        let b = self.bytes;
        let n = if compressed { b.len() } else { b.len() / 2 };
        (0..n).map(move |i| {
            if compressed {
                b.get(i).copied().unwrap_or(0) as u16
            } else {
                match b.get(2 * i..2 * i + 2) {
                    Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]),
                    _ => 0,
                }
            }
        })
    }

    /// Length in UTF-16 code units.
    pub fn len_units(&self) -> usize {
        if self.compressed {
            self.bytes.len()
        } else {
            self.bytes.len() / 2
        }
    }

    /// Decode to a `String`. Unpaired surrogates in a UTF-16 name become U+FFFD.
    pub fn to_string_lossy(&self) -> String {
        if self.compressed {
            self.bytes.iter().map(|&b| b as char).collect()
        } else {
            char::decode_utf16(self.units())
                .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()
        }
    }

    /// Case-insensitive equality with `s`, without allocating.
    pub fn eq_ignore_case(&self, s: &str) -> bool {
        cmp_units_ignore_case(self.units(), s.encode_utf16()) == Ordering::Equal
    }
}

/// Compare two UTF-16 unit sequences the way Windows orders subkey lists:
/// upcased code unit by code unit, a proper prefix sorts first.
pub fn cmp_units_ignore_case(
    a: impl Iterator<Item = u16>,
    b: impl Iterator<Item = u16>,
) -> Ordering {
    a.map(upcase_unit).cmp(b.map(upcase_unit))
}

/// `lh` hash: `h = h * 37 + upcase(unit)` over the UTF-16 code units (u32 wrapping).
pub fn lh_hash(units: impl Iterator<Item = u16>) -> u32 {
    units.fold(0u32, |h, u| {
        h.wrapping_mul(37).wrapping_add(upcase_unit(u) as u32)
    })
}

/// `lf` name hint: the first 4 characters as bytes (original case), zero-padded; if one
/// of them does not fit in a byte the hint is all zeros (msuhanov: "the first byte of
/// the Name hint field is null").
pub fn lf_hint(units: impl Iterator<Item = u16>) -> [u8; 4] {
    let mut h = [0u8; 4];
    for (i, u) in units.take(4).enumerate() {
        if u > 0xFF {
            return [0; 4];
        }
        h[i] = u as u8;
    }
    h
}

/// Encode a name for storage: compressed (Latin-1) when every UTF-16 unit is < 0x100,
/// else UTF-16LE. Returns (bytes, compressed).
pub fn encode_name(s: &str) -> (Vec<u8>, bool) {
    if s.encode_utf16().all(|u| u < 0x100) {
        (s.encode_utf16().map(|u| u as u8).collect(), true)
    } else {
        (
            s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
            false,
        )
    }
}

/// Length of `s` in UTF-16 bytes (what the nk "largest name length" fields count).
pub fn utf16_bytes(s: &str) -> u32 {
    (s.encode_utf16().count() as u32).saturating_mul(2)
}

/// Decode UTF-16LE bytes (odd trailing byte ignored) up to the first NUL.
pub fn utf16_until_nul(b: &[u8]) -> String {
    let units = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0);
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case('a' as u16, 'A' as u16)]
    #[case(0xE9, 0xC9)] // é -> É
    #[case(0xFF, 0x178)] // ÿ -> Ÿ
    #[case(0xDF, 0xDF)] // ß has no single-char uppercase
    #[case(0xD83C, 0xD83C)] // surrogates unchanged
    #[case('1' as u16, '1' as u16)]
    fn upcase(#[case] u: u16, #[case] up: u16) {
        assert_eq!(upcase_unit(u), up);
    }

    #[test]
    fn lh_hash_matches_hand_computed() {
        // "AB" = 0x41*37 + 0x42
        assert_eq!(lh_hash("ab".encode_utf16()), 0x41 * 37 + 0x42);
    }

    #[test]
    fn lf_hint_rules() {
        assert_eq!(lf_hint("Description".encode_utf16()), *b"Desc");
        assert_eq!(lf_hint("ab".encode_utf16()), *b"ab\0\0");
        assert_eq!(lf_hint("a\u{100}bc".encode_utf16()), [0; 4]);
    }

    #[test]
    fn encode_latin1_vs_utf16() {
        assert_eq!(encode_name("Säb"), (alloc::vec![b'S', 0xE4, b'b'], true));
        let (b, c) = encode_name("\u{1F30E}");
        assert!(!c);
        assert_eq!(b, alloc::vec![0x3C, 0xD8, 0x0E, 0xDF]);
        let n = RawName {
            bytes: &b,
            compressed: false,
        };
        assert_eq!(n.to_string_lossy(), "\u{1F30E}");
    }

    #[test]
    fn compare_ignore_case() {
        let n = RawName {
            bytes: b"ControlSet001",
            compressed: true,
        };
        assert!(n.eq_ignore_case("CONTROLset001"));
        assert!(!n.eq_ignore_case("ControlSet00"));
        assert_eq!(
            cmp_units_ignore_case("abc".encode_utf16(), "ABD".encode_utf16()),
            Ordering::Less
        );
        assert_eq!(
            cmp_units_ignore_case("ab".encode_utf16(), "ABC".encode_utf16()),
            Ordering::Less
        );
    }
}
