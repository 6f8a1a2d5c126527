//! Step 6 of the seed ("Disable paging") as an in-place edit of the image's SYSTEM hive, plus
//! the read-outs the seed's "Additional Information" promises Hyper-V Server ships with
//! (PollBootPartitionTimeout 30000, USB drivers at boot).
//!
//! The seed runs `reg add "...\ControlSet001\Control\Session Manager\Memory Management" /v
//! PagingFiles /t REG_MULTI_SZ /d "" /f` and `reg delete ... /v ExistingPageFiles /f` on the
//! loaded hive. Offline there is no CurrentControlSet: the set that boots is
//! `ControlSet00<Select\Default>` (formats.md §5.1 \[V\]); `Select\Current` is edited too when it
//! names another set. The empty multi-string is written as reg.exe's `/d ""` is documented to
//! store it: one empty string plus the list terminator, 4 zero bytes (formats.md §5.5 \[?\]:
//! not checked against a Windows-made hive; `policy::judge_paging` accepts every empty form).

use ufd_formats::hive::{value_type as vt, Editor, Hive};
use ufd_formats::policy::{self, Verdict};

pub use ufd_formats::system::USB_SERVICES;
use ufd_formats::system::{dword, SystemValues};

/// What the SYSTEM-hive step found and did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SystemEdit {
    /// Control sets edited (`ControlSet001`, ...).
    pub control_sets: Vec<String>,
    /// `PagingFiles` strings before the edit (in the default set), `None` = absent.
    pub paging_files_before: Option<Vec<String>>,
    pub existing_page_files_deleted: bool,
    /// PollBootPartitionTimeout before / after (ms) in the default set.
    pub poll_boot_partition_timeout_before: Option<u32>,
    pub poll_boot_partition_timeout_after: Option<u32>,
    pub boot_driver_flags: Option<u32>,
    /// (service, Start) for [`USB_SERVICES`].
    pub usb_service_start: Vec<(String, Option<u32>)>,
    /// Policy verdicts judged on the edited hive.
    pub verdicts: Vec<Verdict>,
    pub size_before: usize,
    pub size_after: usize,
}

/// Edit `hive` (the bytes of `Windows\System32\config\SYSTEM`); `poll_timeout` optionally sets
/// `Control\PnP\PollBootPartitionTimeout`. Returns the new bytes and what was done.
pub fn disable_paging(
    hive: Vec<u8>,
    poll_timeout: Option<u32>,
    filetime: u64,
    source: &str,
) -> Result<(Vec<u8>, SystemEdit), ufd_formats::Error> {
    edit_system(hive, true, poll_timeout, filetime, source)
}

