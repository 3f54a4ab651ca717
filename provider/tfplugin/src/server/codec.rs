//! DynamicValue encoding: cty's msgpack form (with its unknown-value
//! extension) for everything Terraform exchanges, and JSON for stored state
//! handed to UpgradeResourceState.
//!
//! cty writes an unknown value as msgpack extension 0 (`d4 00 00`); since
//! cty 1.13 an unknown with refinements is extension 12 carrying a map of
//! refinements. Both decode to `Value::Unknown` (we do not use refinements).

use std::collections::BTreeMap;

use rmp::Marker;
use thiserror::Error;

use crate::framework::value::{Number, Value};

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("malformed msgpack value: {0}")]
    Msgpack(String),
    #[error("malformed JSON state: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported value encoding: neither msgpack nor JSON was given")]
    Empty,
}

const UNKNOWN_EXT: i8 = 0;

/// Encodes a value the way cty's msgpack marshaller does.
pub fn encode_msgpack(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    // Writes into a Vec cannot fail; rmp's Result is for generic writers.
    match value {
        Value::Null => rmp::encode::write_nil(out).expect("vec write"),
        Value::Unknown => {
            rmp::encode::write_ext_meta(out, 1, UNKNOWN_EXT).expect("vec write");
            out.push(0);
        }
        Value::Bool(b) => rmp::encode::write_bool(out, *b).expect("vec write"),
        Value::Number(n) => match n.normalized() {
            Number::Int(i) => {
                rmp::encode::write_sint(out, i).expect("vec write");
            }
            Number::Float(f) => rmp::encode::write_f64(out, f).expect("vec write"),
        },
        Value::String(s) => rmp::encode::write_str(out, s).expect("vec write"),
        Value::List(items) => {
            rmp::encode::write_array_len(out, items.len() as u32).expect("vec write");
            for item in items {
                write_value(out, item);
            }
        }
        Value::Map(map) => {
            rmp::encode::write_map_len(out, map.len() as u32).expect("vec write");
            for (k, v) in map {
                rmp::encode::write_str(out, k).expect("vec write");
                write_value(out, v);
            }
        }
    }
}

/// Decodes cty msgpack.
pub fn decode_msgpack(bytes: &[u8]) -> Result<Value, CodecError> {
    let mut reader = Reader { bytes, pos: 0 };
    let value = reader.value(0)?;
    if reader.pos != bytes.len() {
        return Err(CodecError::Msgpack(format!("{} trailing bytes", bytes.len() - reader.pos)));
    }
    Ok(value)
}

/// Decodes stored state JSON (as Terraform keeps it in state files).
pub fn decode_json(bytes: &[u8]) -> Result<Value, CodecError> {
    let json: serde_json::Value = serde_json::from_slice(bytes)?;
    Ok(from_json(&json))
}

