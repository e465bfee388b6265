#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! The two ways to give Kubernetes the shim, as packaging/ ships them, on containerd 1.7
//! and 2.1:
//!
//! - **typed**: `runtime_type = "io.containerd.rsrunc.v2"` (packaging/containerd/config-*.x.toml).
//!   CRI sends the options as TOML (`runtimeoptions.v1`), never asks these handlers for the
//!   cgroup driver it reports to kubelet, and before containerd 2.2.7 does not introspect
//!   their features;
//! - **runc-typed**: `runtime_type = "io.containerd.runc.v2"` with `runtime_path` naming the
//!   shim (packaging/containerd/config-*.x-runc-type.toml): CRI treats the handler as runc's.
//!
//! For each way: a pod and a container run under the handler for runc and the one for crun,
//! served by the expected binary (`/proc/PID/exe`) driving the expected OCI runtime (its state
//! directory), and for the runc-typed way still served after a containerd restart; what
//! CRI reports to kubelet (RuntimeConfig's cgroup driver, the handlers'
//! features from `-info`); and the README's Kubernetes snippets are the shipped files.
//!
//! Under containerd's Go shim the typed way uses the test's handlers typed
//! `io.containerd.runc.v2` (the Go shim is runc's), and the runc-typed way the shipped
//! runc-typed files with `runtime_path` naming the Go shim of the containerd under test.

use std::path::{Path, PathBuf};

use protobuf::Message;
use rsrunc_e2e::cri::{self, api, CriDaemon, CriSetup, GO_HANDLER, OUR_HANDLER};
use rsrunc_e2e::daemon::Flavor;
use rsrunc_e2e::{ours_only, runtime_name, shim_binary, testing_ours, tool, Oci, GO_SHIM, RSRUNC};

/// Where the Debian package installs the shim: the runc-typed configs' `runtime_path`,
/// replaced by the binary under test.
const INSTALLED_SHIM: &str = "/usr/bin/containerd-shim-rsrunc-v2";
/// The shipped handler for crun.
const OUR_CRUN_HANDLER: &str = "rsrunc-crun";
/// The test's crun handler for containerd's Go shim (the typed way under the Go shim).
const GO_CRUN_HANDLER: &str = "runc-go-crun";
/// The runtime state directory both shims give runc and crun (`--root`) in CRI's namespace.
const RUNTIME_ROOT: &str = "/run/containerd/runc/k8s.io";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// `runtime_type = "io.containerd.rsrunc.v2"`.
    Typed,
    /// `runtime_type = "io.containerd.runc.v2"`, `runtime_path` = the shim.
    RuncTyped,
}

#[test]
fn typed_handlers_containerd_1() {
    pods(Way::Typed, &Flavor::default(), "containerd 1.7");
}

#[test]
fn typed_handlers_containerd_2() {
    pods(Way::Typed, &Flavor::containerd_2(), "containerd 2.1");
}

#[test]
fn runc_typed_handlers_containerd_1() {
    pods(Way::RuncTyped, &Flavor::default(), "containerd 1.7");
}

#[test]
fn runc_typed_handlers_containerd_2() {
    pods(Way::RuncTyped, &Flavor::containerd_2(), "containerd 2.1");
}

