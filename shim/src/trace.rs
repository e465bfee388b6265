//! Phase tracing: where the time of one request (Create, Start, Exec, Delete) or of the
//! shim's own start-up goes, one line per operation with the duration of each phase.
//!
//! Off by default, and then a [`span`] costs one relaxed atomic load. On when the
//! environment (containerd's, which every shim inherits) has `RSRUNC_TRACE`, or with
//! containerd's `-debug` flag:
//! - `RSRUNC_TRACE=/abs/path`: lines are appended to that file, one `write` each, so the
//!   shims of one containerd can share it (`make bench` reads it);
//! - any other value, or `-debug`: lines go to the shim's log (containerd's log).
//!
//! A line: `trace op=exec id=c1/e1 total_us=812 prepare_io=40 runtime=700 ...`, each
//! phase in microseconds since the previous mark. Spans may start at a time taken in
//! another process ([`ENV_T0`]), which accounts for a serving shim's exec and start-up.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use nix::time::{clock_gettime, ClockId};

/// The variable that turns tracing on (a file to append to, or anything else for the log).
pub const ENV_TRACE: &str = "RSRUNC_TRACE";
/// Set by `start` for the serving shim it spawns: the monotonic time of the spawn (ns).
pub const ENV_T0: &str = "RSRUNC_TRACE_T0";

static ON: AtomicBool = AtomicBool::new(false);
/// The file lines are appended to; None: the log.
static SINK: OnceLock<Option<File>> = OnceLock::new();

/// Reads the switch once per process, before any span. `debug` is containerd's `-debug`.
pub fn init(debug: bool) {
    let var = std::env::var_os(ENV_TRACE).filter(|v| !v.is_empty());
    if var.is_none() && !debug {
        return;
    }
    let file = var
        .filter(|v| v.as_encoded_bytes().starts_with(b"/"))
        .and_then(|p| {
            OpenOptions::new()
                .append(true)
                .create(true)
                .open(&p)
                .map_err(|e| log::warn!("trace file {}: {e}", p.to_string_lossy()))
                .ok()
        });
    let _ = SINK.set(file);
    ON.store(true, Ordering::Relaxed);
}

/// Whether tracing is on.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Monotonic time in ns, comparable between processes.
pub fn now_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// One traced operation: written when dropped (so an early return still reports).
pub struct Span {
    op: &'static str,
    id: String,
    start: u64,
    last: u64,
    phases: Vec<(&'static str, u64)>,
}

/// Starts a span for `op` on `id`, or None when tracing is off.
pub fn span(op: &'static str, id: &str) -> Option<Span> {
    if !on() {
        return None;
    }
    Some(Span::from(op, id, now_ns()))
}

/// Like [`span`], started at `t0` (ns of [`now_ns`], possibly another process's).
pub fn span_since(op: &'static str, id: &str, t0: u64) -> Option<Span> {
    if !on() {
        return None;
    }
    Some(Span::from(op, id, t0))
}

/// Ends the current phase of `s` as `name`: the one-line hook at a phase boundary.
pub fn mark(s: &mut Option<Span>, name: &'static str) {
    if let Some(s) = s {
        let now = now_ns();
        s.phases.push((name, now.saturating_sub(s.last)));
        s.last = now;
    }
}

impl Span {
    fn from(op: &'static str, id: &str, t0: u64) -> Span {
        Span {
            op,
            id: id.to_string(),
            start: t0,
            last: t0,
            phases: Vec::with_capacity(12),
        }
    }

    fn line(&self) -> String {
        let mut s = format!(
            "trace op={} id={} total_us={}",
            self.op,
            self.id,
            self.last.saturating_sub(self.start) / 1000
        );
        for (name, ns) in &self.phases {
            s.push_str(&format!(" {name}={}", ns / 1000));
        }
        s
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let line = self.line();
        match SINK.get() {
            Some(Some(f)) => {
                let mut f: &File = f;
                let _ = f.write_all(format!("{line}\n").as_bytes());
            }
            _ => log::info!("{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_each_phase_in_microseconds() {
        let s = Span {
            op: "exec",
            id: "c1/e1".into(),
            start: 1_000_000,
            last: 4_500_000,
            phases: vec![("io", 1_000_000), ("runtime", 2_500_000)],
        };
        assert_eq!(
            s.line(),
            "trace op=exec id=c1/e1 total_us=3500 io=1000 runtime=2500"
        );
        std::mem::forget(s);
    }

    #[test]
    fn off_costs_no_span() {
        assert!(!on());
        let mut s = span("exec", "c1");
        assert!(s.is_none());
        mark(&mut s, "x");
    }
}
