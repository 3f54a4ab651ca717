//! Repository master keys wrapped by AWS KMS. The config's binding is the
//! encryption context, so KMS refuses to unwrap a key whose config fields
//! were edited.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use coffer_repository::config::KmsWrappedKey;
use coffer_repository::config::MASTER_KEY_LEN;
use coffer_repository::{KeyEnvelope, KeyError, KeyService, MasterKey, RepositoryConfig};

use crate::AwsError;

/// KMS in one region: the region of the repository's key.
pub struct KmsKeys {
    client: aws_sdk_kms::Client,
}

impl KmsKeys {
    pub fn new(client: aws_sdk_kms::Client) -> Self {
        Self { client }
    }

    /// A new master key for `config`, made by KMS under the key `arn` and
    /// returned only wrapped: the plaintext never leaves KMS.
    pub async fn generate(&self, arn: &str, config: &RepositoryConfig) -> Result<KeyEnvelope, KeyError> {
        let blob = self
            .client
            .generate_data_key()
            .key_id(arn)
            .number_of_bytes(MASTER_KEY_LEN as i32)
            .set_encryption_context(Some(config.binding().into_iter().collect()))
            .send()
            .await
            .map_err(|e| KeyError::Service(format!("KMS GenerateDataKey with {arn}: {}", AwsError::from_sdk(e, &[]))))?
            .ciphertext_blob
            .ok_or_else(|| KeyError::Service(format!("KMS returned no ciphertext for {arn}")))?;
        Ok(KeyEnvelope::Kms { kms_key_arn: arn.to_string(), wrapped_master_key: B64.encode(blob.into_inner()) })
    }

    /// Wraps `master` with the KMS key `arn`, bound to `config`.
    pub async fn wrap(
        &self,
        arn: &str,
        config: &RepositoryConfig,
        master: &MasterKey,
    ) -> Result<KeyEnvelope, KeyError> {
        let wrapped_master_key = self.encrypt(arn, master, config.binding()).await?;
        Ok(KeyEnvelope::Kms { kms_key_arn: arn.to_string(), wrapped_master_key })
    }

    /// `master` encrypted by `arn` under `context`, base64.
    async fn encrypt(
        &self,
        arn: &str,
        master: &MasterKey,
        context: std::collections::BTreeMap<String, String>,
    ) -> Result<String, KeyError> {
        let blob = self
            .client
            .encrypt()
            .key_id(arn)
            .plaintext(aws_smithy_types::Blob::new(master.0.to_vec()))
            .set_encryption_context(Some(context.into_iter().collect()))
            .send()
            .await
            .map_err(|e| KeyError::Service(format!("KMS Encrypt with {arn}: {}", AwsError::from_sdk(e, &[]))))?
            .ciphertext_blob
            .ok_or_else(|| KeyError::Service(format!("KMS returned no ciphertext for {arn}")))?;
        Ok(B64.encode(blob.into_inner()))
    }

    /// The workers' envelope of a password repository: `master` wrapped by the KMS key
    /// `arn`, bound to `config` as the worker envelope.
    pub async fn wrap_for_workers(
        &self,
        arn: &str,
        config: &RepositoryConfig,
        master: &MasterKey,
    ) -> Result<KmsWrappedKey, KeyError> {
        let wrapped_master_key = self.encrypt(arn, master, config.worker_binding()).await?;
        Ok(KmsWrappedKey { kms_key_arn: arn.to_string(), wrapped_master_key })
    }

    /// The master key from the workers' envelope of `config`.
    pub async fn unwrap_for_workers(
        &self,
        config: &RepositoryConfig,
        envelope: &KmsWrappedKey,
    ) -> Result<MasterKey, KeyError> {
        self.decrypt(&envelope.kms_key_arn, &envelope.wrapped_master_key, config.worker_binding()).await
    }

    async fn decrypt(
        &self,
        arn: &str,
        wrapped: &str,
        context: std::collections::BTreeMap<String, String>,
    ) -> Result<MasterKey, KeyError> {
        let blob = B64.decode(wrapped).map_err(|_| KeyError::Malformed("the wrapped master key is not base64"))?;
        let plain = self
            .client
            .decrypt()
            .key_id(arn)
            .ciphertext_blob(aws_smithy_types::Blob::new(blob))
            .set_encryption_context(Some(context.into_iter().collect()))
            .send()
            .await
            .map_err(|e| KeyError::Service(format!("KMS Decrypt with {arn}: {}", AwsError::from_sdk(e, &[]))))?
            .plaintext
            .map(|b| b.into_inner())
            .ok_or_else(|| KeyError::Service("KMS returned no plaintext".into()))?;
        let key: [u8; MASTER_KEY_LEN] = plain
            .try_into()
            .map_err(|_| KeyError::Service(format!("KMS returned a master key of the wrong length for {arn}")))?;
        Ok(MasterKey(key))
    }
}

#[async_trait]
impl KeyService for KmsKeys {
    async fn unwrap(&self, config: &RepositoryConfig) -> Result<MasterKey, KeyError> {
        let KeyEnvelope::Kms { kms_key_arn, wrapped_master_key } = &config.key else {
            return Err(KeyError::Service("the repository is encrypted with a password, not a KMS key".into()));
        };
        self.decrypt(kms_key_arn, wrapped_master_key, config.binding()).await
    }
}
