//! Preflight: can a worker placed in a subnet, with an instance profile,
//! launched by a scheduler role, reach the AWS services its work needs?
//!
//! The lookups (`find_*`, [`may_pass_role`]) gather what AWS says; the
//! judgement ([`network_checks`], [`instance_profile_check`],
//! [`pass_role_check`]) is pure, so each verdict and its advice is tested
//! without AWS. A worker reaches a regional service either over the internet
//! (a `0.0.0.0/0` route to an internet gateway with a public IP, or to a NAT
//! gateway) or through a VPC endpoint of the service in its VPC (a gateway
//! endpoint on the subnet's route table for S3; an interface endpoint with
//! private DNS for the rest, which needs the VPC's DNS support and
//! hostnames). What lies beyond a transit gateway, a peering or an appliance
//! cannot be seen from here: such a route is reported as unverified, never as
//! a failure.

use aws_sdk_ec2::types::{Filter, VpcAttributeName, VpcEndpointType};

use crate::{AwsClients, AwsError};

/// A regional service a worker calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    /// The catalog, the published binary, repositories.
    S3,
    /// Instances, volumes, snapshots, tags.
    Ec2,
    /// EBS direct APIs: image-level backups and archives read snapshot blocks.
    Ebs,
    /// Roles of cross-account region mappings.
    Sts,
    /// KMS repositories and the workers' envelope of password repositories.
    Kms,
    /// RDS policies.
    Rds,
}

impl Service {
    /// Every service a worker may need, in the order checks are reported.
    pub const ALL: [Service; 6] = [Service::S3, Service::Ec2, Service::Ebs, Service::Sts, Service::Kms, Service::Rds];

    /// The endpoint prefix, as in `com.amazonaws.<region>.<prefix>`.
    pub fn prefix(self) -> &'static str {
        match self {
            Service::S3 => "s3",
            Service::Ec2 => "ec2",
            Service::Ebs => "ebs",
            Service::Sts => "sts",
            Service::Kms => "kms",
            Service::Rds => "rds",
        }
    }

    /// The VPC endpoint service name in `region`.
    pub fn endpoint_service(self, region: &str) -> String {
        format!("com.amazonaws.{region}.{}", self.prefix())
    }
}

/// Where a subnet's `0.0.0.0/0` route leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultRoute {
    InternetGateway(String),
    NatGateway(String),
    /// A route whose target is gone (deleted NAT gateway, detached gateway).
    Blackhole(String),
    /// A transit gateway, peering, virtual private gateway, network interface
    /// or appliance: whether it reaches AWS cannot be seen from the subnet.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcEndpoint {
    pub id: String,
    pub service: String,
    pub gateway: bool,
    /// Route tables of a gateway endpoint.
    pub route_table_ids: Vec<String>,
    /// Interface endpoints: whether the service's public name resolves to it.
    pub private_dns: bool,
    pub available: bool,
}

/// What AWS says of a subnet's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetNetwork {
    pub region: String,
    pub subnet_id: String,
    pub vpc_id: String,
    /// The subnet's route table: its explicit association, else the VPC's main table.
    pub route_table_id: Option<String>,
    pub default_route: Option<DefaultRoute>,
    pub dns_support: bool,
    pub dns_hostnames: bool,
    pub endpoints: Vec<VpcEndpoint>,
}

/// What a check concerns, so that callers can name their own attribute or flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Concern {
    /// The subnet, its route table and its VPC.
    Subnet,
    /// Whether workers get a public IP address.
    PublicIp,
    InstanceProfile,
    /// The role EventBridge Scheduler launches workers with.
    SchedulerRole,
    /// The home region's workers' role, which launches the other regions' workers.
    WorkerRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// Would make the worker fail.
    Fail,
    /// Could not be judged from here (said why).
    Unverified,
}

/// One judged requirement: what, the verdict, and in words why (and, when
/// it fails, what to add).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub subject: String,
    pub verdict: Verdict,
    pub concern: Concern,
    pub detail: String,
}

impl Check {
    pub fn new(subject: impl Into<String>, verdict: Verdict, concern: Concern, detail: impl Into<String>) -> Self {
        Self { subject: subject.into(), verdict, concern, detail: detail.into() }
    }
}

/// How a worker with `public_ip` in this subnet reaches the internet, if it does.
enum InternetPath {
    Open(String),
    /// A route leads somewhere that cannot be judged.
    Unknown(String),
    Closed(String),
}

