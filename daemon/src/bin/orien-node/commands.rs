//! The commands that talk to a running node through its local HTTP API. Each is a thin
//! client: the node does the work, errors come back as problem documents and are shown
//! with what to do about them. `--json` prints the API's documents as they are.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use orien_daemon::client::{ApiClient, encode_component as encode, encode_path};
use orien_web_api::chain::{SettlementView, WalletView};
use orien_web_api::providers::{ProviderPage, ProviderView};
use orien_web_api::sessions::{
    ArtefactState, ExecBody, ExecState, ExecutionPage, ExecutionView, FileView, LogEvent,
    OpenSessionBody, PaymentKind, ReceiptView, SessionView,
};
use orien_web_api::text::{OfferIdText, PathText, PeerIdText, PositiveAmountText, ToolText};
use orien_web_api::{LoginLinkView, NodeInfo, OfferView};
use serde::Serialize;

/// Commands served by the running node.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// This node: id, version, peers, known offers (and its wallet on a chain).
    Status,
    /// Tools this node sells (`tools validate FILE` checks a provider config offline,
    /// `tools prepare FILE` builds or pulls its images).
    Tools {
        #[command(subcommand)]
        command: Option<ToolsCommand>,
    },
    /// Offers in this node's offer book, cheapest first.
    Offers {
        /// Only this tool.
        #[arg(long)]
        tool: Option<String>,
        /// Only offers at most this USDC per minute of execution.
        #[arg(long)]
        max_price: Option<String>,
        /// Only this provider (peer id).
        #[arg(long)]
        provider: Option<String>,
    },
    /// Providers this node has heard of, from their signed profiles: name, tools,
    /// cheapest prices, uptime, completed sessions (`--id` shows one in full).
    Providers {
        /// Show this provider (peer id) in full.
        #[arg(long, conflicts_with_all = ["tool", "max_price", "min_uptime_secs", "sort", "offset"])]
        id: Option<String>,
        /// Only providers selling this tool.
        #[arg(long)]
        tool: Option<String>,
        /// Only providers whose per-minute prices (of --tool, or of every tool) are at
        /// most this USDC.
        #[arg(long)]
        max_price: Option<String>,
        /// Only providers up at least this many seconds.
        #[arg(long)]
        min_uptime_secs: Option<u64>,
        /// Order (`reputation`: this node's own evidence of each provider, best first).
        #[arg(long, value_parser = ["uptime", "price", "sessions", "name", "reputation"])]
        sort: Option<String>,
        /// Most providers to list (1 to 500).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Skip this many (the offset printed last time).
        #[arg(long)]
        offset: Option<u64>,
    },
    /// Rent: open a session, run a tool in it, close it.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Executions this node rented or ran as provider, newest first, from its ledger
    /// (they survive restarts): state, exit code, wall time, cost.
    Executions {
        /// Only this session's.
        #[arg(long)]
        session: Option<String>,
        /// Only this tool's.
        #[arg(long)]
        tool: Option<String>,
        /// Only executions in this state.
        #[arg(long, value_parser = ["pending", "running", "completed", "failed"])]
        state: Option<String>,
        /// Only executions that failed for this reason.
        #[arg(long, value_parser = ["timed_out", "out_of_memory", "invalid_arguments", "sandbox_error", "lost", "disputed"])]
        failure: Option<String>,
        /// Most executions to list (1 to 500).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only executions older than this one (the id `--after` printed last time).
        #[arg(long)]
        after: Option<String>,
    },
    /// The dual-signed receipt chain of a session.
    Receipts {
        /// The session id.
        session: String,
    },
    /// Provider: settle every unpaid voucher on chain now.
    Settle,
    /// Sign a browser in to the dashboard: prints a link to the node's pages that works
    /// once, within five minutes (it trades itself for a session cookie; the API token
    /// never appears in a URL). The link names the API's address, so open it on this
    /// machine, or through an SSH tunnel to the API port.
    Dashboard {
        /// Also open the link in the desktop's browser (`xdg-open`).
        #[arg(long)]
        open: bool,
    },
}

