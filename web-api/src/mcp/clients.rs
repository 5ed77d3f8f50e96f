//! MCP clients with their own token and budget: `mcp_clients.toml` in the node's data
//! directory (0600), written by `orien-node mcp client add`. A client's token opens only
//! `/mcp`, and its calls are held to its own limits as well as the node's.
//!
//! Which sessions a client opened is kept in `mcp_sessions.jsonl` beside it (appended
//! and synced when a session opens), so its day's spending survives a restart. A crash
//! between an open and its line leaves that one session counted against the node's day
//! only.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use orien_protocol::{SessionId, Usdc};
use serde::{Deserialize, Serialize};

use crate::auth::BearerToken;
use crate::mcp::policy::BudgetPolicy;

/// File name of the clients in the data directory.
pub const CLIENTS_FILE: &str = "mcp_clients.toml";
/// File name of the sessions each client opened.
pub const SESSIONS_FILE: &str = "mcp_sessions.jsonl";
/// How long an attribution is kept (the day's limit needs one UTC day).
const KEPT_MS: u64 = 2 * 86_400_000;

/// Errors reading or writing the clients.
#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not what `orien-node mcp client` writes.
    #[error("{path}: {detail}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// No such client, or one of that name exists already.
    #[error("{0}")]
    Name(String),
}

/// One client as the file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// Its name (letters, digits, `-`, `_`; 1 to 64).
    pub name: String,
    /// Its bearer token (256 bits, hex).
    pub token: String,
    /// Most one call may cost, USDC.
    pub per_call: Usdc,
    /// Largest budget of a session it opens, USDC.
    pub per_session: Usdc,
    /// Most its sessions may cost in a UTC day, USDC.
    pub per_day: Usdc,
}

impl ClientEntry {
    /// Its limits.
    pub fn policy(&self) -> BudgetPolicy {
        BudgetPolicy {
            per_call: self.per_call,
            per_session: self.per_session,
            per_day: self.per_day,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsFile {
    #[serde(default, rename = "client")]
    clients: Vec<ClientEntry>,
}

/// Reads the clients of `data_dir` (none when the file does not exist).
pub fn load(data_dir: &Path) -> Result<Vec<ClientEntry>, ClientsError> {
    let path = data_dir.join(CLIENTS_FILE);
    let shown = path.display().to_string();
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ClientsError::Io {
                path: shown,
                source,
            });
        }
    };
    let file: ClientsFile = toml::from_str(&text).map_err(|e| ClientsError::Invalid {
        path: shown.clone(),
        detail: e.to_string(),
    })?;
    for client in &file.clients {
        if BearerToken::new(&client.token).is_none() || !valid_name(&client.name) {
            return Err(ClientsError::Invalid {
                path: shown,
                detail: format!(
                    "client `{}`: a bad name or a token under 32 characters",
                    client.name
                ),
            });
        }
    }
    Ok(file.clients)
}

/// Adds a client with a fresh token to `data_dir`'s file (0600) and returns it.
pub fn add(data_dir: &Path, name: &str, policy: BudgetPolicy) -> Result<ClientEntry, ClientsError> {
    if !valid_name(name) {
        return Err(ClientsError::Name(format!(
            "`{name}`: a client's name is 1 to 64 letters, digits, `-` or `_`"
        )));
    }
    let mut clients = load(data_dir)?;
    if clients.iter().any(|c| c.name == name) {
        return Err(ClientsError::Name(format!(
            "a client named `{name}` exists; remove it first (`orien-node mcp client remove {name}`)"
        )));
    }
    let entry = ClientEntry {
        name: name.to_owned(),
        token: BearerToken::generate().expose().to_owned(),
        per_call: policy.per_call,
        per_session: policy.per_session,
        per_day: policy.per_day,
    };
    clients.push(entry.clone());
    save(data_dir, clients)?;
    Ok(entry)
}

