//! Preparing the images of whitelisted tools before a provider starts.
//!
//! An image already in the engine is ready. A missing `orien/<name>` image is built by
//! its local recipe, `<config dir>/images/<name>/build` (no registry is needed; the
//! recipe receives the exact reference to build in `ORIEN_IMAGE`); any other missing
//! image is pulled through the engine. Progress — the recipe's lines, the pull's bytes —
//! is reported to a callback, so a terminal can draw it and a script can log it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use futures_util::StreamExt;
use orien_protocol::ImageDigest;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::engine::{Engine, EngineError};

/// Where a missing image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A local recipe: an executable that builds the image.
    Recipe(PathBuf),
    /// The image's registry, through the engine.
    Registry,
}

impl ImageSource {
    /// The source of `image` for a config file in `config_dir`: the recipe of an
    /// `orien/<name>` image when it exists, the registry otherwise.
    pub fn of(image: &str, config_dir: &Path) -> Self {
        let repo = image.split(['@', ':']).next().unwrap_or(image);
        match repo.strip_prefix("orien/") {
            Some(name) if !name.is_empty() && !name.contains(['/', '.']) => {
                let recipe = config_dir.join("images").join(name).join("build");
                if recipe.is_file() {
                    Self::Recipe(recipe)
                } else {
                    Self::Registry
                }
            }
            _ => Self::Registry,
        }
    }
}

/// What preparing an image did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Prepared {
    /// It was already in the engine.
    Ready,
    /// Its recipe built it.
    Built,
    /// The engine pulled it.
    Pulled,
}

/// Progress of one image's preparation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A line the recipe printed (stdout or stderr).
    Line(String),
    /// Bytes pulled so far, of the total announced so far (layers announce their size
    /// as they start, so the total grows).
    Bytes {
        /// Pulled.
        current: u64,
        /// Announced.
        total: u64,
    },
    /// A status the engine reported for the pull (`Pulling fs layer`, …).
    Status(String),
}

/// Preparing an image failed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The engine refused or is unreachable.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The recipe could not be started.
    #[error("could not run {recipe}: {source}")]
    Spawn {
        /// The recipe.
        recipe: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The recipe failed; its last lines say why.
    #[error("{recipe} failed ({status}):\n{tail}")]
    Recipe {
        /// The recipe.
        recipe: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its last output lines.
        tail: String,
    },
    /// The recipe or pull finished but the engine still has no such image.
    #[error("{image} is still missing after {how}")]
    StillMissing {
        /// The image.
        image: String,
        /// What was tried.
        how: &'static str,
    },
}

/// Lines of a failed recipe's output kept for its error.
const TAIL_LINES: usize = 12;

/// The image's id in the engine, or `None` when it has no such image.
pub async fn present(engine: &Engine, image: &str) -> Result<Option<ImageDigest>, EngineError> {
    match engine.docker().inspect_image(image).await {
        Ok(found) => {
            let id = found.id.unwrap_or_default();
            id.parse().map(Some).map_err(|_| EngineError::Refused {
                operation: "inspect image",
                detail: format!("image `{image}` has an unexpected id `{id}`"),
            })
        }
        Err(e) if EngineError::is_not_found(&e) => Ok(None),
        Err(e) => Err(engine.error("inspect image", e)),
    }
}

/// Makes `image` present: nothing when it is, else builds it from its recipe under
/// `config_dir` or pulls it. Returns what was done and the image's id.
pub async fn prepare(
    engine: &Engine,
    image: &str,
    config_dir: &Path,
    mut progress: impl FnMut(Progress),
) -> Result<(Prepared, ImageDigest), PrepareError> {
    if let Some(id) = present(engine, image).await? {
        return Ok((Prepared::Ready, id));
    }
    let (done, how) = match ImageSource::of(image, config_dir) {
        ImageSource::Recipe(recipe) => {
            build(&recipe, image, &mut progress).await?;
            (Prepared::Built, "its recipe ran")
        }
        ImageSource::Registry => {
            pull(engine, image, &mut progress).await?;
            (Prepared::Pulled, "the pull")
        }
    };
    match present(engine, image).await? {
        Some(id) => Ok((done, id)),
        None => Err(PrepareError::StillMissing {
            image: image.to_owned(),
            how,
        }),
    }
}

