//! `ufd provision --plan`: the Windows procedure of the seed ("Deploying Microsoft Hyper-V
//! Server 2008 R2 on USB Flash Drive", steps 1–7) that is equivalent to a `ufd provision` run
//! with the same options — the diskpart scripts, `imagex`, `bootsect`, `bcdboot` and `reg`
//! commands with the sizes, drive letters and file names those options produce — for an OEM
//! technician to check against their runbook.
//!
//! [`windows_plan`] is pure: it reads no file, runs no tool and writes nothing. It applies the
//! same option checks as `provision` (its [`crate::preflight`]), so a plan is only printed for
//! options `provision` would accept, with the same policy warnings.
//!
//! The commands are the seed's, in the seed's order (step 6 after step 5, although `ufd` edits
//! the hive before it builds the VHD); each [`PlanStep`] names the seed step it comes from and
//! says in one line what `ufd` does instead. Commands the seed does not give are marked as such
//! in a `REM` line, and so is everything the seed leaves to the technician (the UFD's disk
//! number, the WIM's path, which language packs to remove). What is verified and what is
//! reconstructed:
//!
//! * Step 1–7 commands, the letters `r:`/`z:`, `c:\hvvhd`, `HKLM\HyperVTemp`: the seed, verbatim
//!   (its step 5.2 spells the file `HyperV.vhd`; file names are case-insensitive on NTFS and this
//!   plan writes the container's name — `hyperV.vhd`, or `hyperV.vhdx` with `--format vhdx` — throughout).
//! * `bcdboot /f BIOS|UEFI` (UEFI layouts only): documented for the Windows 8 and later bcdboot
//!   ("BCDBoot Command-Line Options"); Windows 7's bcdboot has no `/f` and writes the files of
//!   the technician computer's own firmware. Said in the plan.
//! * `create partition primary size=<MiB>` + `format quick fs=fat32` for the EFI system
//!   partition: Windows To Go's MBR creation steps; that the partition then has type 0x0C is
//!   inferred ([`crate::ESP_PARTITION_TYPE`]).
//! * That the VHD's volume comes back as `r:` when the seed re-attaches it in step 5: the seed
//!   assumes it (the mount manager remembers a letter by disk signature and partition offset);
//!   the plan says what to do when it does not.
//! * Language packs: the seed only says to remove them "using the OPK or AIK ... or during
//!   runtime via the Lpksetup.exe tool"; the DISM commands are the Windows 7 AIK's offline
//!   servicing form, and the package names are read from the image (`--plan` does not read
//!   the WIM).

use std::fmt;

use crate::{
    preflight, Firmware, PartitionReport, ProvisionError, ProvisionOptions, UfdLayout,
    VhdDeviceForm, PARTITION_LBA,
};

/// What the plan leaves to the technician or takes from them: drive letters, the technician's
/// folder for the VHD, the Windows path of the WIM, the UFD's disk number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanParams {
    /// `select disk N` of seed step 3.3; `None` = the seed's placeholder, found with `list disk`.
    pub ufd_disk_number: Option<u32>,
    /// Drive letter of the VHD's partition (seed: `r`).
    pub vhd_letter: char,
    /// Drive letter of the UFD's NTFS partition (seed: `z`).
    pub ufd_letter: char,
    /// Drive letter of the EFI system partition (UEFI layouts; not in the seed: `s`).
    pub esp_letter: char,
    /// The technician computer's folder for the VHD (seed: `c:\hvvhd`).
    pub vhd_dir: String,
    /// The WIM's path on the technician computer (seed: `<path to wim>`; default: the DVD's
    /// `d:\sources\install.wim`, which the seed says may be used directly).
    pub wim_path: String,
    /// Which kit the technician has, for the seed's `cd /d "c:\program files\<kit>\tools\..."`
    /// (seed: `Windows OPK` or `Windows AIK`).
    pub kit: String,
}

impl Default for PlanParams {
    /// The seed's examples: `r:` for the VHD, `z:` for the UFD, `c:\hvvhd`.
    fn default() -> Self {
        PlanParams {
            ufd_disk_number: None,
            vhd_letter: 'r',
            ufd_letter: 'z',
            esp_letter: 's',
            vhd_dir: "c:\\hvvhd".into(),
            wim_path: "d:\\sources\\install.wim".into(),
            kit: "Windows AIK".into(),
        }
    }
}

/// One line of a step.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "text", rename_all = "kebab-case")]
pub enum PlanLine {
    /// A command typed at the technician computer's command prompt.
    Command(String),
    /// A command typed at the `DISKPART>` prompt (after a `diskpart` command line).
    Diskpart(String),
    /// A remark (`REM ...`): what the seed leaves to the technician, or what is not the seed's.
    Rem(String),
}

impl PlanLine {
    /// The command text (`None` for a remark).
    pub fn command(&self) -> Option<&str> {
        match self {
            PlanLine::Command(c) | PlanLine::Diskpart(c) => Some(c),
            PlanLine::Rem(_) => None,
        }
    }
}

/// One step of the seed's procedure.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PlanStep {
    /// The seed step, e.g. `1.1`, `3.3`, `5.3`, or a named section for what is not a numbered
    /// step (`Note: language packs`).
    pub seed_step: String,
    /// The seed's heading.
    pub title: String,
    /// What `ufd provision` does instead (one line).
    pub ufd: String,
    pub lines: Vec<PlanLine>,
}

