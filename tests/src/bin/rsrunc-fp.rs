//! `rsrunc-fp`: a failpoint runtime for the end-to-end tests, in the spirit of containerd's
//! `runc-fp`. A shim runs it as its OCI runtime (BinaryName); it runs the real runc
//! (`RSRUNC_FP_RUNTIME`, default `runc` from PATH) and misbehaves as the container's
//! annotations ask:
//!
//! ```text
//! rsrunc.failpoint.<command> = fail | fail-after | stall-before:<ms> | stall-after:<ms>
//!                              | hang | hang-first | garbage | exit-early
//! ```
//!
//! `<command>` is the runtime command (create, start, kill, exec, delete, pause, ...).
//! `fail` exits 1 without running runc, with an error in runc's JSON log as runc writes
//! one; `fail-after` runs runc, then fails the same way; the stalls sleep before or after
//! running it. `hang` never returns and never runs runc; `hang-first` hangs the first
//! invocation of the command in the bundle and runs runc for the later ones; `garbage` prints bytes that
//! are not runc's output on stdout and stderr and exits 0 without running runc;
//! `exit-early` exits 0 at once without running runc (a runtime that claims success and
//! did nothing). Both shims pass `--log <bundle>/log.json`, which is how the bundle and
//! its config.json are found for every command. Every invocation with a `--log` appends
//! its command to `<bundle>/rsrunc-fp.calls`, one line each, before doing anything else
//! (so tests count how many times the shim ran the runtime).

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// runc's global flags that take a value.
const VALUE_FLAGS: [&str; 5] = ["--root", "--log", "--log-format", "--criu", "--rootless"];
/// In the bundle: one line per invocation, its command.
const CALLS_FILE: &str = "rsrunc-fp.calls";

fn record_call(path: &Path, command: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{command}");
    }
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let runtime = std::env::var_os("RSRUNC_FP_RUNTIME").unwrap_or_else(|| "runc".into());
    let parsed = parse(&args);
    if let Some(Parsed {
        command,
        log: Some(log),
    }) = &parsed
    {
        record_call(&log.with_file_name(CALLS_FILE), command);
    }
    let first_call = |p: &Parsed<'_>| {
        let calls = p.log.map(|l| l.with_file_name(CALLS_FILE));
        let text = calls.and_then(|c| std::fs::read_to_string(c).ok());
        text.is_some_and(|t| t.lines().filter(|l| *l == p.command).count() <= 1)
    };
    let action = parsed.as_ref().and_then(|p| {
        Some((
            p,
            failpoint(&p.log?.with_file_name("config.json"), &p.command)?,
        ))
    });
    let Some((p, action)) = action else {
        // No failpoint: become runc.
        let err = Command::new(&runtime).args(&args).exec();
        eprintln!("rsrunc-fp: exec {}: {err}", Path::new(&runtime).display());
        std::process::exit(127);
    };
    match action {
        Action::Fail => fail(p),
        Action::HangFirst if !first_call(p) => {
            let err = Command::new(&runtime).args(&args).exec();
            eprintln!("rsrunc-fp: exec {}: {err}", Path::new(&runtime).display());
            std::process::exit(127);
        }
        Action::Hang | Action::HangFirst => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        Action::Garbage => {
            let noise = b"\x00\xffnot json {{{ \x1b[31m garbage\n";
            let _ = std::io::stdout().write_all(noise);
            let _ = std::io::stderr().write_all(noise);
            std::process::exit(0);
        }
        Action::ExitEarly => std::process::exit(0),
        Action::StallBefore(d) => {
            std::thread::sleep(d);
            let err = Command::new(&runtime).args(&args).exec();
            eprintln!("rsrunc-fp: exec {}: {err}", Path::new(&runtime).display());
            std::process::exit(127);
        }
        Action::FailAfter | Action::StallAfter(_) => {
            let status = match Command::new(&runtime).args(&args).status() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("rsrunc-fp: run {}: {e}", Path::new(&runtime).display());
                    std::process::exit(127);
                }
            };
            if let Action::StallAfter(d) = action {
                std::thread::sleep(d);
            }
            if matches!(action, Action::FailAfter) {
                fail(p);
            }
            let code = status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            std::process::exit(code);
        }
    }
}

/// What the command line says, as far as the failpoints need it.
struct Parsed<'a> {
    command: String,
    log: Option<&'a Path>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Fail,
    FailAfter,
    StallBefore(Duration),
    StallAfter(Duration),
    Hang,
    HangFirst,
    Garbage,
    ExitEarly,
}

/// The command (the first word after the global flags) and the `--log` file.
fn parse(args: &[OsString]) -> Option<Parsed<'_>> {
    let mut log = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_str()?;
        if VALUE_FLAGS.contains(&a) {
            if a == "--log" {
                log = args.get(i + 1).map(Path::new);
            }
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return Some(Parsed {
                command: a.to_string(),
                log,
            });
        }
    }
    None
}

/// The action the bundle's config.json asks for at `command`, if any.
fn failpoint(config: &Path, command: &str) -> Option<Action> {
    let text = std::fs::read(config).ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let value = spec["annotations"][format!("rsrunc.failpoint.{command}")].as_str()?;
    action(value)
}

fn action(value: &str) -> Option<Action> {
    let ms = |v: &str| v.parse::<u64>().ok().map(Duration::from_millis);
    match value.split_once(':') {
        None if value == "fail" => Some(Action::Fail),
        None if value == "fail-after" => Some(Action::FailAfter),
        None if value == "hang" => Some(Action::Hang),
        None if value == "hang-first" => Some(Action::HangFirst),
        None if value == "garbage" => Some(Action::Garbage),
        None if value == "exit-early" => Some(Action::ExitEarly),
        Some(("stall-before", v)) => ms(v).map(Action::StallBefore),
        Some(("stall-after", v)) => ms(v).map(Action::StallAfter),
        _ => None,
    }
}

/// Fails as runc does: an error line in the JSON log and on stderr, exit status 1.
fn fail(p: &Parsed<'_>) -> ! {
    let msg = format!("rsrunc-fp: injected {} failure", p.command);
    if let Some(log) = p.log {
        let line = serde_json::json!({"level": "error", "msg": msg});
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{line}");
        }
    }
    eprintln!("{msg}");
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_command_follows_the_global_flags() {
        let a = os(&[
            "--root",
            "/run/r",
            "--log",
            "/b/log.json",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "exec",
            "--detach",
            "c1",
        ]);
        let p = parse(&a).unwrap();
        assert_eq!(p.command, "exec");
        assert_eq!(p.log, Some(Path::new("/b/log.json")));
        assert!(parse(&os(&["--root", "/r"])).is_none());
    }

    #[test]
    fn actions_parse() {
        assert_eq!(action("fail"), Some(Action::Fail));
        assert_eq!(action("fail-after"), Some(Action::FailAfter));
        assert_eq!(
            action("stall-after:250"),
            Some(Action::StallAfter(Duration::from_millis(250)))
        );
        assert_eq!(action("hang"), Some(Action::Hang));
        assert_eq!(action("garbage"), Some(Action::Garbage));
        assert_eq!(action("exit-early"), Some(Action::ExitEarly));
        assert_eq!(action("stall-before:x"), None);
        assert_eq!(action("explode"), None);
    }
}
