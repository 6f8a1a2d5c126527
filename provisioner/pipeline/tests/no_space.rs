//! Running out of space mid-pipeline (a 24 MiB tmpfs, which also cannot insert ranges, so the
//! copy fallbacks run) leaves nothing named `--out` and no temporary files. Needs root for the
//! mount; fails loudly otherwise.

mod common;

use common::*;

struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn no_space_left_leaves_nothing_behind() {
    // SAFETY: plain getter.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test mounts a tmpfs: run it as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let wim = make_wim(dir.path(), false, 12 << 20);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut c = tool("mount", "mount");
    c.args(["-t", "tmpfs", "-o", "size=24M", "tmpfs"]).arg(&mnt);
    run(c);
    let _m = Mount(mnt.clone());
    let out = mnt.join("ufd.img");
    let e = ufd_provision::provision(&options(&wim, &out), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("No space left") || e.contains("ENOSPC") || e.contains("space"),
        "{e}"
    );
    eprintln!("error as reported: {e}");
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left on the tmpfs after `{e}`: {left:?}");
}
