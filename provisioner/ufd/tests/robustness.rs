//! Robustness of `ufd provision` to an image file (issue 6, item 5, image-file half), on the
//! real binary and the built-in synthetic image at a small size (512 MB UFD, 256 MiB VHD):
//!
//! * `kill -9` at every step boundary and in the middle of a running tool leaves nothing under
//!   `--out`; what it leaves is the run's temporary directory, which the next provision into the
//!   same directory removes (`ufd_provision::stale::remove_stale`).
//! * SIGINT stops the run with a one-line message and exit status 130, kills the tools, and
//!   removes the temporary directory.
//! * A full file system (tmpfs of 16, 24 and 48 MiB; needs root for the mount) is a one-line
//!   "No space left on device" error naming the step and the file, with nothing left behind.
//! * `--plan` writes nothing at all.
//!
//! Kill points are step boundaries read from the progress lines (one per finished step, line
//! buffered), so the tests do not depend on timing.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const SMALL: &[&str] = &[
    "--size",
    "512M",
    "--vhd-size",
    "256M",
    "--no-policy-preflight",
    "--disk-signature",
    "0x55464431",
];

fn ufd(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ufd"));
    c.env("UFD_SYNTHETIC_CACHE", cache).env("LC_ALL", "C");
    c
}

/// Names in `dir`.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Process group of `pid` (`/proc/<pid>/stat` field 5), `None` once it is gone.
fn pgrp_of(pid: &str) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // state ppid pgrp: a zombie still has a stat line; it counts as gone.
    let mut f = after.split_whitespace();
    let state = f.next()?;
    (state != "Z").then_some(())?;
    f.nth(1)?.parse().ok()
}

/// Live processes in process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let pid: i32 = name.parse().ok()?;
            (pgrp_of(&name)? == pgid).then_some(pid)
        })
        .collect()
}

/// Wait until no process of group `pgid` (the killed run's orphaned tools) is left; SIGKILL
/// them after `grace`. Returns how many had to be killed.
fn reap_group(pgid: i32, grace: Duration) -> usize {
    let t0 = Instant::now();
    loop {
        let left = group_members(pgid);
        if left.is_empty() {
            return 0;
        }
        if t0.elapsed() > grace {
            let n = left.len();
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
            std::thread::sleep(Duration::from_millis(200));
            assert!(
                group_members(pgid).is_empty(),
                "group {pgid} survived SIGKILL"
            );
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Start a provision in its own process group; its stdout (progress lines) is piped.
fn spawn(cache: &Path, out: &Path, extra: &[&str]) -> Child {
    let mut c = ufd(cache);
    c.args(["provision", "--out"])
        .arg(out)
        .args(SMALL)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    c.spawn().expect("run ufd")
}

/// Read progress lines until the one for `step` (the `{:?}` name printed first on each line).
fn wait_for_step(lines: &mut impl Iterator<Item = std::io::Result<String>>, step: &str) {
    for l in lines.by_ref() {
        let l = l.expect("read progress");
        if l.split_whitespace().next() == Some(step) {
            return;
        }
    }
    panic!("ufd ended before step {step} finished");
}

fn signal(pid: u32, sig: &str) {
    let s = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(s.success());
}

/// Set the modification time of a directory and everything directly in it `by` into the past.
fn age(dir: &Path, by: Duration) {
    let t = SystemTime::now() - by;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let f = if p.is_dir() {
            std::fs::File::open(&p).unwrap()
        } else {
            std::fs::File::options().write(true).open(&p).unwrap()
        };
        f.set_modified(t).unwrap();
    }
    std::fs::File::open(dir).unwrap().set_modified(t).unwrap();
}

/// The steps of a provision run in order, as the progress lines name them (`Preflight`, ...),
/// from one complete run; also builds the synthetic image into `cache`.
fn complete_run(cache: &Path, out: &Path) -> Vec<String> {
    let o = ufd(cache)
        .args(["provision", "--out"])
        .arg(out)
        .args(SMALL)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
        .map(str::to_string)
        .collect()
}

/// `kill -9` the run after the progress line of `step`; wait for its orphaned tools; check that
/// nothing incomplete is under `out` and nothing but temporary directories beside it. Returns
/// the run's temporary directory if it was left.
fn kill_after(cache: &Path, out: &Path, step: &str) -> Option<PathBuf> {
    let dir = out.parent().unwrap();
    let mut child = spawn(cache, out, &[]);
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_for_step(&mut lines, step);
    signal(pid, "KILL");
    let st = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(9),
        "after {step}"
    );
    // The run's tools are orphaned, not killed: let them finish (they only write into the
    // temporary directory).
    reap_group(pid as i32, Duration::from_secs(30));
    if out.exists() {
        // Only possible when the kill landed after the commit's rename: the steps after
        // Bcdboot take ~0.1 s together on the embed route, so the run can finish between the
        // progress line and the signal. The property under test is that the final name never
        // holds a partial image: whatever is there must be complete.
        let o = ufd(cache)
            .arg("inspect")
            .arg(out)
            .arg("--json")
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let bcd = v["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["rule"] == "UFD-BCD")
            .unwrap();
        assert_eq!(bcd["outcome"], "pass", "{v}");
        std::fs::remove_file(out).unwrap();
    }
    let left = listing(dir);
    assert!(
        left.iter().all(|n| n.starts_with(".ufd.img.ufd-tmp.")),
        "after {step}: {left:?}"
    );
    let scratch = dir.join(format!(".ufd.img.ufd-tmp.{pid}"));
    eprintln!(
        "kill -9 after {step}: left {:?}",
        scratch.exists().then(|| listing(&scratch))
    );
    scratch.exists().then_some(scratch)
}

#[test]
fn kill_9_at_every_step_leaves_nothing_under_out() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let ref_dir = tmp.path().join("ref");
    std::fs::create_dir(&ref_dir).unwrap();
    let steps = complete_run(&cache, &ref_dir.join("ufd.img"));
    assert_eq!(
        steps.first().map(String::as_str),
        Some("Preflight"),
        "{steps:?}"
    );
    assert_eq!(
        steps.last().map(String::as_str),
        Some("Commit"),
        "{steps:?}"
    );
    let dir = tmp.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let out = dir.join("ufd.img");
    // After each step but the last (after Commit the image is complete by design); after
    // Preflight and CreateVdisk the kill lands while a tool (mkntfs, wimapply) runs.
    let n = steps.len() - 1;
    let left: Vec<PathBuf> = steps[..n]
        .iter()
        .filter_map(|step| kill_after(&cache, &out, step))
        .collect();
    assert!(
        !left.is_empty(),
        "kill -9 runs no destructor: the temporary directories stay until the next run"
    );
}

#[test]
fn the_next_run_removes_the_temporary_directories_of_killed_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let dir = tmp.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let out = dir.join("ufd.img");
    let old = kill_after(&cache, &out, "ApplyImage").expect("a temporary directory");
    let fresh = kill_after(&cache, &out, "ApplyImage").expect("a temporary directory");
    // `old` has been idle for longer than stale::MIN_IDLE; `fresh` has not (a run in another
    // PID namespace could still be writing it), so it stays.
    age(&old, Duration::from_secs(120));
    let o = ufd(&cache)
        .args(["provision", "--out"])
        .arg(&out)
        .args(SMALL)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!old.exists(), "{} not removed: {err}", old.display());
    assert!(err.contains(&format!("removed {}", old.display())), "{err}");
    assert!(fresh.exists(), "{} was removed: {err}", fresh.display());
    assert!(!err.contains(&fresh.display().to_string()), "{err}");
    let mut want = vec![
        "ufd.img".to_string(),
        fresh.file_name().unwrap().to_string_lossy().into_owned(),
    ];
    want.sort();
    assert_eq!(listing(&dir), want);
}

