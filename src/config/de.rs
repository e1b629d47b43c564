//! A serde `Deserializer` that reads the typed config out of the positioned YAML tree
//! (`super::tree`).
//!
//! Every error it returns names the key it is about (`timing.lease_timeout`, `peers[1].url`)
//! and where that is written: the value for a wrong value, the key for an unknown key, the
//! mapping's own key for a missing one. Nothing is recovered from message text: the position is
//! the node being read when serde gave up.
//!
//! It follows what `serde_yaml` did for the same file: any scalar reads as a string where a string
//! is wanted (`name: 123` is `"123"`), only plain scalars are null, booleans or numbers, an empty
//! value is an empty mapping or list, and `~`/`null`/nothing is `None` for an optional key.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};

use super::tree::{join, Node, Pos, Scalar, Value};

/// A config value that does not fit the schema, and where it is.
#[derive(Debug)]
pub struct Error {
    /// The dotted key; `None` until the error has been placed in the tree.
    pub field: Option<String>,
    pub pos: Option<Pos>,
    pub message: String,
    /// Set by `missing_field`: the key absent from the mapping that holds the error.
    missing: Option<&'static str>,
}

impl Error {
    fn new(message: impl Into<String>) -> Self {
        Error {
            field: None,
            pos: None,
            message: message.into(),
            missing: None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// `a`, `a or b`, `one of a, b, c`.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => "no keys here".into(),
        [one] => one.to_string(),
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", names.join(", ")),
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(msg.to_string())
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let mut expected = exp.to_string();
        // humantime_serde's wording; an operator needs an example of the syntax.
        if expected == "a duration" {
            expected.push_str(" such as 500ms, 5s or 2m");
        }
        Error::new(format!("invalid value: {unexp}, expected {expected}"))
    }

    fn unknown_field(_field: &str, expected: &'static [&'static str]) -> Self {
        Error::new(format!("unknown key (expected {})", one_of(expected)))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Error::new(format!(
            "unknown value {variant:?} (expected {})",
            one_of(expected)
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        Error {
            missing: Some(field),
            ..Error::new("required key is missing")
        }
    }

    fn duplicate_field(_field: &'static str) -> Self {
        Error::new("duplicate key")
    }
}

/// Deserializes `T` from the tree's root.
pub fn from_tree<T: DeserializeOwned>(root: &Node) -> Result<T, Error> {
    T::deserialize(ValueDe {
        node: root,
        path: String::new(),
        key: None,
    })
}

/// What serde's messages call the value written in the file.
fn unexpected(node: &Node) -> Unexpected<'_> {
    match &node.value {
        Value::Scalar { text, plain } => match Scalar::resolve(text, *plain) {
            Scalar::Null => Unexpected::Unit,
            Scalar::Bool(b) => Unexpected::Bool(b),
            Scalar::Int(i) => match i64::try_from(i) {
                Ok(i) => Unexpected::Signed(i),
                Err(_) => Unexpected::Other("a large integer"),
            },
            Scalar::Float(f) => Unexpected::Float(f),
            Scalar::Str(s) => Unexpected::Str(s),
        },
        Value::Seq(_) => Unexpected::Seq,
        Value::Map(_) => Unexpected::Map,
    }
}

fn is_empty_plain(node: &Node) -> bool {
    matches!(&node.value, Value::Scalar { text, plain: true } if text.is_empty())
}

/// One value of the tree, at `path`; `key` is where its key (or list item) is written, the
/// place to report a key missing from it. `None` for the whole file.
#[derive(Clone)]
struct ValueDe<'a> {
    node: &'a Node,
    path: String,
    key: Option<Pos>,
}

impl ValueDe<'_> {
    /// Places an error raised while reading this value, unless a value inside it placed it.
    fn place(&self, mut e: Error) -> Error {
        if e.field.is_some() {
            return e;
        }
        if let Some(name) = e.missing {
            e.field = Some(join(&self.path, name));
            e.pos = self.key;
        } else {
            e.field = Some(if self.path.is_empty() {
                "(top level)".into()
            } else {
                self.path.clone()
            });
            e.pos = Some(self.node.pos);
        }
        e
    }

    fn seq<'de, V: Visitor<'de>>(&self, items: &[Node], visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(SeqAccess {
            items: items.iter().enumerate(),
            path: &self.path,
        })
    }

    fn map<'de, V: Visitor<'de>>(
        &self,
        entries: &[super::tree::Entry],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(MapAccess {
            entries: entries.iter(),
            path: &self.path,
            value: None,
        })
    }
}

