//! One run of a policy: scope, snapshots, replicas, retention, session.

use coffer_model::CatalogDocument;
use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};

use super::inventory::{self, RestorePoint, SnapshotKind};
use super::limits::{Api, Limits};
use super::replication::{CopyClients, CopySpec, replicate_ebs, replicate_rds};
use super::retention::{self, KeepReason, Retain, Verdict};
use super::scope::{self, Resource};
use super::session::{self, Outcome, ResourceRecord, RetentionRecord, Session, SnapshotRecord};
use super::*;
use coffer_aws::kms::KeyAccess;
use coffer_aws::snapshots::{self, CopyEncryption, Service, StoredSnapshot};
use coffer_aws::{AwsClients, AwsError};
use coffer_model::policy::{PolicyDocument, PolicyType, Rule};
use coffer_model::session::ResourceKind;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub policy: String,
    /// Empty: every rule of the policy.
    pub rules: Vec<String>,
    /// `None`: a fresh id.
    pub run_id: Option<String>,
    /// The run's time: tags, retention by days, session. The agent passes
    /// the due minute.
    pub time: DateTime<Utc>,
}

/// Hears about a run as it goes (the terminal progress display).
pub trait Progress: Send + Sync {
    fn scope_resolved(&self, _resources: usize) {}
    fn resource_done(&self, _record: &ResourceRecord) {}
    fn step(&self, _what: &str) {}
}

/// No progress display.
pub struct Quiet;
impl Progress for Quiet {}

/// Passes progress on and keeps the records of the resources finished, for a run stopped
/// at its time limit.
struct Finished<'a> {
    inner: &'a dyn Progress,
    records: std::sync::Mutex<Vec<ResourceRecord>>,
}

impl Progress for Finished<'_> {
    fn scope_resolved(&self, resources: usize) {
        self.inner.scope_resolved(resources);
    }
    fn resource_done(&self, record: &ResourceRecord) {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).push(record.clone());
        self.inner.resource_done(record);
    }
    fn step(&self, what: &str) {
        self.inner.step(what);
    }
}

/// The rules of `policy` named in `names` (all when empty), each once.
pub(crate) fn choose_rules<'p>(policy: &'p PolicyDocument, names: &[String]) -> Result<Vec<&'p Rule>, ExecutorError> {
    if names.is_empty() {
        return Ok(policy.rules.iter().collect());
    }
    let mut chosen: Vec<&Rule> = Vec::new();
    for name in names {
        let rule = policy.rules.iter().find(|r| &r.name == name).ok_or_else(|| ExecutorError::UnknownRule {
            policy: policy.name.clone(),
            rule: name.clone(),
            known: policy.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "),
        })?;
        if !chosen.iter().any(|r| r.name == rule.name) {
            chosen.push(rule);
        }
    }
    Ok(chosen)
}

/// AWS limits a resource's tags to 50; Coffer's and the policy's come first.
const MAX_TAGS: usize = 50;

pub(crate) struct Plan<'a> {
    pub(crate) policy: &'a PolicyDocument,
    pub(crate) run_id: String,
    /// The run id was made for this run: nothing an earlier attempt made
    /// can exist, so the lookups that make re-runs idempotent are skipped.
    fresh: bool,
    pub(crate) time: DateTime<Utc>,
    rules: Vec<&'a Rule>,
    mappings: BTreeMap<String, RegionMappingDocument>,
    limits: Limits,
    /// Repositories the rules' `backup` / `archive` blocks write to (EC2).
    pub(crate) targets: Vec<image::Target>,
    pub(crate) repositories: image::Repositories,
    /// Per mapping with a key: what is wrong with the key, found once per run.
    key_problems: tokio::sync::Mutex<BTreeMap<String, Option<String>>>,
    /// Regions whose image-level work waits until every snapshot is made, then is spread over
    /// this worker and workers launched in the region ([`super::parts`]).
    pub(crate) delegated: std::collections::BTreeSet<String>,
}

