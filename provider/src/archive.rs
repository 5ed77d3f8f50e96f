//! Directory archives staged on the provider's disk. An uploaded tar is read entry by
//! entry and written again with the provider's own headers before the engine sees it
//! (only regular files and directories with valid workspace paths, owned by the
//! sandbox user with fixed modes, parents first); a directory read from the engine is
//! re-packed the same way, relative to the directory, without what an upload could not
//! have made (links, devices, names no workspace path takes). Both stream through
//! small buffers, so an archive's size costs disk, not memory.

use std::collections::HashSet;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use orien_protocol::ContentHash;
use sha2::{Digest, Sha256};

use crate::error::ProviderError;
use crate::workspace::{MAX_ARCHIVE_ENTRIES, dir_header, file_header};
use crate::workspace_path::WorkspacePath;

/// What a re-packed archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Packed {
    /// Bytes of file contents.
    pub(crate) contents: u64,
    /// Bytes of the archive written.
    pub(crate) bytes: u64,
    /// Entries left out (downloads only).
    pub(crate) skipped: u64,
}

/// The entries written so far, to emit each directory once and before what it holds,
/// and to refuse a path that would be both a file and a directory.
#[derive(Default)]
struct Tree {
    dirs: HashSet<String>,
    files: HashSet<String>,
}

impl Tree {
    fn conflict(path: &WorkspacePath) -> ProviderError {
        ProviderError::NotAFile(path.to_string())
    }

    /// Writes `dir` and its missing ancestors.
    fn dir<W: Write>(
        &mut self,
        out: &mut tar::Builder<W>,
        dir: &WorkspacePath,
    ) -> Result<(), ProviderError> {
        if self.dirs.contains(dir.as_str()) {
            return Ok(());
        }
        if self.files.contains(dir.as_str()) {
            return Err(Self::conflict(dir));
        }
        if let Some(parent) = dir.parent() {
            self.dir(out, &parent)?;
        }
        out.append_data(&mut dir_header(), dir.as_str(), std::io::empty())?;
        self.dirs.insert(dir.as_str().to_owned());
        Ok(())
    }

    fn file<W: Write>(
        &mut self,
        out: &mut tar::Builder<W>,
        path: &WorkspacePath,
        size: u64,
        data: impl Read,
    ) -> Result<(), ProviderError> {
        if self.dirs.contains(path.as_str()) {
            return Err(Self::conflict(path));
        }
        if let Some(parent) = path.parent() {
            self.dir(out, &parent)?;
        }
        out.append_data(&mut file_header(size), path.as_str(), data)?;
        self.files.insert(path.as_str().to_owned());
        Ok(())
    }
}

/// What an upload archive's entry is, or why it is refused.
fn kind_name(kind: tar::EntryType) -> String {
    match kind {
        tar::EntryType::Symlink => "symbolic link".to_owned(),
        tar::EntryType::Link => "hard link".to_owned(),
        tar::EntryType::Char | tar::EntryType::Block => "device".to_owned(),
        tar::EntryType::Fifo => "fifo".to_owned(),
        other => format!("{other:?} entry"),
    }
}

/// Counts what goes through a writer and hashes it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn create(dest: &Path) -> Result<Hashing<BufWriter<std::fs::File>>, ProviderError> {
    let file = std::fs::File::create(dest).map_err(ProviderError::HostDisk)?;
    Ok(Hashing {
        inner: BufWriter::with_capacity(256 * 1024, file),
        hasher: Sha256::new(),
        written: 0,
    })
}

fn finish(
    out: tar::Builder<Hashing<BufWriter<std::fs::File>>>,
) -> Result<(u64, ContentHash), ProviderError> {
    let mut hashing = out.into_inner().map_err(ProviderError::HostDisk)?;
    hashing.flush().map_err(ProviderError::HostDisk)?;
    let file = hashing
        .inner
        .into_inner()
        .map_err(|e| ProviderError::HostDisk(e.into_error()))?;
    file.sync_data().map_err(ProviderError::HostDisk)?;
    Ok((
        hashing.written,
        ContentHash::from_bytes(hashing.hasher.finalize().into()),
    ))
}

/// Reads the uploaded tar at `src` and writes it again at `dest`, every entry under
/// `under` (the workspace itself when `None`); see [`repack_entries`].
pub(crate) fn repack_upload(
    src: &Path,
    dest: &Path,
    under: Option<&WorkspacePath>,
    limit: u64,
) -> Result<Packed, ProviderError> {
    let input = std::fs::File::open(src).map_err(ProviderError::HostDisk)?;
    let mut out = tar::Builder::new(create(dest)?);
    let contents = repack_entries(
        BufReader::with_capacity(256 * 1024, input),
        &mut out,
        under,
        limit,
    )?;
    let (bytes, _) = finish(out)?;
    Ok(Packed {
        contents,
        bytes,
        skipped: 0,
    })
}

