//! How preflight checks (`coffer_aws::preflight`) reach Terraform.
//!
//! At plan a failed check is a warning: the route, VPC endpoint, instance
//! profile or grant it misses may be made by this same apply, and does not
//! exist yet. At apply it is an error, before anything is written (a
//! resource that depends on what it needs sees it made by then). A worker
//! configuration without `instance_profile` stays a warning: allowed, but
//! its workers have no credentials. Checks that could not be judged are
//! logged, not shown: `coffer preflight` prints them.

use coffer_aws::preflight::{Check, Concern, Verdict};
use coffer_tfplugin::framework::{AttributePath, Diagnostics};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Plan,
    Apply,
}

/// Reports `checks` of the worker configuration `subject` (for example
/// "worker configuration lt-… (eu-west-1)"); `path` names the attribute each
/// concern belongs to. `instance_profile_set`: whether the configuration names one.
pub fn report(
    diags: &mut Diagnostics,
    stage: Stage,
    subject: &str,
    checks: &[Check],
    instance_profile_set: bool,
    path: impl Fn(Concern) -> AttributePath,
) {
    for check in checks {
        match check.verdict {
            Verdict::Pass => {
                tracing::debug!(%subject, check = %check.subject, detail = %check.detail, "preflight passed")
            }
            Verdict::Unverified => {
                tracing::info!(%subject, check = %check.subject, detail = %check.detail, "preflight not verified")
            }
            Verdict::Fail => {
                let summary = format!("Workers cannot work: {}", check.subject);
                // Named in the text too: Terraform points at the resource when the attribute
                // is not in the configuration (a provider default).
                let at = path(check.concern);
                let detail = format!("{at}: {subject}: {}", check.detail);
                let only_warn = check.concern == Concern::InstanceProfile && !instance_profile_set;
                match stage {
                    _ if only_warn => diags.attribute_warning(at, summary, detail),
                    Stage::Apply => diags.attribute_error(at, summary, detail),
                    Stage::Plan => diags.attribute_warning(
                        at,
                        summary,
                        format!(
                            "{detail} (Checked again at apply, when this is an error; if this configuration makes \
                             what is missing, make this resource depend on it.)"
                        ),
                    ),
                }
            }
        }
    }
}
