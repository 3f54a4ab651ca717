//! Tag handling shared by resources: the provider's `default_tags` merged
//! under each resource's own `tags`, as terraform-provider-aws does.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Tag;

use coffer_aws::AwsError;

/// `defaults` overlaid by `own` (a resource's tags win).
pub fn merge(defaults: &BTreeMap<String, String>, own: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut all = defaults.clone();
    all.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

/// The resource's own tags out of everything found on it: drops tags that
/// equal a default, unless the prior state had them as the resource's own.
pub fn without_defaults(
    all: &BTreeMap<String, String>,
    defaults: &BTreeMap<String, String>,
    prior_own: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    all.iter()
        .filter(|(k, v)| prior_own.contains_key(*k) || defaults.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Moves an EC2 resource's tags from `old` to `new`.
pub async fn sync_ec2(
    client: &aws_sdk_ec2::Client,
    resource_id: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    let removed: Vec<Tag> =
        old.keys().filter(|k| !new.contains_key(*k)).map(|k| Tag::builder().key(k).build()).collect();
    if !removed.is_empty() {
        client
            .delete_tags()
            .resources(resource_id)
            .set_tags(Some(removed))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, &[]))?;
    }
    let changed: Vec<Tag> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    if !changed.is_empty() {
        client
            .create_tags()
            .resources(resource_id)
            .set_tags(Some(changed))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(e, &[]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn own_tags_win_and_defaults_split_back_out() {
        let defaults = map(&[("Owner", "platform"), ("Env", "prod")]);
        let own = map(&[("Env", "dev"), ("App", "x")]);
        let all = merge(&defaults, &own);
        assert_eq!(all, map(&[("App", "x"), ("Env", "dev"), ("Owner", "platform")]));
        assert_eq!(without_defaults(&all, &defaults, &BTreeMap::new()), own);
    }
}