fn internet_path(network: &SubnetNetwork, public_ip: bool) -> InternetPath {
    let table = network.route_table_id.as_deref().unwrap_or("(none)");
    match &network.default_route {
        Some(DefaultRoute::InternetGateway(igw)) if public_ip => {
            InternetPath::Open(format!("over the internet through {igw} with a public IP"))
        }
        Some(DefaultRoute::InternetGateway(igw)) => InternetPath::Closed(format!(
            "route table {table} sends 0.0.0.0/0 to internet gateway {igw}, but workers get no public IP \
             (associate_public_ip = false), so that route carries none of their traffic"
        )),
        Some(DefaultRoute::NatGateway(nat)) => {
            InternetPath::Open(format!("over the internet through NAT gateway {nat}"))
        }
        Some(DefaultRoute::Blackhole(target)) => InternetPath::Closed(format!(
            "route table {table} sends 0.0.0.0/0 to {target}, which no longer exists (blackhole)"
        )),
        Some(DefaultRoute::Other(target)) => InternetPath::Unknown(format!(
            "route table {table} sends 0.0.0.0/0 to {target}; whether that reaches AWS cannot be seen from here"
        )),
        None => InternetPath::Closed(format!("route table {table} has no 0.0.0.0/0 route")),
    }
}

/// The checks of a worker's network: DNS, then one per service in `services`.
pub fn network_checks(network: &SubnetNetwork, public_ip: bool, services: &[Service]) -> Vec<Check> {
    let vpc = &network.vpc_id;
    let mut checks = Vec::new();
    for (on, attribute, subject, terraform) in [
        (network.dns_support, "enableDnsSupport", "DNS resolution", "enable_dns_support"),
        (network.dns_hostnames, "enableDnsHostnames", "DNS hostnames", "enable_dns_hostnames"),
    ] {
        checks.push(if on {
            Check::new(subject, Verdict::Pass, Concern::Subnet, format!("{attribute} is on in {vpc}"))
        } else {
            Check::new(
                subject,
                Verdict::Fail,
                Concern::Subnet,
                format!(
                    "{vpc} has {attribute} off: workers cannot resolve AWS endpoints (nor the private names of \
                     interface endpoints). Turn it on ({terraform} = true on the aws_vpc)."
                ),
            )
        });
    }
    let path = internet_path(network, public_ip);
    let table = network.route_table_id.clone().unwrap_or_default();
    for &service in services {
        let name = service.endpoint_service(&network.region);
        let endpoints: Vec<&VpcEndpoint> = network.endpoints.iter().filter(|e| e.service == name).collect();
        let gateway = endpoints.iter().find(|e| e.gateway && e.available && e.route_table_ids.contains(&table));
        let interface = endpoints.iter().find(|e| !e.gateway && e.available && e.private_dns);
        let subject = format!("reach {}", service.prefix());
        let check = match (gateway, interface, &path) {
            (Some(endpoint), _, _) => Check::new(
                subject,
                Verdict::Pass,
                Concern::Subnet,
                format!("through gateway endpoint {} on {table}", endpoint.id),
            ),
            (None, Some(endpoint), _) => Check::new(
                subject,
                Verdict::Pass,
                Concern::Subnet,
                format!("through interface endpoint {} (private DNS)", endpoint.id),
            ),
            (None, None, InternetPath::Open(how)) => Check::new(subject, Verdict::Pass, Concern::Subnet, how.clone()),
            (None, None, InternetPath::Unknown(why)) => Check::new(
                subject,
                Verdict::Unverified,
                Concern::Subnet,
                format!("no VPC endpoint for {name}, and {why}"),
            ),
            (None, None, InternetPath::Closed(why)) => {
                let concern = match network.default_route {
                    Some(DefaultRoute::InternetGateway(_)) => Concern::PublicIp,
                    _ => Concern::Subnet,
                };
                Check::new(
                    subject,
                    Verdict::Fail,
                    concern,
                    format!(
                        "subnet {} cannot reach {name}: {why}, and {vpc} has {}. Add {}, or a 0.0.0.0/0 route to a \
                         NAT gateway{}.",
                        network.subnet_id,
                        unusable_endpoints(&endpoints),
                        wanted_endpoint(service, &name, &table),
                        match network.default_route {
                            Some(DefaultRoute::InternetGateway(_)) => ", or set associate_public_ip = true",
                            _ => "",
                        },
                    ),
                )
            }
        };
        checks.push(check);
    }
    checks
}

