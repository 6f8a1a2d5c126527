//! insta snapshots of the `.reg` export of every hive and BCD store in `shared/fixtures`
//! (reviewed text in `snapshots/`), so a change in export behaviour shows up as a diff to
//! review. The byte-for-byte oracle is hivexregedit (tests/regtext.rs); these snapshots
//! guard our own output between runs. The 18 MB SYSTEM export is summarised (size, lines,
//! keys, FNV-1a digest, its first 40 lines) rather than stored whole.

mod common;

use common::{read_fixture, HIVES};
use ufd_formats::hive::{regtext, Hive};

fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn snapshot_name(rel: &str) -> String {
    format!("reg__{}", rel.replace(['/', '.'], "_"))
}

#[test]
fn fixture_reg_export_snapshots() {
    for rel in HIVES {
        let data = read_fixture(rel);
        let hive = Hive::parse(&data).unwrap();
        let mut out = Vec::new();
        regtext::export_bytes(&hive, "\\", &mut out).unwrap();
        let text = if out.len() > 1_000_000 {
            let s = String::from_utf8_lossy(&out);
            let head: Vec<&str> = s.lines().take(40).collect();
            format!(
                "export summarised ({} bytes, {} lines, {} keys, fnv1a64 {:016x}); first 40 lines:\n{}\n",
                out.len(),
                s.lines().count(),
                s.lines().filter(|l| l.starts_with('[')).count(),
                fnv1a64(&out),
                head.join("\n")
            )
        } else {
            String::from_utf8_lossy(&out).into_owned()
        };
        insta::with_settings!({snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../../snapshots"), prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(snapshot_name(rel), text);
        });
    }
}
