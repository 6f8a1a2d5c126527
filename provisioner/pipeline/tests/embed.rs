//! Seed step 4.1's two routes (`VhdRoute::Embed`, zero copy, and `VhdRoute::Copy`) give images
//! a reader cannot tell apart, at a small size and at the seed's size (16 GiB UFD, 12 GiB VHD,
//! sparse on the host). Each image's `\hyperV.vhd`, read back through ntfs-3g (`ntfscat` at
//! the small size; `ntfsinfo`'s runlist and the image's bytes at the seed size, where catting
//! 12 GiB through libntfs-3g would dominate the suite), equals the standalone VHD the pipeline
//! built (`keep_vhd_copy`); `ntfsinfo` and `ntfsls` agree between the routes; `ufd inspect`
//! gives the same verdicts. The fallback (a file system that cannot insert ranges) is forced
//! with a tmpfs and must be reported, never silent.

mod common;

use common::*;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ufd_provision::{ProvisionOptions, Report, VhdRoute};

const C: u64 = 4096;

struct Built {
    rep: Report,
    out: PathBuf,
    vhd: PathBuf,
}

fn build(dir: &Path, wim: &Path, route: VhdRoute, seed_size: bool) -> Built {
    let name = format!("{route:?}-{}", if seed_size { "seed" } else { "small" });
    let out = dir.join(format!("{name}.img"));
    let vhd = dir.join(format!("{name}.vhd"));
    let mut o: ProvisionOptions = options(wim, &out);
    if seed_size {
        o.ufd_size = 16 << 30;
        o.vhd_size = ufd_provision::SEED_VHD_SIZE;
    }
    o.vhd_route = route;
    o.keep_vhd_copy = Some(vhd.clone());
    let rep = ufd_provision::provision(&o, &mut |_| {}).unwrap();
    assert_eq!(rep.vhd_route.requested, route);
    assert_eq!(
        rep.vhd_route.taken, route,
        "{:?} (this test needs a host file system that can insert ranges: ext4 or xfs)",
        rep.vhd_route
    );
    assert_eq!(rep.vhd_route.fallback_reason, None);
    let step = rep
        .steps
        .iter()
        .find(|s| s.step == ufd_provision::Step::CopyVhd)
        .unwrap();
    match route {
        VhdRoute::Embed => {
            assert_eq!(rep.vhd_placement.copied_bytes, 0);
            assert!(rep.vhd_route.hole_bytes > 0);
            assert!(rep.vhd_route.metadata_bytes_copied > 0);
            assert!(
                step.detail.contains("embedded (zero copy)"),
                "{}",
                step.detail
            );
        }
        VhdRoute::Copy => {
            assert!(rep.vhd_placement.copied_bytes > 0);
            assert_eq!(rep.vhd_route.hole_bytes, 0);
            assert!(step.detail.contains("copy route"), "{}", step.detail);
        }
    }
    assert!(leftovers(dir).is_empty(), "{:?}", leftovers(dir));
    Built { rep, out, vhd }
}

/// The image's NTFS partition (at 1 MiB) as its own file, cut out with util-linux.
fn partition(img: &Path) -> PathBuf {
    let part = img.with_extension("part");
    std::fs::rename(img, &part).unwrap();
    collapse_to_partition(&part);
    part
}

