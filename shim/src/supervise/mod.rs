//! Supervision: the one reaper, the process table that routes its exits and orders
//! TaskStart before TaskExit, and the processes' lifecycle (the OOM watcher is in
//! `cgroups/`).
//!
//! - [`reaper`]: the only `waitpid` caller, and the monitor the runtime driver uses.
//! - [`dispatch`]: the [`Supervisor`]: exits routed, parked or held, made final once the
//!   process's output is flushed, and TaskStart published before TaskExit.
//! - [`table`]: every process's pid and status, the pid index, the parked exits and the
//!   outbox of exits to publish.
//! - [`state`]: a process's status and its legal transitions.
//! - [`watch`]: a process's exit for those who wait for it (Wait).

pub mod dispatch;
pub mod reaper;
pub mod state;
pub mod table;
pub mod watch;

pub use dispatch::{Expect, Flushed, Supervisor};
pub use reaper::{InFlight, Reaper, ReaperMonitor};
pub use state::{Exit, Op, Status};
pub use watch::{ExitWaiter, ExitWatch};