/// `tools …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ToolsCommand {
    /// Check a provider configuration: every tool, its schema, limits and price; when a
    /// tool keeps its workspace on disk, that this host can make one (a trial workspace
    /// is made and removed).
    Validate {
        /// The TOML file (see configs/provider.example.toml).
        file: PathBuf,
    },
    /// Make every image the configuration names present in the Docker engine: build
    /// `orien/<name>` images with their recipe (`<config dir>/images/<name>/build`), pull
    /// the others. Images already present are left as they are.
    Prepare {
        /// The TOML file (see configs/provider.example.toml).
        file: PathBuf,
    },
}

/// `session …`.
#[derive(Debug, Subcommand)]
pub(crate) enum SessionCommand {
    /// Open a session on an offer, or on the cheapest offer of a tool.
    Open {
        /// The offer id (from `orien-node offers`).
        #[arg(long, conflicts_with = "tool", required_unless_present = "tool")]
        offer: Option<String>,
        /// The tool, when no offer is named.
        #[arg(long)]
        tool: Option<String>,
        /// With --tool: only this provider.
        #[arg(long, requires = "tool")]
        provider: Option<String>,
        /// Most the session may cost, in USDC.
        #[arg(long)]
        budget: String,
        /// Longest the session stays open, in seconds.
        #[arg(long, default_value_t = 3600)]
        max_duration_secs: u64,
        /// Pay through the ledgers only, or from an escrow lane (default: escrow when the
        /// node is connected to a chain).
        #[arg(long, value_parser = ["auto", "ledger", "escrow"], default_value = "auto")]
        payment: String,
    },
    /// Upload files, run the session's tool (or --tool, another of its provider's) with
    /// JSON arguments, and print its output as it comes; exits with the tool's exit code.
    Exec {
        /// The session id.
        session: String,
        /// Another tool of the session's provider, over the same workspace, at its own
        /// price (`orien-node providers --id P` lists them).
        #[arg(long)]
        tool: Option<String>,
        /// Arguments as a JSON object, e.g. '{"file":"data/in.txt"}'.
        #[arg(long, default_value = "{}")]
        args: String,
        /// `LOCAL=REMOTE`: upload LOCAL to the workspace path REMOTE first; repeat.
        #[arg(long = "upload", value_parser = parse_upload)]
        uploads: Vec<(PathBuf, String)>,
        /// `REMOTE[=LOCAL]`: a workspace path the call leaves an output at; the
        /// provider keeps a copy when it ends (its SHA-256 in the signed result), and it
        /// is downloaded to LOCAL (default: its file name here) and checked; repeat (at
        /// most 16).
        #[arg(long = "output", value_parser = parse_output)]
        outputs: Vec<(String, Option<PathBuf>)>,
    },
    /// Upload a file, or a directory (as a tar, unpacked in place), into a session's
    /// workspace, streamed with a progress bar; prints the SHA-256 the provider stored.
    /// Any size up to the tool's caps (`orien-node offers` lists them).
    Put {
        /// The session id.
        session: String,
        /// The local file or directory.
        local: PathBuf,
        /// Where in the workspace: a file's path (default: its name), or the directory
        /// a directory's contents go under (default: the workspace itself).
        remote: Option<String>,
    },
    /// Download a file, or with --dir a directory (unpacked), from a session's
    /// workspace, streamed with a progress bar; the SHA-256 is checked.
    Get {
        /// The session id.
        session: String,
        /// The workspace path (with --dir, empty for the whole workspace).
        remote: String,
        /// Where to write it (default: the path's last part in this directory).
        local: Option<PathBuf>,
        /// `remote` is a directory: fetch it as a tar and unpack it into `local`.
        #[arg(long)]
        dir: bool,
    },
    /// Close a session; prints what it cost.
    Close {
        /// The session id.
        session: String,
    },
    /// Sessions in this node's ledger.
    List,
    /// One session.
    Show {
        /// The session id.
        session: String,
    },
}

fn parse_upload(text: &str) -> Result<(PathBuf, String), String> {
    let (local, remote) = text
        .split_once('=')
        .ok_or("expected LOCAL=REMOTE, e.g. ./in.txt=data/in.txt")?;
    Ok((PathBuf::from(local), remote.to_owned()))
}

fn parse_output(text: &str) -> Result<(String, Option<PathBuf>), String> {
    let (remote, local) = match text.split_once('=') {
        Some((remote, local)) => (remote, Some(PathBuf::from(local))),
        None => (text, None),
    };
    if remote.is_empty() {
        return Err("expected REMOTE[=LOCAL], e.g. out/report.pdf=./report.pdf".into());
    }
    Ok((remote.to_owned(), local))
}

