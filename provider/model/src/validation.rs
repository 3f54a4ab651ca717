//! Shape checks for AWS names and ids, used as plan-time validators. Each
//! returns an error text saying what is allowed.

use std::time::Duration;

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`, `ap-southeast-7`.
pub fn region(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('-').collect();
    let well_formed = parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts[1..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok();
    if well_formed {
        Ok(())
    } else {
        Err(format!("{s:?} is not an AWS region name; expected a name such as \"us-east-1\" or \"eu-west-1\"."))
    }
}

/// An EC2 resource id: `<prefix>-` and 8 or 17 lowercase hex digits.
fn resource_id(s: &str, prefix: &str, what: &str) -> Result<(), String> {
    match s.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('-')) {
        Some(hex) if (hex.len() == 8 || hex.len() == 17) && is_hex(hex) => Ok(()),
        _ => Err(format!("{s:?} is not {what} id; expected \"{prefix}-\" followed by 8 or 17 hexadecimal digits.")),
    }
}

pub fn subnet_id(s: &str) -> Result<(), String> {
    resource_id(s, "subnet", "a subnet")
}

pub fn security_group_id(s: &str) -> Result<(), String> {
    resource_id(s, "sg", "a security group")
}

pub fn ami_id(s: &str) -> Result<(), String> {
    resource_id(s, "ami", "an AMI")
}

/// `c5.large`, `m7g.2xlarge`, `u-6tb1.metal`: family, a dot, a size.
pub fn instance_type(s: &str) -> Result<(), String> {
    let ok = match s.split_once('.') {
        Some((family, size)) => {
            family.starts_with(|c: char| c.is_ascii_lowercase())
                && family.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !size.is_empty()
                && size.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not an EC2 instance type; expected family.size, such as \"c5.large\" or \"m6i.xlarge\"."))
    }
}

/// An IAM ARN of the given resource kind (`role`, `instance-profile`).
pub fn iam_arn(s: &str, kind: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix(kind).and_then(|r| r.strip_prefix('/')).is_some_and(|name| !name.is_empty());
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not an IAM {kind} ARN; expected arn:aws:iam::<12-digit account>:{kind}/<name>."))
    }
}

pub fn role_arn(s: &str) -> Result<(), String> {
    iam_arn(s, "role")
}

/// An SQS queue ARN: `arn:<partition>:sqs:<region>:<12-digit account>:<queue name>`.
pub fn sqs_queue_arn(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let ok = matches!(parts.as_slice(), ["arn", partition, "sqs", region, account, name]
        if partition.starts_with("aws")
            && self::region(region).is_ok()
            && account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())
            && !name.is_empty() && name.len() <= 80
            && name.trim_end_matches(".fifo").chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not an SQS queue ARN (arn:aws:sqs:<region>:<12-digit account>:<queue name>)"))
    }
}

/// An instance profile name or ARN.
pub fn instance_profile(s: &str) -> Result<(), String> {
    if s.starts_with("arn:") {
        return iam_arn(s, "instance-profile");
    }
    let ok = !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not an instance profile name (1-128 letters, digits and +=,.@_-) or ARN."))
    }
}

pub fn url(s: &str) -> Result<(), String> {
    if (s.starts_with("http://") || s.starts_with("https://")) && s.len() > "https://".len() {
        Ok(())
    } else {
        Err(format!("{s:?} is not an endpoint URL; expected http://host[:port] or https://host[:port]."))
    }
}

/// A name Coffer uses inside AWS names (`coffer-<name>`): letters, digits,
/// `-`, `_` and `.`; 1 to 64 characters.
pub fn coffer_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok { Ok(()) } else { Err(format!("{s:?} is not a valid name; use 1 to 64 letters, digits, '-', '_' or '.'.")) }
}

/// Tag keys: 1-128 characters, not in the `aws:` namespace AWS reserves.
pub fn tag_key(s: &str) -> Result<(), String> {
    if s.is_empty() || s.chars().count() > 128 {
        Err(format!("tag key {s:?} must be 1 to 128 characters."))
    } else if s.to_ascii_lowercase().starts_with("aws:") {
        Err(format!("tag key {s:?} uses the reserved \"aws:\" prefix."))
    } else {
        Ok(())
    }
}

/// Keys of tags that reach a worker instance: workers read their tags from
/// instance metadata, and with metadata tags enabled EC2 refuses to launch an
/// instance whose tag keys contain a space or `/`, or are `.`, `..` or `_index`.
pub fn instance_tag_key(s: &str) -> Result<(), String> {
    tag_key(s)?;
    if s.contains(' ') || s.contains('/') || matches!(s, "." | ".." | "_index") {
        Err(format!(
            "tag key {s:?} cannot be a worker instance tag: workers read their tags from instance metadata, \
             which allows no spaces or '/' in keys and no keys \".\", \"..\" or \"_index\"."
        ))
    } else {
        Ok(())
    }
}

/// An S3 bucket name: 3-63 lowercase letters, digits, `.` and `-`, starting
/// and ending with a letter or digit.
pub fn bucket_name(s: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not an S3 bucket name; use 3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit."
        ))
    }
}

/// A key prefix of S3's safe characters (letters, digits, `/ ! - _ . * ( )`).
pub fn key_prefix(s: &str) -> Result<(), String> {
    if s.len() <= 512 && s.chars().all(|c| c.is_ascii_alphanumeric() || "/!-_.*()".contains(c)) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a safe S3 key prefix; use letters, digits and / ! - _ . * ( ), at most 512 characters."
        ))
    }
}

/// A repository's prefix: a key prefix written without leading or trailing
/// `/`, so that one location has one spelling (imports by `s3://` agree
/// with the configuration, and `prefix` forces replacement).
pub fn repository_prefix(s: &str) -> Result<(), String> {
    key_prefix(s)?;
    if s.starts_with('/') || s.ends_with('/') || s.contains("//") {
        return Err(format!(
            "{s:?}: write the prefix without leading, trailing or doubled \"/\", e.g. \"team/backups\"; the repository's keys go under \"<prefix>/\"."
        ));
    }
    Ok(())
}

