//! `orien-node`: run an ORIEN node. `init` prepares a data directory (identity, API
//! token, payout wallet); `run` starts the network node with its ledger, the sandbox when
//! it sells tools, and the local HTTP API. The other commands are thin clients of that
//! API (`commands`), or read the data directory of a stopped node.

mod args;
mod commands;
mod config_file;
mod files;
mod mcp_stdio;
mod prepare;
mod result;

use std::time::Duration;

use anyhow::Context;
use args::{Cli, Command, ConfigCommand, LedgerCommand, McpCommand, RunArgs, WalletCommand};
use libp2p::Multiaddr;
use orien_daemon::daemon::{LEDGER_DIR, WALLET_FILE};
use orien_daemon::network::ConnectionBudget;
use orien_daemon::{Daemon, DaemonConfig, NodeConfig, identity};
use orien_ledger::chain::Wallet;
use orien_ledger::{Store, StoreOptions};
use orien_provider::ProviderConfig;
use orien_web_api::BearerToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches)?;
    if let (Command::Run(args), Some(run_matches)) =
        (&mut cli.command, matches.subcommand_matches("run"))
    {
        let (path, explicit) = match &cli.config {
            Some(path) => (path.clone(), true),
            None => (cli.data_dir.join(config_file::CONFIG_FILE), false),
        };
        config_file::FileConfig::load(&path, explicit)?.apply(args, run_matches)?;
    }
    // A running node logs what it does; one-shot commands only what went wrong.
    let default_filter = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORIEN_LOG")
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Init { role } => {
            let key = identity::create(&cli.data_dir)
                .with_context(|| format!("initialising {}", cli.data_dir.display()))?;
            let config = cli.data_dir.join(config_file::CONFIG_FILE);
            if !config.exists() {
                std::fs::write(&config, config_file::template(&role))
                    .with_context(|| format!("writing {}", config.display()))?;
            }
            BearerToken::create_or_load(&cli.data_dir)?;
            let wallet = Wallet::load_or_create(&cli.data_dir.join(WALLET_FILE))
                .context("creating the payout wallet")?;
            emit(&format!(
                "created node {} in {}",
                key.node_id(),
                cli.data_dir.display()
            ));
            emit(&format!("payout wallet: {}", wallet.address()));
            emit(&format!("config: {}", config.display()));
            emit(&format!(
                "API token: {}",
                cli.data_dir.join(orien_web_api::auth::TOKEN_FILE).display()
            ));
        }
        Command::Id => {
            let key = identity::load(&cli.data_dir).context("run `orien-node init` first")?;
            emit(&key.node_id().to_string());
        }
        Command::Wallet {
            command: WalletCommand::Address,
        } => {
            let wallet = Wallet::load(&cli.data_dir.join(WALLET_FILE))
                .context("run `orien-node init` first")?;
            emit(&wallet.address().to_string());
        }
        Command::Wallet {
            command: WalletCommand::Balance,
        } => {
            let wallet: serde_json::Value = client(&cli.data_dir, cli.api_url.as_deref())?
                .get("/v1/wallet")
                .await?;
            if cli.json {
                emit(&serde_json::to_string_pretty(&wallet)?);
            } else {
                for key in ["address", "usdc", "earnings", "escrow", "chain_id"] {
                    emit(&format!(
                        "{key:<9} {}",
                        wallet[key].to_string().trim_matches('"')
                    ));
                }
            }
        }
        Command::Wallet {
            command: WalletCommand::Fund { to, amount },
        } => {
            let api = client(&cli.data_dir, cli.api_url.as_deref())?;
            let body = serde_json::json!({"to": to.to_string(), "amount": amount});
            let funded: serde_json::Value = commands::with_spinner(
                "funding the lane, waiting for confirmations…",
                cli.json,
                api.post("/v1/wallet/fund", &body),
            )
            .await?;
            if cli.json {
                emit(&serde_json::to_string_pretty(&funded)?);
            } else {
                emit(&format!(
                    "lane {} now holds {} USDC (tx {})",
                    funded["lane"].as_str().unwrap_or("?"),
                    funded["deposit"].as_str().unwrap_or("?"),
                    funded["tx"].as_str().unwrap_or("?")
                ));
            }
        }
        Command::Wallet {
            command: WalletCommand::Withdraw { fees, reserve },
        } => {
            let api = client(&cli.data_dir, cli.api_url.as_deref())?;
            let what = if fees {
                "fees"
            } else if reserve {
                "reserve"
            } else {
                "earnings"
            };
            let body = serde_json::json!({ "what": what });
            let withdrawn: serde_json::Value = commands::with_spinner(
                &format!("withdrawing {what}, waiting for confirmations…"),
                cli.json,
                api.post("/v1/wallet/withdraw", &body),
            )
            .await?;
            if cli.json {
                emit(&serde_json::to_string_pretty(&withdrawn)?);
            } else {
                emit(&format!(
                    "{} USDC of {what} withdrawn to {} (tx {})",
                    withdrawn["amount"].as_str().unwrap_or("?"),
                    withdrawn["to"].as_str().unwrap_or("?"),
                    withdrawn["tx"].as_str().unwrap_or("?")
                ));
            }
        }
        Command::Wallet {
            command: WalletCommand::Lanes,
        } => {
            let lanes: serde_json::Value = client(&cli.data_dir, cli.api_url.as_deref())?
                .get("/v1/lanes")
                .await?;
            if cli.json {
                emit(&serde_json::to_string_pretty(&lanes)?);
            } else {
                commands::print_lanes(&lanes);
            }
        }
        Command::Wallet {
            command: WalletCommand::Settlements,
        } => {
            let history: serde_json::Value = client(&cli.data_dir, cli.api_url.as_deref())?
                .get("/v1/settlements")
                .await?;
            if cli.json {
                emit(&serde_json::to_string_pretty(&history)?);
            } else {
                commands::print_settlements(&history);
            }
        }
        Command::Wallet {
            command: WalletCommand::Reclaim { to, finish },
        } => {
            let api = client(&cli.data_dir, cli.api_url.as_deref())?;
            let body = serde_json::json!({ "to": to.to_string() });
            let (path, waiting) = if finish {
                ("/v1/wallet/reclaim/finish", "taking the deposit back")
            } else {
                ("/v1/wallet/reclaim", "asking to close the lane")
            };
            let answer: serde_json::Value = commands::with_spinner(
                &format!("{waiting}, waiting for confirmations…"),
                cli.json,
                api.post(path, &body),
            )
            .await?;
            if cli.json {
                emit(&serde_json::to_string_pretty(&answer)?);
            } else if finish {
                emit(&format!(
                    "{} USDC back in the wallet from lane {} (tx {})",
                    answer["refund"].as_str().unwrap_or("?"),
                    answer["lane"].as_str().unwrap_or("?"),
                    answer["tx"].as_str().unwrap_or("?")
                ));
            } else {
                let ends = answer["thaw_ends_at"].as_u64().unwrap_or(0);
                emit(&format!(
                    "lane {} closes: the provider may settle until {}; then run `orien-node wallet reclaim --to {to} --finish` (tx {})",
                    answer["lane"].as_str().unwrap_or("?"),
                    orien_protocol::Timestamp(ends.saturating_mul(1000)).utc(),
                    answer["tx"].as_str().unwrap_or("?")
                ));
            }
        }
        Command::Ledger {
            command: LedgerCommand::Balances,
        } => {
            let balances: serde_json::Value = client(&cli.data_dir, cli.api_url.as_deref())?
                .get("/v1/ledger/balances")
                .await?;
            if cli.json {
                emit(&serde_json::to_string_pretty(&balances)?);
            } else {
                for b in balances.as_array().into_iter().flatten() {
                    emit(&format!(
                        "{:>14} µUSDC  {}",
                        b["net_micros"],
                        b["account"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
        Command::Ledger {
            command: LedgerCommand::Export { format },
        } => {
            let store = open_ledger_read_only(&cli.data_dir)?;
            let out = std::io::stdout().lock();
            match format.as_str() {
                "json" => store.export_json(out)?,
                _ => store.export_csv(out)?,
            }
        }
        Command::Client(commands::ClientCommand::Tools {
            command: Some(commands::ToolsCommand::Prepare { file }),
        }) => prepare::prepare(&file, cli.json).await?,
        Command::Client(commands::ClientCommand::Tools {
            command: Some(commands::ToolsCommand::Validate { file }),
        }) => {
            let (config, tools) = ProviderConfig::load(&file)?;
            emit(&format!(
                "{}: {} tool(s), engine at {}",
                file.display(),
                tools.len(),
                config.engine.socket.display()
            ));
            for tool in &tools {
                emit(&format!(
                    "  {:<10} {} ({}), {}/exec-min, {}/GiB of artefacts kept, workspace {} {}",
                    tool.name(),
                    tool.image(),
                    tool.version(),
                    tool.pricing().exec_per_minute,
                    tool.pricing().artefact_per_gib,
                    orien_provider::ByteSize(tool.limits().workspace_bytes),
                    match tool.workspace_on() {
                        orien_provider::WorkspaceOn::Memory => "in memory",
                        orien_provider::WorkspaceOn::Disk => "on disk",
                    }
                ));
            }
            if tools
                .iter()
                .any(|t| t.workspace_on() == orien_provider::WorkspaceOn::Disk)
            {
                // A tool with its workspace on disk needs what the host may lack.
                let dir = config.engine.workspaces_in(&cli.data_dir);
                let finding = orien_provider::doctor::disk_workspaces(&dir).await;
                commands::print_findings(std::slice::from_ref(&finding));
                anyhow::ensure!(
                    finding.severity != orien_provider::doctor::Severity::Fail,
                    "this host cannot keep workspaces on disk; the fix is above"
                );
            }
        }
        Command::Client(command) => {
            let code = commands::run(
                &client(&cli.data_dir, cli.api_url.as_deref())?,
                command,
                cli.json,
            )
            .await?;
            if code != 0 {
                std::process::exit(code);
            }
        }
        Command::Doctor {
            provider_config,
            listen,
            api,
        } => {
            let (engine, tools) = match &provider_config {
                Some(path) => {
                    let (config, tools) = orien_provider::ProviderConfig::load(path)?;
                    (config.engine, tools)
                }
                None => (orien_provider::EngineConfig::default(), Vec::new()),
            };
            let (path, explicit) = match &cli.config {
                Some(path) => (path.clone(), true),
                None => (cli.data_dir.join(config_file::CONFIG_FILE), false),
            };
            let (file_listen, file_api) =
                config_file::FileConfig::load(&path, explicit)?.addresses();
            let listen = if listen.is_empty() {
                file_listen.unwrap_or_else(args::default_listen)
            } else {
                listen
            };
            let api = api.or(file_api).unwrap_or(args::DEFAULT_API);
            let mut tcp: Vec<std::net::SocketAddr> =
                listen.iter().filter_map(tcp_address).collect();
            tcp.push(api);
            let mut findings =
                orien_provider::doctor::check_host(&engine, &cli.data_dir, &tools).await;
            findings.extend(orien_provider::doctor::ports(&tcp));
            if cli.json {
                emit(&serde_json::to_string_pretty(&findings)?);
            } else {
                commands::print_findings(&findings);
            }
            let failed = findings
                .iter()
                .filter(|f| f.severity == orien_provider::doctor::Severity::Fail)
                .count();
            anyhow::ensure!(failed == 0, "{failed} check(s) failed; the fixes are above");
        }
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            let api = client(&cli.data_dir, cli.api_url.as_deref())
                .map(|c| c.base().to_owned())
                .ok();
            let config = serde_json::json!({
                "data_dir": cli.data_dir,
                "identity": cli.data_dir.join(identity::IDENTITY_FILE),
                "api_token": cli.data_dir.join(orien_web_api::auth::TOKEN_FILE),
                "wallet": cli.data_dir.join(WALLET_FILE),
                "ledger": cli.data_dir.join(LEDGER_DIR),
                "config_file": cli.config.clone().unwrap_or_else(|| cli.data_dir.join(config_file::CONFIG_FILE)),
                "api_url": api,
                "environment": std::env::vars()
                    .filter(|(k, _)| k.starts_with("ORIEN_"))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            });
            if cli.json {
                emit(&serde_json::to_string_pretty(&config)?);
            } else {
                for (key, value) in config.as_object().into_iter().flatten() {
                    emit(&format!("{key:<12} {value}"));
                }
            }
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "orien-node", &mut std::io::stdout());
        }
        Command::Ledger {
            command: LedgerCommand::Verify,
        } => {
            let json = cli.json;
            let path = cli.data_dir.join(LEDGER_DIR);
            let store = open_ledger_read_only(&cli.data_dir)?;
            let report = store
                .verify()
                .with_context(|| format!("the ledger at {} is inconsistent", path.display()))?;
            if json {
                emit(&serde_json::to_string(&report)?);
            } else {
                emit(&format!(
                    "ledger OK: {} sessions, {} receipts, {} postings, {} accounts, {} µUSDC moved",
                    report.sessions,
                    report.receipts,
                    report.postings,
                    report.accounts,
                    report.total_moved_micros
                ));
            }
        }
        Command::Result { command } => {
            let code = result::run(command, cli.json)?;
            if code != 0 {
                std::process::exit(code);
            }
        }
        Command::Run(args) => run(&cli.data_dir, *args).await?,
        Command::Mcp {
            client,
            command: None,
        } => {
            mcp_stdio::serve(&cli.data_dir, cli.api_url.as_deref(), client.as_deref()).await?;
        }
        Command::Mcp {
            command: Some(McpCommand::Client { command }),
            ..
        } => mcp_stdio::clients(&cli.data_dir, command, cli.json)?,
    }
    Ok(())
}

use commands::emit;

fn client(
    data_dir: &std::path::Path,
    api_url: Option<&str>,
) -> anyhow::Result<orien_daemon::client::ApiClient> {
    Ok(orien_daemon::client::ApiClient::for_data_dir(
        data_dir, api_url,
    )?)
}

fn open_ledger_read_only(data_dir: &std::path::Path) -> anyhow::Result<Store> {
    let path = data_dir.join(LEDGER_DIR);
    Store::open_with(
        &path,
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .with_context(|| {
        format!(
            "opening the ledger at {} read-only (run `orien-node init` first?)",
            path.display()
        )
    })
}

/// The connection budget of `--max-peers`.
fn connection_budget(max_peers: usize) -> anyhow::Result<ConnectionBudget> {
    let budget = ConnectionBudget::up_to(max_peers);
    anyhow::ensure!(
        budget.low >= ConnectionBudget::MIN_LOW,
        "--max-peers {max_peers} (max_peers in config.toml) is too few: the node keeps two \
         thirds of it after closing connections, and its gossip needs {} peers; use 12 or more",
        ConnectionBudget::MIN_LOW
    );
    Ok(budget)
}

/// `orien-node run`: starts the node of `data_dir` and serves until interrupted.
async fn run(data_dir: &std::path::Path, args: RunArgs) -> anyhow::Result<()> {
    let RunArgs {
        listen,
        bootstrap,
        relay_server,
        max_peers,
        external_addresses,
        offer_ttl_secs,
        api,
        api_allow_remote,
        api_hosts,
        provider_config,
        payout,
        timing,
        chain,
        mcp,
    } = args;
    if !api.ip().is_loopback() && !api_allow_remote {
        anyhow::bail!(
            "--api {api} is not a loopback address; pass --api-allow-remote if the API must be reachable from other machines"
        );
    }
    let config = DaemonConfig {
        node: NodeConfig {
            listen,
            bootstrap,
            tuning: orien_daemon::network::NetworkTuning {
                relay_server,
                connections: connection_budget(max_peers)?,
                ..Default::default()
            },
            external_addresses,
            offer_ttl: Duration::from_secs(offer_ttl_secs.max(1)),
            ..NodeConfig::default()
        },
        sessions: timing.session_config()?,
        provider: provider_config,
        payout,
        chain: chain.settings()?,
        settle_on_shutdown: !chain.no_settle_on_shutdown,
        api,
        mcp: mcp.config(api, &api_hosts, data_dir),
        api_hosts,
    };
    let daemon = Daemon::start(data_dir, config).await?;
    if let Some((escrow, chain_id, wallet)) = daemon.escrow() {
        emit(&format!(
            "paying through escrow {escrow} on chain {chain_id} as {wallet}"
        ));
    }
    for addr in daemon.listen_addrs() {
        emit(&format!("listening on {addr}"));
    }
    for (tool, id) in daemon.offers() {
        emit(&format!("offering {tool} as {id}"));
    }
    emit(&format!("API on http://{}", daemon.api_addr()));
    daemon.serve(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The TCP socket address of a `/ip4|ip6/…/tcp/…` listen address (`None` for QUIC,
/// relays and names).
fn tcp_address(addr: &Multiaddr) -> Option<std::net::SocketAddr> {
    use libp2p::multiaddr::Protocol;
    let mut parts = addr.iter();
    let ip: std::net::IpAddr = match parts.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    match (parts.next()?, parts.next()) {
        (Protocol::Tcp(port), None) => Some((ip, port).into()),
        _ => None,
    }
}
