//! `ufd_formats::ntfs` against an independent reader: volumes made by ntfs-3g's `mkntfs`
//! (512 B to 128 KiB clusters), files given real clusters and sparse holes by `ntfscp` and
//! `ntfsfallocate`, and every value this module parses compared with what ntfs-3g's `ntfsinfo`
//! reports for the same volume (boot sector geometry, `$MFT`'s runs, a file's runs and sizes).
//! Needs the Debian package `ntfs-3g`.

use std::os::unix::fs::FileExt;
use std::process::Command;

use rstest::rstest;
use ufd_formats::ntfs::{self, BootSector, Run, FILE_MAGIC};

fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|d| d.join(name).is_file())
    });
    assert!(
        found,
        "{name} not found: install the Debian package ntfs-3g"
    );
    Command::new(name)
}

fn run(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `Key: value` of `ntfsinfo` (first occurrence), as a number.
fn info_num(text: &str, key: &str) -> u64 {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(key)?.trim().strip_prefix(':'))
        .unwrap_or_else(|| panic!("no `{key}` in ntfsinfo output:\n{text}"));
    // `383000 (0x5d818)`: the decimal value first
    let v = line.split_whitespace().next().unwrap_or_default();
    v.parse().unwrap_or_else(|e| panic!("`{key}`: {v:?}: {e}"))
}

/// The runlist `ntfsinfo -v` prints after the first `Runlist:` line following `after`.
fn info_runs(text: &str, after: &str) -> Vec<Run> {
    let start = text
        .find(after)
        .unwrap_or_else(|| panic!("no `{after}` in:\n{text}"));
    let rest = &text[start..];
    let rest = &rest[rest.find("Runlist:").expect("no runlist")..];
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    rest.lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .take_while(|f| f.len() == 3 && f[0].starts_with("0x"))
        .map(|f| Run {
            vcn: hex(f[0]),
            lcn: (f[1] != "<HOLE>").then(|| hex(f[1])),
            len: hex(f[2]),
        })
        .collect()
}

/// Read and un-fix MFT record `n` through `$MFT`'s runs.
fn read_record(vol: &std::fs::File, b: &BootSector, mft: &[Run], n: u64) -> (Vec<u8>, u64) {
    let rs = u64::from(b.record_size);
    let (Some(at), left) = ntfs::map_offset(mft, b.cluster_size, n * rs).unwrap() else {
        panic!("record {n} in a hole");
    };
    assert!(left >= rs, "record {n} straddles $MFT extents");
    let mut rec = vec![0u8; rs as usize];
    vol.read_exact_at(&mut rec, at).unwrap();
    let raw = rec.clone();
    ntfs::unfix(&mut rec, FILE_MAGIC, at).unwrap();
    // re-sealing the fixed-up record gives the bytes on disk back, but for the new USN
    let mut sealed = rec.clone();
    ntfs::refix(&mut sealed, at).unwrap();
    let usa = usize::from(u16::from_le_bytes([raw[4], raw[5]]));
    let usn_words: Vec<usize> = std::iter::once(usa)
        .chain((1..=raw.len() / 512).map(|i| i * 512 - 2))
        .collect();
    for (i, (x, y)) in raw.iter().zip(&sealed).enumerate() {
        if !usn_words.iter().any(|w| i == *w || i == *w + 1) {
            assert_eq!(x, y, "record {n} byte {i:#x} changed by unfix + refix");
        }
    }
    (rec, at)
}

