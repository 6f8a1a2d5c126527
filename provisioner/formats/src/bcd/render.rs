//! `bcdedit /enum all [/v]`-style text of a store, produced offline.
//!
//! Layout, as bcdedit prints it (checked against published `bcdedit` output): every object is a
//! section preceded by an empty line, with a title underlined by dashes of the same length,
//! then `identifier` and each element as its name padded to column 24 followed by the value.
//! Elements appear in ascending element-type order, which is bcdedit's order. Object lists
//! print one GUID per line, continuation lines indented to column 24. Booleans are `Yes`/`No`,
//! integers use bcdedit's symbolic names where it has them (`nx OptIn`, `pae Default`,
//! `graphicsresolution 1024x768`, ...), decimal otherwise, hexadecimal for addresses and for
//! elements without a known name. Unknown element types are shown as `custom:xxxxxxxx`.
//!
//! Deviations from real bcdedit text (this is an offline view; each is deliberate):
//! - **Objects are ordered by (object type, GUID)**; bcdedit `/enum all` uses a similar but
//!   undocumented order.
//! - **Devices**: bcdedit resolves a partition to a drive letter or `\Device\HarddiskVolumeN`,
//!   which needs the running system. Here a partition is what its bytes say:
//!   `partition=<disk 0x43da9ab1, offset 525336576>` (MBR signature, partition start in bytes) or
//!   `partition=<disk {disk-guid}, partition {partition-guid}>` (GPT). Parents of file,
//!   ramdisk and VHD devices use the same text in brackets:
//!   `vhd=[<disk 0x43da9ab1, offset 525336576>]\x.vhd`, `ramdisk=[boot]\sources\boot.wim,{guid}`.
//!   A VHD device whose locate element is not the default one for its element gets
//!   `,locate=custom:xxxxxxxx`; the §2.6b form gets ` <partition ... in the VHD>`; devices this
//!   crate cannot decode are `unknown=<device type 0x7: hex>`.
//! - **Aliases without `/v`**: well-known GUIDs print as their alias (`{bootmgr}`,
//!   `{globalsettings}`, `{ramdiskoptions}`, ...) and the boot manager's `default` target as
//!   `{default}`. `{current}` (the running OS) is never used: there is no running OS offline.
//!   With `verbose`, every GUID is printed raw, as `bcdedit /v` does.
//! - Without `verbose`, class-4 (template/hidden) elements are omitted, as Windows 7+ bcdedit
//!   does; with it they are shown as `custom:xxxxxxxx`.
//! - Values that do not fit their element's format (kept raw by the reader) are printed as
//!   `<raw REG_TYPE n: hex>`.
//! - Inherit objects that are not well known are titled by who may inherit them
//!   ("Boot Loader Settings", "Resume Loader Settings", "Library Settings", ...); bcdedit's
//!   wording for these is not verified.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::element::{ElementType, ElementValue};
use super::guid::{alias_of, well_known, Guid};
use super::object::Object;
use super::store::Store;

/// Column at which values start (bcdedit pads names to 24 characters).
pub const VALUE_COLUMN: usize = 24;

/// Options of [`render_enum`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// `/v`: print GUIDs raw and show hidden (class 4) elements.
    pub verbose: bool,
}

struct Ctx {
    verbose: bool,
    default_target: Option<Guid>,
}

