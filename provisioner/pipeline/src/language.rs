//! `--keep-language`: the seed's "all language packs that are not required should be removed
//! from the Windows Hyper-V image" (seed, UFD requirements, Note; rule `IMG-LANGPACKS`), done
//! while the image is applied, without touching the user's WIM.
//!
//! # What is removed
//!
//! Windows keeps the resources of every installed UI language in folders named after the
//! language tag (`ll-CC`, `lll-CC`, `ll-Ssss-CC`, e.g. `\Windows\System32\de-DE`,
//! `\Windows\Boot\PCAT\de-DE`, `\Windows\Boot\EFI\de-DE`) and registers each language under
//! `SYSTEM\ControlSet00N\Control\MUI\UILanguages\<tag>` (formats.md; the synthetic image
//! reproduces this layout, vm-images/synthetic/sources/common). This module removes, for every
//! language that is not kept, every folder of that name anywhere in the image **except** under
//! `\Windows\WinSxS` and `\Windows\servicing` (the component store and the servicing stack: the
//! packages there are what `lpksetup`/DISM remove; deleting them by folder name would break
//! servicing, which the seed's note is precisely about), plus the `UILanguages` keys in every
//! control set. This is a folder-level approximation of `lpksetup /u` [reconstructed, not
//! compared with a Windows-made image]: the language's components stay registered in the
//! component store, so a later servicing operation may restore files.
//!
//! Refused before anything is written: a kept language that the image does not have, a tag
//! that is not a language tag, a BCD `--locale` that is not kept (bootmgr and winload load
//! their `.mui` from the locale's folder). Refused when the hive is edited (before the VHD is
//! built; nothing named `--out` is created): removing the image's install language
//! (`Control\Nls\Language\InstallLanguage`), which `lpksetup` refuses too.
//!
//! # How the image is filtered (design)
//!
//! The user's WIM is never modified, and the ntfs-3g tools cannot delete files from the
//! applied volume. The options in Debian 12's wimtools 1.13.6 were:
//!
//! * `wimextract` takes path lists (so could select everything but the language folders) but
//!   "does not support extracting files directly to an NTFS volume" (wimextract(1), NOTES).
//! * `wimapply` has no exclusion option; wimlib's capture-configuration exclusions apply only
//!   to capture.
//! * A temporary WIM: `wimexport` (or a copy) of the image, `wimupdate ... delete`, `wimapply`.
//!   `wimupdate` only appends a new metadata resource, but the copy itself rewrites every
//!   resource: for a 1 GB WIM that is 1 GB more written and about a second on this host's ext4
//!   (no reflinks), on a pipeline whose whole point is writing each byte once.
//! * libwim itself (package libwim15, which wimtools depends on, so it is present whenever
//!   `wimapply` is): `wimlib_open_wim` (read-only), `wimlib_update_image` with delete commands,
//!   `wimlib_extract_image(.., WIMLIB_EXTRACT_FLAG_NTFS)`. wimlib documents that changes to a
//!   `WIMStruct` "have no persistent effect until the WIM is actually written"
//!   (wimlib.h, "Basic WIM handling concepts") and we never call `wimlib_write`/`overwrite`;
//!   extraction uses the edited in-memory dentry tree. This is exactly `wimapply` (which is
//!   `wimlib_extract_image` with `WIMLIB_EXTRACT_FLAG_NTFS` for a regular-file target) minus
//!   the deleted trees, with no extra bytes written. **Chosen.**
//!
//! libwim is loaded at run time with `dlopen("libwim.so.15")` (no build-time link, no C
//! toolchain; a missing library is an "install libwim15" error). The ABI used — four functions
//! and `struct wimlib_update_command` (an `enum` + a union of the add/delete/rename commands,
//! 40 bytes on x86-64) — is libwim15's, stable since wimlib 1.7.0. wimlib's NTFS extraction
//! runs on the calling thread, so its writes are counted by the step's
//! `/proc/thread-self/io` measurement.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::sync::OnceLock;

use ufd_formats::hive::{Editor, Hive};

use crate::error::ProvisionError;
use crate::tools;
pub use ufd_formats::policy::is_language_tag;

