//! Where the catalog lives, its folders, and the rule every reader follows:
//! a document of a newer format than this build knows is refused, never
//! half-read (serde would silently drop the fields a newer writer added).

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// Where the catalog lives in S3.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogLocation {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub prefix: String,
}

impl CatalogLocation {
    /// The configured bucket, or `coffer-catalog-<account>-<region>`.
    pub fn new(bucket: Option<&str>, prefix: Option<&str>, account: &str, region: &str) -> Self {
        let bucket = bucket.map(str::to_string).unwrap_or_else(|| format!("coffer-catalog-{account}-{region}"));
        let prefix = match prefix.map(|p| p.trim_matches('/')) {
            None | Some("") => String::new(),
            Some(p) => format!("{p}/"),
        };
        Self { bucket, prefix }
    }

    /// The object key of document `name` of `kind`.
    pub fn key(&self, kind: Kind, name: &str) -> String {
        format!("{}{}/{name}.json", self.prefix, kind.folder())
    }

    /// The key prefix every document of `kind` lives under.
    pub fn folder(&self, kind: Kind) -> String {
        format!("{}{}/", self.prefix, kind.folder())
    }
}

/// The catalog's folders: one per document kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `policies/<name>.json`.
    Policy,
    /// `region-mappings/<name>.json`.
    RegionMapping,
    /// `repositories/<id>.json`.
    Repository,
    /// `sessions/<policy>/<run id>.json`: one record per run.
    Session,
    /// `agent/<policy>.json`: when `coffer agent` last fired each rule.
    AgentMarks,
    /// `runs/<policy>/<run id>.json`: which worker took a scheduled run.
    RunClaim,
    /// `workers/<policy>/<started>-<instance id>.json`: a scheduled worker's start and end,
    /// written by its boot script.
    WorkerRecord,
    /// `parts/<policy>/<run id>/<region>.json`: the image-level work a region's worker did
    /// for a scheduled run, which the run's session takes in.
    RunPart,
}

impl Kind {
    pub fn folder(self) -> &'static str {
        match self {
            Kind::Policy => "policies",
            Kind::RegionMapping => "region-mappings",
            Kind::Repository => "repositories",
            Kind::Session => "sessions",
            Kind::AgentMarks => "agent",
            Kind::RunClaim => "runs",
            Kind::WorkerRecord => "workers",
            Kind::RunPart => "parts",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Kind::Policy => "backup policy",
            Kind::RegionMapping => "region mapping",
            Kind::Repository => "repository",
            Kind::Session => "session",
            Kind::AgentMarks => "agent marks",
            Kind::RunClaim => "run claim",
            Kind::WorkerRecord => "worker record",
            Kind::RunPart => "run part",
        }
    }
}

/// A document type of the catalog: the folder it lives in and the newest
/// `format_version` this build writes and can read.
pub trait CatalogDocument: Serialize + DeserializeOwned {
    const KIND: Kind;
    const FORMAT_VERSION: u32;
}

#[derive(Debug, Error)]
pub enum DecodeError {
    #[error(
        "{noun} {name} has format_version {found}, and this Coffer ({this_build}) reads format_version {supported} at most: it was written by {writer}. Upgrade terraform-provider-coffer and the coffer binary the workers run (`coffer publish`) to that release or newer"
    )]
    NewerFormat {
        noun: &'static str,
        name: String,
        found: u64,
        supported: u32,
        writer: String,
        this_build: &'static str,
    },
    #[error("{noun} {name} is not a valid catalog document: {cause}")]
    Invalid { noun: &'static str, name: String, cause: String },
}

/// The part of every document a reader looks at before the rest.
#[derive(serde::Deserialize)]
struct Header {
    /// Absent in the documents that never had one (run claims): format 1.
    #[serde(default)]
    format_version: Option<u64>,
    /// The build that wrote the document (`coffer <version>`), where the
    /// format records it.
    #[serde(default)]
    written_by: Option<String>,
}

/// This build, as named in messages.
pub const THIS_BUILD: &str = concat!("coffer ", env!("CARGO_PKG_VERSION"));

/// Decodes document `name` of type `T`, refusing a newer format.
pub fn decode<T: CatalogDocument>(name: &str, bytes: &[u8]) -> Result<T, DecodeError> {
    let invalid = |e: serde_json::Error| DecodeError::Invalid {
        noun: T::KIND.noun(),
        name: name.to_string(),
        cause: e.to_string(),
    };
    let header: Header = serde_json::from_slice(bytes).map_err(invalid)?;
    let found = header.format_version.unwrap_or(1);
    if found > u64::from(T::FORMAT_VERSION) {
        return Err(DecodeError::NewerFormat {
            noun: T::KIND.noun(),
            name: name.to_string(),
            found,
            supported: T::FORMAT_VERSION,
            writer: header.written_by.unwrap_or_else(|| "a newer Coffer release".to_string()),
            this_build: THIS_BUILD,
        });
    }
    serde_json::from_slice(bytes).map_err(invalid)
}

