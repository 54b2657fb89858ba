//! Extensions in the base pass: `ext-1`, the definition an extension's `url` names, and the
//! policy HL7's reference validator applies to them:
//! - an extension whose definition is not loaded is an error, unless its url is in one of the
//!   allowed extension domains (`Validator::allows_unknown_extension`; the gateway's
//!   `validation.allowed_extension_domains`, the CLI's `--allow-extension-domain`), where it is
//!   a warning that it was not checked; an unknown modifier extension is always an error;
//! - a known extension used where its definition's `context` does not allow it is an error, and
//!   so is one whose holder fails a `contextInvariant`.
//!
//! Where an extension sits is described as the reference does: the holder's path in the
//! instance (indexes dropped, from the innermost resource), and the path of the definition of the
//! holder (`HumanName`, `Patient.contact`, `date`). An element context matches either, or a type
//! the holder's type derives from with the same remainder (`Quantity` for an `Age`).
//!
//! A child module of the walk, so it reports through the same [`Run`].

use crate::fhir::Member;
use serde_json::{Map, Value};

use super::{Node, Pass, Run};
use crate::fhir::outcome::Severity;
use crate::fhirpath::{self, EvalContext, Item};
use crate::validation::model::{choice_key, Element, Profile};

impl<'d, 'v> Run<'d, 'v> {
    /// Base pass for an extension: `value[x]` xor nested extensions; the definition if known.
    pub(super) fn extension(&mut self, obj: &'v Map<String, Value>, el: &Element) {
        let has_value = obj
            .keys()
            .any(|k| k.starts_with("value") || k.starts_with("_value"));
        let has_nested = obj.contains_key("extension");
        if has_value && has_nested {
            self.error(
                "invariant",
                "an extension has either a value or nested extensions, not both (ext-1)".into(),
            );
        } else if !has_value && !has_nested {
            self.error(
                "invariant",
                "an extension needs a value or nested extensions (ext-1)".into(),
            );
        }
        let Some(Value::String(url)) = obj.member("url") else {
            return;
        };
        let modifier = el.name == "modifierExtension";
        if cross_version(url) {
            // A cross-version extension (an element of another FHIR version, by its
            // `http://hl7.org/fhir/5.0/StructureDefinition/extension-Type.element` url): known
            // to the reference validator by construction; we hold no other version to check it,
            // nor whether that element is a modifier.
            self.issue(
                Severity::Information,
                "extension",
                format!("{url} is a cross-version extension; it was not checked"),
            );
            return;
        }
        // Nested extensions of a complex extension are named by a relative url; their parent's
        // definition checks them. Anywhere else the url is the definition's canonical.
        if !url.contains(':') {
            if el.path != "Extension.extension" {
                self.error_at(
                    ".url",
                    "value",
                    format!("extension url {url:?} must be an absolute URL (the extension's canonical); only the parts of a complex extension have names"),
                );
            }
            return;
        }
        match self.v.defs.profile_in(url, self.scope) {
            Some(p) if p.type_name == "Extension" => {
                let defined_modifier = p.elements.first().is_some_and(|e| e.is_modifier);
                if defined_modifier != modifier {
                    self.error(
                        "structure",
                        if defined_modifier {
                            format!("{url} is a modifier extension (its definition says isModifier): put it in modifierExtension, not extension")
                        } else {
                            format!("{url} is not a modifier extension (its definition does not say isModifier): put it in extension, not modifierExtension")
                        },
                    );
                }
                self.extension_context(p, obj, el);
                self.object(obj, Node { prof: p, elem: 0 }, Pass::Profile);
            }
            Some(p) => self.error(
                "invalid",
                format!("{url} defines a {}, not an extension", p.type_name),
            ),
            None if modifier => self.error(
                "extension",
                format!("unknown modifier extension {url}: a modifier changes the meaning of the resource, so it cannot be ignored; load the package that defines it"),
            ),
            None if self.v.allows_unknown_extension(url) => self.warning(
                "extension",
                format!("unknown extension {url}; it was not checked (its domain is allowed; load the package that defines it to check it)"),
            ),
            None => self.error(
                "extension",
                format!("unknown extension {url}: it is not defined in the loaded packages and its domain is not among the allowed extension domains; load the package that defines it, or allow its domain"),
            ),
        }
    }