#[rstest]
#[case::clusters_512(512)]
#[case::clusters_4k(4096)]
#[case::clusters_64k(65536)]
#[case::clusters_128k(131072)]
fn mkntfs_volume_reads_like_ntfsinfo(#[case] cluster: u64) {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("vol.ntfs");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(256 << 20).unwrap(); // sparse
    drop(f);
    run(tool("mkntfs")
        .args([
            "-q", "-F", "-f", "-s", "512", "-p", "2048", "-H", "255", "-S", "63", "-c",
        ])
        .arg(cluster.to_string())
        .arg(&img));
    // a file with real clusters, and one whose runs ntfsfallocate leaves with sparse holes
    let src = dir.path().join("src");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 4096) as u8).collect();
    std::fs::write(&src, &content).unwrap();
    run(tool("ntfscp").arg("-q").arg(&img).arg(&src).arg("data.bin"));
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    run(tool("ntfscp")
        .arg("-q")
        .arg(&img)
        .arg(&empty)
        .arg("holes.bin"));
    for off in ["1M", "3M"] {
        run(tool("ntfsfallocate")
            .args(["-o", off, "-l", "1M"])
            .arg(&img)
            .arg("holes.bin"));
    }

    let vol = std::fs::File::open(&img).unwrap();
    let mut sector = [0u8; 512];
    vol.read_exact_at(&mut sector, 0).unwrap();
    let b = BootSector::parse(&sector).unwrap();
    let m = run(tool("ntfsinfo").arg("-m").arg(&img));
    assert_eq!(b.cluster_size, info_num(&m, "Cluster Size"));
    assert_eq!(cluster, b.cluster_size);
    assert_eq!(u64::from(b.bytes_per_sector), info_num(&m, "Sector Size"));
    assert_eq!(u64::from(b.record_size), info_num(&m, "MFT Record Size"));
    assert_eq!(
        u64::from(b.index_record_size),
        info_num(&m, "Index Block Size")
    );
    assert_eq!(
        b.mft_lcn,
        info_num(&m, "LCN of Data Attribute for FILE_MFT")
    );
    assert_eq!(
        b.mft_mirror_lcn,
        info_num(&m, "LCN of Data Attribute for File_MFTMirr")
    );
    assert_eq!(
        b.total_sectors / u64::from(b.sectors_per_cluster),
        info_num(&m, "Volume Size in Clusters")
    );
    assert_eq!(b.hidden_sectors, 2048);

    // $MFT maps itself: record 0 read at the BPB's LCN
    let mut rec0 = vec![0u8; b.record_size as usize];
    vol.read_exact_at(&mut rec0, b.mft_offset()).unwrap();
    ntfs::unfix(&mut rec0, FILE_MAGIC, b.mft_offset()).unwrap();
    let mft = ntfs::unnamed_data(&rec0, b.mft_offset())
        .unwrap()
        .unwrap()
        .non_resident_info()
        .unwrap();
    let i0 = run(tool("ntfsinfo").args(["-v", "-i", "0"]).arg(&img));
    assert_eq!(mft.runs, info_runs(&i0, "Dumping attribute $DATA"));

    let ls = run(tool("ntfsls").arg("-i").arg(&img));
    let inode = |name: &str| -> u64 {
        ls.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                let n = w.next()?.parse().ok()?;
                (w.next()? == name).then_some(n)
            })
            .unwrap_or_else(|| panic!("{name} not in ntfsls output:\n{ls}"))
    };
    for name in ["data.bin", "holes.bin"] {
        let n = inode(name);
        let (rec, at) = read_record(&vol, &b, &mft.runs, n);
        let h = ntfs::record_header(&rec, at).unwrap();
        assert!(h.in_use());
        assert_eq!(u64::from(h.record_number), n);
        let attrs = ntfs::attributes(&rec, at).unwrap();
        let fname = attrs
            .iter()
            .find(|a| a.type_code() == ntfs::attr_type::FILE_NAME)
            .unwrap();
        let (vo, v) = fname.resident_value().unwrap();
        let fnv = ntfs::file_name(v, fname.base() + vo as u64).unwrap();
        assert!(fnv.name_eq_ignore_ascii_case(name.as_bytes()));
        assert_eq!(fnv.parent_record(), ntfs::ROOT_DIRECTORY_RECORD);

        let d = ntfs::unnamed_data(&rec, at)
            .unwrap()
            .unwrap()
            .non_resident_info()
            .unwrap();
        let info = run(tool("ntfsinfo")
            .arg("-v")
            .arg("-F")
            .arg(format!("/{name}"))
            .arg(&img));
        assert_eq!(
            d.runs,
            info_runs(&info, "Dumping attribute $DATA"),
            "{name}"
        );
        let dump = &info[info.find("Dumping attribute $DATA").unwrap()..];
        assert_eq!(d.data_size, info_num(dump, "Data size"), "{name}");
        assert_eq!(d.allocated_size, info_num(dump, "Allocated size"), "{name}");
        assert_eq!(
            d.initialized_size,
            info_num(dump, "Initialized size"),
            "{name}"
        );
        if name == "data.bin" {
            assert_eq!(d.data_size, content.len() as u64);
            // the clusters hold the content
            let mut got = Vec::new();
            for r in &d.runs {
                let mut buf = vec![0u8; (r.len * cluster) as usize];
                vol.read_exact_at(&mut buf, r.lcn.unwrap() * cluster)
                    .unwrap();
                got.extend(buf);
            }
            assert_eq!(&got[..content.len()], &content[..]);
        } else {
            assert!(d.runs.iter().any(|r| r.lcn.is_none()), "{:?}", d.runs);
            assert!(d.runs.iter().any(|r| r.lcn.is_some()), "{:?}", d.runs);
        }
    }
}

/// A torn write on a real record: the error names the absolute offset of the block's last word.
#[test]
fn mkntfs_record_torn_in_its_second_block() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("vol.ntfs");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(32 << 20).unwrap();
    drop(f);
    run(tool("mkntfs")
        .args(["-q", "-F", "-f", "-s", "512", "-p", "2048", "-c", "4096"])
        .arg(&img));
    let vol = std::fs::File::open(&img).unwrap();
    let mut sector = [0u8; 512];
    vol.read_exact_at(&mut sector, 0).unwrap();
    let b = BootSector::parse(&sector).unwrap();
    // record 5 (the root directory) sits right after records 0-4 in $MFT's first run
    let at = b.mft_offset() + 5 * u64::from(b.record_size);
    let mut rec = vec![0u8; b.record_size as usize];
    vol.read_exact_at(&mut rec, at).unwrap();
    let mut ok = rec.clone();
    ntfs::unfix(&mut ok, FILE_MAGIC, at).unwrap();
    let h = ntfs::record_header(&ok, at).unwrap();
    assert_eq!(u64::from(h.record_number), ntfs::ROOT_DIRECTORY_RECORD);
    let last = rec.len() - 2;
    rec[last] ^= 0xFF;
    let e = ntfs::unfix(&mut rec, FILE_MAGIC, at).unwrap_err();
    assert_eq!(e.offset, at + last as u64, "{e}");
}
