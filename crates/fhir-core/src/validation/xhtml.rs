//! Narrative safety: `Narrative.div` (FHIR's `xhtml` type) must be well-formed XML whose root is
//! a `div` in the XHTML namespace, and hold only what the narrative rules allow (txt-1: the basic
//! formatting elements of HTML 4 chapters 7–11 and 15 without `ins`/`del`, links, images and
//! inline styles), and txt-2: some content, that is text other than XML whitespace or an image
//! (what HL7's validator accepts: `<p/>`, `<br/>` or a comment alone are empty; `&#160;` is not).
//!
//! The text is parsed by roxmltree, so every check below sees names and values *after* entities
//! and character references are decoded, with attributes split the way an XML parser splits
//! them; no DTD is accepted (no entity of our own making, no expansion bombs). What is checked
//! then is an allow-list, never a deny-list: an element, an attribute or a URL scheme that is not
//! named here is refused. Browsers do not read narratives as XML, so the checks also close the
//! gaps between the two readings: CDATA sections and comments an HTML parser would end early are
//! refused, and URLs are read the way a browser reads them (tab, CR and LF removed anywhere,
//! control characters and spaces trimmed at both ends) before their scheme is judged.
//!
//! This module must never try to repair a narrative: it answers yes or no, with the first reason.

use std::sync::OnceLock;

use aho_corasick::AhoCorasick;
use roxmltree::{Document, Node, NodeType, ParsingOptions};
use rustc_hash::FxHashSet;

const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The elements a narrative may use: HTML 4 structure (ch. 7), language (8), text (9, without
/// ins/del), lists (10), tables (11), font styles and rules (15), links (12) and images (13).
const ELEMENTS: &[&str] = &[
    "div",
    "span",
    "p",
    "br",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "address",
    "bdo",
    "em",
    "strong",
    "dfn",
    "code",
    "samp",
    "kbd",
    "var",
    "cite",
    "abbr",
    "acronym",
    "blockquote",
    "q",
    "sub",
    "sup",
    "pre",
    "ul",
    "ol",
    "li",
    "dl",
    "dt",
    "dd",
    "dir",
    "menu",
    "table",
    "caption",
    "thead",
    "tfoot",
    "tbody",
    "colgroup",
    "col",
    "tr",
    "th",
    "td",
    "tt",
    "i",
    "b",
    "big",
    "small",
    "strike",
    "s",
    "u",
    "font",
    "basefont",
    "center",
    "a",
    "img",
    "map",
    "area",
];

/// Attributes any allowed element may carry: core and language attributes, and the
/// presentational and table attributes of HTML 4 (none of them holds a URL or a script).
const COMMON_ATTRIBUTES: &[&str] = &[
    "id",
    "class",
    "style",
    "title",
    "lang",
    "dir",
    "accesskey",
    "tabindex",
    "align",
    "valign",
    "width",
    "height",
    "border",
    "cellspacing",
    "cellpadding",
    "span",
    "char",
    "charoff",
    "abbr",
    "axis",
    "headers",
    "scope",
    "rowspan",
    "colspan",
    "summary",
    "frame",
    "rules",
    "nowrap",
    "bgcolor",
    "clear",
    "compact",
    "start",
    "type",
    "value",
    "size",
    "color",
    "face",
    "noshade",
];

/// Attributes allowed on one element only: (element, its attributes).
const ELEMENT_ATTRIBUTES: &[(&str, &[&str])] = &[
    (
        "a",
        &[
            "href", "name", "rel", "rev", "hreflang", "charset", "coords", "shape",
        ],
    ),
    (
        "img",
        &[
            "src", "alt", "longdesc", "usemap", "ismap", "hspace", "vspace", "name",
        ],
    ),
    ("map", &["name"]),
    ("area", &["href", "nohref", "alt", "shape", "coords"]),
    ("blockquote", &["cite"]),
    ("q", &["cite"]),
];

/// Attributes whose value is a URL: checked by [`url`].
const URL_ATTRIBUTES: &[&str] = &["href", "src", "cite", "longdesc", "usemap"];

/// The URL schemes a link may use. Every other scheme is refused: `javascript:`, `vbscript:`,
/// `data:` (except raster images, see [`image_data_url`]), `file:`, `blob:` and all unknown ones.
/// Relative URLs and `#fragment`s have no scheme and are allowed.
pub const URL_SCHEMES: &[&str] = &["http", "https", "ftp", "mailto", "tel", "urn"];

/// Whether `name` is in `list`, through a set built once: every element and attribute of every
/// narrative is looked up, and a scan of the lists was a tenth of the narrative check.
fn listed(
    set: &'static OnceLock<FxHashSet<&'static str>>,
    list: &'static [&'static str],
    name: &str,
) -> bool {
    set.get_or_init(|| list.iter().copied().collect())
        .contains(name)
}

