//! What the seed's rules read from an image's SYSTEM hive, read one way for everyone: the
//! guest probe's boot-path walk (`ufd-bootpath`), `ufd inspect` and the provisioner's report.
//!
//! Offline there is no `CurrentControlSet` (it is a volatile link made at boot): the control
//! set that boots is the one `Select\Default` names (KB102984, formats.md §5.1).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::hive::Hive;
use crate::policy::image::SetupValues;
use crate::policy::{self, Verdict};
use crate::Result;

/// The USB boot-path services whose start type IMG-USB-BOOT-DRIVERS reports (formats.md §5.3).
pub const USB_SERVICES: &[&str] = &["usbehci", "usbuhci", "usbohci", "usbhub", "usbstor"];

/// A REG_DWORD value, `None` when the key or the value is absent (a value of another type is
/// an error naming its offset).
pub fn dword(h: &Hive<'_>, key: &str, value: &str) -> Result<Option<u32>> {
    match h.open(key)? {
        Some(k) => match k.value(value)? {
            Some(v) => Ok(Some(v.as_dword()?)),
            None => Ok(None),
        },
        None => Ok(None),
    }
}

/// `ControlSet00N` for `Select\Default`, or `None` when the hive has no selection.
pub fn default_control_set(h: &Hive<'_>) -> Result<Option<String>> {
    Ok(dword(h, "Select", "Default")?.map(|n| format!("ControlSet{n:03}")))
}

/// The root `Setup` key's values IMG-GENERALIZED quotes and judges
/// ([`policy::image::judge_generalized`]): `SystemSetupInProgress`, `OOBEInProgress`,
/// `SetupType` (REG_DWORD) and `CmdLine` (REG_SZ). `Setup` is a key of the hive root, not of a
/// control set, so no `Select` is needed. `None` when the key is absent; an absent value is
/// `None` in its field; a value of another type is an error naming its offset (as [`dword`]).
///
/// Sysprep `/generalize /oobe` leaves `SystemSetupInProgress` = 1 and `CmdLine` =
/// `oobe\windeploy.exe` so the next boot runs the specialize pass \[reconstructed from
/// generalized Windows 7 images, see [`policy::image::judge_generalized`]\].
pub fn setup_values(h: &Hive<'_>) -> Result<Option<SetupValues>> {
    let Some(k) = h.open("Setup")? else {
        return Ok(None);
    };
    let d =
        |name: &str| -> Result<Option<u32>> { k.value(name)?.map(|v| v.as_dword()).transpose() };
    Ok(Some(SetupValues {
        system_setup_in_progress: d("SystemSetupInProgress")?,
        oobe_in_progress: d("OOBEInProgress")?,
        setup_type: d("SetupType")?,
        cmd_line: k.value("CmdLine")?.map(|v| v.as_string()).transpose()?,
    }))
}

/// The values the seed's rules judge, in one control set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SystemValues {
    /// `ControlSet00N` (normally the one `Select\Default` names).
    pub control_set: String,
    /// `Control\PnP\PollBootPartitionTimeout` (ms).
    pub poll_boot_partition_timeout: Option<u32>,
    /// `Control\Session Manager\Memory Management\PagingFiles`, raw REG_MULTI_SZ data.
    pub paging_files: Option<Vec<u8>>,
    /// Whether `Memory Management\ExistingPageFiles` exists.
    pub existing_page_files: bool,
    /// `Control\BootDriverFlags`.
    pub boot_driver_flags: Option<u32>,
    /// `Services\<name>\Start` for [`USB_SERVICES`].
    pub usb_services: Vec<(String, Option<u32>)>,
}

impl SystemValues {
    /// Read the values of control set `cs` (e.g. `ControlSet001`).
    pub fn read(h: &Hive<'_>, cs: &str) -> Result<SystemValues> {
        let mm = h.open(&format!(
            "{cs}\\Control\\Session Manager\\Memory Management"
        ))?;
        let (paging_files, existing_page_files) = match &mm {
            Some(k) => (
                k.value("PagingFiles")?
                    .map(|v| v.data().map(|d| d.into_owned()))
                    .transpose()?,
                k.value("ExistingPageFiles")?.is_some(),
            ),
            None => (None, false),
        };
        let mut usb_services = Vec::new();
        for n in USB_SERVICES {
            usb_services.push((
                n.to_string(),
                dword(h, &format!("{cs}\\Services\\{n}"), "Start")?,
            ));
        }
        Ok(SystemValues {
            control_set: cs.to_string(),
            poll_boot_partition_timeout: dword(
                h,
                &format!("{cs}\\Control\\PnP"),
                "PollBootPartitionTimeout",
            )?,
            paging_files,
            existing_page_files,
            boot_driver_flags: dword(h, &format!("{cs}\\Control"), "BootDriverFlags")?,
            usb_services,
        })
    }

