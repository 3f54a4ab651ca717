//! The image-level backup step of `Executor::run` against moto: a full then
//! an incremental restore point of an instance's volume, both restored byte
//! for byte, and retention on restore points.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use coffer_aws::s3_storage::S3Storage;
use coffer_executor::run::{Quiet, RunRequest};
use coffer_executor::session::Outcome;
use coffer_model::policy::ToRepository;
use coffer_model::repository::{Encryption, RepositoryEntry};
use coffer_model::session::BackupKind;
use coffer_repository::blocks::{BlockError, BlockSink};
use coffer_repository::{FORMAT_VERSION, KeyEnvelope, MasterKey, Repository, RepositoryConfig, Unlock};

use super::{count, policy, put_policy, rule};
use crate::support::estate::{executor, instance, tags, volume_ids, write_volume_block, zero_volume_block};
use crate::support::{Moto, block_on};

const BLOCK: usize = 512 * 1024;
const PASSWORD: &str = "correct horse battery staple";

/// Restored blocks, by index.
#[derive(Default)]
struct Collected(Mutex<BTreeMap<u64, Vec<u8>>>);

#[async_trait]
impl BlockSink for Collected {
    async fn write(&self, index: u64, data: Vec<u8>) -> Result<(), BlockError> {
        self.0.lock().unwrap().insert(index, data);
        Ok(())
    }
    async fn finish(&self, _blocks_written: u64) -> Result<String, BlockError> {
        Ok("memory".into())
    }
    async fn abort(&self) {}
}

fn block(seed: u8) -> Vec<u8> {
    // Compressible but distinct: text-like content a file system holds.
    (0..BLOCK).map(|i| b"coffer block "[i % 13].wrapping_add(seed)).collect()
}

async fn create_repository(moto: &Moto) -> (Arc<S3Storage>, String) {
    create_repository_of_class(moto, "STANDARD").await
}

async fn create_repository_of_class(moto: &Moto, storage_class: &str) -> (Arc<S3Storage>, String) {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.sdk_config("us-east-1").await).force_path_style(true).build(),
    );
    s3.create_bucket().bucket("coffer-images").send().await.unwrap();
    let storage = Arc::new(S3Storage::new(s3, "coffer-images", "main/"));
    let mut config = RepositoryConfig {
        format_version: FORMAT_VERSION,
        id: uuid::Uuid::new_v4().to_string(),
        created_at: "2026-11-23T00:00:00Z".into(),
        storage_class: storage_class.parse().expect("a storage class"),
        immutability: None,
        key: KeyEnvelope::Kms { kms_key_arn: String::new(), wrapped_master_key: String::new() },
        worker_key: None,
    };
    let master = MasterKey::random();
    config.seal_with_password(&master, PASSWORD).unwrap();
    let id = config.id.clone();
    Repository::init(storage.clone(), config, &master).await.unwrap();
    (storage, id)
}

/// The repository's catalog entry, as coffer_repository writes it.
async fn register_repository(executor: &coffer_executor::Executor, repository_id: &str, storage_class: &str) {
    executor
        .catalog()
        .create(
            repository_id,
            &RepositoryEntry {
                format_version: 1,
                id: repository_id.to_string(),
                name: "main".into(),
                bucket: "coffer-images".into(),
                prefix: "main/".into(),
                region: "us-east-1".into(),
                storage_class: storage_class.parse().expect("a storage class"),
                encryption: Encryption::Password,
            },
        )
        .await
        .unwrap();
}

