//! A whole BCD store: reading it from a hive and writing it into one.
//!
//! Key layout (formats.md §1.1 \[V\]):
//!
//! ```text
//! <root>                     NewStoreRoot (bcdedit) or System (Microsoft build tools)
//!   Description              KeyName, System, TreatAsSystem, GuidCache, FirmwareModified, ...
//!   Objects
//!     {guid}                 lower case with braces
//!       Description          Type (REG_DWORD) [+ FirmwareVariable, ...]
//!       Elements
//!         xxxxxxxx           element type; lower case when bcdedit writes it, any case read
//!           Element          the value (see [`super::element`])
//! ```
//!
//! Reading accepts any root name and upper-case hex element key names; root `Description`
//! values and object `Description` values other than `Type` are kept verbatim. Keys that are
//! not part of this layout (none exist in any store examined) are not represented.
//! Writing ([`Store::write`]) creates lower-case GUID keys and lower-case 8-digit element keys
//! and writes every value in bcdedit's encoding ([`super::element::ElementValue::encode`]).
//!
//! Error offsets: store-level errors (a missing `Type`, a key name that is not a GUID or an
//! element type) carry the absolute file offset of the offending key's nk cell; element decode
//! errors carry the byte offset within the element value, and their message names the object
//! and the element.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::element::{Element, ElementType, ElementValue};
use super::guid::Guid;
use super::object::{Object, ObjectType, RawValue};
use crate::error::{Error, ErrorKind, Format, Result};
use crate::hive::value_type::{REG_DWORD, REG_SZ};
use crate::hive::{Editor, Hive, Key, NewHive};

/// Size of the regf base block: hbin-relative cell offsets + this = file offsets.
const BASE_BLOCK: u64 = 4096;

/// A BCD store.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Store {
    /// Name of the hive's root key (`NewStoreRoot`, or `System` in build-tool stores).
    pub root_name: String,
    /// Values of the root `Description` key, in stored order.
    pub description: Vec<RawValue>,
    /// Objects in stored (key) order.
    pub objects: Vec<Object>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

fn key_offset(k: &Key<'_>) -> u64 {
    BASE_BLOCK + u64::from(k.offset())
}

impl Store {
    /// An empty store as `bcdedit /createstore` makes it: root `NewStoreRoot`,
    /// `Description\KeyName` = `BCD00000001`, no objects (`fixtures/bcd/empty-createstore`).
    pub fn new() -> Store {
        Store {
            root_name: "NewStoreRoot".into(),
            description: alloc::vec![RawValue {
                name: "KeyName".into(),
                value_type: REG_SZ,
                data: super::element::encode_sz("BCD00000001"),
            }],
            objects: Vec::new(),
        }
    }

    pub fn object(&self, id: &Guid) -> Option<&Object> {
        self.objects.iter().find(|o| o.id == *id)
    }

    pub fn object_mut(&mut self, id: &Guid) -> Option<&mut Object> {
        self.objects.iter_mut().find(|o| o.id == *id)
    }

    /// Add an object, replacing one with the same GUID.
    pub fn insert(&mut self, object: Object) {
        match self.objects.iter_mut().find(|o| o.id == object.id) {
            Some(o) => *o = object,
            None => self.objects.push(object),
        }
    }

    /// A root `Description` value, e.g. `KeyName`.
    pub fn description_value(&self, name: &str) -> Option<&RawValue> {
        self.description
            .iter()
            .find(|v| v.name.eq_ignore_ascii_case(name))
    }

    /// Read a store from a parsed hive.
    pub fn from_hive(hive: &Hive<'_>) -> Result<Store> {
        let root = hive.root()?;
        let root_name = root.name()?;
        let description = match root.subkey("Description")? {
            Some(d) => raw_values(&d, None)?,
            None => Vec::new(),
        };
        let objects_key = root.subkey("Objects")?.ok_or_else(|| {
            Error::not_found(
                Format::Bcd,
                key_offset(&root),
                "Objects key",
                "the root has no `Objects` subkey: not a BCD store",
            )
        })?;
        let mut objects = Vec::new();
        for ok in objects_key.subkeys()? {
            objects.push(read_object(&ok)?);
        }
        Ok(Store {
            root_name,
            description,
            objects,
        })
    }

