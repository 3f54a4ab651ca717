//! A policy's history as users read it (`coffer sessions`, `coffer_sessions`,
//! `coffer_protection`): the sessions runs recorded, and in the gaps what the catalog shows
//! of runs that recorded none. A scheduled worker that ended — or vanished — before its run
//! wrote a session is a Failed entry with the worker's own reason and where its log is; a
//! due firing that nothing started within its grace is a Missed entry. [`reconcile`] is pure
//! (tested beside it); [`history`] reads the catalog for it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};

use super::agent::{due_times, latest_due};
use super::session::{Outcome, RetentionRecord, Session};
use super::{Executor, ExecutorError, scheduled_run_id};
use coffer_aws::catalog::{CatalogError, Kind};
use coffer_model::CatalogDocument;
use coffer_model::CatalogLocation;
use coffer_model::policy::PolicyDocument;
use coffer_model::worker::{KILL_AFTER_LIMIT_SECS, SCHEDULED_START_WINDOW_SECS, WorkerRecord};

/// How far back due firings are checked for Missed.
pub const MISSED_LOOKBACK: TimeDelta = TimeDelta::days(7);

/// How long after its start a worker that never recorded its end counts as lost, beyond the
/// longest its run may take (`max_run_time` and the boot script's kill margin).
const LOST_MARGIN: TimeDelta = TimeDelta::minutes(15);

/// What the catalog holds of a policy's runs.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// Recorded sessions, newest first.
    pub sessions: Vec<Session>,
    /// The policy has older sessions than these: nothing older than the oldest of them is
    /// judged (its evidence was not read).
    pub truncated: bool,
    /// The policy's worker records, any order.
    pub workers: Vec<WorkerRecord>,
    /// When the policy document was last written: due times before it were due under rules
    /// that may no longer be these, so they are not judged Missed.
    pub policy_since: DateTime<Utc>,
}

/// How long after a due time a firing has to show a sign of life before it is Missed. With
/// workers (schedules), a worker records its start within a minute of booting, and Scheduler
/// stops retrying a launch [`SCHEDULED_START_WINDOW_SECS`] after the due time; `coffer agent`
/// records only the finished session, so its grace includes the policy's `max_run_time`.
pub fn missed_grace(policy: &PolicyDocument) -> TimeDelta {
    let start_window = TimeDelta::seconds(SCHEDULED_START_WINDOW_SECS) + TimeDelta::minutes(10);
    if policy.worker_configuration_ids.is_empty() {
        start_window + TimeDelta::from_std(policy.max_run_time()).unwrap_or(TimeDelta::hours(12))
    } else {
        start_window
    }
}

/// The firing a scheduled worker was launched for: what `coffer run --scheduled` computes
/// when it starts (the rule's latest due time in the start window).
fn firing_of(policy: &PolicyDocument, worker: &WorkerRecord) -> Option<DateTime<Utc>> {
    let rule = policy.rules.iter().find(|r| r.name == worker.rule)?;
    let window = TimeDelta::seconds(SCHEDULED_START_WINDOW_SECS);
    latest_due(rule, worker.started_at - window, worker.started_at)
}

