//! `.reg` text: export in exactly the form `hivexregedit --export` prints, and
//! import of what `hivexregedit --merge` and Windows `regedit` accept.
//!
//! # Export format (verified against hivex 1.3.23, `Win/Hivex/Regedit.pm` and `hivexregedit`)
//!
//! Every fact below was checked by running `hivexregedit --export` on the fixtures in
//! `shared/fixtures` and on hives edited with `hivexregedit --merge`:
//!
//! * The text starts with `Windows Registry Editor Version 5.00` and one empty line.
//!   Line ends are LF (never CRLF); the text ends with the empty line after the last key.
//! * Each key is `[` + path + `]`, then its values, then one empty line. The path is the
//!   canonical path built from the stored names: `\` for the root, `\A\B` below it. hivex
//!   adds no `HKEY_…` prefix unless `--prefix` is given (see [`ExportOptions::prefix`]).
//! * Keys are written depth-first, parent before children; the children of a key and
//!   the values of a key are each sorted with Perl's `cmp` on the decoded names, i.e. by
//!   Unicode code point, case-sensitively (`B` < `_` < `a`). That is the byte order of
//!   the UTF-8 encoding, which is what this module sorts on.
//! * The default (unnamed) value is `@=`; other names are `"name"=` with `\` written as
//!   `\\` and `"` as `\"` (nothing else is escaped).
//! * A value of type 4 (REG_DWORD) with exactly 4 data bytes is `dword:%08x` (lowercase).
//!   Everything else — REG_SZ included, because hivexregedit was not given
//!   `--unsafe-printable-strings` — is `hex(%x):` with the type in lowercase hex without
//!   padding (`hex(1):`, `hex(b):`, `hex(80000000):`), followed by the data bytes as
//!   lowercase two-digit hex separated by `,`. REG_BINARY is `hex(3):`, never `hex:`.
//!   A REG_DWORD whose data is not 4 bytes long is `hex(4):`. Empty data gives `hex(N):`
//!   and nothing after the colon.
//! * There is NO line wrapping: a value is one line however long it is (the SYSTEM
//!   fixture has a 592 349-character line). Windows regedit wraps long `hex` lists
//!   with `,\` and a two-space indent (from its output; not verified here); hivex does
//!   not, and neither does this module. [`parse`] reads both.
//! * Names are decoded by hivex into Perl character strings and printed without an
//!   output encoding. Perl then writes each `print` argument either as Latin-1 bytes
//!   (when every character of that argument is ≤ U+00FF) or as UTF-8 with the warning
//!   "Wide character in print" (when any character is above U+00FF). The arguments
//!   are the whole key path and the whole escaped value name. So `\café` is written with
//!   the single byte 0xE9, while `\café\€` is written entirely in UTF-8. The exact mode
//!   ([`NameEncoding::PerlLatin1`], used by [`export_bytes`]) reproduces this; the
//!   `String` API ([`export`]) writes UTF-8 always, which is identical whenever no name
//!   has characters U+0080..U+00FF without also having one above U+00FF.
//! * Not verified (no fixture has one): names with unpaired UTF-16 surrogates. The
//!   reader decodes them as U+FFFD; hivex's conversion may fail instead.
//! * The key path argument is looked up as `Win::Hivex::Regedit::_node_lookup` does:
//!   split on `\`, one leading and any trailing empty elements ignored, an empty element
//!   in the middle is "not found". Names are compared case-insensitively by the reader
//!   (Windows upcase rules; hivex uses ASCII `strcasecmp`, which agrees for ASCII names).
//! * If the key path is not found, hivexregedit has already printed the header and then
//!   fails; if reading a key's subkey list fails, it has already printed that key with
//!   its values and the empty line. [`export`] leaves the same partial text in `out` and
//!   returns the error.
//!
//! # Import format
//!
//! [`parse`] accepts the union of what hivexregedit `--merge` and regedit accept, and
//! is stricter than hivex where hivex silently misreads input (see [`parse`]).
//! [`apply`] applies a parsed file through the hive [`Editor`](super::Editor).

use alloc::borrow::Cow;
use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use alloc::{format, vec};

use crate::error::{Error, Format, Result};

/// The header line hivexregedit (and regedit 5) writes.
pub const HEADER_V5: &str = "Windows Registry Editor Version 5.00";

/// Deepest key nesting that export and import follow. Windows limits the registry to
/// 512 levels of keys (documented limit "Registry element size limits"); a deeper chain
/// in a hive file is damage (or a cycle), not data.
pub const MAX_DEPTH: usize = 512;

// ---------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------

/// How non-ASCII characters of key paths and value names are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameEncoding {
    /// What hivexregedit (Perl) writes: per printed item, Latin-1 bytes if every
    /// character is ≤ U+00FF, otherwise UTF-8. The output can then be invalid UTF-8.
    #[default]
    PerlLatin1,
    /// Always UTF-8 (what a text editor and [`parse`] expect).
    Utf8,
}

/// Options of [`export_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions<'p> {
    /// Write the `Windows Registry Editor Version 5.00` header and its empty line
    /// (hivexregedit always does; `Win::Hivex::Regedit::reg_export` alone does not).
    pub header: bool,
    /// hivexregedit `--prefix`: written in front of every key path after dropping
    /// one trailing `\`, e.g. `HKEY_LOCAL_MACHINE\SYSTEM` gives `[HKEY_LOCAL_MACHINE\SYSTEM\Select]`
    /// (and `[HKEY_LOCAL_MACHINE\SYSTEM\]` for the root, as hivex does). Written as
    /// UTF-8, as Perl prints a command-line argument (a byte string).
    pub prefix: Option<&'p str>,
    pub names: NameEncoding,
}

