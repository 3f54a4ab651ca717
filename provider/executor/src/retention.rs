//! Grandfather-father-son retention: which restore points of one series to keep.
//!
//! A *series* is every restore point of one resource, one kind (snapshot, replica, backup,
//! archive) and one location (the region, for replicas); the caller groups points into series
//! and calls [`decide`] once per series. Each point carries the names of the policy rules that
//! made it — rules of one policy that fall due in the same minute run once, so a Sunday point
//! may carry `{daily, weekly}` — and is kept while *any* of those rules still wants it. A daily
//! rule keeping 7 and a monthly rule keeping 12 thus give GFS retention without either rule
//! knowing about the other, and a point two rules want is counted by both but stored once.
//!
//! Each rule of a point votes:
//! - the rule has a retention for this kind → *keep* or *delete*, by [`Retain`];
//! - it has none (removed or renamed in the policy, or it lost e.g. its `replicate` block)
//!   → *unmanaged*.
//!
//! The point is kept if any vote is *keep*; otherwise, if any vote is *unmanaged*, it is kept
//! and reported as unmanaged; otherwise it is deleted. Three safety rules, the first built into
//! the votes and the other two on top of them, keep points whatever the retentions say:
//!
//! 1. **Unmanaged points stay.** Coffer never deletes because configuration disappeared: an
//!    edit that drops a rule must not silently erase that rule's history. Someone who wants it
//!    gone deletes it by hand. This holds even when the point's other rules have let go: a
//!    `{daily, monthly}` point stays for good once `monthly` is removed. A point that names no
//!    rule at all is treated the same way.
//! 2. **Incomplete points stay and do not count.** A snapshot still pending may become the only
//!    good copy, and one in error is cleaned up by whatever handles errors, not by retention.
//!    Not counting them means `Count(7)` keeps seven points one can restore from.
//! 3. **The newest complete point stays.** Under `Days` retention a run of failures would
//!    otherwise age the last good restore point out and leave nothing to restore.
//!
//! Points are ordered by `(time, id)` so that equal times still give one answer.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};

/// How long one rule keeps what it made, for one kind of restore point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retain {
    /// Keep the `n` newest *complete* points carrying the rule; incomplete ones are not
    /// counted, so failures cannot push good points out.
    Count(u32),
    /// Keep points carrying the rule while they are younger than `d` days: kept iff
    /// `time > now − d days`. A point exactly `d` days old is deleted, so a daily rule with
    /// `Days(7)` evaluated at its own run time keeps exactly 7 points (today and 6 before).
    Days(u32),
}

/// One restore point: a snapshot (or the volume snapshots of one instance from one run), a
/// replica, or an image-level backup of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// Unique within the series; breaks ties between equal times.
    pub id: String,
    /// When the run that made it started, UTC.
    pub time: DateTime<Utc>,
    /// Names of the rules that made it (more than one when rules fell due in the same minute).
    pub rules: BTreeSet<String>,
    /// False while pending or in error; such points are never deleted by retention.
    pub complete: bool,
}

/// What retention says about one point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Kept, for every reason that applies, so a report can say why.
    Keep(Vec<KeepReason>),
    /// No rule that made it wants it any more and no safety rule protects it.
    Delete,
}

/// Why a point is kept; displayed as a report says it ("daily: one of the newest 7").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepReason {
    /// One of the newest `count` complete points of `rule`.
    AmongNewest { rule: String, count: u32 },
    /// Younger than `rule`'s `days`.
    YoungerThan { rule: String, days: u32 },
    /// Made by rules the policy no longer has (none at all when `rules` is empty): kept for good.
    Unmanaged { rules: Vec<String> },
    /// The newest complete point of the series.
    NewestComplete,
    /// Pending or in error.
    Incomplete,
}

impl KeepReason {
    /// Kept only because configuration that managed it is gone.
    pub fn is_unmanaged(&self) -> bool {
        matches!(self, KeepReason::Unmanaged { .. })
    }
}

impl std::fmt::Display for KeepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepReason::AmongNewest { rule, count } => write!(f, "{rule}: one of the newest {count}"),
            KeepReason::YoungerThan { rule, days } => write!(f, "{rule}: younger than {days} days"),
            KeepReason::Unmanaged { rules } if rules.is_empty() => f.write_str("unmanaged: made by no rule"),
            KeepReason::Unmanaged { rules } => write!(f, "unmanaged: rules {} not in the policy", rules.join(", ")),
            KeepReason::NewestComplete => f.write_str("newest complete point"),
            KeepReason::Incomplete => f.write_str("incomplete"),
        }
    }
}