/// The equivalent Windows procedure (text: [`fmt::Display`]; JSON: serde).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    pub firmware: Firmware,
    /// UFD capacity in bytes, and in MiB as DiskPart's `list disk` counts.
    pub ufd_size: u64,
    pub ufd_size_mib: u64,
    /// `create vdisk ... maximum=<MiB>`.
    pub vhd_maximum_mib: u64,
    /// The container file's size (VHD: virtual size + 512-byte footer; VHDX: + its header area).
    pub vhd_file_bytes: u64,
    /// `create partition primary size=<MiB>` of the EFI system partition (UEFI layouts).
    pub esp_size_mib: Option<u64>,
    pub vhd_file: String,
    pub vhd_letter: String,
    pub ufd_letter: String,
    pub esp_letter: Option<String>,
    pub ufd_disk_number: Option<u32>,
    /// The UFD's partitions as `ufd provision` lays them out.
    pub partitions: Vec<PartitionReport>,
    /// Policy warnings of the preflight (the same `provision` prints).
    pub warnings: Vec<String>,
    pub steps: Vec<PlanStep>,
}

impl Plan {
    /// Every command, in order (diskpart sub-commands included, remarks left out).
    pub fn commands(&self) -> impl Iterator<Item = &str> {
        self.steps
            .iter()
            .flat_map(|s| s.lines.iter().filter_map(PlanLine::command))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "REM ufd provision --plan: the seed's Windows procedure for these options. Nothing was written."
        )?;
        writeln!(
            f,
            "REM firmware {}; UFD {} bytes ({} MiB); VHD maximum={} MiB, fixed ({}-byte file){}",
            match self.firmware {
                Firmware::Bios => "bios",
                Firmware::Uefi => "uefi",
                Firmware::Both => "both",
            },
            self.ufd_size,
            self.ufd_size_mib,
            self.vhd_maximum_mib,
            self.vhd_file_bytes,
            match self.esp_size_mib {
                Some(m) => format!("; EFI system partition {m} MiB"),
                None => String::new(),
            }
        )?;
        for p in &self.partitions {
            writeln!(
                f,
                "REM UFD partition {}: {} type {:02X}{} at LBA {}, {} sectors ({} MiB): {}",
                p.number,
                p.file_system,
                p.partition_type,
                if p.active { " ACTIVE" } else { "" },
                p.start_lba,
                p.sectors,
                (u64::from(p.sectors) * 512) >> 20,
                p.role
            )?;
        }
        for w in &self.warnings {
            writeln!(f, "REM warning: {w}")?;
        }
        for s in &self.steps {
            writeln!(f)?;
            writeln!(f, "REM ---- seed {}: {}", s.seed_step, s.title)?;
            writeln!(f, "REM ufd instead: {}", s.ufd)?;
            for l in &s.lines {
                match l {
                    PlanLine::Command(c) | PlanLine::Diskpart(c) => writeln!(f, "{c}")?,
                    PlanLine::Rem(r) => writeln!(f, "REM {r}")?,
                }
            }
        }
        Ok(())
    }
}

/// Builds the lines of one step.
struct Lines(Vec<PlanLine>);

impl Lines {
    fn cmd(&mut self, s: impl Into<String>) -> &mut Self {
        self.0.push(PlanLine::Command(s.into()));
        self
    }
    fn dp(&mut self, s: impl Into<String>) -> &mut Self {
        self.0.push(PlanLine::Diskpart(s.into()));
        self
    }
    fn rem(&mut self, s: impl Into<String>) -> &mut Self {
        self.0.push(PlanLine::Rem(s.into()));
        self
    }
    /// `diskpart`, the sub-commands, `exit`.
    fn diskpart<'a>(&mut self, cmds: impl IntoIterator<Item = &'a str>) -> &mut Self {
        self.cmd("diskpart");
        self.diskpart_continued(cmds)
    }
    /// The sub-commands and `exit` of a DiskPart session opened by the previous step.
    fn diskpart_continued<'a>(&mut self, cmds: impl IntoIterator<Item = &'a str>) -> &mut Self {
        for c in cmds {
            self.dp(c);
        }
        self.dp("exit")
    }
}

fn step(seed_step: &str, title: &str, ufd: impl Into<String>, lines: Lines) -> PlanStep {
    PlanStep {
        seed_step: seed_step.into(),
        title: title.into(),
        ufd: ufd.into(),
        lines: lines.0,
    }
}

fn letter(name: &str, c: char) -> Result<char, ProvisionError> {
    if c.is_ascii_alphabetic() {
        Ok(c.to_ascii_lowercase())
    } else {
        Err(ProvisionError::Usage(format!(
            "{name} {c:?}: a drive letter is one of a..z"
        )))
    }
}

/// The drive letter a Windows path starts with (`c:\hvvhd` → `c`).
fn drive_of(path: &str) -> Option<char> {
    let mut it = path.chars();
    match (it.next(), it.next()) {
        (Some(c), Some(':')) if c.is_ascii_alphabetic() => Some(c.to_ascii_lowercase()),
        _ => None,
    }
}