impl Default for ExportOptions<'_> {
    fn default() -> Self {
        ExportOptions {
            header: true,
            prefix: None,
            names: NameEncoding::PerlLatin1,
        }
    }
}

/// Export `key_path` (case-insensitive, relative to the root, `\` or `""` = root) and
/// everything below it as UTF-8 text, appended to `out`.
///
/// Identical to `hivexregedit --export HIVE 'KEY'` whenever that output is valid UTF-8
/// (see the module documentation for the one exception: names whose non-ASCII
/// characters are all ≤ U+00FF; use [`export_bytes`] for the exact bytes).
pub fn export(hive: &super::Hive<'_>, key_path: &str, out: &mut String) -> Result<()> {
    let mut buf = core::mem::take(out).into_bytes();
    let opts = ExportOptions {
        names: NameEncoding::Utf8,
        ..ExportOptions::default()
    };
    let result = export_with(hive, key_path, &opts, &mut buf);
    // Every byte written in Utf8 mode comes from a `&str` or is ASCII.
    match String::from_utf8(buf) {
        Ok(s) => {
            *out = s;
            result
        }
        Err(e) => Err(Error::invalid(
            Format::RegText,
            e.utf8_error().valid_up_to() as u64,
            "export text",
            "internal error: export produced invalid UTF-8",
        )),
    }
}

/// Export exactly the bytes `hivexregedit --export HIVE 'KEY'` prints on standard output.
pub fn export_bytes(hive: &super::Hive<'_>, key_path: &str, out: &mut Vec<u8>) -> Result<()> {
    export_with(hive, key_path, &ExportOptions::default(), out)
}

