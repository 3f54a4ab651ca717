//! `coffer restore --point ID` of snapshots and replicas, through the real
//! `coffer` binary against moto: the run records what a restore needs, every
//! point `coffer points` lists has an id and its targets, an instance is
//! rebuilt with its type, network, key, profile, tags and devices, volumes
//! come back with their data, DB instances and clusters with their settings,
//! and a restore that fails half-way leaves nothing behind.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, IamInstanceProfileSpecification, InstanceType, ResourceType, Tag,
    TagSpecification, VolumeType,
};
use serde_json::Value;

use super::{count, policy, put_mapping, put_policy, rule};
use crate::support::estate::{self, coffer_command, executor, read_volume_block, tags, write_volume_block};
use crate::support::{Moto, block_on};

fn coffer(moto: &Moto, args: &[&str]) -> (i32, String, String) {
    let out = coffer_command(&moto.endpoint).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn coffer_json(moto: &Moto, args: &[&str]) -> Value {
    let (code, stdout, stderr) = coffer(moto, args);
    assert_eq!(code, 0, "coffer {args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("coffer {args:?} printed no JSON ({e}): {stdout}"))
}

/// A refused or failed restore: exit status 1 and its message, one line.
fn coffer_fails(moto: &Moto, args: &[&str]) -> String {
    let (code, stdout, stderr) = coffer(moto, args);
    assert_eq!(code, 1, "coffer {args:?} should fail: {stdout}{stderr}");
    stderr.split_whitespace().collect::<Vec<_>>().join(" ")
}

struct Network {
    subnet: String,
    zone: String,
    groups: Vec<String>,
}

async fn network(ec2: &aws_sdk_ec2::Client, cidr: &str, zone: &str) -> Network {
    let vpc = ec2.create_vpc().cidr_block(cidr).send().await.unwrap().vpc().unwrap().vpc_id().unwrap().to_string();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block(cidr.replace(".0.0/16", ".1.0/24"))
        .availability_zone(zone)
        .send()
        .await
        .unwrap()
        .subnet()
        .unwrap()
        .subnet_id()
        .unwrap()
        .to_string();
    let mut groups = Vec::new();
    for name in ["web", "ssh"] {
        let out = ec2.create_security_group().vpc_id(&vpc).group_name(name).description(name).send().await.unwrap();
        groups.push(out.group_id().unwrap().to_string());
    }
    Network { subnet, zone: zone.to_string(), groups }
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter().map(|t| (t.key().unwrap().to_string(), t.value().unwrap_or_default().to_string())).collect()
}

/// One EBS volume of a launch, on `name`.
fn device(name: &str, size: i32, kind: VolumeType, delete_on_termination: bool) -> BlockDeviceMapping {
    BlockDeviceMapping::builder()
        .device_name(name)
        .ebs(
            EbsBlockDevice::builder()
                .volume_size(size)
                .volume_type(kind)
                .delete_on_termination(delete_on_termination)
                .build(),
        )
        .build()
}

async fn describe_instance(ec2: &aws_sdk_ec2::Client, id: &str) -> aws_sdk_ec2::types::Instance {
    let out = ec2.describe_instances().instance_ids(id).send().await.unwrap();
    out.reservations()[0].instances()[0].clone()
}

/// Device name → (volume id, type, size GiB) of an instance.
async fn devices(ec2: &aws_sdk_ec2::Client, id: &str) -> BTreeMap<String, (String, String, i32)> {
    let instance = describe_instance(ec2, id).await;
    let mut devices = BTreeMap::new();
    for mapping in instance.block_device_mappings() {
        let volume_id = mapping.ebs().unwrap().volume_id().unwrap().to_string();
        let out = ec2.describe_volumes().volume_ids(&volume_id).send().await.unwrap();
        let volume = &out.volumes()[0];
        devices.insert(
            mapping.device_name().unwrap().to_string(),
            (volume_id, volume.volume_type().unwrap().as_str().to_string(), volume.size().unwrap()),
        );
    }
    devices
}

/// Images this account registered (a restore's launch image must not outlive it).
async fn own_images(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let out = ec2.describe_images().owners("self").send().await.unwrap();
    out.images().iter().filter_map(|i| i.image_id().map(str::to_string)).collect()
}

async fn instance_ids(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let out = ec2.describe_instances().send().await.unwrap();
    out.reservations().iter().flat_map(|r| r.instances()).filter_map(|i| i.instance_id().map(str::to_string)).collect()
}

#[test]
fn an_instance_backed_up_by_snapshot_and_replica_restores_to_volumes_and_rebuilt_instances() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let (east, west) = block_on(async {
        (
            aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await),
            aws_sdk_ec2::Client::new(&moto.sdk_config("us-west-2").await),
        )
    });
    let (home, away, profile_arn, original) = block_on(async {
        let iam = aws_sdk_iam::Client::new(&moto.sdk_config("us-east-1").await);
        let profile = iam.create_instance_profile().instance_profile_name("web-profile").send().await.unwrap();
        let profile_arn = profile.instance_profile().unwrap().arn().to_string();
        east.create_key_pair().key_name("web-key").send().await.unwrap();
        let home = network(&east, "10.1.0.0/16", "us-east-1b").await;
        let away = network(&west, "10.2.0.0/16", "us-west-2a").await;
        let out = east
            .run_instances()
            .image_id("ami-0c0ffee0c0ffee000")
            .instance_type(InstanceType::M5Large)
            .min_count(1)
            .max_count(1)
            .subnet_id(&home.subnet)
            .set_security_group_ids(Some(home.groups.clone()))
            .key_name("web-key")
            .iam_instance_profile(IamInstanceProfileSpecification::builder().arn(&profile_arn).build())
            .block_device_mappings(device("/dev/sda1", 8, VolumeType::Gp3, true))
            .block_device_mappings(device("/dev/sdf", 12, VolumeType::Gp2, false))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(
                        tags(&[("Backup", "daily"), ("Name", "web-1"), ("team", "platform")])
                            .iter()
                            .map(|(k, v)| Tag::builder().key(k).value(v).build())
                            .collect(),
                    ))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let original = out.instances()[0].instance_id().unwrap().to_string();
        let executor = executor(&moto, dir.path(), 4).await;
        put_mapping(&executor, "west", "us-east-1", "us-west-2", None, "all").await;
        let rules = vec![rule("daily", "0 2 * * *", Some(count(7)), Some((&["west"], count(7))))];
        put_policy(&executor, &policy("web", "ec2", &["us-east-1"], &[("Backup", "daily")], rules)).await;
        (home, away, profile_arn, original)
    });
    let original_devices = block_on(devices(&east, &original));
    let data_volume = original_devices["/dev/sdf"].0.clone();
    write_volume_block(moto.port(), &data_volume, 3, b"the data volume's block 3");

    // The run records the instance as a restore needs it.
    let session = coffer_json(&moto, &["run", "--policy", "web", "--json"]);
    assert_eq!(session["outcome"], "Success", "{session:#}");
    let recorded = &session["resources"][0]["configuration"];
    assert_eq!(recorded["type"], "ec2-instance");
    assert_eq!(recorded["instance_type"], "m5.large");
    assert_eq!(recorded["subnet_id"], home.subnet.as_str());
    assert_eq!(recorded["availability_zone"], "us-east-1b");
    assert_eq!(recorded["key_name"], "web-key");
    assert_eq!(recorded["instance_profile_arn"], profile_arn.as_str());
    assert_eq!(recorded["tags"]["team"], "platform");
    let recorded_volumes: BTreeMap<String, (Value, Value, Value)> = recorded["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["device_name"].as_str().unwrap().to_string(),
                (v["volume_type"].clone(), v["size_gib"].clone(), v["root"].clone()),
            )
        })
        .collect();
    assert_eq!(
        recorded_volumes,
        BTreeMap::from([
            ("/dev/sda1".to_string(), ("gp3".into(), 8.into(), true.into())),
            ("/dev/sdf".to_string(), ("gp2".into(), 12.into(), false.into())),
        ])
    );

    // Every point has an id and says what it restores to.
    let points = coffer_json(&moto, &["points", "--policy", "web", "--json"]);
    let point = |kind: &str, targets: Value| -> String {
        let found =
            points.as_array().unwrap().iter().find(|p| p["kind"] == kind).unwrap_or_else(|| panic!("{points:#}"));
        assert_eq!(found["restore_targets"], targets, "{kind}");
        found["id"].as_str().unwrap().to_string()
    };
    // A replica in another region cannot swap the original's volumes.
    let snapshot = point("snapshot", serde_json::json!(["volume", "instance", "original"]));
    let replica = point("replica", serde_json::json!(["volume", "instance"]));
    assert_eq!(snapshot, format!("web/snapshot/us-east-1/{original}/{}", session["run_id"].as_str().unwrap()));
    assert!(replica.starts_with("web/replica/west/"), "{replica}");
    let (_, table, _) = coffer(&moto, &["points", "--policy", "web"]);
    assert!(table.contains(&snapshot) && table.contains("volume, instance, original"), "{table}");

    // A new instance from the snapshot, stopped, rebuilt as recorded; the original is untouched.
    let restored =
        coffer_json(&moto, &["restore", "--point", &snapshot, "--to-instance", "--name", "web-restored", "--json"]);
    assert_eq!(restored["point"], snapshot.as_str());
    let made = restored["made"].as_array().unwrap();
    assert_eq!(made.len(), 1, "{restored:#}");
    assert_eq!(made[0]["kind"], "instance");
    let rebuilt_id = made[0]["id"].as_str().unwrap().to_string();
    block_on(async {
        let rebuilt = describe_instance(&east, &rebuilt_id).await;
        assert_eq!(rebuilt.instance_type().unwrap().as_str(), "m5.large");
        assert_eq!(rebuilt.subnet_id(), Some(home.subnet.as_str()));
        assert_eq!(rebuilt.placement().unwrap().availability_zone(), Some(home.zone.as_str()));
        let mut groups: Vec<String> =
            rebuilt.security_groups().iter().map(|g| g.group_id().unwrap().to_string()).collect();
        groups.sort();
        let mut expected = home.groups.clone();
        expected.sort();
        assert_eq!(groups, expected);
        assert_eq!(rebuilt.key_name(), Some("web-key"));
        assert_eq!(rebuilt.iam_instance_profile().and_then(|p| p.arn()), Some(profile_arn.as_str()));
        assert_eq!(rebuilt.state().unwrap().name().unwrap().as_str(), "stopped", "stopped without --start");
        let tags = tag_map(rebuilt.tags());
        assert_eq!(tags.get("Name").map(String::as_str), Some("web-restored"));
        assert_eq!(tags.get("team").map(String::as_str), Some("platform"));
        assert_eq!(tags.get("coffer:restored-from"), Some(&snapshot));
        let rebuilt_devices = devices(&east, &rebuilt_id).await;
        let shape = |d: &BTreeMap<String, (String, String, i32)>| -> Vec<(String, String, i32)> {
            d.iter().map(|(name, (_, kind, size))| (name.clone(), kind.clone(), *size)).collect()
        };
        assert_eq!(shape(&rebuilt_devices), shape(&original_devices));
        let rebuilt_data = &rebuilt_devices["/dev/sdf"].0;
        assert_ne!(rebuilt_data, &data_volume, "a new volume, not the original's");
        let block = read_volume_block(moto.port(), rebuilt_data, 3).expect("block 3 restored");
        assert!(block.starts_with(b"the data volume's block 3"));
        assert_eq!(devices(&east, &original).await, original_devices, "the original keeps its volumes");
        assert_eq!(describe_instance(&east, &original).await.state().unwrap().name().unwrap().as_str(), "running");
        assert!(own_images(&east).await.is_empty(), "the launch image is deregistered");
    });

    // The replica restores where it lives: per-region settings are named again or left out, said.
    let restored = coffer_json(
        &moto,
        &["restore", "--point", &replica, "--to-instance", "--subnet-id", &away.subnet, "--start", "--json"],
    );
    assert_eq!(restored["region"], "us-west-2");
    let notes = restored["notes"].to_string();
    assert!(notes.contains("security groups") && notes.contains("--security-group-ids"), "{notes}");
    assert!(notes.contains("key pair web-key") && notes.contains("--key-name"), "{notes}");
    let away_id = restored["made"][0]["id"].as_str().unwrap().to_string();
    block_on(async {
        let rebuilt = describe_instance(&west, &away_id).await;
        assert_eq!(rebuilt.subnet_id(), Some(away.subnet.as_str()));
        assert_eq!(rebuilt.instance_type().unwrap().as_str(), "m5.large");
        assert_eq!(rebuilt.state().unwrap().name().unwrap().as_str(), "running", "--start");
        assert_eq!(rebuilt.key_name(), None);
        assert_eq!(
            rebuilt.iam_instance_profile().and_then(|p| p.arn()),
            Some(profile_arn.as_str()),
            "IAM is global: the same account's profile applies in every region"
        );
        let devices = devices(&west, &away_id).await;
        assert_eq!(devices.keys().collect::<Vec<_>>(), ["/dev/sda1", "/dev/sdf"]);
        let block = read_volume_block(moto.port(), &devices["/dev/sdf"].0, 3).expect("block 3 restored");
        assert!(block.starts_with(b"the data volume's block 3"));
        assert!(own_images(&west).await.is_empty());
    });

    // One volume, in the original's zone with its type and size, holding its data.
    let restored =
        coffer_json(&moto, &["restore", "--point", &snapshot, "--to-volume", "--volume", "/dev/sdf", "--json"]);
    let made = restored["made"].as_array().unwrap();
    assert_eq!(made.len(), 1, "{restored:#}");
    assert_eq!(made[0]["device"], "/dev/sdf");
    let volume_id = made[0]["id"].as_str().unwrap().to_string();
    block_on(async {
        let out = east.describe_volumes().volume_ids(&volume_id).send().await.unwrap();
        let volume = &out.volumes()[0];
        assert_eq!(volume.availability_zone(), Some("us-east-1b"));
        assert_eq!(volume.volume_type().unwrap().as_str(), "gp2");
        assert_eq!(volume.size(), Some(12));
        assert_eq!(tag_map(volume.tags()).get("coffer:device").map(String::as_str), Some("/dev/sdf"));
    });
    assert!(read_volume_block(moto.port(), &volume_id, 3).unwrap().starts_with(b"the data volume's block 3"));
    // Every volume, with the settings overridden.
    let restored = coffer_json(
        &moto,
        &[
            "restore",
            "--point",
            &snapshot,
            "--to-volume",
            "--availability-zone",
            "us-east-1c",
            "--volume-type",
            "gp3",
            "--size",
            "20",
            "--json",
        ],
    );
    let ids: Vec<String> =
        restored["made"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 2);
    block_on(async {
        let out = east.describe_volumes().set_volume_ids(Some(ids.clone())).send().await.unwrap();
        for volume in out.volumes() {
            assert_eq!((volume.availability_zone(), volume.size()), (Some("us-east-1c"), Some(20)));
            assert_eq!(volume.volume_type().unwrap().as_str(), "gp3");
        }
    });

    // Refused before anything is made, naming the flag.
    let before = block_on(instance_ids(&east));
    let refused = coffer_fails(&moto, &["restore", "--point", &snapshot, "--to-volume", "--subnet-id", &home.subnet]);
    assert!(refused.contains("--subnet-id does not apply to --to-volume"), "{refused}");
    let refused = coffer_fails(&moto, &["restore", "--point", &snapshot, "--to-db-instance", "new-db"]);
    assert!(refused.contains("it restores with --to-volume, --to-instance or --to-original"), "{refused}");
    let refused = coffer_fails(&moto, &["restore", "--point", "web/image/us-east-1/x/y", "--to-volume"]);
    assert!(refused.contains("--point: \"web/image/us-east-1/x/y\" is not a restore point id"), "{refused}");
    let refused = coffer_fails(&moto, &["restore", "--point", &replica, "--to-original", "--yes"]);
    assert!(refused.contains("is a replica in us-west-2; instance"), "{refused}");
    let refused = coffer_fails(&moto, &["restore", "--point", &snapshot, "--to-snapshot"]);
    assert!(refused.contains("--to-snapshot restores image-level points"), "{refused}");
    let refused = coffer_fails(&moto, &["restore", "--point", &snapshot, "--to-file", "/tmp/nope.img"]);
    assert!(refused.contains("--to-file restores image-level points"), "{refused}");
    let gone = snapshot.rsplit_once('/').unwrap().0.to_string() + "/20200101-0000";
    let refused = coffer_fails(&moto, &["restore", "--point", &gone, "--to-volume"]);
    assert!(refused.contains("is not there"), "{refused}");
    let refused = coffer_fails(&moto, &["restore", "--point", &snapshot, "--to-instance", "--instance-type", "huge"]);
    assert!(refused.contains("--instance-type"), "{refused}");

    // A launch that fails after the image was registered: the image goes, and the user is told.
    let failed = coffer_fails(
        &moto,
        &["restore", "--point", &snapshot, "--to-instance", "--subnet-id", "subnet-0000000000000dead"],
    );
    assert!(failed.contains("launching the instance"), "{failed}");
    assert!(failed.contains("removed what the restore had made: image ami-"), "{failed}");
    block_on(async {
        assert!(own_images(&east).await.is_empty(), "the failed restore's image is gone");
        assert_eq!(instance_ids(&east).await, before, "no instance was left behind");
    });
}

