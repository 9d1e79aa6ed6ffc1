//! An `update`'s resources document, read as runc reads it, and rebuilt.
//!
//! runc decodes `--resources` with Go's `encoding/json` into the OCI
//! `LinuxResources` struct, and Go's decoder is not a JSON reader that
//! merely keeps the last of each key:
//! - an object key names a struct field when it equals the field's JSON
//!   name **case-insensitively** (`"Memory"`, `"LIMIT"`, even `"ſwap"` with
//!   a long s and `"\u212Aernel"` with a Kelvin sign);
//! - keys naming the same field in one object are all decoded, in order:
//!   the last wins, and a nested object is decoded *into* the struct the
//!   earlier one filled, so `{"memory":{"limit":1},"MEMORY":{"swap":2}}`
//!   sets both;
//! - unknown keys are ignored, `null` clears a pointer, slice or map and
//!   leaves a plain value alone, and only the first JSON value of the
//!   stream is read (whatever follows it is never looked at).
//!
//! crun's parser matches keys exactly. So the wrapper never hands the
//! caller's bytes to the runtime: [`decode`] models Go's decoder over the
//! whole `LinuxResources` schema and yields one canonical document — exact
//! field names, each once — in which the memory fields are then replaced by
//! the decision. What runc and crun apply is then what was decided and
//! recorded, whatever spelling the caller chose.

