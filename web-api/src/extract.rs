//! Extractors whose rejections are [`ApiError`]s, so bad input gets a problem document.

use axum::extract::{FromRequest, FromRequestParts};

use crate::problem::ApiError;

/// JSON body; a malformed or invalid body is a 400 problem.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Query string; an invalid parameter is a 400 problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Path parameters; an invalid one is a 400 problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);
