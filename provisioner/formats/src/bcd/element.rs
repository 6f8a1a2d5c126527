//! BCD elements: type codes, formats, bcdedit names, and the registry encoding of values.
//!
//! An element is the key `Objects\{guid}\Elements\<xxxxxxxx>` whose name is the element type in
//! hexadecimal, holding one value named `Element`. The type code is
//! `class(4 bits) << 28 | format(4) << 24 | subtype(24)` (formats.md §1.3 \[V\]). The registry value
//! type depends on the format (formats.md §1.5 \[V\], checked on every fixture store):
//!
//! | format | value | encoding written here |
//! |---|---|---|
//! | 1 device | REG_BINARY | [`super::device`] |
//! | 2 string | REG_SZ | UTF-16LE + NUL |
//! | 3 object | REG_SZ | `{guid}` lower case + NUL |
//! | 4 object list | REG_MULTI_SZ | `{guid}\0{guid}\0\0` |
//! | 5 integer | REG_BINARY | u64 LE (8 bytes) |
//! | 6 boolean | REG_BINARY | 1 byte 00/01 |
//! | 7 integer list | REG_BINARY | u64 LE array |
//!
//! Reading is tolerant where Windows is: integers shorter than 8 bytes are zero-extended
//! (Microsoft build tools store 1- and 3-byte integers, `fixtures/bcd/win10-iso-ramdisk`), a
//! boolean may be 1..8 bytes holding 0 or 1, a REG_SZ is read up to its first NUL (what the boot
//! manager and bcdedit see; slack after it, e.g. `Ramdisk Options\0%` in `fixtures/bcd/win7-bios`,
//! is not kept). Anything else — a value type that does not fit the format, unparsable GUIDs,
//! odd lengths, unknown formats — is kept verbatim as [`ElementValue::Raw`]: elements are never
//! dropped.
//!
//! Names: bcdedit's friendly names depend on the object's application type for class-2
//! (application) elements (`0x21000001` is `osdevice` in an OS loader but `filedevice` in a resume
//! object, `0x23000003` is `default` in the boot manager but `resumeobject` in an OS loader). The
//! tables below come from ReactOS `boot/environ/include/bcd.h`, phnt `ntbcd.h`, Geoff Chappell's
//! "BCD Elements" page and the ntloader oracle (`fixtures/bcd/ntloader/bcd.bat`, where every
//! name used there is verified against the element key it wrote). Types without a name are
//! shown as `custom:xxxxxxxx`, as bcdedit does.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::device::DeviceElement;
use super::guid::Guid;
use super::object::{ApplicationType, ObjectType};
use crate::error::Result;
use crate::hive::value_type::{REG_BINARY, REG_MULTI_SZ, REG_SZ};

/// An element type code (the element's key name).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ElementType(pub u32);

/// Format nibble of an [`ElementType`] (bits 27..24).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ElementFormat {
    Device,
    String,
    Object,
    ObjectList,
    Integer,
    Boolean,
    IntegerList,
    Unknown(u8),
}

impl ElementType {
    /// 1 library, 2 application, 3 device, 4 template/hidden, 5 OEM.
    pub fn class(self) -> u8 {
        (self.0 >> 28) as u8
    }
    pub fn subtype(self) -> u32 {
        self.0 & 0x00FF_FFFF
    }
    pub fn format(self) -> ElementFormat {
        match (self.0 >> 24) & 0xF {
            1 => ElementFormat::Device,
            2 => ElementFormat::String,
            3 => ElementFormat::Object,
            4 => ElementFormat::ObjectList,
            5 => ElementFormat::Integer,
            6 => ElementFormat::Boolean,
            7 => ElementFormat::IntegerList,
            n => ElementFormat::Unknown(n as u8),
        }
    }
    /// The key name bcdedit writes: 8 lower-case hex digits.
    pub fn key_name(self) -> String {
        format!("{:08x}", self.0)
    }
    /// Parse a key name (8 hex digits, any case).
    pub fn from_key_name(name: &str) -> Option<ElementType> {
        if name.len() != 8 || !name.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(name, 16).ok().map(ElementType)
    }
    /// bcdedit's name for this element in an object of type `obj`, if it has one.
    pub fn name(self, obj: ObjectType) -> Option<&'static str> {
        let scope = scope_for(self, obj)?;
        NAMES
            .iter()
            .find(|(t, s, _)| *t == self.0 && *s == scope)
            .map(|(_, _, n)| *n)
    }
    /// The name bcdedit prints: the friendly name, or `custom:xxxxxxxx`.
    pub fn display_name(self, obj: ObjectType) -> Cow<'static, str> {
        match self.name(obj) {
            Some(n) => Cow::Borrowed(n),
            None => Cow::Owned(format!("custom:{:08x}", self.0)),
        }
    }
    /// Resolve a bcdedit element name (or `custom:xxxxxxxx`) for an object of type `obj`.
    pub fn from_name(name: &str, obj: ObjectType) -> Option<ElementType> {
        if let Some(hex) = name.strip_prefix("custom:") {
            return ElementType::from_key_name(hex);
        }
        NAMES
            .iter()
            .filter(|(_, _, n)| n.eq_ignore_ascii_case(name))
            .map(|(t, _, _)| ElementType(*t))
            .find(|t| t.name(obj).is_some_and(|n| n.eq_ignore_ascii_case(name)))
    }
}

