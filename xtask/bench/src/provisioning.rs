//! Full-size provisioning (the seed's 16 GB UFD with a 12288 MiB VHD) in one run, same machine
//! state, same payload WIM ([`crate::payload`]):
//!
//! * **ours** — `ufd_provision::provision` with `ProvisionOptions::seed` into `ufd.img`, plus an
//!   fsync of the image (inside the timing, so unflushed page cache is not counted as done);
//! * **floor** — what any pipeline has to do at least: `mkntfs -F -Q -s 512 -p 2048 -H 255 -S 63`
//!   on a sparse file the size of the VHD's partition, `wimapply payload.wim 1 FILE`, fsync;
//! * **naive** — host-pipeline.md §6 ([`crate::naive`]), skipped with a reason when root, loop
//!   devices or `/dev/fuse` are missing.
//!
//! Goals (issue "full-size provisioning vs the naive pipeline and vs the floor"): ours ≤ 1.3×
//! the floor's time, naive ≥ 8× ours, and ours' bytes written ≤ 1.1× (payload expanded + NTFS
//! metadata). The reference for the last one is measured, not estimated: the floor's bytes
//! (mkntfs of the VHD volume + wimapply of the payload, i.e. the payload and the metadata that
//! goes with it) plus the bytes `mkntfs` writes for the UFD's volume (measured separately,
//! untimed). The verdict uses task I/O accounting, which other processes on the machine cannot
//! disturb; the device counter is printed beside it (see [`crate::measure`]).
//!
//! Ours and the floor run [`REPS`] times each, alternating, and the time verdict compares the
//! fastest run of each: on a shared 2-core machine a single sample is easily inflated
//! several-fold by unrelated load (two single runs of the same code measured ours' wimapply
//! step at 2.9 s and 5.2 s). All samples and the medians are printed.
//!
//! Every image is deleted before and after (the cached payload WIM stays). The page cache is
//! warmed with the WIM first so that no pipeline pays for reading it from disk.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use ufd_provision::{Event, ProvisionOptions, PARTITION_OFFSET, SEED_UFD_SIZE, SEED_VHD_SIZE};

use crate::measure::{fsync, gb, require, run, Device, Meter, Sample, Scratch};
use crate::{naive, payload};

const GOAL_FLOOR: f64 = 1.3;
const GOAL_NAIVE: f64 = 8.0;
const GOAL_BYTES: f64 = 1.1;
/// Runs of ours and of the floor (alternating); the verdict uses the fastest of each.
const REPS: usize = 3;

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn dev_bytes(s: &Sample) -> String {
    s.device_bytes.map_or_else(|| "n/a".into(), gb)
}

/// mkntfs on a sparse partition file of `size` bytes (the floor's and the UFD-metadata step).
fn mkntfs_file(file: &Path, size: u64, label: &str) -> Result<(), String> {
    fs::File::create(file)
        .and_then(|f| f.set_len(size))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    run(
        Command::new("mkntfs")
            .args(["-F", "-Q", "-q", "-s", "512", "-L", label])
            .args(["-p", "2048", "-H", "255", "-S", "63"])
            .arg(file),
        &format!("mkntfs {}", file.display()),
    )
    .map(drop)
}

