//! Kubernetes' view of the shim: a private containerd with its CRI plugin enabled and
//! configured from `packaging/containerd/config-{1,2}.x.toml` as shipped, and a blocking
//! CRI client (k8s-cri's generated gRPC client, driven by a current-thread tokio runtime
//! over containerd's unix socket) for the tests in tests/tests/cri.rs.
//!
//! Pods run with the host's network (no CNI is installed here) under a cgroupfs parent of
//! their own, `/rsrunc-cri-<unique>`, removed when the [`CriDaemon`] is dropped. Under
//! containerd's Go shim the pods use a handler the test defines, [`GO_HANDLER`] (typed
//! `io.containerd.runc.v2`); under ours the shipped handler [`OUR_HANDLER`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
pub use k8s_cri::v1 as api;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};
/// What a failed CRI call returns.
pub use tonic::Status;

use crate::daemon::Flavor;
use crate::image;
use crate::{poll_until, rootfs, runtime_name, unique_id, Daemon, GO_SHIM};

/// The containerd namespace CRI works in.
pub const NAMESPACE: &str = "k8s.io";
/// The sandbox ("pause") image the tests build: busybox whose entrypoint sleeps forever.
pub const PAUSE_IMAGE: &str = "docker.io/library/rsrunc-pause:latest";
/// The image the pods' containers run.
pub const BUSYBOX_IMAGE: &str = "docker.io/library/rsrunc-cri-busybox:latest";
/// The handler the test defines for containerd's Go shim.
pub const GO_HANDLER: &str = "runc-go";
/// The handler packaging/containerd/config-*.x.toml ship for our shim.
pub const OUR_HANDLER: &str = "rsrunc";

/// How long one CRI call may take before the test gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(45);

/// The CRI handler pods use under the runtime under test.
pub fn handler_for(runtime: &str) -> &'static str {
    if runtime == GO_SHIM {
        GO_HANDLER
    } else {
        OUR_HANDLER
    }
}

