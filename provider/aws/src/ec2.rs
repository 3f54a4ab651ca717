//! EC2 lookups.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, LaunchTemplate, ResponseLaunchTemplateData};

use super::AwsError;

/// Error codes EC2 uses for a launch template that does not exist (or an id
/// that cannot exist).
pub const LAUNCH_TEMPLATE_NOT_FOUND: &[&str] = &[
    "InvalidLaunchTemplateId.NotFound",
    "InvalidLaunchTemplateId.Malformed",
    "InvalidLaunchTemplateName.NotFoundException",
];

pub async fn describe_regions(client: Client) -> Result<Vec<String>, AwsError> {
    let out = client.describe_regions().send().await.map_err(|e| AwsError::from_sdk(e, &[]))?;
    let mut regions: Vec<String> = out.regions().iter().filter_map(|r| r.region_name().map(str::to_string)).collect();
    regions.sort();
    Ok(regions)
}

/// A launch template and the data of its default version.
#[derive(Debug, Clone)]
pub struct LaunchTemplateWithData {
    pub template: LaunchTemplate,
    pub default_version: i64,
    pub data: ResponseLaunchTemplateData,
}

/// The launch template `id` with the data of `version`, or of its default
/// version when `None`. Right after ModifyLaunchTemplate, EC2 may still
/// report the old default for a while: a caller that just made a version
/// names it.
pub async fn find_launch_template_by_id(
    client: &Client,
    id: &str,
    version: Option<i64>,
) -> Result<LaunchTemplateWithData, AwsError> {
    let out = client
        .describe_launch_templates()
        .launch_template_ids(id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, LAUNCH_TEMPLATE_NOT_FOUND))?;
    let template = out
        .launch_templates()
        .iter()
        .find(|t| t.launch_template_id() == Some(id))
        .cloned()
        .ok_or(AwsError::NotFound)?;
    let default_version = version.or(template.default_version_number()).unwrap_or(1);
    let versions = client
        .describe_launch_template_versions()
        .launch_template_id(id)
        .versions(default_version.to_string())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, LAUNCH_TEMPLATE_NOT_FOUND))?;
    let data = versions
        .launch_template_versions()
        .iter()
        .find(|v| v.version_number() == Some(default_version))
        .and_then(|v| v.launch_template_data())
        .cloned()
        .ok_or(AwsError::NotFound)?;
    Ok(LaunchTemplateWithData { template, default_version, data })
}

/// A default subnet of the region's default VPC in an availability zone that
/// offers `instance_type` (the first such zone by name); when EC2 reports
/// no offerings, the first default subnet.
pub async fn find_default_subnet(client: &Client, instance_type: &str) -> Result<String, AwsError> {
    let vpcs = client
        .describe_vpcs()
        .filters(Filter::builder().name("is-default").values("true").build())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &[]))?;
    let vpc_id = vpcs.vpcs().first().and_then(|v| v.vpc_id()).ok_or(AwsError::NotFound)?.to_string();
    let mut subnets = Vec::new();
    let mut pages = client
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values(&vpc_id).build())
        .filters(Filter::builder().name("default-for-az").values("true").build())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk(e, &[]))?;
        for subnet in page.subnets() {
            if let (Some(az), Some(id)) = (subnet.availability_zone(), subnet.subnet_id()) {
                subnets.push((az.to_string(), id.to_string()));
            }
        }
    }
    subnets.sort();
    let offering_zones = find_zones_offering(client, instance_type).await?;
    let in_offering_zone = subnets.iter().find(|(az, _)| offering_zones.iter().any(|z| z == az));
    in_offering_zone.or(subnets.first()).map(|(_, id)| id.clone()).ok_or(AwsError::NotFound)
}

/// The availability zones of the client's region that offer `instance_type`.
pub async fn find_zones_offering(client: &Client, instance_type: &str) -> Result<Vec<String>, AwsError> {
    let mut zones = Vec::new();
    let mut pages = client
        .describe_instance_type_offerings()
        .location_type(aws_sdk_ec2::types::LocationType::AvailabilityZone)
        .filters(Filter::builder().name("instance-type").values(instance_type).build())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk(e, &[]))?;
        zones.extend(page.instance_type_offerings().iter().filter_map(|o| o.location().map(str::to_string)));
    }
    Ok(zones)
}