/// Why the endpoints the VPC has for a service do not serve the subnet.
fn unusable_endpoints(endpoints: &[&VpcEndpoint]) -> String {
    if endpoints.is_empty() {
        return "no VPC endpoint for it".to_string();
    }
    let reasons: Vec<String> = endpoints
        .iter()
        .map(|e| {
            let why = if !e.available {
                "is not available"
            } else if e.gateway {
                "is not on that route table"
            } else {
                "has private DNS off"
            };
            format!("{} {why}", e.id)
        })
        .collect();
    format!("endpoint {}", reasons.join(", "))
}

/// The endpoint that would serve the subnet.
fn wanted_endpoint(service: Service, name: &str, table: &str) -> String {
    match service {
        // The gateway endpoint is free and serves S3 through the route table.
        Service::S3 => format!("a gateway VPC endpoint {name} associated with route table {table}"),
        _ => format!("an interface VPC endpoint {name} with private DNS enabled"),
    }
}

/// What IAM says of an instance profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceProfile {
    pub name: String,
    pub role_arns: Vec<String>,
}

/// The check of a worker configuration's instance profile (`None`: none set).
pub fn instance_profile_check(named: Option<&str>, found: Option<&InstanceProfile>) -> Check {
    let subject = "instance profile";
    match (named, found) {
        (None, _) => Check::new(
            subject,
            Verdict::Fail,
            Concern::InstanceProfile,
            "no instance_profile: workers would have no AWS credentials, so they could fetch nothing and record \
             nothing. Set instance_profile to a profile whose role has the coffer_iam_policy worker permissions.",
        ),
        (Some(name), None) => Check::new(
            subject,
            Verdict::Fail,
            Concern::InstanceProfile,
            format!(
                "instance profile {name:?} does not exist in IAM; create it (aws_iam_instance_profile) or name another."
            ),
        ),
        (Some(name), Some(profile)) if profile.role_arns.is_empty() => Check::new(
            subject,
            Verdict::Fail,
            Concern::InstanceProfile,
            format!(
                "instance profile {name:?} holds no role: workers would get no credentials. Add the workers' role to it."
            ),
        ),
        (Some(_), Some(profile)) => Check::new(
            subject,
            Verdict::Pass,
            Concern::InstanceProfile,
            format!("{} with role {}", profile.name, profile.role_arns.join(", ")),
        ),
    }
}

/// What the IAM policy simulator decided for one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    ImplicitDeny,
    ExplicitDeny,
}

const PASS_ROLE: &str = "scheduler may pass the workers' role";

/// The check that the scheduler role may pass the workers' role to EC2.
pub fn pass_role_check(scheduler_role: &str, worker_role: &str, decision: Decision) -> Check {
    let consequence = "so EventBridge Scheduler's RunInstances would be refused at every firing";
    let grant = "the coffer_iam_policy data source's scheduler document does";
    let refusal = Refusal { principal_is: "", consequence, grant };
    pass_role(PASS_ROLE, Concern::SchedulerRole, scheduler_role, worker_role, decision, &refusal)
}

/// Whether the home region's workers (`launcher`, their role) may pass `worker_role` to the
/// workers they launch in `region` for its image-level work.
pub fn region_worker_pass_role_check(launcher: &str, worker_role: &str, region: &str, decision: Decision) -> Check {
    let consequence = format!(
        "so the schedule's worker could not launch {region}'s workers and no image-level point of {region} would be \
         made"
    );
    let refusal = Refusal {
        principal_is: " (the role of the home region's workers)",
        consequence: &consequence,
        grant: "the coffer_iam_policy data source's worker document does, with the backup feature",
    };
    let subject = "home workers may pass this region's workers' role";
    pass_role(subject, Concern::WorkerRole, launcher, worker_role, decision, &refusal)
}

/// What a refused iam:PassRole says besides the roles.
struct Refusal<'a> {
    /// Who the principal is, after its ARN.
    principal_is: &'a str,
    /// What the refusal would stop.
    consequence: &'a str,
    /// What grants it.
    grant: &'a str,
}