impl<'a> Plan<'a> {
    pub(crate) fn new(
        policy: &'a PolicyDocument,
        run_id: String,
        fresh: bool,
        time: DateTime<Utc>,
        rules: Vec<&'a Rule>,
        mappings: BTreeMap<String, RegionMappingDocument>,
        concurrency: usize,
    ) -> Self {
        Plan {
            policy,
            run_id,
            fresh,
            time,
            targets: if policy.kind == PolicyType::Ec2 { image::targets(&rules) } else { Vec::new() },
            rules,
            mappings,
            limits: Limits::new(concurrency),
            repositories: image::Repositories::default(),
            key_problems: Default::default(),
            delegated: Default::default(),
        }
    }

    pub(crate) fn rule_names(&self, wants: impl Fn(&Rule) -> bool) -> Vec<String> {
        self.rules.iter().filter(|r| wants(r)).map(|r| r.name.clone()).collect()
    }

    /// Rules that need this run's snapshots: image-level backups are read
    /// from them too (EC2).
    fn snapshot_rules(&self) -> Vec<String> {
        let image = !self.targets.is_empty();
        self.rule_names(|r| {
            r.snapshot.is_some() || r.replicate.is_some() || (image && (r.backup.is_some() || r.archive.is_some()))
        })
    }

    fn replica_rules(&self, mapping: &str) -> Vec<String> {
        self.rule_names(|r| r.replicate.as_ref().is_some_and(|p| p.region_mapping_ids.iter().any(|m| m == mapping)))
    }

    /// Mappings the run's rules replicate through, out of `region`.
    fn mappings_from(&self, region: &str) -> Vec<(&String, &RegionMappingDocument)> {
        self.mappings.iter().filter(|(_, m)| m.source_region == region).collect()
    }

