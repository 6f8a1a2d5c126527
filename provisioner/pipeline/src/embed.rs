//! The zero-copy "embed" route of seed step 4.1 (`copy hyperV.vhd z:`), host-pipeline.md §5
//! ("Zero-copy variant", measured at 0.63 s / 0.07 GB written against 7.3 s / 3.14 GB for
//! writing the data at the extents).
//!
//! Instead of writing the VHD's data a second time into the clusters `ntfsfallocate` reserved
//! for `\hyperV.vhd` in the UFD's NTFS partition file, the VHD file itself becomes the UFD
//! image:
//!
//! 1. the reserved clusters are read from the file's MFT record (`$DATA` runs: VHD bytes
//!    `[a_i, b_i)` at LCN `L_i`, [`ufd_formats::ntfs::Run`]);
//! 2. holes are inserted into the VHD file with `FALLOC_FL_INSERT_RANGE` (no data moves: the
//!    host file system shifts its extent map) so that byte `a_i` lands at
//!    `partition_offset + L_i × cluster_size` — one hole in front of run 0 and one between
//!    consecutive runs (mkntfs puts `$MFTMirr`/`$LogFile` mid-volume, so a 12 GiB file on a
//!    16 GB volume always has at least two runs, host-pipeline.md §5 "Layout facts");
//! 3. the caller copies into the holes only what the UFD needs besides the VHD: the NTFS
//!    partition file's own data extents (its metadata and the boot files — tens of MB, never
//!    inside the VHD's clusters: checked by [`check_disjoint`]), the ESP and the MBR, and sets
//!    the final length (the tail stays sparse).
//!
//! Requirements, checked before the file is touched ([`plan`]): every run allocated (not
//! sparse), runs in ascending LCN order without overlap (true for a fresh volume), and every
//! inserted length and offset a multiple of the host file system's block size (clusters are
//! 4096 bytes and partition offsets whole MiB, so ext4 and xfs with 4 KiB blocks qualify).
//! The first hole inserted is the probe: if the file system cannot insert ranges (tmpfs,
//! btrfs, some overlayfs: `EOPNOTSUPP`/`EINVAL`) the file is still unchanged and the caller
//! falls back to the copy route ([`crate::ntfs::write_at_runs`]), saying so in the step's detail.

use std::fs::File;
use std::os::unix::fs::MetadataExt;

use ufd_formats::ntfs::Run;

use crate::sparse;

/// One run of the VHD file and where its bytes go in the disk image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Piece {
    /// First byte of the run in the VHD file (`vcn × cluster_size`).
    pub vhd_offset: u64,
    /// Bytes of the VHD file in this run (the last run stops at the file's end).
    pub len: u64,
    /// Bytes the run's clusters span (`len` rounded up to whole clusters).
    pub cluster_bytes: u64,
    /// Where the run's first byte goes in the disk image (`partition_offset + lcn × cluster_size`).
    pub disk_offset: u64,
}

/// How the VHD file is turned into the disk image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    pub pieces: Vec<Piece>,
    /// Byte offset of the NTFS partition in the disk image.
    pub partition_offset: u64,
    pub cluster_size: u64,
    /// Length of the VHD file (the `$DATA` size).
    pub vhd_len: u64,
    /// Length of the file once every hole is inserted (the end of the last run's data).
    pub embedded_len: u64,
}

impl Plan {
    /// The holes to insert, as `(offset in the VHD file as it is now, length)`, in the order
    /// they are inserted: last gap first, so that every offset is still valid in the file's
    /// original coordinates, and the hole in front last.
    pub fn holes(&self) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        for w in self.pieces.windows(2).rev() {
            let (p, q) = (w[0], w[1]);
            let gap = q.disk_offset - (p.disk_offset + p.len);
            if gap > 0 {
                v.push((q.vhd_offset, gap));
            }
        }
        if let Some(first) = self.pieces.first() {
            if first.disk_offset > 0 {
                v.push((0, first.disk_offset));
            }
        }
        v
    }

    /// Total bytes of holes inserted.
    pub fn hole_bytes(&self) -> u64 {
        self.holes().iter().map(|h| h.1).sum()
    }

    /// The VHD's clusters in volume (partition file) coordinates, `[start, end)`.
    pub fn volume_ranges(&self) -> Vec<(u64, u64)> {
        self.pieces
            .iter()
            .map(|p| {
                let s = p.disk_offset - self.partition_offset;
                (s, s + p.cluster_bytes)
            })
            .collect()
    }
}

/// Why the embed route cannot be used for these runs (the copy route then runs instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotEmbeddable(pub String);

