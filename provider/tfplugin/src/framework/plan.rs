//! The schema-driven part of `PlanResourceChange`: defaults, unknown computed
//! values, use-state-for-unknown and requires-replace. Resources add their
//! own logic on top through `ModifyPlan`.

use super::diag::AttributePath;
use super::schema::{Block, Nesting, PlanModifier};
use super::value::Value;

/// What the framework plans before a resource's own plan modifier runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub planned: Value,
    pub requires_replace: Vec<AttributePath>,
}

/// Plans a change from `prior` (null on create) to the configuration, given
/// Terraform's `proposed` new state (config merged with prior computed values).
pub fn plan(block: &Block, prior: &Value, proposed: &Value, config: &Value) -> Plan {
    let mut requires_replace = Vec::new();
    if proposed.is_null() {
        return Plan { planned: Value::Null, requires_replace };
    }
    let mut planned = block.conform(proposed);
    apply_defaults(block, &mut planned, config);
    let creating = prior.is_null();
    let changed = creating || !planned.same_as(&block.conform(prior));
    if changed {
        mark_unknown(block, &mut planned, prior, config, creating);
    }
    if !creating {
        collect_replacements(block, prior, &planned, &AttributePath::root(), &mut requires_replace);
    }
    Plan { planned, requires_replace }
}

fn apply_defaults(block: &Block, planned: &mut Value, config: &Value) {
    for attribute in &block.attributes {
        if let Some(default) = &attribute.default
            && config.get(&attribute.name).is_null()
        {
            planned.set(&attribute.name, default.clone());
        }
    }
    for_each_nested(block, planned, config, &Value::Null, |nested, planned, config, _| {
        apply_defaults(nested, planned, config)
    });
}

fn mark_unknown(block: &Block, planned: &mut Value, prior: &Value, config: &Value, creating: bool) {
    for attribute in &block.attributes {
        if !attribute.computed || attribute.default.is_some() || !config.get(&attribute.name).is_null() {
            continue;
        }
        let keep_prior = !creating
            && attribute.has_modifier(PlanModifier::UseStateForUnknown)
            && !prior.get(&attribute.name).is_null();
        let value = if keep_prior { prior.get(&attribute.name).clone() } else { Value::Unknown };
        planned.set(&attribute.name, value);
    }
    for_each_nested(block, planned, config, prior, |nested, planned, config, prior| {
        mark_unknown(nested, planned, prior, config, creating || prior.is_null())
    });
}

fn collect_replacements(
    block: &Block,
    prior: &Value,
    planned: &Value,
    path: &AttributePath,
    out: &mut Vec<AttributePath>,
) {
    for attribute in &block.attributes {
        if attribute.has_modifier(PlanModifier::RequiresReplace)
            && !planned.get(&attribute.name).same_as(prior.get(&attribute.name))
        {
            out.push(path.then_attr(&attribute.name));
        }
    }
    for nested in &block.blocks {
        let (before, after) = (prior.get(&nested.name), planned.get(&nested.name));
        if nested.requires_replace && !before.same_as(after) {
            out.push(path.then_attr(&nested.name));
        }
    }
}

/// Calls `f` for each nested block instance present in `planned`, with the
/// matching config and prior instances (by position for lists).
fn for_each_nested(
    block: &Block,
    planned: &mut Value,
    config: &Value,
    prior: &Value,
    mut f: impl FnMut(&Block, &mut Value, &Value, &Value),
) {
    for nested in &block.blocks {
        let config_value = config.get(&nested.name).clone();
        let prior_value = prior.get(&nested.name).clone();
        let Some(planned_value) = planned.get_mut(&nested.name) else {
            continue;
        };
        match (nested.nesting, planned_value) {
            (Nesting::Single, v @ Value::Map(_)) => f(&nested.block, v, &config_value, &prior_value),
            // Set elements have no stable position to match config and prior
            // by, so only lists are walked.
            (Nesting::List, Value::List(items)) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let c = config_value.as_list().get(i).cloned().unwrap_or_default();
                    let p = prior_value.as_list().get(i).cloned().unwrap_or_default();
                    f(&nested.block, item, &c, &p);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::schema::Attribute;

    fn block() -> Block {
        Block::new("test")
            .attribute(Attribute::string("name").required().requires_replace())
            .attribute(Attribute::string("size").default("small"))
            .attribute(Attribute::string("subnet").optional().computed().use_state_for_unknown())
            .attribute(Attribute::string("id").computed().use_state_for_unknown())
            .attribute(Attribute::number("version").computed())
    }

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::object(pairs.iter().map(|(k, v)| (*k, v.clone())))
    }

    #[test]
    fn create_plans_defaults_and_unknown_computed_values() {
        let config = obj(&[("name", "a".into())]);
        let plan = plan(&block(), &Value::Null, &config, &config);
        assert_eq!(plan.planned.get("size"), &Value::from("small"));
        assert_eq!(plan.planned.get("subnet"), &Value::Unknown);
        assert_eq!(plan.planned.get("id"), &Value::Unknown);
        assert!(plan.requires_replace.is_empty());
    }

    #[test]
    fn unchanged_config_plans_the_prior_state() {
        let prior = obj(&[
            ("name", "a".into()),
            ("size", "small".into()),
            ("subnet", "s-1".into()),
            ("id", "x".into()),
            ("version", 1i64.into()),
        ]);
        let config = obj(&[("name", "a".into())]);
        let proposed = prior.clone();
        let plan = plan(&block(), &prior, &proposed, &config);
        assert!(plan.planned.same_as(&prior));
    }

    #[test]
    fn update_keeps_stable_values_and_unknowns_the_rest() {
        let prior = obj(&[
            ("name", "a".into()),
            ("size", "small".into()),
            ("subnet", "s-1".into()),
            ("id", "x".into()),
            ("version", 1i64.into()),
        ]);
        let config = obj(&[("name", "a".into()), ("size", "large".into())]);
        let mut proposed = prior.clone();
        proposed.set("size", "large");
        let plan = plan(&block(), &prior, &proposed, &config);
        assert_eq!(plan.planned.get("id"), &Value::from("x"));
        assert_eq!(plan.planned.get("subnet"), &Value::from("s-1"));
        assert_eq!(plan.planned.get("version"), &Value::Unknown);
        assert!(plan.requires_replace.is_empty());
    }

    #[test]
    fn removing_an_argument_returns_to_its_default() {
        let prior = obj(&[("name", "a".into()), ("size", "large".into()), ("id", "x".into())]);
        let config = obj(&[("name", "a".into())]);
        let plan = plan(&block(), &prior, &prior, &config);
        assert_eq!(plan.planned.get("size"), &Value::from("small"));
    }

    #[test]
    fn renaming_requires_replacement() {
        let prior = obj(&[("name", "a".into()), ("size", "small".into()), ("id", "x".into())]);
        let config = obj(&[("name", "b".into())]);
        let mut proposed = prior.clone();
        proposed.set("name", "b");
        let plan = plan(&block(), &prior, &proposed, &config);
        assert_eq!(plan.requires_replace, vec![AttributePath::attr("name")]);
    }
}
