//! BCD objects: the `Objects\{guid}` keys, their `Description\Type` code and their elements.

use alloc::string::String;
use alloc::vec::Vec;

use super::element::{Element, ElementType};
use super::guid::{well_known, Guid};

/// An object type code (`Objects\{guid}\Description\Type`, REG_DWORD), formats.md §1.4 \[V\]:
/// `objecttype(4 bits) << 28 | imagetype-or-inheritable(4) << 20 | apptype(20)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ObjectType(pub u32);

/// The top nibble of an [`ObjectType`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ObjectKind {
    /// 1: a boot application (boot manager, OS loader, resume, memory tester, ...).
    Application,
    /// 2: an inheritable settings object (`{globalsettings}`, `{bootloadersettings}`, ...).
    Inherit,
    /// 3: device options (`{ramdiskoptions}`).
    Device,
    Other(u8),
}

/// Application type (low 20 bits of an application or inherit object type), formats.md §1.4.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ApplicationType {
    FirmwareBootManager,
    BootManager,
    OsLoader,
    Resume,
    MemoryDiagnostic,
    Ntldr,
    SetupLoader,
    BootSector,
    StartupModule,
    Generic,
    Other(u32),
}

impl ObjectType {
    pub const FWBOOTMGR: ObjectType = ObjectType(0x1010_0001);
    pub const BOOTMGR: ObjectType = ObjectType(0x1010_0002);
    pub const OSLOADER: ObjectType = ObjectType(0x1020_0003);
    pub const RESUME: ObjectType = ObjectType(0x1020_0004);
    pub const MEMDIAG: ObjectType = ObjectType(0x1020_0005);
    pub const NTLDR: ObjectType = ObjectType(0x1030_0006);
    pub const BOOTSECTOR: ObjectType = ObjectType(0x1040_0008);
    /// Inheritable by any object (`{globalsettings}`, `{dbgsettings}`, `{emssettings}`, `{badmemory}`).
    pub const INHERIT_LIBRARY: ObjectType = ObjectType(0x2010_0000);
    /// Inheritable by OS loaders (`{bootloadersettings}`, `{hypervisorsettings}`, `/inherit OSLOADER`).
    pub const INHERIT_OSLOADER: ObjectType = ObjectType(0x2020_0003);
    /// Inheritable by resume applications (`{resumeloadersettings}`).
    pub const INHERIT_RESUME: ObjectType = ObjectType(0x2020_0004);
    pub const DEVICE: ObjectType = ObjectType(0x3000_0000);

    pub fn kind(self) -> ObjectKind {
        match self.0 >> 28 {
            1 => ObjectKind::Application,
            2 => ObjectKind::Inherit,
            3 => ObjectKind::Device,
            n => ObjectKind::Other(n as u8),
        }
    }

    /// Image type of an application (1 firmware, 2 boot app, 3 legacy loader, 4 real mode), or
    /// the "inheritable by" class of an inherit object (1 any, 2 application, 3 device).
    pub fn image_type(self) -> u8 {
        ((self.0 >> 20) & 0xF) as u8
    }

    pub fn raw_app_type(self) -> u32 {
        self.0 & 0xF_FFFF
    }

    /// The application type whose elements this object carries: the object's own for an
    /// application, the inheriting application for an inherit object that is inheritable by
    /// applications (`0x202xxxxx`), `None` otherwise.
    pub fn application_type(self) -> Option<ApplicationType> {
        let applies = match self.kind() {
            ObjectKind::Application => true,
            ObjectKind::Inherit => self.image_type() == 2,
            _ => false,
        };
        if !applies {
            return None;
        }
        Some(match self.raw_app_type() {
            1 => ApplicationType::FirmwareBootManager,
            2 => ApplicationType::BootManager,
            3 => ApplicationType::OsLoader,
            4 => ApplicationType::Resume,
            5 => ApplicationType::MemoryDiagnostic,
            6 => ApplicationType::Ntldr,
            7 => ApplicationType::SetupLoader,
            8 => ApplicationType::BootSector,
            9 => ApplicationType::StartupModule,
            10 => ApplicationType::Generic,
            n => ApplicationType::Other(n),
        })
    }
}

/// A registry value kept verbatim (root `Description` values such as `KeyName`, `System`,
/// `TreatAsSystem`, `GuidCache`, and object `Description` extras such as `FirmwareVariable`).
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RawValue {
    pub name: String,
    pub value_type: u32,
    pub data: Vec<u8>,
}

/// One BCD object (`Objects\{guid}`).
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Object {
    pub id: Guid,
    pub object_type: ObjectType,
    /// `Description` values other than `Type`, in stored order (e.g. `FirmwareVariable`).
    pub description_extra: Vec<RawValue>,
    /// Elements, sorted by element type.
    pub elements: Vec<Element>,
}

impl Object {
    pub fn new(id: Guid, object_type: ObjectType) -> Object {
        Object {
            id,
            object_type,
            description_extra: Vec::new(),
            elements: Vec::new(),
        }
    }

    pub fn element(&self, ty: ElementType) -> Option<&Element> {
        self.elements.iter().find(|e| e.element_type == ty)
    }

    /// Insert or replace an element, keeping the list sorted by type.
    pub fn set(&mut self, element: Element) {
        match self
            .elements
            .binary_search_by_key(&element.element_type, |e| e.element_type)
        {
            Ok(i) => self.elements[i] = element,
            Err(i) => self.elements.insert(i, element),
        }
    }