/// Plan the embedding of a `vhd_len`-byte file whose `$DATA` has `runs` on a volume with
/// `cluster_size`-byte clusters at `partition_offset` in the disk, on a host file system with
/// `block`-byte blocks.
pub fn plan(
    runs: &[Run],
    cluster_size: u64,
    vhd_len: u64,
    partition_offset: u64,
    block: u64,
) -> Result<Plan, NotEmbeddable> {
    let no = |m: String| Err(NotEmbeddable(m));
    if block == 0 || cluster_size % block != 0 || partition_offset % block != 0 {
        return no(format!(
            "the host file system's {block}-byte blocks do not divide the {cluster_size}-byte clusters and the partition offset {partition_offset}"
        ));
    }
    let mut pieces: Vec<Piece> = Vec::new();
    let mut vcn = 0u64;
    for r in runs {
        if r.vcn != vcn {
            return no(format!("run at VCN {} does not follow VCN {vcn}", r.vcn));
        }
        let Some(lcn) = r.lcn else {
            return no(format!("sparse run at VCN {}", r.vcn));
        };
        vcn = r.vcn + r.len;
        let vhd_offset = r.vcn * cluster_size;
        if vhd_offset >= vhd_len || r.len == 0 {
            // clusters allocated past the end of the data: nothing of the file goes there
            continue;
        }
        let cluster_bytes = r.len * cluster_size;
        let piece = Piece {
            vhd_offset,
            len: cluster_bytes.min(vhd_len - vhd_offset),
            cluster_bytes,
            disk_offset: partition_offset + lcn * cluster_size,
        };
        if let Some(prev) = pieces.last() {
            if piece.disk_offset < prev.disk_offset + prev.cluster_bytes {
                return no(format!(
                    "runs are not in ascending cluster order (VCN {} at LCN {lcn} comes before the previous run's end)",
                    r.vcn
                ));
            }
        }
        pieces.push(piece);
    }
    let covered = pieces.last().map_or(0, |p| p.vhd_offset + p.len);
    if covered != vhd_len {
        return no(format!(
            "the runs cover {covered} of the file's {vhd_len} bytes"
        ));
    }
    let embedded_len = pieces.last().map_or(0, |p| p.disk_offset + p.len);
    Ok(Plan {
        pieces,
        partition_offset,
        cluster_size,
        vhd_len,
        embedded_len,
    })
}

/// The host file system's block size for `file` (what `FALLOC_FL_INSERT_RANGE` offsets and
/// lengths must be multiples of on ext4 and xfs).
pub fn host_block_size(file: &File) -> std::io::Result<u64> {
    Ok(file.metadata()?.blksize())
}

/// What [`embed_in_place`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Embedded {
    /// Every hole was inserted: the file is the disk image up to [`Plan::embedded_len`].
    Done { holes: usize, hole_bytes: u64 },
    /// The file system cannot insert ranges; the file is unchanged.
    Unsupported,
}

/// Insert the plan's holes into the VHD file (opened read-write). The first insertion is the
/// probe: when it is refused as unsupported the file is unchanged and `Unsupported` is
/// returned. A failure after the first insertion is an error (the file is then half
/// transformed; the pipeline discards its temporary directory).
pub fn embed_in_place(vhd: &File, plan: &Plan) -> std::io::Result<Embedded> {
    let len = vhd.metadata()?.len();
    if len != plan.vhd_len {
        return Err(std::io::Error::other(format!(
            "the VHD file is {len} bytes, the plan is for {}",
            plan.vhd_len
        )));
    }
    let holes = plan.holes();
    let mut hole_bytes = 0;
    for (i, &(off, n)) in holes.iter().enumerate() {
        if !sparse::insert_range(vhd, off, n)? {
            if i == 0 {
                return Ok(Embedded::Unsupported);
            }
            return Err(std::io::Error::other(format!(
                "FALLOC_FL_INSERT_RANGE of {n} bytes at {off} refused after {i} hole(s) were inserted"
            )));
        }
        hole_bytes += n;
    }
    let now = vhd.metadata()?.len();
    if now != plan.embedded_len {
        return Err(std::io::Error::other(format!(
            "after inserting {hole_bytes} bytes of holes the file is {now} bytes, expected {}",
            plan.embedded_len
        )));
    }
    Ok(Embedded::Done {
        holes: holes.len(),
        hole_bytes,
    })
}

/// A data extent of the partition file that lies (partly) inside the VHD's clusters; both
/// ranges `[start, end)` in volume coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overlap {
    pub extent: (u64, u64),
    pub vhd: (u64, u64),
}