/// Decides, for every point of one series, whether retention keeps or deletes it (see the
/// module documentation for the rules and the safety rules).
///
/// `retain` maps rule name → that rule's retention for this series' kind (rules without one
/// for this kind are absent).
/// Returns one verdict per point, in the order given. Points may arrive in any order.
#[must_use]
pub fn decide(points: &[Point], retain: &BTreeMap<String, Retain>, now: DateTime<Utc>) -> Vec<Verdict> {
    // Newest first by (time, id): the order `Count` ranks in, independent of input order.
    let mut newest_first: Vec<usize> = (0..points.len()).collect();
    newest_first.sort_by(|&a, &b| order_key(&points[b]).cmp(&order_key(&points[a])));
    let newest_complete = newest_first.iter().copied().find(|&index| points[index].complete);

    // For each `Count` rule, the indices of the newest `n` complete points carrying it.
    let mut kept_by_count: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for (rule, retention) in retain {
        if let Retain::Count(count) = *retention {
            let kept = newest_first
                .iter()
                .copied()
                .filter(|&index| points[index].complete && points[index].rules.contains(rule))
                .take(usize::try_from(count).unwrap_or(usize::MAX))
                .collect();
            kept_by_count.insert(rule.as_str(), kept);
        }
    }

    points
        .iter()
        .enumerate()
        .map(|(index, point)| {
            let mut reasons = Vec::new();
            let mut unmanaged_rules = Vec::new();
            for rule in &point.rules {
                match retain.get(rule) {
                    None => unmanaged_rules.push(rule.clone()),
                    Some(Retain::Count(count)) => {
                        let among_newest = kept_by_count.get(rule.as_str()).is_some_and(|kept| kept.contains(&index));
                        if among_newest {
                            reasons.push(KeepReason::AmongNewest { rule: rule.clone(), count: *count });
                        }
                    }
                    Some(Retain::Days(days)) => {
                        if is_younger_than(point.time, now, *days) {
                            reasons.push(KeepReason::YoungerThan { rule: rule.clone(), days: *days });
                        }
                    }
                }
            }
            // Unmanaged is reported only when no rule wants the point: a rule that still keeps
            // it is the better explanation; "unmanaged" takes over once that rule lets go.
            if reasons.is_empty() && (point.rules.is_empty() || !unmanaged_rules.is_empty()) {
                reasons.push(KeepReason::Unmanaged { rules: unmanaged_rules });
            }
            if newest_complete == Some(index) {
                reasons.push(KeepReason::NewestComplete);
            }
            if !point.complete {
                reasons.push(KeepReason::Incomplete);
            }
            if reasons.is_empty() { Verdict::Delete } else { Verdict::Keep(reasons) }
        })
        .collect()
}

fn order_key(point: &Point) -> (DateTime<Utc>, &str) {
    (point.time, point.id.as_str())
}

