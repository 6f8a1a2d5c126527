//! The built-in synthetic Windows-shaped images.
//!
//! The harness cannot ship Windows, so `ufd` carries three images that have the *shape* of a
//! Hyper-V Server 2008 R2 / Windows Server 2008 R2 / Hyper-V Server 2012 x64 `install.wim`
//! where the provisioner looks: the SYSTEM and SOFTWARE hives, `\Windows\System32\config\BCD-Template`, the boot
//! files bcdboot copies (`\Windows\Boot\PCAT\*`, `\Windows\Boot\EFI\*`, `\Windows\Boot\Fonts\*`),
//! the OS loaders, `\Windows\Setup\State\State.ini` of a generalized image and three language
//! folders (en-US, de-DE, ja-JP). Every executable is a *stand-in*: a file of realistic size
//! whose first line says what it stands for (see [`standin_bytes`]); the harness replaces the
//! boot stand-ins with real probe binaries through [`Override`]s.
//!
//! Everything is built from TEXT sources in `vm-images/synthetic/sources/` (embedded in this
//! crate, so an installed `ufd` needs no checkout):
//!
//! * `common/files.txt` — the file manifest (format documented in the file itself);
//! * `common/*.reg`, `<image>/*.reg` — `.reg` fragments; a hive is built by importing the
//!   common fragment and then the image's fragment of the same name into a new, empty hive
//!   ([`ufd_formats::hive::regtext`]);
//! * `<image>/image.txt` — the WIM image name and description;
//! * `<image>/files.txt` (optional) — manifest entries the image has in addition.
//!
//! `hyperv-2012` (NT 6.2.9200) is the 2008 R2 shape with 2012's identity, the USB 3.0 driver
//! files, and, in its sources' comments, what differs from 2008 R2 in a way that matters to
//! the procedure (with a source) and what is assumed same as 2008 R2.
//!
//! Pipeline: sources → [`tree`] (entries in memory) → [`stage`] (a directory with fixed
//! timestamps) → `wimcapture` → a WIM, cached by a content hash of every input ([`build`]).
//! Facts and their certainty are documented in `vm-images/README.md`.
#![forbid(unsafe_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use ufd_formats::hive::{regtext, Editor, ListKind, NewHive, BCD_CHILD_SD, BCD_ROOT_SD};

/// Names of the built-in images, in build order.
pub const IMAGES: &[&str] = &["hyperv-2008r2", "ws2008r2", "hyperv-2012"];

/// Bumped whenever the builder's output for the same sources changes (part of the cache key).
pub const BUILDER_VERSION: u32 = 1;

/// Timestamp of every staged file, directory and hive: 2009-07-14 00:00:00 UTC, the day the
/// NT 6.1 RTM build 7600 files are dated. Fixed so that captures are reproducible.
pub const FIXED_UNIX_TIME: u64 = 1_247_529_600;

/// [`FIXED_UNIX_TIME`] as a Windows FILETIME (100 ns since 1601-01-01), used for hive
/// base blocks and key timestamps.
pub const FIXED_FILETIME: u64 = (FIXED_UNIX_TIME + 11_644_473_600) * 10_000_000;

/// Environment variable naming a directory of override files ([`overrides_from_env`]).
pub const OVERRIDES_ENV: &str = "UFD_SYNTHETIC_OVERRIDES";

/// Environment variable overriding the cache directory of [`find_or_build`].
pub const CACHE_ENV: &str = "UFD_SYNTHETIC_CACHE";

