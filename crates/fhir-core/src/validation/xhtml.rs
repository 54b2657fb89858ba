//! Narrative safety: `Narrative.div` must be a well-formed XHTML `<div>` in the XHTML namespace,
//! without scripts, forms, frames, embedded objects, document-level elements or event handlers.
//! A small tag scanner rather than an XML library: we need structure and names, not a DOM.

const FORBIDDEN: &[&str] = &[
    "html", "head", "body", "script", "style", "form", "input", "button", "select", "textarea",
    "option", "base", "link", "meta", "frame", "frameset", "iframe", "object", "embed", "applet",
    "param", "noscript", "svg", "math",
];

pub fn check(s: &str) -> Result<(), String> {
    let s = s.trim();
    if !s.starts_with("<div") {
        return Err("the narrative must be a single <div> element".into());
    }
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = s;
    let mut first = true;
    let mut closed_root = false;
    while let Some(lt) = rest.find('<') {
        if closed_root && !rest[..lt].trim().is_empty() {
            return Err("content after the closing </div>".into());
        }
        rest = &rest[lt + 1..];
        if let Some(after) = rest.strip_prefix("!--") {
            let end = after.find("-->").ok_or("unterminated comment")?;
            rest = &after[end + 3..];
            continue;
        }
        if rest.starts_with('!') || rest.starts_with('?') {
            return Err("declarations and processing instructions are not allowed".into());
        }
        let gt = rest.find('>').ok_or("a tag is not closed with '>'")?;
        let tag = &rest[..gt];
        rest = &rest[gt + 1..];
        if closed_root {
            return Err("content after the closing </div>".into());
        }
        if let Some(name) = tag.strip_prefix('/') {
            let name = name.trim();
            match stack.pop() {
                Some(open) if open == name => {}
                Some(open) => return Err(format!("</{name}> closes <{open}>")),
                None => return Err(format!("</{name}> without an opening tag")),
            }
            if stack.is_empty() {
                closed_root = true;
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, attrs) = match tag.find(char::is_whitespace) {
            Some(i) => (&tag[..i], &tag[i..]),
            None => (tag, ""),
        };
        let local = name.rsplit(':').next().unwrap_or(name);
        if FORBIDDEN.iter().any(|f| f.eq_ignore_ascii_case(local)) {
            return Err(format!("<{name}> is not allowed in a narrative"));
        }
        check_attributes(name, attrs, first)?;
        first = false;
        if self_closing {
            if stack.is_empty() {
                closed_root = true;
            }
        } else {
            stack.push(name);
        }
    }
    if !stack.is_empty() {
        return Err(format!("<{}> is never closed", stack[stack.len() - 1]));
    }
    Ok(())
}

fn check_attributes(tag: &str, attrs: &str, root: bool) -> Result<(), String> {
    // names and URL schemes compare ignoring ASCII case; lower-cased copies only for messages
    let starts_with_ci = |s: &str, prefix: &str| {
        s.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    let mut rest = attrs.trim();
    let mut has_ns = false;
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("attribute without a value in <{tag}>"))?;
        let name = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next().ok_or("attribute value missing")?;
        if quote != '"' && quote != '\'' {
            return Err(format!(
                "attribute {} in <{tag}> is not quoted",
                name.to_ascii_lowercase()
            ));
        }
        let end = after[1..].find(quote).ok_or_else(|| {
            format!(
                "attribute {} in <{tag}> is not closed",
                name.to_ascii_lowercase()
            )
        })?;
        let value = &after[1..1 + end];
        rest = after[end + 2..].trim_start();
        if starts_with_ci(name, "on") {
            return Err(format!(
                "event handler attribute {} in <{tag}> is not allowed",
                name.to_ascii_lowercase()
            ));
        }
        let v = value.trim();
        if (name.eq_ignore_ascii_case("href") || name.eq_ignore_ascii_case("src"))
            && (starts_with_ci(v, "javascript:") || starts_with_ci(v, "vbscript:"))
        {
            return Err(format!(
                "script URL in {} of <{tag}> is not allowed",
                name.to_ascii_lowercase()
            ));
        }
        if name.eq_ignore_ascii_case("xmlns") && value == "http://www.w3.org/1999/xhtml" {
            has_ns = true;
        }
    }
    if root && !has_ns {
        return Err("the <div> must declare xmlns=\"http://www.w3.org/1999/xhtml\"".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn narratives() {
        let ns = r#"<div xmlns="http://www.w3.org/1999/xhtml">"#;
        assert!(check(&format!("{ns}<p>Hej <b>Jens</b><br/></p></div>")).is_ok());
        assert!(check("<div><p>x</p></div>").is_err());
        assert!(check(&format!("{ns}<script>alert(1)</script></div>")).is_err());
        assert!(check(&format!(r#"{ns}<a href="javascript:x()">x</a></div>"#)).is_err());
        assert!(check(&format!(r#"{ns}<p onclick="x()">x</p></div>"#)).is_err());
        assert!(check(&format!("{ns}<p>x</div>")).is_err());
        assert!(check(&format!("{ns}</div><p/>")).is_err());
    }
}
