//! Retention against moto: a GFS policy run daily for two weeks keeps
//! exactly the restore points the golden file lists.

use chrono::{DateTime, Datelike, TimeDelta, Utc, Weekday};
use coffer_executor::run::{Quiet, RunRequest};
use coffer_executor::scheduled_run_id;

use super::{count, policy, put_mapping, put_policy, rule};
use crate::support::estate::{executor, instance, tags};
use crate::support::{Moto, block_on};

#[test]
fn retention_keeps_exactly_what_the_golden_file_says() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let (table, deleted_by_last_run) = block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("us-east-1").await);
        instance(&ec2, &tags(&[("Backup", "gfs")]), 0, None).await;
        let executor = executor(&moto, dir.path(), 4).await;
        put_mapping(&executor, "use1-to-euw1", "us-east-1", "eu-west-1", None, "encrypted_only").await;
        let rules = vec![
            rule("daily", "0 2 * * *", Some(count(3)), Some((&["use1-to-euw1"][..], count(2)))),
            // Falls due with daily on Sundays: those runs carry both rules.
            rule("weekly", "0 2 * * 0", Some(count(2)), None),
        ];
        put_policy(&executor, &policy("gfs", "ec2", &["us-east-1"], &[("Backup", "gfs")], rules)).await;

        let first: DateTime<Utc> = "2026-11-01T02:00:00Z".parse().unwrap();
        let mut last = None;
        for day in 0..14 {
            let time = first + TimeDelta::days(day);
            let mut rules = vec!["daily".to_string()];
            if time.weekday() == Weekday::Sun {
                rules.push("weekly".to_string());
            }
            let session = executor
                .run(RunRequest { policy: "gfs".into(), rules, run_id: Some(scheduled_run_id(time)), time }, &Quiet)
                .await
                .unwrap();
            assert!(session.retention.errors.is_empty(), "{:?}", session.retention.errors);
            last = Some(session);
        }

        let points = coffer::cli::points(&executor, "gfs").await.unwrap();
        let mut table = String::from("kind      region     time              rules\n");
        let mut rows: Vec<String> = points
            .iter()
            .map(|p| {
                format!(
                    "{:<10}{:<11}{:<18}{}",
                    p.kind.as_str(),
                    p.region,
                    p.time.format("%Y-%m-%d %a"),
                    p.rules.iter().cloned().collect::<Vec<_>>().join("+")
                )
            })
            .collect();
        rows.sort();
        table.push_str(&rows.join("\n"));
        (table, last.unwrap().retention.deleted.len())
    });
    // The last run (Nov 14) let go of Nov 11's snapshot and Nov 12's replica.
    assert_eq!(deleted_by_last_run, 2);
    insta::assert_snapshot!("gfs_daily_3_weekly_2_replicas_2_over_14_days", table);
}
