//! The config file's YAML as a tree that remembers where every key and value is written.
//!
//! The file is parsed once, by [`saphyr_parser`], into [`Node`]s that carry their [`Pos`]
//! (line, column, and whether they sit inside a flow collection such as `{a: 1, b: 2}`). The
//! typed config is deserialized from this tree (`super::de`), and the validator looks keys up in
//! it ([`Node::find`]), so every error names the line of the key or value it is about, in block
//! and flow style alike. Building the tree is also where YAML's own rules that a deserializer
//! never sees are enforced: a key given twice in one mapping, and one document per file.
//!
//! Why saphyr-parser: it is a pure-Rust YAML 1.2 parser (no `unsafe` C translation) that passes
//! the YAML test suite, is maintained (the saphyr project, successor of yaml-rust/yaml-rust2),
//! depends on nothing but `arraydeque` and `thiserror`, and gives every event a span. Its errors
//! carry the position where the problem starts: for an unclosed quote that is the opening quote,
//! not the end of the file.
//!
//! Lines and columns are counted here from the character index of each span, with `\n` as the
//! only line break, so they are the numbers an editor, `grep -n` or `sed -n 14p` shows (YAML
//! would also break lines at a lone `\r`).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};

/// Deepest nesting of collections accepted; a config needs four levels.
const MAX_DEPTH: usize = 64;
/// Most nodes a file may expand to, aliases included (a small file of aliases of aliases can
/// otherwise expand to billions).
const MAX_NODES: usize = 100_000;

/// Where something is written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Inside a flow collection (`{...}` or `[...]`), where one line can hold several keys, so
    /// the column is worth showing.
    pub in_flow: bool,
}

/// A YAML node and where it starts.
#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
    /// A scalar as written. Only a plain one (unquoted, no tag or a core-schema tag) can be null,
    /// a boolean or a number; a quoted one is always a string.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` of a mapping; the key keeps its own position.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: Node,
    pub value: Node,
}

/// A problem found while reading the YAML, before any key is interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    /// Given for the parser's own errors (its position is exact, and a line can hold several
    /// values) and inside flow collections.
    pub column: Option<usize>,
    /// The key being read when the problem was found (`node.name`, `peers[1]`), or empty.
    pub field: String,
    pub message: String,
}

impl SyntaxError {
    fn at(pos: Pos, field: String, message: impl Into<String>) -> Self {
        SyntaxError {
            line: pos.line,
            column: pos.in_flow.then_some(pos.column),
            field,
            message: message.into(),
        }
    }
}

impl Node {
    /// The text of a scalar (a mapping key, usually).
    pub fn scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A mapping key as a field name: its text, `""` for an empty key, `?` for a list or a
    /// mapping used as a key.
    pub fn key_name(&self) -> String {
        match self.scalar() {
            Some("") => "\"\"".into(),
            Some(text) => text.into(),
            None => "?".into(),
        }
    }

    /// The position of a dotted key such as `timing.lease_timeout` or `peers[1].url`: where the
    /// key itself is written (for a list item, where the item starts). `None` when the file does
    /// not give it.
    pub fn find(&self, dotted: &str) -> Option<Pos> {
        let mut node = self;
        let mut found = None;
        for part in dotted.split('.') {
            let (name, mut indices) = match part.find('[') {
                Some(at) => (&part[..at], &part[at..]),
                None => (part, ""),
            };
            if !name.is_empty() {
                let Value::Map(entries) = &node.value else {
                    return None;
                };
                let entry = entries.iter().find(|e| e.key.scalar() == Some(name))?;
                found = Some(entry.key.pos);
                node = &entry.value;
            }
            while let Some(rest) = indices.strip_prefix('[') {
                let (index, after) = rest.split_once(']')?;
                let index: usize = index.parse().ok()?;
                let Value::Seq(items) = &node.value else {
                    return None;
                };
                node = items.get(index)?;
                found = Some(node.pos);
                indices = after;
            }
            if !indices.is_empty() {
                return None;
            }
        }
        found
    }

    /// How many nodes the tree holds, and how deep it is.
    fn size(&self) -> (usize, usize) {
        match &self.value {
            Value::Scalar { .. } => (1, 1),
            Value::Seq(items) => items.iter().fold((1, 1), |(n, h), i| {
                let (n2, h2) = i.size();
                (n + n2, h.max(h2 + 1))
            }),
            Value::Map(entries) => entries.iter().fold((1, 1), |(n, h), e| {
                let (nk, hk) = e.key.size();
                let (nv, hv) = e.value.size();
                (n + nk + nv, h.max(hk + 1).max(hv + 1))
            }),
        }
    }
}