/// The embedded sources: path relative to `vm-images/synthetic/sources/`, text.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "common/BCD-Template.reg",
        include_str!("../sources/common/BCD-Template.reg"),
    ),
    (
        "common/SYSTEM.reg",
        include_str!("../sources/common/SYSTEM.reg"),
    ),
    (
        "common/State.ini",
        include_str!("../sources/common/State.ini"),
    ),
    (
        "common/files.txt",
        include_str!("../sources/common/files.txt"),
    ),
    (
        "hyperv-2008r2/BCD-Template.reg",
        include_str!("../sources/hyperv-2008r2/BCD-Template.reg"),
    ),
    (
        "hyperv-2008r2/SOFTWARE.reg",
        include_str!("../sources/hyperv-2008r2/SOFTWARE.reg"),
    ),
    (
        "hyperv-2008r2/SYSTEM.reg",
        include_str!("../sources/hyperv-2008r2/SYSTEM.reg"),
    ),
    (
        "hyperv-2008r2/image.txt",
        include_str!("../sources/hyperv-2008r2/image.txt"),
    ),
    (
        "hyperv-2012/BCD-Template.reg",
        include_str!("../sources/hyperv-2012/BCD-Template.reg"),
    ),
    (
        "hyperv-2012/SOFTWARE.reg",
        include_str!("../sources/hyperv-2012/SOFTWARE.reg"),
    ),
    (
        "hyperv-2012/SYSTEM.reg",
        include_str!("../sources/hyperv-2012/SYSTEM.reg"),
    ),
    (
        "hyperv-2012/files.txt",
        include_str!("../sources/hyperv-2012/files.txt"),
    ),
    (
        "hyperv-2012/image.txt",
        include_str!("../sources/hyperv-2012/image.txt"),
    ),
    (
        "ws2008r2/BCD-Template.reg",
        include_str!("../sources/ws2008r2/BCD-Template.reg"),
    ),
    (
        "ws2008r2/SOFTWARE.reg",
        include_str!("../sources/ws2008r2/SOFTWARE.reg"),
    ),
    (
        "ws2008r2/SYSTEM.reg",
        include_str!("../sources/ws2008r2/SYSTEM.reg"),
    ),
    (
        "ws2008r2/image.txt",
        include_str!("../sources/ws2008r2/image.txt"),
    ),
];

/// Where error messages say a source lives.
const SOURCES_DIR: &str = "vm-images/synthetic/sources";

fn source(rel: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(p, _)| *p == rel).map(|(_, t)| *t)
}

fn check_image(name: &str) -> Result<(), String> {
    if IMAGES.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown synthetic image {name:?} (known: {})",
            IMAGES.join(", ")
        ))
    }
}

/// Identity of an image (`sources/<image>/image.txt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Directory name, e.g. `hyperv-2008r2`.
    pub name: String,
    /// WIM image NAME (shown by `wiminfo`).
    pub wim_name: String,
    /// WIM image DESCRIPTION.
    pub wim_description: String,
}

/// Read `sources/<name>/image.txt`.
pub fn spec(name: &str) -> Result<ImageSpec, String> {
    check_image(name)?;
    let rel = format!("{name}/image.txt");
    let text = source(&rel).ok_or_else(|| format!("{SOURCES_DIR}/{rel}: missing"))?;
    let (mut wim_name, mut wim_description) = (None, None);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(
                "{SOURCES_DIR}/{rel} line {}: expected KEY = VALUE",
                i + 1
            ));
        };
        let v = v.trim().to_string();
        match k.trim() {
            "wim-name" => wim_name = Some(v),
            "wim-description" => wim_description = Some(v),
            other => {
                return Err(format!(
                    "{SOURCES_DIR}/{rel} line {}: unknown key {other:?}",
                    i + 1
                ))
            }
        }
    }
    Ok(ImageSpec {
        name: name.to_string(),
        wim_name: wim_name.ok_or_else(|| format!("{SOURCES_DIR}/{rel}: no wim-name"))?,
        wim_description: wim_description
            .ok_or_else(|| format!("{SOURCES_DIR}/{rel}: no wim-description"))?,
    })
}