/// Trees never searched for language folders (component store, servicing stack).
pub const EXCLUDED_TREES: &[&str] = &["/Windows/WinSxS", "/Windows/servicing"];

/// A user-typed tag in Windows' spelling (`en-us` -> `en-US`, `sr-latn-cs` -> `sr-Latn-CS`).
pub fn canonical_tag(s: &str) -> String {
    let parts: Vec<&str> = s.split('-').collect();
    let n = parts.len();
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i == 0 {
                p.to_ascii_lowercase()
            } else if i == n - 1 && p.len() == 2 {
                p.to_ascii_uppercase()
            } else {
                let l = p.to_ascii_lowercase();
                let mut c = l.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// One file or directory as `wimdir --detailed` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WimEntry {
    /// Absolute path in the image, `/`-separated (`/Windows/System32/de-DE`).
    pub path: String,
    pub is_dir: bool,
    /// Size of the unnamed data stream (wimlib's "Uncompressed size").
    pub size: u64,
    /// wimlib's link group (inode) ID; 0 when the file has one link.
    pub link_group: u64,
    pub link_count: u64,
}

/// Parse `wimdir WIM N --detailed` (wimlib 1.13): blocks of `Name = value` lines separated by
/// dashed lines; the first `Uncompressed size` after `Unnamed data stream:` is the file size.
pub fn parse_wimdir_detailed(text: &str) -> Vec<WimEntry> {
    let mut out = Vec::new();
    let mut cur: Option<WimEntry> = None;
    let mut in_unnamed = false;
    let num = |v: &str| -> u64 {
        let v = v.trim();
        let v = v.split_whitespace().next().unwrap_or("");
        match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).unwrap_or(0),
            None => v.parse().unwrap_or(0),
        }
    };
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("-----") {
            out.extend(cur.take());
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            in_unnamed = t.starts_with("Unnamed data stream");
            if t.starts_with("Named data stream") || t.starts_with("Reparse") {
                in_unnamed = false;
            }
            continue;
        };
        let k = k.trim();
        let v = v.trim();
        match k {
            "Full Path" => {
                out.extend(cur.take());
                let p = v
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .unwrap_or(v);
                cur = Some(WimEntry {
                    path: p.to_string(),
                    is_dir: false,
                    size: 0,
                    link_group: 0,
                    link_count: 1,
                });
                in_unnamed = false;
            }
            "Attributes" => {
                if let Some(e) = cur.as_mut() {
                    e.is_dir = num(v) & 0x10 != 0;
                }
            }
            "Link Group ID" => {
                if let Some(e) = cur.as_mut() {
                    e.link_group = num(v);
                }
            }
            "Link Count" => {
                if let Some(e) = cur.as_mut() {
                    e.link_count = num(v);
                }
            }
            "Uncompressed size" if in_unnamed => {
                if let Some(e) = cur.as_mut() {
                    e.size = num(v);
                }
                in_unnamed = false;
            }
            _ => {}
        }
    }
    out.extend(cur);
    out
}

/// What `--keep-language` will remove, decided before anything is written.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LanguagePlan {
    /// The kept languages, spelled as the image spells them.
    pub kept: Vec<String>,
    /// Every language the image has folders for.
    pub present: Vec<String>,
    /// The languages removed.
    pub removed: Vec<String>,
    /// Image paths of the removed folders (`/Windows/System32/de-DE`).
    pub folders: Vec<String>,
    /// Files removed (all links counted).
    pub files: u64,
    /// Bytes not applied: the sum of the removed files' sizes as wimlib reports them, each
    /// inode once and only when all its links are removed (a hard link elsewhere keeps the data).
    pub bytes_saved: u64,
}

fn is_excluded(path: &str) -> bool {
    EXCLUDED_TREES.iter().any(|t| {
        path.len() >= t.len()
            && path[..t.len()].eq_ignore_ascii_case(t)
            && (path.len() == t.len() || path.as_bytes()[t.len()] == b'/')
    })
}

