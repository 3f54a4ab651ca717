//! The `coffer` command line: flags and environment → an [`Executor`], the
//! commands, and how their results are shown (a table and a progress bar on
//! a terminal, or JSON with `--json`).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use coffer_aws::preflight::Verdict;
use coffer_aws::{AssumeRole, AwsClients, AwsSettings};
use coffer_executor::agent::{Agent, SystemClock};
use coffer_executor::inventory::{self, RestorePoint};
use coffer_executor::parts::PartRequest;
use coffer_executor::run::{Progress, Quiet, RunRequest};
use coffer_executor::session::{Outcome, ResourceRecord, Session};
use coffer_executor::{Executor, Settings};
use coffer_model::CatalogLocation;
use coffer_model::agent::RunClaim;
use coffer_model::session::SnapshotKind;
use coffer_model::worker::RunPart;
use coffer_model::worker_binary::WorkerBinary;

mod repo;
mod restore;

/// Coffer: backup-as-code for AWS.
///
/// Policies, region mappings, repositories and worker configurations are
/// declared with Terraform (provider coffer/coffer); this command carries
/// them out. AWS settings come from flags or the standard AWS environment
/// (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, credentials chain); the
/// catalog from --catalog-bucket/--catalog-prefix or COFFER_CATALOG_BUCKET /
/// COFFER_CATALOG_PREFIX, exactly as the provider block sets them.
#[derive(Debug, Parser)]
#[command(name = "coffer", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Home region: where the catalog lives.
    #[arg(long, global = true, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Named profile of the shared AWS configuration.
    #[arg(long, global = true, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// One endpoint URL for every AWS service (a local emulator);
    /// `AWS_ENDPOINT_URL_<SERVICE>` (e.g. `AWS_ENDPOINT_URL_S3`) overrides it
    /// for that service.
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// Path-style S3 addressing (emulators).
    #[arg(long, global = true, env = "COFFER_S3_USE_PATH_STYLE")]
    pub s3_use_path_style: bool,
    /// Role to assume for everything (the provider's assume_role).
    #[arg(long, global = true, env = "COFFER_ASSUME_ROLE_ARN")]
    pub assume_role_arn: Option<String>,
    /// Catalog bucket (default coffer-catalog-<account>-<region>).
    #[arg(long, global = true, env = "COFFER_CATALOG_BUCKET")]
    pub catalog_bucket: Option<String>,
    /// Catalog key prefix.
    #[arg(long, global = true, env = "COFFER_CATALOG_PREFIX")]
    pub catalog_prefix: Option<String>,
    /// Attempts per AWS call; throttling is retried with exponential backoff.
    #[arg(long, global = true, default_value_t = 10, env = "COFFER_MAX_ATTEMPTS")]
    pub max_attempts: u32,
    /// Print JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a backup policy now: snapshots, replicas, retention, session.
    ///
    /// Exit status: 0 Success, 3 Warning (some resources or steps failed),
    /// 1 Failed or could not start.
    Run(RunArgs),
    /// Fire due rules of every policy in this process until SIGTERM/SIGINT.
    Agent(AgentArgs),
    /// List the restore points of a policy.
    Points(PointsArgs),
    /// List the recent sessions (runs) of a policy.
    Sessions(SessionsArgs),
    /// Check that the policy's workers could do their work: for each of its
    /// worker configurations, DNS and a route or VPC endpoint to every
    /// service its rules use, the instance profile, and (home region) that
    /// the scheduler role may pass the workers' role.
    ///
    /// Exit status: 0 every check passed, 3 some could not be verified, 1 some failed.
    Preflight(PreflightArgs),
    /// Upload a coffer build to the catalog, where workers launched by schedules fetch it
    /// (bin/coffer-linux-<arch>). Refuses a build workers could not start (not Linux, or
    /// needing a glibc newer than Amazon Linux 2's 2.26); skips the upload when the same
    /// build is already there.
    Publish(PublishArgs),
    /// Maintain a repository: check, prune, stats, points, init.
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Back a local file or block device, or an EBS snapshot, up into a
    /// repository (incremental against the newest point of the same source).
    Backup(repo::BackupArgs),
    /// Turn a restore point back into volumes, a new instance, a new DB instance or
    /// cluster (snapshots and replicas), or a local file or EBS snapshot (image-level).
    Restore(Box<restore::RestoreArgs>),
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The build to publish [default: this coffer]. scripts/build-worker.sh makes one that
    /// starts on Amazon Linux 2 and 2023.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The backup policy (its name).
    #[arg(long)]
    pub policy: String,
    /// Run only these rules (repeatable); default: all.
    #[arg(long = "rule")]
    pub rules: Vec<String>,
    /// Re-run (resume) an earlier run: what it already made is reused.
    #[arg(long, conflicts_with = "scheduled")]
    pub run_id: Option<String>,
    /// Launched by the schedule of --rule (workers): run the firing of the
    /// rule's latest due time within the last hour. Every rule of the policy
    /// due at that minute joins, the run id is that minute, and only the
    /// first worker to claim it runs it.
    #[arg(long, requires = "rules")]
    pub scheduled: bool,
    /// Make only the image-level points of the run's snapshots in this region, and record
    /// them as the run's part (what a region's worker does, launched by the scheduled worker
    /// of the run named by --run-id).
    #[arg(long, requires = "run_id", value_name = "REGION")]
    pub part: Option<String>,
    /// With --part: this worker's share of the region's work, K/N (from 1/N), as the run's
    /// first worker spread it. Default: all of it.
    #[arg(long, requires = "part", value_name = "K/N")]
    pub slice: Option<coffer_model::worker::Slice>,
    #[command(flatten)]
    pub tuning: Tuning,
}

