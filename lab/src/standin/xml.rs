//! A tiny, strict-enough XML reader and writer helpers for the Jenkins files the stand-in touches:
//! item `config.xml`, `build.xml`, `queue.xml`, `users/users.xml`.
//!
//! [`parse`] builds a small DOM (elements, attributes, text) and rejects what is not well-formed
//! (unbalanced tags, several roots, unknown entities, text outside the root), so a half-written file is
//! reported as bad rather than silently half-read. It never panics. [`parse_config`] keeps only what the
//! stand-in needs from an item's `config.xml`.

/// One element: its name, attributes and content in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub nodes: Vec<Node>,
}

/// Content of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Text(String),
    Elem(Element),
}

impl Element {
    /// The direct child elements.
    pub fn children(&self) -> impl Iterator<Item = &Element> {
        self.nodes.iter().filter_map(|n| match n {
            Node::Elem(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first direct child element with this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children().find(|e| e.name == name)
    }

    /// The element at this path of child names, e.g. `["triggers", "hudson.triggers.TimerTrigger"]`.
    pub fn path(&self, names: &[&str]) -> Option<&Element> {
        names.iter().try_fold(self, |e, n| e.child(n))
    }

    /// All the text inside the element, nested elements included, in document order.
    pub fn text(&self) -> String {
        let mut out = String::new();
        fn walk(e: &Element, out: &mut String) {
            for n in &e.nodes {
                match n {
                    Node::Text(t) => out.push_str(t),
                    Node::Elem(c) => walk(c, out),
                }
            }
        }
        walk(self, &mut out);
        out
    }

    /// The trimmed text of the child with this name.
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).map(|e| e.text().trim().to_string())
    }
}

/// What the stand-in keeps of one item `config.xml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Name of the root element, e.g. `project` or `com.cloudbees.hudson.plugins.folder.Folder`.
    pub root: String,
    /// Unescaped text of the root's first direct `<description>` child; empty when there is none.
    pub description: String,
    /// `<triggers><hudson.triggers.TimerTrigger><spec>`, trimmed, when present.
    pub timer_spec: Option<String>,
    /// The stand-in extension `<standinBuildDuration>` (a humantime duration), when present.
    pub build_duration: Option<String>,
}

/// Parses an item config file. `Err` carries a short reason for the log.
pub fn parse_config(text: &str) -> Result<Config, String> {
    let root = parse(text)?;
    Ok(Config {
        description: root
            .child("description")
            .map(Element::text)
            .unwrap_or_default(),
        timer_spec: root
            .path(&["triggers", "hudson.triggers.TimerTrigger", "spec"])
            .map(|e| e.text().trim().to_string()),
        build_duration: root.child_text("standinBuildDuration"),
        root: root.name,
    })
}

/// Parses a whole document into its root element.
pub fn parse(text: &str) -> Result<Element, String> {
    let s = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut i = 0usize;
    // Open elements; the last one receives content.
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;

    loop {
        let rest = &s[i..];
        let lt = rest.find('<');
        let chardata = match lt {
            Some(p) => &rest[..p],
            None => rest,
        };
        if !chardata.is_empty() {
            match stack.last_mut() {
                None => {
                    if !chardata.trim().is_empty() {
                        return Err(format!("text outside the root element at byte {i}"));
                    }
                }
                Some(top) => push_text(top, unescape(chardata)?),
            }
        }
        let Some(p) = lt else { break };
        i += p;
        let rest = &s[i..];

        if rest.starts_with("<?") {
            let end = rest
                .find("?>")
                .ok_or("unterminated processing instruction")?;
            i += end + 2;
        } else if let Some(comment) = rest.strip_prefix("<!--") {
            let end = comment.find("-->").ok_or("unterminated comment")?;
            i += 4 + end + 3;
        } else if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
            let top = stack.last_mut().ok_or("CDATA outside the root element")?;
            let end = cdata.find("]]>").ok_or("unterminated CDATA section")?;
            push_text(top, cdata[..end].to_string());
            i += 9 + end + 3;
        } else if rest.starts_with("<!") {
            if root.is_some() || !stack.is_empty() {
                return Err("markup declaration inside the document".into());
            }
            let end = rest.find('>').ok_or("unterminated declaration")?;
            i += end + 1;
        } else if let Some(after) = rest.strip_prefix("</") {
            let end = after.find('>').ok_or("unterminated end tag")?;
            let name = after[..end].trim_end();
            let open = stack
                .pop()
                .ok_or_else(|| format!("end tag </{name}> without a start tag"))?;
            if open.name != name {
                return Err(format!("end tag </{name}> does not match <{}>", open.name));
            }
            close(&mut stack, &mut root, open);
            i += 2 + end + 1;
        } else {
            // A start tag or an empty-element tag.
            let after = &rest[1..];
            let name_len = after
                .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
                .ok_or("unterminated start tag")?;
            let name = &after[..name_len];
            if name.is_empty() || name.contains(['<', '&', '"', '\'', '=']) {
                return Err(format!("bad element name at byte {i}"));
            }
            let tag_end = find_tag_end(&after[name_len..]).ok_or("unterminated start tag")?;
            let inner = &after[name_len..name_len + tag_end];
            let self_closing = inner.ends_with('/');
            let attrs = parse_attrs(inner.strip_suffix('/').unwrap_or(inner))?;
            if stack.is_empty() && root.is_some() {
                return Err("more than one root element".into());
            }
            let elem = Element {
                name: name.to_string(),
                attrs,
                nodes: Vec::new(),
            };
            if self_closing {
                close(&mut stack, &mut root, elem);
            } else {
                stack.push(elem);
            }
            i += 1 + name_len + tag_end + 1;
        }
    }

    if let Some(open) = stack.last() {
        return Err(format!("element <{}> is not closed", open.name));
    }
    root.ok_or_else(|| "no root element".to_string())
}

