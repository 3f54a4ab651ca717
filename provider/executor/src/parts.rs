//! Image-level work where the data is. A scheduled run starts on a worker in the home region
//! (its schedule's launch template is there); it makes every region's snapshots, which are
//! API calls, then spreads each region's image-level work over slices ([`workers_for`],
//! [`spread`], the policy's `volumes_per_worker`): the home region's first slice it does
//! itself, and for every other slice it launches a worker in the slice's region from the
//! policy's worker configuration there, with `coffer run --part <region> --slice K/N` of the
//! same run as its task. That worker makes the image-level points of its slice of the run's
//! snapshots in its region and records them in the catalog as the run's part ([`RunPart`]);
//! the first worker waits for each part and writes the one session. `coffer run` by hand and
//! `coffer agent` do all of it in-process, as before.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use coffer_aws::AwsError;
use coffer_aws::catalog::{CatalogError, Kind};
use coffer_aws::ec2::{self, WorkerLaunch};
use coffer_aws::snapshots::{self, StoredSnapshot};
use coffer_model::policy::MAX_WORKERS_PER_REGION;
use coffer_model::policy::PolicyType;
use coffer_model::session::{Outcome, ResourceKind, ResourceRecord, SnapshotKind};
use coffer_model::worker::{PartResource, PartTask, RunPart, Slice, WorkerRecord, user_data_for_part};

use super::run::{Plan, choose_rules};
use super::scope::Resource;
use super::{Executor, ExecutorError, TAG_KIND, TAG_POLICY, TAG_RUN, TAG_SOURCE, TAG_TIME, check_run_id};

/// The tag on a region's worker naming the part of the run it makes ([`Slice::label`]).
pub const TAG_PART: &str = "coffer:part";

/// How long a region's worker has to record its start (boot, fetch nothing yet) before the
/// run stops waiting for it: EC2 boots an instance in a minute or two.
pub const PART_START_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The longest pause between two looks for a part.
const MAX_PART_POLL: Duration = Duration::from_secs(30);

/// `coffer run --part <region>`: one region's image-level work of a run.
#[derive(Debug, Clone)]
pub struct PartRequest {
    pub policy: String,
    /// The run's rules (those with `backup` / `archive` blocks make points).
    pub rules: Vec<String>,
    pub run_id: String,
    pub region: String,
    pub slice: Slice,
}

/// A part's outcome: Warning when anything went wrong (the run's snapshots exist whatever
/// happened to their points).
fn outcome_of(part: &RunPart) -> Outcome {
    if !part.messages.is_empty() || part.resources.iter().any(|r| !r.warnings.is_empty()) {
        Outcome::Warning
    } else {
        Outcome::Success
    }
}

/// One slice of a region's image-level work in a run, and where it runs.
struct SliceJob {
    region: String,
    slice: Slice,
    /// Its instances' ids.
    instances: Vec<String>,
    /// Here (`None`), on the worker instance launched for it, or why none could be.
    runs_on: Result<Option<String>, String>,
}

/// A region's part, with the outcome `coffer run --part` exits with.
pub struct PartDone {
    pub part: RunPart,
    pub outcome: Outcome,
}

impl Executor {
    /// The regions whose image-level work `plan` spreads over region workers after the
    /// snapshots ([`Self::gather_parts`]): under a schedule (`Settings::launched_for`), every
    /// source region, when the run makes image-level points at all; otherwise none (a run by
    /// hand or by the agent backs up each instance in-process, right after its snapshots).
    pub(crate) fn delegated_regions(&self, plan: &Plan<'_>) -> BTreeSet<String> {
        if self.settings.launched_for.is_none() || plan.targets.is_empty() || plan.policy.kind != PolicyType::Ec2 {
            return BTreeSet::new();
        }
        plan.policy.source.regions.iter().cloned().collect()
    }

