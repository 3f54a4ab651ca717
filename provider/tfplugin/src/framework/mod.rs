//! The protocol-free provider framework: values, schemas, diagnostics with
//! attribute paths, validators, plan logic and the traits resources
//! implement. Nothing here knows about gRPC or AWS.

pub mod diag;
pub mod plan;
pub mod resource;
pub mod schema;
pub mod validators;
pub mod value;

pub use diag::{AttributePath, Diagnostics};
pub use resource::{
    ClientInfo, DataSource, Import, ModifyPlan, PlanRequest, Private, Provider, Resource, UpgradeState,
};
pub use schema::{Attribute, Block, NestedBlock, Schema, Type};
pub use value::Value;
