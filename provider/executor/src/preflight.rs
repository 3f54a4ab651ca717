//! Preflight of a policy's workers: for each of its worker configurations,
//! whether a worker launched from it could reach the services the policy's
//! rules use, would have credentials, and (in the home region, where the
//! schedules launch) may be launched by the scheduler role.
//! `coffer preflight --policy` prints these; `coffer_backup_policy` checks
//! them at plan and apply.

use coffer_aws::AwsError;
use coffer_aws::ec2::find_launch_template_by_id;
use coffer_aws::preflight::{
    Check, Concern, Placement, Service, Verdict, may_pass_role, placement_checks, region_worker_pass_role_check,
};
use coffer_model::policy::{PolicyDocument, PolicyType};
use coffer_model::region_mapping::RegionMappingDocument;

use crate::Executor;

/// The checks of one worker configuration of a policy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerChecks {
    /// The launch template id, as the policy names it.
    pub worker_configuration_id: String,
    /// Where it was found (`None`: in none of the policy's regions).
    pub region: Option<String>,
    /// The launch template's instance profile, if it names one.
    pub instance_profile: Option<String>,
    /// That profile's role, when IAM has it (for the home workers' PassRole check).
    #[serde(skip)]
    pub instance_role: Option<String>,
    pub checks: Vec<Check>,
}

/// The services a policy's workers call. S3 and EC2 always; EBS direct and
/// KMS for image-level rules (workers open repositories with KMS, password
/// repositories through their KMS envelope); STS for region mappings into
/// other accounts; KMS for mappings that re-encrypt (the worker describes
/// the key); RDS for RDS policies.
pub fn services_for(policy: &PolicyDocument, mappings: &[RegionMappingDocument]) -> Vec<Service> {
    let mut services = vec![Service::S3, Service::Ec2];
    let image_level = policy.rules.iter().any(|r| r.moves_data());
    if image_level {
        services.push(Service::Ebs);
    }
    if mappings.iter().any(|m| m.target_role_arn.is_some()) {
        services.push(Service::Sts);
    }
    if image_level || mappings.iter().any(|m| m.kms_key_arn.is_some()) {
        services.push(Service::Kms);
    }
    if policy.kind == PolicyType::Rds {
        services.push(Service::Rds);
    }
    services
}

/// The region mappings a policy's rules replicate through; those missing
/// from the catalog are left out (a run reports them).
async fn mappings_of(executor: &Executor, policy: &PolicyDocument) -> Vec<RegionMappingDocument> {
    let mut mappings = Vec::new();
    for id in policy.rules.iter().filter_map(|r| r.replicate.as_ref()).flat_map(|r| &r.region_mapping_ids) {
        match executor.catalog().get::<RegionMappingDocument>(id).await {
            Ok(doc) => mappings.push(doc.body),
            Err(e) => tracing::warn!(%id, error = %e, "reading a region mapping for preflight; left out"),
        }
    }
    mappings
}

/// Every worker configuration of `policy` with its checks; the home
/// region's also checks the scheduler role. A policy with none in the home
/// region gets a failed check of its own: its schedules launch nothing.
pub async fn policy_checks(executor: &Executor, policy: &PolicyDocument) -> Vec<WorkerChecks> {
    let aws = &executor.aws;
    let home = aws.home_region.as_str();
    let services = services_for(policy, &mappings_of(executor, policy).await);
    let mut regions = vec![home.to_string()];
    regions.extend(policy.source.regions.iter().filter(|r| r.as_str() != home).cloned());
    let mut all = Vec::new();
    let mut launched_at_home = false;
    for id in &policy.worker_configuration_ids {
        let mut found = None;
        let mut lookup_error = None;
        for region in &regions {
            match find_launch_template_by_id(&aws.ec2(region), id, None).await {
                Ok(template) => {
                    found = Some((region.clone(), template));
                    break;
                }
                Err(AwsError::NotFound) => {}
                Err(e) => lookup_error = Some(format!("reading launch template {id} in {region}: {e}")),
            }
        }
        let Some((region, template)) = found else {
            let (verdict, detail) = match lookup_error {
                Some(why) => (Verdict::Unverified, format!("not checked: {why}")),
                // It may be in another region (a worker configuration kept for later); the
                // schedules do not launch it, so it does not stop the policy.
                None => (
                    Verdict::Unverified,
                    format!(
                        "not checked: launch template {id} is in none of the policy's regions ({})",
                        regions.join(", ")
                    ),
                ),
            };
            all.push(WorkerChecks {
                worker_configuration_id: id.clone(),
                region: None,
                instance_profile: None,
                instance_role: None,
                checks: vec![Check::new("worker configuration", verdict, Concern::Subnet, detail)],
            });
            continue;
        };
        let at_home = region == home;
        launched_at_home |= at_home;
        let placement = Placement::of_template(&region, &template.data);
        let scheduler_role = if at_home { policy.scheduler_role_arn.as_deref() } else { None };
        let checked = placement_checks(aws, &placement, &services, scheduler_role).await;
        all.push(WorkerChecks {
            worker_configuration_id: id.clone(),
            region: Some(region),
            instance_profile: placement.instance_profile.clone(),
            instance_role: checked.role,
            checks: checked.checks,
        });
    }
    if policy.kind == PolicyType::Ec2 && policy.rules.iter().any(|r| r.moves_data()) {
        region_workers_launchable(executor, &mut all).await;
    }
    if !launched_at_home {
        all.push(WorkerChecks {
            worker_configuration_id: String::new(),
            region: Some(home.to_string()),
            instance_profile: None,
            instance_role: None,
            checks: vec![Check::new(
                "worker configuration in the home region",
                Verdict::Fail,
                Concern::Subnet,
                format!(
                    "none of the policy's worker configurations is in {home}, where its schedules launch workers; \
                     add a coffer_worker_configuration there to worker_configuration_ids"
                ),
            )],
        });
    }
    all
}

