//! `containerd-shim-rsrunc-v2`: containerd's runtime v2 shim for runc-compatible runtimes.

#![deny(unsafe_code)]

mod cgroups;
mod cli;
mod error;
mod events;
mod io;
mod logger;
mod mountinfo;
mod mounts;
mod options;
mod request;
mod rpc;
mod service;
mod supervise;
// The one module with unsafe code: the system calls nix does not wrap, each block with
// its SAFETY line.
#[allow(unsafe_code)]
mod sys;
mod task;
mod trace;

fn main() {
    if let Err(e) = cli::run() {
        eprintln!("containerd-shim-rsrunc-v2: {e}");
        std::process::exit(1);
    }
}