/// A blocking CRI client: every call runs to completion on its own tokio runtime.
pub struct Client {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl Client {
    /// Connects to the gRPC socket of a containerd (CRI shares containerd's socket).
    pub fn connect(socket: &Path) -> Result<Client, tonic::transport::Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let path = socket.to_path_buf();
        // The URI is required but unused: the connector below always dials the socket.
        let channel = rt.block_on(async move {
            Endpoint::from_static("http://[::]:50051")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
        })?;
        Ok(Client {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    fn call<T, F>(&self, what: &str, fut: F) -> Result<T, tonic::Status>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.rt.block_on(async {
            match tokio::time::timeout(CALL_TIMEOUT, fut).await {
                Ok(r) => r.map(tonic::Response::into_inner),
                Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                    "{what}: no answer in {CALL_TIMEOUT:?}"
                ))),
            }
        })
    }

    pub fn version(&self) -> Result<api::VersionResponse, tonic::Status> {
        let mut c = self.runtime.clone();
        self.call("Version", async move {
            c.version(api::VersionRequest::default()).await
        })
    }

    pub fn status(&self) -> Result<api::StatusResponse, tonic::Status> {
        let mut c = self.runtime.clone();
        self.call("Status", async move {
            c.status(api::StatusRequest { verbose: false }).await
        })
    }

    /// The image as CRI sees it, None when CRI does not know it (yet).
    /// Polls for up to `timeout` until CRI sees [`PAUSE_IMAGE`] and [`BUSYBOX_IMAGE`].
    pub fn sees_images(&self, timeout: Duration) -> bool {
        poll_until(timeout, || {
            [PAUSE_IMAGE, BUSYBOX_IMAGE]
                .iter()
                .all(|i| matches!(self.image_status(i), Ok(Some(_))))
        })
    }

    pub fn image_status(&self, image: &str) -> Result<Option<api::Image>, tonic::Status> {
        let mut c = self.images.clone();
        let req = api::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        self.call("ImageStatus", async move { c.image_status(req).await })
            .map(|r| r.image)
    }

    pub fn run_pod_sandbox(
        &self,
        config: &api::PodSandboxConfig,
        handler: &str,
    ) -> Result<String, tonic::Status> {
        let mut c = self.runtime.clone();
        let req = api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        };
        self.call("RunPodSandbox", async move { c.run_pod_sandbox(req).await })
            .map(|r| r.pod_sandbox_id)
    }

    pub fn stop_pod_sandbox(&self, id: &str) -> Result<(), tonic::Status> {
        let mut c = self.runtime.clone();
        let req = api::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        self.call(
            "StopPodSandbox",
            async move { c.stop_pod_sandbox(req).await },
        )
        .map(drop)
    }

    pub fn remove_pod_sandbox(&self, id: &str) -> Result<(), tonic::Status> {
        let mut c = self.runtime.clone();
        let req = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        self.call("RemovePodSandbox", async move {
            c.remove_pod_sandbox(req).await
        })
        .map(drop)
    }

    pub fn list_pod_sandboxes(&self) -> Result<Vec<api::PodSandbox>, tonic::Status> {
        let mut c = self.runtime.clone();
        self.call("ListPodSandbox", async move {
            c.list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
                .await
        })
        .map(|r| r.items)
    }

    pub fn create_container(
        &self,
        pod_id: &str,
        config: &api::ContainerConfig,
        sandbox_config: &api::PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        let mut c = self.runtime.clone();
        let req = api::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(config.clone()),
            sandbox_config: Some(sandbox_config.clone()),
        };
        self.call(
            "CreateContainer",
            async move { c.create_container(req).await },
        )
        .map(|r| r.container_id)
    }

    /// CheckpointContainer: CRIU's dump of a running container, exported as an archive
    /// at `location` (containerd 2.x).
    pub fn checkpoint_container(&self, id: &str, location: &Path) -> Result<(), tonic::Status> {
        let mut c = self.runtime.clone();
        let req = api::CheckpointContainerRequest {
            container_id: id.to_string(),
            location: location.display().to_string(),
            timeout: 0,
        };
        self.call("CheckpointContainer", async move {
            c.checkpoint_container(req).await
        })
        .map(drop)
    }

    pub fn start_container(&self, id: &str) -> Result<(), tonic::Status> {
        let mut c = self.runtime.clone();
        let req = api::StartContainerRequest {
            container_id: id.to_string(),
        };
        self.call(
            "StartContainer",
            async move { c.start_container(req).await },
        )
        .map(drop)
    }

    /// StopContainer: the stop signal, then SIGKILL after `timeout_s` seconds.
    pub fn stop_container(&self, id: &str, timeout_s: i64) -> Result<(), tonic::Status> {
        let mut c = self.runtime.clone();
        let req = api::StopContainerRequest {
            container_id: id.to_string(),
            timeout: timeout_s,
        };
        self.call("StopContainer", async move { c.stop_container(req).await })
            .map(drop)
    }

    pub fn remove_container(&self, id: &str) -> Result<(), tonic::Status> {
        let mut c = self.runtime.clone();
        let req = api::RemoveContainerRequest {
            container_id: id.to_string(),
        };
        self.call(
            "RemoveContainer",
            async move { c.remove_container(req).await },
        )
        .map(drop)
    }

    /// ContainerStatus; with `verbose`, `info["info"]` is containerd's JSON about the
    /// container (runtime type and options, OCI spec, pid).
    pub fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<api::ContainerStatusResponse, tonic::Status> {
        let mut c = self.runtime.clone();
        let req = api::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose,
        };
        self.call(
            "ContainerStatus",
            async move { c.container_status(req).await },
        )
    }

    /// The status of container `id`; panics when CRI cannot give it.
    pub fn status_of(&self, id: &str) -> api::ContainerStatus {
        self.container_status(id, false)
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
            .status
            .expect("ContainerStatus without a status")
    }

    /// The `info` JSON of a verbose ContainerStatus (runtime type and options, OCI spec,
    /// pid); Null when CRI gives none.
    pub fn container_info(&self, id: &str) -> Result<serde_json::Value, tonic::Status> {
        let info = self.container_status(id, true)?.info;
        Ok(info
            .get("info")
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or_default())
    }

    /// Polls container `id`'s status until it has exited, for up to `timeout`: the last
    /// status seen.
    pub fn wait_exited(&self, id: &str, timeout: Duration) -> api::ContainerStatus {
        let mut last = None;
        poll_until(timeout, || {
            let s = self.status_of(id);
            let done = s.state == api::ContainerState::ContainerExited as i32;
            last = Some(s);
            done
        });
        last.unwrap_or_else(|| self.status_of(id))
    }

    pub fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout_s: i64,
    ) -> Result<api::ExecSyncResponse, tonic::Status> {
        let mut c = self.runtime.clone();
        let req = api::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_s,
        };
        self.call("ExecSync", async move { c.exec_sync(req).await })
    }

    /// Exec: the streaming URL of `cmd` run in container `id` (open it with
    /// [`crate::cri_stream::Stream`]).
    pub fn exec(&self, id: &str, cmd: &[&str], stdin: bool, tty: bool) -> Result<String, Status> {
        let mut c = self.runtime.clone();
        let req = api::ExecRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            // With a terminal, stderr is the terminal too.
            stderr: !tty,
        };
        self.call("Exec", async move { c.exec(req).await })
            .map(|r| r.url)
    }

    /// Attach: the streaming URL of container `id`'s own stdio.
    pub fn attach(&self, id: &str, stdin: bool) -> Result<String, Status> {
        let mut c = self.runtime.clone();
        let req = api::AttachRequest {
            container_id: id.to_string(),
            stdin,
            tty: false,
            stdout: true,
            stderr: true,
        };
        self.call("Attach", async move { c.attach(req).await })
            .map(|r| r.url)
    }

    /// ReopenContainerLog: CRI closes container `id`'s log file and opens it again at
    /// its path (what kubelet does after rotating it).
    pub fn reopen_container_log(&self, id: &str) -> Result<(), Status> {
        let mut c = self.runtime.clone();
        let req = api::ReopenContainerLogRequest {
            container_id: id.to_string(),
        };
        self.call("ReopenContainerLog", async move {
            c.reopen_container_log(req).await
        })
        .map(drop)
    }

    /// ListContainerStats: the stats of every container CRI knows.
    pub fn list_container_stats(&self) -> Result<Vec<api::ContainerStats>, Status> {
        let mut c = self.runtime.clone();
        let req = api::ListContainerStatsRequest { filter: None };
        self.call("ListContainerStats", async move {
            c.list_container_stats(req).await
        })
        .map(|r| r.stats)
    }

    /// ContainerStats: the CPU and memory figures CRI reads from the shim's Stats.
    pub fn container_stats(&self, id: &str) -> Result<api::ContainerStats, tonic::Status> {
        let mut c = self.runtime.clone();
        let req = api::ContainerStatsRequest {
            container_id: id.to_string(),
        };
        self.call(
            "ContainerStats",
            async move { c.container_stats(req).await },
        )
        .and_then(|r| {
            r.stats
                .ok_or_else(|| tonic::Status::internal("ContainerStats without stats"))
        })
    }

    pub fn update_container_resources(
        &self,
        id: &str,
        resources: &api::LinuxContainerResources,
    ) -> Result<(), tonic::Status> {
        let mut c = self.runtime.clone();
        let req = api::UpdateContainerResourcesRequest {
            container_id: id.to_string(),
            linux: Some(resources.clone()),
            ..Default::default()
        };
        self.call("UpdateContainerResources", async move {
            c.update_container_resources(req).await
        })
        .map(drop)
    }

    /// RuntimeConfig: the cgroup driver CRI tells kubelet to use (containerd 2.0 on).
    pub fn runtime_config(&self) -> Result<api::RuntimeConfigResponse, tonic::Status> {
        let mut c = self.runtime.clone();
        self.call("RuntimeConfig", async move {
            c.runtime_config(api::RuntimeConfigRequest {}).await
        })
    }
}

