//! `ufd inspect PATH [--json]`: what a UFD disk image, a VHD, a hive or a BCD store holds, with
//! the seed's policy verdicts. The reading and judging live in the `ufd-inspect` crate (shared
//! rules from `ufd_formats::policy`); this is the edge: arguments, printing, exit code.
//!
//! Exit codes: 0 = no requirement failed (recommendations and procedure steps may miss),
//! 3 = a requirement-level rule failed ([`ufd_inspect::EXIT_REQUIREMENT_FAILED`]),
//! 1 = the input could not be read or is not a disk image/VHD/hive, 2 = usage.

use std::path::Path;

use serde_json::json;

use crate::CliError;

pub fn run(path: &Path, json: bool) -> Result<u8, CliError> {
    let report = ufd_inspect::inspect(path).map_err(|e| CliError::other(e.0))?;
    let code = report.exit_code(false);
    if json {
        let verdicts: Vec<_> = report
            .verdicts
            .iter()
            .map(|v| json!({"rule": v.rule, "level": v.level(), "outcome": v.outcome, "evidence": v.evidence, "source": v.source}))
            .collect();
        let store = report
            .store
            .as_ref()
            .map(|s| crate::bcdcmd::store_json(s, false));
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "path": report.path,
                "details": report.details,
                "bcd": store,
                "verdicts": verdicts,
                "exit_code": code,
            }))
            .unwrap_or_default()
        );
    } else {
        print!("{}", report.text());
    }
    Ok(code)
}