#[test]
fn backups_are_incremental_restore_byte_for_byte_and_age_out() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
        let web = instance(&ec2, &tags(&[("Backup", "image")]), 0, None).await;
        let volume = volume_ids(&ec2, &web).await.remove(0);
        let mut volume_blocks: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for (index, seed) in [(0u64, 1u8), (1, 2), (2, 3), (5, 1)] {
            write_volume_block(moto.port(), &volume, index, &block(seed));
            volume_blocks.insert(index, block(seed));
        }

        let (storage, repository_id) = create_repository(&moto).await;
        let mut executor = executor(&moto, dir.path(), 4).await;
        executor.settings.repository_password = Some(PASSWORD.into());
        register_repository(&executor, &repository_id, "STANDARD").await;
        let mut daily = rule("daily", "0 2 * * *", None, None);
        daily.backup = Some(ToRepository { repository_id: repository_id.clone(), retain: count(2) });
        put_policy(&executor, &policy("images", "ec2", &["us-east-1"], &[("Backup", "image")], vec![daily])).await;

        let start = Utc::now() - TimeDelta::days(3);
        let run = |day: i64| RunRequest {
            policy: "images".into(),
            rules: Vec::new(),
            run_id: Some(format!("day-{day}")),
            time: start + TimeDelta::days(day),
        };

        // Day 0: a full backup; block 5 repeats block 0 and is stored once.
        let first = executor.run(run(0), &Quiet).await.unwrap();
        assert_eq!(first.outcome, Outcome::Success, "{first:#?}");
        let made = &first.resources[0].backups;
        assert_eq!(made.len(), 1, "{first:#?}");
        assert!(!made[0].incremental);
        assert_eq!(made[0].blocks_read, 4);

        // Day 1: block 1 changes, block 2 is zeroed, block 9 is new.
        write_volume_block(moto.port(), &volume, 1, &block(7));
        zero_volume_block(moto.port(), &volume, 2);
        write_volume_block(moto.port(), &volume, 9, &block(8));
        let before = volume_blocks.clone();
        volume_blocks.insert(1, block(7));
        volume_blocks.remove(&2);
        volume_blocks.insert(9, block(8));
        let second = executor.run(run(1), &Quiet).await.unwrap();
        assert_eq!(second.outcome, Outcome::Success, "{second:#?}");
        let made2 = &second.resources[0].backups[0];
        assert!(made2.incremental, "the second backup lists changed blocks only: {made2:#?}");
        assert_eq!(made2.blocks_read, 2, "only the changed and the new block are read");

        // Both restore byte for byte.
        let repo = Repository::open(storage.clone(), Unlock::Password(PASSWORD)).await.unwrap();
        for (point, expected) in [(&made[0].point_id, &before), (&made2.point_id, &volume_blocks)] {
            let manifest = repo.manifest(point).await.unwrap();
            assert_eq!(manifest.volume_size, 8 << 30);
            let sink = Collected::default();
            repo.restore(&manifest, &sink, 4, &|_, _| {}).await.unwrap();
            assert_eq!(&*sink.0.lock().unwrap(), expected, "restore point {point}");
        }

        // Day 2: retention (count 2) lets the day-0 point go; the
        // snapshots the backups read keep only the newest.
        let third = executor.run(run(2), &Quiet).await.unwrap();
        assert_eq!(third.outcome, Outcome::Success, "{third:#?}");
        assert!(third.retention.deleted.contains(&made[0].point_id), "{:#?}", third.retention);
        let repo = Repository::open(storage.clone(), Unlock::Password(PASSWORD)).await.unwrap();
        let points: Vec<String> = repo.manifests().await.unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(points.len(), 2);
        assert!(!points.contains(&made[0].point_id));
        let snapshots = ec2.describe_snapshots().owner_ids("self").send().await.unwrap();
        let of_volume = snapshots.snapshots().iter().filter(|s| s.volume_id() == Some(volume.as_str())).count();
        assert_eq!(of_volume, 1, "a backup-only rule keeps the newest snapshot, for the next incremental");
    });
}