/// Kind of hive a `hive` manifest line builds: decides the root key name, the hive version
/// and the subkey-list kind (formats.md §1.2, §6; real files in `shared/fixtures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiveKind {
    /// SYSTEM: root `CMI-CreateHive{F10156BE-0E87-4EFB-969E-5DA29D131144}`, hive 1.5, `lh`
    /// lists, as in the Windows 7 SP1 SYSTEM fixture \[V\]. After the fragments are applied,
    /// `ControlSet001` is copied to `ControlSet002` (setup leaves two equal control sets).
    System,
    /// SOFTWARE: root `CMI-CreateHive{199DAFC2-6F16-4946-BF90-5A3FC3A60902}` (the NT 6.1
    /// SOFTWARE root name \[I\]: not in the fixtures), hive 1.5, `lh` lists.
    Software,
    /// BCD-Template: root `System`, hive 1.3, `lf` lists, the bcdedit child descriptor on
    /// every non-root key — the shape of the real template fixture
    /// `bcd/template-desktop/BCDTemplate` \[V\] (access bits 0: an NT 6.1 writer, not 2 as
    /// Windows 8+ writes).
    BcdTemplate,
}

impl HiveKind {
    fn parse(s: &str) -> Option<HiveKind> {
        match s {
            "system" => Some(HiveKind::System),
            "software" => Some(HiveKind::Software),
            "bcd-template" => Some(HiveKind::BcdTemplate),
            _ => None,
        }
    }

    /// Parameters of the new, empty hive the fragments are imported into.
    pub fn new_hive(self) -> NewHive {
        let (root, minor, file, kind, child_sd) = match self {
            HiveKind::System => (
                "CMI-CreateHive{F10156BE-0E87-4EFB-969E-5DA29D131144}",
                5,
                "SYSTEM",
                ListKind::Lh,
                None,
            ),
            HiveKind::Software => (
                "CMI-CreateHive{199DAFC2-6F16-4946-BF90-5A3FC3A60902}",
                5,
                "SOFTWARE",
                ListKind::Lh,
                None,
            ),
            HiveKind::BcdTemplate => (
                "System",
                3,
                "BCD-Template",
                ListKind::Lf,
                Some(BCD_CHILD_SD.to_vec()),
            ),
        };
        NewHive {
            root_name: root.to_string(),
            minor,
            file_name: file.to_string(),
            list_kind: Some(kind),
            root_sd: BCD_ROOT_SD.to_vec(),
            child_sd,
            timestamp: FIXED_FILETIME,
            access_bits: 0,
        }
    }
}

