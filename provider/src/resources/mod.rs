//! Coffer's resources, one file each.

pub mod tags;
pub mod worker_configuration;