    pub fn remove(&mut self, ty: ElementType) -> Option<Element> {
        let i = self.elements.iter().position(|e| e.element_type == ty)?;
        Some(self.elements.remove(i))
    }

    /// The section title `bcdedit /enum` prints above this object.
    ///
    /// Titles of the well-known objects and of the application types follow bcdedit's
    /// output. For application types bcdedit has no title for, the text is
    /// `Firmware Application (xxxxxxxx)` for firmware applications (verified:
    /// `Firmware Application (101fffff)`) and `Application (xxxxxxxx)` otherwise; inherit objects
    /// that are not well known are titled by what may inherit them (our choice, see
    /// [`crate::bcd::render`]).
    pub fn title(&self) -> String {
        use alloc::format;
        let known = match self.id {
            id if id == well_known::GLOBALSETTINGS => Some("Global Settings"),
            id if id == well_known::DBGSETTINGS => Some("Debugger Settings"),
            id if id == well_known::EMSSETTINGS => Some("EMS Settings"),
            id if id == well_known::BADMEMORY => Some("RAM Defects"),
            id if id == well_known::BOOTLOADERSETTINGS => Some("Boot Loader Settings"),
            id if id == well_known::HYPERVISORSETTINGS => Some("Hypervisor Settings"),
            id if id == well_known::RESUMELOADERSETTINGS => Some("Resume Loader Settings"),
            id if id == well_known::KERNELDBGSETTINGS => Some("Kernel Debugger Settings"),
            _ => None,
        };
        if let Some(t) = known {
            if self.object_type.kind() == ObjectKind::Inherit {
                return t.into();
            }
        }
        let t = self.object_type;
        match t.kind() {
            ObjectKind::Application => match (t.image_type(), t.application_type()) {
                (_, Some(ApplicationType::FirmwareBootManager)) => "Firmware Boot Manager".into(),
                (_, Some(ApplicationType::BootManager)) => "Windows Boot Manager".into(),
                (_, Some(ApplicationType::OsLoader)) => "Windows Boot Loader".into(),
                (_, Some(ApplicationType::Resume)) => "Resume from Hibernate".into(),
                (_, Some(ApplicationType::MemoryDiagnostic)) => "Windows Memory Tester".into(),
                (_, Some(ApplicationType::Ntldr)) => "Windows Legacy OS Loader".into(),
                (_, Some(ApplicationType::SetupLoader)) => "Windows Setup Loader".into(),
                (_, Some(ApplicationType::BootSector)) => "Real-mode Boot Sector".into(),
                (1, _) => format!("Firmware Application ({:08x})", t.0),
                _ => format!("Application ({:08x})", t.0),
            },
            ObjectKind::Inherit => match (t.image_type(), t.application_type()) {
                (1, _) => "Library Settings".into(),
                (_, Some(ApplicationType::OsLoader)) => "Boot Loader Settings".into(),
                (_, Some(ApplicationType::Resume)) => "Resume Loader Settings".into(),
                (_, Some(ApplicationType::BootManager)) => "Boot Manager Settings".into(),
                _ => format!("Inherited Settings ({:08x})", t.0),
            },
            ObjectKind::Device => "Device options".into(),
            ObjectKind::Other(_) => format!("Object ({:08x})", t.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        0x1010_0002,
        ObjectKind::Application,
        1,
        Some(ApplicationType::BootManager)
    )]
    #[case(
        0x1020_0003,
        ObjectKind::Application,
        2,
        Some(ApplicationType::OsLoader)
    )]
    #[case(0x1030_0006, ObjectKind::Application, 3, Some(ApplicationType::Ntldr))]
    #[case(
        0x101f_ffff,
        ObjectKind::Application,
        1,
        Some(ApplicationType::Other(0xfffff))
    )]
    #[case(0x2010_0000, ObjectKind::Inherit, 1, None)]
    #[case(0x2020_0004, ObjectKind::Inherit, 2, Some(ApplicationType::Resume))]
    #[case(0x3000_0000, ObjectKind::Device, 0, None)]
    fn object_type_fields(
        #[case] code: u32,
        #[case] kind: ObjectKind,
        #[case] image: u8,
        #[case] app: Option<ApplicationType>,
    ) {
        let t = ObjectType(code);
        assert_eq!(t.kind(), kind);
        assert_eq!(t.image_type(), image);
        assert_eq!(t.application_type(), app);
    }

    #[rstest]
    #[case(well_known::BOOTMGR, 0x1010_0002, "Windows Boot Manager")]
    #[case(well_known::FWBOOTMGR, 0x1010_0001, "Firmware Boot Manager")]
    #[case(Guid::NULL, 0x101f_ffff, "Firmware Application (101fffff)")]
    #[case(well_known::EMSSETTINGS, 0x2010_0000, "EMS Settings")]
    #[case(well_known::BADMEMORY, 0x2010_0000, "RAM Defects")]
    #[case(well_known::HYPERVISORSETTINGS, 0x2020_0003, "Hypervisor Settings")]
    #[case(Guid::NULL, 0x2020_0003, "Boot Loader Settings")]
    #[case(well_known::RAMDISKOPTIONS, 0x3000_0000, "Device options")]
    #[case(well_known::NTLDR, 0x1030_0006, "Windows Legacy OS Loader")]
    #[case(Guid::NULL, 0x5000_0000, "Object (50000000)")]
    fn titles(#[case] id: Guid, #[case] ty: u32, #[case] title: &str) {
        assert_eq!(Object::new(id, ObjectType(ty)).title(), title);
    }
}