/// Which name table an element type is looked up in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scope {
    Library,
    BootMgr,
    OsLoader,
    Resume,
    MemDiag,
    Legacy,
    Device,
}

fn scope_for(ty: ElementType, obj: ObjectType) -> Option<Scope> {
    match ty.class() {
        1 => Some(Scope::Library),
        3 => Some(Scope::Device),
        2 => match obj.application_type()? {
            ApplicationType::FirmwareBootManager | ApplicationType::BootManager => {
                Some(Scope::BootMgr)
            }
            ApplicationType::OsLoader => Some(Scope::OsLoader),
            ApplicationType::Resume => Some(Scope::Resume),
            ApplicationType::MemoryDiagnostic => Some(Scope::MemDiag),
            ApplicationType::Ntldr | ApplicationType::SetupLoader | ApplicationType::BootSector => {
                Some(Scope::Legacy)
            }
            _ => None,
        },
        _ => None,
    }
}

use Scope::{BootMgr, Device as Dev, Legacy, Library as Lib, MemDiag, OsLoader as Osl, Resume};

/// `(type, scope, bcdedit name)`.
#[rustfmt::skip]
const NAMES: &[(u32, Scope, &str)] = &[
    // ---- library (class 1), valid in every object ----
    (0x11000001, Lib, "device"), (0x12000002, Lib, "path"), (0x12000004, Lib, "description"),
    (0x12000005, Lib, "locale"), (0x14000006, Lib, "inherit"), (0x15000007, Lib, "truncatememory"),
    (0x14000008, Lib, "recoverysequence"), (0x16000009, Lib, "recoveryenabled"),
    (0x1700000a, Lib, "badmemorylist"), (0x1600000b, Lib, "badmemoryaccess"),
    (0x1500000c, Lib, "firstmegabytepolicy"), (0x1500000d, Lib, "relocatephysical"),
    (0x1500000e, Lib, "avoidlowmemory"), (0x1600000f, Lib, "traditionalkseg"),
    (0x16000010, Lib, "bootdebug"), (0x15000011, Lib, "debugtype"), (0x15000012, Lib, "debugaddress"),
    (0x15000013, Lib, "debugport"), (0x15000014, Lib, "baudrate"), (0x15000015, Lib, "channel"),
    (0x12000016, Lib, "targetname"), (0x16000017, Lib, "noumex"), (0x15000018, Lib, "debugstart"),
    (0x12000019, Lib, "busparams"), (0x1500001a, Lib, "hostip"), (0x1500001b, Lib, "port"),
    (0x1600001c, Lib, "dhcp"), (0x1200001d, Lib, "key"), (0x1600001e, Lib, "vm"),
    (0x16000020, Lib, "bootems"), (0x15000022, Lib, "emsport"), (0x15000023, Lib, "emsbaudrate"),
    (0x12000030, Lib, "loadoptions"), (0x16000040, Lib, "advancedoptions"),
    (0x16000041, Lib, "optionsedit"), (0x15000042, Lib, "keyringaddress"),
    (0x11000043, Lib, "bootstatdevice"), (0x12000044, Lib, "bootstatfilepath"),
    (0x16000045, Lib, "preservebootstat"), (0x16000046, Lib, "graphicsmodedisabled"),
    (0x15000047, Lib, "configaccesspolicy"), (0x16000048, Lib, "nointegritychecks"),
    (0x16000049, Lib, "testsigning"), (0x1200004a, Lib, "fontpath"),
    (0x1500004b, Lib, "integrityservices"), (0x1500004c, Lib, "volumebandid"),
    (0x16000050, Lib, "extendedinput"), (0x15000051, Lib, "initialconsoleinput"),
    (0x15000052, Lib, "graphicsresolution"), (0x16000053, Lib, "restartonfailure"),
    (0x16000054, Lib, "highestmode"), (0x16000060, Lib, "isolatedcontext"),
    (0x15000065, Lib, "displaymessage"), (0x15000066, Lib, "displaymessageoverride"),
    (0x16000068, Lib, "nobootuxtext"), (0x16000069, Lib, "nobootuxprogress"),
    (0x1600006a, Lib, "nobootuxfade"), (0x1600006b, Lib, "bootuxreservepooldebug"),
    (0x1600006c, Lib, "bootuxdisabled"), (0x1500006d, Lib, "bootuxfadeframes"),
    (0x1600006e, Lib, "bootuxdumpstats"), (0x1600006f, Lib, "bootuxshowstats"),
    (0x16000071, Lib, "multibootsystem"), (0x16000072, Lib, "nokeyboard"),
    (0x15000073, Lib, "aliaswindowskey"), (0x16000074, Lib, "bootshutdowndisabled"),
    (0x15000075, Lib, "performancefrequency"), (0x15000076, Lib, "securebootrawpolicy"),
    (0x17000077, Lib, "allowedinmemorysettings"), (0x15000079, Lib, "bootuxtransitiontime"),
    (0x1600007a, Lib, "mobilegraphics"), (0x1600007b, Lib, "forcefipscrypto"),
    (0x1500007d, Lib, "booterrorux"), (0x1600007e, Lib, "flightsigning"),
    (0x1500007f, Lib, "measuredbootlogformat"), (0x15000080, Lib, "displayrotation"),
    (0x15000081, Lib, "logcontrol"), (0x16000082, Lib, "nofirmwaresync"),
    (0x11000084, Lib, "windowssyspart"), (0x16000087, Lib, "numlock"),
    // ---- boot manager / firmware boot manager (class 2) ----
    (0x24000001, BootMgr, "displayorder"), (0x24000002, BootMgr, "bootsequence"),
    (0x23000003, BootMgr, "default"), (0x25000004, BootMgr, "timeout"),
    (0x26000005, BootMgr, "resume"), (0x23000006, BootMgr, "resumeobject"),
    (0x24000007, BootMgr, "startupsequence"), (0x24000010, BootMgr, "toolsdisplayorder"),
    (0x26000020, BootMgr, "displaybootmenu"), (0x26000021, BootMgr, "noerrordisplay"),
    (0x21000022, BootMgr, "bcddevice"), (0x22000023, BootMgr, "bcdfilepath"),
    (0x26000024, BootMgr, "hormenabled"), (0x26000025, BootMgr, "hiberboot"),
    (0x22000026, BootMgr, "passwordoverride"), (0x22000027, BootMgr, "pinpassphraseoverride"),
    (0x26000028, BootMgr, "processcustomactionsfirst"), (0x27000030, BootMgr, "customactions"),
    (0x26000031, BootMgr, "persistbootsequence"), (0x26000032, BootMgr, "skipstartupsequence"),
    (0x22000040, BootMgr, "fverecoveryurl"), (0x22000041, BootMgr, "fverecoverymessage"),
    // ---- OS loader (class 2) ----
    (0x21000001, Osl, "osdevice"), (0x22000002, Osl, "systemroot"), (0x23000003, Osl, "resumeobject"),
    (0x26000004, Osl, "stampdisks"), (0x26000010, Osl, "detecthal"), (0x22000011, Osl, "kernel"),
    (0x22000012, Osl, "hal"), (0x22000013, Osl, "dbgtransport"), (0x25000020, Osl, "nx"),
    (0x25000021, Osl, "pae"), (0x26000022, Osl, "winpe"), (0x26000024, Osl, "nocrashautoreboot"),
    (0x26000025, Osl, "lastknowngood"), (0x26000026, Osl, "oslnointegritychecks"),
    (0x26000027, Osl, "osltestsigning"), (0x26000030, Osl, "nolowmem"),
    (0x25000031, Osl, "removememory"), (0x25000032, Osl, "increaseuserva"),
    (0x25000033, Osl, "perfmem"), (0x26000040, Osl, "vga"), (0x26000041, Osl, "quietboot"),
    (0x26000042, Osl, "novesa"), (0x26000043, Osl, "novga"),
    (0x25000050, Osl, "clustermodeaddressing"), (0x26000051, Osl, "usephysicaldestination"),
    (0x25000052, Osl, "restrictapiccluster"), (0x22000053, Osl, "evstore"),
    (0x26000054, Osl, "uselegacyapicmode"), (0x26000060, Osl, "onecpu"),
    (0x25000061, Osl, "numproc"), (0x26000062, Osl, "maxproc"), (0x25000063, Osl, "configflags"),
    (0x26000064, Osl, "maxgroup"), (0x26000065, Osl, "groupaware"), (0x25000066, Osl, "groupsize"),
    (0x26000070, Osl, "usefirmwarepcisettings"), (0x25000071, Osl, "msi"),
    (0x25000072, Osl, "pciexpress"), (0x25000080, Osl, "safeboot"),
    (0x26000081, Osl, "safebootalternateshell"), (0x26000090, Osl, "bootlog"),
    (0x26000091, Osl, "sos"), (0x260000a0, Osl, "debug"), (0x260000a1, Osl, "halbreakpoint"),
    (0x260000a2, Osl, "useplatformclock"), (0x260000a3, Osl, "forcelegacyplatform"),
    (0x260000a4, Osl, "useplatformtick"), (0x260000a5, Osl, "disabledynamictick"),
    (0x250000a6, Osl, "tscsyncpolicy"), (0x260000b0, Osl, "ems"),
    (0x250000c0, Osl, "forcefailure"), (0x250000c1, Osl, "driverloadfailurepolicy"),
    (0x250000c2, Osl, "bootmenupolicy"), (0x260000c3, Osl, "onetimeadvancedoptions"),
    (0x260000c4, Osl, "onetimeoptionsedit"), (0x250000e0, Osl, "bootstatuspolicy"),
    (0x260000e1, Osl, "disableelamdrivers"), (0x250000f0, Osl, "hypervisorlaunchtype"),
    (0x220000f1, Osl, "hypervisorpath"), (0x260000f2, Osl, "hypervisordebug"),
    (0x250000f3, Osl, "hypervisordebugtype"), (0x250000f4, Osl, "hypervisordebugport"),
    (0x250000f5, Osl, "hypervisorbaudrate"), (0x250000f6, Osl, "hypervisorchannel"),
    (0x250000f7, Osl, "bootux"), (0x260000f8, Osl, "hypervisordisableslat"),
    (0x220000f9, Osl, "hypervisorbusparams"), (0x250000fa, Osl, "hypervisornumproc"),
    (0x250000fb, Osl, "hypervisorrootprocpernode"), (0x260000fc, Osl, "hypervisoruselargevtlb"),
    (0x250000fd, Osl, "hypervisorhostip"), (0x250000fe, Osl, "hypervisorhostport"),
    (0x250000ff, Osl, "hypervisordebugpages"), (0x25000100, Osl, "tpmbootentropy"),
    (0x22000110, Osl, "hypervisorusekey"), (0x22000112, Osl, "hypervisorproductskutype"),
    (0x25000113, Osl, "hypervisorrootproc"), (0x26000114, Osl, "hypervisordhcp"),
    (0x25000115, Osl, "hypervisoriommupolicy"), (0x26000116, Osl, "hypervisorusevapic"),
    (0x22000117, Osl, "hypervisorloadoptions"), (0x25000118, Osl, "hypervisormsrfilterpolicy"),
    (0x25000119, Osl, "hypervisormmionxpolicy"), (0x2500011a, Osl, "hypervisorschedulertype"),
    (0x25000120, Osl, "xsavepolicy"), (0x2500012b, Osl, "xsavedisable"),
    (0x2500012c, Osl, "kerneldebugtype"), (0x2200012d, Osl, "kernelbusparams"),
    (0x2500012e, Osl, "kerneldebugaddress"), (0x2500012f, Osl, "kerneldebugport"),
    (0x25000131, Osl, "kernelchannel"), (0x22000132, Osl, "kerneltargetname"),
    (0x25000133, Osl, "kernelhostip"), (0x25000134, Osl, "kernelport"),
    (0x26000135, Osl, "kerneldhcp"), (0x22000136, Osl, "kernelkey"),
    (0x22000137, Osl, "imchivename"), (0x21000138, Osl, "imcdevice"),
    (0x25000139, Osl, "kernelbaudrate"), (0x22000140, Osl, "mfgmode"), (0x26000141, Osl, "event"),
    (0x25000142, Osl, "vsmlaunchtype"), (0x25000144, Osl, "hypervisorenforcedcodeintegrity"),
    (0x21000150, Osl, "systemdatadevice"), (0x21000151, Osl, "osarcdevice"),
    (0x21000153, Osl, "osdatadevice"), (0x21000154, Osl, "bspdevice"),
    (0x21000155, Osl, "bspfilepath"),
    // ---- resume (class 2) ----
    (0x21000001, Resume, "filedevice"), (0x22000002, Resume, "filepath"),
    (0x26000003, Resume, "customsettings"), (0x26000004, Resume, "pae"),
    (0x21000005, Resume, "associatedosdevice"), (0x26000006, Resume, "debugoptionenabled"),
    (0x25000007, Resume, "bootux"), (0x25000008, Resume, "bootmenupolicy"),
    (0x26000024, Resume, "hormenabled"),
    // ---- memory diagnostic (class 2) ----
    (0x25000001, MemDiag, "passcount"), (0x25000002, MemDiag, "testmix"),
    (0x25000003, MemDiag, "failurecount"), (0x25000004, MemDiag, "testtofail"),
    (0x26000005, MemDiag, "cacheenable"),
    // ---- legacy loader / boot sector (class 2) ----
    (0x22000001, Legacy, "bpbstring"),
    // ---- device options (class 3) ----
    (0x35000001, Dev, "ramdiskimageoffset"), (0x35000002, Dev, "ramdisktftpclientport"),
    (0x31000003, Dev, "ramdisksdidevice"), (0x32000004, Dev, "ramdisksdipath"),
    (0x35000005, Dev, "ramdiskimagelength"), (0x36000006, Dev, "exportascd"),
    (0x35000007, Dev, "ramdisktftpblocksize"), (0x35000008, Dev, "ramdisktftpwindowsize"),
    (0x36000009, Dev, "ramdiskmcenabled"), (0x3600000a, Dev, "ramdiskmctftpfallback"),
    (0x3600000b, Dev, "ramdisktftpvarwindow"),
];

