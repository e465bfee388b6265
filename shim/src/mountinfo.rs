//! `/proc/<pid>/mountinfo`, read by the rootfs clean-up (which mount points are under the
//! rootfs) and by cgroup discovery (where each cgroup hierarchy is mounted).

use std::io;
use std::path::PathBuf;

/// One line of mountinfo, the fields the shim uses, unescaped:
/// `36 25 0:32 /docker /sys/fs/cgroup/memory rw,nosuid shared:16 - cgroup cgroup rw,memory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The directory of the mounted filesystem shown at the mount point (for a cgroup
    /// filesystem, a cgroup path): "/docker".
    pub root: String,
    /// Where it is mounted: "/sys/fs/cgroup/memory".
    pub mount_point: PathBuf,
    /// "cgroup".
    pub fs_type: String,
    /// The filesystem's own options: "rw,memory".
    pub super_options: String,
}

/// The text of /proc/self/mountinfo.
pub fn read_self() -> io::Result<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| io::Error::new(e.kind(), format!("read /proc/self/mountinfo: {e}")))
}

/// The mounts of a mountinfo text, in its order; malformed lines are skipped.
pub fn parse(text: &str) -> impl Iterator<Item = MountInfo> + '_ {
    text.lines().filter_map(MountInfo::parse)
}

impl MountInfo {
    /// One line; None when it is malformed.
    pub fn parse(line: &str) -> Option<MountInfo> {
        // Fields before " - ": id, parent id, major:minor, root, mount point, options, then
        // optional fields; after it: filesystem type, source, super options.
        let (before, after) = line.split_once(" - ")?;
        let mut before = before.split(' ');
        let root = unescape(before.nth(3)?);
        let mount_point = PathBuf::from(unescape(before.next()?));
        let mut after = after.split(' ');
        let fs_type = unescape(after.next()?);
        let super_options = unescape(after.nth(1)?);
        Some(MountInfo {
            root,
            mount_point,
            fs_type,
            super_options,
        })
    }
}

/// mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], octal) {
            let v =
                u32::from(d[0] - b'0') * 64 + u32::from(d[1] - b'0') * 8 + u32::from(d[2] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_line_with_optional_fields() {
        let m = MountInfo::parse(
            "36 25 0:32 /docker /sys/fs/cgroup/memory rw,nosuid shared:16 master:2 - cgroup cgroup rw,memory",
        )
        .unwrap();
        assert_eq!(
            m,
            MountInfo {
                root: "/docker".into(),
                mount_point: "/sys/fs/cgroup/memory".into(),
                fs_type: "cgroup".into(),
                super_options: "rw,memory".into(),
            }
        );
    }

    #[test]
    fn escapes_and_malformed_lines() {
        let text = "41 28 0:38 / /mnt/with\\040space rw,relatime - tmpfs tmpfs rw\n\
                    1 2 3\n\
                    42 28 0:39 /a\\134b /run/x rw - tmpfs\n\
                    43 28 0:40 / /run/tab\\011dir rw - tmpfs none rw\n";
        let points: Vec<PathBuf> = parse(text).map(|m| m.mount_point).collect();
        assert_eq!(
            points,
            [Path::new("/mnt/with space"), Path::new("/run/tab\tdir")]
        );
        assert_eq!(unescape("a\\134b\\0"), "a\\b\\0");
    }

    #[test]
    fn this_process_has_a_root_mount() {
        let text = read_self().unwrap();
        assert!(parse(&text).any(|m| m.mount_point == Path::new("/")));
    }
}
