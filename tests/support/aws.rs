//! Direct AWS access for tests: what an operator would see or change
//! outside Terraform, through the SDK against the same emulator.

use aws_sdk_s3::primitives::ByteStream;

use super::{Moto, block_on};

pub const ACCOUNT: &str = "123456789012";
pub const CATALOG_BUCKET: &str = "coffer-catalog-123456789012-us-east-1";
pub const SCHEDULER_ROLE: &str = "arn:aws:iam::123456789012:role/coffer-scheduler";

pub struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub scheduler: aws_sdk_scheduler::Client,
    pub kms: aws_sdk_kms::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub iam: aws_sdk_iam::Client,
}

/// The workers' role and instance profile, both named `coffer-worker`.
pub const WORKER_ROLE: &str = "arn:aws:iam::123456789012:role/coffer-worker";
/// The inline policy that lets [`SCHEDULER_ROLE`] pass [`WORKER_ROLE`].
pub const PASS_WORKER_ROLE: &str = "pass-coffer-worker";

impl Aws {
    pub fn new(moto: &Moto) -> Self {
        let config = block_on(moto.sdk_config("us-east-1"));
        let s3 = aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3),
            scheduler: aws_sdk_scheduler::Client::new(&config),
            kms: aws_sdk_kms::Client::new(&config),
            ec2: aws_sdk_ec2::Client::new(&config),
            iam: aws_sdk_iam::Client::new(&config),
        }
    }

    /// The IAM a user sets up for workers: role and instance profile `coffer-worker`, and
    /// the scheduler role [`SCHEDULER_ROLE`] with an inline policy ([`PASS_WORKER_ROLE`])
    /// that lets it pass the workers' role.
    pub fn worker_iam(&self) {
        block_on(async {
            let trust = r#"{"Version":"2012-10-17","Statement":[]}"#;
            self.iam.create_role().role_name("coffer-worker").assume_role_policy_document(trust).send().await.unwrap();
            self.iam.create_instance_profile().instance_profile_name("coffer-worker").send().await.unwrap();
            self.iam
                .add_role_to_instance_profile()
                .instance_profile_name("coffer-worker")
                .role_name("coffer-worker")
                .send()
                .await
                .unwrap();
            self.iam
                .create_role()
                .role_name("coffer-scheduler")
                .assume_role_policy_document(trust)
                .send()
                .await
                .unwrap();
            let pass = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": WORKER_ROLE}],
            });
            self.iam
                .put_role_policy()
                .role_name("coffer-scheduler")
                .policy_name(PASS_WORKER_ROLE)
                .policy_document(pass.to_string())
                .send()
                .await
                .unwrap();
        });
    }

    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        // One runtime for the request and its body: the body streams on the
        // connection the request opened.
        block_on(async {
            let out = self.s3.get_object().bucket(bucket).key(key).send().await.ok()?;
            Some(out.body.collect().await.unwrap().into_bytes().to_vec())
        })
    }

    pub fn get_json(&self, bucket: &str, key: &str) -> Option<serde_json::Value> {
        self.get(bucket, key).map(|b| serde_json::from_slice(&b).unwrap())
    }

    pub fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        block_on(self.s3.put_object().bucket(bucket).key(key).body(ByteStream::from(body)).send()).unwrap();
    }

    pub fn put_json(&self, bucket: &str, key: &str, value: &serde_json::Value) {
        self.put(bucket, key, serde_json::to_vec_pretty(value).unwrap());
    }

    pub fn delete(&self, bucket: &str, key: &str) {
        block_on(self.s3.delete_object().bucket(bucket).key(key).send()).unwrap();
    }

    pub fn versioning_enabled(&self, bucket: &str) -> bool {
        match block_on(self.s3.get_bucket_versioning().bucket(bucket).send()) {
            Ok(out) => out.status().map(|s| s.as_str()) == Some("Enabled"),
            // moto answers with root element GetBucketVersioningResponse where
            // AWS sends VersioningConfiguration, which the SDK rejects; read
            // the status from the raw body instead.
            Err(e) => e
                .raw_response()
                .and_then(|r| r.body().bytes())
                .is_some_and(|b| String::from_utf8_lossy(b).contains("<Status>Enabled</Status>")),
        }
    }

    /// How many versions of `key` the (versioned) bucket holds.
    pub fn versions(&self, bucket: &str, key: &str) -> usize {
        let out = block_on(self.s3.list_object_versions().bucket(bucket).prefix(key).send()).unwrap();
        out.versions().iter().filter(|v| v.key() == Some(key)).count()
    }

    pub fn bucket_exists(&self, bucket: &str) -> bool {
        block_on(self.s3.head_bucket().bucket(bucket).send()).is_ok()
    }

    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        match block_on(self.s3.list_objects_v2().bucket(bucket).prefix(prefix).send()) {
            Ok(out) => out.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn schedule(&self, name: &str) -> Option<aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput> {
        block_on(self.scheduler.get_schedule().group_name("coffer").name(name).send()).ok()
    }

    pub fn schedule_names(&self) -> Vec<String> {
        match block_on(self.scheduler.list_schedules().group_name("coffer").send()) {
            Ok(out) => {
                let mut names: Vec<String> =
                    out.schedules().iter().filter_map(|s| s.name().map(str::to_string)).collect();
                names.sort();
                names
            }
            Err(_) => Vec::new(),
        }
    }

    pub fn kms_key(&self) -> String {
        let out = block_on(self.kms.create_key().description("coffer test").send()).unwrap();
        out.key_metadata().unwrap().arn().unwrap().to_string()
    }
}

/// The SDK configuration of `role` (in another account), assumed with the test's credentials:
/// moto gives each account its own resources, as AWS does.
pub fn assumed_config(moto: &Moto, role: &str, region: &str) -> aws_config::SdkConfig {
    let base = block_on(moto.sdk_config(region));
    let sts = aws_sdk_sts::Client::new(&base);
    let out = block_on(sts.assume_role().role_arn(role).role_session_name("coffer-test").send()).unwrap();
    let c = out.credentials().unwrap();
    let credentials = aws_credential_types::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        None,
        "assumed",
    );
    base.into_builder()
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(credentials))
        .build()
}

/// A new KMS key in `region` of the account `role` is in.
pub fn kms_key_of(moto: &Moto, role: &str, region: &str) -> String {
    let kms = aws_sdk_kms::Client::new(&assumed_config(moto, role, region));
    let out = block_on(kms.create_key().description("coffer test, other account").send()).unwrap();
    out.key_metadata().unwrap().arn().unwrap().to_string()
}