/// What a manifest line makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    Dir,
    /// A stand-in of `size` bytes for `what`.
    Standin {
        size: u64,
        what: String,
    },
    /// A stand-in starting with an MZ/PE header for x64 (machine 0x8664).
    PeAmd64 {
        size: u64,
        what: String,
    },
    /// The text of a source file, LF → CRLF.
    Text {
        source: String,
    },
    /// A hive built from `.reg` fragments named `source`.
    Hive {
        kind: HiveKind,
        source: String,
    },
}

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Image path, `\`-separated, relative to the image root (`Windows\System32\…`).
    pub path: String,
    pub kind: ManifestKind,
    /// `files.txt` and line, for error messages.
    pub origin: String,
}

/// The manifest of an image: `common/files.txt`, then `<image>/files.txt` if present.
pub fn manifest(name: &str) -> Result<Vec<ManifestEntry>, String> {
    check_image(name)?;
    let mut out: Vec<ManifestEntry> = Vec::new();
    for rel in ["common/files.txt".to_string(), format!("{name}/files.txt")] {
        let Some(text) = source(&rel) else { continue };
        for (i, line) in text.lines().enumerate() {
            let origin = format!("{SOURCES_DIR}/{rel} line {}", i + 1);
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = t.split_whitespace().collect();
            let bad = |why: &str| format!("{origin}: {why}: {t:?}");
            let need = |n: usize| -> Result<(), String> {
                if f.len() < n {
                    Err(bad(&format!("expected at least {n} fields")))
                } else {
                    Ok(())
                }
            };
            need(2)?;
            let path = f[1].trim_matches('\\').to_string();
            if path.is_empty()
                || path
                    .split('\\')
                    .any(|c| c.is_empty() || c == "." || c == "..")
            {
                return Err(bad("bad image path"));
            }
            let size = |s: &str| -> Result<u64, String> {
                s.parse::<u64>().map_err(|_| bad("SIZE is not a number"))
            };
            let kind = match f[0] {
                "dir" => ManifestKind::Dir,
                "standin" | "pe-amd64" => {
                    need(4)?;
                    let size = size(f[2])?;
                    let what = f[3..].join(" ");
                    if f[0] == "standin" {
                        ManifestKind::Standin { size, what }
                    } else {
                        if size < PE_HEADER_MIN {
                            return Err(bad(&format!(
                                "a pe-amd64 stand-in needs at least {PE_HEADER_MIN} bytes"
                            )));
                        }
                        ManifestKind::PeAmd64 { size, what }
                    }
                }
                "text" => {
                    need(3)?;
                    ManifestKind::Text {
                        source: f[2].to_string(),
                    }
                }
                "hive" => {
                    need(4)?;
                    let kind = HiveKind::parse(f[2])
                        .ok_or_else(|| bad("hive KIND must be system, software or bcd-template"))?;
                    ManifestKind::Hive {
                        kind,
                        source: f[3].to_string(),
                    }
                }
                other => return Err(bad(&format!("unknown entry kind {other:?}"))),
            };
            if let Some(prev) = out.iter().find(|e| e.path.eq_ignore_ascii_case(&path)) {
                return Err(bad(&format!("path already listed at {}", prev.origin)));
            }
            out.push(ManifestEntry { path, kind, origin });
        }
    }
    Ok(out)
}

/// Replace the content of one image file (a stand-in, text or hive) with a host file —
/// the way the harness puts real probe binaries in place of the boot-file stand-ins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Image path (`Windows\Boot\PCAT\bootmgr`; `/` accepted; case-insensitive).
    pub image_path: String,
    /// Host file whose bytes become the image file.
    pub source: PathBuf,
}

/// Overrides from a directory that mirrors image paths: `DIR/Windows/Boot/PCAT/bootmgr`
/// replaces `Windows\Boot\PCAT\bootmgr`. Every regular file under `dir` is one override.
pub fn overrides_from_dir(dir: &Path) -> Result<Vec<Override>, String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<Override>) -> Result<(), String> {
        let rd = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut entries: Vec<PathBuf> = Vec::new();
        for e in rd {
            entries.push(e.map_err(|e| format!("{}: {e}", dir.display()))?.path());
        }
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(root, &p, out)?;
            } else if p.is_file() {
                let rel = p.strip_prefix(root).map_err(|e| e.to_string())?;
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(Override {
                    image_path: parts.join("\\"),
                    source: p.clone(),
                });
            }
        }
        Ok(())
    }
    if !dir.is_dir() {
        return Err(format!(
            "{}: overrides directory does not exist",
            dir.display()
        ));
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// Overrides from the directory named by `$UFD_SYNTHETIC_OVERRIDES` (none if unset/empty).
pub fn overrides_from_env() -> Result<Vec<Override>, String> {
    match std::env::var_os(OVERRIDES_ENV) {
        Some(d) if !d.is_empty() => {
            overrides_from_dir(Path::new(&d)).map_err(|e| format!("{OVERRIDES_ENV}: {e}"))
        }
        _ => Ok(Vec::new()),
    }
}

/// Smallest pe-amd64 stand-in: the header layout of [`standin_bytes`] ends at 0x200 + 24.
const PE_HEADER_MIN: u64 = 0x200 + 24;
/// Where [`standin_bytes`] puts the PE signature (`e_lfanew`).
const PE_OFFSET: usize = 0x200;

/// The bytes of a stand-in: the first line is
/// `UFD-STANDIN <path>: <what>. Synthetic stand-in, not a Windows file; replaced by the
/// guest probe (harness issue) or an override (vm-images/README.md).` + CRLF, then that
/// line's text repeated up to `size` (compresses to almost nothing in the WIM). With
/// `pe`, the file starts with `MZ`, `e_lfanew` = 0x200 at 0x3C, the text from 0x40, and
/// `PE\0\0` + machine 0x8664 (AMD64) at 0x200: what wimlib reads from `kernel32.dll` to set
/// the image architecture (wimlib `src/xml_windows.c`, `set_info_from_kernel32`).
pub fn standin_bytes(path: &str, what: &str, size: u64, pe: bool) -> Vec<u8> {
    let line = format!(
        "UFD-STANDIN {path}: {what}. Synthetic stand-in, not a Windows file; replaced by the guest probe (harness issue) or an override (vm-images/README.md).\r\n"
    );
    let size = size as usize;
    let mut b = Vec::with_capacity(size);
    let start = if pe { 0x40 } else { 0 };
    b.resize(start, 0);
    while b.len() < size {
        let n = (size - b.len()).min(line.len());
        b.extend_from_slice(&line.as_bytes()[..n]);
    }
    b.truncate(size);
    if pe && size >= PE_HEADER_MIN as usize {
        b[0] = b'M';
        b[1] = b'Z';
        b[0x3C..0x40].copy_from_slice(&(PE_OFFSET as u32).to_le_bytes());
        // PE signature + COFF header (machine, 0 sections, fixed timestamp, no symbols,
        // no optional header, characteristics = executable image | DLL | large address aware).
        let coff: [u8; 24] = {
            let mut c = [0u8; 24];
            c[0..4].copy_from_slice(b"PE\0\0");
            c[4..6].copy_from_slice(&0x8664u16.to_le_bytes());
            c[8..12].copy_from_slice(&(FIXED_UNIX_TIME as u32).to_le_bytes());
            c[22..24].copy_from_slice(&0x2022u16.to_le_bytes());
            c
        };
        b[PE_OFFSET..PE_OFFSET + 24].copy_from_slice(&coff);
    }
    b
}

