//! `coffer repo …`, `coffer backup` and `coffer restore --repository`: working with one
//! repository, named by its id (the catalog says where it is) or by its
//! location `s3://bucket/prefix`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use super::restore::RestoreArgs;
use super::{Global, Tuning, connect, enum_parser, parse_duration};
use coffer_aws::ebs_blocks::{EbsSnapshotSink, EbsSnapshotSource};
use coffer_aws::s3_storage::S3Storage;
use coffer_executor::Executor;
use coffer_repository::blocks::BlockSource;
use coffer_repository::blocks::file::{FileSink, FileSource};
use coffer_repository::check;
use coffer_repository::manifest::{Manifest, Source};
use coffer_repository::prune;
use coffer_repository::storage::Storage;
use coffer_repository::{KeyEnvelope, MasterKey, PointMeta, Repository, RepositoryConfig, StorageClass};

#[derive(Debug, Args)]
pub struct RepositoryArg {
    /// The repository: its id (from Terraform's coffer_repository.id) or
    /// its location s3://bucket/prefix.
    #[arg(long)]
    pub repository: String,
    /// The bucket's region, for a repository given by location (default:
    /// the home region).
    #[arg(long)]
    pub repository_region: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create a repository at s3://bucket/prefix (Terraform's
    /// coffer_repository does this too). Password from COFFER_REPOSITORY_PASSWORD.
    Init(InitArgs),
    /// Authenticate and cross-check everything; exit 1 when damaged.
    Check(CheckArgs),
    /// Delete packs no restore point needs (two-phase: found unused, then
    /// deleted by a prune after the grace period).
    Prune(PruneArgs),
    /// Restore points, packs and sizes.
    Stats(RepositoryArg),
    /// List the restore points.
    Points(RepositoryArg),
    /// Rebuild what damaged index files listed from the packs' own headers,
    /// then delete the damaged files (under the exclusive lock).
    RepairIndex(RepositoryArg),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Wrap the master key with this KMS key instead of a password.
    #[arg(long)]
    pub kms_key_arn: Option<String>,
    #[arg(long, default_value = "STANDARD", value_parser = enum_parser::<StorageClass>())]
    pub storage_class: StorageClass,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// Also download every pack and authenticate every blob.
    #[arg(long)]
    pub read_data: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// How long a pack must stay unused before it is deleted.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub grace: Duration,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub repository: RepositoryArg,
    /// A file or block device to back up.
    #[arg(long, required_unless_present = "snapshot", conflicts_with = "snapshot")]
    pub file: Option<PathBuf>,
    /// An EBS snapshot to back up, read through the EBS direct APIs; the
    /// newest point of the same volume is the parent, and when its snapshot
    /// still exists only the blocks changed since are read.
    #[arg(long)]
    pub snapshot: Option<String>,
    /// The snapshot's region (default: the home region).
    #[arg(long, requires = "snapshot")]
    pub snapshot_region: Option<String>,
    /// What the restore point of a file is of (default: the file's path);
    /// the newest point of the same name is the parent.
    #[arg(long, conflicts_with = "snapshot")]
    pub name: Option<String>,
    /// Blocks read and processed at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

fn password() -> Option<String> {
    coffer_executor::repository_password_from_env()
}

async fn executor(global: &Global) -> Result<Executor> {
    connect(global, &Tuning { concurrency: 16, wait_timeout: Duration::ZERO }).await
}

/// The repository's storage, from an id or a location.
async fn storage(executor: &Executor, arg: &RepositoryArg) -> Result<Arc<dyn Storage>> {
    if let Some(location) = arg.repository.strip_prefix("s3://") {
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        coffer_model::validation::bucket_name(bucket).map_err(|problem| {
            anyhow::anyhow!("--repository {}: name the bucket, as s3://bucket/prefix ({problem})", arg.repository)
        })?;
        let prefix = if prefix.is_empty() || prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") };
        let region = arg.repository_region.as_deref().unwrap_or(&executor.aws.home_region);
        return Ok(Arc::new(S3Storage::new(executor.aws.s3(region), bucket, &prefix)));
    }
    let entry = executor
        .catalog()
        .get::<coffer_model::repository::RepositoryEntry>(&arg.repository)
        .await
        .with_context(|| {
            format!("looking up repository {} in the catalog (or give its location s3://bucket/prefix)", arg.repository)
        })?
        .body;
    Ok(Arc::new(S3Storage::new(executor.aws.s3(&entry.region), &entry.bucket, &entry.prefix)))
}

async fn unlock_key(executor: &Executor, config: &RepositoryConfig) -> Result<MasterKey> {
    Ok(executor.repository_key(config).await?)
}

async fn open(executor: &Executor, arg: &RepositoryArg) -> Result<Repository> {
    let storage = storage(executor, arg).await?;
    let config = Repository::read_config(storage.as_ref()).await?;
    let key = unlock_key(executor, &config).await?;
    Ok(Repository::open_with_key(storage, config, &key).await?)
}

/// Opens under a shared lock, for backups and restores.
async fn open_locked(
    executor: &Executor,
    arg: &RepositoryArg,
    purpose: &str,
) -> Result<(Repository, coffer_repository::lock::Lock)> {
    let storage = storage(executor, arg).await?;
    let config = Repository::read_config(storage.as_ref()).await?;
    let key = unlock_key(executor, &config).await?;
    Ok(Repository::open_locked(storage, config, &key, purpose).await?)
}

fn bar(json: bool, what: &str) -> Option<ProgressBar> {
    use std::io::IsTerminal;
    (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} {what} {{pos}}/{{len}} blocks [{{bar:30}}] {{elapsed}} {{per_sec}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    })
}

