//! Child processes: the one reaper and the waiter the runtime driver uses through it.

pub mod reaper;

pub use reaper::{Exit, Reaper, ReaperWaiter};