#[derive(Debug, Args)]
pub struct Tuning {
    /// Resources whose snapshots are started at once per region.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Longest wait for one snapshot or copy, e.g. 90m, 4h.
    #[arg(long, default_value = "4h", value_parser = parse_duration)]
    pub wait_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// On SIGTERM, how long to let the run in progress finish before
    /// abandoning it (it is fired again, with the same run id, on restart).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub tuning: Tuning,
}

#[derive(Debug, Args)]
pub struct PointsArgs {
    #[arg(long)]
    pub policy: String,
    /// Only this resource (instance id, DB instance or cluster identifier).
    #[arg(long)]
    pub resource: Option<String>,
    /// Only snapshots, replicas, or image-level backups or archives (these
    /// read the policy's repositories; password ones need
    /// COFFER_REPOSITORY_PASSWORD).
    #[arg(long, value_parser = ["snapshot", "replica", "backup", "archive"])]
    pub kind: Option<String>,
}

#[derive(Debug, Args)]
pub struct PreflightArgs {
    /// The backup policy (its name).
    #[arg(long)]
    pub policy: String,
}

#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[arg(long)]
    pub policy: String,
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
}

/// The CLI's durations: the provider's grammar (`90m`, `1h30m`), checked.
/// A flag taking one of a model enum's names: clap lists them in `--help`
/// and in its error, and hands over the enum.
fn enum_parser<T>() -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = strum::ParseError> + strum::VariantNames + Clone + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(T::VARIANTS).try_map(|name| name.parse::<T>())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    coffer_model::validation::parse_duration(text.trim())
}

