//! The scenario image cache of `ufd run` (`--image-cache`, default `target/ufd-run/images`).
//!
//! Every image recipe is provisioned once and kept as `<synthetic>-<key>.img`, a sparse 16 GB
//! file holding some hundreds of MB. Two things keep the cache honest:
//!
//! - **The key names the code that built the image.** Besides the recipe and the synthetic
//!   WIM's content key, [`build_id`] hashes the running `ufd` executable, so an image made by
//!   an older provisioner (a changed boot record, BCD writer or VHDX layout) is never served
//!   to a newer one: a rebuilt `ufd` provisions afresh. Hashing the whole executable (tens of
//!   MB, once per run) is cheaper than being wrong about which source files matter.
//! - **The cache is bounded.** Each rebuild of `ufd` orphans the previous images; after a run
//!   [`prune`] removes the least recently used images (by modification time, which a cache hit
//!   refreshes with [`touch`]) until the files' *allocated* bytes fit the budget. Images the
//!   run used are never removed, even over budget.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use ufd_provision::stale;

/// Default `--cache-budget`: allocated bytes of cached images kept after a run. The full
/// scenario set (26 scenarios, 17 distinct recipes) allocates about 2 GB.
pub const DEFAULT_BUDGET: u64 = 8 << 30;

/// FNV-1a 64 over `bytes`, continuing from `h`.
pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// FNV-1a 64 offset basis.
pub const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// A hash of the running executable's bytes (computed once per process). When the executable
/// cannot be read, the package version and the process id stand in: images are then cached
/// within the run only, never wrongly shared across builds.
pub fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let hashed = std::env::current_exe().and_then(|exe| {
            let mut f = File::open(exe)?;
            let mut h = FNV_BASIS;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h = fnv1a(h, &buf[..n]);
            }
            Ok(h)
        });
        match hashed {
            Ok(h) => format!("exe {h:016x}"),
            Err(_) => format!("{} pid {}", env!("CARGO_PKG_VERSION"), std::process::id()),
        }
    })
}

/// Mark a cached image as just used (its modification time orders [`prune`]).
pub fn touch(path: &Path) {
    if let Ok(f) = File::options().write(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// The name suffix of an image still being provisioned by process `<pid>`.
pub const PARTIAL_SUFFIX: &str = ".partial-";

/// The temporary name an image of `out` is provisioned under by this process.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(format!("{PARTIAL_SUFFIX}{}", std::process::id()));
    PathBuf::from(p)
}

/// The process id of an image still being provisioned (`*.img.partial-<pid>`).
fn partial_owner(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    let (stem, pid) = name.rsplit_once(PARTIAL_SUFFIX)?;
    if !stem.ends_with(".img") {
        return None;
    }
    pid.parse().ok()
}

/// An image [`prune`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub path: PathBuf,
    /// Allocated bytes it held.
    pub allocated: u64,
}

