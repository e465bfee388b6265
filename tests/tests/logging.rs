#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! `ctr run --log-uri`: `file://` and `binary://` logging, under runc and crun; and, over
//! the shim protocol, what ctr cannot send: `binary://` with a terminal (containerd's
//! `cio.TerminalBinaryIO`, what nerdctl's `-t -d` uses) and containerd 2.3's `binary-v2://`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_shim_protos::api::{CreateTaskRequest, CreateTaskResponse};
use rsrunc_e2e::shim_client::ShimConn;
use rsrunc_e2e::{poll_until, unique_id, Daemon, Oci};

/// A logging program as containerd documents them: stdout on fd 3, stderr on fd 4, fd 5
/// closed once ready. It records both streams and its environment next to `$2`.
const LOGGER: &str = r#"#!/bin/sh
out="$2"
/bin/cat <&3 5>&- > "$out.stdout" &
/bin/cat <&4 5>&- > "$out.stderr" &
echo "$CONTAINER_ID $CONTAINER_NAMESPACE $1" > "$out.env"
exec 5>&-
wait
"#;

/// The file's text once it contains `want`, or after 10 s whatever it has.
fn wait_for_content(p: &Path, want: &str) -> String {
    let mut got = String::new();
    poll_until(Duration::from_secs(10), || {
        got = std::fs::read_to_string(p).unwrap_or_default();
        got.contains(want)
    });
    got
}

#[test]
fn binary_logger_gets_both_streams_and_its_environment() {
    let d = Daemon::start();
    let logger = d.dir().join("logger.sh");
    std::fs::write(&logger, LOGGER).unwrap();
    std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for oci in Oci::ALL {
        let id = unique_id("binlog");
        let base = d.dir().join(&id);
        let uri = format!("binary://{}?out={}", logger.display(), base.display());
        let out = d.run(
            oci,
            &["--rm", "--log-uri", &uri],
            &id,
            &[
                "/bin/sh",
                "-c",
                "echo to-stdout; echo to-stderr >&2; exit 6",
            ],
        );
        assert_eq!(out.status, 6, "{oci:?}: {out:?}");
        let path = |ext: &str| base.with_extension(ext);
        assert_eq!(
            wait_for_content(&path("stdout"), "to-stdout"),
            "to-stdout\n",
            "{oci:?}"
        );
        assert_eq!(
            wait_for_content(&path("stderr"), "to-stderr"),
            "to-stderr\n",
            "{oci:?}"
        );
        let env = wait_for_content(&path("env"), &id);
        assert_eq!(env.trim(), format!("{id} {} out", d.namespace), "{oci:?}");
    }
}

#[test]
fn file_log_uri_appends() {
    file_log_appends(Oci::Runc);
}

/// containerd 1.7's Go shim loses the stderr of a crun container logging to a file (seen
/// here: "two" never arrives); rsrunc delivers both under both runtimes.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: file:// logging with crun (the Go shim loses its stderr)"
)]
fn file_log_uri_appends_under_crun() {
    rsrunc_e2e::ours_only();
    file_log_appends(Oci::Crun);
}

fn file_log_appends(oci: Oci) {
    let d = Daemon::start();
    let log = d.dir().join(format!("{}.log", unique_id("file")));
    std::fs::write(&log, "earlier line\n").unwrap();
    let uri = format!("file://{}", log.display());
    let id = unique_id("filelog");
    let out = d.run(
        oci,
        &["--rm", "--log-uri", &uri],
        &id,
        &["/bin/sh", "-c", "echo one; echo two >&2"],
    );
    assert_eq!(out.status, 0, "{oci:?}: {out:?}");
    let text = wait_for_content(&log, "two");
    assert!(text.starts_with("earlier line\n"), "{oci:?}: {text:?}");
    assert!(
        text.contains("one\n") && text.contains("two\n"),
        "{oci:?}: {text:?}"
    );
}

/// [`LOGGER`] as a `binary-v2://` logger: it writes a byte to fd 5 before closing it.
fn logger_v2() -> String {
    LOGGER.replace("exec 5>&-", "printf x >&5; exec 5>&-")
}

