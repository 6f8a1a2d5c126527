//! Registry hive files (regf): reader, in-place editor, builder, `.reg` text.
//!
//! API CONTRACT (other modules — `bcd`, the `ufd` CLI, the guest probe — code against this;
//! keep these names and signatures stable):
//!
//! ```text
//! Hive::parse(&[u8]) -> Result<Hive>           validate base block + hbin chain start; lazy tree
//! hive.base() -> &BaseBlock                    seq1, seq2, timestamp, major, minor, root, name, is_dirty()
//! hive.root() -> Result<Key>
//! hive.open(path) -> Result<Option<Key>>       "A\\B\\C", case-insensitive, "" / "\\" = root
//! key.name() -> Result<String>; key.offset() -> u32 (cell offset, hbin-relative)
//! key.timestamp() -> u64 (FILETIME); key.class_name() -> Result<Option<String>>
//! key.subkeys() -> Result<Vec<Key>>            on-disk order
//! key.subkey(name) -> Result<Option<Key>>
//! key.values() -> Result<Vec<Value>>           value-list order
//! key.value(name) -> Result<Option<Value>>     "" = default value
//! value.name() -> Result<String>; value.value_type() -> u32; value.data() -> Result<Cow<[u8]>>
//! value.as_string(), as_dword(), as_qword(), as_multi_sz()  (typed views, errors on wrong type)
//!
//! Editor::open(Vec<u8>) -> Result<Editor>      in-place editing of an existing hive
//! Editor::new_hive(&NewHive) -> Result<Editor>  a new, empty hive (root name, minor version, list kind)
//! ed.hive() -> Result<Hive<'_>>                read view of the current bytes
//! ed.create_key(path) -> Result<()>            creates missing intermediate keys; existing = Ok
//! ed.delete_key(path) -> Result<()>            recursive
//! ed.set_value(key_path, name, value_type, &data) -> Result<()>
//! ed.delete_value(key_path, name) -> Result<bool>
//! ed.finish(filetime: u64) -> Vec<u8>          seq numbers, timestamp, checksum updated
//!
//! regtext::export(&Hive, key_path, &mut String) -> Result<()>  UTF-8; identical to hivexregedit --export
//!                                                              for every name Perl prints as UTF-8
//! regtext::export_bytes(&Hive, key_path, &mut Vec<u8>)          byte-identical in all cases (Perl prints
//!                                                              names ≤ U+00FF as Latin-1 bytes)
//! regtext::export_with(&Hive, key_path, &ExportOptions, &mut Vec<u8>)   header / prefix / name encoding
//! regtext::parse(&str) -> Result<RegFile>; regtext::apply(&RegFile, &mut Editor, prefix) -> Result<()>
//! ```
//!
//! Beyond the contract (additions, all stable):
//!
//! * zero-copy views: `Key::name_raw()/name_bytes()/name_is_compressed()/name_eq()`,
//!   `Value::name_raw()/name_bytes()`, `Key::class_bytes()`, `Key::value_offsets()`,
//!   `Key::visit_subkeys()` (no allocation), `Value::storage()` (inline / cell / `db`);
//! * `Key::security() -> Option<Security>` (sk offset, `refcount()`, `descriptor()` bytes,
//!   flink/blink), nk counters and "largest …" fields, `Key::subkey_list_kind()`;
//! * `Hive::check() -> HiveStats`: full validation (checksum, sequence numbers, the whole hbin
//!   chain, every cell size, every referenced cell starts an allocated cell, subkey counts);
//!   `Hive::bins()`, `Hive::bin_cells()`, `Hive::key_at()/value_at()`;
//! * `NewHive::bcd()` (the `bcdedit /createstore` shape) and `NewHive::default()` (minor 5,
//!   `lh`); `BCD_ROOT_SD`/`BCD_CHILD_SD` (the two descriptors bcdedit writes);
//! * `names`: Windows-style `upcase_unit`, `lh_hash`, `lf_hint`, `encode_name`.
//!
//! Offsets: cell offsets are hbin-relative (file offset − 0x1000); every [`crate::Error`]
//! carries the absolute FILE offset, and messages about cells name both (e.g. hivex's
//! "not a valid block (0x5480)" is a file offset: cell 0x4480).
//!
//! Verified against hivex 1.3.23 (the oracle) and Windows-made fixtures: every fixture's
//! keys/values/data equal its `.hivex.reg`; Windows' own subkey lists satisfy our sort order,
//! `lf` hints and `lh` hashes; hives we write export through hivex exactly as modelled.

pub mod value_type {
    //! Registry value type codes (winnt.h).
    pub const REG_NONE: u32 = 0;
    pub const REG_SZ: u32 = 1;
    pub const REG_EXPAND_SZ: u32 = 2;
    pub const REG_BINARY: u32 = 3;
    pub const REG_DWORD: u32 = 4;
    pub const REG_DWORD_BIG_ENDIAN: u32 = 5;
    pub const REG_LINK: u32 = 6;
    pub const REG_MULTI_SZ: u32 = 7;
    pub const REG_RESOURCE_LIST: u32 = 8;
    pub const REG_FULL_RESOURCE_DESCRIPTOR: u32 = 9;
    pub const REG_RESOURCE_REQUIREMENTS_LIST: u32 = 10;
    pub const REG_QWORD: u32 = 11;
}

mod editor;
mod names;
mod reader;
pub mod regtext;

pub use editor::{Editor, NewHive, BCD_CHILD_SD, BCD_ROOT_SD};
pub use names::{cmp_units_ignore_case, encode_name, lf_hint, lh_hash, upcase_unit, RawName};
pub use reader::{
    base_block_xor, windows_checksum, BaseBlock, BinInfo, DataStorage, Hive, HiveStats, Key,
    ListKind, Security, Value, BASE_BLOCK_SIZE, BIG_DATA_SEGMENT, KEY_COMP_NAME, KEY_HIVE_ENTRY,
    KEY_NO_DELETE, KEY_SYM_LINK, MAX_DEPTH, NIL, VALUE_COMP_NAME,
};
