//! The one integration-test binary: protocol tests, acceptance tests with
//! real terraform against moto, and docs/examples checks.

mod acceptance;
pub mod docs_and_examples;
mod executor;
mod model;
mod permissions;
mod plugin_protocol;
mod repository;
mod support;
