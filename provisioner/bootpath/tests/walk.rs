//! The walker over real images (see `common`): both layouts walk every hop; each fault stops
//! the walk at the right hop with a verdict, never a panic.

mod common;

use std::path::Path;

use common::{build_ufd, Faults, Layout};
use rstest::rstest;
use ufd_bootpath::dev::Disk;
use ufd_bootpath::walk::{walk, BootPath, Options, StateIni, Status, HOPS};
use ufd_formats::bytes::ReadAt;
use ufd_formats::policy::{self, Outcome};
use ufd_testkit::{FileReader, MIB, UFD_SIG};

fn walk_image(img: &Path, boot_offset: Option<u64>) -> BootPath {
    let mut disk = Disk::new(FileReader::open(img));
    walk(
        &mut disk,
        &Options {
            boot_partition_offset: boot_offset,
            source: "test image".into(),
            ..Options::default()
        },
    )
}

fn show(p: &BootPath) -> String {
    p.hops
        .iter()
        .map(|h| format!("{} {:?} {}", h.step, h.status, h.evidence))
        .collect::<Vec<_>>()
        .join("\n")
}

fn outcome(p: &BootPath, rule: &str) -> Outcome {
    p.verdict(rule)
        .unwrap_or_else(|| panic!("no verdict for {rule}"))
        .outcome
}

#[rstest]
#[case(Layout::Bios, None, "partition 1 (NTFS) \\Boot\\BCD")]
#[case(
    Layout::Uefi,
    Some(MIB),
    "partition 1 (FAT32) \\EFI\\Microsoft\\Boot\\BCD"
)]
fn every_hop_of_a_good_image(
    #[case] layout: Layout,
    #[case] boot: Option<u64>,
    #[case] bcd_at: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let img = build_ufd(dir.path(), layout, Faults::default(), &[]);
    let p = walk_image(&img, boot);
    assert!(p.complete(), "{}", show(&p));
    assert_eq!(p.hops.len(), HOPS.len());
    assert!(
        p.hop("bcd").unwrap().evidence.starts_with(bcd_at),
        "{}",
        show(&p)
    );
    assert_eq!(p.disk_signature, Some(UFD_SIG));
    assert_eq!(p.loader_disk_signature, Some(UFD_SIG));
    let sys = p.system.as_ref().unwrap();
    assert_eq!(sys.control_set, "ControlSet001");
    assert_eq!(sys.poll_boot_partition_timeout, Some(30000));
    assert_eq!(sys.boot_driver_flags, Some(4));
    assert!(p.hop("winload").unwrap().evidence.contains("winload"));
    assert!(p
        .hop("system-values")
        .unwrap()
        .evidence
        .contains("PollBootPartitionTimeout=30000"));
    for rule in [
        policy::UFD_BCD,
        policy::IMG_VHD_FIXED,
        policy::IMG_GENERALIZED,
        policy::IMG_PAGING_OFF,
        policy::IMG_BOOT_DEVICE_WAIT,
        policy::IMG_USB_BOOT_DRIVERS,
    ] {
        assert_eq!(
            outcome(&p, rule),
            Outcome::Pass,
            "{rule}: {:?}",
            p.verdict(rule)
        );
    }
    let st = p.setup_state.as_ref().unwrap();
    assert_eq!(
        st.state_ini,
        StateIni::Read(Some("IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE".into()))
    );
    let setup = st.setup.as_ref().unwrap();
    assert_eq!(setup.system_setup_in_progress, Some(1));
    assert_eq!(setup.cmd_line.as_deref(), Some("oobe\\windeploy.exe"));
    let g = p.verdict(policy::IMG_GENERALIZED).unwrap();
    assert_eq!(
        g.source,
        "test image VHD \\Windows\\Setup\\State\\State.ini"
    );
    assert_eq!(
        g.evidence,
        "State.ini ImageState=IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE: generalized (sysprep \
         /generalize); SYSTEM\\Setup: SystemSetupInProgress=1, OOBEInProgress=absent, \
         SetupType=absent, CmdLine=\"oobe\\\\windeploy.exe\""
    );
    // a tiny test disk: below 8 GB
    assert_eq!(outcome(&p, policy::UFD_CAPACITY), Outcome::Fail);
}

