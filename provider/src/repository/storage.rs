//! Where a repository's objects live: a small trait over S3 (one bucket and
//! prefix) with an in-memory implementation for tests. Keys are relative to
//! the repository's prefix (`config`, `data/ab/ab12…`, `index/…`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, StorageClass};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use thiserror::Error;

use crate::aws::AwsError;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{0} does not exist")]
    NotFound(String),
    /// A create-only write found the object there.
    #[error("{0} already exists")]
    Exists(String),
    /// The object is in an archive storage class and not restored.
    #[error("{0} is archived (GLACIER / DEEP_ARCHIVE) and must be restored before it can be read")]
    Archived(String),
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Fail with [`StorageError::Exists`] when the key exists (If-None-Match).
    pub create_only: bool,
    /// S3 storage class; `None` is STANDARD.
    pub storage_class: Option<String>,
}

/// Where an archived object's thaw stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thaw {
    /// Readable now (not archived, or restored).
    Ready,
    /// A restore is under way.
    InProgress,
}

#[async_trait]
pub trait Storage: Send + Sync {
    /// `s3://bucket/prefix` or `memory:`: for messages.
    fn location(&self) -> String;
    async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError>;
    async fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError>;
    /// Large bodies go up in parts (multipart upload) where the backend has them.
    async fn put(&self, key: &str, body: Vec<u8>, options: &PutOptions) -> Result<(), StorageError>;
    /// Every object under `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError>;
    /// Deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Until when S3 Object Lock protects the object (None: not locked).
    async fn retained_until(&self, key: &str) -> Result<Option<DateTime<Utc>>, StorageError>;
    /// Asks for an archived object to be made readable for `days` days.
    async fn thaw(&self, key: &str, days: i32) -> Result<Thaw, StorageError>;
}

// ------------------------------------------------------------------ memory

#[derive(Debug, Clone)]
struct MemoryObject {
    body: Vec<u8>,
    modified: DateTime<Utc>,
    retained_until: Option<DateTime<Utc>>,
    archived: bool,
}

/// Objects in a map: for unit tests and fixtures.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    objects: Mutex<BTreeMap<String, MemoryObject>>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Test hook: put an Object Lock retention on an object.
    pub fn lock_until(&self, key: &str, until: DateTime<Utc>) {
        if let Some(o) = self.objects.lock().unwrap().get_mut(key) {
            o.retained_until = Some(until);
        }
    }

    /// Test hook: overwrite an object's bytes (corruption fixtures).
    pub fn replace(&self, key: &str, body: Vec<u8>) {
        if let Some(o) = self.objects.lock().unwrap().get_mut(key) {
            o.body = body;
        }
    }

    /// Test hook: age every object (grace periods).
    pub fn age_all(&self, by: chrono::TimeDelta) {
        for o in self.objects.lock().unwrap().values_mut() {
            o.modified -= by;
        }
    }

    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    fn location(&self) -> String {
        "memory:".into()
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let objects = self.objects.lock().unwrap();
        let o = objects.get(key).ok_or_else(|| StorageError::NotFound(key.into()))?;
        if o.archived {
            return Err(StorageError::Archived(key.into()));
        }
        Ok(o.body.clone())
    }

    async fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError> {
        let body = self.get(key).await?;
        let start = (offset as usize).min(body.len());
        let end = (offset + length).min(body.len() as u64) as usize;
        Ok(body[start..end].to_vec())
    }

    async fn put(&self, key: &str, body: Vec<u8>, options: &PutOptions) -> Result<(), StorageError> {
        let mut objects = self.objects.lock().unwrap();
        if options.create_only && objects.contains_key(key) {
            return Err(StorageError::Exists(key.into()));
        }
        let archived = matches!(options.storage_class.as_deref(), Some("GLACIER" | "DEEP_ARCHIVE"));
        objects.insert(key.into(), MemoryObject { body, modified: Utc::now(), retained_until: None, archived });
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, o)| ObjectInfo { key: k.clone(), size: o.body.len() as u64, last_modified: Some(o.modified) })
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }

    async fn retained_until(&self, key: &str) -> Result<Option<DateTime<Utc>>, StorageError> {
        Ok(self.objects.lock().unwrap().get(key).and_then(|o| o.retained_until))
    }

    async fn thaw(&self, key: &str, _days: i32) -> Result<Thaw, StorageError> {
        let mut objects = self.objects.lock().unwrap();
        let o = objects.get_mut(key).ok_or_else(|| StorageError::NotFound(key.into()))?;
        o.archived = false;
        Ok(Thaw::Ready)
    }
}

