//! A QMP client over the unix socket (`-qmp unix:PATH,server=on,wait=off`), serde_json lines.
//!
//! Every command carries an `id`; events that arrive meanwhile are queued (QEMU queues them on
//! the socket until the next read, so their own `timestamp` is what tells when they happened,
//! qemu.md §7). Every line in either direction is kept in a transcript (the `qmp.log` artifact).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// A connected, capabilities-negotiated QMP session.
pub struct Qmp {
    stream: UnixStream,
    pending: Vec<u8>,
    events: VecDeque<Value>,
    transcript: Vec<String>,
    next_id: u64,
    t0: Instant,
    /// QEMU's version from the greeting (`major.minor.micro`).
    pub version: String,
}

/// Block statistics of one device (`query-blockstats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BlockStats {
    pub rd_bytes: u64,
    pub wr_bytes: u64,
    pub rd_operations: u64,
    pub wr_operations: u64,
    pub flush_operations: u64,
}

impl Qmp {
    /// Connect (retrying while QEMU creates the socket, until `deadline` or until `alive`
    /// returns false), read the greeting and negotiate `qmp_capabilities`.
    pub fn connect(path: &Path, deadline: Instant, mut alive: impl FnMut() -> bool) -> Result<Qmp> {
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    if !alive() {
                        return Err(Error::qmp(format!(
                            "{}: QEMU exited before its QMP socket accepted a connection ({e})",
                            path.display()
                        )));
                    }
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout(format!(
                            "QMP socket {} ({e})",
                            path.display()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let mut q = Qmp {
            stream,
            pending: Vec::new(),
            events: VecDeque::new(),
            transcript: Vec::new(),
            next_id: 1,
            t0: Instant::now(),
            version: String::new(),
        };
        let greeting = q.read_message(deadline)?;
        let v = &greeting["QMP"]["version"]["qemu"];
        if greeting.get("QMP").is_none() {
            return Err(Error::qmp(format!("unexpected greeting {greeting}")));
        }
        q.version = format!("{}.{}.{}", v["major"], v["minor"], v["micro"]);
        q.execute("qmp_capabilities", None, deadline)?;
        Ok(q)
    }

    fn log(&mut self, dir: &str, text: &str) {
        let t = self.t0.elapsed().as_secs_f64();
        self.transcript.push(format!("{t:9.3} {dir} {text}"));
    }

    /// The full transcript so far.
    pub fn transcript(&self) -> &[String] {
        &self.transcript
    }

    /// Read one JSON message, blocking until `deadline`.
    fn read_message(&mut self, deadline: Instant) -> Result<Value> {
        match self.read_message_opt(deadline)? {
            Some(v) => Ok(v),
            None => Err(Error::Timeout("waiting for a QMP message".into())),
        }
    }

    fn read_message_opt(&mut self, deadline: Instant) -> Result<Option<Value>> {
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line).trim().to_string();
                if text.is_empty() {
                    continue;
                }
                self.log("<-", &text);
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| Error::qmp(format!("bad JSON from QEMU ({e}): {text}")))?;
                return Ok(Some(v));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            self.stream
                .set_read_timeout(Some(wait))
                .map_err(|e| Error::qmp(format!("socket timeout: {e}")))?;
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(Error::qmp("QEMU closed the QMP socket")),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::qmp(format!("reading the socket: {e}"))),
            }
        }
    }

    /// Run one command and return its `return` value; a QMP `error` becomes [`Error::Qmp`].
    pub fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        deadline: Instant,
    ) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"execute": command, "id": id});
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let text = msg.to_string();
        self.log("->", &text);
        self.stream
            .write_all(format!("{text}\n").as_bytes())
            .map_err(|e| Error::qmp(format!("sending {command}: {e}")))?;
        loop {
            let v = self
                .read_message_opt(deadline)?
                .ok_or_else(|| Error::Timeout(format!("QMP {command}: no reply")))?;
            if v.get("event").is_some() {
                self.events.push_back(v);
                continue;
            }
            if v.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(err) = v.get("error") {
                return Err(Error::qmp(format!(
                    "{command}: {} ({})",
                    err["desc"].as_str().unwrap_or("?"),
                    err["class"].as_str().unwrap_or("?")
                )));
            }
            return Ok(v.get("return").cloned().unwrap_or(Value::Null));
        }
    }

    /// Read events that are already waiting (non-blocking beyond a millisecond).
    pub fn poll_events(&mut self) -> Result<()> {
        while let Some(v) = self.read_message_opt(Instant::now() + Duration::from_millis(1))? {
            if v.get("event").is_some() {
                self.events.push_back(v);
            }
        }
        Ok(())
    }

    /// Take all queued events.
    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }

    /// Wait for an event named `name` for which `matches` holds; other events stay queued.
    pub fn wait_event(
        &mut self,
        name: &str,
        deadline: Instant,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        loop {
            if let Some(i) = self
                .events
                .iter()
                .position(|e| e["event"] == name && matches(e))
            {
                return Ok(self.events.remove(i).unwrap_or(Value::Null));
            }
            match self.read_message_opt(deadline)? {
                Some(v) if v.get("event").is_some() => self.events.push_back(v),
                Some(_) => {}
                None => return Err(Error::Timeout(format!("QMP event {name}"))),
            }
        }
    }

    /// `device_del` and wait for its `DEVICE_DELETED` event (returned).
    pub fn device_del(&mut self, id: &str, deadline: Instant) -> Result<Value> {
        self.execute("device_del", Some(json!({"id": id})), deadline)?;
        self.wait_event("DEVICE_DELETED", deadline, |e| e["data"]["device"] == id)
    }

    /// `device_add` with the given arguments (must contain `driver`).
    pub fn device_add(&mut self, args: Value, deadline: Instant) -> Result<()> {
        self.execute("device_add", Some(args), deadline).map(|_| ())
    }

    /// `query-blockstats` for the device whose backend is node `node` (with `-blockdev` the
    /// `device` field is empty, so the node name or the qdev path identify it, qemu.md §4).
    /// `None` when the device is not attached.
    pub fn blockstats(
        &mut self,
        node: &str,
        qdev_id: &str,
        deadline: Instant,
    ) -> Result<Option<BlockStats>> {
        let r = self.execute("query-blockstats", None, deadline)?;
        let qdev = format!("/machine/peripheral/{qdev_id}/");
        Ok(r.as_array().into_iter().flatten().find_map(|e| {
            let hit =
                e["node-name"] == node || e["qdev"].as_str().is_some_and(|q| q.starts_with(&qdev));
            hit.then(|| {
                let s = &e["stats"];
                let g = |k: &str| s[k].as_u64().unwrap_or(0);
                BlockStats {
                    rd_bytes: g("rd_bytes"),
                    wr_bytes: g("wr_bytes"),
                    rd_operations: g("rd_operations"),
                    wr_operations: g("wr_operations"),
                    flush_operations: g("flush_operations"),
                }
            })
        }))
    }

    /// `screendump` of the primary console to a PNG file.
    pub fn screendump_png(&mut self, file: &Path, deadline: Instant) -> Result<()> {
        self.execute(
            "screendump",
            Some(json!({"filename": file.display().to_string(), "format": "png"})),
            deadline,
        )
        .map(|_| ())
    }

    /// `query-status`: the run state (`running`, `shutdown`, `internal-error`, ...).
    pub fn status(&mut self, deadline: Instant) -> Result<String> {
        let r = self.execute("query-status", None, deadline)?;
        Ok(r["status"].as_str().unwrap_or("?").to_string())
    }

    /// `quit` (QEMU may close the socket before replying; that is success).
    pub fn quit(&mut self, deadline: Instant) -> Result<()> {
        match self.execute("quit", None, deadline) {
            Ok(_) => Ok(()),
            Err(Error::Qmp(m)) if m.contains("closed") => Ok(()),
            Err(e) => Err(e),
        }
    }
}
