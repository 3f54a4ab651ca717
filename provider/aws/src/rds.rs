//! RDS lookups: DB instances, clusters and their manual snapshots, every
//! page read.

use aws_sdk_rds::Client;
use aws_sdk_rds::types::{DbCluster, DbClusterSnapshot, DbInstance, DbSnapshot};

use super::AwsError;

pub const DB_SNAPSHOT_NOT_FOUND: &[&str] = &["DBSnapshotNotFound", "DBSnapshotNotFoundFault"];
pub const DB_CLUSTER_SNAPSHOT_NOT_FOUND: &[&str] = &["DBClusterSnapshotNotFoundFault", "DBClusterSnapshotNotFound"];

/// Every DB instance of the region.
pub async fn list_db_instances(client: &Client) -> Result<Vec<DbInstance>, AwsError> {
    let mut all = Vec::new();
    let mut pages = client.describe_db_instances().max_records(100).into_paginator().send();
    while let Some(page) = pages.next().await {
        all.extend(page.map_err(|e| AwsError::from_sdk(e, &[]))?.db_instances().iter().cloned());
    }
    Ok(all)
}

/// Every DB cluster (Aurora and Multi-AZ) of the region.
pub async fn list_db_clusters(client: &Client) -> Result<Vec<DbCluster>, AwsError> {
    let mut all = Vec::new();
    let mut pages = client.describe_db_clusters().max_records(100).into_paginator().send();
    while let Some(page) = pages.next().await {
        all.extend(page.map_err(|e| AwsError::from_sdk(e, &[]))?.db_clusters().iter().cloned());
    }
    Ok(all)
}

/// Whether `engine` at `version` is offered in the client's region. An Aurora cluster
/// snapshot can be copied only to a region that offers its engine version (Aurora user guide,
/// "DB cluster snapshot copying": the target Region must support the engine version).
pub async fn engine_version_offered(client: &Client, engine: &str, version: &str) -> Result<bool, AwsError> {
    let out = client
        .describe_db_engine_versions()
        .engine(engine)
        .engine_version(version)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    Ok(!out.db_engine_versions().is_empty())
}

pub async fn find_db_snapshot(client: &Client, id: &str) -> Result<DbSnapshot, AwsError> {
    let out = client
        .describe_db_snapshots()
        .db_snapshot_identifier(id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, DB_SNAPSHOT_NOT_FOUND))?;
    out.db_snapshots().first().cloned().ok_or(AwsError::NotFound)
}

pub async fn find_db_cluster_snapshot(client: &Client, id: &str) -> Result<DbClusterSnapshot, AwsError> {
    let out = client
        .describe_db_cluster_snapshots()
        .db_cluster_snapshot_identifier(id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, DB_CLUSTER_SNAPSHOT_NOT_FOUND))?;
    out.db_cluster_snapshots().first().cloned().ok_or(AwsError::NotFound)
}

/// Every manual DB snapshot of the region (tags come in `TagList`).
pub async fn list_manual_db_snapshots(client: &Client) -> Result<Vec<DbSnapshot>, AwsError> {
    let mut all = Vec::new();
    let mut pages = client.describe_db_snapshots().snapshot_type("manual").max_records(100).into_paginator().send();
    while let Some(page) = pages.next().await {
        all.extend(page.map_err(|e| AwsError::from_sdk(e, &[]))?.db_snapshots().iter().cloned());
    }
    Ok(all)
}

/// Every manual DB cluster snapshot of the region.
pub async fn list_manual_db_cluster_snapshots(client: &Client) -> Result<Vec<DbClusterSnapshot>, AwsError> {
    let mut all = Vec::new();
    let mut pages =
        client.describe_db_cluster_snapshots().snapshot_type("manual").max_records(100).into_paginator().send();
    while let Some(page) = pages.next().await {
        all.extend(page.map_err(|e| AwsError::from_sdk(e, &[]))?.db_cluster_snapshots().iter().cloned());
    }
    Ok(all)
}
