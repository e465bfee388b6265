//! A container image built locally (no registry): the busybox rootfs as one layer in an
//! OCI image layout, imported with `ctr images import`, so `ctr run IMAGE` uses
//! snapshots as users' containers do.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{rootfs, Daemon};

pub const IMAGE: &str = "docker.io/library/rsrunc-busybox:latest";

/// Builds the image and imports it into `d`'s namespace.
pub fn import_busybox(d: &Daemon) {
    import(d, IMAGE, &[rootfs::busybox().to_path_buf()]);
}

/// Imports `name`: busybox with `n` more layers on top, layer `i` (1..=n) adding the file
/// `/layers/i` that holds `i`. An image of more than a hundred layers gives an overlay
/// whose layer list is longer than a page.
pub fn import_layered(d: &Daemon, name: &str, n: usize) {
    let src = d.dir().join("layer-sources");
    let mut dirs = vec![rootfs::busybox().to_path_buf()];
    for i in 1..=n {
        let dir = src.join(i.to_string());
        std::fs::create_dir_all(dir.join("layers")).unwrap();
        std::fs::write(dir.join(format!("layers/{i}")), format!("{i}\n")).unwrap();
        dirs.push(dir);
    }
    import(d, name, &dirs);
    std::fs::remove_dir_all(&src).unwrap();
}

/// Builds an OCI image layout of one layer per directory, in order, and imports it as
/// `name` into `d`'s namespace.
pub fn import(d: &Daemon, name: &str, layer_dirs: &[PathBuf]) {
    let layout = tempfile::tempdir_in(d.dir()).unwrap();
    let layout = layout.path();
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer_tar = layout.join("layer.tar");
    let layers: Vec<Blob> = layer_dirs
        .iter()
        .map(|dir| put_layer(&blobs, dir, &layer_tar))
        .collect();
    std::fs::remove_file(&layer_tar).unwrap();
    let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let manifest = put_manifest(
        &blobs,
        serde_json::json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]}),
        &layers,
        serde_json::json!({"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag}),
    );
    let archive = d.dir().join("image.tar");
    archive_layout(layout, vec![manifest], &archive);
    let archive_arg = archive.display().to_string();
    d.ctr(&["images", "import", &archive_arg]).ok();
    std::fs::remove_file(&archive).unwrap();
}

/// A blob of an image layout: its sha256 digest (hex) and its size.
pub(crate) type Blob = (String, usize);

/// Writes `dir`'s files, owned by root, as a layer into the blob directory `blobs`, through
/// the tar file `tar` (left in place).
pub(crate) fn put_layer(blobs: &Path, dir: &Path, tar: &Path) -> Blob {
    run(Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--owner=0", "--group=0", "-cf"])
        .arg(tar)
        .arg("."));
    let layer = std::fs::read(tar).unwrap();
    (put(blobs, &layer), layer.len())
}

/// Writes an amd64 image config (`config` its runtime part: Cmd, Env, ...) over `layers`
/// and its manifest into `blobs`; returns the manifest's entry for the layout's index,
/// with `annotations` (the image's name).
pub(crate) fn put_manifest(
    blobs: &Path,
    config: serde_json::Value,
    layers: &[Blob],
    annotations: serde_json::Value,
) -> serde_json::Value {
    let diff_ids: Vec<String> = layers.iter().map(|(d, _)| format!("sha256:{d}")).collect();
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(digest, size)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{digest}"), "size": size}))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = put(blobs, &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_digest}"), "size": config.len()},
        "layers": layers,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = put(blobs, &manifest);
    serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{manifest_digest}"),
        "size": manifest.len(),
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": annotations,
    })
}

/// Writes the layout's index of `manifests` and its `oci-layout` file, and archives the
/// layout into `archive` for `ctr images import`.
pub(crate) fn archive_layout(layout: &Path, manifests: Vec<serde_json::Value>, archive: &Path) {
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(layout)
        .arg("-cf")
        .arg(archive)
        .arg("."));
}

/// Writes `data` into the blob directory `dir` under its sha256 digest: the digest.
fn put(dir: &Path, data: &[u8]) -> String {
    let digest: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(dir.join(&digest), data).unwrap();
    digest
}

/// Runs `cmd`; panics unless it exits 0.
fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap();
    assert!(st.success(), "{cmd:?} failed: {st}");
}
