//! coffer_worker_configuration with real terraform against moto: the whole
//! lifecycle on the oldest and the newest Terraform, plan-time validation,
//! and the provider's configuration errors.

use aws_sdk_ec2::types::{
    Filter, InstanceType, LaunchTemplateInstanceNetworkInterfaceSpecificationRequest, RequestLaunchTemplateData, Tag,
};

use crate::support::terraform::{Terraform, oldest_terraform};
use crate::support::{Moto, Workdir, block_on, provider_binary, resource_values, terraform_versions};

const ADDRESS: &str = "coffer_worker_configuration.acc";

fn provider(moto: &Moto) -> String {
    format!(
        r#"terraform {{
  required_providers {{
    coffer = {{ source = "coffer/coffer" }}
  }}
}}

provider "coffer" {{
  region            = "us-east-1"
  endpoint_url      = "{}"
  s3_use_path_style = true
  default_tags      = {{ Owner = "platform" }}
}}
"#,
        moto.endpoint
    )
}

fn resource(security_group: &str, instance_type: &str, team: &str) -> String {
    format!(
        r#"
resource "coffer_worker_configuration" "acc" {{
  name               = "acc"
  instance_type      = "{instance_type}"
  security_group_ids = ["{security_group}"]
  tags               = {{ Team = "{team}" }}
}}
"#
    )
}

struct Ec2 {
    client: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
}

impl Ec2 {
    fn new(moto: &Moto) -> Self {
        let config = block_on(moto.sdk_config("us-east-1"));
        Self { client: aws_sdk_ec2::Client::new(&config), ssm: aws_sdk_ssm::Client::new(&config) }
    }

    fn default_security_group(&self) -> String {
        let out = block_on(
            self.client
                .describe_security_groups()
                .filters(Filter::builder().name("group-name").values("default").build())
                .send(),
        )
        .unwrap();
        out.security_groups()[0].group_id().unwrap().to_string()
    }

    fn latest_al2023_x86(&self) -> String {
        let out = block_on(
            self.ssm
                .get_parameter()
                .name("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
                .send(),
        )
        .unwrap();
        out.parameter().unwrap().value().unwrap().to_string()
    }

    fn default_subnets(&self) -> Vec<String> {
        let out = block_on(
            self.client
                .describe_subnets()
                .filters(Filter::builder().name("default-for-az").values("true").build())
                .send(),
        )
        .unwrap();
        out.subnets().iter().map(|s| s.subnet_id().unwrap().to_string()).collect()
    }

    /// The launch templates named `coffer-acc`.
    /// Every launch template of the region (the tests make no others).
    fn templates(&self) -> Vec<aws_sdk_ec2::types::LaunchTemplate> {
        let out = block_on(self.client.describe_launch_templates().send()).unwrap();
        out.launch_templates().to_vec()
    }

    fn default_version_data(&self, id: &str) -> aws_sdk_ec2::types::ResponseLaunchTemplateData {
        let out = block_on(
            self.client.describe_launch_template_versions().launch_template_id(id).versions("$Default").send(),
        )
        .unwrap();
        out.launch_template_versions()[0].launch_template_data().unwrap().clone()
    }

    fn template_tag(&self, id: &str, key: &str) -> Option<String> {
        let template = self.templates().into_iter().find(|t| t.launch_template_id() == Some(id))?;
        template.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value().map(str::to_string))
    }

    /// What an operator might do in the console: a new default version with
    /// another instance type, and a retagged template.
    fn edit_out_of_band(&self, id: &str, instance_type: &str) {
        let current = self.default_version_data(id);
        let interface = &current.network_interfaces()[0];
        // AWS would merge a version made with SourceVersion; moto does not
        // (see EMULATOR.md), so the new version spells out everything.
        let data = RequestLaunchTemplateData::builder()
            .image_id(current.image_id().unwrap())
            .instance_type(InstanceType::from(instance_type))
            .network_interfaces(
                LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                    .device_index(0)
                    .subnet_id(interface.subnet_id().unwrap())
                    .set_groups(Some(interface.groups().to_vec()))
                    .associate_public_ip_address(interface.associate_public_ip_address().unwrap_or(false))
                    .build(),
            )
            .build();
        self.publish_default_version(id, data);
        block_on(
            self.client
                .create_tags()
                .resources(id)
                .tags(Tag::builder().key("Team").value("changed-by-hand").build())
                .send(),
        )
        .unwrap();
    }

