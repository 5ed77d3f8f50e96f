//! Handlers, one module per resource. Handlers stay thin: extractors validate, the
//! [`NodeApi`](crate::NodeApi) does the work, [`ApiError`](crate::ApiError) maps failures.

pub(crate) mod chain;
pub(crate) mod dashboard;
pub(crate) mod executions;
pub(crate) mod files;
pub(crate) mod health;
pub(crate) mod ledger;
pub(crate) mod node;
pub(crate) mod offers;
pub(crate) mod providers;
pub(crate) mod sessions;
pub(crate) mod tools;
