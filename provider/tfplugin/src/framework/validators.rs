//! Attribute validators. Each says what is allowed, so the error it produces
//! names both the attribute (from the path) and the permitted values.

use super::diag::{AttributePath, Diagnostics};
use super::value::Value;

pub trait Validator: Send + Sync {
    /// Checks a known, non-null value; reports problems at `path`.
    fn check(&self, value: &Value, path: &AttributePath, diags: &mut Diagnostics);
}

/// A string that must be one of a fixed set.
pub struct OneOf(pub &'static [&'static str]);

impl Validator for OneOf {
    fn check(&self, value: &Value, path: &AttributePath, diags: &mut Diagnostics) {
        if let Some(s) = value.as_str()
            && !self.0.contains(&s)
        {
            diags.attribute_error(
                path.clone(),
                "Invalid value",
                format!(
                    "{path} is {s:?}; allowed values are: {}.",
                    self.0.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
}

/// A string checked by a function that explains what is wrong.
pub struct StringCheck {
    check: fn(&str) -> Result<(), String>,
}

/// Validates a string with `check`, whose error text says what is allowed.
pub fn string(check: fn(&str) -> Result<(), String>) -> StringCheck {
    StringCheck { check }
}

impl Validator for StringCheck {
    fn check(&self, value: &Value, path: &AttributePath, diags: &mut Diagnostics) {
        if let Some(s) = value.as_str()
            && let Err(why) = (self.check)(s)
        {
            diags.attribute_error(path.clone(), "Invalid value", format!("{path}: {why}"));
        }
    }
}

/// Applies a validator to every known element of a list, set or map.
pub struct Each<V>(pub V);

impl<V: Validator> Validator for Each<V> {
    fn check(&self, value: &Value, path: &AttributePath, diags: &mut Diagnostics) {
        match value {
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_null() && !item.is_unknown() {
                        self.0.check(item, &path.then_index(i), diags);
                    }
                }
            }
            Value::Map(map) => {
                for (key, item) in map {
                    if !item.is_null() && !item.is_unknown() {
                        self.0.check(item, &path.then_key(key), diags);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Applies a string validator to every key of a map.
pub struct Keys<V>(pub V);

impl<V: Validator> Validator for Keys<V> {
    fn check(&self, value: &Value, path: &AttributePath, diags: &mut Diagnostics) {
        for key in value.as_map().into_iter().flat_map(|m| m.keys()) {
            self.0.check(&Value::String(key.clone()), &path.then_key(key), diags);
        }
    }
}

/// An integer within `[min, max]`.
pub struct IntBetween(pub i64, pub i64);

impl Validator for IntBetween {
    fn check(&self, value: &Value, path: &AttributePath, diags: &mut Diagnostics) {
        match value.as_i64() {
            Some(n) if (self.0..=self.1).contains(&n) => {}
            _ => diags.attribute_error(
                path.clone(),
                "Invalid value",
                format!("{path} must be a whole number from {} to {}.", self.0, self.1),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_names_the_path_and_the_allowed_values() {
        let mut diags = Diagnostics::new();
        OneOf(&["a", "b"]).check(&Value::from("c"), &AttributePath::attr("mode"), &mut diags);
        let detail = &diags.0[0].detail;
        assert!(detail.contains("mode"), "{detail}");
        assert!(detail.contains(r#""a", "b""#), "{detail}");
    }

    #[test]
    fn each_points_at_the_bad_element() {
        let mut diags = Diagnostics::new();
        let check = Each(string(|s| if s.starts_with("sg-") { Ok(()) } else { Err("must start with sg-".into()) }));
        check.check(&Value::string_list(["sg-1", "x"]), &AttributePath::attr("security_group_ids"), &mut diags);
        assert_eq!(diags.0.len(), 1);
        assert_eq!(diags.0[0].path.as_ref().unwrap().to_string(), "security_group_ids[1]");
    }
}
