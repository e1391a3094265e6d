//! Deserializes the raw manifest types from the positioned YAML tree.
//!
//! It owns two things serde does not give us: every error carries the key path and position of
//! the node it is about, and one bad value does not hide the others. `from_tree` deserializes,
//! and on an error records it, drops the offending node from a copy of the tree and tries again,
//! until the rest deserializes. Unknown keys get a "did you mean" from the field list serde
//! hands to `deserialize_struct`.

use crate::error::{Diagnostic, shorten};
use crate::located::LOCATED_MARKER;
use crate::suggest::did_you_mean;
use crate::yaml::{Kind, Node, Pos};
use serde::de::value::StrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use std::fmt;
use std::path::Path;

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Renders `services.web.command[0]`.
pub(crate) fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The error of our deserializer: what went wrong, and once known, where.
#[derive(Debug)]
pub(crate) struct DeError {
    at: Option<(Vec<Seg>, Pos)>,
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    Message(String),
    UnknownKey {
        key: String,
        expected: &'static [&'static str],
    },
    MissingKey(&'static str),
}

impl DeError {
    fn message(message: impl Into<String>) -> Self {
        DeError {
            at: None,
            kind: ErrorKind::Message(message.into()),
        }
    }

    /// Attaches a position unless a deeper node already did.
    fn locate(mut self, path: &[Seg], pos: Pos) -> Self {
        if self.at.is_none() {
            self.at = Some((path.to_vec(), pos));
        }
        self
    }

    fn text(&self) -> String {
        match &self.kind {
            ErrorKind::Message(message) => message.clone(),
            ErrorKind::UnknownKey { key, expected } => {
                let mut text = format!("unknown key `{}`", shorten(key));
                if let Some(hint) = crate::hints::hint(key, expected) {
                    text.push_str(&format!("; {hint}"));
                } else if let Some(best) = did_you_mean(key, expected.iter().copied()) {
                    text.push_str(&format!("; did you mean `{best}`?"));
                } else if !expected.is_empty() {
                    text.push_str(&format!("; expected one of {}", list(expected)));
                }
                text
            }
            ErrorKind::MissingKey(key) => format!("missing required key `{key}`"),
        }
    }

    /// The node to drop before trying again, so that the next attempt gets past this error.
    fn culprit(&self) -> Vec<Seg> {
        let mut path = self
            .at
            .as_ref()
            .map(|(path, _)| path.clone())
            .unwrap_or_default();
        match &self.kind {
            ErrorKind::UnknownKey { key, .. } => path.push(Seg::Key(key.clone())),
            ErrorKind::MissingKey(_) | ErrorKind::Message(_) => {}
        }
        // Dropping one element would shift the indices of the others and make later paths
        // wrong, so a bad element drops its whole sequence.
        while matches!(path.last(), Some(Seg::Index(_))) {
            path.pop();
        }
        path
    }
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::message(msg.to_string())
    }
    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::message(format!("expected {exp}, found {unexp}"))
    }
    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::message(format!("invalid value: {unexp}, expected {exp}"))
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            at: None,
            kind: ErrorKind::UnknownKey {
                key: field.to_string(),
                expected,
            },
        }
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut text = format!(
            "unknown value `{}`; expected one of {}",
            shorten(variant),
            list(expected)
        );
        if let Some(hint) = crate::hints::hint(variant, expected) {
            text.push_str(&format!("; {hint}"));
        } else if let Some(best) = did_you_mean(variant, expected.iter().copied()) {
            text.push_str(&format!("; did you mean `{best}`?"));
        }
        DeError::message(text)
    }
    fn missing_field(field: &'static str) -> Self {
        DeError {
            at: None,
            kind: ErrorKind::MissingKey(field),
        }
    }
    fn duplicate_field(field: &'static str) -> Self {
        DeError::message(format!("duplicate key `{field}`"))
    }
}

/// What `from_tree` produced: the value when the rest of the tree deserialized, and the paths
/// of the nodes it had to drop to get there (so later checks can stay quiet about them).
pub(crate) struct Recovered<T> {
    pub(crate) value: Option<T>,
    pub(crate) dropped: Vec<Vec<Seg>>,
}

/// At most this many errors are collected from one file.
const MAX_ERRORS: usize = 100;