pub fn image_spec(image: &str) -> api::ImageSpec {
    api::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

/// A private containerd with CRI, the pause and busybox images imported into `k8s.io`,
/// and a CRI client. Dropping it stops and removes every pod through CRI, then the
/// daemon (by pid), then the pods' cgroups.
pub struct CriDaemon {
    pub cri: Client,
    pub daemon: Daemon,
    /// The handler the pods use ([`handler_for`] the runtime under test).
    pub handler: String,
    /// The cgroupfs parent of this daemon's pods, e.g. `/rsrunc-cri-123-0`.
    pub cgroup_parent: String,
    /// Removes the cgroup parent after the daemon is gone (declared last: dropped last).
    _cgroups: CgroupCleanup,
}

impl CriDaemon {
    /// containerd 1.x from [`crate::TOOLS_DIR`] (1.7).
    pub fn start() -> CriDaemon {
        Self::start_flavor(&Flavor::default())
    }

    pub fn start_flavor(flavor: &Flavor) -> CriDaemon {
        Self::start_setup(flavor, &CriSetup::shipped(flavor))
    }

    /// CRI configured by `setup` (tests/tests/cri_handlers.rs varies the handlers).
    pub fn start_setup(flavor: &Flavor, setup: &CriSetup) -> CriDaemon {
        let runtime = runtime_name();
        let version = flavor.config_version;
        let daemon = Daemon::start_cri(&runtime, flavor, &|dir: &Path| {
            cri_config(version, dir, &setup.default_handler) + &setup.handlers
        });
        let cgroup_parent = format!("/{}", unique_id("rsrunc-cri"));
        let cgroups = CgroupCleanup(cgroup_parent.clone());
        if setup.images {
            import_images(&daemon);
        }
        let cri = wait_for_cri(&daemon);
        let up = !setup.images || cri.sees_images(Duration::from_secs(20));
        assert!(
            up,
            "CRI does not see the imported images:\n{}",
            daemon.log()
        );
        CriDaemon {
            cri,
            daemon,
            handler: handler_for(&runtime).to_string(),
            cgroup_parent,
            _cgroups: cgroups,
        }
    }

    /// A host-network pod config under this daemon's cgroup parent, logging into the
    /// daemon's directory.
    pub fn pod_config(&self, name: &str) -> api::PodSandboxConfig {
        let log_directory = self.daemon.dir().join("pods").join(name);
        std::fs::create_dir_all(&log_directory).unwrap();
        pod_config(name, &unique_id("uid"), &log_directory, &self.cgroup_parent)
    }

    /// A container of the busybox image running `command`, logging to `<name>.log` in
    /// the pod's log directory.
    pub fn container_config(&self, name: &str, command: &[&str]) -> api::ContainerConfig {
        container_config(name, command)
    }

    /// Directories left under the pods' cgroup parent, in every hierarchy.
    pub fn cgroups_left(&self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for parent in cgroup_parents(&self.cgroup_parent) {
            collect_dirs(&parent, &mut left);
        }
        left
    }

    /// A container's bundle directory (where our shim keeps `rsrunc-options.json`).
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.daemon
            .dir()
            .join("state/io.containerd.runtime.v2.task")
            .join(NAMESPACE)
            .join(id)
    }

    /// Restarts containerd (pods stay up) and connects the CRI client again.
    pub fn restart(&mut self) {
        self.daemon.restart();
        self.cri = wait_for_cri(&self.daemon);
    }

    /// Stops and removes every pod CRI knows; returns what failed.
    pub fn remove_all_pods(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let pods = match self.cri.list_pod_sandboxes() {
            Ok(p) => p,
            Err(e) => return vec![format!("ListPodSandbox: {e}")],
        };
        for p in pods {
            if let Err(e) = self.cri.stop_pod_sandbox(&p.id) {
                errors.push(format!("StopPodSandbox {}: {e}", p.id));
            }
            if let Err(e) = self.cri.remove_pod_sandbox(&p.id) {
                errors.push(format!("RemovePodSandbox {}: {e}", p.id));
            }
        }
        errors
    }
}

