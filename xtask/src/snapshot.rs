//! Committed text snapshots checked by `cargo xtask e2e`: the normalised guest reports (`ufd run
//! --report-dir`) of the conformant scenarios of both boot paths, against
//! `snapshots/e2e__conformant_report.txt` (UEFI probe) and
//! `snapshots/e2e__bios-conformant_report.txt` (BIOS stand-in).
//!
//! The e2e run comes after the tests in CI, so this is a plain comparison here rather than an
//! insta test: a mismatch prints a line diff and fails; `UFD_UPDATE_SNAPSHOTS=1` rewrites the
//! snapshot (read the diff in `git diff` before committing it).

use std::path::Path;

/// Env variable that makes [`check`] rewrite the snapshot instead of comparing.
pub const UPDATE_ENV: &str = "UFD_UPDATE_SNAPSHOTS";

/// Compare `actual` (a file the run wrote) with the committed `snapshot`.
pub fn check(actual: &Path, snapshot: &Path) -> Result<(), String> {
    let new = std::fs::read_to_string(actual).map_err(|e| {
        format!(
            "{}: {e} (the scenario did not run to a report)",
            actual.display()
        )
    })?;
    if std::env::var_os(UPDATE_ENV).is_some_and(|v| v != "0") {
        std::fs::write(snapshot, &new).map_err(|e| format!("{}: {e}", snapshot.display()))?;
        println!("snapshot {} rewritten ({UPDATE_ENV})", snapshot.display());
        return Ok(());
    }
    let old = std::fs::read_to_string(snapshot).map_err(|e| {
        format!(
            "{}: {e} (create it with {UPDATE_ENV}=1 cargo xtask e2e, then review it)",
            snapshot.display()
        )
    })?;
    if old == new {
        println!("snapshot {} matches", snapshot.display());
        return Ok(());
    }
    Err(format!(
        "{} differs from the committed snapshot {} (- snapshot, + this run; \
         {UPDATE_ENV}=1 cargo xtask e2e accepts it):\n{}",
        actual.display(),
        snapshot.display(),
        line_diff(&old, &new)
    ))
}

/// A line diff (longest common subsequence): changed lines prefixed `-`/`+`, with one line of
/// context around each change as `  ` and skipped runs as `  ...`.
pub fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // lcs[i][j] = LCS length of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        ops[k.saturating_sub(1)..(k + 2).min(ops.len())]
            .iter()
            .any(|(c, _)| *c != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (c, line)) in ops.iter().enumerate() {
        if *c == ' ' && !near_change(k) {
            if !skipped {
                out += "  ...\n";
                skipped = true;
            }
            continue;
        }
        skipped = false;
        out += &format!("{c} {line}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_changed_lines_with_context() {
        let old = "a\nb\nc\nd\ne\nf\n";
        let new = "a\nb\nc\nD\ne\nf\ng\n";
        assert_eq!(line_diff(old, new), "  ...\n  c\n- d\n+ D\n  e\n  f\n+ g\n");
    }

    #[test]
    fn diff_of_equal_texts_is_only_skips() {
        assert_eq!(line_diff("a\nb\n", "a\nb\n"), "  ...\n");
    }

    #[test]
    fn check_compares_and_reports_a_diff() {
        let dir = std::env::temp_dir().join(format!("xtask-snapshot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let actual = dir.join("actual.jsonl");
        let snap = dir.join("snap.txt");
        std::fs::write(&actual, "x\ny\n").unwrap();
        std::fs::write(&snap, "x\ny\n").unwrap();
        assert!(check(&actual, &snap).is_ok());
        std::fs::write(&snap, "x\nz\n").unwrap();
        let err = check(&actual, &snap).unwrap_err();
        assert!(err.contains("- z\n+ y\n"), "{err}");
        let missing = check(&dir.join("none.jsonl"), &snap).unwrap_err();
        assert!(missing.contains("did not run"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
