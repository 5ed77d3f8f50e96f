//! Embeds the dashboard (`dashboard/index.html` and every file under
//! `dashboard/assets/`) in the crate: writes `$OUT_DIR/dashboard_assets.rs`, a table of
//! `(path, bytes, content type, etag)` built from the directory as it is, so the binary
//! serves exactly the files in the tree and no list can drift from them.

// Cargo reads a build script's instructions from its standard output.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let root =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dashboard = root.join("dashboard");
    println!(
        "cargo:rerun-if-changed={}",
        dashboard.join("index.html").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        dashboard.join("assets").display()
    );

    let mut files = Vec::new();
    collect(&dashboard.join("assets"), &mut files);
    files.sort();

    let mut table = String::from(
        "/// Every file under `dashboard/assets/`: path below it, bytes, content type, ETag.\n\
         pub(crate) static ASSETS: &[Asset] = &[\n",
    );
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let name = file
            .strip_prefix(dashboard.join("assets"))
            .expect("collected below assets")
            .to_str()
            .unwrap_or_else(|| panic!("{}: asset names must be UTF-8", file.display()));
        let kind = content_type(file).unwrap_or_else(|| {
            panic!(
                "{}: no content type for this extension; add it to web-api/build.rs",
                file.display()
            )
        });
        let bytes = fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        writeln!(
            table,
            "    Asset {{ path: {name:?}, bytes: include_bytes!({:?}), content_type: {kind:?}, etag: \"\\\"{:016x}\\\"\" }},",
            file.display().to_string(),
            fnv1a(&bytes),
        )
        .expect("writing to a String");
    }
    table.push_str("];\n");

    let index = dashboard.join("index.html");
    let index_etag = fs::read(&index)
        .map(|bytes| fnv1a(&bytes))
        .unwrap_or_else(|e| panic!("{}: {e}", index.display()));
    writeln!(
        table,
        "/// `dashboard/index.html`.\npub(crate) static INDEX: Asset = Asset {{ path: \"index.html\", bytes: include_bytes!({:?}), content_type: \"text/html; charset=utf-8\", etag: \"\\\"{index_etag:016x}\\\"\" }};",
        index.display().to_string(),
    )
    .expect("writing to a String");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("dashboard_assets.rs"), table).expect("writing the asset table");
}

/// Every regular file below `dir`, recursively (dot files skipped).
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

fn content_type(path: &Path) -> Option<&'static str> {
    Some(match path.extension()?.to_str()? {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// FNV-1a, 64 bits: an ETag that changes when the bytes do (not a security property).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
