//! `Executor::run` against moto: scope, snapshots, replicas, idempotency,
//! a failing resource.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::Filter;
use chrono::Utc;
use coffer_executor::run::{Quiet, RunRequest};
use coffer_executor::session::Outcome;
use coffer_model::session::SnapshotKind;

use super::{count, policy, put_mapping, put_policy, rule};
use crate::support::aws::CATALOG_BUCKET;
use crate::support::estate::{db_cluster, db_instance, executor, instance, kms_key, tags};
use crate::support::{Moto, block_on};

fn tag_map(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter().map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string())).collect()
}

async fn snapshots_tagged(ec2: &aws_sdk_ec2::Client, key: &str, value: &str) -> Vec<aws_sdk_ec2::types::Snapshot> {
    ec2.describe_snapshots()
        .owner_ids("self")
        .filters(Filter::builder().name(format!("tag:{key}")).values(value).build())
        .send()
        .await
        .unwrap()
        .snapshots()
        .to_vec()
}

#[test]
fn a_run_snapshots_every_resource_in_scope_and_a_missing_one_gives_warning() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let run_id = block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
        let ec2_eu = aws_sdk_ec2::Client::new(&moto.sdk_config("eu-west-1").await);
        let web = instance(&ec2, &tags(&[("Backup", "daily"), ("Name", "web-1")]), 0, None).await;
        let db_host = instance(&ec2, &tags(&[("Backup", "daily"), ("Name", "db-host")]), 1, None).await;
        let named = instance(&ec2, &tags(&[("Backup", "weekly"), ("Name", "named")]), 0, None).await;
        let excluded = instance(&ec2, &tags(&[("Backup", "daily"), ("Name", "excluded")]), 0, None).await;
        let untagged = instance(&ec2, &tags(&[("Name", "scratch")]), 0, None).await;
        let partly = instance(&ec2, &tags(&[("Backup", "weekly")]), 0, None).await;
        let eu_web = instance(&ec2_eu, &tags(&[("Backup", "daily"), ("Name", "eu-web-1")]), 0, None).await;
        // Named in source.ids but nowhere in the policy's regions: the
        // resource fails, the others are done.
        let ghost = "i-0123456789abcdef0";

        let executor = executor(&moto, dir.path(), 4).await;
        let mut doc = policy(
            "web",
            "ec2",
            &["us-east-1", "eu-west-1"],
            &[("Backup", "daily")],
            vec![rule("daily", "0 2 * * *", Some(count(7)), None)],
        );
        doc.source.ids = vec![named.clone(), ghost.to_string()];
        doc.source.exclude_ids = vec![excluded.clone()];
        doc.tags = [("Owner".to_string(), "platform".to_string())].into();
        put_policy(&executor, &doc).await;

        let session = executor
            .run(RunRequest { policy: "web".into(), rules: vec![], run_id: None, time: Utc::now() }, &Quiet)
            .await
            .unwrap();

        let in_scope: BTreeSet<&str> = session.resources.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(in_scope, BTreeSet::from([web.as_str(), db_host.as_str(), named.as_str(), eu_web.as_str(), ghost]));
        assert_eq!(session.outcome, Outcome::Warning, "{session:#?}");
        for record in &session.resources {
            if record.id == ghost {
                assert_eq!(record.outcome, Outcome::Failed);
                let error = record.error.as_deref().unwrap();
                assert!(error.contains("found in none of us-east-1, eu-west-1"), "{error}");
            } else {
                assert_eq!(record.outcome, Outcome::Success, "{record:#?}");
                let volumes = if record.id == db_host { 2 } else { 1 };
                assert_eq!(record.snapshots.len(), volumes, "{record:#?}");
            }
        }

        // What AWS holds: one snapshot per volume, tagged, none for the rest.
        let made = snapshots_tagged(&ec2, "coffer:run", &session.run_id).await;
        assert_eq!(made.len(), 4);
        assert_eq!(snapshots_tagged(&ec2_eu, "coffer:run", &session.run_id).await.len(), 1);
        for id in [&excluded, &untagged, &partly] {
            assert!(snapshots_tagged(&ec2, "coffer:source", id).await.is_empty(), "{id} was snapshotted");
        }
        let web_snapshot = made.iter().find(|s| tag_map(s.tags()).get("coffer:source") == Some(&web)).unwrap();
        let tags = tag_map(web_snapshot.tags());
        assert_eq!(tags["coffer:policy"], "web");
        assert_eq!(tags["coffer:rule"], "daily");
        assert_eq!(tags["coffer:kind"], "snapshot");
        assert_eq!(tags["Owner"], "platform", "the policy's tags");
        assert_eq!(tags["Name"], "web-1", "the source's tags are copied");
        assert!(web_snapshot.description().unwrap().contains("policy web"));

        session.run_id
    });

    // The session record in the catalog.
    let aws = crate::support::aws::Aws::new(&moto);
    let record = aws.get_json(CATALOG_BUCKET, &format!("sessions/web/{run_id}.json")).unwrap();
    assert_eq!(record["outcome"], "Warning");
    assert_eq!(record["resources"].as_array().unwrap().len(), 5);
}