/// Recovery deserializes again after each error; all its passes over one file may visit at most
/// this many nodes together (about a second in a debug build). A manifest of
/// 1000 services is about 20 000 nodes, and recovery inside one service passes over that
/// service only, so only errors outside `services` in a huge file can run into it.
const MAX_WORK: usize = 500_000;

/// How a recovery ended.
enum Outcome<T> {
    Value(T),
    /// The node recovery started from is itself the culprit; its parent must drop it.
    DropRoot,
    /// Out of errors or work, or nothing left to drop.
    Stop,
}

/// The state of recovery over one file: what was reported, dropped and spent.
struct Recovery<'a> {
    file: &'a Path,
    diagnostics: &'a mut Vec<Diagnostic>,
    dropped: Vec<Vec<Seg>>,
    errors: usize,
    work: usize,
    stopped: bool,
}

impl Recovery<'_> {
    /// Deserializes `T` from `node`, which is at `at` in the file's tree, dropping each node
    /// that fails from `node` and trying again.
    fn run<T: DeserializeOwned>(&mut self, node: &mut Node, at: &[Seg]) -> Outcome<T> {
        let nodes = count_nodes(node);
        loop {
            if self.stopped {
                return Outcome::Stop;
            }
            if self.errors >= MAX_ERRORS || self.work + nodes > MAX_WORK {
                self.stop(node.pos);
                return Outcome::Stop;
            }
            self.work += nodes;
            let error = match T::deserialize(NodeDe::new(node, at.to_vec())) {
                Ok(value) => return Outcome::Value(value),
                Err(error) => error,
            };
            let (path, pos) = error.at.clone().unwrap_or((at.to_vec(), node.pos));
            let consequence = match error.kind {
                // "missing `command`" after we dropped a bad `command` says nothing new.
                ErrorKind::MissingKey(key) => {
                    let mut missing = path.clone();
                    missing.push(Seg::Key(key.to_string()));
                    self.dropped.contains(&missing)
                }
                _ => false,
            };
            if !consequence {
                self.errors += 1;
                let diagnostic = Diagnostic::new(self.file, pos, render_path(&path), error.text());
                self.diagnostics.push(diagnostic);
            }
            let culprit = error.culprit();
            let Some(relative) = culprit.strip_prefix(at) else {
                return Outcome::Stop;
            };
            if relative.is_empty() {
                if at.is_empty() {
                    return Outcome::Stop;
                }
                self.dropped.push(culprit);
                return Outcome::DropRoot;
            }
            if !remove(node, relative) {
                return Outcome::Stop;
            }
            self.dropped.push(culprit);
        }
    }

    fn stop(&mut self, pos: Pos) {
        if !self.stopped {
            self.stopped = true;
            let message = format!("too many errors; stopped after {}", self.errors);
            self.diagnostics
                .push(Diagnostic::new(self.file, pos, "", message));
        }
    }
}

fn count_nodes(node: &Node) -> usize {
    1 + match &node.kind {
        Kind::Seq(items) => items.iter().map(count_nodes).sum(),
        Kind::Map(entries) => entries.iter().map(|(_, v)| count_nodes(v)).sum(),
        _ => 0,
    }
}

/// Deserializes `T` from `tree`, pushing one diagnostic per problem into `diagnostics`.
#[cfg(test)]
pub(crate) fn from_tree<T: DeserializeOwned>(
    tree: &Node,
    file: &Path,
    diagnostics: &mut Vec<Diagnostic>,
) -> Recovered<T> {
    from_tree_by_entries::<T, de::IgnoredAny>(tree, None, file, diagnostics)
}

