//! Framework types to and from their tfplugin6 wire forms.

use super::codec::{self, CodecError};
use super::tfplugin6 as pb;
use crate::framework::diag::{AttributePath, Diagnostic, Diagnostics, PathStep, Severity};
use crate::framework::schema::{Attribute, Block, NestedBlock, Nesting, Schema};
use crate::framework::value::Value;

pub fn schema(schema: &Schema) -> pb::Schema {
    pb::Schema { version: schema.version, block: Some(block(&schema.block)) }
}

fn block(block: &Block) -> pb::schema::Block {
    pb::schema::Block {
        version: 0,
        attributes: block.attributes.iter().map(attribute).collect(),
        block_types: block.blocks.iter().map(nested_block).collect(),
        description: block.description.clone(),
        description_kind: pb::StringKind::Markdown as i32,
        deprecated: block.deprecated,
    }
}

fn attribute(attribute: &Attribute) -> pb::schema::Attribute {
    pb::schema::Attribute {
        name: attribute.name.clone(),
        r#type: attribute.ty.to_json().to_string().into_bytes(),
        nested_type: None,
        description: attribute.description.clone(),
        required: attribute.required,
        optional: attribute.optional,
        computed: attribute.computed,
        sensitive: attribute.sensitive,
        description_kind: pb::StringKind::Markdown as i32,
        deprecated: false,
        write_only: attribute.write_only,
    }
}

fn nested_block(nested: &NestedBlock) -> pb::schema::NestedBlock {
    use pb::schema::nested_block::NestingMode;
    let nesting = match nested.nesting {
        Nesting::Single => NestingMode::Single,
        Nesting::List => NestingMode::List,
        Nesting::Set => NestingMode::Set,
    };
    pb::schema::NestedBlock {
        type_name: nested.name.clone(),
        block: Some(block(&nested.block)),
        nesting: nesting as i32,
        min_items: nested.min_items as i64,
        max_items: nested.max_items as i64,
    }
}

pub fn diagnostics(diags: &Diagnostics) -> Vec<pb::Diagnostic> {
    diags.0.iter().map(diagnostic).collect()
}

fn diagnostic(d: &Diagnostic) -> pb::Diagnostic {
    let severity = match d.severity {
        Severity::Error => pb::diagnostic::Severity::Error,
        Severity::Warning => pb::diagnostic::Severity::Warning,
    };
    pb::Diagnostic {
        severity: severity as i32,
        summary: d.summary.clone(),
        detail: d.detail.clone(),
        attribute: d.path.as_ref().map(attribute_path),
    }
}

pub fn attribute_path(path: &AttributePath) -> pb::AttributePath {
    use pb::attribute_path::{Step, step::Selector};
    pb::AttributePath {
        steps: path
            .0
            .iter()
            .map(|step| Step {
                selector: Some(match step {
                    PathStep::Attribute(name) => Selector::AttributeName(name.clone()),
                    PathStep::Index(i) => Selector::ElementKeyInt(*i),
                    PathStep::Key(k) => Selector::ElementKeyString(k.clone()),
                }),
            })
            .collect(),
    }
}

/// Decodes a DynamicValue (msgpack, or JSON when that is what was sent) and
/// shapes it to `block`. An absent value is null.
pub fn decode(value: Option<&pb::DynamicValue>, block: &Block) -> Result<Value, CodecError> {
    let Some(value) = value else {
        return Ok(Value::Null);
    };
    let decoded = if !value.msgpack.is_empty() {
        codec::decode_msgpack(&value.msgpack)?
    } else if !value.json.is_empty() {
        codec::decode_json(&value.json)?
    } else {
        Value::Null
    };
    Ok(block.conform(&decoded))
}

/// Encodes a value shaped to `block` as msgpack.
pub fn encode(value: &Value, block: &Block) -> pb::DynamicValue {
    pb::DynamicValue { msgpack: codec::encode_msgpack(&block.conform(value)), json: Vec::new() }
}

/// A diagnostic for a value Terraform sent that we could not decode.
pub fn decode_error(what: &str, error: CodecError) -> Diagnostics {
    let mut diags = Diagnostics::new();
    diags.error(
        format!("Invalid {what} from Terraform"),
        format!("The provider could not decode the {what}: {error}. This is a bug in the provider or an unsupported Terraform version."),
    );
    diags
}
