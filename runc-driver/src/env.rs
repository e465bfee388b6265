//! The environment every runtime call gets, built on purpose rather than inherited whole.
//!
//! A shim inherits containerd's environment, and when systemd runs containerd that
//! includes variables addressed to containerd itself as a service. Passed on, they change
//! what the runtime does:
//! - `NOTIFY_SOCKET` makes runc and crun set up an sd_notify proxy for the container: a
//!   socket under the runtime's state directory (longer than a unix socket path may be for
//!   the 64-character ids Docker and Kubernetes use, so `runc start` fails), bound into the
//!   container, with `start` waiting for the container to say READY=1 and forwarding it to
//!   containerd's own unit.
//! - `LISTEN_FDS` and `LISTEN_PID` make runc hand the caller's file descriptors from 3 on
//!   to the container as socket-activated sockets.
//! - the rest (`WATCHDOG_*`, `INVOCATION_ID`, `JOURNAL_STREAM`, ...) describe containerd's
//!   unit, not anything the runtime or a container should act on.
//!
//! Everything else is passed as it is, as containerd's Go shim does (go-runc removes
//! `NOTIFY_SOCKET` only): `PATH` (hooks, criu), `DBUS_SYSTEM_BUS_ADDRESS` and
//! `XDG_RUNTIME_DIR` (the systemd cgroup driver), proxies, locale. A container's own
//! `NOTIFY_SOCKET`, set in its spec's `process.env`, is the spec's business and reaches the
//! container unchanged.

use std::ffi::{OsStr, OsString};

/// Variables a service manager sets for the service it runs (systemd.exec(5), "Environment
/// variables set or propagated by the service manager"), which belong to containerd's unit.
pub const SUPERVISOR_VARS: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "MANAGERPID",
    "MAINPID",
    "SYSTEMD_EXEC_PID",
    "CREDENTIALS_DIRECTORY",
    "MEMORY_PRESSURE_WATCH",
    "MEMORY_PRESSURE_WRITE",
    "FDSTORE",
    "SERVICE_RESULT",
    "EXIT_CODE",
    "EXIT_STATUS",
];

/// Prefixes of supervisor variables that come in families (`TRIGGER_UNIT`, `MONITOR_UNIT`, ...).
const SUPERVISOR_PREFIXES: &[&str] = &["TRIGGER_", "MONITOR_"];

/// Whether `name` is a variable of the service manager's, kept from the runtime.
pub fn is_supervisor_var(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    SUPERVISOR_VARS.contains(&name) || SUPERVISOR_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The environment for a runtime call, from the given one (the shim's own, in practice).
pub fn runtime_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    vars.into_iter()
        .filter(|(name, _)| !is_supervisor_var(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn the_service_managers_variables_stay_behind() {
        let env = runtime_env(vars(&[
            ("PATH", "/usr/sbin:/usr/bin"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("LISTEN_FDS", "2"),
            ("LISTEN_PID", "1"),
            ("LISTEN_FDNAMES", "a:b"),
            ("INVOCATION_ID", "0123"),
            ("JOURNAL_STREAM", "8:1234"),
            ("WATCHDOG_USEC", "1000"),
            ("TRIGGER_UNIT", "x.path"),
            ("MONITOR_EXIT_CODE", "exited"),
            (
                "DBUS_SYSTEM_BUS_ADDRESS",
                "unix:path=/run/dbus/system_bus_socket",
            ),
            ("TTRPC_ADDRESS", "/run/containerd/containerd.sock.ttrpc"),
            ("NOTIFY_SOCKET_NOT", "kept: only exact names count"),
        ]));
        let names: Vec<_> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "DBUS_SYSTEM_BUS_ADDRESS",
                "TTRPC_ADDRESS",
                "NOTIFY_SOCKET_NOT"
            ]
        );
    }
}
