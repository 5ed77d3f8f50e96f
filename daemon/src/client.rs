//! A client of a node's local HTTP API: what the `orien-node` commands other than `init`
//! and `run` use. It finds the node through the data directory — `api.addr`, written by
//! `run`, and `api.token` — unless given a URL.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The file `run` writes with the API's bound address (`127.0.0.1:7400`).
pub const API_ADDR_FILE: &str = "api.addr";
/// Where the API listens when nothing says otherwise.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:7400";

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered.
    #[error(
        "no node answers at {url} ({source}); start it with `orien-node run`, or pass --api-url"
    )]
    Unreachable {
        /// The URL tried.
        url: String,
        /// The connection error.
        source: reqwest::Error,
    },
    /// The token file is missing or unreadable.
    #[error("cannot read the API token {path}: {source}; run `orien-node init` first")]
    Token {
        /// The token file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The node answered with a problem document.
    #[error("{status} {kind}: {detail}")]
    Problem {
        /// HTTP status.
        status: u16,
        /// `urn:orien:problem:…`.
        kind: String,
        /// What happened and what to do.
        detail: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from the node: {0}")]
    Decode(String),
}

/// A client of one node's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// The node of `data_dir`: its token, and `url` or else the address in `api.addr`
    /// or else [`DEFAULT_API_URL`].
    pub fn for_data_dir(data_dir: &Path, url: Option<&str>) -> Result<Self, ClientError> {
        let token_path = data_dir.join(orien_web_api::auth::TOKEN_FILE);
        let token = std::fs::read_to_string(&token_path)
            .map_err(|source| ClientError::Token {
                path: token_path.display().to_string(),
                source,
            })?
            .trim()
            .to_owned();
        let base = match url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => std::fs::read_to_string(data_dir.join(API_ADDR_FILE))
                .map(|addr| format!("http://{}", addr.trim()))
                .unwrap_or_else(|_| DEFAULT_API_URL.to_owned()),
        };
        Ok(Self::new(base, token))
    }

    /// A client of the API at `base` with `token`.
    pub fn new(base: String, token: String) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self { base, token, http }
    }

    /// The API's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`, decoded.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(self.url(path))).await
    }

    /// `POST path` with a JSON body, decoded.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// `PUT path` with raw bytes, decoded.
    pub async fn put_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        data: Vec<u8>,
    ) -> Result<T, ClientError> {
        self.send(self.http.put(self.url(path)).body(data)).await
    }

    /// `PUT path` with `size` bytes streamed from `body` as `content_type`, decoded.
    pub async fn put_stream<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        size: u64,
        body: reqwest::Body,
    ) -> Result<T, ClientError> {
        let request = self
            .http
            .put(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body);
        self.send(request).await
    }

    /// `GET path` accepting `accept`: the response, its status checked, to stream.
    pub async fn get_accepting(
        &self,
        path: &str,
        accept: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let request = self
            .http
            .get(self.url(path))
            .header(reqwest::header::ACCEPT, accept);
        self.call(request).await
    }

    /// `GET path` as raw bytes.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let response = self.call(self.http.get(self.url(path))).await?;
        Ok(response
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?
            .to_vec())
    }

    /// A streaming `GET` (server-sent events): the response, its status checked.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        self.call(self.http.get(self.url(path))).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = self.call(request).await?;
        response
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let problem: serde_json::Value = response.json().await.unwrap_or_default();
        Err(ClientError::Problem {
            status: status.as_u16(),
            kind: problem["type"]
                .as_str()
                .unwrap_or("urn:orien:problem:unknown")
                .trim_start_matches("urn:orien:problem:")
                .to_owned(),
            detail: problem["detail"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| status.to_string()),
        })
    }
}

/// Percent-encodes one URL path segment or query value: everything but the unreserved
/// characters of RFC 3986 (ids, tool names and decimals pass unchanged).
pub fn encode_component(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Percent-encodes a workspace path for a URL, keeping its `/`s.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("/")
}