/// Decide the removal from the image's listing (`entries`). Errors are usage errors: nothing
/// has been written when they happen.
pub fn plan_from_entries(
    entries: &[WimEntry],
    keep: &[String],
    locale: &str,
    wim: &Path,
) -> Result<LanguagePlan, ProvisionError> {
    for k in keep {
        if !is_language_tag(&canonical_tag(k)) {
            return Err(ProvisionError::Usage(format!(
                "--keep-language {k:?}: not a language tag (ll-CC, lll-CC or ll-Ssss-CC, e.g. en-US)"
            )));
        }
    }
    // Language folders: directories named by a tag, outside the excluded trees, not nested in
    // another language folder.
    let mut folders: Vec<(&str, &str)> = Vec::new();
    for e in entries.iter().filter(|e| e.is_dir && !is_excluded(&e.path)) {
        let name = e.path.rsplit('/').next().unwrap_or("");
        if is_language_tag(name) {
            folders.push((e.path.as_str(), name));
        }
    }
    let present: BTreeSet<&str> = folders.iter().map(|(_, n)| *n).collect();
    let mut kept = Vec::new();
    for k in keep {
        match present.iter().find(|p| p.eq_ignore_ascii_case(k)) {
            Some(p) => kept.push(p.to_string()),
            None => {
                return Err(ProvisionError::Wim {
                    path: wim.to_path_buf(),
                    message: format!(
                        "--keep-language {k}: the image has no {k} language folders (it has: {})",
                        if present.is_empty() {
                            "none".to_string()
                        } else {
                            present.iter().copied().collect::<Vec<_>>().join(", ")
                        }
                    ),
                })
            }
        }
    }
    if !keep.iter().any(|k| k.eq_ignore_ascii_case(locale)) {
        return Err(ProvisionError::Usage(format!(
            "--locale {locale} is not among --keep-language {}: bootmgr and winload load their messages from the locale's folder; keep it or choose another --locale",
            keep.join(" ")
        )));
    }
    kept.dedup();
    let removed: Vec<String> = present
        .iter()
        .filter(|p| !kept.iter().any(|k| k == *p))
        .map(|p| p.to_string())
        .collect();
    let mut removed_folders: Vec<String> = folders
        .iter()
        .filter(|(_, n)| removed.iter().any(|r| r == n))
        .map(|(p, _)| p.to_string())
        .collect();
    removed_folders.sort();
    // Drop folders nested inside another removed folder (deleted with it).
    let mut top: Vec<String> = Vec::new();
    for f in removed_folders {
        if !top.iter().any(|t| f.starts_with(&format!("{t}/"))) {
            top.push(f);
        }
    }
    let under = |p: &str| top.iter().any(|t| p.starts_with(&format!("{t}/")));
    let mut files = 0u64;
    let mut bytes = 0u64;
    // inode -> (size, links removed, link count)
    let mut groups: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    for e in entries.iter().filter(|e| !e.is_dir && under(&e.path)) {
        files += 1;
        if e.link_count > 1 && e.link_group != 0 {
            let g = groups
                .entry(e.link_group)
                .or_insert((e.size, 0, e.link_count));
            g.1 += 1;
        } else {
            bytes += e.size;
        }
    }
    bytes += groups
        .values()
        .filter(|(_, removed, count)| removed >= count)
        .map(|(size, _, _)| size)
        .sum::<u64>();
    Ok(LanguagePlan {
        kept,
        present: present.iter().map(|p| p.to_string()).collect(),
        removed,
        folders: top,
        files,
        bytes_saved: bytes,
    })
}

/// [`plan_from_entries`] on `wimdir WIM INDEX --detailed`.
pub fn plan(
    wim: &Path,
    index: u32,
    keep: &[String],
    locale: &str,
) -> Result<LanguagePlan, ProvisionError> {
    let ran = tools::run(
        "check the WIM",
        tools::WIMDIR,
        [
            wim.as_os_str(),
            index.to_string().as_ref(),
            "--detailed".as_ref(),
        ],
        None,
    )?;
    let entries = parse_wimdir_detailed(&ran.stdout);
    if entries.is_empty() {
        return Err(ProvisionError::Wim {
            path: wim.to_path_buf(),
            message: format!("wimdir listed no files for image {index}"),
        });
    }
    plan_from_entries(&entries, keep, locale, wim)
}