/// [`from_tree`], where each entry of the top-level mapping `entries_of` is an `E` (each
/// service of the manifest is a `RawService`): when the whole does not deserialize, each entry
/// recovers on its own first, so an error in one service costs passes over that service only,
/// not over the whole file.
pub(crate) fn from_tree_by_entries<T: DeserializeOwned, E: DeserializeOwned>(
    tree: &Node,
    entries_of: Option<&str>,
    file: &Path,
    diagnostics: &mut Vec<Diagnostic>,
) -> Recovered<T> {
    let mut recovery = Recovery {
        file,
        diagnostics,
        dropped: Vec::new(),
        errors: 0,
        work: count_nodes(tree),
        stopped: false,
    };
    // The common case, a valid file: one pass, no copy.
    if let Ok(value) = T::deserialize(NodeDe::new(tree, Vec::new())) {
        return Recovered {
            value: Some(value),
            dropped: Vec::new(),
        };
    }
    let mut tree = tree.clone();
    if let Some(name) = entries_of
        && let Kind::Map(top) = &mut tree.kind
        && let Some((_, parent)) = top.iter_mut().find(|(k, _)| k.name == name)
        && let Kind::Map(entries) = &mut parent.kind
    {
        let mut keep = Vec::with_capacity(entries.len());
        for (key, mut node) in std::mem::take(entries) {
            let at = [Seg::Key(name.to_string()), Seg::Key(key.name.clone())];
            match recovery.run::<E>(&mut node, &at) {
                Outcome::Value(_) => keep.push((key, node)),
                Outcome::DropRoot => {}
                // Keep the rest as it is: the last pass below stops at once, and says so.
                Outcome::Stop => keep.push((key, node)),
            }
        }
        *entries = keep;
    }
    let value = match recovery.run::<T>(&mut tree, &[]) {
        Outcome::Value(value) => Some(value),
        Outcome::DropRoot | Outcome::Stop => None,
    };
    Recovered {
        value,
        dropped: recovery.dropped,
    }
}

/// Removes the node at `path` from its parent; false when there is no such node.
fn remove(tree: &mut Node, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for seg in parents {
        let next = match (seg, &mut node.kind) {
            (Seg::Key(key), Kind::Map(entries)) => entries
                .iter_mut()
                .find(|(k, _)| &k.name == key)
                .map(|(_, v)| v),
            (Seg::Index(i), Kind::Seq(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match (last, &mut node.kind) {
        (Seg::Key(key), Kind::Map(entries)) => {
            let before = entries.len();
            entries.retain(|(k, _)| &k.name != key);
            entries.len() != before
        }
        _ => false,
    }
}

/// A deserializer over one node, knowing its key path.
struct NodeDe<'a> {
    node: &'a Node,
    path: Vec<Seg>,
}

impl<'a> NodeDe<'a> {
    fn new(node: &'a Node, path: Vec<Seg>) -> Self {
        NodeDe { node, path }
    }

    fn fail<T>(&self, error: DeError) -> Result<T, DeError> {
        Err(error.locate(&self.path, self.node.pos))
    }

    fn expected<T>(&self, what: &str) -> Result<T, DeError> {
        self.fail(DeError::message(format!(
            "expected {what}, found {}",
            self.node.kind.describe()
        )))
    }

    fn at<T>(&self, result: Result<T, DeError>) -> Result<T, DeError> {
        result.map_err(|e| e.locate(&self.path, self.node.pos))
    }

    fn scalar_text(&self) -> Option<String> {
        match &self.node.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Int(n) => Some(n.to_string()),
            Kind::UInt(n) => Some(n.to_string()),
            Kind::Float(n) => Some(n.to_string()),
            Kind::Bool(b) => Some(b.to_string()),
            Kind::Null | Kind::Seq(_) | Kind::Map(_) => None,
        }
    }

    fn integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            Kind::Int(n) => self.at(visitor.visit_i64(n)),
            Kind::UInt(n) => self.at(visitor.visit_u64(n)),
            _ => self.expected("an integer"),
        }
    }

    fn float<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            Kind::Int(n) => self.at(visitor.visit_i64(n)),
            Kind::UInt(n) => self.at(visitor.visit_u64(n)),
            Kind::Float(n) => self.at(visitor.visit_f64(n)),
            _ => self.expected("a number"),
        }
    }

    fn map<'de, V: Visitor<'de>>(self, visitor: V, what: &str) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Map(entries) => {
                let access = MapDe {
                    entries: entries.iter(),
                    path: &self.path,
                    value: None,
                };
                self.at(visitor.visit_map(access))
            }
            _ => self.expected(what),
        }
    }
}

