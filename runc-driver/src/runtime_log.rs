//! The runtime's own JSON log (`--log FILE --log-format json`): one object per line with
//! a level and a message. Its last error line is the most useful thing to show a person.
//! runc and crun write `{"level":"error","msg":...}`; youki writes
//! `{"level":"ERROR","message":...}` with a stack backtrace after the message.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

/// How much of the end of the log is read: the last error is near the end, and a log
/// that grew large must not be read whole on every failure.
const TAIL_BYTES: u64 = 64 * 1024;

/// The message of the last `error`/`fatal` entry in the log at `path`, if any.
pub fn last_error(path: &Path) -> Option<String> {
    last_error_after(path, 0)
}

/// Like [`last_error`], but only among entries written after byte `offset`: the log is
/// shared by every command on one container, so an old failure must not be reported
/// for a new one.
pub fn last_error_after(path: &Path, offset: u64) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = offset.max(len.saturating_sub(TAIL_BYTES));
    if start >= len {
        return None;
    }
    file.seek(SeekFrom::Start(start)).ok()?;
    last_error_in(BufReader::new(file))
}

/// The current length of the log, to pass to [`last_error_after`] later.
pub fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Same as [`last_error`], over any reader (lines that are not JSON are skipped).
pub fn last_error_in(reader: impl BufRead) -> Option<String> {
    let mut last = None;
    for line in reader.split(b'\n').map_while(Result::ok) {
        let Ok(entry) = serde_json::from_slice::<Entry>(&line) else {
            continue;
        };
        let level = entry.level.to_ascii_lowercase();
        let msg = if entry.msg.is_empty() {
            entry.message
        } else {
            entry.msg
        };
        // youki appends "\n\nStack backtrace:\n ..." (addresses, no use to a person).
        let msg = match msg.find("\n\nStack backtrace:") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        if matches!(level.as_str(), "error" | "fatal" | "panic") && !msg.trim().is_empty() {
            last = Some(msg.trim().to_string());
        }
    }
    last
}

#[derive(serde::Deserialize)]
struct Entry {
    #[serde(default)]
    level: String,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_last_error_line() {
        let log = br#"{"level":"info","msg":"starting","time":"t"}
{"level":"error","msg":"first problem","time":"t"}
not json at all
{"level":"warning","msg":"meh"}
{"level":"error","msg":"exec: \"nope\": executable file not found in $PATH","time":"t"}
{"level":"info","msg":"done"}
"#;
        assert_eq!(
            last_error_in(&log[..]).as_deref(),
            Some("exec: \"nope\": executable file not found in $PATH")
        );
    }

    #[test]
    fn reads_youki_entries() {
        let log = br#"{"timestamp":"t","level":"ERROR","message":"error in executing command: container nosuch does not exist.\n\nStack backtrace:\n   0: <unknown>\n   1: <unknown>","target":"youki"}
"#;
        assert_eq!(
            last_error_in(&log[..]).as_deref(),
            Some("error in executing command: container nosuch does not exist.")
        );
    }

    #[test]
    fn no_error_lines_means_none() {
        assert_eq!(
            last_error_in(&b"{\"level\":\"info\",\"msg\":\"x\"}\n"[..]),
            None
        );
        assert_eq!(last_error(Path::new("/nonexistent/log.json")), None);
    }

    #[test]
    fn old_errors_are_not_reported_for_a_new_command() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        std::fs::write(&path, "{\"level\":\"error\",\"msg\":\"old\"}\n").unwrap();
        let offset = log_len(&path);
        assert_eq!(last_error_after(&path, offset), None);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"{\"level\":\"error\",\"msg\":\"new\"}\n").unwrap();
        assert_eq!(last_error_after(&path, offset).as_deref(), Some("new"));
    }

    #[test]
    fn reads_only_the_tail_of_a_large_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let mut text = String::from("{\"level\":\"error\",\"msg\":\"old\"}\n");
        while text.len() < 2 * TAIL_BYTES as usize {
            text.push_str("{\"level\":\"info\",\"msg\":\"filler filler filler\"}\n");
        }
        text.push_str("{\"level\":\"error\",\"msg\":\"new\"}\n");
        std::fs::write(&path, text).unwrap();
        assert_eq!(last_error(&path).as_deref(), Some("new"));
    }
}
