//! The parse tree as the classifier walks it: a generic tree built through
//! the protobuf types' `Serialize`, so that every field of every node is
//! visited whatever its type (see classify.rs).
//!
//! It has the shape `serde_json::to_value` gives (`{"node": {"Kind":
//! {...}}}`, fields iterated in name order), but costs a fraction of it:
//! field names are the `&'static str` serde hands over, not allocated
//! strings, and a node's fields sit in one exactly-sized vector, not a
//! B-tree. On a 1 MB INSERT this took building and dropping the tree from
//! most of classification's time to a small share.

use std::fmt;

use serde::ser::{self, Serialize};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// Only for unsigned values above `i64::MAX`.
    UInt(u64),
    Float(f64),
    Str(Box<str>),
    Array(Vec<Value>),
    Object(Map),
}

/// A node's fields, sorted by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map(Vec<(&'static str, Value)>);

static NULL: Value = Value::Null;

impl Value {
    /// Builds the tree of anything serde can serialize.
    pub fn of<T: Serialize + ?Sized>(v: &T) -> Result<Value, Error> {
        v.serialize(Builder)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.get(key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::UInt(u) => Some(*u),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// `v["key"]` is `Null` when `v` has no such field, as in serde_json.
impl std::ops::Index<&str> for Value {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&NULL)
    }
}

impl Map {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn iter(&self) -> Iter<'_> {
        self.into_iter()
    }

    fn from_fields(mut fields: Vec<(&'static str, Value)>) -> Map {
        // Derived Serialize gives declaration order; the walk (and so the
        // order of reasons) follows name order, as with serde_json's map.
        if !fields.is_sorted_by(|a, b| a.0 <= b.0) {
            fields.sort_by(|a, b| a.0.cmp(b.0));
        }
        Map(fields)
    }
}

pub type Iter<'a> = std::iter::Map<
    std::slice::Iter<'a, (&'static str, Value)>,
    fn(&'a (&'static str, Value)) -> (&'static str, &'a Value),
>;

impl<'a> IntoIterator for &'a Map {
    type Item = (&'static str, &'a Value);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        fn pair<'v>(f: &'v (&'static str, Value)) -> (&'static str, &'v Value) {
            (f.0, &f.1)
        }
        self.0
            .iter()
            .map(pair as fn(&'a (&'static str, Value)) -> _)
    }
}

#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot walk the parse tree: {}", self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error(msg.to_string())
    }
}

/// The serializer that builds a `Value`.
struct Builder;

impl ser::Serializer for Builder {
    type Ok = Value;
    type Error = Error;
    type SerializeSeq = Seq;
    // prost's generated types have no tuples, maps or struct-like enum
    // variants (a oneof is a newtype variant): refuse them, fail closed.
    type SerializeTuple = ser::Impossible<Value, Error>;
    type SerializeTupleStruct = ser::Impossible<Value, Error>;
    type SerializeTupleVariant = ser::Impossible<Value, Error>;
    type SerializeMap = ser::Impossible<Value, Error>;
    type SerializeStruct = Fields;
    type SerializeStructVariant = ser::Impossible<Value, Error>;

    fn serialize_bool(self, v: bool) -> Result<Value, Error> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, Error> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, Error> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, Error> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, Error> {
        Ok(Value::Int(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, Error> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, Error> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, Error> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, Error> {
        Ok(i64::try_from(v).map_or(Value::UInt(v), Value::Int))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, Error> {
        Ok(Value::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, Error> {
        Ok(Value::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, Error> {
        Ok(Value::Str(v.to_string().into()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, Error> {
        Ok(Value::Str(v.into()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, Error> {
        Ok(Value::Array(
            v.iter().map(|b| Value::Int((*b).into())).collect(),
        ))
    }
    fn serialize_none(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Value, Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, Error> {
        Ok(Value::Str(variant.into()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Value, Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Value, Error> {
        // A oneof's case, as serde_json has it: {"Kind": {...}}.
        Ok(Value::Object(Map(vec![(variant, v.serialize(self)?)])))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq, Error> {
        Ok(Seq(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(unexpected("a tuple"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(unexpected("a tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(unexpected("a tuple variant"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(unexpected("a map"))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Fields, Error> {
        Ok(Fields(Vec::with_capacity(len)))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(unexpected("a struct variant"))
    }
}

fn unexpected(what: &str) -> Error {
    Error(format!("{what} is not expected in a parse tree"))
}

struct Seq(Vec<Value>);
struct Fields(Vec<(&'static str, Value)>);

impl ser::SerializeSeq for Seq {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.0.push(v.serialize(Builder)?);
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::Array(self.0))
    }
}

impl ser::SerializeStruct for Fields {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.0.push((key, v.serialize(Builder)?));
        Ok(())
    }
    fn end(self) -> Result<Value, Error> {
        Ok(Value::Object(Map::from_fields(self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree has serde_json's shape, which the classifier was written
    /// against, for every statement of the policy corpus.
    #[test]
    fn same_shape_as_serde_json() {
        let corpus = include_str!("../../tests/corpus/statements.txt");
        let mut compared = 0;
        for line in corpus.lines().filter(|l| !l.starts_with('#')) {
            let Some(sql) = line.splitn(3, '|').nth(2) else {
                continue;
            };
            let Ok(parsed) = pg_query::parse(sql.trim().trim_start_matches('!'), 0) else {
                continue;
            };
            for raw in &parsed.protobuf.stmts {
                let json = serde_json::to_value(raw).expect("json");
                let tree = Value::of(raw).expect("tree");
                assert_eq!(to_json(&tree), json, "{sql}");
                compared += 1;
            }
        }
        assert!(compared > 300, "only {compared} statements compared");
    }

    fn to_json(v: &Value) -> serde_json::Value {
        use serde_json::Value as J;
        match v {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::UInt(u) => J::from(*u),
            Value::Float(f) => J::from(*f),
            Value::Str(s) => J::from(&**s),
            Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
            Value::Object(m) => {
                J::Object(m.iter().map(|(k, v)| (k.to_owned(), to_json(v))).collect())
            }
        }
    }

    /// What a parse tree never holds is refused, not guessed at: the
    /// statement then fails classification and is denied.
    #[test]
    fn shapes_outside_a_parse_tree_are_refused() {
        let map: std::collections::BTreeMap<String, i32> = [("k".to_owned(), 1)].into();
        for err in [Value::of(&map).err(), Value::of(&(1, 2)).err()] {
            assert!(err.is_some_and(|e| e.to_string().contains("not expected")));
        }
    }

    #[test]
    fn lookups_behave_like_serde_json() {
        let parsed = pg_query::parse("SELECT 1", 0).expect("parses");
        let tree = Value::of(&parsed.protobuf.stmts[0]).expect("tree");
        assert!(tree["nosuch"].is_null());
        assert_eq!(tree["stmt_location"].as_u64(), Some(0));
        let (kind, _) = tree["stmt"]["node"]
            .as_object()
            .and_then(|m| m.iter().next())
            .expect("a node");
        assert_eq!(kind, "SelectStmt");
        assert!(tree["stmt"]["node"]["SelectStmt"]
            .as_object()
            .is_some_and(|m| m.contains_key("target_list")));
    }
}