/// The first overlap between the data extents `extents` of the partition file and the VHD's
/// clusters `vhd` (both in volume coordinates). The embed route copies the partition file's
/// extents into the image around the VHD's data; an overlap would overwrite VHD data, so the
/// caller stops with an error.
pub fn check_disjoint(extents: &[(u64, u64)], vhd: &[(u64, u64)]) -> Result<(), Overlap> {
    for &e in extents {
        for &v in vhd {
            if e.0 < v.1 && v.0 < e.1 {
                return Err(Overlap { extent: e, vhd: v });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const C: u64 = 4096;
    const MIB: u64 = 1 << 20;

    fn run(vcn: u64, lcn: u64, len: u64) -> Run {
        Run {
            vcn,
            lcn: Some(lcn),
            len,
        }
    }

    #[test]
    fn two_runs_around_the_mid_volume_metadata() {
        // 10 clusters + 512 bytes: run 0 = 6 clusters at LCN 100, run 1 = 5 clusters at LCN 200
        let len = 10 * C + 512;
        let p = plan(&[run(0, 100, 6), run(6, 200, 5)], C, len, MIB, C).unwrap();
        assert_eq!(
            p.pieces,
            vec![
                Piece {
                    vhd_offset: 0,
                    len: 6 * C,
                    cluster_bytes: 6 * C,
                    disk_offset: MIB + 100 * C
                },
                Piece {
                    vhd_offset: 6 * C,
                    len: 4 * C + 512,
                    cluster_bytes: 5 * C,
                    disk_offset: MIB + 200 * C
                },
            ]
        );
        // last gap first (in original coordinates), the front hole last
        assert_eq!(p.holes(), vec![(6 * C, 94 * C), (0, MIB + 100 * C)]);
        assert_eq!(p.embedded_len, MIB + 200 * C + 4 * C + 512);
        assert_eq!(p.embedded_len, len + p.hole_bytes());
        assert_eq!(
            p.volume_ranges(),
            vec![(100 * C, 106 * C), (200 * C, 205 * C)]
        );
    }

    #[test]
    fn adjacent_runs_need_no_gap() {
        let p = plan(&[run(0, 10, 2), run(2, 12, 2)], C, 4 * C, MIB, C).unwrap();
        assert_eq!(p.holes(), vec![(0, MIB + 10 * C)]);
    }

    #[rstest]
    #[case::descending(vec![run(0, 200, 2), run(2, 100, 2)], 4 * C, C, "ascending")]
    #[case::overlapping(vec![run(0, 100, 4), run(4, 102, 2)], 6 * C, C, "ascending")]
    #[case::sparse(vec![run(0, 100, 2), Run { vcn: 2, lcn: None, len: 2 }], 4 * C, C, "sparse")]
    #[case::short(vec![run(0, 100, 2)], 4 * C, C, "cover")]
    #[case::vcn_gap(vec![run(0, 100, 2), run(3, 200, 2)], 5 * C, C, "VCN")]
    #[case::big_blocks(vec![run(0, 100, 2)], 2 * C, 65536, "blocks")]
    fn refused(#[case] runs: Vec<Run>, #[case] len: u64, #[case] block: u64, #[case] why: &str) {
        let e = plan(&runs, C, len, MIB, block).unwrap_err();
        assert!(e.0.contains(why), "{e:?}");
    }

    #[test]
    fn overlaps_are_found() {
        let vhd = [(100 * C, 106 * C), (200 * C, 205 * C)];
        assert!(check_disjoint(&[(0, 100 * C), (106 * C, 200 * C)], &vhd).is_ok());
        assert_eq!(
            check_disjoint(&[(0, 64), (204 * C, 300 * C)], &vhd),
            Err(Overlap {
                extent: (204 * C, 300 * C),
                vhd: (200 * C, 205 * C)
            })
        );
    }

    #[test]
    fn holes_land_the_runs_at_their_clusters() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let len = 10 * C + 512;
        f.set_len(len).unwrap();
        f.write_all_at(&[1u8; 16], 0).unwrap();
        f.write_all_at(&[2u8; 16], 6 * C).unwrap();
        f.write_all_at(&[3u8; 512], 10 * C).unwrap();
        let block = host_block_size(&f).unwrap();
        let p = plan(&[run(0, 100, 6), run(6, 200, 5)], C, len, MIB, block).unwrap();
        match embed_in_place(&f, &p).unwrap() {
            Embedded::Unsupported => {
                // the probe refused: the file must be untouched
                assert_eq!(f.metadata().unwrap().len(), len);
            }
            Embedded::Done { holes, hole_bytes } => {
                assert_eq!((holes, hole_bytes), (2, p.hole_bytes()));
                let mut b = [0u8; 16];
                f.read_exact_at(&mut b, MIB + 100 * C).unwrap();
                assert_eq!(b, [1u8; 16]);
                f.read_exact_at(&mut b, MIB + 200 * C).unwrap();
                assert_eq!(b, [2u8; 16]);
                f.read_exact_at(&mut b, MIB + 204 * C).unwrap();
                assert_eq!(b, [3u8; 16]);
                f.read_exact_at(&mut b, MIB + 150 * C).unwrap();
                assert_eq!(b, [0u8; 16]);
                assert_eq!(f.metadata().unwrap().len(), p.embedded_len);
            }
        }
    }
}
