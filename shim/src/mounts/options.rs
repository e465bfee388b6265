//! containerd's fstab-style mount options, split as containerd's `parseMountOptions` splits
//! them: mount(2) flags, a propagation change, the options the shim acts on itself (`loop`,
//! `uidmap=`, `gidmap=`) and the rest, which is the filesystem's data. Also the overlay
//! `lowerdir` rewriting that keeps a long layer list under the kernel's one-page limit.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

/// The parts of one mount request.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub flags: MsFlags,
    pub propagation: MsFlags,
    /// The filesystem's data, one option per entry, in the request's order.
    pub data: Vec<String>,
    /// `loop`: mount a loop device attached to the source file instead of the file.
    pub loop_device: bool,
    /// `direct-io` together with `loop`: the loop device bypasses the page cache.
    pub direct_io: bool,
    /// `uidmap=` and `gidmap=`: `container-id:host-id:size` ranges, comma-separated.
    pub uidmap: Option<String>,
    pub gidmap: Option<String>,
}

impl Options {
    /// Splits containerd's option strings, as containerd does.
    pub fn parse(options: &[String]) -> Options {
        let mut p = Options {
            flags: MsFlags::empty(),
            propagation: MsFlags::empty(),
            data: Vec::new(),
            loop_device: false,
            direct_io: false,
            uidmap: None,
            gidmap: None,
        };
        for o in options {
            if let Some(f) = propagation(o) {
                p.propagation |= f;
                continue;
            }
            match flag(o) {
                Some((true, f)) => p.flags.remove(f),
                Some((false, f)) => p.flags.insert(f),
                None if o == "loop" => p.loop_device = true,
                None => match (o.strip_prefix("uidmap="), o.strip_prefix("gidmap=")) {
                    (Some(m), _) => p.uidmap = Some(m.to_string()),
                    (_, Some(m)) => p.gidmap = Some(m.to_string()),
                    _ => p.data.push(o.clone()),
                },
            }
        }
        // containerd takes `direct-io` out of the data only for a loop mount.
        if p.loop_device {
            let before = p.data.len();
            p.data.retain(|o| o != "direct-io");
            p.direct_io = p.data.len() != before;
        }
        p
    }
}

/// An overlay's data rewritten to name its layers relative to `dir`: mount(2) then runs
/// with `dir` as its working directory.
#[derive(Debug, PartialEq, Eq)]
pub struct Compacted {
    pub dir: PathBuf,
    pub data: Vec<String>,
}

/// Shortens an overlay's data the way containerd does when it would not fit in a page:
/// the `lowerdir` layers (and `upperdir`, `workdir` when they share it) are named relative
/// to the longest directory that is a parent of every layer. None when there is nothing to
/// gain: fewer than two layers, or no common parent below `/`.
pub fn compact_overlay(data: &[String]) -> Option<Compacted> {
    let idx = data.iter().position(|o| o.starts_with("lowerdir="))?;
    let layers = split_layers(&data[idx]["lowerdir=".len()..]);
    if layers.len() < 2 {
        return None;
    }
    let dir = common_parent(layers.iter().map(|l| Path::new(l.as_str())))?;
    let relative = |p: &str| -> Option<String> {
        let rest = Path::new(p).strip_prefix(&dir).ok()?;
        (!rest.as_os_str().is_empty()).then(|| rest.display().to_string())
    };
    let lowers = layers
        .iter()
        .map(|l| relative(l))
        .collect::<Option<Vec<_>>>()?;
    let mut out = data.to_vec();
    out[idx] = format!("lowerdir={}", join_layers(&lowers));
    for o in out.iter_mut() {
        for key in ["upperdir=", "workdir="] {
            if let Some(rel) = o.strip_prefix(key).and_then(relative) {
                *o = format!("{key}{rel}");
            }
        }
    }
    Some(Compacted { dir, data: out })
}

/// The longest absolute directory, other than `/`, that is a proper parent of every path.
pub fn common_parent<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Option<PathBuf> {
    let mut common: Option<PathBuf> = None;
    for p in paths {
        if !p.is_absolute() {
            return None;
        }
        let parent = p.parent()?;
        common = Some(match common {
            None => parent.to_path_buf(),
            Some(c) => c
                .components()
                .zip(parent.components())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect(),
        });
    }
    common.filter(|c| c.parent().is_some())
}

/// An overlay layer list split at its unescaped colons (`\:` is a colon in a name).
pub fn split_layers(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut layer = String::new();
    let mut escaped = false;
    for c in list.chars() {
        match c {
            ':' if !escaped => out.push(std::mem::take(&mut layer)),
            _ => layer.push(c),
        }
        escaped = c == '\\' && !escaped;
    }
    out.push(layer);
    out
}

fn join_layers(layers: &[String]) -> String {
    layers.join(":")
}

