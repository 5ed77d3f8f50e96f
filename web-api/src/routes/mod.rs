//! Handlers, one module per resource. Handlers stay thin: extractors validate, the
//! [`NodeApi`](crate::NodeApi) does the work, [`ApiError`](crate::ApiError) maps failures.

pub(crate) mod health;
pub(crate) mod node;
pub(crate) mod offers;
