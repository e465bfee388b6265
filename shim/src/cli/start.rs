//! `start`: find or launch the serving shim for this task's group, print its address.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use containerd_shim::bootstrap::{BootstrapParams, BootstrapResult};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::Flags;
use sha2::{Digest, Sha256};

use super::{require_id, ENV_LISTEN_FD, ENV_PARENT_OOM, ENV_SHIM_CGROUP};
use crate::error::{Error, Result};
use crate::options::RuntimeConfig;

/// How containerd called us, which decides the form of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// containerd up to 2.2: flags and environment; the reply is a plain address, which
    /// every version reads (1.x rejects JSON version 3; 2.0-2.2 take it as version 2).
    Legacy,
    /// containerd 2.3+: BootstrapParams on stdin, BootstrapResult on stdout.
    Bootstrap,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartParams {
    pub id: String,
    pub namespace: String,
    pub grpc_address: String,
    pub ttrpc_address: String,
    pub socket_dir: Option<String>,
    pub options: Option<Any>,
}

const SOCKET_DIR: &str = "/run/containerd/s";
const MAX_INPUT: u64 = 10 << 20;
/// Annotations that put several containers in one shim (a pod), in order of preference.
const GROUP_ANNOTATIONS: [&str; 2] = [
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

pub fn run(flags: &Flags) -> Result<()> {
    let id = require_id(flags)?;
    let mut span = crate::trace::span("bootstrap", id);
    let input = read_stdin()?;
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let (params, protocol) =
        parse_start_input(&input, flags, &env("TTRPC_ADDRESS"), &env("GRPC_ADDRESS"))?;
    let bundle =
        std::env::current_dir().map_err(|e| Error::io("read the bundle directory (cwd)", e))?;
    crate::trace::mark(&mut span, "input");
    let group = group_id(&bundle, id);
    crate::trace::mark(&mut span, "group");
    let dir = params
        .socket_dir
        .clone()
        .unwrap_or_else(|| SOCKET_DIR.to_string());
    let path = socket_path(&dir, &params.grpc_address, &params.namespace, &group);
    let address = format!("unix://{}", path.display());

    if !is_live(&path) {
        match bind(&path) {
            Ok(listener) => spawn_server(flags, &params, &bundle, &address, &listener)?,
            // Another start of the same group won the race: use its shim.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => wait_live(&path)?,
            Err(e) => return Err(Error::io_at("listen on", &path, e)),
        }
    }
    crate::trace::mark(&mut span, "socket_spawn");
    std::fs::write(bundle.join("address"), &address)
        .map_err(|e| Error::io_at("write", bundle.join("address"), e))?;
    let reply = encode_reply(&address, protocol);
    let mut out = std::io::stdout().lock();
    out.write_all(&reply)
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("write the start reply", e))?;
    crate::trace::mark(&mut span, "reply");
    Ok(())
}

/// Reads what containerd piped in: runtime options (an Any), BootstrapParams, or nothing.
fn read_stdin() -> Result<Vec<u8>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(Vec::new());
    }
    let mut buf = Vec::new();
    stdin
        .lock()
        .take(MAX_INPUT)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("read start parameters from stdin", e))?;
    Ok(buf)
}

/// Tells the two protocols apart: BootstrapParams carries our id and namespace; a legacy
/// Any also decodes as BootstrapParams (type URL and value land in those two fields), but
/// never with both equal to the flags.
pub fn parse_start_input(
    input: &[u8],
    flags: &Flags,
    env_ttrpc: &str,
    env_grpc: &str,
) -> Result<(StartParams, Protocol)> {
    if let Ok(b) = BootstrapParams::parse_from_bytes(input) {
        if !input.is_empty() && b.instance_id == flags.id && b.namespace == flags.namespace {
            if b.containerd_ttrpc_address.is_empty() {
                return Err(Error::invalid(
                    "bootstrap parameters carry no containerd ttrpc address",
                ));
            }
            let options = b
                .extensions
                .iter()
                .filter_map(|e| e.value.as_ref())
                .find(|a| is_options_type(&a.type_url))
                .cloned();
            return Ok((
                StartParams {
                    id: b.instance_id.clone(),
                    namespace: b.namespace.clone(),
                    grpc_address: b.containerd_grpc_address.clone(),
                    ttrpc_address: b.containerd_ttrpc_address.clone(),
                    socket_dir: b.socket_dir.clone().filter(|d| !d.is_empty()),
                    options,
                },
                Protocol::Bootstrap,
            ));
        }
    }
    if env_ttrpc.is_empty() {
        return Err(Error::precondition(
            "TTRPC_ADDRESS is not set: containerd sets it when it starts a shim",
        ));
    }
    let options = Any::parse_from_bytes(input)
        .ok()
        .filter(|a| !a.type_url.is_empty());
    let grpc = if flags.address.is_empty() {
        env_grpc
    } else {
        &flags.address
    };
    Ok((
        StartParams {
            id: flags.id.clone(),
            namespace: flags.namespace.clone(),
            grpc_address: grpc.to_string(),
            ttrpc_address: env_ttrpc.to_string(),
            socket_dir: None,
            options,
        },
        Protocol::Legacy,
    ))
}

