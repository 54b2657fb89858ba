//! Values flowing through evaluation: FHIR nodes (borrowed from the JSON) and
//! FHIRPath system values created by the expression.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde_json::Value as Json;

use super::decimal::Decimal;
use super::model::{system_type_of_primitive, ModelInfo};
use super::quantity::Quantity;
use super::temporal::{Temporal, TemporalKind};

/// An element of a FHIR resource, as found in JSON.
///
/// A primitive element is the pair of its value (`"birthDate": "1974-12-25"`) and its
/// companion object (`"_birthDate": {"extension": [...]}`); either may be absent.
/// A complex element or resource has `value` = the JSON object and no `ext`.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    pub value: Option<&'a Json>,
    pub ext: Option<&'a Json>,
    /// FHIR type name (`date`, `HumanName`, `BackboneElement`, `Patient`); empty if unknown.
    pub ty: &'a str,
    /// Key for child look-ups in the model: the type name, or the element path for
    /// elements defined inline (`Patient.contact`). Empty if unknown.
    pub path: &'a str,
}

impl<'a> Node<'a> {
    /// A resource (its type taken from `resourceType`).
    pub fn resource(json: &'a Json) -> Node<'a> {
        let ty = json
            .as_object()
            .and_then(|o| crate::fhir::member(o, "resourceType"))
            .and_then(Json::as_str)
            .unwrap_or("");
        Node {
            value: Some(json),
            ext: None,
            ty,
            path: ty,
        }
    }

    /// A complex element of a known type. For an inline (backbone) element pass its
    /// element path as `path` (e.g. `Patient.contact`) and `BackboneElement` as `ty`.
    pub fn element(json: &'a Json, ty: &'a str, path: &'a str) -> Node<'a> {
        Node {
            value: Some(json),
            ext: None,
            ty,
            path,
        }
    }

    /// A primitive element: its value and its `_name` companion object.
    pub fn primitive(value: Option<&'a Json>, ext: Option<&'a Json>, ty: &'a str) -> Node<'a> {
        Node {
            value,
            ext,
            ty,
            path: ty,
        }
    }

    /// A JSON value of unknown type (types are inferred from JSON when needed).
    pub fn untyped(json: &'a Json) -> Node<'a> {
        if json
            .as_object()
            .is_some_and(|o| crate::fhir::member(o, "resourceType").is_some())
        {
            return Node::resource(json);
        }
        Node {
            value: Some(json),
            ext: None,
            ty: "",
            path: "",
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self.value, Some(Json::Object(_)))
    }

    /// The element has a primitive value (not only extensions).
    pub fn has_primitive_value(&self) -> bool {
        matches!(
            self.value,
            Some(Json::String(_)) | Some(Json::Number(_)) | Some(Json::Bool(_))
        )
    }

    /// The FHIR type name, inferred from the JSON when the model gave none.
    pub fn type_name(&self) -> &'a str {
        if !self.ty.is_empty() {
            return self.ty;
        }
        match self.value {
            Some(Json::Bool(_)) => "boolean",
            Some(Json::Number(n)) => {
                if is_integer_text(n.as_str()) {
                    "integer"
                } else {
                    "decimal"
                }
            }
            Some(Json::String(_)) => "string",
            Some(Json::Object(o)) => crate::fhir::member(o, "resourceType")
                .and_then(Json::as_str)
                .unwrap_or("Element"),
            _ => "Element",
        }
    }

    /// Primitive value converted to a FHIRPath system value.
    pub(crate) fn prim(&self) -> Option<Prim<'a>> {
        let v = self.value?;
        let sys = system_type_of_primitive(self.ty);
        match v {
            Json::Bool(b) => Some(Prim::Bool(*b)),
            Json::Number(n) => {
                let s = n.as_str();
                let want_int = match sys {
                    Some("Integer") => true,
                    Some(_) => false,
                    None => is_integer_text(s),
                };
                if want_int {
                    if let Ok(i) = s.parse::<i64>() {
                        return Some(Prim::Int(i));
                    }
                }
                Decimal::parse(s).map(Prim::Dec)
            }
            Json::String(s) => {
                let t = match sys {
                    Some("Date") => Temporal::parse_date(s).or_else(|| Temporal::parse_datetime(s)),
                    Some("DateTime") => Temporal::parse_datetime(s),
                    Some("Time") => Temporal::parse_time(s),
                    Some("Decimal") => return Decimal::parse(s).map(Prim::Dec),
                    Some("Integer") => return s.parse().ok().map(Prim::Int),
                    _ => None,
                };
                Some(match t {
                    Some(t) => Prim::Temporal(t),
                    None => Prim::Str(s.as_str()),
                })
            }
            _ => None,
        }
    }
}

fn is_integer_text(s: &str) -> bool {
    !s.contains(['.', 'e', 'E'])
}

/// A type reported by `type()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeInfo {
    pub namespace: String,
    pub name: String,
}

/// One item of a FHIRPath collection.
#[derive(Clone, Debug)]
pub enum Item<'a> {
    Node(Node<'a>),
    Boolean(bool),
    Integer(i64),
    Decimal(Decimal),
    String(String),
    /// Date, DateTime or Time (see [`Temporal::kind`]).
    Temporal(Temporal),
    Quantity(Quantity),
    TypeInfo(TypeInfo),
}

/// A FHIRPath collection.
pub type Collection<'a> = Vec<Item<'a>>;

/// A primitive view used by operators.
#[derive(Clone, Debug)]
pub(crate) enum Prim<'b> {
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(&'b str),
    Temporal(Temporal),
    Quantity(Cow<'b, Quantity>),
}

impl Prim<'_> {
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Prim::Bool(_) => "Boolean",
            Prim::Int(_) => "Integer",
            Prim::Dec(_) => "Decimal",
            Prim::Str(_) => "String",
            Prim::Temporal(t) => match t.kind {
                TemporalKind::Date => "Date",
                TemporalKind::DateTime => "DateTime",
                TemporalKind::Time => "Time",
            },
            Prim::Quantity(_) => "Quantity",
        }
    }

    pub(crate) fn to_item<'x>(&self) -> Item<'x> {
        match self {
            Prim::Bool(b) => Item::Boolean(*b),
            Prim::Int(i) => Item::Integer(*i),
            Prim::Dec(d) => Item::Decimal(*d),
            Prim::Str(s) => Item::String(s.to_string()),
            Prim::Temporal(t) => Item::Temporal(*t),
            Prim::Quantity(q) => Item::Quantity(q.as_ref().clone()),
        }
    }
}