/// Export with explicit options, appending to `out`.
///
/// Errors: the key path does not exist (`NotFound`, offset = file offset of the deepest
/// key that was found), a hive structure cannot be read (the reader's error, with its
/// offset), a key is reached twice (a cycle in the subkey lists) or nesting exceeds
/// [`MAX_DEPTH`]. On error `out` holds the text written before the failure, as hivex
/// leaves it on standard output.
pub fn export_with(
    hive: &super::Hive<'_>,
    key_path: &str,
    opts: &ExportOptions<'_>,
    out: &mut Vec<u8>,
) -> Result<()> {
    if opts.header {
        out.extend_from_slice(HEADER_V5.as_bytes());
        out.extend_from_slice(b"\n\n");
    }
    // Win::Hivex::Regedit::_node_lookup: split on `\`, drop one leading empty element
    // (Perl's split also drops trailing empty elements), then look up each element.
    let mut parts: Vec<&str> = key_path.split('\\').collect();
    while parts.last() == Some(&"") {
        parts.pop();
    }
    if parts.first() == Some(&"") {
        parts.remove(0);
    }
    let mut key = hive.root()?;
    let mut path = String::from("\\");
    for part in parts {
        let found = if part.is_empty() {
            None
        } else {
            key.subkey(part)?
        };
        match found {
            Some(k) => {
                if path.len() > 1 {
                    path.push('\\');
                }
                path.push_str(&k.name()?);
                key = k;
            }
            None => {
                return Err(Error::not_found(
                    Format::Hive,
                    cell_file_offset(key.offset()),
                    "export key path",
                    format!(
                        "{key_path}: path not found in this hive (no subkey {part:?} under {path})"
                    ),
                ))
            }
        }
    }

    if path.len() == 1 {
        // Whole-hive export: the text is about 1.6 times the hive size (SYSTEM fixture:
        // 11.8 MB → 18.4 MB); one allocation up front instead of repeated doubling.
        let n = hive.bytes().len();
        out.reserve(n.saturating_add(n / 2).saturating_add(n / 8));
    }
    let prefix = opts.prefix.map(|p| p.strip_suffix('\\').unwrap_or(p));
    let mut visited: BTreeSet<u32> = BTreeSet::new();
    // Explicit stack (no recursion: the guest probe runs on small firmware stacks).
    // Children are pushed in reverse sorted order so that they pop in sorted order.
    let mut stack: Vec<(super::Key<'_>, String, usize)> = vec![(key, path, 0)];
    let mut values: Vec<(String, u32, Cow<'_, [u8]>)> = Vec::new();
    let mut children: Vec<(String, super::Key<'_>)> = Vec::new();
    while let Some((key, path, depth)) = stack.pop() {
        if !visited.insert(key.offset()) {
            return Err(Error::invalid(
                Format::Hive,
                cell_file_offset(key.offset()),
                "subkey list",
                format!("key {path} is reached a second time (cycle in the subkey lists)"),
            ));
        }
        out.push(b'[');
        if let Some(p) = prefix {
            out.extend_from_slice(p.as_bytes());
        }
        push_name(out, &path, opts.names);
        out.extend_from_slice(b"]\n");

        values.clear();
        for v in key.values()? {
            values.push((v.name()?, v.value_type(), v.data()?));
        }
        values.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (name, ty, data) in &values {
            write_value(out, name, *ty, data, opts.names);
        }
        out.push(b'\n');

        children.clear();
        for k in key.subkeys()? {
            children.push((k.name()?, k));
        }
        if children.is_empty() {
            continue;
        }
        if depth + 1 > MAX_DEPTH {
            return Err(Error::invalid(
                Format::Hive,
                cell_file_offset(key.offset()),
                "subkey list",
                format!("key {path} has subkeys deeper than {MAX_DEPTH} levels"),
            ));
        }
        children.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (name, k) in children.drain(..).rev() {
            let mut p = String::with_capacity(path.len() + 1 + name.len());
            p.push_str(&path);
            if path.len() > 1 {
                p.push('\\');
            }
            p.push_str(&name);
            stack.push((k, p, depth + 1));
        }
    }
    Ok(())
}

/// File offset of a cell given its hbin-relative offset (hbins start after the
/// 4096-byte base block).
fn cell_file_offset(cell: u32) -> u64 {
    u64::from(cell) + 4096
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `"xx,"` for every byte value: one table lookup and one 3-byte copy per data byte.
static HEX_COMMA: [[u8; 3]; 256] = {
    let mut t = [[0u8; 3]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX_DIGITS[i >> 4], HEX_DIGITS[i & 15], b','];
        i += 1;
    }
    t
};

/// Write one value line: `@=` or `"name"=`, then `dword:%08x` or `hex(%x):xx,xx,…`, then LF.
pub fn write_value(
    out: &mut Vec<u8>,
    name: &str,
    value_type: u32,
    data: &[u8],
    names: NameEncoding,
) {
    if name.is_empty() {
        out.extend_from_slice(b"@=");
    } else {
        out.push(b'"');
        if name.contains(['\\', '"']) {
            let mut escaped = String::with_capacity(name.len() + 4);
            for c in name.chars() {
                if c == '\\' || c == '"' {
                    escaped.push('\\');
                }
                escaped.push(c);
            }
            push_name(out, &escaped, names);
        } else {
            push_name(out, name, names);
        }
        out.extend_from_slice(b"\"=");
    }
    match (value_type, <[u8; 4]>::try_from(data)) {
        (4, Ok(d)) => {
            out.extend_from_slice(b"dword:");
            push_hex_u32(out, u32::from_le_bytes(d), 8);
        }
        _ => {
            out.extend_from_slice(b"hex(");
            push_hex_u32(out, value_type, 1);
            out.extend_from_slice(b"):");
            push_hex_bytes(out, data);
        }
    }
    out.push(b'\n');
}

/// Append `data` as `xx,xx,…,xx` (lowercase, no trailing comma).
pub fn push_hex_bytes(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    // Resize once, then fill fixed 3-byte chunks (no capacity check per byte), then
    // drop the trailing comma.
    let start = out.len();
    out.resize(start + data.len() * 3, 0);
    if let Some(dst) = out.get_mut(start..) {
        for (chunk, &b) in dst.chunks_exact_mut(3).zip(data) {
            chunk.copy_from_slice(&HEX_COMMA[usize::from(b)]);
        }
    }
    out.pop();
}

/// Append `v` in lowercase hex, at least `min_digits` digits (`%x` = 1, `%08x` = 8).
fn push_hex_u32(out: &mut Vec<u8>, v: u32, min_digits: u32) {
    let digits = (8 - v.leading_zeros() / 4).max(min_digits).min(8);
    for i in (0..digits).rev() {
        out.push(HEX_DIGITS[((v >> (i * 4)) & 15) as usize]);
    }
}

/// Append one printed item (a key path or an escaped value name) the way Perl's
/// `print` does on a handle without an encoding layer (see the module docs).
fn push_name(out: &mut Vec<u8>, s: &str, names: NameEncoding) {
    if names == NameEncoding::Utf8 || s.is_ascii() || s.chars().any(|c| u32::from(c) > 0xFF) {
        out.extend_from_slice(s.as_bytes());
    } else {
        // Every char is ≤ U+00FF: one Latin-1 byte each.
        out.extend(
            s.chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------

/// Where something is in the `.reg` text: byte offset from the start of the text (a BOM
/// included) and 1-based line number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextPos {
    pub offset: usize,
    pub line: usize,
}

/// A parsed `.reg` file, in text order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegFile {
    /// The first header line (`Windows Registry Editor Version 5.00`, `REGEDIT4`), if any.
    pub header: Option<String>,
    pub entries: Vec<RegEntry>,
}

/// One `[key]` or `[-key]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegEntry {
    /// `[-path]`: delete the key and everything below it (absent = no-op).
    DeleteKey { path: String, at: TextPos },
    /// `[path]`: create the key (and missing parents) and apply the value operations in order.
    Key {
        path: String,
        at: TextPos,
        values: Vec<RegValueOp>,
    },
}

/// One value line of a `[key]` section. `name` is `""` for the default value (`@`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegValueOp {
    /// `"name"=data`: set (replace) the value.
    Set {
        name: String,
        value_type: u32,
        data: Vec<u8>,
        at: TextPos,
    },
    /// `"name"=-`: delete the value (absent = no-op).
    Delete { name: String, at: TextPos },
}

/// A logical line: physical lines joined at `\` continuations, with the map back to
/// the original text.
struct Logical<'t> {
    text: Cow<'t, str>,
    /// (start in `text`, offset in the original text, line number) per physical line.
    segs: Vec<(usize, usize, usize)>,
}

impl Logical<'_> {
    fn pos(&self, at: usize) -> TextPos {
        let mut best = (0, 0, 1);
        for &s in &self.segs {
            if s.0 <= at {
                best = s;
            }
        }
        TextPos {
            offset: best.1 + (at - best.0),
            line: best.2,
        }
    }
    fn err(&self, at: usize, field: &'static str, why: &str) -> Error {
        let p = self.pos(at);
        Error::invalid(
            Format::RegText,
            p.offset as u64,
            field,
            format!("line {}: {}", p.line, why),
        )
    }
}