#[test]
fn db_instance_and_cluster_points_restore_to_new_ones_with_the_recorded_settings() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let rds = block_on(async { aws_sdk_rds::Client::new(&moto.sdk_config("us-east-1").await) });
    block_on(async {
        estate::db_instance(&rds, "orders", &tags(&[("Backup", "daily"), ("team", "billing")])).await;
        estate::db_cluster(&rds, "ledger", &tags(&[("Backup", "daily")])).await;
        let executor = executor(&moto, dir.path(), 4).await;
        let rules = vec![rule("daily", "0 2 * * *", Some(count(7)), None)];
        put_policy(&executor, &policy("dbs", "rds", &["us-east-1"], &[("Backup", "daily")], rules)).await;
    });
    let session = coffer_json(&moto, &["run", "--policy", "dbs", "--json"]);
    assert_eq!(session["outcome"], "Success", "{session:#}");
    let record = |id: &str| -> Value {
        session["resources"].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap()["configuration"].clone()
    };
    let orders = record("orders");
    assert_eq!((orders["type"].as_str(), orders["engine"].as_str()), (Some("rds-instance"), Some("postgres")));
    assert_eq!(orders["instance_class"], "db.t3.micro");
    assert_eq!(orders["allocated_storage_gib"], 20);
    let ledger = record("ledger");
    assert_eq!(ledger["type"], "rds-cluster");
    assert_eq!(ledger["member_instance_classes"], serde_json::json!(["db.r6g.large"]));

    let points = coffer_json(&moto, &["points", "--policy", "dbs", "--json"]);
    let point = |resource: &str, targets: Value| -> String {
        let found = points.as_array().unwrap().iter().find(|p| p["resource_id"] == resource).unwrap();
        assert_eq!(found["restore_targets"], targets);
        found["id"].as_str().unwrap().to_string()
    };
    let orders_point = point("orders", serde_json::json!(["db-instance"]));
    let ledger_point = point("ledger", serde_json::json!(["db-cluster"]));

    let refused = coffer_fails(&moto, &["restore", "--point", &orders_point, "--to-db-instance", "Bad--id"]);
    assert!(
        refused.contains("--to-db-instance: \"Bad--id\" is not an RDS DB instance or cluster identifier"),
        "{refused}"
    );
    let refused = coffer_fails(&moto, &["restore", "--point", &orders_point, "--to-db-cluster", "x"]);
    assert!(refused.contains("it restores with --to-db-instance NEW_ID"), "{refused}");

    let restored = coffer_json(
        &moto,
        &[
            "restore",
            "--point",
            &orders_point,
            "--to-db-instance",
            "orders-restored",
            "--db-instance-class",
            "db.t3.small",
            "--json",
        ],
    );
    assert_eq!(restored["made"][0]["kind"], "db-instance");
    block_on(async {
        let out = rds.describe_db_instances().db_instance_identifier("orders-restored").send().await.unwrap();
        let db = &out.db_instances()[0];
        assert_eq!(db.db_instance_class(), Some("db.t3.small"), "the override");
        assert_eq!(db.engine(), Some("postgres"));
        assert_eq!(db.db_instance_status(), Some("available"));
        let tags: BTreeMap<String, String> =
            db.tag_list().iter().map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string())).collect();
        assert_eq!(tags.get("team").map(String::as_str), Some("billing"));
        assert_eq!(tags.get("coffer:restored-from"), Some(&orders_point));
        let original = rds.describe_db_instances().db_instance_identifier("orders").send().await.unwrap();
        assert_eq!(original.db_instances()[0].db_instance_class(), Some("db.t3.micro"), "the original is untouched");
    });

    let restored =
        coffer_json(&moto, &["restore", "--point", &ledger_point, "--to-db-cluster", "ledger-restored", "--json"]);
    let made: Vec<(String, String)> = restored["made"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["kind"].as_str().unwrap().to_string(), m["id"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        made,
        [("db-cluster".to_string(), "ledger-restored".to_string()), ("db-instance".into(), "ledger-restored-1".into())]
    );
    block_on(async {
        let out = rds.describe_db_clusters().db_cluster_identifier("ledger-restored").send().await.unwrap();
        let cluster = &out.db_clusters()[0];
        assert_eq!(cluster.engine(), Some("aurora-postgresql"));
        let member = rds.describe_db_instances().db_instance_identifier("ledger-restored-1").send().await.unwrap();
        let member = &member.db_instances()[0];
        assert_eq!(member.db_cluster_identifier(), Some("ledger-restored"));
        assert_eq!(member.db_instance_class(), Some("db.r6g.large"), "the recorded writer's class");
    });
}

