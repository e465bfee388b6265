//! A busybox root filesystem built from Debian's busybox-static, once per test process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The shared read-mostly rootfs; containers get it with `ctr run --rootfs`.
pub fn busybox() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rsrunc-rootfs-{}", std::process::id()));
        build(&dir);
        dir
    })
}

pub fn build(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox is not installed: the test command installs busybox-static");
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    let list = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
    // Every mount point of ctr's default spec, so that containers started in parallel on
    // this shared rootfs never race to create one.
    for d in [
        "proc",
        "sys",
        "sys/fs/cgroup",
        "dev",
        "dev/pts",
        "dev/shm",
        "dev/mqueue",
        "run",
        "tmp",
        "etc",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}