/// The SYSTEM-hive edits of the procedure, with step 6 itself optional: `paging_off = false`
/// leaves `PagingFiles`/`ExistingPageFiles` as the image ships them (what a technician who
/// skipped step 6 leaves behind; the harness's "paging left enabled" scenario), while the
/// PollBootPartitionTimeout override still applies.
pub fn edit_system(
    hive: Vec<u8>,
    paging_off: bool,
    poll_timeout: Option<u32>,
    filetime: u64,
    source: &str,
) -> Result<(Vec<u8>, SystemEdit), ufd_formats::Error> {
    let size_before = hive.len();
    let mut ed = Editor::open(hive)?;
    let (default, current, paging_before) = {
        let h = ed.hive()?;
        let default = dword(&h, "Select", "Default")?.ok_or_else(|| {
            ufd_formats::Error::not_found(
                ufd_formats::Format::Hive,
                0,
                "Select\\Default",
                "value Select\\Default (no control set selection: is this a SYSTEM hive?)",
            )
        })?;
        let current = dword(&h, "Select", "Current")?;
        let mm = format!("ControlSet{default:03}\\Control\\Session Manager\\Memory Management");
        let before = match h.open(&mm)? {
            Some(k) => match k.value("PagingFiles")? {
                Some(v) => Some(policy::multi_sz_strings(&v.data()?)),
                None => None,
            },
            None => None,
        };
        (default, current, before)
    };
    let mut sets = vec![default];
    if let Some(c) = current.filter(|c| *c != default) {
        sets.push(c);
    }
    let mut deleted = false;
    let mut names = Vec::new();
    let before_poll = dword(
        &ed.hive()?,
        &format!("ControlSet{default:03}\\Control\\PnP"),
        "PollBootPartitionTimeout",
    )?;
    for n in &sets {
        let cs = format!("ControlSet{n:03}");
        let mm = format!("{cs}\\Control\\Session Manager\\Memory Management");
        // reg add creates missing keys; so does create_key.
        if paging_off {
            ed.create_key(&mm)?;
            ed.set_value(&mm, "PagingFiles", vt::REG_MULTI_SZ, &[0, 0, 0, 0])?;
            deleted |= ed.delete_value(&mm, "ExistingPageFiles")?;
        }
        if let Some(ms) = poll_timeout {
            let pnp = format!("{cs}\\Control\\PnP");
            ed.create_key(&pnp)?;
            ed.set_value(
                &pnp,
                "PollBootPartitionTimeout",
                vt::REG_DWORD,
                &ms.to_le_bytes(),
            )?;
        }
        names.push(cs);
    }
    let out = ed.finish(filetime);
    let h = Hive::parse(&out)?;
    let after = SystemValues::read(&h, &names[0])?;
    let verdicts = after.verdicts(source).to_vec();
    let size_after = out.len();
    Ok((
        out,
        SystemEdit {
            control_sets: names,
            paging_files_before: paging_before,
            existing_page_files_deleted: deleted,
            poll_boot_partition_timeout_before: before_poll,
            poll_boot_partition_timeout_after: after.poll_boot_partition_timeout,
            boot_driver_flags: after.boot_driver_flags,
            usb_service_start: after.usb_services,
            verdicts,
            size_before,
            size_after,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ufd_formats::hive::NewHive;
    use ufd_formats::policy::Outcome;

    fn msz(items: &[&str]) -> Vec<u8> {
        let mut v: Vec<u8> = items
            .iter()
            .flat_map(|s| s.encode_utf16().chain([0]).flat_map(u16::to_le_bytes))
            .collect();
        v.extend([0, 0]);
        v
    }

    fn hive(current: u32) -> Vec<u8> {
        let mut ed = Editor::new_hive(&NewHive {
            root_name: "SYSTEM".into(),
            ..NewHive::default()
        })
        .unwrap();
        ed.create_key("Select").unwrap();
        ed.set_value("Select", "Default", vt::REG_DWORD, &1u32.to_le_bytes())
            .unwrap();
        ed.set_value("Select", "Current", vt::REG_DWORD, &current.to_le_bytes())
            .unwrap();
        for cs in ["ControlSet001", "ControlSet002"] {
            let mm = format!("{cs}\\Control\\Session Manager\\Memory Management");
            ed.create_key(&mm).unwrap();
            ed.set_value(
                &mm,
                "PagingFiles",
                vt::REG_MULTI_SZ,
                &msz(&["?:\\pagefile.sys"]),
            )
            .unwrap();
            ed.set_value(
                &mm,
                "ExistingPageFiles",
                vt::REG_MULTI_SZ,
                &msz(&["\\??\\C:\\pagefile.sys"]),
            )
            .unwrap();
        }
        ed.create_key("ControlSet001\\Control").unwrap();
        ed.set_value(
            "ControlSet001\\Control",
            "BootDriverFlags",
            vt::REG_DWORD,
            &4u32.to_le_bytes(),
        )
        .unwrap();
        ed.finish(0)
    }

    #[test]
    fn skipping_step6_leaves_paging_but_sets_the_timeout() {
        let (out, rep) = edit_system(hive(1), false, Some(30_000), 1, "t").unwrap();
        assert!(!rep.existing_page_files_deleted);
        assert_eq!(rep.poll_boot_partition_timeout_after, Some(30_000));
        let paging = rep
            .verdicts
            .iter()
            .find(|v| v.rule == "IMG-PAGING-OFF")
            .unwrap();
        assert_eq!(paging.outcome, Outcome::Fail, "{paging:?}");
        let h = Hive::parse(&out).unwrap();
        let mm = h
            .open("ControlSet001\\Control\\Session Manager\\Memory Management")
            .unwrap()
            .unwrap();
        assert!(mm.value("ExistingPageFiles").unwrap().is_some());
    }

    #[test]
    fn edits_the_default_set_and_reports() {
        let (out, rep) = disable_paging(hive(1), Some(30_000), 1, "t").unwrap();
        assert_eq!(rep.control_sets, ["ControlSet001"]);
        assert_eq!(
            rep.paging_files_before.as_deref(),
            Some(&["?:\\pagefile.sys".to_string()][..])
        );
        assert!(rep.existing_page_files_deleted);
        assert_eq!(rep.poll_boot_partition_timeout_after, Some(30_000));
        assert_eq!(rep.boot_driver_flags, Some(4));
        assert!(
            rep.verdicts.iter().all(|v| v.outcome == Outcome::Pass),
            "{:?}",
            rep.verdicts
        );
        let h = Hive::parse(&out).unwrap();
        let v = h
            .open("ControlSet001\\Control\\Session Manager\\Memory Management")
            .unwrap()
            .unwrap();
        assert_eq!(
            &v.value("PagingFiles").unwrap().unwrap().data().unwrap()[..],
            &[0, 0, 0, 0]
        );
        // ControlSet002 untouched (not Default, not Current)
        let v2 = h
            .open("ControlSet002\\Control\\Session Manager\\Memory Management")
            .unwrap()
            .unwrap();
        assert!(v2.value("ExistingPageFiles").unwrap().is_some());
    }

    #[test]
    fn current_differing_from_default_is_edited_too() {
        let (_, rep) = disable_paging(hive(2), None, 1, "t").unwrap();
        assert_eq!(rep.control_sets, ["ControlSet001", "ControlSet002"]);
        assert_eq!(rep.poll_boot_partition_timeout_after, None);
    }

    #[test]
    fn not_a_system_hive() {
        let h = Editor::new_hive(&NewHive::default()).unwrap().finish(0);
        let e = disable_paging(h, None, 0, "t").unwrap_err().to_string();
        assert!(e.contains("Select"), "{e}");
    }
}
