//! Child processes: the one reaper, the waiter the runtime driver uses through it, and
//! the OOM watcher.

pub mod oom;
pub mod reaper;

pub use oom::{OomCount, OomKills, OomWatcher, Verdict};
pub use reaper::{Exit, Reaper, ReaperWaiter};
