//! What a provider host needs, checked: the engine and its confinement, the cgroup
//! freezer that ends a call, free disk for the ledger and the tools' images, the ports
//! the node listens on, and whether the clock is kept in time; each problem with the
//! fix, and, when a tool keeps its workspace on disk, a trial workspace made, mounted
//! and removed again. Nothing else here changes the host (a port is bound for an
//! instant and released).

use std::path::Path;

use serde::Serialize;

use crate::config::EngineConfig;
use crate::engine::{Engine, EngineError};
use crate::images;
use crate::tool::Tool;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// As it should be.
    Ok,
    /// Works, degraded or less safe than it could be.
    Warn,
    /// The provider cannot work this way.
    Fail,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was checked (`engine`, `seccomp`, …).
    pub check: &'static str,
    /// How it came out.
    pub severity: Severity,
    /// What was found.
    pub detail: String,
    /// What to do about it (a problem always has one).
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            severity: Severity::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn problem(
        check: &'static str,
        severity: Severity,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            check,
            severity,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Free space under which the data directory's filesystem is a warning, and a failure.
const DISK_WARN: u64 = 2 << 30;
const DISK_FAIL: u64 = 256 << 20;

/// Checks the host for a provider reaching the engine as `engine` says, keeping its
/// data in `data_dir` and selling `tools`.
pub async fn check_host(engine: &EngineConfig, data_dir: &Path, tools: &[Tool]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let once = EngineConfig {
        connect_attempts: 1,
        ..engine.clone()
    };
    match Engine::connect(&once).await {
        Ok(connected) => {
            let info = connected.info().clone();
            findings.push(Finding::ok(
                "engine",
                format!(
                    "Docker {} (API {}) on {}, cgroup v{}",
                    info.server_version,
                    info.api_version,
                    engine.socket.display(),
                    info.cgroup_version
                ),
            ));
            findings.extend(confinement(&info.security_options));
            findings.push(freezer(&info.cgroup_version));
            findings.extend(tool_images(&connected, tools).await);
        }
        Err(e) => findings.push(engine_unreachable(&e, &engine.socket)),
    }
    findings.push(disk(data_dir));
    if tools
        .iter()
        .any(|t| t.workspace_on() == crate::config::WorkspaceOn::Disk)
    {
        findings.push(disk_workspaces(&engine.workspaces_in(data_dir)).await);
    }
    findings.push(clock());
    findings
}

/// Whether disk-backed workspaces can be made in `dir`: a trial workspace of the
/// smallest size is made (image, `mkfs.ext4`, loop mount `nosuid,nodev,noexec`) and
/// removed; a node in a mount namespace other than the host's is a warning (the engine
/// may not see its mounts; every session checks that it does, and is refused if not).
pub async fn disk_workspaces(dir: &Path) -> Finding {
    const CHECK: &str = "disk workspaces";
    let disks = crate::disk::DiskWorkspaces::new(dir.to_owned());
    let name = format!("orien-doctor-{}", std::process::id());
    let made = disks
        .create(&name, crate::config::bounds::MIN_DISK_WORKSPACE)
        .await;
    disks.remove(&name).await;
    if let Err(e) = made {
        return Finding::problem(
            CHECK,
            Severity::Fail,
            format!("a trial workspace in {} failed: {e}", dir.display()),
            "run the node as root with loop devices (`modprobe loop`; in a container: `--device /dev/loop-control` and the loop devices) and e2fsprogs installed, or set `workspace_on = \"memory\"` for those tools",
        );
    }
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    match (ns("self"), ns("1")) {
        (Some(own), Some(host)) if own != host => Finding::problem(
            CHECK,
            Severity::Warn,
            format!(
                "this process runs in a mount namespace of its own ({}), not the host's ({}): unless its mounts propagate to the host, the engine does not see the workspaces it mounts, and each such session is refused at open",
                own.display(),
                host.display()
            ),
            "run the node in the host's mount namespace, or with mounts shared to it (systemd: `MountFlags=shared`; see configs/orien-node.service)",
        ),
        _ => Finding::ok(
            CHECK,
            format!(
                "a trial workspace was made, loop-mounted nosuid,nodev,noexec and removed in {}",
                dir.display()
            ),
        ),
    }
}

fn engine_unreachable(error: &EngineError, socket: &Path) -> Finding {
    let text = error.to_string();
    let fix = if text.contains("ermission denied") {
        format!(
            "let this user use the engine's socket: `usermod -aG docker $USER` (then log in again), or run the node as the service user of configs/orien-node.service; socket {}",
            socket.display()
        )
    } else {
        format!(
            "start the engine (`systemctl start docker`, or `dockerd &`; Debian: `apt-get install docker.io`), or set [engine] socket in the provider config to where it listens (now {})",
            socket.display()
        )
    };
    Finding::problem("engine", Severity::Fail, text, fix)
}

/// seccomp, AppArmor or SELinux, user namespaces: what the engine applies to every
/// container.
fn confinement(options: &[String]) -> Vec<Finding> {
    let has = |name: &str| options.iter().any(|o| o.contains(&format!("name={name}")));
    let mut findings = Vec::new();
    findings.push(if has("seccomp") {
        Finding::ok("seccomp", "the engine filters containers' syscalls")
    } else {
        Finding::problem(
            "seccomp",
            Severity::Warn,
            "the engine applies no seccomp profile: a tool can call every syscall the kernel offers",
            "use an engine built with seccomp (Debian's docker.io is) on a kernel with CONFIG_SECCOMP_FILTER, and do not start dockerd with an unconfined default profile",
        )
    });
    findings.push(if has("apparmor") || has("selinux") {
        Finding::ok("confinement", "AppArmor or SELinux confines containers")
    } else {
        Finding::problem(
            "confinement",
            Severity::Warn,
            "the engine applies neither AppArmor nor SELinux",
            "install and enable AppArmor (`apt-get install apparmor`, boot with `apparmor=1 security=apparmor`) and restart the engine",
        )
    });
    findings.push(if has("userns") {
        Finding::ok("user namespaces", "containers' users are remapped")
    } else {
        Finding::problem(
            "user namespaces",
            Severity::Warn,
            "user namespaces are off: the sandbox user 65534 is the host's uid 65534",
            "optional hardening: start dockerd with `--userns-remap=default`",
        )
    });
    findings
}

/// Ending a call freezes its container's cgroup, which needs root beside the engine.
fn freezer(cgroup_version: &str) -> Finding {
    let file = if cgroup_version == "2" {
        "cgroup.freeze"
    } else {
        "freezer.state"
    };
    if effective_uid() == Some(0) {
        Finding::ok(
            "cgroup freezer",
            format!(
                "running as root: a timed-out call is ended by freezing its cgroup ({file}), the workspace kept"
            ),
        )
    } else {
        Finding::problem(
            "cgroup freezer",
            Severity::Warn,
            format!(
                "not running as root: the node cannot write {file}, so a timed-out call is ended by restarting its container, which empties the session's workspace"
            ),
            "run the node as root beside the engine (drop `User=orien` from configs/orien-node.service: the unit's other settings still confine it), or accept that a timed-out call loses its session's files",
        )
    }
}

/// Whether each tool's image is in the engine.
async fn tool_images(engine: &Engine, tools: &[Tool]) -> Vec<Finding> {
    let mut missing = Vec::new();
    for tool in tools {
        match images::present(engine, tool.image()).await {
            Ok(Some(_)) => {}
            Ok(None) => missing.push(format!("{} ({})", tool.name(), tool.image())),
            Err(e) => missing.push(format!("{} ({}: {e})", tool.name(), tool.image())),
        }
    }
    if tools.is_empty() {
        return Vec::new();
    }
    vec![if missing.is_empty() {
        Finding::ok(
            "images",
            format!(
                "the image of each of the {} tools is in the engine",
                tools.len()
            ),
        )
    } else {
        Finding::problem(
            "images",
            Severity::Fail,
            format!("missing: {}", missing.join(", ")),
            "build or pull them: `orien-node tools prepare <provider config>`",
        )
    }]
}

/// Free space on the data directory's filesystem (the ledger grows with every receipt).
fn disk(data_dir: &Path) -> Finding {
    // The directory may not exist before `init`: ask about the nearest that does.
    let existing = data_dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    match nix::sys::statvfs::statvfs(existing) {
        Ok(stat) => {
            let free = stat.blocks_available().saturating_mul(stat.fragment_size());
            let text = format!("{} MiB free under {}", free >> 20, existing.display());
            let fix = "free space on that filesystem or move the data directory (--data-dir) to a larger one";
            if free < DISK_FAIL {
                Finding::problem("disk", Severity::Fail, text, fix)
            } else if free < DISK_WARN {
                Finding::problem("disk", Severity::Warn, text, fix)
            } else {
                Finding::ok("disk", text)
            }
        }
        Err(e) => Finding::problem(
            "disk",
            Severity::Warn,
            format!(
                "cannot read the free space under {}: {e}",
                existing.display()
            ),
            "check that the data directory is readable",
        ),
    }
}

/// Whether the node can listen where it is told to: each TCP address (peers, then the
/// API) is bound for an instant. A port in use is a warning (the node itself may be the
/// one listening); one the process may not bind is a failure.
pub fn ports(tcp: &[std::net::SocketAddr]) -> Vec<Finding> {
    tcp.iter()
        .map(|addr| match std::net::TcpListener::bind(addr) {
            Ok(_) if addr.port() == 0 => {
                Finding::ok("ports", format!("{addr}: any free port will do"))
            }
            Ok(_) => Finding::ok("ports", format!("{addr} is free")),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Finding::problem(
                "ports",
                Severity::Warn,
                format!("{addr} is in use"),
                format!(
                    "if this node runs, that is it (`orien-node status`); otherwise find the \
                     owner with `ss -ltnp 'sport = :{}'` or listen on another port",
                    addr.port()
                ),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Finding::problem(
                "ports",
                Severity::Fail,
                format!("{addr}: this user may not listen there ({e})"),
                "use a port above 1023, or give the service CAP_NET_BIND_SERVICE",
            ),
            Err(e) => Finding::problem(
                "ports",
                Severity::Fail,
                format!("{addr}: cannot listen ({e})"),
                "listen on an address of this host (`--listen`, `--api`)",
            ),
        })
        .collect()
}

/// Whether the clock is kept in time: offers, profiles and receipts carry times that
/// peers accept within five minutes.
pub fn clock() -> Finding {
    if Path::new("/run/systemd/timesync/synchronized").exists() {
        return Finding::ok("clock", "synchronized (systemd-timesyncd)");
    }
    let answer = std::process::Command::new("timedatectl")
        .args(["show", "--property=NTPSynchronized", "--value"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    let fix = "run a time client (systemd-timesyncd, chrony or ntpd): peers refuse offers \
               and profiles more than five minutes off their own clock";
    match answer.as_deref() {
        Some("yes") => Finding::ok("clock", "synchronized (timedatectl)"),
        Some(_) => Finding::problem(
            "clock",
            Severity::Warn,
            "the system clock is not synchronized",
            fix,
        ),
        None => Finding::problem(
            "clock",
            Severity::Warn,
            "cannot tell whether the clock is synchronized (no systemd time service answered)",
            fix,
        ),
    }
}

/// This process's effective uid, from `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confinement_reports_what_the_engine_lacks_with_a_fix() {
        let none = confinement(&[]);
        assert!(
            none.iter()
                .all(|f| f.severity == Severity::Warn && f.fix.is_some())
        );
        let all = confinement(&[
            "name=seccomp,profile=builtin".into(),
            "name=apparmor".into(),
            "name=userns".into(),
        ]);
        assert!(all.iter().all(|f| f.severity == Severity::Ok), "{all:?}");
    }

    #[test]
    fn a_port_in_use_is_named_and_a_free_one_passes() {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = busy.local_addr().unwrap();
        let found = ports(&[addr, "127.0.0.1:0".parse().unwrap()]);
        assert_eq!(found[0].severity, Severity::Warn, "{found:?}");
        assert!(found[0].detail.contains("in use"), "{found:?}");
        assert!(
            found[0]
                .fix
                .as_deref()
                .unwrap()
                .contains(&addr.port().to_string())
        );
        assert_eq!(found[1].severity, Severity::Ok, "{found:?}");
        drop(busy);
        assert_eq!(ports(&[addr])[0].severity, Severity::Ok);
        // An address of no interface of this host.
        let foreign = ports(&["192.0.2.1:4001".parse().unwrap()]);
        assert_eq!(foreign[0].severity, Severity::Fail, "{foreign:?}");
    }

    #[test]
    fn the_clock_check_always_says_something_and_a_problem_has_a_fix() {
        let finding = clock();
        assert_eq!(finding.check, "clock");
        assert!(
            finding.severity == Severity::Ok || finding.fix.is_some(),
            "{finding:?}"
        );
    }

    #[test]
    fn the_disk_check_reads_the_nearest_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let finding = disk(&dir.path().join("not/yet/created"));
        assert!(
            finding.detail.contains(&dir.path().display().to_string()),
            "{finding:?}"
        );
    }
}
