//! A container image built locally (no registry): the busybox rootfs as one layer in an
//! OCI image layout, imported with `ctr images import`, so `ctr run IMAGE` uses
//! snapshots as users' containers do.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{rootfs, Daemon};

pub const IMAGE: &str = "docker.io/library/rsrunc-busybox:latest";

/// Builds the image and imports it into `d`'s namespace.
pub fn import_busybox(d: &Daemon) {
    let layout = d.dir().join("image");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer_tar = d.dir().join("layer.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(rootfs::busybox())
        .args(["--owner=0", "--group=0", "-cf"])
        .arg(&layer_tar)
        .arg("."));
    let layer = std::fs::read(&layer_tar).unwrap();
    let layer_digest = put(&blobs, &layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = put(&blobs, &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_digest}"), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer_digest}"), "size": layer.len()}],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = put(&blobs, &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "latest"},
        }],
    });
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
    let archive = d.dir().join("image.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    let archive = archive.display().to_string();
    d.ctr(&["images", "import", &archive]).ok();
}

fn put(dir: &Path, data: &[u8]) -> String {
    let digest: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(dir.join(&digest), data).unwrap();
    digest
}

fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap();
    assert!(st.success(), "{cmd:?} failed: {st}");
}
