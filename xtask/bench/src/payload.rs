//! The provisioning bench's payload WIM: the synthetic Hyper-V Server image's tree
//! (`ufd_synthetic::stage`, so SYSTEM, BCD-Template and the boot files the provisioner needs
//! exist) plus [`FILES`] generated files of varied size and compressibility laid out like a
//! Windows image (DriverStore, WinSxS, System32, fonts, Program Files), about 0.7 GB expanded.
//!
//! Content (deterministic, seeded): 25% incompressible files (stand-ins for already-compressed
//! `.cab`/`.cat`/`.ttf`/`.png`), 50% code-like binaries (32-byte segments drawn from a small
//! per-file dictionary or fresh random, with zero padding runs), 20% XML/INF-like text, 5%
//! byte-identical duplicates of earlier files (WIM dedups them; `wimapply` writes every copy).
//! Sizes are log-uniform (2 KiB–2 MiB for binaries, 512 B–128 KiB for text). Measured: 3051
//! files, 728.8 MB expanded, 428.1 MB as XPRESS WIM (1.7:1; a real install.wim is nearer 3:1
//! with LZX, so this payload is, if anything, harder on the apply step), generated and captured
//! in about 10 s. This is smaller than host-pipeline.md §3's 3.33 GB payload, to keep
//! generation and the whole bench within a few minutes; the ratios compare the pipelines on
//! the same WIM.
//!
//! Captured with `wimcapture --compress=XPRESS --no-acls` (not LZX: LZX capture of 0.7 GB takes
//! over a minute on 2 cores; every measured pipeline applies the same WIM, so the choice only
//! shifts decompression CPU equally). Cached as `payload.wim` beside a `payload.wim.key`
//! naming the generator version; regenerated when either is missing or stale.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::measure::{gb, remove, require, run};

/// Bumped whenever the generated tree changes (part of the cache key).
pub const GENERATOR_VERSION: u32 = 1;
/// Generated files (besides the synthetic image's own).
pub const FILES: usize = 3000;
const SEED: u64 = 0x5546_4442_454e_4348; // "UFDBENCH"

/// The payload WIM and what is in it.
#[derive(Clone, Debug)]
pub struct Payload {
    pub wim: PathBuf,
    /// `wiminfo` "Total Bytes" of image 1: the expanded size `wimapply` writes.
    pub expanded_bytes: u64,
    pub file_count: u64,
    pub wim_bytes: u64,
    /// Generation + capture time when it was (re)built in this run.
    pub generated: Option<Duration>,
}

/// splitmix64: small, fast, deterministic; not for cryptography.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
    /// Log-uniform in [lo, hi].
    fn log_size(&mut self, lo: u64, hi: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((lo as f64).ln() + u * ((hi as f64).ln() - (lo as f64).ln())).exp() as u64
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Random,
    Code,
    Text,
}

struct Planned {
    path: String,
    size: u64,
    kind: Kind,
    seed: u64,
}

const WORDS: &[&str] = &[
    "assembly",
    "assemblyIdentity",
    "name=\"Microsoft-Windows-",
    "version=\"6.1.7600.16385\"",
    "processorArchitecture=\"amd64\"",
    "publicKeyToken=\"31bf3856ad364e35\"",
    "language=\"neutral\"",
    "<file",
    "destinationPath=\"$(runtime.system32)\\\"",
    "sourceName=",
    "importPath=",
    "<dependency>",
    "<dependentAssembly>",
    "</dependentAssembly>",
    "</dependency>",
    "<registryKey",
    "keyName=\"HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\",
    "<registryValue",
    "valueType=\"REG_DWORD\"",
    "value=\"0x00000001\"",
    "<securityDescriptor",
    "owner=\"true\"",
    "[Version]",
    "Signature=\"$WINDOWS NT$\"",
    "Class=System",
    "ClassGuid={4d36e97d-e325-11ce-bfc1-08002be10318}",
    "Provider=%MSFT%",
    "DriverVer=06/21/2006,6.1.7600.16385",
    "[SourceDisksFiles]",
    "CopyFiles=",
    "AddReg=",
    "ServiceType=1",
    "StartType=3",
    "ErrorControl=1",
    "hyperv",
    "vmbus",
    "storvsc",
];