#[test]
fn archives_keep_data_in_glacier_list_without_a_thaw_and_restore_after_one() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
        let db = instance(&ec2, &tags(&[("Backup", "archive")]), 0, None).await;
        let volume = volume_ids(&ec2, &db).await.remove(0);
        let mut volume_blocks: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for (index, seed) in [(0u64, 11u8), (3, 12), (4, 13)] {
            write_volume_block(moto.port(), &volume, index, &block(seed));
            volume_blocks.insert(index, block(seed));
        }

        let (storage, repository_id) = create_repository_of_class(&moto, "GLACIER").await;
        let mut executor = executor(&moto, dir.path(), 4).await;
        executor.settings.repository_password = Some(PASSWORD.into());
        register_repository(&executor, &repository_id, "GLACIER").await;
        let mut monthly = rule("monthly", "0 3 1 * *", Some(count(1)), None);
        monthly.archive = Some(ToRepository { repository_id: repository_id.clone(), retain: count(12) });
        put_policy(&executor, &policy("vault", "ec2", &["us-east-1"], &[("Backup", "archive")], vec![monthly])).await;

        let session = executor
            .run(
                RunRequest {
                    policy: "vault".into(),
                    rules: Vec::new(),
                    run_id: Some("month-1".into()),
                    time: Utc::now(),
                },
                &Quiet,
            )
            .await
            .unwrap();
        assert_eq!(session.outcome, Outcome::Success, "{session:#?}");
        let made = &session.resources[0].backups;
        assert_eq!(made.len(), 1, "{session:#?}");
        assert_eq!(made[0].kind, BackupKind::Archive);

        // Data packs went to GLACIER; what listing and check read did not.
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&moto.sdk_config("us-east-1").await).force_path_style(true).build(),
        );
        let listed = s3.list_objects_v2().bucket("coffer-images").prefix("main/").send().await.unwrap();
        let mut classes: BTreeMap<String, String> = BTreeMap::new();
        for object in listed.contents() {
            let key = object.key().unwrap().trim_start_matches("main/").to_string();
            let folder = key.split('/').next().unwrap().to_string();
            let class = object.storage_class().map(|c| c.as_str().to_string()).unwrap_or_else(|| "STANDARD".into());
            let seen = classes.entry(folder.clone()).or_insert_with(|| class.clone());
            assert_eq!(seen, &class, "every object under {folder}/ has one storage class");
        }
        assert_eq!(classes.get("data").map(String::as_str), Some("GLACIER"), "{classes:?}");
        for folder in ["config", "index", "manifests"] {
            assert_eq!(classes.get(folder).map(String::as_str), Some("STANDARD"), "{folder}: {classes:?}");
        }

        // Points list and check passes without a thaw; reading the data
        // needs one: a restore before it says so, after it is byte for byte.
        let repo = Repository::open(storage.clone(), Unlock::Password(PASSWORD)).await.unwrap();
        let manifest = repo.manifest(&made[0].point_id).await.unwrap();
        assert_eq!(repo.manifests().await.unwrap().len(), 1);
        let config = Repository::read_config(storage.as_ref()).await.unwrap();
        let master = config.open_with_password(PASSWORD).unwrap();
        let report = coffer_repository::check::check(storage.clone(), &config, &master, false).await.unwrap();
        assert!(report.is_healthy(), "{report:#?}");

        let e = repo
            .restore(&manifest, &Collected::default(), 4, &|_, _| {})
            .await
            .expect_err("archived packs cannot be read");
        assert!(e.to_string().contains("archived"), "{e}");
        repo.thaw(&manifest, std::time::Duration::from_millis(100), std::time::Duration::from_secs(30)).await.unwrap();
        let sink = Collected::default();
        repo.restore(&manifest, &sink, 4, &|_, _| {}).await.unwrap();
        assert_eq!(*sink.0.lock().unwrap(), volume_blocks);
    });
}

