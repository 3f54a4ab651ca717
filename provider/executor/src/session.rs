//! Session records (the documents are in `coffer_model::session`): a run
//! saves one, the CLI and the data sources read the newest.

pub use coffer_model::session::{
    BackupRecord, Outcome, ResourceKind, ResourceRecord, RetentionRecord, Session, SnapshotRecord,
};

use coffer_aws::catalog::{Catalog, CatalogError, Kind};

/// The record of a scheduled firing that could not start.
pub fn not_started(firing: &super::agent::Firing, why: &str) -> Session {
    Session::not_started(&firing.policy, firing.run_id(), firing.rules.clone(), why)
}

/// Writes (or replaces) `session` in the catalog.
pub async fn save(session: &Session, catalog: &Catalog<'_>) -> Result<(), CatalogError> {
    catalog.put(&session.name(), session).await.map(|_| ())
}

/// The newest `limit` sessions of a policy, newest first (run ids sort by
/// time).
pub async fn recent(catalog: &Catalog<'_>, policy: &str, limit: usize) -> Result<Vec<Session>, CatalogError> {
    let names = catalog.list(Kind::Session, &format!("{policy}/")).await?;
    let mut sessions = Vec::new();
    for name in names.iter().rev().take(limit) {
        match catalog.get::<Session>(name).await {
            Ok(doc) => sessions.push(doc.body),
            Err(CatalogError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sessions)
}
