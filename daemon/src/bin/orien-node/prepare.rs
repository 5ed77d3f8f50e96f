//! `orien-node tools prepare FILE`: makes every image a provider config names present in
//! the Docker engine — building `orien/<name>` images from their local recipes, pulling
//! the rest — with a progress bar per image on a terminal.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use orien_protocol::ToolName;
use orien_provider::images::{self, Prepared, Progress};
use orien_provider::{Engine, ProviderConfig};
use serde_json::json;

use crate::commands::emit;

/// Prepares the images of `file`'s tools; prints one line (or a JSON document) per image.
pub(crate) async fn prepare(file: &Path, json_out: bool) -> anyhow::Result<()> {
    let (config, tools) = ProviderConfig::load(file)?;
    let config_dir = file
        .canonicalize()
        .with_context(|| format!("{}", file.display()))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let engine = Engine::connect(&config.engine).await?;
    // One entry per image, with the tools that use it.
    let mut wanted: BTreeMap<&str, Vec<&ToolName>> = BTreeMap::new();
    for tool in &tools {
        wanted.entry(tool.image()).or_default().push(tool.name());
    }
    let draw = !json_out && std::io::stderr().is_terminal();
    let mut report = Vec::new();
    for (n, (image, users)) in wanted.iter().enumerate() {
        let bar = draw.then(|| new_bar(&format!("[{}/{}] {image}", n + 1, wanted.len())));
        let (done, digest) = images::prepare(&engine, image, &config_dir, |p| {
            show(bar.as_ref(), json_out, &p);
        })
        .await
        .with_context(|| format!("preparing image `{image}`"))?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        for tool in tools.iter().filter(|t| t.image() == *image) {
            if let Some(pinned) = tool.pinned_digest()
                && pinned != digest
            {
                anyhow::bail!(
                    "tool `{}`: image `{image}` is {digest}, but the config pins {pinned}; update `image_digest` in {} or rebuild the pinned image",
                    tool.name(),
                    file.display()
                );
            }
        }
        let names: Vec<String> = users.iter().map(ToString::to_string).collect();
        if !json_out {
            emit(&format!(
                "{image:<28} {:<7} {digest}  (tools: {})",
                label(done),
                names.join(", ")
            ));
        }
        report.push(json!({
            "image": image,
            "prepared": done,
            "digest": digest.to_string(),
            "tools": names,
        }));
    }
    if json_out {
        emit(&serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

fn new_bar(prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(prefix.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Draws one progress event: on the bar when there is one, else as a log line on
/// stderr (never with `--json`, whose stdout is the document).
fn show(bar: Option<&ProgressBar>, json_out: bool, progress: &Progress) {
    match (bar, progress) {
        (Some(bar), Progress::Bytes { current, total }) => {
            if bar.length() != Some(*total) {
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_length(*total);
            }
            bar.set_position(*current);
        }
        (Some(bar), Progress::Line(line) | Progress::Status(line)) => {
            bar.set_message(line.trim().to_owned());
        }
        (None, Progress::Line(line) | Progress::Status(line)) if !json_out => {
            log_line(line);
        }
        (None, _) => {}
    }
}

#[allow(clippy::print_stderr)]
fn log_line(line: &str) {
    eprintln!("  | {line}");
}

fn label(done: Prepared) -> &'static str {
    match done {
        Prepared::Ready => "ready",
        Prepared::Built => "built",
        Prepared::Pulled => "pulled",
    }
}