    /// Makes the image-level points of the run's snapshots in one region (the request's slice
    /// of them) and records them as the run's part; stops at the policy's `max_run_time`,
    /// recording what it finished.
    pub async fn run_part(&self, request: PartRequest) -> Result<PartDone, ExecutorError> {
        let policy = self.policy(&request.policy).await?;
        let rules = choose_rules(&policy, &request.rules)?;
        check_run_id(&request.run_id)?;
        let region = request.region.as_str();
        let found = self.run_snapshots(&policy.name, &request.run_id, region).await;
        // The run's time is on its snapshots (the first worker's due minute).
        let time = found
            .as_ref()
            .ok()
            .and_then(|by_instance| by_instance.values().flatten().find_map(|s| s.tags.get(TAG_TIME)))
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(Utc::now, |t| t.to_utc());
        let plan = Plan::new(&policy, request.run_id.clone(), false, time, rules, BTreeMap::new(), 1);
        let finished = std::sync::Mutex::new(Vec::new());
        let work = self.part_work(&plan, region, request.slice, found, &finished);
        let mut part = match tokio::time::timeout(policy.max_run_time(), work).await {
            Ok(part) => part,
            Err(_) => {
                let mut part = self.empty_part(&plan, region, request.slice);
                part.messages.push(format!(
                    "timed out: stopped at the policy's max_run_time of {} before every instance's points were made",
                    policy.max_run_time.as_deref().unwrap_or(coffer_model::policy::DEFAULT_MAX_RUN_TIME)
                ));
                part
            }
        };
        part.resources = finished.into_inner().unwrap_or_else(|e| e.into_inner());
        part.finished_at = Utc::now();
        plan.repositories.release().await;
        let name = RunPart::name(&policy.name, &request.run_id, &request.slice.label(region));
        self.catalog()
            .put(&name, &part)
            .await
            .map_err(|cause| ExecutorError::Catalog { what: format!("writing run part {name}"), cause })?;
        let outcome = outcome_of(&part);
        Ok(PartDone { part, outcome })
    }

