//! The `coffer` binary: settings from the environment, exit status by
//! session outcome, JSON output.

use super::{count, policy, put_policy, rule};
use crate::support::estate::{coffer_command, executor, instance, tags};
use crate::support::{Moto, block_on};

fn coffer(moto: &Moto, args: &[&str]) -> (i32, String, String) {
    let out = coffer_command(&moto.endpoint).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn coffer_run_exits_by_outcome_and_lists_points_and_sessions() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let instance_id = block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
        let id = instance(&ec2, &tags(&[("Backup", "daily")]), 0, None).await;
        let executor = executor(&moto, dir.path(), 4).await;
        let mut doc = policy(
            "web",
            "ec2",
            &["us-east-1"],
            &[("Backup", "daily")],
            vec![rule("daily", "0 2 * * *", Some(count(7)), None)],
        );
        put_policy(&executor, &doc).await;
        doc.name = "broken".into();
        doc.source.ids = vec!["i-0123456789abcdef0".into()];
        put_policy(&executor, &doc).await;
        id
    });

    let (code, stdout, stderr) = coffer(&moto, &["run", "--policy", "web", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let session: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(session["outcome"], "Success");
    assert_eq!(session["resources"][0]["id"], instance_id.as_str());

    // One resource missing: Warning, exit status 3, and the table names it.
    let (code, stdout, _) = coffer(&moto, &["run", "--policy", "broken"]);
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains("i-0123456789abcdef0") && stdout.contains("session") && stdout.contains("Warning"),
        "{stdout}"
    );

    let (code, stdout, stderr) = coffer(&moto, &["points", "--policy", "web", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let points: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(points.as_array().unwrap().len(), 1);
    assert_eq!(points[0]["resource_id"], instance_id.as_str());
    assert_eq!(points[0]["kind"], "snapshot");

    let (code, stdout, _) = coffer(&moto, &["sessions", "--policy", "web", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap().as_array().unwrap().len(), 1);

    let (code, _, stderr) = coffer(&moto, &["run", "--policy", "nope"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("backup policy nope is not in the catalog"), "{stderr}");
    let (code, _, stderr) = coffer(&moto, &["run", "--policy", "web", "--rule", "hourly"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("has no rule hourly; its rules: daily"), "{stderr}");
}

#[test]
fn workers_launched_for_rules_due_together_make_one_run() {
    use chrono::{Timelike, Utc};
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    // Two rules due at the same minute, two minutes ago (as if EventBridge
    // fired both and the workers took a while to boot).
    let due = Utc::now() - chrono::TimeDelta::minutes(2);
    let cron = format!("{} {} * * *", due.minute(), due.hour());
    block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
        instance(&ec2, &tags(&[("Backup", "daily")]), 0, None).await;
        let executor = executor(&moto, dir.path(), 4).await;
        let rules = vec![rule("daily", &cron, Some(count(7)), None), rule("weekly", &cron, Some(count(4)), None)];
        put_policy(&executor, &policy("web", "ec2", &["us-east-1"], &[("Backup", "daily")], rules)).await;
    });

    let (code, stdout, stderr) = coffer(&moto, &["run", "--policy", "web", "--rule", "daily", "--scheduled", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let session: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(session["rules"], serde_json::json!(["daily", "weekly"]));
    assert_eq!(session["run_id"], coffer_executor::scheduled_run_id(due.with_second(0).unwrap()).as_str());

    // The worker launched for the other rule finds the run taken.
    let (code, stdout, stderr) =
        coffer(&moto, &["run", "--policy", "web", "--rule", "weekly", "--scheduled", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty() && stderr.contains("was taken by another worker"), "{stdout}{stderr}");
    let (_, points, _) = coffer(&moto, &["points", "--policy", "web", "--json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&points).unwrap().as_array().unwrap().len(), 1);
}

/// The worker of a snapshot-only rule runs on the small snapshot instance type: when an
/// image-level rule is due at the same minute, it leaves the firing to that rule's worker
/// (of the worker configuration's type) without claiming it, so the image-level work never
/// lands on the small instance.
#[test]
fn a_snapshot_worker_leaves_a_firing_with_an_image_level_rule_to_that_rules_worker() {
    use chrono::{Timelike, Utc};
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let due = Utc::now() - chrono::TimeDelta::minutes(2);
    let cron = format!("{} {} * * *", due.minute(), due.hour());
    block_on(async {
        let executor = executor(&moto, dir.path(), 4).await;
        let mut image = rule("image", &cron, None, None);
        image.backup =
            Some(coffer_model::policy::ToRepository { repository_id: "0123456789abcdef".into(), retain: count(3) });
        let rules = vec![rule("snap", &cron, Some(count(7)), None), image];
        put_policy(&executor, &policy("web", "ec2", &["us-east-1"], &[("Backup", "daily")], rules)).await;
    });

    let (code, stdout, stderr) = coffer(&moto, &["run", "--policy", "web", "--rule", "snap", "--scheduled"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.is_empty() && stderr.contains("includes rule image, which moves data: left to its worker"),
        "{stderr}"
    );
    let claims = crate::support::aws::Aws::new(&moto).keys(crate::support::aws::CATALOG_BUCKET, "runs/");
    assert!(claims.is_empty(), "the firing stays unclaimed for the image rule's worker: {claims:?}");
}

/// `coffer publish` checks what it uploads: this machine's own build (linked against a glibc
/// newer than Amazon Linux 2's) is refused before anything is uploaded; a build workers can
/// start goes where they fetch it, with its SHA-256, and publishing it again uploads nothing.
#[test]
fn coffer_publish_refuses_a_build_workers_could_not_start_and_uploads_a_good_one_once() {
    use crate::support::aws::{Aws, CATALOG_BUCKET};
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let key = "bin/coffer-linux-x86_64";

    let (code, stdout, stderr) = coffer(&moto, &["publish"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("needs glibc 2."), "{stderr}");
    assert!(stderr.contains("newer than the 2.26 of Amazon Linux 2"), "{stderr}");
    assert!(stderr.contains("scripts/build-worker.sh"), "{stderr}");
    assert_eq!(aws.get(CATALOG_BUCKET, key), None, "nothing uploaded");

    let dir = tempfile::tempdir().unwrap();
    let build = crate::support::tools::small_elf_needing_glibc(dir.path(), "2.17");
    let path = build.to_str().unwrap();
    let (code, stdout, stderr) = coffer(&moto, &["publish", "--binary", path]);
    assert_eq!(code, 0, "{stderr}");
    let bytes = std::fs::read(&build).unwrap();
    let sha256 = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&bytes))
    };
    assert_eq!(stdout.trim(), format!("published {path} to s3://{CATALOG_BUCKET}/{key} (sha256 {sha256})"), "{stderr}");
    assert_eq!(aws.get(CATALOG_BUCKET, key).as_deref(), Some(&bytes[..]));

    let (code, stdout, _) = coffer(&moto, &["publish", "--binary", path]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        format!("s3://{CATALOG_BUCKET}/{key} already holds this build (sha256 {sha256}); nothing uploaded")
    );
    assert_eq!(aws.versions(CATALOG_BUCKET, key), 1);

    let (code, _, stderr) = coffer(&moto, &["publish", "--binary", dir.path().join("hello.c").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("hello.c is not a 64-bit Linux ELF executable"), "{stderr}");
}

/// A worker of an older build must not run a policy a newer provider
/// wrote: serde would drop the fields it does not know and the run would
/// quietly do less than the policy says.
#[test]
fn a_policy_of_a_newer_format_is_refused_by_an_older_worker_and_nothing_is_snapshotted() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
        instance(&ec2, &tags(&[("Backup", "daily")]), 0, None).await;
        let executor = executor(&moto, dir.path(), 4).await;
        let doc = policy(
            "web",
            "ec2",
            &["us-east-1"],
            &[("Backup", "daily")],
            vec![rule("daily", "0 2 * * *", Some(count(7)), None)],
        );
        let mut newer = serde_json::to_value(&doc).unwrap();
        newer["format_version"] = 2.into();
        newer["written_by"] = "coffer 9.0.0".into();
        newer["quiesce"] = serde_json::json!({"script": "/usr/local/bin/freeze"});
        let catalog = executor.catalog();
        catalog.ensure_bucket().await.unwrap();
        let s3 = aws_sdk_s3::Client::new(&moto.sdk_config("us-east-1").await);
        s3.put_object()
            .bucket(catalog.bucket())
            .key(catalog.key(coffer_model::Kind::Policy, "web"))
            .body(serde_json::to_vec_pretty(&newer).unwrap().into())
            .send()
            .await
            .unwrap();
    });

    let (code, stdout, stderr) = coffer(&moto, &["run", "--policy", "web"]);
    assert_ne!(code, 0, "{stdout}");
    for part in
        ["backup policy web has format_version 2", "written by coffer 9.0.0", "Upgrade terraform-provider-coffer"]
    {
        assert!(stderr.contains(part), "{part:?} missing from: {stderr}");
    }
    block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
        let snapshots = ec2.describe_snapshots().owner_ids("self").send().await.unwrap();
        assert!(snapshots.snapshots().is_empty(), "a refused policy was run: {:?}", snapshots.snapshots());
    });
}