pub fn from_json(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Number(match n.as_i64() {
            Some(i) => Number::Int(i),
            None => Number::Float(n.as_f64().unwrap_or(f64::NAN)),
        }),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::List(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Value::Map(map.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
    }
}

/// Deeper than any schema we have; stops hostile input from overflowing the stack.
const MAX_DEPTH: usize = 64;

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| CodecError::Msgpack("unexpected end of input".into()))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    fn len(&mut self, marker: Marker) -> Result<usize, CodecError> {
        Ok(match marker {
            Marker::Str8 | Marker::Bin8 | Marker::Ext8 => self.u8()? as usize,
            Marker::Str16 | Marker::Bin16 | Marker::Ext16 | Marker::Array16 | Marker::Map16 => {
                u16::from_be_bytes(self.be()?) as usize
            }
            Marker::Str32 | Marker::Bin32 | Marker::Ext32 | Marker::Array32 | Marker::Map32 => {
                u32::from_be_bytes(self.be()?) as usize
            }
            _ => unreachable!("len() is only called for sized markers"),
        })
    }

    fn string(&mut self, n: usize) -> Result<String, CodecError> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| CodecError::Msgpack(e.to_string()))
    }

    fn value(&mut self, depth: usize) -> Result<Value, CodecError> {
        if depth > MAX_DEPTH {
            return Err(CodecError::Msgpack("value nested too deeply".into()));
        }
        let marker = Marker::from_u8(self.u8()?);
        Ok(match marker {
            Marker::Null => Value::Null,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::FixPos(n) => Value::Number(Number::Int(n as i64)),
            Marker::FixNeg(n) => Value::Number(Number::Int(n as i64)),
            Marker::U8 => Value::Number(Number::Int(self.u8()? as i64)),
            Marker::U16 => Value::Number(Number::Int(u16::from_be_bytes(self.be()?) as i64)),
            Marker::U32 => Value::Number(Number::Int(u32::from_be_bytes(self.be()?) as i64)),
            Marker::U64 => {
                let n = u64::from_be_bytes(self.be()?);
                Value::Number(match i64::try_from(n) {
                    Ok(i) => Number::Int(i),
                    Err(_) => Number::Float(n as f64),
                })
            }
            Marker::I8 => Value::Number(Number::Int(self.u8()? as i8 as i64)),
            Marker::I16 => Value::Number(Number::Int(i16::from_be_bytes(self.be()?) as i64)),
            Marker::I32 => Value::Number(Number::Int(i32::from_be_bytes(self.be()?) as i64)),
            Marker::I64 => Value::Number(Number::Int(i64::from_be_bytes(self.be()?))),
            Marker::F32 => Value::Number(Number::Float(f32::from_be_bytes(self.be()?) as f64)),
            Marker::F64 => Value::Number(Number::Float(f64::from_be_bytes(self.be()?))),
            Marker::FixStr(n) => Value::String(self.string(n as usize)?),
            Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                let n = self.len(marker)?;
                let s = self.string(n)?;
                // cty writes numbers too large for float64 as strings; a
                // number-typed attribute is then parsed by the schema user.
                Value::String(s)
            }
            Marker::FixArray(n) => self.list(n as usize, depth)?,
            Marker::Array16 | Marker::Array32 => {
                let n = self.len(marker)?;
                self.list(n, depth)?
            }
            Marker::FixMap(n) => self.map(n as usize, depth)?,
            Marker::Map16 | Marker::Map32 => {
                let n = self.len(marker)?;
                self.map(n, depth)?
            }
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => {
                let n = match marker {
                    Marker::FixExt1 => 1,
                    Marker::FixExt2 => 2,
                    Marker::FixExt4 => 4,
                    Marker::FixExt8 => 8,
                    Marker::FixExt16 => 16,
                    _ => self.len(marker)?,
                };
                let _ext_type = self.u8()?;
                self.take(n)?;
                // Extension 0 (unknown) and 12 (refined unknown) are the only
                // ones cty writes.
                Value::Unknown
            }
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 | Marker::Reserved => {
                return Err(CodecError::Msgpack(format!("unexpected marker {marker:?} at byte {}", self.pos - 1)));
            }
        })
    }

    fn list(&mut self, n: usize, depth: usize) -> Result<Value, CodecError> {
        // Every element takes at least one byte: reject lengths the input
        // cannot hold before allocating.
        if n > self.bytes.len() - self.pos {
            return Err(CodecError::Msgpack("array longer than its input".into()));
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::List(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, CodecError> {
        let mut map = BTreeMap::new();
        for _ in 0..n {
            let key = match self.value(depth + 1)? {
                Value::String(s) => s,
                other => {
                    return Err(CodecError::Msgpack(format!("map key must be a string, got {other:?}")));
                }
            };
            let value = self.value(depth + 1)?;
            map.insert(key, value);
        }
        Ok(Value::Map(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            Just(Value::Unknown),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| Value::Number(Number::Int(i))),
            any::<f64>()
                .prop_filter("finite, non-integral", |f| f.is_finite() && f.fract() != 0.0)
                .prop_map(|f| Value::Number(Number::Float(f))),
            ".{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                prop::collection::btree_map(".{0,12}", inner, 0..8).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn msgpack_round_trips(value in arb_value()) {
            let bytes = encode_msgpack(&value);
            prop_assert_eq!(decode_msgpack(&bytes).unwrap(), value);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_msgpack(&bytes);
        }

        #[test]
        fn json_state_decodes_like_msgpack(value in arb_value().prop_filter("no unknowns in state", Value::is_wholly_known)) {
            let json = to_json(&value);
            let decoded = decode_json(serde_json::to_string(&json).unwrap().as_bytes()).unwrap();
            prop_assert!(decoded.same_as(&value), "{:?} vs {:?}", decoded, value);
        }
    }

    fn to_json(value: &Value) -> serde_json::Value {
        match value {
            Value::Null | Value::Unknown => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Number(Number::Int(i)) => (*i).into(),
            Value::Number(Number::Float(f)) => (*f).into(),
            Value::String(s) => s.clone().into(),
            Value::List(items) => items.iter().map(to_json).collect(),
            Value::Map(map) => map.iter().map(|(k, v)| (k.clone(), to_json(v))).collect(),
        }
    }

    #[test]
    fn unknown_is_ctys_extension_zero() {
        assert_eq!(encode_msgpack(&Value::Unknown), vec![0xd4, 0, 0]);
    }

    #[test]
    fn refined_unknown_decodes_as_unknown() {
        // cty 1.13+: ext 12 holding {1: false} (a "not null" refinement).
        let bytes = [0xc7, 0x03, 0x0c, 0x81, 0x01, 0xc2];
        assert_eq!(decode_msgpack(&bytes).unwrap(), Value::Unknown);
    }

    #[test]
    fn integral_floats_are_written_as_integers() {
        assert_eq!(encode_msgpack(&Value::Number(Number::Float(7.0))), encode_msgpack(&Value::Number(Number::Int(7))));
    }
}
