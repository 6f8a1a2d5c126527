//! The BIOS boot files carry the attributes bcdboot leaves (`\bootmgr` read-only + hidden +
//! system, `\Boot` hidden + system), read back by ntfs-3g's `ntfsinfo` from every place NTFS
//! keeps them: `$STANDARD_INFORMATION`, the file's `$FILE_NAME` and the root directory's index
//! entry.

mod common;

use common::*;
use std::path::Path;

use ufd_provision::{BOOTMGR_ATTRIBUTES, BOOT_DIR_ATTRIBUTES};

/// Every "File attributes: ... (0x...)" value in `text`.
fn attribute_values(text: &str) -> Vec<u32> {
    text.lines()
        .filter(|l| l.trim_start().starts_with("File attributes:"))
        .filter_map(|l| {
            let h = l.rsplit("(0x").next()?.trim_end_matches(')');
            u32::from_str_radix(h, 16).ok()
        })
        .collect()
}

fn inode_and_own_attributes(part: &Path, path: &str) -> (u64, Vec<u32>) {
    let mut c = tool("ntfsinfo", "ntfs-3g");
    c.args(["-v", "-F", path]).arg(part);
    let info = run(c);
    let inode = info
        .lines()
        .find_map(|l| l.strip_prefix("Dumping Inode "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no inode in:\n{info}"));
    // the record's own $STANDARD_INFORMATION and $FILE_NAME (a directory's dump also lists
    // its children's index entries, which carry their own attributes)
    let own = info
        .split("Dumping attribute ")
        .filter(|a| a.starts_with("$STANDARD_INFORMATION") || a.starts_with("$FILE_NAME"))
        .flat_map(attribute_values)
        .collect();
    (inode, own)
}

/// The attributes of the root index entries naming `inode` (ntfsinfo's index dump of record 5).
fn root_index_attributes(part: &Path, inode: u64) -> Vec<u32> {
    let mut c = tool("ntfsinfo", "ntfs-3g");
    c.args(["-v", "-i", "5"]).arg(part);
    let info = run(c);
    let names = |entry: &str| {
        entry.lines().any(|l| {
            l.trim_start()
                .strip_prefix("FILE record number:")
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                == Some(inode)
        })
    };
    info.split("\n\n")
        .filter(|entry| names(entry))
        .flat_map(attribute_values)
        .collect()
}

#[test]
fn bootmgr_and_boot_are_hidden_system_files() {
    let dir = tempfile::tempdir().unwrap();
    let wim = make_wim(dir.path(), true, 0);
    let out = dir.path().join("ufd.img");
    let rep = ufd_provision::provision(&options(&wim, &out), &mut |_| {}).unwrap();
    let step = rep
        .steps
        .iter()
        .find(|s| s.step == ufd_provision::Step::Bcdboot)
        .unwrap();
    assert!(
        step.detail.contains("attributes \\bootmgr"),
        "{}",
        step.detail
    );
    let part = dir.path().join("part");
    std::fs::rename(&out, &part).unwrap();
    collapse_to_partition(&part);
    for (path, want) in [
        ("/bootmgr", BOOTMGR_ATTRIBUTES),
        ("/Boot", BOOT_DIR_ATTRIBUTES),
    ] {
        let (inode, own) = inode_and_own_attributes(&part, path);
        // $STANDARD_INFORMATION and at least one $FILE_NAME
        assert!(own.len() >= 2, "{path}: {own:x?}");
        for a in &own {
            assert_eq!(a & want, want, "{path}: attributes {a:#x} lack {want:#x}");
        }
        let idx = root_index_attributes(&part, inode);
        assert!(
            !idx.is_empty(),
            "{path}: no root index entry for record {inode}"
        );
        for a in &idx {
            assert_eq!(a & want, want, "{path}: index entry {a:#x} lacks {want:#x}");
        }
    }
    // other files keep theirs: \hyperV.vhd is not hidden
    let (_, vhd) = inode_and_own_attributes(&part, "/hyperV.vhd");
    assert!(vhd.iter().all(|a| a & BOOT_DIR_ATTRIBUTES == 0), "{vhd:x?}");
    // ntfs-3g still reads the volume and the files
    let mut c = tool("ntfsls", "ntfs-3g");
    c.arg("-a").arg(&part);
    let ls = run(c);
    assert!(ls.contains("bootmgr") && ls.contains("Boot"), "{ls}");
}