    /// IMG-PAGING-OFF, IMG-BOOT-DEVICE-WAIT and IMG-USB-BOOT-DRIVERS for these values.
    pub fn verdicts(&self, source: &str) -> [Verdict; 3] {
        let cs = self.control_set.as_str();
        let services: Vec<(&str, Option<u32>)> = self
            .usb_services
            .iter()
            .map(|(n, s)| (n.as_str(), *s))
            .collect();
        [
            policy::judge_paging(
                self.paging_files.as_deref(),
                self.existing_page_files,
                cs,
                source,
            ),
            policy::judge_boot_device_wait(self.poll_boot_partition_timeout, cs, source),
            policy::judge_usb_boot_drivers(self.boot_driver_flags, &services, source),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hive::{value_type as vt, Editor, NewHive};
    use crate::policy::Outcome;

    fn hive(paging_off: bool) -> Vec<u8> {
        let mut ed = Editor::new_hive(&NewHive::default()).unwrap();
        ed.create_key("Select").unwrap();
        ed.set_value("Select", "Default", vt::REG_DWORD, &2u32.to_le_bytes())
            .unwrap();
        let mm = "ControlSet002\\Control\\Session Manager\\Memory Management";
        ed.create_key(mm).unwrap();
        let pf: &[u8] = if paging_off {
            &[0, 0, 0, 0]
        } else {
            &[b'x', 0, 0, 0, 0, 0]
        };
        ed.set_value(mm, "PagingFiles", vt::REG_MULTI_SZ, pf)
            .unwrap();
        if !paging_off {
            ed.set_value(mm, "ExistingPageFiles", vt::REG_MULTI_SZ, &[0, 0])
                .unwrap();
        }
        ed.create_key("ControlSet002\\Control\\PnP").unwrap();
        ed.set_value(
            "ControlSet002\\Control\\PnP",
            "PollBootPartitionTimeout",
            vt::REG_DWORD,
            &30000u32.to_le_bytes(),
        )
        .unwrap();
        ed.set_value(
            "ControlSet002\\Control",
            "BootDriverFlags",
            vt::REG_DWORD,
            &4u32.to_le_bytes(),
        )
        .unwrap();
        ed.finish(0)
    }

    #[test]
    fn reads_the_default_control_set_and_judges_it() {
        let data = hive(true);
        let h = Hive::parse(&data).unwrap();
        let cs = default_control_set(&h).unwrap().unwrap();
        assert_eq!(cs, "ControlSet002");
        let v = SystemValues::read(&h, &cs).unwrap();
        assert_eq!(v.poll_boot_partition_timeout, Some(30000));
        assert_eq!(v.boot_driver_flags, Some(4));
        assert!(!v.existing_page_files);
        assert_eq!(v.usb_services.len(), USB_SERVICES.len());
        assert!(v.usb_services.iter().all(|(_, s)| s.is_none()));
        let outcomes: Vec<Outcome> = v.verdicts("t").iter().map(|v| v.outcome).collect();
        assert_eq!(outcomes, [Outcome::Pass, Outcome::Pass, Outcome::Pass]);

        let data = hive(false);
        let h = Hive::parse(&data).unwrap();
        let v = SystemValues::read(&h, "ControlSet002").unwrap();
        assert!(v.existing_page_files);
        assert_eq!(v.verdicts("t")[0].outcome, Outcome::Fail);
        // A control set that does not exist reads as all-absent, and the wait rule fails.
        let none = SystemValues::read(&h, "ControlSet009").unwrap();
        assert_eq!(none.paging_files, None);
        assert_eq!(none.verdicts("t")[1].outcome, Outcome::Fail);
    }

    fn utf16z(s: &str) -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect()
    }

    #[test]
    fn setup_values_read_the_root_setup_key() {
        let mut ed = Editor::new_hive(&NewHive::default()).unwrap();
        let data = ed.clone().finish(0);
        assert_eq!(setup_values(&Hive::parse(&data).unwrap()).unwrap(), None);
        ed.create_key("Setup").unwrap();
        let data = ed.clone().finish(0);
        assert_eq!(
            setup_values(&Hive::parse(&data).unwrap()).unwrap(),
            Some(SetupValues::default())
        );
        for (n, v) in [
            ("SystemSetupInProgress", 1u32),
            ("OOBEInProgress", 1),
            ("SetupType", 2),
        ] {
            ed.set_value("Setup", n, vt::REG_DWORD, &v.to_le_bytes())
                .unwrap();
        }
        ed.set_value(
            "Setup",
            "CmdLine",
            vt::REG_SZ,
            &utf16z("oobe\\windeploy.exe"),
        )
        .unwrap();
        let data = ed.clone().finish(0);
        let s = setup_values(&Hive::parse(&data).unwrap()).unwrap().unwrap();
        assert_eq!(
            s,
            SetupValues {
                system_setup_in_progress: Some(1),
                oobe_in_progress: Some(1),
                setup_type: Some(2),
                cmd_line: Some("oobe\\windeploy.exe".into()),
            }
        );
        // a DWORD written as a string is an error, not a guess
        ed.set_value("Setup", "SetupType", vt::REG_SZ, &utf16z("2"))
            .unwrap();
        let data = ed.finish(0);
        assert!(setup_values(&Hive::parse(&data).unwrap()).is_err());
    }

    #[test]
    fn a_non_dword_is_an_error_not_a_guess() {
        let mut ed = Editor::new_hive(&NewHive::default()).unwrap();
        ed.create_key("Select").unwrap();
        ed.set_value("Select", "Default", vt::REG_SZ, &[b'1', 0, 0, 0])
            .unwrap();
        let data = ed.finish(0);
        let h = Hive::parse(&data).unwrap();
        assert!(default_control_set(&h).is_err());
        assert_eq!(dword(&h, "Nope", "X").unwrap(), None);
    }
}
