//! S3 lookups and conditional writes shared by the catalog and repositories.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    NoncurrentVersionExpiration, PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::AwsError;

/// Error codes S3 answers a missing bucket or key with (HEAD requests carry
/// no body, so they only say `NotFound`).
pub const NOT_FOUND: &[&str] = &["NoSuchKey", "NoSuchBucket", "NotFound", "404"];

/// A conditional write whose condition did not hold.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// `If-None-Match: *` met an existing object, or `If-Match` a newer
    /// ETag (412), or another conditional write raced this one (409).
    #[error("the object was written by someone else in the meantime")]
    PreconditionFailed,
    #[error(transparent)]
    Aws(#[from] AwsError),
}

fn write_error<E>(error: SdkError<E, aws_smithy_runtime_api::http::Response>) -> WriteError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    match (error.code(), status) {
        (Some("PreconditionFailed" | "ConditionalRequestConflict"), _) | (_, Some(412 | 409)) => {
            WriteError::PreconditionFailed
        }
        _ => WriteError::Aws(AwsError::from_sdk(error, &[])),
    }
}

/// An object's bytes and the ETag to make the next write conditional on.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub body: Vec<u8>,
    pub etag: String,
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn find_bucket(client: &Client, bucket: &str) -> Result<(), AwsError> {
    client.head_bucket().bucket(bucket).send().await.map(|_| ()).map_err(|e| AwsError::from_sdk(e, NOT_FOUND))
}

pub async fn find_object(client: &Client, bucket: &str, key: &str) -> Result<StoredObject, AwsError> {
    let out = client.get_object().bucket(bucket).key(key).send().await.map_err(|e| AwsError::from_sdk(e, NOT_FOUND))?;
    let etag = out.e_tag().unwrap_or_default().to_string();
    let last_modified = out.last_modified().and_then(|t| chrono::DateTime::from_timestamp(t.secs(), 0));
    let body = out
        .body
        .collect()
        .await
        .map_err(|e| AwsError::Api(format!("reading the body of s3://{bucket}/{key}: {e}")))?
        .into_bytes()
        .to_vec();
    Ok(StoredObject { body, etag, last_modified })
}

/// One user-metadata value of an object (HeadObject), None when the object has none by that
/// name; a missing object or bucket is `NotFound`.
pub async fn find_object_metadata(
    client: &Client,
    bucket: &str,
    key: &str,
    name: &str,
) -> Result<Option<String>, AwsError> {
    let out =
        client.head_object().bucket(bucket).key(key).send().await.map_err(|e| AwsError::from_sdk(e, NOT_FOUND))?;
    Ok(out.metadata().and_then(|m| m.get(name)).cloned())
}

/// Uploads a local file, streamed, with one user-metadata value.
pub async fn put_file(
    client: &Client,
    bucket: &str,
    key: &str,
    path: &std::path::Path,
    metadata: (&str, &str),
) -> Result<(), AwsError> {
    let body =
        ByteStream::from_path(path).await.map_err(|e| AwsError::Api(format!("reading {}: {e}", path.display())))?;
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/octet-stream")
        .metadata(metadata.0, metadata.1)
        .body(body)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| AwsError::from_sdk(e, &[]))
}

/// What a write must find in place.
#[derive(Debug, Clone, Copy)]
pub enum Precondition<'a> {
    /// Nothing: the write creates the object.
    Absent,
    /// The object as last read, by ETag.
    Unchanged(&'a str),
    /// Whatever is there: records whose only writer is their own run.
    Any,
}

/// Writes an object conditionally and returns its new ETag.
pub async fn put_object(
    client: &Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
    precondition: Precondition<'_>,
) -> Result<String, WriteError> {
    let body = bytes::Bytes::from(body);
    let request =
        client.put_object().bucket(bucket).key(key).content_type(content_type).body(ByteStream::from(body.clone()));
    let request = match precondition {
        Precondition::Absent => request.if_none_match("*"),
        Precondition::Unchanged(etag) => request.if_match(etag),
        Precondition::Any => request,
    };
    match request.send().await.map_err(write_error) {
        Ok(out) => Ok(out.e_tag().unwrap_or_default().to_string()),
        Err(WriteError::PreconditionFailed) => match find_object(client, bucket, key).await {
            Ok(stored) if stored.body == body => Ok(stored.etag),
            _ => Err(WriteError::PreconditionFailed),
        },
        Err(e) => Err(e),
    }
}

// Why a failed condition is read back: when the connection drops after S3
// applied a conditional write, the SDK retries it, and the retry's
// condition fails against the object this very call wrote. An object
// holding exactly the bytes sent is this write (or one identical to it):
// the write succeeded.

