//! Router behaviour with a fake node behind the trait: auth, problems, limits, OpenAPI.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::*;
use crate::sessions::*;
use orien_protocol::{ExecId, SessionId, Split, Usdc};

/// Counts the calls that would cost money, so replays can be told from reruns.
#[derive(Default)]
struct FakeNode {
    opened: AtomicUsize,
}

fn fake_session(id: SessionId) -> SessionView {
    SessionView {
        id: id.to_string(),
        role: SessionRole::Renter,
        provider: "12D3KooWprovider".into(),
        renter: "12D3KooWfake".into(),
        offer: None,
        tool: Some("sha256".into()),
        state: SessionState::Active,
        close_reason: None,
        suspend_reason: None,
        state_detail: None,
        budget: "1.000000".into(),
        pricing: PricingView {
            session_per_minute: "0.000000".into(),
            exec_per_minute: "0.010000".into(),
            artefact_per_gib: "0.000000".into(),
        },
        opened_at: 0,
        usage: UsageView {
            receipts: 0,
            session_ms: 0,
            exec_ms: 0,
            cpu_ms: 0,
        },
        amount: "0.000000".into(),
        split: Split::of(Usdc::ZERO).into(),
    }
}

#[async_trait]
impl NodeApi for FakeNode {
    async fn node_info(&self) -> Result<NodeInfo, ApiError> {
        Ok(NodeInfo {
            id: "12D3KooWfake".into(),
            version: "0.1.0".into(),
            listen: vec![],
            peers: 2,
            connected: vec!["12D3KooWa".into(), "12D3KooWb".into()],
            offers_known: 0,
            operator: None,
            sandbox: None,
        })
    }
    async fn health(&self) -> HealthView {
        HealthView {
            status: HealthStatus::Ok,
            version: "0.0.0-test".into(),
            uptime_secs: 7,
            active_sessions: 1,
        }
    }
    async fn ready(&self) -> bool {
        true
    }
    async fn metrics(&self) -> String {
        "# EOF\n".into()
    }
    async fn offers(&self, filter: OfferFilter) -> Result<Vec<OfferView>, ApiError> {
        assert!(filter.tool.is_some() || filter.max_price.is_none() || filter.provider.is_none());
        Ok(vec![])
    }
    async fn tools(&self) -> Result<Vec<OfferView>, ApiError> {
        Ok(vec![])
    }
    async fn providers(
        &self,
        filter: crate::providers::ProviderFilter,
    ) -> Result<crate::providers::ProviderPage, ApiError> {
        assert!(filter.limit >= 1);
        Ok(crate::providers::ProviderPage {
            providers: vec![],
            total: 0,
            next_offset: None,
        })
    }
    async fn reputation(&self) -> Result<Vec<crate::providers::ProviderReputation>, ApiError> {
        Ok(Vec::new())
    }
    async fn provider(
        &self,
        provider: orien_protocol::NodeId,
    ) -> Result<crate::providers::ProviderView, ApiError> {
        Err(ApiError::NotFound(format!(
            "a profile of provider {provider}"
        )))
    }
    async fn open_session(&self, request: OpenSessionRequest) -> Result<SessionView, ApiError> {
        assert!(!request.budget.is_zero());
        let n = self.opened.fetch_add(1, Ordering::SeqCst) as u128;
        Ok(fake_session(SessionId::from_bytes(n.to_be_bytes())))
    }
    async fn sessions(&self) -> Result<Vec<SessionView>, ApiError> {
        Ok(vec![])
    }
    async fn session(&self, session: SessionId) -> Result<SessionView, ApiError> {
        Err(ApiError::NotFound(format!("session {session}")))
    }
    async fn close_session(&self, session: SessionId) -> Result<SessionView, ApiError> {
        Err(ApiError::NotFound(format!("session {session}")))
    }
    async fn start_execution(
        &self,
        session: SessionId,
        _tool: Option<orien_protocol::ToolName>,
        _args: serde_json::Value,
        _outputs: Vec<String>,
    ) -> Result<ExecutionView, ApiError> {
        Err(ApiError::NotFound(format!("session {session}")))
    }
    async fn executions(
        &self,
        _filter: crate::sessions::ExecutionFilter,
    ) -> Result<crate::sessions::ExecutionPage, ApiError> {
        Ok(crate::sessions::ExecutionPage {
            executions: Vec::new(),
            next: None,
        })
    }
    async fn execution(&self, exec: ExecId) -> Result<ExecutionView, ApiError> {
        Err(ApiError::NotFound(format!("execution {exec}")))
    }
    async fn execution_log(
        &self,
        exec: ExecId,
        _after: Option<u64>,
        _wait: std::time::Duration,
    ) -> Result<LogPage, ApiError> {
        Err(ApiError::NotFound(format!("execution {exec}")))
    }
    async fn upload_file(
        &self,
        session: SessionId,
        _path: String,
        _upload: crate::api::FileUpload,
    ) -> Result<FileView, ApiError> {
        Err(ApiError::NotFound(format!("session {session}")))
    }
    async fn download_file(
        &self,
        session: SessionId,
        _path: String,
        _archive: bool,
        _offset: u64,
        _expect: Option<orien_protocol::ContentHash>,
    ) -> Result<crate::api::FileDownload, ApiError> {
        Err(ApiError::NotFound(format!("session {session}")))
    }
    async fn download_artefact(
        &self,
        exec: ExecId,
        _path: String,
        _offset: u64,
    ) -> Result<crate::api::FileDownload, ApiError> {
        Err(ApiError::NotFound(format!("execution {exec}")))
    }
    async fn list_files(&self, session: SessionId) -> Result<Vec<FileView>, ApiError> {
        Err(ApiError::NotFound(format!("session {session}")))
    }
    async fn receipts(&self, session: SessionId) -> Result<Vec<ReceiptView>, ApiError> {
        Err(ApiError::NotFound(format!("session {session}")))
    }
    async fn balances(&self) -> Result<Vec<BalanceView>, ApiError> {
        Ok(vec![])
    }
    async fn earnings_by_day(&self) -> Result<Vec<EarningsView>, ApiError> {
        Ok(vec![])
    }
    async fn wallet(&self) -> Result<crate::chain::WalletView, ApiError> {
        Err(ApiError::Conflict("not connected to a chain".into()))
    }
    async fn fund_lane(
        &self,
        _request: crate::chain::FundRequest,
    ) -> Result<crate::chain::FundedView, ApiError> {
        Err(ApiError::Conflict("not connected to a chain".into()))
    }
    async fn settlements(&self) -> Result<Vec<crate::chain::SettlementRecordView>, ApiError> {
        Ok(vec![])
    }
    async fn withdraw(
        &self,
        _what: crate::chain::WithdrawKind,
    ) -> Result<crate::chain::WithdrawnView, ApiError> {
        Err(ApiError::Conflict("no chain".into()))
    }
    async fn reclaim(
        &self,
        _payout: orien_protocol::EvmAddress,
    ) -> Result<crate::chain::ReclaimView, ApiError> {
        Err(ApiError::Conflict("no chain".into()))
    }
    async fn finish_reclaim(
        &self,
        _payout: orien_protocol::EvmAddress,
    ) -> Result<crate::chain::RefundedView, ApiError> {
        Err(ApiError::Conflict("no chain".into()))
    }
    async fn lane_status(&self) -> Result<Vec<crate::chain::LaneStatusView>, ApiError> {
        Ok(Vec::new())
    }
    async fn settle(&self) -> Result<Vec<crate::chain::SettlementView>, ApiError> {
        Err(ApiError::Conflict("not connected to a chain".into()))
    }
}