/// The verdict of IAM's policy simulator on `principal` passing `role`.
fn pass_role(
    subject: &str,
    concern: Concern,
    principal: &str,
    role: &str,
    decision: Decision,
    refusal: &Refusal<'_>,
) -> Check {
    match decision {
        Decision::Allowed => {
            Check::new(subject, Verdict::Pass, concern, format!("{principal} is allowed iam:PassRole on {role}"))
        }
        Decision::ImplicitDeny | Decision::ExplicitDeny => Check::new(
            subject,
            Verdict::Fail,
            concern,
            format!(
                "{principal}{} is {} iam:PassRole on {role}, {}. Grant it ({}){}.",
                refusal.principal_is,
                if decision == Decision::ExplicitDeny { "explicitly denied" } else { "not allowed" },
                refusal.consequence,
                refusal.grant,
                if decision == Decision::ExplicitDeny { ", and remove the Deny" } else { "" }
            ),
        ),
    }
}

/// Where and as whom workers run: what a worker configuration (a launch template) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub region: String,
    pub subnet_id: Option<String>,
    pub public_ip: bool,
    pub instance_profile: Option<String>,
}

impl Placement {
    /// A launch template's placement.
    pub fn of_template(region: &str, data: &aws_sdk_ec2::types::ResponseLaunchTemplateData) -> Self {
        let interface = data.network_interfaces().first();
        Self {
            region: region.to_string(),
            subnet_id: interface.and_then(|i| i.subnet_id()).map(str::to_string),
            public_ip: interface.and_then(|i| i.associate_public_ip_address()).unwrap_or(false),
            instance_profile: data.iam_instance_profile().and_then(|p| p.arn().or(p.name())).map(str::to_string),
        }
    }
}

/// A placement's checks, and its instance profile's role as IAM has it.
#[derive(Debug, Clone)]
pub struct PlacementChecks {
    pub checks: Vec<Check>,
    /// `None`: no instance profile, one that does not exist, or one IAM would not show.
    pub role: Option<String>,
}

/// Every check of a placement: its network for `services`, its instance
/// profile and, with `scheduler_role`, that the role may pass the profile's
/// role. A lookup that fails for another reason than absence (no permission
/// to ask, throttling) makes its check unverified, with the reason.
pub async fn placement_checks(
    aws: &AwsClients,
    placement: &Placement,
    services: &[Service],
    scheduler_role: Option<&str>,
) -> PlacementChecks {
    let region = &placement.region;
    let mut checks = Vec::new();
    match &placement.subnet_id {
        None => checks.push(Check::new(
            "subnet",
            Verdict::Unverified,
            Concern::Subnet,
            "the launch template names no subnet; EC2 picks a default subnet at launch",
        )),
        Some(subnet) => match find_subnet_network(&aws.ec2(region), region, subnet).await {
            Ok(network) => checks.extend(network_checks(&network, placement.public_ip, services)),
            Err(AwsError::NotFound) => checks.push(Check::new(
                "subnet",
                Verdict::Fail,
                Concern::Subnet,
                format!("subnet {subnet} does not exist in {region}"),
            )),
            Err(e) => checks.push(unverified(
                "subnet",
                Concern::Subnet,
                format!("describing subnet {subnet} in {region}: {e}"),
            )),
        },
    }
    let profile = match placement.instance_profile.as_deref() {
        None => {
            checks.push(instance_profile_check(None, None));
            None
        }
        Some(name) => match find_instance_profile(&aws.iam(), name).await {
            Ok(profile) => {
                checks.push(instance_profile_check(Some(name), Some(&profile)));
                Some(profile)
            }
            Err(AwsError::NotFound) => {
                checks.push(instance_profile_check(Some(name), None));
                None
            }
            Err(e) => {
                checks.push(unverified(
                    "instance profile",
                    Concern::InstanceProfile,
                    format!("reading instance profile {name}: {e}"),
                ));
                None
            }
        },
    };
    if let (Some(scheduler), Some(worker_role)) = (scheduler_role, profile.as_ref().and_then(|p| p.role_arns.first())) {
        checks.push(match may_pass_role(&aws.iam(), scheduler, worker_role).await {
            Ok(decision) => pass_role_check(scheduler, worker_role, decision),
            Err(AwsError::NotFound) => Check::new(
                PASS_ROLE,
                Verdict::Fail,
                Concern::SchedulerRole,
                format!("scheduler role {scheduler} does not exist in IAM"),
            ),
            Err(e) => unverified(
                PASS_ROLE,
                Concern::SchedulerRole,
                format!("simulating iam:PassRole for {scheduler} on {worker_role}: {e}"),
            ),
        });
    }
    PlacementChecks { checks, role: profile.and_then(|p| p.role_arns.into_iter().next()) }
}