/// What CRI 2.x tells kubelet about the node's cgroup driver (RuntimeConfig) when the shim's
/// handler is CRI's default, as a node that runs all pods under rsrunc would set it. CRI
/// asks the default handler, then the others by name, and takes the first whose options
/// decode as runc's: a typed handler is never asked, a runc-typed one always.
#[test]
fn cgroup_driver_reported_to_kubelet_containerd_2() {
    let flavor = Flavor::containerd_2();
    let typed = plan(Way::Typed, &flavor).setup.handlers;
    let runc_typed = plan(Way::RuncTyped, &flavor).setup.handlers;
    // runc's handler as a systemd node configures it (containerd ships SystemdCgroup = false).
    let runc_on_systemd = format!(
        "\n[{table}.containerd.runtimes.runc]\n  runtime_type = \"{GO_SHIM}\"\n  [{table}.containerd.runtimes.runc.options]\n    SystemdCgroup = true\n",
        table = cri_table(3)
    );
    let uncommented = runc_typed.replace("# SystemdCgroup = true", "SystemdCgroup = true");
    assert_ne!(
        uncommented, runc_typed,
        "config-2.x-runc-type.toml no longer has the line `# SystemdCgroup = true`"
    );
    let systemd = api::CgroupDriver::Systemd as i32;
    let cgroupfs = api::CgroupDriver::Cgroupfs as i32;
    let cases = [
        (
            "typed rsrunc; runc's handler as containerd ships it",
            typed.clone(),
            cgroupfs,
        ),
        (
            "typed rsrunc; runc's handler with SystemdCgroup = true",
            typed + &runc_on_systemd,
            systemd,
        ),
        (
            "runc-typed rsrunc as shipped; runc's handler with SystemdCgroup = true",
            runc_typed + &runc_on_systemd,
            cgroupfs,
        ),
        (
            "runc-typed rsrunc with its SystemdCgroup = true; runc's handler as shipped",
            uncommented,
            systemd,
        ),
    ];
    let mut report = Vec::new();
    for (what, handlers, want) in cases {
        let c = CriDaemon::start_setup(
            &flavor,
            &CriSetup {
                handlers,
                default_handler: OUR_HANDLER.to_string(),
                images: false,
            },
        );
        let got = c
            .cri
            .runtime_config()
            .unwrap_or_else(|e| panic!("{what}: RuntimeConfig: {e}\n{}", c.daemon.log()))
            .linux
            .map(|l| l.cgroup_driver);
        report.push(format!(
            "{what}: {} (expected {})",
            driver_name(got),
            driver_name(Some(want))
        ));
        eprintln!("{}", report.last().unwrap());
        assert_eq!(got, Some(want), "{report:#?}");
    }
}

/// `-info` with what containerd sends on its stdin: nothing (2.2+ before a task of a
/// handler not typed runc) and runc's options (CRI's introspection of a runc-typed
/// handler); CRI's TOML options are the next test. The features must be those of the OCI
/// runtime the options name.
#[test]
fn info_reports_the_features_of_the_runtime_the_options_name() {
    let shim = if testing_ours() {
        shim_binary()
    } else {
        // The Go shim of containerd 1.7 has no -info.
        Flavor::containerd_2().go_shim()
    };
    let crun = Oci::Crun.binary();
    let runc_opts = containerd_shim_protos::shim::oci::Options {
        binary_name: crun.clone(),
        ..Default::default()
    };
    let cases = vec![
        ("no options", Vec::new(), "runc".to_string()),
        (
            "containerd.runc.v1.Options",
            any(
                "containerd.runc.v1.Options",
                runc_opts.write_to_bytes().unwrap(),
            ),
            crun.clone(),
        ),
    ];
    for (what, stdin, oci) in cases {
        let features = info_features(&shim, &stdin).unwrap_or_else(|e| panic!("{what}: {e}"));
        let want = oci_features(&oci);
        assert_eq!(
            features, want,
            "{what}: -info's features are not `{oci} features`"
        );
    }
}

/// `-info` with CRI's TOML options (containerd 2.2.7+ introspecting a handler typed by
/// our name): the features are those of the OCI runtime the TOML names. The Go shim does
/// not read runtimeoptions in `-info`.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: the TOML options of a handler not typed runc in -info"
)]
fn info_reads_the_toml_options_of_a_handler() {
    ours_only();
    let crun = Oci::Crun.binary();
    let stdin = any(
        "runtimeoptions.v1.Options",
        runtime_options_toml(&format!("BinaryName = \"{crun}\"\n")),
    );
    let features = info_features(&shim_binary(), &stdin).unwrap();
    assert_eq!(
        features,
        oci_features(&crun),
        "-info's features are not `{crun} features`"
    );
}