impl Drop for CriDaemon {
    fn drop(&mut self) {
        let errors = self.remove_all_pods();
        if !errors.is_empty() {
            eprintln!("cleaning up pods: {errors:?}");
        }
        // Then the fields: the client, the daemon (stopped by pid, its leftovers killed
        // and unmounted), and last the pods' cgroups.
    }
}

/// Removes a cgroup parent (deepest first) from every hierarchy.
struct CgroupCleanup(String);

impl Drop for CgroupCleanup {
    fn drop(&mut self) {
        for parent in cgroup_parents(&self.0) {
            let mut dirs = Vec::new();
            collect_dirs(&parent, &mut dirs);
            for d in dirs.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
            let _ = std::fs::remove_dir(&parent);
        }
    }
}

/// `/sys/fs/cgroup/<hierarchy>/<parent>` for every hierarchy (v1 and the v2 one), and
/// `/sys/fs/cgroup/<parent>` on a pure v2 host; only those that exist.
fn cgroup_parents(parent: &str) -> Vec<PathBuf> {
    let rel = parent.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    let mut out = vec![root.join(rel)];
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.path().join(rel));
            }
        }
    }
    out.retain(|p| p.is_dir());
    out
}

/// Every directory below `dir`, parents before their children.
fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(e.path());
            collect_dirs(&e.path(), out);
        }
    }
}