#[test]
fn sigint_stops_kills_the_tools_and_removes_the_temporary_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let ref_dir = tmp.path().join("ref");
    std::fs::create_dir(&ref_dir).unwrap();
    complete_run(&cache, &ref_dir.join("ufd.img"));

    let dir = tmp.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let out = dir.join("ufd.img");
    // After CreateVdisk the image is being applied: interrupt inside the tool's run.
    for step in ["Preflight", "CreateVdisk", "CopyVhd"] {
        let mut child = spawn(&cache, &out, &[]);
        let pid = child.id();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        wait_for_step(&mut lines, step);
        signal(pid, "INT");
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(130), "after {step}: {err}");
        let line = err
            .lines()
            .find(|l| l.contains("interrupted"))
            .unwrap_or_else(|| panic!("after {step}: no message: {err}"));
        assert!(
            line.contains("SIGINT")
                && line.contains(&out.display().to_string())
                && line.contains("nothing was written"),
            "{line}"
        );
        assert_eq!(
            reap_group(pid as i32, Duration::from_secs(5)),
            0,
            "the tools outlived the interrupted run"
        );
        assert!(
            listing(&dir).is_empty(),
            "after SIGINT at {step}: {:?}",
            listing(&dir)
        );
    }
}

struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Three sizes that run out at three places: inside a tool (wimapply, 16 MiB), in our own
/// writes while the VHD is assembled (24 MiB: tmpfs cannot insert ranges, so the data is
/// copied), and while the UFD is assembled (48 MiB).
#[rstest::rstest]
#[case("16M", "apply image")]
#[case("24M", "assemble VHD")]
#[case("48M", "assemble the UFD")]
fn a_full_file_system_is_a_clear_one_line_error_and_leaves_nothing(
    #[case] size: &str,
    #[case] step: &str,
) {
    let id = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        "0",
        "this test mounts a tmpfs: run it as root"
    );
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("mount: install the Debian package mount");
    assert!(st.success());
    let _m = Mount(mnt.clone());
    let out = mnt.join("ufd.img");
    let o = ufd(&cache)
        .args(["provision", "--out"])
        .arg(&out)
        .args(SMALL)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.contains("warning")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    eprintln!("as reported: {}", lines[0]);
    assert!(
        lines[0].starts_with(&format!("ufd: {step}: "))
            && lines[0].contains("No space left on device")
            && lines[0].contains(&mnt.display().to_string()),
        "{}",
        lines[0]
    );
    assert!(listing(&mnt).is_empty(), "{:?}", listing(&mnt));
}

#[test]
fn plan_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("X");
    for extra in [&[][..], &["--json", "--firmware", "both"][..]] {
        let o = ufd(&cache)
            .current_dir(tmp.path())
            .args(["provision", "--plan", "--out"])
            .arg(&out)
            .args(["--vhd-size", "12G", "--ufd-disk-number", "2"])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(text.contains("maximum=12288 type=fixed"), "{text}");
        assert!(text.contains("select disk 2"), "{text}");
        if extra.is_empty() {
            assert!(text.contains("bootsect /nt60 z: /force /mbr"), "{text}");
        } else {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["firmware"], "both");
            assert_eq!(v["vhd_maximum_mib"], 12288);
        }
        // No X, no temporary directory, not even the synthetic image's cache.
        assert!(listing(tmp.path()).is_empty(), "{:?}", listing(tmp.path()));
    }
    // Bad options are refused as provision refuses them (usage: exit 2), still writing nothing.
    let o = ufd(&cache)
        .args(["provision", "--plan", "--out"])
        .arg(&out)
        .args(["--vhd-letter", "z"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("drive letter z:"));
    assert!(listing(tmp.path()).is_empty());
}