use crate::facts::update::ResourcesError;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A JSON value with every object key kept, in order, duplicates too.
#[derive(Clone, Debug, PartialEq)]
pub enum Raw {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Raw>),
    Object(Vec<(String, Raw)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Raw, E> {
                Ok(Raw::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Raw, E> {
                Ok(Raw::Number(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Raw, E> {
                serde_json::Number::from_f64(n)
                    .map(Raw::Number)
                    .ok_or_else(|| E::custom("a number out of range"))
            }
            fn visit_str<E>(self, s: &str) -> Result<Raw, E> {
                Ok(Raw::String(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<Raw, E> {
                Ok(Raw::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Raw::Array(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = a.next_entry::<String, Raw>()? {
                    v.push((k, x));
                }
                Ok(Raw::Object(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// What a field holds, as Go types it.
#[derive(Debug)]
enum Kind {
    I64,
    U64,
    U32,
    U16,
    Bool,
    Str,
    /// A struct (through a pointer or not: both are decoded into in place).
    Struct(&'static [Field]),
    /// A slice of structs: replaced whole.
    Slice(&'static [Field]),
    /// `map[string]string`: entries added to what is there.
    MapStr,
    /// `map[string]Struct`: entries added, each decoded afresh.
    MapStruct(&'static [Field]),
}

#[derive(Debug)]
struct Field {
    name: &'static str,
    kind: Kind,
    /// A pointer, slice or map, which `null` clears; a plain value keeps
    /// what it had.
    nullable: bool,
}

const fn f(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        nullable: true,
    }
}

/// A field that is not a pointer in the OCI Go types.
const fn plain(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        nullable: false,
    }
}

const DEVICE: &[Field] = &[
    plain("allow", Kind::Bool),
    plain("type", Kind::Str),
    f("major", Kind::I64),
    f("minor", Kind::I64),
    plain("access", Kind::Str),
];
/// `LinuxMemory` (runtime-spec 1.1, which `checkBeforeUpdate` adds).
const MEMORY: &[Field] = &[
    f("limit", Kind::I64),
    f("reservation", Kind::I64),
    f("swap", Kind::I64),
    f("kernel", Kind::I64),
    f("kernelTCP", Kind::I64),
    f("swappiness", Kind::U64),
    f("disableOOMKiller", Kind::Bool),
    f("useHierarchy", Kind::Bool),
    f("checkBeforeUpdate", Kind::Bool),
];
const CPU: &[Field] = &[
    f("shares", Kind::U64),
    f("quota", Kind::I64),
    f("burst", Kind::U64),
    f("period", Kind::U64),
    f("realtimeRuntime", Kind::I64),
    f("realtimePeriod", Kind::U64),
    plain("cpus", Kind::Str),
    plain("mems", Kind::Str),
    f("idle", Kind::I64),
];
const PIDS: &[Field] = &[plain("limit", Kind::I64)];
const WEIGHT_DEVICE: &[Field] = &[
    plain("major", Kind::I64),
    plain("minor", Kind::I64),
    f("weight", Kind::U16),
    f("leafWeight", Kind::U16),
];
const THROTTLE_DEVICE: &[Field] = &[
    plain("major", Kind::I64),
    plain("minor", Kind::I64),
    plain("rate", Kind::U64),
];
const BLOCK_IO: &[Field] = &[
    f("weight", Kind::U16),
    f("leafWeight", Kind::U16),
    f("weightDevice", Kind::Slice(WEIGHT_DEVICE)),
    f("throttleReadBpsDevice", Kind::Slice(THROTTLE_DEVICE)),
    f("throttleWriteBpsDevice", Kind::Slice(THROTTLE_DEVICE)),
    f("throttleReadIOPSDevice", Kind::Slice(THROTTLE_DEVICE)),
    f("throttleWriteIOPSDevice", Kind::Slice(THROTTLE_DEVICE)),
];
const HUGEPAGE: &[Field] = &[plain("pageSize", Kind::Str), plain("limit", Kind::U64)];
const PRIORITY: &[Field] = &[plain("name", Kind::Str), plain("priority", Kind::U32)];
const NETWORK: &[Field] = &[
    f("classID", Kind::U32),
    f("priorities", Kind::Slice(PRIORITY)),
];
const RDMA: &[Field] = &[f("hcaHandles", Kind::U32), f("hcaObjects", Kind::U32)];
/// `LinuxResources`: the document `update --resources` reads.
const RESOURCES: &[Field] = &[
    f("devices", Kind::Slice(DEVICE)),
    f("memory", Kind::Struct(MEMORY)),
    f("cpu", Kind::Struct(CPU)),
    f("pids", Kind::Struct(PIDS)),
    f("blockIO", Kind::Struct(BLOCK_IO)),
    f("hugepageLimits", Kind::Slice(HUGEPAGE)),
    f("network", Kind::Struct(NETWORK)),
    f("rdma", Kind::MapStruct(RDMA)),
    f("unified", Kind::MapStr),
];

/// Go's key folding (`encoding/json`, Go 1.21 and later): ASCII letters to
/// upper case, any other character to the upper case of its lower case.
/// Older Go (`bytes.EqualFold`) matches the same non-ASCII spellings of
/// these ASCII names (the Kelvin sign for `k`, the long s for `s`) and
/// fewer others; since the document is rebuilt, a key this reads more
/// widely than the runtime would can only be decided, never slip through.
fn fold(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() {
                return c.to_ascii_uppercase();
            }
            let lower = single(c.to_lowercase()).unwrap_or(c);
            single(lower.to_uppercase()).unwrap_or(lower)
        })
        .collect()
}

/// The one character a case mapping yields, if it yields one.
fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
    let first = it.next()?;
    it.next().is_none().then_some(first)
}

/// The field a key names, as Go's decoder finds it: the exact name first,
/// then the folded one.
fn field<'a>(fields: &'a [Field], key: &str) -> Option<&'a Field> {
    fields.iter().find(|f| f.name == key).or_else(|| {
        let k = fold(key);
        fields.iter().find(|f| fold(f.name) == k)
    })
}

/// Reads a resources document as runc does and returns it canonical: an
/// object with exact field names, each once. An error where runc's
/// decoder fails (a type that does not fit, a number out of range); the
/// first such error, as Go reports the earliest.
pub fn decode(bytes: &[u8]) -> Result<Value, ResourcesError> {
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Raw>();
    let raw = match stream.next() {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(ResourcesError::NotJson(e)),
        None => return Err(ResourcesError::Empty),
    };
    let mut out = Value::Object(Map::new());
    let mut first_error = None;
    match &raw {
        Raw::Null => {}
        Raw::Object(_) => into_struct(&raw, RESOURCES, &mut out, "", &mut first_error),
        _ => return Err(ResourcesError::NotObject),
    }
    match first_error {
        Some(e) => Err(ResourcesError::Decode(e)),
        None => Ok(out),
    }
}

fn into_struct(
    raw: &Raw,
    fields: &'static [Field],
    out: &mut Value,
    at: &str,
    err: &mut Option<String>,
) {
    let Raw::Object(pairs) = raw else {
        type_error(raw, "an object", at, err);
        return;
    };
    if !out.is_object() {
        *out = Value::Object(Map::new());
    }
    for (key, value) in pairs {
        let Some(fd) = field(fields, key) else {
            continue;
        };
        let path = format!("{at}{}{}", if at.is_empty() { "" } else { "." }, fd.name);
        let Value::Object(m) = out else { return };
        if *value == Raw::Null {
            if fd.nullable {
                m.remove(fd.name);
            }
            continue;
        }
        let slot = m.entry(fd.name).or_insert(Value::Null);
        into(value, &fd.kind, slot, &path, err);
        if slot.is_null() {
            m.remove(fd.name);
        }
    }
}

fn into(raw: &Raw, kind: &Kind, slot: &mut Value, at: &str, err: &mut Option<String>) {
    let int = |min: i128, max: i128| -> Option<Value> {
        let Raw::Number(n) = raw else { return None };
        let v: i128 = if let Some(i) = n.as_i64() {
            i.into()
        } else {
            n.as_u64()?.into()
        };
        if v < min || v > max {
            return None;
        }
        Some(if v < 0 {
            Value::from(v as i64)
        } else {
            Value::from(v as u64)
        })
    };
    let set = |v: Option<Value>, what: &str, slot: &mut Value, err: &mut Option<String>| match v {
        Some(v) => *slot = v,
        None => type_error(raw, what, at, err),
    };
    match kind {
        Kind::I64 => set(int(i64::MIN.into(), i64::MAX.into()), "an int64", slot, err),
        Kind::U64 => set(int(0, u64::MAX.into()), "a uint64", slot, err),
        Kind::U32 => set(int(0, u32::MAX.into()), "a uint32", slot, err),
        Kind::U16 => set(int(0, u16::MAX.into()), "a uint16", slot, err),
        Kind::Bool => match raw {
            Raw::Bool(b) => *slot = Value::Bool(*b),
            _ => type_error(raw, "a bool", at, err),
        },
        Kind::Str => match raw {
            Raw::String(s) => *slot = Value::String(s.clone()),
            _ => type_error(raw, "a string", at, err),
        },
        Kind::Struct(fields) => into_struct(raw, fields, slot, at, err),
        Kind::Slice(fields) => {
            let Raw::Array(items) = raw else {
                type_error(raw, "an array", at, err);
                return;
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let mut v = Value::Object(Map::new());
                if *item != Raw::Null {
                    into_struct(item, fields, &mut v, &format!("{at}[{i}]"), err);
                }
                out.push(v);
            }
            *slot = Value::Array(out);
        }
        Kind::MapStr | Kind::MapStruct(_) => {
            let Raw::Object(pairs) = raw else {
                type_error(raw, "an object", at, err);
                return;
            };
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let Value::Object(m) = slot else { return };
            for (k, v) in pairs {
                let path = format!("{at}[{k:?}]");
                match kind {
                    Kind::MapStr => match v {
                        Raw::String(s) => {
                            m.insert(k.clone(), Value::String(s.clone()));
                        }
                        // Go stores the zero value for a null element.
                        Raw::Null => {
                            m.insert(k.clone(), Value::String(String::new()));
                        }
                        _ => type_error(v, "a string", &path, err),
                    },
                    Kind::MapStruct(fields) => {
                        let mut e = Value::Object(Map::new());
                        if *v != Raw::Null {
                            into_struct(v, fields, &mut e, &path, err);
                        }
                        m.insert(k.clone(), e);
                    }
                    _ => unreachable!(),
                }
            }
        }
    }
}

fn type_error(raw: &Raw, want: &str, at: &str, err: &mut Option<String>) {
    if err.is_some() {
        return;
    }
    let got = match raw {
        Raw::Null => "null".to_string(),
        Raw::Bool(b) => b.to_string(),
        Raw::Number(n) => format!("number {n}"),
        Raw::String(_) => "a string".into(),
        Raw::Array(_) => "an array".into(),
        Raw::Object(_) => "an object".into(),
    };
    *err = Some(format!(
        "resources field {at}: {got} where the runtime reads {want}"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> Value {
        decode(s.as_bytes()).unwrap()
    }

    #[test]
    fn keys_match_case_insensitively_and_the_last_wins() {
        assert_eq!(
            d(r#"{"Memory":{"Limit":1073741824}}"#),
            json!({"memory":{"limit":1073741824}})
        );
        assert_eq!(
            d(r#"{"memory":{"limit":33554432,"LIMIT":1073741824}}"#),
            json!({"memory":{"limit":1073741824}})
        );
        // The Kelvin sign folds to K, the long s to S, as in Go.
        assert_eq!(
            d("{\"memory\":{\"\u{17f}wap\":5,\"\u{212a}ernelTCP\":6}}"),
            json!({"memory":{"swap":5,"kernelTCP":6}})
        );
    }

    #[test]
    fn a_repeated_object_is_decoded_into_the_first() {
        assert_eq!(
            d(
                r#"{"memory":{"limit":1},"MEMORY":{"swap":2},"unified":{"a":"1"},"Unified":{"b":"2"}}"#
            ),
            json!({"memory":{"limit":1,"swap":2},"unified":{"a":"1","b":"2"}})
        );
        // A slice is replaced, not merged.
        assert_eq!(
            d(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":1}],"hugepagelimits":[]}"#),
            json!({"hugepageLimits":[]})
        );
    }

    #[test]
    fn null_clears_pointers_and_keeps_plain_values() {
        assert_eq!(
            d(r#"{"memory":{"limit":1,"limit":null}}"#),
            json!({"memory":{}})
        );
        assert_eq!(
            d(r#"{"pids":{"limit":5,"limit":null}}"#),
            json!({"pids":{"limit":5}})
        );
        assert_eq!(d(r#"{"memory":{"limit":1},"memory":null}"#), json!({}));
        assert_eq!(d("null"), json!({}));
    }

    #[test]
    fn unknown_keys_and_what_follows_the_first_value_are_ignored() {
        assert_eq!(
            d(r#"{"memory":{"limit":1,"lim":2},"x":{}} {"memory":{"limit":9}}"#),
            json!({"memory":{"limit":1}})
        );
    }

    #[test]
    fn what_go_refuses_is_refused() {
        for bad in [
            r#"{"memory":{"limit":1.5}}"#,
            r#"{"memory":{"limit":1e3}}"#,
            r#"{"memory":{"limit":"1g"}}"#,
            r#"{"memory":{"limit":9223372036854775808}}"#,
            r#"{"cpu":{"shares":-1}}"#,
            r#"{"blockIO":{"weight":65536}}"#,
            r#"{"memory":[]}"#,
            r#"[]"#,
            "",
            "{",
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad}");
        }
        let e = decode(br#"{"memory":{"limit":"1g"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory.limit"), "{e}");
    }

    #[test]
    fn a_whole_document_survives() {
        let doc = json!({
            "devices":[{"allow":false,"access":"rwm"}],
            "memory":{"limit":1,"reservation":2,"swap":3,"kernel":4,"kernelTCP":5,"swappiness":6,"disableOOMKiller":true,"useHierarchy":false,"checkBeforeUpdate":true},
            "cpu":{"shares":1,"quota":-1,"burst":0,"period":100000,"realtimeRuntime":0,"realtimePeriod":0,"cpus":"0-1","mems":"0","idle":1},
            "pids":{"limit":-1},
            "blockIO":{"weight":10,"leafWeight":10,"weightDevice":[{"major":8,"minor":0,"weight":10}],"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1}]},
            "hugepageLimits":[{"pageSize":"2MB","limit":0}],
            "network":{"classID":1,"priorities":[{"name":"eth0","priority":1}]},
            "rdma":{"mlx":{"hcaHandles":1}},
            "unified":{"memory.oom.group":"1"}
        });
        assert_eq!(d(&doc.to_string()), doc);
    }
}