/// An estate with an instance (one encrypted data volume) and an RDS
/// instance and Aurora cluster, two policies replicating to eu-west-1
/// under a key there.
struct Replicated {
    instance: String,
    key_eu: String,
    executor: coffer_executor::Executor,
}

async fn replicated_estate(moto: &Moto, dir: &std::path::Path) -> Replicated {
    let use1 = moto.sdk_config("us-east-1").await;
    let ec2 = aws_sdk_ec2::Client::new(&use1);
    let rds = aws_sdk_rds::Client::new(&use1);
    let key_use1 = kms_key(&aws_sdk_kms::Client::new(&use1)).await;
    let key_eu = kms_key(&aws_sdk_kms::Client::new(&moto.sdk_config("eu-west-1").await)).await;
    let instance = instance(&ec2, &tags(&[("Backup", "dr")]), 1, Some(&key_use1)).await;
    db_instance(&rds, "orders-db", &tags(&[("Backup", "dr")])).await;
    db_cluster(&rds, "ledger", &tags(&[("Backup", "dr")])).await;
    db_instance(&rds, "other-db", &tags(&[("Backup", "none")])).await;

    let executor = executor(moto, dir, 4).await;
    put_mapping(&executor, "use1-to-euw1", "us-east-1", "eu-west-1", Some(&key_eu), "all").await;
    let rules = || vec![rule("daily", "0 2 * * *", Some(count(3)), Some((&["use1-to-euw1"][..], count(2))))];
    put_policy(&executor, &policy("ec2-dr", "ec2", &["us-east-1"], &[("Backup", "dr")], rules())).await;
    put_policy(&executor, &policy("rds-dr", "rds", &["us-east-1"], &[("Backup", "dr")], rules())).await;
    Replicated { instance, key_eu, executor }
}

#[test]
fn replicas_land_in_the_target_region_under_the_mapping_key() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let estate = replicated_estate(&moto, dir.path()).await;
        let run = |policy: &str| RunRequest { policy: policy.into(), rules: vec![], run_id: None, time: Utc::now() };

        let ec2_session = estate.executor.run(run("ec2-dr"), &Quiet).await.unwrap();
        assert_eq!(ec2_session.outcome, Outcome::Success, "{ec2_session:#?}");
        let ec2_eu = aws_sdk_ec2::Client::new(&moto.sdk_config("eu-west-1").await);
        let replicas = snapshots_tagged(&ec2_eu, "coffer:run", &ec2_session.run_id).await;
        assert_eq!(replicas.len(), 2, "one copy per volume");
        let sources: BTreeSet<String> = ec2_session.resources[0]
            .snapshots
            .iter()
            .filter(|s| s.kind == SnapshotKind::Snapshot)
            .map(|s| s.id.clone())
            .collect();
        for replica in &replicas {
            let tags = tag_map(replica.tags());
            assert_eq!(tags["coffer:kind"], "replica");
            assert_eq!(tags["coffer:source"], estate.instance);
            assert_eq!(tags["coffer:mapping"], "use1-to-euw1");
            assert!(sources.contains(&tags["coffer:source-snapshot"]), "{tags:?}");
            // encrypt = "all": the unencrypted root volume's copy too.
            assert_eq!(replica.encrypted(), Some(true));
            assert_eq!(replica.kms_key_id(), Some(estate.key_eu.as_str()));
        }

        let rds_session = estate.executor.run(run("rds-dr"), &Quiet).await.unwrap();
        assert_eq!(rds_session.outcome, Outcome::Success, "{rds_session:#?}");
        let protected: BTreeSet<&str> = rds_session.resources.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(protected, BTreeSet::from(["ledger", "orders-db"]), "the cluster, not its member; not other-db");
        let rds_eu = aws_sdk_rds::Client::new(&moto.sdk_config("eu-west-1").await);
        let copies = rds_eu.describe_db_snapshots().snapshot_type("manual").send().await.unwrap();
        let copy =
            copies.db_snapshots().iter().find(|s| s.db_snapshot_identifier().unwrap().contains("orders-db")).unwrap();
        assert_eq!(copy.kms_key_id(), Some(estate.key_eu.as_str()));
        let copy_tags: BTreeMap<_, _> =
            copy.tag_list().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
        assert_eq!(copy_tags["coffer:kind"], "replica");
        assert_eq!(copy_tags["coffer:run"], rds_session.run_id);
        let cluster_copies = rds_eu.describe_db_cluster_snapshots().snapshot_type("manual").send().await.unwrap();
        let cluster_copy = cluster_copies
            .db_cluster_snapshots()
            .iter()
            .find(|s| s.db_cluster_snapshot_identifier().unwrap().contains("ledger"))
            .unwrap();
        assert_eq!(cluster_copy.kms_key_id(), Some(estate.key_eu.as_str()));
    });
}

