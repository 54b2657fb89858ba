//! StructureDefinitions compiled into a tree that is fast to walk: one `Profile` per definition,
//! its elements in a flat vector, each with its children, its slices, and the JSON keys under
//! which its values appear (`valueQuantity` for `value[x]` of type Quantity).

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use crate::fhir::Member;
use serde_json::Value;

/// Index of an element inside its `Profile::elements`.
pub type ElemIdx = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    PrimitiveType,
    ComplexType,
    Resource,
    Logical,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRef {
    /// The FHIR type code (`string`, `CodeableConcept`, `Reference`, `Resource`, `Patient`, …);
    /// FHIRPath system types are mapped to the FHIR type they stand for.
    pub code: String,
    /// `type.profile`: profiles the value must conform to (extension definitions, datatype profiles).
    pub profiles: Vec<String>,
    /// `type.targetProfile` of references and canonicals.
    pub target_profiles: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    Required,
    Extensible,
    Preferred,
    Example,
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub strength: Strength,
    pub value_set: String,
    /// Further bindings beside the main one (R5's `binding.additional`; in R4 profiles the
    /// cross-version extension or the tools extension that carries it).
    pub additional: Vec<AdditionalBinding>,
}

/// An additional binding: a value set the codes must (or should) also come from, for a purpose,
/// possibly only where a usage context holds.
#[derive(Debug, Clone)]
pub struct AdditionalBinding {
    /// The purpose code as written (`required`, `maximum`, `extensible`, `current`, …).
    pub purpose: String,
    pub value_set: String,
    /// `(element path, CodeableConcept)` pairs: the binding applies only where one of them holds
    /// (the element at the path has one of the concept's codings). Empty: it always applies.
    pub usage: Vec<(String, Value)>,
    /// Usage contexts that name no element of the resource (jurisdiction, focus …): the binding's
    /// context cannot be decided from the instance.
    pub usage_undecidable: bool,
    /// `any`: one of the element's repetitions in the value set is enough.
    pub any: bool,
}

impl AdditionalBinding {
    /// The strength an instance is held to under this purpose, if any: `required` and `maximum`
    /// bind like a required binding, `extensible` and `current` like an extensible one; the
    /// others (`preferred`, `candidate`, `minimum`, `ui`, `starter`, `component`) state what a
    /// system should support or show, not what an instance must hold.
    pub fn strength(&self) -> Option<Strength> {
        match self.purpose.as_str() {
            "required" | "maximum" => Some(Strength::Required),
            "extensible" | "current" => Some(Strength::Extensible),
            _ => None,
        }
    }
}

/// Canonicals of the extension that carries an additional binding in an R4 profile.
const ADDITIONAL_BINDING_EXTENSIONS: &[&str] = &[
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-ElementDefinition.binding.additional",
    "http://hl7.org/fhir/tools/StructureDefinition/additional-binding",
];

