//! The catalog: JSON documents in S3 that describe policies, region
//! mappings and repositories, read by the provider and by workers.
//!
//! Layout under `<bucket>/<prefix>`: `policies/<name>.json`,
//! `region-mappings/<name>.json`, `repositories/<id>.json`. Every write is
//! conditional (`If-None-Match: *` to create, `If-Match: <etag>` to
//! replace), so two applies never silently overwrite each other.

use coffer_model::catalog::{self as model, CatalogDocument, DecodeError};
pub use coffer_model::catalog::{CatalogLocation, Kind};
use coffer_model::worker_binary::{SHA256_METADATA, WorkerArch, WorkerBinary, binary_key};
use thiserror::Error;

use crate::s3::{self, Precondition, WriteError};
use crate::{AwsClients, AwsError};

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("not found")]
    NotFound,
    #[error("s3://{bucket}/{key} already exists")]
    AlreadyExists { bucket: String, key: String },
    #[error(
        "s3://{bucket}/{key} was changed by someone else since Terraform last read it; run `terraform apply` again to plan against the current document"
    )]
    Changed { bucket: String, key: String },
    /// Not a document this build can read: damaged, or of a newer format.
    #[error("s3://{bucket}/{key}: {cause}")]
    Unreadable { bucket: String, key: String, cause: Box<DecodeError> },
    #[error("{0}")]
    Aws(String),
}

impl From<AwsError> for CatalogError {
    fn from(e: AwsError) -> Self {
        match e {
            AwsError::NotFound => CatalogError::NotFound,
            AwsError::Api(message) => CatalogError::Aws(message),
        }
    }
}

/// A document as read, with the ETag an update must match.
#[derive(Debug, Clone)]
pub struct Document<T> {
    pub body: T,
    pub etag: String,
    /// When it was last written (S3's Last-Modified).
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// Where [`Catalog::publish_binary`] put a worker binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedBinary {
    /// `s3://<catalog bucket>/<prefix>bin/coffer-linux-<arch>`.
    pub url: String,
    /// False when the same build was already there.
    pub uploaded: bool,
}

pub struct Catalog<'a> {
    aws: &'a AwsClients,
    location: &'a CatalogLocation,
    ready: &'a tokio::sync::OnceCell<()>,
}

impl<'a> Catalog<'a> {
    pub fn new(aws: &'a AwsClients, location: &'a CatalogLocation, ready: &'a tokio::sync::OnceCell<()>) -> Self {
        Self { aws, location, ready }
    }

    pub fn key(&self, kind: Kind, name: &str) -> String {
        self.location.key(kind, name)
    }

    pub fn bucket(&self) -> &str {
        &self.location.bucket
    }

    fn client(&self) -> aws_sdk_s3::Client {
        self.aws.s3(&self.aws.home_region)
    }

    /// Creates the catalog bucket (versioned, encrypted, private) in the
    /// home region unless it exists; once per provider process.
    pub async fn ensure_bucket(&self) -> Result<(), CatalogError> {
        self.ready
            .get_or_try_init(|| async {
                let client = self.client();
                let bucket = &self.location.bucket;
                match s3::find_bucket(&client, bucket).await {
                    Ok(()) => Ok(()),
                    Err(AwsError::NotFound) => {
                        tracing::info!(%bucket, region = %self.aws.home_region, "creating the catalog bucket");
                        s3::create_bucket(&client, bucket, &self.aws.home_region, false)
                            .await
                            .and(s3::harden_bucket(&client, bucket).await)
                            .map_err(|e| CatalogError::Aws(format!("creating the catalog bucket {bucket}: {e}")))
                    }
                    Err(e) => Err(CatalogError::Aws(format!("checking the catalog bucket {bucket}: {e}"))),
                }
            })
            .await
            .map(|_| ())
    }

    /// Reads document `name` of type `T`; one of a newer format is refused.
    pub async fn get<T: CatalogDocument>(&self, name: &str) -> Result<Document<T>, CatalogError> {
        let key = self.key(T::KIND, name);
        let object = s3::find_object(&self.client(), &self.location.bucket, &key).await?;
        let body = model::decode::<T>(name, &object.body).map_err(|cause| CatalogError::Unreadable {
            bucket: self.location.bucket.clone(),
            key: key.clone(),
            cause: Box::new(cause),
        })?;
        Ok(Document { body, etag: object.etag, last_modified: object.last_modified })
    }