#[test]
fn wrong_disk_signature_stops_at_the_loader_device() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults {
        bcd_signature: Some(0xDEAD_BEEF),
        ..Faults::default()
    };
    let p = walk_image(&build_ufd(dir.path(), Layout::Bios, faults, &[]), None);
    let h = p.hop("loader-device").unwrap();
    assert_eq!(h.status, Status::Fail, "{}", show(&p));
    assert!(
        h.evidence.contains("0xdeadbeef") && h.evidence.contains("0x1df02024"),
        "{}",
        h.evidence
    );
    assert_eq!(p.hop("host-ntfs").unwrap().status, Status::NotReached);
    assert_eq!(p.loader_disk_signature, Some(0xDEAD_BEEF));
    assert_eq!(outcome(&p, policy::UFD_BCD), Outcome::Fail);
    assert_eq!(
        outcome(&p, policy::IMG_BOOT_DEVICE_WAIT),
        Outcome::NotJudged
    );
    let g = p.verdict(policy::IMG_GENERALIZED).unwrap();
    assert_eq!(g.outcome, Outcome::NotJudged);
    assert!(
        g.evidence
            .starts_with("not reached: hop loader-device failed"),
        "{}",
        g.evidence
    );
    assert!(p.setup_state.is_none());
}

/// IMG-GENERALIZED the way `ufd inspect` judges it: State.ini first, the hive's `Setup` values
/// without it; a specialized image fails with the state named, and the walk itself still
/// completes (the image state is not on the boot path).
#[rstest]
#[case::specialized(
    Faults { specialized: true, ..Faults::default() },
    Outcome::Fail,
    "State.ini ImageState=IMAGE_STATE_COMPLETE: specialized: run sysprep /generalize before deploying",
    "test image VHD \\Windows\\Setup\\State\\State.ini"
)]
#[case::setup_values_only(
    Faults { no_state_ini: true, ..Faults::default() },
    Outcome::Pass,
    "no State.ini; SYSTEM\\Setup: SystemSetupInProgress=1,",
    "test image VHD \\Windows\\System32\\config\\SYSTEM Setup"
)]
fn image_state_is_judged_from_state_ini_then_setup(
    #[case] faults: Faults,
    #[case] want: Outcome,
    #[case] evidence: &str,
    #[case] source: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let p = walk_image(&build_ufd(dir.path(), Layout::Bios, faults, &[]), None);
    assert!(p.complete(), "{}", show(&p));
    let g = p.verdict(policy::IMG_GENERALIZED).unwrap();
    assert_eq!(g.outcome, want, "{g:?}");
    assert!(g.evidence.starts_with(evidence), "{}", g.evidence);
    assert_eq!(g.source, source);
    let state = &p.setup_state.as_ref().unwrap().state_ini;
    assert_eq!(*state == StateIni::Absent, faults.no_state_ini, "{state:?}");
}

/// A SYSTEM hive that does not parse fails its hop, and every SYSTEM-hive rule (IMG-GENERALIZED
/// too) fails with that hop's evidence.
#[test]
fn unreadable_hive_fails_every_hive_rule() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults {
        corrupt_hive: true,
        ..Faults::default()
    };
    let p = walk_image(&build_ufd(dir.path(), Layout::Bios, faults, &[]), None);
    let h = p.hop("system-hive").unwrap();
    assert_eq!(h.status, Status::Fail, "{}", show(&p));
    assert_eq!(p.hop("select").unwrap().status, Status::NotReached);
    assert!(p.setup_state.is_none());
    for rule in [
        policy::IMG_GENERALIZED,
        policy::IMG_PAGING_OFF,
        policy::IMG_BOOT_DEVICE_WAIT,
        policy::IMG_USB_BOOT_DRIVERS,
    ] {
        let v = p.verdict(rule).unwrap();
        assert_eq!(v.outcome, Outcome::Fail, "{rule}: {v:?}");
        assert!(
            v.evidence.starts_with("system-hive: "),
            "{rule}: {}",
            v.evidence
        );
    }
}