// ------------------------------------------------------------------ S3

/// Bodies at least this large go up as a multipart upload.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Part size: S3's minimum is 5 MiB; 8 MiB parts keep memory flat and let
/// parts of one pack go up in parallel.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 4;

pub struct S3Storage {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Storage {
    /// `prefix` is the repository's prefix, empty or ending in `/`.
    pub fn new(client: aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Self {
        Self { client, bucket: bucket.into(), prefix: prefix.into() }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn failed<E>(&self, action: &str, key: &str, e: aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>) -> StorageError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        use aws_smithy_types::error::metadata::ProvideErrorMetadata;
        let full = format!("s3://{}/{}", self.bucket, self.key(key));
        let status = e.raw_response().map(|r| r.status().as_u16());
        match (e.code(), status) {
            (Some("InvalidObjectState"), _) => StorageError::Archived(full),
            (Some("PreconditionFailed" | "ConditionalRequestConflict"), _) | (_, Some(412)) => StorageError::Exists(full),
            _ => match AwsError::from_sdk(e, crate::aws::s3::NOT_FOUND) {
                AwsError::NotFound => StorageError::NotFound(full),
                AwsError::Api(message) => StorageError::Other(format!("{action} {full}: {message}")),
            },
        }
    }

    async fn put_multipart(&self, key: &str, body: Vec<u8>, options: &PutOptions) -> Result<(), StorageError> {
        let full = self.key(key);
        let mut create = self.client.create_multipart_upload().bucket(&self.bucket).key(&full);
        if let Some(class) = &options.storage_class {
            create = create.storage_class(StorageClass::from(class.as_str()));
        }
        let upload_id = create
            .send()
            .await
            .map_err(|e| self.failed("starting a multipart upload of", key, e))?
            .upload_id
            .unwrap_or_default();
        let body = bytes::Bytes::from(body);
        let parts: Result<Vec<CompletedPart>, StorageError> = futures::stream::iter(
            (0..body.len()).step_by(PART_SIZE).enumerate().map(|(i, start)| {
                let chunk = body.slice(start..(start + PART_SIZE).min(body.len()));
                let upload_id = upload_id.clone();
                let full = full.clone();
                async move {
                    let number = i as i32 + 1;
                    let out = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(&full)
                        .upload_id(&upload_id)
                        .part_number(number)
                        .body(ByteStream::from(chunk))
                        .send()
                        .await
                        .map_err(|e| self.failed("uploading a part of", key, e))?;
                    Ok(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag).build())
                }
            }),
        )
        .buffered(PARTS_IN_FLIGHT)
        .try_collect()
        .await;
        let completed = match parts {
            Ok(parts) => {
                let mut complete = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
                if options.create_only {
                    complete = complete.if_none_match("*");
                }
                complete.send().await.map(|_| ()).map_err(|e| self.failed("completing the upload of", key, e))
            }
            Err(e) => Err(e),
        };
        if completed.is_err() {
            // Parts of an abandoned upload are billed until aborted.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        completed
    }
}

#[async_trait]
impl Storage for S3Storage {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| self.failed("reading", key, e))?;
        collect(out.body, &self.key(key)).await
    }