/// The bytes the catalog stores for a document.
pub fn encode<T: CatalogDocument>(document: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(document).expect("catalog documents serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{Marks, RunClaim};
    use crate::policy::PolicyDocument;
    use crate::region_mapping::RegionMappingDocument;
    use crate::repository::RepositoryEntry;
    use crate::session::Session;

    #[test]
    fn catalog_defaults_to_an_account_and_region_bucket() {
        let c = CatalogLocation::new(None, None, "123456789012", "eu-west-1");
        assert_eq!(c.bucket, "coffer-catalog-123456789012-eu-west-1");
        assert_eq!(c.prefix, "");
        let team = CatalogLocation::new(Some("b"), Some("/team/"), "1", "r");
        assert_eq!(team.prefix, "team/");
        assert_eq!(team.key(Kind::Session, "prod/20261130-0300"), "team/sessions/prod/20261130-0300.json");
    }

    const POLICY: &str = r#"{
        "format_version": 1, "name": "prod", "type": "ec2", "enabled": true,
        "source": {"regions": ["eu-west-1"]}, "rules": [], "worker_configuration_ids": []
    }"#;

    /// `document` with its format_version raised to `version`, and a field
    /// this build does not know (what a newer writer would add).
    fn newer(document: &str, version: u64) -> Vec<u8> {
        let mut value: serde_json::Value = serde_json::from_str(document).unwrap();
        value["format_version"] = version.into();
        value["added_later"] = serde_json::json!({"must": "not be ignored"});
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn a_document_of_this_format_reads() {
        let policy: PolicyDocument = decode("prod", POLICY.as_bytes()).unwrap();
        assert_eq!(policy.name, "prod");
    }

    #[test]
    fn a_newer_format_version_is_refused_naming_the_document_and_what_to_upgrade() {
        let err = decode::<PolicyDocument>("prod", &newer(POLICY, 2)).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, DecodeError::NewerFormat { found: 2, supported: 1, .. }), "{message}");
        for part in [
            "backup policy prod",
            "format_version 2",
            "reads format_version 1 at most",
            "Upgrade terraform-provider-coffer",
            "coffer publish",
            THIS_BUILD,
        ] {
            assert!(message.contains(part), "{part:?} missing from: {message}");
        }
    }

    #[test]
    fn the_refusal_names_the_writer_when_the_document_records_it() {
        let mut value: serde_json::Value = serde_json::from_slice(&newer(POLICY, 7)).unwrap();
        value["written_by"] = "coffer 3.1.0".into();
        let err = decode::<PolicyDocument>("prod", &serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(err.to_string().contains("written by coffer 3.1.0"), "{err}");
    }

    #[test]
    fn every_document_kind_refuses_a_newer_format() {
        let session = r#"{"format_version": 1, "policy": "p", "run_id": "r", "rules": [],
            "started_at": "2026-11-30T03:00:00Z", "finished_at": "2026-11-30T03:00:00Z",
            "outcome": "Success", "resources": [], "retention": {"deleted": [], "kept": 0, "unmanaged": 0}}"#;
        let mapping = r#"{"format_version": 1, "name": "m", "source_region": "eu-west-1",
            "target_region": "us-east-1", "encrypt": "all"}"#;
        let entry = r#"{"format_version": 1, "id": "0a", "name": "r", "bucket": "b", "prefix": "",
            "region": "eu-west-1", "storage_class": "STANDARD", "encryption": "kms"}"#;
        let marks = r#"{"format_version": 1, "rules": {}}"#;
        let claim = r#"{"claimed_at": "2026-11-30T03:00:00Z", "launched_for": "d", "rules": ["d"], "run_id": "r"}"#;
        let worker = r#"{"format_version": 1, "instance_id": "i-0abc", "policy": "p", "rule": "d",
            "task": "run --policy p --rule d --scheduled", "started_at": "2026-11-30T03:04:05Z",
            "log_key": "worker-logs/i-0abc.log"}"#;
        fn check<T: CatalogDocument + std::fmt::Debug>(document: &str) {
            decode::<T>("x", document.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", T::KIND.noun()));
            let err = decode::<T>("x", &newer(document, u64::from(T::FORMAT_VERSION) + 1)).unwrap_err();
            assert!(matches!(err, DecodeError::NewerFormat { .. }), "{}: {err}", T::KIND.noun());
        }
        check::<Session>(session);
        check::<RegionMappingDocument>(mapping);
        check::<RepositoryEntry>(entry);
        check::<Marks>(marks);
        check::<RunClaim>(claim);
        check::<crate::worker::WorkerRecord>(worker);
        check::<PolicyDocument>(POLICY);
    }

    #[test]
    fn an_invalid_document_names_itself() {
        let err = decode::<PolicyDocument>("prod", b"{\"format_version\": 1}").unwrap_err();
        assert!(err.to_string().starts_with("backup policy prod is not a valid catalog document"), "{err}");
    }
}
