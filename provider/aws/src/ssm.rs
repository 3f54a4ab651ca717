//! SSM lookups: AWS publishes the latest Amazon Linux images as public
//! parameters, which is the documented way to find them.

use aws_sdk_ssm::Client;

use super::AwsError;

/// The public parameter naming the latest Amazon Linux 2023 AMI.
pub fn al2023_parameter(architecture: &str) -> String {
    format!("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{architecture}")
}

/// The latest Amazon Linux 2023 AMI id for an architecture in the client's region.
pub async fn find_latest_al2023_ami(client: &Client, architecture: &str) -> Result<String, AwsError> {
    let out = client
        .get_parameter()
        .name(al2023_parameter(architecture))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(e, &["ParameterNotFound"]))?;
    out.parameter().and_then(|p| p.value()).map(str::to_string).ok_or(AwsError::NotFound)
}