fn is_options_type(url: &str) -> bool {
    let name = url.rsplit('/').next().unwrap_or_default();
    matches!(
        name,
        "containerd.runc.v1.Options"
            | "runtimeoptions.v1.Options"
            | "containerd.linux.runc.CreateOptions"
    )
}

pub fn encode_reply(address: &str, protocol: Protocol) -> Vec<u8> {
    match protocol {
        Protocol::Legacy => address.as_bytes().to_vec(),
        Protocol::Bootstrap => BootstrapResult {
            version: 3,
            address: address.to_string(),
            protocol: "ttrpc".to_string(),
            ..Default::default()
        }
        .write_to_bytes()
        .unwrap_or_default(),
    }
}

/// Memory settings for the serving shim's allocator: one malloc arena (its threads mostly
/// wait); no per-thread cache of freed chunks (each long-lived thread would keep up to 7
/// chunks of every small size, scattered over the heap after a burst of execs, and every
/// page holding one stays resident: malloc_trim cannot return it); and no cache of
/// finished threads' stacks (copier threads come and go with each process; cached stacks
/// would stay resident).
const TUNABLES: &str =
    "glibc.malloc.arena_max=1:glibc.malloc.tcache_count=0:glibc.pthread.stack_cache_size=0";

fn glibc_tunables(inherited: Option<String>) -> String {
    match inherited.filter(|t| !t.is_empty()) {
        Some(t) => format!("{t}:{TUNABLES}"),
        None => TUNABLES.to_string(),
    }
}

/// The group a task's shim serves: a pod's sandbox, or the task alone.
fn group_id(bundle: &Path, id: &str) -> String {
    let Ok(text) = std::fs::read(bundle.join("config.json")) else {
        return id.to_string();
    };
    #[derive(serde::Deserialize)]
    struct Spec {
        #[serde(default)]
        annotations: std::collections::HashMap<String, String>,
    }
    let Ok(spec) = serde_json::from_slice::<Spec>(&text) else {
        return id.to_string();
    };
    GROUP_ANNOTATIONS
        .iter()
        .find_map(|k| spec.annotations.get(*k).filter(|v| !v.is_empty()).cloned())
        .unwrap_or_else(|| id.to_string())
}