/// Remove the least recently used `*.img` files directly under `dir` (never those in `keep`)
/// until the allocated bytes of the remaining ones are at most `budget`, and the partial
/// images ([`partial_path`]) of processes that no longer run. Files that vanish or
/// cannot be removed meanwhile are skipped; a missing `dir` is an empty cache.
pub fn prune(dir: &Path, keep: &HashSet<PathBuf>, budget: u64) -> std::io::Result<Vec<Removed>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut images = Vec::new();
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if let Some(pid) = partial_owner(&path) {
            // Left by a run that was killed while provisioning: nobody will finish it. The
            // same two guards as the provisioner's own scratch directories (`stale`): the PID
            // is gone, and nothing wrote the file for `MIN_IDLE` (a run in another PID
            // namespace sharing the cache).
            let idle = entry.metadata().ok().filter(|m| {
                m.modified()
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= stale::MIN_IDLE)
            });
            if let Some(meta) = idle.filter(|_| !stale::pid_alive(pid)) {
                if fs::remove_file(&path).is_ok() {
                    removed.push(Removed {
                        path,
                        allocated: meta.blocks() * 512,
                    });
                }
            }
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("img") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        images.push((mtime, path, meta.blocks() * 512));
    }
    let mut total: u64 = images.iter().map(|(_, _, a)| a).sum();
    images.sort();
    for (_, path, allocated) in images {
        if total <= budget {
            break;
        }
        if keep.contains(&path) {
            continue;
        }
        if fs::remove_file(&path).is_ok() {
            total -= allocated;
            removed.push(Removed { path, allocated });
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A file of `mib` MiB of real (allocated) data, last modified `age_s` seconds ago.
    fn image(dir: &Path, name: &str, mib: usize, age_s: u64) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, vec![0x5a; mib << 20]).unwrap();
        let f = File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_s))
            .unwrap();
        p
    }

    #[test]
    fn oldest_go_first_until_the_budget_fits_and_kept_ones_stay() {
        let d = tempfile::tempdir().unwrap();
        let oldest = image(d.path(), "a.img", 2, 300);
        let kept_old = image(d.path(), "b.img", 2, 200);
        let middle = image(d.path(), "c.img", 2, 100);
        let newest = image(d.path(), "d.img", 2, 0);
        let other = image(d.path(), "notes.txt", 2, 1000);
        let keep = HashSet::from([kept_old.clone()]);
        // 8 MiB of images, budget 5 MiB: a.img (oldest) and c.img go; b.img is kept.
        let removed = prune(d.path(), &keep, 5 << 20).unwrap();
        let names: Vec<_> = removed.iter().map(|r| r.path.clone()).collect();
        assert_eq!(names, vec![oldest.clone(), middle.clone()]);
        assert!(removed.iter().all(|r| r.allocated >= 2 << 20));
        assert!(!oldest.exists() && !middle.exists());
        assert!(kept_old.exists() && newest.exists() && other.exists());
    }

    #[test]
    fn within_budget_nothing_is_removed_and_a_missing_dir_is_empty() {
        let d = tempfile::tempdir().unwrap();
        image(d.path(), "a.img", 1, 10);
        assert!(prune(d.path(), &HashSet::new(), 4 << 20)
            .unwrap()
            .is_empty());
        assert!(prune(&d.path().join("none"), &HashSet::new(), 0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn sparse_images_count_what_they_allocate_not_their_length() {
        let d = tempfile::tempdir().unwrap();
        let sparse = d.path().join("sparse.img");
        let f = File::create(&sparse).unwrap();
        f.set_len(16 << 30).unwrap();
        drop(f);
        // 16 GiB long, nothing allocated: fits a 1 MiB budget.
        assert!(prune(d.path(), &HashSet::new(), 1 << 20)
            .unwrap()
            .is_empty());
        assert!(sparse.exists());
    }

    #[test]
    fn partial_images_of_dead_processes_go_and_live_ones_stay() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("x.img");
        let mine = partial_path(&out);
        fs::write(&mine, b"in progress").unwrap();
        // pid_max is at most 2^22 on Linux: PID 2^22 cannot exist.
        let dead = d.path().join(format!("x.img{PARTIAL_SUFFIX}4194304"));
        fs::write(&dead, b"abandoned").unwrap();
        // Same dead PID, but written just now: it could belong to another PID namespace.
        let recent = d.path().join(format!("y.img{PARTIAL_SUFFIX}4194304"));
        fs::write(&recent, b"maybe in progress").unwrap();
        for p in [&mine, &dead] {
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(SystemTime::now() - stale::MIN_IDLE * 2)
                .unwrap();
        }
        let unrelated = d.path().join(format!("notes{PARTIAL_SUFFIX}1"));
        fs::write(&unrelated, b"not an image").unwrap();
        let removed = prune(d.path(), &HashSet::new(), u64::MAX).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].path, dead);
        assert!(mine.exists() && unrelated.exists() && recent.exists() && !dead.exists());
    }

    #[test]
    fn touch_makes_an_image_the_most_recent() {
        let d = tempfile::tempdir().unwrap();
        let a = image(d.path(), "a.img", 1, 500);
        let b = image(d.path(), "b.img", 1, 100);
        touch(&a);
        let removed = prune(d.path(), &HashSet::new(), 1 << 20).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].path, b);
    }

    #[test]
    fn the_build_id_hashes_this_executable() {
        let id = build_id();
        assert!(id.starts_with("exe "), "{id}");
        assert_eq!(id, build_id());
        assert_ne!(fnv1a(FNV_BASIS, b"a"), fnv1a(FNV_BASIS, b"b"));
    }
}
