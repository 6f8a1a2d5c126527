//! BCD stores: the object/element model on top of a registry hive.
//!
//! A Boot Configuration Data store is a registry hive (formats.md §1): `Objects\{guid}` keys,
//! each with a `Description\Type` object type and `Elements\xxxxxxxx\Element` values. This module
//! reads a store from a [`crate::hive::Hive`] into a [`Store`], writes a [`Store`] into a
//! [`crate::hive::Editor`], encodes and decodes binary device elements, and renders the store
//! as `bcdedit /enum all [/v]`-style text.
//!
//! - [`guid`]: GUIDs (registry text and Windows byte order), well-known objects and aliases.
//! - [`element`]: element type codes, formats, bcdedit names (application-type aware), value
//!   encoding with the exact registry value types Windows uses.
//! - [`device`]: binary device elements (`boot`, `partition=`, `file=`, `ramdisk=`, `locate`,
//!   `vhd=[X:]` (verified byte-exact) and `vhd=[locate]` (\[reconstructed\])).
//! - [`object`]: object types and objects; [`store`]: the store and its hive glue.
//! - [`render`]: the `bcdedit /enum` text and its documented deviations.
//!
//! ```
//! use ufd_formats::bcd::{device::{Device, DeviceElement, PartitionLocation}, element::*, guid::*, object::*, Store};
//! let mut store = Store::new();
//! let ufd = PartitionLocation::Mbr { disk_signature: 0x12345678, offset: 1 << 20 };
//! let mut bm = Object::new(well_known::BOOTMGR, ObjectType::BOOTMGR);
//! bm.set(Element::new(0x11000001, ElementValue::Device(DeviceElement::partition(ufd))));
//! store.insert(bm);
//! let text = ufd_formats::bcd::render::render_enum(&store, &Default::default());
//! assert!(text.contains("device                  partition=<disk 0x12345678, offset 1048576>"));
//! ```

pub mod device;
pub mod element;
pub mod guid;
pub mod object;
pub mod render;
pub mod store;

pub use device::{Device, DeviceElement, PartitionLocation};
pub use element::{Element, ElementFormat, ElementType, ElementValue};
pub use guid::Guid;
pub use object::{Object, ObjectType, RawValue};
pub use render::{render_enum, RenderOptions};
pub use store::Store;
