//! `coffer agent`: the single-machine scheduler. It fires due rules itself,
//! in this process (on AWS, EventBridge Scheduler launches workers
//! instead).
//!
//! For every enabled policy and rule it keeps a mark in the catalog
//! (`agent/<policy>.json`): the due time it last handled. A rule is due
//! when its cron has an occurrence after the mark and at or before now; it
//! then fires once for the latest such occurrence (a long outage does not
//! replay every missed day). Rules of one policy due at the same minute
//! fire as one run. The mark moves only after the run has finished, and the
//! run id is the due minute, so an agent killed mid-run fires the same run
//! again on restart and the run reuses what the first attempt made:
//! nothing fires twice, nothing due is skipped. A policy or rule the agent
//! has not seen before starts from "now" (no back-filling of history); a
//! disabled policy's due occurrences are marked without running.

use coffer_model::CatalogDocument;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::run::{Progress, RunRequest};
use super::session::{self, Session};
use super::{Executor, ExecutorError, scheduled_run_id};
use coffer_aws::catalog::CatalogError;
use coffer_model::agent::Marks;
use coffer_model::policy::Rule;

/// Where the agent learns the time: the system clock, or a test's.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told (tests).
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

/// Rules of one policy to run together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub policy: String,
    pub rules: Vec<String>,
    pub due: DateTime<Utc>,
}

impl Firing {
    pub fn run_id(&self) -> String {
        scheduled_run_id(self.due)
    }
}

pub struct Agent<'a> {
    executor: &'a Executor,
    clock: Arc<dyn Clock>,
}

impl<'a> Agent<'a> {
    pub fn new(executor: &'a Executor, clock: Arc<dyn Clock>) -> Self {
        Self { executor, clock }
    }

    /// What is due now, oldest first. Marks of new policies and rules are
    /// started at now, and due occurrences of disabled policies are marked.
    pub async fn due(&self) -> Result<Vec<Firing>, ExecutorError> {
        let now = self.clock.now();
        let mut firings = Vec::new();
        for (name, policy) in self.executor.policies().await? {
            let (mut marks, etag) = self.marks(&name).await?;
            let mut changed = false;
            let mut by_minute: BTreeMap<DateTime<Utc>, Vec<String>> = BTreeMap::new();
            for rule in &policy.rules {
                let Some(mark) = marks.rules.get(&rule.name).copied() else {
                    marks.rules.insert(rule.name.clone(), now);
                    changed = true;
                    continue;
                };
                if let Some(due) = latest_due(rule, mark, now) {
                    if policy.enabled {
                        by_minute.entry(due).or_default().push(rule.name.clone());
                    } else {
                        marks.rules.insert(rule.name.clone(), due);
                        changed = true;
                    }
                }
            }
            // Rules that left the policy keep no mark.
            let before = marks.rules.len();
            marks.rules.retain(|rule, _| policy.rules.iter().any(|r| &r.name == rule));
            changed |= marks.rules.len() != before;
            if changed {
                self.save_marks(&name, &marks, etag.as_deref()).await?;
            }
            firings.extend(by_minute.into_iter().map(|(due, rules)| Firing { policy: name.clone(), rules, due }));
        }
        firings.sort_by(|a, b| (a.due, &a.policy).cmp(&(b.due, &b.policy)));
        Ok(firings)
    }

    /// Runs a firing, then moves its rules' marks to its due time.
    pub async fn fire(&self, firing: &Firing, progress: &dyn Progress) -> Result<Session, ExecutorError> {
        let request = RunRequest {
            policy: firing.policy.clone(),
            rules: firing.rules.clone(),
            run_id: Some(firing.run_id()),
            time: firing.due,
        };
        let session = match self.executor.run(request, progress).await {
            Ok(session) => session,
            // A run that cannot start for a lasting reason (its mapping was
            // deleted, say) is recorded as Failed and marked: retrying it
            // every minute would only repeat the error. A catalog that
            // cannot be read leaves the rule due.
            Err(e) if e.is_lasting() => {
                let session = session::not_started(firing, &e.to_string());
                if let Err(e) = session::save(&session, &self.executor.catalog()).await {
                    tracing::warn!(policy = %firing.policy, "writing the session record: {e}");
                }
                session
            }
            Err(e) => return Err(e),
        };
        let (mut marks, etag) = self.marks(&firing.policy).await?;
        for rule in &firing.rules {
            marks.rules.insert(rule.clone(), firing.due);
        }
        self.save_marks(&firing.policy, &marks, etag.as_deref()).await?;
        Ok(session)
    }

