//! `result verify`: check a provider's signed result of a call offline, and optionally
//! the output bytes someone holds against the hashes the provider signed. Needs no node:
//! anyone given the signed result (`signed_result` of `GET /v1/executions/{id}`) can
//! check what the provider said it computed.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use orien_protocol::{ContentHash, ExecResult, NodeId, Signed};

use crate::commands::emit;

/// `result …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ResultCommand {
    /// Check a signed result: its signature (and signer), and output files against the
    /// hashes it states. Exits 1 when anything does not match.
    Verify {
        /// The signed result, hex (`signed_result` of an execution), or `-` to read it
        /// from standard input.
        signed: String,
        /// The provider that must have signed it (peer id).
        #[arg(long)]
        provider: Option<NodeId>,
        /// A file holding the standard output to check against the signed hash.
        #[arg(long)]
        stdout: Option<PathBuf>,
        /// A file holding the standard error to check against the signed hash.
        #[arg(long)]
        stderr: Option<PathBuf>,
    },
}

/// Runs `result verify`; the process exit code (0 when everything matches).
pub(crate) fn run(command: ResultCommand, json: bool) -> anyhow::Result<i32> {
    let ResultCommand::Verify {
        signed,
        provider,
        stdout,
        stderr,
    } = command;
    let text = if signed == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the signed result from standard input")?;
        text
    } else {
        signed
    };
    let bytes = hex::decode(text.trim().trim_start_matches("0x"))
        .context("the signed result is not hex (copy `signed_result` of an execution)")?;
    let envelope = Signed::<ExecResult>::from_bytes(&bytes)
        .context("these bytes are not a signed execution result")?;
    let result = match provider {
        Some(provider) => envelope.verify_from(&provider),
        None => envelope.verify(),
    }
    .context("the signature does not hold")?;
    let mut mismatches = Vec::new();
    for (name, file, signed_hash) in [
        ("stdout", stdout, result.stdout),
        ("stderr", stderr, result.stderr),
    ] {
        if let Some(file) = file {
            let held = hash_file(&file)?;
            if held != signed_hash {
                mismatches.push(format!(
                    "{name}: {} hashes to {held}, the provider signed {signed_hash}",
                    file.display()
                ));
            }
        }
    }
    if json {
        let report = serde_json::json!({
            "signer": envelope.signer().to_string(),
            "result_hash": envelope.result_hash().to_string(),
            "result": result,
            "mismatches": mismatches,
        });
        emit(&serde_json::to_string_pretty(&report)?);
    } else {
        let exit = &result.exit;
        emit(&format!("signed by   {}", envelope.signer()));
        emit(&format!(
            "call        {} (result #{} of session {})",
            exit.exec, result.seq, result.session
        ));
        emit(&format!(
            "tool        {} (arguments SHA-256 {})",
            result.tool, result.args
        ));
        emit(&format!(
            "exit        {:?}, code {}, wall {}, CPU {}, peak {} bytes",
            exit.outcome,
            exit.exit_code.map_or("none".into(), |c| c.to_string()),
            exit.wall,
            exit.cpu,
            exit.peak_memory_bytes
        ));
        emit(&format!(
            "stdout      {} bytes, SHA-256 {}",
            exit.stdout_bytes, result.stdout
        ));
        emit(&format!(
            "stderr      {} bytes, SHA-256 {}",
            exit.stderr_bytes, result.stderr
        ));
        for mismatch in &mismatches {
            emit(&format!("MISMATCH    {mismatch}"));
        }
    }
    Ok(i32::from(!mismatches.is_empty()))
}

fn hash_file(path: &Path) -> anyhow::Result<ContentHash> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(ContentHash::of(&bytes))
}