/// `(value, bcdedit name)` pairs of one integer element.
type ValueNames = &'static [(u64, &'static str)];

/// Named integer values bcdedit prints (and accepts) instead of the number: `(type, scope, table)`.
#[rustfmt::skip]
const INTEGER_NAMES: &[(u32, Scope, ValueNames)] = &[
    (0x25000020, Osl, &[(0, "OptIn"), (1, "OptOut"), (2, "AlwaysOff"), (3, "AlwaysOn")]),
    (0x25000021, Osl, &[(0, "Default"), (1, "ForceEnable"), (2, "ForceDisable")]),
    (0x25000080, Osl, &[(0, "Minimal"), (1, "Network"), (2, "DsRepair")]),
    (0x250000c2, Osl, &[(0, "Legacy"), (1, "Standard")]),
    (0x25000008, Resume, &[(0, "Legacy"), (1, "Standard")]),
    (0x250000f0, Osl, &[(0, "Off"), (1, "Auto")]),
    (0x25000142, Osl, &[(0, "Off"), (1, "Auto")]),
    (0x250000f3, Osl, &[(0, "Serial"), (1, "1394"), (2, "None"), (3, "Net")]),
    (0x2500012c, Osl, &[(0, "Serial"), (1, "1394"), (2, "USB"), (3, "NET"), (4, "Local")]),
    (0x15000011, Lib, &[(0, "Serial"), (1, "1394"), (2, "USB"), (3, "NET"), (4, "Local")]),
    (0x15000052, Lib, &[(0, "1024x768"), (1, "800x600"), (2, "1024x600")]),
    (0x1500000c, Lib, &[(0, "UseNone"), (1, "UseAll"), (2, "UsePrivate")]),
    (0x15000047, Lib, &[(0, "Default"), (1, "DisallowMmConfig")]),
    (0x1500004b, Lib, &[(0, "Default"), (1, "Enable"), (2, "Disable")]),
    (0x15000065, Lib, DISPLAY_MESSAGES),
    (0x15000066, Lib, DISPLAY_MESSAGES),
    (0x250000a6, Osl, &[(0, "Default"), (1, "Legacy"), (2, "Enhanced")]),
    (0x250000c1, Osl, &[(0, "Fatal"), (1, "UseErrorControl")]),
    (0x25000071, Osl, &[(0, "Default"), (1, "ForceDisable")]),
    (0x25000072, Osl, &[(0, "Default"), (1, "ForceDisable")]),
    (0x25000115, Osl, &[(0, "Default"), (1, "Enable"), (2, "Disable")]),
    (0x250000e0, Osl, &[(0, "DisplayAllFailures"), (1, "IgnoreAllFailures"), (2, "IgnoreShutdownFailures"),
                        (3, "IgnoreBootFailures"), (4, "IgnoreCheckpointFailures"), (5, "DisplayShutdownFailures"),
                        (6, "DisplayBootFailures"), (7, "DisplayCheckpointFailures")]),
    (0x25000002, MemDiag, &[(0, "Basic"), (1, "Extended")]),
];