/// Parse `.reg` text.
///
/// Accepted (hivexregedit `--merge` ∪ regedit):
/// * an optional UTF-8 BOM; LF or CRLF line ends; a text that is not UTF-8 (e.g. a
///   regedit 5 file in UTF-16LE) must be converted by the caller;
/// * header lines `Windows Registry Editor Version …` and `REGEDIT4`: optional, as in
///   hivex, but only before the first key (hivex skips them anywhere); the first one is
///   kept in [`RegFile::header`];
/// * empty lines and `;` comment lines anywhere;
/// * `[path]` and `[-path]`, trailing blanks allowed; the path is taken verbatim;
/// * value lines `"name"=…` (in the name, `\` escapes the next character) and `@=…`,
///   blanks allowed around `=`, with data `-` (delete), `"string"` (REG_SZ stored as
///   UTF-16LE with a terminating NUL, as hivex and regedit store it; `\` escapes the next
///   character), `dword:` + 1–8 hex digits, `hex:` (REG_BINARY), `hex(N):` (type N in
///   hex), and hivex's/Wine's `str:"…"` and `str(N):"…"`. Prefixes are case-insensitive.
///   Byte lists are comma-separated 1–2-digit hex bytes; a trailing comma is allowed;
/// * a line ending in `\` (blanks after it allowed) continues on the next line, for any
///   data (regedit wraps long `hex` lists like that).
///
/// More lenient than hivex (as regedit): `dword:` with fewer than 8 digits, blanks around
/// `=`, lower/upper-case type prefixes, and value lines after an empty or comment line
/// still belong to the current `[key]` (hivex ends the section there and then rejects
/// the value line).
///
/// Stricter than hivex: text after a closing quote, non-hex characters or missing commas
/// in byte lists (hivex deletes commas and blanks and packs whatever is left), and value
/// lines before any `[key]` or after a `[-key]` are errors. Errors are `Format::RegText`
/// with the byte offset of the offending character in `text` and `line N:` in the message.
pub fn parse(text: &str) -> Result<RegFile> {
    let bom = if text.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    };
    let mut reg = RegFile::default();
    // Inside a `[key]` section (value lines allowed)?
    let mut in_key = false;

    let mut offset = bom;
    let mut line_no = 0usize;
    let mut lines = text[bom..].split_inclusive('\n');
    loop {
        // Assemble one logical line: as hivex does (`s/\\\s*$//`), a `\` followed only
        // by blanks at the end of a line is removed and the next line appended as it is.
        // Key lines end in `]` and quoted data in `"`, so only continuations match.
        let mut logical: Option<Logical<'_>> = None;
        for raw in lines.by_ref() {
            line_no += 1;
            let start = offset;
            offset += raw.len();
            let body = raw.strip_suffix('\n').unwrap_or(raw);
            let body = body.strip_suffix('\r').unwrap_or(body);
            let (piece, cont) = match body.trim_end_matches([' ', '\t']).strip_suffix('\\') {
                Some(p) => (p, true),
                None => (body, false),
            };
            match &mut logical {
                None => {
                    logical = Some(Logical {
                        text: Cow::Borrowed(piece),
                        segs: vec![(0, start, line_no)],
                    });
                }
                Some(l) => {
                    let at = l.text.len();
                    l.text.to_mut().push_str(piece);
                    l.segs.push((at, start, line_no));
                }
            }
            if !cont {
                break;
            }
        }
        let Some(l) = logical else { break };
        parse_line(&l, &mut reg, &mut in_key)?;
    }
    Ok(reg)
}

fn is_blank_or_comment(s: &str) -> bool {
    let t = s.trim_start();
    t.is_empty() || t.starts_with(';')
}

fn parse_line(l: &Logical<'_>, reg: &mut RegFile, in_key: &mut bool) -> Result<()> {
    let s: &str = &l.text;
    if is_blank_or_comment(s) {
        return Ok(());
    }
    let trimmed = s.trim_end();
    if trimmed.starts_with("Windows Registry Editor Version") || trimmed == "REGEDIT4" {
        if reg.header.is_none() && reg.entries.is_empty() {
            reg.header = Some(String::from(trimmed));
            return Ok(());
        }
        return Err(l.err(0, "header", "header line after the start of the file"));
    }
    if let Some(inner) = trimmed.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err(l.err(
                trimmed.len(),
                "key line",
                "a key line `[…]` must end with `]`",
            ));
        };
        let at = l.pos(0);
        if let Some(path) = inner.strip_prefix('-') {
            reg.entries.push(RegEntry::DeleteKey {
                path: String::from(path),
                at,
            });
            *in_key = false;
        } else {
            reg.entries.push(RegEntry::Key {
                path: String::from(inner),
                at,
                values: Vec::new(),
            });
            *in_key = true;
        }
        return Ok(());
    }
    let first = s.trim_start();
    let lead = s.len() - first.len();
    if !(first.starts_with('"') || first.starts_with('@')) {
        return Err(l.err(
            lead,
            "line",
            "expected `[key]`, `\"name\"=…`, `@=…`, a comment or an empty line",
        ));
    }
    let op = parse_value_line(l, lead)?;
    match reg.entries.last_mut() {
        Some(RegEntry::Key { values, .. }) if *in_key => {
            values.push(op);
            Ok(())
        }
        _ => Err(l.err(lead, "value line", "value line outside a `[key]` section")),
    }
}