/// `parent.key`, or `key` at the top.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Parses the whole file into one tree. An empty file is an empty mapping.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::new(text);
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0;
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(next)) => next,
            Some(Err(e)) => return Err(builder.scan_error(&e)),
        };
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(builder.error(
                        span,
                        "a second YAML document starts here; the config file holds one",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == ScalarStyle::Plain;
                let plain = match tag.as_deref() {
                    None => plain,
                    Some(tag) if tag.handle == "!" && tag.suffix.is_empty() => false,
                    Some(tag) if tag.is_yaml_core_schema() => match tag.suffix.as_str() {
                        "str" => false,
                        "null" | "bool" | "int" | "float" => true,
                        _ => return Err(builder.bad_tag(span, tag)),
                    },
                    Some(tag) => return Err(builder.bad_tag(span, tag)),
                };
                builder.count(1, builder.pos(span))?;
                let node = Node {
                    pos: builder.pos(span),
                    value: Value::Scalar {
                        text: text.into_owned(),
                        plain,
                    },
                };
                builder.add(node, anchor)?;
            }
            Event::SequenceStart(anchor, tag) => {
                builder.check_collection_tag(span, tag.as_deref(), "seq")?;
                builder.open(span, anchor, Value::Seq(Vec::new()))?;
            }
            Event::MappingStart(anchor, tag) => {
                builder.check_collection_tag(span, tag.as_deref(), "map")?;
                builder.open(span, anchor, Value::Map(Vec::new()))?;
            }
            Event::SequenceEnd | Event::MappingEnd => builder.close()?,
            Event::Alias(id) => builder.alias(span, id)?,
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    Ok(builder.root.unwrap_or(Node {
        pos: Pos {
            line: 1,
            column: 1,
            in_flow: false,
        },
        value: Value::Map(Vec::new()),
    }))
}

/// A collection being read, with its anchor (0 for none) and, in a mapping, the key waiting for
/// its value.
struct Open {
    node: Node,
    anchor: usize,
    flow: bool,
    key: Option<Node>,
    /// A mapping's keys so far ([`key_id`]) and where each is written.
    keys: HashMap<String, Pos>,
}

struct Builder<'t> {
    text: &'t str,
    /// Character index where each line starts.
    line_starts: Vec<usize>,
    /// Character index → byte offset, to look at the text around a position.
    char_bytes: Vec<usize>,
    /// Lines in the file, as `str::lines` counts them (at least 1).
    last_line: usize,
    open: Vec<Open>,
    root: Option<Node>,
    /// Anchored nodes by id, with their node count and height.
    anchors: HashMap<usize, (Node, usize, usize)>,
    /// Nodes built so far, aliases and anchored copies included.
    nodes: usize,
}

impl<'t> Builder<'t> {
    fn new(text: &'t str) -> Self {
        let mut line_starts = vec![0];
        let mut char_bytes = Vec::with_capacity(text.len() + 1);
        for (i, (byte, c)) in text.char_indices().enumerate() {
            char_bytes.push(byte);
            if c == '\n' {
                line_starts.push(i + 1);
            }
        }
        char_bytes.push(text.len());
        Builder {
            text,
            line_starts,
            char_bytes,
            last_line: text.lines().count().max(1),
            open: Vec::new(),
            root: None,
            anchors: HashMap::new(),
            nodes: 0,
        }
    }

    /// The line and column of a character index. A position past the last line (the end of a
    /// file that ends with a line break) is given as the end of the last line.
    fn locate(&self, index: usize, in_flow: bool) -> Pos {
        let index = index.min(self.char_bytes.len() - 1);
        let mut line = self.line_starts.partition_point(|&s| s <= index);
        if line > self.last_line {
            line = self.last_line;
            let start = self.line_starts[line - 1];
            let end = self.line_starts.get(line).map_or(index, |&s| s - 1);
            return Pos {
                line,
                column: end - start + 1,
                in_flow,
            };
        }
        Pos {
            line,
            column: index - self.line_starts[line - 1] + 1,
            in_flow,
        }
    }

    /// Where an event starts. A flow collection's own `{` or `[` counts as inside a flow
    /// collection only when its parent is one.
    fn pos(&self, span: Span) -> Pos {
        let in_flow = self
            .open
            .last()
            .is_some_and(|o| o.flow || o.node.pos.in_flow);
        self.locate(span.start.index(), in_flow)
    }

