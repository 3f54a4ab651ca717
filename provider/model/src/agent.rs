//! The agent's marks (`agent/<policy>.json`) and run claims
//! (`runs/<policy>/<run id>.json`): how `coffer agent` and scheduled workers
//! agree on which firing of a rule was handled, and by whom.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogDocument, Kind};

/// Per rule, the due time last handled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    pub format_version: u32,
    pub rules: BTreeMap<String, DateTime<Utc>>,
}

impl CatalogDocument for Marks {
    const KIND: Kind = Kind::AgentMarks;
    const FORMAT_VERSION: u32 = 1;
}

/// Marks a scheduled run as taken by one worker: created only if absent, so
/// of two workers launched for the same firing one runs it. Fields are in
/// the order the first writer (a JSON map without preserved order) wrote
/// them; claims carry no `format_version` (read as format 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunClaim {
    pub claimed_at: DateTime<Utc>,
    /// The rule whose schedule launched the worker.
    pub launched_for: String,
    /// Every rule due at the same minute, run together.
    pub rules: Vec<String>,
    pub run_id: String,
}

impl CatalogDocument for RunClaim {
    const KIND: Kind = Kind::RunClaim;
    const FORMAT_VERSION: u32 = 1;
}