#[rustfmt::skip]
const DISPLAY_MESSAGES: &[(u64, &str)] = &[
    (0, "Default"), (1, "Resume"), (2, "HyperV"), (3, "Recovery"), (4, "StartupRepair"),
    (5, "SystemImageRecovery"), (6, "CommandPrompt"), (7, "SystemRestore"), (8, "PushButtonReset"),
];

/// Integer elements bcdedit prints in hexadecimal (addresses and masks).
const HEX_INTEGERS: &[u32] = &[
    0x15000007, 0x1500000d, 0x1500000e, 0x15000012, 0x15000042, 0x15000073,
];

impl ElementType {
    /// The symbolic value table of an integer element (`nx` → OptIn/OptOut/...), if any.
    pub fn integer_names(self, obj: ObjectType) -> Option<&'static [(u64, &'static str)]> {
        let scope = scope_for(self, obj)?;
        INTEGER_NAMES
            .iter()
            .find(|(t, s, _)| *t == self.0 && *s == scope)
            .map(|(_, _, tab)| *tab)
    }

    /// Format an integer the way bcdedit prints it for this element.
    pub fn format_integer(self, obj: ObjectType, v: u64) -> String {
        if let Some(n) = self
            .integer_names(obj)
            .and_then(|t| t.iter().find(|(x, _)| *x == v))
        {
            return n.1.into();
        }
        if self.name(obj).is_none() || HEX_INTEGERS.contains(&self.0) {
            format!("{v:#x}")
        } else {
            format!("{v}")
        }
    }

    /// Parse an integer as bcdedit accepts it for this element: a symbolic name
    /// (case-insensitive), decimal, or `0x` hexadecimal.
    pub fn parse_integer(self, obj: ObjectType, text: &str) -> Option<u64> {
        let t = text.trim();
        if let Some(v) = self
            .integer_names(obj)
            .and_then(|tab| tab.iter().find(|(_, n)| n.eq_ignore_ascii_case(t)))
        {
            return Some(v.0);
        }
        match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => t.parse().ok(),
        }
    }
}

