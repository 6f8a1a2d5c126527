//! Tidy checks, run as ordinary tests (rust-analyzer style): code invariants that the
//! compiler does not check, kept honest by `cargo xtask ci`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::workspace_root;

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if p.is_dir() {
            if name == "target" || name.starts_with('.') || name == "corpus" || name == "artifacts"
            {
                continue;
            }
            rust_sources(&p, out);
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

fn all_sources() -> Vec<PathBuf> {
    let mut v = Vec::new();
    rust_sources(&workspace_root(), &mut v);
    assert!(v.len() > 10, "tidy found too few sources: {v:?}");
    v
}

/// The README's test command is what CI runs (the issue tracker's CI calls `.ci/run`).
#[test]
fn ci_runs_the_readme_test_command() {
    let root = workspace_root();
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let ci = fs::read_to_string(root.join(".ci/run")).unwrap();
    let cmd = "cargo xtask ci";
    let readme_cmds: Vec<&str> = readme.lines().filter(|l| l.starts_with(cmd)).collect();
    assert!(
        readme_cmds.iter().any(|l| l.contains("# the tests")),
        "README must show `{cmd}` as its test command, found {readme_cmds:?}"
    );
    let runs: Vec<&str> = ci
        .lines()
        .filter(|l| l.trim_start().starts_with("cargo "))
        .collect();
    assert_eq!(
        runs,
        vec![cmd],
        ".ci/run must run exactly the README's test command"
    );
}

/// No stubs and no skipped tests in the product: a placeholder is a defect, not progress.
#[test]
fn no_stubs_or_ignored_tests() {
    let forbidden = [
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
        concat!("#[", "ignore"),
        concat!("dbg", "!("),
    ];
    let mut hits = Vec::new();
    for f in all_sources() {
        let text = fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            for pat in forbidden {
                if line.contains(pat) {
                    hits.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "stubs/ignored tests found:\n{}",
        hits.join("\n")
    );
}

/// The formats crate stays free of I/O and unsafe code.
#[test]
fn formats_crate_does_no_io() {
    let dir = workspace_root().join("provisioner/formats/src");
    let mut files = Vec::new();
    rust_sources(&dir, &mut files);
    let lib = fs::read_to_string(dir.join("lib.rs")).unwrap();
    assert!(lib.contains("#![forbid(unsafe_code)]"));
    assert!(lib.contains("no_std"));
    let mut hits = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        // Only the test modules (which come last in a file) may touch the file system.
        let product = text.split("#[cfg(test)]").next().unwrap_or("");
        let code: String = product
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for pat in ["std::fs", "std::io", "std::process", "std::net", "std::env"] {
            if code.contains(pat) {
                hits.push(format!("{}: uses {pat}", f.display()));
            }
        }
    }
    assert!(hits.is_empty(), "I/O in ufd-formats:\n{}", hits.join("\n"));
}

/// ARCHITECTURE.md names every workspace crate.
#[test]
fn architecture_lists_every_crate() {
    let root = workspace_root();
    let arch = fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let cargo = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members: Vec<&str> = cargo
        .split("members = [")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap()
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .filter(|s| !s.is_empty())
        .collect();
    for m in members {
        let manifest = fs::read_to_string(root.join(m).join("Cargo.toml")).unwrap();
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap();
        assert!(
            arch.contains(&format!("`{m}/`")),
            "ARCHITECTURE.md does not list folder {m}/"
        );
        assert!(
            arch.contains(&format!("`{name}`")),
            "ARCHITECTURE.md does not list crate {name}"
        );
    }
}