async fn build(
    recipe: &Path,
    image: &str,
    progress: &mut impl FnMut(Progress),
) -> Result<(), PrepareError> {
    let mut child = tokio::process::Command::new(recipe)
        .env("ORIEN_IMAGE", image)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| PrepareError::Spawn {
            recipe: recipe.to_owned(),
            source,
        })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(PrepareError::Spawn {
            recipe: recipe.to_owned(),
            source: std::io::Error::other("no output pipes"),
        });
    };
    // Both streams, line by line, in the order they come.
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    forward_lines(stdout, tx.clone());
    forward_lines(stderr, tx);
    let mut tail = std::collections::VecDeque::with_capacity(TAIL_LINES);
    while let Some(line) = lines.recv().await {
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        progress(Progress::Line(line));
    }
    let status = child.wait().await.map_err(|source| PrepareError::Spawn {
        recipe: recipe.to_owned(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(PrepareError::Recipe {
            recipe: recipe.to_owned(),
            status,
            tail: Vec::from(tail).join("\n"),
        })
    }
}

/// Sends each line `reader` yields until it ends (or stops being text).
fn forward_lines(
    reader: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    to: tokio::sync::mpsc::UnboundedSender<String>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if to.send(line).is_err() {
                break;
            }
        }
    });
}

async fn pull(
    engine: &Engine,
    image: &str,
    progress: &mut impl FnMut(Progress),
) -> Result<(), PrepareError> {
    let options = bollard::query_parameters::CreateImageOptionsBuilder::new()
        .from_image(image)
        .build();
    let mut stream = engine.docker().create_image(Some(options), None, None);
    // Per layer: (current, total) bytes.
    let mut layers: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| match e {
            // The registry's answer, mid-stream: the engine is fine, the pull is not.
            bollard::errors::Error::DockerStreamError { error } => EngineError::Refused {
                operation: "pull image",
                detail: error,
            },
            other => engine.error("pull image", other),
        })?;
        if let (Some(id), Some(detail)) = (&info.id, &info.progress_detail)
            && let (Some(current), Some(total)) = (detail.current, detail.total)
        {
            layers.insert(
                id.clone(),
                (
                    u64::try_from(current).unwrap_or(0),
                    u64::try_from(total).unwrap_or(0),
                ),
            );
            let (current, total) = layers
                .values()
                .fold((0, 0), |(c, t), (lc, lt)| (c + lc, t + lt));
            progress(Progress::Bytes { current, total });
        } else if let Some(status) = info.status {
            progress(Progress::Status(match info.id {
                Some(id) => format!("{id}: {status}"),
                None => status,
            }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
    use super::*;

    #[test]
    fn orien_images_come_from_their_recipe_when_it_exists_and_nothing_escapes_the_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("images/busybox")).unwrap();
        std::fs::write(dir.path().join("images/busybox/build"), "#!/bin/sh\n").unwrap();
        let recipe = ImageSource::Recipe(dir.path().join("images/busybox/build"));
        assert_eq!(ImageSource::of("orien/busybox:1", dir.path()), recipe);
        assert_eq!(ImageSource::of("orien/busybox", dir.path()), recipe);
        assert_eq!(
            ImageSource::of(
                "orien/busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                dir.path()
            ),
            recipe
        );
        for other in [
            "orien/other:1",
            "busybox:1",
            "docker.io/orien/busybox:1",
            "orien/../images/busybox:1",
            "orien/busybox/../busybox:1",
            "orien/:1",
        ] {
            assert_eq!(
                ImageSource::of(other, dir.path()),
                ImageSource::Registry,
                "{other}"
            );
        }
    }
}
