//! `orien-node session put|get`: files and directories in and out of a rented
//! session's workspace through the node's API, streamed (a directory as a tar), with
//! a progress bar on a terminal and the SHA-256 checked at the end.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::StreamExt;
use orien_daemon::client::{ApiClient, encode_component, encode_path};
use orien_web_api::sessions::FileView;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::commands::{emit, emit_json};

/// A bar of `total` bytes on stderr, or nothing when stderr is not a terminal or the
/// output is JSON.
fn bar(total: u64, what: &str, json_out: bool) -> indicatif::ProgressBar {
    if json_out || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

/// Packs the directory `dir` into a tar file beside the system's temporary files:
/// regular files and directories, relative to it; links and the like are left out.
fn pack(dir: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let file = tempfile::NamedTempFile::new().context("a temporary file for the archive")?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file.reopen()?));
    builder.follow_symlinks(false);
    for entry in walk(dir)? {
        let relative = entry.strip_prefix(dir).unwrap_or(&entry);
        let meta = std::fs::symlink_metadata(&entry)?;
        if meta.is_dir() {
            builder.append_dir(relative, &entry)?;
        } else if meta.is_file() {
            builder.append_path_with_name(&entry, relative)?;
        }
    }
    builder
        .into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(file)
}

/// Every path under `dir`, parents before what they hold.
fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        let mut children: Vec<PathBuf> = std::fs::read_dir(&next)
            .with_context(|| format!("reading {}", next.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        children.sort();
        for child in children {
            if std::fs::symlink_metadata(&child)?.is_dir() {
                pending.push(child.clone());
            }
            out.push(child);
        }
    }
    Ok(out)
}

/// Uploads `local` (a file, or a directory as a tar) to `remote` in `session`.
pub(crate) async fn put(
    client: &ApiClient,
    session: &str,
    local: &Path,
    remote: Option<String>,
    json_out: bool,
) -> anyhow::Result<()> {
    let meta = std::fs::metadata(local).with_context(|| format!("reading {}", local.display()))?;
    let (packed, source, content_type, remote) = if meta.is_dir() {
        let packed = pack(local)?;
        let path = packed.path().to_owned();
        (
            Some(packed),
            path,
            "application/x-tar",
            remote.unwrap_or_default(),
        )
    } else {
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("the file has no name; give the workspace path")?;
        (
            None,
            local.to_owned(),
            "application/octet-stream",
            remote.unwrap_or(name),
        )
    };
    let file = tokio::fs::File::open(&source).await?;
    let size = file.metadata().await?.len();
    let progress = bar(size, &format!("put {}", local.display()), json_out);
    // What was sent, hashed on the way, to check against what the provider stored.
    let hasher = std::sync::Arc::new(std::sync::Mutex::new(Sha256::new()));
    let (counted, hashing) = (progress.clone(), hasher.clone());
    let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |piece| {
        if let Ok(piece) = &piece {
            counted.inc(piece.len() as u64);
            if let Ok(mut hasher) = hashing.lock() {
                hasher.update(piece);
            }
        }
        piece
    });
    let url = if remote.is_empty() {
        format!("/v1/sessions/{}/files", encode_component(session))
    } else {
        format!(
            "/v1/sessions/{}/files/{}",
            encode_component(session),
            encode_path(&remote)
        )
    };
    let view: FileView = client
        .put_stream(&url, content_type, size, reqwest::Body::wrap_stream(body))
        .await?;
    progress.finish_and_clear();
    drop(packed);
    let sent = hasher
        .lock()
        .map(|h| hex::encode(h.clone().finalize()))
        .unwrap_or_default();
    if let Some(stored) = &view.sha256
        && *stored != sent
    {
        anyhow::bail!("the provider stored SHA-256 {stored}, but {sent} was sent");
    }
    if json_out {
        emit_json(&view)?;
    } else {
        emit(&format!(
            "{} {} bytes  sha256 {}",
            if view.path.is_empty() {
                "."
            } else {
                &view.path
            },
            view.size,
            view.sha256.as_deref().unwrap_or("?")
        ));
    }
    Ok(())
}