/// `time > now − days`; a cut-off before the earliest representable time keeps everything.
fn is_younger_than(time: DateTime<Utc>, now: DateTime<Utc>, days: u32) -> bool {
    let cutoff = TimeDelta::try_days(i64::from(days)).and_then(|age| now.checked_sub_signed(age));
    cutoff.is_none_or(|cutoff| time > cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike};

    // ---- simulator -------------------------------------------------------------------------

    /// Five-field cron (`minute hour day-of-month month day-of-week`, day of week 0–6 from
    /// Sunday), each field `*` or one number: all the simulations need.
    struct Cron([Option<u32>; 5]);

    impl Cron {
        fn parse(expression: &str) -> Cron {
            let fields: Vec<Option<u32>> = expression
                .split_whitespace()
                .map(|field| if field == "*" { None } else { Some(field.parse().unwrap()) })
                .collect();
            Cron(fields.try_into().unwrap())
        }

        fn is_due(&self, time: DateTime<Utc>) -> bool {
            let actual = [time.minute(), time.hour(), time.day(), time.month(), time.weekday().num_days_from_sunday()];
            self.0.iter().zip(actual).all(|(field, value)| field.is_none_or(|f| f == value))
        }
    }

    struct Rule {
        name: &'static str,
        cron: &'static str,
        retain: Retain,
    }

    fn rule(name: &'static str, cron: &'static str, retain: Retain) -> Rule {
        Rule { name, cron, retain }
    }

    fn describe(policy: &[Rule]) -> String {
        let rules: Vec<String> = policy.iter().map(|r| format!("{} \"{}\" {:?}", r.name, r.cron, r.retain)).collect();
        rules.join(", ")
    }

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() // a Monday
    }

    fn format_time(time: DateTime<Utc>) -> String {
        time.format("%Y-%m-%d %a %H:%M").to_string()
    }

    /// Runs `days` days from 2024-01-01 minute by minute, like the executor: each minute at
    /// which rules of `policy_on(day)` fall due makes ONE point carrying all of them (complete
    /// unless `fails_on(day)`), then `decide` runs at that minute and deleted points are
    /// dropped. Renders what survives, oldest first, with the last run's reasons.
    fn simulate(days: i64, policy_on: impl Fn(i64) -> Vec<Rule>, fails_on: impl Fn(i64) -> bool) -> String {
        let mut points: Vec<Point> = Vec::new();
        let mut made = 0;
        let mut last_run = None;
        for day in 0..days {
            let policy = policy_on(day);
            let crons: Vec<(&str, Cron)> = policy.iter().map(|r| (r.name, Cron::parse(r.cron))).collect();
            let retain: BTreeMap<String, Retain> = policy.iter().map(|r| (r.name.to_string(), r.retain)).collect();
            for minute in 0..24 * 60 {
                let now = start() + TimeDelta::days(day) + TimeDelta::minutes(minute);
                let due: BTreeSet<String> =
                    crons.iter().filter(|(_, cron)| cron.is_due(now)).map(|(name, _)| name.to_string()).collect();
                if due.is_empty() {
                    continue;
                }
                made += 1;
                points.push(Point {
                    id: format!("p-{}", now.format("%Y%m%dT%H%M")),
                    time: now,
                    rules: due,
                    complete: !fails_on(day),
                });
                let verdicts = decide(&points, &retain, now);
                let (kept, deleted): (Vec<_>, Vec<_>) =
                    points.into_iter().zip(verdicts).partition(|(_, v)| v != &Verdict::Delete);
                points = kept.into_iter().map(|(point, _)| point).collect();
                last_run = Some((now, retain.clone(), deleted));
            }
        }
        let (now, retain, deleted_last) = last_run.unwrap();
        let mut text = format!("policy on day 0: {}\n", describe(&policy_on(0)));
        let policy_at_end = describe(&policy_on(days - 1));
        if policy_at_end != describe(&policy_on(0)) {
            text += &format!("policy at end:   {policy_at_end}\n");
        }
        text += &format!("last run: {}; {} of {made} points kept\n\n", format_time(now), points.len());
        text += &format!("{:<22}{:<23}{}\n", "time", "rules", "kept because");
        points.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
        for (point, verdict) in points.iter().zip(decide(&points, &retain, now)) {
            let Verdict::Keep(reasons) = verdict else { panic!("survivor deleted on re-check") };
            let rules = point.rules.iter().cloned().collect::<Vec<_>>().join(", ");
            let reasons: Vec<String> = reasons.iter().map(KeepReason::to_string).collect();
            text += &format!("{:<22}{:<23}{}\n", format_time(point.time), rules, reasons.join("; "));
        }
        text += "\ndeleted by the last run:";
        for (point, _) in &deleted_last {
            let rules = point.rules.iter().cloned().collect::<Vec<_>>().join(", ");
            text += &format!("\n  {} ({rules})", format_time(point.time));
        }
        if deleted_last.is_empty() {
            text += " none";
        }
        text + "\n"
    }

    fn never(_day: i64) -> bool {
        false
    }

    // ---- golden timelines ------------------------------------------------------------------

    #[test]
    fn daily_count_7_over_30_days() {
        let text = simulate(30, |_| vec![rule("daily", "0 2 * * *", Retain::Count(7))], never);
        insta::assert_snapshot!("daily_count_7_over_30_days", text);
    }

    fn gfs() -> Vec<Rule> {
        vec![
            rule("daily", "0 2 * * *", Retain::Count(7)),
            rule("weekly", "0 2 * * 0", Retain::Count(4)),
            rule("monthly", "0 2 1 * *", Retain::Count(3)),
        ]
    }

    #[test]
    fn gfs_harmonized_over_120_days() {
        let text = simulate(120, |_| gfs(), never);
        insta::assert_snapshot!("gfs_harmonized_over_120_days", text);
    }

    #[test]
    fn gfs_not_harmonized_weekly_at_other_hour() {
        // Weekly at 03:00: Sundays make two points, each carrying one rule.
        let policy =
            |_| vec![rule("daily", "0 2 * * *", Retain::Count(7)), rule("weekly", "0 3 * * 0", Retain::Count(4))];
        let text = simulate(60, policy, never);
        insta::assert_snapshot!("gfs_not_harmonized_weekly_at_other_hour", text);
    }

    #[test]
    fn days_daily_7_weekly_30_boundary() {
        // 58 days end on Tuesday 2024-02-27 02:00, exactly 30 days after Sunday 2024-01-28
        // 02:00 and 7 days after 2024-02-20 02:00: both are deleted by that last run.
        let policy =
            |_| vec![rule("daily", "0 2 * * *", Retain::Days(7)), rule("weekly", "0 2 * * 0", Retain::Days(30))];
        let text = simulate(58, policy, never);
        insta::assert_snapshot!("days_daily_7_weekly_30_boundary", text);
    }

    #[test]
    fn days_with_failed_runs_at_the_end() {
        // Runs fail from day 20 (2024-01-21) on: the last good point (2024-01-20) is 10 days
        // old at the end, past `Days(7)`, and survives as the newest complete point.
        let text = simulate(30, |_| vec![rule("daily", "0 2 * * *", Retain::Days(7))], |day| day >= 20);
        insta::assert_snapshot!("days_with_failed_runs_at_the_end", text);
    }

    #[test]
    fn rule_removed_halfway() {
        // "monthly" leaves the policy on day 70 (2024-03-11); the points it kept until then
        // (Jan, Feb, Mar 1st) become unmanaged and stay, though "daily" lets go of them, and
        // Jan 1st outlives the 3 months "monthly" would have kept it. Apr and May 1st are
        // plain dailies by then.
        let policy = |day| {
            let mut rules = gfs();
            if day >= 70 {
                rules.retain(|r| r.name != "monthly");
            }
            rules
        };
        let text = simulate(140, policy, never);
        insta::assert_snapshot!("rule_removed_halfway", text);
    }

    #[test]
    fn count_1_keeps_only_the_newest() {
        let text = simulate(10, |_| vec![rule("daily", "0 2 * * *", Retain::Count(1))], never);
        insta::assert_snapshot!("count_1_keeps_only_the_newest", text);
    }

    // ---- unit tests ------------------------------------------------------------------------

    fn point(id: &str, days_ago: i64, rules: &[&str], complete: bool) -> Point {
        Point {
            id: id.to_string(),
            time: now() - TimeDelta::days(days_ago),
            rules: rules.iter().map(ToString::to_string).collect(),
            complete,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 1, 2, 0, 0).unwrap()
    }

    fn retain(rules: &[(&str, Retain)]) -> BTreeMap<String, Retain> {
        rules.iter().map(|(name, r)| (name.to_string(), *r)).collect()
    }

    fn is_kept(verdict: &Verdict) -> bool {
        matches!(verdict, Verdict::Keep(_))
    }

    #[test]
    fn order_does_not_change_verdicts() {
        let mut points: Vec<Point> = (0..40)
            .map(|i| {
                let rules: &[&str] = if i % 7 == 0 { &["daily", "weekly"] } else { &["daily"] };
                point(&format!("p{i:02}"), i, rules, i % 5 != 3)
            })
            .collect();
        // Equal times: only the id decides which of these counts as newer.
        points.push(point("tie-a", 2, &["daily"], true));
        points.push(point("tie-b", 2, &["daily"], true));
        points.push(point("old", 90, &["gone"], true));
        let policy = retain(&[("daily", Retain::Count(3)), ("weekly", Retain::Days(20))]);
        let by_id = |points: &[Point]| -> BTreeMap<String, Verdict> {
            let verdicts = decide(points, &policy, now());
            points.iter().map(|p| p.id.clone()).zip(verdicts).collect()
        };
        let expected = by_id(&points);
        // Deterministic shuffles: reverse, rotations, and an LCG-driven Fisher–Yates.
        let mut shuffled = points.clone();
        shuffled.reverse();
        assert_eq!(by_id(&shuffled), expected);
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20 {
            for i in (1..shuffled.len()).rev() {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                shuffled.swap(i, (seed >> 33) as usize % (i + 1));
            }
            assert_eq!(by_id(&shuffled), expected);
        }
        let kept: Vec<&String> = expected.iter().filter(|(_, v)| is_kept(v)).map(|(id, _)| id).collect();
        assert!(kept.contains(&&"tie-b".to_string()) && !kept.contains(&&"tie-a".to_string()));
    }

    fn among_newest(rule: &str, count: u32) -> KeepReason {
        KeepReason::AmongNewest { rule: rule.into(), count }
    }

    fn younger_than(rule: &str, days: u32) -> KeepReason {
        KeepReason::YoungerThan { rule: rule.into(), days }
    }

    #[test]
    fn reasons_read_as_a_report_says_them() {
        let said: Vec<String> = [
            among_newest("daily", 7),
            younger_than("weekly", 28),
            KeepReason::Unmanaged { rules: vec!["monthly".into(), "yearly".into()] },
            KeepReason::Unmanaged { rules: Vec::new() },
            KeepReason::NewestComplete,
            KeepReason::Incomplete,
        ]
        .iter()
        .map(KeepReason::to_string)
        .collect();
        assert_eq!(
            said,
            [
                "daily: one of the newest 7",
                "weekly: younger than 28 days",
                "unmanaged: rules monthly, yearly not in the policy",
                "unmanaged: made by no rule",
                "newest complete point",
                "incomplete",
            ]
        );
    }

    #[test]
    fn count_never_deletes_incomplete_points_nor_counts_them() {
        let points = vec![
            point("newest-failed", 0, &["daily"], false),
            point("failed", 1, &["daily"], false),
            point("good-1", 2, &["daily"], true),
            point("good-2", 3, &["daily"], true),
            point("good-3", 4, &["daily"], true),
            point("ancient-failed", 400, &["daily"], false),
        ];
        let verdicts = decide(&points, &retain(&[("daily", Retain::Count(2))]), now());
        assert_eq!(verdicts[0], Verdict::Keep(vec![KeepReason::Incomplete]));
        assert_eq!(verdicts[1], Verdict::Keep(vec![KeepReason::Incomplete]));
        assert_eq!(verdicts[2], Verdict::Keep(vec![among_newest("daily", 2), KeepReason::NewestComplete]));
        assert_eq!(verdicts[3], Verdict::Keep(vec![among_newest("daily", 2)]));
        assert_eq!(verdicts[4], Verdict::Delete);
        assert_eq!(verdicts[5], Verdict::Keep(vec![KeepReason::Incomplete]));
    }

    #[test]
    fn days_deletes_a_point_exactly_d_days_old() {
        let newest = point("newest", 0, &["daily"], true);
        let mut just_younger = point("just-younger", 7, &["daily"], true);
        just_younger.time += TimeDelta::seconds(1);
        let exactly = point("exactly", 7, &["daily"], true);
        let policy = retain(&[("daily", Retain::Days(7))]);
        let verdicts = decide(&[newest, just_younger, exactly], &policy, now());
        assert_eq!(verdicts[1], Verdict::Keep(vec![younger_than("daily", 7)]));
        assert_eq!(verdicts[2], Verdict::Delete);
    }

    #[test]
    fn newest_complete_point_survives_days_retention() {
        let points = vec![point("old-good", 30, &["daily"], true), point("older", 31, &["daily"], true)];
        let verdicts = decide(&points, &retain(&[("daily", Retain::Days(7))]), now());
        assert_eq!(verdicts, vec![Verdict::Keep(vec![KeepReason::NewestComplete]), Verdict::Delete]);
    }

    #[test]
    fn a_removed_rule_keeps_its_points_unless_another_rule_wants_them() {
        let points = vec![
            point("newest", 0, &["daily"], true),
            point("kept-by-daily", 1, &["daily", "monthly"], true),
            point("orphaned", 40, &["daily", "monthly"], true),
            point("daily-only", 41, &["daily"], true),
            point("no-rules", 42, &[], true),
        ];
        let verdicts = decide(&points, &retain(&[("daily", Retain::Days(7))]), now());
        assert_eq!(verdicts[1], Verdict::Keep(vec![younger_than("daily", 7)]));
        assert_eq!(verdicts[2], Verdict::Keep(vec![KeepReason::Unmanaged { rules: vec!["monthly".into()] }]));
        assert_eq!(verdicts[3], Verdict::Delete);
        assert_eq!(verdicts[4], Verdict::Keep(vec![KeepReason::Unmanaged { rules: Vec::new() }]));
    }

    #[test]
    fn extreme_retentions_do_not_panic() {
        let points = vec![point("a", 0, &["x"], true), point("b", 5000, &["x", "y"], true)];
        let policy = retain(&[("x", Retain::Count(0)), ("y", Retain::Days(u32::MAX))]);
        let verdicts = decide(&points, &policy, now());
        assert_eq!(verdicts[0], Verdict::Keep(vec![KeepReason::NewestComplete]));
        assert_eq!(verdicts[1], Verdict::Keep(vec![younger_than("y", u32::MAX)]));
        assert_eq!(decide(&[], &policy, now()), Vec::<Verdict>::new());
    }
}