#[test]
fn a_rerun_with_the_same_run_id_makes_no_second_snapshot() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let estate = replicated_estate(&moto, dir.path()).await;
        let run = |policy: &str| RunRequest {
            policy: policy.into(),
            rules: vec![],
            run_id: Some("20261123-0200".into()),
            time: Utc::now(),
        };
        for policy in ["ec2-dr", "rds-dr"] {
            let first = estate.executor.run(run(policy), &Quiet).await.unwrap();
            let second = estate.executor.run(run(policy), &Quiet).await.unwrap();
            assert_eq!(second.outcome, Outcome::Success, "{second:#?}");
            let ids = |s: &coffer_executor::session::Session| -> BTreeSet<String> {
                s.resources.iter().flat_map(|r| r.snapshots.iter().map(|s| s.id.clone())).collect()
            };
            assert_eq!(ids(&first), ids(&second), "{policy}: the re-run found the same snapshots and replicas");
            assert!(second.resources.iter().flat_map(|r| &r.snapshots).all(|s| s.reused), "{second:#?}");
            assert!(first.resources.iter().flat_map(|r| &r.snapshots).all(|s| !s.reused));
        }
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
        assert_eq!(snapshots_tagged(&ec2, "coffer:run", "20261123-0200").await.len(), 2);
        let rds = aws_sdk_rds::Client::new(&moto.sdk_config("us-east-1").await);
        let manual = rds.describe_db_snapshots().snapshot_type("manual").send().await.unwrap();
        assert_eq!(manual.db_snapshots().len(), 1);
    });
}

/// A mapping whose key the copies' maker cannot find (deleted, or in another account it may
/// not see) would fail every copy: the run starts none, and the resource's warning names the
/// key, whose view and the region. The snapshot itself is made.
#[test]
fn a_mapping_key_that_cannot_be_found_stops_its_copies_with_a_warning_naming_the_key() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let use1 = moto.sdk_config("us-east-1").await;
        let ec2 = aws_sdk_ec2::Client::new(&use1);
        instance(&ec2, &tags(&[("Backup", "dr")]), 1, None).await;
        let executor = executor(&moto, dir.path(), 4).await;
        let gone = "arn:aws:kms:eu-west-1:123456789012:key/0d7c2b3e-aaaa-bbbb-cccc-1234567890ab";
        put_mapping(&executor, "use1-to-euw1", "us-east-1", "eu-west-1", Some(gone), "all").await;
        let rules = vec![rule("daily", "0 2 * * *", Some(count(3)), Some((&["use1-to-euw1"][..], count(2))))];
        put_policy(&executor, &policy("ec2-dr", "ec2", &["us-east-1"], &[("Backup", "dr")], rules)).await;

        let request = RunRequest { policy: "ec2-dr".into(), rules: vec![], run_id: None, time: Utc::now() };
        let session = executor.run(request, &Quiet).await.unwrap();
        assert_eq!(session.outcome, Outcome::Warning, "{session:#?}");
        let resource = &session.resources[0];
        assert!(resource.snapshots.iter().all(|s| s.kind == SnapshotKind::Snapshot), "{resource:#?}");
        assert!(!resource.snapshots.is_empty(), "the snapshot is still made");
        let warning = resource.warnings.join("\n");
        assert!(
            warning.contains(&format!("the workers' role finds no KMS key {gone} (kms_key_arn) in eu-west-1"))
                && warning.contains("nothing was copied"),
            "{warning}"
        );
        let ec2_eu = aws_sdk_ec2::Client::new(&moto.sdk_config("eu-west-1").await);
        assert!(snapshots_tagged(&ec2_eu, "coffer:run", &session.run_id).await.is_empty(), "no copy started");
    });
}