    fn char_at(&self, index: usize) -> Option<char> {
        let start = *self.char_bytes.get(index)?;
        self.text[start..].chars().next()
    }

    /// The key path of what is being read: `timing.interval`, `peers[1].url`.
    fn path(&self) -> String {
        path_of(&self.open)
    }

    fn error(&self, span: Span, message: impl Into<String>) -> SyntaxError {
        SyntaxError::at(self.pos(span), self.path(), message)
    }

    fn bad_tag(&self, span: Span, tag: &Tag) -> SyntaxError {
        self.error(
            span,
            format!("the tag {tag} is not supported (write the value without it)"),
        )
    }

    fn check_collection_tag(
        &self,
        span: Span,
        tag: Option<&Tag>,
        kind: &str,
    ) -> Result<(), SyntaxError> {
        match tag {
            None => Ok(()),
            Some(t) if t.handle == "!" && t.suffix.is_empty() => Ok(()),
            Some(t) if t.is_yaml_core_schema() && t.suffix == kind => Ok(()),
            Some(t) => Err(self.bad_tag(span, t)),
        }
    }

    /// Counts `nodes` more against [`MAX_NODES`]; `at` is where to report going over.
    fn count(&mut self, nodes: usize, at: Pos) -> Result<(), SyntaxError> {
        self.nodes += nodes;
        if self.nodes > MAX_NODES {
            return Err(SyntaxError::at(
                at,
                self.path(),
                format!("the file expands to more than {MAX_NODES} values (aliases of aliases?)"),
            ));
        }
        Ok(())
    }

