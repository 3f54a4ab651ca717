//! Coffer's data sources, one file each.

pub mod iam_policy;