/// `<dir>/<hex sha256 of join(grpc address, namespace, group)>`, as containerd derives it.
pub fn socket_path(dir: &str, grpc_address: &str, namespace: &str, group: &str) -> PathBuf {
    let joined = Path::new(grpc_address).join(namespace).join(group);
    let digest = Sha256::digest(joined.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Path::new(dir).join(hex)
}

pub(super) fn is_live(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

fn wait_live(path: &Path) -> Result<()> {
    for _ in 0..100 {
        if is_live(path) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Error::precondition(format!(
        "the shim socket {} exists but no shim answers on it",
        path.display()
    )))
}

/// Binds the socket, replacing a stale one (a dead shim's). Mode 0600: root only.
fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = match UnixListener::bind(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && !is_live(path) => {
            std::fs::remove_file(path)?;
            UnixListener::bind(path)?
        }
        other => other?,
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

fn spawn_server(
    flags: &Flags,
    params: &StartParams,
    bundle: &Path,
    address: &str,
    listener: &UnixListener,
) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::io("find own executable", e))?;
    crate::sys::clear_cloexec(listener).map_err(|e| Error::io("pass the listening socket", e))?;
    let mut cmd = Command::new(exe);
    cmd.current_dir(bundle)
        .args(["-namespace", &params.namespace, "-id", &params.id])
        .args(["-address", &params.grpc_address, "-socket", address])
        .env("TTRPC_ADDRESS", &params.ttrpc_address)
        .env("GRPC_ADDRESS", &params.grpc_address)
        .env("NAMESPACE", &params.namespace)
        .env(ENV_LISTEN_FD, listener.as_raw_fd().to_string())
        .env(
            "GLIBC_TUNABLES",
            glibc_tunables(std::env::var("GLIBC_TUNABLES").ok()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Out of containerd's process group: a signal to it must not reach the shim.
        .process_group(0);
    if flags.debug {
        cmd.arg("-debug");
    }
    if let Ok(score) = std::fs::read_to_string(format!(
        "/proc/{}/oom_score_adj",
        std::os::unix::process::parent_id()
    )) {
        cmd.env(ENV_PARENT_OOM, score.trim());
    }
    // Options are validated (and reported with the right code) at Create; here only the
    // shim's own cgroup matters.
    if let Ok(cfg) =
        RuntimeConfig::host_defaults().and_then(|d| d.with_request(params.options.as_ref()))
    {
        if !cfg.shim_cgroup.is_empty() {
            cmd.env(ENV_SHIM_CGROUP, &cfg.shim_cgroup);
        }
    }
    // containerd's `sched_core = true` (1.x) or manager `env` (2.x): the serving shim and
    // every container it runs share a new cookie, inherited from this process. Asked for
    // and not possible is an error, as in containerd's Go shim: the isolation is the point.
    if std::env::var_os("SCHED_CORE").is_some_and(|v| !v.is_empty()) {
        crate::sys::sched_core_create()
            .map_err(|e| Error::io("enable core scheduling (SCHED_CORE is set)", e))?;
    }
    if crate::trace::on() {
        cmd.env(crate::trace::ENV_T0, crate::trace::now_ns().to_string());
    }
    let child = cmd
        .spawn()
        .map_err(|e| Error::io("launch the serving shim", e))?;
    // The server is reparented when we exit; containerd reaps us.
    drop(child);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::bootstrap::Extension;

    fn flags() -> Flags {
        Flags {
            id: "c1".into(),
            namespace: "default".into(),
            address: "/run/containerd/containerd.sock".into(),
            ..Default::default()
        }
    }

    #[test]
    fn socket_path_matches_containerd() {
        // The same inputs and digest containerd's own derivation gives.
        assert_eq!(
            socket_path("/run/containerd/s", "/run/containerd/containerd.sock", "default", "123"),
            Path::new("/run/containerd/s/0ddfbd72d02b3551e75f3a0ed90b9965b533401be618f43a568bc522764e0ad0")
        );
    }

    #[test]
    fn legacy_callers_get_a_plain_address() {
        let (p, proto) = parse_start_input(&[], &flags(), "/t.sock.ttrpc", "").unwrap();
        assert_eq!(proto, Protocol::Legacy);
        assert_eq!(p.grpc_address, "/run/containerd/containerd.sock");
        assert_eq!(p.ttrpc_address, "/t.sock.ttrpc");
        assert!(p.options.is_none());
        let reply = encode_reply("unix:///run/containerd/s/abc", proto);
        assert_eq!(reply, b"unix:///run/containerd/s/abc");
    }

    #[test]
    fn legacy_options_any_is_kept() {
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: vec![0x32, 0x04, b'c', b'r', b'u', b'n'],
            ..Default::default()
        };
        let (p, proto) =
            parse_start_input(&any.write_to_bytes().unwrap(), &flags(), "/t", "").unwrap();
        assert_eq!(proto, Protocol::Legacy);
        assert_eq!(p.options.unwrap().type_url, "containerd.runc.v1.Options");
    }

    #[test]
    fn bootstrap_callers_get_a_bootstrap_result() {
        let b = BootstrapParams {
            instance_id: "c1".into(),
            namespace: "default".into(),
            containerd_ttrpc_address: "/t.ttrpc".into(),
            containerd_grpc_address: "/g.sock".into(),
            socket_dir: Some("/run/x/s".into()),
            extensions: vec![Extension {
                value: Some(Any {
                    type_url: "runtimeoptions.v1.Options".into(),
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let (p, proto) = parse_start_input(&b.write_to_bytes().unwrap(), &flags(), "", "").unwrap();
        assert_eq!(proto, Protocol::Bootstrap);
        assert_eq!(p.socket_dir.as_deref(), Some("/run/x/s"));
        assert_eq!(p.grpc_address, "/g.sock");
        assert!(p.options.is_some());
        let r = BootstrapResult::parse_from_bytes(&encode_reply("unix:///x", proto)).unwrap();
        assert_eq!(
            (r.version, r.address.as_str(), r.protocol.as_str()),
            (3, "unix:///x", "ttrpc")
        );
    }

    #[test]
    fn missing_ttrpc_address_is_an_error() {
        let e = parse_start_input(&[], &flags(), "", "").unwrap_err();
        assert!(e.to_string().contains("TTRPC_ADDRESS"), "{e}");
    }

    #[test]
    fn tunables_extend_what_containerd_set() {
        assert_eq!(glibc_tunables(None), TUNABLES);
        assert_eq!(
            glibc_tunables(Some("a=1".into())),
            format!("a=1:{TUNABLES}")
        );
    }

    #[test]
    fn group_comes_from_annotations() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(group_id(dir.path(), "c1"), "c1");
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}"#,
        )
        .unwrap();
        assert_eq!(group_id(dir.path(), "c1"), "pod1");
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1","io.containerd.runc.v2.group":"g"}}"#,
        )
        .unwrap();
        assert_eq!(group_id(dir.path(), "c1"), "g");
    }
}
