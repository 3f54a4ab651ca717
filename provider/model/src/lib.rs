//! The contract between Coffer's Terraform provider and its workers, which
//! may run another build: the catalog documents (policy, region mapping,
//! repository entry, session, agent marks, run claim), where the catalog
//! lives, the worker task, and the validation of names, regions, ARNs,
//! durations and cron expressions both sides apply.
//!
//! The bottom floor: no AWS SDK, no gRPC. Every document type implements
//! [`catalog::CatalogDocument`] (its folder and `FORMAT_VERSION`), and
//! [`catalog::decode`] refuses a document of a newer format instead of
//! silently dropping what a newer writer added. The JSON is pinned by golden
//! files (`tests/model/`).

pub mod agent;
pub mod catalog;
pub mod configuration;
pub mod cron;
pub mod names;
pub mod point_id;
pub mod policy;
pub mod region_mapping;
pub mod repository;
pub mod session;
pub mod validation;
pub mod worker;
pub mod worker_binary;

pub use catalog::{CatalogDocument, CatalogLocation, DecodeError, Kind};
