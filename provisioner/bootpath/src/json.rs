//! A tiny JSON object writer for report lines (no_std; no serde needed in firmware), and the
//! line form of hops and verdicts shared by every guest stand-in.

use alloc::string::String;
use core::fmt::Write;

use ufd_formats::policy::{Outcome, Verdict};

use crate::walk::Hop;

/// Append `s` as a JSON string literal.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON object built field by field: `Obj::new().str("event", "x").num("n", 1).finish()`.
pub struct Obj {
    buf: String,
    empty: bool,
}

impl Default for Obj {
    fn default() -> Self {
        Self::new()
    }
}

impl Obj {
    pub fn new() -> Self {
        Obj {
            buf: String::from("{"),
            empty: true,
        }
    }
    fn key(&mut self, k: &str) {
        if !self.empty {
            self.buf.push(',');
        }
        self.empty = false;
        push_str(&mut self.buf, k);
        self.buf.push(':');
    }
    pub fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        push_str(&mut self.buf, v);
        self
    }
    pub fn num(mut self, k: &str, v: impl Into<i128>) -> Self {
        self.key(k);
        let _ = write!(self.buf, "{}", v.into());
        self
    }
    pub fn bool(mut self, k: &str, v: bool) -> Self {
        self.key(k);
        self.buf.push_str(if v { "true" } else { "false" });
        self
    }
    /// `null` when `None`.
    pub fn opt_num(self, k: &str, v: Option<impl Into<i128>>) -> Self {
        match v {
            Some(v) => self.num(k, v),
            None => self.raw(k, "null"),
        }
    }
    pub fn opt_str(self, k: &str, v: Option<&str>) -> Self {
        match v {
            Some(v) => self.str(k, v),
            None => self.raw(k, "null"),
        }
    }
    /// A value that is already JSON text.
    pub fn raw(mut self, k: &str, json: &str) -> Self {
        self.key(k);
        self.buf.push_str(json);
        self
    }
    /// A JSON array of strings.
    pub fn strs<'s>(mut self, k: &str, v: impl IntoIterator<Item = &'s str>) -> Self {
        self.key(k);
        self.buf.push('[');
        for (i, s) in v.into_iter().enumerate() {
            if i > 0 {
                self.buf.push(',');
            }
            push_str(&mut self.buf, s);
        }
        self.buf.push(']');
        self
    }
    pub fn finish(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

/// `pass`, `fail`, `warn`, `not-judged`.
pub fn outcome_text(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
        Outcome::Warn => "warn",
        Outcome::NotJudged => "not-judged",
    }
}

/// `{"event":"hop","hop":..,"status":..,"evidence":..}`
pub fn hop_line(h: &Hop) -> String {
    Obj::new()
        .str("event", "hop")
        .str("hop", h.step)
        .str("status", h.status.text())
        .str("evidence", &h.evidence)
        .finish()
}

/// `{"event":"verdict","rule":..,"outcome":..,"evidence":..,"source":..}`
pub fn verdict_line(v: &Verdict) -> String {
    Obj::new()
        .str("event", "verdict")
        .str("rule", v.rule)
        .str("outcome", outcome_text(v.outcome))
        .str("evidence", &v.evidence)
        .str("source", &v.source)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let s = Obj::new()
            .str("a", "q\"\\\n\u{1}é")
            .num("n", -3i32)
            .bool("b", true)
            .opt_num("o", None::<u32>)
            .strs("l", ["x", "y"])
            .finish();
        assert_eq!(
            s,
            r#"{"a":"q\"\\\n\u0001é","n":-3,"b":true,"o":null,"l":["x","y"]}"#
        );
    }
}