/// The history: recorded sessions and the entries that stand for missing ones, newest first,
/// at most `limit`.
pub fn reconcile(
    policy: &PolicyDocument,
    evidence: Evidence,
    catalog: &CatalogLocation,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<Session> {
    let floor = match (evidence.truncated, evidence.sessions.last()) {
        (true, Some(oldest)) => oldest.started_at,
        _ => DateTime::<Utc>::MIN_UTC,
    };
    let recorded: BTreeSet<&str> = evidence.sessions.iter().map(|s| s.run_id.as_str()).collect();
    let max_run = TimeDelta::from_std(policy.max_run_time()).unwrap_or(TimeDelta::hours(12));
    let lost_after = max_run + TimeDelta::seconds(KILL_AFTER_LIMIT_SECS as i64 + 60) + LOST_MARGIN;

    // Workers whose run recorded nothing, by the run they were launched for.
    let mut failed: BTreeMap<String, Session> = BTreeMap::new();
    let mut firings_started = BTreeSet::new();
    for worker in evidence.workers.iter().filter(|w| w.policy == policy.name && w.started_at >= floor) {
        // Ended well: it ran the firing (its session says more), or left it to another (which
        // took the claim, or was launched for an image-level rule due at the same minute),
        // whose session or record answers for it; else the firing is Missed.
        if worker.ended_at.is_some() && matches!(worker.exit_status, Some(0 | 3)) {
            continue;
        }
        let firing = firing_of(policy, worker);
        firings_started.extend(firing);
        let run_id = firing.map(scheduled_run_id).unwrap_or_else(|| format!("worker-{}", worker.instance_id));
        if recorded.contains(run_id.as_str()) {
            continue;
        }
        let log = format!("s3://{}/{}", catalog.bucket, worker.log_key);
        let (finished_at, message) = match (worker.ended_at, worker.exit_status) {
            (Some(ended), status) => (
                ended,
                format!(
                    "worker {} (launched for rule {}) ended before its run recorded a session: {}; its log: {log}",
                    worker.instance_id,
                    worker.rule,
                    worker.reason().map(str::to_string).unwrap_or_else(|| match status {
                        Some(code) => format!("exit status {code}"),
                        None => "no exit status".to_string(),
                    })
                ),
            ),
            (None, _) if now - worker.started_at > lost_after => (
                worker.started_at,
                format!(
                    "worker {} (launched for rule {}) started at {} and never recorded its end: the instance stopped \
                     before its exit trap ran (terminated, or its host failed); its console output \
                     (aws ec2 get-console-output --instance-id {}) and {log} may say more",
                    worker.instance_id,
                    worker.rule,
                    worker.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    worker.instance_id
                ),
            ),
            // Still running.
            (None, _) => continue,
        };
        let entry = failed.entry(run_id.clone()).or_insert_with(|| Session {
            format_version: Session::FORMAT_VERSION,
            policy: policy.name.clone(),
            run_id,
            rules: Vec::new(),
            started_at: worker.started_at,
            finished_at,
            outcome: Outcome::Failed,
            messages: Vec::new(),
            resources: Vec::new(),
            retention: RetentionRecord::default(),
        });
        if !entry.rules.contains(&worker.rule) {
            entry.rules.push(worker.rule.clone());
        }
        entry.started_at = entry.started_at.min(worker.started_at);
        entry.finished_at = entry.finished_at.max(finished_at);
        entry.messages.push(message);
    }

    let mut entries: Vec<Session> = evidence.sessions;
    entries.extend(failed.into_values());
    entries.extend(missed(policy, &entries, &firings_started, floor.max(evidence.policy_since), now, limit));
    entries.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| b.run_id.cmp(&a.run_id)));
    entries.truncate(limit);
    entries
}