    /// Write the store into `ed` (normally a hive fresh from [`Editor::new_hive`]); existing
    /// keys are reused and values overwritten.
    pub fn write(&self, ed: &mut Editor) -> Result<()> {
        ed.create_key("Description")?;
        for v in &self.description {
            ed.set_value("Description", &v.name, v.value_type, &v.data)?;
        }
        ed.create_key("Objects")?;
        for o in &self.objects {
            let base = format!("Objects\\{}", o.id);
            let desc = format!("{base}\\Description");
            ed.create_key(&desc)?;
            ed.set_value(&desc, "Type", REG_DWORD, &o.object_type.0.to_le_bytes())?;
            for v in &o.description_extra {
                ed.set_value(&desc, &v.name, v.value_type, &v.data)?;
            }
            let elements = format!("{base}\\Elements");
            ed.create_key(&elements)?;
            for e in &o.elements {
                let key = format!("{elements}\\{}", e.element_type.key_name());
                ed.create_key(&key)?;
                let (t, data) = e.value.encode();
                ed.set_value(&key, "Element", t, &data)?;
            }
        }
        Ok(())
    }

    /// A new hive file holding this store, shaped like bcdedit's (hive 1.3, `lf` lists,
    /// bcdedit's security descriptors, see [`NewHive::bcd`]) with root [`Store::root_name`].
    pub fn to_hive(&self, filetime: u64) -> Result<Vec<u8>> {
        let mut p = NewHive::bcd();
        p.root_name = self.root_name.clone();
        p.timestamp = filetime;
        let mut ed = Editor::new_hive(&p)?;
        self.write(&mut ed)?;
        Ok(ed.finish(filetime))
    }
}

fn raw_values(k: &Key<'_>, skip: Option<&str>) -> Result<Vec<RawValue>> {
    let mut out = Vec::new();
    for v in k.values()? {
        let name = v.name()?;
        if skip.is_some_and(|s| s.eq_ignore_ascii_case(&name)) {
            continue;
        }
        out.push(RawValue {
            name,
            value_type: v.value_type(),
            data: v.data()?.into_owned(),
        });
    }
    Ok(out)
}

fn read_object(ok: &Key<'_>) -> Result<Object> {
    let name = ok.name()?;
    let id = Guid::parse(&name).ok_or_else(|| {
        Error::invalid(
            Format::Bcd,
            key_offset(ok),
            "object key name",
            format!("{name:?} is not a {{GUID}}"),
        )
    })?;
    let desc = ok.subkey("Description")?.ok_or_else(|| {
        Error::not_found(
            Format::Bcd,
            key_offset(ok),
            "object Description key",
            format!("object {id} has no Description key"),
        )
    })?;
    let tv = desc.value("Type")?.ok_or_else(|| {
        Error::not_found(
            Format::Bcd,
            key_offset(&desc),
            "object Type value",
            format!("object {id} has no Description\\Type"),
        )
    })?;
    let td = tv.data()?;
    let object_type = match <[u8; 4]>::try_from(&td[..]) {
        Ok(b) => ObjectType(u32::from_le_bytes(b)),
        Err(_) => {
            return Err(Error::invalid(
                Format::Bcd,
                key_offset(&desc),
                "object Type value",
                format!(
                    "object {id}: Type is {} bytes of type {}, expected a REG_DWORD",
                    td.len(),
                    tv.value_type()
                ),
            ))
        }
    };
    let description_extra = raw_values(&desc, Some("Type"))?;
    let mut elements = Vec::new();
    if let Some(ek) = ok.subkey("Elements")? {
        for k in ek.subkeys()? {
            let kname = k.name()?;
            let ty = ElementType::from_key_name(&kname).ok_or_else(|| {
                Error::invalid(
                    Format::Bcd,
                    key_offset(&k),
                    "element key name",
                    format!("object {id}: element key {kname:?} is not 8 hex digits"),
                )
            })?;
            let v = k.value("Element")?.ok_or_else(|| {
                Error::not_found(
                    Format::Bcd,
                    key_offset(&k),
                    "Element value",
                    format!("object {id}, element {kname}: no Element value"),
                )
            })?;
            let data = v.data()?;
            let value = ElementValue::decode(ty, v.value_type(), &data)
                .map_err(|e| with_context(e, &id, ty))?;
            elements.push(Element {
                element_type: ty,
                value,
            });
        }
    }
    elements.sort_by_key(|e| e.element_type);
    Ok(Object {
        id,
        object_type,
        description_extra,
        elements,
    })
}

/// Re-label a decode error (offset within the element value) with its object and element.
fn with_context(e: Error, id: &Guid, ty: ElementType) -> Error {
    let what = match &e.kind {
        ErrorKind::Invalid(s) => s.clone(),
        other => format!("{other}"),
    };
    Error::new(
        Format::Bcd,
        e.offset,
        e.field,
        ErrorKind::Invalid(format!(
            "object {id}, element {:08x}, byte {:#x} of the element value: {what}",
            ty.0, e.offset
        )),
    )
}
