//! `coffer restore --point ID`: a point `coffer points` lists into volumes,
//! an instance, a DB instance or a DB cluster; with `--repository`, an
//! image-level point into a file or an EBS snapshot (cli/repo.rs).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{ArgGroup, Args};

use super::{Global, Tuning, connect, parse_duration};
use coffer_executor::restore::{DbOverrides, InstanceOverrides, RestoreProgress, Target, VolumeOverrides};
use coffer_model::point_id::PointId;
use coffer_model::validation;

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("target").required(true).args([
    "to_file", "to_snapshot", "to_volume", "to_instance", "to_original", "to_db_instance", "to_db_cluster",
])))]
pub struct RestoreArgs {
    /// The restore point: an id `coffer points` shows (snapshots and
    /// replicas); with --repository, an image-level point's id from
    /// `coffer repo points`.
    #[arg(long)]
    pub point: String,
    /// Image-level points: their repository, by id or as s3://bucket/prefix.
    #[arg(long)]
    pub repository: Option<String>,
    /// The bucket's region, for a repository given by location (default: the home region).
    #[arg(long, requires = "repository")]
    pub repository_region: Option<String>,

    /// One volume of an image-level point into a new local file (never
    /// overwrites): a `coffer points` id with --volume (unless it holds one
    /// volume), or with --repository that volume's own point id.
    #[arg(long)]
    pub to_file: Option<PathBuf>,
    /// Image-level points: one new EBS snapshot per volume (or --volume's);
    /// with --repository, of that volume's point in --snapshot-region.
    #[arg(long)]
    pub to_snapshot: bool,
    /// EC2 points: one new volume per snapshot of the point (or --volume's).
    #[arg(long)]
    pub to_volume: bool,
    /// EC2 points: a new instance rebuilt from the configuration the point's
    /// run recorded, every volume on its device; the original is not touched.
    #[arg(long)]
    pub to_instance: bool,
    /// EC2 points: the original instance's volumes (or --volume's) replaced
    /// by restored ones: stopped, swapped, started again if it was running.
    /// The replaced volumes are kept, tagged. Needs --yes.
    #[arg(long)]
    pub to_original: bool,
    /// --to-original: go ahead (without it, says what would be replaced and stops).
    #[arg(long)]
    pub yes: bool,
    /// DB instance points: a new DB instance with this identifier.
    #[arg(long, value_name = "NEW_ID")]
    pub to_db_instance: Option<String>,
    /// DB cluster points: a new DB cluster with this identifier (and its
    /// members, NEW_ID-1…, for Aurora).
    #[arg(long, value_name = "NEW_ID")]
    pub to_db_cluster: Option<String>,

    /// --to-volume: the zone of the new volumes (default: the original's, when
    /// the point is in its region).
    #[arg(long)]
    pub availability_zone: Option<String>,
    /// --to-volume, --to-original and --to-snapshot: only this volume (its original id or device name).
    #[arg(long)]
    pub volume: Option<String>,
    /// --to-volume: volume type (default: the original's), e.g. gp3, io2.
    #[arg(long)]
    pub volume_type: Option<String>,
    /// --to-volume: size in GiB (default: the original's; not smaller than the snapshot).
    #[arg(long)]
    pub size: Option<i32>,
    /// --to-volume: provisioned IOPS (gp3, io1, io2).
    #[arg(long)]
    pub iops: Option<i32>,
    /// --to-volume: throughput in MiB/s (gp3).
    #[arg(long)]
    pub throughput: Option<i32>,
    /// --to-volume and --to-snapshot: encrypt with this KMS key.
    #[arg(long)]
    pub kms_key_arn: Option<String>,

    /// --to-instance: subnet (default: the original's; needed in another region
    /// unless its default VPC will do).
    #[arg(long)]
    pub subnet_id: Option<String>,
    /// --to-instance: security groups, comma-separated (default: the original's).
    #[arg(long, value_delimiter = ',')]
    pub security_group_ids: Vec<String>,
    /// --to-instance: instance type (default: the original's).
    #[arg(long)]
    pub instance_type: Option<String>,
    /// --to-instance: key pair (default: the original's).
    #[arg(long)]
    pub key_name: Option<String>,
    /// --to-instance: the Name tag (default: the original's).
    #[arg(long)]
    pub name: Option<String>,
    /// --to-instance: leave the instance running (default: stopped once it has started).
    #[arg(long)]
    pub start: bool,

    /// --to-db-instance and --to-db-cluster: DB instance class (members' for Aurora).
    #[arg(long)]
    pub db_instance_class: Option<String>,
    /// --to-db-instance and --to-db-cluster: DB subnet group (default: the original's).
    #[arg(long)]
    pub db_subnet_group: Option<String>,
    /// --to-db-instance and --to-db-cluster: VPC security groups, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub vpc_security_group_ids: Vec<String>,