/// The uploaded tar `tar_bytes`, in memory, written again (see [`repack_entries`]);
/// with the bytes of its file contents.
pub(crate) fn repack_upload_bytes(
    tar_bytes: &[u8],
    limit: u64,
) -> Result<(Vec<u8>, u64), ProviderError> {
    let mut out = tar::Builder::new(Vec::new());
    let contents = repack_entries(tar_bytes, &mut out, None, limit)?;
    Ok((out.into_inner()?, contents))
}

/// Writes the entries of the uploaded tar on `input` again into `out`, under `under`:
/// only regular files and directories with valid workspace paths, at most `limit`
/// bytes of contents and [`MAX_ARCHIVE_ENTRIES`] entries, with the provider's owner
/// and modes, parents first; a link, device or fifo refuses the whole archive, and so
/// does a path both a file and a directory. Returns the bytes of file contents. Never
/// panics, whatever the bytes.
fn repack_entries<R: Read, W: Write>(
    input: R,
    out: &mut tar::Builder<W>,
    under: Option<&WorkspacePath>,
    limit: u64,
) -> Result<u64, ProviderError> {
    let mut archive = tar::Archive::new(input);
    let mut tree = Tree::default();
    if let Some(under) = under {
        tree.dir(out, under)?;
    }
    let place = |raw: &str| -> Result<WorkspacePath, ProviderError> {
        let path = WorkspacePath::new(raw)?;
        Ok(match under {
            Some(under) => under.join(&path)?,
            None => path,
        })
    };
    let mut contents: u64 = 0;
    for (n, entry) in archive.entries()?.enumerate() {
        if n >= MAX_ARCHIVE_ENTRIES {
            return Err(ProviderError::TooLarge {
                what: "the number of archive entries",
                size: n as u64 + 1,
                limit: MAX_ARCHIVE_ENTRIES as u64,
            });
        }
        let entry = entry?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let path = place(&raw)?;
                let size = entry.header().size()?;
                contents = contents.saturating_add(size);
                if contents > limit {
                    return Err(ProviderError::TooLarge {
                        what: "the upload",
                        size: contents,
                        limit,
                    });
                }
                tree.file(out, &path, size, entry)?;
            }
            tar::EntryType::Directory => {
                // `./` and the like name the directory itself.
                if raw.trim_matches(['.', '/']).is_empty() {
                    continue;
                }
                tree.dir(out, &place(&raw)?)?;
            }
            other => {
                return Err(ProviderError::UnsafeEntry {
                    path: raw.escape_debug().to_string(),
                    kind: kind_name(other),
                });
            }
        }
    }
    Ok(contents)
}

