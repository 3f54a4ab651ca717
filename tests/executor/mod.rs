//! The executor against moto: `Executor::run`, retention, the agent with an
//! injected clock, and (with mocked clients) the cross-account sequence
//! moto cannot show.

mod agent;
mod backup;
mod cli;
mod cross_account;
mod rds_presign;
mod restore;
mod retention;
mod run;
mod worker_boot;

use std::collections::BTreeMap;

use coffer_executor::Executor;
use coffer_model::policy::{Keep, PolicyDocument, Replicate, Retain, Rule, Source};
use coffer_model::region_mapping::RegionMappingDocument;

pub fn count(n: i64) -> Retain {
    Retain { count: Some(n), days: None }
}

pub fn rule(name: &str, cron: &str, snapshot: Option<Retain>, replicate: Option<(&[&str], Retain)>) -> Rule {
    Rule {
        name: name.into(),
        cron: cron.into(),
        timezone: "UTC".into(),
        snapshot: snapshot.map(|retain| Keep { retain }),
        replicate: replicate
            .map(|(ids, retain)| Replicate { region_mapping_ids: ids.iter().map(|s| s.to_string()).collect(), retain }),
        backup: None,
        archive: None,
    }
}

/// A policy document as `coffer_backup_policy` writes it.
pub fn policy(name: &str, kind: &str, regions: &[&str], tags: &[(&str, &str)], rules: Vec<Rule>) -> PolicyDocument {
    PolicyDocument {
        format_version: 1,
        name: name.into(),
        kind: kind.parse().expect("ec2 or rds"),
        description: None,
        enabled: true,
        source: Source {
            regions: regions.iter().map(|s| s.to_string()).collect(),
            ids: Vec::new(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            exclude_ids: Vec::new(),
        },
        rules,
        worker_configuration_ids: Vec::new(),
        scheduler_role_arn: None,
        tags: BTreeMap::new(),
        max_run_time: None,
        snapshot_instance_type: None,
        volumes_per_worker: None,
    }
}

pub async fn put_policy(executor: &Executor, policy: &PolicyDocument) {
    executor.catalog().create(&policy.name, policy).await.expect("write policy");
}

pub async fn put_mapping(
    executor: &Executor,
    name: &str,
    source: &str,
    target: &str,
    kms_key_arn: Option<&str>,
    encrypt: &str,
) {
    let mapping = RegionMappingDocument {
        format_version: 1,
        name: name.into(),
        source_region: source.into(),
        target_region: target.into(),
        target_role_arn: None,
        kms_key_arn: kms_key_arn.map(str::to_string),
        encrypt: encrypt.parse().expect("all or encrypted_only"),
    };
    executor.catalog().create(name, &mapping).await.expect("write mapping");
}
