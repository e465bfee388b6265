//! Drives a runc-compatible CLI (runc, crun, youki) and turns its failures into typed errors.
//!
//! The three runtimes share one command line; their differences are data in [`Runtime`].
//! Argument vectors are built by pure functions in [`opts`], the commands are run by
//! [`ops`] through a [`monitor::Monitor`] so that a process with its own reaper can
//! collect the exit status (the driver drains the child's output itself), each command
//! runs in a process group of its own and is killed with it at its deadline
//! ([`deadline`]), errors carry the runtime's last error line from its JSON log
//! ([`runtime_log`]), and what they mean is looked up in one table
//! ([`error::PHRASINGS`]). The files a command is handed (process spec, resources, pid
//! file) are written and removed by the driver. Every call gets the environment
//! [`mod@env`] builds: the caller's, less what a service manager addressed to containerd's
//! own unit. When the runtime's `delete` cannot finish, [`state_dir`] removes the
//! container's state directory in its place.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod deadline;
pub mod env;
pub mod error;
pub mod exit;
pub mod monitor;
pub mod ops;
pub mod opts;
pub mod runtime_log;
pub mod state_dir;

pub use checkpoint::{CheckpointOpts, CriuOpts, RestoreOpts};
pub use deadline::Deadlines;
pub use error::{Error, Refusal, Result};
pub use exit::ExitStatus;
pub use monitor::{Monitor, Output, Started, StdMonitor};
pub use ops::{Runtime, Stdio};
pub use opts::{CreateOpts, GlobalOpts};
