//! The deadlines of the runtime's commands, as the options file sets them
//! (`CreateTimeout`, `DeleteTimeout`, `ControlTimeout`, `QueryTimeout`); the defaults and
//! why they are what they are: [`runc_driver::deadline`].

use std::time::Duration;

use runc_driver::Deadlines;
use serde::{Deserialize, Deserializer, Serialize};

use super::OptionsFile;

/// Milliseconds per class of runtime command; kept in the bundle with the rest of the
/// options, so that `delete` after a crash uses them too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    pub create_ms: u64,
    pub delete_ms: u64,
    pub control_ms: u64,
    pub query_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        let d = Deadlines::default();
        let ms = |d: Duration| d.as_millis() as u64;
        Timeouts {
            create_ms: ms(d.create),
            delete_ms: ms(d.delete),
            control_ms: ms(d.control),
            query_ms: ms(d.query),
        }
    }
}

impl Timeouts {
    pub fn apply(&mut self, f: &OptionsFile) {
        let set = |dst: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut self.create_ms, f.create_timeout);
        set(&mut self.delete_ms, f.delete_timeout);
        set(&mut self.control_ms, f.control_timeout);
        set(&mut self.query_ms, f.query_timeout);
    }

    pub fn deadlines(&self) -> Deadlines {
        Deadlines {
            create: Duration::from_millis(self.create_ms),
            delete: Duration::from_millis(self.delete_ms),
            control: Duration::from_millis(self.control_ms),
            query: Duration::from_millis(self.query_ms),
        }
    }
}

/// A deadline in the options file: a positive number with a unit, "ms", "s" or "m".
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let text = String::deserialize(d)?;
    parse_ms(&text).map(Some).map_err(serde::de::Error::custom)
}

fn parse_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let per = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        _ => 0,
    };
    num.parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && per > 0)
        .and_then(|n| n.checked_mul(per))
        .ok_or_else(|| {
            format!("{text:?} is not a deadline: write a positive number with ms, s or m (\"30s\")")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_take_a_unit() {
        assert_eq!(parse_ms("300ms"), Ok(300));
        assert_eq!(parse_ms("30s"), Ok(30_000));
        assert_eq!(parse_ms("5m"), Ok(300_000));
        for bad in ["30", "0s", "-1s", "1h", "s", ""] {
            assert!(
                parse_ms(bad).unwrap_err().contains("not a deadline"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_options_file_sets_them_and_names_a_bad_one() {
        let f = super::super::parse_toml("ControlTimeout = \"2s\"\n", "f.toml").unwrap();
        let mut t = Timeouts::default();
        t.apply(&f);
        assert_eq!(t.deadlines().control, Duration::from_secs(2));
        assert_eq!(t.deadlines().create, Deadlines::default().create);
        let e = super::super::parse_toml("QueryTimeout = \"soon\"\n", "f.toml").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("QueryTimeout") && msg.contains("not a deadline"),
            "{msg}"
        );
    }
}