/// Runs `work` under a spinner on stderr, when stderr is a terminal and the output is
/// not JSON (scripts and pipes see nothing).
pub(crate) async fn with_spinner<T>(
    message: &str,
    json_out: bool,
    work: impl std::future::Future<Output = T>,
) -> T {
    use std::io::IsTerminal;
    if json_out || !std::io::stderr().is_terminal() {
        return work.await;
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(message.to_owned());
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let out = work.await;
    spinner.finish_and_clear();
    out
}

/// Prints a line of the command's result.
#[allow(clippy::print_stdout)]
pub(crate) fn emit(line: &str) {
    println!("{line}");
}

/// `orien-node doctor`'s findings, one a line, each problem with its fix.
pub(crate) fn print_findings(findings: &[orien_provider::doctor::Finding]) {
    use orien_provider::doctor::Severity;
    for finding in findings {
        let mark = match finding.severity {
            Severity::Ok => "ok  ",
            Severity::Warn => "warn",
            Severity::Fail => "FAIL",
        };
        emit(&format!("{mark} {:<16} {}", finding.check, finding.detail));
        if let Some(fix) = &finding.fix {
            emit(&format!("     {:<16} fix: {fix}", ""));
        }
    }
}

/// `GET /v1/settlements` as a table.
pub(crate) fn print_settlements(history: &serde_json::Value) {
    let records = history.as_array().map_or(&[][..], Vec::as_slice);
    if records.is_empty() {
        emit(
            "no settlements yet (a provider settles its vouchers with `orien-node settle`, on its timer, or at shutdown)",
        );
        return;
    }
    emit(&format!(
        "{:<23} {:<12} {:<9} {:>12} {:>12} {:>12} {:>12}",
        "when", "tx", "state", "paid", "provider", "fee", "reserve"
    ));
    let text = |r: &serde_json::Value, key: &str| r[key].as_str().unwrap_or("?").to_owned();
    for record in records {
        let when = record["decided_at"]
            .as_u64()
            .or(record["submitted_at"].as_u64())
            .map_or_else(|| "?".into(), |ms| orien_protocol::Timestamp(ms).utc());
        let tx = text(record, "tx");
        emit(&format!(
            "{when:<23} {:<12} {:<9} {:>12} {:>12} {:>12} {:>12}",
            tx.get(..12).unwrap_or(&tx),
            text(record, "state"),
            text(record, "paid"),
            text(record, "provider_part"),
            text(record, "fee_part"),
            text(record, "reserve_part"),
        ));
    }
}

/// `GET /v1/lanes` as a table.
pub(crate) fn print_lanes(lanes: &serde_json::Value) {
    let lanes = lanes.as_array().map_or(&[][..], Vec::as_slice);
    if lanes.is_empty() {
        emit("no escrow lanes (a renter's lane opens with `orien-node wallet fund`)");
        return;
    }
    emit(&format!(
        "{:<10} {:<8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>4}  close",
        "lane", "role", "deposit", "acked", "settled", "owed", "refundable", "open"
    ));
    let text = |lane: &serde_json::Value, key: &str| lane[key].as_str().unwrap_or("?").to_owned();
    for lane in lanes {
        let id = text(lane, "lane");
        let close = match (lane["close"].as_str(), lane["thaw_ends_at"].as_u64()) {
            (Some("thawing"), Some(ends)) => format!(
                "thawing until {}",
                orien_protocol::Timestamp(ends.saturating_mul(1000)).utc()
            ),
            (Some(state), _) => state.replace('_', " "),
            (None, _) => "?".into(),
        };
        emit(&format!(
            "{:<10} {:<8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>4}  {close}",
            id.get(..10).unwrap_or(&id),
            text(lane, "role"),
            text(lane, "deposit"),
            text(lane, "acked"),
            text(lane, "settled"),
            text(lane, "owed"),
            text(lane, "refundable"),
            lane["sessions_open"].as_u64().unwrap_or(0),
        ));
    }
}

/// Prints an API document as JSON (`--json`).
pub(crate) fn emit_json(value: &impl Serialize) -> anyhow::Result<()> {
    emit(&serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Seconds as the largest whole unit or two (`3d 4h`, `5m 2s`).
fn duration_text(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// How long artefacts are kept after a session, for a table column.
fn keep_text(keep_ms: u64) -> String {
    if keep_ms == 0 {
        "(while open)".to_owned()
    } else {
        format!("(for {} after)", duration_text(keep_ms / 1_000))
    }
}

fn query(pairs: &[(&str, &Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// One execution on one line: id, tool, state (and why it failed), exit code, wall
/// time, cost.
fn execution_line(e: &ExecutionView) -> String {
    let state = match e.failure {
        Some(failure) => format!("failed: {}", name_of(&failure)),
        None => name_of(&e.state),
    };
    let exit = e.exit_code.map_or("-".into(), |c| c.to_string());
    let wall = e.wall_ms.map_or("-".into(), |ms| format!("{ms} ms"));
    let cost = e
        .cost
        .as_deref()
        .map_or("-".into(), |c| format!("{c} USDC"));
    format!(
        "{}  {:<12} {:<26} exit {:>4}  {:>10}  {:>16}  session {}",
        e.id, e.tool, state, exit, wall, cost, e.session
    )
}

/// The API's name of an enum value (its JSON string).
fn name_of(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "?".into(),
    }
}

fn session_line(s: &SessionView) -> String {
    format!(
        "{}  {:<8} {:<9} {:<10} {:>12} USDC  {} receipts{}",
        s.id,
        name_of(&s.role),
        s.tool.as_deref().unwrap_or("-"),
        name_of(&s.state),
        s.amount,
        s.usage.receipts,
        s.state_detail
            .as_deref()
            .map(|d| format!("  ({d})"))
            .unwrap_or_default()
    )
}

/// Runs one client command against the node's API.
pub(crate) async fn run(
    client: &ApiClient,
    command: ClientCommand,
    json_out: bool,
) -> anyhow::Result<i32> {
    match command {
        ClientCommand::Dashboard { open } => {
            let link: LoginLinkView = client
                .post("/v1/dashboard/login-links", &serde_json::json!({}))
                .await?;
            let url = format!("{}{}", client.base().trim_end_matches('/'), link.path);
            if json_out {
                emit_json(&serde_json::json!({
                    "url": url,
                    "expires_in_secs": link.expires_in_secs,
                }))?;
            } else {
                emit(&format!(
                    "Open this link in a browser (it works once, within {} minutes):",
                    link.expires_in_secs.div_ceil(60)
                ));
                emit(&url);
            }
            if open {
                std::process::Command::new("xdg-open")
                    .arg(&url)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .context("opening the browser with xdg-open (open the link by hand)")?;
            }
        }
        ClientCommand::Status => {
            let node: NodeInfo = client.get("/v1/node").await?;
            let wallet: Option<WalletView> = client.get("/v1/wallet").await.ok();
            if json_out {
                emit_json(&serde_json::json!({"node": node, "wallet": wallet}))?;
            } else {
                emit(&format!(
                    "node     {} (orien-node {})",
                    node.id, node.version
                ));
                emit(&format!("api      {}", client.base()));
                emit(&format!("peers    {}", node.peers));
                emit(&format!("offers   {} known", node.offers_known));
                if let Some(op) = &node.operator {
                    let list = |ids: &[String]| {
                        if ids.is_empty() {
                            "none".to_owned()
                        } else {
                            ids.join(", ")
                        }
                    };
                    emit(&format!(
                        "renters  {}; denied: {}; at most {} sessions at once and {} opens a minute each",
                        op.allow_renters
                            .as_deref()
                            .map_or("anyone".to_owned(), |a| format!("only {}", list(a))),
                        list(&op.deny_renters),
                        op.max_sessions_per_peer,
                        op.max_opens_per_minute_per_peer,
                    ));
                    emit(&format!(
                        "providers {}; denied: {}",
                        op.allow_providers
                            .as_deref()
                            .map_or("anyone".to_owned(), |a| format!("only {}", list(a))),
                        list(&op.deny_providers),
                    ));
                }
                match wallet {
                    Some(w) => emit(&format!(
                        "wallet   {} on chain {}: {} USDC, {} USDC earned",
                        w.address, w.chain_id, w.usdc, w.earnings
                    )),
                    None => emit(
                        "wallet   not connected to a chain (sessions are paid through the ledgers)",
                    ),
                }
            }
        }
        ClientCommand::Tools {
            command: Some(ToolsCommand::Validate { .. } | ToolsCommand::Prepare { .. }),
        } => {
            unreachable!("run offline by the caller")
        }
        ClientCommand::Tools { command: None } => {
            let tools: Vec<OfferView> = client.get("/v1/tools").await?;
            if json_out {
                emit_json(&tools)?;
            } else if tools.is_empty() {
                emit("this node sells no tools (run it with --provider-config)");
            } else {
                for t in &tools {
                    emit(&format!(
                        "{:<10} {:>10} USDC/exec-min {:>10} USDC/session-min {:>10} USDC/GiB kept {}  {}",
                        t.tool,
                        t.pricing.exec_per_minute,
                        t.pricing.session_per_minute,
                        t.pricing.artefact_per_gib,
                        keep_text(t.keep_artefacts_ms),
                        t.description
                    ));
                }
            }
        }
        ClientCommand::Offers {
            tool,
            max_price,
            provider,
        } => {
            let path = format!(
                "/v1/offers{}",
                query(&[
                    ("tool", &tool),
                    ("max_price", &max_price),
                    ("provider", &provider)
                ])
            );
            let offers: Vec<OfferView> = client.get(&path).await?;
            if json_out {
                emit_json(&offers)?;
            } else if offers.is_empty() {
                emit("no offers match");
            } else {
                for o in &offers {
                    emit(&format!(
                        "{}  {:<10} {:>10} USDC/exec-min  by {}",
                        o.id, o.tool, o.pricing.exec_per_minute, o.provider
                    ));
                }
            }
        }
        ClientCommand::Providers { id: Some(id), .. } => {
            let p: ProviderView = client
                .get(&format!("/v1/providers/{}", encode(&id)))
                .await?;
            if json_out {
                emit_json(&p)?;
            } else {
                emit(&format!("{}  {}", p.display_name, p.id));
                if !p.description.is_empty() {
                    emit(&p.description);
                }
                emit(&format!("software  {}", p.software));
                emit(&format!("payout    {}", p.payout));
                emit(&format!(
                    "uptime    {} (when it signed)  completed sessions {}",
                    duration_text(p.uptime_secs),
                    p.sessions_completed
                ));
                for t in &p.tools {
                    emit(&format!(
                        "  {:<12} {:>10} USDC/exec-min {:>10} USDC/session-min {:>10} USDC/GiB kept",
                        t.tool,
                        t.pricing.exec_per_minute,
                        t.pricing.session_per_minute,
                        t.pricing.artefact_per_gib
                    ));
                }
            }
        }
        ClientCommand::Providers {
            id: None,
            tool,
            max_price,
            min_uptime_secs,
            sort,
            limit,
            offset,
        } => {
            let path = format!(
                "/v1/providers{}",
                query(&[
                    ("tool", &tool),
                    ("max_price", &max_price),
                    ("min_uptime_secs", &min_uptime_secs.map(|s| s.to_string())),
                    ("sort", &sort),
                    ("limit", &Some(limit.to_string())),
                    ("offset", &offset.map(|o| o.to_string())),
                ])
            );
            let page: ProviderPage = client.get(&path).await?;
            if json_out {
                emit_json(&page)?;
            } else if page.providers.is_empty() {
                emit("no providers match");
            } else {
                for p in &page.providers {
                    let tools: Vec<&str> = p.tools.iter().map(|t| t.tool.as_str()).collect();
                    let cheapest = p.cheapest.as_ref().map_or_else(
                        || "-".to_owned(),
                        |c| format!("from {} USDC/exec-min", c.exec_per_minute),
                    );
                    let seen = p.reputation.as_ref().map_or_else(
                        || "not rented from".to_owned(),
                        |r| {
                            format!(
                                "score {:.2} ({} of {} calls ok)",
                                r.score,
                                r.calls_completed,
                                r.calls_completed + r.calls_failed
                            )
                        },
                    );
                    emit(&format!(
                        "{}  {:<24} up {:>8}  {:>5} sessions  {}  {}  [{}]",
                        p.id,
                        p.display_name,
                        duration_text(p.uptime_secs),
                        p.sessions_completed,
                        cheapest,
                        seen,
                        tools.join(", ")
                    ));
                }
                if let Some(next) = page.next_offset {
                    emit(&format!(
                        "{} of {}; more with --offset {next}",
                        page.providers.len(),
                        page.total
                    ));
                }
            }
        }
        ClientCommand::Session { command } => return session(client, command, json_out).await,
        ClientCommand::Executions {
            session,
            tool,
            state,
            failure,
            limit,
            after,
        } => {
            let path = format!(
                "/v1/executions{}",
                query(&[
                    ("session", &session),
                    ("tool", &tool),
                    ("state", &state),
                    ("failure", &failure),
                    ("limit", &Some(limit.to_string())),
                    ("after", &after),
                ])
            );
            let page: ExecutionPage = client.get(&path).await?;
            if json_out {
                emit_json(&page)?;
            } else if page.executions.is_empty() {
                emit("no executions match");
            } else {
                for e in &page.executions {
                    emit(&execution_line(e));
                }
                if let Some(next) = &page.next {
                    emit(&format!("more: --after {next}"));
                }
            }
        }
        ClientCommand::Receipts { session } => {
            let receipts: Vec<ReceiptView> = client
                .get(&format!("/v1/receipts?session={}", encode(&session)))
                .await?;
            if json_out {
                emit_json(&receipts)?;
            } else {
                for r in &receipts {
                    emit(&format!(
                        "#{:<4} {:>12} USDC  session {} ms, exec {} ms, cpu {} ms  {}",
                        r.seq, r.amount, r.session_ms, r.exec_ms, r.cpu_ms, r.hash
                    ));
                }
            }
        }
        ClientCommand::Settle => {
            let settled: Vec<SettlementView> = with_spinner(
                "settling on chain, waiting for confirmations…",
                json_out,
                client.post("/v1/settlements", &serde_json::json!({})),
            )
            .await?;
            if json_out {
                emit_json(&settled)?;
            } else if settled.is_empty() {
                emit("nothing to settle");
            } else {
                for s in &settled {
                    emit(&format!(
                        "settled {} lane(s) in {} (block {}): fee {} USDC, reserve {} USDC",
                        s.lanes.len(),
                        s.tx,
                        s.block,
                        s.fee,
                        s.reserve
                    ));
                }
            }
        }
    }
    Ok(0)
}

async fn session(
    client: &ApiClient,
    command: SessionCommand,
    json_out: bool,
) -> anyhow::Result<i32> {
    match command {
        SessionCommand::Open {
            offer,
            tool,
            provider,
            budget,
            max_duration_secs,
            payment,
        } => {
            let body = OpenSessionBody {
                offer: offer.as_deref().map(OfferIdText::from),
                tool: tool.as_deref().map(ToolText::from),
                provider: provider.as_deref().map(PeerIdText::from),
                budget: PositiveAmountText::from(budget.as_str()),
                max_duration_secs: Some(max_duration_secs),
                payment: match payment.as_str() {
                    "ledger" => Some(PaymentKind::Ledger),
                    "escrow" => Some(PaymentKind::Escrow),
                    _ => None,
                },
            };
            let opened: SessionView = with_spinner(
                "opening the session (the provider prepares its sandbox)…",
                json_out,
                client.post("/v1/sessions", &body),
            )
            .await?;
            if json_out {
                emit_json(&opened)?;
            } else {
                emit(&opened.id);
            }
        }
        SessionCommand::Exec {
            session,
            tool,
            args,
            uploads,
            outputs,
        } => {
            let args: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&args)
                .context("--args must be a JSON object, e.g. '{\"file\":\"data/in.txt\"}'")?;
            for (local, remote) in uploads {
                let data = std::fs::read(&local)
                    .with_context(|| format!("reading {}", local.display()))?;
                let _: FileView = client
                    .put_bytes(
                        &format!(
                            "/v1/sessions/{}/files/{}",
                            encode(&session),
                            encode_path(&remote)
                        ),
                        data,
                    )
                    .await?;
            }
            let exec: ExecutionView = client
                .post(
                    &format!("/v1/sessions/{}/executions", encode(&session)),
                    &ExecBody {
                        args,
                        tool: tool.map(ToolText),
                        outputs: outputs
                            .iter()
                            .map(|(remote, _)| PathText(remote.clone()))
                            .collect(),
                    },
                )
                .await?;
            let exit = follow_logs(client, &exec.id, json_out).await?;
            if json_out {
                emit_json(&exit)?;
            }
            // The outputs, as the signed result names them.
            let mut missing = Vec::new();
            for (remote, local) in outputs {
                match exit.artefacts.iter().find(|a| a.path == remote) {
                    Some(a) if a.state == ArtefactState::Kept => {
                        crate::files::get_artefact(client, &exec.id, &remote, local, json_out)
                            .await?;
                    }
                    found => missing.push(format!(
                        "{remote} ({})",
                        found.map_or_else(|| "not named".to_owned(), |a| name_of(&a.state))
                    )),
                }
            }
            if !missing.is_empty() && !json_out {
                eprintln_line(&format!("outputs not kept: {}", missing.join(", ")));
            }
            return Ok(match (exit.state, exit.exit_code) {
                (ExecState::Completed, Some(code)) => code,
                (state, _) => {
                    if !json_out {
                        let why = exit
                            .failure
                            .map_or_else(|| name_of(&state), |f| name_of(&f));
                        eprintln_line(&format!(
                            "execution {} failed ({why}){}",
                            exec.id,
                            exit.detail
                                .as_deref()
                                .map(|d| format!(": {d}"))
                                .unwrap_or_default()
                        ));
                    }
                    1
                }
            });
        }
        SessionCommand::Put {
            session,
            local,
            remote,
        } => crate::files::put(client, &session, &local, remote, json_out).await?,
        SessionCommand::Get {
            session,
            remote,
            local,
            dir,
        } => crate::files::get(client, &session, &remote, local, dir, json_out).await?,
        SessionCommand::Close { session } => {
            let path = format!("/v1/sessions/{}/close", encode(&session));
            let closed: SessionView = with_spinner(
                "closing (waiting for the closing receipt)…",
                json_out,
                client.post(&path, &serde_json::json!({})),
            )
            .await?;
            if json_out {
                emit_json(&closed)?;
            } else {
                emit(&format!(
                    "closed: {} USDC (provider {}, fee {}, reserve {}) over {} receipts",
                    closed.amount,
                    closed.split.provider,
                    closed.split.fee,
                    closed.split.reserve,
                    closed.usage.receipts
                ));
            }
        }
        SessionCommand::List => {
            let sessions: Vec<SessionView> = client.get("/v1/sessions").await?;
            if json_out {
                emit_json(&sessions)?;
            } else {
                for s in &sessions {
                    emit(&session_line(s));
                }
            }
        }
        SessionCommand::Show { session } => {
            let s: SessionView = client
                .get(&format!("/v1/sessions/{}", encode(&session)))
                .await?;
            if json_out {
                emit_json(&s)?;
            } else {
                emit(&session_line(&s));
            }
        }
    }
    Ok(0)
}

#[allow(clippy::print_stderr)]
fn eprintln_line(line: &str) {
    eprintln!("{line}");
}

/// Streams an execution's log (server-sent events) to stdout/stderr; returns the final
/// execution document.
async fn follow_logs(client: &ApiClient, exec: &str, quiet: bool) -> anyhow::Result<ExecutionView> {
    let mut response = client
        .stream(&format!("/v1/executions/{exec}/logs"))
        .await?;
    let mut buffer = String::new();
    while let Some(chunk) = response.chunk().await.context("reading the log stream")? {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut name, mut data) = (String::new(), Vec::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            let event = LogEvent::parse(&name, data.join("\n"))
                .with_context(|| format!("the node sent a malformed `{name}` event"))?;
            match event {
                Some(LogEvent::Stdout(text)) if !quiet => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(text.as_bytes())?;
                    out.flush()?;
                }
                Some(LogEvent::Stderr(text)) if !quiet => {
                    let mut err = std::io::stderr().lock();
                    err.write_all(text.as_bytes())?;
                    err.flush()?;
                }
                Some(LogEvent::Exit(view)) => return Ok(*view),
                Some(LogEvent::Error(detail)) => {
                    anyhow::bail!("the node stopped the log: {detail}")
                }
                _ => {}
            }
        }
    }
    // The stream ended without an exit (node restarted?): ask for the execution.
    Ok(client.get(&format!("/v1/executions/{exec}")).await?)
}