/// Build one hive of `image` from the fragments named `fragment` (common, then image).
pub fn build_hive(image: &str, kind: HiveKind, fragment: &str) -> Result<Vec<u8>, String> {
    check_image(image)?;
    let mut ed =
        Editor::new_hive(&kind.new_hive()).map_err(|e| format!("new {kind:?} hive: {e}"))?;
    let mut found = false;
    for rel in [format!("common/{fragment}"), format!("{image}/{fragment}")] {
        let Some(text) = source(&rel) else { continue };
        found = true;
        let reg = regtext::parse(text).map_err(|e| format!("{SOURCES_DIR}/{rel}: {e}"))?;
        regtext::apply(&reg, &mut ed, "").map_err(|e| format!("{SOURCES_DIR}/{rel}: {e}"))?;
    }
    if !found {
        return Err(format!(
            "{SOURCES_DIR}: neither common/{fragment} nor {image}/{fragment} exists"
        ));
    }
    if kind == HiveKind::System {
        copy_key(&mut ed, "ControlSet001", "ControlSet002")?;
    }
    Ok(ed.finish(FIXED_FILETIME))
}

/// Copy the key `from` (and everything below it) to `to`, values in stored order.
fn copy_key(ed: &mut Editor, from: &str, to: &str) -> Result<(), String> {
    type KeyDump = (String, Vec<(String, u32, Vec<u8>)>);
    let mut keys: Vec<KeyDump> = Vec::new();
    {
        let hive = ed.hive().map_err(|e| format!("copy {from}: {e}"))?;
        let Some(root) = hive.open(from).map_err(|e| format!("copy {from}: {e}"))? else {
            return Err(format!("copy {from} to {to}: {from} does not exist"));
        };
        let mut stack = vec![(root, to.to_string())];
        while let Some((key, path)) = stack.pop() {
            let mut vals = Vec::new();
            for v in key.values().map_err(|e| format!("copy {from}: {e}"))? {
                let name = v.name().map_err(|e| format!("copy {from}: {e}"))?;
                let data = v.data().map_err(|e| format!("copy {from}: {e}"))?;
                vals.push((name, v.value_type(), data.into_owned()));
            }
            let subs = key.subkeys().map_err(|e| format!("copy {from}: {e}"))?;
            for sk in subs.into_iter().rev() {
                let n = sk.name().map_err(|e| format!("copy {from}: {e}"))?;
                stack.push((sk, format!("{path}\\{n}")));
            }
            keys.push((path, vals));
        }
    }
    for (path, vals) in keys {
        ed.create_key(&path)
            .map_err(|e| format!("copy to {path}: {e}"))?;
        for (name, ty, data) in vals {
            ed.set_value(&path, &name, ty, &data)
                .map_err(|e| format!("copy to {path}: {e}"))?;
        }
    }
    Ok(())
}