fn print<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", text());
    }
    Ok(())
}

pub async fn repo(global: &Global, command: &RepoCommand) -> Result<ExitCode> {
    let executor = executor(global).await?;
    match command {
        RepoCommand::Init(args) => {
            let storage = storage(&executor, &args.repository).await?;
            let mut config = RepositoryConfig {
                format_version: coffer_repository::FORMAT_VERSION,
                id: uuid::Uuid::new_v4().to_string(),
                created_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                storage_class: args.storage_class,
                immutability: None,
                key: KeyEnvelope::Kms { kms_key_arn: String::new(), wrapped_master_key: String::new() },
                worker_key: None,
            };
            let master = MasterKey::random();
            match &args.kms_key_arn {
                Some(arn) => {
                    let kms = executor
                        .aws
                        .kms(coffer_model::validation::arn_region(arn).unwrap_or(&executor.aws.home_region));
                    config.key = coffer_aws::kms_keys::KmsKeys::new(kms).wrap(arn, &config, &master).await?;
                }
                None => {
                    let password = password().context("set COFFER_REPOSITORY_PASSWORD (or pass --kms-key-arn)")?;
                    config.seal_with_password(&master, &password)?;
                }
            }
            let repo = Repository::init(storage.clone(), config, &master)
                .await
                .with_context(|| format!("creating a repository at {}", storage.location()))?;
            print(global.json, &serde_json::json!({ "id": repo.config.id, "location": storage.location() }), || {
                format!("created repository {} at {}", repo.config.id, storage.location())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::Check(args) => {
            let storage = storage(&executor, &args.repository).await?;
            let config = Repository::read_config(storage.as_ref()).await?;
            let key = unlock_key(&executor, &config).await?;
            let report = check::check(storage.clone(), &config, &key, args.read_data).await?;
            print(global.json, &report, || {
                let mut out = format!(
                    "{}: {} restore points, {} index files, {} packs, {} blobs{}",
                    storage.location(),
                    report.restore_points,
                    report.index_files,
                    report.packs,
                    report.blobs,
                    if args.read_data { format!(", {} packs read", report.packs_read) } else { String::new() }
                );
                if report.damage.iter().any(|d| d.object.starts_with("index/")) {
                    out.push_str(
                        "\nnote: `coffer repo repair-index` rebuilds damaged index files from the packs' headers",
                    );
                }
                for note in &report.notes {
                    out.push_str(&format!("\nnote: {note}"));
                }
                for d in &report.damage {
                    out.push_str(&format!("\ndamaged: {}: {}", d.object, d.problem));
                }
                out.push_str(if report.is_healthy() { "\nno damage found" } else { "\nthe repository is damaged" });
                out
            })?;
            Ok(if report.is_healthy() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        RepoCommand::Prune(args) => {
            let mut repo = open(&executor, &args.repository).await?;
            let grace = chrono::TimeDelta::from_std(args.grace).context("--grace is too long")?;
            let report = prune::prune(&mut repo, grace, Utc::now()).await?;
            print(global.json, &report, || {
                format!(
                    "{} pack(s) found unused and marked, {} waiting out the grace period, {} deleted ({} bytes), {} held by Object Lock, {} used again",
                    report.marked,
                    report.waiting,
                    report.deleted,
                    report.bytes_freed,
                    report.held.len(),
                    report.unmarked
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::RepairIndex(arg) => {
            let mut repo = open(&executor, arg).await?;
            let report = coffer_repository::repair::repair_index(&mut repo).await?;
            print(global.json, &report, || {
                format!(
                    "{} pack(s) indexed afresh{}; {} damaged index file(s) removed{}",
                    report.packs_indexed,
                    report.new_index_file.as_ref().map(|k| format!(" in {k}")).unwrap_or_default(),
                    report.removed_index_files.len(),
                    if report.removed_index_files.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", report.removed_index_files.join(", "))
                    }
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::Stats(arg) => {
            let repo = open(&executor, arg).await?;
            let manifests = repo.manifests().await?;
            let stored: u64 = repo.index().packs.iter().map(|p| p.size).sum();
            let logical: u64 = manifests.iter().map(|m| m.stats.blocks * u64::from(m.block_size)).sum();
            let stats = serde_json::json!({
                "id": repo.config.id,
                "storage_class": repo.config.storage_class,
                "restore_points": manifests.len(),
                "packs": repo.index().packs.len(),
                "blobs": repo.index().blob_count(),
                "stored_bytes": stored,
                "logical_bytes": logical,
            });
            print(global.json, &stats, || {
                format!(
                    "repository {} ({}): {} restore points, {} packs, {} blobs, {} bytes stored for {} bytes of data blocks",
                    repo.config.id,
                    repo.config.storage_class,
                    manifests.len(),
                    repo.index().packs.len(),
                    repo.index().blob_count(),
                    stored,
                    logical
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::Points(arg) => {
            let repo = open(&executor, arg).await?;
            let points: Vec<serde_json::Value> = repo.manifests().await?.iter().map(point_summary).collect();
            print(global.json, &points, || {
                let mut out = String::from(
                    "ID                                    TIME                  RESOURCE       VOLUME                 SOURCE                 RULES",
                );
                for p in &points {
                    out.push_str(&format!(
                        "\n{:<37} {:<21} {:<14} {:<22} {:<22} {}",
                        p["id"].as_str().unwrap_or_default(),
                        p["time"].as_str().unwrap_or_default(),
                        p["resource_id"].as_str().unwrap_or_default(),
                        p["volume_id"].as_str().unwrap_or_default(),
                        p["source"].as_str().unwrap_or_default(),
                        p["rules"]
                            .as_array()
                            .map(|r| r.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(","))
                            .unwrap_or_default(),
                    ));
                }
                out
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn point_summary(m: &Manifest) -> serde_json::Value {
    serde_json::json!({
        "id": m.id,
        "time": m.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "policy": m.policy,
        "rules": m.rules,
        "resource_id": m.source.resource_id,
        "volume_id": m.source.volume_id,
        "region": m.source.region,
        "source": m.source.name,
        "volume_size": m.volume_size,
        "parent": m.parent,
        "stats": m.stats,
    })
}

pub async fn backup(global: &Global, args: &BackupArgs) -> Result<ExitCode> {
    let executor = executor(global).await?;
    let (source, what): (Box<dyn BlockSource>, Source) = match (&args.file, &args.snapshot) {
        (Some(file), _) => {
            let name = args.name.clone().unwrap_or_else(|| file.display().to_string());
            (Box::new(FileSource::open(file)?), Source { kind: "file".into(), resource_id: name, ..Source::default() })
        }
        (None, Some(snapshot)) => {
            let region = args.snapshot_region.clone().unwrap_or_else(|| executor.aws.home_region.clone());
            let found = coffer_aws::snapshots::describe_ebs_snapshots(
                &executor.aws.ec2(&region),
                &region,
                std::slice::from_ref(snapshot),
            )
            .await
            .with_context(|| format!("reading snapshot {snapshot} in {region}"))?;
            let Some(volume_id) = found.into_iter().next().map(|s| s.volume_id.unwrap_or_default()) else {
                bail!("snapshot {snapshot} does not exist in {region} (or is not this account's)");
            };
            let source = EbsSnapshotSource::new(executor.aws.ebs(&region), snapshot);
            (Box::new(source), Source { kind: "ebs-snapshot".into(), volume_id, region, ..Source::default() })
        }
        (None, None) => bail!("say what to back up: --file PATH or --snapshot SNAPSHOT_ID"),
    };
    let (mut repo, lock) = open_locked(&executor, &args.repository, "backup").await?;
    let parent = repo
        .manifests()
        .await?
        .into_iter()
        .filter(|m| {
            m.source.kind == what.kind
                && m.source.resource_id == what.resource_id
                && m.source.volume_id == what.volume_id
                && m.source.region == what.region
        })
        .max_by_key(|m| (m.time, m.id.clone()));
    let meta = PointMeta { source: what, ..PointMeta::default() };
    let progress = bar(global.json, "backing up");
    let report = |done: u64, total: u64| {
        if let Some(bar) = &progress {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let started = std::time::Instant::now();
    let result = tokio::select! {
        result = repo.backup(source.as_ref(), parent.as_ref(), meta, args.concurrency, &report) => result.map_err(anyhow::Error::from),
        signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}: no restore point was made (the packs already uploaded go with the next prune)")),
    };
    let released = lock.release().await;
    let manifest = result?;
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    // The point exists: say so whatever became of the lock.
    if let Err(e) = released {
        eprintln!("coffer: warning: the backup's lock could not be removed ({e}); it goes stale by itself");
    }
    let summary = point_summary(&manifest);
    print(global.json, &summary, || {
        format!(
            "restore point {} of {}: {} blocks with data, {} read, {} new blobs ({} bytes written) in {:.1}s",
            manifest.id,
            source.name(),
            manifest.stats.blocks,
            manifest.stats.blocks_read,
            manifest.stats.new_blobs,
            manifest.stats.bytes_written,
            started.elapsed().as_secs_f64()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// An image-level point (`--repository` given) into a file or an EBS snapshot.
pub async fn restore(global: &Global, args: &RestoreArgs) -> Result<ExitCode> {
    if let Some(flag) = [
        ("--to-volume", args.to_volume),
        ("--to-instance", args.to_instance),
        ("--to-db-instance", args.to_db_instance.is_some()),
        ("--to-db-cluster", args.to_db_cluster.is_some()),
    ]
    .iter()
    .find_map(|(flag, given)| given.then_some(flag))
    {
        bail!(
            "{flag} restores a snapshot or replica (`coffer points` ids, without --repository); an image-level point restores with --to-file PATH or --to-snapshot [--volume-availability-zone AZ]"
        );
    }
    let repository = RepositoryArg {
        repository: args.repository.clone().unwrap_or_default(),
        repository_region: args.repository_region.clone(),
    };
    let executor = executor(global).await?;
    let (repo, lock) = open_locked(&executor, &repository, "restore").await?;
    let result = async {
        let manifest = repo.manifest(&args.point).await?;
        repo.thaw(&manifest, Duration::from_secs(60), args.thaw_timeout).await?;
        let progress = bar(global.json, "restoring");
        let report = |done: u64, total: u64| {
            if let Some(bar) = &progress {
                bar.set_length(total);
                bar.set_position(done);
            }
        };
        let made = if let Some(path) = &args.to_file {
            let sink = FileSink::create(path, manifest.volume_size)?;
            until_interrupted(repo.restore(&manifest, &sink, args.concurrency, &report), &sink).await?
        } else if args.to_snapshot {
            let region = args
                .snapshot_region
                .clone()
                .or_else(|| (!manifest.source.region.is_empty()).then(|| manifest.source.region.clone()))
                .unwrap_or_else(|| executor.aws.home_region.clone());
            let encryption = args.kms_key_arn.clone().map(coffer_aws::ebs_blocks::SnapshotEncryption::Key);
            let tags = vec![
                ("coffer:restored-from".to_string(), manifest.id.clone()),
                ("coffer:repository".to_string(), repo.config.id.clone()),
            ];
            let sink = EbsSnapshotSink::start(
                executor.aws.ebs(&region),
                manifest.volume_size,
                &format!("coffer restore of {} ({})", manifest.id, manifest.source.volume_id),
                tags,
                encryption,
                60,
            )
            .await?
            .deleting_on_abort(executor.aws.ec2(&region));
            let snapshot = until_interrupted(repo.restore(&manifest, &sink, args.concurrency, &report), &sink).await?;
            match &args.volume_availability_zone {
                Some(zone) => {
                    let ec2 = executor.aws.ec2(&region);
                    coffer_aws::snapshots::wait_until_complete(
                        || {
                            coffer_aws::snapshots::describe_ebs_snapshots(
                                &ec2,
                                &region,
                                std::slice::from_ref(&snapshot),
                            )
                        },
                        Duration::from_secs(2),
                        Duration::from_secs(3600),
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("waiting for snapshot {snapshot}: {e}"))?;
                    let volume = ec2
                        .create_volume()
                        .snapshot_id(&snapshot)
                        .availability_zone(zone)
                        .send()
                        .await
                        .map_err(|e| coffer_aws::AwsError::from_sdk(e, &[]))
                        .with_context(|| format!("creating a volume from {snapshot} in {zone}"))?;
                    format!("{snapshot} (volume {})", volume.volume_id().unwrap_or_default())
                }
                None => snapshot,
            }
        } else {
            bail!("say where to restore: --to-file PATH or --to-snapshot");
        };
        if let Some(bar) = &progress {
            bar.finish_and_clear();
        }
        Ok::<_, anyhow::Error>((manifest, made))
    }
    .await;
    let released = lock.release().await;
    let (manifest, made) = result?;
    released?;
    print(global.json, &serde_json::json!({ "point": manifest.id, "restored_to": made }), || {
        format!("restored {} to {made}", manifest.id)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM, whichever comes first: its name.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Runs a restore unless a signal comes first; then what it started (a
/// partial file, an unfinished snapshot) is removed before the caller
/// releases the lock.
async fn until_interrupted<F>(restore: F, sink: &dyn coffer_repository::blocks::BlockSink) -> Result<String>
where
    F: std::future::Future<Output = Result<String, coffer_repository::RepoError>>,
{
    tokio::select! {
        result = restore => Ok(result?),
        signal = interrupted() => {
            sink.abort().await;
            bail!("interrupted by {signal}: the unfinished restore was removed")
        }
    }
}