/// The longest duration any argument or flag takes: 10 years.
pub const MAX_DURATION_SECS: u64 = 10 * 365 * 24 * 3600;

/// Parses a Go-style duration ("1h", "15m", "1h30m", "900s"): the one
/// grammar of the provider's arguments and the CLI's flags. Arithmetic is
/// checked: a duration too long for it (or over [`MAX_DURATION_SECS`]) is
/// refused, never wrapped round to something short.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration; write it like \"1h\", \"45m\" or \"1h30m\" (units h, m, s).");
    let too_long = || format!("{s:?} is too long: at most {}h (10 years).", MAX_DURATION_SECS / 3600);
    let mut total = 0u64;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.is_empty() {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| too_long())?;
        digits.clear();
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(too_long)?;
    }
    if !digits.is_empty() || s.is_empty() {
        return Err(bad());
    }
    if total > MAX_DURATION_SECS {
        return Err(too_long());
    }
    Ok(Duration::from_secs(total))
}

/// A policy's `max_run_time`: 1 minute to 7 days.
pub fn max_run_time(s: &str) -> Result<(), String> {
    let d = parse_duration(s)?;
    if (60..=7 * 86400).contains(&d.as_secs()) {
        Ok(())
    } else {
        Err(format!("{s:?} is outside the allowed 1m to 168h (7 days)."))
    }
}

/// An STS session duration: 15 minutes to 12 hours.
pub fn session_duration(s: &str) -> Result<(), String> {
    let d = parse_duration(s)?;
    if (900..=43200).contains(&d.as_secs()) { Ok(()) } else { Err(format!("{s:?} is outside the allowed 15m to 12h.")) }
}

/// A KMS key ARN (`arn:aws:kms:<region>:<account>:key/<id>`) or alias ARN
/// (`…:alias/<name>`). Copies and repositories in other accounts and
/// regions need the full ARN, never a bare key id.
pub fn kms_key_arn(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "kms"
        && region(parts[3]).is_ok()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && (parts[5].strip_prefix("key/").is_some_and(|id| !id.is_empty())
            || parts[5].strip_prefix("alias/").is_some_and(|id| !id.is_empty()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a KMS key ARN; expected arn:aws:kms:<region>:<12-digit account>:key/<key id> (or :alias/<name>)."
        ))
    }
}

/// The region part of an ARN, if it has one.
pub fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

pub fn launch_template_id(s: &str) -> Result<(), String> {
    resource_id(s, "lt", "a launch template")
}

pub fn instance_id(s: &str) -> Result<(), String> {
    resource_id(s, "i", "an EC2 instance")
}