const COMPONENTS: &[&str] = &[
    "kernel32",
    "ntdll",
    "user32",
    "gdi32",
    "advapi32",
    "shell32",
    "ole32",
    "rpcrt4",
    "crypt32",
    "wininet",
    "netio",
    "tcpip",
    "ndis",
    "storport",
    "usbstor",
    "vmbus",
    "storvsc",
    "netvsc",
    "hvax64",
    "winload",
    "bootmgr",
    "msxml6",
    "comctl32",
    "setupapi",
    "cfgmgr32",
    "wmi",
    "wbem",
    "powershell",
    "dism",
    "servicing",
    "msi",
    "schannel",
    "lsasrv",
    "samsrv",
    "netlogon",
    "dnsapi",
];

fn plan() -> Vec<Planned> {
    let mut r = Rng(SEED);
    let mut out: Vec<Planned> = Vec::with_capacity(FILES);
    let mut dir = String::new();
    for i in 0..FILES {
        if i % 15 == 0 {
            let c = COMPONENTS[r.below(COMPONENTS.len() as u64) as usize];
            let h = r.next();
            dir = match r.below(5) {
                0 => format!(
                    "Windows\\System32\\DriverStore\\FileRepository\\{c}.inf_amd64_neutral_{:016x}",
                    h
                ),
                1 | 2 => format!(
                    "Windows\\winsxs\\amd64_microsoft-windows-{c}_31bf3856ad364e35_6.1.7600.16385_none_{:016x}",
                    h
                ),
                3 => format!("Windows\\System32\\bench\\{c}{}", i / 15),
                _ => format!("Program Files\\Common Files\\microsoft shared\\{c}{}", i / 15),
            };
        }
        let roll = r.below(100);
        let seed = r.next();
        let c = COMPONENTS[r.below(COMPONENTS.len() as u64) as usize];
        let (ext, kind, size) = if roll < 5 && !out.is_empty() {
            // A duplicate of an earlier file (same bytes, different name).
            let o = &out[r.below(out.len() as u64) as usize];
            let (size, kind, seed) = (o.size, o.kind, o.seed);
            out.push(Planned {
                path: format!("{dir}\\{c}_{i}.dup"),
                size,
                kind,
                seed,
            });
            continue;
        } else if roll < 30 {
            let ext = ["cab", "cat", "ttf", "png"][r.below(4) as usize];
            (ext, Kind::Random, r.log_size(1024, 2 << 20))
        } else if roll < 80 {
            let ext = ["dll", "sys", "exe", "mui"][r.below(4) as usize];
            (ext, Kind::Code, r.log_size(2048, 2 << 20))
        } else {
            let ext = ["manifest", "inf", "xml", "mum"][r.below(4) as usize];
            (ext, Kind::Text, r.log_size(512, 128 << 10))
        };
        out.push(Planned {
            path: format!("{dir}\\{c}_{i}.{ext}"),
            size,
            kind,
            seed,
        });
    }
    out
}

fn write_file(path: &Path, p: &Planned) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(path).map_err(err)?);
    let mut r = Rng(p.seed);
    let mut left = p.size as usize;
    let mut buf = vec![0u8; 64 << 10];
    match p.kind {
        Kind::Random => {
            while left > 0 {
                let n = left.min(buf.len());
                r.fill(&mut buf[..n]);
                w.write_all(&buf[..n]).map_err(err)?;
                left -= n;
            }
        }
        Kind::Code => {
            let mut dict = vec![0u8; 64 * 32];
            r.fill(&mut dict);
            w.write_all(b"MZ").map_err(err)?;
            left = left.saturating_sub(2);
            let mut seg = [0u8; 32];
            while left > 0 {
                let roll = r.below(100);
                let bytes: &[u8] = if roll < 4 {
                    &[0u8; 32] // alignment padding
                } else if roll < 40 {
                    r.fill(&mut seg);
                    &seg
                } else {
                    let k = r.below(64) as usize * 32;
                    &dict[k..k + 32]
                };
                let n = left.min(32);
                w.write_all(&bytes[..n]).map_err(err)?;
                left -= n;
            }
        }
        Kind::Text => {
            while left > 0 {
                let mut line = String::with_capacity(160);
                for _ in 0..1 + r.below(8) {
                    line.push_str(WORDS[r.below(WORDS.len() as u64) as usize]);
                    line.push(' ');
                }
                line.push_str(&format!("{:x}\r\n", r.below(1 << 16)));
                let n = left.min(line.len());
                w.write_all(&line.as_bytes()[..n]).map_err(err)?;
                left -= n;
            }
        }
    }
    w.flush().map_err(err)
}