    fn open(&mut self, span: Span, anchor: usize, value: Value) -> Result<(), SyntaxError> {
        if self.open.len() >= MAX_DEPTH {
            return Err(self.error(span, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.count(1, self.pos(span))?;
        let flow = matches!(self.char_at(span.start.index()), Some('{' | '['))
            && span.end.index() > span.start.index();
        let node = Node {
            pos: self.pos(span),
            value,
        };
        self.open.push(Open {
            node,
            anchor,
            flow,
            key: None,
            keys: HashMap::new(),
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), SyntaxError> {
        let Some(open) = self.open.pop() else {
            return Ok(());
        };
        self.add(open.node, open.anchor)
    }

    fn alias(&mut self, span: Span, id: usize) -> Result<(), SyntaxError> {
        let Some(&(_, nodes, height)) = self.anchors.get(&id) else {
            return Err(self.error(span, "this alias names no anchor"));
        };
        if self.open.len() + height > MAX_DEPTH {
            return Err(self.error(span, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.count(nodes, self.pos(span))?;
        let node = self.anchors[&id].0.clone();
        self.add(node, 0)
    }

    /// Puts a finished node where it belongs: the root, the next item of a list, or a key or
    /// value of a mapping. A key already in the mapping is refused.
    fn add(&mut self, node: Node, anchor: usize) -> Result<(), SyntaxError> {
        if anchor != 0 {
            // The copy kept for aliases counts too: it bounds the memory nested anchors take.
            let (nodes, height) = node.size();
            self.count(nodes, node.pos)?;
            self.anchors.insert(anchor, (node.clone(), nodes, height));
        }
        let Some(parent) = self.open.len().checked_sub(1) else {
            self.root = Some(node);
            return Ok(());
        };
        let open = &mut self.open[parent];
        match &mut open.node.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match open.key.take() {
                Some(key) => entries.push(Entry { key, value: node }),
                None => {
                    if let Some(id) = key_id(&node) {
                        if let Some(&first) = open.keys.get(&id) {
                            let first = if first.line == node.pos.line {
                                format!("line {} column {}", first.line, first.column)
                            } else {
                                format!("line {}", first.line)
                            };
                            return Err(SyntaxError::at(
                                node.pos,
                                join(&self.path(), &node.key_name()),
                                format!("duplicate key (first at {first})"),
                            ));
                        }
                        open.keys.insert(id, node.pos);
                    }
                    open.key = Some(node);
                }
            },
            Value::Scalar { .. } => {}
        }
        Ok(())
    }

    /// A parse error, at the line where the problem is, naming the key being read.
    ///
    /// The parser reports where the construct it could not finish starts. Two cases need more:
    /// - a quoted value that never ends: the position is the opening quote, and the message says so;
    /// - a tab in the indentation of the line after a plain value: the parser points at the value
    ///   it was reading, the line before; the tab's line is the one to fix.
    ///
    /// Inside a flow collection opened on an earlier line, the message says where it opened:
    /// an unclosed `[` or `{` is found only lines later.
    fn scan_error(&self, e: &ScanError) -> SyntaxError {
        let index = e.marker().index();
        let pos = self.locate(index, false);
        let mut field = self.path();
        let mut message = e.info().to_string();
        if matches!(self.char_at(index), Some('"' | '\'')) {
            message = format!("{message}: is the quote opened here closed?");
        } else if let Some(line) = self.tab_indented_line(pos.line) {
            if line != pos.line {
                // The key being read is on the line before; name the collection around it.
                field = self.open_path();
            }
            return SyntaxError {
                line,
                column: None,
                field,
                message: format!(
                    "a tab indents this line; YAML indents with spaces only ({message})"
                ),
            };
        } else if index > 0 && self.char_at(index - 1) == Some('\t') {
            // saphyr-parser refuses `key:<tab>value` (a tab alone after `:`, before a letter or
            // `-`), which it cannot tell from a tab-indented block node.
            message = format!("{message} (write a space, not a tab, after ':' and '-')");
        }
        if let Some(flow) = self.open.iter().rev().find(|o| o.flow) {
            let at = flow.node.pos;
            if at.line < pos.line {
                let bracket = if matches!(flow.node.value, Value::Seq(_)) {
                    '['
                } else {
                    '{'
                };
                message = format!(
                    "{message} (in the {bracket} opened at line {} column {}: is it closed?)",
                    at.line, at.column
                );
            }
        }
        SyntaxError {
            line: pos.line,
            column: Some(pos.column),
            field,
            message,
        }
    }

    /// The path of the innermost open collection, without the key or item being read in it.
    fn open_path(&self) -> String {
        path_of(&self.open[..self.open.len().saturating_sub(1)])
    }

    /// `line`, or else the next line that is not blank, when its indentation holds a tab.
    fn tab_indented_line(&self, line: usize) -> Option<usize> {
        let lines: Vec<&str> = self.text.split('\n').collect();
        let tabbed = |l: &str| {
            let content = l.trim_start_matches([' ', '\t']);
            !content.is_empty() && l[..l.len() - content.len()].contains('\t')
        };
        if tabbed(lines.get(line - 1)?) {
            return Some(line);
        }
        let (offset, next) = lines
            .iter()
            .enumerate()
            .skip(line)
            .find(|(_, l)| !l.trim().is_empty())?;
        tabbed(next).then_some(offset + 1)
    }
}

/// The path to what is read next inside the innermost of `open`: each mapping adds its key
/// waiting for a value, each list the index of its next item.
fn path_of(open: &[Open]) -> String {
    let mut path = String::new();
    for open in open {
        match &open.node.value {
            Value::Seq(items) => path.push_str(&format!("[{}]", items.len())),
            Value::Map(_) => {
                if let Some(key) = &open.key {
                    path = join(&path, &key.key_name());
                }
            }
            Value::Scalar { .. } => {}
        }
    }
    path
}

/// What makes two mapping keys the same key: scalars compare by what they resolve to, so `1` and
/// `0x1` are one key, `a` and `"a"` another, `"1"` a third. Collections as keys are not compared.
fn key_id(key: &Node) -> Option<String> {
    let Value::Scalar { text, plain } = &key.value else {
        return None;
    };
    Some(match Scalar::resolve(text, *plain) {
        Scalar::Null => "null".into(),
        Scalar::Bool(b) => format!("bool {b}"),
        Scalar::Int(i) => format!("int {i}"),
        Scalar::Float(f) => format!("float {}", f.to_bits()),
        Scalar::Str(s) => format!("str {s}"),
    })
}

/// A scalar resolved by the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
}

impl<'a> Scalar<'a> {
    /// What a scalar means: quoted ones are strings; plain ones may be null, a boolean, an
    /// integer (decimal, `0x`, `0o`) or a float (`1.5`, `1e3`, `.inf`, `.nan`).
    pub fn resolve(text: &'a str, plain: bool) -> Scalar<'a> {
        if !plain {
            return Scalar::Str(text);
        }
        match text {
            "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
            "true" | "True" | "TRUE" => return Scalar::Bool(true),
            "false" | "False" | "FALSE" => return Scalar::Bool(false),
            ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
                return Scalar::Float(f64::INFINITY)
            }
            "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
            ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
            _ => {}
        }
        let radix = |prefix: &str, radix: u32| {
            text.strip_prefix(prefix)
                .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_digit(radix)))
                .and_then(|d| i128::from_str_radix(d, radix).ok())
        };
        if let Some(n) = radix("0x", 16).or_else(|| radix("0o", 8)) {
            return Scalar::Int(n);
        }
        let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
        if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = text.parse::<i128>() {
                return Scalar::Int(n);
            }
            if let Ok(f) = text.parse::<f64>() {
                return Scalar::Float(f);
            }
        }
        let float_chars = unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || b"._eE+-".contains(&b));
        let digit = unsigned.bytes().any(|b| b.is_ascii_digit());
        if float_chars && digit && !unsigned.starts_with(['e', 'E']) {
            if let Ok(f) = text.parse::<f64>() {
                return Scalar::Float(f);
            }
        }
        Scalar::Str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize, in_flow: bool) -> Option<Pos> {
        Some(Pos {
            line,
            column,
            in_flow,
        })
    }

    #[test]
    fn keys_keep_their_positions_in_block_and_flow_style() {
        let text = "a:\n  b: 1\nc: {d: 2, e: [x, {f: 3}]}\ng:\n  - h: 4\n  - {h: 5, i: 6}\n";
        let root = parse(text).unwrap();
        assert_eq!(root.find("a"), at(1, 1, false));
        assert_eq!(root.find("a.b"), at(2, 3, false));
        assert_eq!(root.find("c.d"), at(3, 5, true));
        assert_eq!(root.find("c.e"), at(3, 11, true));
        assert_eq!(root.find("c.e[1].f"), at(3, 19, true));
        assert_eq!(root.find("g[0].h"), at(5, 5, false));
        assert_eq!(root.find("g[1]"), at(6, 5, false));
        assert_eq!(root.find("g[1].i"), at(6, 12, true));
        for missing in ["x", "a.x", "c.e[2]", "g[0][0]", "a.b.c", "g[x]", "g[1]x"] {
            assert_eq!(root.find(missing), None, "{missing}");
        }
    }

    #[test]
    fn columns_count_characters_and_lines_count_line_feeds() {
        let root = parse("é: {ü: 1, k: 2}\r\nz: 1\n").unwrap();
        assert_eq!(root.find("é.k"), at(1, 11, true));
        assert_eq!(root.find("z"), at(2, 1, false));
    }

    #[test]
    fn duplicate_keys_are_refused_with_both_places() {
        let e = parse("t:\n  a: 1\n  b: 2\n  a: 3\n").unwrap_err();
        assert_eq!(e.field, "t.a");
        assert_eq!((e.line, e.column), (4, None));
        assert_eq!(e.message, "duplicate key (first at line 2)");
        let e = parse("t: {a: 1, 'a': 2}\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, Some(11)));
        assert_eq!(e.message, "duplicate key (first at line 1 column 5)");
        // Keys are compared by value: 1 and 0x1 are the same integer, "1" is a string.
        assert!(parse("{1: a, 0x1: b}").is_err());
        assert!(parse("{1: a, '1': b}").is_ok());
    }

    #[test]
    fn aliases_expand_within_limits() {
        let root = parse("a: &x {b: 1}\nc: *x\n").unwrap();
        assert_eq!(root.find("c.b").map(|p| p.line), Some(1));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(&bomb).unwrap_err();
        assert!(e.message.contains("expands to more than"), "{e:?}");
        let deep = "[".repeat(200);
        assert!(parse(&deep).unwrap_err().message.contains("nested deeper"));
    }

    #[test]
    fn one_document_only() {
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, None));
        assert!(e.message.contains("second YAML document"), "{e:?}");
        assert!(matches!(parse("").unwrap().value, Value::Map(ref m) if m.is_empty()));
        assert!(parse("# only a comment\n").is_ok());
    }

    #[test]
    fn scalars_resolve_by_the_core_schema() {
        use Scalar::*;
        for (text, want) in [
            ("", Null),
            ("~", Null),
            ("true", Bool(true)),
            ("FALSE", Bool(false)),
            ("12", Int(12)),
            ("-3", Int(-3)),
            ("0x1f", Int(31)),
            ("0o17", Int(15)),
            ("1.5", Float(1.5)),
            ("1e3", Float(1000.0)),
            ("1s", Str("1s")),
            ("127.0.0.1:7070", Str("127.0.0.1:7070")),
            ("e3", Str("e3")),
            ("1.2.3", Str("1.2.3")),
            ("yes", Str("yes")),
        ] {
            assert_eq!(Scalar::resolve(text, true), want, "{text:?}");
        }
        assert_eq!(Scalar::resolve("12", false), Str("12"));
    }
}
