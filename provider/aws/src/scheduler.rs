//! EventBridge Scheduler lookups.

use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput;

use super::AwsError;

pub const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];

pub async fn find_schedule(client: &Client, group: &str, name: &str) -> Result<GetScheduleOutput, AwsError> {
    client.get_schedule().group_name(group).name(name).send().await.map_err(|e| AwsError::from_sdk(e, NOT_FOUND))
}

/// Creates the schedule group unless it exists. Real AWS answers a schedule
/// in a missing group with ResourceNotFoundException, so it must exist first.
pub async fn ensure_group(client: &Client, group: &str) -> Result<(), AwsError> {
    match client.get_schedule_group().name(group).send().await {
        Ok(_) => Ok(()),
        Err(e) => match AwsError::from_sdk(e, NOT_FOUND) {
            AwsError::NotFound => match client.create_schedule_group().name(group).send().await {
                Ok(_) => Ok(()),
                // Created by a concurrent apply in the meantime.
                Err(e) if e.as_service_error().is_some_and(|s| s.is_conflict_exception()) => Ok(()),
                Err(e) => Err(AwsError::from_sdk(e, &[])),
            },
            e => Err(e),
        },
    }
}