/// A host-network pod config (as kubelet writes one) with pod UID `uid`, logging into
/// `log_directory`, under `cgroup_parent`: a cgroupfs path, or with the systemd cgroup
/// driver a slice name like `kubepods-besteffort-pod<uid>.slice`, from which CRI makes
/// systemd-form cgroupsPaths (`<slice>:cri-containerd:<id>`).
pub fn pod_config(
    name: &str,
    uid: &str,
    log_directory: &Path,
    cgroup_parent: &str,
) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.to_string(),
            uid: uid.to_string(),
            namespace: "rsrunc-e2e".to_string(),
            attempt: 0,
        }),
        // As kubelet does for host-network pods: they keep the host's UTS namespace,
        // where runc refuses to set a hostname.
        hostname: String::new(),
        log_directory: log_directory.display().to_string(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.to_string(),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(host_network()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container of the busybox image running `command`, logging to `<name>.log` in the
/// pod's log directory.
pub fn container_config(name: &str, command: &[&str]) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(image_spec(BUSYBOX_IMAGE)),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(api::LinuxContainerConfig {
            security_context: Some(api::LinuxContainerSecurityContext {
                namespace_options: Some(host_network()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn host_network() -> api::NamespaceOption {
    api::NamespaceOption {
        network: api::NamespaceMode::Node as i32,
        pid: api::NamespaceMode::Container as i32,
        ipc: api::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// The shipped CRI config for containerd 1.x (config version 2) or 2.x (version 3).
pub fn shipped_config(config_version: u8) -> String {
    let name = if config_version >= 3 {
        "config-2.x.toml"
    } else {
        "config-1.x.toml"
    };
    let text = packaging_file(&format!("containerd/{name}"));
    format!("\n# {name}, as shipped:\n{text}\n")
}

/// A file under `packaging/`, e.g. `containerd/config-2.x.toml`.
pub fn packaging_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// How a [`CriDaemon`]'s CRI plugin is configured beyond what this host needs.
#[derive(Debug, Clone)]
pub struct CriSetup {
    /// TOML appended after the host's settings: the shipped handlers, and more.
    pub handlers: String,
    /// CRI's `default_runtime_name` (pods that name no handler, and the first handler CRI
    /// asks for the cgroup driver it reports).
    pub default_handler: String,
    /// Whether to import the pause and busybox images (not needed without pods).
    pub images: bool,
}

impl CriSetup {
    /// The shipped config for `flavor`, the Go shim's handler as the default, images.
    pub fn shipped(flavor: &Flavor) -> CriSetup {
        CriSetup {
            handlers: shipped_config(flavor.config_version),
            default_handler: GO_HANDLER.to_string(),
            images: true,
        }
    }
}

/// The CRI settings this host needs (TESTENV.md), before the shipped file: OOM score
/// adjustments restricted (root lacks CAP_SYS_RESOURCE), the stream server on a free
/// localhost port, the test's pause image, empty CNI directories of the daemon's own
/// (pods use the host network), the Go shim's handler, and the default handler.
fn cri_config(config_version: u8, dir: &Path, default_handler: &str) -> String {
    let cni_bin = dir.join("cni/bin");
    let cni_conf = dir.join("cni/net.d");
    std::fs::create_dir_all(&cni_bin).unwrap();
    std::fs::create_dir_all(&cni_conf).unwrap();
    let (cni_bin, cni_conf) = (cni_bin.display(), cni_conf.display());
    if config_version >= 3 {
        format!(
            r#"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  enable_selinux = false
  enable_cdi = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni_bin}"]
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "{default_handler}"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.{GO_HANDLER}]
    runtime_type = "{GO_SHIM}"
# NRI's socket would be the machine's /var/run/nri/nri.sock.
[plugins."io.containerd.nri.v1.nri"]
  disable = true
"#
        )
    } else {
        format!(
            r#"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "{default_handler}"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{GO_HANDLER}]
    runtime_type = "{GO_SHIM}"
"#
        )
    }
}

/// Connects once CRI answers Version (its plugin starts after containerd's socket).
fn wait_for_cri(d: &Daemon) -> Client {
    connect_when_up(&d.socket, Duration::from_secs(20))
        .unwrap_or_else(|last| panic!("CRI did not come up ({last}):\n{}", d.log()))
}

/// Connects to CRI on `socket` once it answers Version, polling for up to `timeout`
/// (its plugin starts after containerd's socket); Err says what failed last.
pub fn connect_when_up(socket: &Path, timeout: Duration) -> Result<Client, String> {
    let mut client = None;
    let mut last = String::new();
    let up = poll_until(timeout, || {
        if client.is_none() {
            match Client::connect(socket) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    last = format!("connect: {e:?}");
                    return false;
                }
            }
        }
        match client.as_ref().map(Client::version) {
            Some(Ok(_)) => true,
            Some(Err(e)) => {
                last = format!("Version: {e}");
                // A connection made before a restart stays broken: dial again.
                client = None;
                false
            }
            None => false,
        }
    });
    match client {
        Some(c) if up => Ok(c),
        _ => Err(last),
    }
}

/// Builds the pause and busybox images and imports both into CRI's namespace.
fn import_images(d: &Daemon) {
    let archive = images_archive(d.dir()).display().to_string();
    // The last --namespace wins: CRI's, not the daemon's test namespace.
    d.ctr(&["--namespace", NAMESPACE, "images", "import", &archive])
        .ok();
}

/// Builds [`PAUSE_IMAGE`] and [`BUSYBOX_IMAGE`] (one busybox layer, two manifests) as an
/// OCI layout in `dir` and returns the archive of it, `dir/cri-images.tar`, for
/// `ctr -n k8s.io images import`.
pub fn images_archive(dir: &Path) -> PathBuf {
    let layout = dir.join("cri-images");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer = image::put_layer(&blobs, rootfs::busybox(), &dir.join("cri-layer.tar"));
    let manifests = [
        (
            PAUSE_IMAGE,
            serde_json::json!({"Entrypoint": ["/bin/sleep", "2147483647"], "Env": ["PATH=/bin"]}),
        ),
        (
            BUSYBOX_IMAGE,
            serde_json::json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]}),
        ),
    ]
    .into_iter()
    .map(|(name, config)| {
        let annotations = serde_json::json!({"io.containerd.image.name": name});
        image::put_manifest(&blobs, config, std::slice::from_ref(&layer), annotations)
    })
    .collect();
    let archive = dir.join("cri-images.tar");
    image::archive_layout(&layout, manifests, &archive);
    archive
}