/// A decoded element value.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(
    feature = "serde",
    serde(tag = "format", content = "value", rename_all = "snake_case")
)]
pub enum ElementValue {
    Device(DeviceElement),
    String(String),
    Object(Guid),
    ObjectList(Vec<Guid>),
    Integer(u64),
    Boolean(bool),
    IntegerList(Vec<u64>),
    /// Kept verbatim: a value whose registry type or bytes do not fit the element's format,
    /// or an element of an unknown format.
    Raw {
        value_type: u32,
        data: Vec<u8>,
    },
}

/// One element of an object.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Element {
    pub element_type: ElementType,
    pub value: ElementValue,
}

impl Element {
    pub fn new(element_type: u32, value: ElementValue) -> Element {
        Element {
            element_type: ElementType(element_type),
            value,
        }
    }
}

fn utf16_units(data: &[u8]) -> impl Iterator<Item = u16> + '_ {
    data.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
}

/// Read a REG_SZ the way Windows does: up to the first NUL. `None` if there is no NUL and the
/// length is odd, or the text is not valid UTF-16.
fn read_sz(data: &[u8]) -> Option<String> {
    let units: Vec<u16> = utf16_units(data).take_while(|&u| u != 0).collect();
    let terminated = units.len() < data.len() / 2;
    if !terminated && data.len() % 2 != 0 {
        return None;
    }
    String::from_utf16(&units).ok()
}

