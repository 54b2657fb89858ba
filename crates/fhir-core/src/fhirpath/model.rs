//! Type knowledge that FHIR JSON alone does not carry, behind the [`ModelInfo`] trait,
//! and [`SnapshotModel`], built from StructureDefinition snapshots.

// FxHash: these maps are probed for every navigation step of every invariant.
use rustc_hash::FxHashMap as HashMap;

use std::sync::{Arc, OnceLock};

use crate::fhir::Member;
use serde_json::Value as Json;

/// What the model knows about one child element of a type or inline element.
#[derive(Clone, Copy, Debug)]
pub struct ChildDef<'m> {
    /// Type codes. One for a plain element; several for a choice element (`value[x]`).
    /// FHIRPath system types are spelled `System.String` etc.
    pub types: &'m [String],
    /// A choice element: JSON holds `name` + capitalised type (`valueQuantity`).
    pub choice: bool,
    /// The element repeats (JSON array).
    pub many: bool,
    /// For elements defined inline (BackboneElement, or a `contentReference`): the
    /// element path whose children describe this element, e.g. `Patient.contact` or
    /// `Questionnaire.item`. Children are then looked up with this path as parent.
    pub inline_path: Option<&'m str>,
}

/// Type questions the evaluator asks. Implementations must be cheap: these are called
/// for every navigation step.
pub trait ModelInfo: Send + Sync {
    /// Child `name` of the type or inline element `parent` (a type name such as
    /// `HumanName`, or an element path such as `Patient.contact`).
    fn child(&self, parent: &str, name: &str) -> Option<ChildDef<'_>>;

    /// The type `type_name` directly derives from (`Patient` → `DomainResource`,
    /// `code` → `string`, `Age` → `Quantity`).
    fn base_type(&self, type_name: &str) -> Option<&str>;

    /// Whether `name` names a FHIR type (resource, complex or primitive type).
    fn is_type(&self, name: &str) -> bool;

    /// Whether `ty` is `base` or derives from it.
    fn is_subtype(&self, ty: &str, base: &str) -> bool {
        let mut cur = ty;
        for _ in 0..32 {
            if cur == base {
                return true;
            }
            match self.base_type(cur) {
                Some(b) => cur = b,
                None => return false,
            }
        }
        false
    }

    /// Whether the type is a FHIR primitive type (lower-case names in R4).
    fn is_primitive(&self, name: &str) -> bool {
        system_type_of_primitive(name).is_some()
    }

    fn is_resource(&self, name: &str) -> bool {
        self.is_subtype(name, "Resource")
    }
}

/// The FHIRPath system type a FHIR primitive maps to.
pub fn system_type_of_primitive(fhir_type: &str) -> Option<&'static str> {
    Some(match fhir_type {
        "boolean" => "Boolean",
        "integer" | "positiveInt" | "unsignedInt" | "integer64" => "Integer",
        "decimal" => "Decimal",
        "string" | "code" | "id" | "uri" | "url" | "canonical" | "oid" | "uuid" | "markdown"
        | "base64Binary" | "xhtml" => "String",
        "date" => "Date",
        "dateTime" | "instant" => "DateTime",
        "time" => "Time",
        "System.String" => "String",
        "System.Boolean" => "Boolean",
        "System.Integer" => "Integer",
        "System.Decimal" => "Decimal",
        "System.Date" => "Date",
        "System.DateTime" => "DateTime",
        "System.Time" => "Time",
        _ => return None,
    })
}

/// Built-in derivations among primitives (used when no StructureDefinition says so).
fn builtin_base(name: &str) -> Option<&'static str> {
    Some(match name {
        "code" | "id" | "markdown" => "string",
        "url" | "canonical" | "oid" | "uuid" => "uri",
        "positiveInt" | "unsignedInt" => "integer",
        "Age" | "Count" | "Distance" | "Duration" | "MoneyQuantity" | "SimpleQuantity" => {
            "Quantity"
        }
        "Patient" | "Observation" | "Questionnaire" | "ValueSet" | "Bundle" | "Parameters" => {
            return match name {
                "Bundle" | "Parameters" => Some("Resource"),
                _ => Some("DomainResource"),
            }
        }
        "DomainResource" => "Resource",
        "boolean" | "integer" | "decimal" | "string" | "uri" | "date" | "dateTime" | "instant"
        | "time" | "base64Binary" | "xhtml" => "Element",
        "BackboneElement" => "Element",
        _ => return None,
    })
}