    /// A builder holding the current default version's settings, for an
    /// out-of-band version that changes just one of them.
    fn copy_of_default_version(&self, id: &str) -> aws_sdk_ec2::types::builders::RequestLaunchTemplateDataBuilder {
        use aws_sdk_ec2::types::{LaunchTemplateInstanceMetadataOptionsRequest, LaunchTemplateTagSpecificationRequest};
        let current = self.default_version_data(id);
        let interface = &current.network_interfaces()[0];
        let metadata = current.metadata_options().unwrap();
        RequestLaunchTemplateData::builder()
            .image_id(current.image_id().unwrap())
            .instance_type(current.instance_type().unwrap().clone())
            .network_interfaces(
                LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                    .device_index(0)
                    .subnet_id(interface.subnet_id().unwrap())
                    .set_groups(Some(interface.groups().to_vec()))
                    .associate_public_ip_address(interface.associate_public_ip_address().unwrap())
                    .delete_on_termination(interface.delete_on_termination().unwrap())
                    .build(),
            )
            .set_instance_initiated_shutdown_behavior(current.instance_initiated_shutdown_behavior().cloned())
            .user_data(current.user_data().unwrap())
            .set_tag_specifications(Some(
                current
                    .tag_specifications()
                    .iter()
                    .map(|t| {
                        LaunchTemplateTagSpecificationRequest::builder()
                            .set_resource_type(t.resource_type().cloned())
                            .set_tags(Some(t.tags().to_vec()))
                            .build()
                    })
                    .collect(),
            ))
            .metadata_options(
                LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .set_http_tokens(metadata.http_tokens().cloned())
                    .set_instance_metadata_tags(metadata.instance_metadata_tags().cloned())
                    .build(),
            )
    }

    /// A new default version identical to the current one but for IMDSv2,
    /// which it turns off: nothing with an argument of its own changes.
    fn allow_imdsv1_out_of_band(&self, id: &str) {
        use aws_sdk_ec2::types::{LaunchTemplateHttpTokensState, LaunchTemplateInstanceMetadataOptionsRequest};
        let current = self.default_version_data(id);
        let metadata = current.metadata_options().unwrap();
        let data = self
            .copy_of_default_version(id)
            .metadata_options(
                LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .http_tokens(LaunchTemplateHttpTokensState::Optional)
                    .set_instance_metadata_tags(metadata.instance_metadata_tags().cloned())
                    .build(),
            )
            .build();
        self.publish_default_version(id, data);
    }

    /// A new default version identical to the current one but for the AMI.
    fn replace_ami_out_of_band(&self, id: &str, ami: &str) {
        let data = self.copy_of_default_version(id).image_id(ami).build();
        self.publish_default_version(id, data);
    }

    /// A new version with `data`, made the default, as an operator would.
    fn publish_default_version(&self, id: &str, data: RequestLaunchTemplateData) {
        let created = block_on(
            self.client.create_launch_template_version().launch_template_id(id).launch_template_data(data).send(),
        )
        .unwrap();
        let version = created.launch_template_version().unwrap().version_number().unwrap();
        block_on(
            self.client.modify_launch_template().launch_template_id(id).default_version(version.to_string()).send(),
        )
        .unwrap();
    }

    fn versions(&self, id: &str) -> Vec<i64> {
        let out = block_on(self.client.describe_launch_template_versions().launch_template_id(id).send()).unwrap();
        let mut versions: Vec<i64> = out.launch_template_versions().iter().filter_map(|v| v.version_number()).collect();
        versions.sort();
        versions
    }

    fn delete(&self, id: &str) {
        block_on(self.client.delete_launch_template().launch_template_id(id).send()).unwrap();
    }
}

fn state_of(wd: &Workdir) -> serde_json::Value {
    resource_values(&wd.state_json(), ADDRESS).unwrap_or_else(|| panic!("{ADDRESS} is not in the state")).clone()
}

