//! Metering from the container's cgroup, read on the host's cgroup filesystem.
//!
//! The provider runs beside the engine (it needs the engine's unix socket), so it reads
//! the cgroup files of the container's init process directly: they are exact, cost a
//! few microseconds, and — unlike the engine's stats API — the v1 peak can be reset
//! before each call. Paths come from `/proc/<pid>/cgroup`, so they hold for the
//! `cgroupfs` and `systemd` drivers alike.
//!
//! | what | cgroup v1 | cgroup v2 |
//! |---|---|---|
//! | CPU | `cpuacct.usage` (ns) | `cpu.stat` `usage_usec` |
//! | peak memory | `memory.max_usage_in_bytes` (reset per call) | `memory.peak` (since the container started) |
//! | OOM kills | `memory.oom_control` `oom_kill` | `memory.events` `oom_kill` |
//! | processes | `cgroup.procs` | `cgroup.procs` |
//! | freezing | `freezer.state` | `cgroup.freeze` |
//!
//! When the files cannot be read (a remote engine, a provider in another cgroup
//! namespace) every reading is `None` and the caller falls back to the engine's stats.

use std::path::{Path, PathBuf};

/// Where one container's cgroup files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cgroup {
    /// cgroup v1: one directory per controller.
    V1 {
        cpuacct: Option<PathBuf>,
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        freezer: Option<PathBuf>,
    },
    /// cgroup v2: one unified directory.
    V2(PathBuf),
}

/// One reading of the counters that metering compares before and after a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// CPU time in nanoseconds.
    pub(crate) cpu_ns: Option<u64>,
    /// OOM kills so far.
    pub(crate) oom_kills: Option<u64>,
}

impl Cgroup {
    /// Finds the cgroup of process `pid` (as the host sees it) under `root`
    /// (normally `/sys/fs/cgroup`).
    pub(crate) fn of_process(pid: u32, root: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        Self::parse(&text, root)
    }

    fn parse(proc_cgroup: &str, root: &Path) -> Option<Self> {
        if root.join("cgroup.controllers").exists() {
            let path = proc_cgroup
                .lines()
                .find_map(|line| line.strip_prefix("0::"))?;
            let dir = root.join(path.trim_start_matches('/'));
            return dir.is_dir().then_some(Cgroup::V2(dir));
        }
        let find = |controller: &str| -> Option<PathBuf> {
            proc_cgroup.lines().find_map(|line| {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                if !controllers.split(',').any(|c| c == controller) {
                    return None;
                }
                let path = path.trim_start_matches('/');
                [controllers, controller]
                    .iter()
                    .map(|mount| root.join(mount).join(path))
                    .find(|dir| dir.is_dir())
            })
        };
        let v1 = Cgroup::V1 {
            cpuacct: find("cpuacct"),
            memory: find("memory"),
            pids: find("pids"),
            freezer: find("freezer"),
        };
        match &v1 {
            Cgroup::V1 {
                cpuacct: None,
                memory: None,
                pids: None,
                ..
            } => None,
            _ => Some(v1),
        }
    }

    /// Reads the counters compared around a call.
    pub(crate) fn counters(&self) -> Counters {
        match self {
            Cgroup::V1 {
                cpuacct, memory, ..
            } => Counters {
                cpu_ns: cpuacct
                    .as_ref()
                    .and_then(|d| read_u64(&d.join("cpuacct.usage"))),
                oom_kills: memory
                    .as_ref()
                    .and_then(|d| read_key(&d.join("memory.oom_control"), "oom_kill")),
            },
            Cgroup::V2(dir) => Counters {
                cpu_ns: read_key(&dir.join("cpu.stat"), "usage_usec").map(|us| us * 1000),
                oom_kills: read_key(&dir.join("memory.events"), "oom_kill"),
            },
        }
    }

    /// Resets the peak-memory watermark where the kernel allows it (v1). Returns
    /// whether the next [`Cgroup::peak_memory`] covers only what follows.
    pub(crate) fn reset_peak_memory(&self) -> bool {
        match self {
            Cgroup::V1 {
                memory: Some(dir), ..
            } => std::fs::write(dir.join("memory.max_usage_in_bytes"), b"0").is_ok(),
            _ => false,
        }
    }

    /// Peak memory in bytes.
    pub(crate) fn peak_memory(&self) -> Option<u64> {
        match self {
            Cgroup::V1 { memory, .. } => memory
                .as_ref()
                .and_then(|d| read_u64(&d.join("memory.max_usage_in_bytes"))),
            Cgroup::V2(dir) => read_u64(&dir.join("memory.peak")),
        }
    }
}
impl Cgroup {
    /// Host pids of every process in the container.
    pub(crate) fn processes(&self) -> Option<Vec<i32>> {
        let dir = match self {
            Cgroup::V1 { pids, memory, .. } => pids.as_ref().or(memory.as_ref())?,
            Cgroup::V2(dir) => dir,
        };
        let text = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
        text.lines().map(|l| l.trim().parse().ok()).collect()
    }

    /// Freezes (or thaws) every process of the container, so none can fork while the
    /// others are killed. Returns whether the kernel accepted it.
    pub(crate) fn set_frozen(&self, frozen: bool) -> bool {
        match self {
            Cgroup::V1 {
                freezer: Some(dir), ..
            } => std::fs::write(
                dir.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            )
            .is_ok(),
            Cgroup::V1 { .. } => false,
            Cgroup::V2(dir) => {
                std::fs::write(dir.join("cgroup.freeze"), if frozen { "1" } else { "0" }).is_ok()
            }
        }
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_paths_and_counters_are_read() {
        let root = tempfile::tempdir().unwrap();
        let id = "docker/abc";
        for c in ["cpu,cpuacct", "memory", "pids"] {
            std::fs::create_dir_all(root.path().join(c).join(id)).unwrap();
        }
        let cg = Cgroup::parse(
            "3:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n8:pids:/docker/abc\n0::/docker/abc\n",
            root.path(),
        )
        .unwrap();
        let mem = root.path().join("memory").join(id);
        std::fs::write(
            root.path()
                .join("cpu,cpuacct")
                .join(id)
                .join("cpuacct.usage"),
            "2500000\n",
        )
        .unwrap();
        std::fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        std::fs::write(mem.join("memory.max_usage_in_bytes"), "4096\n").unwrap();
        assert_eq!(
            cg.counters(),
            Counters {
                cpu_ns: Some(2_500_000),
                oom_kills: Some(3)
            }
        );
        assert!(cg.reset_peak_memory());
        assert_eq!(cg.peak_memory(), Some(0));
        assert_eq!(cg.processes(), None);
    }

    #[test]
    fn v2_paths_and_counters_are_read() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        let dir = root.path().join("system.slice/docker-abc.scope");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        std::fs::write(dir.join("memory.events"), "low 0\noom 1\noom_kill 1\n").unwrap();
        std::fs::write(dir.join("memory.peak"), "8192\n").unwrap();
        std::fs::write(dir.join("cgroup.procs"), "12\n13\n").unwrap();
        let cg = Cgroup::parse("0::/system.slice/docker-abc.scope\n", root.path()).unwrap();
        assert_eq!(
            cg.counters(),
            Counters {
                cpu_ns: Some(1_500_000),
                oom_kills: Some(1)
            }
        );
        assert!(!cg.reset_peak_memory());
        assert_eq!(cg.peak_memory(), Some(8192));
        assert_eq!(cg.processes(), Some(vec![12, 13]));
    }
}