/// The README's Kubernetes snippets are the files packaging/ ships, byte for byte: each
/// fenced block right after a line `<!-- packaging/PATH -->`.
#[test]
fn readme_snippets_are_the_shipped_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut lines = readme.lines();
    let mut checked = Vec::new();
    while let Some(line) = lines.next() {
        let Some(path) = line
            .strip_prefix("<!-- ")
            .and_then(|l| l.strip_suffix(" -->"))
            .filter(|p| p.starts_with("packaging/"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "README.md: no code block right after `{line}`"
        );
        let mut block = String::new();
        for l in lines.by_ref().take_while(|l| *l != "```") {
            block.push_str(l);
            block.push('\n');
        }
        let file = std::fs::read_to_string(root.join(path)).unwrap();
        assert_eq!(
            block, file,
            "README.md's copy of {path} differs from the file"
        );
        checked.push(path.to_string());
    }
    for want in [
        "packaging/containerd/config-2.x.toml",
        "packaging/containerd/config-2.x-runc-type.toml",
        "packaging/kubernetes/runtimeclass.yaml",
        "packaging/kubernetes/kubelet-config.yaml",
    ] {
        assert!(
            checked.iter().any(|c| c == want),
            "README.md does not show {want}: {checked:?}"
        );
    }
}

/// Each RuntimeClass in packaging/kubernetes/runtimeclass.yaml names a handler that every
/// shipped containerd config defines; the configs type their handlers as their header says;
/// kubelet's snippet selects the systemd driver.
#[test]
fn shipped_manifests_and_configs_agree() {
    use yaml_rust2::YamlLoader;
    let docs = YamlLoader::load_from_str(&cri::packaging_file("kubernetes/runtimeclass.yaml"))
        .expect("runtimeclass.yaml is YAML");
    let mut handlers = Vec::new();
    for d in &docs {
        assert_eq!(d["apiVersion"].as_str(), Some("node.k8s.io/v1"), "{d:?}");
        assert_eq!(d["kind"].as_str(), Some("RuntimeClass"), "{d:?}");
        assert!(d["metadata"]["name"].as_str().is_some(), "{d:?}");
        handlers.push(d["handler"].as_str().expect("a handler").to_string());
    }
    assert!(handlers.iter().any(|h| h == OUR_HANDLER), "{handlers:?}");

    for (file, version, runc_typed) in [
        ("config-1.x.toml", 2, false),
        ("config-2.x.toml", 3, false),
        ("config-1.x-runc-type.toml", 2, true),
        ("config-2.x-runc-type.toml", 3, true),
    ] {
        let text = cri::packaging_file(&format!("containerd/{file}"));
        let toml: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("{file} is not TOML: {e}"));
        let plugin = cri_table(version)
            .trim_start_matches("plugins.")
            .trim_matches('"')
            .to_string();
        let runtimes = &toml["plugins"][&plugin]["containerd"]["runtimes"];
        for h in &handlers {
            let r = runtimes
                .get(h)
                .unwrap_or_else(|| panic!("{file} has no handler {h:?} for the RuntimeClass"));
            let (ty, path) = (r.get("runtime_type"), r.get("runtime_path"));
            if runc_typed {
                assert_eq!(ty.and_then(|v| v.as_str()), Some(GO_SHIM), "{file} {h}");
                assert_eq!(
                    path.and_then(|v| v.as_str()),
                    Some(INSTALLED_SHIM),
                    "{file} {h}"
                );
            } else {
                assert_eq!(ty.and_then(|v| v.as_str()), Some(RSRUNC), "{file} {h}");
                assert!(path.is_none(), "{file} {h}");
            }
        }
    }

    let kubelet = YamlLoader::load_from_str(&cri::packaging_file("kubernetes/kubelet-config.yaml"))
        .expect("kubelet-config.yaml is YAML");
    assert_eq!(kubelet.len(), 1);
    assert_eq!(
        kubelet[0]["kind"].as_str(),
        Some("KubeletConfiguration"),
        "{kubelet:?}"
    );
    assert_eq!(kubelet[0]["cgroupDriver"].as_str(), Some("systemd"));
}

/// A CRI config, the handlers pods use under it and what must serve them.
struct Plan {
    setup: CriSetup,
    /// The handler for runc and the one for crun.
    handlers: [(String, Oci); 2],
    /// The shim binary that must serve the pods.
    shim: PathBuf,
    /// The runtime type CRI records for the containers.
    runtime_type: &'static str,
}