fn lifecycle(tf: &Terraform) {
    let moto = Moto::start();
    let ec2 = Ec2::new(&moto);
    let sg = ec2.default_security_group();
    let wd = Workdir::new(tf, &provider_binary());
    let provider = provider(&moto);
    wd.write("main.tf", &(provider.clone() + &resource(&sg, "c5.large", "a")));
    wd.init();

    // Create, with the defaults AWS decides.
    wd.apply();
    let state = state_of(&wd);
    let id = state["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("lt-"), "{state}");
    assert_eq!(state["region"], "us-east-1");
    assert_eq!(state["instance_type"], "c5.large");
    assert_eq!(state["associate_public_ip"], true);
    assert_eq!(state["ami_id"], ec2.latest_al2023_x86(), "default AMI: latest Amazon Linux 2023");
    assert!(ec2.default_subnets().contains(&state["subnet_id"].as_str().unwrap().to_string()));
    assert_eq!(state["tags_all"], serde_json::json!({"Owner": "platform", "Team": "a"}));
    assert_eq!(state["launch_template_version"], 1);
    let data = ec2.default_version_data(&id);
    assert_eq!(data.instance_type().unwrap().as_str(), "c5.large");
    assert_eq!(data.network_interfaces()[0].groups(), std::slice::from_ref(&sg));
    assert_eq!(ec2.template_tag(&id, "Owner").as_deref(), Some("platform"), "default_tags reach AWS");
    wd.assert_no_changes();

    // Import into a fresh state: the plan stays empty.
    let imported = wd.fresh_state_copy();
    imported.init();
    imported.import(ADDRESS, &id);
    imported.assert_no_changes();
    assert_eq!(state_of(&imported), state, "import reads back exactly what apply recorded");
    drop(imported);

    // Update in place: a new default version, same template.
    wd.write("main.tf", &(provider.clone() + &resource(&sg, "m5.large", "b")));
    let plan = wd.plan_json();
    let change = plan["resource_changes"].as_array().unwrap().iter().find(|c| c["address"] == ADDRESS).unwrap();
    assert_eq!(change["change"]["actions"], serde_json::json!(["update"]), "in place, not replaced");
    wd.apply();
    let state = state_of(&wd);
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["launch_template_version"], 2);
    assert_eq!(ec2.default_version_data(&id).instance_type().unwrap().as_str(), "m5.large");
    assert_eq!(ec2.template_tag(&id, "Team").as_deref(), Some("b"));
    wd.assert_no_changes();

    // Changed out of band: the plan shows it, apply heals it.
    ec2.edit_out_of_band(&id, "t3.micro");
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "drift must show in the plan:\n{output}");
    assert!(output.contains("\"t3.micro\" -> \"m5.large\""), "{output}");
    assert!(output.contains("\"changed-by-hand\" -> \"b\""), "{output}");
    // The hand-made version lacks the boot script and metadata settings.
    assert!(output.contains("template_fingerprint"), "{output}");
    wd.apply();
    assert_eq!(ec2.default_version_data(&id).instance_type().unwrap().as_str(), "m5.large");
    assert_eq!(ec2.template_tag(&id, "Team").as_deref(), Some("b"));
    wd.assert_no_changes();

    // Deleted out of band: the plan recreates it.
    ec2.delete(&id);
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "a deleted launch template must show in the plan:\n{output}");
    assert!(output.contains("will be created"), "{output}");
    wd.apply();
    let recreated = state_of(&wd)["id"].as_str().unwrap().to_string();
    assert_ne!(recreated, id);
    wd.assert_no_changes();

    // Destroy: nothing left.
    wd.destroy();
    assert!(ec2.templates().is_empty(), "destroy must delete the launch template");
}

#[test]
fn worker_configuration_lifecycle_on_oldest_terraform() {
    lifecycle(&oldest_terraform());
}

#[test]
fn worker_configuration_lifecycle_on_newest_terraform() {
    let versions = terraform_versions();
    let newest = versions.last().unwrap();
    if newest.version == oldest_terraform().version {
        eprintln!("only terraform {} is installed; the oldest-version test covers it", newest.version);
        return;
    }
    lifecycle(newest);
}