/// Reads a FHIR Quantity-like JSON object as a system Quantity.
pub(crate) fn quantity_from_json(v: &Json) -> Option<Quantity> {
    let obj = v.as_object()?;
    let value = match obj.get("value")? {
        Json::Number(n) => Decimal::parse(n.as_str())?,
        _ => return None,
    };
    let unit = obj
        .get("code")
        .and_then(Json::as_str)
        .or_else(|| obj.get("unit").and_then(Json::as_str))
        .unwrap_or("1");
    Some(Quantity::new(value, unit))
}

impl<'a> Item<'a> {
    /// The primitive view of this item (`None` for complex nodes and type infos).
    pub(crate) fn prim<'b>(&'b self, model: &dyn ModelInfo) -> Option<Prim<'b>> {
        match self {
            Item::Node(n) => {
                if n.is_object() {
                    let ty = n.type_name();
                    if ty == "Quantity" || model.is_subtype(ty, "Quantity") {
                        return n
                            .value
                            .and_then(quantity_from_json)
                            .map(|q| Prim::Quantity(Cow::Owned(q)));
                    }
                    return None;
                }
                n.prim()
            }
            Item::Boolean(b) => Some(Prim::Bool(*b)),
            Item::Integer(i) => Some(Prim::Int(*i)),
            Item::Decimal(d) => Some(Prim::Dec(*d)),
            Item::String(s) => Some(Prim::Str(s)),
            Item::Temporal(t) => Some(Prim::Temporal(*t)),
            Item::Quantity(q) => Some(Prim::Quantity(Cow::Borrowed(q))),
            Item::TypeInfo(_) => None,
        }
    }

    /// (namespace, name) of the item's type.
    pub fn type_info(&self) -> (&'static str, Cow<'a, str>) {
        match self {
            Item::Node(n) => match n.type_name().strip_prefix("System.") {
                Some(sys) => ("System", Cow::Borrowed(sys)),
                None => ("FHIR", Cow::Borrowed(n.type_name())),
            },
            Item::Boolean(_) => ("System", Cow::Borrowed("Boolean")),
            Item::Integer(_) => ("System", Cow::Borrowed("Integer")),
            Item::Decimal(_) => ("System", Cow::Borrowed("Decimal")),
            Item::String(_) => ("System", Cow::Borrowed("String")),
            Item::Temporal(t) => (
                "System",
                Cow::Borrowed(match t.kind {
                    TemporalKind::Date => "Date",
                    TemporalKind::DateTime => "DateTime",
                    TemporalKind::Time => "Time",
                }),
            ),
            Item::Quantity(_) => ("System", Cow::Borrowed("Quantity")),
            Item::TypeInfo(_) => ("System", Cow::Borrowed("SimpleTypeInfo")),
        }
    }

    /// Text form used by `toString()` and string functions; `None` for complex values.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Item::Node(n) => match n.value? {
                Json::String(s) => Some(s.clone()),
                Json::Number(n) => Some(n.as_str().to_string()),
                Json::Bool(b) => Some(b.to_string()),
                _ => None,
            },
            Item::Boolean(b) => Some(b.to_string()),
            Item::Integer(i) => Some(i.to_string()),
            Item::Decimal(d) => Some(d.to_string()),
            Item::String(s) => Some(s.clone()),
            Item::Temporal(t) => Some(t.to_string()),
            Item::Quantity(q) => Some(q.to_string()),
            Item::TypeInfo(t) => Some(format!("{}.{}", t.namespace, t.name)),
        }
    }

    /// The item as a JSON value when it is a node (for structural comparisons).
    pub fn as_node(&self) -> Option<&Node<'a>> {
        match self {
            Item::Node(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for Item<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Node(n) => match (n.value, n.ext) {
                (Some(v), _) => write!(f, "{v}"),
                (None, Some(e)) => write!(f, "{e}"),
                _ => f.write_str("{}"),
            },
            other => f.write_str(&other.to_text().unwrap_or_default()),
        }
    }
}