/// One entry of an image tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Image path, `\`-separated.
    pub path: String,
    /// File bytes; `None` for a directory.
    pub content: Option<Vec<u8>>,
}

fn norm(p: &str) -> String {
    p.replace('/', "\\").trim_matches('\\').to_string()
}

/// The image as a list of directories and files (parents before children, manifest order
/// otherwise), with overrides applied. An override naming a path that is not a file of the
/// manifest is an error (it would silently do nothing).
pub fn tree(name: &str, overrides: &[Override]) -> Result<Vec<TreeEntry>, String> {
    let entries = manifest(name)?;
    for o in overrides {
        let p = norm(&o.image_path);
        let hit = entries.iter().find(|e| e.path.eq_ignore_ascii_case(&p));
        match hit {
            Some(e) if e.kind == ManifestKind::Dir => {
                return Err(format!(
                    "override {p}: a directory in image {name}, not a file"
                ))
            }
            Some(_) => {}
            None => {
                return Err(format!(
                "override {p}: no such file in image {name} (see {SOURCES_DIR}/common/files.txt)"
            ))
            }
        }
    }
    let mut out: Vec<TreeEntry> = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    let mut add_dir = |out: &mut Vec<TreeEntry>, d: &str| {
        let mut acc = String::new();
        for c in d.split('\\') {
            if !acc.is_empty() {
                acc.push('\\');
            }
            acc.push_str(c);
            if !dirs.iter().any(|x| x.eq_ignore_ascii_case(&acc)) {
                dirs.push(acc.clone());
                out.push(TreeEntry {
                    path: acc.clone(),
                    content: None,
                });
            }
        }
    };
    for e in &entries {
        if e.kind == ManifestKind::Dir {
            add_dir(&mut out, &e.path);
            continue;
        }
        if let Some((parent, _)) = e.path.rsplit_once('\\') {
            add_dir(&mut out, parent);
        }
        let ov = overrides
            .iter()
            .rev()
            .find(|o| norm(&o.image_path).eq_ignore_ascii_case(&e.path));
        let content = if let Some(o) = ov {
            fs::read(&o.source)
                .map_err(|err| format!("override {}: {}: {err}", e.path, o.source.display()))?
        } else {
            match &e.kind {
                ManifestKind::Dir => continue,
                ManifestKind::Standin { size, what } => standin_bytes(&e.path, what, *size, false),
                ManifestKind::PeAmd64 { size, what } => standin_bytes(&e.path, what, *size, true),
                ManifestKind::Text { source: s } => {
                    let text = source(&format!("{name}/{s}"))
                        .or_else(|| source(&format!("common/{s}")))
                        .ok_or_else(|| {
                            format!("{}: source {s} not found in common/ or {name}/", e.origin)
                        })?;
                    text.replace("\r\n", "\n")
                        .replace('\n', "\r\n")
                        .into_bytes()
                }
                ManifestKind::Hive { kind, source: s } => build_hive(name, *kind, s)
                    .map_err(|err| format!("{} ({}): {err}", e.path, e.origin))?,
            }
        };
        out.push(TreeEntry {
            path: e.path.clone(),
            content: Some(content),
        });
    }
    Ok(out)
}