fn app(limit: RateLimit) -> (Router, BearerToken) {
    let token = BearerToken::generate();
    let mut config = ApiConfig::new(token.clone());
    config.rate_limit = limit;
    (router(Arc::new(FakeNode::default()), config), token)
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String, serde_json::Value) {
    send(app, method, uri, token, &[], Body::empty()).await
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Body,
) -> (StatusCode, String, serde_json::Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (
        status,
        content_type,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn health_is_public_and_everything_else_needs_the_token() {
    let (app, token) = app(RateLimit::default());
    let (status, content_type, health) = call(&app, "GET", "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    assert_eq!(
        health,
        serde_json::json!({"status": "ok", "version": "0.0.0-test", "uptime_secs": 7, "active_sessions": 1})
    );
    assert_eq!(call(&app, "GET", "/readyz", None).await.0, StatusCode::OK);
    for uri in ["/v1/node", "/v1/offers", "/metrics", "/v1/openapi.json"] {
        let (status, content_type, body) = call(&app, "GET", uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["type"], "urn:orien:problem:unauthorized");
        assert_eq!(
            call(
                &app,
                "GET",
                uri,
                Some("wrong-token-wrong-token-wrong-token")
            )
            .await
            .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&app, "GET", uri, Some(token.expose())).await.0,
            StatusCode::OK,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn bad_input_gets_a_field_level_problem_never_a_5xx() {
    let (app, token) = app(RateLimit::default());
    for (uri, field) in [
        ("/v1/offers?tool=Bad%20Tool", "tool"),
        ("/v1/offers?max_price=-1", "max_price"),
        ("/v1/offers?max_price=0.0000001", "max_price"),
        ("/v1/offers?provider=nobody", "provider"),
        ("/v1/offers?unknown=1", "query"),
        ("/v1/executions?limit=0", "limit"),
        ("/v1/executions?limit=501", "limit"),
        ("/v1/executions?after=zz", "after"),
        ("/v1/executions?session=zz", "session"),
        ("/v1/executions?tool=Bad%20Tool", "tool"),
        ("/v1/executions?state=bogus", "query"),
    ] {
        let (status, content_type, body) = call(&app, "GET", uri, Some(token.expose())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["errors"][0]["field"], field, "{uri}: {body}");
    }
    let (status, _, body) = call(&app, "GET", "/v1/nothing", Some(token.expose())).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (StatusCode::NOT_FOUND, Some("urn:orien:problem:not-found"))
    );
    let (status, _, _) = call(&app, "DELETE", "/v1/node", Some(token.expose())).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn requests_beyond_the_rate_limit_get_429() {
    let (app, token) = app(RateLimit {
        per_second: 0.001,
        burst: 3.0,
    });
    for _ in 0..3 {
        assert_eq!(
            call(&app, "GET", "/v1/node", Some(token.expose())).await.0,
            StatusCode::OK
        );
    }
    let (status, _, body) = call(&app, "GET", "/v1/node", Some(token.expose())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["type"], "urn:orien:problem:rate-limited");
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let (app, token) = app(RateLimit::default());
    let doc = openapi();
    assert!(doc.paths.paths.len() >= 14);
    let session = SessionId::from_bytes([7; 16]).to_string();
    let exec = ExecId::from_bytes([9; 16]).to_string();
    for (path, item) in &doc.paths.paths {
        let uri = path
            .replace(
                "{id}",
                if path.starts_with("/v1/executions") {
                    &exec
                } else {
                    &session
                },
            )
            .replace("{path}", "data/in.txt");
        let uri = if uri == "/v1/receipts" {
            format!("{uri}?session={session}")
        } else {
            uri
        };
        let methods = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PUT", item.put.is_some()),
        ];
        assert!(
            methods.iter().any(|(_, m)| *m),
            "{path} documents no method"
        );
        for (method, _) in methods.iter().filter(|(_, m)| *m) {
            let body = if *method == "POST" {
                Body::from("{}")
            } else {
                Body::empty()
            };
            let (status, _, body) = send(
                &app,
                method,
                &uri,
                Some(token.expose()),
                &[("content-type", "application/json")],
                body,
            )
            .await;
            // A 404 from the node ("session … not found") is fine; the router's own
            // 404 ("route not found") means the path is documented but not served.
            assert_ne!(
                body["detail"], "route not found",
                "{method} {path} is not served"
            );
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(!status.is_server_error(), "{method} {uri}: {status} {body}");
        }
    }
    let (_, _, served) = call(&app, "GET", "/v1/openapi.json", Some(token.expose())).await;
    assert_eq!(
        served["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
    assert!(served["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn a_retried_post_with_the_same_idempotency_key_is_answered_once() {
    let token = BearerToken::generate();
    let node = Arc::new(FakeNode::default());
    let app = router(node.clone(), ApiConfig::new(token.clone()));
    let open = |key: &'static str, budget: &'static str| {
        let app = app.clone();
        let token = token.clone();
        async move {
            send(
                &app,
                "POST",
                "/v1/sessions",
                Some(token.expose()),
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", key),
                ],
                Body::from(format!(r#"{{"tool":"sha256","budget":"{budget}"}}"#)),
            )
            .await
        }
    };
    let (status, _, first) = open("k-1", "1").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, replay) = open("k-1", "1").await;
    assert_eq!((status, &replay), (StatusCode::CREATED, &first));
    assert_eq!(
        node.opened.load(Ordering::SeqCst),
        1,
        "replayed, not run again"
    );
    let (status, _, problem) = open("k-1", "2").await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "same key, other body: {problem}"
    );
    assert_eq!(problem["type"], "urn:orien:problem:conflict");
    let (status, _, other) = open("k-2", "1").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(other["id"], first["id"]);
    assert_eq!(node.opened.load(Ordering::SeqCst), 2);
    let (status, _, problem) = open("bad key with spaces", "1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
}

/// The generated document holds together: it round-trips through utoipa's OpenAPI
/// model, every `$ref` names a schema it defines, every `{param}` of a path is declared
/// by each of its operations, and every operation documents a success and a 401.
#[test]
fn the_openapi_document_is_consistent() {
    let doc = serde_json::to_value(openapi()).unwrap();
    let whole: Result<utoipa::openapi::OpenApi, _> = serde_json::from_value(doc.clone());
    assert!(whole.is_ok(), "{:?}", whole.err());
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let parsed: Result<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>, _> =
            serde_json::from_value(schema.clone());
        assert!(
            parsed.is_ok(),
            "schema {name}: {:?}\n{schema}",
            parsed.err()
        );
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        let parsed: Result<utoipa::openapi::PathItem, _> = serde_json::from_value(item.clone());
        assert!(parsed.is_ok(), "path {path}: {:?}\n{item}", parsed.err());
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    fn refs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if k == "$ref" {
                        out.push(v.as_str().unwrap().to_owned());
                    } else {
                        refs(v, out);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in &found {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(schemas.contains_key(name), "{r} is not defined");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        let params: Vec<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            for param in &params {
                assert!(
                    declared.contains(param),
                    "{method} {path} does not declare {{{param}}}"
                );
            }
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|code| code.starts_with('2')),
                "{method} {path} documents no success"
            );
            if !matches!(path.as_str(), "/healthz" | "/readyz" | "/v1/openapi.json") {
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} documents no 401"
                );
            }
        }
    }
}

/// A request as a browser at `host` sends it: `Host`, and the cookie when given.
fn browser_request(
    method: &str,
    uri: &str,
    host: &str,
    cookie: Option<&str>,
) -> axum::http::request::Builder {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, host);
    if let Some(cookie) = cookie {
        // One cookie per port: the node at another port of the host has its own.
        let port = host.rsplit_once(':').map_or("", |(_, port)| port);
        request = request.header(
            header::COOKIE,
            format!("theme=dark; orien_dashboard_1={cookie}x; orien_dashboard_{port}={cookie}"),
        );
    }
    request
}

async fn respond(app: &Router, request: axum::http::request::Builder) -> axum::response::Response {
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// Signs a browser in as `orien-node dashboard` and the link do: the session cookie.
async fn sign_in(app: &Router, token: &BearerToken, host: &str) -> String {
    let (status, _, link) = send(
        app,
        "POST",
        "/v1/dashboard/login-links",
        Some(token.expose()),
        &[("host", host)],
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{link}");
    assert_eq!(link["expires_in_secs"], 300);
    let path = link["path"].as_str().unwrap();
    assert!(path.starts_with("/login?code=") && !path.contains(token.expose()));
    let response = respond(app, browser_request("GET", path, host, None)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/");
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let port = host.rsplit_once(':').map_or("", |(_, port)| port);
    let value = cookie
        .strip_prefix(&format!("orien_dashboard_{port}="))
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    // The link works once.
    let again = respond(app, browser_request("GET", path, host, None)).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    value
}

#[tokio::test]
async fn the_dashboard_is_served_with_a_strict_content_security_policy() {
    let (app, _) = app(RateLimit::default());
    let host = "127.0.0.1:7400";
    let page = respond(&app, browser_request("GET", "/", host, None)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers();
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    let etag = headers[header::ETAG].clone();
    let cached = respond(
        &app,
        browser_request("GET", "/", host, None).header(header::IF_NONE_MATCH, etag),
    )
    .await;
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);

    for asset in crate::dashboard::ASSETS {
        let response = respond(
            &app,
            browser_request("GET", &format!("/assets/{}", asset.path), host, None),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{}", asset.path);
        assert_eq!(response.headers()[header::CONTENT_TYPE], asset.content_type);
    }
    for missing in ["/assets/nope.js", "/assets/../Cargo.toml", "/assets/"] {
        let response = respond(&app, browser_request("GET", missing, host, None)).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
    }
}

#[tokio::test]
async fn a_browser_signs_in_with_a_one_time_link_and_acts_only_from_its_own_origin() {
    let (app, token) = app(RateLimit::default());
    let host = "127.0.0.1:7400";
    let cookie = sign_in(&app, &token, host).await;

    // Reading with the cookie works; without it, not.
    let read = respond(
        &app,
        browser_request("GET", "/v1/node", host, Some(&cookie)),
    )
    .await;
    assert_eq!(read.status(), StatusCode::OK);
    let stranger = respond(
        &app,
        browser_request("GET", "/v1/node", host, Some("0123abcd")),
    )
    .await;
    assert_eq!(stranger.status(), StatusCode::UNAUTHORIZED);

    // Changing state needs the node's own Origin: another site's form or fetch is refused.
    for origin in [
        None,
        Some("http://evil.example"),
        Some("http://127.0.0.1:7401"),
        Some("null"),
    ] {
        let mut request = browser_request("POST", "/v1/settlements", host, Some(&cookie));
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let response = respond(&app, request).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin:?}");
    }
    let own = respond(
        &app,
        browser_request("POST", "/v1/settlements", host, Some(&cookie))
            .header(header::ORIGIN, "http://127.0.0.1:7400"),
    )
    .await;
    // Past the guard: the fake node has no chain.
    assert_eq!(own.status(), StatusCode::CONFLICT);

    // A browser cannot mint links for others; a wrong token is not saved by a cookie.
    let mint = respond(
        &app,
        browser_request("POST", "/v1/dashboard/login-links", host, Some(&cookie))
            .header(header::ORIGIN, "http://127.0.0.1:7400"),
    )
    .await;
    assert_eq!(mint.status(), StatusCode::FORBIDDEN);
    let wrong = respond(
        &app,
        browser_request("GET", "/v1/node", host, Some(&cookie)).header(
            header::AUTHORIZATION,
            "Bearer wrong-token-wrong-token-wrong-token",
        ),
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // Signing out: only from the page's origin, and the cookie stops working.
    let forged = respond(
        &app,
        browser_request("POST", "/logout", host, Some(&cookie)),
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let out = respond(
        &app,
        browser_request("POST", "/logout", host, Some(&cookie))
            .header(header::ORIGIN, "http://127.0.0.1:7400"),
    )
    .await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert!(
        out.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = respond(
        &app,
        browser_request("GET", "/v1/node", host, Some(&cookie)),
    )
    .await;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn requests_naming_a_foreign_host_are_refused() {
    let token = BearerToken::generate();
    let mut config = ApiConfig::new(token.clone());
    config.hosts = HostPolicy::new(["node.lan".to_string()]);
    let app = router(Arc::new(FakeNode::default()), config);
    let cookie = sign_in(&app, &token, "localhost:7400").await;
    // A rebound name reaches the same socket, but every route refuses it, even with
    // the token or a cookie.
    for uri in [
        "/",
        "/assets/app.js",
        "/login?code=x",
        "/healthz",
        "/v1/node",
    ] {
        for host in ["evil.example:7400", "127.0.0.1.nip.evil:7400"] {
            let request = browser_request("GET", uri, host, Some(&cookie))
                .header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
            let response = respond(&app, request).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{host}{uri}");
        }
    }
    for host in ["node.lan:7400", "127.0.0.1:7400", "[::1]:7400"] {
        let response = respond(
            &app,
            browser_request("GET", "/v1/node", host, Some(&cookie)),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
}