/// Every key under `prefix`, in key order (ListObjectsV2, all pages).
pub async fn list_keys(client: &Client, bucket: &str, prefix: &str) -> Result<Vec<String>, AwsError> {
    let mut keys = Vec::new();
    let mut pages = client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk(e, NOT_FOUND))?;
        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
    }
    keys.sort();
    Ok(keys)
}

pub async fn delete_object(client: &Client, bucket: &str, key: &str) -> Result<(), AwsError> {
    match client.delete_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(()),
        Err(e) => match AwsError::from_sdk(e, NOT_FOUND) {
            AwsError::NotFound => Ok(()),
            e => Err(e),
        },
    }
}

/// Creates a bucket in `region` (S3 wants no location constraint for
/// us-east-1), optionally with Object Lock, which can only be chosen at
/// creation time through this call.
pub async fn create_bucket(client: &Client, bucket: &str, region: &str, object_lock: bool) -> Result<(), AwsError> {
    let mut request = client.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(region)).build(),
        );
    }
    if object_lock {
        request = request.object_lock_enabled_for_bucket(true);
    }
    request.send().await.map(|_| ()).map_err(|e| AwsError::from_sdk(e, &[]))
}

/// Days a pruned (or overwritten) object of a repository bucket Coffer
/// created stays recoverable as a noncurrent version before S3 expires it.
pub const NONCURRENT_DAYS: i32 = 7;
/// Days after which S3 aborts an unfinished multipart upload (a backup
/// killed mid-pack leaves one; its parts are billed until aborted).
pub const ABORT_UPLOADS_DAYS: i32 = 1;

/// The lifecycle of a repository bucket Coffer created: it is versioned, so
/// without this what `prune` deletes would stay stored (and billed) for
/// ever as noncurrent versions; they expire after [`NONCURRENT_DAYS`] (S3
/// keeps versions under Object Lock retention until it ends), leftover
/// delete markers are removed, and unfinished multipart uploads are aborted
/// after [`ABORT_UPLOADS_DAYS`].
pub async fn put_repository_lifecycle(client: &Client, bucket: &str) -> Result<(), AwsError> {
    let whole_bucket = || LifecycleRuleFilter::builder().prefix("").build();
    let build = |e: aws_sdk_s3::error::BuildError| AwsError::Api(e.to_string());
    let expire_pruned = LifecycleRule::builder()
        .id("coffer-expire-pruned-versions")
        .status(ExpirationStatus::Enabled)
        .filter(whole_bucket())
        .noncurrent_version_expiration(NoncurrentVersionExpiration::builder().noncurrent_days(NONCURRENT_DAYS).build())
        .expiration(LifecycleExpiration::builder().expired_object_delete_marker(true).build())
        .build()
        .map_err(build)?;
    let abort_uploads = LifecycleRule::builder()
        .id("coffer-abort-incomplete-uploads")
        .status(ExpirationStatus::Enabled)
        .filter(whole_bucket())
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder().days_after_initiation(ABORT_UPLOADS_DAYS).build(),
        )
        .build()
        .map_err(build)?;
    client
        .put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder().rules(expire_pruned).rules(abort_uploads).build().map_err(build)?,
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| AwsError::from_sdk(e, &[]))
}

/// Versioning on, default encryption SSE-S3, public access blocked: what
/// the catalog and created repository buckets get.
pub async fn harden_bucket(client: &Client, bucket: &str) -> Result<(), AwsError> {
    client
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::Aes256)
                .build()
                .map_err(|e| AwsError::Api(e.to_string()))?,
        )
        .build();
    client
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(|e| AwsError::Api(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    client
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| AwsError::from_sdk(e, &[]))
}

/// Every version and delete marker under `prefix`, as (key, version id).
pub async fn list_versions(
    client: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, Option<String>)>, AwsError> {
    let mut out = Vec::new();
    let mut key_marker: Option<String> = None;
    let mut version_marker: Option<String> = None;
    loop {
        let page = client
            .list_object_versions()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, &[]))?;
        for v in page.versions() {
            out.push((v.key().unwrap_or_default().to_string(), v.version_id().map(str::to_string)));
        }
        for m in page.delete_markers() {
            out.push((m.key().unwrap_or_default().to_string(), m.version_id().map(str::to_string)));
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
        if key_marker.is_none() {
            break;
        }
    }
    Ok(out)
}

/// Deletes the given object versions one by one; returns the keys S3
/// refused (Object Lock) with the reason.
pub async fn delete_versions(
    client: &Client,
    bucket: &str,
    versions: &[(String, Option<String>)],
) -> Vec<(String, String)> {
    let mut refused = Vec::new();
    for (key, version) in versions {
        if let Err(e) = client.delete_object().bucket(bucket).key(key).set_version_id(version.clone()).send().await {
            refused.push((key.clone(), AwsError::from_sdk(e, &[]).to_string()));
        }
    }
    refused
}