/// Removes the client `name`.
pub fn remove(data_dir: &Path, name: &str) -> Result<(), ClientsError> {
    let mut clients = load(data_dir)?;
    let before = clients.len();
    clients.retain(|c| c.name != name);
    if clients.len() == before {
        return Err(ClientsError::Name(format!("no client named `{name}`")));
    }
    save(data_dir, clients)
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn save(data_dir: &Path, clients: Vec<ClientEntry>) -> Result<(), ClientsError> {
    let path = data_dir.join(CLIENTS_FILE);
    let io = |source| ClientsError::Io {
        path: path.display().to_string(),
        source,
    };
    let text = toml::to_string(&ClientsFile { clients }).map_err(|e| ClientsError::Invalid {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let temporary = path.with_extension("toml.new");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::set_permissions(&temporary, fs::Permissions::from_mode(0o600)).map_err(io)?;
    fs::rename(&temporary, &path).map_err(io)
}

/// Who calls: the node's owner (the API token) or a client with its own token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The API token: the node's policy.
    Owner,
    /// A client of `mcp_clients.toml`: its own policy within the node's.
    Client {
        /// Its name.
        name: String,
        /// Its limits.
        policy: BudgetPolicy,
    },
}

/// The clients of a running node: tokens checked against the file (read again when it
/// changes), and the sessions each opened.
#[derive(Debug)]
pub struct Clients {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    read_at: Option<SystemTime>,
    clients: Vec<ClientEntry>,
    opened: Option<HashMap<SessionId, String>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Opened {
    session: SessionId,
    client: String,
    at_ms: u64,
}

impl Clients {
    /// The clients of the node whose data directory is `dir`.
    pub fn new(dir: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            dir,
            state: Mutex::default(),
        })
    }

    /// The client whose token `presented` is (`None`: no client's).
    pub fn caller(&self, presented: &str) -> Option<Caller> {
        let mut state = self.lock();
        let modified = fs::metadata(self.dir.join(CLIENTS_FILE))
            .and_then(|m| m.modified())
            .ok();
        if modified != state.read_at {
            match load(&self.dir) {
                Ok(clients) => state.clients = clients,
                Err(e) => tracing::warn!(error = %e, "MCP clients: keeping the ones read before"),
            }
            state.read_at = modified;
        }
        state.clients.iter().find_map(|c| {
            let token = BearerToken::new(&c.token)?;
            token.matches(presented).then(|| Caller::Client {
                name: c.name.clone(),
                policy: c.policy(),
            })
        })
    }

    /// Records that `client` opened `session` at `now_ms`, durably.
    pub fn opened(&self, client: &str, session: SessionId, now_ms: u64) {
        let mut state = self.lock();
        self.load_opened(&mut state, now_ms);
        let line = Opened {
            session,
            client: client.to_owned(),
            at_ms: now_ms,
        };
        let written = serde_json::to_string(&line)
            .map_err(std::io::Error::other)
            .and_then(|json| {
                let mut file = fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(self.dir.join(SESSIONS_FILE))?;
                file.write_all(format!("{json}\n").as_bytes())?;
                file.sync_data()
            });
        if let Err(e) = written {
            tracing::warn!(error = %e, %session, "MCP clients: cannot record who opened the session");
        }
        if let Some(opened) = &mut state.opened {
            opened.insert(session, client.to_owned());
        }
    }

    /// Whether `client` opened `session`.
    pub fn opened_by(&self, session: &SessionId, client: &str, now_ms: u64) -> bool {
        let mut state = self.lock();
        self.load_opened(&mut state, now_ms);
        state
            .opened
            .as_ref()
            .and_then(|o| o.get(session))
            .is_some_and(|c| c == client)
    }

    /// Reads the attributions once, keeping the last two days (and rewriting the file
    /// without the older ones).
    fn load_opened(&self, state: &mut State, now_ms: u64) {
        if state.opened.is_some() {
            return;
        }
        let path = self.dir.join(SESSIONS_FILE);
        let text = fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<Opened> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|o: &Opened| now_ms.saturating_sub(o.at_ms) < KEPT_MS)
            .collect();
        if lines.len() < text.lines().count() {
            let kept: String = lines
                .iter()
                .filter_map(|o| serde_json::to_string(o).ok())
                .map(|l| l + "\n")
                .collect();
            if let Err(e) = fs::write(&path, kept) {
                tracing::warn!(error = %e, "MCP clients: cannot prune {}", path.display());
            }
        }
        state.opened = Some(lines.into_iter().map(|o| (o.session, o.client)).collect());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BudgetPolicy {
        BudgetPolicy {
            per_call: Usdc::from_micros(10_000),
            per_session: Usdc::from_micros(20_000),
            per_day: Usdc::from_micros(30_000),
        }
    }

    #[test]
    fn clients_are_added_with_their_own_token_found_by_it_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let added = add(dir.path(), "claude", policy()).unwrap();
        let mode = fs::metadata(dir.path().join(CLIENTS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            add(dir.path(), "claude", policy()),
            Err(ClientsError::Name(_))
        ));
        assert!(matches!(
            add(dir.path(), "no spaces", policy()),
            Err(ClientsError::Name(_))
        ));
        let clients = Clients::new(dir.path().to_owned());
        assert_eq!(
            clients.caller(&added.token),
            Some(Caller::Client {
                name: "claude".into(),
                policy: policy()
            })
        );
        assert_eq!(clients.caller("not-a-token"), None);
        remove(dir.path(), "claude").unwrap();
        // The file changed: read again (mtime resolution aside, a fresh reader sees it).
        assert_eq!(
            Clients::new(dir.path().to_owned()).caller(&added.token),
            None
        );
    }

    #[test]
    fn the_sessions_a_client_opened_survive_a_restart_and_old_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (old, recent) = (SessionId::random(), SessionId::random());
        let day = 86_400_000;
        let clients = Clients::new(dir.path().to_owned());
        clients.opened("a", old, 10 * day);
        clients.opened("a", recent, 12 * day);
        let restarted = Clients::new(dir.path().to_owned());
        assert!(restarted.opened_by(&recent, "a", 12 * day + 1));
        assert!(!restarted.opened_by(&recent, "b", 12 * day + 1));
        assert!(
            !restarted.opened_by(&old, "a", 12 * day + 1),
            "older than two days"
        );
        let lines = fs::read_to_string(dir.path().join(SESSIONS_FILE)).unwrap();
        assert_eq!(lines.lines().count(), 1, "{lines}");
    }
}
