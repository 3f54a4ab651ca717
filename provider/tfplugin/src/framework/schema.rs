//! Schemas: attributes and nested blocks with markdown descriptions,
//! validators and plan modifiers. Built with small builder methods:
//!
//! ```
//! use coffer_tfplugin::framework::schema::{Attribute, Block};
//! let block = Block::new("A thing.")
//!     .attribute(Attribute::string("name").required().requires_replace().describe("Its name."));
//! assert!(block.attribute_named("name").is_some());
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use super::diag::{AttributePath, Diagnostics};
use super::validators::Validator;
use super::value::Value;

/// An attribute's type, as cty names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    String,
    Number,
    Bool,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    /// An object with these attributes (computed results of data sources).
    Object(Vec<(String, Type)>),
}

impl Type {
    /// cty's JSON type notation, which the plugin protocol carries.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Type::String => json!("string"),
            Type::Number => json!("number"),
            Type::Bool => json!("bool"),
            Type::List(t) => json!(["list", t.to_json()]),
            Type::Set(t) => json!(["set", t.to_json()]),
            Type::Map(t) => json!(["map", t.to_json()]),
            Type::Object(fields) => {
                let fields: serde_json::Map<String, serde_json::Value> =
                    fields.iter().map(|(name, t)| (name.clone(), t.to_json())).collect();
                json!(["object", fields])
            }
        }
    }
}

/// What the plan does with an attribute beyond copying the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanModifier {
    /// A change to this attribute replaces the resource.
    RequiresReplace,
    /// A computed value keeps its prior state instead of becoming unknown on
    /// update (for values that never change once set, like ids).
    UseStateForUnknown,
}

#[derive(Clone)]
pub struct Attribute {
    pub name: String,
    pub ty: Type,
    pub description: String,
    pub required: bool,
    pub optional: bool,
    pub computed: bool,
    pub sensitive: bool,
    pub write_only: bool,
    pub default: Option<Value>,
    pub validators: Vec<Arc<dyn Validator>>,
    pub plan_modifiers: Vec<PlanModifier>,
}

impl std::fmt::Debug for Attribute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attribute").field("name", &self.name).field("ty", &self.ty).finish_non_exhaustive()
    }
}

impl Attribute {
    pub fn new(name: &str, ty: Type) -> Self {
        Self {
            name: name.to_string(),
            ty,
            description: String::new(),
            required: false,
            optional: false,
            computed: false,
            sensitive: false,
            write_only: false,
            default: None,
            validators: Vec::new(),
            plan_modifiers: Vec::new(),
        }
    }

    pub fn string(name: &str) -> Self {
        Self::new(name, Type::String)
    }

    pub fn bool(name: &str) -> Self {
        Self::new(name, Type::Bool)
    }

    pub fn number(name: &str) -> Self {
        Self::new(name, Type::Number)
    }

    pub fn string_set(name: &str) -> Self {
        Self::new(name, Type::Set(Box::new(Type::String)))
    }

    pub fn string_list(name: &str) -> Self {
        Self::new(name, Type::List(Box::new(Type::String)))
    }

    pub fn string_map(name: &str) -> Self {
        Self::new(name, Type::Map(Box::new(Type::String)))
    }

    /// A list of objects with these attributes.
    pub fn object_list(name: &str, fields: &[(&str, Type)]) -> Self {
        let fields = fields.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
        Self::new(name, Type::List(Box::new(Type::Object(fields))))
    }

