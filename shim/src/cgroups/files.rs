//! Reading cgroup files: missing files are None, other failures name the file, numbers
//! parse leniently.

use std::collections::HashMap;
use std::io;
use std::path::Path;

/// The page sizes ("2MB", "1GB") of the `hugetlb.<size><suffix>` files in `dir`, sorted.
pub(super) fn hugepage_sizes(dir: &Path, suffix: &str) -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("list {}: {e}", dir.display()),
            ))
        }
    };
    let mut sizes: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            // "hugetlb.2MB.rsvd.usage_in_bytes" counts reservations, not usage.
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    Ok(sizes)
}

/// An error naming `dir` when the cgroup is gone (typically: the container exited).
pub(super) fn must_exist(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("read cgroup {}: no such directory", dir.display()),
    ))
}

/// The content of `dir`/`name`, None when the file does not exist.
pub(super) fn read(dir: &Path, name: &str) -> io::Result<Option<String>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("read {}: {e}", path.display()),
        )),
    }
}

/// A file holding one number, or "max" (read as `max`). None when the file does not exist
/// or does not hold a number.
pub(super) fn uint(dir: &Path, name: &str, max: u64) -> io::Result<Option<u64>> {
    Ok(read(dir, name)?.and_then(|s| match s.trim() {
        "max" => Some(max),
        n => parse_u64(n),
    }))
}

/// "key value" lines; lines of another shape are skipped.
pub(super) fn kv(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (k, v) = (f.next()?, f.next()?);
            f.next().is_none().then_some((k, parse_u64(v)?))
        })
        .collect()
}

/// A decimal number; a negative one (some v1 files say -1 for "none") reads as 0.
pub(super) fn parse_u64(s: &str) -> Option<u64> {
    s.parse::<u64>().ok().or_else(|| {
        let digits = s.strip_prefix('-')?;
        (!digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())).then_some(0)
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Creates `dir` with the given files.
    pub(in crate::cgroups) fn write(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
    }

    #[test]
    fn numbers_parse_leniently() {
        assert_eq!(parse_u64("-1"), Some(0));
        assert_eq!(parse_u64("-"), None);
        assert_eq!(parse_u64("12a"), None);
        let m = kv("a 1\nb -1\nc\nd 1 2\ne x\n");
        assert_eq!(m, HashMap::from([("a", 1), ("b", 0)]));
    }

    #[test]
    fn a_missing_file_is_none_a_missing_number_too() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("a", "max\n"), ("b", "x\n")]);
        assert_eq!(read(dir.path(), "none").unwrap(), None);
        assert_eq!(uint(dir.path(), "a", 7).unwrap(), Some(7));
        assert_eq!(uint(dir.path(), "b", 7).unwrap(), None);
        let e = must_exist(&dir.path().join("gone")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