#[test]
fn image_points_are_listed_by_coffer_points_and_coffer_restore_points() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let (web, volumes, repository_id, point_id) = block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
        let web = instance(&ec2, &tags(&[("Backup", "image")]), 1, None).await;
        let volumes = volume_ids(&ec2, &web).await;
        for (index, volume) in volumes.iter().enumerate() {
            write_volume_block(moto.port(), volume, 0, &block(index as u8));
        }
        let (_, repository_id) = create_repository(&moto).await;
        let mut executor = executor(&moto, dir.path(), 4).await;
        executor.settings.repository_password = Some(PASSWORD.into());
        register_repository(&executor, &repository_id, "STANDARD").await;
        let mut daily = rule("daily", "0 2 * * *", None, None);
        daily.backup = Some(ToRepository { repository_id: repository_id.clone(), retain: count(7) });
        put_policy(&executor, &policy("images", "ec2", &["us-east-1"], &[("Backup", "image")], vec![daily])).await;
        let session = executor
            .run(
                RunRequest {
                    policy: "images".into(),
                    rules: Vec::new(),
                    run_id: Some("day-0".into()),
                    time: Utc::now(),
                },
                &Quiet,
            )
            .await
            .unwrap();
        assert_eq!(session.outcome, Outcome::Success, "{session:#?}");
        let point_id = session.resources[0].backups[0].point_id.clone();
        (web, volumes, repository_id, point_id)
    });

    // `coffer points`: one backup point for the instance and run, holding
    // one repository point per volume.
    let points = |kind: Option<&str>, password: Option<&str>| {
        let mut command = crate::support::estate::coffer_command(&moto.endpoint);
        command.args(["points", "--policy", "images", "--json"]);
        if let Some(kind) = kind {
            command.args(["--kind", kind]);
        }
        if let Some(password) = password {
            command.env("COFFER_REPOSITORY_PASSWORD", password);
        }
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = points(Some("backup"), Some(PASSWORD));
    assert_eq!(code, Some(0), "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    assert_eq!(listed[0]["kind"], "backup");
    assert_eq!(listed[0]["resource_id"], web.as_str());
    assert_eq!(listed[0]["repository_id"], repository_id.as_str());
    assert_eq!(listed[0]["run_id"], "day-0");
    // The keys snapshot rows have, so one jq filter reads both.
    assert_eq!(listed[0]["account"], "123456789012", "{listed:#}");
    assert_eq!(listed[0]["complete"], true);
    assert_eq!(listed[0]["snapshot_ids"], serde_json::json!([]));
    assert_eq!(listed[0]["point_ids"].as_array().unwrap().len(), volumes.len(), "one per volume: {listed:#}");
    assert!(listed[0]["point_ids"].as_array().unwrap().iter().any(|p| p == point_id.as_str()));
    let mut listed_volumes: Vec<String> = serde_json::from_value(listed[0]["volume_ids"].clone()).unwrap();
    listed_volumes.sort();
    let mut expected = volumes.clone();
    expected.sort();
    assert_eq!(listed_volumes, expected);

    // Without the password: asked for backups, a clear error; asked for
    // everything, the snapshots and a note of what was left out.
    let (code, _, stderr) = points(Some("backup"), None);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is encrypted with a password and has no workers' key: set COFFER_REPOSITORY_PASSWORD, or worker_kms_key_arn"), "{stderr}");
    let (code, stdout, stderr) = points(None, None);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("image-level restore points left out"), "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(listed.as_array().unwrap().iter().all(|p| p["kind"] == "snapshot"), "{listed:#}");

    // The data source, through terraform with the password in its environment.
    for tf in crate::support::terraform_versions() {
        let mut wd = crate::support::Workdir::new(&tf, &crate::support::provider_binary());
        wd.set_env("COFFER_REPOSITORY_PASSWORD", PASSWORD);
        wd.write(
            "main.tf",
            &(crate::acceptance::provider(&moto)
                + r#"
data "coffer_restore_points" "backups" {
  policy = "images"
  kind   = "backup"
}

output "backups" { value = data.coffer_restore_points.backups.restore_points }
"#),
        );
        wd.init();
        wd.apply();
        let backups = wd.output_json()["backups"]["value"].clone();
        assert_eq!(backups.as_array().unwrap().len(), 1, "{backups:#}");
        assert_eq!(backups[0]["kind"], "backup");
        assert_eq!(backups[0]["resource_id"], web.as_str());
        assert_eq!(backups[0]["repository_id"], repository_id.as_str());
        assert_eq!(backups[0]["complete"], true);
        assert_eq!(backups[0]["rules"], serde_json::json!(["daily"]));
        assert_eq!(backups[0]["point_ids"].as_array().unwrap().len(), volumes.len());
        assert_eq!(backups[0]["snapshot_ids"], serde_json::json!([]));
    }
}

/// A scheduled run (as `coffer run --scheduled` makes it) over three regions: the home
/// region's instance is backed up by the run's own worker; eu-west-1 has no worker
/// configuration, so nothing can read its volume there; eu-central-1's worker is launched from
/// its launch template and ends without recording its part (its record, as the boot script
/// writes it, says why). The session keeps every snapshot and says, per instance, what stopped
/// its image-level point.
#[test]
fn a_scheduled_run_says_which_regions_workers_could_not_make_their_points() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let mut regions = BTreeMap::new();
        for region in ["us-east-1", "eu-west-1", "eu-central-1"] {
            let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config(region).await);
            let id = instance(&ec2, &tags(&[("Backup", "image")]), 0, None).await;
            regions.insert(region, (ec2, id));
        }
        let frankfurt = &regions["eu-central-1"].0;
        // The AMI the estate's instances are launched from.
        let image = "ami-0c0ffee0c0ffee000";
        let template = frankfurt
            .create_launch_template()
            .launch_template_name("coffer-euc1")
            .launch_template_data(
                aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                    .image_id(image)
                    .instance_type("m6i.large".into())
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .launch_template()
            .unwrap()
            .launch_template_id()
            .unwrap()
            .to_string();

        let (_storage, repository_id) = create_repository(&moto).await;
        let mut executor = executor(&moto, dir.path(), 4).await;
        executor.settings.repository_password = Some(PASSWORD.into());
        executor.settings.launched_for = Some("daily".into());
        executor.settings.worker_instance_id = Some("i-0firstworker".into());
        register_repository(&executor, &repository_id, "STANDARD").await;
        let mut daily = rule("daily", "0 2 * * *", None, None);
        daily.backup = Some(ToRepository { repository_id: repository_id.clone(), retain: count(2) });
        let mut scheduled = policy(
            "scheduled",
            "ec2",
            &["us-east-1", "eu-west-1", "eu-central-1"],
            &[("Backup", "image")],
            vec![daily],
        );
        scheduled.worker_configuration_ids = vec![template.clone()];
        put_policy(&executor, &scheduled).await;

        // eu-central-1's worker, as far as the run can see it: launched, then its boot
        // script's record of an early end.
        let failed_worker = async {
            let launched = loop {
                let found = frankfurt
                    .describe_instances()
                    .filters(
                        aws_sdk_ec2::types::Filter::builder().name("tag:coffer:part").values("eu-central-1").build(),
                    )
                    .send()
                    .await
                    .unwrap();
                if let Some(id) = found.reservations().iter().flat_map(|r| r.instances()).find_map(|i| i.instance_id())
                {
                    break id.to_string();
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            };
            let now = Utc::now();
            let record = coffer_model::worker::WorkerRecord {
                format_version: 1,
                instance_id: launched.clone(),
                policy: "scheduled".into(),
                rule: "daily".into(),
                task: "run --policy scheduled --rule daily --run-id r1 --part eu-central-1".into(),
                started_at: now,
                log_key: format!("worker-logs/{launched}.log"),
                ended_at: Some(now),
                exit_status: Some(1),
                reason: Some("cannot fetch s3://catalog/bin/coffer-linux-x86_64 (run coffer publish)".into()),
                part: Some("eu-central-1".into()),
            };
            executor.catalog().put(&record.name(), &record).await.unwrap();
            launched
        };
        let request = RunRequest {
            policy: "scheduled".into(),
            rules: vec!["daily".into()],
            run_id: Some("r1".into()),
            time: Utc::now(),
        };
        let (session, launched) = tokio::join!(executor.run(request, &Quiet), failed_worker);
        let session = session.unwrap();
        assert_eq!(session.outcome, Outcome::Warning, "{session:#?}");
        let of = |region: &str| session.resources.iter().find(|r| r.region == region).expect(region);

        let home = of("us-east-1");
        assert_eq!(home.outcome, Outcome::Success, "{session:#?}");
        assert_eq!(home.backups.len(), 1);
        assert_eq!(home.backups[0].worker.as_deref(), Some("i-0firstworker"), "the run's own worker made it");

        for region in ["eu-west-1", "eu-central-1"] {
            let resource = of(region);
            assert_eq!(resource.outcome, Outcome::Warning, "{session:#?}");
            assert_eq!(resource.snapshots.len(), 1, "its snapshot is kept: {session:#?}");
            assert!(resource.backups.is_empty(), "{session:#?}");
        }
        assert_eq!(
            of("eu-west-1").warnings,
            ["image-level backup in eu-west-1: none of the policy's worker configurations is in eu-west-1, where its \
              volumes are read: add a coffer_worker_configuration with region = \"eu-west-1\" to worker_configuration_ids"]
        );
        let bucket = &executor.catalog_location.bucket;
        assert_eq!(
            of("eu-central-1").warnings,
            [format!(
                "image-level backup in eu-central-1: its worker {launched} ended without recording its part: cannot \
                 fetch s3://catalog/bin/coffer-linux-x86_64 (run coffer publish); its log: \
                 s3://{bucket}/worker-logs/{launched}.log"
            )]
        );
    });
}

/// An image-level point restores by the id `coffer points` shows, like a snapshot: each
/// volume's point is written into a new EBS snapshot, which becomes volumes or an instance
/// (and is deleted once they exist) or is the result (`--to-snapshot`).
#[test]
fn an_image_level_point_restores_by_its_id_to_volumes_an_instance_and_snapshots() {
    use crate::support::estate::read_volume_block;
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let ec2 = block_on(async { aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await) });
    let (web, volumes, repository_id) = block_on(async {
        let web = instance(&ec2, &tags(&[("Backup", "image")]), 1, None).await;
        let volumes = volume_ids(&ec2, &web).await;
        for (index, volume) in volumes.iter().enumerate() {
            write_volume_block(moto.port(), volume, 2, &block(index as u8));
        }
        let (_, repository_id) = create_repository(&moto).await;
        let mut executor = executor(&moto, dir.path(), 4).await;
        executor.settings.repository_password = Some(PASSWORD.into());
        register_repository(&executor, &repository_id, "STANDARD").await;
        let mut daily = rule("daily", "0 2 * * *", None, None);
        daily.backup = Some(ToRepository { repository_id: repository_id.clone(), retain: count(7) });
        put_policy(&executor, &policy("images", "ec2", &["us-east-1"], &[("Backup", "image")], vec![daily])).await;
        let request =
            RunRequest { policy: "images".into(), rules: Vec::new(), run_id: Some("day-0".into()), time: Utc::now() };
        let session = executor.run(request, &Quiet).await.unwrap();
        assert_eq!(session.outcome, Outcome::Success, "{session:#?}");
        (web, volumes, repository_id)
    });
    let coffer = |args: &[&str]| -> serde_json::Value {
        let out = crate::support::estate::coffer_command(&moto.endpoint)
            .args(args)
            .env("COFFER_REPOSITORY_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "coffer {args:?}: {stderr}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let listed = coffer(&["points", "--policy", "images", "--kind", "backup", "--json"]);
    let id = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(id, format!("images/backup/{repository_id}/{web}/day-0"));
    assert_eq!(listed[0]["restore_targets"], serde_json::json!(["volume", "instance", "original", "snapshot"]));
    // The blocks the instance had on each device.
    let original: BTreeMap<String, Vec<u8>> = block_on(async {
        let out = ec2.describe_instances().instance_ids(&web).send().await.unwrap();
        out.reservations()[0].instances()[0]
            .block_device_mappings()
            .iter()
            .map(|m| {
                let volume = m.ebs().unwrap().volume_id().unwrap();
                let index = volumes.iter().position(|v| v == volume).unwrap();
                (m.device_name().unwrap().to_string(), block(index as u8))
            })
            .collect()
    });
    let staged_left = |restore_id: &str| -> usize {
        block_on(async {
            let filter = aws_sdk_ec2::types::Filter::builder().name("tag:coffer:restore").values(restore_id).build();
            ec2.describe_snapshots().owner_ids("self").filters(filter).send().await.unwrap().snapshots().len()
        })
    };

    // A new instance, every device holding what the original's did; no staged snapshot or image stays.
    let restored = coffer(&["restore", "--point", &id, "--to-instance", "--json"]);
    let made = restored["made"].as_array().unwrap();
    assert_eq!(made.len(), 1, "only the instance is kept: {restored:#}");
    assert_eq!(made[0]["kind"], "instance");
    let rebuilt = made[0]["id"].as_str().unwrap().to_string();
    block_on(async {
        let out = ec2.describe_instances().instance_ids(&rebuilt).send().await.unwrap();
        let instance = &out.reservations()[0].instances()[0];
        assert_eq!(instance.instance_type().unwrap().as_str(), "t3.micro");
        let mut devices = BTreeMap::new();
        for m in instance.block_device_mappings() {
            let volume = m.ebs().unwrap().volume_id().unwrap();
            assert!(!volumes.iter().any(|v| v == volume), "a new volume");
            devices.insert(m.device_name().unwrap().to_string(), read_volume_block(moto.port(), volume, 2).unwrap());
        }
        assert_eq!(devices, original);
        assert!(ec2.describe_images().owners("self").send().await.unwrap().images().is_empty());
    });
    assert_eq!(staged_left(restored["restore_id"].as_str().unwrap()), 0, "the staged snapshots are deleted");

    // One device's volume.
    let restored = coffer(&["restore", "--point", &id, "--to-volume", "--volume", "/dev/sdf", "--json"]);
    let made = restored["made"].as_array().unwrap();
    assert_eq!((made.len(), &made[0]["kind"], &made[0]["device"]), (1, &"volume".into(), &"/dev/sdf".into()));
    let volume = made[0]["id"].as_str().unwrap();
    assert_eq!(read_volume_block(moto.port(), volume, 2).unwrap(), original["/dev/sdf"]);
    assert_eq!(staged_left(restored["restore_id"].as_str().unwrap()), 0);

    // One device into a local file, by the point's id.
    let file = dir.path().join("sdf.img");
    let file_arg = file.to_str().unwrap();
    let restored = coffer(&["restore", "--point", &id, "--to-file", file_arg, "--volume", "/dev/sdf", "--json"]);
    assert_eq!(restored["restored_to"], file_arg, "{restored:#}");
    let mut block_2 = vec![0u8; 512 * 1024];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(&file).unwrap(), &mut block_2, 2 * 512 * 1024)
        .unwrap();
    assert_eq!(block_2, original["/dev/sdf"]);
    let out = crate::support::estate::coffer_command(&moto.endpoint)
        .args(["restore", "--point", &id, "--to-file", dir.path().join("any.img").to_str().unwrap()])
        .env("COFFER_REPOSITORY_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let refused = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(refused.contains("--to-file restores one volume: name it with --volume"), "{refused}");
    assert!(!dir.path().join("any.img").exists(), "nothing written");

    // Snapshots: the result, kept.
    let restored = coffer(&["restore", "--point", &id, "--to-snapshot", "--json"]);
    let made = restored["made"].as_array().unwrap();
    assert_eq!(made.len(), 2, "{restored:#}");
    assert!(made.iter().all(|m| m["kind"] == "snapshot"));
    assert_eq!(staged_left(restored["restore_id"].as_str().unwrap()), 2);
}