/// Writes `script` as an executable file `name` in the daemon's directory.
fn install(d: &Daemon, name: &str, script: &str) -> PathBuf {
    let path = d.dir().join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// Runs `sh -c script` as container `id` on a shim of its own, as containerd does with
/// stdout and stderr both `uri` (what `cio.BinaryIO` and `cio.TerminalBinaryIO` send),
/// with a terminal if `terminal`: Create, Start, Wait, Delete. The exit status, or the
/// error Create answered.
fn run_on_shim(
    d: &Daemon,
    id: &str,
    uri: &str,
    terminal: bool,
    script: &str,
) -> Result<u32, String> {
    let bundle = d.dir().join("bundles").join(id);
    d.write_bundle(
        &bundle,
        rsrunc_e2e::rootfs::busybox(),
        &["/bin/sh", "-c", script],
        &format!("/{}/{id}", d.namespace),
    );
    let mut spec = rsrunc_e2e::bundle_spec(&bundle);
    if let Some(p) = spec.process_mut().as_mut() {
        p.set_terminal(Some(terminal));
    }
    spec.save(bundle.join("config.json")).unwrap();
    let conn = ShimConn::start(d, &ShimConn::binary_for(d), &bundle, id);
    let create: Result<CreateTaskResponse, _> = conn.call(
        "Create",
        &CreateTaskRequest {
            id: id.into(),
            bundle: bundle.display().to_string(),
            terminal,
            stdout: uri.into(),
            stderr: uri.into(),
            ..Default::default()
        },
    );
    if let Err((code, msg)) = create {
        conn.shutdown();
        return Err(format!("{code:?}: {msg}"));
    }
    conn.start_process(id, "").unwrap();
    let (status, _) = conn.wait_and_delete(id, "");
    conn.shutdown();
    Ok(status)
}

/// What a container printed on its terminal reaches a `binary://` logger on fd 3 (its
/// stderr, merged into the terminal, leaves fd 4 empty). ctr sends no log URI with `-t`;
/// containerd's Go client does (`cio.TerminalBinaryIO`), so this goes over the protocol.
#[test]
fn binary_logger_with_a_terminal_gets_the_terminal_output() {
    let d = Daemon::start();
    let logger = install(&d, "logger.sh", LOGGER);
    let id = unique_id("ttylog");
    let base = d.dir().join(&id);
    let uri = format!("binary://{}?out={}", logger.display(), base.display());
    let script = "test -t 1 && echo on-a-terminal; echo to-stderr >&2; exit 5";
    assert_eq!(run_on_shim(&d, &id, &uri, true, script), Ok(5));
    let path = |ext: &str| base.with_extension(ext);
    let out = wait_for_content(&path("stdout"), "to-stderr");
    assert_eq!(out, "on-a-terminal\r\nto-stderr\r\n");
    assert_eq!(std::fs::read_to_string(path("stderr")).unwrap(), "");
    let env = wait_for_content(&path("env"), &id);
    assert_eq!(env.trim(), format!("{id} {} out", d.namespace));
}

/// containerd 2.3's `binary-v2://`: the logger writes a byte to fd 5 to say it is ready,
/// with pipes and with a terminal; one that closes fd 5 without it (it crashed) fails the
/// Create, naming the handshake. The Go shims here (containerd 1.7 and 2.1.9) predate the
/// scheme ("unknown STDIO scheme binary-v2"); containerd 2.3's has it.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: binary-v2:// logging, which the Go shims of containerd 1.7 and 2.1 lack"
)]
fn binary_v2_logger_signals_ready_with_a_byte() {
    rsrunc_e2e::ours_only();
    let d = Daemon::start();
    let logger = install(&d, "logger-v2.sh", &logger_v2());
    for terminal in [false, true] {
        let id = unique_id("v2log");
        let base = d.dir().join(&id);
        let uri = format!("binary-v2://{}?out={}", logger.display(), base.display());
        let script = "echo to-stdout; echo to-stderr >&2; exit 6";
        assert_eq!(run_on_shim(&d, &id, &uri, terminal, script), Ok(6));
        let (out, err) = (base.with_extension("stdout"), base.with_extension("stderr"));
        if terminal {
            assert_eq!(
                wait_for_content(&out, "to-stderr"),
                "to-stdout\r\nto-stderr\r\n"
            );
        } else {
            assert_eq!(wait_for_content(&out, "to-stdout"), "to-stdout\n");
            assert_eq!(wait_for_content(&err, "to-stderr"), "to-stderr\n");
        }
    }
    // Closes fd 5 at once, without the byte.
    let quiet = install(&d, "quiet.sh", "#!/bin/sh\nexec 5>&-\nexec sleep 30\n");
    for terminal in [false, true] {
        let id = unique_id("v2quiet");
        let uri = format!("binary-v2://{}", quiet.display());
        let err = run_on_shim(&d, &id, &uri, terminal, "true").unwrap_err();
        assert!(err.contains("without writing a byte"), "{err}");
        assert!(err.contains("quiet.sh"), "{err}");
    }
}

/// A terminal's output logged to a `file://`: containerd's Go shim takes the URI for a fifo
/// path with a terminal and fails the Create ("failed to start console copy: stat
/// file:///..."); rsrunc appends to the file.
#[test]
#[cfg_attr(
    go_shim,
    ignore = "rsrunc only: file:// logging with a terminal (the Go shim fails the Create)"
)]
fn file_log_with_a_terminal_appends() {
    rsrunc_e2e::ours_only();
    let d = Daemon::start();
    let log = d.dir().join("tty.log");
    std::fs::write(&log, "earlier line\n").unwrap();
    let uri = format!("file://{}", log.display());
    let id = unique_id("ttyfile");
    let script = "test -t 1 && echo on-a-terminal";
    assert_eq!(run_on_shim(&d, &id, &uri, true, script), Ok(0));
    assert_eq!(
        wait_for_content(&log, "on-a-terminal"),
        "earlier line\non-a-terminal\r\n"
    );
}