/// Compares two primitives for ordering. `Ok(None)` means "unknown" (empty result);
/// `Err` carries a type-mismatch message.
pub(crate) fn compare_prims(a: &Prim<'_>, b: &Prim<'_>) -> Result<Option<Ordering>, String> {
    use Prim::*;
    Ok(match (a, b) {
        (Int(x), Int(y)) => Some(x.cmp(y)),
        (Int(x), Dec(y)) => Some(Decimal::from_i64(*x).cmp(y)),
        (Dec(x), Int(y)) => Some(x.cmp(&Decimal::from_i64(*y))),
        (Dec(x), Dec(y)) => Some(x.cmp(y)),
        (Str(x), Str(y)) => Some(x.cmp(y)),
        (Temporal(x), Temporal(y)) => {
            if (x.kind == TemporalKind::Time) != (y.kind == TemporalKind::Time) {
                return Err(format!(
                    "cannot compare {} with {}",
                    a.kind_name(),
                    b.kind_name()
                ));
            }
            x.compare(y)
        }
        (Temporal(x), Str(s)) => match parse_like(x, s) {
            Some(y) => x.compare(&y),
            None => return Err(format!("cannot compare {} with String", a.kind_name())),
        },
        (Str(s), Temporal(y)) => match parse_like(y, s) {
            Some(x) => x.compare(y),
            None => return Err(format!("cannot compare String with {}", b.kind_name())),
        },
        (Quantity(x), Quantity(y)) => x.compare(y),
        (Quantity(x), Int(_) | Dec(_)) if x.unit == "1" => {
            let y = num_of(b).unwrap_or(Decimal::ZERO);
            Some(x.value.cmp(&y))
        }
        (Int(_) | Dec(_), Quantity(y)) if y.unit == "1" => {
            let x = num_of(a).unwrap_or(Decimal::ZERO);
            Some(x.cmp(&y.value))
        }
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        _ => {
            return Err(format!(
                "cannot compare {} with {}",
                a.kind_name(),
                b.kind_name()
            ))
        }
    })
}