/// The additional bindings of an ElementDefinition's `binding`: R5's `additional` array, and the
/// R4 extensions that carry the same members as sub-extensions.
fn additional_bindings(b: &Value) -> Vec<AdditionalBinding> {
    use crate::fhir::items_of as items;
    static NO_CONTEXT: Value = Value::Null;
    /// One additional binding as written, in either form; a usage sub-extension without a
    /// UsageContext is `null`, which no element can satisfy.
    #[derive(Default)]
    struct Written<'a> {
        purpose: Option<&'a str>,
        value_set: Option<&'a str>,
        any: bool,
        contexts: Vec<&'a Value>,
    }
    let mut found: Vec<Written<'_>> = Vec::new();
    for a in items(b, "additional") {
        let text = |k: &str| a.member(k).and_then(Value::as_str);
        found.push(Written {
            purpose: text("purpose"),
            value_set: text("valueSet"),
            any: a.member("any").and_then(Value::as_bool) == Some(true),
            contexts: items(a, "usage").collect(),
        });
    }
    for ext in items(b, "extension") {
        let url = ext
            .member("url")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !ADDITIONAL_BINDING_EXTENSIONS.contains(&url) {
            continue;
        }
        let mut one = Written::default();
        for sub in items(ext, "extension") {
            let value = |k: &str| sub.member(k).and_then(Value::as_str);
            match sub.member("url").and_then(Value::as_str) {
                Some("purpose") => one.purpose = value("valueCode"),
                Some("valueSet") => {
                    one.value_set = value("valueCanonical").or_else(|| value("valueUri"))
                }
                Some("any") => {
                    one.any = sub.member("valueBoolean").and_then(Value::as_bool) == Some(true)
                }
                Some("usage") => one
                    .contexts
                    .push(sub.member("valueUsageContext").unwrap_or(&NO_CONTEXT)),
                _ => {}
            }
        }
        found.push(one);
    }
    found
        .into_iter()
        .filter_map(|w| {
            let mut usage = Vec::new();
            let mut usage_undecidable = false;
            for u in w.contexts {
                // `code.code` names an element of the resource (`Observation.category`).
                let path = u
                    .member("code")
                    .and_then(|c| c.member("code"))
                    .and_then(Value::as_str);
                match (path, u.member("valueCodeableConcept")) {
                    (Some(p), Some(c)) if p.contains('.') => usage.push((p.to_string(), c.clone())),
                    _ => usage_undecidable = true,
                }
            }
            Some(AdditionalBinding {
                purpose: w.purpose?.to_string(),
                value_set: w.value_set?.to_string(),
                usage,
                usage_undecidable,
                any: w.any,
            })
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Constraint {
    pub key: String,
    pub error: bool,
    pub expression: String,
    /// The definition's own explanation, when a loaded package carries one (the embedded R4 files
    /// carry none; the validator words those itself).
    pub human: Option<String>,
    /// The compiled rule, attached once at load (`invariants::Compiled::new`) so the walk does
    /// not look the expression up for every element it checks.
    pub(crate) compiled: std::sync::OnceLock<super::invariants::Resolved>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscriminatorKind {
    Value,
    Pattern,
    Type,
    Profile,
    Exists,
}

#[derive(Debug, Clone)]
pub struct Discriminator {
    pub kind: DiscriminatorKind,
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlicingRules {
    Open,
    Closed,
    OpenAtEnd,
}

#[derive(Debug, Clone)]
pub struct Slicing {
    pub discriminators: Vec<Discriminator>,
    pub ordered: bool,
    pub rules: SlicingRules,
}

/// Invariants whose published R4 expression HL7 has since corrected, as the reference
/// validator checks them: (key, published expression, corrected expression).
const CORRECTED: &[(&str, &str, &str)] = &[
    (
        // R4 says "> 2"; the rule's own text ("more than one enableWhen") and R4B/R5 say "> 1".
        "que-12",
        "enableWhen.count() > 2 implies enableBehavior.exists()",
        "enableWhen.count() > 1 implies enableBehavior.exists()",
    ),
    (
        // R4 names the System type, which a FHIR `answerBoolean` is not (FHIRPath's own test
        // suite says so); HL7's engine matches it anyway, and R4B/R5 say `boolean`.
        "que-7",
        "operator = 'exists' implies (answer is Boolean)",
        "operator = 'exists' implies (answer is boolean)",
    ),
];

/// The expression to evaluate for constraint `key`: its correction if there is one.
fn corrected<'a>(key: &str, expression: &'a str) -> &'a str {
    CORRECTED
        .iter()
        .find(|(k, published, _)| *k == key && *published == expression)
        .map_or(expression, |(_, _, fixed)| fixed)
}

#[derive(Debug, Clone)]
pub struct Element {
    pub id: String,
    pub path: String,
    /// The last path segment without `[x]`: `value` for `Observation.value[x]`.
    pub name: String,
    pub choice: bool,
    pub slice_name: Option<String>,
    pub min: u32,
    /// `None` for `*`.
    pub max: Option<u32>,
    /// Whether JSON carries this element as an array (the base definition allows more than one).
    pub array: bool,
    /// Whether the base definition's cardinality is the same as this element's (so a profile pass
    /// need not check it again).
    pub base_card_same: bool,
    pub types: Vec<TypeRef>,
    pub content_ref: Option<ElemIdx>,
    pub children: Vec<ElemIdx>,
    pub slicing: Option<Slicing>,
    pub slices: Vec<ElemIdx>,
    pub fixed: Option<Value>,
    pub pattern: Option<Value>,
    pub binding: Option<Binding>,
    pub constraints: Vec<Constraint>,
    pub max_length: Option<usize>,
    /// `minValue[x]` and `maxValue[x]`.
    pub min_value: Option<Value>,
    pub max_value: Option<Value>,
    pub is_modifier: bool,
    /// JSON key → (child element, index into the child's `types`) for every child.
    pub keys: FxHashMap<String, (ElemIdx, usize)>,
}

impl Element {
    pub fn max_text(&self) -> String {
        self.max.map_or_else(|| "*".to_string(), |m| m.to_string())
    }
}

#[derive(Debug)]
pub struct Profile {
    pub url: String,
    pub version: Option<String>,
    pub name: String,
    pub type_name: String,
    pub kind: Kind,
    pub is_abstract: bool,
    /// `derivation = constraint`: a profile on `type_name` rather than its definition.
    pub constraint: bool,
    pub base: Option<String>,
    pub elements: Vec<Element>,
    /// Extension definitions: where the extension may be used (`type`, `expression`).
    pub context: Vec<(String, String)>,
    /// Extension definitions: FHIRPath rules the element holding the extension must meet
    /// (`contextInvariant`; `%extension` is the extension).
    pub context_invariants: Vec<String>,
    /// The package it was loaded from (`Definitions::packages`; set at load).
    pub package: usize,
}

impl Profile {
    pub fn root(&self) -> &Element {
        &self.elements[0]
    }

    /// A short name for messages: the definition's `name`, else its URL.
    pub fn label(&self) -> &str {
        if self.name.is_empty() {
            &self.url
        } else {
            &self.name
        }
    }
}

const FHIR_TYPE_EXT: &str = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn parse_max(v: Option<&Value>) -> Option<Option<u32>> {
    match v.and_then(Value::as_str) {
        Some("*") => Some(None),
        Some(n) => n.parse().ok().map(Some),
        None => None,
    }
}

fn type_ref(t: &Value, path: &str, resource: bool) -> Option<TypeRef> {
    let mut code = t.member("code")?.as_str()?.to_string();
    if code.starts_with("http://hl7.org/fhirpath/System.") {
        let fhir = t
            .member("extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|x| x.member("url").and_then(Value::as_str) == Some(FHIR_TYPE_EXT))
            .and_then(|x| x.member("valueUrl").or_else(|| x.member("valueUri")))
            .and_then(Value::as_str);
        code = match fhir {
            Some(f) => f.to_string(),
            None => code
                .trim_start_matches("http://hl7.org/fhirpath/System.")
                .to_lowercase(),
        };
        // R4 types a resource's logical id as string; its format is that of `id`.
        if resource && code == "string" && path.matches('.').count() == 1 && path.ends_with(".id") {
            let head = path.split('.').next().unwrap_or_default();
            if head.chars().next().is_some_and(char::is_uppercase) {
                code = "id".into();
            }
        }
    }
    Some(TypeRef {
        code,
        profiles: strings(t.member("profile")),
        target_profiles: strings(t.member("targetProfile")),
    })
}

/// `Observation.value[x]` + `Quantity` → `valueQuantity`.
pub fn choice_key(name: &str, type_code: &str) -> String {
    let mut s = String::with_capacity(name.len() + type_code.len());
    s.push_str(name);
    let mut chars = type_code.chars();
    if let Some(first) = chars.next() {
        s.extend(first.to_uppercase());
        s.push_str(chars.as_str());
    }
    s
}

/// Compile a StructureDefinition (with a snapshot) into a `Profile`.
pub fn compile(sd: &Value) -> Result<Profile, String> {
    let s = |k: &str| {
        sd.member(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let url = s("url");
    let kind = match sd.member("kind").and_then(Value::as_str) {
        Some("primitive-type") => Kind::PrimitiveType,
        Some("complex-type") => Kind::ComplexType,
        Some("resource") => Kind::Resource,
        Some("logical") => Kind::Logical,
        other => return Err(format!("{url}: unknown kind {other:?}")),
    };
    let raw = sd
        .member("snapshot")
        .and_then(|s| s.member("element"))
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{url}: no snapshot"))?;
    if raw.is_empty() {
        return Err(format!("{url}: empty snapshot"));
    }
    let mut elements: Vec<Element> = Vec::with_capacity(raw.len());
    let mut by_id: HashMap<String, ElemIdx> = HashMap::with_capacity(raw.len());
    for (i, e) in raw.iter().enumerate() {
        let path = e
            .member("path")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{url}: element {i} has no path"))?
            .to_string();
        let id = e
            .member("id")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| synth_id(&path, e, &elements));
        let last = path.rsplit('.').next().unwrap_or(&path);
        let choice = last.ends_with("[x]");
        let name = last.trim_end_matches("[x]").to_string();
        let min = e.member("min").and_then(Value::as_u64).unwrap_or(0) as u32;
        let max = parse_max(e.member("max")).unwrap_or(None);
        let base_max = parse_max(e.member("base").and_then(|b| b.member("max")));
        let base_min = e
            .member("base")
            .and_then(|b| b.member("min"))
            .and_then(Value::as_u64);
        let array = match base_max {
            Some(bm) => bm.is_none_or(|m| m > 1),
            None => max.is_none_or(|m| m > 1),
        };
        let base_card_same = base_min == Some(u64::from(min)) && base_max == Some(max);
        let types = e
            .member("type")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| type_ref(t, &path, kind == Kind::Resource))
            .collect();
        let mut fixed = None;
        let mut pattern = None;
        let mut min_value = None;
        let mut max_value = None;
        let mut max_length = e
            .member("maxLength")
            .and_then(Value::as_u64)
            .map(|n| n as usize);
        if let Some(obj) = e.as_object() {
            for (k, v) in obj {
                if k.starts_with("fixed") {
                    fixed = Some(v.clone());
                } else if k.starts_with("pattern") {
                    pattern = Some(v.clone());
                } else if k.starts_with("minValue") {
                    min_value = Some(v.clone());
                } else if k.starts_with("maxValue") {
                    max_value = Some(v.clone());
                }
            }
        }
        if max_length == Some(0) {
            max_length = None;
        }
        let binding = e.member("binding").and_then(|b| {
            let additional = additional_bindings(b);
            let main = b.member("valueSet").and_then(Value::as_str);
            if main.is_none() && additional.is_empty() {
                return None;
            }
            // Without a value set the main binding checks nothing; its additional ones still do.
            let strength = match (main, b.member("strength").and_then(Value::as_str)) {
                (None, _) => Strength::Example,
                (_, Some("required")) => Strength::Required,
                (_, Some("extensible")) => Strength::Extensible,
                (_, Some("preferred")) => Strength::Preferred,
                _ => Strength::Example,
            };
            Some(Binding {
                strength,
                value_set: main.unwrap_or_default().to_string(),
                additional,
            })
        });
        let constraints = e
            .member("constraint")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let key = c.member("key")?.as_str()?;
                let expression = c.member("expression")?.as_str()?;
                Some(Constraint {
                    key: key.to_string(),
                    error: c.member("severity").and_then(Value::as_str) != Some("warning"),
                    expression: corrected(key, expression).to_string(),
                    human: c.member("human").and_then(Value::as_str).map(String::from),
                    compiled: std::sync::OnceLock::new(),
                })
            })
            .collect();
        let slicing = e.member("slicing").map(|s| Slicing {
            discriminators: s
                .member("discriminator")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|d| {
                    let kind = match d.member("type")?.as_str()? {
                        "value" => DiscriminatorKind::Value,
                        "pattern" => DiscriminatorKind::Pattern,
                        "type" => DiscriminatorKind::Type,
                        "profile" => DiscriminatorKind::Profile,
                        "exists" => DiscriminatorKind::Exists,
                        _ => return None,
                    };
                    Some(Discriminator {
                        kind,
                        path: d.member("path")?.as_str()?.to_string(),
                    })
                })
                .collect(),
            ordered: s
                .member("ordered")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            rules: match s.member("rules").and_then(Value::as_str) {
                Some("closed") => SlicingRules::Closed,
                Some("openAtEnd") => SlicingRules::OpenAtEnd,
                _ => SlicingRules::Open,
            },
        });
        let element = Element {
            id: id.clone(),
            path,
            name,
            choice,
            slice_name: e
                .member("sliceName")
                .and_then(Value::as_str)
                .map(String::from),
            min,
            max,
            array,
            base_card_same,
            types,
            content_ref: None,
            children: Vec::new(),
            slicing,
            slices: Vec::new(),
            fixed,
            pattern,
            binding,
            constraints,
            max_length,
            min_value,
            max_value,
            is_modifier: e
                .member("isModifier")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            keys: FxHashMap::default(),
        };
        by_id.insert(id, elements.len());
        elements.push(element);
    }
    // Link children and slices by element id: `A.b:s.c` is a child of `A.b:s`, which is a slice
    // of `A.b`; `A.b:s/t` is a re-slice of `A.b:s`.
    for i in 1..elements.len() {
        let id = elements[i].id.clone();
        let (parent_id, last) = match id.rsplit_once('.') {
            Some(p) => p,
            None => continue,
        };
        if let Some((base_last, slice)) = last.split_once(':') {
            let sliced_id = match slice.rsplit_once('/') {
                Some((outer, _)) => format!("{parent_id}.{base_last}:{outer}"),
                None => format!("{parent_id}.{base_last}"),
            };
            if let Some(&s) = by_id.get(&sliced_id) {
                elements[s].slices.push(i);
                continue;
            }
        }
        if let Some(&p) = by_id.get(parent_id) {
            elements[p].children.push(i);
        }
    }
    // contentReference `#Questionnaire.item` → the element with that id.
    for (i, e) in raw.iter().enumerate() {
        if let Some(r) = e.member("contentReference").and_then(Value::as_str) {
            let target = r.rsplit_once('#').map_or(r, |(_, t)| t);
            elements[i].content_ref = by_id.get(target).copied();
        }
    }
    for i in 0..elements.len() {
        let mut keys = FxHashMap::default();
        for &c in &elements[i].children {
            let child = &elements[c];
            if child.choice {
                for (ti, t) in child.types.iter().enumerate() {
                    keys.insert(choice_key(&child.name, &t.code), (c, ti));
                }
            } else {
                keys.insert(child.name.clone(), (c, 0));
            }
        }
        elements[i].keys = keys;
    }
    Ok(Profile {
        url,
        version: sd
            .member("version")
            .and_then(Value::as_str)
            .map(String::from),
        name: s("name"),
        type_name: s("type"),
        kind,
        is_abstract: sd
            .member("abstract")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        constraint: sd.member("derivation").and_then(Value::as_str) == Some("constraint"),
        base: sd
            .member("baseDefinition")
            .and_then(Value::as_str)
            .map(String::from),
        elements,
        context: sd
            .member("context")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some((
                    c.member("type")?.as_str()?.to_string(),
                    c.member("expression")?.as_str()?.to_string(),
                ))
            })
            .collect(),
        context_invariants: strings(sd.member("contextInvariant")),
        package: 0,
    })
}

/// An element id for snapshots that lack ids: the path, with the slice name of the nearest
/// enclosing slice spliced in.
fn synth_id(path: &str, e: &Value, before: &[Element]) -> String {
    if let Some(slice) = e.member("sliceName").and_then(Value::as_str) {
        return format!("{path}:{slice}");
    }
    for prev in before.iter().rev() {
        if prev.slice_name.is_some() && path.starts_with(&format!("{}.", prev.path)) {
            return format!("{}{}", prev.id, &path[prev.path.len()..]);
        }
        if !path.starts_with(&prev.path) {
            break;
        }
    }
    path.to_string()
}