    async fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError> {
        if length == 0 {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .range(format!("bytes={offset}-{}", offset + length - 1))
            .send()
            .await
            .map_err(|e| self.failed("reading", key, e))?;
        collect(out.body, &self.key(key)).await
    }

    async fn put(&self, key: &str, body: Vec<u8>, options: &PutOptions) -> Result<(), StorageError> {
        if body.len() >= MULTIPART_THRESHOLD {
            return self.put_multipart(key, body, options).await;
        }
        let mut request = self.client.put_object().bucket(&self.bucket).key(self.key(key)).body(ByteStream::from(body));
        if options.create_only {
            request = request.if_none_match("*");
        }
        if let Some(class) = &options.storage_class {
            request = request.storage_class(StorageClass::from(class.as_str()));
        }
        request.send().await.map(|_| ()).map_err(|e| self.failed("writing", key, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut objects = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.key(prefix))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.failed("listing", prefix, e))?;
            for o in page.contents() {
                let Some(key) = o.key().and_then(|k| k.strip_prefix(&self.prefix)) else { continue };
                objects.push(ObjectInfo {
                    key: key.to_string(),
                    size: o.size().unwrap_or_default().max(0) as u64,
                    last_modified: o.last_modified().and_then(to_utc),
                });
            }
        }
        Ok(objects)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.client.delete_object().bucket(&self.bucket).key(self.key(key)).send().await {
            Ok(_) => Ok(()),
            Err(e) => match self.failed("deleting", key, e) {
                StorageError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn retained_until(&self, key: &str) -> Result<Option<DateTime<Utc>>, StorageError> {
        Ok(self.head(key, "reading the retention of").await?.object_lock_retain_until_date().and_then(to_utc))
    }

    async fn thaw(&self, key: &str, days: i32) -> Result<Thaw, StorageError> {
        if let Some(state) = thaw_state(&self.head(key, "looking up").await?) {
            return Ok(state);
        }
        let request = aws_sdk_s3::types::RestoreRequest::builder()
            .days(days)
            .glacier_job_parameters(
                aws_sdk_s3::types::GlacierJobParameters::builder()
                    .tier(aws_sdk_s3::types::Tier::Standard)
                    .build()
                    .map_err(|e| StorageError::Other(e.to_string()))?,
            )
            .build();
        match self
            .client
            .restore_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .restore_request(request)
            .send()
            .await
        {
            Ok(_) => {}
            // Someone else asked first.
            Err(e) if aws_smithy_types::error::metadata::ProvideErrorMetadata::code(&e) == Some("RestoreAlreadyInProgress") => {}
            Err(e) => return Err(self.failed("restoring", key, e)),
        }
        // Ask again: a restore may complete at once (or did already).
        Ok(thaw_state(&self.head(key, "looking up").await?).unwrap_or(Thaw::InProgress))
    }
}

type HeadObject = aws_sdk_s3::operation::head_object::HeadObjectOutput;

impl S3Storage {
    async fn head(&self, key: &str, action: &str) -> Result<HeadObject, StorageError> {
        self.client
            .head_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| self.failed(action, key, e))
    }
}

/// Where an object's thaw stands by its HeadObject answer; `None`: archived
/// and no restore asked for yet.
fn thaw_state(head: &HeadObject) -> Option<Thaw> {
    let archived = matches!(head.storage_class(), Some(StorageClass::Glacier | StorageClass::DeepArchive));
    match head.restore() {
        _ if !archived => Some(Thaw::Ready),
        Some(r) if r.contains("ongoing-request=\"false\"") => Some(Thaw::Ready),
        Some(r) if r.contains("ongoing-request=\"true\"") => Some(Thaw::InProgress),
        _ => None,
    }
}

fn to_utc(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

async fn collect(body: ByteStream, key: &str) -> Result<Vec<u8>, StorageError> {
    body.collect()
        .await
        .map(|b| Vec::from(b.into_bytes()))
        .map_err(|e| StorageError::Other(format!("reading the body of {key}: {e}")))
}