fn num_of(p: &Prim<'_>) -> Option<Decimal> {
    match p {
        Prim::Int(i) => Some(Decimal::from_i64(*i)),
        Prim::Dec(d) => Some(*d),
        _ => None,
    }
}

fn parse_like(t: &Temporal, s: &str) -> Option<Temporal> {
    match t.kind {
        TemporalKind::Time => Temporal::parse_time(s),
        _ => Temporal::parse_datetime(s),
    }
}

/// `=` on two primitives. `None`: undetermined (precision), giving an empty result.
pub(crate) fn prims_equal(a: &Prim<'_>, b: &Prim<'_>) -> Option<bool> {
    use Prim::*;
    match (a, b) {
        (Bool(x), Bool(y)) => Some(x == y),
        (Str(x), Str(y)) => Some(x == y),
        (Int(_) | Dec(_), Int(_) | Dec(_)) => compare_prims(a, b)
            .ok()
            .flatten()
            .map(|o| o == Ordering::Equal),
        (Temporal(x), Temporal(y)) => {
            if (x.kind == TemporalKind::Time) != (y.kind == TemporalKind::Time) {
                return Some(false);
            }
            x.compare(y).map(|o| o == Ordering::Equal)
        }
        (Temporal(_), Str(_)) | (Str(_), Temporal(_)) => match compare_prims(a, b) {
            Ok(o) => o.map(|o| o == Ordering::Equal),
            Err(_) => Some(false),
        },
        (Quantity(x), Quantity(y)) => x.compare(y).map(|o| o == Ordering::Equal),
        _ => Some(false),
    }
}

fn normalise_ws(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// `~` on two primitives.
pub(crate) fn prims_equivalent(a: &Prim<'_>, b: &Prim<'_>) -> bool {
    use Prim::*;
    match (a, b) {
        (Str(x), Str(y)) => normalise_ws(x) == normalise_ws(y),
        (Int(_) | Dec(_), Int(_) | Dec(_)) => {
            let (Some(x), Some(y)) = (num_of(a), num_of(b)) else {
                return false;
            };
            let p = x.scale().min(y.scale());
            x.round(p) == y.round(p)
        }
        (Temporal(x), Temporal(y)) => {
            x.kind == y.kind && x.compare(y) == Some(Ordering::Equal)
                || (x.kind != TemporalKind::Time
                    && y.kind != TemporalKind::Time
                    && x.kind != y.kind
                    && x.compare(y) == Some(Ordering::Equal))
        }
        (Quantity(x), Quantity(y)) => x.equivalent(y).unwrap_or(false),
        _ => prims_equal(a, b).unwrap_or(false),
    }
}

/// Structural equality of two JSON trees (used for complex nodes).
pub(crate) fn json_equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            match (Decimal::parse(x.as_str()), Decimal::parse(y.as_str())) {
                (Some(p), Some(q)) => p == q,
                _ => x.as_str() == y.as_str(),
            }
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}
