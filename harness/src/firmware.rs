//! Firmware discovery and per-run copies.
//!
//! * OVMF: Debian's `ovmf` package (`/usr/share/OVMF/OVMF_CODE_4M.fd` read-only + a per-run
//!   copy of `OVMF_VARS_4M.fd`; the 2 MiB `OVMF_CODE.fd`/`OVMF_VARS.fd` pair as a fallback),
//!   else the `OVMF-pure-efi.fd` that the `ovmf-prebuilt` 0.1 crate ships in its source (found in
//!   the cargo registry; used as a per-run read-write pflash copy), else `--firmware FILE`.
//! * `--firmware FILE`: a `*CODE*` file with a matching `*VARS*` sibling is used as the pair;
//!   any other file as one combined read-write pflash image (copied per run).
//! * SeaBIOS: QEMU's built-in BIOS, no files.
//!
//! Firmware is never passed with `-bios`: ovmf-prebuilt under `-bios` writes a 10 KB `NvVars`
//! file onto the first writable FAT filesystem it finds, including the disk under test
//! (qemu.md §0.12, §7). Per-run copies keep runs independent and the installed files pristine.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::machine::{FirmwareFiles, FirmwareKind};

/// Debian `ovmf` pairs, preferred first.
pub const DEBIAN_OVMF: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
];

/// Where the firmware came from, before the per-run copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirmwareSource {
    Builtin,
    Pair {
        code: PathBuf,
        vars: PathBuf,
    },
    Single(PathBuf),
    /// A SeaBIOS (or other legacy BIOS) image given with `--bios-firmware` (`-bios FILE`).
    Bios(PathBuf),
}

/// Find the firmware for `kind` (without copying anything). `user` is the file the user gave
/// for that kind: `--firmware FILE` (OVMF) or `--bios-firmware FILE` (SeaBIOS).
pub fn discover(kind: FirmwareKind, user: Option<&Path>) -> Result<FirmwareSource> {
    if let Some(file) = user {
        if kind == FirmwareKind::Seabios {
            // A BIOS image is mapped read-only below 4 GiB by `-bios`: no per-run copy.
            if !file.is_file() {
                return Err(Error::config(format!(
                    "--bios-firmware {}: no such file",
                    file.display()
                )));
            }
            return Ok(FirmwareSource::Bios(file.to_path_buf()));
        }
        if !file.is_file() {
            return Err(Error::config(format!(
                "--firmware {}: no such file",
                file.display()
            )));
        }
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.contains("CODE") {
            let vars = file.with_file_name(name.replacen("CODE", "VARS", 1));
            if vars.is_file() {
                return Ok(FirmwareSource::Pair {
                    code: file.to_path_buf(),
                    vars,
                });
            }
        }
        return Ok(FirmwareSource::Single(file.to_path_buf()));
    }
    match kind {
        FirmwareKind::Seabios => Ok(FirmwareSource::Builtin),
        FirmwareKind::Ovmf => {
            for (code, vars) in DEBIAN_OVMF {
                if Path::new(code).is_file() && Path::new(vars).is_file() {
                    return Ok(FirmwareSource::Pair {
                        code: code.into(),
                        vars: vars.into(),
                    });
                }
            }
            if let Some(p) = ovmf_prebuilt() {
                return Ok(FirmwareSource::Single(p));
            }
            Err(Error::MissingTool {
                tool: "OVMF_CODE_4M.fd".into(),
                package: "ovmf".into(),
            })
        }
    }
}

/// `OVMF-pure-efi.fd` inside an unpacked `ovmf-prebuilt-0.1.*` crate in the cargo registry.
fn ovmf_prebuilt() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(home.join("registry/src"))
        .ok()?
        .flatten()
        .filter_map(|reg| std::fs::read_dir(reg.path()).ok())
        .flat_map(|d| d.flatten())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("ovmf-prebuilt-")
        })
        .map(|e| e.path().join("OVMF-pure-efi.fd"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// Make the per-run copies inside `run_dir` and return what goes on the command line.
pub fn prepare(source: &FirmwareSource, run_dir: &Path) -> Result<FirmwareFiles> {
    let copy = |from: &Path, name: &str| -> Result<PathBuf> {
        let to = run_dir.join(name);
        std::fs::copy(from, &to).map_err(|e| Error::io(from, "copy the firmware", e))?;
        Ok(to)
    };
    Ok(match source {
        FirmwareSource::Builtin => FirmwareFiles::Builtin,
        FirmwareSource::Pair { code, vars } => FirmwareFiles::Pflash {
            code: code.clone(),
            vars: copy(vars, "OVMF_VARS.fd")?,
        },
        FirmwareSource::Single(f) => FirmwareFiles::PflashSingle {
            image: copy(f, "OVMF.fd")?,
        },
        FirmwareSource::Bios(f) => FirmwareFiles::Bios { image: f.clone() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_code_file_with_vars_sibling_is_a_pair() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("MY_CODE.fd"), b"c").unwrap();
        std::fs::write(d.path().join("MY_VARS.fd"), b"v").unwrap();
        std::fs::write(d.path().join("OVMF.fd"), b"x").unwrap();
        let code = d.path().join("MY_CODE.fd");
        assert_eq!(
            discover(FirmwareKind::Ovmf, Some(&code)).unwrap(),
            FirmwareSource::Pair {
                code: code.clone(),
                vars: d.path().join("MY_VARS.fd")
            }
        );
        let single = d.path().join("OVMF.fd");
        assert_eq!(
            discover(FirmwareKind::Ovmf, Some(&single)).unwrap(),
            FirmwareSource::Single(single.clone())
        );
        let run = tempfile::tempdir().unwrap();
        let files = prepare(&FirmwareSource::Single(single), run.path()).unwrap();
        assert_eq!(
            files,
            FirmwareFiles::PflashSingle {
                image: run.path().join("OVMF.fd")
            }
        );
        assert_eq!(std::fs::read(run.path().join("OVMF.fd")).unwrap(), b"x");
    }

    #[test]
    fn firmware_file_errors_are_clear() {
        let e = discover(FirmwareKind::Ovmf, Some(Path::new("/nonexistent/x.fd"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration: --firmware /nonexistent/x.fd: no such file"
        );
        let e = discover(
            FirmwareKind::Seabios,
            Some(Path::new("/nonexistent/bios.bin")),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration: --bios-firmware /nonexistent/bios.bin: no such file"
        );
        let me = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        assert_eq!(
            discover(FirmwareKind::Seabios, Some(&me)).unwrap(),
            FirmwareSource::Bios(me.clone())
        );
        assert_eq!(
            discover(FirmwareKind::Seabios, None).unwrap(),
            FirmwareSource::Builtin
        );
    }

    #[test]
    fn debian_ovmf_is_found_with_a_per_run_vars_copy() {
        let src = discover(FirmwareKind::Ovmf, None).unwrap_or_else(|e| panic!("{e}"));
        let run = tempfile::tempdir().unwrap();
        match prepare(&src, run.path()).unwrap() {
            FirmwareFiles::Pflash { code, vars } => {
                assert!(code.starts_with("/usr/share/OVMF"), "{}", code.display());
                assert_eq!(vars, run.path().join("OVMF_VARS.fd"));
                assert!(vars.metadata().unwrap().len() >= 128 * 1024);
            }
            other => panic!("expected the Debian pflash pair, got {other:?}"),
        }
    }
}
