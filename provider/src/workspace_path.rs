//! Paths inside a session's `/workspace`, validated before they reach the engine.

use std::fmt;
use std::str::FromStr;

/// Where the workspace is mounted inside every session container.
pub const WORKSPACE_MOUNT: &str = "/workspace";

/// A normalised, workspace-relative path: no absolute paths, no `..`, no empty or
/// `.` components (they are dropped), no NUL or control characters, at most
/// [`WorkspacePath::MAX_LEN`] bytes and [`WorkspacePath::MAX_DEPTH`] components.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkspacePath(String);

/// Why a string is not a [`WorkspacePath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid workspace path `{path}`: {reason}")]
pub struct InvalidPath {
    /// The rejected input (control characters escaped).
    pub path: String,
    /// The rule it broke.
    pub reason: &'static str,
}

impl WorkspacePath {
    /// Longest accepted path, in bytes.
    pub const MAX_LEN: usize = 1024;
    /// Most components.
    pub const MAX_DEPTH: usize = 32;
    /// Longest component, in bytes (the usual `NAME_MAX`).
    pub const MAX_COMPONENT: usize = 255;

    /// Validates and normalises `raw`.
    pub fn new(raw: &str) -> Result<Self, InvalidPath> {
        let fail = |reason| InvalidPath {
            path: raw.escape_debug().to_string(),
            reason,
        };
        if raw.len() > Self::MAX_LEN {
            return Err(fail("too long"));
        }
        if raw.chars().any(char::is_control) {
            return Err(fail("contains a control character"));
        }
        if raw.starts_with('/') {
            return Err(fail(
                "absolute paths are refused; give a path relative to the workspace",
            ));
        }
        let mut parts = Vec::new();
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(fail("`..` is refused")),
                p if p.len() > Self::MAX_COMPONENT => return Err(fail("a component is too long")),
                p => parts.push(p),
            }
        }
        if parts.is_empty() {
            return Err(fail("empty path"));
        }
        if parts.len() > Self::MAX_DEPTH {
            return Err(fail("too deep"));
        }
        Ok(Self(parts.join("/")))
    }

    /// The relative path (`dir/file.txt`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The absolute path inside the container (`/workspace/dir/file.txt`).
    pub fn in_container(&self) -> String {
        format!("{WORKSPACE_MOUNT}/{}", self.0)
    }

    /// `rest` under this directory, within the same limits as any path.
    pub fn join(&self, rest: &WorkspacePath) -> Result<WorkspacePath, InvalidPath> {
        Self::new(&format!("{}/{}", self.0, rest.0))
    }

    /// The parent directory, if the path has one.
    pub fn parent(&self) -> Option<WorkspacePath> {
        self.0.rsplit_once('/').map(|(dir, _)| Self(dir.to_owned()))
    }
}

impl FromStr for WorkspacePath {
    type Err = InvalidPath;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for WorkspacePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkspacePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkspacePath({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn accepted_paths_stay_inside_the_workspace(raw in "\\PC{0,80}") {
            if let Ok(path) = WorkspacePath::new(&raw) {
                prop_assert!(!path.as_str().starts_with('/'));
                prop_assert!(path.as_str().split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
                prop_assert!(path.in_container().starts_with("/workspace/"));
                // Normalising is idempotent.
                prop_assert_eq!(WorkspacePath::new(path.as_str()).unwrap(), path);
            }
        }
    }

    #[test]
    fn paths_are_normalised() {
        assert_eq!(
            WorkspacePath::new("./a//b/./c.txt").unwrap().as_str(),
            "a/b/c.txt"
        );
        assert_eq!(
            WorkspacePath::new("a/b/").unwrap().in_container(),
            "/workspace/a/b"
        );
        assert_eq!(
            WorkspacePath::new("-rf").unwrap().in_container(),
            "/workspace/-rf"
        );
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in [
            "",
            ".",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "a\0b",
            "a\nb",
            "//x",
        ] {
            assert!(WorkspacePath::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(WorkspacePath::new(&"a/".repeat(40)).is_err());
        assert!(WorkspacePath::new(&"x".repeat(300)).is_err());
    }
}