    /// Fires everything due, one after the other.
    pub async fn tick(&self, progress: &dyn Progress) -> Result<Vec<Session>, ExecutorError> {
        let mut sessions = Vec::new();
        for firing in self.due().await? {
            sessions.push(self.fire(&firing, progress).await?);
        }
        Ok(sessions)
    }

    async fn marks(&self, policy: &str) -> Result<(Marks, Option<String>), ExecutorError> {
        match self.executor.catalog().get::<Marks>(policy).await {
            Ok(doc) => Ok((doc.body, Some(doc.etag))),
            Err(CatalogError::NotFound) => {
                Ok((Marks { format_version: Marks::FORMAT_VERSION, rules: BTreeMap::new() }, None))
            }
            Err(cause) => Err(ExecutorError::Catalog { what: format!("the agent marks of {policy}"), cause }),
        }
    }

    /// Conditional, so two agents on one catalog cannot both move a mark.
    async fn save_marks(&self, policy: &str, marks: &Marks, etag: Option<&str>) -> Result<(), ExecutorError> {
        let catalog = self.executor.catalog();
        let written = match etag {
            Some(etag) => catalog.replace(policy, marks, etag).await,
            None => catalog.create(policy, marks).await,
        };
        written
            .map(|_| ())
            .map_err(|cause| ExecutorError::Catalog { what: format!("the agent marks of {policy}"), cause })
    }
}

/// The latest occurrence of the rule's schedule after `mark` and at or
/// before `now`.
pub fn latest_due(rule: &Rule, mark: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron = croner::Cron::new(&rule.cron).parse().ok()?;
    let zone: chrono_tz::Tz = rule.timezone.parse().ok()?;
    // Nothing older than a year is replayed; it also bounds the walk.
    let start = mark.max(now - chrono::TimeDelta::days(366));
    let mut latest = None;
    for occurrence in cron.iter_after(start.with_timezone(&zone)) {
        let occurrence = occurrence.with_timezone(&Utc);
        if occurrence > now {
            break;
        }
        latest = Some(occurrence);
    }
    latest
}

/// Every occurrence of the rule's schedule after `after` and at or before `until`, oldest
/// first (at most 10 000: a minute-by-minute rule over a week).
pub fn due_times(rule: &Rule, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let (Ok(cron), Ok(zone)) = (croner::Cron::new(&rule.cron).parse(), rule.timezone.parse::<chrono_tz::Tz>()) else {
        return Vec::new();
    };
    cron.iter_after(after.with_timezone(&zone))
        .map(|o| o.with_timezone(&Utc))
        .take_while(|o| *o <= until)
        .take(10_000)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(cron: &str, timezone: &str) -> Rule {
        Rule {
            name: "r".into(),
            cron: cron.into(),
            timezone: timezone.into(),
            snapshot: None,
            replicate: None,
            backup: None,
            archive: None,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_rule_is_due_once_for_its_latest_occurrence() {
        let daily = rule("0 2 * * *", "UTC");
        assert_eq!(latest_due(&daily, at("2026-11-22T03:00:00Z"), at("2026-11-23T01:59:59Z")), None);
        assert_eq!(
            latest_due(&daily, at("2026-11-22T03:00:00Z"), at("2026-11-23T02:00:00Z")),
            Some(at("2026-11-23T02:00:00Z"))
        );
        // Three days down: one firing, for the latest day.
        assert_eq!(
            latest_due(&daily, at("2026-11-20T02:00:00Z"), at("2026-11-23T05:00:00Z")),
            Some(at("2026-11-23T02:00:00Z"))
        );
        // Handled already.
        assert_eq!(latest_due(&daily, at("2026-11-23T02:00:00Z"), at("2026-11-23T05:00:00Z")), None);
    }

    #[test]
    fn occurrences_follow_the_rule_timezone() {
        let berlin = rule("0 2 * * *", "Europe/Berlin");
        assert_eq!(
            latest_due(&berlin, at("2026-11-22T12:00:00Z"), at("2026-11-23T05:00:00Z")),
            Some(at("2026-11-23T01:00:00Z"))
        );
    }
}
