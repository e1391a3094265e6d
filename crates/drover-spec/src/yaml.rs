//! The positioned YAML tree: every node of a manifest with the line and column it came from.
//!
//! serde-saphyr parses the text (with budgets that refuse alias bombs, deep nesting and duplicate
//! keys) into this tree, and `crate::de` deserializes the raw manifest types from it. Going
//! through a tree rather than straight from text is what lets validation report every error at
//! once: a failing node can be dropped and the rest deserialized again.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// A line and column in a manifest file, both 1-based, counted in characters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column number, in characters.
    pub column: u32,
}

impl Pos {
    /// The start of a file.
    pub const START: Pos = Pos { line: 1, column: 1 };
}

impl From<serde_saphyr::Location> for Pos {
    fn from(loc: serde_saphyr::Location) -> Self {
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX).max(1);
        Pos {
            line: clamp(loc.line()),
            column: clamp(loc.column()),
        }
    }
}

/// One YAML node and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub(crate) pos: Pos,
    pub(crate) kind: Kind,
}

/// The shape of a node. Mapping keys are kept as strings with their own position.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Key {
    pub(crate) name: String,
    pub(crate) pos: Pos,
}

impl Kind {
    /// How the kind is named in error messages: "found a sequence".
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) | Kind::UInt(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a sequence",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// Budgets that bound the time and memory one manifest can cost. A real manifest is far below
/// each of them: 1000 services take about 20 000 nodes, and the deepest key of the contract
/// (`services.NAME.readiness_probe.http.headers.KEY`) is 6 levels down. The depth limit also
/// bounds stack use: serde-saphyr recurses per level, and in a debug build about 50 levels fill
/// the 2 MiB stack of a spawned thread.
const MAX_DEPTH: usize = 32;
const MAX_NODES: usize = 250_000;
const MAX_ALIASES: usize = 10_000;

/// Parses YAML text into a positioned tree. The error is serde-saphyr's message (without its
/// snippet: we render our own) and its position.
pub(crate) fn parse(text: &str) -> Result<Node, (Pos, String)> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_aliases: MAX_ALIASES,
        },
        strict_booleans: true,
        // Handed to the tree, so that `duplicates` can name where each one is.
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::PassThrough,
    };
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|err| {
        let pos = err.location().map(Pos::from).unwrap_or(Pos::START);
        (
            pos,
            clean_parser_message(&err.without_snippet().to_string()),
        )
    })
}

/// Every key written twice in one mapping of `tree`: the position of the second, the key path of
/// the mapping (`services.web.environment`), the key, and the line of the first.
pub(crate) fn duplicates(tree: &Node) -> Vec<(Pos, String, String, u32)> {
    fn walk(node: &Node, path: &mut String, out: &mut Vec<(Pos, String, String, u32)>) {
        match &node.kind {
            Kind::Map(entries) => {
                let mut seen: std::collections::HashMap<&str, u32> =
                    std::collections::HashMap::new();
                for (key, value) in entries {
                    if let Some(&first) = seen.get(key.name.as_str()) {
                        out.push((key.pos, path.clone(), key.name.clone(), first));
                    } else {
                        seen.insert(&key.name, key.pos.line);
                    }
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&key.name);
                    walk(value, path, out);
                    path.truncate(len);
                }
            }
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(item, path, out);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(tree, &mut String::new(), &mut out);
    out
}

/// serde-saphyr appends " at line L, column C" (and alias details) to its messages; we print the
/// position in front of the message, so cut that tail off.
fn clean_parser_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message);
    let cut = first.find(" at line ").map_or(first, |i| &first[..i]);
    let cut = cut.trim_end_matches(", set DuplicateKeyPolicy in Options if acceptable");
    // Budget and document messages name library internals; say what they mean for a manifest.
    if cut.starts_with("budget breached: Depth") || cut.starts_with("recursion limit exceeded") {
        return format!("nesting is deeper than {MAX_DEPTH} levels");
    }
    if cut.starts_with("budget breached: Nodes") {
        return format!("more than {MAX_NODES} values (an alias bomb?)");
    }
    if cut.starts_with("budget breached: Aliases") {
        return format!("more than {MAX_ALIASES} aliases");
    }
    if cut.starts_with("budget breached") {
        return "the manifest is too large or too deeply aliased to read".to_string();
    }
    if cut.starts_with("multiple YAML documents") {
        return "a manifest is one YAML document; found a second one after `---`".to_string();
    }
    cut.to_string()
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Kind>::deserialize(deserializer)?;
        Ok(Node {
            pos: spanned.referenced.into(),
            kind: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        Ok(i64::try_from(v).map_or(Kind::UInt(v), Kind::Int))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Kind, E> {
        i64::try_from(v)
            .map(Kind::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        u64::try_from(v)
            .map(Kind::UInt)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Kind, E> {
        Err(E::custom("binary values are not supported in a manifest"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let name = match key.kind {
                Kind::Str(s) => s,
                Kind::Int(n) => n.to_string(),
                Kind::UInt(n) => n.to_string(),
                Kind::Bool(b) => b.to_string(),
                other => {
                    return Err(de::Error::custom(format_args!(
                        "line {}: mapping keys must be strings, found {}",
                        key.pos.line,
                        other.describe()
                    )));
                }
            };
            let value = map.next_value::<Node>()?;
            entries.push((Key { name, pos: key.pos }, value));
        }
        Ok(Kind::Map(entries))
    }
}

#[cfg(test)]
mod tests;
