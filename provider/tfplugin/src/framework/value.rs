//! Terraform values as the framework sees them: cty's shapes without its
//! types. The schema supplies the type wherever one is needed (encoding
//! numbers, conforming objects), so a value can be decoded without it.

use std::collections::BTreeMap;

/// A Terraform value. Objects and maps share `Map`; lists, sets and tuples
/// share `List`: the schema tells them apart where it matters.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    /// Not known until apply.
    Unknown,
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

/// A number: integral values stay exact, everything else is a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    pub fn as_i64(self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(i),
            Number::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i64),
            Number::Float(_) => None,
        }
    }

    /// Normalises floats that hold an integer, so `2.0` and `2` compare equal.
    pub fn normalized(self) -> Self {
        match self {
            Number::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Number::Int(f as i64),
            other => other,
        }
    }
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown)
    }

    /// True when neither this value nor anything inside it is unknown.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::List(items) => items.iter().all(Value::is_wholly_known),
            Value::Map(map) => map.values().all(Value::is_wholly_known),
            _ => true,
        }
    }

    /// The attribute `name` of an object; `Null` when absent or when `self`
    /// is not an object.
    pub fn get(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        match self {
            Value::Map(map) => map.get(name).unwrap_or(&NULL),
            _ => &NULL,
        }
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        match self {
            Value::Map(map) => map.get_mut(name),
            _ => None,
        }
    }

    /// Sets attribute `name` of an object (turning `Null` into an object).
    pub fn set(&mut self, name: &str, value: impl Into<Value>) {
        if !matches!(self, Value::Map(_)) {
            *self = Value::Map(BTreeMap::new());
        }
        if let Value::Map(map) = self {
            map.insert(name.to_string(), value.into());
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_list(&self) -> &[Value] {
        match self {
            Value::List(items) => items,
            _ => &[],
        }
    }

    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(map) => Some(map),
            _ => None,
        }
    }

    /// The known strings of a list or set of strings, in order.
    pub fn strings(&self) -> Vec<String> {
        self.as_list().iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
    }

    /// The known entries of a map of strings.
    pub fn string_map(&self) -> BTreeMap<String, String> {
        self.as_map()
            .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
            .unwrap_or_default()
    }

    /// Builds an object from `(name, value)` pairs.
    pub fn object<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A list (or set) of strings.
    pub fn string_list<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::List(items.into_iter().map(|s| Value::String(s.into())).collect())
    }

    /// A map of strings; `Null` when empty, which is how an omitted optional
    /// map reads back.
    pub fn string_map_or_null(map: &BTreeMap<String, String>) -> Value {
        if map.is_empty() {
            Value::Null
        } else {
            Value::Map(map.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
        }
    }

    /// This value with every unknown inside it replaced by null (for a state
    /// that must be recorded although not everything could be read).
    pub fn unknowns_to_null(&self) -> Value {
        match self {
            Value::Unknown => Value::Null,
            Value::List(items) => Value::List(items.iter().map(Value::unknowns_to_null).collect()),
            Value::Map(map) => Value::Map(map.iter().map(|(k, v)| (k.clone(), v.unknowns_to_null())).collect()),
            other => other.clone(),
        }
    }

    /// Semantic equality: numbers compare by value (`2.0 == 2`).
    pub fn same_as(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Number(a), Value::Number(b)) => a.normalized() == b.normalized(),
            (Value::List(a), Value::List(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y)),
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka == kb && va.same_as(vb))
            }
            (a, b) => a == b,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Number(Number::Int(i))
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}