fn unverified(subject: &str, concern: Concern, why: String) -> Check {
    Check::new(subject, Verdict::Unverified, concern, format!("not checked: {why}"))
}

const SUBNET_NOT_FOUND: &[&str] = &["InvalidSubnetID.NotFound", "InvalidSubnetID.Malformed"];
const IAM_NOT_FOUND: &[&str] = &["NoSuchEntity"];

/// The network of `subnet_id` as a worker there would use it.
pub async fn find_subnet_network(
    client: &aws_sdk_ec2::Client,
    region: &str,
    subnet_id: &str,
) -> Result<SubnetNetwork, AwsError> {
    let subnets = client
        .describe_subnets()
        .subnet_ids(subnet_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, SUBNET_NOT_FOUND))?;
    let vpc_id = subnets
        .subnets()
        .iter()
        .find(|s| s.subnet_id() == Some(subnet_id))
        .and_then(|s| s.vpc_id())
        .ok_or(AwsError::NotFound)?
        .to_string();

    // A subnet without an explicit association uses the VPC's main table.
    let associated = client
        .describe_route_tables()
        .filters(Filter::builder().name("association.subnet-id").values(subnet_id).build())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    let table = match associated.route_tables().first() {
        Some(table) => Some(table.clone()),
        None => client
            .describe_route_tables()
            .filters(Filter::builder().name("vpc-id").values(&vpc_id).build())
            .filters(Filter::builder().name("association.main").values("true").build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, &[]))?
            .route_tables()
            .first()
            .cloned(),
    };
    let default_route = table.as_ref().and_then(|t| {
        let route = t.routes().iter().find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))?;
        let target = [
            route.nat_gateway_id(),
            route.gateway_id(),
            route.transit_gateway_id(),
            route.vpc_peering_connection_id(),
            route.network_interface_id(),
            route.instance_id(),
            route.local_gateway_id(),
            route.carrier_gateway_id(),
            route.egress_only_internet_gateway_id(),
            route.core_network_arn(),
        ]
        .into_iter()
        .flatten()
        .next()
        .unwrap_or("an unknown target")
        .to_string();
        Some(if route.state().is_some_and(|s| s.as_str() == "blackhole") {
            DefaultRoute::Blackhole(target)
        } else if route.nat_gateway_id().is_some() {
            DefaultRoute::NatGateway(target)
        } else if target.starts_with("igw-") {
            DefaultRoute::InternetGateway(target)
        } else {
            DefaultRoute::Other(target)
        })
    });

    let dns_support = vpc_attribute(client, &vpc_id, VpcAttributeName::EnableDnsSupport).await?;
    let dns_hostnames = vpc_attribute(client, &vpc_id, VpcAttributeName::EnableDnsHostnames).await?;

    let mut endpoints = Vec::new();
    let mut pages = client
        .describe_vpc_endpoints()
        .filters(Filter::builder().name("vpc-id").values(&vpc_id).build())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk(e, &[]))?;
        endpoints.extend(page.vpc_endpoints().iter().map(|e| VpcEndpoint {
            id: e.vpc_endpoint_id().unwrap_or_default().to_string(),
            service: e.service_name().unwrap_or_default().to_string(),
            gateway: e.vpc_endpoint_type() == Some(&VpcEndpointType::Gateway),
            route_table_ids: e.route_table_ids().to_vec(),
            private_dns: e.private_dns_enabled().unwrap_or(false),
            available: e.state().is_some_and(|s| s.as_str().eq_ignore_ascii_case("available")),
        }));
    }
    Ok(SubnetNetwork {
        region: region.to_string(),
        subnet_id: subnet_id.to_string(),
        vpc_id,
        route_table_id: table.and_then(|t| t.route_table_id().map(str::to_string)),
        default_route,
        dns_support,
        dns_hostnames,
        endpoints,
    })
}

