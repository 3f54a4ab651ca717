//! `coffer_iam_policy`: the IAM policy documents Coffer's roles need for
//! the features a configuration uses, built from the permissions table in
//! `aws::permissions` (the same table a test checks against the code).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::json;

use crate::conns::Coffer;
use crate::resources::backup_policy::SCHEDULE_GROUP;
use coffer_aws::permissions::{Feature, PERMISSIONS, Role, Scope, applies};
use coffer_model::validation;
use coffer_tfplugin::framework::validators::{Each, OneOf, string};
use coffer_tfplugin::framework::{Attribute, Block, DataSource, Diagnostics, Schema, Value};

pub const TYPE_NAME: &str = "coffer_iam_policy";
const FEATURE_NAMES: &[&str] = &["ec2", "rds", "replicate", "backup", "kms", "cross_account", "immutability"];

pub struct IamPolicy;

pub fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "IAM policy documents (JSON) for Coffer's roles, holding the actions the features in use need and \
             narrowed to Coffer's resources where IAM allows: the role Terraform runs the provider as, the role \
             EventBridge Scheduler assumes, the workers' instance-profile role, and the backup role (snapshots and \
             copies; attach it to the worker role and to the `target_role_arn` of cross-account region mappings).",
        )
        .attribute(Attribute::string("id").computed().describe("SHA-256 of the documents."))
        .attribute(
            Attribute::string_set("features")
                .optional()
                .describe("Features in use: `ec2`, `rds`, `replicate`, `backup`, `kms`, `cross_account`, `immutability`. Default: all of them.")
                .validate(Each(OneOf(FEATURE_NAMES))),
        )
        .attribute(
            Attribute::string_set("repository_buckets")
                .optional()
                .describe("Buckets of the repositories in use; S3 statements on repositories are narrowed to them. Default: any bucket.")
                .validate(Each(string(validation::bucket_name))),
        )
        .attribute(
            Attribute::string_set("passed_role_arns")
                .optional()
                .describe("Roles handed to AWS (`iam:PassRole`): the workers' instance-profile role and the scheduler role. Default: any role of this account.")
                .validate(Each(string(validation::role_arn))),
        )
        .attribute(
            Attribute::string_set("target_role_arns")
                .optional()
                .describe("Roles workers assume in other accounts (`target_role_arn` of region mappings). Default: any role.")
                .validate(Each(string(validation::role_arn))),
        )
        .attribute(Attribute::string("provider_policy_json").computed().describe("For the role Terraform runs the coffer provider as."))
        .attribute(Attribute::string("scheduler_policy_json").computed().describe("For `scheduler_role_arn`: launches workers."))
        .attribute(Attribute::string("worker_policy_json").computed().describe("For the workers' instance-profile role: catalog, repositories, EBS direct APIs, KMS."))
        .attribute(Attribute::string("backup_policy_json").computed().describe("Snapshots, copies and retention of EC2 and RDS resources."))
        .attribute(Attribute::string("restore_policy_json").computed().describe("For whoever runs `coffer restore` of snapshots and replicas: volumes, instances, DB instances and clusters made from them, and removed again when a restore fails."))
        .attribute(
            Attribute::string("source_key_policy_statements_json").computed().describe(
                "Key policy statements (a JSON array) to add to the customer managed KMS keys that encrypt \
                 protected volumes and databases: they let the `target_role_arns` copy snapshots shared with their \
                 accounts. Null unless `cross_account` is among the features and `target_role_arns` is set.",
            ),
        )
        .attribute(
            Attribute::string("target_key_policy_statements_json").computed().describe(
                "Key policy statements (a JSON array) to add to the `kms_key_arn` keys of cross-account region \
                 mappings: they let this account's workers make the staging copies that snapshots under the AWS \
                 managed `aws/ebs` / `aws/rds` keys need before they can be shared. Null unless `cross_account` is \
                 among the features.",
            ),
        )
    )
}

/// What the target roles do with a source key while copying a snapshot shared with their
/// account: an encrypted snapshot can be copied by another account only when that account may
/// use the key (EC2 user guide, "Share an Amazon EBS snapshot" → "Share the KMS key"; RDS user
/// guide, "Sharing encrypted snapshots"). Two statements, as AWS's own examples of a key
/// shared with another account: the key's use, and grants for the AWS services that copy on
/// the roles' behalf (`kms:GrantIsForAWSResource` is present on grant requests only, so it
/// cannot condition the first).
pub fn source_key_statements(target_roles: &[String]) -> Option<serde_json::Value> {
    if target_roles.is_empty() {
        return None;
    }
    let principal =
        json!({ "AWS": if target_roles.len() == 1 { json!(target_roles[0]) } else { json!(target_roles) } });
    Some(json!([
        {
            "Sid": "CofferCrossAccountCopiesUseTheKey",
            "Effect": "Allow",
            "Principal": principal,
            "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncrypt*"],
            "Resource": "*",
        },
        {
            "Sid": "CofferCrossAccountCopiesGrantToAwsServices",
            "Effect": "Allow",
            "Principal": principal,
            "Action": "kms:CreateGrant",
            "Resource": "*",
            "Condition": { "Bool": { "kms:GrantIsForAWSResource": "true" } },
        },
    ]))
}

