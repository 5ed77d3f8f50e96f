//! Router behaviour with a fake node behind the trait: auth, problems, limits, OpenAPI.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::*;

struct FakeNode;

#[async_trait]
impl NodeApi for FakeNode {
    async fn node_info(&self) -> Result<NodeInfo, ApiError> {
        Ok(NodeInfo {
            id: "12D3KooWfake".into(),
            version: "0.1.0".into(),
            listen: vec![],
            peers: 2,
            offers_known: 0,
        })
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
}

fn app(limit: RateLimit) -> (Router, BearerToken) {
    let token = BearerToken::generate();
    let mut config = ApiConfig::new(token.clone());
    config.rate_limit = limit;
    (router(Arc::new(FakeNode), config), token)
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String, serde_json::Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
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
    assert_eq!(call(&app, "GET", "/healthz", None).await.0, StatusCode::OK);
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
    assert!(doc.paths.paths.len() >= 5);
    for (path, item) in &doc.paths.paths {
        assert!(item.get.is_some(), "{path} documents GET");
        let (status, _, _) = call(&app, "GET", path, Some(token.expose())).await;
        assert_ne!(
            status,
            StatusCode::NOT_FOUND,
            "{path} is documented but not served"
        );
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
    let (_, _, served) = call(&app, "GET", "/v1/openapi.json", Some(token.expose())).await;
    assert_eq!(
        served["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
    assert!(served["components"]["securitySchemes"]["bearer"].is_object());
}