    /// Writes a new document; fails if one exists under that name.
    pub async fn create<T: CatalogDocument>(&self, name: &str, body: &T) -> Result<String, CatalogError> {
        self.write(name, body, Precondition::Absent).await
    }

    /// Replaces a document, provided it is still the one with `etag`.
    pub async fn replace<T: CatalogDocument>(&self, name: &str, body: &T, etag: &str) -> Result<String, CatalogError> {
        self.write(name, body, Precondition::Unchanged(etag)).await
    }

    async fn write<T: CatalogDocument>(
        &self,
        name: &str,
        body: &T,
        precondition: Precondition<'_>,
    ) -> Result<String, CatalogError> {
        self.ensure_bucket().await?;
        let key = self.key(T::KIND, name);
        let bytes = model::encode(body);
        let bucket = &self.location.bucket;
        match s3::put_object(&self.client(), bucket, &key, bytes, "application/json", precondition).await {
            Ok(etag) => Ok(etag),
            Err(WriteError::PreconditionFailed) => Err(match precondition {
                Precondition::Absent => CatalogError::AlreadyExists { bucket: bucket.clone(), key },
                Precondition::Unchanged(_) | Precondition::Any => CatalogError::Changed { bucket: bucket.clone(), key },
            }),
            Err(WriteError::Aws(e)) => Err(e.into()),
        }
    }

    /// Writes a document whatever is there (records only their own run
    /// writes, such as sessions).
    pub async fn put<T: CatalogDocument>(&self, name: &str, body: &T) -> Result<String, CatalogError> {
        self.write(name, body, Precondition::Any).await
    }

    /// The names of the documents of one kind under `within` (e.g. a
    /// policy's sessions: `within = "prod/"`), in name order.
    pub async fn list(&self, kind: Kind, within: &str) -> Result<Vec<String>, CatalogError> {
        let folder = self.location.folder(kind);
        let keys = match s3::list_keys(&self.client(), &self.location.bucket, &format!("{folder}{within}")).await {
            Ok(keys) => keys,
            // No catalog bucket yet: nothing was ever written.
            Err(AwsError::NotFound) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        Ok(keys.iter().filter_map(|k| k.strip_prefix(&folder)?.strip_suffix(".json").map(str::to_string)).collect())
    }

    /// The SHA-256 of the worker binary published for `arch`; None when there is none, or
    /// when it was published without one (by a Coffer older than this check).
    pub async fn published_binary(&self, arch: WorkerArch) -> Result<Option<String>, CatalogError> {
        let key = binary_key(&self.location.prefix, arch);
        match s3::find_object_metadata(&self.client(), &self.location.bucket, &key, SHA256_METADATA).await {
            Ok(sha256) => Ok(sha256),
            Err(AwsError::NotFound) => Ok(None),
            Err(e) => Err(CatalogError::Aws(format!("reading s3://{}/{key}: {e}", self.location.bucket))),
        }
    }

    /// Puts a checked worker binary where workers fetch it, unless the same build (by
    /// SHA-256) is already there; returns its key and whether it was uploaded.
    pub async fn publish_binary(&self, binary: &WorkerBinary) -> Result<PublishedBinary, CatalogError> {
        self.ensure_bucket().await?;
        let key = binary_key(&self.location.prefix, binary.arch);
        let uploaded = if self.published_binary(binary.arch).await?.as_deref() == Some(binary.sha256.as_str()) {
            false
        } else {
            let metadata = (SHA256_METADATA, binary.sha256.as_str());
            s3::put_file(&self.client(), &self.location.bucket, &key, &binary.path, metadata)
                .await
                .map_err(|e| CatalogError::Aws(format!("uploading s3://{}/{key}: {e}", self.location.bucket)))?;
            true
        };
        Ok(PublishedBinary { url: format!("s3://{}/{key}", self.location.bucket), uploaded })
    }

    pub async fn delete(&self, kind: Kind, name: &str) -> Result<(), CatalogError> {
        let key = self.key(kind, name);
        s3::delete_object(&self.client(), &self.location.bucket, &key).await?;
        Ok(())
    }
}