/// `ntfsinfo -v -F /hyperV.vhd`: (runlist as (vcn, lcn, len), data size, initialized size),
/// after checking it is neither sparse nor holed.
fn ntfsinfo_vhd(part: &Path) -> (Vec<(u64, u64, u64)>, String, String) {
    let mut c = tool("ntfsinfo", "ntfs-3g");
    c.args(["-v", "-F", "/hyperV.vhd"]).arg(part);
    let info = run(c);
    assert!(
        !info.contains("SPARSE") && !info.contains("<HOLE>"),
        "{info}"
    );
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let mut runs = Vec::new();
    let mut in_runs = false;
    for l in info.lines() {
        if l.contains("Runlist:") {
            in_runs = true;
            continue;
        }
        if in_runs {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() == 3 && f.iter().all(|x| x.starts_with("0x")) {
                runs.push((hex(f[0]), hex(f[1]), hex(f[2])));
            } else {
                in_runs = false;
            }
        }
    }
    let data = &info[info.find("Dumping attribute $DATA").expect("no $DATA dump")..];
    let field = |name: &str| {
        data.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert!(!runs.is_empty(), "no runlist in:\n{info}");
    (runs, field("Data size:"), field("Initialized size:"))
}

fn ntfsls(part: &Path) -> String {
    let mut c = tool("ntfsls", "ntfs-3g");
    c.arg("-R").arg(part);
    run(c)
}

fn sha256_file(p: &Path) -> String {
    let mut c = tool("sha256sum", "coreutils");
    c.arg(p);
    run(c).split_whitespace().next().unwrap().to_string()
}

/// `ntfscat part /hyperV.vhd | sha256sum`.
fn sha256_ntfscat(part: &Path) -> String {
    let mut cat = tool("ntfscat", "ntfs-3g");
    let mut cat = cat
        .arg(part)
        .arg("/hyperV.vhd")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sum = tool("sha256sum", "coreutils");
    let o = sum.stdin(cat.stdout.take().unwrap()).output().unwrap();
    assert!(cat.wait().unwrap().success(), "ntfscat /hyperV.vhd");
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn extents(f: &File) -> Vec<(u64, u64)> {
    ufd_provision::sparse::data_extents(f).unwrap()
}

fn read_at(f: &mut File, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    f.seek(SeekFrom::Start(off)).unwrap();
    f.read_exact(&mut b).unwrap();
    b
}

/// The VHD read through `runs` (from ntfsinfo) out of the partition file equals `vhd`, byte
/// for byte: compared over every range where either side has data (elsewhere both are holes).
fn vhd_through_runs_equals(part: &Path, runs: &[(u64, u64, u64)], vhd: &Path) {
    let mut p = File::open(part).unwrap();
    let mut v = File::open(vhd).unwrap();
    let vlen = v.metadata().unwrap().len();
    let pext = extents(&p);
    let vext = extents(&v);
    let mut compared = 0u64;
    for &(vcn, lcn, len) in runs {
        let (a, b) = (vcn * C, ((vcn + len) * C).min(vlen));
        let to_part = |x: u64| lcn * C + (x - a);
        // ranges to compare, in VHD coordinates
        let mut ranges: Vec<(u64, u64)> = vext
            .iter()
            .map(|&(s, e)| (s.max(a), e.min(b)))
            .chain(pext.iter().filter_map(|&(s, e)| {
                let (ps, pe) = (lcn * C, lcn * C + (b - a));
                let (s, e) = (s.max(ps), e.min(pe));
                (s < e).then(|| (s - ps + a, e - ps + a))
            }))
            .filter(|(s, e)| s < e)
            .collect();
        ranges.sort();
        for (s, e) in ranges {
            let mut at = s;
            while at < e {
                let n = (e - at).min(8 << 20) as usize;
                let want = read_at(&mut v, at, n);
                let got = read_at(&mut p, to_part(at), n);
                assert!(
                    want == got,
                    "VHD bytes {at}..{} differ from the image at partition byte {}",
                    at + n as u64,
                    to_part(at)
                );
                compared += n as u64;
                at += n as u64;
            }
        }
    }
    assert!(compared > 0);
}

fn verdicts(img: &Path) -> Vec<(String, ufd_formats::policy::Outcome)> {
    ufd_inspect::inspect(img)
        .unwrap()
        .verdicts
        .iter()
        .map(|v| (v.rule.to_string(), v.outcome))
        .collect()
}

fn routes_agree(seed_size: bool) {
    let dir = tempfile::tempdir().unwrap();
    let wim = make_wim(dir.path(), true, 0);
    let e = build(dir.path(), &wim, VhdRoute::Embed, seed_size);
    let c = build(dir.path(), &wim, VhdRoute::Copy, seed_size);
    assert_eq!(e.rep.vhd_placement.runs, c.rep.vhd_placement.runs);
    if seed_size {
        assert!(e.rep.vhd_placement.runs.len() >= 2);
    }
    assert!(e.rep.ufd_zero_copy);
    // less written than the copy route (which writes the VHD's data a second time)
    let written = |b: &Built| {
        b.rep
            .steps
            .iter()
            .filter(|s| s.step == ufd_provision::Step::CopyVhd)
            .map(|s| s.bytes_written)
            .sum::<u64>()
    };
    assert!(
        written(&e) < written(&c),
        "embed wrote {} bytes in CopyVhd, copy {}",
        written(&e),
        written(&c)
    );

    // ufd inspect: same verdicts; at the seed size no requirement fails
    let ve = verdicts(&e.out);
    assert_eq!(ve, verdicts(&c.out));
    if seed_size {
        let ins = ufd_inspect::inspect(&e.out).unwrap();
        assert!(
            ins.failed_requirements().is_empty(),
            "{:?}",
            ins.failed_requirements()
        );
    }

    let (pe, pc) = (partition(&e.out), partition(&c.out));
    let (runs_e, size_e, init_e) = ntfsinfo_vhd(&pe);
    let (runs_c, size_c, init_c) = ntfsinfo_vhd(&pc);
    assert_eq!((&runs_e, &size_e, &init_e), (&runs_c, &size_c, &init_c));
    let vlen = std::fs::metadata(&e.vhd).unwrap().len().to_string();
    assert!(
        size_e.contains(&vlen) && init_e.contains(&vlen),
        "{size_e} / {init_e}"
    );
    assert_eq!(ntfsls(&pe), ntfsls(&pc));
    if seed_size {
        vhd_through_runs_equals(&pe, &runs_e, &e.vhd);
        vhd_through_runs_equals(&pc, &runs_c, &c.vhd);
    } else {
        assert_eq!(sha256_ntfscat(&pe), sha256_file(&e.vhd));
        assert_eq!(sha256_ntfscat(&pc), sha256_file(&c.vhd));
    }
}

#[test]
fn embed_and_copy_routes_agree_small() {
    routes_agree(false);
}

#[test]
fn embed_and_copy_routes_agree_at_the_seed_size() {
    routes_agree(true);
}

#[test]
fn pinned_footer_time_stamp_and_unique_id() {
    let dir = tempfile::tempdir().unwrap();
    let wim = make_wim(dir.path(), false, 0);
    let out = dir.path().join("u.img");
    let vhd = dir.path().join("u.vhd");
    let mut o = options(&wim, &out);
    o.vhd_timestamp = Some(0x1234_5678);
    o.vhd_unique_id = Some(*b"0123456789abcdef");
    o.keep_vhd_copy = Some(vhd.clone());
    ufd_provision::provision(&o, &mut |_| {}).unwrap();
    let bytes = std::fs::read(&vhd).unwrap();
    let f = ufd_formats::vhd::Footer::parse_at(&bytes[bytes.len() - 512..], 0).unwrap();
    assert_eq!(f.timestamp, 0x1234_5678);
    assert_eq!(
        &bytes[bytes.len() - 512 + 0x44..][..16],
        b"0123456789abcdef"
    );
}

struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// tmpfs cannot insert ranges: the embed route falls back to the copy route, says so in the
/// report, the step detail and a warning, and the image still inspects the same. Needs root
/// for the mount; fails loudly otherwise.
#[test]
fn embed_falls_back_to_the_copy_route_on_tmpfs_and_says_so() {
    // SAFETY: plain getter.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test mounts a tmpfs: run it as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let wim = make_wim(dir.path(), true, 0);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut c = tool("mount", "mount");
    c.args(["-t", "tmpfs", "-o", "size=400M", "tmpfs"])
        .arg(&mnt);
    run(c);
    let _m = Mount(mnt.clone());
    let out = mnt.join("ufd.img");
    let mut o = options(&wim, &out);
    o.vhd_route = VhdRoute::Embed;
    let rep = ufd_provision::provision(&o, &mut |_| {}).unwrap();
    assert_eq!(rep.vhd_route.taken, VhdRoute::Copy);
    let why = rep.vhd_route.fallback_reason.as_deref().unwrap_or_default();
    assert!(why.contains("cannot insert ranges"), "{why}");
    assert!(
        rep.warnings
            .iter()
            .any(|w| w.contains("instead of embedded")),
        "{:?}",
        rep.warnings
    );
    let step = rep
        .steps
        .iter()
        .find(|s| s.step == ufd_provision::Step::CopyVhd)
        .unwrap();
    assert!(step.detail.contains("COPY ROUTE"), "{}", step.detail);
    assert!(rep.vhd_placement.copied_bytes > 0);
    let ins = ufd_inspect::inspect(&out).unwrap();
    assert!(
        ins.verdict("IMG-VHD-FIXED")
            .is_some_and(|v| v.outcome == ufd_formats::policy::Outcome::Pass),
        "{}",
        ins.text()
    );
}