async fn vpc_attribute(
    client: &aws_sdk_ec2::Client,
    vpc_id: &str,
    attribute: VpcAttributeName,
) -> Result<bool, AwsError> {
    let out = client
        .describe_vpc_attribute()
        .vpc_id(vpc_id)
        .attribute(attribute.clone())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    let value = match attribute {
        VpcAttributeName::EnableDnsHostnames => out.enable_dns_hostnames(),
        _ => out.enable_dns_support(),
    };
    Ok(value.and_then(|v| v.value()).unwrap_or(false))
}

/// An instance profile by name or ARN (`arn:…:instance-profile/path/name`).
pub async fn find_instance_profile(
    client: &aws_sdk_iam::Client,
    name_or_arn: &str,
) -> Result<InstanceProfile, AwsError> {
    let name = instance_profile_name(name_or_arn);
    let out = client
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, IAM_NOT_FOUND))?;
    let profile = out.instance_profile().ok_or(AwsError::NotFound)?;
    Ok(InstanceProfile {
        name: profile.instance_profile_name().to_string(),
        role_arns: profile.roles().iter().map(|r| r.arn().to_string()).collect(),
    })
}

/// The name in an instance profile ARN (after its path), or the name given.
pub fn instance_profile_name(name_or_arn: &str) -> &str {
    match name_or_arn.strip_prefix("arn:") {
        Some(_) => name_or_arn.rsplit('/').next().unwrap_or(name_or_arn),
        None => name_or_arn,
    }
}