/// Encode a string as REG_SZ data (UTF-16LE + NUL).
pub fn encode_sz(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity((s.len() + 1) * 2);
    for u in s.encode_utf16().chain(core::iter::once(0)) {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

fn read_multi_sz(data: &[u8]) -> Option<Vec<String>> {
    if data.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = utf16_units(data).collect();
    let mut out = Vec::new();
    for part in units.split(|&u| u == 0) {
        if part.is_empty() {
            continue;
        }
        out.push(String::from_utf16(part).ok()?);
    }
    Some(out)
}

impl ElementValue {
    /// Decode the `Element` value of an element of type `ty`. Only device elements can fail
    /// (malformed descriptors); the error's offset is the byte offset within the value.
    pub fn decode(ty: ElementType, value_type: u32, data: &[u8]) -> Result<ElementValue> {
        let raw = || ElementValue::Raw {
            value_type,
            data: data.to_vec(),
        };
        Ok(match (ty.format(), value_type) {
            (ElementFormat::Device, REG_BINARY) => {
                ElementValue::Device(DeviceElement::decode(data)?)
            }
            (ElementFormat::String, REG_SZ) => {
                read_sz(data).map(ElementValue::String).unwrap_or_else(raw)
            }
            (ElementFormat::Object, REG_SZ) => read_sz(data)
                .and_then(|s| Guid::parse(&s))
                .map(ElementValue::Object)
                .unwrap_or_else(raw),
            (ElementFormat::ObjectList, REG_MULTI_SZ) => read_multi_sz(data)
                .and_then(|v| v.iter().map(|s| Guid::parse(s)).collect::<Option<Vec<_>>>())
                .map(ElementValue::ObjectList)
                .unwrap_or_else(raw),
            (ElementFormat::Integer, REG_BINARY) if (1..=8).contains(&data.len()) => {
                ElementValue::Integer(le_u64(data))
            }
            (ElementFormat::Boolean, REG_BINARY)
                if (1..=8).contains(&data.len()) && le_u64(data) <= 1 =>
            {
                ElementValue::Boolean(le_u64(data) == 1)
            }
            (ElementFormat::IntegerList, REG_BINARY) if data.len() % 8 == 0 => {
                ElementValue::IntegerList(data.chunks_exact(8).map(le_u64).collect())
            }
            _ => raw(),
        })
    }

    /// Registry value type and data, as bcdedit writes them.
    pub fn encode(&self) -> (u32, Vec<u8>) {
        match self {
            ElementValue::Device(d) => (REG_BINARY, d.encode()),
            ElementValue::String(s) => (REG_SZ, encode_sz(s)),
            ElementValue::Object(g) => (REG_SZ, encode_sz(&g.to_registry_string())),
            ElementValue::ObjectList(list) => {
                let mut out = Vec::new();
                for g in list {
                    out.extend(encode_sz(&g.to_registry_string()));
                }
                out.extend_from_slice(&[0, 0]);
                (REG_MULTI_SZ, out)
            }
            ElementValue::Integer(v) => (REG_BINARY, v.to_le_bytes().to_vec()),
            ElementValue::Boolean(b) => (REG_BINARY, alloc::vec![u8::from(*b)]),
            ElementValue::IntegerList(list) => (
                REG_BINARY,
                list.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            ElementValue::Raw { value_type, data } => (*value_type, data.clone()),
        }
    }
}

fn le_u64(data: &[u8]) -> u64 {
    data.iter()
        .take(8)
        .enumerate()
        .fold(0u64, |acc, (i, &b)| acc | (u64::from(b) << (8 * i)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hive::value_type::REG_DWORD;
    use rstest::rstest;

    const OSL: ObjectType = ObjectType::OSLOADER;
    const RES: ObjectType = ObjectType::RESUME;
    const BMG: ObjectType = ObjectType::BOOTMGR;

    #[rstest]
    #[case(0x21000001, OSL, "osdevice")]
    #[case(0x21000001, RES, "filedevice")]
    #[case(0x22000002, OSL, "systemroot")]
    #[case(0x22000002, RES, "filepath")]
    #[case(0x23000003, BMG, "default")]
    #[case(0x23000003, OSL, "resumeobject")]
    #[case(0x25000004, BMG, "timeout")]
    #[case(0x25000004, ObjectType::MEMDIAG, "testtofail")]
    #[case(0x11000001, ObjectType::DEVICE, "device")]
    #[case(0x31000003, ObjectType::DEVICE, "ramdisksdidevice")]
    #[case(0x25000020, ObjectType::INHERIT_OSLOADER, "nx")]
    #[case(0x25000020, ObjectType::INHERIT_LIBRARY, "custom:25000020")]
    #[case(0x45000001, OSL, "custom:45000001")]
    #[case(0x1600007e, BMG, "flightsigning")]
    fn names_depend_on_application(#[case] ty: u32, #[case] obj: ObjectType, #[case] name: &str) {
        let t = ElementType(ty);
        assert_eq!(t.display_name(obj), name);
        assert_eq!(ElementType::from_name(name, obj), Some(t));
    }

    #[test]
    fn name_lookup_is_scoped() {
        assert_eq!(ElementType::from_name("osdevice", RES), None);
        assert_eq!(
            ElementType::from_name("filedevice", RES),
            Some(ElementType(0x21000001))
        );
        assert_eq!(ElementType::from_name("nosuchname", OSL), None);
    }

    #[test]
    fn fields_and_key_names() {
        let t = ElementType::from_key_name("250000F3").unwrap();
        assert_eq!(t, ElementType(0x250000f3));
        assert_eq!(t.class(), 2);
        assert_eq!(t.format(), ElementFormat::Integer);
        assert_eq!(t.subtype(), 0xf3);
        assert_eq!(t.key_name(), "250000f3");
        assert_eq!(ElementType::from_key_name("2500f3"), None);
        assert_eq!(ElementType::from_key_name("2500z0f3"), None);
    }

    #[rstest]
    #[case(0x25000004, vec![0x1e], ElementValue::Integer(30))]
    #[case(0x15000014, vec![0x00, 0xc2, 0x01], ElementValue::Integer(115200))]
    #[case(0x25000004, vec![1, 0, 0, 0, 0, 0, 0, 0], ElementValue::Integer(1))]
    #[case(0x26000020, vec![0], ElementValue::Boolean(false))]
    #[case(0x26000020, vec![1], ElementValue::Boolean(true))]
    #[case(0x17000077, vec![0x75, 0, 0, 0x15, 0, 0, 0, 0], ElementValue::IntegerList(vec![0x15000075]))]
    fn binary_values(#[case] ty: u32, #[case] data: Vec<u8>, #[case] expected: ElementValue) {
        assert_eq!(
            ElementValue::decode(ElementType(ty), REG_BINARY, &data).unwrap(),
            expected
        );
    }

    #[rstest]
    #[case(0x25000004, REG_BINARY, vec![])]
    #[case(0x25000004, REG_BINARY, vec![0; 9])]
    #[case(0x26000020, REG_BINARY, vec![2])]
    #[case(0x17000077, REG_BINARY, vec![1, 2, 3])]
    #[case(0x25000004, REG_DWORD, vec![1, 0, 0, 0])]
    #[case(0x12000004, REG_BINARY, vec![0x41, 0])]
    #[case(0x12000004, REG_SZ, vec![0x41, 0, 0x42])]
    #[case(0x12000004, REG_SZ, vec![0x00, 0xd8, 0, 0])]
    #[case(0x23000003, REG_SZ, encode_sz("{not-a-guid}"))]
    #[case(0x14000006, REG_MULTI_SZ, [encode_sz("{bootmgr}"), vec![0, 0]].concat())]
    #[case(0x14000006, REG_MULTI_SZ, vec![0x41])]
    #[case(0x48000001, REG_BINARY, vec![1, 2, 3])]
    fn misfits_are_kept_raw(#[case] ty: u32, #[case] value_type: u32, #[case] data: Vec<u8>) {
        let v = ElementValue::decode(ElementType(ty), value_type, &data).unwrap();
        assert_eq!(
            v,
            ElementValue::Raw {
                value_type,
                data: data.clone()
            }
        );
        assert_eq!(v.encode(), (value_type, data));
    }

    #[test]
    fn strings_read_to_first_nul_and_encode_with_one() {
        let mut data = encode_sz("Ramdisk Options");
        data.extend_from_slice(&[0x25, 0x00]);
        let v = ElementValue::decode(ElementType(0x12000004), REG_SZ, &data).unwrap();
        assert_eq!(v, ElementValue::String("Ramdisk Options".into()));
        assert_eq!(v.encode(), (REG_SZ, encode_sz("Ramdisk Options")));
        // no terminator at all, even length: still a string
        let v = ElementValue::decode(ElementType(0x12000004), REG_SZ, &[0x41, 0]).unwrap();
        assert_eq!(v, ElementValue::String("A".into()));
    }

    #[test]
    fn object_and_list_encodings_match_bcdedit() {
        let g = crate::bcd::guid::well_known::GLOBALSETTINGS;
        let (t, d) = ElementValue::Object(g).encode();
        assert_eq!(t, REG_SZ);
        assert_eq!(d, encode_sz("{7ea2e1ac-2e61-4728-aaa3-896d9d0a9f0e}"));
        let (t, d) = ElementValue::ObjectList(vec![g, g]).encode();
        assert_eq!(t, REG_MULTI_SZ);
        assert_eq!(d.len(), 2 * (39 * 2) + 2);
        assert_eq!(&d[d.len() - 4..], &[0, 0, 0, 0]);
        let back = ElementValue::decode(ElementType(0x14000006), REG_MULTI_SZ, &d).unwrap();
        assert_eq!(back, ElementValue::ObjectList(vec![g, g]));
        assert_eq!(ElementValue::Boolean(true).encode(), (REG_BINARY, vec![1]));
        assert_eq!(
            ElementValue::Integer(30).encode(),
            (REG_BINARY, vec![30, 0, 0, 0, 0, 0, 0, 0])
        );
    }

    #[rstest]
    #[case(0x25000020, OSL, 1, "OptOut")]
    #[case(0x25000021, ObjectType::INHERIT_OSLOADER, 0, "Default")]
    #[case(0x15000052, OSL, 0, "1024x768")]
    #[case(0x25000004, BMG, 30, "30")]
    #[case(0x15000007, OSL, 0x1000_0000, "0x10000000")]
    #[case(0x45000001, OSL, 2, "0x2")]
    #[case(0x15000066, OSL, 3, "Recovery")]
    fn integer_display_and_parse(
        #[case] ty: u32,
        #[case] obj: ObjectType,
        #[case] v: u64,
        #[case] text: &str,
    ) {
        let t = ElementType(ty);
        assert_eq!(t.format_integer(obj, v), text);
        assert_eq!(t.parse_integer(obj, text), Some(v));
    }
}
