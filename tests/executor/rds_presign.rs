//! The PreSignedUrl of a cross-region RDS copy, compared with the one botocore makes for the
//! same inputs, credentials and time (botocore's `inject_presigned_url_rds`, the code behind
//! `aws rds copy-db-snapshot --source-region`). Equal query parameters, signature included,
//! mean AWS reads ours as it reads the CLI's. botocore runs from the project's `.venv`
//! (`tests/support/moto-requirements.txt` pins it); nothing is sent anywhere.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use coffer_aws::rds_presign::{CrossRegionCopy, presigned_copy_url};
use coffer_aws::snapshots::Service;

use crate::support::tools;

const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// Workers run on role credentials: a session token, with characters that need encoding.
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+token=";
const SIGNED_AT: u64 = 1_764_547_200; // 2025-12-01T00:00:00Z

fn botocore_url(copy: &CrossRegionCopy<'_>) -> String {
    tools::ensure_installed();
    let root = tools::repo_root();
    let spec = serde_json::json!({
        "cluster": copy.service == Service::RdsCluster,
        "destination_region": copy.destination_region,
        "source_region": copy.source_region,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "session_token": SESSION_TOKEN,
        "source_arn": copy.source_arn,
        "target_id": copy.target_id,
        "kms_key_id": copy.kms_key_id,
        "time": SIGNED_AT,
    });
    let mut child = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/support/botocore_presign.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the project's python");
    child.stdin.take().unwrap().write_all(spec.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "botocore_presign.py: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn split(url: &str) -> (String, Vec<(String, String)>) {
    let (base, query) = url.split_once('?').expect("a query");
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    pairs.sort();
    (base.to_string(), pairs)
}

fn assert_same_as_botocore(copy: CrossRegionCopy<'_>) {
    let credentials = Credentials::new(ACCESS_KEY, SECRET_KEY, Some(SESSION_TOKEN.into()), None, "test");
    let ours = presigned_copy_url(&copy, &credentials, SystemTime::UNIX_EPOCH + Duration::from_secs(SIGNED_AT))
        .expect("presign");
    let theirs = botocore_url(&copy);
    assert_eq!(split(&ours), split(&theirs), "\nours:     {ours}\nbotocore: {theirs}");
}

#[test]
fn a_db_snapshot_copy_is_presigned_as_botocore_presigns_it() {
    assert_same_as_botocore(CrossRegionCopy {
        service: Service::RdsInstance,
        source_region: "us-east-1",
        destination_region: "eu-west-1",
        source_arn: "arn:aws:rds:us-east-1:123456789012:snapshot:coffer-prod-20261123-0200-orders-db",
        target_id: "coffer-prod-20261123-0200-orders-db-us-east-1-copy",
        kms_key_id: "arn:aws:kms:eu-west-1:123456789012:key/0d7c2b3e-aaaa-bbbb-cccc-1234567890ab",
    });
}

#[test]
fn a_db_cluster_snapshot_copy_is_presigned_as_botocore_presigns_it() {
    assert_same_as_botocore(CrossRegionCopy {
        service: Service::RdsCluster,
        source_region: "eu-central-1",
        destination_region: "us-west-2",
        source_arn: "arn:aws:rds:eu-central-1:123456789012:cluster-snapshot:coffer-prod-20261123-0200-ledger",
        target_id: "coffer-prod-20261123-0200-ledger-eu-central-1-copy",
        kms_key_id: "alias/coffer-dr",
    });
}