    /// An extension may only be used where its definition's contexts allow, and its holder must
    /// meet the definition's context invariants.
    fn extension_context(&mut self, ext: &Profile, obj: &'v Map<String, Value>, el: &Element) {
        if ext.context.is_empty() {
            return;
        }
        // The definition of the holder: `Patient`, `Patient.contact`, `HumanName`, `date`.
        let def_path = el
            .path
            .strip_suffix(".modifierExtension")
            .or_else(|| el.path.strip_suffix(".extension"))
            .unwrap_or(&el.path);
        // The quick answers first: most contexts name the holder's definition or `Element`.
        let contexts = corrected_contexts(ext);
        let quick = contexts.iter().any(|(kind, expr)| {
            kind == "element" && {
                let e = context_expression(expr);
                e == def_path || e == "Element" || e == "Any"
            }
        });
        // The holder is only needed to judge the other kinds of context, or for the context
        // invariants: building its paths was most of what this check cost.
        if quick && ext.context_invariants.is_empty() {
            return;
        }
        let holder = self.holder();
        let ok = quick || {
            let is_resource = holder.paths.len() == 1;
            contexts.iter().any(|(kind, expr)| match kind.as_str() {
                "element" => {
                    let e = context_expression(expr);
                    (e == "Resource" && is_resource)
                        || holder.paths.iter().any(|p| self.path_fits(p, e))
                }
                // on an extension whose url is the expression, or on its value
                "extension" => {
                    let url_of = |h: Option<&Value>| {
                        h.and_then(|h| h.member("url"))
                            .and_then(Value::as_str)
                            .is_some_and(|u| u == expr)
                    };
                    (def_path == "Extension" && url_of(holder.value)) || url_of(holder.value_of)
                }
                "fhirpath" => holder.value.is_some_and(|h| self.fhirpath_context(expr, h)),
                _ => false,
            })
        };
        if !ok {
            let allowed: Vec<String> = contexts.iter().map(|(k, e)| format!("{k} {e}")).collect();
            self.error(
                "structure",
                format!(
                    "extension {} is not allowed here (on {}); its definition allows it on {}",
                    ext.url,
                    holder.paths.join(", "),
                    allowed.join(", ")
                ),
            );
            return;
        }
        let Some(value) = holder.value else {
            return;
        };
        let ext_val = self.extension_value(value, obj);
        for rule in &ext.context_invariants {
            if self.holds(rule, value, def_path, ext_val) == Some(false) {
                self.error(
                    "structure",
                    format!(
                        "extension {} is not allowed here: where it is used, {rule} must hold (its contextInvariant)",
                        ext.url
                    ),
                );
            }
        }
    }

    /// Whether the holder path `p` fits context `e`: equal, or equal after replacing the first
    /// step by a type it derives from (`Age` fits `Quantity`, `Patient` fits `DomainResource`).
    fn path_fits(&self, p: &str, e: &str) -> bool {
        if p == e {
            return true;
        }
        let (first, rest) = match p.find('.') {
            Some(i) => (&p[..i], &p[i..]),
            None => (p, ""),
        };
        let Some(e_first) = e.strip_suffix(rest) else {
            return false;
        };
        !e_first.is_empty() && !e_first.contains('.') && self.v.defs.derives_from(first, e_first)
    }