/// Run the provisioning benchmark in `dir` (`<workspace>/target/bench`) and print its tables.
pub fn run_bench(dir: &Path) -> Result<(), String> {
    let t_all = Instant::now();
    require("mkntfs", "ntfs-3g")?;
    require("wimapply", "wimtools")?;
    let payload = payload::ensure(dir)?;
    println!(
        "payload: {} ({} files, {} expanded, {} XPRESS){}",
        payload.wim.display(),
        payload.file_count,
        gb(payload.expanded_bytes),
        gb(payload.wim_bytes),
        payload
            .generated
            .map(|d| format!(", generated in {:.1} s", d.as_secs_f64()))
            .unwrap_or_else(|| ", cached".into())
    );
    // Warm the page cache with the WIM so every pipeline reads it from memory.
    let mut f =
        fs::File::open(&payload.wim).map_err(|e| format!("{}: {e}", payload.wim.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    while f
        .read(&mut buf)
        .map_err(|e| format!("{}: {e}", payload.wim.display()))?
        > 0
    {}

    let device = Device::holding(dir);
    let mut scratch = Scratch::default();

    // (a) ours and (b) the floor, alternately, REPS times each: the machine is shared (2 cores,
    // other builds), so one sample of either can be inflated several-fold by load that has
    // nothing to do with it. The verdict compares the fastest run of each (the least
    // disturbed measure of the work itself); every sample and both medians are printed.
    let floor_part = scratch.file(dir.join("floor-part.img"))?;
    let vhd_part_size = SEED_VHD_SIZE - PARTITION_OFFSET;
    let out = scratch.file(dir.join("ufd.img"))?;
    let mut floors: Vec<Sample> = Vec::new();
    let mut ours_runs: Vec<(Sample, ufd_provision::Report)> = Vec::new();
    for rep in 0..REPS {
        let m = Meter::start(device.as_ref())?;
        mkntfs_file(&floor_part, vhd_part_size, "hyperV")?;
        run(
            Command::new("wimapply")
                .arg(&payload.wim)
                .arg("1")
                .arg(&floor_part),
            &format!(
                "wimapply {} 1 {}",
                payload.wim.display(),
                floor_part.display()
            ),
        )?;
        fsync(&floor_part)?;
        floors.push(m.stop()?);
        crate::measure::remove(&floor_part)?;

        let mut opts = ProvisionOptions::seed(&payload.wim, &out);
        opts.overwrite = true;
        let m = Meter::start(device.as_ref())?;
        let report = ufd_provision::provision(&opts, &mut |e| {
            if let Event::Warning(w) = e {
                if rep == 0 {
                    println!("  provision warning: {w}");
                }
            }
        })
        .map_err(|e| format!("ufd_provision::provision: {e}"))?;
        fsync(&out)?;
        ours_runs.push((m.stop()?, report));
        crate::measure::remove(&out)?;
    }
    let secs = |x: &Sample| x.time.as_secs_f64();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let floor_times: Vec<f64> = floors.iter().map(secs).collect();
    let ours_times: Vec<f64> = ours_runs.iter().map(|(x, _)| secs(x)).collect();
    let floor = *floors
        .iter()
        .min_by(|a, b| secs(a).total_cmp(&secs(b)))
        .ok_or("no floor run")?;
    let (ours, report) = ours_runs
        .into_iter()
        .min_by(|a, b| secs(&a.0).total_cmp(&secs(&b.0)))
        .ok_or("no provisioning run")?;

    // The UFD volume's NTFS metadata (part of the bytes reference; untimed).
    let ufd_meta_part = scratch.file(dir.join("ufd-meta-part.img"))?;
    let m = Meter::start(device.as_ref())?;
    mkntfs_file(&ufd_meta_part, SEED_UFD_SIZE - PARTITION_OFFSET, "HVUSB")?;
    fsync(&ufd_meta_part)?;
    let ufd_meta = m.stop()?;
    crate::measure::remove(&ufd_meta_part)?;

    // (c) naive.
    let naive = match naive::unavailable() {
        Some(reason) => {
            println!("naive baseline skipped: {reason}");
            None
        }
        None => Some(naive::run_pipeline(
            dir,
            &payload.wim,
            SEED_VHD_SIZE,
            SEED_UFD_SIZE,
            device.as_ref(),
        )?),
    };
    drop(scratch);

    // ---- report
    let s = |x: &Sample| x.time.as_secs_f64();
    println!();
    println!(
        "provisioning: {} B UFD, {} MiB VHD; device counter: {}",
        SEED_UFD_SIZE,
        SEED_VHD_SIZE >> 20,
        device.as_ref().map_or(
            "n/a (no block device under the bench directory)".into(),
            |d| d.name.clone()
        )
    );
    println!();
    let list = |v: &[f64]| {
        v.iter()
            .map(|t| format!("{t:.2}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "runs (s, in order): ours {}  (median {:.2}); floor {}  (median {:.2}); the rows below are the fastest of each",
        list(&ours_times),
        median(ours_times.clone()),
        list(&floor_times),
        median(floor_times.clone())
    );
    println!();
    println!(
        "ours, per step of its fastest run (ufd_provision::Report; bytes by task I/O accounting):"
    );
    for st in &report.steps {
        println!(
            "  {:<18} {:>8.2} s {:>12}   {}",
            format!("{:?}", st.step),
            st.seconds,
            gb(st.bytes_written),
            st.detail.lines().next().unwrap_or("")
        );
    }
    println!(
        "  total (Report)     {:>8.2} s {:>12}   vhd zero copy {}, ufd zero copy {}, image allocated {}",
        report.total_seconds,
        gb(report.total_bytes_written),
        report.vhd_zero_copy,
        report.ufd_zero_copy,
        gb(report.out_allocated_bytes)
    );
    let route = &report.vhd_route;
    println!(
        "  step 4.1 route: {:?} (requested {:?}){}; {} of holes inserted, {} of UFD metadata copied, {} of VHD data copied",
        route.taken,
        route.requested,
        route
            .fallback_reason
            .as_deref()
            .map(|w| format!(", FELL BACK: {w}"))
            .unwrap_or_default(),
        gb(route.hole_bytes),
        gb(route.metadata_bytes_copied),
        gb(report.vhd_placement.copied_bytes)
    );
    if let Some(n) = &naive {
        println!();
        println!("naive (host-pipeline.md §6), per step (each with a trailing sync):");
        for (name, st) in &n.steps {
            println!(
                "  {:<40} {:>8.2} s {:>12} device",
                name,
                s(st),
                dev_bytes(st)
            );
        }
    }
    println!();
    println!(
        "{:<34} {:>9} {:>14} {:>14} {:>14}",
        "pipeline (12288 MiB VHD, 16 GB UFD)", "time s", "task I/O", "of it undone", "device"
    );
    let row = |name: &str, x: &Sample| {
        println!(
            "{:<34} {:>9.2} {:>14} {:>14} {:>14}",
            name,
            s(x),
            gb(x.task_bytes),
            gb(x.task_cancelled),
            dev_bytes(x)
        )
    };
    row("ours (provision + fsync), fastest", &ours);
    row("floor (mkntfs + wimapply + fsync), fastest", &floor);
    match &naive {
        Some(n) => row("naive (loop + ntfs-3g + cp)", &n.total),
        None => println!("{:<34} {:>9}", "naive (loop + ntfs-3g + cp)", "skipped"),
    }
    row("UFD mkntfs (metadata reference)", &ufd_meta);
    println!(
        "  \"of it undone\": cancelled_write_bytes, dirty pages of deleted scratch files that never reached the device (the verdict below counts them as written)"
    );
    if naive.is_some() {
        println!(
            "  naive: task I/O misses the ntfs-3g daemon (reparented) and the loop devices' writes \
             (kernel workers); read its device column (host-pipeline.md §6 method)"
        );
    }

    let reference = floor.task_bytes + ufd_meta.task_bytes;
    let r_floor = s(&ours) / s(&floor);
    let r_bytes = ours.task_bytes as f64 / reference as f64;
    println!();
    println!("{:<58} {:>8} {:>7}  verdict", "goal", "ratio", "goal");
    println!(
        "{:<58} {:>7.2}x {:>6}x  {}",
        "time ours / floor",
        r_floor,
        format!("≤{GOAL_FLOOR}"),
        verdict(r_floor <= GOAL_FLOOR)
    );
    match &naive {
        Some(n) => {
            let r = s(&n.total) / s(&ours);
            println!(
                "{:<58} {:>7.1}x {:>6}x  {}",
                "time naive / ours",
                r,
                format!("≥{GOAL_NAIVE}"),
                verdict(r >= GOAL_NAIVE)
            );
        }
        None => println!(
            "{:<58} {:>8} {:>6}x  skipped",
            "time naive / ours",
            "-",
            format!("≥{GOAL_NAIVE}")
        ),
    }
    println!(
        "{:<58} {:>7.2}x {:>6}x  {}",
        format!("bytes ours / (payload + metadata = {})", gb(reference)),
        r_bytes,
        format!("≤{GOAL_BYTES}"),
        verdict(r_bytes <= GOAL_BYTES)
    );
    if let (Some(o), Some(f), Some(u)) =
        (ours.device_bytes, floor.device_bytes, ufd_meta.device_bytes)
    {
        println!(
            "  (device counter, whole machine: ours {} / reference {} = {:.2}x)",
            gb(o),
            gb(f + u),
            o as f64 / (f + u) as f64
        );
    }
    println!(
        "  payload expanded {} (wiminfo Total Bytes); reference = floor's bytes (VHD mkntfs + wimapply) + UFD mkntfs",
        gb(payload.expanded_bytes)
    );
    println!(
        "provisioning bench: {:.0} s in all (images deleted; {} kept)",
        t_all.elapsed().as_secs_f64(),
        payload.wim.display()
    );
    Ok(())
}
