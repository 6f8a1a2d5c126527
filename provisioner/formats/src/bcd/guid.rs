//! GUIDs as BCD uses them, and the well-known BCD objects.
//!
//! A BCD store names every object by a GUID: the object's key under `Objects` is the GUID in
//! registry form (`{9dea862c-5cdd-4e70-acc1-f32b344d4795}`, lower case, with braces) and object
//! and object-list elements store the same text. Inside binary device elements GUIDs are stored
//! in the Windows mixed-endian layout (`Data1` u32 LE, `Data2`/`Data3` u16 LE, `Data4` as-is),
//! which is what [`Guid::to_bytes_le`] / [`Guid::from_bytes_le`] produce and read
//! (formats.md §2.7, verified against the ntloader store).

use alloc::string::String;
use core::fmt;

/// A GUID (`{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Guid {
    pub data1: u32,
    pub data2: u16,
    pub data3: u16,
    pub data4: [u8; 8],
}

impl Guid {
    /// The all-zero GUID (`GUID_NULL`): "no options object" in device elements.
    pub const NULL: Guid = Guid {
        data1: 0,
        data2: 0,
        data3: 0,
        data4: [0; 8],
    };

    pub const fn from_fields(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> Guid {
        Guid {
            data1,
            data2,
            data3,
            data4,
        }
    }

    /// Read the Windows in-memory layout (`Data1..3` little-endian).
    pub fn from_bytes_le(b: [u8; 16]) -> Guid {
        let mut data4 = [0u8; 8];
        data4.copy_from_slice(&b[8..16]);
        Guid {
            data1: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            data2: u16::from_le_bytes([b[4], b[5]]),
            data3: u16::from_le_bytes([b[6], b[7]]),
            data4,
        }
    }

    /// The Windows in-memory layout (`Data1..3` little-endian), as stored in device elements.
    pub fn to_bytes_le(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.data1.to_le_bytes());
        b[4..6].copy_from_slice(&self.data2.to_le_bytes());
        b[6..8].copy_from_slice(&self.data3.to_le_bytes());
        b[8..16].copy_from_slice(&self.data4);
        b
    }

    pub fn is_null(&self) -> bool {
        *self == Guid::NULL
    }