    /// A part started now, with nothing done yet.
    fn empty_part(&self, plan: &Plan<'_>, region: &str, slice: Slice) -> RunPart {
        let now = Utc::now();
        RunPart {
            format_version: <RunPart as coffer_model::CatalogDocument>::FORMAT_VERSION,
            policy: plan.policy.name.clone(),
            run_id: plan.run_id.clone(),
            region: region.to_string(),
            slice: (slice.count > 1).then(|| slice.to_string()),
            instance_id: self.settings.worker_instance_id.clone(),
            started_at: now,
            finished_at: now,
            resources: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// The run's snapshots in `region`, found by their tags, by the instance they are of.
    async fn run_snapshots(
        &self,
        policy: &str,
        run_id: &str,
        region: &str,
    ) -> Result<BTreeMap<String, Vec<StoredSnapshot>>, String> {
        let tags = [(TAG_POLICY, policy), (TAG_RUN, run_id), (TAG_KIND, SnapshotKind::Snapshot.as_str())];
        let snapshots = snapshots::find_ebs_snapshots(&self.aws.ec2(region), region, &tags)
            .await
            .map_err(|e| format!("looking for the run's snapshots in {region}: {e}"))?;
        let mut by_instance: BTreeMap<String, Vec<StoredSnapshot>> = BTreeMap::new();
        for snapshot in snapshots {
            if let Some(source) = snapshot.tags.get(TAG_SOURCE).cloned() {
                by_instance.entry(source).or_default().push(snapshot);
            }
        }
        Ok(by_instance)
    }

    /// The image-level work of one slice of a region: spreads the instances of the run's
    /// snapshots there (`found`) over `slice.count` workers as the first worker did
    /// ([`spread`]), and backs up this slice's into the rules' repositories. Each instance
    /// done goes into `finished` (kept if the caller's time limit stops the work); the part
    /// returned has the messages, its resources are left to the caller.
    async fn part_work(
        &self,
        plan: &Plan<'_>,
        region: &str,
        slice: Slice,
        found: Result<BTreeMap<String, Vec<StoredSnapshot>>, String>,
        finished: &std::sync::Mutex<Vec<PartResource>>,
    ) -> RunPart {
        let mut part = self.empty_part(plan, region, slice);
        let by_instance = match found {
            Ok(by_instance) if by_instance.is_empty() => {
                part.messages.push(format!("the run has no snapshots in {region} to read"));
                return part;
            }
            Ok(by_instance) => by_instance,
            Err(why) => {
                part.messages.push(why);
                return part;
            }
        };
        let instances: Vec<(String, usize)> = by_instance.iter().map(|(id, s)| (id.clone(), s.len())).collect();
        let mine = spread(&instances, slice.count).into_iter().nth(slice.index).unwrap_or_default();
        for id in mine {
            let resource = Resource {
                id: id.clone(),
                region: region.to_string(),
                kind: ResourceKind::Ec2Instance,
                tags: BTreeMap::new(),
                arn: None,
                // The first worker's session records it, from its own scope.
                configuration: None,
            };
            let (backups, warnings) = self.image_backups(plan, &resource, &by_instance[&id]).await;
            finished.lock().unwrap_or_else(|e| e.into_inner()).push(PartResource { id, backups, warnings });
        }
        part
    }

    /// Spreads the image-level work of each region with instances whose snapshots were made
    /// over that region's workers ([`workers_for`], [`spread`]): the home region's first slice
    /// here, every other slice on a worker launched in its region. Waits for the parts and
    /// puts the points and warnings on the resources' records. Returns messages for the
    /// session.
    pub(crate) async fn gather_parts(&self, plan: &Plan<'_>, resources: &mut [ResourceRecord]) -> Vec<String> {
        let waiting = |region: &str, r: &ResourceRecord| {
            r.region == region
                && r.kind == ResourceKind::Ec2Instance
                && r.snapshots.iter().any(|s| s.kind == SnapshotKind::Snapshot)
        };
        let mut jobs: Vec<SliceJob> = Vec::new();
        for region in &plan.delegated {
            let instances: Vec<(String, usize)> = resources
                .iter()
                .filter(|r| waiting(region, r))
                .map(|r| (r.id.clone(), r.snapshots.iter().filter(|s| s.kind == SnapshotKind::Snapshot).count()))
                .collect();
            if instances.is_empty() {
                continue;
            }
            let count = workers_for(&instances, plan.policy.volumes_per_worker());
            for (index, ids) in spread(&instances, count).into_iter().enumerate() {
                let slice = Slice { index, count };
                let runs_on = if *region == self.aws.home_region && index == 0 {
                    Ok(None)
                } else {
                    self.launch_part(plan, region, slice).await.map(Some)
                };
                jobs.push(SliceJob { region: region.clone(), slice, instances: ids, runs_on });
            }
        }
        let finished: Vec<std::sync::Mutex<Vec<PartResource>>> = jobs.iter().map(|_| Default::default()).collect();
        let work = jobs.iter().zip(&finished).map(|(job, finished)| async move {
            let (region, slice) = (&job.region, &job.slice);
            match &job.runs_on {
                Ok(None) => {
                    let found = self.run_snapshots(&plan.policy.name, &plan.run_id, region).await;
                    let mut part = self.part_work(plan, region, *slice, found, finished).await;
                    part.resources = std::mem::take(&mut *finished.lock().unwrap_or_else(|e| e.into_inner()));
                    Ok(part)
                }
                Ok(Some(instance)) => self.await_part(plan, &slice.label(region), region, instance).await,
                Err(why) => Err(why.clone()),
            }
        });
        let outcomes = futures::future::join_all(work).await;

        let mut messages = Vec::new();
        for (job, outcome) in jobs.iter().zip(outcomes) {
            let label = job.slice.label(&job.region);
            let records = resources.iter_mut().filter(|r| r.region == job.region && job.instances.contains(&r.id));
            match outcome {
                Ok(part) => {
                    let worker = part.instance_id.clone().unwrap_or_else(|| "(unknown instance)".into());
                    messages.extend(part.messages.iter().map(|m| format!("the {label} worker {worker}: {m}")));
                    for record in records {
                        match part.resources.iter().find(|p| p.id == record.id) {
                            Some(done) => {
                                record.backups.extend(done.backups.iter().cloned());
                                if !done.warnings.is_empty() {
                                    record.outcome = record.outcome.max(Outcome::Warning);
                                    record.warnings.extend(done.warnings.iter().cloned());
                                }
                            }
                            None => {
                                record.outcome = record.outcome.max(Outcome::Warning);
                                record.warnings.push(format!(
                                    "the {label} worker {worker} made no image-level point of {}",
                                    record.id
                                ));
                            }
                        }
                    }
                }
                Err(why) => {
                    for record in records {
                        record.outcome = record.outcome.max(Outcome::Warning);
                        record.warnings.push(format!("image-level backup in {label}: {why}"));
                    }
                }
            }
        }
        // Retention in the repositories sees the points the region workers made.
        for id in plan.targets.iter().map(|t| t.repository_id.as_str()).collect::<BTreeSet<_>>() {
            if let Err(e) = plan.repositories.reload(self, id).await {
                tracing::warn!(repository = %id, "reading the repository's points after the region workers: {e}");
            }
        }
        messages
    }

    /// Launches `region`'s worker for its part of the run, from the first of the policy's
    /// worker configurations that is in that region; returns the instance id.
    async fn launch_part(&self, plan: &Plan<'_>, region: &str, slice: Slice) -> Result<String, String> {
        let policy = plan.policy;
        let ec2 = self.aws.ec2(region);
        let template =
            ec2::find_launch_template_among(&ec2, &policy.worker_configuration_ids).await.map_err(|e| match e {
                AwsError::NotFound => format!(
                    "none of the policy's worker configurations is in {region}, where its volumes are read: add a \
                     coffer_worker_configuration with region = {region:?} to worker_configuration_ids"
                ),
                e => format!("looking up the policy's worker configurations in {region}: {e}"),
            })?;
        let rules = plan.rule_names(|_| true);
        let task = PartTask {
            policy: &policy.name,
            launched_for: self.settings.launched_for.as_deref().unwrap_or_default(),
            rules: &rules,
            run_id: &plan.run_id,
            region,
            slice,
        };
        let user_data = user_data_for_part(&self.catalog_location, &self.aws.home_region, &task, policy.max_run_time());
        let label = slice.label(region);
        let tags = [(TAG_POLICY, policy.name.as_str()), (TAG_RUN, plan.run_id.as_str()), (TAG_PART, label.as_str())]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let token = client_token(&policy.name, &plan.run_id, &label);
        let launch =
            WorkerLaunch { launch_template_id: &template, user_data: &user_data, tags: &tags, client_token: &token };
        let instance = ec2::launch_worker(&ec2, &launch)
            .await
            .map_err(|e| format!("launching its worker from launch template {template}: {e}"))?;
        tracing::info!(part = %label, %instance, %template, "region worker launched");
        Ok(instance)
    }

    /// Waits for the part `label` (in `region`) of the run. Gives up when the worker ended
    /// without one (its record says why), or recorded no start within
    /// [`PART_START_TIMEOUT`]; the run's own `max_run_time` bounds the rest.
    async fn await_part(&self, plan: &Plan<'_>, label: &str, region: &str, instance: &str) -> Result<RunPart, String> {
        let catalog = self.catalog();
        let name = RunPart::name(&plan.policy.name, &plan.run_id, label);
        let launched = Utc::now();
        let mut pause = self.settings.poll_interval.min(MAX_PART_POLL);
        loop {
            match catalog.get::<RunPart>(&name).await {
                Ok(doc) => return Ok(doc.body),
                Err(CatalogError::NotFound) => {}
                Err(e) => tracing::warn!(part = %name, "reading the run's part: {e}"),
            }
            match self.worker_record(&plan.policy.name, instance, launched).await {
                Some(record) if record.ended_at.is_some() => {
                    // It may have written its part just before it ended.
                    if let Ok(doc) = catalog.get::<RunPart>(&name).await {
                        return Ok(doc.body);
                    }
                    let why = record.reason().map(str::to_string).unwrap_or_else(|| match record.exit_status {
                        Some(code) => format!("exit status {code}"),
                        None => "no exit status".into(),
                    });
                    return Err(format!(
                        "its worker {instance} ended without recording its part: {why}; its log: s3://{}/{}",
                        self.catalog_location.bucket, record.log_key
                    ));
                }
                Some(_) => {}
                None if (Utc::now() - launched).to_std().unwrap_or_default() > PART_START_TIMEOUT => {
                    return Err(format!(
                        "its worker {instance} recorded no start within {} minutes of its launch: check the \
                         instance's console output (aws ec2 get-console-output --region {region} --instance-id \
                         {instance})",
                        PART_START_TIMEOUT.as_secs() / 60
                    ));
                }
                None => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PART_POLL);
        }
    }

    /// The record of worker `instance` of `policy`, started after `since`.
    async fn worker_record(&self, policy: &str, instance: &str, since: DateTime<Utc>) -> Option<WorkerRecord> {
        let catalog = self.catalog();
        let days: BTreeSet<String> = [since, Utc::now()].iter().map(|t| t.format("%Y%m%d").to_string()).collect();
        for day in days {
            let names = match catalog.list(Kind::WorkerRecord, &format!("{policy}/{day}")).await {
                Ok(names) => names,
                Err(e) => {
                    tracing::warn!("listing the worker records of {policy}: {e}");
                    continue;
                }
            };
            if let Some(name) = names.iter().find(|n| n.ends_with(&format!("-{instance}"))) {
                return catalog.get::<WorkerRecord>(name).await.ok().map(|d| d.body);
            }
        }
        None
    }
}

/// How many workers a region's image-level work takes: enough that none reads more than
/// `per_worker` volumes, at most one per instance and [`MAX_WORKERS_PER_REGION`].
pub fn workers_for(instances: &[(String, usize)], per_worker: u32) -> usize {
    let volumes: usize = instances.iter().map(|(_, v)| v).sum();
    volumes.div_ceil(per_worker.max(1) as usize).clamp(1, instances.len().clamp(1, MAX_WORKERS_PER_REGION))
}

/// Spreads instances (id, volumes) over `count` workers, biggest first onto the least loaded
/// (ties: by id, then the lower slice), so the first worker and the region's workers, given
/// the same instances, compute the same slices. Slice order is the result's order.
pub fn spread(instances: &[(String, usize)], count: usize) -> Vec<Vec<String>> {
    let count = count.max(1);
    let mut order: Vec<&(String, usize)> = instances.iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut slices: Vec<(usize, Vec<String>)> = vec![(0, Vec::new()); count];
    for (id, volumes) in order {
        let lightest = (0..count).min_by_key(|i| (slices[*i].0, *i)).unwrap_or(0);
        slices[lightest].0 += volumes;
        slices[lightest].1.push(id.clone());
    }
    slices.into_iter().map(|(_, ids)| ids).collect()
}

/// RunInstances' idempotency token for a region's worker of a run: the same launch retried
/// gets the same instance; other policies, runs and regions get their own (at most 64
/// characters, as EC2 allows).
fn client_token(policy: &str, run_id: &str, region: &str) -> String {
    let digest = Sha256::digest(format!("{policy}\0{run_id}\0{region}"));
    let hex: String = digest.iter().take(24).map(|b| format!("{b:02x}")).collect();
    format!("coffer-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instances(volumes: &[usize]) -> Vec<(String, usize)> {
        volumes.iter().enumerate().map(|(i, v)| (format!("i-{i:03}"), *v)).collect()
    }

    #[test]
    fn a_region_takes_enough_workers_for_its_volumes_within_the_bounds() {
        assert_eq!(workers_for(&instances(&[2; 250]), 50), 10, "500 volumes, 50 a worker");
        assert_eq!(workers_for(&instances(&[1; 50]), 50), 1);
        assert_eq!(workers_for(&instances(&[1; 51]), 50), 2);
        assert_eq!(workers_for(&instances(&[40]), 10), 1, "one instance is one worker's, however big");
        assert_eq!(workers_for(&instances(&[1; 5000]), 50), MAX_WORKERS_PER_REGION);
        assert_eq!(workers_for(&[], 50), 1);
    }

    #[test]
    fn instances_are_spread_evenly_and_the_same_way_every_time() {
        let all = instances(&[8, 1, 3, 3, 2, 1, 1, 5]);
        let slices = spread(&all, 3);
        let load =
            |slice: &[String]| -> usize { slice.iter().map(|id| all.iter().find(|(i, _)| i == id).unwrap().1).sum() };
        assert_eq!(slices.iter().map(|s| load(s)).collect::<Vec<_>>(), [8, 8, 8]);
        assert_eq!(slices, spread(&all, 3), "deterministic");
        let mut reversed = all.clone();
        reversed.reverse();
        assert_eq!(slices, spread(&reversed, 3), "whatever order the instances were found in");
        let mut every: Vec<String> = slices.concat();
        every.sort();
        assert_eq!(every, all.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>(), "each instance once");
        assert_eq!(spread(&all, 1).concat().len(), all.len(), "one worker takes them all");
    }

    #[test]
    fn client_tokens_fit_ec2_and_differ_per_policy_run_and_region() {
        let token = client_token("prod", "20261204-0300", "eu-west-1");
        assert!(token.len() <= 64 && token.is_ascii(), "{token}");
        assert_eq!(token, client_token("prod", "20261204-0300", "eu-west-1"));
        for other in [
            client_token("prod2", "20261204-0300", "eu-west-1"),
            client_token("prod", "20261204-0400", "eu-west-1"),
            client_token("prod", "20261204-0300", "eu-west-2"),
        ] {
            assert_ne!(token, other);
        }
    }
}