/// An RDS DB instance or Aurora cluster identifier: 1-63 letters, digits
/// and hyphens, starting with a letter, no `--`, not ending in `-`.
pub fn db_identifier(s: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.contains("--")
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not an RDS DB instance or cluster identifier; expected 1-63 letters, digits and hyphens, starting with a letter, without \"--\" or a trailing hyphen."
        ))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn sqs_queue_arns() {
        assert!(sqs_queue_arn("arn:aws:sqs:us-east-1:123456789012:coffer-launch-failures").is_ok());
        assert!(sqs_queue_arn("arn:aws:sqs:us-east-1:123456789012:failures.fifo").is_ok());
        for bad in [
            "arn:aws:sns:us-east-1:123456789012:q",
            "arn:aws:sqs:us-east-1:1234:q",
            "arn:aws:sqs:useast1:123456789012:q",
            "arn:aws:sqs:us-east-1:123456789012:a/b",
        ] {
            assert!(sqs_queue_arn(bad).unwrap_err().contains("is not an SQS queue ARN"), "{bad}");
        }
    }
    use super::*;

    #[test]
    fn regions() {
        for ok in ["us-east-1", "eu-central-2", "us-gov-west-1", "ap-southeast-7", "cn-north-1"] {
            assert!(region(ok).is_ok(), "{ok}");
        }
        for bad in ["", "us-east", "US-EAST-1", "useast1", "us-east-1a", "mars"] {
            assert!(region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids() {
        assert!(subnet_id("subnet-0123456789abcdef0").is_ok());
        assert!(subnet_id("subnet-12345678").is_ok());
        assert!(subnet_id("subnet-1234").is_err());
        assert!(subnet_id("sg-12345678").is_err());
        assert!(security_group_id("sg-0123456789abcdef0").is_ok());
        assert!(security_group_id("sg-XYZ45678").is_err());
        assert!(ami_id("ami-0123456789abcdef0").is_ok());
    }

    #[test]
    fn instance_types() {
        for ok in ["c5.large", "m7g.2xlarge", "u-6tb1.metal", "t3.micro"] {
            assert!(instance_type(ok).is_ok(), "{ok}");
        }
        for bad in ["c5", "large", "C5.large", "c5.", ".large", "c5 large"] {
            assert!(instance_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn worker_tag_keys_fit_instance_metadata() {
        assert!(instance_tag_key("Team").is_ok());
        for bad in ["Cost Center", "kubernetes.io/x", ".", "..", "_index", "aws:x"] {
            assert!(instance_tag_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn catalog_locations() {
        assert!(bucket_name("coffer-catalog-123456789012-us-east-1").is_ok());
        assert!(bucket_name("Coffer").is_err());
        assert!(key_prefix("team/backups").is_ok());
        assert!(key_prefix("it's").is_err());
    }

    #[test]
    fn arns_and_durations() {
        assert!(role_arn("arn:aws:iam::222222222222:role/coffer").is_ok());
        assert!(role_arn("arn:aws:iam::2222:role/coffer").is_err());
        assert!(role_arn("arn:aws:iam::222222222222:user/coffer").is_err());
        assert!(instance_profile("coffer-worker").is_ok());
        assert!(instance_profile("arn:aws:iam::123456789012:instance-profile/w").is_ok());
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert!(session_duration("10m").is_err());
        assert!(session_duration("1h").is_ok());
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("h").is_err());
        assert_eq!(parse_duration("2h45m10s").unwrap().as_secs(), 9910);
    }

    /// Issue 21, defect 4: `1152921504606846976h` wrapped round to 0 s.
    #[test]
    fn durations_that_overflow_are_refused_not_wrapped() {
        for long in ["1152921504606846976h", "18446744073709551616s", "99999999999999999999h", "87601h", "5256001m"] {
            let error = parse_duration(long).expect_err(long);
            assert!(error.contains("is too long: at most 87600h"), "{long}: {error}");
        }
        assert_eq!(parse_duration("87600h").unwrap().as_secs(), MAX_DURATION_SECS);
    }

    #[test]
    fn kms_arns_db_identifiers_and_launch_templates() {
        assert!(kms_key_arn("arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab").is_ok());
        assert!(kms_key_arn("arn:aws:kms:eu-west-1:123456789012:alias/backup").is_ok());
        assert!(kms_key_arn("1234abcd-12ab").unwrap_err().contains("arn:aws:kms:<region>"));
        assert!(kms_key_arn("arn:aws:kms:eu-west-1:1234:key/x").is_err());
        assert_eq!(arn_region("arn:aws:kms:eu-west-1:123456789012:key/x"), Some("eu-west-1"));
        assert!(db_identifier("orders-db-1").is_ok());
        for bad in ["1db", "db--x", "db-", "db_x", ""] {
            assert!(db_identifier(bad).is_err(), "{bad:?}");
        }
        assert!(launch_template_id("lt-0123456789abcdef0").is_ok());
        assert!(launch_template_id("lt-xyz").is_err());
        assert!(instance_id("i-0123456789abcdef0").is_ok());
    }
}