/// The SYSTEM-hive part: delete `ControlSetNNN\Control\MUI\UILanguages\<tag>` of every removed
/// language in every control set (a stale LastKnownGood set would otherwise still list it).
/// Refuses to remove the install language. Returns the deleted key paths.
pub fn edit_hive(
    ed: &mut Editor,
    removed: &[String],
    source: &Path,
) -> Result<Vec<String>, ProvisionError> {
    let fmt = |e| ProvisionError::format("disable paging", source, e);
    let mut targets = Vec::new();
    {
        let h: Hive<'_> = ed.hive().map_err(fmt)?;
        let root = h.root().map_err(fmt)?;
        for cs in root.subkeys().map_err(fmt)? {
            let cs_name = cs.name().map_err(fmt)?;
            if !cs_name.to_ascii_lowercase().starts_with("controlset") {
                continue;
            }
            let ui = format!("{cs_name}\\Control\\MUI\\UILanguages");
            let Some(ui_key) = h.open(&ui).map_err(fmt)? else {
                continue;
            };
            // The install language (LCID as 4 hex digits) must stay.
            let install = h
                .open(&format!("{cs_name}\\Control\\Nls\\Language"))
                .map_err(fmt)?
                .and_then(|k| k.value("InstallLanguage").ok().flatten())
                .and_then(|v| v.data().ok().map(|d| d.into_owned()))
                .map(|d| utf16z(&d))
                .and_then(|s| u32::from_str_radix(s.trim(), 16).ok());
            for lang in ui_key.subkeys().map_err(fmt)? {
                let name = lang.name().map_err(fmt)?;
                if !removed.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
                    continue;
                }
                let lcid = lang
                    .value("LCID")
                    .ok()
                    .flatten()
                    .and_then(|v| v.as_dword().ok());
                if install.is_some() && lcid == install {
                    return Err(ProvisionError::Usage(format!(
                        "--keep-language: {name} is the image's install language ({cs_name}\\Control\\Nls\\Language\\InstallLanguage {:04x}); Windows cannot run without it (lpksetup refuses to remove it too): keep {name}",
                        install.unwrap_or(0)
                    )));
                }
                targets.push(format!("{ui}\\{name}"));
            }
        }
    }
    for t in &targets {
        ed.delete_key(t).map_err(fmt)?;
    }
    Ok(targets)
}

fn utf16z(d: &[u8]) -> String {
    let units: Vec<u16> = d
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// Remove the removed languages' folders from a host directory tree (the boot files bcdboot
/// takes out of the WIM: `\Windows\Boot\PCAT\<tag>` would otherwise reach `\Boot\<tag>`).
pub fn prune_host_dir(dir: &Path, removed: &[String]) -> std::io::Result<Vec<String>> {
    let mut gone = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() && removed.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
            std::fs::remove_dir_all(entry.path())?;
            gone.push(name);
        }
    }
    gone.sort();
    Ok(gone)
}

// ---- libwim (see the module documentation for why it is used in-process)

const WIMLIB_UPDATE_OP_DELETE: c_int = 1;
const WIMLIB_DELETE_FLAG_RECURSIVE: c_int = 0x2;
const WIMLIB_EXTRACT_FLAG_NTFS: c_int = 0x1;

/// `struct wimlib_delete_command`.
#[repr(C)]
#[derive(Clone, Copy)]
struct DeleteCommand {
    wim_path: *const c_char,
    delete_flags: c_int,
}

/// `struct wimlib_add_command` (the union's largest member; only its size matters here).
#[repr(C)]
#[derive(Clone, Copy)]
struct AddCommand {
    fs_source_path: *const c_char,
    wim_target_path: *const c_char,
    config_file: *const c_char,
    add_flags: c_int,
}

#[repr(C)]
union CommandUnion {
    add: AddCommand,
    delete: DeleteCommand,
}

/// `struct wimlib_update_command`.
#[repr(C)]
struct UpdateCommand {
    op: c_int,
    u: CommandUnion,
}

type OpenWim = unsafe extern "C" fn(*const c_char, c_int, *mut *mut c_void) -> c_int;
type UpdateImage =
    unsafe extern "C" fn(*mut c_void, c_int, *const UpdateCommand, usize, c_int) -> c_int;