#[test]
fn missing_vhd_is_a_failed_hop() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults {
        no_vhd: true,
        ..Faults::default()
    };
    let p = walk_image(&build_ufd(dir.path(), Layout::Uefi, faults, &[]), Some(MIB));
    let h = p.hop("vhd-file").unwrap();
    assert_eq!(h.status, Status::Fail, "{}", show(&p));
    assert!(
        h.evidence.contains("\\hyperV.vhd does not exist"),
        "{}",
        h.evidence
    );
    assert_eq!(outcome(&p, policy::UFD_BCD), Outcome::Fail);
    assert_eq!(outcome(&p, policy::IMG_VHD_FIXED), Outcome::Fail);
}

#[test]
fn corrupt_bcd_is_a_failed_hop() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults {
        corrupt_bcd: true,
        ..Faults::default()
    };
    let p = walk_image(&build_ufd(dir.path(), Layout::Uefi, faults, &[]), Some(MIB));
    let h = p.hop("bcd").unwrap();
    assert_eq!(h.status, Status::Fail, "{}", show(&p));
    assert!(
        h.evidence.contains("not a readable BCD store"),
        "{}",
        h.evidence
    );
    assert!(p.hops[3..].iter().all(|h| h.status == Status::NotReached));
}

#[test]
fn corrupt_footer_and_missing_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults {
        corrupt_footer: true,
        ..Faults::default()
    };
    let p = walk_image(&build_ufd(dir.path(), Layout::Bios, faults, &[]), None);
    assert_eq!(
        p.hop("vhd-footer").unwrap().status,
        Status::Fail,
        "{}",
        show(&p)
    );
    assert_eq!(outcome(&p, policy::IMG_VHD_FIXED), Outcome::Fail);

    let dir = tempfile::tempdir().unwrap();
    let faults = Faults {
        no_poll_timeout: true,
        ..Faults::default()
    };
    let p = walk_image(&build_ufd(dir.path(), Layout::Bios, faults, &[]), None);
    assert!(p.complete(), "{}", show(&p));
    assert_eq!(p.system.as_ref().unwrap().poll_boot_partition_timeout, None);
    assert_eq!(outcome(&p, policy::IMG_BOOT_DEVICE_WAIT), Outcome::Fail);
}

#[rstest]
#[case(vec![0u8; 4096], "mbr")]
#[case(vec![0xFFu8; 300], "mbr")]
fn garbage_disks_fail_at_the_first_hop(#[case] bytes: Vec<u8>, #[case] step: &str) {
    let mut disk = Disk::new(bytes.as_slice());
    let p = walk(&mut disk, &Options::default());
    assert_eq!(p.hops[0].step, step);
    assert_eq!(p.hops[0].status, Status::Fail);
    assert_eq!(p.hops.len(), HOPS.len());
}

/// A disk image with one byte flipped on the fly.
struct Flipped<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl ReadAt for Flipped<'_> {
    type Error = ufd_formats::Error;
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        let mut b = self.bytes;
        b.read_exact_at(offset, buf)?;
        let at = self.at as u64;
        if (offset..offset + buf.len() as u64).contains(&at) {
            buf[(at - offset) as usize] ^= 0xA5;
        }
        Ok(())
    }
}

/// Single-byte corruptions of the MBR, the ESP's boot sector and FAT give a report, never a
/// panic (a cheap stand-in for fuzzing the whole stack).
#[test]
fn flipped_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let img = build_ufd(dir.path(), Layout::Uefi, Faults::default(), &[]);
    let bytes = std::fs::read(&img).unwrap();
    let spots: Vec<usize> = (0..512)
        .step_by(7)
        .chain((MIB as usize..MIB as usize + 512).step_by(5))
        .chain((MIB as usize + 32 * 512..MIB as usize + 33 * 512).step_by(31))
        .collect();
    for at in spots {
        let mut disk = Disk::new(Flipped { bytes: &bytes, at });
        let p = walk(&mut disk, &Options::default());
        assert_eq!(p.hops.len(), HOPS.len(), "flip at {at}");
    }
}