fn key() -> String {
    format!(
        "ufd-bench payload generator {GENERATOR_VERSION}, {FILES} files, seed {SEED:#x}, XPRESS"
    )
}

/// `wiminfo WIM 1`: (Total Bytes, File Count).
fn wiminfo(wim: &Path) -> Result<(u64, u64), String> {
    let out = run(
        Command::new(require("wiminfo", "wimtools")?)
            .arg(wim)
            .arg("1"),
        &format!("wiminfo {}", wim.display()),
    )?;
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim_start_matches(':').trim().parse::<u64>().ok())
            .ok_or_else(|| format!("wiminfo {}: no {name} line", wim.display()))
    };
    Ok((field("Total Bytes")?, field("File Count")?))
}

/// The cached payload WIM in `dir`, generated (and captured) when missing or stale.
pub fn ensure(dir: &Path) -> Result<Payload, String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let wim = dir.join("payload.wim");
    let key_file = dir.join("payload.wim.key");
    let cached = wim.is_file()
        && fs::read_to_string(&key_file).ok().as_deref().map(str::trim) == Some(key().as_str());
    let mut generated = None;
    if !cached {
        let t = Instant::now();
        let wimcapture = require("wimcapture", "wimtools")?;
        let stage = dir.join("payload-stage");
        let tmp = dir.join("payload.wim.tmp");
        let result = (|| {
            if stage.exists() {
                fs::remove_dir_all(&stage).map_err(|e| format!("{}: {e}", stage.display()))?;
            }
            remove(&tmp)?;
            remove(&key_file)?;
            let image = "hyperv-2008r2";
            ufd_synthetic::stage(image, &[], &stage)?;
            let mut total = 0u64;
            for p in plan() {
                let mut host = stage.clone();
                host.extend(p.path.split('\\'));
                if let Some(parent) = host.parent() {
                    fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                write_file(&host, &p)?;
                total += p.size;
            }
            println!(
                "payload: generated {FILES} files ({}) on the synthetic {image} tree in {:.1} s; capturing (XPRESS)...",
                gb(total),
                t.elapsed().as_secs_f64()
            );
            let spec = ufd_synthetic::spec(image)?;
            run(
                Command::new(&wimcapture)
                    .arg(&stage)
                    .arg(&tmp)
                    .arg(&spec.wim_name)
                    .arg(format!("{} + ufd-bench payload", spec.wim_description))
                    .arg("--compress=XPRESS")
                    .arg("--no-acls"),
                &format!("wimcapture {} {}", stage.display(), tmp.display()),
            )?;
            fs::rename(&tmp, &wim).map_err(|e| format!("{}: {e}", wim.display()))?;
            fs::write(&key_file, key() + "\n").map_err(|e| format!("{}: {e}", key_file.display()))
        })();
        let _ = fs::remove_dir_all(&stage);
        let _ = fs::remove_file(&tmp);
        result?;
        generated = Some(t.elapsed());
    }
    let (expanded_bytes, file_count) = wiminfo(&wim)?;
    let wim_bytes = fs::metadata(&wim)
        .map_err(|e| format!("{}: {e}", wim.display()))?
        .len();
    Ok(Payload {
        wim,
        expanded_bytes,
        file_count,
        wim_bytes,
        generated,
    })
}