/// The schedule's worker (home region) launches the other regions' workers for their
/// image-level work, passing their instance profile's role: checks, on each other region's
/// worker configuration, that the home workers' role may pass it.
async fn region_workers_launchable(executor: &Executor, all: &mut [WorkerChecks]) {
    let home = executor.aws.home_region.as_str();
    // Without the home workers' role (no profile, or one that does not exist) there is
    // nothing to ask: their own checks fail already.
    let Some(launcher) = all.iter().find(|w| w.region.as_deref() == Some(home)).and_then(|w| w.instance_role.clone())
    else {
        return;
    };
    let iam = executor.aws.iam();
    for worker in all.iter_mut().filter(|w| w.region.as_deref().is_some_and(|r| r != home)) {
        let Some(role) = worker.instance_role.clone() else { continue };
        let region = worker.region.clone().unwrap_or_default();
        worker.checks.push(match may_pass_role(&iam, &launcher, &role).await {
            Ok(decision) => region_worker_pass_role_check(&launcher, &role, &region, decision),
            Err(e) => Check::new(
                "home workers may pass this region's workers' role",
                Verdict::Unverified,
                Concern::WorkerRole,
                format!("not checked: simulating iam:PassRole of {launcher} on {role}: {e}"),
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_model::policy::{Keep, Replicate, Retain, Rule, Source, ToRepository};

    fn policy(kind: PolicyType, rules: Vec<Rule>) -> PolicyDocument {
        PolicyDocument {
            format_version: 1,
            name: "p".into(),
            kind,
            description: None,
            enabled: true,
            source: Source {
                regions: vec!["us-east-1".into()],
                ids: vec![],
                tags: Default::default(),
                exclude_ids: vec![],
            },
            rules,
            worker_configuration_ids: vec![],
            scheduler_role_arn: None,
            tags: Default::default(),
            max_run_time: None,
            snapshot_instance_type: None,
            volumes_per_worker: None,
        }
    }

    fn rule(backup: bool, replicate: bool) -> Rule {
        let retain = Retain { count: Some(1), days: None };
        Rule {
            name: "r".into(),
            cron: "0 3 * * *".into(),
            timezone: "UTC".into(),
            snapshot: Some(Keep { retain: retain.clone() }),
            replicate: replicate.then(|| Replicate { region_mapping_ids: vec!["m".into()], retain: retain.clone() }),
            backup: backup.then(|| ToRepository { repository_id: "repo".into(), retain: retain.clone() }),
            archive: None,
        }
    }

    fn mapping(role: bool, key: bool) -> RegionMappingDocument {
        RegionMappingDocument {
            format_version: 1,
            name: "m".into(),
            source_region: "us-east-1".into(),
            target_region: "eu-west-1".into(),
            target_role_arn: role.then(|| "arn:aws:iam::222222222222:role/copy".into()),
            kms_key_arn: key.then(|| "arn:aws:kms:eu-west-1:1:key/k".into()),
            encrypt: Default::default(),
        }
    }

    #[test]
    fn snapshot_only_rules_need_s3_and_ec2_only() {
        assert_eq!(services_for(&policy(PolicyType::Ec2, vec![rule(false, false)]), &[]), [Service::S3, Service::Ec2]);
    }

    #[test]
    fn image_level_rules_add_ebs_and_kms_and_rds_policies_add_rds() {
        assert_eq!(
            services_for(&policy(PolicyType::Ec2, vec![rule(true, false)]), &[]),
            [Service::S3, Service::Ec2, Service::Ebs, Service::Kms]
        );
        assert_eq!(
            services_for(&policy(PolicyType::Rds, vec![rule(false, false)]), &[]),
            [Service::S3, Service::Ec2, Service::Rds]
        );
    }

    #[test]
    fn cross_account_mappings_add_sts_and_keyed_ones_kms() {
        let p = policy(PolicyType::Ec2, vec![rule(false, true)]);
        assert_eq!(services_for(&p, &[mapping(true, false)]), [Service::S3, Service::Ec2, Service::Sts]);
        assert_eq!(services_for(&p, &[mapping(false, true)]), [Service::S3, Service::Ec2, Service::Kms]);
    }
}
