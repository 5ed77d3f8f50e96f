//! The workspace of a rented session.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use orien_protocol::ContentHash;

use crate::extract::ApiPath;
use crate::sessions::{FileView, parse_session_id};
use crate::{ApiError, AppState, ByteStream, FileUpload};

/// Lists the session's workspace, or with `Accept: application/x-tar` streams a tar
/// of all of it (regular files and directories, relative to the workspace).
#[utoipa::path(get, path = "/v1/sessions/{id}/files", tag = "files", security(("bearer" = [])),
    params(("id" = crate::text::IdText, Path, description = "Session id (hex)")),
    responses(
        (status = 200, description = "Files and directories (or, asked for `application/x-tar`, a tar of the workspace)", body = [FileView]),
        (status = 400, description = "Malformed id", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_files(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = parse_session_id(&id)?;
    if wants_tar(&headers) {
        let source = Source::Workspace {
            session,
            path: String::new(),
            archive: true,
        };
        return download(&state, source, &headers).await;
    }
    Ok(Json(state.node.list_files(session).await?).into_response())
}

/// Unpacks a tar (the raw request body, `Content-Type: application/x-tar`, streamed)
/// into the workspace itself; as `PUT /v1/sessions/{id}/files/{dir}` otherwise.
#[utoipa::path(put, path = "/v1/sessions/{id}/files", tag = "files", security(("bearer" = [])),
    params(("id" = crate::text::IdText, Path, description = "Session id (hex)")),
    request_body(content = Vec<u8>, content_type = "application/x-tar"),
    responses(
        (status = 201, description = "Unpacked whole; `sha256` is the archive's", body = FileView),
        (status = 400, description = "An entry the workspace may not hold (a link, a device, `..`, an absolute path), or a malformed range", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 411, description = "No size given", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Over the session's workspace cap; nothing was written", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not `application/x-tar`", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn put_workspace(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let session = parse_session_id(&id)?;
    if !is_tar(&headers) {
        return Err(ApiError::UnsupportedMediaType(
            "the workspace itself takes a tar archive (Content-Type: application/x-tar); files go to /v1/sessions/{id}/files/{path}".into(),
        ));
    }
    upload(&state, session, String::new(), &headers, body).await
}

/// Uploads a file (the raw request body, streamed) into the session's workspace;
/// with `Content-Type: application/x-tar`, a tar unpacked under the directory `path`
/// (regular files and directories only: a link, a device, `..` or an absolute path
/// refuses the whole archive, and nothing lands).
///
/// The size comes first, in `Content-Length` (or the total of `Content-Range`), and is
/// checked against the session's caps before any byte moves. The provider keeps the
/// file only whole and matching its SHA-256, which the answer names. An upload cut
/// off between the nodes resumes by itself; one cut off on the way in resumes with
/// `Content-Range: bytes <first>-<last>/<size>` from the first byte the provider does
/// not hold (a 409 names it, also in `Upload-Offset`). The standard headers
/// (`Content-Length`, `Content-Range`) are not listed as parameters.
#[utoipa::path(put, path = "/v1/sessions/{id}/files/{path}", tag = "files", security(("bearer" = [])),
    params(
        ("id" = crate::text::IdText, Path, description = "Session id (hex)"),
        ("path" = crate::text::PathText, Path, description = "Workspace-relative path; may contain `/`"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored whole; `sha256` is the file's (or the archive's)", body = FileView),
        (status = 400, description = "Invalid path (absolute, `..`, too long), a malformed range, or a body shorter or longer than announced", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "A resume from another byte than the provider holds (see `Upload-Offset`)", body = crate::ProblemBody, content_type = "application/problem+json",
            headers(("Upload-Offset" = u64, description = "Bytes of the upload the provider holds"))),
        (status = 411, description = "No size given", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Over the session's upload or workspace cap; nothing was written", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 507, description = "The provider's disk or the workspace is full", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn put_file(
    State(state): State<AppState>,
    ApiPath((id, path)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let session = parse_session_id(&id)?;
    upload(&state, session, path, &headers, body).await
}

async fn upload(
    state: &AppState,
    session: orien_protocol::SessionId,
    path: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<crate::sessions::FileView>), ApiError> {
    let length = content_length(headers)?;
    let (offset, size) = match headers.get(header::CONTENT_RANGE) {
        Some(range) => {
            let (first, last, size) = parse_content_range(range)?;
            if length.is_some_and(|len| len != last - first + 1) {
                return Err(ApiError::field(
                    "Content-Range",
                    "its range and Content-Length disagree",
                ));
            }
            (first, size)
        }
        None => (0, length.ok_or(ApiError::LengthRequired)?),
    };
    let body = body
        .into_data_stream()
        .map(|piece| piece.map_err(std::io::Error::other));
    let upload = FileUpload {
        size,
        offset,
        archive: is_tar(headers),
        body: Box::pin(body),
    };
    let view = state.node.upload_file(session, path, upload).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

fn is_tar(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(TAR))
        })
}

fn wants_tar(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|t| {
                t.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case(TAR))
            })
        })
}