/// What this account's workers do with a mapping's key (in the target account) while making
/// a staging copy: a snapshot under an AWS managed key reaches another account only as a copy
/// under a key both accounts may use (RDS user guide, "Sharing encrypted snapshots"). The key
/// policy names this account, whose IAM policies (`backup_policy_json`) then pass the use on to
/// the workers' role — the delegation AWS documents for keys used by other accounts (KMS
/// developer guide, "Allowing users in other accounts to use a KMS key").
pub fn target_key_statements(partition: &str, account: &str) -> serde_json::Value {
    let principal = json!({ "AWS": format!("arn:{partition}:iam::{account}:root") });
    json!([
        {
            "Sid": "CofferStagingCopiesUseTheKey",
            "Effect": "Allow",
            "Principal": principal,
            "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncrypt*"],
            "Resource": "*",
        },
        {
            "Sid": "CofferStagingCopiesGrantToAwsServices",
            "Effect": "Allow",
            "Principal": principal,
            "Action": "kms:CreateGrant",
            "Resource": "*",
            "Condition": { "Bool": { "kms:GrantIsForAWSResource": "true" } },
        },
    ])
}

/// What the documents are narrowed to.
pub struct Narrowing {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub catalog_bucket: String,
    pub catalog_prefix: String,
    pub repository_buckets: Vec<String>,
    pub passed_roles: Vec<String>,
    pub target_roles: Vec<String>,
}

impl Narrowing {
    fn resources(&self, scope: Scope) -> Vec<String> {
        let p = &self.partition;
        let or_any = |items: &[String], f: &dyn Fn(&String) -> String, any: String| {
            if items.is_empty() { vec![any] } else { items.iter().map(f).collect() }
        };
        match scope {
            Scope::Any => vec!["*".into()],
            Scope::CatalogBucket => vec![format!("arn:{p}:s3:::{}", self.catalog_bucket)],
            Scope::CatalogObjects => vec![format!("arn:{p}:s3:::{}/{}*", self.catalog_bucket, self.catalog_prefix)],
            Scope::RepositoryBuckets => {
                or_any(&self.repository_buckets, &|b| format!("arn:{p}:s3:::{b}"), format!("arn:{p}:s3:::*"))
            }
            Scope::RepositoryObjects => {
                or_any(&self.repository_buckets, &|b| format!("arn:{p}:s3:::{b}/*"), format!("arn:{p}:s3:::*/*"))
            }
            Scope::Schedules => vec![
                format!("arn:{p}:scheduler:{}:{}:schedule/{SCHEDULE_GROUP}/*", self.region, self.account),
                format!("arn:{p}:scheduler:{}:{}:schedule-group/{SCHEDULE_GROUP}", self.region, self.account),
            ],
            Scope::PassedRoles => {
                or_any(&self.passed_roles, &|r| r.clone(), format!("arn:{p}:iam::{}:role/*", self.account))
            }
            Scope::TargetRoles => or_any(&self.target_roles, &|r| r.clone(), format!("arn:{p}:iam::*:role/*")),
        }
    }
}

/// The policy document of `role` for `features`: one statement per scope,
/// actions sorted and deduplicated.
pub fn document(role: Role, features: &[Feature], narrowing: &Narrowing) -> serde_json::Value {
    let mut by_scope: BTreeMap<Scope, Vec<&str>> = BTreeMap::new();
    for permission in PERMISSIONS.iter().filter(|p| p.role == role && applies(p, features)) {
        by_scope.entry(permission.scope).or_default().push(permission.action);
    }
    let statements: Vec<_> = by_scope
        .into_iter()
        .map(|(scope, mut actions)| {
            actions.sort_unstable();
            actions.dedup();
            let resources = narrowing.resources(scope);
            json!({
                "Sid": format!("Coffer{scope:?}"),
                "Effect": "Allow",
                "Action": actions,
                "Resource": if resources.len() == 1 { json!(resources[0]) } else { json!(resources) },
            })
        })
        .collect();
    json!({ "Version": "2012-10-17", "Statement": statements })
}

