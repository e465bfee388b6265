//! How long each runtime command may run before the driver kills it.
//!
//! A runtime that hangs (a stuck hook, a frozen cgroup, a wedged storage driver) must not
//! hang the request that ran it. The defaults are far above what a healthy command takes,
//! so that they only ever stop a hung one:
//! - `create`, `start` and `exec` run the container's hooks (createRuntime,
//!   createContainer, startContainer, prestart, poststart: network set-up, device
//!   plugins), which the spec lets take as long as they like: 5 minutes.
//! - `delete` runs the poststop hooks and waits for the container's processes to die and
//!   its cgroup to go: 2 minutes.
//! - `kill`, `pause`, `resume` and `update` only signal a process or write cgroup files,
//!   which takes milliseconds even on a loaded host: 1 minute.
//! - `ps`, `state` and `features` only read: 30 seconds.

use std::time::Duration;

/// The deadline of each class of runtime command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// `create`, `start`, `exec`: the commands that run hooks.
    pub create: Duration,
    /// `delete`.
    pub delete: Duration,
    /// `kill`, `pause`, `resume`, `update`.
    pub control: Duration,
    /// `ps`, `state`, `features`.
    pub query: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            create: Duration::from_secs(300),
            delete: Duration::from_secs(120),
            control: Duration::from_secs(60),
            query: Duration::from_secs(30),
        }
    }
}

impl Deadlines {
    /// The deadline of runtime command `verb`.
    pub fn of(&self, verb: &str) -> Duration {
        match verb {
            "create" | "start" | "exec" | "run" | "restore" | "checkpoint" => self.create,
            "delete" => self.delete,
            "kill" | "pause" | "resume" | "update" => self.control,
            _ => self.query,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verb_has_its_class() {
        let d = Deadlines {
            create: Duration::from_secs(1),
            delete: Duration::from_secs(2),
            control: Duration::from_secs(3),
            query: Duration::from_secs(4),
        };
        let secs = |v| d.of(v).as_secs();
        assert_eq!(
            ["exec", "delete", "kill", "ps", "features"].map(secs),
            [1, 2, 3, 4, 4]
        );
    }
}