fn allowed_element(name: &str) -> bool {
    static SET: OnceLock<FxHashSet<&'static str>> = OnceLock::new();
    listed(&SET, ELEMENTS, name)
}

fn common_attribute(name: &str) -> bool {
    static SET: OnceLock<FxHashSet<&'static str>> = OnceLock::new();
    listed(&SET, COMMON_ATTRIBUTES, name)
}

/// Check a narrative; the error says what is wrong, for a person.
pub fn check(s: &str) -> Result<(), String> {
    // roxmltree turns a CDATA section into plain text, but an HTML parser reads `<![CDATA[` as a
    // comment that ends at the first `>`: what follows would be markup to a browser.
    if memchr::memmem::find(s.as_bytes(), b"<![CDATA[").is_some() {
        return Err(
            "CDATA sections are not allowed in a narrative (escape the text instead)".into(),
        );
    }
    nesting(s)?;
    let options = ParsingOptions {
        allow_dtd: false,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(s, options)
        .map_err(|e| format!("the narrative is not well-formed XHTML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "div" || root.tag_name().namespace() != Some(XHTML_NS) {
        return Err(format!(
            "the narrative must be one <div xmlns=\"{XHTML_NS}\"> element, not <{}>",
            root.tag_name().name()
        ));
    }
    let mut content = false;
    for node in doc.root().descendants() {
        match node.node_type() {
            NodeType::Root => {}
            NodeType::Element => {
                element(node)?;
                content |= node.tag_name().name() == "img";
            }
            NodeType::Text if !content => {
                content = node.text().is_some_and(|t| {
                    t.bytes()
                        .any(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
                })
            }
            NodeType::Text => {}
            NodeType::Comment => comment(node.text().unwrap_or(""))?,
            NodeType::PI => {
                return Err("processing instructions are not allowed in a narrative".into())
            }
        }
    }
    if !content {
        return Err("the narrative has no content: it needs some text or an image (txt-2)".into());
    }
    Ok(())
}

/// How deep elements may nest. roxmltree's tokenizer recurses once per open element, so the depth
/// is bounded before it runs; the official and IG narratives nest at most 17 deep.
const MAX_DEPTH: usize = 100;

/// Refuse nesting deeper than [`MAX_DEPTH`], and declarations (`<!DOCTYPE`, `<!ENTITY`), with one
/// pass over the bytes. Start tags are read to their `>` with quoted values skipped, so a `/>`
/// inside a value does not count as self-closing; comments and processing instructions are
/// skipped whole, so a `</b>` inside them does not count either. On well-formed text the count
/// is exact; on other text the parser stops at the first error, before which it is exact too.
fn nesting(s: &str) -> Result<(), String> {
    nesting_within(s, MAX_DEPTH)
}

/// [`nesting`] with the depth limit given.
fn nesting_within(s: &str, max: usize) -> Result<(), String> {
    let b = s.as_bytes();
    let skip_to = |from: usize, end: &[u8]| {
        b.get(from..)
            .and_then(|rest| memchr::memmem::find(rest, end))
            .map_or(b.len(), |p| from + p + end.len())
    };
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'<', &b[i..]) {
        i += p + 1;
        match b.get(i) {
            Some(b'/') => depth = depth.saturating_sub(1),
            Some(b'!') if b[i..].starts_with(b"!--") => i = skip_to(i + 3, b"-->"),
            Some(b'!') => {
                return Err(
                    "declarations (<!DOCTYPE, <!ENTITY) are not allowed in a narrative".into(),
                )
            }
            Some(b'?') => i = skip_to(i + 1, b"?>"),
            Some(_) => {
                // To the tag's `>`, each quoted value skipped whole (an image's base64 `src` is
                // most of some narratives' bytes: found with memchr, not byte by byte).
                loop {
                    let Some(p) = memchr::memchr3(b'"', b'\'', b'>', &b[i..]) else {
                        i = b.len();
                        break;
                    };
                    i += p;
                    let c = b[i];
                    if c == b'>' {
                        break;
                    }
                    // past the closing quote, or to the end if there is none
                    i = memchr::memchr(c, &b[i + 1..]).map_or(b.len(), |q| i + q + 2);
                }
                if i > 0 && b.get(i - 1) != Some(&b'/') {
                    depth += 1;
                    if depth > max {
                        return Err(format!("the narrative nests elements more than {max} deep"));
                    }
                }
            }
            None => {}
        }
    }
    Ok(())
}

fn element(node: Node) -> Result<(), String> {
    let tag = node.tag_name();
    let name = tag.name();
    if tag.namespace() != Some(XHTML_NS) {
        return Err(format!(
            "<{name}> is not in the XHTML namespace; a narrative holds XHTML only"
        ));
    }
    if !allowed_element(name) {
        return Err(format!(
            "<{name}> is not allowed in a narrative (txt-1: basic formatting, links, images and tables only)"
        ));
    }
    for a in node.attributes() {
        let attr = a.name();
        match a.namespace() {
            None => {}
            Some(XML_NS) if attr == "lang" || attr == "space" => continue,
            Some(_) => {
                return Err(format!(
                    "the attribute {attr} of <{name}> is in a foreign namespace; not allowed in a narrative"
                ))
            }
        }
        if attr.starts_with("on") {
            return Err(format!(
                "event handler attribute {attr} of <{name}> is not allowed in a narrative"
            ));
        }
        let specific = ELEMENT_ATTRIBUTES
            .iter()
            .find(|(element, _)| *element == name)
            .is_some_and(|(_, attrs)| attrs.contains(&attr));
        if !specific && !common_attribute(attr) {
            return Err(format!(
                "the attribute {attr} is not allowed on <{name}> in a narrative (txt-1)"
            ));
        }
        let value = a.value();
        if URL_ATTRIBUTES.contains(&attr) {
            url(value, name == "img" && attr == "src")
                .map_err(|e| format!("{attr} of <{name}>: {e}"))?;
        } else if attr == "style" {
            style(value).map_err(|e| format!("style of <{name}>: {e}"))?;
        }
    }
    Ok(())
}

/// A comment both an XML and an HTML parser end at the same `-->`: no `--`, no `<` or `>`, not
/// starting or ending with `-` (HTML ends a comment at `--!>`, at `<!-->` and at `<!--->`).
fn comment(text: &str) -> Result<(), String> {
    if text.contains("--")
        || text.contains(['<', '>'])
        || text.starts_with('-')
        || text.ends_with('-')
    {
        return Err(
            "a comment in the narrative holds '--', '<', '>' or starts or ends with '-'".into(),
        );
    }
    Ok(())
}

/// A URL as a browser reads it: tab, CR and LF dropped anywhere, C0 controls and spaces trimmed
/// at both ends; then its scheme, if it has one, must be on [`URL_SCHEMES`] (or be a raster image
/// `data:` URL where `image` says an image is loaded). Spaces are dropped too: XML turns a raw
/// tab in an attribute into a space, which an HTML reader of the same text would have dropped.
fn url(value: &str, image: bool) -> Result<(), String> {
    // Printable ASCII without spaces (most URLs, and every base64 image) reads as it stands:
    // nothing to drop, trim or refuse, and nothing to copy.
    let owned: String;
    let cleaned = if value.bytes().all(|b| matches!(b, 0x21..=0x7e)) {
        value
    } else if !has_control(value) {
        // Spaces, but no control character: nothing to trim or refuse. What is judged below
        // (the scheme, and a data: URL's media type) ends by the first comma, so only that much
        // is copied without its spaces (the R4 narratives' images are `data: image/png;…`).
        let end = value.find(',').map_or(value.len(), |i| i + 1);
        owned = value[..end].chars().filter(|c| *c != ' ').collect();
        &owned
    } else {
        // The blanks are ASCII, so they are dropped byte by byte (what is left is still UTF-8).
        let kept: Vec<u8> = value
            .bytes()
            .filter(|b| !matches!(b, b'\t' | b'\n' | b'\r' | b' '))
            .collect();
        owned = String::from_utf8(kept).map_err(|_| "the URL is not UTF-8".to_string())?;
        let cleaned = owned.trim_matches(|c: char| c <= ' ');
        if has_control(cleaned) {
            return Err("the URL holds a control character".into());
        }
        cleaned
    };
    let Some(scheme) = scheme(cleaned) else {
        return Ok(()); // relative, or a #fragment
    };
    if URL_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return Ok(());
    }
    if image && image_data_url(cleaned) {
        return Ok(());
    }
    let what = if ["javascript", "vbscript"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
    {
        "a script URL"
    } else {
        "a URL scheme"
    };
    Err(format!(
        "{what} ({}:) is not allowed; use {}, a relative URL or a #fragment",
        scheme.to_ascii_lowercase(),
        URL_SCHEMES.join(", ")
    ))
}

/// Whether `s` holds a control character (`char::is_control`: C0, DEL or C1), read as bytes: C0
/// and DEL are single bytes, and C1 is U+0080–U+009F, encoded 0xC2 0x80–0x9F.
fn has_control(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().any(|&c| c < 0x20 || c == 0x7f)
        || memchr::memchr_iter(0xc2, b)
            .any(|i| b.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
}

/// The scheme of an absolute URL (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`,
/// ending at the first `:` before any `/`, `?` or `#`).
fn scheme(url: &str) -> Option<&str> {
    let end = url.find([':', '/', '?', '#'])?;
    let s = &url[..end];
    (url[end..].starts_with(':')
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(s)
}

/// `data:image/{png,gif,jpeg,webp}…`: an image a browser can only draw (not SVG, which can hold
/// script). The official R4 narratives embed their table icons this way.
fn image_data_url(url: &str) -> bool {
    let Some(rest) = url
        .get(5..)
        .filter(|_| url[..5].eq_ignore_ascii_case("data:"))
    else {
        return false;
    };
    let mime = rest
        .trim_start()
        .split([';', ','])
        .next()
        .unwrap_or("")
        .trim();
    ["image/png", "image/gif", "image/jpeg", "image/webp"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(mime))
}

/// An inline style without anything that runs or fetches: no CSS escapes or comments (they can
/// spell any word), no `expression(`, `behavior`, `-moz-binding`, `@import`, script URLs, and
/// `url(…)` only around a raster image `data:` URL.
fn style(value: &str) -> Result<(), String> {
    /// Words that make a style run or fetch something, found in any letter case.
    const REFUSED: [&str; 9] = [
        "expression",
        "javascript:",
        "vbscript:",
        "behavior",
        "-moz-binding",
        "@import",
        "image-set(",
        "image(",
        "cross-fade(",
    ];
    // One pass for all the words, in any case, without a lower-cased copy: nine `contains` on a
    // copy were a third of the narrative rules' own work on the R4 examples.
    static WORDS: OnceLock<Option<AhoCorasick>> = OnceLock::new();
    static URL: OnceLock<Option<AhoCorasick>> = OnceLock::new();
    let finder = |cell: &'static OnceLock<Option<AhoCorasick>>, words: &[&str]| {
        cell.get_or_init(|| {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(words)
                .ok()
        })
        .as_ref()
    };
    let (Some(words), Some(url_open)) = (finder(&WORDS, &REFUSED), finder(&URL, &["url("])) else {
        return Err("the style cannot be checked".into());
    };
    if value.contains(['\\', '<']) || value.contains("/*") {
        return Err("CSS escapes, comments and '<' are not allowed in a narrative's style".into());
    }
    if let Some(m) = words.find(value) {
        let word = REFUSED[m.pattern().as_usize()];
        return Err(format!("{word} is not allowed in a narrative's style"));
    }
    let mut rest = value;
    while let Some(m) = url_open.find(rest) {
        let i = m.start();
        let after = &rest[i + 4..];
        let end = after
            .find(')')
            .ok_or("url( is not closed in a narrative's style")?;
        let arg = after[..end].trim().trim_matches(['"', '\'']).trim();
        if !image_data_url(arg) {
            return Err(
                "url() in a narrative's style may only embed a png, gif, jpeg or webp data: URL"
                    .into(),
            );
        }
        rest = &after[end..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    const NS: &str = r#"<div xmlns="http://www.w3.org/1999/xhtml">"#;

    fn div(inner: &str) -> String {
        format!("{NS}{inner}</div>")
    }

    #[test]
    fn ordinary_narratives_pass() {
        for ok in [
            div("<p>Hej <b>Jens</b><br/></p>"),
            div(r##"<a href="https://example.org/x?a=1&amp;b=2">x</a> <a href="#top">t</a>"##),
            div(r#"<a href="Patient/123">rel</a><a href="mailto:a@b.dk">m</a>"#),
            div(r#"<a href="urn:oid:1.2.3">u</a><a href="tel:+4512345678">t</a>"#),
            div(
                r#"<table border="0" cellpadding="0"><tr><td colspan="2" style="color: red">x</td></tr></table>"#,
            ),
            div(r#"<img src="data: image/png;base64,iVBORw0KGgo=" alt="i"/>"#),
            div(r#"<span style="background-image: url(data:image/png;base64,iVBO)">x</span>"#),
            div(r#"<p xml:lang="da" lang="da">æøå &lt;ok&gt; &#x263A;</p><!-- a note -->"#),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">\n  <p>x</p>\n</div>\n".to_string(),
        ] {
            assert_eq!(check(&ok), Ok(()), "{ok}");
        }
    }

    /// txt-2, as HL7's validator reads it: text other than XML whitespace, or an image.
    #[test]
    fn a_narrative_needs_content() {
        for empty in [
            div(""),
            div("  \n\t "),
            div("<p/>"),
            div("<br/>"),
            div("<!-- c -->"),
        ] {
            let e = check(&empty).expect_err(&empty);
            assert!(e.contains("txt-2"), "{e}");
        }
        for ok in [
            div("&#160;"),
            div(r#"<img src="https://example.org/a.png" alt=""/>"#),
            div("<p> a </p>"),
        ] {
            assert_eq!(check(&ok), Ok(()), "{ok}");
        }
    }

    /// The payloads of issue 20 (item 2), and their neighbours.
    #[test]
    fn bypasses_are_refused() {
        for bad in [
            div(r#"<a href="&#106;avascript:alert(1)">x</a>"#),
            div(r#"<a href="&#x6A;avascript:alert(1)">x</a>"#),
            div(r#"<a href="java&#9;script:alert(1)">x</a>"#),
            div("<a href=\"java\tscript:alert(1)\">x</a>"),
            div(r#"<a href="&#1;javascript:alert(1)">x</a>"#),
            div(r#"<a href=" &#10; JaVaScRiPt:alert(1)">x</a>"#),
            div(r#"<a href="javascript&#58;alert(1)">x</a>"#),
            div(r#"<a href="vbscript:x">x</a>"#),
            div(r#"<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>"#),
            div(r#"<img src="data:image/svg+xml;base64,PHN2Zz4=" alt=""/>"#),
            div(r#"<a href="data:image/png;base64,AAAA">x</a>"#),
            div(r#"<img/src="x"/onerror="alert(1)">"#),
            div(r#"<img src="x" onerror="alert(1)"/>"#),
            div(r#"<img src="x" ONERROR="alert(1)"/>"#),
            div("<svg/onload=alert(1)>"),
            div(r#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>"#),
            div("<script/x>alert(1)</script/x>"),
            div("<script>alert(1)</script>"),
            div("<SCRIPT>alert(1)</SCRIPT>"),
            div("<x:script xmlns:x=\"http://www.w3.org/1999/xhtml\">alert(1)</x:script>"),
            div("<!-- --!><img src=x onerror=alert(1)> -->"),
            div("<!-- --!>&lt;img src=x onerror=alert(1)&gt; -->x"),
            div("<!--><img src=x onerror=alert(1)>-->x"),
            div("<![CDATA[ x><img src=x onerror=alert(1)> ]]>"),
            div(r#"<p style="background: url(javascript:alert(1))">x</p>"#),
            div(r#"<p style="background: url('https://evil.example/x.png')">x</p>"#),
            div(r#"<p style="width: expression(alert(1))">x</p>"#),
            div(r#"<p style="width: expr\65 ssion(alert(1))">x</p>"#),
            div(r#"<p style="width: expr/**/ession(alert(1))">x</p>"#),
            div(r#"<p style="behavior: url(x.htc)">x</p>"#),
            div(r#"<a formaction="javascript:alert(1)">x</a>"#),
            div(r#"<a xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="javascript:alert(1)">x</a>"#),
            div(r#"<a href="x" target="_blank" action="javascript:x">x</a>"#),
            div(r#"<p background="javascript:alert(1)">x</p>"#),
            div(r#"<blockquote cite="javascript:alert(1)">x</blockquote>"#),
            div(r#"<img src="x" alt="" longdesc="javascript:alert(1)"/>"#),
            div("<iframe src=\"https://example.org\"></iframe>"),
            div("<form><input/></form>"),
            div("<object data=\"x\"></object><embed src=\"x\"/>"),
            div("<math><mi>x</mi></math>"),
            div("<style>p{}</style>x"),
            div("<base href=\"https://evil.example/\"/>x"),
            div("<?xml-stylesheet href=\"x\"?>x"),
            "<!DOCTYPE div [<!ENTITY x \"y\">]><div xmlns=\"http://www.w3.org/1999/xhtml\">&x;</div>"
                .to_string(),
            div("&nbsp;"),
            div("x\u{1}y"),
            div("x&#1;y"),
            div("x&#x1B;y"),
            div(r#"<p title="&#0;">x</p>"#),
            div("<p>x</div>"),
            format!("{NS}x</div><p/>"),
            "<div><p>x</p></div>".to_string(),
            r#"<p xmlns="http://www.w3.org/1999/xhtml">x</p>"#.to_string(),
        ] {
            assert!(check(&bad).is_err(), "accepted: {bad}");
        }
    }

    #[test]
    fn messages_name_the_problem() {
        let e = check(&div(r#"<a href="&#106;avascript:alert(1)">x</a>"#)).unwrap_err();
        assert!(
            e.contains("script URL (javascript:)") && e.contains("href of <a>"),
            "{e}"
        );
        let e = check(&div("<script>x</script>")).unwrap_err();
        assert!(e.contains("<script> is not allowed"), "{e}");
        let e = check(&div(r#"<img src="x" alt="" onerror="y"/>"#)).unwrap_err();
        assert!(
            e.contains("event handler attribute onerror of <img>"),
            "{e}"
        );
    }

    /// The byte-by-byte readings that `nesting` and `url` had before they skipped ahead with
    /// memchr and took printable ASCII as it stands: each must still give the same answer.
    mod byte_by_byte {
        pub fn nesting_within(s: &str, max: usize) -> Result<(), String> {
            let b = s.as_bytes();
            let skip_to = |from: usize, end: &[u8]| {
                b[from..]
                    .windows(end.len())
                    .position(|w| w == end)
                    .map_or(b.len(), |p| from + p + end.len())
            };
            let mut depth = 0usize;
            let mut i = 0;
            while let Some(p) = b[i..].iter().position(|c| *c == b'<') {
                i += p + 1;
                match b.get(i) {
                    Some(b'/') => depth = depth.saturating_sub(1),
                    Some(b'!') if b[i..].starts_with(b"!--") => i = skip_to(i + 3, b"-->"),
                    Some(b'!') => return Err("declaration".into()),
                    Some(b'?') => i = skip_to(i + 1, b"?>"),
                    Some(_) => {
                        let mut quote = None;
                        while let Some(&c) = b.get(i) {
                            match quote {
                                Some(q) if c == q => quote = None,
                                Some(_) => {}
                                None if c == b'"' || c == b'\'' => quote = Some(c),
                                None if c == b'>' => break,
                                None => {}
                            }
                            i += 1;
                        }
                        if i > 0 && b.get(i - 1) != Some(&b'/') {
                            depth += 1;
                            if depth > max {
                                return Err(format!("more than {max} deep"));
                            }
                        }
                    }
                    None => {}
                }
            }
            Ok(())
        }

        pub fn url_ok(value: &str, image: bool) -> bool {
            let cleaned: String = value
                .chars()
                .filter(|c| !matches!(c, '\t' | '\n' | '\r' | ' '))
                .collect();
            let cleaned = cleaned.trim_matches(|c: char| c <= ' ');
            if cleaned.chars().any(char::is_control) {
                return false;
            }
            let Some(scheme) = super::super::scheme(cleaned) else {
                return true;
            };
            super::super::URL_SCHEMES
                .iter()
                .any(|s| s.eq_ignore_ascii_case(scheme))
                || (image && super::super::image_data_url(cleaned))
        }
    }

    proptest::proptest! {
        #[test]
        fn control_characters_are_found_as_bytes_as_chars_find_them(s in "\\PC{0,8}[\\x00-\\x1f\\x7f\\u{80}-\\u{a0}\\u{100}]?\\PC{0,8}") {
            proptest::prop_assert_eq!(super::has_control(&s), s.chars().any(char::is_control), "{:?}", s);
        }

        #[test]
        fn nesting_reads_tags_as_a_byte_by_byte_reading_does(
            s in r#"(<[/!?]?[a-z]{0,2}( [a-z]=("[a-z/>']{0,3}"?|'[a-z/>"]{0,3}'?))?/?>?[a -]{0,2}){0,10}"#,
            max in 0usize..4,
        ) {
            let fast = super::nesting_within(&s, max);
            let slow = byte_by_byte::nesting_within(&s, max);
            proptest::prop_assert_eq!(fast.is_ok(), slow.is_ok(), "{:?}: {:?} / {:?}", s, fast, slow);
        }

        #[test]
        fn urls_are_judged_as_a_copy_without_blanks_judges_them(
            s in r"[ \t\x01]{0,2}[a-zA-Z]{0,3}[ \t\n\r\x01\x7f\u{85},]?[a-z+.]{0,4}[:/#?,]?[ a-z\x01\x7f\u{85};,/]{0,6}",
            image: bool,
        ) {
            proptest::prop_assert_eq!(super::url(&s, image).is_ok(), byte_by_byte::url_ok(&s, image), "{:?}", s);
        }
    }

    proptest::proptest! {
        #[test]
        fn data_urls_are_judged_as_a_copy_without_blanks_judges_them(
            s in r"[ \x01]?[dD]a ?ta ?: ?(image ?/ ?(png|svg\+xml|JPEG)|text/html)? ?[;,]?[a-z0-9 ,;/+=\t]{0,8}",
            image: bool,
        ) {
            proptest::prop_assert_eq!(super::url(&s, image).is_ok(), byte_by_byte::url_ok(&s, image), "{:?}", s);
        }
    }

    /// roxmltree's tokenizer recurses per open element: deep nesting is refused before it runs,
    /// also when `/>` hides in a value or `</b>` in a comment.
    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let n = 50_000;
        for (open, close) in [
            ("<b>", "</b>"),
            (r#"<b title="/>">"#, "</b>"),
            ("<b><!--</b></b>-->", "</b>"),
            ("<b><?x </b>?>", "</b>"),
        ] {
            let deep = format!("{NS}{}x{}</div>", open.repeat(n), close.repeat(n));
            let e = check(&deep).unwrap_err();
            assert!(e.contains("more than 100 deep"), "{open}: {e}");
        }
        let ok = format!("{NS}{}x{}</div>", "<b>".repeat(99), "</b>".repeat(99));
        assert_eq!(check(&ok), Ok(()));
        let flat = format!(
            "{NS}{}x</div>",
            "<br/><img src=\"a.png\" alt=\"/\"/>".repeat(n)
        );
        assert_eq!(check(&flat), Ok(()));
    }
}