/// The firings due after `since` (and in the look-back) that no session, no worker start
/// and no run by hand answered within the grace: one entry per due minute.
fn missed(
    policy: &PolicyDocument,
    entries: &[Session],
    firings_started: &BTreeSet<DateTime<Utc>>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<Session> {
    if !policy.enabled {
        return Vec::new();
    }
    let grace = missed_grace(policy);
    let since = since.max(now - MISSED_LOOKBACK);
    let mut by_minute: BTreeMap<DateTime<Utc>, Vec<String>> = BTreeMap::new();
    for rule in &policy.rules {
        let covers = |s: &Session, due: DateTime<Utc>| {
            (s.rules.is_empty() || s.rules.contains(&rule.name))
                && (s.run_id == scheduled_run_id(due) || (s.started_at >= due && s.started_at <= due + grace))
        };
        let mut found = 0;
        for due in due_times(rule, since, now - grace).into_iter().rev() {
            if firings_started.contains(&due) || entries.iter().any(|s| covers(s, due)) {
                continue;
            }
            by_minute.entry(due).or_default().push(rule.name.clone());
            found += 1;
            if found == limit {
                break;
            }
        }
    }
    let how = if policy.worker_configuration_ids.is_empty() {
        "no coffer agent ran it (is one running with this catalog?)".to_string()
    } else {
        "no worker recorded its start: check the rule's schedule (coffer-<policy>-<rule>), the policy's \
         dead_letter_queue_arn, and the console output of the workers launched then (a worker without \
         credentials cannot write to the catalog)"
            .to_string()
    };
    by_minute
        .into_iter()
        .map(|(due, rules)| Session {
            format_version: Session::FORMAT_VERSION,
            policy: policy.name.clone(),
            run_id: scheduled_run_id(due),
            messages: vec![format!(
                "rule {} was due at {} and nothing ran it within {} min: {how}",
                rules.join(" and "),
                due.format("%Y-%m-%d %H:%M UTC"),
                grace.num_minutes()
            )],
            rules,
            started_at: due,
            finished_at: due,
            outcome: Outcome::Missed,
            resources: Vec::new(),
            retention: RetentionRecord::default(),
        })
        .collect()
}

/// The history of a policy as of `now`: its newest `limit` entries.
pub async fn history(
    executor: &Executor,
    policy: &PolicyDocument,
    limit: usize,
    now: DateTime<Utc>,
) -> Result<Vec<Session>, ExecutorError> {
    let catalog = executor.catalog();
    let read = |what: &str| {
        let what = format!("{what} of {}", policy.name);
        move |cause| ExecutorError::Catalog { what, cause }
    };
    let since = match catalog.get::<PolicyDocument>(&policy.name).await {
        Ok(doc) => doc.last_modified.unwrap_or(now),
        Err(CatalogError::NotFound) => now,
        Err(cause) => return Err(read("the backup policy")(cause)),
    };
    let sessions = super::session::recent(&catalog, &policy.name, limit).await.map_err(read("the sessions"))?;
    let truncated = sessions.len() == limit;
    let floor = sessions.last().filter(|_| truncated).map(|s| s.started_at - TimeDelta::hours(1));
    let names =
        catalog.list(Kind::WorkerRecord, &format!("{}/", policy.name)).await.map_err(read("the worker records"))?;
    let mut workers = Vec::new();
    // Names sort by start time; only those that can matter are read.
    for name in names.iter().rev() {
        let started =
            name.rsplit('/').next().and_then(|n| n.get(..16)).and_then(|stamp| {
                chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").ok().map(|t| t.and_utc())
            });
        if started.is_some_and(|t| t < now - MISSED_LOOKBACK || floor.is_some_and(|f| t < f)) {
            break;
        }
        match catalog.get::<WorkerRecord>(name).await {
            Ok(doc) => workers.push(doc.body),
            Err(CatalogError::NotFound) => {}
            // A record a worker half-wrote must not hide the rest of the history.
            Err(e) => tracing::warn!(record = %name, error = %e, "skipping an unreadable worker record"),
        }
    }
    let evidence = Evidence { sessions, truncated, workers, policy_since: since };
    Ok(reconcile(policy, evidence, &executor.catalog_location, now, limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_model::policy::{Rule, Source};

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn policy(workers: bool) -> PolicyDocument {
        PolicyDocument {
            format_version: 1,
            name: "prod".into(),
            kind: coffer_model::policy::PolicyType::Ec2,
            description: None,
            enabled: true,
            source: Source {
                regions: vec!["eu-west-1".into()],
                ids: vec![],
                tags: Default::default(),
                exclude_ids: vec![],
            },
            rules: vec![Rule {
                name: "daily".into(),
                cron: "0 3 * * *".into(),
                timezone: "UTC".into(),
                snapshot: None,
                replicate: None,
                backup: None,
                archive: None,
            }],
            worker_configuration_ids: if workers { vec!["lt-0abc".into()] } else { vec![] },
            scheduler_role_arn: None,
            tags: Default::default(),
            max_run_time: Some("2h".into()),
            snapshot_instance_type: None,
            volumes_per_worker: None,
        }
    }

    fn session(run_id: &str, started: &str, outcome: Outcome) -> Session {
        Session {
            format_version: 1,
            policy: "prod".into(),
            run_id: run_id.into(),
            rules: vec!["daily".into()],
            started_at: at(started),
            finished_at: at(started),
            outcome,
            messages: vec![],
            resources: vec![],
            retention: RetentionRecord::default(),
        }
    }

    fn worker(started: &str, ended: Option<(&str, i32, &str)>) -> WorkerRecord {
        WorkerRecord {
            format_version: 1,
            instance_id: "i-0abc".into(),
            policy: "prod".into(),
            rule: "daily".into(),
            task: "run --policy prod --rule daily --scheduled".into(),
            started_at: at(started),
            log_key: "worker-logs/i-0abc.log".into(),
            ended_at: ended.map(|(t, _, _)| at(t)),
            exit_status: ended.map(|(_, s, _)| s),
            reason: ended.map(|(_, _, r)| r.to_string()),
            part: None,
        }
    }

    fn catalog() -> CatalogLocation {
        CatalogLocation::new(Some("cat"), None, "123456789012", "eu-west-1")
    }

    fn summary(entries: &[Session]) -> Vec<(String, Outcome)> {
        entries.iter().map(|s| (s.run_id.clone(), s.outcome)).collect()
    }

    fn evidence(sessions: Vec<Session>, workers: Vec<WorkerRecord>) -> Evidence {
        Evidence { sessions, truncated: false, workers, policy_since: at("2026-11-28T12:00:00Z") }
    }

    #[test]
    fn recorded_days_pass_and_a_day_nothing_started_is_missed() {
        let sessions = vec![session("20261130-0300", "2026-11-30T03:02:00Z", Outcome::Success)];
        let workers = vec![worker("2026-11-30T03:01:00Z", Some(("2026-11-30T03:09:00Z", 0, "")))];
        let now = at("2026-12-01T05:00:00Z");
        let entries = reconcile(&policy(true), evidence(sessions, workers), &catalog(), now, 10);
        assert_eq!(
            summary(&entries),
            [
                ("20261201-0300".into(), Outcome::Missed),
                ("20261130-0300".into(), Outcome::Success),
                ("20261129-0300".into(), Outcome::Missed)
            ],
            "{entries:#?}"
        );
        assert!(entries[0].messages[0].starts_with("rule daily was due at 2026-12-01 03:00 UTC and nothing ran it within 70 min: no worker recorded its start"), "{}", entries[0].messages[0]);
    }

    #[test]
    fn within_the_grace_nothing_is_missed_yet_and_a_running_worker_counts() {
        let now = at("2026-12-01T04:05:00Z");
        let entries = reconcile(&policy(true), evidence(vec![], vec![]), &catalog(), now, 10);
        assert_eq!(
            summary(&entries),
            [("20261129-0300".into(), Outcome::Missed), ("20261130-0300".into(), Outcome::Missed)]
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
        );
        let running = vec![worker("2026-12-01T03:20:00Z", None)];
        let later = at("2026-12-01T05:00:00Z");
        let entries = reconcile(&policy(true), evidence(vec![], running), &catalog(), later, 1);
        assert_eq!(
            summary(&entries),
            [("20261130-0300".into(), Outcome::Missed)],
            "the running firing is neither missed nor failed"
        );
    }

    #[test]
    fn a_worker_that_left_its_firing_to_another_does_not_answer_for_it() {
        // Exit 0 without a session: the claim was another worker's (or an image-level rule's
        // worker was to run it). Nothing else answered: the firing is Missed.
        let left = vec![worker("2026-11-30T03:01:00Z", Some(("2026-11-30T03:02:00Z", 0, "")))];
        let now = at("2026-11-30T04:30:00Z");
        let entries = reconcile(&policy(true), evidence(vec![], left.clone()), &catalog(), now, 10);
        assert!(summary(&entries).contains(&("20261130-0300".into(), Outcome::Missed)), "{entries:#?}");
        // The one it left it to still running: not missed.
        let mut running = worker("2026-11-30T03:03:00Z", None);
        running.instance_id = "i-0def".into();
        let entries = reconcile(&policy(true), evidence(vec![], [left, vec![running]].concat()), &catalog(), now, 10);
        assert!(!summary(&entries).iter().any(|(run, _)| run == "20261130-0300"), "{entries:#?}");
    }

    #[test]
    fn before_the_policy_was_written_nothing_is_judged() {
        let mut e = evidence(vec![], vec![]);
        e.policy_since = at("2026-12-01T03:30:00Z");
        assert!(reconcile(&policy(true), e, &catalog(), at("2026-12-01T23:00:00Z"), 10).is_empty());
        let mut disabled = policy(true);
        disabled.enabled = false;
        assert!(reconcile(&disabled, evidence(vec![], vec![]), &catalog(), at("2026-12-01T23:00:00Z"), 10).is_empty());
    }

    #[test]
    fn a_worker_that_failed_before_its_run_recorded_anything_is_a_failed_session_with_its_reason() {
        let workers = vec![worker(
            "2026-12-01T03:01:00Z",
            Some((
                "2026-12-01T03:01:30Z",
                1,
                "cannot fetch s3://cat/bin/coffer-linux-x86_64 (run coffer publish, and check the instance profile)",
            )),
        )];
        let mut e = evidence(vec![], workers);
        e.policy_since = at("2026-12-01T00:00:00Z");
        let entries = reconcile(&policy(true), e, &catalog(), at("2026-12-01T09:00:00Z"), 10);
        assert_eq!(summary(&entries), [("20261201-0300".into(), Outcome::Failed)]);
        assert_eq!(entries[0].rules, ["daily"]);
        assert_eq!(
            entries[0].messages,
            ["worker i-0abc (launched for rule daily) ended before its run recorded a session: cannot fetch \
              s3://cat/bin/coffer-linux-x86_64 (run coffer publish, and check the instance profile); its log: \
              s3://cat/worker-logs/i-0abc.log"]
        );
    }

    #[test]
    fn a_worker_whose_run_recorded_a_session_adds_nothing() {
        let workers = vec![worker("2026-12-01T03:01:00Z", Some(("2026-12-01T05:01:00Z", 1, "timed out")))];
        let sessions = vec![session("20261201-0300", "2026-12-01T03:01:10Z", Outcome::Failed)];
        let mut e = evidence(sessions, workers);
        e.policy_since = at("2026-12-01T00:00:00Z");
        let entries = reconcile(&policy(true), e, &catalog(), at("2026-12-01T09:00:00Z"), 10);
        assert_eq!(summary(&entries), [("20261201-0300".into(), Outcome::Failed)]);
        assert!(entries[0].messages.is_empty(), "the run's own session, not a made-up one");
    }

    #[test]
    fn a_worker_that_never_ended_is_lost_after_its_longest_possible_run() {
        let mut e = evidence(vec![], vec![worker("2026-12-01T03:01:00Z", None)]);
        e.policy_since = at("2026-12-01T00:00:00Z");
        // max_run_time 2h + 10 min kill margin + 1 min + 15 min.
        assert!(reconcile(&policy(true), e.clone(), &catalog(), at("2026-12-01T05:20:00Z"), 10).is_empty());
        let entries = reconcile(&policy(true), e, &catalog(), at("2026-12-01T05:30:00Z"), 10);
        assert_eq!(summary(&entries), [("20261201-0300".into(), Outcome::Failed)]);
        assert!(entries[0].messages[0].contains("never recorded its end"), "{:?}", entries[0].messages);
        assert!(entries[0].messages[0].contains("aws ec2 get-console-output --instance-id i-0abc"));
    }

    #[test]
    fn agent_policies_get_their_max_run_time_as_grace_and_a_hand_run_counts() {
        let mut e = evidence(vec![], vec![]);
        e.policy_since = at("2026-12-01T00:00:00Z");
        // 1 h 10 min + 2 h.
        assert!(reconcile(&policy(false), e.clone(), &catalog(), at("2026-12-01T06:05:00Z"), 10).is_empty());
        let entries = reconcile(&policy(false), e, &catalog(), at("2026-12-01T06:15:00Z"), 10);
        assert_eq!(summary(&entries), [("20261201-0300".into(), Outcome::Missed)]);
        assert!(entries[0].messages[0].ends_with("no coffer agent ran it (is one running with this catalog?)"));
        let by_hand = vec![session("20261201-031502-ab12", "2026-12-01T03:15:02Z", Outcome::Success)];
        let mut e = evidence(by_hand, vec![]);
        e.policy_since = at("2026-12-01T00:00:00Z");
        let entries = reconcile(&policy(false), e, &catalog(), at("2026-12-01T09:00:00Z"), 10);
        assert_eq!(summary(&entries), [("20261201-031502-ab12".into(), Outcome::Success)]);
    }

    #[test]
    fn nothing_older_than_the_oldest_session_read_is_judged() {
        let sessions = vec![session("20261201-0300", "2026-12-01T03:02:00Z", Outcome::Success)];
        let mut e = evidence(sessions, vec![]);
        e.truncated = true;
        let entries = reconcile(&policy(true), e, &catalog(), at("2026-12-01T09:00:00Z"), 1);
        assert_eq!(summary(&entries), [("20261201-0300".into(), Outcome::Success)]);
    }
}