macro_rules! integers {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.integer(visitor)
        }
    )*};
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Int(n) => visitor.visit_i64(*n),
            Kind::UInt(n) => visitor.visit_u64(*n),
            Kind::Float(n) => visitor.visit_f64(*n),
            Kind::Str(s) => visitor.visit_str(s),
            Kind::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter().enumerate(),
                path: &self.path,
            }),
            Kind::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                path: &self.path,
                value: None,
            }),
        };
        self.at(result)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            Kind::Bool(b) => self.at(visitor.visit_bool(b)),
            _ => self.expected("true or false"),
        }
    }

    integers!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
              deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.float(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.float(visitor)
    }

    /// Scalars are accepted where a string is expected (`user: 1000`, `PORT: 8080`), as
    /// Compose does.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar_text() {
            Some(text) => self.at(visitor.visit_string(text)),
            None => self.expected("a string"),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, DeError> {
        self.expected("bytes")
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            Kind::Null => self.at(visitor.visit_none()),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            Kind::Null => self.at(visitor.visit_unit()),
            _ => self.expected("null"),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == LOCATED_MARKER {
            let pos = self.node.pos;
            let inner = NodeDe::new(self.node, self.path.clone());
            let access = LocatedSeq {
                pos,
                step: 0,
                inner: Some(inner),
            };
            return self.at(visitor.visit_seq(access));
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Seq(items) => {
                let access = SeqDe {
                    items: items.iter().enumerate(),
                    path: &self.path,
                };
                self.at(visitor.visit_seq(access))
            }
            _ => self.expected("a sequence"),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.map(visitor, "a mapping")
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.map(visitor, &format!("a mapping with keys {}", list(fields)))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Str(s) => {
                let access: StrDeserializer<'_, DeError> = s.as_str().into_deserializer();
                self.at(visitor.visit_enum(access))
            }
            _ => self.expected(&format!("one of {}", list(variants))),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqDe<'a, I> {
    items: I,
    path: &'a [Seg],
}

impl<'de, 'a, I: Iterator<Item = (usize, &'a Node)>> SeqAccess<'de> for SeqDe<'a, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some((index, node)) = self.items.next() else {
            return Ok(None);
        };
        let mut path = self.path.to_vec();
        path.push(Seg::Index(index));
        seed.deserialize(NodeDe::new(node, path)).map(Some)
    }
}

struct MapDe<'a, I> {
    entries: I,
    path: &'a [Seg],
    value: Option<(&'a Node, Vec<Seg>)>,
}

impl<'de, 'a, I: Iterator<Item = &'a (crate::yaml::Key, Node)>> MapAccess<'de> for MapDe<'a, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let mut path = self.path.to_vec();
        path.push(Seg::Key(key.name.clone()));
        // An unknown key is reported against the mapping that holds it.
        let key_de = KeyDe {
            name: &key.name,
            pos: key.pos,
            path: path.clone(),
        };
        let result = seed
            .deserialize(key_de)
            .map_err(|e| e.locate(self.path, key.pos));
        self.value = Some((value, path));
        result.map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some((node, path)) => seed.deserialize(NodeDe::new(node, path)),
            None => Err(DeError::message(
                "internal error: value asked for before its key",
            )),
        }
    }
}

/// Deserializes a mapping key: a string, with its own position for `Located` keys.
#[derive(Clone)]
struct KeyDe<'a> {
    name: &'a str,
    pos: Pos,
    path: Vec<Seg>,
}

impl<'de> Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.name)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == LOCATED_MARKER {
            let (pos, path) = (self.pos, self.path.clone());
            let access = LocatedSeq {
                pos,
                step: 0,
                inner: Some(self),
            };
            return visitor.visit_seq(access).map_err(|e| e.locate(&path, pos));
        }
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// Answers `Located<T>`: line, column, then the value from the inner deserializer.
struct LocatedSeq<D> {
    pos: Pos,
    step: u8,
    inner: Option<D>,
}

impl<'de, D: Deserializer<'de, Error = DeError>> SeqAccess<'de> for LocatedSeq<D> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.step += 1;
        match self.step {
            1 => seed
                .deserialize(self.pos.line.into_deserializer())
                .map(Some),
            2 => seed
                .deserialize(self.pos.column.into_deserializer())
                .map(Some),
            _ => match self.inner.take() {
                Some(inner) => seed.deserialize(inner).map(Some),
                None => Ok(None),
            },
        }
    }
}

#[cfg(test)]
mod tests;