/// Downloads `remote` of `session` (a file, or with `dir` a directory, unpacked) into
/// `local`.
pub(crate) async fn get(
    client: &ApiClient,
    session: &str,
    remote: &str,
    local: Option<PathBuf>,
    dir: bool,
    json_out: bool,
) -> anyhow::Result<()> {
    let url = if remote.is_empty() {
        format!("/v1/sessions/{}/files", encode_component(session))
    } else {
        format!(
            "/v1/sessions/{}/files/{}",
            encode_component(session),
            encode_path(remote)
        )
    };
    fetch(client, &url, remote, local, dir, json_out).await
}

/// Downloads the artefact the call `exec` left at `remote` (the copy its provider kept
/// when it ended) into `local` (default: the path's file name), checked against the
/// SHA-256 the node announces.
pub(crate) async fn get_artefact(
    client: &ApiClient,
    exec: &str,
    remote: &str,
    local: Option<PathBuf>,
    json_out: bool,
) -> anyhow::Result<()> {
    let url = format!(
        "/v1/executions/{}/artefacts/{}",
        encode_component(exec),
        encode_path(remote)
    );
    fetch(client, &url, remote, local, false, json_out).await
}

/// Downloads `url` (the file, or with `dir` the directory's tar, at `remote`) into
/// `local`, written beside it and renamed once whole and matching its SHA-256.
async fn fetch(
    client: &ApiClient,
    url: &str,
    remote: &str,
    local: Option<PathBuf>,
    dir: bool,
    json_out: bool,
) -> anyhow::Result<()> {
    let accept = if dir {
        "application/x-tar"
    } else {
        "application/octet-stream"
    };
    let response = client.get_accepting(url, accept).await?;
    let size = response.content_length().unwrap_or(0);
    let etag = response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_owned());
    let local = local.unwrap_or_else(|| {
        let name = remote.rsplit('/').next().unwrap_or(remote);
        PathBuf::from(if name.is_empty() { "workspace" } else { name })
    });
    let progress = bar(size, &format!("get {remote}"), json_out);
    // Into a file beside the target, renamed once whole and checked.
    let partial = if dir {
        tempfile::NamedTempFile::new()?.into_temp_path()
    } else {
        let parent = local
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        tempfile::NamedTempFile::new_in(parent)?.into_temp_path()
    };
    let mut out = tokio::fs::File::create(&partial).await?;
    let mut hasher = Sha256::new();
    let mut body = response.bytes_stream();
    let mut read: u64 = 0;
    while let Some(piece) = body.next().await {
        let piece = piece.context("the download broke off; run the command again")?;
        hasher.update(&piece);
        out.write_all(&piece).await?;
        read += piece.len() as u64;
        progress.inc(piece.len() as u64);
    }
    out.sync_all().await?;
    drop(out);
    progress.finish_and_clear();
    let sha256 = hex::encode(hasher.finalize());
    if let Some(etag) = &etag
        && *etag != sha256
    {
        anyhow::bail!("the download's SHA-256 is {sha256}, not the {etag} the node announced");
    }
    if dir {
        std::fs::create_dir_all(&local)?;
        let archive = std::fs::File::open(&partial)?;
        tar::Archive::new(std::io::BufReader::new(archive))
            .unpack(&local)
            .with_context(|| format!("unpacking into {}", local.display()))?;
    } else {
        partial
            .persist(&local)
            .with_context(|| format!("writing {}", local.display()))?;
    }
    if json_out {
        emit_json(&serde_json::json!({
            "path": remote, "local": local.display().to_string(), "size": read, "sha256": sha256,
        }))?;
    } else {
        emit(&format!(
            "{} {read} bytes  sha256 {sha256}",
            local.display()
        ));
    }
    Ok(())
}