    /// The holder of the extension at the current path, named as the reference validator names
    /// it: its path from the innermost resource without indexes (`Patient.name.family`), and its
    /// logical paths, each type it passes through followed by the rest of the way
    /// (`HumanName.family`, `string`); a choice by its `[x]` name and its typed name. And its
    /// JSON value (an object, or a primitive's value, else its `_name` companion).
    fn holder(&self) -> Holder<'v> {
        let (Some(&resource), Some(&mark)) = (self.resources.last(), self.resource_marks.last())
        else {
            return Holder {
                paths: Vec::new(),
                value: None,
                value_of: None,
            };
        };
        let defs = &self.v.defs;
        let rtype = resource
            .member("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("");
        let rel = self.path.get(mark..).unwrap_or("");
        // drop the extension's own step (`.extension[2]`)
        let rel = match rel.rfind('.') {
            Some(i) => &rel[..i],
            None => rel,
        };
        let mut literal = String::with_capacity(rtype.len() + rel.len());
        literal.push_str(rtype);
        let mut logical: Vec<String> = vec![rtype.to_string()];
        let mut node = defs.type_def(rtype).map(|p| Node { prof: p, elem: 0 });
        // The value and, for a primitive, its `_name` companion (which holds its extensions);
        // and the object they were found in (a choice's `.ofType(T)` looks there again).
        let mut at: (Option<&'v Value>, Option<&'v Value>) = (Some(resource), None);
        let mut parent: Option<&'v Value> = None;
        let mut name = "";
        let mut steps = steps(rel).peekable();
        while let Some(step) = steps.next() {
            match step {
                Step::Name(n) => {
                    let base = at.0.filter(|v| v.is_object()).or(at.1);
                    parent = base;
                    name = n;
                    literal.push('.');
                    literal.push_str(n);
                    // the JSON key: a choice step is followed by its type
                    let key = match steps.peek() {
                        Some(Step::OfType(t)) => choice_key(n, t),
                        _ => n.to_string(),
                    };
                    at = with_companion(base, &key);
                    node = match node {
                        Some(nd) => self.logical_step(nd, &key, &mut logical),
                        None => {
                            logical.clear();
                            None
                        }
                    };
                }
                Step::OfType(t) => {
                    let key = choice_key(name, t);
                    at = with_companion(parent, &key);
                }
                Step::Index(i) => at = (at.0.and_then(|v| v.get(i)), at.1.and_then(|v| v.get(i))),
            }
        }
        let mut paths = vec![literal];
        for l in logical {
            if !paths.contains(&l) {
                paths.push(l);
            }
        }
        Holder {
            paths,
            value: at.0.filter(|v| !v.is_null()).or(at.1),
            value_of: parent.filter(|_| name.starts_with("value")),
        }
    }

    /// One step of the holder's logical paths: child `key` (a JSON key) of `node`; each path
    /// gets the child's name, then the child's type is added as a path of its own. The node
    /// describing the child's own children, if any.
    fn logical_step(
        &self,
        node: Node<'d>,
        key: &str,
        logical: &mut Vec<String>,
    ) -> Option<Node<'d>> {
        let Some(&(c, ti)) = node.el().keys.get(key) else {
            logical.clear();
            return None;
        };
        let child = &node.prof.elements[c];
        let ty = child.types.get(ti).map(|t| t.code.as_str()).unwrap_or("");
        let mut next = Vec::with_capacity(logical.len() * 2 + 1);
        for lp in logical.iter() {
            if child.choice {
                next.push(format!("{lp}.{}[x]", child.name));
            }
            next.push(format!("{lp}.{key}"));
        }
        if !ty.is_empty() {
            next.push(ty.to_string());
        }
        *logical = next;
        if !child.children.is_empty() {
            return Some(Node {
                prof: node.prof,
                elem: c,
            });
        }
        if let Some(target) = child.content_ref {
            return Some(Node {
                prof: node.prof,
                elem: target,
            });
        }
        self.v.defs.type_def(ty).map(|p| Node { prof: p, elem: 0 })
    }

    /// The extension object itself as a `&'v Value` (its holder's `extension` or
    /// `modifierExtension` array item, found by identity).
    fn extension_value(&self, holder: &'v Value, obj: &'v Map<String, Value>) -> Option<&'v Value> {
        ["extension", "modifierExtension"]
            .iter()
            .filter_map(|k| holder.member(k).and_then(Value::as_array))
            .flatten()
            .find(|x| x.as_object().is_some_and(|o| std::ptr::eq(o, obj)))
    }

    /// The FHIRPath context `expr`, evaluated on the innermost resource, selects `holder`.
    fn fhirpath_context(&self, expr: &str, holder: &'v Value) -> bool {
        let Some(&resource) = self.resources.last() else {
            return false;
        };
        let Ok(compiled) = fhirpath::compile(expr) else {
            return false;
        };
        let ctx = EvalContext::new(&self.v.invariants.model, resource);
        let Ok(found) = compiled.evaluate(&ctx) else {
            return false;
        };
        found.iter().any(|item| {
            matches!(item, Item::Node(n) if n.value.is_some_and(|v| std::ptr::eq(v, holder)))
        })
    }

    /// A context invariant evaluated with the holder as focus and `%extension` bound; `None`
    /// when it cannot be evaluated.
    fn holds(
        &self,
        rule: &str,
        holder: &'v Value,
        def_path: &str,
        ext: Option<&'v Value>,
    ) -> Option<bool> {
        let &resource = self.resources.last()?;
        let compiled = fhirpath::compile(rule).ok()?;
        let focus = if holder.member("resourceType").is_some() {
            fhirpath::Node::resource(holder)
        } else if holder.is_object() {
            if def_path.contains('.') {
                fhirpath::Node::element(holder, "BackboneElement", def_path)
            } else {
                fhirpath::Node::element(holder, def_path, def_path)
            }
        } else {
            fhirpath::Node::primitive(Some(holder), None, def_path)
        };
        let mut ctx = EvalContext::new(&self.v.invariants.model, resource).with_focus(focus);
        if let Some(e) = ext {
            ctx = ctx.with_variable(
                "extension",
                vec![Item::Node(fhirpath::Node::element(
                    e,
                    "Extension",
                    "Extension",
                ))],
            );
        }
        compiled.evaluate_boolean(&ctx).ok().flatten()
    }
}