/// Volume ids of the account in `ec2`'s region.
async fn volume_ids(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let out = ec2.describe_volumes().send().await.unwrap();
    let mut ids: Vec<String> = out.volumes().iter().filter_map(|v| v.volume_id().map(str::to_string)).collect();
    ids.sort();
    ids
}

async fn delete_on_termination(ec2: &aws_sdk_ec2::Client, id: &str) -> BTreeMap<String, bool> {
    let instance = describe_instance(ec2, id).await;
    instance
        .block_device_mappings()
        .iter()
        .map(|m| (m.device_name().unwrap().to_string(), m.ebs().unwrap().delete_on_termination().unwrap_or(false)))
        .collect()
}

async fn state_of(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    describe_instance(ec2, id).await.state().unwrap().name().unwrap().as_str().to_string()
}

#[test]
fn to_original_swaps_the_instances_volumes_keeps_the_replaced_ones_and_undoes_a_swap_that_fails() {
    use crate::support::fault_proxy::{Fault, FaultProxy, Rule};

    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let east = block_on(async { aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await) });
    let original = block_on(async {
        let out = east
            .run_instances()
            .image_id("ami-0c0ffee0c0ffee000")
            .instance_type(InstanceType::T3Small)
            .min_count(1)
            .max_count(1)
            .block_device_mappings(device("/dev/sda1", 8, VolumeType::Gp3, true))
            .block_device_mappings(device("/dev/sdf", 12, VolumeType::Gp2, false))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key("Backup").value("daily").build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let executor = executor(&moto, dir.path(), 4).await;
        let rules = vec![rule("daily", "0 2 * * *", Some(count(7)), None)];
        put_policy(&executor, &policy("app", "ec2", &["us-east-1"], &[("Backup", "daily")], rules)).await;
        out.instances()[0].instance_id().unwrap().to_string()
    });
    let before = block_on(devices(&east, &original));
    let (root, data) = (before["/dev/sda1"].0.clone(), before["/dev/sdf"].0.clone());
    write_volume_block(moto.port(), &data, 3, b"good data");
    let session = coffer_json(&moto, &["run", "--policy", "app", "--json"]);
    assert_eq!(session["outcome"], "Success", "{session:#}");
    let point = format!("app/snapshot/us-east-1/{original}/{}", session["run_id"].as_str().unwrap());
    // The data goes bad after the backup.
    write_volume_block(moto.port(), &data, 3, b"bad data!");
    let volumes_before = block_on(volume_ids(&east));

    // Without --yes: what would happen, and nothing done.
    let refused = coffer_fails(&moto, &["restore", "--point", &point, "--to-original"]);
    assert!(refused.contains(&format!("replaces volumes of instance {original} (running")), "{refused}");
    assert!(refused.contains(&format!("/dev/sdf ({data}, now {data})")), "{refused}");
    assert!(refused.contains("Give --yes"), "{refused}");
    assert_eq!(block_on(volume_ids(&east)), volumes_before, "nothing made");
    let refused = coffer_fails(&moto, &["restore", "--point", &point, "--to-volume", "--yes"]);
    assert!(refused.contains("--yes confirms --to-original"), "{refused}");

    // The second attach fails: the first device's swap is undone, both original
    // volumes are back on their devices, the new volumes are gone, and the
    // instance runs again.
    let proxy = FaultProxy::start(&moto);
    let attach = proxy.add(
        Rule::new(Fault::QueryError { status: 400, code: "InvalidParameterValue" })
            .action("AttachVolume")
            .one_in(2)
            .times(1),
    );
    let out = coffer_command(&proxy.endpoint)
        .args(["restore", "--point", &point, "--to-original", "--yes"])
        .output()
        .unwrap();
    let failed = String::from_utf8_lossy(&out.stderr).split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(out.status.code(), Some(1), "{failed}");
    assert_eq!(proxy.injected(attach), 1, "the fault happened");
    assert!(failed.contains("attaching vol-") && failed.contains("InvalidParameterValue"), "{failed}");
    assert!(failed.contains("removed what the restore had made: volume vol-"), "{failed}");
    assert!(failed.contains("put back as it was: "), "{failed}");
    for (volume, device) in [(&root, "/dev/sda1"), (&data, "/dev/sdf")] {
        assert!(failed.contains(&format!("{volume} on {original} ({device})")), "{failed}");
    }
    assert!(failed.contains(&format!("{original} started again")), "{failed}");
    drop(proxy);
    block_on(async {
        assert_eq!(devices(&east, &original).await, before, "the original volumes are back on their devices");
        assert_eq!(volume_ids(&east).await, volumes_before, "no volume left behind");
        assert_eq!(state_of(&east, &original).await, "running");
        assert!(delete_on_termination(&east, &original).await["/dev/sda1"], "the root's setting is back");
    });
    assert!(read_volume_block(moto.port(), &data, 3).unwrap().starts_with(b"bad data!"), "untouched");

    // With --yes: new volumes with the point's data on the same devices, the
    // old ones kept and tagged, the instance running again.
    let restored = coffer_json(&moto, &["restore", "--point", &point, "--to-original", "--yes", "--json"]);
    let made = restored["made"].as_array().unwrap();
    assert_eq!(made.len(), 2, "{restored:#}");
    let after = block_on(devices(&east, &original));
    for m in made {
        assert_eq!(m["kind"], "volume");
        assert_eq!(m["attached_to"], original.as_str());
        let device = m["device"].as_str().unwrap();
        assert_eq!(after[device].0, m["id"].as_str().unwrap(), "{device} holds the new volume");
        assert_eq!(m["replaced"], before[device].0.as_str());
    }
    assert_eq!(
        after.values().map(|(_, kind, size)| (kind.clone(), *size)).collect::<Vec<_>>(),
        [("gp3".to_string(), 8), ("gp2".to_string(), 12)],
        "the recorded types and sizes"
    );
    assert!(read_volume_block(moto.port(), &after["/dev/sdf"].0, 3).unwrap().starts_with(b"good data"));
    let restore_id = restored["restore_id"].as_str().unwrap().to_string();
    assert!(restored["notes"].to_string().contains("the replaced volumes are kept"), "{restored:#}");
    block_on(async {
        assert_eq!(state_of(&east, &original).await, "running", "started again");
        assert_eq!(
            delete_on_termination(&east, &original).await,
            BTreeMap::from([("/dev/sda1".to_string(), true), ("/dev/sdf".to_string(), false)]),
            "as recorded"
        );
        let out = east.describe_volumes().volume_ids(&root).volume_ids(&data).send().await.unwrap();
        for volume in out.volumes() {
            assert_eq!(volume.state().unwrap().as_str(), "available", "kept, detached");
            assert_eq!(tag_map(volume.tags()).get("coffer:replaced-by-restore"), Some(&restore_id));
        }
    });
    assert!(
        read_volume_block(moto.port(), &data, 3).unwrap().starts_with(b"bad data!"),
        "the replaced volume is kept as it was"
    );

    // One device of a stopped instance: only /dev/sdf is replaced, and it stays stopped.
    block_on(async {
        east.stop_instances().instance_ids(&original).send().await.unwrap();
    });
    let current_root = after["/dev/sda1"].0.clone();
    let restored =
        coffer_json(&moto, &["restore", "--point", &point, "--to-original", "--volume", "/dev/sdf", "--yes", "--json"]);
    assert_eq!(restored["made"].as_array().unwrap().len(), 1, "{restored:#}");
    assert_eq!(restored["made"][0]["replaced"], after["/dev/sdf"].0.as_str(), "what was there, not the original");
    block_on(async {
        let now = devices(&east, &original).await;
        assert_eq!(now["/dev/sda1"].0, current_root, "the root is not touched");
        assert_eq!(state_of(&east, &original).await, "stopped", "a stopped instance stays stopped");
    });
}