impl Ctx {
    fn guid(&self, g: &Guid) -> String {
        if self.verbose {
            return format!("{g}");
        }
        if self.default_target == Some(*g) {
            return "{default}".into();
        }
        match alias_of(g) {
            Some(a) => a.into(),
            None => format!("{g}"),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn line(out: &mut String, name: &str, value: &str) {
    let mut l = String::from(name);
    let pad = VALUE_COLUMN.saturating_sub(name.len()).max(1);
    l.extend(core::iter::repeat_n(' ', pad));
    l.push_str(value);
    out.push_str(l.trim_end());
    out.push('\n');
}

/// Value text of one element (object lists: one entry per line, joined by `\n`).
pub fn value_text(
    obj: &Object,
    ty: ElementType,
    value: &ElementValue,
    opts: &RenderOptions,
) -> Vec<String> {
    let ctx = Ctx {
        verbose: opts.verbose,
        default_target: None,
    };
    value_lines(&ctx, obj, ty, value)
}

fn value_lines(ctx: &Ctx, obj: &Object, ty: ElementType, value: &ElementValue) -> Vec<String> {
    let one = |s: String| alloc::vec![s];
    match value {
        ElementValue::Device(d) => one(d.text(&|g| ctx.guid(g), ty.0)),
        ElementValue::String(s) => one(s.clone()),
        ElementValue::Object(g) => one(ctx.guid(g)),
        ElementValue::ObjectList(list) => list.iter().map(|g| ctx.guid(g)).collect(),
        ElementValue::Integer(v) => one(ty.format_integer(obj.object_type, *v)),
        ElementValue::Boolean(b) => one(if *b { "Yes" } else { "No" }.into()),
        ElementValue::IntegerList(list) => one(list
            .iter()
            .map(|v| format!("{v:#x}"))
            .collect::<Vec<_>>()
            .join(" ")),
        ElementValue::Raw { value_type, data } => {
            one(format!("<raw REG_TYPE {value_type}: {}>", hex(data)))
        }
    }
}

/// Render one object as a bcdedit section (without the leading empty line).
fn render_object(out: &mut String, ctx: &Ctx, obj: &Object) {
    let title = obj.title();
    out.push_str(&title);
    out.push('\n');
    out.extend(core::iter::repeat_n('-', title.chars().count()));
    out.push('\n');
    line(out, "identifier", &ctx.guid(&obj.id));
    for e in &obj.elements {
        if !ctx.verbose && e.element_type.class() == 4 {
            continue;
        }
        let name = e.element_type.display_name(obj.object_type);
        let lines = value_lines(ctx, obj, e.element_type, &e.value);
        match lines.split_first() {
            None => line(out, &name, ""),
            Some((first, rest)) => {
                line(out, &name, first);
                for l in rest {
                    line(out, "", l);
                }
            }
        }
    }
}

/// The whole store as `bcdedit /enum all` (`/v` with `opts.verbose`) would print it offline.
pub fn render_enum(store: &Store, opts: &RenderOptions) -> String {
    let default_target = store.object(&well_known::BOOTMGR).and_then(|b| {
        b.element(ElementType(0x2300_0003))
            .and_then(|e| match e.value {
                ElementValue::Object(g) => Some(g),
                _ => None,
            })
    });
    let ctx = Ctx {
        verbose: opts.verbose,
        default_target,
    };
    let mut objs: Vec<&Object> = store.objects.iter().collect();
    objs.sort_by_key(|o| (o.object_type, o.id.to_registry_string()));
    let mut out = String::new();
    for o in objs {
        out.push('\n');
        render_object(&mut out, &ctx, o);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bcd::device::{Device, DeviceElement, PartitionLocation};
    use crate::bcd::element::Element;
    use crate::bcd::object::ObjectType;
    use alloc::vec;

    fn sample() -> Store {
        let loader = Guid::parse("{19260817-6666-8888-abcd-000000000001}").unwrap();
        let part = PartitionLocation::Mbr {
            disk_signature: 0x12345678,
            offset: 1 << 20,
        };
        let mut bm = Object::new(well_known::BOOTMGR, ObjectType::BOOTMGR);
        bm.set(Element::new(
            0x11000001,
            ElementValue::Device(DeviceElement::partition(part)),
        ));
        bm.set(Element::new(
            0x12000004,
            ElementValue::String("Windows Boot Manager".into()),
        ));
        bm.set(Element::new(
            0x14000006,
            ElementValue::ObjectList(vec![well_known::GLOBALSETTINGS]),
        ));
        bm.set(Element::new(0x23000003, ElementValue::Object(loader)));
        bm.set(Element::new(
            0x24000001,
            ElementValue::ObjectList(vec![loader, well_known::MEMDIAG]),
        ));
        bm.set(Element::new(0x25000004, ElementValue::Integer(30)));
        bm.set(Element::new(0x26000020, ElementValue::Boolean(true)));
        bm.set(Element::new(0x45000001, ElementValue::Integer(1)));
        let mut ld = Object::new(loader, ObjectType::OSLOADER);
        ld.set(Element::new(
            0x21000001,
            ElementValue::Device(DeviceElement::vhd(
                Device::Partition(part),
                "\\hyperV.vhd",
                0x22000002,
            )),
        ));
        ld.set(Element::new(0x25000020, ElementValue::Integer(1)));
        ld.set(Element::new(0x250000f0, ElementValue::Integer(1)));
        ld.set(Element::new(
            0x17000077,
            ElementValue::IntegerList(vec![0x15000075]),
        ));
        ld.set(Element::new(
            0x12000030,
            ElementValue::Raw {
                value_type: 3,
                data: vec![1, 2],
            },
        ));
        let mut s = Store::new();
        s.insert(ld);
        s.insert(bm);
        s
    }

    #[test]
    fn verbose_layout() {
        let text = render_enum(&sample(), &RenderOptions { verbose: true });
        let expected = "
Windows Boot Manager
--------------------
identifier              {9dea862c-5cdd-4e70-acc1-f32b344d4795}
device                  partition=<disk 0x12345678, offset 1048576>
description             Windows Boot Manager
inherit                 {7ea2e1ac-2e61-4728-aaa3-896d9d0a9f0e}
default                 {19260817-6666-8888-abcd-000000000001}
displayorder            {19260817-6666-8888-abcd-000000000001}
                        {b2721d73-1db4-4c62-bf78-c548a880142d}
timeout                 30
displaybootmenu         Yes
custom:45000001         0x1

Windows Boot Loader
-------------------
identifier              {19260817-6666-8888-abcd-000000000001}
loadoptions             <raw REG_TYPE 3: 0102>
allowedinmemorysettings 0x15000075
osdevice                vhd=[<disk 0x12345678, offset 1048576>]\\hyperV.vhd
nx                      OptOut
hypervisorlaunchtype    Auto
";
        assert_eq!(text, expected);
    }

    #[test]
    fn aliases_without_verbose() {
        let text = render_enum(&sample(), &RenderOptions { verbose: false });
        assert!(text.contains("identifier              {bootmgr}\n"));
        assert!(text.contains("identifier              {default}\n"));
        assert!(text.contains("inherit                 {globalsettings}\n"));
        assert!(
            text.contains("displayorder            {default}\n                        {memdiag}\n")
        );
        assert!(!text.contains("custom:45000001"), "hidden elements need /v");
    }

    #[test]
    fn vhd_with_unexpected_locate_element_says_so() {
        let d = DeviceElement::vhd(Device::Boot, "\\a.vhd", 0x22000002);
        let g = |g: &Guid| format!("{g}");
        assert_eq!(d.text(&g, 0x21000001), "vhd=[boot]\\a.vhd");
        assert_eq!(
            d.text(&g, 0x11000001),
            "vhd=[boot]\\a.vhd,locate=custom:22000002"
        );
        let ram = DeviceElement::ramdisk(
            Device::Boot,
            "\\sources\\boot.wim",
            well_known::RAMDISKOPTIONS,
        );
        assert_eq!(
            ram.text(&g, 0x11000001),
            "ramdisk=[boot]\\sources\\boot.wim,{ae5534e0-a924-466c-b836-758539a3ee3a}"
        );
    }
}