    /// --to-snapshot: region of the new snapshot (default: the point's source region, else home).
    #[arg(long)]
    pub snapshot_region: Option<String>,
    /// --to-snapshot: also create a volume from the new snapshot in this zone.
    #[arg(long, requires = "to_snapshot")]
    pub volume_availability_zone: Option<String>,
    /// Archive repositories: how long to wait for S3 to restore the packs.
    #[arg(long, default_value = "12h", value_parser = parse_duration)]
    pub thaw_timeout: Duration,
    /// Longest wait for one volume, instance or database to be ready.
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    pub wait_timeout: Duration,
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

impl RestoreArgs {
    /// The flags only one kind of point takes, given.
    fn flags_given(&self, names: &[(&'static str, bool)]) -> Vec<&'static str> {
        names.iter().filter(|(_, given)| *given).map(|(name, _)| *name).collect()
    }

    /// The override flags given: (volume, instance, DB) ones.
    fn override_flags(&self) -> (Vec<&'static str>, Vec<&'static str>, Vec<&'static str>) {
        let volume_flags = self.flags_given(&[
            ("--availability-zone", self.availability_zone.is_some()),
            ("--volume", self.volume.is_some()),
            ("--volume-type", self.volume_type.is_some()),
            ("--size", self.size.is_some()),
            ("--iops", self.iops.is_some()),
            ("--throughput", self.throughput.is_some()),
            ("--kms-key-arn", self.kms_key_arn.is_some()),
        ]);
        let instance_flags = self.flags_given(&[
            ("--subnet-id", self.subnet_id.is_some()),
            ("--security-group-ids", !self.security_group_ids.is_empty()),
            ("--instance-type", self.instance_type.is_some()),
            ("--key-name", self.key_name.is_some()),
            ("--name", self.name.is_some()),
            ("--start", self.start),
        ]);
        let db_flags = self.flags_given(&[
            ("--db-instance-class", self.db_instance_class.is_some()),
            ("--db-subnet-group", self.db_subnet_group.is_some()),
            ("--vpc-security-group-ids", !self.vpc_security_group_ids.is_empty()),
        ]);
        (volume_flags, instance_flags, db_flags)
    }

    /// What to restore a snapshot or replica point into, checked.
    fn target(&self) -> Result<Target> {
        if self.volume_availability_zone.is_some() {
            bail!(
                "--volume-availability-zone applies with --repository; for a --point from `coffer points`, use --to-volume [--availability-zone AZ]"
            );
        }
        if self.snapshot_region.is_some() {
            bail!(
                "--snapshot-region applies with --repository; a --point from `coffer points` restores in the point's region"
            );
        }
        let (volume_flags, instance_flags, db_flags) = self.override_flags();
        let only_volume = vec!["--volume"];
        if self.yes && !self.to_original {
            bail!("--yes confirms --to-original; the other targets make new resources and need no confirmation");
        }
        let (target, allowed) = if self.to_volume {
            ("--to-volume", &volume_flags)
        } else if self.to_snapshot {
            ("--to-snapshot", &only_volume)
        } else if self.to_instance {
            ("--to-instance", &instance_flags)
        } else if self.to_original {
            ("--to-original", &only_volume)
        } else if self.to_db_instance.is_some() {
            ("--to-db-instance", &db_flags)
        } else {
            ("--to-db-cluster", &db_flags)
        };
        for flag in volume_flags.iter().chain(&instance_flags).chain(&db_flags) {
            if !allowed.contains(flag) {
                bail!("{flag} does not apply to {target}; see `coffer restore --help` for what each target takes");
            }
        }
        let check = |flag: &str, value: Option<&String>, rule: fn(&str) -> Result<(), String>| -> Result<()> {
            match value.map(|v| rule(v)) {
                Some(Err(problem)) => bail!("{flag}: {problem}"),
                _ => Ok(()),
            }
        };
        check("--subnet-id", self.subnet_id.as_ref(), validation::subnet_id)?;
        check("--instance-type", self.instance_type.as_ref(), validation::instance_type)?;
        check("--kms-key-arn", self.kms_key_arn.as_ref(), validation::kms_key_arn)?;
        for group in self.security_group_ids.iter().chain(&self.vpc_security_group_ids) {
            validation::security_group_id(group)
                .map_err(|problem| anyhow::anyhow!("security group {group}: {problem}"))?;
        }
        if let Some(zone) = &self.availability_zone {
            // A zone is its region and a letter (us-east-1a) or a Local/Wavelength zone name.
            if validation::region(zone.trim_end_matches(|c: char| c.is_ascii_lowercase())).is_err() {
                bail!("--availability-zone {zone:?}: expected an availability zone, such as us-east-1a");
            }
        }
        for (flag, value) in [("--size", self.size), ("--iops", self.iops), ("--throughput", self.throughput)] {
            if value.is_some_and(|v| v <= 0) {
                bail!("{flag}: expected a positive number");
            }
        }
        let db = || DbOverrides {
            instance_class: self.db_instance_class.clone(),
            db_subnet_group: self.db_subnet_group.clone(),
            vpc_security_group_ids: self.vpc_security_group_ids.clone(),
        };
        Ok(if self.to_snapshot {
            Target::Snapshots { volume: self.volume.clone() }
        } else if self.to_volume {
            Target::Volumes {
                availability_zone: self.availability_zone.clone(),
                volume: self.volume.clone(),
                overrides: VolumeOverrides {
                    volume_type: self.volume_type.clone(),
                    size_gib: self.size,
                    iops: self.iops,
                    throughput: self.throughput,
                    kms_key_id: self.kms_key_arn.clone(),
                },
            }
        } else if self.to_original {
            Target::Original { volume: self.volume.clone(), confirmed: self.yes }
        } else if self.to_instance {
            Target::Instance(InstanceOverrides {
                subnet_id: self.subnet_id.clone(),
                security_group_ids: self.security_group_ids.clone(),
                instance_type: self.instance_type.clone(),
                key_name: self.key_name.clone(),
                name: self.name.clone(),
                start: self.start,
            })
        } else if let Some(identifier) = &self.to_db_instance {
            Target::DbInstance { identifier: identifier.clone(), overrides: db() }
        } else {
            Target::DbCluster { identifier: self.to_db_cluster.clone().unwrap_or_default(), overrides: db() }
        })
    }
}

/// Steps on stderr, on a terminal only (stdout is the result).
struct Steps {
    shown: bool,
}

impl RestoreProgress for Steps {
    fn step(&self, what: &str) {
        if self.shown {
            eprintln!("coffer: {what}");
        }
    }
}

pub async fn restore(global: &Global, args: &RestoreArgs) -> Result<ExitCode> {
    if args.repository.is_some() {
        return super::repo::restore(global, args).await;
    }
    let id: PointId = args.point.parse().map_err(|problem| anyhow::anyhow!("--point: {problem}"))?;
    if args.to_file.is_some() {
        return to_file(global, args, &id).await;
    }
    let target = args.target()?;
    let executor = connect(global, &Tuning { concurrency: args.concurrency, wait_timeout: args.wait_timeout }).await?;
    let found = executor.find_point(&id).await?;
    use std::io::IsTerminal;
    let steps = Steps { shown: !global.json && std::io::stderr().is_terminal() };
    let restored = executor.restore_point(&found, &target, &steps).await?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&restored)?);
    } else {
        println!("restored {} in {} (restore {}):", restored.point, restored.region, restored.restore_id);
        for made in &restored.made {
            println!("  {made}");
        }
        for note in &restored.notes {
            println!("  note: {note}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--to-file` with a `coffer points` id: the chosen volume's own point in
/// its repository, restored as `--repository R --point VOLUME_POINT` does.
async fn to_file(global: &Global, args: &RestoreArgs, id: &PointId) -> Result<ExitCode> {
    if !id.kind.image_level() {
        bail!(
            "--to-file restores image-level points (backup or archive ids in `coffer points`); {id} is a snapshot or replica: restore it with --to-volume"
        );
    }
    let (volume_flags, instance_flags, db_flags) = args.override_flags();
    let elsewhere = args.flags_given(&[
        ("--yes", args.yes),
        ("--snapshot-region", args.snapshot_region.is_some()),
        ("--volume-availability-zone", args.volume_availability_zone.is_some()),
    ]);
    let others: Vec<&str> = volume_flags
        .into_iter()
        .filter(|f| *f != "--volume")
        .chain(instance_flags)
        .chain(db_flags)
        .chain(elsewhere)
        .collect();
    if let Some(flag) = others.first() {
        bail!("{flag} does not apply to --to-file (it takes --volume, --thaw-timeout and --concurrency)");
    }
    let executor = connect(global, &Tuning { concurrency: args.concurrency, wait_timeout: args.wait_timeout }).await?;
    let found = executor.find_point(id).await?;
    let Some((repository_id, volume_point)) = found.volume_point(args.volume.as_deref())? else {
        bail!("restore point {id} is not image-level");
    };
    let mut args = args.clone();
    args.repository = Some(repository_id);
    args.point = volume_point;
    super::repo::restore(global, &args).await
}