/// Parse a quoted string starting at `s[at]` == `"`; returns the unescaped text and the
/// index just after the closing quote.
fn parse_quoted(l: &Logical<'_>, at: usize, field: &'static str) -> Result<(String, usize)> {
    let s: &str = &l.text;
    let mut out = String::new();
    let mut chars = s[at + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, at + 1 + i + 1)),
            '\\' => match chars.next() {
                Some((_, e)) => out.push(e),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(l.err(at, field, "missing closing `\"`"))
}

fn skip_blanks(s: &str, mut i: usize) -> usize {
    while matches!(s.as_bytes().get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    match s.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => s.get(prefix.len()..),
        _ => None,
    }
}

fn parse_value_line(l: &Logical<'_>, lead: usize) -> Result<RegValueOp> {
    let s: &str = &l.text;
    let at = l.pos(lead);
    let (name, after_name) = if s.as_bytes().get(lead) == Some(&b'@') {
        (String::new(), lead + 1)
    } else {
        parse_quoted(l, lead, "value name")?
    };
    let eq = skip_blanks(s, after_name);
    if s.as_bytes().get(eq) != Some(&b'=') {
        return Err(l.err(eq, "value line", "expected `=` after the value name"));
    }
    let start = skip_blanks(s, eq + 1);
    let data = s[start..].trim_end();
    if data == "-" {
        return Ok(RegValueOp::Delete { name, at });
    }
    let (value_type, bytes) = parse_data(l, start, data)?;
    Ok(RegValueOp::Set {
        name,
        value_type,
        data: bytes,
        at,
    })
}

/// Parse the data part `data` (= `l.text[start..]`, trailing blanks removed).
fn parse_data(l: &Logical<'_>, start: usize, data: &str) -> Result<(u32, Vec<u8>)> {
    if data.starts_with('"') {
        return quoted_string_data(l, start, 1);
    }
    if let Some(digits) = strip_prefix_ci(data, "dword:") {
        let at = start + 6;
        let ok = !digits.is_empty()
            && digits.len() <= 8
            && digits.bytes().all(|b| b.is_ascii_hexdigit());
        let v = if ok {
            u32::from_str_radix(digits, 16).ok()
        } else {
            None
        };
        return match v {
            Some(v) => Ok((4, v.to_le_bytes().to_vec())),
            None => Err(l.err(at, "dword", "`dword:` needs 1 to 8 hex digits")),
        };
    }
    if let Some(list) = strip_prefix_ci(data, "hex:") {
        return Ok((3, hex_list(l, start + 4, list)?));
    }
    if let Some(rest) = strip_prefix_ci(data, "hex(") {
        let (ty, consumed) = type_in_parens(l, start + 4, rest, "hex")?;
        return Ok((ty, hex_list(l, start + 4 + consumed, &rest[consumed..])?));
    }
    if let Some(rest) = strip_prefix_ci(data, "str:") {
        if rest.starts_with('"') {
            return quoted_string_data(l, start + 4, 1);
        }
        return Err(l.err(
            start + 4,
            "str",
            "`str:` must be followed by a quoted string",
        ));
    }
    if let Some(rest) = strip_prefix_ci(data, "str(") {
        let (ty, consumed) = type_in_parens(l, start + 4, rest, "str")?;
        if rest[consumed..].starts_with('"') {
            return quoted_string_data(l, start + 4 + consumed, ty);
        }
        return Err(l.err(
            start + 4 + consumed,
            "str",
            "`str(N):` must be followed by a quoted string",
        ));
    }
    Err(l.err(
        start,
        "value data",
        "expected `\"string\"`, `dword:`, `hex:`, `hex(N):`, `str:` or `-`",
    ))
}

/// `N):` after `hex(` / `str(`; returns the type and the bytes consumed.
fn type_in_parens(l: &Logical<'_>, at: usize, rest: &str, what: &str) -> Result<(u32, usize)> {
    let n = rest.bytes().take_while(|b| b.is_ascii_hexdigit()).count();
    let ty = if (1..=8).contains(&n) {
        u32::from_str_radix(&rest[..n], 16).ok()
    } else {
        None
    };
    match (ty, rest.get(n..n + 2)) {
        (Some(ty), Some("):")) => Ok((ty, n + 2)),
        _ => Err(l.err(
            at,
            "value type",
            &format!("`{what}(` needs 1 to 8 hex digits and `):`"),
        )),
    }
}

/// A quoted string at `l.text[at]` that must end the line: UTF-16LE + NUL.
fn quoted_string_data(l: &Logical<'_>, at: usize, ty: u32) -> Result<(u32, Vec<u8>)> {
    let (s, end) = parse_quoted(l, at, "string data")?;
    if !l.text[end..].trim().is_empty() {
        return Err(l.err(end, "string data", "text after the closing `\"`"));
    }
    let mut data = Vec::with_capacity(s.len() * 2 + 2);
    for u in s.encode_utf16().chain(core::iter::once(0)) {
        data.extend_from_slice(&u.to_le_bytes());
    }
    Ok((ty, data))
}

