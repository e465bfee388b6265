//! The serving shim's log: logfmt lines into the bundle's `log` fifo, which containerd
//! copies into its own log. Every line names the shim's namespace and first task id;
//! messages about one container add `id=` (and `exec_id=`, `pid=`) themselves.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::time::SystemTime;

pub struct Logger {
    out: Mutex<File>,
    suffix: String,
}

impl Logger {
    /// Installs the logger. Lines that cannot be written at once are dropped: a daemon
    /// that stopped reading must never stall the shim.
    pub fn install(out: File, namespace: &str, id: &str, level: log::LevelFilter) {
        let logger = Logger {
            out: Mutex::new(out),
            suffix: format!(" runtime=io.containerd.rsrunc.v2 namespace={namespace} shim_id={id}"),
        };
        if log::set_boxed_logger(Box::new(logger)).is_ok() {
            log::set_max_level(level);
        }
    }
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        // ttrpc narrates every connection at info; only its warnings matter to an operator.
        if m.target().starts_with("ttrpc") && m.level() > log::Level::Warn {
            return log::max_level() >= log::LevelFilter::Trace;
        }
        m.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        let msg = format!("{}", record.args()).replace('"', "\\\"");
        let line = format!(
            "time=\"{}\" level={level} msg=\"{msg}\"{}\n",
            rfc3339(SystemTime::now()),
            self.suffix
        );
        if let Ok(mut f) = self.out.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Installs a panic hook that logs the panic before the default hook runs.
pub fn log_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log::error!("panic: {info}");
        default(info);
    }));
}

/// UTC time as RFC 3339 with microseconds, without a date library.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to a (year, month, day) date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_954_245_123_456);
        assert_eq!(rfc3339(t), "2026-11-29T12:10:45.123456Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }
}
