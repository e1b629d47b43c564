//! The `?tree=` parameter of Jenkins' JSON API: which fields to return.
//!
//! Grammar, as in Stapler's `TreePruner`: `field(,field)*` where a field is `name`, `name[subtree]`
//! and either may end with a range `{M,N}` (`{M}`, `{M,}`, `{,N}`) applied to an array. Unknown
//! fields are ignored. An object asked for without a sub-tree keeps only its `_class`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A parsed tree: the fields asked for, each with its sub-tree and range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    fields: BTreeMap<String, (Tree, Option<(usize, usize)>)>,
}

impl Tree {
    /// Parses a tree expression.
    pub fn parse(s: &str) -> Result<Tree, String> {
        let chars: Vec<char> = s.chars().collect();
        let mut pos = 0;
        let tree = parse_list(&chars, &mut pos)?;
        if pos != chars.len() {
            return Err(format!("unexpected {:?} at {pos} in tree={s}", chars[pos]));
        }
        Ok(tree)
    }

    /// Whether the field at this path (e.g. `["jobs", "color"]`) is asked for.
    pub fn wants(&self, path: &[&str]) -> bool {
        match path.split_first() {
            None => true,
            Some((first, rest)) => self
                .fields
                .get(*first)
                .is_some_and(|(sub, _)| sub.wants(rest)),
        }
    }

    /// The value pruned to this tree.
    pub fn prune(&self, v: &Value) -> Value {
        match v {
            Value::Object(obj) => {
                let mut out = Map::new();
                if let Some(c) = obj.get("_class") {
                    out.insert("_class".into(), c.clone());
                }
                for (name, (sub, range)) in &self.fields {
                    if let Some(x) = obj.get(name) {
                        out.insert(name.clone(), sub.prune_field(x, *range));
                    }
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.prune(x)).collect()),
            other => other.clone(),
        }
    }

    fn prune_field(&self, v: &Value, range: Option<(usize, usize)>) -> Value {
        match v {
            Value::Array(a) => {
                let (from, to) = range.unwrap_or((0, usize::MAX));
                let to = to.min(a.len());
                let from = from.min(to);
                Value::Array(a[from..to].iter().map(|x| self.prune(x)).collect())
            }
            other => self.prune(other),
        }
    }
}

fn parse_list(c: &[char], pos: &mut usize) -> Result<Tree, String> {
    let mut tree = Tree::default();
    loop {
        let start = *pos;
        while *pos < c.len() && !matches!(c[*pos], ',' | '[' | ']' | '{' | '}') {
            *pos += 1;
        }
        let name: String = c[start..*pos].iter().collect::<String>().trim().to_string();
        if name.is_empty() {
            return Err(format!("empty field name at {start}"));
        }
        let mut sub = Tree::default();
        if c.get(*pos) == Some(&'[') {
            *pos += 1;
            sub = parse_list(c, pos)?;
            if c.get(*pos) != Some(&']') {
                return Err(format!("missing ']' at {pos}"));
            }
            *pos += 1;
        }
        let mut range = None;
        if c.get(*pos) == Some(&'{') {
            let start = *pos + 1;
            while *pos < c.len() && c[*pos] != '}' {
                *pos += 1;
            }
            if *pos == c.len() {
                return Err("missing '}'".into());
            }
            let text: String = c[start..*pos].iter().collect();
            *pos += 1;
            range = Some(parse_range(&text)?);
        }
        tree.fields.insert(name, (sub, range));
        match c.get(*pos) {
            Some(',') => *pos += 1,
            _ => return Ok(tree),
        }
    }
}

fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let num = |t: &str| -> Result<Option<usize>, String> {
        let t = t.trim();
        if t.is_empty() {
            Ok(None)
        } else {
            t.parse()
                .map(Some)
                .map_err(|_| format!("bad range {{{s}}}"))
        }
    };
    match s.split_once(',') {
        None => {
            let m = num(s)?.ok_or_else(|| format!("bad range {{{s}}}"))?;
            Ok((m, m + 1))
        }
        Some((a, b)) => Ok((num(a)?.unwrap_or(0), num(b)?.unwrap_or(usize::MAX))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_wants_and_prune() {
        let t = Tree::parse("mode,jobs[name,url]{0,2},nope,lastBuild").unwrap();
        assert!(t.wants(&["jobs", "name"]));
        assert!(!t.wants(&["jobs", "color"]));
        assert!(t.wants(&["lastBuild"]));
        let v = json!({
            "_class": "hudson.model.Hudson", "mode": "NORMAL", "numExecutors": 2,
            "jobs": [
                {"_class": "J", "name": "a", "url": "u/a", "color": "blue"},
                {"_class": "J", "name": "b", "url": "u/b", "color": "red"},
                {"_class": "J", "name": "c", "url": "u/c", "color": "red"},
            ],
            "lastBuild": {"_class": "B", "number": 3},
        });
        assert_eq!(
            t.prune(&v),
            json!({
                "_class": "hudson.model.Hudson", "mode": "NORMAL",
                "jobs": [{"_class": "J", "name": "a", "url": "u/a"}, {"_class": "J", "name": "b", "url": "u/b"}],
                "lastBuild": {"_class": "B"},
            })
        );
        for bad in ["", "a,", "a[b", "a{x}", "a[]"] {
            assert!(Tree::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Tree::parse("a{1}").unwrap().fields["a"].1, Some((1, 2)));
        assert_eq!(Tree::parse("a{,3}").unwrap().fields["a"].1, Some((0, 3)));
    }
}