type ExtractImage = unsafe extern "C" fn(*mut c_void, c_int, *const c_char, c_int) -> c_int;
type Free = unsafe extern "C" fn(*mut c_void);
type ErrorString = unsafe extern "C" fn(c_int) -> *const c_char;

struct Libwim {
    open: OpenWim,
    update: UpdateImage,
    extract: ExtractImage,
    free: Free,
    error_string: ErrorString,
}

const LIBWIM: &str = "libwim.so.15";

fn libwim() -> Result<&'static Libwim, String> {
    static LIB: OnceLock<Result<Libwim, String>> = OnceLock::new();
    LIB.get_or_init(|| {
        let name = CString::new(LIBWIM).map_err(|e| e.to_string())?;
        // SAFETY: dlopen/dlsym/dlerror with valid C strings; the handle is never closed, so the
        // function pointers stay valid for the life of the process.
        unsafe {
            let h = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if h.is_null() {
                let why = libc::dlerror();
                let why = if why.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(why).to_string_lossy().into_owned()
                };
                return Err(format!(
                    "{LIBWIM} cannot be loaded ({why}): install the Debian package libwim15 (apt-get install libwim15)"
                ));
            }
            let sym = |n: &str| -> Result<*mut c_void, String> {
                let c = CString::new(n).map_err(|e| e.to_string())?;
                let p = libc::dlsym(h, c.as_ptr());
                if p.is_null() {
                    Err(format!("{LIBWIM} has no symbol {n}: wimlib too old (need libwim15 >= 1.7)"))
                } else {
                    Ok(p)
                }
            };
            let init: unsafe extern "C" fn(c_int) -> c_int =
                std::mem::transmute(sym("wimlib_global_init")?);
            let lib = Libwim {
                open: std::mem::transmute::<*mut c_void, OpenWim>(sym("wimlib_open_wim")?),
                update: std::mem::transmute::<*mut c_void, UpdateImage>(sym(
                    "wimlib_update_image",
                )?),
                extract: std::mem::transmute::<*mut c_void, ExtractImage>(sym(
                    "wimlib_extract_image",
                )?),
                free: std::mem::transmute::<*mut c_void, Free>(sym("wimlib_free")?),
                error_string: std::mem::transmute::<*mut c_void, ErrorString>(sym(
                    "wimlib_get_error_string",
                )?),
            };
            let r = init(0);
            if r != 0 {
                return Err(format!("wimlib_global_init failed (code {r})"));
            }
            Ok(lib)
        }
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Check that libwim can be loaded (preflight).
pub fn check_libwim() -> Result<(), ProvisionError> {
    libwim().map(|_| ()).map_err(ProvisionError::Usage)
}

struct WimHandle<'a> {
    lib: &'a Libwim,
    wim: *mut c_void,
}

impl Drop for WimHandle<'_> {
    fn drop(&mut self) {
        // SAFETY: `wim` came from wimlib_open_wim and is freed once.
        unsafe { (self.lib.free)(self.wim) }
    }
}

fn c_path(p: &Path) -> Result<CString, ProvisionError> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| ProvisionError::Usage(format!("{}: path contains a NUL byte", p.display())))
}