fn plan(way: Way, flavor: &Flavor) -> Plan {
    let version = flavor.config_version;
    let mut setup = CriSetup::shipped(flavor);
    let ours = testing_ours();
    match way {
        Way::Typed if ours => Plan {
            setup,
            handlers: [
                (OUR_HANDLER.to_string(), Oci::Runc),
                (OUR_CRUN_HANDLER.to_string(), Oci::Crun),
            ],
            shim: shim_binary(),
            runtime_type: RSRUNC,
        },
        Way::Typed => {
            // The Go shim is runc's: its handlers are typed io.containerd.runc.v2, and
            // containerd finds it by that name on its PATH.
            let table = cri_table(version);
            setup.handlers += &format!(
                "\n[{table}.containerd.runtimes.{GO_CRUN_HANDLER}]\n  runtime_type = \"{GO_SHIM}\"\n  [{table}.containerd.runtimes.{GO_CRUN_HANDLER}.options]\n    BinaryName = \"crun\"\n"
            );
            Plan {
                setup,
                handlers: [
                    (GO_HANDLER.to_string(), Oci::Runc),
                    (GO_CRUN_HANDLER.to_string(), Oci::Crun),
                ],
                shim: tool("containerd-shim-runc-v2"),
                runtime_type: GO_SHIM,
            }
        }
        Way::RuncTyped => {
            let shim = if ours {
                shim_binary()
            } else {
                flavor.go_shim()
            };
            let name = if version >= 3 {
                "config-2.x-runc-type.toml"
            } else {
                "config-1.x-runc-type.toml"
            };
            let text = cri::packaging_file(&format!("containerd/{name}"));
            assert_eq!(
                text.matches(INSTALLED_SHIM).count(),
                2,
                "{name}: runtime_path is no longer {INSTALLED_SHIM} in both handlers"
            );
            let text = text.replace(INSTALLED_SHIM, &shim.display().to_string());
            setup.handlers = format!("\n# {name}, runtime_path = the shim under test:\n{text}\n");
            Plan {
                setup,
                handlers: [
                    (OUR_HANDLER.to_string(), Oci::Runc),
                    (OUR_CRUN_HANDLER.to_string(), Oci::Crun),
                ],
                shim,
                runtime_type: GO_SHIM,
            }
        }
    }
}