fn push_text(top: &mut Element, text: String) {
    if let Some(Node::Text(t)) = top.nodes.last_mut() {
        t.push_str(&text);
    } else {
        top.nodes.push(Node::Text(text));
    }
}

/// Attaches a finished element to its parent, or makes it the root.
fn close(stack: &mut [Element], root: &mut Option<Element>, elem: Element) {
    match stack.last_mut() {
        Some(parent) => parent.nodes.push(Node::Elem(elem)),
        None => *root = Some(elem),
    }
}

/// Parses `a="x" b='y'` (what follows the element name in a start tag).
fn parse_attrs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or("attribute without a value")?;
        let name = rest[..eq].trim();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || "<>\"'".contains(c)) {
            return Err("bad attribute name".into());
        }
        let after = rest[eq + 1..].trim_start();
        let quote = after
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or("attribute value without quotes")?;
        let close = after[1..]
            .find(quote)
            .ok_or("unterminated attribute value")?;
        out.push((name.to_string(), unescape(&after[1..1 + close])?));
        rest = after[1 + close + 1..].trim_start();
    }
    Ok(out)
}

/// Index of the `>` closing a start tag, skipping quoted attribute values; `None` if there is none or a
/// stray `<` comes first.
fn find_tag_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (k, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '>' => return Some(k),
                '<' => return None,
                _ => {}
            },
        }
    }
    None
}

/// Replaces the five predefined entities and character references.
fn unescape(s: &str) -> Result<String, String> {
    if !s.contains('&') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        let after = &rest[p + 1..];
        let semi = after.find(';').ok_or("'&' without a closing ';'")?;
        let entity = &after[..semi];
        let c = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code =
                    if let Some(hex) = entity.strip_prefix("#x").or(entity.strip_prefix("#X")) {
                        u32::from_str_radix(hex, 16).ok()
                    } else if let Some(dec) = entity.strip_prefix('#') {
                        dec.parse::<u32>().ok()
                    } else {
                        None
                    };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{entity};"))?
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Escapes text for element content or a double-quoted attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_with_description() {
        let c = parse_config(
            "<?xml version='1.1' encoding='UTF-8'?>\n<project>\n  <actions/>\n  \
             <description>a &lt;b&gt; &amp; &#65;&#x42;</description>\n  <keepDependencies>false</keepDependencies>\n\
             <properties><p><description>nested, ignored</description></p></properties>\n</project>\n",
        )
        .unwrap();
        assert_eq!(c.root, "project");
        assert_eq!(c.description, "a <b> & AB");
        assert_eq!(c.timer_spec, None);
    }

    #[test]
    fn folder_without_description_and_with_attributes() {
        let c = parse_config(
            "<com.cloudbees.hudson.plugins.folder.Folder plugin=\"cloudbees-folder@6.9\">\
             <!-- <description>in a comment</description> --><views a='x>y'/></com.cloudbees.hudson.plugins.folder.Folder>",
        )
        .unwrap();
        assert_eq!(c.root, "com.cloudbees.hudson.plugins.folder.Folder");
        assert_eq!(c.description, "");
    }

    #[test]
    fn cdata_and_empty_description() {
        let c = parse_config("<project><description><![CDATA[x<y]]> z</description></project>")
            .unwrap();
        assert_eq!(c.description, "x<y z");
        let c = parse_config("<project><description/></project>").unwrap();
        assert_eq!(c.description, "");
    }

    #[test]
    fn triggers_and_stand_in_elements() {
        let c = parse_config(
            "<project><triggers><hudson.triggers.TimerTrigger><spec> @every 3s\n</spec>\
             </hudson.triggers.TimerTrigger></triggers><standinBuildDuration>2s</standinBuildDuration></project>",
        )
        .unwrap();
        assert_eq!(c.timer_spec.as_deref(), Some("@every 3s"));
        assert_eq!(c.build_duration.as_deref(), Some("2s"));
    }

    #[test]
    fn dom_attributes_and_paths() {
        let e = parse(
            "<q><task class=\"a.B\" n='1 &amp; 2'>F/B</task><items><i>1</i><i>2</i></items></q>",
        )
        .unwrap();
        let task = e.child("task").unwrap();
        assert_eq!(
            task.attrs,
            vec![
                ("class".to_string(), "a.B".to_string()),
                ("n".to_string(), "1 & 2".to_string())
            ]
        );
        assert_eq!(task.text(), "F/B");
        let texts: Vec<String> = e
            .child("items")
            .unwrap()
            .children()
            .map(Element::text)
            .collect();
        assert_eq!(texts, ["1", "2"]);
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn bad_documents_are_errors() {
        for bad in [
            "",
            "   ",
            "<project>",
            "<project><description>x</project>",
            "<project></project><project/>",
            "junk<project/>",
            "<project>&nbsp;</project>",
            "<project><description>a & b</description></project>",
            "<project attr=\"unterminated></project>",
            "<project><!-- never closed </project>",
            "</project>",
            "<project a=b></project>",
        ] {
            assert!(parse_config(bad).is_err(), "accepted {bad:?}");
        }
    }
}