pub async fn main(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Run(args) => {
            let mut executor = connect(&cli.global, &args.tuning).await?;
            if let Some(region) = &args.part {
                let request = PartRequest {
                    policy: args.policy.clone(),
                    rules: args.rules.clone(),
                    run_id: args.run_id.clone().unwrap_or_default(),
                    region: region.clone(),
                    slice: args.slice.unwrap_or(coffer_model::worker::Slice::WHOLE),
                };
                let done = executor.run_part(request).await?;
                print_part(&done.part, cli.global.json)?;
                return Ok(exit_code(done.outcome));
            }
            let progress = Display::new(cli.global.json);
            if args.scheduled {
                executor.settings.launched_for = args.rules.first().cloned();
            }
            let request = if args.scheduled {
                match scheduled_request(&executor, args).await? {
                    Some(request) => request,
                    None => return Ok(ExitCode::SUCCESS),
                }
            } else {
                RunRequest {
                    policy: args.policy.clone(),
                    rules: args.rules.clone(),
                    run_id: args.run_id.clone(),
                    time: Utc::now(),
                }
            };
            let session = executor.run(request, &progress).await?;
            progress.finish();
            print_session(&session, cli.global.json)?;
            Ok(exit_code(session.outcome))
        }
        Command::Repo(command) => repo::repo(&cli.global, command).await,
        Command::Backup(args) => repo::backup(&cli.global, args).await,
        Command::Restore(args) => restore::restore(&cli.global, args).await,
        Command::Publish(args) => {
            let path = match &args.binary {
                Some(path) => path.clone(),
                None => std::env::current_exe().context("locating this coffer binary")?,
            };
            // Checked before connecting: a build workers could not start is refused offline.
            let binary = WorkerBinary::open(&path)?;
            let executor = connect(&cli.global, &Tuning { concurrency: 1, wait_timeout: Duration::ZERO }).await?;
            let published = executor
                .catalog()
                .publish_binary(&binary)
                .await
                .with_context(|| format!("publishing {}", path.display()))?;
            if published.uploaded {
                println!("published {} to {} (sha256 {})", path.display(), published.url, binary.sha256);
            } else {
                println!("{} already holds this build (sha256 {}); nothing uploaded", published.url, binary.sha256);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(args) => {
            let executor = connect(&cli.global, &args.tuning).await?;
            agent(&executor, args, cli.global.json).await
        }
        Command::Points(args) => {
            let executor = connect(&cli.global, &Tuning { concurrency: 16, wait_timeout: Duration::ZERO }).await?;
            let points = points(&executor, &args.policy).await?;
            let points: Vec<&RestorePoint> = points
                .iter()
                .filter(|p| args.resource.as_ref().is_none_or(|r| &p.resource_id == r))
                .filter(|p| args.kind.as_ref().is_none_or(|k| p.kind.as_str() == k))
                .collect();
            let images = match args.kind.as_deref() {
                Some("snapshot" | "replica") => Vec::new(),
                _ => {
                    let policy = executor.policy(&args.policy).await?;
                    let (images, errors) = coffer_executor::image::list_points(&executor, &policy).await;
                    for error in &errors {
                        if args.kind.is_some() {
                            bail!("{error}");
                        }
                        eprintln!("coffer: image-level restore points left out: {error}");
                    }
                    images
                        .into_iter()
                        .filter(|p| args.resource.as_ref().is_none_or(|r| &p.resource_id == r))
                        .filter(|p| args.kind.as_ref().is_none_or(|k| p.kind.as_str() == k))
                        .collect()
                }
            };
            print_points(&points, &images, &executor.aws.account_id, cli.global.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Preflight(args) => {
            let executor = connect(&cli.global, &Tuning { concurrency: 1, wait_timeout: Duration::ZERO }).await?;
            let policy = executor.policy(&args.policy).await?;
            let workers = coffer_executor::preflight::policy_checks(&executor, &policy).await;
            print_preflight(&workers, cli.global.json)?;
            let verdicts = || workers.iter().flat_map(|w| &w.checks).map(|c| c.verdict);
            Ok(if verdicts().any(|v| v == Verdict::Fail) {
                ExitCode::FAILURE
            } else if verdicts().any(|v| v == Verdict::Unverified) {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Sessions(args) => {
            let executor = connect(&cli.global, &Tuning { concurrency: 16, wait_timeout: Duration::ZERO }).await?;
            // A policy that does not exist is an error, as for `points` and `run`.
            let policy = executor.policy(&args.policy).await?;
            let sessions = coffer_executor::history::history(&executor, &policy, args.limit, Utc::now()).await?;
            print_sessions(&sessions, cli.global.json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The run a worker launched by a rule's schedule makes: the rule's latest
/// due minute (EventBridge fires on time; the worker boots in minutes), with
/// every rule due at that minute, claimed in the catalog so workers
/// launched for rules due together make one run. `None`: another worker has
/// it.
async fn scheduled_request(executor: &Executor, args: &RunArgs) -> Result<Option<RunRequest>> {
    use coffer_aws::catalog::CatalogError;
    use coffer_executor::agent::latest_due;
    let policy = executor.policy(&args.policy).await?;
    let now = Utc::now();
    let rule = &args.rules[0];
    let launched_for = policy
        .rules
        .iter()
        .find(|r| &r.name == rule)
        .with_context(|| format!("backup policy {} has no rule {rule}", policy.name))?;
    let window = chrono::TimeDelta::seconds(coffer_model::worker::SCHEDULED_START_WINDOW_SECS);
    let due = latest_due(launched_for, now - window, now).with_context(|| {
        format!("rule {rule} of {} was not due in the last hour; run it without --scheduled", policy.name)
    })?;
    let rules: Vec<String> = policy
        .rules
        .iter()
        .filter(|r| latest_due(r, due - chrono::TimeDelta::minutes(1), due) == Some(due))
        .map(|r| r.name.clone())
        .collect();
    let run_id = coffer_executor::scheduled_run_id(due);
    // A rule that moves no data is launched on the small snapshot instance type: a firing
    // that also holds an image-level rule is left to that rule's worker, launched at the
    // same minute on the worker configuration's type.
    if !launched_for.moves_data()
        && let Some(mover) = policy.rules.iter().find(|r| r.moves_data() && rules.contains(&r.name))
    {
        eprintln!(
            "coffer: run {run_id} of {} includes rule {}, which moves data: left to its worker; nothing to do",
            policy.name, mover.name
        );
        return Ok(None);
    }
    let claim = RunClaim { claimed_at: now, launched_for: rule.clone(), rules: rules.clone(), run_id: run_id.clone() };
    match executor.catalog().create(&format!("{}/{run_id}", policy.name), &claim).await {
        Ok(_) => Ok(Some(RunRequest { policy: policy.name.clone(), rules, run_id: Some(run_id), time: due })),
        Err(CatalogError::AlreadyExists { .. }) => {
            eprintln!("coffer: run {run_id} of {} was taken by another worker; nothing to do", policy.name);
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!("claiming run {run_id} of {}: {e}", policy.name)),
    }
}

/// `AWS_ENDPOINT_URL_<SERVICE>` (e.g. `AWS_ENDPOINT_URL_S3`): the SDK lets
/// these win over `AWS_ENDPOINT_URL`, but `--endpoint-url` (which that
/// variable fills) is an endpoint set in code and would win over them; so
/// they are read here and applied per service, as the provider does.
fn service_endpoints_from_env() -> std::collections::BTreeMap<String, String> {
    coffer_aws::SERVICES
        .iter()
        .filter_map(|service| {
            let url = std::env::var(format!("AWS_ENDPOINT_URL_{}", service.to_uppercase())).ok()?;
            (!url.is_empty()).then(|| (service.to_string(), url))
        })
        .collect()
}

async fn connect(global: &Global, tuning: &Tuning) -> Result<Executor> {
    let settings = AwsSettings {
        region: global.region.clone(),
        profile: global.profile.clone(),
        endpoint_url: global.endpoint_url.clone(),
        endpoints: service_endpoints_from_env(),
        s3_use_path_style: global.s3_use_path_style,
        assume_role: global.assume_role_arn.clone().map(|role_arn| AssumeRole {
            role_arn,
            external_id: None,
            session_name: None,
            duration: None,
        }),
        max_attempts: Some(global.max_attempts.max(1)),
        ..AwsSettings::default()
    };
    let aws = AwsClients::connect(settings).await?;
    let catalog = CatalogLocation::new(
        global.catalog_bucket.as_deref(),
        global.catalog_prefix.as_deref(),
        &aws.account_id,
        &aws.home_region,
    );
    let settings = Settings {
        concurrency: tuning.concurrency.max(1),
        wait_timeout: tuning.wait_timeout,
        repository_password: coffer_executor::repository_password_from_env(),
        worker_instance_id: coffer_executor::worker_instance_from_env(),
        ..Settings::default()
    };
    Ok(Executor::new(aws, catalog, settings))
}

pub fn exit_code(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Success => ExitCode::SUCCESS,
        Outcome::Warning => ExitCode::from(3),
        Outcome::Failed | Outcome::Missed => ExitCode::FAILURE,
    }
}

/// Every restore point of a policy, with the mappings its rules use.
pub async fn points(executor: &Executor, policy: &str) -> Result<Vec<RestorePoint>> {
    let policy = executor.policy(policy).await?;
    let mappings = executor.region_mappings(&policy.rules).await?;
    let (points, errors) = inventory::list(executor, &policy, &mappings).await;
    if let Some(first) = errors.first() {
        bail!("{first}");
    }
    Ok(points)
}

async fn agent(executor: &Executor, args: &AgentArgs, json: bool) -> Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let agent = Agent::new(executor, Arc::new(SystemClock));
    eprintln!(
        "coffer agent: watching the policies in s3://{}/{}",
        executor.catalog_location.bucket, executor.catalog_location.prefix
    );
    loop {
        let firings = match agent.due().await {
            Ok(firings) => firings,
            Err(e) => {
                // The catalog may be briefly unreachable: try again next minute.
                eprintln!("coffer agent: {e}");
                Vec::new()
            }
        };
        for firing in firings {
            eprintln!(
                "coffer agent: {} rule {} due {}: run {}",
                firing.policy,
                firing.rules.join("+"),
                firing.due,
                firing.run_id()
            );
            let run = agent.fire(&firing, &Quiet);
            tokio::pin!(run);
            let stopping = tokio::select! {
                result = &mut run => { report(result, json); false }
                _ = terminate.recv() => true,
                _ = interrupt.recv() => true,
            };
            if stopping {
                eprintln!(
                    "coffer agent: stopping; letting run {} finish (up to {}s)",
                    firing.run_id(),
                    args.shutdown_grace.as_secs()
                );
                match tokio::time::timeout(args.shutdown_grace, run).await {
                    Ok(result) => report(result, json),
                    Err(_) => eprintln!(
                        "coffer agent: abandoned run {} of {}; its rules stay due and fire again, with the same run id, when the agent starts",
                        firing.run_id(),
                        firing.policy
                    ),
                }
                return Ok(ExitCode::SUCCESS);
            }
        }
        // Wake at the start of the next minute.
        let now = Utc::now();
        let wait = 60 - (now.timestamp() % 60) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
            _ = terminate.recv() => return Ok(ExitCode::SUCCESS),
            _ = interrupt.recv() => return Ok(ExitCode::SUCCESS),
        }
    }
}

fn report(result: Result<Session, coffer_executor::ExecutorError>, json: bool) {
    match result {
        Ok(session) => {
            if let Err(e) = print_session(&session, json) {
                eprintln!("coffer agent: {e}");
            }
        }
        Err(e) => eprintln!("coffer agent: {e}"),
    }
}

/// A progress bar on a terminal's stderr; nothing otherwise.
struct Display {
    bar: Option<ProgressBar>,
}

impl Display {
    fn new(json: bool) -> Self {
        let bar = (!json && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { bar }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Display {
    fn scope_resolved(&self, resources: usize) {
        if let Some(bar) = &self.bar {
            bar.set_length(resources as u64);
            bar.set_style(
                ProgressStyle::with_template("{spinner} {pos}/{len} resources [{bar:30}] {elapsed} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
        }
    }

    fn resource_done(&self, record: &ResourceRecord) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("{} {}", record.id, record.outcome));
        }
    }

    fn step(&self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(what.to_string());
        }
    }
}

fn print_session(session: &Session, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(session)?);
        return Ok(());
    }
    println!(
        "{} run {} ({}): {} resources",
        session.policy,
        session.run_id,
        session.rules.join(", "),
        session.resources.len()
    );
    println!("  {:<22}{:<11}{:<9}{:>8}  made", "resource", "region", "outcome", "seconds");
    for r in &session.resources {
        let made: Vec<String> = r
            .snapshots
            .iter()
            .map(|s| {
                let place = if s.kind == SnapshotKind::Replica { format!(" → {}", s.region) } else { String::new() };
                format!("{}{}{}", s.id, place, if s.reused { " (reused)" } else { "" })
            })
            .collect();
        println!(
            "  {:<22}{:<11}{:<9}{:>8.1}  {}",
            r.id,
            r.region,
            r.outcome.to_string(),
            r.duration_ms as f64 / 1000.0,
            made.join(", ")
        );
        if let Some(error) = &r.error {
            println!("      error: {error}");
        }
        for warning in &r.warnings {
            println!("      warning: {warning}");
        }
    }
    for message in &session.messages {
        println!("  note: {message}");
    }
    let retention = &session.retention;
    println!(
        "  retention: {} restore points kept{}, {} snapshots deleted",
        retention.kept,
        if retention.unmanaged > 0 { format!(" ({} unmanaged)", retention.unmanaged) } else { String::new() },
        retention.deleted.len()
    );
    for error in &retention.errors {
        println!("      retention error: {error}");
    }
    println!("  session {}: {}", session.run_id, session.outcome);
    Ok(())
}

fn print_part(part: &RunPart, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(part)?);
        return Ok(());
    }
    let slice = part.slice.as_deref().map(|s| format!(" (slice {s})")).unwrap_or_default();
    println!("{} run {}, part {}{slice}: {} instances", part.policy, part.run_id, part.region, part.resources.len());
    for r in &part.resources {
        let points: Vec<&str> = r.backups.iter().map(|b| b.point_id.as_str()).collect();
        println!("  {:<22}{}", r.id, points.join(", "));
        for warning in &r.warnings {
            println!("      warning: {warning}");
        }
    }
    for message in &part.messages {
        println!("  note: {message}");
    }
    Ok(())
}

fn print_points(
    points: &[&RestorePoint],
    images: &[coffer_executor::image::ImagePoint],
    account: &str,
    json: bool,
) -> Result<()> {
    if json {
        let mut rows: Vec<serde_json::Value> = points.iter().map(|p| point_json(p)).collect();
        rows.extend(images.iter().map(|p| image_point_json(p, account)));
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let width = |f: &dyn Fn(&RestorePoint) -> usize, title: &str| {
        points.iter().map(|p| f(p)).max().unwrap_or(0).max(title.len()) + 2
    };
    let rules = |p: &RestorePoint| p.rules.iter().cloned().collect::<Vec<_>>().join("+");
    let targets = |p: &RestorePoint| p.restore_targets().join(", ");
    let image_width =
        |f: &dyn Fn(&coffer_executor::image::ImagePoint) -> usize| images.iter().map(f).max().unwrap_or(0) + 2;
    let (iw, rw, uw, lw, tw) = (
        width(&|p| p.id().to_string().len(), "point").max(image_width(&|p| p.id().to_string().len())),
        width(&|p| p.resource_id.len(), "resource").max(image_width(&|p| p.resource_id.len())),
        width(&|p| p.run_id.len(), "run").max(image_width(&|p| p.run_id.len())),
        width(&|p| rules(p).len(), "rules").max(image_width(&|p| p.rules.iter().map(|r| r.len() + 1).sum())),
        width(&|p| targets(p).len(), "restores to").max(image_width(&|p| p.restore_targets().join(", ").len())),
    );
    println!(
        "  {:<iw$}{:<rw$}{:<10}{:<11}{:<22}{:<uw$}{:<lw$}{:<tw$}snapshots or points",
        "point", "resource", "kind", "region", "time", "run", "rules", "restores to"
    );
    for p in points {
        let ids: Vec<&str> = p.snapshots.iter().map(|s| s.id.as_str()).collect();
        println!(
            "  {:<iw$}{:<rw$}{:<10}{:<11}{:<22}{:<uw$}{:<lw$}{:<tw$}{}{}",
            p.id().to_string(),
            p.resource_id,
            p.kind.as_str(),
            p.region,
            p.time.format("%Y-%m-%d %H:%M UTC").to_string(),
            p.run_id,
            rules(p),
            targets(p),
            ids.join(", "),
            if p.complete() { "" } else { " (incomplete)" }
        );
    }
    for p in images {
        println!(
            "  {:<iw$}{:<rw$}{:<10}{:<11}{:<22}{:<uw$}{:<lw$}{:<tw$}repository {}: {}",
            p.id().to_string(),
            p.resource_id,
            p.kind,
            p.region,
            p.time.format("%Y-%m-%d %H:%M UTC").to_string(),
            p.run_id,
            p.rules.iter().cloned().collect::<Vec<_>>().join("+"),
            p.restore_targets().join(", "),
            p.repository_id,
            p.point_ids.join(", "),
        );
    }
    Ok(())
}

/// The JSON shape of a restore point (the `coffer points --json` rows).
pub fn point_json(p: &RestorePoint) -> serde_json::Value {
    serde_json::json!({
        "policy": p.policy,
        "resource_id": p.resource_id,
        "kind": p.kind.as_str(),
        "region": p.region,
        "account": p.account,
        "mapping": p.mapping,
        "run_id": p.run_id,
        "time": p.time,
        "rules": p.rules,
        "complete": p.complete(),
        "snapshot_ids": p.snapshots.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        "kms_key_ids": p.snapshots.iter().filter_map(|s| s.kms_key_id.clone()).collect::<Vec<_>>(),
        "id": p.id().to_string(),
        "restore_targets": p.restore_targets(),
    })
}

/// The JSON shape of an image-level restore point: the keys of
/// [`point_json`] (no snapshots; complete, as a repository point exists only
/// once all its data is stored), plus where it is and its per-volume points.
pub fn image_point_json(p: &coffer_executor::image::ImagePoint, account: &str) -> serde_json::Value {
    serde_json::json!({
        "policy": p.policy,
        "resource_id": p.resource_id,
        "kind": p.kind,
        "region": p.region,
        "account": account,
        "mapping": null,
        "run_id": p.run_id,
        "time": p.time,
        "rules": p.rules,
        "complete": true,
        "snapshot_ids": [],
        "kms_key_ids": [],
        "repository_id": p.repository_id,
        "id": p.id().to_string(),
        // One volume's point (of `point_ids`) also restores to a file, with `--repository`.
        "restore_targets": p.restore_targets(),
        "point_ids": p.point_ids,
        "volume_ids": p.volume_ids,
    })
}

fn print_preflight(workers: &[coffer_executor::preflight::WorkerChecks], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(workers)?);
        return Ok(());
    }
    let width = workers.iter().flat_map(|w| &w.checks).map(|c| c.subject.len()).max().unwrap_or(0) + 2;
    for worker in workers {
        match (worker.worker_configuration_id.as_str(), &worker.region) {
            ("", _) => println!("policy"),
            (id, Some(region)) => println!("worker configuration {id} ({region})"),
            (id, None) => println!("worker configuration {id}"),
        }
        for check in &worker.checks {
            let verdict = match check.verdict {
                Verdict::Pass => "ok",
                Verdict::Fail => "FAIL",
                Verdict::Unverified => "??",
            };
            println!("  {verdict:<5} {:<width$}{}", check.subject, check.detail);
        }
    }
    Ok(())
}

fn print_sessions(sessions: &[Session], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(sessions)?);
        return Ok(());
    }
    let rw = sessions.iter().map(|s| s.run_id.len()).max().unwrap_or(0).max(3) + 2;
    let lw = sessions.iter().map(|s| s.rules.join("+").len()).max().unwrap_or(0).max(5) + 2;
    println!("  {:<rw$}{:<lw$}{:<22}{:<9}{:>9}  failed", "run", "rules", "started", "outcome", "resources");
    for s in sessions {
        let failed = s.resources.iter().filter(|r| r.outcome == Outcome::Failed).count();
        println!(
            "  {:<rw$}{:<lw$}{:<22}{:<9}{:>9}  {}",
            s.run_id,
            s.rules.join("+"),
            s.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            s.outcome.to_string(),
            s.resources.len(),
            failed
        );
        // What a Failed or Missed entry without resources has to say is all in its messages.
        if s.resources.is_empty() && s.outcome >= Outcome::Failed {
            for message in &s.messages {
                println!("      {message}");
            }
        }
    }
    Ok(())
}