/// A pod with one container under each handler of `way`, one after the other, then what
/// CRI reports about the handlers.
fn pods(way: Way, flavor: &Flavor, what: &str) {
    let plan = plan(way, flavor);
    let what = format!("{what}, {way:?} handlers, {}", runtime_name());
    let mut c = CriDaemon::start_setup(flavor, &plan.setup);
    let log = |c: &CriDaemon| format!("\n--- containerd.log ---\n{}", c.daemon.log());
    let want_exe = std::fs::canonicalize(&plan.shim).unwrap();
    for (handler, oci) in &plan.handlers {
        let step = |s: &str| format!("{s} (handler {handler})");
        let pod_config = c.pod_config(handler);
        let pod = c
            .cri
            .run_pod_sandbox(&pod_config, handler)
            .unwrap_or_else(|e| panic!("{what}: {}: {e}{}", step("RunPodSandbox"), log(&c)));
        let config = c.container_config("sleeper", &["/bin/sh", "-c", "exec sleep 3600"]);
        let id = c
            .cri
            .create_container(&pod, &config, &pod_config)
            .unwrap_or_else(|e| panic!("{what}: {}: {e}{}", step("CreateContainer"), log(&c)));
        c.cri
            .start_container(&id)
            .unwrap_or_else(|e| panic!("{what}: {}: {e}{}", step("StartContainer"), log(&c)));

        let shims = c.daemon.shim_pids();
        assert_eq!(
            shims.len(),
            1,
            "{what}: {}: {shims:?}{}",
            step("shims"),
            log(&c)
        );
        let exe = std::fs::read_link(format!("/proc/{}/exe", shims[0])).unwrap();
        assert_eq!(exe, want_exe, "{what}: handler {handler}: the serving shim");

        let state = runtime_state(&id);
        assert_eq!(
            state,
            Some(*oci),
            "{what}: handler {handler}: the state of container {id} under {RUNTIME_ROOT} is not {oci:?}'s"
        );

        let r = c
            .cri
            .exec_sync(&id, &["/bin/echo", "hello"], 10)
            .unwrap_or_else(|e| panic!("{what}: {}: {e}{}", step("ExecSync"), log(&c)));
        assert_eq!(
            (String::from_utf8_lossy(&r.stdout).as_ref(), r.exit_code),
            ("hello\n", 0),
            "{what}: handler {handler}: ExecSync: {r:?}"
        );

        let (runtime_type, options) = recorded_runtime(&c, &id);
        eprintln!("{what}: handler {handler}: runtimeType={runtime_type} runtimeOptions={options}");
        assert_eq!(runtime_type, plan.runtime_type, "{what}: handler {handler}");

        if way == Way::RuncTyped {
            // containerd records these containers under the runc name. After a restart it
            // finds their shim again through `shim-binary-path`, which it writes into a
            // bundle when it runs the binary's `start`; a container that containerd 2.x
            // joins to its sandbox's shim without that (a shim that answered protocol
            // version 3, as the Go shim does: a `sandbox` file instead) would be cleaned up
            // after a shim crash by the binary of the runc name. Ours answers version 2.
            for bundle_of in [&pod, &id] {
                let bundle = c.bundle(bundle_of);
                let recorded = std::fs::read_to_string(bundle.join("shim-binary-path"))
                    .ok()
                    .map(PathBuf::from);
                let joined = bundle.join("sandbox").exists();
                assert!(
                    recorded.as_ref() == Some(&plan.shim) || (joined && !testing_ours()),
                    "{what}: handler {handler}: bundle {bundle_of} records shim {recorded:?}"
                );
            }
            c.restart();
            let r = c
                .cri
                .exec_sync(&id, &["/bin/echo", "again"], 10)
                .unwrap_or_else(|e| {
                    panic!(
                        "{what}: {}: {e}{}",
                        step("ExecSync after a restart"),
                        log(&c)
                    )
                });
            assert_eq!(r.stdout, b"again\n", "{what}: handler {handler}: {r:?}");
            assert_eq!(
                c.daemon.shim_pids(),
                shims,
                "{what}: handler {handler}: the shim after a restart"
            );
        }

        c.cri
            .stop_pod_sandbox(&pod)
            .unwrap_or_else(|e| panic!("{what}: {}: {e}{}", step("StopPodSandbox"), log(&c)));
        c.cri
            .remove_pod_sandbox(&pod)
            .unwrap_or_else(|e| panic!("{what}: {}: {e}{}", step("RemovePodSandbox"), log(&c)));
        let left = c.daemon.shims_left();
        assert!(
            left.is_empty(),
            "{what}: handler {handler}: shims left: {left:?}"
        );
    }

    let config = c.cri.runtime_config();
    if flavor.config_version < 3 {
        // containerd 1.x has no RuntimeConfig: kubelet keeps its own cgroupDriver.
        let code = config.as_ref().err().map(|e| e.code());
        assert_eq!(code, Some(tonic::Code::Unimplemented), "{what}: {config:?}");
        return;
    }
    let driver = config
        .unwrap_or_else(|e| panic!("{what}: RuntimeConfig: {e}{}", log(&c)))
        .linux
        .map(|l| l.cgroup_driver);
    eprintln!("{what}: RuntimeConfig reports {}", driver_name(driver));
    introspection(&c, &plan, way, &what);
}

/// CRI 2.x asks each handler's shim for its features at start (`-info`) and reports them to
/// kubelet in Status; containerd 2.1 does so only for handlers typed io.containerd.runc.v2.
fn introspection(c: &CriDaemon, plan: &Plan, way: Way, what: &str) {
    let status = c
        .cri
        .status()
        .unwrap_or_else(|e| panic!("{what}: Status: {e}"));
    let log = c.daemon.log();
    for (handler, oci) in &plan.handlers {
        let features = status
            .runtime_handlers
            .iter()
            .find(|h| &h.name == handler)
            .unwrap_or_else(|| panic!("{what}: Status names no handler {handler}: {status:?}"))
            .features;
        let refused = format!("failed to introspect features of runtime \\\"{handler}\\\"");
        let refusal = log.lines().find(|l| l.contains(&refused));
        eprintln!("{what}: handler {handler}: features {features:?}; {refusal:?}");
        match way {
            Way::Typed if plan.runtime_type == RSRUNC => {
                // What kubelet sees for a typed handler on 2.1: no features, so no pods
                // with their own user namespace (hostUsers: false).
                assert_eq!(features, None, "{what}: handler {handler}");
                assert!(
                    refusal.is_some_and(|l| l.contains("needs the runtime type")),
                    "{what}: handler {handler}: containerd did not say why it has no features"
                );
            }
            // The Go shim found on PATH by name is containerd 1.7's, which has no -info.
            Way::Typed => {}
            Way::RuncTyped => {
                assert_eq!(
                    refusal, None,
                    "{what}: handler {handler}: introspection failed"
                );
                let f = features.unwrap_or_else(|| panic!("{what}: {handler} has no features"));
                // The runtime's own `features` say whether it does idmapped mounts (crun
                // here; runc from 1.2), which CRI needs for user namespaces.
                let want = oci_features(&oci.binary());
                let idmap = want["linux"]["mountExtensions"]["idmap"]["enabled"] == true;
                assert_eq!(
                    f.user_namespaces, idmap,
                    "{what}: handler {handler}: user namespaces"
                );
            }
        }
    }
}

