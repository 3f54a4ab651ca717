//! `coffer agent` with an injected clock: due rules fire once, rules due in
//! the same minute fire as one run, and neither a restart nor a crash
//! mid-run makes a rule fire twice or skip.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use coffer_executor::agent::{Agent, ManualClock};
use coffer_executor::run::{Quiet, RunRequest};

use super::{count, policy, put_policy, rule};
use crate::support::estate::{executor, instance, tags};
use crate::support::{Moto, block_on};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

#[test]
fn due_rules_fire_once_across_restarts_and_crashes() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
        let instance = instance(&ec2, &tags(&[("Backup", "nightly")]), 0, None).await;
        let executor = executor(&moto, dir.path(), 4).await;
        let rules =
            vec![rule("daily", "0 2 * * *", Some(count(7)), None), rule("weekly", "0 2 * * 0", Some(count(4)), None)];
        put_policy(&executor, &policy("nightly", "ec2", &["us-east-1"], &[("Backup", "nightly")], rules)).await;
        let snapshots = || async {
            ec2.describe_snapshots()
                .owner_ids("self")
                .filters(aws_sdk_ec2::types::Filter::builder().name("tag:coffer:source").values(&instance).build())
                .send()
                .await
                .unwrap()
                .snapshots()
                .len()
        };

        // Saturday noon: the agent sees the policy for the first time and
        // starts its marks now; nothing from the past is back-filled.
        let clock = Arc::new(ManualClock::new(at("2026-11-21T12:00:00Z")));
        let agent = Agent::new(&executor, clock.clone());
        assert!(agent.tick(&Quiet).await.unwrap().is_empty());
        clock.set(at("2026-11-22T01:59:59Z"));
        assert!(agent.tick(&Quiet).await.unwrap().is_empty());

        // Sunday 02:00: daily and weekly are due in the same minute → one run.
        clock.set(at("2026-11-22T02:00:20Z"));
        let sessions = agent.tick(&Quiet).await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].rules, ["daily", "weekly"]);
        assert_eq!(sessions[0].run_id, "20261122-0200");
        assert!(agent.tick(&Quiet).await.unwrap().is_empty(), "fired twice");

        // A restarted agent reads the marks from the catalog.
        let restarted = Agent::new(&executor, clock.clone());
        assert!(restarted.tick(&Quiet).await.unwrap().is_empty(), "fired again after a restart");
        assert_eq!(snapshots().await, 1);

        // Monday 02:00: the run starts, then the agent dies before marking
        // it (simulated: the run happens, the mark does not move).
        clock.set(at("2026-11-23T02:00:05Z"));
        let due = restarted.due().await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].rules, ["daily"]);
        let request = RunRequest {
            policy: "nightly".into(),
            rules: due[0].rules.clone(),
            run_id: Some(due[0].run_id()),
            time: due[0].due,
        };
        executor.run(request, &Quiet).await.unwrap();
        assert_eq!(snapshots().await, 2);
        // The next agent fires it again, with the same run id: the snapshot
        // the first attempt made is reused, not doubled.
        let after_crash = Agent::new(&executor, clock.clone());
        clock.set(at("2026-11-23T02:03:00Z"));
        let sessions = after_crash.tick(&Quiet).await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].run_id, "20261123-0200");
        assert!(sessions[0].resources[0].snapshots.iter().all(|s| s.reused), "{:#?}", sessions[0]);
        assert_eq!(snapshots().await, 2);

        // Down from Monday to Thursday morning: the latest due occurrence
        // fires once; the missed days are not replayed one by one.
        clock.set(at("2026-11-26T09:30:00Z"));
        let sessions = after_crash.tick(&Quiet).await.unwrap();
        assert_eq!(sessions.iter().map(|s| s.run_id.as_str()).collect::<Vec<_>>(), ["20261126-0200"]);
        assert_eq!(snapshots().await, 3);
    });
}

