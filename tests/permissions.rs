//! The IAM permissions table covers every AWS operation the code calls: the
//! SDK operations are taken from the SDK crates themselves (their
//! `src/operation/<name>/` modules), and every one the source calls must have
//! a row in `coffer_aws::permissions::PERMISSIONS`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use coffer_aws::permissions::PERMISSIONS;

use crate::support::tools::repo_root;

/// Operation names of the aws-sdk-* crates this workspace depends on, and
/// the services those crates are for.
fn sdk_operations() -> BTreeSet<String> {
    sdk().0
}

fn sdk() -> (BTreeSet<String>, BTreeSet<String>) {
    static SDK: std::sync::OnceLock<(BTreeSet<String>, BTreeSet<String>)> = std::sync::OnceLock::new();
    SDK.get_or_init(read_sdk).clone()
}

fn host_triple() -> String {
    let output = std::process::Command::new("rustc").arg("-vV").output().expect("rustc -vV");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc reports its host")
        .to_string()
}

fn read_sdk() -> (BTreeSet<String>, BTreeSet<String>) {
    // Only this platform's dependencies: those are the ones cargo has
    // already fetched to build the tests.
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline", "--locked", "--filter-platform", &host_triple()])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut operations = BTreeSet::new();
    let mut services = BTreeSet::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let Some(service) = name.strip_prefix("aws-sdk-") else {
            continue;
        };
        services.insert(service.to_string());
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap());
        let dir = manifest.parent().unwrap().join("src/operation");
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                operations.insert(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    (operations, services)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// SDK operations called in statements that send a request.
fn operations_called(known: &BTreeSet<String>) -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    // Every crate of the workspace lives under provider/.
    rust_files(&repo_root().join("provider"), &mut files);
    let mut called = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for statement in text.split(';').filter(|s| s.contains(".send()")) {
            let mut rest = statement;
            while let Some(at) = rest.find("()") {
                let before = &rest[..at];
                let name: String = before
                    .chars()
                    .rev()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect();
                if before[..before.len() - name.len()].trim_end().ends_with('.') && known.contains(&name) {
                    called.insert((name, file.file_name().unwrap().to_string_lossy().into_owned()));
                }
                rest = &rest[at + 2..];
            }
        }
    }
    called
}

#[test]
fn every_aws_operation_the_code_calls_has_an_iam_row() {
    let known = sdk_operations();
    assert!(known.contains("put_object") && known.contains("create_schedule"), "SDK operations found: {}", known.len());
    let called = operations_called(&known);
    assert!(called.len() > 30, "too few operations found, the scan is broken: {called:?}");
    let missing: Vec<_> = called.iter().filter(|(op, _)| !PERMISSIONS.iter().any(|p| p.operation == op)).collect();
    // sts:GetCallerIdentity needs no permission.
    let missing: Vec<_> = missing.into_iter().filter(|(op, _)| op != "get_caller_identity").collect();
    assert!(missing.is_empty(), "operations without an IAM row in aws/permissions.rs: {missing:?}");
}

#[test]
fn every_row_names_a_real_operation_and_action() {
    let (known, services) = sdk();
    for p in PERMISSIONS {
        let (service, action) = p.action.split_once(':').expect("service:Action");
        // Rows for the executor's services (rds, ebs) are checked once their
        // SDK crates are dependencies.
        if services.contains(service) {
            assert!(
                p.operation == "-" || known.contains(p.operation),
                "{} is not an SDK operation of {service}",
                p.operation
            );
        }
        assert!(!service.is_empty() && action.starts_with(|c: char| c.is_ascii_uppercase()), "{}", p.action);
    }
}