/// Write the tree of `name` into `dir` (which must not exist yet, or be empty) and give
/// every file and directory the timestamp [`FIXED_UNIX_TIME`].
pub fn stage(name: &str, overrides: &[Override], dir: &Path) -> Result<(), String> {
    let entries = tree(name, overrides)?;
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let host = |p: &str| -> PathBuf {
        let mut h = dir.to_path_buf();
        for c in p.split('\\') {
            h.push(c);
        }
        h
    };
    for e in &entries {
        let h = host(&e.path);
        match &e.content {
            None => fs::create_dir_all(&h).map_err(|err| format!("{}: {err}", h.display()))?,
            Some(b) => {
                let mut f =
                    fs::File::create(&h).map_err(|err| format!("{}: {err}", h.display()))?;
                f.write_all(b)
                    .map_err(|err| format!("{}: {err}", h.display()))?;
            }
        }
    }
    // Timestamps last, deepest first, so that creating children does not touch them again.
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(FIXED_UNIX_TIME);
    let times = fs::FileTimes::new().set_accessed(t).set_modified(t);
    let mut paths: Vec<PathBuf> = entries.iter().map(|e| host(&e.path)).collect();
    paths.reverse();
    paths.push(dir.to_path_buf());
    for p in paths {
        let f = fs::File::open(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        f.set_times(times)
            .map_err(|e| format!("{}: set timestamps: {e}", p.display()))?;
    }
    Ok(())
}

/// Check that `tool` is on `PATH`; the error names the Debian package to install.
pub fn require_tool(tool: &str, package: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for d in std::env::split_paths(&path) {
        let p = d.join(tool);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(format!(
        "{tool} not found on PATH: install the Debian package {package} (apt-get install {package})"
    ))
}

/// Run a command; on failure the error carries its stderr.
fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// FNV-1a, 128 bit: a stable (toolchain-independent) content hash for the cache key. Not
/// cryptographic — the cache guards against stale builds, not against an adversary.
#[derive(Clone, Copy)]
struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    fn new() -> Self {
        Fnv128(Self::OFFSET)
    }
    fn bytes(&mut self, b: &[u8]) {
        // Length first, so that concatenations cannot collide by shifting bytes.
        for x in (b.len() as u64).to_le_bytes().iter().chain(b) {
            self.0 ^= u128::from(*x);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }
}

/// The cache key of an image: every embedded source, the overrides (path + bytes), the
/// builder version and the `wimcapture --version` line. 32 hex digits.
pub fn content_hash(name: &str, overrides: &[Override], wimlib: &str) -> Result<String, String> {
    check_image(name)?;
    let mut h = Fnv128::new();
    h.bytes(&BUILDER_VERSION.to_le_bytes());
    h.bytes(name.as_bytes());
    h.bytes(wimlib.as_bytes());
    for (p, t) in SOURCES {
        h.bytes(p.as_bytes());
        h.bytes(t.as_bytes());
    }
    for o in overrides {
        h.bytes(norm(&o.image_path).to_ascii_lowercase().as_bytes());
        let b = fs::read(&o.source)
            .map_err(|e| format!("override {}: {}: {e}", o.image_path, o.source.display()))?;
        h.bytes(&b);
    }
    Ok(format!("{:032x}", h.0))
}

/// What [`build`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub wim: PathBuf,
    /// The content hash ([`content_hash`]) recorded beside the WIM (`<name>.wim.key`).
    pub key: String,
    /// `false` when an up-to-date WIM was found and nothing was built.
    pub rebuilt: bool,
}

/// Build `out_dir/<name>.wim` unless `out_dir/<name>.wim.key` already records the current
/// content hash. The tree is staged in a temporary directory inside `out_dir` (removed
/// afterwards) and captured with
/// `wimcapture STAGE WIM NAME DESCRIPTION --compress=LZX --no-acls`; the WIM is written
/// under a temporary name and renamed, so a cached WIM is always complete.
pub fn build(name: &str, out_dir: &Path, overrides: &[Override]) -> Result<Built, String> {
    let spec = spec(name)?;
    let wimcapture = require_tool("wimcapture", "wimtools")?;
    let version = run(
        Command::new(&wimcapture).arg("--version"),
        "wimcapture --version",
    )?;
    let version = version.lines().next().unwrap_or("").trim().to_string();
    let key = content_hash(name, overrides, &version)?;
    let wim = out_dir.join(format!("{name}.wim"));
    let key_file = out_dir.join(format!("{name}.wim.key"));
    if wim.is_file() && fs::read_to_string(&key_file).ok().as_deref().map(str::trim) == Some(&key) {
        return Ok(Built {
            wim,
            key,
            rebuilt: false,
        });
    }
    fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let pid = std::process::id();
    let stage_dir = out_dir.join(format!(".{name}.stage-{pid}"));
    let tmp = out_dir.join(format!(".{name}.wim.tmp-{pid}"));
    let _ = fs::remove_dir_all(&stage_dir);
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        stage(name, overrides, &stage_dir)?;
        run(
            Command::new(&wimcapture)
                .arg(&stage_dir)
                .arg(&tmp)
                .arg(&spec.wim_name)
                .arg(&spec.wim_description)
                .arg("--compress=LZX")
                .arg("--no-acls"),
            &format!("wimcapture {} {}", stage_dir.display(), tmp.display()),
        )?;
        let _ = fs::remove_file(&key_file);
        fs::rename(&tmp, &wim).map_err(|e| format!("{}: {e}", wim.display()))?;
        fs::write(&key_file, format!("{key}\n")).map_err(|e| format!("{}: {e}", key_file.display()))
    })();
    let _ = fs::remove_dir_all(&stage_dir);
    let _ = fs::remove_file(&tmp);
    result?;
    Ok(Built {
        wim,
        key,
        rebuilt: true,
    })
}