    fn tags(
        &self,
        kind: SnapshotKind,
        resource: &Resource,
        rules: &[String],
        extra: &[(&str, String)],
    ) -> BTreeMap<String, String> {
        let mut coffer: BTreeMap<String, String> = [
            (TAG_POLICY, self.policy.name.clone()),
            (TAG_RULE, rules.join(" ")),
            (TAG_RUN, self.run_id.clone()),
            (TAG_KIND, kind.as_str().to_string()),
            (TAG_SOURCE, resource.id.clone()),
            (TAG_TIME, self.time.to_rfc3339_opts(SecondsFormat::Secs, true)),
        ]
        .into_iter()
        .chain(extra.iter().cloned())
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in &self.policy.tags {
            if coffer.len() < MAX_TAGS {
                coffer.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        // The source's own tags, as `copy_tags` does; AWS-reserved ones
        // cannot be set.
        for (k, v) in &resource.tags {
            if coffer.len() < MAX_TAGS && !k.starts_with("aws:") && !k.starts_with("coffer:") {
                coffer.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        coffer
    }

    /// The run's session, finished now.
    fn session(
        &self,
        started: DateTime<Utc>,
        outcome: Outcome,
        messages: Vec<String>,
        resources: Vec<ResourceRecord>,
        retention: RetentionRecord,
    ) -> Session {
        Session {
            format_version: Session::FORMAT_VERSION,
            policy: self.policy.name.clone(),
            run_id: self.run_id.clone(),
            rules: self.rule_names(|_| true),
            started_at: started,
            finished_at: Utc::now(),
            outcome,
            messages,
            resources,
            retention,
        }
    }

    fn description(&self, rules: &[String]) -> String {
        format!("Coffer policy {} rule {} run {}", self.policy.name, rules.join("+"), self.run_id)
    }
}

impl Executor {
    /// Runs a policy now. Errors are what stops a run before it touches
    /// anything (unknown policy, rule or mapping); everything after that
    /// ends up in the session.
    pub async fn run(&self, request: RunRequest, progress: &dyn Progress) -> Result<Session, ExecutorError> {
        let started = Utc::now();
        let policy = self.policy(&request.policy).await?;
        let rules = choose_rules(&policy, &request.rules)?;
        let fresh = request.run_id.is_none();
        let run_id = match request.run_id {
            Some(id) => {
                check_run_id(&id)?;
                id
            }
            None => new_run_id(request.time),
        };
        let mappings = self.region_mappings(rules.iter().copied()).await?;
        let mut plan = Plan::new(&policy, run_id, fresh, request.time, rules, mappings, self.settings.concurrency);
        plan.delegated = self.delegated_regions(&plan);
        tracing::info!(policy = %policy.name, run = %plan.run_id, rules = ?plan.rule_names(|_| true), "run started");
        let limit = policy.max_run_time();
        let finished = Finished { inner: progress, records: std::sync::Mutex::new(Vec::new()) };
        let session = match tokio::time::timeout(limit, self.execute(&plan, started, &finished)).await {
            Ok(session) => session,
            Err(_) => {
                // What the run held: the repositories' shared locks.
                plan.repositories.release().await;
                let resources = finished.records.into_inner().unwrap_or_else(|e| e.into_inner());
                tracing::error!(policy = %policy.name, run = %plan.run_id, ?limit, "run stopped at its max_run_time");
                let messages = vec![format!(
                    "timed out: the run was stopped at the policy's max_run_time of {} with {} resource(s) finished \
                         (listed); what it made is kept, and `coffer run --policy {} --run-id {}` resumes it",
                    policy.max_run_time.as_deref().unwrap_or(coffer_model::policy::DEFAULT_MAX_RUN_TIME),
                    resources.len(),
                    policy.name,
                    plan.run_id
                )];
                plan.session(started, Outcome::Failed, messages, resources, RetentionRecord::default())
            }
        };
        if let Err(e) = session::save(&session, &self.catalog()).await {
            // The snapshots exist whatever happens to the record; say so.
            tracing::error!(run = %session.run_id, "writing the session record: {e}");
            let mut session = session;
            session.messages.push(format!("the session record could not be written to the catalog: {e}"));
            session.outcome = session.outcome.max(Outcome::Warning);
            return Ok(session);
        }
        tracing::info!(policy = %policy.name, run = %session.run_id, outcome = %session.outcome, "run finished");
        Ok(session)
    }

    /// A run's work after its plan: scope, resources, retention; the session to record.
    async fn execute(&self, plan: &Plan<'_>, started: DateTime<Utc>, progress: &dyn Progress) -> Session {
        let policy = plan.policy;

        let mut messages = Vec::new();
        progress.step("resolving the scope");
        let scope = scope::resolve(&self.aws, policy).await;
        for (region, error) in &scope.failed_regions {
            messages.push(format!("listing the {} resources in {region}: {error}", policy.kind));
        }
        if scope.resources.is_empty() && scope.missing_ids.is_empty() && scope.failed_regions.is_empty() {
            messages.push(format!(
                "nothing in scope: no {} resource in {} matches the policy's ids or tags",
                policy.kind,
                policy.source.regions.join(", ")
            ));
        }
        if policy.kind != PolicyType::Ec2 && plan.rules.iter().any(|r| r.backup.is_some() || r.archive.is_some()) {
            messages.push(format!(
                "image-level backup and archive read EC2 volumes; the backup and archive blocks of this {} policy's rules were skipped",
                policy.kind
            ));
        }
        progress.scope_resolved(scope.resources.len() + scope.missing_ids.len());

        let work = scope.resources.iter().map(|resource| async {
            let record = self.protect(plan, resource).await;
            progress.resource_done(&record);
            record
        });
        let mut resources: Vec<ResourceRecord> = futures::future::join_all(work).await;
        for id in &scope.missing_ids {
            let now = Utc::now();
            let record = ResourceRecord {
                id: id.clone(),
                region: String::new(),
                kind: if policy.kind == PolicyType::Rds {
                    ResourceKind::RdsInstance
                } else {
                    ResourceKind::Ec2Instance
                },
                outcome: Outcome::Failed,
                started_at: now,
                finished_at: now,
                duration_ms: 0,
                snapshots: Vec::new(),
                backups: Vec::new(),
                error: Some(format!(
                    "{id} is in source.ids but was found in none of {}",
                    policy.source.regions.join(", ")
                )),
                warnings: Vec::new(),
                configuration: None,
            };
            progress.resource_done(&record);
            resources.push(record);
        }

        if !plan.delegated.is_empty() {
            progress.step("backing up the volumes, here and on the regions' workers");
            messages.extend(self.gather_parts(plan, &mut resources).await);
        }

        progress.step("applying retention");
        let mut retention = self.apply_retention(policy, plan.time, &plan.mappings).await;
        // Restore points in repositories: retention, then prune, once the
        // run's shared locks are released.
        for (id, open) in plan.repositories.release().await {
            for archive in plan.targets.iter().filter(|t| t.repository_id == id).map(|t| t.archive) {
                let (deleted, errors) = self.repository_retention(policy, archive, &open, plan.time).await;
                retention.deleted.extend(deleted);
                retention.errors.extend(errors.into_iter().map(|e| format!("repository {id}: {e}")));
            }
        }

        let outcome = Session::decide_outcome(&resources, &messages, &retention, !scope.failed_regions.is_empty());
        plan.session(started, outcome, messages, resources, retention)
    }

    /// Snapshots one resource and replicates the snapshots.
    async fn protect(&self, plan: &Plan<'_>, resource: &Resource) -> ResourceRecord {
        let started_at = Utc::now();
        let clock = Instant::now();
        let mut record = ResourceRecord {
            id: resource.id.clone(),
            region: resource.region.clone(),
            kind: resource.kind,
            outcome: Outcome::Success,
            started_at,
            finished_at: started_at,
            duration_ms: 0,
            snapshots: Vec::new(),
            backups: Vec::new(),
            error: None,
            warnings: Vec::new(),
            configuration: resource.configuration.clone(),
        };
        let rules = plan.snapshot_rules();
        if !rules.is_empty() {
            match self.snapshot(plan, resource, &rules).await {
                Ok((made, reused)) => {
                    record
                        .snapshots
                        .extend(made.iter().map(|s| snapshot_record(s, SnapshotKind::Snapshot, None, None, reused)));
                    for (mapping_id, mapping) in plan.mappings_from(&resource.region) {
                        match self.replicate(plan, resource, &made, mapping_id, mapping).await {
                            Ok(replicas) => {
                                record.snapshots.extend(replicas.copies.iter().map(|s| {
                                    let account = replicas.account.clone();
                                    snapshot_record(
                                        s,
                                        SnapshotKind::Replica,
                                        Some(mapping_id),
                                        account,
                                        replicas.reused,
                                    )
                                }));
                                if !replicas.warnings.is_empty() {
                                    record.outcome = Outcome::Warning;
                                    record.warnings.extend(replicas.warnings);
                                }
                            }
                            Err(e) => {
                                record.outcome = Outcome::Warning;
                                record
                                    .warnings
                                    .push(format!("replicating to {} via {mapping_id}: {e}", mapping.target_region));
                            }
                        }
                    }
                    if !plan.targets.is_empty()
                        && resource.kind == ResourceKind::Ec2Instance
                        && !plan.delegated.contains(&resource.region)
                    {
                        let (backups, warnings) = self.image_backups(plan, resource, &made).await;
                        record.backups = backups;
                        if !warnings.is_empty() {
                            record.outcome = record.outcome.max(Outcome::Warning);
                            record.warnings.extend(warnings);
                        }
                    }
                }
                Err(e) => {
                    record.outcome = Outcome::Failed;
                    record.error = Some(e);
                }
            }
        }
        record.finished_at = Utc::now();
        record.duration_ms = clock.elapsed().as_millis() as u64;
        tracing::info!(resource = %resource.id, region = %resource.region, outcome = %record.outcome, "resource done");
        record
    }

    /// The resource's snapshots for this run: found from an earlier attempt
    /// of the same run, or made now; waited for.
    async fn snapshot(
        &self,
        plan: &Plan<'_>,
        resource: &Resource,
        rules: &[String],
    ) -> Result<(Vec<StoredSnapshot>, bool), String> {
        let region = resource.region.as_str();
        let tags = plan.tags(SnapshotKind::Snapshot, resource, rules, &[]);
        let settings = &self.settings;
        match resource.kind {
            ResourceKind::Ec2Instance => {
                let ec2 = self.aws.ec2(region);
                let key = [
                    (TAG_RUN, plan.run_id.as_str()),
                    (TAG_SOURCE, resource.id.as_str()),
                    (TAG_KIND, SnapshotKind::Snapshot.as_str()),
                ];
                // The slot covers starting the snapshots, not waiting for
                // them: AWS makes them in parallel, however long they take.
                let slot = plan.limits.acquire(region, Api::Start).await;
                let earlier = if plan.fresh {
                    Vec::new()
                } else {
                    snapshots::find_ebs_snapshots(&ec2, region, &key)
                        .await
                        .map_err(|e| format!("looking for this run's snapshots of {}: {e}", resource.id))?
                };
                let (ids, reused) = if earlier.is_empty() {
                    let ids = snapshots::create_ebs_snapshots(&ec2, &resource.id, &plan.description(rules), &tags)
                        .await
                        .map_err(|e| match e {
                            AwsError::NotFound => format!("instance {} no longer exists", resource.id),
                            e => format!("creating snapshots of {}: {e}", resource.id),
                        })?;
                    if ids.is_empty() {
                        return Err(format!("instance {} has no EBS volumes to snapshot", resource.id));
                    }
                    (ids, false)
                } else {
                    (earlier.into_iter().map(|s| s.id).collect(), true)
                };
                drop(slot);
                let made = snapshots::wait_until_complete(
                    || snapshots::describe_ebs_snapshots(&ec2, region, &ids),
                    settings.poll_interval,
                    settings.wait_timeout,
                )
                .await
                .map_err(|e| format!("waiting for the snapshots of {}: {e}", resource.id))?;
                Ok((made, reused))
            }
            kind => {
                let service = if kind == ResourceKind::RdsCluster { Service::RdsCluster } else { Service::RdsInstance };
                let rds = self.aws.rds(region);
                let id = snapshots::rds_snapshot_id(&plan.policy.name, &plan.run_id, &resource.id);
                let slot = plan.limits.acquire(region, Api::Start).await;
                let earlier = if plan.fresh {
                    Err(AwsError::NotFound)
                } else {
                    snapshots::find_rds_snapshot(&rds, region, service, &id).await
                };
                let reused = match earlier {
                    Ok(_) => true,
                    Err(AwsError::NotFound) => {
                        snapshots::create_rds_snapshot(&rds, service, &resource.id, &id, &tags).await.map_err(|e| {
                            match e {
                                AwsError::NotFound => format!("{} {} no longer exists", kind.noun(), resource.id),
                                e => format!("creating snapshot {id} of {}: {e}", resource.id),
                            }
                        })?;
                        false
                    }
                    Err(e) => return Err(format!("looking for snapshot {id}: {e}")),
                };
                drop(slot);
                let made = snapshots::wait_until_complete(
                    || async { snapshots::find_rds_snapshot(&rds, region, service, &id).await.map(|s| vec![s]) },
                    settings.poll_interval,
                    settings.wait_timeout,
                )
                .await
                .map_err(|e| format!("waiting for snapshot {id}: {e}"))?;
                Ok((made, reused))
            }
        }
    }

    /// Copies the run's snapshots of a resource through one mapping.
    async fn replicate(
        &self,
        plan: &Plan<'_>,
        resource: &Resource,
        made: &[StoredSnapshot],
        mapping_id: &str,
        mapping: &RegionMappingDocument,
    ) -> Result<Replicas, String> {
        let assumed = self.clients_for(mapping.target_role_arn.as_deref()).await.map_err(|e| e.to_string())?;
        let target: &AwsClients = assumed.as_deref().unwrap_or(&self.aws);
        let other_account = (target.account_id != self.aws.account_id).then(|| target.account_id.clone());
        let uses_key = made.iter().any(|s| {
            CopyEncryption::for_mapping(mapping.encrypt, mapping.kms_key_arn.as_deref(), s.encrypted)
                .kms_key_id
                .is_some()
        });
        if uses_key && let Some(problem) = mapping_key_problem(plan, mapping_id, mapping, target).await {
            return Err(problem);
        }
        let rules = plan.replica_rules(mapping_id);
        let _slot = plan.limits.acquire(&mapping.target_region, Api::Copy).await;
        let mut replicas = Replicas { account: other_account.clone(), reused: true, ..Replicas::default() };
        for snapshot in made {
            let source_kms = self.aws.kms(&snapshot.region);
            let mut extra = vec![
                (TAG_SOURCE_SNAPSHOT, snapshot.id.clone()),
                (TAG_SOURCE_REGION, snapshot.region.clone()),
                (TAG_MAPPING, mapping_id.to_string()),
            ];
            if let Some(volume) = &snapshot.volume_id {
                extra.push((TAG_VOLUME, volume.clone()));
            }
            let tags = plan.tags(SnapshotKind::Replica, resource, &rules, &extra);
            let encryption =
                CopyEncryption::for_mapping(mapping.encrypt, mapping.kms_key_arn.as_deref(), snapshot.encrypted);
            let spec = CopySpec {
                target_region: &mapping.target_region,
                target_account: other_account.as_deref(),
                snapshot,
                encryption: &encryption,
                tags: &tags,
                description: plan.description(&rules),
                rds_target_id: rds_copy_id(plan, resource, "copy"),
                rds_staging_id: rds_copy_id(plan, resource, "stage"),
                look_for_earlier: !plan.fresh,
                target_credentials: target.credentials(),
                source_credentials: self.aws.credentials(),
                source_kms: Some(&source_kms),
            };
            let region = &mapping.target_region;
            let replica = match snapshot.service {
                Service::Ebs => {
                    let (source, staging, target) =
                        (self.aws.ec2(&snapshot.region), self.aws.ec2(region), target.ec2(region));
                    let clients = CopyClients { source: &source, staging: &staging, target: &target };
                    replicate_ebs(&clients, &spec, &self.settings).await
                }
                _ => {
                    let (source, staging, target) =
                        (self.aws.rds(&snapshot.region), self.aws.rds(region), target.rds(region));
                    let clients = CopyClients { source: &source, staging: &staging, target: &target };
                    replicate_rds(&clients, &spec, &self.settings).await
                }
            }
            .map_err(|e| e.to_string())?;
            replicas.reused &= replica.reused;
            replicas.warnings.extend(replica.share_left);
            replicas.copies.push(replica.snapshot);
        }
        Ok(replicas)
    }

    /// Retention over every restore point of the policy, rule by rule.
    /// `known`: the mappings the run already read.
    async fn apply_retention(
        &self,
        policy: &PolicyDocument,
        now: DateTime<Utc>,
        known: &BTreeMap<String, RegionMappingDocument>,
    ) -> RetentionRecord {
        let mut record = RetentionRecord::default();
        // Every mapping any rule uses: replicas made by other rules' runs age too.
        let mut mappings = known.clone();
        for id in policy.rules.iter().filter_map(|r| r.replicate.as_ref()).flat_map(|r| &r.region_mapping_ids) {
            if mappings.contains_key(id) {
                continue;
            }
            match self.region_mapping(id).await {
                Ok(mapping) => {
                    mappings.insert(id.clone(), mapping);
                }
                Err(e) => record.errors.push(e.to_string()),
            }
        }
        let (points, errors) = inventory::list(self, policy, &mappings).await;
        record.errors.extend(errors);
        let mut series: BTreeMap<_, Vec<RestorePoint>> = BTreeMap::new();
        for point in points {
            series.entry(point.series()).or_default().push(point);
        }
        for ((_, kind, ..), points) in series {
            let retain = retention_of(policy, kind);
            let candidates: Vec<retention::Point> = points
                .iter()
                .map(|p| retention::Point {
                    id: format!("{}/{}", p.run_id, p.snapshots.first().map(|s| s.id.as_str()).unwrap_or_default()),
                    time: p.time,
                    rules: p.rules.clone(),
                    complete: p.complete(),
                })
                .collect();
            for (point, verdict) in points.iter().zip(retention::decide(&candidates, &retain, now)) {
                match verdict {
                    Verdict::Keep(reasons) => {
                        record.kept += 1;
                        if reasons.iter().any(KeepReason::is_unmanaged) {
                            record.unmanaged += 1;
                        }
                    }
                    Verdict::Delete => {
                        let clients = match self.clients_for(point.role.as_deref()).await {
                            Ok(clients) => clients,
                            Err(e) => {
                                record.errors.push(e.to_string());
                                continue;
                            }
                        };
                        let aws = clients.as_deref().unwrap_or(&self.aws);
                        match inventory::delete(aws, point).await {
                            Ok(()) => record.deleted.extend(point.snapshots.iter().map(|s| s.id.clone())),
                            Err(e) => record.errors.push(format!(
                                "deleting the {} of {} from run {} in {}: {e}",
                                point.kind.as_str(),
                                point.resource_id,
                                point.run_id,
                                point.region
                            )),
                        }
                    }
                }
            }
        }
        record
    }
}

/// Each rule's retention for one kind of point.
pub fn retention_of(policy: &PolicyDocument, kind: SnapshotKind) -> BTreeMap<String, Retain> {
    policy
        .rules
        .iter()
        .filter_map(|rule| {
            let retain = match (kind, &rule.snapshot) {
                (SnapshotKind::Snapshot, Some(keep)) => image::to_retain(&keep.retain)?,
                // A rule that snapshots only to read the volume for its
                // backup keeps the newest snapshot: the next backup lists
                // the blocks changed since it.
                (SnapshotKind::Snapshot, None) if rule.backup.is_some() || rule.archive.is_some() => Retain::Count(1),
                (SnapshotKind::Snapshot, None) => return None,
                (SnapshotKind::Replica, _) => image::to_retain(&rule.replicate.as_ref()?.retain)?,
            };
            Some((rule.name.clone(), retain))
        })
        .collect()
}

/// The identifier of an RDS copy of the resource's snapshot in this run (`what`: the copy, or
/// its staging copy): readable, and the same on a re-run.
fn rds_copy_id(plan: &Plan<'_>, resource: &Resource, what: &str) -> String {
    snapshots::rds_snapshot_id(&plan.policy.name, &plan.run_id, &format!("{}-{}-{what}", resource.id, resource.region))
}

fn snapshot_record(
    s: &StoredSnapshot,
    kind: SnapshotKind,
    mapping: Option<&str>,
    account: Option<String>,
    reused: bool,
) -> SnapshotRecord {
    SnapshotRecord {
        id: s.id.clone(),
        region: s.region.clone(),
        kind,
        volume_id: s.tags.get(TAG_VOLUME).cloned().or_else(|| s.volume_id.clone()),
        mapping: mapping.map(str::to_string),
        account,
        kms_key_id: s.kms_key_id.clone(),
        reused,
    }
}

/// The mapping's key as whoever makes the copies sees it (the target role, or the workers'
/// own role), asked once per run: a key that is missing, not enabled or that they may not use
/// fails every copy, so no copy is started and the resource says which key, whose view, and
/// what to grant. A copy that names a key needs `kms:DescribeKey` on it anyway (EBS user guide,
/// "Permissions for IAM users" under encryption; RDS user guide, "Key management"), so a refused
/// `DescribeKey` is a copy that would fail. A key that cannot be asked about for another reason
/// is left to the copies.
async fn mapping_key_problem(
    plan: &Plan<'_>,
    mapping_id: &str,
    mapping: &RegionMappingDocument,
    target: &AwsClients,
) -> Option<String> {
    let key = mapping.kms_key_arn.as_deref()?;
    let mut problems = plan.key_problems.lock().await;
    if let Some(known) = problems.get(mapping_id) {
        return known.clone();
    }
    let region = &mapping.target_region;
    let who = mapping.target_role_arn.as_deref().map_or("the workers' role".to_string(), |r| format!("role {r}"));
    let problem = match coffer_aws::kms::key_access(&target.kms(region), key).await {
        Ok(KeyAccess::Usable) => None,
        Ok(KeyAccess::Missing) => Some(format!("{who} finds no KMS key {key} (kms_key_arn) in {region}")),
        Ok(KeyAccess::NotEnabled(state)) => Some(format!("the KMS key {key} (kms_key_arn) is {state}")),
        Ok(KeyAccess::Denied(why)) => Some(format!(
            "{who} may not use the KMS key {key} (kms_key_arn): {why}. Its key policy must allow kms:DescribeKey, \
             kms:CreateGrant, kms:Encrypt, kms:Decrypt, kms:ReEncrypt* and kms:GenerateDataKeyWithoutPlaintext"
        )),
        Err(e) => {
            tracing::warn!(key, error = %e, "describing the mapping's key; leaving it to the copies");
            None
        }
    };
    let problem = problem.map(|p| format!("{p}; nothing was copied"));
    problems.insert(mapping_id.to_string(), problem.clone());
    problem
}

/// What one mapping made of a resource's snapshots.
#[derive(Debug, Default)]
struct Replicas {
    copies: Vec<StoredSnapshot>,
    /// Every copy was made by an earlier attempt of the run.
    reused: bool,
    /// The target account, when it is another one.
    account: Option<String>,
    /// Shares left in place, with why.
    warnings: Vec<String>,
}
