//! KMS lookups: what a caller sees of a key.

use aws_sdk_kms::Client;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::types::KeyState;

use crate::AwsError;

/// A key as the caller that asked sees it (KMS `DescribeKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAccess {
    /// There and enabled.
    Usable,
    /// There but not usable for new copies (`Disabled`, `PendingDeletion`, ...).
    NotEnabled(String),
    /// No such key in the region, for this caller.
    Missing,
    /// The caller may not describe it (the key policy or its IAM policy says no); AWS's words.
    Denied(String),
}

pub async fn key_access(client: &Client, key_id: &str) -> Result<KeyAccess, AwsError> {
    match client.describe_key().key_id(key_id).send().await {
        Ok(out) => Ok(match out.key_metadata().and_then(|m| m.key_state()) {
            None | Some(KeyState::Enabled) => KeyAccess::Usable,
            Some(state) => KeyAccess::NotEnabled(state.as_str().to_string()),
        }),
        Err(e) => match e.code() {
            Some("NotFoundException") => Ok(KeyAccess::Missing),
            Some("AccessDeniedException") => Ok(KeyAccess::Denied(e.message().unwrap_or("access denied").to_string())),
            _ => Err(AwsError::from_sdk(e, &[])),
        },
    }
}