#[async_trait]
impl DataSource<Coffer> for IamPolicy {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn read(&self, data: &Coffer, config: &Value, _diags: &mut Diagnostics) -> Option<Value> {
        let chosen = config.get("features");
        let features: Vec<Feature> = Feature::SELECTABLE
            .iter()
            .filter(|(name, _)| chosen.is_null() || chosen.strings().iter().any(|c| c == name))
            .map(|(_, f)| *f)
            .collect();
        let narrowing = Narrowing {
            partition: coffer_aws::partition(&data.aws.home_region).to_string(),
            region: data.aws.home_region.clone(),
            account: data.aws.account_id.clone(),
            catalog_bucket: data.catalog.bucket.clone(),
            catalog_prefix: data.catalog.prefix.clone(),
            repository_buckets: config.get("repository_buckets").strings(),
            passed_roles: config.get("passed_role_arns").strings(),
            target_roles: config.get("target_role_arns").strings(),
        };
        let mut state = config.clone();
        let mut all = String::new();
        for (attribute, role) in [
            ("provider_policy_json", Role::Provider),
            ("scheduler_policy_json", Role::Scheduler),
            ("worker_policy_json", Role::Worker),
            ("backup_policy_json", Role::Backup),
            ("restore_policy_json", Role::Restore),
        ] {
            let json = document(role, &features, &narrowing).to_string();
            all.push_str(&json);
            state.set(attribute, json.as_str());
        }
        let statements = features
            .contains(&Feature::CrossAccount)
            .then(|| source_key_statements(&narrowing.target_roles))
            .flatten()
            .map(|s| s.to_string());
        all.push_str(statements.as_deref().unwrap_or_default());
        state.set("source_key_policy_statements_json", statements.as_deref().map(Value::from).unwrap_or(Value::Null));
        let target_statements = features
            .contains(&Feature::CrossAccount)
            .then(|| target_key_statements(&narrowing.partition, &narrowing.account).to_string());
        all.push_str(target_statements.as_deref().unwrap_or_default());
        state.set(
            "target_key_policy_statements_json",
            target_statements.as_deref().map(Value::from).unwrap_or(Value::Null),
        );
        use sha2::Digest;
        let id: String = sha2::Sha256::digest(all.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        state.set("id", id.as_str());
        Some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn narrowing() -> Narrowing {
        Narrowing {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
            catalog_bucket: "cat".into(),
            catalog_prefix: "team/".into(),
            repository_buckets: vec!["repo-a".into()],
            passed_roles: vec![],
            target_roles: vec![],
        }
    }

    fn actions(doc: &serde_json::Value) -> Vec<String> {
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn every_row_reaches_its_roles_document_when_all_features_are_on() {
        let all: Vec<Feature> = Feature::SELECTABLE.iter().map(|(_, f)| *f).collect();
        for role in [Role::Provider, Role::Scheduler, Role::Worker, Role::Backup, Role::Restore] {
            let doc = document(role, &all, &narrowing());
            let listed = actions(&doc);
            for p in PERMISSIONS.iter().filter(|p| p.role == role) {
                assert!(listed.iter().any(|a| a == p.action), "{:?} lacks {}", role, p.action);
            }
        }
    }

    #[test]
    fn source_keys_let_the_target_roles_copy_and_grant_only_to_aws_services() {
        assert_eq!(source_key_statements(&[]), None, "no principal to name");
        let role = "arn:aws:iam::222222222222:role/coffer-copy".to_string();
        let statements = source_key_statements(std::slice::from_ref(&role)).unwrap();
        let [usage, grants] = statements.as_array().unwrap().as_slice() else { panic!("two statements") };
        assert_eq!(usage["Principal"]["AWS"], role.as_str());
        assert!(usage.get("Condition").is_none(), "Decrypt and DescribeKey carry no grant condition");
        assert!(usage["Action"].as_array().unwrap().iter().any(|a| a == "kms:ReEncrypt*"));
        assert_eq!(grants["Action"], "kms:CreateGrant");
        assert_eq!(grants["Condition"]["Bool"]["kms:GrantIsForAWSResource"], "true");
    }

    #[test]
    fn mapping_keys_let_this_account_make_staging_copies() {
        let statements = target_key_statements("aws", "123456789012");
        let [usage, grants] = statements.as_array().unwrap().as_slice() else { panic!("two statements") };
        assert_eq!(usage["Principal"]["AWS"], "arn:aws:iam::123456789012:root");
        assert!(usage["Action"].as_array().unwrap().iter().any(|a| a == "kms:Encrypt"), "{usage}");
        assert_eq!(grants["Condition"]["Bool"]["kms:GrantIsForAWSResource"], "true");
    }

    #[test]
    fn features_not_in_use_leave_their_actions_out_and_resources_are_narrowed() {
        let doc = document(Role::Backup, &[Feature::Ec2], &narrowing());
        let listed = actions(&doc);
        assert!(listed.contains(&"ec2:CreateSnapshots".to_string()));
        assert!(!listed.iter().any(|a| a.starts_with("rds:")), "{listed:?}");
        let provider = document(Role::Provider, &[Feature::ImageBackup], &narrowing()).to_string();
        assert!(provider.contains("arn:aws:s3:::cat/team/*"), "{provider}");
        assert!(provider.contains("arn:aws:s3:::repo-a/*"), "{provider}");
        assert!(provider.contains("arn:aws:scheduler:us-east-1:123456789012:schedule/coffer/*"), "{provider}");
    }
}