#[test]
fn invalid_arguments_fail_the_plan_naming_the_attribute_and_what_is_allowed() {
    let moto = Moto::start();
    let tf = terraform_versions().pop().unwrap();
    let wd = Workdir::new(&tf, &provider_binary());
    let cases = [
        ("name", r#"name = "has spaces""#, "1 to 64 letters, digits"),
        ("region", r#"region = "moon-base-one""#, "not an AWS region name"),
        ("instance_type", r#"instance_type = "huge""#, "expected family.size"),
        ("subnet_id", r#"subnet_id = "subnet-xyz""#, "8 or 17 hexadecimal digits"),
        ("security_group_ids", r#"security_group_ids = ["sg-1234"]"#, "security group id"),
        ("ami_id", r#"ami_id = "ubuntu""#, "not an AMI id"),
        ("instance_profile", r#"instance_profile = "arn:aws:iam::1:role/x""#, "instance-profile ARN"),
        ("tags", r#"tags = { "aws:reserved" = "x" }"#, "reserved \"aws:\" prefix"),
    ];
    let mut config = crate::support::provider_block(&moto, "us-east-1");
    for (i, (attribute, line, _)) in cases.iter().enumerate() {
        let name_line = if *attribute == "name" { String::new() } else { format!("name = \"bad{i}\"") };
        config += &format!("resource \"coffer_worker_configuration\" \"bad{i}\" {{\n  {name_line}\n  {line}\n}}\n");
    }
    wd.write("main.tf", &config);
    wd.init();
    let output = wd.try_plan().expect_err("a plan with invalid arguments must fail");
    for (i, (attribute, _, allowed)) in cases.iter().enumerate() {
        let block = output
            .split("Error: ")
            .find(|d| d.contains(&format!("coffer_worker_configuration.bad{i}")))
            .unwrap_or_else(|| panic!("no error for {attribute}:\n{output}"));
        // Terraform wraps long lines.
        let block = block.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(block.contains(attribute), "the error for {attribute} must name it:\n{block}");
        assert!(block.contains(allowed), "the error for {attribute} must say what is allowed:\n{block}");
    }
    assert!(Ec2::new(&moto).templates().is_empty());
}

#[test]
fn a_region_the_account_does_not_have_is_refused_at_plan_time() {
    let moto = Moto::start();
    let tf = terraform_versions().pop().unwrap();
    let wd = Workdir::new(&tf, &provider_binary());
    wd.write(
        "main.tf",
        &(crate::support::provider_block(&moto, "us-east-1")
            + r#"resource "coffer_worker_configuration" "x" {
  name   = "x"
  region = "xx-nowhere-9"
}
"#),
    );
    wd.init();
    let output = wd.try_plan().expect_err("an unknown region must fail the plan");
    assert!(output.contains("xx-nowhere-9") && output.contains("not enabled for this account"), "{output}");
    assert!(output.contains("us-east-1"), "the error lists the regions there are:\n{output}");
}

#[test]
fn an_unreachable_endpoint_fails_configuration_clearly() {
    let tf = oldest_terraform();
    let wd = Workdir::new(&tf, &provider_binary());
    // A port nothing listens on: bind one, note it, free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    wd.write(
        "main.tf",
        &format!(
            r#"terraform {{
  required_providers {{
    coffer = {{ source = "coffer/coffer" }}
  }}
}}
provider "coffer" {{
  region       = "us-east-1"
  endpoint_url = "http://127.0.0.1:{port}"
}}
resource "coffer_worker_configuration" "x" {{
  name = "x"
}}
"#
        ),
    );
    wd.init();
    let output = wd.try_plan().expect_err("an unreachable endpoint must fail the plan");
    assert!(output.contains("Cannot connect to AWS"), "{output}");
    assert!(output.contains("GetCallerIdentity"), "{output}");
    assert!(output.contains(&format!("127.0.0.1:{port}")), "the error names the endpoint:\n{output}");
}

#[test]
fn rejected_credentials_fail_configuration_clearly() {
    // Makes moto check signatures and keys as AWS does; "test" is no known key.
    let moto = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let wd = Workdir::new(&oldest_terraform(), &provider_binary());
    wd.write(
        "main.tf",
        &(crate::support::provider_block(&moto, "us-east-1")
            + "resource \"coffer_worker_configuration\" \"x\" {\n  name = \"x\"\n}\n"),
    );
    wd.init();
    let output = wd.try_plan().expect_err("rejected credentials must fail the plan");
    assert!(output.contains("Cannot connect to AWS"), "{output}");
    assert!(output.contains("InvalidClientTokenId"), "the AWS error code is shown:\n{output}");
    assert!(!output.contains("test/20"), "no credential material in the error:\n{output}");
}

#[test]
fn tf_log_shows_the_providers_rpcs_on_stderr() {
    let moto = Moto::start();
    let tf = terraform_versions().pop().unwrap();
    let mut wd = Workdir::new(&tf, &provider_binary());
    wd.write(
        "main.tf",
        &(crate::support::provider_block(&moto, "us-east-1")
            + "resource \"coffer_worker_configuration\" \"x\" {\n  name = \"x\"\n}\n"),
    );
    wd.init();
    wd.set_env("TF_LOG_PROVIDER", "DEBUG");
    let out = wd.run(&["plan", "-input=false", "-no-color"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rpc=\"PlanResourceChange\"") || stderr.contains("rpc=PlanResourceChange"),
        "TF_LOG_PROVIDER=DEBUG must show our RPC log lines:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("handled"), "logs stay off stdout");
}

#[test]
fn tags_known_only_at_apply_time_are_planned_as_unknown() {
    let moto = Moto::start();
    let tf = terraform_versions().pop().unwrap();
    if !tf.at_least(1, 4) {
        eprintln!("terraform_data needs Terraform 1.4; skipped on {}", tf.version);
        return;
    }
    let wd = Workdir::new(&tf, &provider_binary());
    wd.write(
        "main.tf",
        &(crate::support::provider_block(&moto, "us-east-1")
            + r#"resource "terraform_data" "build" {
  input = "b-42"
}
resource "coffer_worker_configuration" "x" {
  name = "x"
  tags = { Build = terraform_data.build.output }
}
"#),
    );
    wd.init();
    wd.apply();
    let state = resource_values(&wd.state_json(), "coffer_worker_configuration.x").unwrap().clone();
    assert_eq!(state["tags_all"]["Build"], "b-42");
    wd.assert_no_changes();
}

#[test]
fn imdsv2_turned_off_by_hand_shows_as_drift_and_is_healed_and_versions_stay_few() {
    let moto = Moto::start();
    let ec2 = Ec2::new(&moto);
    let tf = terraform_versions().pop().unwrap();
    let wd = Workdir::new(&tf, &provider_binary());
    wd.write("main.tf", &(provider(&moto) + &resource(&ec2.default_security_group(), "c5.large", "a")));
    wd.init();
    wd.apply();
    let id = state_of(&wd)["id"].as_str().unwrap().to_string();

    ec2.allow_imdsv1_out_of_band(&id);
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "a weakened template must show in the plan:\n{output}");
    assert!(output.contains("template_fingerprint"), "{output}");
    wd.apply();
    let healed = ec2.default_version_data(&id);
    assert_eq!(healed.metadata_options().unwrap().http_tokens().unwrap().as_str(), "required");
    wd.assert_no_changes();

    // Versions do not pile up: updates keep the newest five.
    for instance_type in ["c5.xlarge", "c5.2xlarge", "c5.4xlarge"] {
        wd.write("main.tf", &(provider(&moto) + &resource(&ec2.default_security_group(), instance_type, "a")));
        wd.apply();
    }
    assert_eq!(state_of(&wd)["launch_template_version"], 6);
    assert_eq!(ec2.versions(&id), vec![2, 3, 4, 5, 6]);
}

#[test]
fn the_default_subnet_is_in_a_zone_that_offers_the_instance_type() {
    let moto = Moto::start();
    let tf = terraform_versions().pop().unwrap();
    let wd = Workdir::new(&tf, &provider_binary());
    // Offered in us-east-1b, 1c and 1f only (EC2's offerings, as moto ships them).
    wd.write(
        "main.tf",
        &(crate::support::provider_block(&moto, "us-east-1")
            + "resource \"coffer_worker_configuration\" \"x\" {\n  name = \"x\"\n  instance_type = \"trn1.32xlarge\"\n}\n"),
    );
    wd.init();
    wd.apply();
    let subnet = resource_values(&wd.state_json(), "coffer_worker_configuration.x").unwrap()["subnet_id"]
        .as_str()
        .unwrap()
        .to_string();
    let client = Ec2::new(&moto).client;
    let out = block_on(client.describe_subnets().subnet_ids(&subnet).send()).unwrap();
    let zone = out.subnets()[0].availability_zone().unwrap().to_string();
    assert!(["us-east-1b", "us-east-1c", "us-east-1f"].contains(&zone.as_str()), "{subnet} is in {zone}");
}

#[test]
fn a_default_ami_changed_by_hand_is_planned_back() {
    // On the oldest Terraform: the resolved default lives in private state.
    let moto = Moto::start();
    let ec2 = Ec2::new(&moto);
    let wd = Workdir::new(&oldest_terraform(), &provider_binary());
    wd.write("main.tf", &(provider(&moto) + &resource(&ec2.default_security_group(), "c5.large", "a")));
    wd.init();
    wd.apply();
    let id = state_of(&wd)["id"].as_str().unwrap().to_string();
    let resolved = ec2.latest_al2023_x86();

    ec2.replace_ami_out_of_band(&id, "ami-0123456789abcdef0");
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "a default AMI changed by hand must show in the plan:\n{output}");
    assert!(output.contains(&format!("\"ami-0123456789abcdef0\" -> \"{resolved}\"")), "{output}");
    wd.apply();
    assert_eq!(ec2.default_version_data(&id).image_id(), Some(resolved.as_str()));
    wd.assert_no_changes();
}

/// Workers run the published x86_64 binary: an arm64 instance type is refused at plan, with
/// the reason, before anything is made; so is a type EC2 does not offer.
#[test]
fn an_instance_type_the_worker_binary_cannot_run_on_is_refused_at_plan_time() {
    let moto = Moto::start();
    let tf = terraform_versions().pop().unwrap();
    let wd = Workdir::new(&tf, &provider_binary());
    for (instance_type, expected) in [
        ("t4g.micro", "t4g.micro has arm64 processors; Coffer builds its worker binary for x86_64 only so far"),
        ("c5.humongous", "EC2 in us-east-1 does not offer instance type \"c5.humongous\""),
    ] {
        wd.write(
            "main.tf",
            &(crate::support::provider_block(&moto, "us-east-1")
                + &format!("resource \"coffer_worker_configuration\" \"x\" {{\n  name          = \"x\"\n  instance_type = \"{instance_type}\"\n}}\n")),
        );
        wd.init();
        let output = wd.try_plan().expect_err("the plan must fail");
        let output = output.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(output.contains("instance_type"), "{output}");
        assert!(output.contains(expected), "{output}");
    }
    assert!(Ec2::new(&moto).templates().is_empty());
}

/// A private VPC as a platform team makes one: no internet gateway, no VPC endpoints, DNS
/// hostnames off (the default of a new VPC). Returns (vpc, subnet, its route table).
fn private_vpc(ec2: &Ec2) -> (String, String, String) {
    let vpc = block_on(ec2.client.create_vpc().cidr_block("10.8.0.0/16").send()).unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let subnet = block_on(ec2.client.create_subnet().vpc_id(&vpc).cidr_block("10.8.1.0/24").send()).unwrap();
    let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
    let tables = block_on(
        ec2.client.describe_route_tables().filters(Filter::builder().name("vpc-id").values(&vpc).build()).send(),
    )
    .unwrap();
    let table = tables.route_tables()[0].route_table_id().unwrap().to_string();
    (vpc, subnet, table)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Preflight of the workers' network: a subnet from which workers could reach neither S3
/// nor EC2 is a warning at plan (the endpoints may come in the same apply) and an error at
/// apply naming subnet_id, what is missing and what to add, with nothing made; once the
/// VPC has what the error asked for, the same configuration applies.
#[test]
fn a_subnet_workers_could_not_reach_aws_from_is_refused_at_apply_naming_what_to_add() {
    let moto = Moto::start();
    let tf = terraform_versions().pop().unwrap();
    let ec2 = Ec2::new(&moto);
    let (vpc, subnet, table) = private_vpc(&ec2);
    let wd = Workdir::new(&tf, &provider_binary());
    wd.write(
        "main.tf",
        &(crate::support::provider_block(&moto, "us-east-1")
            + &format!(
                "resource \"coffer_worker_configuration\" \"private\" {{\n  name                = \"private\"\n  \
                 subnet_id           = \"{subnet}\"\n  associate_public_ip = false\n}}\n"
            )),
    );
    wd.init();

    let plan = one_line(&wd.try_plan().expect("preflight warns at plan, it does not fail it"));
    assert!(plan.contains("Warning: Workers cannot work: reach s3"), "{plan}");
    assert!(plan.contains("Checked again at apply, when this is an error"), "{plan}");

    let failed = one_line(&wd.try_apply().expect_err("the apply must fail"));
    for expected in [
        "Error: Workers cannot work: DNS hostnames",
        &format!("{vpc} has enableDnsHostnames off"),
        "enable_dns_hostnames = true",
        "Error: Workers cannot work: reach s3",
        &format!("subnet {subnet} cannot reach com.amazonaws.us-east-1.s3: route table {table} has no 0.0.0.0/0 route"),
        &format!("a gateway VPC endpoint com.amazonaws.us-east-1.s3 associated with route table {table}"),
        "Error: Workers cannot work: reach ec2",
        "an interface VPC endpoint com.amazonaws.us-east-1.ec2 with private DNS enabled",
        "subnet_id",
    ] {
        assert!(failed.contains(expected), "{expected:?} missing from:\n{failed}");
    }
    assert!(ec2.templates().is_empty(), "a refused worker configuration makes nothing");

    // What the errors asked for.
    block_on(
        ec2.client
            .modify_vpc_attribute()
            .vpc_id(&vpc)
            .enable_dns_hostnames(aws_sdk_ec2::types::AttributeBooleanValue::builder().value(true).build())
            .send(),
    )
    .unwrap();
    let endpoint = |kind: aws_sdk_ec2::types::VpcEndpointType, service: &str| {
        ec2.client.create_vpc_endpoint().vpc_id(&vpc).vpc_endpoint_type(kind).service_name(service)
    };
    use aws_sdk_ec2::types::VpcEndpointType::{Gateway, Interface};
    block_on(endpoint(Gateway, "com.amazonaws.us-east-1.s3").route_table_ids(&table).send()).unwrap();
    block_on(endpoint(Interface, "com.amazonaws.us-east-1.ec2").subnet_ids(&subnet).private_dns_enabled(true).send())
        .unwrap();
    let applied = one_line(&wd.apply());
    for passed in ["reach s3", "reach ec2", "DNS"] {
        assert!(!applied.contains(&format!("Workers cannot work: {passed}")), "{applied}");
    }
    assert_eq!(ec2.templates().len(), 1);
}

/// Preflight of what a worker configuration names: an instance profile IAM does not have,
/// or an internet-gateway subnet without a public IP, is refused at apply at that attribute.
#[test]
fn a_missing_instance_profile_or_public_ip_is_refused_at_its_attribute() {
    let moto = Moto::start();
    let tf = terraform_versions().pop().unwrap();
    let wd = Workdir::new(&tf, &provider_binary());
    for (arguments, attribute, expected) in [
        (
            "instance_profile = \"coffer-nobody\"",
            "instance_profile",
            "instance profile \"coffer-nobody\" does not exist in IAM",
        ),
        (
            "associate_public_ip = false",
            "associate_public_ip",
            "workers get no public IP (associate_public_ip = false), so that route carries none of their traffic",
        ),
    ] {
        wd.write(
            "main.tf",
            &(crate::support::provider_block(&moto, "us-east-1")
                + &format!("resource \"coffer_worker_configuration\" \"x\" {{\n  name = \"x\"\n  {arguments}\n}}\n")),
        );
        wd.init();
        let failed = one_line(&wd.try_apply().expect_err("the apply must fail"));
        assert!(failed.contains(expected), "{expected:?} missing from:\n{failed}");
        assert!(failed.contains(&format!("{attribute} =")), "the error points at {attribute}:\n{failed}");
    }
    assert!(Ec2::new(&moto).templates().is_empty());
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// The provider block of [`provider`] with `worker_binary` set.
fn provider_publishing(moto: &Moto, binary: &std::path::Path) -> String {
    provider(moto).replace("  default_tags", &format!("  worker_binary     = \"{}\"\n  default_tags", binary.display()))
}

/// Workers fetch what the catalog holds: applying a worker configuration publishes the
/// provider's worker build, once (an unchanged build is not uploaded again), shows a build
/// replaced by hand as drift and puts its own back without a new launch template version; a
/// build workers could not start is refused at plan, naming `worker_binary`.
#[test]
fn applying_publishes_the_providers_worker_build_once_and_puts_it_back_when_replaced() {
    use crate::support::aws::{Aws, CATALOG_BUCKET};
    let moto = Moto::start();
    let ec2 = Ec2::new(&moto);
    let aws = Aws::new(&moto);
    let sg = ec2.default_security_group();
    let dir = tempfile::tempdir().unwrap();
    let build = crate::support::tools::small_elf_needing_glibc(dir.path(), "2.17");
    let bytes = std::fs::read(&build).unwrap();
    let key = "bin/coffer-linux-x86_64";
    let tf = terraform_versions().pop().unwrap();
    let wd = Workdir::new(&tf, &provider_binary());
    wd.write("main.tf", &(provider_publishing(&moto, &build) + &resource(&sg, "c5.large", "a")));
    wd.init();
    wd.apply();
    assert_eq!(aws.get(CATALOG_BUCKET, key).as_deref(), Some(&bytes[..]), "apply published the build");
    assert_eq!(state_of(&wd)["worker_binary_sha256"], sha256_hex(&bytes));
    wd.assert_no_changes();

    // An update of the template publishes nothing new.
    wd.write("main.tf", &(provider_publishing(&moto, &build) + &resource(&sg, "c5.large", "b")));
    wd.apply();
    assert_eq!(state_of(&wd)["launch_template_version"], 2);
    assert_eq!(aws.versions(CATALOG_BUCKET, key), 1, "the same build is not uploaded twice");

    // Replaced by hand: the plan says so, and apply puts the provider's build back.
    aws.put(CATALOG_BUCKET, key, b"#!/bin/sh\necho someone else's build\n".to_vec());
    let (code, output) = wd.plan_exit_code();
    assert_eq!(code, 2, "a replaced worker binary must show in the plan:\n{output}");
    assert!(output.contains("worker_binary_sha256"), "{output}");
    assert!(!output.contains("launch_template_version"), "the template itself is unchanged:\n{output}");
    wd.apply();
    assert_eq!(aws.get(CATALOG_BUCKET, key).as_deref(), Some(&bytes[..]));
    assert_eq!(state_of(&wd)["launch_template_version"], 2, "no launch template version for a binary");
    wd.assert_no_changes();

    // A build linked against this machine's newer glibc would not start on Amazon Linux 2.
    wd.write(
        "main.tf",
        &(provider_publishing(&moto, std::path::Path::new(env!("CARGO_BIN_EXE_coffer")))
            + &resource(&sg, "c5.large", "b")),
    );
    let refused = one_line(&wd.try_plan().expect_err("a build needing a newer glibc must fail the plan"));
    assert!(refused.contains("Worker binary refused"), "{refused}");
    assert!(refused.contains("worker_binary"), "{refused}");
    assert!(refused.contains("newer than the 2.26 of Amazon Linux 2"), "{refused}");
    assert!(refused.contains("scripts/build-worker.sh"), "{refused}");
    assert_eq!(aws.get(CATALOG_BUCKET, key).as_deref(), Some(&bytes[..]), "nothing was published");
}

/// A release package carries the worker build beside the provider (`coffer-linux-x86_64`):
/// with no `worker_binary` argument, applying a worker configuration publishes that one.
#[test]
fn the_worker_build_shipped_beside_the_provider_is_published_without_an_argument() {
    use crate::support::aws::{Aws, CATALOG_BUCKET};
    let moto = Moto::start();
    let ec2 = Ec2::new(&moto);
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("package");
    std::fs::create_dir(&package).unwrap();
    let provider_in_package = package.join("terraform-provider-coffer");
    std::fs::copy(provider_binary(), &provider_in_package).unwrap();
    let build = crate::support::tools::small_elf_needing_glibc(dir.path(), "2.26");
    std::fs::copy(&build, package.join(coffer::provider::SHIPPED_WORKER_BINARY)).unwrap();

    let wd = Workdir::new(&terraform_versions().pop().unwrap(), &provider_in_package);
    wd.write("main.tf", &(provider(&moto) + &resource(&ec2.default_security_group(), "c5.large", "a")));
    wd.init();
    wd.apply();
    let bytes = std::fs::read(&build).unwrap();
    let published = Aws::new(&moto).get(CATALOG_BUCKET, "bin/coffer-linux-x86_64");
    assert_eq!(published.as_deref(), Some(&bytes[..]), "the shipped build is what workers fetch");
    assert_eq!(state_of(&wd)["worker_binary_sha256"], sha256_hex(&bytes));
    wd.assert_no_changes();
}
