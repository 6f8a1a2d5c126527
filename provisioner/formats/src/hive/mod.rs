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
//! regtext::export(&Hive, key_path, &mut String) -> Result<()>  byte-identical to hivexregedit --export
//! regtext::parse(&str) -> Result<RegFile>; regtext::apply(&RegFile, &mut Editor) -> Result<()>
//! ```

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

pub mod regtext;
