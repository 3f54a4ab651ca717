//! The repository [`Storage`] over S3: one bucket and prefix.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, StorageClass};
use chrono::{DateTime, Utc};
use coffer_repository::storage::{ObjectInfo, PutOptions, Storage, StorageError, Thaw};
use futures::{StreamExt, TryStreamExt};

use crate::AwsError;

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

    fn failed<E>(
        &self,
        action: &str,
        key: &str,
        e: aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
    ) -> StorageError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        use aws_smithy_types::error::metadata::ProvideErrorMetadata;
        let full = format!("s3://{}/{}", self.bucket, self.key(key));
        let status = e.raw_response().map(|r| r.status().as_u16());
        match (e.code(), status) {
            (Some("InvalidObjectState"), _) => StorageError::Archived(full),
            (Some("PreconditionFailed" | "ConditionalRequestConflict"), _) | (_, Some(412)) => {
                StorageError::Exists(full)
            }
            _ => match AwsError::from_sdk(e, crate::s3::NOT_FOUND) {
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
        let parts: Result<Vec<CompletedPart>, StorageError> =
            futures::stream::iter((0..body.len()).step_by(PART_SIZE).enumerate().map(|(i, start)| {
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
            }))
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
                match complete.send().await.map_err(|e| self.failed("completing the upload of", key, e)) {
                    Err(StorageError::Exists(full)) => self.written_by_this_call(key, &body, full).await,
                    other => other.map(|_| ()),
                }
            }
            Err(e) => Err(e),
        };
        if completed.is_err() {
            // Parts of an abandoned upload are billed until aborted.
            let _ =
                self.client.abort_multipart_upload().bucket(&self.bucket).key(&full).upload_id(&upload_id).send().await;
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
        self.read(key, None).await
    }

    async fn get_range(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>, StorageError> {
        if length == 0 {
            return Ok(Vec::new());
        }
        self.read(key, Some((offset, length))).await
    }

    async fn put(&self, key: &str, body: Vec<u8>, options: &PutOptions) -> Result<(), StorageError> {
        if body.len() >= MULTIPART_THRESHOLD {
            return self.put_multipart(key, body, options).await;
        }
        let body = bytes::Bytes::from(body);
        let mut request =
            self.client.put_object().bucket(&self.bucket).key(self.key(key)).body(ByteStream::from(body.clone()));
        if options.create_only {
            request = request.if_none_match("*");
        }
        if let Some(class) = &options.storage_class {
            request = request.storage_class(StorageClass::from(class.as_str()));
        }
        match request.send().await.map_err(|e| self.failed("writing", key, e)) {
            Err(StorageError::Exists(full)) => self.written_by_this_call(key, &body, full).await,
            other => other.map(|_| ()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut objects = Vec::new();
        let mut pages =
            self.client.list_objects_v2().bucket(&self.bucket).prefix(self.key(prefix)).into_paginator().send();
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
        match self.client.restore_object().bucket(&self.bucket).key(self.key(key)).restore_request(request).send().await
        {
            Ok(_) => {}
            // Someone else asked first.
            Err(e)
                if aws_smithy_types::error::metadata::ProvideErrorMetadata::code(&e)
                    == Some("RestoreAlreadyInProgress") => {}
            Err(e) => return Err(self.failed("restoring", key, e)),
        }
        // Ask again: a restore may complete at once (or did already).
        Ok(thaw_state(&self.head(key, "looking up").await?).unwrap_or(Thaw::InProgress))
    }

    async fn get_versioned(&self, key: &str) -> Result<(Vec<u8>, String), StorageError> {
        let stored = crate::s3::find_object(&self.client, &self.bucket, &self.key(key)).await.map_err(|e| match e {
            AwsError::NotFound => StorageError::NotFound(format!("s3://{}/{}", self.bucket, self.key(key))),
            AwsError::Api(message) => {
                StorageError::Other(format!("reading s3://{}/{}: {message}", self.bucket, self.key(key)))
            }
        })?;
        Ok((stored.body, stored.etag))
    }

    async fn put_versioned(&self, key: &str, body: Vec<u8>, expected: Option<&str>) -> Result<String, StorageError> {
        use crate::s3::{Precondition, WriteError};
        let precondition = expected.map_or(Precondition::Absent, Precondition::Unchanged);
        let full = format!("s3://{}/{}", self.bucket, self.key(key));
        crate::s3::put_object(&self.client, &self.bucket, &self.key(key), body, "application/json", precondition)
            .await
            .map_err(|e| match (e, expected) {
                (WriteError::PreconditionFailed, None) => StorageError::Exists(full.clone()),
                (WriteError::PreconditionFailed, Some(_)) => StorageError::Changed(full.clone()),
                (WriteError::Aws(AwsError::NotFound), _) => StorageError::NotFound(full.clone()),
                (WriteError::Aws(AwsError::Api(message)), _) => {
                    StorageError::Other(format!("writing {full}: {message}"))
                }
            })
    }

    async fn delete_versioned(&self, key: &str, expected: &str) -> Result<(), StorageError> {
        match self.client.delete_object().bucket(&self.bucket).key(self.key(key)).if_match(expected).send().await {
            Ok(_) => Ok(()),
            Err(e) => match self.failed("deleting", key, e) {
                StorageError::NotFound(_) => Ok(()),
                StorageError::Exists(full) => Err(StorageError::Changed(full)),
                other => Err(other),
            },
        }
    }
}

type HeadObject = aws_sdk_s3::operation::head_object::HeadObjectOutput;

/// How often one read resumes after its body broke off.
const BODY_RESUMES: u32 = 5;

impl S3Storage {
    /// An object, or `range` (offset, length) of it. Errors before the body
    /// are retried by the SDK; a body that breaks off after the headers is
    /// resumed with a ranged GET for the missing bytes (at most
    /// [`BODY_RESUMES`] times), conditional on the first answer's ETag so
    /// the pieces are of one object.
    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>, StorageError> {
        let full = self.key(key);
        let start = range.map_or(0, |(offset, _)| offset);
        let mut data: Vec<u8> = Vec::new();
        let mut etag: Option<String> = None;
        let mut resumes = 0;
        loop {
            let at = start + data.len() as u64;
            let mut request = self.client.get_object().bucket(&self.bucket).key(&full);
            request = match range {
                Some((offset, length)) => request.range(format!("bytes={at}-{}", offset + length - 1)),
                None if at > 0 => request.range(format!("bytes={at}-")),
                None => request,
            };
            if let Some(etag) = &etag {
                request = request.if_match(etag);
            }
            let out = request.send().await.map_err(|e| match self.failed("reading", key, e) {
                StorageError::Exists(full) => StorageError::Other(format!("{full} changed while it was being read")),
                e => e,
            })?;
            if etag.is_none() {
                etag = out.e_tag().map(str::to_string);
                data.reserve_exact(out.content_length().unwrap_or_default().max(0) as usize);
            }
            let mut body = out.body;
            let broken = loop {
                match body.next().await {
                    Some(Ok(chunk)) => data.extend_from_slice(&chunk),
                    Some(Err(e)) => break e,
                    None => return Ok(data),
                }
            };
            resumes += 1;
            if resumes > BODY_RESUMES {
                return Err(StorageError::Other(format!(
                    "reading the body of {full}: {broken} (broke off {BODY_RESUMES} times; resumed each time)"
                )));
            }
            tracing::debug!(key = %full, received = data.len(), error = %broken, "the body broke off; reading the rest");
            tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(resumes))).await;
        }
    }

    /// A create-only write answered "exists": when the connection dropped
    /// after S3 applied it, the SDK's retry finds the object this very call
    /// wrote. Holding exactly the bytes sent, it is this write (or one
    /// identical to it, which for content-named objects is the same thing).
    async fn written_by_this_call(&self, key: &str, sent: &[u8], full: String) -> Result<(), StorageError> {
        match self.get(key).await {
            Ok(stored) if stored == sent => Ok(()),
            _ => Err(StorageError::Exists(full)),
        }
    }

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