/// `xx,xx,…` (blanks around items allowed; trailing comma allowed; empty = no bytes).
/// Byte-wise: the SYSTEM fixture's export has 6 million of these bytes.
fn hex_list(l: &Logical<'_>, at: usize, list: &str) -> Result<Vec<u8>> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let b = list.as_bytes();
    let blank = |i: &mut usize| {
        while matches!(b.get(*i), Some(b' ' | b'\t')) {
            *i += 1;
        }
    };
    let mut out = Vec::with_capacity(b.len() / 3 + 1);
    let mut i = 0;
    blank(&mut i);
    if i == b.len() {
        return Ok(out);
    }
    loop {
        let start = i;
        let mut v: u8 = 0;
        while let Some(n) = b.get(i).copied().and_then(nibble) {
            v = (v << 4) | n;
            i += 1;
        }
        if !(1..=2).contains(&(i - start)) {
            let end = b
                .get(start..)
                .unwrap_or(&[])
                .iter()
                .position(|&c| c == b',')
                .map_or(b.len(), |p| start + p);
            let found = list.get(start..end).unwrap_or("").trim_end();
            return Err(l.err(
                at + start,
                "hex byte",
                &format!("expected a hex byte (1-2 hex digits), found {found:?}"),
            ));
        }
        out.push(v);
        blank(&mut i);
        match b.get(i) {
            None => return Ok(out),
            Some(b',') => {
                i += 1;
                blank(&mut i);
                if i == b.len() {
                    return Ok(out); // trailing comma
                }
            }
            Some(_) => return Err(l.err(at + i, "hex byte", "expected `,` between hex bytes")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Apply
// ---------------------------------------------------------------------------------------

/// Apply a parsed `.reg` file to a hive, in text order.
///
/// `prefix` is removed from every key path first, compared ASCII-case-insensitively as
/// hivexregedit `--prefix` does (e.g. `HKEY_LOCAL_MACHINE\SYSTEM`; one trailing `\` is
/// ignored). With a non-empty prefix, a path that does not start with it (at a `\`
/// boundary) is an error (hivex would silently create a key named `HKEY_…` in the
/// hive). With `""` paths are used as they are, one leading `\` dropped: hivex exports
/// (`[\]`, `[\Select]`) apply directly.
///
/// Semantics (regedit; hivex differs where noted):
/// * `[path]` creates the key and missing parents (hivex requires the parent to exist);
///   then value lines apply in order: set replaces, `=-` deletes (absent = no-op). hivex
///   applies all deletions of a section before all sets; regedit and this function go
///   line by line, which differs only for a name both set and deleted in one section.
/// * `[-path]` deletes the key recursively; an absent key is not an error; the root cannot
///   be deleted (error, as in hivex).
///
/// Errors in the text (prefix, empty path components) are `Format::RegText` with the
/// offset of the key line; errors of the editor are passed through.
pub fn apply(reg: &RegFile, editor: &mut super::Editor, prefix: &str) -> Result<()> {
    for entry in &reg.entries {
        match entry {
            RegEntry::DeleteKey { path, at } => {
                let rel = relative_path(path, prefix, *at)?;
                if rel.is_empty() {
                    return Err(text_err(
                        *at,
                        "key path",
                        "the root key of a hive cannot be deleted",
                    ));
                }
                let exists = editor.hive()?.open(&rel)?.is_some();
                if exists {
                    editor.delete_key(&rel)?;
                }
            }
            RegEntry::Key { path, at, values } => {
                let rel = relative_path(path, prefix, *at)?;
                if !rel.is_empty() {
                    editor.create_key(&rel)?;
                }
                for op in values {
                    match op {
                        RegValueOp::Set {
                            name,
                            value_type,
                            data,
                            ..
                        } => {
                            editor.set_value(&rel, name, *value_type, data)?;
                        }
                        RegValueOp::Delete { name, .. } => {
                            editor.delete_value(&rel, name)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn text_err(at: TextPos, field: &'static str, why: &str) -> Error {
    Error::invalid(
        Format::RegText,
        at.offset as u64,
        field,
        format!("line {}: {}", at.line, why),
    )
}

/// Strip `prefix` and the leading `\`; check components; return `A\B` (`""` = root).
fn relative_path(path: &str, prefix: &str, at: TextPos) -> Result<String> {
    let prefix = prefix.strip_suffix('\\').unwrap_or(prefix);
    let mut rest = path;
    if !prefix.is_empty() {
        match strip_prefix_ci(path, prefix) {
            Some(r) if r.is_empty() || r.starts_with('\\') => rest = r,
            _ => {
                return Err(text_err(
                    at,
                    "key path",
                    &format!("key path {path:?} does not start with the prefix {prefix:?}"),
                ));
            }
        }
    }
    let rest = rest.strip_prefix('\\').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(String::new());
    }
    let depth = rest.split('\\').count();
    if rest.split('\\').any(str::is_empty) {
        return Err(text_err(
            at,
            "key path",
            &format!("key path {path:?} has an empty component"),
        ));
    }
    if depth > MAX_DEPTH {
        return Err(text_err(
            at,
            "key path",
            &format!("key path {path:?} is deeper than {MAX_DEPTH} levels"),
        ));
    }
    Ok(String::from(rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn line(name: &str, ty: u32, data: &[u8], names: NameEncoding) -> Vec<u8> {
        let mut v = Vec::new();
        write_value(&mut v, name, ty, data, names);
        v
    }

    #[rstest]
    #[case("", 1, b"d\0e\0f\0\0\0", "@=hex(1):64,00,65,00,66,00,00,00\n")]
    #[case("a", 0x8000_0000, b"\x01", "\"a\"=hex(80000000):01\n")]
    #[case("b", 0xffff_ffff, b"", "\"b\"=hex(ffffffff):\n")]
    #[case("d", 4, b"\xff\xff\xff\xff", "\"d\"=dword:ffffffff\n")]
    #[case("e", 4, b"\x01\x02\x03\x04", "\"e\"=dword:04030201\n")]
    #[case("z", 4, b"\x00\x00\x00\x00", "\"z\"=dword:00000000\n")]
    #[case("f", 4, b"\x01\x02", "\"f\"=hex(4):01,02\n")]
    #[case("h\\x\"y", 3, b"", "\"h\\\\x\\\"y\"=hex(3):\n")]
    #[case("q", 11, &[0xab, 0xcd, 0, 0, 0, 0, 0, 0], "\"q\"=hex(b):ab,cd,00,00,00,00,00,00\n")]
    #[case("t", 0x10, &[0x7f], "\"t\"=hex(10):7f\n")]
    fn value_lines_match_hivex(
        #[case] name: &str,
        #[case] ty: u32,
        #[case] data: &[u8],
        #[case] want: &str,
    ) {
        assert_eq!(
            String::from_utf8(line(name, ty, data, NameEncoding::PerlLatin1)).unwrap(),
            want
        );
    }

    #[test]
    fn every_byte_value_is_two_lowercase_digits() {
        let data: Vec<u8> = (0..=255u8).collect();
        let mut out = Vec::new();
        push_hex_bytes(&mut out, &data);
        let want: Vec<String> = (0..=255u8).map(|b| format!("{b:02x}")).collect();
        assert_eq!(String::from_utf8(out).unwrap(), want.join(","));
    }

    #[rstest]
    // Latin-1-only names: one byte per char in Perl mode, UTF-8 in Utf8 mode.
    #[case("né", NameEncoding::PerlLatin1, b"\"n\xe9\"=hex(3):\n".as_slice())]
    #[case("né", NameEncoding::Utf8, "\"né\"=hex(3):\n".as_bytes())]
    // Any char above U+00FF: the whole item is UTF-8, Latin-1 chars included.
    #[case("é€", NameEncoding::PerlLatin1, "\"é€\"=hex(3):\n".as_bytes())]
    #[case("🌎", NameEncoding::PerlLatin1, "\"🌎\"=hex(3):\n".as_bytes())]
    fn names_are_printed_like_perl(
        #[case] name: &str,
        #[case] names: NameEncoding,
        #[case] want: &[u8],
    ) {
        assert_eq!(line(name, 3, b"", names), want);
    }

    fn one_key(text: &str) -> (String, Vec<RegValueOp>) {
        let reg = parse(text).unwrap();
        assert_eq!(reg.entries.len(), 1, "{reg:?}");
        match reg.entries.into_iter().next().unwrap() {
            RegEntry::Key { path, values, .. } => (path, values),
            other => panic!("not a key: {other:?}"),
        }
    }

    fn set(text_line: &str) -> (String, u32, Vec<u8>) {
        let (_, values) = one_key(&format!("[\\k]\n{text_line}\n"));
        match values.as_slice() {
            [RegValueOp::Set {
                name,
                value_type,
                data,
                ..
            }] => (name.clone(), *value_type, data.clone()),
            other => panic!("{other:?}"),
        }
    }

    #[rstest]
    #[case("\"s\"=\"ab\"", "s", 1, b"a\0b\0\0\0".as_slice())]
    #[case("@=\"x\\\"y\\\\\"", "", 1, b"x\0\"\0y\0\\\0\0\0".as_slice())]
    #[case("\"q\\\"n\\\\\"=dword:1", "q\"n\\", 4, b"\x01\0\0\0".as_slice())]
    #[case("\"d\"=dword:ffffffff", "d", 4, b"\xff\xff\xff\xff".as_slice())]
    #[case("\"d\"=DWORD:0000ABCD", "d", 4, b"\xcd\xab\0\0".as_slice())]
    #[case("\"b\"=hex:01,ff,0a", "b", 3, b"\x01\xff\x0a".as_slice())]
    #[case("\"b\"=hex:", "b", 3, b"".as_slice())]
    #[case("\"b\"=hex: 01 , 2 ,", "b", 3, b"\x01\x02".as_slice())]
    #[case("\"m\"=hex(7):41,00,00,00,00,00", "m", 7, b"A\0\0\0\0\0".as_slice())]
    #[case("\"t\"=hex(80000000):", "t", 0x8000_0000, b"".as_slice())]
    #[case("\"w\"=str:\"é\"", "w", 1, b"\xe9\0\0\0".as_slice())]
    #[case("\"w\"=str(2):\"%P%\"", "w", 2, b"%\0P\0%\0\0\0".as_slice())]
    #[case("\"🌎\" = \"🌎\"  ", "🌎", 1, b"\x3c\xd8\x0e\xdf\0\0".as_slice())]
    fn value_syntax(#[case] input: &str, #[case] name: &str, #[case] ty: u32, #[case] data: &[u8]) {
        assert_eq!(set(input), (String::from(name), ty, data.to_vec()));
    }

    #[test]
    fn deletes_comments_bom_crlf_continuations_and_header() {
        let text = "\u{feff}Windows Registry Editor Version 5.00\r\n\r\n; comment\r\n[-\\gone]\r\n\r\n[\\k]\r\n\"a\"=-\r\n@=-\r\n  ; indented comment\r\n\"b\"=hex:01,\\\r\n  02,03,\\  \r\n  04\r\n[\\]\r\n";
        let reg = parse(text).unwrap();
        assert_eq!(reg.header.as_deref(), Some(HEADER_V5));
        assert_eq!(reg.entries.len(), 3);
        match &reg.entries[0] {
            RegEntry::DeleteKey { path, at } => {
                assert_eq!(path, "\\gone");
                assert_eq!(at.line, 4);
                assert_eq!(&text[at.offset..at.offset + 8], "[-\\gone]");
            }
            e => panic!("{e:?}"),
        }
        match &reg.entries[1] {
            RegEntry::Key { path, values, .. } => {
                assert_eq!(path, "\\k");
                assert_eq!(values.len(), 3);
                assert!(
                    matches!(&values[0], RegValueOp::Delete { name, at } if name == "a" && at.line == 7)
                );
                assert!(matches!(&values[1], RegValueOp::Delete { name, .. } if name.is_empty()));
                assert!(
                    matches!(&values[2], RegValueOp::Set { name, value_type: 3, data, at } if name == "b" && data == &[1, 2, 3, 4] && at.line == 10)
                );
            }
            e => panic!("{e:?}"),
        }
        assert!(
            matches!(&reg.entries[2], RegEntry::Key { path, values, at } if path == "\\" && values.is_empty() && at.line == 13)
        );
    }

    #[test]
    fn regedit4_header_and_no_header() {
        assert_eq!(
            parse("REGEDIT4\n\n[HKEY_LOCAL_MACHINE\\X]\n")
                .unwrap()
                .header
                .as_deref(),
            Some("REGEDIT4")
        );
        let reg = parse("[a]\n").unwrap();
        assert_eq!(reg.header, None);
        assert_eq!(reg.entries.len(), 1);
        assert_eq!(parse("").unwrap(), RegFile::default());
    }

    /// (text, byte offset of the error, line, field)
    #[rstest]
    #[case("[\\k]\n\"a\"=dword:123456789\n", 15, 2, "dword")]
    #[case("[\\k]\n\"a\"=dword:\n", 15, 2, "dword")]
    #[case("[\\k]\n\"a\"=hex:01,zz\n", 16, 2, "hex byte")]
    #[case("[\\k]\n\"a\"=hex:01,\\\n 0102\n", 19, 3, "hex byte")]
    #[case("[\\k]\n\"a\"=hex(x):01\n", 13, 2, "value type")]
    #[case("[\\k]\n\"a\"=hex:01 02\n", 16, 2, "hex byte")]
    #[case("[\\k]\n\"abc\n", 5, 2, "value name")]
    #[case("[\\k]\n\"a\"\"x\"\n", 8, 2, "value line")]
    #[case("[\\k]\n\"a\"=\"x\"y\n", 12, 2, "string data")]
    #[case("[\\k]\n\"a\"=\"x\n", 9, 2, "string data")]
    #[case("[\\k]\n\"a\"=word:1\n", 9, 2, "value data")]
    #[case("\"a\"=dword:1\n", 0, 1, "value line")]
    #[case("[-\\k]\n\"a\"=dword:1\n", 6, 2, "value line")]
    #[case("[\\k\n", 3, 1, "key line")]
    #[case("[\\k]\r\njunk\r\n", 6, 2, "line")]
    #[case("[\\k]\nREGEDIT4\n", 5, 2, "header")]
    fn syntax_errors_have_offset_and_line(
        #[case] text: &str,
        #[case] offset: u64,
        #[case] line: usize,
        #[case] field: &str,
    ) {
        let e = parse(text).unwrap_err();
        assert_eq!(e.format, Format::RegText);
        assert_eq!((e.offset, e.field), (offset, field), "{e}");
        let msg = format!("{e}");
        assert!(msg.contains(&format!("line {line}:")), "{msg}");
    }

    #[rstest]
    #[case("\\Select", "", "Select")]
    #[case("\\", "", "")]
    #[case("", "", "")]
    #[case(
        "HKEY_LOCAL_MACHINE\\SYSTEM\\Select",
        "hkey_local_machine\\system",
        "Select"
    )]
    #[case("HKEY_LOCAL_MACHINE\\SYSTEM", "HKEY_LOCAL_MACHINE\\SYSTEM\\", "")]
    #[case("A\\B\\C", "", "A\\B\\C")]
    fn relative_paths(#[case] path: &str, #[case] prefix: &str, #[case] want: &str) {
        assert_eq!(
            relative_path(path, prefix, TextPos { offset: 0, line: 1 }).unwrap(),
            want
        );
    }

    #[rstest]
    #[case("HKEY_LOCAL_MACHINE\\SYSTEMX\\Select", "HKEY_LOCAL_MACHINE\\SYSTEM")]
    #[case("\\Select", "HKEY_LOCAL_MACHINE\\SYSTEM")]
    #[case("\\A\\\\B", "")]
    #[case("\\A\\", "")]
    fn bad_relative_paths(#[case] path: &str, #[case] prefix: &str) {
        let e = relative_path(path, prefix, TextPos { offset: 7, line: 3 }).unwrap_err();
        assert_eq!((e.format, e.offset), (Format::RegText, 7));
        assert!(format!("{e}").contains("line 3:"));
    }
}
