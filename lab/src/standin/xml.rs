//! A tiny, strict-enough XML reader for Jenkins item `config.xml` files.
//!
//! The stand-in only needs two facts from a config file: the name of the root element (which tells a job
//! from a folder, e.g. `<project>` vs `<com.cloudbees.hudson.plugins.folder.Folder>`) and the text of the
//! root's direct `<description>` child. This reader walks the whole document and rejects what is not
//! well-formed (unbalanced tags, several roots, unknown entities, text outside the root), so a
//! half-written file is reported as bad rather than silently half-read. It never panics.

/// What the stand-in keeps of one `config.xml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Name of the root element, e.g. `project` or `com.cloudbees.hudson.plugins.folder.Folder`.
    pub root: String,
    /// Unescaped text of the root's first direct `<description>` child; empty when there is none.
    pub description: String,
}

/// Parses a config file. `Err` carries a short reason for the log.
pub fn parse_config(text: &str) -> Result<Config, String> {
    let s = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut i = 0usize;
    let mut stack: Vec<&str> = Vec::new();
    let mut root: Option<String> = None;
    let mut root_closed = false;
    let mut description: Option<String> = None;
    // Some(text so far) while inside the root's first <description>.
    let mut capturing: Option<String> = None;

    loop {
        let rest = &s[i..];
        let lt = rest.find('<');
        let chardata = match lt {
            Some(p) => &rest[..p],
            None => rest,
        };
        if !chardata.is_empty() {
            if stack.is_empty() {
                if !chardata.trim().is_empty() {
                    return Err(format!("text outside the root element at byte {i}"));
                }
            } else {
                let text = unescape(chardata)?;
                if let Some(buf) = capturing.as_mut() {
                    buf.push_str(&text);
                }
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
            if stack.is_empty() {
                return Err("CDATA outside the root element".into());
            }
            let end = cdata.find("]]>").ok_or("unterminated CDATA section")?;
            if let Some(buf) = capturing.as_mut() {
                buf.push_str(&cdata[..end]);
            }
            i += 9 + end + 3;
        } else if rest.starts_with("<!") {
            if root.is_some() {
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
            if open != name {
                return Err(format!("end tag </{name}> does not match <{open}>"));
            }
            if stack.len() == 1 {
                if let Some(buf) = capturing.take() {
                    description = Some(buf);
                }
            }
            if stack.is_empty() {
                root_closed = true;
            }
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
            let attrs = &after[name_len..name_len + tag_end];
            let self_closing = attrs.ends_with('/');
            if stack.is_empty() {
                if root_closed {
                    return Err("more than one root element".into());
                }
                root = Some(name.to_string());
            }
            let is_description = stack.len() == 1
                && name == "description"
                && description.is_none()
                && capturing.is_none();
            if self_closing {
                if is_description {
                    description = Some(String::new());
                }
                if stack.is_empty() {
                    root_closed = true;
                }
            } else {
                if is_description {
                    capturing = Some(String::new());
                }
                stack.push(name);
            }
            i += 1 + name_len + tag_end + 1;
        }
    }

    if let Some(open) = stack.last() {
        return Err(format!("element <{open}> is not closed"));
    }
    let root = root.ok_or("no root element")?;
    Ok(Config {
        root,
        description: description.unwrap_or_default(),
    })
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
        ] {
            assert!(parse_config(bad).is_err(), "accepted {bad:?}");
        }
    }
}