    pub fn describe(mut self, markdown: &str) -> Self {
        self.description = markdown.to_string();
        self
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    pub fn computed(mut self) -> Self {
        self.computed = true;
        self
    }

    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    pub fn write_only(mut self) -> Self {
        self.write_only = true;
        self
    }

    /// The value planned when the configuration leaves the attribute out.
    /// Makes the attribute optional and computed.
    pub fn default(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self.optional = true;
        self.computed = true;
        self
    }

    pub fn validate(mut self, validator: impl Validator + 'static) -> Self {
        self.validators.push(Arc::new(validator));
        self
    }

    pub fn requires_replace(mut self) -> Self {
        self.plan_modifiers.push(PlanModifier::RequiresReplace);
        self
    }

    pub fn use_state_for_unknown(mut self) -> Self {
        self.plan_modifiers.push(PlanModifier::UseStateForUnknown);
        self
    }

    pub fn has_modifier(&self, modifier: PlanModifier) -> bool {
        self.plan_modifiers.contains(&modifier)
    }

    /// Only the provider sets it.
    pub fn is_computed_only(&self) -> bool {
        self.computed && !self.optional && !self.required
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// At most one block; null when absent.
    Single,
    /// An ordered list of blocks.
    List,
    /// An unordered set of blocks.
    Set,
}

#[derive(Debug, Clone)]
pub struct NestedBlock {
    pub name: String,
    pub nesting: Nesting,
    pub block: Block,
    pub min_items: u32,
    pub max_items: u32,
    pub requires_replace: bool,
}

impl NestedBlock {
    pub fn single(name: &str, block: Block) -> Self {
        Self {
            name: name.to_string(),
            nesting: Nesting::Single,
            block,
            min_items: 0,
            max_items: 0,
            requires_replace: false,
        }
    }

    pub fn list(name: &str, block: Block) -> Self {
        Self { nesting: Nesting::List, ..Self::single(name, block) }
    }

    pub fn items(mut self, min: u32, max: u32) -> Self {
        self.min_items = min;
        self.max_items = max;
        self
    }

    pub fn requires_replace(mut self) -> Self {
        self.requires_replace = true;
        self
    }
}

#[derive(Debug, Clone, Default)]
pub struct Block {
    pub description: String,
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<NestedBlock>,
    pub deprecated: bool,
}

impl Block {
    pub fn new(markdown: &str) -> Self {
        Self { description: markdown.to_string(), ..Self::default() }
    }

    pub fn attribute(mut self, attribute: Attribute) -> Self {
        self.attributes.push(attribute);
        self
    }

    pub fn block(mut self, block: NestedBlock) -> Self {
        self.blocks.push(block);
        self
    }

    pub fn attribute_named(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    pub fn block_named(&self, name: &str) -> Option<&NestedBlock> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// Shapes `value` to this block: every attribute present (null when
    /// missing), unknown names dropped, absent list blocks as empty lists.
    /// Terraform rejects objects that do not match the schema exactly.
    pub fn conform(&self, value: &Value) -> Value {
        match value {
            Value::Null => Value::Null,
            Value::Unknown => Value::Unknown,
            _ => {
                let mut out = BTreeMap::new();
                for attribute in &self.attributes {
                    let v = value.get(&attribute.name).clone();
                    out.insert(attribute.name.clone(), v);
                }
                for nested in &self.blocks {
                    let v = value.get(&nested.name);
                    let conformed = match (nested.nesting, v) {
                        (_, Value::Unknown) => Value::Unknown,
                        (Nesting::Single, v) => nested.block.conform(v),
                        (Nesting::List | Nesting::Set, Value::List(items)) => {
                            Value::List(items.iter().map(|item| nested.block.conform(item)).collect())
                        }
                        (Nesting::List | Nesting::Set, _) => Value::List(Vec::new()),
                    };
                    out.insert(nested.name.clone(), conformed);
                }
                Value::Map(out)
            }
        }
    }

    /// Runs the attribute validators over a configuration (known, non-null
    /// values only: unknowns are checked again once they are known).
    pub fn validate(&self, config: &Value, path: &AttributePath, diags: &mut Diagnostics) {
        for attribute in &self.attributes {
            let value = config.get(&attribute.name);
            if value.is_null() || value.is_unknown() {
                continue;
            }
            let attr_path = path.then_attr(&attribute.name);
            let first_new = diags.0.len();
            for validator in &attribute.validators {
                validator.check(value, &attr_path, diags);
            }
            // Terraform orders set elements its own way, so an index would
            // point at the wrong element: blame the set as a whole.
            if matches!(attribute.ty, Type::Set(_)) {
                for diag in &mut diags.0[first_new..] {
                    diag.path = Some(attr_path.clone());
                }
            }
        }
        for nested in &self.blocks {
            let value = config.get(&nested.name);
            let nested_path = path.then_attr(&nested.name);
            match (nested.nesting, value) {
                (Nesting::Single, v) if !v.is_null() && !v.is_unknown() => {
                    nested.block.validate(v, &nested_path, diags)
                }
                (Nesting::List | Nesting::Set, Value::List(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        nested.block.validate(item, &nested_path.then_index(i), diags);
                    }
                }
                _ => {}
            }
        }
    }
}

impl Block {
    /// Paths of the write-only attributes that `config` sets.
    pub fn write_only_values_set(&self, config: &Value, path: &AttributePath) -> Vec<AttributePath> {
        let mut out = Vec::new();
        for attribute in self.attributes.iter().filter(|a| a.write_only) {
            if !config.get(&attribute.name).is_null() {
                out.push(path.then_attr(&attribute.name));
            }
        }
        for nested in &self.blocks {
            let nested_path = path.then_attr(&nested.name);
            match config.get(&nested.name) {
                Value::List(items) => {
                    for (i, item) in items.iter().enumerate() {
                        out.extend(nested.block.write_only_values_set(item, &nested_path.then_index(i)));
                    }
                }
                v @ Value::Map(_) => out.extend(nested.block.write_only_values_set(v, &nested_path)),
                _ => {}
            }
        }
        out
    }

    /// Nulls every write-only attribute: Terraform never stores them, in
    /// plans or state.
    pub fn null_write_only(&self, value: &mut Value) {
        self.walk_write_only(value, &Value::Null, &mut |_, _| Value::Null);
    }

    /// Copies write-only values from the configuration into `value` (a
    /// planned state), so that create and update see what the user wrote.
    pub fn copy_write_only(&self, config: &Value, value: &mut Value) {
        self.walk_write_only(value, config, &mut |_, from_config| from_config.clone());
    }

    fn walk_write_only(&self, value: &mut Value, config: &Value, f: &mut impl FnMut(&Value, &Value) -> Value) {
        if !matches!(value, Value::Map(_)) {
            return;
        }
        for attribute in self.attributes.iter().filter(|a| a.write_only) {
            let new = f(value.get(&attribute.name), config.get(&attribute.name));
            value.set(&attribute.name, new);
        }
        for nested in &self.blocks {
            let nested_config = config.get(&nested.name).clone();
            let Some(nested_value) = value.get_mut(&nested.name) else {
                continue;
            };
            match nested_value {
                Value::List(items) => {
                    for (i, item) in items.iter_mut().enumerate() {
                        let item_config = nested_config.as_list().get(i).cloned().unwrap_or(Value::Null);
                        nested.block.walk_write_only(item, &item_config, f);
                    }
                }
                v @ Value::Map(_) => nested.block.walk_write_only(v, &nested_config, f),
                _ => {}
            }
        }
    }
}

/// A versioned schema: the version moves when stored state needs upgrading.
#[derive(Debug, Clone)]
pub struct Schema {
    pub version: i64,
    pub block: Block,
}

impl Schema {
    pub fn new(version: i64, block: Block) -> Self {
        Self { version, block }
    }
}