/// The processor architectures an instance type runs (`x86_64`, `arm64`).
pub async fn find_instance_type_architectures(client: &Client, instance_type: &str) -> Result<Vec<String>, AwsError> {
    let out = client
        .describe_instance_types()
        .instance_types(instance_type.into())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &["InvalidInstanceType"]))?;
    let info = out.instance_types().first().ok_or(AwsError::NotFound)?;
    Ok(info
        .processor_info()
        .map(|p| p.supported_architectures().iter().map(|a| a.as_str().to_string()).collect())
        .unwrap_or_default())
}

/// A launch template's summary (no version data), by id.
pub async fn find_launch_template(client: &Client, id: &str) -> Result<aws_sdk_ec2::types::LaunchTemplate, AwsError> {
    let out = client
        .describe_launch_templates()
        .launch_template_ids(id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, LAUNCH_TEMPLATE_NOT_FOUND))?;
    out.launch_templates().iter().find(|t| t.launch_template_id() == Some(id)).cloned().ok_or(AwsError::NotFound)
}

pub const SNAPSHOT_NOT_FOUND: &[&str] = &["InvalidSnapshot.NotFound"];

/// Instances matching `filters` that are not terminated, every page read.
pub async fn list_instances(
    client: &Client,
    filters: Vec<Filter>,
) -> Result<Vec<aws_sdk_ec2::types::Instance>, AwsError> {
    let live = Filter::builder()
        .name("instance-state-name")
        .values("pending")
        .values("running")
        .values("stopping")
        .values("stopped")
        .build();
    let mut all = Vec::new();
    let mut pages =
        client.describe_instances().set_filters(Some(filters)).filters(live).max_results(1000).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk(e, &[]))?;
        all.extend(page.reservations().iter().flat_map(|r| r.instances().iter().cloned()));
    }
    Ok(all)
}

/// Snapshots owned by this account matching `filters` (and `ids`, when
/// given), every page read.
pub async fn list_own_snapshots(
    client: &Client,
    filters: Vec<Filter>,
    ids: &[String],
) -> Result<Vec<aws_sdk_ec2::types::Snapshot>, AwsError> {
    let mut all = Vec::new();
    let mut request = client.describe_snapshots().owner_ids("self").set_filters(Some(filters));
    if ids.is_empty() {
        request = request.max_results(1000);
    } else {
        // AWS refuses MaxResults together with SnapshotIds.
        request = request.set_snapshot_ids(Some(ids.to_vec()));
    }
    let mut pages = request.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk(e, SNAPSHOT_NOT_FOUND))?;
        all.extend(page.snapshots().iter().cloned());
    }
    Ok(all)
}

/// A filter on one tag's value.
pub fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder().name(format!("tag:{key}")).values(value).build()
}

/// A worker instance to launch from a launch template.
#[derive(Debug, Clone)]
pub struct WorkerLaunch<'a> {
    pub launch_template_id: &'a str,
    /// The boot script (plain text; encoded here as RunInstances wants it).
    pub user_data: &'a str,
    pub tags: &'a [(String, String)],
    /// RunInstances' idempotency token (at most 64 ASCII characters): a retried launch with
    /// the same token gets the instance the first one made, not a second one.
    pub client_token: &'a str,
}

/// Launches one instance from the template's default version with `launch`'s user data and
/// tags; returns its id.
pub async fn launch_worker(client: &Client, launch: &WorkerLaunch<'_>) -> Result<String, AwsError> {
    use aws_sdk_ec2::types::{LaunchTemplateSpecification, ResourceType, Tag, TagSpecification};
    use base64::Engine;
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .set_tags(Some(launch.tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
        .build();
    let out = client
        .run_instances()
        .launch_template(LaunchTemplateSpecification::builder().launch_template_id(launch.launch_template_id).build())
        .min_count(1)
        .max_count(1)
        .user_data(base64::engine::general_purpose::STANDARD.encode(launch.user_data))
        .tag_specifications(tags)
        .client_token(launch.client_token)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, LAUNCH_TEMPLATE_NOT_FOUND))?;
    out.instances().first().and_then(|i| i.instance_id()).map(str::to_string).ok_or(AwsError::NotFound)
}

/// The first of `ids` that is a launch template in the client's region (launch template ids
/// are regional: a worker configuration lives in one region); `NotFound` when none is.
pub async fn find_launch_template_among(client: &Client, ids: &[String]) -> Result<String, AwsError> {
    for id in ids {
        match find_launch_template(client, id).await {
            Ok(_) => return Ok(id.clone()),
            Err(AwsError::NotFound) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(AwsError::NotFound)
}