/// Whether `principal` (a role ARN) may `iam:PassRole` `role`, by its
/// identity policies (IAM SimulatePrincipalPolicy; permission boundaries
/// count, organization SCPs do not).
pub async fn may_pass_role(client: &aws_sdk_iam::Client, principal: &str, role: &str) -> Result<Decision, AwsError> {
    let out = client
        .simulate_principal_policy()
        .policy_source_arn(principal)
        .action_names("iam:PassRole")
        .resource_arns(role)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, IAM_NOT_FOUND))?;
    let decision = out.evaluation_results().first().map(|r| r.eval_decision().as_str().to_string());
    Ok(match decision.as_deref() {
        Some("allowed") => Decision::Allowed,
        Some("explicitDeny") => Decision::ExplicitDeny,
        _ => Decision::ImplicitDeny,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(default_route: Option<DefaultRoute>, endpoints: Vec<VpcEndpoint>) -> SubnetNetwork {
        SubnetNetwork {
            region: "eu-west-1".into(),
            subnet_id: "subnet-1".into(),
            vpc_id: "vpc-1".into(),
            route_table_id: Some("rtb-1".into()),
            default_route,
            dns_support: true,
            dns_hostnames: true,
            endpoints,
        }
    }

    fn endpoint(service: Service, gateway: bool) -> VpcEndpoint {
        VpcEndpoint {
            id: format!("vpce-{}", service.prefix()),
            service: service.endpoint_service("eu-west-1"),
            gateway,
            route_table_ids: if gateway { vec!["rtb-1".into()] } else { vec![] },
            private_dns: !gateway,
            available: true,
        }
    }

    fn verdicts(checks: &[Check]) -> Vec<(String, Verdict)> {
        checks.iter().map(|c| (c.subject.clone(), c.verdict)).collect()
    }

    #[test]
    fn an_internet_gateway_with_a_public_ip_reaches_everything() {
        let checks =
            network_checks(&network(Some(DefaultRoute::InternetGateway("igw-1".into())), vec![]), true, &Service::ALL);
        assert!(checks.iter().all(|c| c.verdict == Verdict::Pass), "{checks:#?}");
        assert_eq!(checks.len(), 2 + Service::ALL.len());
        assert!(checks[2].detail.contains("igw-1"));
    }

    #[test]
    fn an_internet_gateway_without_a_public_ip_fails_on_the_public_ip() {
        let checks = network_checks(
            &network(Some(DefaultRoute::InternetGateway("igw-1".into())), vec![]),
            false,
            &[Service::Ec2],
        );
        let ec2 = &checks[2];
        assert_eq!((ec2.verdict, ec2.concern), (Verdict::Fail, Concern::PublicIp));
        assert!(ec2.detail.contains("associate_public_ip = true"), "{}", ec2.detail);
    }

    #[test]
    fn a_nat_gateway_reaches_everything_without_a_public_ip() {
        let checks =
            network_checks(&network(Some(DefaultRoute::NatGateway("nat-1".into())), vec![]), false, &Service::ALL);
        assert!(checks.iter().all(|c| c.verdict == Verdict::Pass), "{checks:#?}");
    }

    #[test]
    fn a_private_subnet_needs_an_endpoint_per_service_and_names_each_missing_one() {
        let endpoints = vec![endpoint(Service::S3, true), endpoint(Service::Ec2, false)];
        let checks = network_checks(&network(None, endpoints), false, &[Service::S3, Service::Ec2, Service::Ebs]);
        assert_eq!(
            verdicts(&checks),
            [
                ("DNS resolution".into(), Verdict::Pass),
                ("DNS hostnames".into(), Verdict::Pass),
                ("reach s3".into(), Verdict::Pass),
                ("reach ec2".into(), Verdict::Pass),
                ("reach ebs".into(), Verdict::Fail),
            ]
        );
        assert!(checks[2].detail.contains("gateway endpoint vpce-s3"));
        let ebs = &checks[4].detail;
        assert!(ebs.contains("interface VPC endpoint com.amazonaws.eu-west-1.ebs with private DNS enabled"), "{ebs}");
        assert!(ebs.contains("no 0.0.0.0/0 route"), "{ebs}");
    }

    #[test]
    fn endpoints_that_do_not_serve_the_subnet_say_why() {
        let mut s3 = endpoint(Service::S3, true);
        s3.route_table_ids = vec!["rtb-other".into()];
        let mut kms = endpoint(Service::Kms, false);
        kms.private_dns = false;
        let checks = network_checks(&network(None, vec![s3, kms]), true, &[Service::S3, Service::Kms]);
        assert!(checks[2].detail.contains("vpce-s3 is not on that route table"), "{}", checks[2].detail);
        assert!(checks[2].detail.contains("associated with route table rtb-1"), "{}", checks[2].detail);
        assert!(checks[3].detail.contains("vpce-kms has private DNS off"), "{}", checks[3].detail);
    }

    #[test]
    fn a_route_beyond_sight_is_unverified_not_failed() {
        let checks =
            network_checks(&network(Some(DefaultRoute::Other("tgw-1".into())), vec![]), false, &[Service::Sts]);
        assert_eq!(checks[2].verdict, Verdict::Unverified);
        assert!(checks[2].detail.contains("tgw-1"));
        let checks =
            network_checks(&network(Some(DefaultRoute::Blackhole("nat-gone".into())), vec![]), false, &[Service::Sts]);
        assert_eq!(checks[2].verdict, Verdict::Fail);
        assert!(checks[2].detail.contains("blackhole"));
    }

    #[test]
    fn dns_off_fails_with_the_terraform_argument_to_set() {
        let mut net = network(Some(DefaultRoute::NatGateway("nat-1".into())), vec![]);
        net.dns_hostnames = false;
        let checks = network_checks(&net, false, &[]);
        assert_eq!(verdicts(&checks)[1], ("DNS hostnames".into(), Verdict::Fail));
        assert!(checks[1].detail.contains("enable_dns_hostnames = true"));
    }

    #[test]
    fn instance_profiles_must_exist_and_hold_a_role() {
        assert_eq!(instance_profile_check(None, None).verdict, Verdict::Fail);
        assert!(instance_profile_check(Some("w"), None).detail.contains("does not exist"));
        let empty = InstanceProfile { name: "w".into(), role_arns: vec![] };
        assert!(instance_profile_check(Some("w"), Some(&empty)).detail.contains("holds no role"));
        let good = InstanceProfile { name: "w".into(), role_arns: vec!["arn:aws:iam::1:role/w".into()] };
        assert_eq!(instance_profile_check(Some("w"), Some(&good)).verdict, Verdict::Pass);
        assert_eq!(instance_profile_name("arn:aws:iam::123456789012:instance-profile/team/w"), "w");
        assert_eq!(instance_profile_name("w"), "w");
    }

    #[test]
    fn pass_role_denials_name_both_roles() {
        let check = pass_role_check("arn:s", "arn:w", Decision::ImplicitDeny);
        assert_eq!((check.verdict, check.concern), (Verdict::Fail, Concern::SchedulerRole));
        assert!(check.detail.contains("arn:s is not allowed iam:PassRole on arn:w"), "{}", check.detail);
        assert!(pass_role_check("arn:s", "arn:w", Decision::ExplicitDeny).detail.contains("remove the Deny"));
        assert_eq!(pass_role_check("arn:s", "arn:w", Decision::Allowed).verdict, Verdict::Pass);
    }
}
