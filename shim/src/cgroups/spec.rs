//! Where a container's cgroups are when no process of it can be asked (it has died, or the
//! shim that knew it has): from its spec's `cgroupsPath`, as the runtime placed it, for
//! removing what a runtime that hangs left behind.

use std::io;
use std::path::Path;

use super::Cgroups;
use crate::options::is_systemd_cgroups_path;

impl Cgroups {
    /// The cgroups of container `id`, whose spec's `linux.cgroupsPath` is `cgroups_path`:
    /// - an absolute path (the cgroupfs driver) is that path in every hierarchy;
    /// - `slice:prefix:name` (the systemd driver) is the unit's cgroup,
    ///   `<slice, expanded>/<prefix>-<name>.scope` (`<name>` itself for a slice), the slice
    ///   `system.slice` when none is named;
    /// - a relative path or none leaves the place to the runtime (runc takes it from its
    ///   own cgroup on v1 and from its parent on v2; each runtime has its own default
    ///   name): then they are the cgroups of the container's init `init`, if it is alive
    ///   and in a cgroup of that name (ending with the relative path; with none, naming
    ///   the container), which tells it from a process that took over its pid.
    pub fn of_container(
        id: &str,
        cgroups_path: Option<&str>,
        init: Option<i32>,
    ) -> io::Result<Cgroups> {
        let path = cgroups_path.unwrap_or_default();
        if let Some(dir) = spec_dir(path) {
            return Cgroups::at_path(&dir);
        }
        let unknown = |why: String| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("find the cgroups of {id}: {why}"),
            )
        };
        let what = if path.is_empty() {
            "its spec names no cgroupsPath".to_string()
        } else {
            format!("its cgroupsPath {path:?} leaves the place to the runtime")
        };
        let pid = init.ok_or_else(|| unknown(format!("{what}, and its init's pid is unknown")))?;
        let cg = Cgroups::of_pid(pid)
            .map_err(|e| unknown(format!("{what}, and its init {pid} is gone ({e})")))?;
        let named = |dir: &Path| match path {
            "" => dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains(id)),
            p => dir.ends_with(p.trim_start_matches('/')),
        };
        if !super::teardown::all_dirs(&cg).iter().any(|d| named(d)) {
            return Err(unknown(format!(
                "{what}, and pid {pid} is in no cgroup of that name: not its init"
            )));
        }
        Ok(cg)
    }
}

/// The cgroup (from each hierarchy's root) that `cgroups_path` names by itself: an
/// absolute path as it is, systemd's `slice:prefix:name` as runc, crun and youki place it.
fn spec_dir(cgroups_path: &str) -> Option<String> {
    if cgroups_path.starts_with('/') {
        return Some(cgroups_path.to_string());
    }
    if !is_systemd_cgroups_path(cgroups_path) {
        return None;
    }
    let mut parts = cgroups_path.splitn(3, ':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        // runc and crun differ on the name of a scope without a prefix.
        return None;
    } else {
        format!("{prefix}-{name}.scope")
    };
    let slice = expand_slice(if slice.is_empty() {
        "system.slice"
    } else {
        slice
    })?;
    Some(format!("{slice}/{unit}"))
}

/// A systemd slice's cgroup: each dash a level, `a-b.slice` in `/a.slice/a-b.slice`; the
/// root slice `-.slice` is the root. None for a name systemd would refuse.
fn expand_slice(slice: &str) -> Option<String> {
    let name = slice.strip_suffix(".slice")?;
    if name == "-" {
        return Some(String::new());
    }
    if name.is_empty() || name.contains('/') || name.split('-').any(str::is_empty) {
        return None;
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in name.split('-') {
        prefix.push_str(part);
        path.push_str(&format!("/{prefix}.slice"));
        prefix.push('-');
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_of_cgroups_path() {
        assert_eq!(spec_dir("/k8s/pod1/c1").as_deref(), Some("/k8s/pod1/c1"));
        assert_eq!(
            spec_dir("system.slice:docker:abc").as_deref(),
            Some("/system.slice/docker-abc.scope")
        );
        assert_eq!(
            spec_dir("kubepods-burstable-pod1.slice:cri-containerd:abc").as_deref(),
            Some("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope")
        );
        assert_eq!(
            spec_dir(":ctr:abc").as_deref(),
            Some("/system.slice/ctr-abc.scope")
        );
        assert_eq!(spec_dir("-.slice:p:c.slice").as_deref(), Some("/c.slice"));
        // Left to the runtime.
        assert_eq!(spec_dir(""), None);
        assert_eq!(spec_dir("ns/c1"), None);
        assert_eq!(spec_dir("system.slice::abc"), None);
        assert_eq!(expand_slice("a--b.slice"), None);
        assert_eq!(expand_slice("a.scope"), None);
    }

    #[test]
    fn a_relative_path_is_taken_from_the_init_only_if_it_is_in_it() {
        let me = std::process::id() as i32;
        let own = Cgroups::of_pid(me).unwrap();
        let dirs = super::super::teardown::all_dirs(&own);
        // The name of this process's own cgroup, as if it were the container's.
        let Some(leaf) = dirs
            .iter()
            .filter_map(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .find(|n| !n.is_empty())
        else {
            return; // in every hierarchy's root: no name to look for
        };
        let found = Cgroups::of_container("c1", Some(&leaf), Some(me)).unwrap();
        assert_eq!(found, own);
        let e = Cgroups::of_container("c1", Some("no/such/name"), Some(me)).unwrap_err();
        assert!(e.to_string().contains("not its init"), "{e}");
        let e = Cgroups::of_container("c1", None, None).unwrap_err();
        assert!(e.to_string().contains("find the cgroups of c1"), "{e}");
    }
}