/// Re-packs the engine's tar of a directory (`reader`, its entries named
/// `<dir>/…`) at `dest`, relative to the directory: regular files and directories
/// only, at most `limit` bytes of contents. Returns what it wrote and its SHA-256.
pub(crate) fn repack_download(
    reader: impl Read,
    dest: &Path,
    limit: u64,
) -> Result<(Packed, ContentHash), ProviderError> {
    let mut archive = tar::Archive::new(reader);
    let mut out = tar::Builder::new(create(dest)?);
    let mut tree = Tree::default();
    let mut packed = Packed::default();
    let mut entries = 0usize;
    for entry in archive.entries()? {
        let entry = entry?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        // The first component is the directory's own name.
        let Some((_, rest)) = raw.split_once('/') else {
            continue;
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            continue;
        }
        entries += 1;
        if entries > MAX_ARCHIVE_ENTRIES {
            return Err(ProviderError::TooLarge {
                what: "the number of entries in the directory",
                size: entries as u64,
                limit: MAX_ARCHIVE_ENTRIES as u64,
            });
        }
        let Ok(path) = WorkspacePath::new(rest) else {
            packed.skipped += 1;
            continue;
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size()?;
                packed.contents = packed.contents.saturating_add(size);
                if packed.contents > limit {
                    return Err(ProviderError::TooLarge {
                        what: "the directory",
                        size: packed.contents,
                        limit,
                    });
                }
                tree.file(&mut out, &path, size, entry)?;
            }
            tar::EntryType::Directory => tree.dir(&mut out, &path)?,
            _ => packed.skipped += 1,
        }
    }
    let (bytes, sha256) = finish(out)?;
    packed.bytes = bytes;
    Ok((packed, sha256))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_parse_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = repack_upload_bytes(&bytes, 1 << 20);
        }

        #[test]
        fn accepted_archives_hold_only_workspace_paths(name in "[a-z./]{1,40}", data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut header = tar::Header::new_gnu();
            let raw = name.as_bytes();
            header.as_gnu_mut().unwrap().name[..raw.len()].copy_from_slice(raw);
            header.set_size(data.len() as u64);
            header.set_cksum();
            let mut builder = tar::Builder::new(Vec::new());
            builder.append(&header, data.as_slice()).unwrap();
            let bytes = builder.into_inner().unwrap();
            if let Ok((repacked, _)) = repack_upload_bytes(&bytes, 1 << 20) {
                for (path, ..) in entries(&repacked) {
                    prop_assert!(!path.starts_with('/'));
                    prop_assert!(path.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
                }
            }
        }
    }

    /// A tar with one entry of `kind` named `name` (raw bytes, no checks).
    fn raw_tar(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            let raw = name.as_bytes();
            header.as_gnu_mut().unwrap().name[..raw.len()].copy_from_slice(raw);
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o4755);
            header.set_uid(0);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn entries(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType, u32, u64, Vec<u8>)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    data,
                )
            })
            .collect()
    }

    fn repack(input: &[u8], under: Option<&str>) -> Result<Vec<u8>, ProviderError> {
        let dir = tempfile::tempdir().unwrap();
        let (src, dest) = (dir.path().join("in.tar"), dir.path().join("out.tar"));
        std::fs::write(&src, input).unwrap();
        let under = under.map(|u| WorkspacePath::new(u).unwrap());
        repack_upload(&src, &dest, under.as_ref(), 1 << 20)?;
        Ok(std::fs::read(dest).unwrap())
    }

    #[test]
    fn uploads_are_placed_under_their_directory_with_parents_first_and_fixed_owners() {
        let input = raw_tar(&[
            ("a/b/c.txt", tar::EntryType::Regular, b"hi"),
            ("./", tar::EntryType::Directory, b""),
            ("d/", tar::EntryType::Directory, b""),
        ]);
        let out = entries(&repack(&input, Some("in/box")).unwrap());
        let names: Vec<(&str, u32, u64)> = out
            .iter()
            .map(|(p, _, m, u, _)| (p.as_str(), *m, *u))
            .collect();
        assert_eq!(
            names,
            [
                ("in", 0o755, 65534),
                ("in/box", 0o755, 65534),
                ("in/box/a", 0o755, 65534),
                ("in/box/a/b", 0o755, 65534),
                ("in/box/a/b/c.txt", 0o644, 65534),
                ("in/box/d", 0o755, 65534),
            ]
        );
        assert_eq!(out[4].4, b"hi");
    }

    #[test]
    fn links_devices_escapes_and_clashes_refuse_the_whole_archive() {
        for (name, kind) in [
            ("l", tar::EntryType::Symlink),
            ("h", tar::EntryType::Link),
            ("c", tar::EntryType::Char),
            ("b", tar::EntryType::Block),
            ("f", tar::EntryType::Fifo),
            ("../up", tar::EntryType::Regular),
            ("/etc/passwd", tar::EntryType::Regular),
            ("a/../../b", tar::EntryType::Regular),
        ] {
            let input = raw_tar(&[("ok.txt", tar::EntryType::Regular, b"1"), (name, kind, b"")]);
            assert!(repack(&input, None).is_err(), "{name} {kind:?}");
        }
        let clash = raw_tar(&[
            ("x", tar::EntryType::Regular, b"1"),
            ("x/y", tar::EntryType::Regular, b"2"),
        ]);
        assert!(matches!(
            repack(&clash, None),
            Err(ProviderError::NotAFile(_))
        ));
    }

    #[test]
    fn contents_over_the_limit_are_refused() {
        let big = vec![0u8; (1 << 20) + 1];
        let input = raw_tar(&[("big", tar::EntryType::Regular, &big)]);
        assert!(matches!(
            repack(&input, None),
            Err(ProviderError::TooLarge { .. })
        ));
    }

    #[test]
    fn downloads_keep_files_and_directories_relative_to_the_directory() {
        let engine = raw_tar(&[
            ("out/", tar::EntryType::Directory, b""),
            ("out/r.txt", tar::EntryType::Regular, b"result"),
            ("out/sub/", tar::EntryType::Directory, b""),
            ("out/sub/link", tar::EntryType::Symlink, b""),
            ("out/sub/s.txt", tar::EntryType::Regular, b"s"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("copy.tar");
        let (packed, sha256) = repack_download(engine.as_slice(), &dest, 1 << 20).unwrap();
        let bytes = std::fs::read(&dest).unwrap();
        assert_eq!(sha256, ContentHash::of(&bytes));
        assert_eq!(packed.bytes, bytes.len() as u64);
        assert_eq!(packed.skipped, 1, "the link is left out");
        assert_eq!(packed.contents, 7);
        let names: Vec<String> = entries(&bytes).into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["r.txt", "sub", "sub/s.txt"]);
    }
}