/// The cache directory for [`find_or_build`]: `$UFD_SYNTHETIC_CACHE`, else
/// `$XDG_CACHE_HOME/ufd/vm-images`, else `$HOME/.cache/ufd/vm-images`, else
/// `<temp dir>/ufd-vm-images`.
pub fn default_cache_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env(CACHE_ENV) {
        return d;
    }
    if let Some(d) = env("XDG_CACHE_HOME") {
        return d.join("ufd/vm-images");
    }
    if let Some(d) = env("HOME") {
        return d.join(".cache/ufd/vm-images");
    }
    std::env::temp_dir().join("ufd-vm-images")
}

/// What `ufd provision` without `--wim` uses: the WIM of `name` in [`default_cache_dir`],
/// built (with the overrides of `$UFD_SYNTHETIC_OVERRIDES`) if missing or stale.
pub fn find_or_build(name: &str) -> Result<PathBuf, String> {
    let overrides = overrides_from_env()?;
    Ok(build(name, &default_cache_dir(), &overrides)?.wim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv128_known_vector() {
        // FNV-1a 128 of the empty input is the offset basis; our framing adds the length.
        let mut h = Fnv128::new();
        h.bytes(b"");
        assert_ne!(h.0, Fnv128::OFFSET);
        let mut a = Fnv128::new();
        a.bytes(b"ab");
        a.bytes(b"c");
        let mut b = Fnv128::new();
        b.bytes(b"a");
        b.bytes(b"bc");
        assert_ne!(a.0, b.0, "length framing separates concatenations");
    }

    #[test]
    fn pe_standin_header() {
        let b = standin_bytes("Windows\\System32\\kernel32.dll", "x", 4096, true);
        assert_eq!(&b[..2], b"MZ");
        assert_eq!(u32::from_le_bytes(b[0x3C..0x40].try_into().unwrap()), 0x200);
        assert_eq!(&b[0x200..0x204], b"PE\0\0");
        assert_eq!(u16::from_le_bytes([b[0x204], b[0x205]]), 0x8664);
        assert!(b[0x40..].starts_with(b"UFD-STANDIN Windows\\System32\\kernel32.dll: x."));
        assert_eq!(b.len(), 4096);
    }

    #[test]
    fn plain_standin_says_what_it_is() {
        let b = standin_bytes(
            "Windows\\Boot\\PCAT\\bootmgr",
            "Windows Boot Manager",
            300,
            false,
        );
        assert_eq!(b.len(), 300);
        assert!(b.starts_with(b"UFD-STANDIN Windows\\Boot\\PCAT\\bootmgr: Windows Boot Manager."));
    }

    #[test]
    fn unknown_image_is_an_error() {
        let e = spec("win95").unwrap_err();
        assert!(e.contains("unknown synthetic image \"win95\""), "{e}");
    }
}