#[test]
fn a_disabled_policy_does_not_fire_and_does_not_catch_up_when_enabled() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let executor = executor(&moto, dir.path(), 4).await;
        let mut doc = policy(
            "paused",
            "ec2",
            &["us-east-1"],
            &[("Backup", "x")],
            vec![rule("daily", "0 2 * * *", Some(count(7)), None)],
        );
        doc.enabled = false;
        put_policy(&executor, &doc).await;
        let clock = Arc::new(ManualClock::new(at("2026-11-21T12:00:00Z")));
        let agent = Agent::new(&executor, clock.clone());
        assert!(agent.tick(&Quiet).await.unwrap().is_empty());
        clock.set(at("2026-11-22T02:00:00Z"));
        assert!(agent.tick(&Quiet).await.unwrap().is_empty(), "a disabled policy fired");

        // Enabled again: the next occurrence fires, not the one missed while disabled.
        let current = executor.catalog().get::<coffer_model::policy::PolicyDocument>("paused").await.unwrap();
        doc.enabled = true;
        executor.catalog().replace("paused", &doc, &current.etag).await.unwrap();
        clock.set(at("2026-11-22T12:00:00Z"));
        assert!(agent.tick(&Quiet).await.unwrap().is_empty(), "caught up a run missed while disabled");
        clock.set(at("2026-11-23T02:00:00Z"));
        assert_eq!(agent.due().await.unwrap().len(), 1);
    });
}

#[test]
fn a_run_that_cannot_start_is_recorded_as_failed_once_not_retried_every_minute() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let executor = executor(&moto, dir.path(), 4).await;
        // Its region mapping is not in the catalog (deleted out of band).
        let rules = vec![rule("daily", "0 2 * * *", Some(count(7)), Some((&["gone"][..], count(3))))];
        put_policy(&executor, &policy("orphan", "ec2", &["us-east-1"], &[("Backup", "x")], rules)).await;
        let clock = Arc::new(ManualClock::new(at("2026-11-21T12:00:00Z")));
        let agent = Agent::new(&executor, clock.clone());
        assert!(agent.tick(&Quiet).await.unwrap().is_empty());
        clock.set(at("2026-11-22T02:00:00Z"));
        let sessions = agent.tick(&Quiet).await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].outcome, coffer_executor::session::Outcome::Failed);
        assert!(
            sessions[0].messages[0].contains("region mapping gone used by the policy is not in the catalog"),
            "{:?}",
            sessions[0].messages
        );
        let recorded = coffer_executor::session::recent(&executor.catalog(), "orphan", 5).await.unwrap();
        assert_eq!(recorded.len(), 1);
        clock.set(at("2026-11-22T02:01:00Z"));
        assert!(agent.tick(&Quiet).await.unwrap().is_empty(), "retried a run that cannot start");
    });
}

/// `coffer agent` as a process: SIGTERM while a run is in progress lets the
/// run finish (its session is written and its mark moves), then it exits 0.
#[test]
fn sigterm_lets_the_run_in_progress_finish_then_exits_cleanly() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    use crate::support::estate::coffer_command;

    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let marked = block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
        // Enough work, one resource at a time, that the signal lands mid-run.
        for _ in 0..12 {
            instance(&ec2, &tags(&[("Backup", "often")]), 1, None).await;
        }
        let executor = executor(&moto, dir.path(), 1).await;
        let rules = vec![rule("often", "* * * * *", Some(count(7)), None)];
        put_policy(&executor, &policy("often", "ec2", &["us-east-1"], &[("Backup", "often")], rules)).await;
        // Last fired five minutes ago: due at once when the agent starts.
        let marked = Utc::now() - chrono::TimeDelta::minutes(5);
        let marks = coffer_model::agent::Marks { format_version: 1, rules: [("often".to_string(), marked)].into() };
        executor.catalog().create("often", &marks).await.unwrap();
        marked
    });

    let mut agent = coffer_command(&moto.endpoint)
        .args(["agent", "--concurrency", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(agent.stderr.take().unwrap()).lines();
    // Wait until the run has started, then ask the agent to stop.
    let mut seen = Vec::new();
    for line in stderr.by_ref() {
        let line = line.unwrap();
        let started = line.contains("often rule often due");
        seen.push(line);
        if started {
            break;
        }
    }
    assert!(seen.last().is_some_and(|l| l.contains("often rule often due")), "{seen:#?}");
    let status = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status().unwrap();
    assert!(status.success());
    let rest: Vec<String> = stderr.map(|l| l.unwrap()).collect();
    let exit = agent.wait().unwrap();
    assert!(exit.success(), "{exit:?}\n{rest:#?}");
    assert!(rest.iter().any(|l| l.contains("stopping; letting run")), "{rest:#?}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut agent.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(
        stdout.contains("session") && stdout.contains("Success"),
        "the run finished and reported: {stdout}\n{rest:#?}"
    );

    block_on(async {
        let executor = executor(&moto, dir.path(), 1).await;
        let sessions = coffer_executor::session::recent(&executor.catalog(), "often", 5).await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].resources.len(), 12);
        let marks = executor.catalog().get::<coffer_model::agent::Marks>("often").await.unwrap();
        assert!(marks.body.rules["often"] > marked, "the mark moved past the finished run");
    });
}