/// `wimapply WIM INDEX target` minus the plan's folders: libwim opens `wim` read-only, deletes
/// the folders from its in-memory image and extracts it onto the NTFS volume file `target`.
/// The WIM file is not written to.
pub fn apply_filtered(
    wim: &Path,
    index: u32,
    folders: &[String],
    target: &Path,
) -> Result<(), ProvisionError> {
    let lib = libwim().map_err(ProvisionError::Usage)?;
    let wim_c = c_path(wim)?;
    let target_c = c_path(target)?;
    let err = |what: &str, code: c_int| {
        // SAFETY: wimlib_get_error_string returns a static string (or NULL).
        let s = unsafe { (lib.error_string)(code) };
        let msg = if s.is_null() {
            String::new()
        } else {
            // SAFETY: non-null static NUL-terminated string owned by wimlib.
            unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
        };
        ProvisionError::Wim {
            path: wim.to_path_buf(),
            message: format!("libwim {what} failed: {msg} (wimlib error {code})"),
        }
    };
    let image = c_int::try_from(index)
        .map_err(|_| ProvisionError::Usage(format!("image index {index} too large")))?;
    let mut raw: *mut c_void = std::ptr::null_mut();
    // SAFETY: valid C string, out-pointer to a local; open_flags 0 = read-only open.
    let r = unsafe { (lib.open)(wim_c.as_ptr(), 0, &mut raw) };
    if r != 0 || raw.is_null() {
        return Err(err("wimlib_open_wim", r));
    }
    let handle = WimHandle { lib, wim: raw };
    let paths: Vec<CString> = folders
        .iter()
        .map(|f| {
            CString::new(f.as_str())
                .map_err(|_| ProvisionError::Usage(format!("{f:?}: path contains a NUL byte")))
        })
        .collect::<Result<_, _>>()?;
    let cmds: Vec<UpdateCommand> = paths
        .iter()
        .map(|p| UpdateCommand {
            op: WIMLIB_UPDATE_OP_DELETE,
            u: CommandUnion {
                delete: DeleteCommand {
                    wim_path: p.as_ptr(),
                    delete_flags: WIMLIB_DELETE_FLAG_RECURSIVE,
                },
            },
        })
        .collect();
    if !cmds.is_empty() {
        // SAFETY: `cmds` and the strings it points to outlive the call; wimlib copies them.
        let r = unsafe { (lib.update)(handle.wim, image, cmds.as_ptr(), cmds.len(), 0) };
        if r != 0 {
            return Err(err("wimlib_update_image (in memory)", r));
        }
    }
    // SAFETY: valid handle and C string.
    let r = unsafe {
        (lib.extract)(
            handle.wim,
            image,
            target_c.as_ptr(),
            WIMLIB_EXTRACT_FLAG_NTFS,
        )
    };
    if r != 0 {
        return Err(err("wimlib_extract_image (NTFS mode)", r));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn update_command_layout_is_libwim15s() {
        // enum (4) + padding (4) + union of 3 pointers + int (32) on x86-64.
        if cfg!(target_pointer_width = "64") {
            assert_eq!(std::mem::size_of::<UpdateCommand>(), 40);
            assert_eq!(std::mem::offset_of!(UpdateCommand, u), 8);
        }
    }

    #[rstest]
    #[case("en-US", true)]
    #[case("sr-Latn-CS", true)]
    #[case("haw-US", true)]
    #[case("EN-us", false)]
    #[case("config", false)]
    #[case("en_US", false)]
    #[case("x-y", false)]
    fn tags(#[case] s: &str, #[case] yes: bool) {
        assert_eq!(is_language_tag(s), yes);
    }

    const DETAILED: &str = r#"----------------------------------------------------------------------------
Full Path           = "/Windows/System32/de-DE"
Attributes          = 0x00000010
    FILE_ATTRIBUTE_DIRECTORY is set
Link Group ID       = 0x0000000000000000
Link Count          = 1
	Unnamed data stream:
Uncompressed size = 0 bytes

----------------------------------------------------------------------------
Full Path           = "/Windows/System32/de-DE/a.mui"
Attributes          = 0x00000080
Link Group ID       = 0x0000000000000000
Link Count          = 1
	Unnamed data stream:
Uncompressed size = 100 bytes
Compressed size   = 7 bytes

----------------------------------------------------------------------------
Full Path           = "/Windows/System32/de-DE/linked.mui"
Attributes          = 0x00000080
Link Group ID       = 0x0000000000000abc
Link Count          = 2
	Unnamed data stream:
Uncompressed size = 1000 bytes

----------------------------------------------------------------------------
Full Path           = "/Windows/WinSxS/x_de-DE/linked.mui"
Attributes          = 0x00000080
Link Group ID       = 0x0000000000000abc
Link Count          = 2
	Unnamed data stream:
Uncompressed size = 1000 bytes

----------------------------------------------------------------------------
Full Path           = "/Windows/WinSxS/de-DE"
Attributes          = 0x00000010
Link Count          = 1

----------------------------------------------------------------------------
Full Path           = "/Windows/System32/en-US"
Attributes          = 0x00000010
Link Count          = 1

----------------------------------------------------------------------------
Full Path           = "/Windows/Boot/PCAT/de-DE"
Attributes          = 0x00000010
Link Count          = 1

----------------------------------------------------------------------------
Full Path           = "/Windows/Boot/PCAT/de-DE/b.mui"
Attributes          = 0x00000080
Link Count          = 1
	Unnamed data stream:
Uncompressed size = 20 bytes
"#;

    #[test]
    fn parses_wimdir_detailed() {
        let e = parse_wimdir_detailed(DETAILED);
        assert_eq!(e.len(), 8);
        assert!(e[0].is_dir);
        assert_eq!(e[1].size, 100);
        assert_eq!((e[2].link_group, e[2].link_count), (0xabc, 2));
        assert_eq!(e[7].path, "/Windows/Boot/PCAT/de-DE/b.mui");
    }

    #[test]
    fn plan_counts_bytes_and_skips_the_component_store() {
        let e = parse_wimdir_detailed(DETAILED);
        let p = plan_from_entries(&e, &["en-us".into()], "en-US", Path::new("x.wim")).unwrap();
        assert_eq!(p.kept, ["en-US"]);
        assert_eq!(p.present, ["de-DE", "en-US"]);
        assert_eq!(p.removed, ["de-DE"]);
        assert_eq!(
            p.folders,
            ["/Windows/Boot/PCAT/de-DE", "/Windows/System32/de-DE"]
        );
        assert_eq!(p.files, 3);
        // the hard-linked file keeps its data through the WinSxS link
        assert_eq!(p.bytes_saved, 120);
    }

    #[rstest]
    #[case(&["fr-FR"], "en-US", "no fr-FR language folders")]
    #[case(&["english"], "en-US", "not a language tag")]
    #[case(&["de-DE"], "en-US", "--locale en-US is not among")]
    fn plan_errors(#[case] keep: &[&str], #[case] locale: &str, #[case] msg: &str) {
        let e = parse_wimdir_detailed(DETAILED);
        let keep: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
        let err = plan_from_entries(&e, &keep, locale, Path::new("x.wim"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(msg), "{err}");
    }

    #[test]
    fn hive_keys_deleted_and_install_language_kept() {
        use ufd_formats::hive::{value_type as vt, NewHive};
        let mut ed = Editor::new_hive(&NewHive {
            root_name: "SYSTEM".into(),
            ..NewHive::default()
        })
        .unwrap();
        let sz = |s: &str| -> Vec<u8> {
            s.encode_utf16()
                .chain([0])
                .flat_map(u16::to_le_bytes)
                .collect()
        };
        for cs in ["ControlSet001", "ControlSet002"] {
            for (l, id) in [("en-US", 0x409u32), ("de-DE", 0x407)] {
                let k = format!("{cs}\\Control\\MUI\\UILanguages\\{l}");
                ed.create_key(&k).unwrap();
                ed.set_value(&k, "LCID", vt::REG_DWORD, &id.to_le_bytes())
                    .unwrap();
            }
            let nls = format!("{cs}\\Control\\Nls\\Language");
            ed.create_key(&nls).unwrap();
            ed.set_value(&nls, "InstallLanguage", vt::REG_SZ, &sz("0409"))
                .unwrap();
        }
        let bytes = ed.finish(0);
        let mut ed = Editor::open(bytes.clone()).unwrap();
        let gone = edit_hive(&mut ed, &["de-DE".into()], Path::new("SYSTEM")).unwrap();
        assert_eq!(
            gone,
            [
                "ControlSet001\\Control\\MUI\\UILanguages\\de-DE",
                "ControlSet002\\Control\\MUI\\UILanguages\\de-DE"
            ]
        );
        let h = ed.hive().unwrap();
        assert!(h
            .open("ControlSet002\\Control\\MUI\\UILanguages\\de-DE")
            .unwrap()
            .is_none());
        assert!(h
            .open("ControlSet002\\Control\\MUI\\UILanguages\\en-US")
            .unwrap()
            .is_some());
        let mut ed = Editor::open(bytes).unwrap();
        let e = edit_hive(&mut ed, &["en-US".into()], Path::new("SYSTEM"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("install language"), "{e}");
    }
}
