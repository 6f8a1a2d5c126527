//! `ufd hive ...`: export, read and in-place edits of registry hive files.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use ufd_formats::hive::{regtext, value_type as vt, Editor, Hive};

use crate::fsutil::{filetime_now, read, write_atomic};
use crate::CliError;

#[derive(Subcommand)]
pub enum HiveCmd {
    /// Print .reg text for KEY and its subtree, identical to `hivexregedit --export HIVE KEY`.
    Export {
        hive: PathBuf,
        /// Key path, backslash-separated ("\\" = the root).
        #[arg(default_value = "\\")]
        key: String,
    },
    /// Print a key's values (and subkey names), or one value.
    Get {
        hive: PathBuf,
        key: String,
        /// Value name ("" or "@" = the default value).
        value: Option<String>,
    },
    /// Set a value in place (creates the key if missing).
    Set {
        hive: PathBuf,
        key: String,
        name: String,
        #[arg(value_enum)]
        r#type: ValueKind,
        /// The data: text for sz/expand_sz, one argument per string for multi_sz (none = empty list),
        /// a number (decimal or 0x..) for dword/qword, hex bytes for binary/none.
        data: Vec<String>,
    },
    /// Delete a value, or (without VALUE) a key and its whole subtree, in place.
    Delete {
        hive: PathBuf,
        key: String,
        value: Option<String>,
    },
    /// Apply a .reg file in place (keys are taken relative to the hive root; `--prefix` strips e.g. HKEY_LOCAL_MACHINE\SYSTEM).
    Import {
        hive: PathBuf,
        reg: PathBuf,
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ValueKind {
    Sz,
    ExpandSz,
    MultiSz,
    Dword,
    Qword,
    Binary,
    None,
}

pub fn run(cmd: HiveCmd) -> Result<u8, CliError> {
    match cmd {
        HiveCmd::Export { hive, key } => {
            let data = read(&hive)?;
            let h = Hive::parse(&data).map_err(|e| CliError::format(&hive, e))?;
            // Bytes, not a String: hivexregedit (Perl) prints names whose characters are all
            // <= U+00FF as Latin-1 bytes, and we match it byte for byte.
            let mut out = Vec::with_capacity(data.len() * 2);
            regtext::export_bytes(&h, &key, &mut out).map_err(|e| CliError::format(&hive, e))?;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&out)
                .and_then(|_| stdout.flush())
                .map_err(|e| CliError::other(format!("stdout: {e}")))?;
            Ok(0)
        }
        HiveCmd::Get { hive, key, value } => {
            let data = read(&hive)?;
            let h = Hive::parse(&data).map_err(|e| CliError::format(&hive, e))?;
            get(&hive, &h, &key, value.as_deref())
        }
        HiveCmd::Set {
            hive,
            key,
            name,
            r#type,
            data,
        } => {
            let (ty, bytes) = encode(r#type, &data)?;
            edit(&hive, |ed| {
                ed.create_key(&key)?;
                ed.set_value(&key, value_name(&name), ty, &bytes)
            })
        }
        HiveCmd::Delete { hive, key, value } => {
            let path = hive.clone();
            edit(&hive, |ed| match &value {
                Some(v) => {
                    if ed.delete_value(&key, value_name(v))? {
                        Ok(())
                    } else {
                        Err(ufd_formats::Error::not_found(
                            ufd_formats::Format::Hive,
                            0,
                            "value",
                            format!("value {v:?} in key {key:?} of {}", path.display()),
                        ))
                    }
                }
                None => ed.delete_key(&key),
            })
        }
        HiveCmd::Import { hive, reg, prefix } => {
            let text = read(&reg)?;
            let text = String::from_utf8(text)
                .map_err(|e| CliError::other(format!("{}: not UTF-8 text: {e}", reg.display())))?;
            let parsed = regtext::parse(&text).map_err(|e| CliError::format(&reg, e))?;
            edit(&hive, |ed| regtext::apply(&parsed, ed, &prefix))
        }
    }
}

fn value_name(name: &str) -> &str {
    if name == "@" {
        ""
    } else {
        name
    }
}

/// Open, edit in place, and replace the file atomically.
fn edit(
    path: &Path,
    f: impl FnOnce(&mut Editor) -> ufd_formats::Result<()>,
) -> Result<u8, CliError> {
    let data = read(path)?;
    let mut ed = Editor::open(data).map_err(|e| CliError::format(path, e))?;
    f(&mut ed).map_err(|e| CliError::format(path, e))?;
    let out = ed.finish(filetime_now());
    write_atomic(path, &out)?;
    Ok(0)
}

fn get(path: &Path, h: &Hive<'_>, key: &str, value: Option<&str>) -> Result<u8, CliError> {
    let k = h
        .open(key)
        .map_err(|e| CliError::format(path, e))?
        .ok_or_else(|| CliError::other(format!("{}: key not found: {key}", path.display())))?;
    let mut out = String::new();
    match value {
        Some(v) => {
            let val = k
                .value(value_name(v))
                .map_err(|e| CliError::format(path, e))?
                .ok_or_else(|| {
                    CliError::other(format!("{}: value not found: {key} {v}", path.display()))
                })?;
            let data = val.data().map_err(|e| CliError::format(path, e))?;
            out.push_str(&format!(
                "{} = {}\n",
                type_name(val.value_type()),
                render(val.value_type(), &data)
            ));
        }
        None => {
            for sub in k.subkeys().map_err(|e| CliError::format(path, e))? {
                out.push_str(&format!(
                    "[{}]\n",
                    sub.name().map_err(|e| CliError::format(path, e))?
                ));
            }
            for val in k.values().map_err(|e| CliError::format(path, e))? {
                let name = val.name().map_err(|e| CliError::format(path, e))?;
                let data = val.data().map_err(|e| CliError::format(path, e))?;
                let shown = if name.is_empty() {
                    "@".to_string()
                } else {
                    name
                };
                out.push_str(&format!(
                    "{shown} ({}) = {}\n",
                    type_name(val.value_type()),
                    render(val.value_type(), &data)
                ));
            }
        }
    }
    print!("{out}");
    Ok(0)
}

pub fn type_name(t: u32) -> String {
    match t {
        vt::REG_NONE => "REG_NONE".into(),
        vt::REG_SZ => "REG_SZ".into(),
        vt::REG_EXPAND_SZ => "REG_EXPAND_SZ".into(),
        vt::REG_BINARY => "REG_BINARY".into(),
        vt::REG_DWORD => "REG_DWORD".into(),
        vt::REG_DWORD_BIG_ENDIAN => "REG_DWORD_BIG_ENDIAN".into(),
        vt::REG_LINK => "REG_LINK".into(),
        vt::REG_MULTI_SZ => "REG_MULTI_SZ".into(),
        vt::REG_RESOURCE_LIST => "REG_RESOURCE_LIST".into(),
        vt::REG_FULL_RESOURCE_DESCRIPTOR => "REG_FULL_RESOURCE_DESCRIPTOR".into(),
        vt::REG_RESOURCE_REQUIREMENTS_LIST => "REG_RESOURCE_REQUIREMENTS_LIST".into(),
        vt::REG_QWORD => "REG_QWORD".into(),
        other => format!("type {other:#x}"),
    }
}

fn utf16(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// A human rendering of a value's data (strings quoted, numbers in hex and decimal, else hex bytes).
pub fn render(t: u32, data: &[u8]) -> String {
    match t {
        vt::REG_SZ | vt::REG_EXPAND_SZ | vt::REG_LINK if data.len() % 2 == 0 => {
            let units = utf16(data);
            let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
            format!("{:?}", String::from_utf16_lossy(&units[..end]))
        }
        vt::REG_MULTI_SZ if data.len() % 2 == 0 => {
            let units = utf16(data);
            let mut items: Vec<String> = units
                .split(|&u| u == 0)
                .map(String::from_utf16_lossy)
                .collect();
            // A well-formed list ends with two NULs: drop the empty tail they produce.
            while items.last().is_some_and(|s| s.is_empty()) {
                items.pop();
            }
            format!(
                "[{}] ({} bytes)",
                items
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                data.len()
            )
        }
        vt::REG_DWORD if data.len() == 4 => {
            let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            format!("{v:#010x} ({v})")
        }
        vt::REG_DWORD_BIG_ENDIAN if data.len() == 4 => {
            let v = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            format!("{v:#010x} ({v})")
        }
        vt::REG_QWORD if data.len() == 8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(data);
            let v = u64::from_le_bytes(b);
            format!("{v:#018x} ({v})")
        }
        _ => {
            let hex: Vec<String> = data.iter().map(|b| format!("{b:02x}")).collect();
            format!("hex:{} ({} bytes)", hex.join(","), data.len())
        }
    }
}

fn parse_number(s: &str, what: &str) -> Result<u64, CliError> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    parsed
        .map_err(|_| CliError::usage(format!("{what}: {s:?} is not a number (decimal or 0x hex)")))
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// Encode command-line data the way reg.exe stores it.
pub fn encode(kind: ValueKind, data: &[String]) -> Result<(u32, Vec<u8>), CliError> {
    let one = || -> Result<&str, CliError> {
        match data {
            [d] => Ok(d.as_str()),
            _ => Err(CliError::usage(format!(
                "this type takes exactly one DATA argument, got {}",
                data.len()
            ))),
        }
    };
    Ok(match kind {
        ValueKind::Sz => (vt::REG_SZ, utf16z(one()?)),
        ValueKind::ExpandSz => (vt::REG_EXPAND_SZ, utf16z(one()?)),
        ValueKind::MultiSz => {
            let mut out: Vec<u8> = data.iter().flat_map(|s| utf16z(s)).collect();
            out.extend_from_slice(&[0, 0]);
            (vt::REG_MULTI_SZ, out)
        }
        ValueKind::Dword => {
            let v = parse_number(one()?, "dword")?;
            let v = u32::try_from(v)
                .map_err(|_| CliError::usage(format!("dword: {v} does not fit in 32 bits")))?;
            (vt::REG_DWORD, v.to_le_bytes().to_vec())
        }
        ValueKind::Qword => (
            vt::REG_QWORD,
            parse_number(one()?, "qword")?.to_le_bytes().to_vec(),
        ),
        ValueKind::Binary => (vt::REG_BINARY, parse_hex(&data.join(""))?),
        ValueKind::None => (vt::REG_NONE, parse_hex(&data.join(""))?),
    })
}

fn parse_hex(s: &str) -> Result<Vec<u8>, CliError> {
    let digits: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | ',' | ':'))
        .collect();
    if digits.len() % 2 != 0 {
        return Err(CliError::usage(format!(
            "hex data {s:?} has an odd number of digits"
        )));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16).map_err(|_| {
                CliError::usage(format!(
                    "hex data {s:?}: {:?} is not a hex byte",
                    &digits[i..i + 2]
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_sz_encodings() {
        // No strings: the empty list is a single terminating NUL (2 bytes).
        assert_eq!(encode(ValueKind::MultiSz, &[]).unwrap().1, vec![0, 0]);
        // One empty string (reg.exe /d ""): its NUL plus the list terminator.
        assert_eq!(
            encode(ValueKind::MultiSz, &["".into()]).unwrap().1,
            vec![0, 0, 0, 0]
        );
        let (t, d) = encode(ValueKind::MultiSz, &["a".into(), "b".into()]).unwrap();
        assert_eq!(t, vt::REG_MULTI_SZ);
        assert_eq!(d, vec![b'a', 0, 0, 0, b'b', 0, 0, 0, 0, 0]);
    }

    #[test]
    fn numbers_and_hex() {
        assert_eq!(
            encode(ValueKind::Dword, &["30000".into()]).unwrap().1,
            30000u32.to_le_bytes()
        );
        assert_eq!(
            encode(ValueKind::Dword, &["0x7530".into()]).unwrap().1,
            30000u32.to_le_bytes()
        );
        assert!(encode(ValueKind::Dword, &["0x100000000".into()]).is_err());
        assert!(encode(ValueKind::Dword, &["12abc".into()]).is_err());
        assert_eq!(
            encode(ValueKind::Binary, &["01,ab ff".into()]).unwrap().1,
            vec![1, 0xab, 0xff]
        );
        assert!(encode(ValueKind::Binary, &["abc".into()]).is_err());
        assert!(encode(ValueKind::Binary, &["zz".into()]).is_err());
    }

    #[test]
    fn render_values() {
        assert_eq!(
            render(vt::REG_DWORD, &30000u32.to_le_bytes()),
            "0x00007530 (30000)"
        );
        assert_eq!(render(vt::REG_SZ, &utf16z("a\\b")), "\"a\\\\b\"");
        assert_eq!(render(vt::REG_MULTI_SZ, &[0, 0]), "[] (2 bytes)");
        assert_eq!(render(vt::REG_BINARY, &[1, 2]), "hex:01,02 (2 bytes)");
    }
}
