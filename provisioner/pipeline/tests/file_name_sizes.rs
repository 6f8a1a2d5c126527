//! The VHD's `$FILE_NAME` sizes on the UFD's NTFS (the record's own attribute and the root
//! directory's index entry) equal its `$DATA` sizes after placement, read back by ntfs-3g.

mod common;

use common::*;

fn sizes_after(text: &str, marker: &str) -> Vec<String> {
    // the "Allocated Size"/"Data Size" lines of the block that names the file
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("{marker} not found:\n{text}"));
    lines[at.saturating_sub(12)..at]
        .iter()
        .filter(|l| l.contains("Allocated Size:") || l.contains("Data Size:"))
        .map(|l| l.split_whitespace().rev().nth(1).unwrap_or("").to_string())
        .collect()
}

#[test]
fn file_name_and_index_entry_carry_the_vhd_size() {
    let dir = tempfile::tempdir().unwrap();
    let wim = ufd_synthetic::build("hyperv-2008r2", &dir.path().join("vm"), &[])
        .unwrap()
        .wim;
    let out = dir.path().join("ufd.img");
    let rep = ufd_provision::provision(&options(&wim, &out), &mut |_| {}).unwrap();
    let size = rep.vhd_placement.data_size.to_string();
    collapse_to_partition(&out);

    let mut c = tool("ntfsinfo", "ntfs-3g");
    c.args(["-v", "-F", "/hyperV.vhd"]).arg(&out);
    let info = run(c);
    let fname = &info[info.find("$FILE_NAME").expect("$FILE_NAME dumped")..];
    let data_line = fname
        .lines()
        .find(|l| l.contains("Data Size:"))
        .unwrap_or_default();
    assert!(data_line.contains(&size), "{data_line}\n{info}");

    let mut c = tool("ntfsinfo", "ntfs-3g");
    c.args(["-v", "-i", "5"]).arg(&out);
    let root = run(c);
    let s = sizes_after(&root, "'hyperV.vhd'");
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[1], size, "index entry data size");

    let mut c = tool("ntfsls", "ntfs-3g");
    c.arg("-l").arg(&out);
    let ls = run(c);
    assert!(
        ls.lines()
            .any(|l| l.contains("hyperV.vhd") && l.contains(&size)),
        "{ls}"
    );

    let mut c = tool("ntfsfix", "ntfs-3g");
    c.arg("-n").arg(&out);
    assert!(run(c).contains("processed successfully"));
}