/// A model with no StructureDefinitions: navigation relies on JSON only, with the
/// built-in primitive hierarchy. Useful for tests and as a fallback.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonOnlyModel;

impl ModelInfo for JsonOnlyModel {
    fn child(&self, _parent: &str, _name: &str) -> Option<ChildDef<'_>> {
        None
    }
    fn base_type(&self, type_name: &str) -> Option<&str> {
        builtin_base(type_name)
    }
    fn is_type(&self, name: &str) -> bool {
        builtin_base(name).is_some()
            || matches!(name, "Resource" | "Element" | "Quantity")
            || name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && !matches!(
                    name,
                    "Boolean" | "String" | "Integer" | "Decimal" | "Date" | "DateTime" | "Time"
                )
    }
}

#[derive(Debug, Clone)]
struct ElemDef {
    types: Vec<String>,
    choice: bool,
    many: bool,
    inline_path: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Primitive,
    Complex,
    Resource,
    Logical,
}

/// A [`ModelInfo`] built from StructureDefinition snapshots (base definitions only:
/// `derivation` = `specialization` or absent; constraint profiles are skipped).
#[derive(Debug, Default, Clone)]
pub struct SnapshotModel {
    elements: HashMap<String, HashMap<String, Arc<ElemDef>>>,
    bases: HashMap<String, String>,
    kinds: HashMap<String, Kind>,
    /// `elements` with what each parent inherits (from its base types, or BackboneElement for
    /// inline elements) merged in, so [`ModelInfo::child`] is one look-up instead of a climb
    /// up the hierarchy for `id`, `extension` and the like. Built on first use after `add`.
    inherited: OnceLock<HashMap<String, HashMap<String, Arc<ElemDef>>>>,
}

fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

fn type_code(code: &str) -> String {
    if let Some(sys) = code.strip_prefix("http://hl7.org/fhirpath/") {
        return sys.to_string();
    }
    last_segment(code).to_string()
}

impl SnapshotModel {
    /// Builds the model from StructureDefinition JSON. Fields read: `url`, `type`,
    /// `kind`, `baseDefinition`, `derivation`, `snapshot.element[].path`,
    /// `.type[].code`, `.max`, `.contentReference`.
    pub fn from_structure_definitions<'j, I>(defs: I) -> Self
    where
        I: IntoIterator<Item = &'j Json>,
    {
        let mut m = SnapshotModel::default();
        for sd in defs {
            m.add(sd);
        }
        m
    }

