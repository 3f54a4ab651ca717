//! The `PreSignedUrl` of a cross-region copy of an encrypted RDS snapshot.
//!
//! `CopyDBSnapshot` and `CopyDBClusterSnapshot` of an encrypted snapshot from another region
//! take a URL holding a SigV4-presigned request for the same operation in the *source*
//! region, with `DestinationRegion` and `KmsKeyId` (RDS API reference, CopyDBSnapshot and
//! CopyDBClusterSnapshot, `PreSignedUrl`: "must be a valid request for the CopyDBSnapshot API
//! operation that can run in the source AWS Region", containing `DestinationRegion`,
//! `KmsKeyId` and the source snapshot identifier). The current reference says commercial
//! regions ignore it and GovCloud (US) requires it; the AWS CLI and botocore always send it
//! when given `--source-region`, and so does Coffer. The Rust SDK has no `SourceRegion`
//! input and generates nothing, so it is built here with the SDK's own signer (aws-sigv4,
//! query presigning), as botocore's `inject_presigned_url_rds` does: GET, the operation's
//! query parameters plus `DestinationRegion`, signed for `rds` in the source region, valid an
//! hour.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::snapshots::Service;

/// The RDS API version the query protocol names.
const API_VERSION: &str = "2014-10-31";
/// How long the presigned request stays valid (botocore's default).
const VALID_FOR: Duration = Duration::from_secs(3600);
/// SigV4's unreserved characters; everything else is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// One cross-region copy, as both regions see it.
#[derive(Debug, Clone, Copy)]
pub struct CrossRegionCopy<'a> {
    pub service: Service,
    pub source_region: &'a str,
    pub destination_region: &'a str,
    /// The source snapshot's ARN.
    pub source_arn: &'a str,
    pub target_id: &'a str,
    /// The key in the destination region the copy is encrypted with.
    pub kms_key_id: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum PresignError {
    #[error("presigning the {action} request for {region}: {cause}")]
    Sign { action: &'static str, region: String, cause: String },
    #[error("getting the credentials to presign with: {0}")]
    Credentials(String),
}

/// [`presigned_copy_url`] signed now with credentials from `provider`: those of the account
/// that calls the copy (the SDK client does not hand out its own).
pub async fn presigned_copy_url_with(
    provider: &SharedCredentialsProvider,
    copy: &CrossRegionCopy<'_>,
) -> Result<String, PresignError> {
    let credentials = provider.provide_credentials().await.map_err(|e| PresignError::Credentials(e.to_string()))?;
    presigned_copy_url(copy, &credentials, SystemTime::now())
}

/// The regional RDS endpoint of `region` (the China regions live under `amazonaws.com.cn`).
fn endpoint(region: &str) -> String {
    let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("https://rds.{region}.{suffix}/")
}

fn encode(value: &str) -> Cow<'_, str> {
    utf8_percent_encode(value, UNRESERVED).into()
}

/// The presigned `Copy…Snapshot` request in the source region, signed with `credentials` (the
/// caller's: the account that calls the copy) at `time`.
pub fn presigned_copy_url(
    copy: &CrossRegionCopy<'_>,
    credentials: &Credentials,
    time: SystemTime,
) -> Result<String, PresignError> {
    let (action, source_param, target_param) = match copy.service {
        Service::RdsCluster => {
            ("CopyDBClusterSnapshot", "SourceDBClusterSnapshotIdentifier", "TargetDBClusterSnapshotIdentifier")
        }
        _ => ("CopyDBSnapshot", "SourceDBSnapshotIdentifier", "TargetDBSnapshotIdentifier"),
    };
    let failed = |cause: String| PresignError::Sign { action, region: copy.source_region.to_string(), cause };
    let query: Vec<String> = [
        ("Action", action),
        ("Version", API_VERSION),
        (source_param, copy.source_arn),
        (target_param, copy.target_id),
        ("KmsKeyId", copy.kms_key_id),
        ("DestinationRegion", copy.destination_region),
    ]
    .iter()
    .map(|(name, value)| format!("{name}={}", encode(value)))
    .collect();
    let url = format!("{}?{}", endpoint(copy.source_region), query.join("&"));

    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(VALID_FOR);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(copy.source_region)
        .name("rds")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| failed(e.to_string()))?
        .into();
    let request = SignableRequest::new("GET", url.as_str(), std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| failed(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params).map_err(|e| failed(e.to_string()))?.into_parts();
    let mut signed = url;
    for (name, value) in instructions.params() {
        signed.push('&');
        signed.push_str(name);
        signed.push('=');
        signed.push_str(&encode(value));
    }
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_of(url: &str) -> Vec<(String, String)> {
        let (_, query) = url.split_once('?').unwrap();
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        pairs.sort();
        pairs
    }

    #[test]
    fn the_url_is_a_get_of_the_copy_in_the_source_region_with_the_destination_and_key() {
        let copy = CrossRegionCopy {
            service: Service::RdsCluster,
            source_region: "us-east-1",
            destination_region: "eu-west-1",
            source_arn: "arn:aws:rds:us-east-1:123456789012:cluster-snapshot:coffer-prod-1",
            target_id: "coffer-prod-1-copy",
            kms_key_id: "arn:aws:kms:eu-west-1:123456789012:key/k",
        };
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), None, "test");
        let url = presigned_copy_url(&copy, &credentials, SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_547_200))
            .unwrap();
        assert!(url.starts_with("https://rds.us-east-1.amazonaws.com/?Action=CopyDBClusterSnapshot&"), "{url}");
        let query = query_of(&url);
        let get = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("SourceDBClusterSnapshotIdentifier"), Some(copy.source_arn));
        assert_eq!(get("DestinationRegion"), Some("eu-west-1"));
        assert_eq!(get("KmsKeyId"), Some(copy.kms_key_id));
        assert_eq!(get("X-Amz-Expires"), Some("3600"));
        assert_eq!(get("X-Amz-Date"), Some("20251201T000000Z"));
        assert_eq!(get("X-Amz-Credential"), Some("AKIDEXAMPLE/20251201/us-east-1/rds/aws4_request"));
        assert_eq!(get("X-Amz-Security-Token"), Some("token"));
        assert_eq!(get("X-Amz-SignedHeaders"), Some("host"));
        assert!(!url.contains("secret"));
        assert_eq!(endpoint("cn-north-1"), "https://rds.cn-north-1.amazonaws.com.cn/");
    }
}