/// The media type of directory archives.
const TAR: &str = "application/x-tar";

/// Downloads a file of the session's workspace (raw bytes, streamed); with
/// `Accept: application/x-tar`, a tar of the directory `path`, relative to it.
///
/// `Range: bytes=<first>-` (or `<first>-<last>`) asks for part of it; with
/// `If-Range: "<sha256>"` (the `ETag` of an earlier answer) the part comes from the
/// same copy of the file, else from the file as it is now. A break between the nodes
/// resumes by itself. The standard headers (`Range`, `If-Range`) are not listed as
/// parameters.
#[utoipa::path(get, path = "/v1/sessions/{id}/files/{path}", tag = "files", security(("bearer" = [])),
    params(
        ("id" = crate::text::IdText, Path, description = "Session id (hex)"),
        ("path" = crate::text::PathText, Path, description = "Workspace-relative path; may contain `/`"),
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>,
            headers(
                ("Repr-Digest" = String, description = "Its SHA-256 (RFC 9530): `sha-256=:<base64>:`"),
                ("ETag" = String, description = "Its SHA-256 (hex), quoted"),
            )),
        (status = 206, description = "Part of the file", content_type = "application/octet-stream", body = Vec<u8>,
            headers(
                ("Content-Range" = String, description = "`bytes <first>-<last>/<size>`"),
                ("Repr-Digest" = String, description = "The whole file's SHA-256 (RFC 9530)"),
                ("ETag" = String, description = "The whole file's SHA-256 (hex), quoted"),
            )),
        (status = 400, description = "Invalid path", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such session or file", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The copy named by If-Range is gone; download it again", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 416, description = "The range is outside the file", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_file(
    State(state): State<AppState>,
    ApiPath((id, path)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = parse_session_id(&id)?;
    let archive = wants_tar(&headers);
    let source = Source::Workspace {
        session,
        path,
        archive,
    };
    download(&state, source, &headers).await
}

/// Streams the artefact a rented call left at `path`: the copy its provider kept when
/// the call ended, whose SHA-256 the call's signed result names (`artefacts` of the
/// execution), whatever became of the workspace file since. It can be fetched while
/// the session is open and, after its close, for as long as the provider keeps
/// artefacts. `Range` resumes a cut download; a break between the nodes resumes by
/// itself. The standard headers (`Range`) are not listed as parameters.
#[utoipa::path(get, path = "/v1/executions/{id}/artefacts/{path}", tag = "files", security(("bearer" = [])),
    params(
        ("id" = crate::text::IdText, Path, description = "Execution id (hex)"),
        ("path" = crate::text::PathText, Path, description = "The output path the call named; may contain `/`"),
    ),
    responses(
        (status = 200, description = "The artefact", content_type = "application/octet-stream", body = Vec<u8>,
            headers(
                ("Repr-Digest" = String, description = "Its SHA-256 (RFC 9530): `sha-256=:<base64>:`"),
                ("ETag" = String, description = "Its SHA-256 (hex), quoted: the one the signed result names"),
            )),
        (status = 206, description = "Part of the artefact", content_type = "application/octet-stream", body = Vec<u8>,
            headers(
                ("Content-Range" = String, description = "`bytes <first>-<last>/<size>`"),
                ("Repr-Digest" = String, description = "The whole artefact's SHA-256 (RFC 9530)"),
                ("ETag" = String, description = "The whole artefact's SHA-256 (hex), quoted"),
            )),
        (status = 400, description = "Invalid id or path", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such execution, or it kept nothing at that path", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The provider no longer keeps it", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 416, description = "The range is outside the artefact", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The provider could not be reached", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_artefact(
    State(state): State<AppState>,
    ApiPath((id, path)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let exec = crate::sessions::parse_exec_id(&id)?;
    download(&state, Source::Artefact { exec, path }, &headers).await
}

/// What a download reads.
enum Source {
    /// A file (or, with `archive`, a directory's tar) of a session's workspace now.
    Workspace {
        session: orien_protocol::SessionId,
        path: String,
        archive: bool,
    },
    /// The artefact a call left at `path`.
    Artefact {
        exec: orien_protocol::ExecId,
        path: String,
    },
}

async fn download(
    state: &AppState,
    source: Source,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let range = match headers.get(header::RANGE) {
        Some(range) => parse_range(range),
        None => None,
    };
    let expect = match (range, headers.get(header::IF_RANGE)) {
        (Some(_), Some(tag)) => parse_etag(tag),
        _ => None,
    };
    let (first, last) = range.unwrap_or((0, None));
    let (download, archive) = match source {
        Source::Workspace {
            session,
            path,
            archive,
        } => (
            state
                .node
                .download_file(session, path, archive, first, expect)
                .await?,
            archive,
        ),
        Source::Artefact { exec, path } => (
            state.node.download_artefact(exec, path, first).await?,
            false,
        ),
    };
    let size = download.size;
    if range.is_some() && first >= size && size > 0 {
        return Err(ApiError::RangeNotSatisfiable { size: Some(size) });
    }
    let end = last.map_or(size, |last| last.saturating_add(1).min(size));
    let len = end.saturating_sub(first);
    let body = take_bytes(download.body, len);
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    let media = if archive {
        TAR
    } else {
        "application/octet-stream"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{}\"", download.sha256)) {
        headers.insert(header::ETAG, tag);
    }
    if let Ok(digest) = HeaderValue::from_str(&repr_digest(download.sha256.as_bytes())) {
        headers.insert(header::HeaderName::from_static("repr-digest"), digest);
    }
    if range.is_some() && size > 0 {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let value = format!("bytes {first}-{}/{size}", end - 1);
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

/// The first `len` bytes of `body`.
fn take_bytes(body: ByteStream, len: u64) -> ByteStream {
    Box::pin(futures_util::stream::unfold(
        (body, len),
        |(mut body, left)| async move {
            if left == 0 {
                return None;
            }
            match body.next().await? {
                Ok(mut piece) => {
                    if piece.len() as u64 > left {
                        piece.truncate(usize::try_from(left).unwrap_or(usize::MAX));
                    }
                    let left = left - piece.len() as u64;
                    Some((Ok(piece), (body, left)))
                }
                Err(e) => Some((Err(e), (body, 0))),
            }
        },
    ))
}

fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get(header::CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| ApiError::field("Content-Length", "not a number of bytes"))
        })
        .transpose()
}

/// `bytes <first>-<last>/<size>` of a `Content-Range`.
fn parse_content_range(value: &HeaderValue) -> Result<(u64, u64, u64), ApiError> {
    let bad = || ApiError::field("Content-Range", "expected `bytes <first>-<last>/<size>`");
    let text = value.to_str().map_err(|_| bad())?;
    let rest = text.strip_prefix("bytes ").ok_or_else(bad)?;
    let (range, size) = rest.split_once('/').ok_or_else(bad)?;
    let (first, last) = range.split_once('-').ok_or_else(bad)?;
    let parse = |v: &str| v.trim().parse::<u64>().map_err(|_| bad());
    let (first, last, size) = (parse(first)?, parse(last)?, parse(size)?);
    if first > last || last >= size {
        return Err(ApiError::field(
            "Content-Range",
            "the range must lie inside the size",
        ));
    }
    Ok((first, last, size))
}

/// `bytes=<first>-` or `bytes=<first>-<last>` of a `Range`; anything else (several
/// ranges, a suffix) is ignored, as RFC 9110 allows, and the whole file is sent.
fn parse_range(value: &HeaderValue) -> Option<(u64, Option<u64>)> {
    let spec = value.to_str().ok()?.trim().strip_prefix("bytes=")?;
    let (first, last) = spec.split_once('-')?;
    let first = first.trim().parse::<u64>().ok()?;
    let last = match last.trim() {
        "" => None,
        last => Some(last.parse::<u64>().ok().filter(|l| *l >= first)?),
    };
    Some((first, last))
}

/// The hash in an `ETag` this API sent (`"<64 hex digits>"`).
fn parse_etag(value: &HeaderValue) -> Option<ContentHash> {
    let text = value
        .to_str()
        .ok()?
        .trim()
        .strip_prefix('"')?
        .strip_suffix('"')?;
    let bytes: [u8; 32] = hex::decode(text).ok()?.try_into().ok()?;
    Some(ContentHash::from_bytes(bytes))
}

/// The `Repr-Digest` of a SHA-256 (RFC 9530): `sha-256=:<base64>:`.
fn repr_digest(sha256: &[u8; 32]) -> String {
    use base64::Engine as _;
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(sha256)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;

    fn value(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).unwrap()
    }

    #[test]
    fn ranges_parse_or_are_ignored() {
        assert_eq!(parse_range(&value("bytes=10-")), Some((10, None)));
        assert_eq!(parse_range(&value("bytes=10-19")), Some((10, Some(19))));
        assert_eq!(parse_range(&value("bytes=19-10")), None);
        assert_eq!(parse_range(&value("bytes=-5")), None);
        assert_eq!(parse_range(&value("bytes=0-1,5-6")), None);
        assert_eq!(parse_range(&value("items=0-1")), None);
    }

    #[test]
    fn content_ranges_must_lie_inside_the_size() {
        assert_eq!(
            parse_content_range(&value("bytes 5-9/10")).unwrap(),
            (5, 9, 10)
        );
        for bad in [
            "bytes 5-10/10",
            "bytes 9-5/10",
            "bytes */10",
            "5-9/10",
            "bytes a-9/10",
        ] {
            assert!(parse_content_range(&value(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn etags_carry_the_hash_back() {
        let sha = ContentHash::of(b"x");
        let hex_hash = sha.to_string();
        let tag = format!("\"{}\"", hex_hash.trim_start_matches("0x"));
        assert_eq!(parse_etag(&value(&tag)), Some(sha));
        assert_eq!(parse_etag(&value("W/\"abc\"")), None);
    }

    #[tokio::test]
    async fn take_bytes_stops_at_the_length() {
        let pieces = vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::from_static(b"world")),
        ];
        let body: ByteStream = Box::pin(futures_util::stream::iter(pieces));
        let taken: Vec<_> = take_bytes(body, 8).collect().await;
        let bytes: Vec<u8> = taken
            .into_iter()
            .flat_map(|p| p.unwrap().to_vec())
            .collect();
        assert_eq!(bytes, b"hello wo");
    }
}
