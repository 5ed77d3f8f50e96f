//! `orien-sim`: run, list and report on ORIEN market simulations.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use orien_sim::scenario::KEYS;
use orien_sim::{Scenario, model};

/// Simulate whole ORIEN markets before running them.
///
/// A scenario file (TOML) describes the market; `orien-sim run` simulates it in
/// virtual time and writes `report.json` and `report.md` to the output directory.
/// The same scenario and seed always give the same `report.json`, byte for byte.
#[derive(Debug, Parser)]
#[command(name = "orien-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a scenario and write its report.
    Run {
        /// The scenario file (see `orien-sim list`).
        scenario: PathBuf,
        /// Seed for every draw (default: the scenario's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Where to write report.json and report.md (default: sim-out/<name>-<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// `model`: this discrete-event model (any size). `network`: real ORIEN nodes on
        /// an in-process network in simulated time, run by `orien-sim-network` (built
        /// from simulations/network), found beside this binary or on PATH.
        #[arg(long, value_enum, default_value_t = Mode::Model)]
        mode: Mode,
        /// Network mode only: simulated minutes of demand (default: the scenario's
        /// `duration_minutes`).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        minutes: Option<u32>,
    },
    /// Two reports side by side (Markdown): the same scenario in both modes, say.
    Compare {
        /// A directory `orien-sim run` wrote.
        first: PathBuf,
        /// Another.
        second: PathBuf,
        /// Write the table here as well as printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Draw a report's plots again (PNG and SVG) from its report.json.
    Plot {
        /// A directory `orien-sim run` wrote.
        dir: PathBuf,
    },
    /// List the scenarios in a directory, with what each shows.
    List {
        /// The directory (default: simulations/scenarios, found from here or beside the
        /// source).
        dir: Option<PathBuf>,
    },
}

/// Which simulator runs a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// The discrete-event model.
    Model,
    /// Real nodes in simulated time (orien-sim-network).
    Network,
}

fn keys_help() -> String {
    let width = KEYS.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text =
        String::from("Scenario keys (TOML; [[tools]] and [[network.partitions]] repeat):\n");
    for (key, meaning) in KEYS {
        text.push_str(&format!("  {key:width$}  {meaning}\n"));
    }
    text
}

fn main() -> ExitCode {
    let matches = Cli::command()
        .after_long_help(keys_help())
        .mut_subcommand("run", |run| run.after_long_help(keys_help()))
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("orien-sim: {e:#}");
            }
            ExitCode::from(2)
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            scenario,
            seed,
            out,
            quiet,
            mode: Mode::Model,
            minutes: None,
        } => run(&scenario, seed, out, quiet),
        Command::Run {
            mode: Mode::Model,
            minutes: Some(_),
            ..
        } => anyhow::bail!(
            "--minutes is for network mode; model mode runs the scenario's duration_minutes"
        ),
        Command::Run {
            scenario,
            seed,
            out,
            quiet,
            mode: Mode::Network,
            minutes,
        } => network(&scenario, seed, out, quiet, minutes),
        Command::Compare { first, second, out } => compare(&first, &second, out),
        Command::Plot { dir } => plot(&dir),
        Command::List { dir } => list(dir),
    }
}

#[allow(clippy::print_stdout)]
fn run(
    path: &Path,
    seed: Option<u64>,
    out: Option<PathBuf>,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(path)?;
    let seed = seed.unwrap_or(scenario.seed);
    let out =
        out.unwrap_or_else(|| PathBuf::from("sim-out").join(format!("{}-{seed}", scenario.name)));
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(u64::from(scenario.duration_minutes))
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:40}] {pos}/{len} simulated minutes, {elapsed}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(format!(
        "{} ({} nodes, seed {seed})",
        scenario.name,
        scenario.node_count()
    ));
    let started = Instant::now();
    let report = model::run(&scenario, seed, &mut |p| {
        bar.set_position(u64::from(p.minute))
    });
    bar.finish_and_clear();
    let (summary, code) = orien_sim::output::finish(&report, started.elapsed(), &out)?;
    println!("{summary}");
    Ok(code)
}

/// Network mode is a binary of its own (its workspace patches libp2p's timers): hand
/// the run over to it.
fn network(
    scenario: &Path,
    seed: Option<u64>,
    out: Option<PathBuf>,
    quiet: bool,
    minutes: Option<u32>,
) -> anyhow::Result<ExitCode> {
    const NAME: &str = "orien-sim-network";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(NAME)))
        .filter(|path| path.is_file());
    let binary = beside.unwrap_or_else(|| PathBuf::from(NAME));
    let mut command = std::process::Command::new(&binary);
    command.arg("run").arg(scenario);
    if let Some(seed) = seed {
        command.arg("--seed").arg(seed.to_string());
    }
    if let Some(out) = out {
        command.arg("--out").arg(out);
    }
    if let Some(minutes) = minutes {
        command.arg("--minutes").arg(minutes.to_string());
    }
    if quiet {
        command.arg("--quiet");
    }
    let status = match command.status() {
        Ok(status) => status,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "network mode runs in {NAME}, which is not beside this binary nor on PATH; \
             build it with `cargo build --release --manifest-path simulations/network/Cargo.toml` \
             (same CARGO_TARGET_DIR as orien-sim)"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot run {}", binary.display())),
    };
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(2)),
        None => ExitCode::from(2),
    })
}

fn load_report(dir: &Path) -> anyhow::Result<orien_sim::Report> {
    let file = dir.join("report.json");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not an orien-sim report", file.display()))
}

#[allow(clippy::print_stdout)]
fn compare(first: &Path, second: &Path, out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let table = orien_sim::compare::side_by_side(&load_report(first)?, &load_report(second)?);
    if let Some(out) = out {
        std::fs::write(&out, &table).with_context(|| format!("cannot write {}", out.display()))?;
    }
    print!("{table}");
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn plot(dir: &Path) -> anyhow::Result<ExitCode> {
    let report = load_report(dir)?;
    for written in orien_sim::plot::draw_all(&report, dir)? {
        println!("{}", written.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn list(dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| {
        let here = PathBuf::from("simulations/scenarios");
        if here.is_dir() {
            here
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
        }
    });
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    println!(
        "{:<18} {:>7} {:>7}  what it shows",
        "scenario", "nodes", "minutes"
    );
    for file in &files {
        match Scenario::load(file) {
            Ok(s) => {
                let first = s
                    .description
                    .split(". ")
                    .next()
                    .unwrap_or("")
                    .trim_end_matches('.');
                println!(
                    "{:<18} {:>7} {:>7}  {first}.",
                    s.name,
                    s.node_count(),
                    s.duration_minutes
                );
            }
            Err(e) => println!("{:<18} unusable: {e}", file.display()),
        }
    }
    println!("\nrun one: orien-sim run {}/<scenario>.toml", dir.display());
    Ok(ExitCode::SUCCESS)
}