impl<'de> de::Deserializer<'de> for ValueDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            Value::Scalar { text, plain } => match Scalar::resolve(text, *plain) {
                Scalar::Null => visitor.visit_unit(),
                Scalar::Bool(b) => visitor.visit_bool(b),
                Scalar::Int(i) => {
                    if let Ok(u) = u64::try_from(i) {
                        visitor.visit_u64(u)
                    } else if let Ok(s) = i64::try_from(i) {
                        visitor.visit_i64(s)
                    } else {
                        visitor.visit_i128(i)
                    }
                }
                Scalar::Float(f) => visitor.visit_f64(f),
                Scalar::Str(s) => visitor.visit_str(s),
            },
            Value::Seq(items) => self.seq(items, visitor),
            Value::Map(entries) => self.map(entries, visitor),
        };
        result.map_err(|e| self.place(e))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            Value::Scalar { text, .. } => visitor.visit_str(text),
            _ => Err(de::Error::invalid_type(unexpected(self.node), &visitor)),
        };
        result.map_err(|e| self.place(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let null = matches!(
            &self.node.value,
            Value::Scalar { text, plain } if Scalar::resolve(text, *plain) == Scalar::Null
        );
        let this = self.clone();
        let result = if null {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        };
        result.map_err(|e| this.place(e))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            Value::Seq(items) => self.seq(items, visitor),
            _ if is_empty_plain(self.node) => self.seq(&[], visitor),
            _ => Err(de::Error::invalid_type(unexpected(self.node), &visitor)),
        };
        result.map_err(|e| self.place(e))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            Value::Map(entries) => self.map(entries, visitor),
            _ if is_empty_plain(self.node) => self.map(&[], visitor),
            _ => Err(de::Error::invalid_type(
                unexpected(self.node),
                &"a mapping of keys",
            )),
        };
        result.map_err(|e| self.place(e))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            Value::Scalar { text, .. } => {
                visitor.visit_enum(IntoDeserializer::<Error>::into_deserializer(text.as_str()))
            }
            _ => Err(de::Error::invalid_type(
                unexpected(self.node),
                &one_of(variants).as_str(),
            )),
        };
        result.map_err(|e| self.place(e))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let this = self.clone();
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| this.place(e))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 bytes byte_buf unit unit_struct
    }
}

struct SeqAccess<'a, I> {
    items: I,
    path: &'a str,
}

impl<'de, 'a, I: Iterator<Item = (usize, &'a Node)>> de::SeqAccess<'de> for SeqAccess<'a, I> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((index, node)) = self.items.next() else {
            return Ok(None);
        };
        seed.deserialize(ValueDe {
            node,
            path: format!("{}[{index}]", self.path),
            key: Some(node.pos),
        })
        .map(Some)
    }
}

struct MapAccess<'a, I> {
    entries: I,
    path: &'a str,
    value: Option<&'a super::tree::Entry>,
}

impl<'de, 'a, I: Iterator<Item = &'a super::tree::Entry>> de::MapAccess<'de> for MapAccess<'a, I> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        let key = &entry.key;
        let field = join(self.path, &key.key_name());
        let place = |mut e: Error| {
            if e.field.is_none() {
                e.field = Some(field.clone());
                e.pos = Some(key.pos);
            }
            e
        };
        match &key.value {
            Value::Scalar { text, .. } => seed
                .deserialize(IntoDeserializer::<Error>::into_deserializer(text.as_str()))
                .map(Some)
                .map_err(place),
            _ => Err(place(Error::new(format!(
                "a key must be a name, not {}",
                unexpected(key)
            )))),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let entry = self
            .value
            .take()
            .ok_or_else(|| Error::new("a value was read before its key"))?;
        seed.deserialize(ValueDe {
            node: &entry.value,
            path: join(self.path, &entry.key.key_name()),
            key: Some(entry.key.pos),
        })
    }
}