/// Where an extension sits: the paths naming its holder (the first the instance path), and the
/// holder's JSON value.
struct Holder<'v> {
    paths: Vec<String>,
    value: Option<&'v Value>,
    /// When the holder is a `value[x]`: the object it is the value of (an extension's value is
    /// within that extension's context).
    value_of: Option<&'v Value>,
}

/// The contexts of an extension, with the corrections HL7's reference validator makes to R4's
/// own definitions, whose stated contexts are narrower than R4 uses them: the FHIR type of an
/// element definition's type (stated for its `code`), `regex` (stated for the type's `code`
/// only, used on the type), and the normative version and capability expectation extensions
/// (used on nearly anything).
/// Member `key` of `holder` and its `_key` companion (a primitive's id and extensions), each
/// `None` when absent or when `holder` is not an object.
fn with_companion<'v>(
    holder: Option<&'v Value>,
    key: &str,
) -> (Option<&'v Value>, Option<&'v Value>) {
    let obj = holder.and_then(Value::as_object);
    (
        obj.and_then(|o| crate::fhir::member(o, key)),
        obj.and_then(|o| crate::fhir::companion(o, key)),
    )
}

fn corrected_contexts(ext: &Profile) -> std::borrow::Cow<'_, [(String, String)]> {
    const R4: &str = "http://hl7.org/fhir/StructureDefinition/";
    let Some(name) = ext.url.strip_prefix(R4) else {
        return std::borrow::Cow::Borrowed(&ext.context);
    };
    let (index, expression) = match name {
        "structuredefinition-fhir-type" => (0, "ElementDefinition.type"),
        "regex" => (1, "ElementDefinition.type"),
        "structuredefinition-normative-version"
        | "capabilitystatement-expectation"
        | "capabilitystatement-prohibited" => (0, "Element"),
        _ => return std::borrow::Cow::Borrowed(&ext.context),
    };
    let mut fixed = ext.context.clone();
    if let Some(c) = fixed.get_mut(index) {
        c.1 = expression.to_string();
    }
    std::borrow::Cow::Owned(fixed)
}

/// `http://hl7.org/fhir/{version}/StructureDefinition/extension-{path}`: an element of another
/// FHIR version carried as an extension.
fn cross_version(url: &str) -> bool {
    url.strip_prefix("http://hl7.org/fhir/")
        .and_then(|r| r.split_once("/StructureDefinition/extension-"))
        .is_some_and(|(version, path)| {
            matches!(version, "1.0" | "3.0" | "4.0" | "4.3" | "5.0" | "6.0")
                && path.starts_with(|c: char| c.is_ascii_uppercase())
        })
}

/// A context expression without a canonical prefix (`…/Patient#Patient.name` → `Patient.name`).
fn context_expression(expr: &str) -> &str {
    expr.rsplit('#').next().unwrap_or(expr)
}

enum Step<'a> {
    Name(&'a str),
    OfType(&'a str),
    Index(usize),
}

/// The steps of a walk path: `.name`, `[3]`, `.ofType(Quantity)`.
fn steps(path: &str) -> impl Iterator<Item = Step<'_>> {
    let mut rest = path;
    std::iter::from_fn(move || {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let i = r[..end].parse().ok()?;
            rest = &r[end + 1..];
            return Some(Step::Index(i));
        }
        let r = rest.strip_prefix('.')?;
        let end = r.find(['.', '[']).unwrap_or(r.len());
        let name = &r[..end];
        rest = &r[end..];
        Some(match name.strip_prefix("ofType(") {
            Some(t) => Step::OfType(t.strip_suffix(')').unwrap_or(t)),
            None => Step::Name(name),
        })
    })
}