/// The CRI plugin's table that holds `containerd.runtimes` in config version 2 or 3.
fn cri_table(config_version: u8) -> &'static str {
    if config_version >= 3 {
        r#"plugins."io.containerd.cri.v1.runtime""#
    } else {
        r#"plugins."io.containerd.grpc.v1.cri""#
    }
}

/// Which OCI runtime keeps container `id`'s state under [`RUNTIME_ROOT`]: runc writes
/// `state.json`, crun `status`.
fn runtime_state(id: &str) -> Option<Oci> {
    let dir = Path::new(RUNTIME_ROOT).join(id);
    match (dir.join("state.json").exists(), dir.join("status").exists()) {
        (true, false) => Some(Oci::Runc),
        (false, true) => Some(Oci::Crun),
        _ => {
            let entries: Vec<_> = std::fs::read_dir(&dir)
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            eprintln!("{}: {entries:?}", dir.display());
            None
        }
    }
}

/// The runtime type and options CRI recorded for a container (verbose ContainerStatus).
fn recorded_runtime(c: &CriDaemon, id: &str) -> (String, serde_json::Value) {
    let json = c.cri.container_info(id).unwrap_or_default();
    (
        json["runtimeType"].as_str().unwrap_or_default().to_string(),
        json["runtimeOptions"].clone(),
    )
}

fn driver_name(d: Option<i32>) -> &'static str {
    match d.and_then(|d| api::CgroupDriver::try_from(d).ok()) {
        Some(api::CgroupDriver::Systemd) => "systemd",
        Some(api::CgroupDriver::Cgroupfs) => "cgroupfs",
        None => "none",
    }
}

/// A protobuf `Any` as containerd writes it to `-info`'s stdin.
fn any(type_url: &str, value: Vec<u8>) -> Vec<u8> {
    protobuf::well_known_types::any::Any {
        type_url: type_url.to_string(),
        value,
        ..Default::default()
    }
    .write_to_bytes()
    .unwrap()
}

/// `runtimeoptions.v1.Options { config_body }` (field 3, bytes), encoded by hand: the
/// test crate has no generated type for it.
fn runtime_options_toml(body: &str) -> Vec<u8> {
    let mut out = vec![(3 << 3) | 2];
    let mut len = body.len();
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(body.as_bytes());
    out
}

/// Runs `shim -info` with `stdin`; the features JSON of the RuntimeInfo it prints.
fn info_features(shim: &Path, stdin: &[u8]) -> Result<serde_json::Value, String> {
    use std::io::Write;
    let mut child = std::process::Command::new(shim)
        .arg("-info")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("run {} -info: {e}", shim.display()))?;
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(format!(
            "{} -info: {}: {}",
            shim.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let info =
        containerd_shim_protos::types::introspection::RuntimeInfo::parse_from_bytes(&out.stdout)
            .map_err(|e| format!("-info printed no RuntimeInfo: {e}"))?;
    let features = info
        .features
        .into_option()
        .ok_or("-info reported no features")?;
    serde_json::from_slice(&features.value).map_err(|e| format!("features: {e}"))
}

/// `<binary> features`, parsed.
fn oci_features(binary: &str) -> serde_json::Value {
    let out = std::process::Command::new(binary)
        .arg("features")
        .output()
        .unwrap_or_else(|e| panic!("{binary} features: {e}"));
    assert!(out.status.success(), "{binary} features: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}