    /// Parse `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` (braces optional, any case).
    /// Returns `None` for anything else; aliases such as `{bootmgr}` are resolved by
    /// [`resolve_alias`], not here.
    pub fn parse(s: &str) -> Option<Guid> {
        let s = s.trim();
        let inner = match (s.strip_prefix('{'), s.strip_suffix('}')) {
            (Some(_), Some(_)) if s.len() >= 2 => &s[1..s.len() - 1],
            (None, None) => s,
            _ => return None,
        };
        let b = inner.as_bytes();
        if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
            return None;
        }
        let hex = |range: core::ops::Range<usize>| -> Option<u64> {
            let part = inner.get(range)?;
            if !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            u64::from_str_radix(part, 16).ok()
        };
        let data1 = hex(0..8)? as u32;
        let data2 = hex(9..13)? as u16;
        let data3 = hex(14..18)? as u16;
        let d4a = hex(19..23)? as u16;
        let d4b = hex(24..36)?;
        let mut data4 = [0u8; 8];
        data4[0..2].copy_from_slice(&d4a.to_be_bytes());
        data4[2..8].copy_from_slice(&d4b.to_be_bytes()[2..8]);
        Some(Guid {
            data1,
            data2,
            data3,
            data4,
        })
    }

    /// The registry form: lower case with braces (what bcdedit writes as key names and values).
    pub fn to_registry_string(&self) -> String {
        alloc::format!("{self}")
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.data4;
        write!(
            f,
            "{{{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}}}",
            self.data1, self.data2, self.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Guid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

const fn g(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> Guid {
    Guid::from_fields(data1, data2, data3, data4)
}

/// Well-known object GUIDs (formats.md §1.6; phnt `ntbcd.h`; seen in the fixture stores).
pub mod well_known {
    use super::{g, Guid};
    pub const BOOTMGR: Guid = g(
        0x9dea862c,
        0x5cdd,
        0x4e70,
        [0xac, 0xc1, 0xf3, 0x2b, 0x34, 0x4d, 0x47, 0x95],
    );
    pub const FWBOOTMGR: Guid = g(
        0xa5a30fa2,
        0x3d06,
        0x4e9f,
        [0xb5, 0xf4, 0xa0, 0x1d, 0xf9, 0xd1, 0xfc, 0xba],
    );
    pub const MEMDIAG: Guid = g(
        0xb2721d73,
        0x1db4,
        0x4c62,
        [0xbf, 0x78, 0xc5, 0x48, 0xa8, 0x80, 0x14, 0x2d],
    );
    pub const NTLDR: Guid = g(
        0x466f5a88,
        0x0af2,
        0x4f76,
        [0x90, 0x38, 0x09, 0x5b, 0x17, 0x0d, 0xc2, 0x1c],
    );
    pub const GLOBALSETTINGS: Guid = g(
        0x7ea2e1ac,
        0x2e61,
        0x4728,
        [0xaa, 0xa3, 0x89, 0x6d, 0x9d, 0x0a, 0x9f, 0x0e],
    );
    pub const DBGSETTINGS: Guid = g(
        0x4636856e,
        0x540f,
        0x4170,
        [0xa1, 0x30, 0xa8, 0x47, 0x76, 0xf4, 0xc6, 0x54],
    );
    pub const EMSSETTINGS: Guid = g(
        0x0ce4991b,
        0xe6b3,
        0x4b16,
        [0xb2, 0x3c, 0x5e, 0x0d, 0x92, 0x50, 0xe5, 0xd9],
    );
    pub const BADMEMORY: Guid = g(
        0x5189b25c,
        0x5558,
        0x4bf2,
        [0xbc, 0xa4, 0x28, 0x9b, 0x11, 0xbd, 0x29, 0xe2],
    );
    pub const BOOTLOADERSETTINGS: Guid = g(
        0x6efb52bf,
        0x1766,
        0x41db,
        [0xa6, 0xb3, 0x0e, 0xe5, 0xef, 0xf7, 0x2b, 0xd7],
    );
    pub const HYPERVISORSETTINGS: Guid = g(
        0x7ff607e0,
        0x4395,
        0x11db,
        [0xb0, 0xde, 0x08, 0x00, 0x20, 0x0c, 0x9a, 0x66],
    );
    pub const RESUMELOADERSETTINGS: Guid = g(
        0x1afa9c49,
        0x16ab,
        0x4a5c,
        [0x90, 0x1b, 0x21, 0x28, 0x02, 0xda, 0x94, 0x60],
    );
    pub const KERNELDBGSETTINGS: Guid = g(
        0x313e8eed,
        0x7098,
        0x4586,
        [0xa9, 0xbf, 0x30, 0x9c, 0x61, 0xf8, 0xd4, 0x49],
    );
    pub const RAMDISKOPTIONS: Guid = g(
        0xae5534e0,
        0xa924,
        0x466c,
        [0xb8, 0x36, 0x75, 0x85, 0x39, 0xa3, 0xee, 0x3a],
    );
    /// `{current}`: an alias bcdedit resolves to the running OS's loader; never a stored key.
    pub const CURRENT: Guid = g(
        0xfa926493,
        0x6f1c,
        0x4193,
        [0xa4, 0x14, 0x58, 0xf0, 0xb2, 0x45, 0x6d, 0x1e],
    );
    /// `{default}`: an alias bcdedit resolves to `{bootmgr}`'s `default` element; never a stored key.
    pub const DEFAULT: Guid = g(
        0x1cae1eb7,
        0xa0df,
        0x4d4d,
        [0x98, 0x51, 0x48, 0x60, 0xe3, 0x4e, 0xf5, 0x35],
    );
}

/// `(alias, GUID)` of every object bcdedit names by an alias. `{current}` and `{default}`
/// are listed with their placeholder GUIDs; they are never stored as object keys.
pub const ALIASES: &[(&str, Guid)] = &[
    ("{bootmgr}", well_known::BOOTMGR),
    ("{fwbootmgr}", well_known::FWBOOTMGR),
    ("{memdiag}", well_known::MEMDIAG),
    ("{ntldr}", well_known::NTLDR),
    ("{legacy}", well_known::NTLDR),
    ("{globalsettings}", well_known::GLOBALSETTINGS),
    ("{dbgsettings}", well_known::DBGSETTINGS),
    ("{eventsettings}", well_known::DBGSETTINGS),
    ("{emssettings}", well_known::EMSSETTINGS),
    ("{badmemory}", well_known::BADMEMORY),
    ("{bootloadersettings}", well_known::BOOTLOADERSETTINGS),
    ("{hypervisorsettings}", well_known::HYPERVISORSETTINGS),
    ("{resumeloadersettings}", well_known::RESUMELOADERSETTINGS),
    ("{kerneldbgsettings}", well_known::KERNELDBGSETTINGS),
    ("{ramdiskoptions}", well_known::RAMDISKOPTIONS),
    ("{current}", well_known::CURRENT),
    ("{default}", well_known::DEFAULT),
];

/// The alias bcdedit prints for a stored object GUID (first alias wins: `{ntldr}`, `{dbgsettings}`).
/// `{current}`/`{default}` are not returned: they depend on the store's contents (see
/// [`crate::bcd::render`]).
pub fn alias_of(guid: &Guid) -> Option<&'static str> {
    ALIASES
        .iter()
        .filter(|(name, _)| *name != "{current}" && *name != "{default}")
        .find(|(_, gd)| gd == guid)
        .map(|(name, _)| *name)
}

/// Resolve a GUID or an alias (`{bootmgr}`, `bootmgr`, case-insensitive) to a GUID.
/// `{current}`/`{default}` resolve to their placeholder GUIDs.
pub fn resolve_alias(s: &str) -> Option<Guid> {
    if let Some(gd) = Guid::parse(s) {
        return Some(gd);
    }
    let t = s.trim();
    let t = t.strip_prefix('{').unwrap_or(t);
    let t = t.strip_suffix('}').unwrap_or(t);
    ALIASES
        .iter()
        .find(|(name, _)| {
            name.len() == t.len() + 2 && name[1..name.len() - 1].eq_ignore_ascii_case(t)
        })
        .map(|(_, gd)| *gd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use rstest::rstest;

    #[rstest]
    #[case("{9dea862c-5cdd-4e70-acc1-f32b344d4795}", well_known::BOOTMGR)]
    #[case("9DEA862C-5CDD-4E70-ACC1-F32B344D4795", well_known::BOOTMGR)]
    #[case(
        "{1afa9c49-16ab-4a5c-901b-212802da9460}",
        well_known::RESUMELOADERSETTINGS
    )]
    fn parse_and_display(#[case] text: &str, #[case] expected: Guid) {
        let gd = Guid::parse(text).unwrap();
        assert_eq!(gd, expected);
        let bare = text
            .trim_matches(|c| c == '{' || c == '}')
            .to_ascii_lowercase();
        assert_eq!(gd.to_string(), alloc::format!("{{{bare}}}"));
        assert_eq!(Guid::parse(&gd.to_registry_string()), Some(gd));
    }

    #[rstest]
    #[case("")]
    #[case("{}")]
    #[case("{9dea862c-5cdd-4e70-acc1-f32b344d479}")]
    #[case("{9dea862c-5cdd-4e70-acc1-f32b344d47955}")]
    #[case("{9dea862c+5cdd-4e70-acc1-f32b344d4795}")]
    #[case("{9dea862c-5cdd-4e70-acc1-f32b344d479g}")]
    #[case("{9dea862c-5cdd-4e70-acc1-f32b344d4795")]
    #[case("{+dea862c-5cdd-4e70-acc1-f32b344d4795}")]
    fn parse_rejects(#[case] text: &str) {
        assert_eq!(Guid::parse(text), None);
    }

    #[test]
    fn bytes_le_layout_matches_windows() {
        // {ramdiskoptions} as stored at the start of the ntloader ramdisk device element.
        let stored = [
            0xe0, 0x34, 0x55, 0xae, 0x24, 0xa9, 0x6c, 0x46, 0xb8, 0x36, 0x75, 0x85, 0x39, 0xa3,
            0xee, 0x3a,
        ];
        assert_eq!(Guid::from_bytes_le(stored), well_known::RAMDISKOPTIONS);
        assert_eq!(well_known::RAMDISKOPTIONS.to_bytes_le(), stored);
    }

    #[rstest]
    #[case("{bootmgr}", well_known::BOOTMGR)]
    #[case("BOOTMGR", well_known::BOOTMGR)]
    #[case("{ramdiskoptions}", well_known::RAMDISKOPTIONS)]
    #[case("{current}", well_known::CURRENT)]
    #[case("{legacy}", well_known::NTLDR)]
    fn aliases_resolve(#[case] alias: &str, #[case] expected: Guid) {
        assert_eq!(resolve_alias(alias), Some(expected));
    }

    #[test]
    fn alias_of_prefers_primary_names() {
        assert_eq!(alias_of(&well_known::NTLDR), Some("{ntldr}"));
        assert_eq!(alias_of(&well_known::DBGSETTINGS), Some("{dbgsettings}"));
        assert_eq!(alias_of(&well_known::CURRENT), None);
        assert_eq!(resolve_alias("{nosuchalias}"), None);
    }
}