/// (clears, flag) for a known flag option.
fn flag(o: &str) -> Option<(bool, MsFlags)> {
    Some(match o {
        "async" => (true, MsFlags::MS_SYNCHRONOUS),
        "atime" => (true, MsFlags::MS_NOATIME),
        "bind" => (false, MsFlags::MS_BIND),
        "defaults" => (false, MsFlags::empty()),
        "dev" => (true, MsFlags::MS_NODEV),
        "diratime" => (true, MsFlags::MS_NODIRATIME),
        "dirsync" => (false, MsFlags::MS_DIRSYNC),
        "exec" => (true, MsFlags::MS_NOEXEC),
        "mand" => (false, MsFlags::MS_MANDLOCK),
        "noatime" => (false, MsFlags::MS_NOATIME),
        "nodev" => (false, MsFlags::MS_NODEV),
        "nodiratime" => (false, MsFlags::MS_NODIRATIME),
        "noexec" => (false, MsFlags::MS_NOEXEC),
        "nomand" => (true, MsFlags::MS_MANDLOCK),
        "norelatime" => (true, MsFlags::MS_RELATIME),
        "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
        "nosuid" => (false, MsFlags::MS_NOSUID),
        "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
        "relatime" => (false, MsFlags::MS_RELATIME),
        "remount" => (false, MsFlags::MS_REMOUNT),
        "ro" => (false, MsFlags::MS_RDONLY),
        "rw" => (true, MsFlags::MS_RDONLY),
        "strictatime" => (false, MsFlags::MS_STRICTATIME),
        "suid" => (true, MsFlags::MS_NOSUID),
        "sync" => (false, MsFlags::MS_SYNCHRONOUS),
        _ => return None,
    })
}

fn propagation(o: &str) -> Option<MsFlags> {
    Some(match o {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlay_options_are_data() {
        let p = Options::parse(&opts(&[
            "index=off",
            "workdir=/w",
            "upperdir=/u",
            "lowerdir=/l1:/l2",
        ]));
        assert_eq!(p.flags, MsFlags::empty());
        assert_eq!(
            p.data.join(","),
            "index=off,workdir=/w,upperdir=/u,lowerdir=/l1:/l2"
        );
    }

    #[test]
    fn flags_set_and_clear_in_order() {
        let p = Options::parse(&opts(&["rbind", "ro", "nosuid", "rw", "rprivate"]));
        assert_eq!(
            p.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID
        );
        assert_eq!(p.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert!(p.data.is_empty());
    }

    #[test]
    fn loop_uidmap_and_gidmap_are_not_data() {
        let p = Options::parse(&opts(&[
            "ro",
            "loop",
            "direct-io",
            "uidmap=0:1000:65536",
            "gidmap=0:2000:65536,65536:0:1",
            "errors=remount-ro",
        ]));
        assert!(p.loop_device && p.direct_io);
        assert_eq!(p.uidmap.as_deref(), Some("0:1000:65536"));
        assert_eq!(p.gidmap.as_deref(), Some("0:2000:65536,65536:0:1"));
        assert_eq!(p.data, ["errors=remount-ro"]);
        assert_eq!(p.flags, MsFlags::MS_RDONLY);
        // Without loop, direct-io is the filesystem's.
        let p = Options::parse(&opts(&["direct-io"]));
        assert!(!p.direct_io);
        assert_eq!(p.data, ["direct-io"]);
    }

    #[test]
    fn common_parent_is_component_wise() {
        let paths = [
            "/s/snapshots/1/fs",
            "/s/snapshots/12/fs",
            "/s/snapshots/2/fs",
        ];
        let got = common_parent(paths.iter().map(Path::new));
        assert_eq!(got.as_deref(), Some(Path::new("/s/snapshots")));
        // A string prefix is not a directory: "/s/snap" is no parent of "/s/snapA".
        let paths = ["/s/snapA/x", "/s/snapB/y"];
        let got = common_parent(paths.iter().map(Path::new));
        assert_eq!(got.as_deref(), Some(Path::new("/s")));
        // The same layer twice: its parent.
        let paths = ["/s/1/fs", "/s/1/fs"];
        let got = common_parent(paths.iter().map(Path::new));
        assert_eq!(got.as_deref(), Some(Path::new("/s/1")));
        // Nothing shared but the root, or relative paths: no parent to use.
        assert_eq!(common_parent(["/a/x", "/b/y"].map(Path::new)), None);
        assert_eq!(common_parent(["a/x", "a/y"].map(Path::new)), None);
    }

    #[test]
    fn a_long_lowerdir_is_made_relative() {
        let root = "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots";
        let lowers: Vec<String> = (1..=3).map(|i| format!("{root}/{i}/fs")).collect();
        let data = opts(&[
            "index=off",
            &format!("workdir={root}/9/work"),
            &format!("upperdir={root}/9/fs"),
            &format!("lowerdir={}", lowers.join(":")),
            "userxattr",
        ]);
        let c = compact_overlay(&data).unwrap();
        assert_eq!(c.dir, Path::new(root));
        assert_eq!(
            c.data,
            [
                "index=off",
                "workdir=9/work",
                "upperdir=9/fs",
                "lowerdir=1/fs:2/fs:3/fs",
                "userxattr"
            ]
        );
    }

    #[test]
    fn an_upperdir_elsewhere_stays_absolute() {
        let data = opts(&["upperdir=/other/u", "lowerdir=/s/1/fs:/s/2/fs"]);
        let c = compact_overlay(&data).unwrap();
        assert_eq!(c.dir, Path::new("/s"));
        assert_eq!(c.data, ["upperdir=/other/u", "lowerdir=1/fs:2/fs"]);
    }

    #[test]
    fn nothing_to_compact() {
        assert_eq!(compact_overlay(&opts(&["lowerdir=/s/1/fs"])), None);
        assert_eq!(compact_overlay(&opts(&["upperdir=/s/1/fs"])), None);
        assert_eq!(compact_overlay(&opts(&["lowerdir=/a/fs:/b/fs"])), None);
    }

    #[test]
    fn escaped_colons_stay_in_a_layer() {
        assert_eq!(split_layers(r"/s/a\:b/fs:/s/c"), [r"/s/a\:b/fs", "/s/c"]);
        let c = compact_overlay(&opts(&[r"lowerdir=/s/a\:b/fs:/s/c/fs"])).unwrap();
        assert_eq!(c.data, [r"lowerdir=a\:b/fs:c/fs"]);
    }
}