/// The seed's procedure for `opts` (see the module documentation). Errors: the option checks
/// of [`crate::preflight`] (sizes, policy requirements), and drive letters that are not
/// letters or collide with each other or with the drives of `vhd_dir` / `wim_path`.
pub fn windows_plan(opts: &ProvisionOptions, params: &PlanParams) -> Result<Plan, ProvisionError> {
    let vhd_name = opts.format.file_name();
    let vhd_file_bytes = opts.format.file_bytes(opts.vhd_size);
    let mut warnings = Vec::new();
    preflight(opts, &mut |w| warnings.push(w))?;

    let vl = letter("--vhd-letter", params.vhd_letter)?;
    let ul = letter("--ufd-letter", params.ufd_letter)?;
    let esp = opts.firmware.has_esp();
    let el = if esp {
        Some(letter("--esp-letter", params.esp_letter)?)
    } else {
        None
    };
    let dir = params.vhd_dir.trim_end_matches('\\');
    let mut used: Vec<(String, char)> = vec![
        ("the VHD's partition (--vhd-letter)".into(), vl),
        ("the UFD's partition (--ufd-letter)".into(), ul),
    ];
    if let Some(e) = el {
        used.push(("the EFI system partition (--esp-letter)".into(), e));
    }
    for (what, p) in [
        ("the VHD folder", dir),
        ("the WIM", params.wim_path.as_str()),
    ] {
        if let Some(d) = drive_of(p) {
            used.push((format!("{what} {p}"), d));
        }
    }
    for (i, (a, x)) in used.iter().enumerate() {
        if let Some((b, _)) = used[..i].iter().find(|(_, y)| y == x) {
            return Err(ProvisionError::Usage(format!(
                "drive letter {x}: is used for both {b} and {a}; choose distinct letters"
            )));
        }
    }

    let mib = 1u64 << 20;
    let layout = UfdLayout::of(opts);
    let vhd_mib = opts.vhd_size / mib;
    let vhd_file = format!("{dir}\\{vhd_name}");
    let on_ufd = format!("{ul}:\\{vhd_name}");
    let kit = &params.kit;
    let mut steps = Vec::new();

    // ---- Step 1: Create a VHD
    let mut l = Lines(Vec::new());
    l.cmd(format!("mkdir {dir}")).diskpart([
        format!("create vdisk file={vhd_file} maximum={vhd_mib} type=fixed").as_str(),
        &format!("select vdisk file={vhd_file}"),
        "attach vdisk",
        "create partition primary",
        &format!("assign letter={vl}"),
        &format!("format quick fs=ntfs label={}", opts.vhd_label),
    ]);
    l.rem(format!(
        "DiskPart (Windows 7 and later) starts the partition at 1 MiB (LBA {PARTITION_LBA}) and gives it the rest of the {vhd_mib} MiB disk; ufd makes the same partition"
    ));
    steps.push(step(
        "1.1",
        "Create a VHD",
        format!(
            "create vdisk: a sparse {}-byte partition file formatted by mkntfs -Q -L {} -p {PARTITION_LBA} -H 255 -S 63; no vdisk is created or attached (MBR and footer: seed 2.2)",
            opts.vhd_size - crate::PARTITION_OFFSET,
            opts.vhd_label
        ),
        l,
    ));

    // ---- Step 2: Apply the image
    let mut l = Lines(Vec::new());
    l.cmd(format!("cd /d \"c:\\program files\\{kit}\\tools\\amd64\\\""))
        .cmd(format!(
            "imagex /apply {} {} {vl}:\\",
            params.wim_path, opts.index
        ))
        .rem(format!(
            "{} is the WIM ufd reads as {} (the seed: <path to wim>; the DVD's Sources\\install.wim may be used directly)",
            params.wim_path,
            opts.wim.display()
        ));
    steps.push(step(
        "2.1",
        "Apply a Microsoft Hyper-V Server 2008 R2 image",
        format!(
            "apply image: wimapply {} {} onto the unmounted NTFS partition file (wimlib writes NTFS itself)",
            opts.wim.display(),
            opts.index
        ),
        l,
    ));

    // ---- Note: language packs (--keep-language)
    if !opts.keep_languages.is_empty() {
        let keep = opts.keep_languages.join(", ");
        let mut l = Lines(Vec::new());
        l.rem(format!(
            "The seed leaves the method to the technician (\"using the OPK or AIK ... or during runtime via the Lpksetup.exe tool\"). Keep: {keep}."
        ))
        .cmd(format!("dism /image:{vl}:\\ /get-packages"))
        .rem(format!(
            "For every language pack listed above whose language is not {keep} (the names are read from the image; --plan does not read the WIM):"
        ))
        .cmd(format!(
            "dism /image:{vl}:\\ /remove-package /packagename:<language pack package name>"
        ))
        .rem("Or later, on the running server: lpksetup /u <ll-CC> for each language to remove.");
        steps.push(step(
            "Note: language packs",
            "Remove all language packs that are not required",
            format!(
                "apply image: libwim applies image {} without the other languages' folders (outside \\Windows\\WinSxS and \\Windows\\servicing), and seed 6 deletes their Control\\MUI\\UILanguages keys; the WIM is not modified",
                opts.index
            ),
            l,
        ));
    }

    // ---- Step 2.2: detach
    let mut l = Lines(Vec::new());
    l.diskpart([
        format!("select vdisk file={vhd_file}").as_str(),
        "detach vdisk",
    ]);
    steps.push(step(
        "2.2",
        "Detach the virtual disk",
        match opts.format {
            crate::ImageFormat::Vhd => format!(
                "assemble VHD: 1 MiB with the VHD's MBR inserted in front of the partition file (FALLOC_FL_INSERT_RANGE, no copy) and the fixed-VHD footer appended: a {vhd_file_bytes}-byte {vhd_name}"
            ),
            crate::ImageFormat::Vhdx => format!(
                "assemble VHDX: qemu-img's fixed-VHDX header area (headers, region tables, metadata, BAT) and 1 MiB with the VHD's MBR inserted in front of the partition file (FALLOC_FL_INSERT_RANGE, no copy): a {vhd_file_bytes}-byte {vhd_name}"
            ),
        },
        l,
    ));

    // ---- Step 3: Prepare the UFD
    let ufd_mib = opts.ufd_size / mib;
    let mut l = Lines(Vec::new());
    // One DiskPart session in the seed: `list disk`, then (3.3) `select disk` ... `exit`.
    l.cmd("diskpart").dp("list disk");
    l.rem(format!(
        "Identify the UFD and note its disk number: the {ufd_mib} MiB disk ({} bytes; list disk shows about {} GB)",
        opts.ufd_size,
        opts.ufd_size >> 30
    ));
    steps.push(step(
        "3.2",
        "Prepare the UFD: find its disk number",
        "nothing: ufd writes the image file named by --out; no disk is selected",
        l,
    ));
    let select = match params.ufd_disk_number {
        Some(n) => format!("select disk {n}"),
        None => "select disk <UFD disk number>".to_string(),
    };
    let mut l = Lines(Vec::new());
    l.rem("(same DiskPart session) clean erases the whole disk: check the disk number twice");
    let (ntfs_lba, ntfs_sectors) = layout.ntfs;
    let ntfs_mib = u64::from(ntfs_sectors) * 512 / mib;
    let ufd_line = match layout.esp {
        None => {
            l.diskpart_continued([
                select.as_str(),
                "clean",
                "create partition primary",
                "select partition 1",
                "active",
                "format quick fs=ntfs",
                &format!("assign letter={ul}"),
            ]);
            format!(
                "prepare the UFD: a sparse {}-byte NTFS partition file (mkntfs -Q -p {ntfs_lba} -H 255 -S 63), partition 1 ({ntfs_mib} MiB at LBA {ntfs_lba}) marked active in the MBR written by seed 4.2; no disk is touched",
                u64::from(ntfs_sectors) * 512
            )
        }
        Some((esp_lba, esp_sectors)) => {
            let e = el.unwrap_or('s');
            let esp_mib = u64::from(esp_sectors) * 512 / mib;
            let bios = opts.firmware.has_bios();
            let mut cmds = vec![
                select.clone(),
                "clean".into(),
                format!("create partition primary size={esp_mib}"),
                "select partition 1".into(),
            ];
            if !bios {
                cmds.push("active".into());
            }
            cmds.push("format quick fs=fat32 label=SYSTEM".into());
            cmds.push(format!("assign letter={e}"));
            cmds.push("create partition primary".into());
            cmds.push("select partition 2".into());
            if bios {
                cmds.push("active".into());
            }
            cmds.push("format quick fs=ntfs".into());
            cmds.push(format!("assign letter={ul}"));
            l.rem(format!(
                "Not the seed's layout (it has one NTFS partition): --firmware {} adds an EFI system partition first (Windows To Go on MBR); partition {} is the active one",
                if bios { "both" } else { "uefi" },
                if bios { 2 } else { 1 }
            ));
            l.diskpart_continued(cmds.iter().map(String::as_str));
            l.rem(format!(
                "ufd gives partition 1 type {:02X} (FAT32 LBA); check with detail partition, and if another id is shown: select partition 1, set id={:02x}",
                crate::ESP_PARTITION_TYPE,
                crate::ESP_PARTITION_TYPE
            ));
            format!(
                "prepare the UFD + prepare the ESP: a {}-byte FAT32 partition file (mkfs.fat -F 32 -S 512 -s 1 -h {esp_lba}, label SYSTEM, {esp_mib} MiB at LBA {esp_lba}) and a {}-byte NTFS partition file (mkntfs -Q -p {ntfs_lba}, {ntfs_mib} MiB at LBA {ntfs_lba}); the MBR is written by seed 4.2; no disk is touched",
                u64::from(esp_sectors) * 512,
                u64::from(ntfs_sectors) * 512
            )
        }
    };
    steps.push(step(
        "3.3",
        "Prepare the UFD: partition and format",
        ufd_line,
        l,
    ));

    // ---- Step 4: Copy files to the UFD
    let mut l = Lines(Vec::new());
    l.cmd(format!("copy {vhd_file} {ul}:"));
    steps.push(step(
        "4.1",
        "Copy the VHD to the UFD",
        format!(
            "copy the VHD to the UFD: \\{vhd_name} created in the UFD's NTFS with ntfsfallocate (allocated clusters, not sparse), the VHD's data placed at those clusters (zero copy where the host file system inserts ranges, else copied into them), {} bytes",
            vhd_file_bytes
        ),
        l,
    ));
    let mut l = Lines(Vec::new());
    let bootsect_ufd = if opts.firmware.has_bios() {
        l.cmd(format!(
            "cd /d \"c:\\program files\\{kit}\\tools\\PETools\\amd64\\\""
        ))
        .cmd(format!("bootsect /nt60 {ul}: /force /mbr"));
        "assemble the UFD: the project's own MBR code and NTFS boot record loading \\bootmgr (crate ufd-bootcode, no Microsoft bytes), written into the image".to_string()
    } else {
        l.rem(format!(
            "Not for --firmware uefi: UEFI firmware starts \\EFI\\BOOT\\BOOTX64.EFI from the FAT32 partition and runs no boot code; there is no \\bootmgr on {ul}: for bootsect /nt60 to load"
        ));
        "assemble the UFD: MBR code only (crate ufd-bootcode); a BIOS boot of this UFD stops at a message, the NTFS partition keeps mkntfs's boot sector".to_string()
    };
    steps.push(step(
        "4.2",
        "Update the boot code to be compatible with Bootmgr",
        bootsect_ufd,
        l,
    ));

    // ---- Step 5: Create a BCD store on the UFD
    let mut l = Lines(Vec::new());
    l.diskpart([
        format!("select vdisk file={on_ufd}").as_str(),
        "attach vdisk",
    ]);
    l.rem(format!(
        "The seed assumes the VHD's partition comes back as {vl}: (Windows remembers the letter by disk signature and offset). If it does not: diskpart, select vdisk file={on_ufd}, list volume, select volume <the hyperV volume>, assign letter={vl}, exit"
    ));
    steps.push(step(
        "5.2",
        "Attach the VHD on the UFD",
        "nothing is attached: seed 5.3 reads the boot files from the WIM",
        l,
    ));
    let mut l = Lines(Vec::new());
    let locale = if opts.locale.eq_ignore_ascii_case("en-US") {
        String::new()
    } else {
        format!(" /l {}", opts.locale)
    };
    let mut stores = Vec::new();
    match (opts.firmware, el) {
        (Firmware::Bios, _) | (_, None) => {
            l.cmd(format!("bcdboot {vl}:\\windows /s {ul}:{locale}"));
            l.rem("The seed's Windows 7 bcdboot writes the BIOS boot files when the technician computer boots by BIOS; a Windows 8 or later bcdboot takes /f BIOS to say so");
            stores.push(format!("{ul}:\\boot\\bcd"));
        }
        (Firmware::Uefi, Some(e)) => {
            l.rem("/f needs the Windows 8 or later bcdboot (Windows 7's writes the files of the technician computer's own firmware)");
            l.cmd(format!("bcdboot {vl}:\\windows /s {e}: /f UEFI{locale}"));
            stores.push(format!("{e}:\\EFI\\Microsoft\\Boot\\BCD"));
        }
        (Firmware::Both, Some(e)) => {
            l.rem(format!(
                "Two runs, not /f ALL: /f ALL puts both stores on the FAT32 partition; ufd keeps the BIOS files on the active NTFS partition {ul}: (its boot record reads NTFS) and the UEFI files on {e}:. /f needs the Windows 8 or later bcdboot"
            ));
            l.cmd(format!("bcdboot {vl}:\\windows /s {ul}: /f BIOS{locale}"));
            l.cmd(format!("bcdboot {vl}:\\windows /s {e}: /f UEFI{locale}"));
            stores.push(format!("{ul}:\\boot\\bcd"));
            stores.push(format!("{e}:\\EFI\\Microsoft\\Boot\\BCD"));
        }
    }
    let device = match opts.vhd_device_form {
        VhdDeviceForm::Partition => format!("vhd=[{}:]\\{vhd_name}", ul.to_ascii_uppercase()),
        VhdDeviceForm::Locate => format!("vhd=[locate]\\{vhd_name}"),
    };
    l.rem(format!(
        "The seed gives no bcdedit command: bcdboot, run on the VHD attached from {ul}:, sets the loader's device and osdevice to vhd=[{}:]\\{vhd_name} itself",
        ul.to_ascii_uppercase()
    ));
    for s in &stores {
        if opts.vhd_device_form == VhdDeviceForm::Locate {
            l.rem("Not in the seed (ufd --vhd-device locate: survives a changed disk signature):");
            for element in ["device", "osdevice"] {
                l.cmd(format!(
                    "bcdedit /store {s} /set {{default}} {element} {device}"
                ));
            }
        }
        if let Some(d) = &opts.description {
            l.rem("Not in the seed (ufd --description):");
            l.cmd(format!(
                "bcdedit /store {s} /set {{default}} description \"{d}\""
            ));
        }
        l.rem(format!("To check: bcdedit /store {s} /enum"));
    }
    steps.push(step(
        "5.3",
        "Create the BCD store with BCDboot",
        format!(
            "bcdboot: the boot files extracted from the WIM (wimextract), the store(s) built in Rust from the image's BCD-Template, loader device and osdevice {}, locale {}",
            match opts.vhd_device_form {
                VhdDeviceForm::Partition => format!(
                    "vhd=[the partition at byte {} of the disk with the UFD's MBR signature]\\{vhd_name}",
                    layout.ntfs_offset()
                ),
                VhdDeviceForm::Locate => device.clone(),
            },
            opts.locale
        ),
        l,
    ));

    // ---- Step 6: Disable paging
    let key = "HKLM\\HyperVTemp\\ControlSet001\\Control";
    let mut l = Lines(Vec::new());
    l.cmd(format!(
        "reg load HKLM\\HyperVTemp {vl}:\\windows\\system32\\config\\system"
    ));
    if opts.disable_paging {
        l.cmd(format!(
            "reg add \"{key}\\Session Manager\\Memory Management\" /v PagingFiles /t REG_MULTI_SZ /d \"\" /f"
        ))
        .cmd(format!(
            "reg delete \"{key}\\Session Manager\\Memory Management\" /v ExistingPageFiles /f"
        ));
    } else {
        l.rem(
            "Paging left enabled (disable_paging off): the seed's reg add / reg delete are not run",
        );
    }
    if let Some(ms) = opts.poll_boot_partition_timeout {
        l.rem(format!(
            "Not in the seed's steps (its Additional Information: Hyper-V Server ships 30000 ms; ufd --poll-boot-partition-timeout {ms}):"
        ))
        .cmd(format!(
            "reg add \"{key}\\PnP\" /v PollBootPartitionTimeout /t REG_DWORD /d {ms} /f"
        ));
    }
    if !opts.keep_languages.is_empty() {
        l.rem(format!(
            "DISM and lpksetup delete the removed languages' Control\\MUI\\UILanguages keys themselves; ufd, which leaves out folders, deletes them in every control set, as reg delete \"{key}\\MUI\\UILanguages\\<ll-CC>\" /f would"
        ));
    }
    l.rem("The seed edits ControlSet001; ufd edits the set Select\\Default names (ControlSet001 in a fresh image) and Select\\Current when it differs");
    l.cmd("reg unload HKLM\\HyperVTemp");
    steps.push(step(
        "6",
        "Disable paging",
        "disable paging, run before seed 2.2 on the partition file so the VHD carries it: ntfscat SYSTEM out, in-place hive edit (ufd-formats hive::Editor), ntfscp back",
        l,
    ));

    // ---- Step 7: Detach the VHD
    let mut l = Lines(Vec::new());
    l.diskpart([
        format!("select vdisk file={on_ufd}").as_str(),
        "detach vdisk",
    ]);
    steps.push(step(
        "7",
        "Detach the VHD",
        format!(
            "commit: the finished image fsynced and renamed onto {} (nothing incomplete is ever under that name)",
            opts.out.display()
        ),
        l,
    ));

    Ok(Plan {
        firmware: opts.firmware,
        ufd_size: opts.ufd_size,
        ufd_size_mib: ufd_mib,
        vhd_maximum_mib: vhd_mib,
        vhd_file_bytes,
        esp_size_mib: layout.esp.map(|(_, n)| u64::from(n) * 512 / mib),
        vhd_file,
        vhd_letter: format!("{vl}:"),
        ufd_letter: format!("{ul}:"),
        esp_letter: el.map(|e| format!("{e}:")),
        ufd_disk_number: params.ufd_disk_number,
        partitions: layout.report(),
        warnings,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// The seed's commands for the BIOS layout, verbatim and in its order (steps 1.1, 2.1,
    /// 2.2, 3.2, 3.3, 4.1, 4.2, 5.2, 5.3, 6, 7), with its placeholders filled the way the plan
    /// fills them by default. Compared case-insensitively (the seed spells `HyperV.vhd` once).
    const SEED_BIOS: &[&str] = &[
        "mkdir c:\\hvvhd",
        "diskpart",
        "create vdisk file=c:\\hvvhd\\hyperV.vhd maximum=12288 type=fixed",
        "select vdisk file=c:\\hvvhd\\hyperV.vhd",
        "attach vdisk",
        "create partition primary",
        "assign letter=r",
        "format quick fs=ntfs label=hyperV",
        "exit",
        "cd /d \"c:\\program files\\Windows AIK\\tools\\amd64\\\"",
        "imagex /apply d:\\sources\\install.wim 1 r:\\",
        "diskpart",
        "select vdisk file=c:\\hvvhd\\hyperV.vhd",
        "detach vdisk",
        "exit",
        "diskpart",
        "list disk",
        "select disk <UFD disk number>",
        "clean",
        "create partition primary",
        "select partition 1",
        "active",
        "format quick fs=ntfs",
        "assign letter=z",
        "exit",
        "copy c:\\hvvhd\\hyperV.vhd z:",
        "cd /d \"c:\\program files\\Windows AIK\\tools\\PETools\\amd64\\\"",
        "bootsect /nt60 z: /force /mbr",
        "diskpart",
        "select vdisk file=z:\\HyperV.vhd",
        "attach vdisk",
        "exit",
        "bcdboot r:\\windows /s z:",
        "reg load HKLM\\HyperVTemp r:\\windows\\system32\\config\\system",
        "reg add \"HKLM\\HyperVTemp\\ControlSet001\\Control\\Session Manager\\Memory Management\" /v PagingFiles /t REG_MULTI_SZ /d \"\" /f",
        "reg delete \"HKLM\\HyperVTemp\\ControlSet001\\Control\\Session Manager\\Memory Management\" /v ExistingPageFiles /f",
        "reg unload HKLM\\HyperVTemp",
        "diskpart",
        "select vdisk file=z:\\hyperV.vhd",
        "detach vdisk",
        "exit",
    ];

    fn opts(firmware: Firmware) -> ProvisionOptions {
        let mut o = ProvisionOptions::seed("/var/lib/ufd/install.wim", "/srv/ufd/ufd.img");
        o.firmware = firmware;
        o
    }

    fn plan(o: &ProvisionOptions) -> Plan {
        windows_plan(o, &PlanParams::default()).unwrap()
    }

    /// Position of each of `wanted` in `have`, in order; panics naming the first one missing.
    fn assert_subsequence(have: &[&str], wanted: &[&str]) {
        let mut at = 0;
        for w in wanted {
            match have[at..].iter().position(|h| h.eq_ignore_ascii_case(w)) {
                Some(i) => at += i + 1,
                None => panic!(
                    "{w:?} is missing or out of the seed's order after command {at}:\n{}",
                    have.join("\n")
                ),
            }
        }
    }

    fn snapshot(name: &str, text: &str) {
        insta::with_settings!({
            snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../../snapshots"),
            prepend_module_to_snapshot => false,
        }, {
            insta::assert_snapshot!(format!("plan__{name}"), text);
        });
    }

    #[rstest]
    #[case::bios("bios", Firmware::Bios, &[], None)]
    #[case::uefi("uefi", Firmware::Uefi, &[], None)]
    #[case::both("both", Firmware::Both, &[], None)]
    #[case::bios_keep_language_poll("bios_keep_language_poll", Firmware::Bios, &["en-US"], Some(30000))]
    fn text_snapshots(
        #[case] name: &str,
        #[case] firmware: Firmware,
        #[case] keep: &[&str],
        #[case] poll: Option<u32>,
    ) {
        let mut o = opts(firmware);
        o.keep_languages = keep.iter().map(|s| s.to_string()).collect();
        o.poll_boot_partition_timeout = poll;
        let p = plan(&o);
        let text = p.to_string();
        // The text is exactly the commands and remarks of the steps, nothing else.
        let mut cmds = p.commands();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if !line.starts_with("REM ") {
                assert_eq!(Some(line), cmds.next(), "{text}");
            }
        }
        assert_eq!(cmds.next(), None);
        snapshot(name, &text);
    }

    #[test]
    fn json_snapshot() {
        let mut o = opts(Firmware::Both);
        o.ufd_size = 32_000_000_000;
        o.vhd_size = 16384 << 20;
        let v = serde_json::to_string_pretty(&plan(&o)).unwrap();
        snapshot("both_32gb.json", &v);
    }

    #[test]
    fn seed_commands_appear_in_the_seeds_order() {
        let p = plan(&opts(Firmware::Bios));
        let have: Vec<&str> = p.commands().collect();
        assert_subsequence(&have, SEED_BIOS);
        // ... and nothing else: the BIOS default is the seed's procedure itself.
        assert_eq!(have.len(), SEED_BIOS.len(), "{}", have.join("\n"));
    }

    #[rstest]
    #[case(Firmware::Uefi)]
    #[case(Firmware::Both)]
    fn uefi_layouts_keep_the_seeds_order(#[case] firmware: Firmware) {
        let p = plan(&opts(firmware));
        let have: Vec<&str> = p.commands().collect();
        // The seed's commands that stay (UEFI has no bootsect; bcdboot gains /f; which
        // partition is selected and made active is checked below).
        let seed: Vec<&str> = SEED_BIOS
            .iter()
            .copied()
            .filter(|c| {
                !c.starts_with("bcdboot")
                    && !["select partition 1", "active"].contains(c)
                    && (firmware == Firmware::Both
                        || !(c.starts_with("bootsect") || c.contains("PETools")))
            })
            .collect();
        assert_subsequence(&have, &seed);
        let esp = [
            "create partition primary size=100",
            "format quick fs=fat32 label=SYSTEM",
            "assign letter=s",
            "create partition primary",
            "select partition 2",
        ];
        assert_subsequence(&have, &esp);
        let bcdboot: Vec<&str> = have
            .iter()
            .copied()
            .filter(|c| c.starts_with("bcdboot"))
            .collect();
        match firmware {
            Firmware::Uefi => assert_eq!(bcdboot, ["bcdboot r:\\windows /s s: /f UEFI"]),
            _ => assert_eq!(
                bcdboot,
                [
                    "bcdboot r:\\windows /s z: /f BIOS",
                    "bcdboot r:\\windows /s s: /f UEFI"
                ]
            ),
        }
        // Exactly one `active`, on the partition the layout makes active.
        let active_at = have.iter().position(|c| *c == "active").unwrap();
        assert_eq!(have.iter().filter(|c| **c == "active").count(), 1);
        let selected = have[..active_at]
            .iter()
            .rev()
            .find(|c| c.starts_with("select partition"))
            .unwrap();
        let expect = p.partitions.iter().find(|x| x.active).unwrap().number;
        assert_eq!(*selected, format!("select partition {expect}"));
    }

    #[rstest]
    #[case(12 << 30, 16_000_000_000, "maximum=12288", 15258)]
    #[case(8 << 30, 16_000_000_000, "maximum=8192", 15258)]
    #[case(20 << 30, 32_000_000_000, "maximum=20480", 30517)]
    fn sizes_follow_the_options(
        #[case] vhd: u64,
        #[case] ufd: u64,
        #[case] maximum: &str,
        #[case] ufd_mib: u64,
    ) {
        let mut o = opts(Firmware::Uefi);
        o.vhd_size = vhd;
        o.ufd_size = ufd;
        o.esp_size = 350 << 20;
        let p = plan(&o);
        let create = p
            .commands()
            .find(|c| c.starts_with("create vdisk"))
            .unwrap();
        assert!(
            create.ends_with(&format!("{maximum} type=fixed")),
            "{create}"
        );
        assert!(p
            .commands()
            .any(|c| c == "create partition primary size=350"));
        assert_eq!(
            (p.vhd_maximum_mib, p.ufd_size_mib, p.esp_size_mib),
            (vhd >> 20, ufd_mib, Some(350))
        );
        assert_eq!(p.vhd_file_bytes, vhd + 512);
        assert!(
            p.to_string()
                .contains(&format!("the {ufd_mib} MiB disk ({ufd} bytes")),
            "{p}"
        );
    }

    #[test]
    fn letters_disk_number_and_paths_are_options() {
        let params = PlanParams {
            ufd_disk_number: Some(3),
            vhd_letter: 'Q',
            ufd_letter: 'u',
            esp_letter: 't',
            vhd_dir: "e:\\work\\".into(),
            wim_path: "f:\\images\\hv.wim".into(),
            kit: "Windows OPK".into(),
        };
        let mut o = opts(Firmware::Both);
        o.index = 2;
        let p = windows_plan(&o, &params).unwrap();
        let have: Vec<&str> = p.commands().collect();
        assert_subsequence(
            &have,
            &[
                "mkdir e:\\work",
                "create vdisk file=e:\\work\\hyperV.vhd maximum=12288 type=fixed",
                "assign letter=q",
                "cd /d \"c:\\program files\\Windows OPK\\tools\\amd64\\\"",
                "imagex /apply f:\\images\\hv.wim 2 q:\\",
                "select disk 3",
                "assign letter=t",
                "assign letter=u",
                "copy e:\\work\\hyperV.vhd u:",
                "bootsect /nt60 u: /force /mbr",
                "select vdisk file=u:\\hyperV.vhd",
                "bcdboot q:\\windows /s u: /f BIOS",
                "bcdboot q:\\windows /s t: /f UEFI",
                "reg load HKLM\\HyperVTemp q:\\windows\\system32\\config\\system",
            ],
        );
        assert_eq!(
            (
                p.vhd_letter.as_str(),
                p.ufd_letter.as_str(),
                p.esp_letter.as_deref()
            ),
            ("q:", "u:", Some("t:"))
        );
    }

    #[rstest]
    #[case('z', 'z', 's', "drive letter z:")]
    #[case('c', 'z', 's', "drive letter c:")]
    #[case('r', 'd', 's', "drive letter d:")]
    #[case('r', 'z', 'r', "drive letter r:")]
    #[case('1', 'z', 's', "--vhd-letter '1'")]
    fn bad_letters_are_usage_errors(
        #[case] v: char,
        #[case] u: char,
        #[case] e: char,
        #[case] says: &str,
    ) {
        let params = PlanParams {
            vhd_letter: v,
            ufd_letter: u,
            esp_letter: e,
            ..PlanParams::default()
        };
        let err = windows_plan(&opts(Firmware::Uefi), &params).unwrap_err();
        assert!(
            matches!(err, ProvisionError::Usage(_)) && err.to_string().contains(says),
            "{err}"
        );
    }

    #[test]
    fn options_provision_refuses_are_refused() {
        let mut o = opts(Firmware::Bios);
        o.vhd_size = (12 << 30) + 512;
        let e = windows_plan(&o, &PlanParams::default()).unwrap_err();
        assert!(e.to_string().contains("--vhd-size"), "{e}");
        let mut o = opts(Firmware::Bios);
        o.ufd_size = 4_000_000_000;
        o.vhd_size = 2 << 30;
        let e = windows_plan(&o, &PlanParams::default()).unwrap_err();
        assert_eq!(e.rule(), Some(ufd_formats::policy::UFD_CAPACITY), "{e}");
    }

    #[test]
    fn locate_description_and_no_paging_edit() {
        let mut o = opts(Firmware::Bios);
        o.vhd_device_form = VhdDeviceForm::Locate;
        o.description = Some("Hyper-V Server".into());
        o.disable_paging = false;
        o.locale = "de-DE".into();
        let p = plan(&o);
        let have: Vec<&str> = p.commands().collect();
        assert_subsequence(
            &have,
            &[
                "bcdboot r:\\windows /s z: /l de-DE",
                "bcdedit /store z:\\boot\\bcd /set {default} device vhd=[locate]\\hyperV.vhd",
                "bcdedit /store z:\\boot\\bcd /set {default} osdevice vhd=[locate]\\hyperV.vhd",
                "bcdedit /store z:\\boot\\bcd /set {default} description \"Hyper-V Server\"",
                "reg load HKLM\\HyperVTemp r:\\windows\\system32\\config\\system",
                "reg unload HKLM\\HyperVTemp",
            ],
        );
        assert!(!have.iter().any(|c| c.contains("PagingFiles")), "{p}");
    }
}