    /// Adds one StructureDefinition (ignored unless it defines a base type).
    pub fn add(&mut self, sd: &Json) {
        self.inherited = OnceLock::new();
        if sd.member("resourceType").and_then(Json::as_str) != Some("StructureDefinition") {
            return;
        }
        if sd.member("derivation").and_then(Json::as_str) == Some("constraint") {
            return;
        }
        let Some(ty) = sd.member("type").and_then(Json::as_str) else {
            return;
        };
        let kind = match sd.member("kind").and_then(Json::as_str) {
            Some("primitive-type") => Kind::Primitive,
            Some("complex-type") => Kind::Complex,
            Some("resource") => Kind::Resource,
            _ => Kind::Logical,
        };
        if kind == Kind::Logical {
            return;
        }
        let name = sd
            .member("url")
            .and_then(Json::as_str)
            .map(last_segment)
            .filter(|n| *n == ty)
            .unwrap_or(ty)
            .to_string();
        self.kinds.insert(name.clone(), kind);
        if let Some(base) = sd.member("baseDefinition").and_then(Json::as_str) {
            self.bases
                .insert(name.clone(), last_segment(base).to_string());
        }
        let Some(elems) = sd
            .member("snapshot")
            .and_then(|s| s.member("element"))
            .and_then(Json::as_array)
        else {
            return;
        };
        for e in elems {
            let Some(path) = e.member("path").and_then(Json::as_str) else {
                continue;
            };
            let Some((parent, last)) = path.rsplit_once('.') else {
                continue;
            };
            let (child, choice) = match last.strip_suffix("[x]") {
                Some(b) => (b, true),
                None => (last, false),
            };
            let many = match e.member("max").and_then(Json::as_str) {
                Some("*") => true,
                Some(n) => n.parse::<u32>().map(|v| v > 1).unwrap_or(false),
                None => false,
            };
            let mut types: Vec<String> = e
                .member("type")
                .and_then(Json::as_array)
                .map(|ts| {
                    ts.iter()
                        .filter_map(|t| {
                            let code = t.member("code").and_then(Json::as_str)?;
                            // system-typed elements (ids, Extension.url) may name their
                            // FHIR type in an extension
                            let fhir_type = t
                                .member("extension")
                                .and_then(Json::as_array)
                                .into_iter()
                                .flatten()
                                .find(|x| {
                                    x.member("url").and_then(Json::as_str).is_some_and(|u| {
                                        u.ends_with("structuredefinition-fhir-type")
                                    })
                                })
                                .and_then(|x| x.member("valueUrl").or_else(|| x.member("valueUri")))
                                .and_then(Json::as_str);
                            Some(match fhir_type {
                                Some(ft) if code.starts_with("http://hl7.org/fhirpath/") => {
                                    ft.to_string()
                                }
                                _ => type_code(code),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut inline_path = None;
            if let Some(cr) = e.member("contentReference").and_then(Json::as_str) {
                let target = cr.rsplit_once('#').map(|(_, t)| t).unwrap_or(cr);
                inline_path = Some(target.to_string());
                if types.is_empty() {
                    types.push("BackboneElement".to_string());
                }
            } else if types.len() == 1 && (types[0] == "BackboneElement" || types[0] == "Element") {
                inline_path = Some(path.to_string());
            }
            if kind == Kind::Primitive && child == "value" {
                continue;
            }
            self.elements.entry(parent.to_string()).or_default().insert(
                child.to_string(),
                Arc::new(ElemDef {
                    types,
                    choice,
                    many,
                    inline_path,
                }),
            );
        }
    }

    /// The parent whose children `cur` inherits: BackboneElement for an inline element (a path),
    /// else its base type.
    fn next_up<'s>(&'s self, cur: &'s str) -> Option<&'s str> {
        if cur.contains('.') {
            Some("BackboneElement")
        } else {
            self.base_type(cur)
        }
    }

    /// Each parent's own children and, where it defines none of that name, the nearest
    /// ancestor's (the first 16 levels, as [`ModelInfo::child`] climbs).
    fn merge_inherited(&self) -> HashMap<String, HashMap<String, Arc<ElemDef>>> {
        let mut out = HashMap::default();
        for (parent, own) in &self.elements {
            let mut all = own.clone();
            let mut cur: &str = parent;
            for _ in 1..16 {
                let Some(up) = self.next_up(cur) else {
                    break;
                };
                cur = up;
                if let Some(theirs) = self.elements.get(cur) {
                    for (name, d) in theirs {
                        all.entry(name.clone()).or_insert_with(|| d.clone());
                    }
                }
            }
            out.insert(parent.clone(), all);
        }
        out
    }

    /// Number of types known (for diagnostics).
    pub fn type_count(&self) -> usize {
        self.kinds.len()
    }
}

fn child_def(d: &ElemDef) -> ChildDef<'_> {
    ChildDef {
        types: &d.types,
        choice: d.choice,
        many: d.many,
        inline_path: d.inline_path.as_deref(),
    }
}

impl ModelInfo for SnapshotModel {
    fn child(&self, parent: &str, name: &str) -> Option<ChildDef<'_>> {
        let inherited = self.inherited.get_or_init(|| self.merge_inherited());
        if let Some(children) = inherited.get(parent) {
            return children.get(name).map(|d| child_def(d));
        }
        // a parent without children of its own (a primitive, an unknown path): climb
        let mut cur = parent;
        for _ in 0..16 {
            if let Some(d) = self.elements.get(cur).and_then(|m| m.get(name)) {
                return Some(child_def(d));
            }
            // inline elements inherit from BackboneElement / Element
            cur = self.next_up(cur)?;
        }
        None
    }

    fn base_type(&self, type_name: &str) -> Option<&str> {
        match self.bases.get(type_name) {
            Some(b) => Some(b.as_str()),
            None => builtin_base(type_name),
        }
    }

    fn is_type(&self, name: &str) -> bool {
        self.kinds.contains_key(name)
    }

    fn is_primitive(&self, name: &str) -> bool {
        match self.kinds.get(name) {
            Some(k) => *k == Kind::Primitive,
            None => system_type_of_primitive(name).is_some(),
        }
    }
}
