#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Rootfs mounts in the forms containerd's snapshotters emit: an overlay of more layers
//! than fit in a page of mount options, and (driven over ttrpc, where no snapshotter of
//! the tested containerd emits them) `loop` and `Mount.target`.

use rsrunc_e2e::daemon::flavors;
use rsrunc_e2e::{image, runtime_name, unique_id, Daemon};

const LAYERED: &str = "docker.io/library/rsrunc-layered:latest";
const LAYERS: usize = 130;

#[test]
fn an_image_of_130_layers_runs_under_each_containerd() {
    for (version, flavor) in flavors() {
        let d = Daemon::start_flavor(&runtime_name(), &flavor);
        image::import_layered(&d, LAYERED, LAYERS);
        // The overlay's lowerdir alone is longer than a page: every layer is a snapshot
        // directory `<root>/io.containerd.snapshotter.v1.overlayfs/snapshots/<n>/fs`.
        let snapshots = d
            .dir()
            .join("root/io.containerd.snapshotter.v1.overlayfs/snapshots");
        let one = snapshots.join("100/fs").display().to_string().len() + 1;
        assert!(
            one * (LAYERS + 1) > 4096,
            "{} is too short",
            d.dir().display()
        );

        let id = unique_id("layers");
        let script = format!("ls /layers | wc -l; cat /layers/1 /layers/{LAYERS}");
        let out = d.ctr(&[
            "run",
            "--rm",
            "--runtime",
            &runtime_name(),
            LAYERED,
            &id,
            "/bin/sh",
            "-c",
            &script,
        ]);
        assert_eq!(
            (out.status, out.stdout.trim()),
            (0, format!("{LAYERS}\n1\n{LAYERS}").as_str()),
            "containerd {version}: {out:?}"
        );
        assert!(
            d.mounts().is_empty(),
            "containerd {version}: {:?}",
            d.mounts()
        );
    }
}
