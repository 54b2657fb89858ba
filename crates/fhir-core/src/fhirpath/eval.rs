//! The tree-walking evaluator: navigation over FHIR JSON, operators, type tests.

use std::cmp::Ordering;

use serde_json::{Map, Value as Json};

use super::decimal::Decimal;
use super::functions;
use super::model::ModelInfo;
use super::parser::{Ast, BinOp, Func, Lit, TypeOp, TypeSpec};
use super::quantity::Quantity;
use super::temporal::TemporalKind;
use super::value::{
    compare_prims, json_equal, prims_equal, prims_equivalent, Collection, Item, Node, Prim,
    TypeInfo,
};
use super::{EvalContext, EvalError};
use crate::fhir::member;

type R<T> = Result<T, EvalError>;

mod navigate;

/// Variables in force while evaluating a sub-expression.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'s, 'a> {
    pub this: &'s [Item<'a>],
    pub index: Option<i64>,
    pub total: Option<&'s [Item<'a>]>,
}

pub(crate) struct Evaluator<'c, 'a> {
    pub ctx: &'c EvalContext<'a>,
    pub model: &'a dyn ModelInfo,
    /// Values of the expression's shared sub-expressions ([`Ast::Memo`]) in this evaluation.
    memo: std::cell::RefCell<Vec<Option<Collection<'a>>>>,
}

pub(crate) fn err<T>(msg: impl Into<String>) -> R<T> {
    Err(EvalError::new(msg))
}

/// Looks up `_key` without allocating.
pub(crate) fn ext_lookup<'a>(obj: &'a Map<String, Json>, key: &str) -> Option<&'a Json> {
    crate::fhir::companion(obj, key)
}

/// Does the JSON key suffix (`Quantity`, `DateTime`) name type `t` (`Quantity`, `dateTime`)?
pub(crate) fn suffix_names_type(suffix: &str, t: &str) -> bool {
    let mut a = suffix.chars();
    let mut b = t.chars();
    match (a.next(), b.next()) {
        (Some(x), Some(y)) if x == y.to_ascii_uppercase() => a.as_str() == b.as_str(),
        _ => false,
    }
}

/// Type implied by a choice-key suffix when no model is available.
fn type_from_suffix(suffix: &str) -> &str {
    match suffix {
        "String" => "string",
        "Boolean" => "boolean",
        "Integer" => "integer",
        "Decimal" => "decimal",
        "Date" => "date",
        "DateTime" => "dateTime",
        "Time" => "time",
        "Instant" => "instant",
        "Uri" => "uri",
        "Url" => "url",
        "Canonical" => "canonical",
        "Code" => "code",
        "Id" => "id",
        "Markdown" => "markdown",
        "Oid" => "oid",
        "Uuid" => "uuid",
        "PositiveInt" => "positiveInt",
        "UnsignedInt" => "unsignedInt",
        "Base64Binary" => "base64Binary",
        other => other,
    }
}

fn push_node<'a>(
    v: Option<&'a Json>,
    e: Option<&'a Json>,
    ty: &'a str,
    path: &'a str,
    out: &mut Collection<'a>,
) {
    if let Some(val @ Json::Object(o)) = v {
        if member(o, "resourceType").is_some() {
            out.push(Item::Node(Node::resource(val)));
            return;
        }
    }
    out.push(Item::Node(Node {
        value: v,
        ext: e,
        ty,
        path,
    }));
}

/// Pushes the element(s) found under one JSON key (arrays expanded, `_key` aligned).
pub(crate) fn push_values<'a>(
    v: Option<&'a Json>,
    e: Option<&'a Json>,
    ty: &'a str,
    path: &'a str,
    out: &mut Collection<'a>,
) {
    let v = v.filter(|x| !x.is_null());
    let e = e.filter(|x| !x.is_null());
    match (v, e) {
        (Some(Json::Array(arr)), e) => {
            let earr = e.and_then(Json::as_array);
            let n = arr.len().max(earr.map_or(0, Vec::len));
            out.reserve(n);
            for i in 0..n {
                let vi = arr.get(i).filter(|x| !x.is_null());
                let ei = earr.and_then(|a| a.get(i)).filter(|x| !x.is_null());
                if vi.is_some() || ei.is_some() {
                    push_node(vi, ei, ty, path, out);
                }
            }
        }
        (None, Some(Json::Array(earr))) => {
            for ei in earr.iter().filter(|x| !x.is_null()) {
                push_node(None, Some(ei), ty, path, out);
            }
        }
        (None, None) => {}
        (v, e) => push_node(v, e, ty, path, out),
    }
}

impl<'c, 'a> Evaluator<'c, 'a> {
    pub fn new(ctx: &'c EvalContext<'a>) -> Self {
        Evaluator {
            ctx,
            model: ctx.model,
            memo: std::cell::RefCell::new(Vec::new()),
        }
    }

    pub fn run(&self, ast: &Ast) -> R<Collection<'a>> {
        let scope = Scope {
            this: &self.ctx.focus,
            index: None,
            total: None,
        };
        self.eval(ast, scope)
    }

    /// [`Self::run`] for an expression that [`Self::gives_boolean`].
    pub fn run_bool(&self, ast: &Ast) -> R<Option<bool>> {
        let scope = Scope {
            this: &self.ctx.focus,
            index: None,
            total: None,
        };
        self.eval_bool(ast, scope, "the expression")
    }

    pub fn eval(&self, ast: &Ast, s: Scope<'_, 'a>) -> R<Collection<'a>> {
        Ok(match ast {
            Ast::Empty => Vec::new(),
            Ast::Lit(l) => vec![match l {
                Lit::Bool(b) => Item::Boolean(*b),
                Lit::Int(i) => Item::Integer(*i),
                Lit::Dec(d) => Item::Decimal(*d),
                Lit::Str(x) => Item::String(x.clone()),
                Lit::Temporal(t) => Item::Temporal(*t),
                Lit::Quantity(q) => Item::Quantity(q.clone()),
            }],
            Ast::This => s.this.to_vec(),
            Ast::IndexVar => s.index.map(Item::Integer).into_iter().collect(),
            Ast::Total => s.total.map(<[Item<'a>]>::to_vec).unwrap_or_default(),
            Ast::Env(name) => self.env(name)?,
            Ast::Ident(name) => {
                let mut out = Vec::new();
                for item in s.this {
                    self.step(item, name, true, &mut out)?;
                }
                out
            }
            Ast::Member(target, name) => {
                let input = self.eval(target, s)?;
                if self.ctx.strict && input.is_empty() {
                    self.check_cast_member(target, name)?;
                }
                let mut out = Vec::new();
                for item in &input {
                    self.step(item, name, false, &mut out)?;
                }
                out
            }
            Ast::Call {
                target,
                func,
                args,
                regex,
            } => {
                let input = match target {
                    Some(t) => self.eval(t, s)?,
                    None => s.this.to_vec(),
                };
                functions::call(self, *func, input, args, regex.as_ref(), s)?
            }
            Ast::Type { target, op, spec } => {
                let input = match target {
                    Some(t) => self.eval(t, s)?,
                    None => s.this.to_vec(),
                };
                self.type_op(*op, spec, input)?
            }
            Ast::Indexer(target, idx) => {
                let input = self.eval(target, s)?;
                let i = self.eval(idx, s)?;
                match i.as_slice() {
                    [] => Vec::new(),
                    [x] => match x.prim(self.model) {
                        Some(Prim::Int(n)) => usize::try_from(n)
                            .ok()
                            .and_then(|n| input.into_iter().nth(n))
                            .into_iter()
                            .collect(),
                        _ => return err("indexer requires an integer"),
                    },
                    _ => return err("indexer requires a single integer"),
                }
            }
            Ast::Neg(e) => {
                let v = self.eval(e, s)?;
                match v.as_slice() {
                    [] => Vec::new(),
                    [x] => vec![match x.prim(self.model) {
                        Some(Prim::Int(i)) => Item::Integer(
                            i.checked_neg()
                                .ok_or_else(|| EvalError::new("integer overflow"))?,
                        ),
                        Some(Prim::Dec(d)) => Item::Decimal(d.neg()),
                        Some(Prim::Quantity(q)) => {
                            Item::Quantity(Quantity::new(q.value.neg(), q.unit.clone()))
                        }
                        _ => return err("unary minus needs a number or quantity"),
                    }],
                    _ => return err("unary minus needs a single value"),
                }
            }
            Ast::Bin(op, l, r) => self.binary(*op, l, r, s)?,
            Ast::Memo(slot, inner) => {
                if let Some(Some(v)) = self.memo.borrow().get(*slot) {
                    return Ok(v.clone());
                }
                let v = self.eval(inner, s)?;
                let mut memo = self.memo.borrow_mut();
                if memo.len() <= *slot {
                    memo.resize(*slot + 1, None);
                }
                memo[*slot] = Some(v.clone());
                v
            }
        })
    }

    /// Strict mode: `(x as T).name` must name an element of `T`.
    fn check_cast_member(&self, target: &Ast, name: &str) -> R<()> {
        let target = match target {
            Ast::Memo(_, inner) => inner,
            other => other,
        };
        if let Ast::Type {
            op: TypeOp::As | TypeOp::OfType,
            spec,
            ..
        } = target
        {
            if spec.namespace.as_deref() != Some("System")
                && self.model.is_type(&spec.name)
                && self.model.child(&spec.name, name).is_none()
            {
                return err(format!("type {} has no element '{name}'", spec.name));
            }
        }
        Ok(())
    }

    fn env(&self, name: &str) -> R<Collection<'a>> {
        if let Some(v) = self.ctx.variables.get(name) {
            return Ok(v.clone());
        }
        let node = |n: Option<Node<'a>>| n.map(Item::Node).into_iter().collect::<Vec<_>>();
        Ok(match name {
            "resource" => node(self.ctx.resource),
            "rootResource" => node(self.ctx.root_resource.or(self.ctx.resource)),
            "context" => self
                .ctx
                .context
                .clone()
                .unwrap_or_else(|| self.ctx.focus.clone()),
            "ucum" => vec![Item::String("http://unitsofmeasure.org".into())],
            "sct" => vec![Item::String("http://snomed.info/sct".into())],
            "loinc" => vec![Item::String("http://loinc.org".into())],
            _ => {
                if let Some(vs) = name.strip_prefix("vs-") {
                    vec![Item::String(format!("http://hl7.org/fhir/ValueSet/{vs}"))]
                } else if let Some(ext) = name.strip_prefix("ext-") {
                    vec![Item::String(format!(
                        "http://hl7.org/fhir/StructureDefinition/{ext}"
                    ))]
                } else {
                    return err(format!("undefined environment variable %{name}"));
                }
            }
        })
    }

    pub(crate) fn type_matches(&self, item: &Item<'a>, spec: &TypeSpec) -> bool {
        let (ns, name) = item.type_info();
        match spec.namespace.as_deref() {
            Some("System") => ns == "System" && name == spec.name,
            Some("FHIR") => {
                ns == "FHIR" && (name == spec.name || self.model.is_subtype(&name, &spec.name))
            }
            Some(_) => false,
            None => {
                if ns == "FHIR" {
                    name == spec.name || self.model.is_subtype(&name, &spec.name)
                } else {
                    name == spec.name
                }
            }
        }
    }

    fn type_op(&self, op: TypeOp, spec: &TypeSpec, input: Collection<'a>) -> R<Collection<'a>> {
        Ok(match op {
            TypeOp::Is => match input.as_slice() {
                [] => Vec::new(),
                [x] => vec![Item::Boolean(self.type_matches(x, spec))],
                _ => return err("'is' needs a single item"),
            },
            TypeOp::As | TypeOp::OfType => input
                .into_iter()
                .filter(|x| self.type_matches(x, spec))
                .collect(),
        })
    }

    pub(crate) fn type_info_of(&self, item: &Item<'a>) -> TypeInfo {
        let (ns, name) = item.type_info();
        TypeInfo {
            namespace: ns.to_string(),
            name: name.into_owned(),
        }
    }

    /// Singleton-to-boolean conversion for logical operators and criteria.
    pub(crate) fn to_bool(&self, c: &[Item<'a>], what: &str) -> R<Option<bool>> {
        match c {
            [] => Ok(None),
            [x] => Ok(Some(match x.prim(self.model) {
                Some(Prim::Bool(b)) => b,
                _ => true,
            })),
            _ => err(format!(
                "{what} expects a single boolean, got {} items",
                c.len()
            )),
        }
    }

    pub(crate) fn items_equal(&self, a: &Item<'a>, b: &Item<'a>) -> Option<bool> {
        match (a.prim(self.model), b.prim(self.model)) {
            (Some(x), Some(y)) => prims_equal(&x, &y),
            (None, None) => match (a, b) {
                (Item::Node(x), Item::Node(y)) => {
                    Some(opt_json_eq(x.value, y.value) && opt_json_eq(x.ext, y.ext))
                }
                (Item::TypeInfo(x), Item::TypeInfo(y)) => Some(x == y),
                _ => Some(false),
            },
            _ => Some(false),
        }
    }

    pub(crate) fn items_equivalent(&self, a: &Item<'a>, b: &Item<'a>) -> bool {
        match (a.prim(self.model), b.prim(self.model)) {
            (Some(x), Some(y)) => prims_equivalent(&x, &y),
            (None, None) => match (a, b) {
                (Item::Node(x), Item::Node(y)) => opt_json_eq(x.value, y.value),
                _ => false,
            },
            _ => false,
        }
    }

    /// Is `item` in `c` (by `=`)?
    pub(crate) fn contains_item(&self, c: &[Item<'a>], item: &Item<'a>) -> bool {
        c.iter().any(|x| self.items_equal(x, item) == Some(true))
    }

    pub(crate) fn distinct(&self, input: Collection<'a>) -> Collection<'a> {
        // Large collections of strings, integers and booleans (ids, codes, fullUrls: the
        // uniqueness invariants over whole Bundles) by hashing; anything else pairwise.
        if input.len() > 16 {
            let keys: Option<Vec<(u8, String)>> = input
                .iter()
                .map(|x| match x.prim(self.model)? {
                    Prim::Str(v) => Some((0, v.to_string())),
                    Prim::Int(i) => Some((1, i.to_string())),
                    Prim::Bool(b) => Some((2, b.to_string())),
                    _ => None,
                })
                .collect();
            if let Some(keys) = keys {
                let mut seen = std::collections::HashSet::with_capacity(keys.len());
                return input
                    .into_iter()
                    .zip(keys)
                    .filter(|(_, k)| seen.insert(k.clone()))
                    .map(|(x, _)| x)
                    .collect();
            }
        }
        let mut out: Collection<'a> = Vec::with_capacity(input.len());
        for x in input {
            if !self.contains_item(&out, &x) {
                out.push(x);
            }
        }
        out
    }

    /// `to_bool(&self.eval(ast, s)?, what)`, without building the one-boolean collections of
    /// logical operators, comparisons, `exists()`, `empty()` and `not()` (most of what
    /// invariants compute).
    pub(crate) fn eval_bool(&self, ast: &Ast, s: Scope<'_, 'a>, what: &str) -> R<Option<bool>> {
        match ast {
            Ast::Bin(op, l, r) if boolean_op(*op) => self.binary_bool(*op, l, r, s),
            Ast::Call {
                target: Some(t),
                func: Func::Exists,
                args,
                ..
            } if args.is_empty() => Ok(Some(!self.eval(t, s)?.is_empty())),
            Ast::Call {
                target: Some(t),
                func: Func::Empty,
                ..
            } => Ok(Some(self.eval(t, s)?.is_empty())),
            Ast::Call {
                target: Some(t),
                func: Func::Not,
                ..
            } => functions::not(self, &self.eval(t, s)?),
            _ => self.to_bool(&self.eval(ast, s)?, what),
        }
    }

    /// Whether `ast` always gives an empty collection or one boolean (so [`Self::eval_bool`]
    /// answers exactly what the collection would).
    pub(crate) fn gives_boolean(ast: &Ast) -> bool {
        match ast {
            Ast::Bin(op, ..) => boolean_op(*op),
            Ast::Call {
                target: Some(_),
                func: Func::Exists,
                args,
                ..
            } => args.is_empty(),
            Ast::Call {
                target: Some(_),
                func: Func::Empty | Func::Not,
                ..
            } => true,
            _ => false,
        }
    }

    fn binary(&self, op: BinOp, l: &Ast, r: &Ast, s: Scope<'_, 'a>) -> R<Collection<'a>> {
        if boolean_op(op) {
            return Ok(self
                .binary_bool(op, l, r, s)?
                .map(Item::Boolean)
                .into_iter()
                .collect());
        }
        let lv = self.eval(l, s)?;
        let rv = self.eval(r, s)?;
        match op {
            BinOp::Union => {
                let mut all = lv;
                all.extend(rv);
                Ok(self.distinct(all))
            }
            BinOp::Concat => {
                let text = |c: &[Item<'a>]| -> R<String> {
                    match c {
                        [] => Ok(String::new()),
                        [x] => x
                            .to_text()
                            .ok_or_else(|| EvalError::new("'&' needs strings")),
                        _ => err("'&' needs single values"),
                    }
                };
                Ok(vec![Item::String(text(&lv)? + &text(&rv)?)])
            }
            _ => {
                let (x, y) = match (single(&lv, "arithmetic")?, single(&rv, "arithmetic")?) {
                    (Some(x), Some(y)) => (x, y),
                    _ => return Ok(Vec::new()),
                };
                let (Some(px), Some(py)) = (x.prim(self.model), y.prim(self.model)) else {
                    return err("arithmetic needs primitive values");
                };
                arith(op, &px, &py)
            }
        }
    }

    /// The boolean-valued binary operators, as `Option<bool>` (empty = `None`).
    fn binary_bool(&self, op: BinOp, l: &Ast, r: &Ast, s: Scope<'_, 'a>) -> R<Option<bool>> {
        match op {
            BinOp::And => {
                let x = self.eval_bool(l, s, "and")?;
                if x == Some(false) {
                    return Ok(Some(false));
                }
                let y = self.eval_bool(r, s, "and")?;
                return Ok(match (x, y) {
                    (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                });
            }
            BinOp::Or => {
                let x = self.eval_bool(l, s, "or")?;
                if x == Some(true) {
                    return Ok(Some(true));
                }
                let y = self.eval_bool(r, s, "or")?;
                return Ok(match (x, y) {
                    (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                });
            }
            BinOp::Xor => {
                let x = self.eval_bool(l, s, "xor")?;
                let y = self.eval_bool(r, s, "xor")?;
                return Ok(match (x, y) {
                    (Some(p), Some(q)) => Some(p != q),
                    _ => None,
                });
            }
            BinOp::Implies => {
                let x = self.eval_bool(l, s, "implies")?;
                if x == Some(false) {
                    return Ok(Some(true));
                }
                let y = self.eval_bool(r, s, "implies")?;
                return Ok(match (x, y) {
                    (Some(true), y) => y,
                    (None, Some(true)) => Some(true),
                    _ => None,
                });
            }
            BinOp::Eq | BinOp::Ne => {
                // `x = 'literal'` (most comparisons in invariants): compare with the literal in
                // place, as items_equal would with the one-item collection it evaluates to
                if let Some(p) = literal_prim(r) {
                    let lv = self.eval(l, s)?;
                    let eq = match lv.as_slice() {
                        [] => return Ok(None),
                        [x] => match x.prim(self.model) {
                            Some(px) => prims_equal(&px, &p),
                            None => Some(false),
                        },
                        _ => Some(false),
                    };
                    return Ok(if op == BinOp::Eq { eq } else { eq.map(|v| !v) });
                }
            }
            _ => {}
        }
        let lv = self.eval(l, s)?;
        let rv = self.eval(r, s)?;
        match op {
            BinOp::Eq | BinOp::Ne => {
                if lv.is_empty() || rv.is_empty() {
                    return Ok(None);
                }
                let eq = if lv.len() != rv.len() {
                    Some(false)
                } else {
                    let mut acc = Some(true);
                    for (x, y) in lv.iter().zip(&rv) {
                        match self.items_equal(x, y) {
                            Some(true) => {}
                            Some(false) => {
                                acc = Some(false);
                                break;
                            }
                            None => acc = None,
                        }
                    }
                    acc
                };
                Ok(if op == BinOp::Eq { eq } else { eq.map(|v| !v) })
            }
            BinOp::Equiv | BinOp::NotEquiv => {
                let eq = if lv.len() != rv.len() {
                    false
                } else {
                    let mut used = vec![false; rv.len()];
                    lv.iter().all(|x| {
                        for (j, y) in rv.iter().enumerate() {
                            if !used[j] && self.items_equivalent(x, y) {
                                used[j] = true;
                                return true;
                            }
                        }
                        false
                    })
                };
                Ok(Some(if op == BinOp::Equiv { eq } else { !eq }))
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let (x, y) = match (single(&lv, "comparison")?, single(&rv, "comparison")?) {
                    (Some(x), Some(y)) => (x, y),
                    _ => return Ok(None),
                };
                let (Some(px), Some(py)) = (x.prim(self.model), y.prim(self.model)) else {
                    return err("comparison needs primitive values");
                };
                let ord = compare_prims(&px, &py).map_err(EvalError::new)?;
                Ok(ord.map(|o| match op {
                    BinOp::Lt => o == Ordering::Less,
                    BinOp::Le => o != Ordering::Greater,
                    BinOp::Gt => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                }))
            }
            BinOp::In | BinOp::Contains => {
                let (item, coll) = if op == BinOp::In {
                    (&lv, &rv)
                } else {
                    (&rv, &lv)
                };
                match item.as_slice() {
                    [] => Ok(None),
                    [x] => Ok(Some(self.contains_item(coll, x))),
                    _ => err("membership needs a single item"),
                }
            }
            _ => err(format!("{op:?} is not a boolean operator")),
        }
    }
}

/// The primitive a string, boolean, integer or decimal literal evaluates to.
fn literal_prim(ast: &Ast) -> Option<Prim<'_>> {
    match ast {
        Ast::Lit(Lit::Str(x)) => Some(Prim::Str(x)),
        Ast::Lit(Lit::Bool(b)) => Some(Prim::Bool(*b)),
        Ast::Lit(Lit::Int(i)) => Some(Prim::Int(*i)),
        Ast::Lit(Lit::Dec(d)) => Some(Prim::Dec(*d)),
        _ => None,
    }
}

/// Operators whose result is empty or one boolean.
fn boolean_op(op: BinOp) -> bool {
    matches!(
        op,
        BinOp::And
            | BinOp::Or
            | BinOp::Xor
            | BinOp::Implies
            | BinOp::Eq
            | BinOp::Ne
            | BinOp::Equiv
            | BinOp::NotEquiv
            | BinOp::Lt
            | BinOp::Le
            | BinOp::Gt
            | BinOp::Ge
            | BinOp::In
            | BinOp::Contains
    )
}

fn opt_json_eq(a: Option<&Json>, b: Option<&Json>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => json_equal(x, y),
        (None, None) => true,
        _ => false,
    }
}

pub(crate) fn single<'x, 'a>(c: &'x [Item<'a>], what: &str) -> R<Option<&'x Item<'a>>> {
    match c {
        [] => Ok(None),
        [x] => Ok(Some(x)),
        _ => err(format!("{what} needs a single value, got {}", c.len())),
    }
}

fn num(p: &Prim<'_>) -> Option<Decimal> {
    match p {
        Prim::Int(i) => Some(Decimal::from_i64(*i)),
        Prim::Dec(d) => Some(*d),
        _ => None,
    }
}

fn arith<'a>(op: BinOp, x: &Prim<'_>, y: &Prim<'_>) -> R<Collection<'a>> {
    use Prim::*;
    let overflow = || EvalError::new("arithmetic overflow");
    let one = |i: Item<'a>| Ok(vec![i]);
    match (op, x, y) {
        (BinOp::Add, Str(a), Str(b)) => one(Item::String(format!("{a}{b}"))),
        (BinOp::Add, Int(a), Int(b)) => one(Item::Integer(a.checked_add(*b).ok_or_else(overflow)?)),
        (BinOp::Sub, Int(a), Int(b)) => one(Item::Integer(a.checked_sub(*b).ok_or_else(overflow)?)),
        (BinOp::Mul, Int(a), Int(b)) => one(Item::Integer(a.checked_mul(*b).ok_or_else(overflow)?)),
        (BinOp::IntDiv, Int(a), Int(b)) => {
            Ok(a.checked_div(*b).map(Item::Integer).into_iter().collect())
        }
        (BinOp::Mod, Int(a), Int(b)) => {
            Ok(a.checked_rem(*b).map(Item::Integer).into_iter().collect())
        }
        (_, Int(_) | Dec(_), Int(_) | Dec(_)) => {
            let (Some(a), Some(b)) = (num(x), num(y)) else {
                return err("arithmetic needs numbers");
            };
            let r = match op {
                BinOp::Add => a.checked_add(&b).ok_or_else(overflow)?,
                BinOp::Sub => a.checked_sub(&b).ok_or_else(overflow)?,
                BinOp::Mul => a.checked_mul(&b).ok_or_else(overflow)?,
                BinOp::Div => match a.checked_div(&b) {
                    Some(d) => d,
                    None => return Ok(Vec::new()),
                },
                BinOp::IntDiv => {
                    return Ok(a
                        .checked_idiv(&b)
                        .and_then(|d| d.trunc_i64())
                        .map(Item::Integer)
                        .into_iter()
                        .collect())
                }
                BinOp::Mod => match a.checked_rem(&b) {
                    Some(d) => d,
                    None => return Ok(Vec::new()),
                },
                _ => return err("unsupported arithmetic"),
            };
            one(Item::Decimal(r))
        }
        (BinOp::Add | BinOp::Sub, Temporal(t), Quantity(q)) => {
            let amount = if op == BinOp::Sub {
                q.value.neg()
            } else {
                q.value
            };
            if t.kind == TemporalKind::Time
                && matches!(
                    q.unit.as_str(),
                    "year"
                        | "years"
                        | "month"
                        | "months"
                        | "week"
                        | "weeks"
                        | "day"
                        | "days"
                        | "a"
                        | "mo"
                        | "wk"
                        | "d"
                )
            {
                return err("cannot add a date unit to a time");
            }
            match t.add(&amount, &q.unit) {
                Some(r) => one(Item::Temporal(r)),
                None => err(format!("cannot add '{}' to a date/time", q.unit)),
            }
        }
        (BinOp::Add | BinOp::Sub, Quantity(a), Quantity(b)) => {
            let bv = match b.convert_to(&a.unit) {
                Some(v) => v,
                None => return Ok(Vec::new()),
            };
            let v = if op == BinOp::Add {
                a.value.checked_add(&bv)
            } else {
                a.value.checked_sub(&bv)
            }
            .ok_or_else(overflow)?;
            one(Item::Quantity(super::quantity::Quantity::new(
                v,
                a.unit.clone(),
            )))
        }
        (BinOp::Mul, Quantity(a), Quantity(b)) => {
            Ok(a.mul(b).map(Item::Quantity).into_iter().collect())
        }
        (BinOp::Div, Quantity(a), Quantity(b)) => {
            Ok(a.div(b).map(Item::Quantity).into_iter().collect())
        }
        (BinOp::Mul, Quantity(a), Int(_) | Dec(_)) | (BinOp::Mul, Int(_) | Dec(_), Quantity(a)) => {
            let n = num(if matches!(x, Quantity(_)) { y } else { x }).unwrap_or(Decimal::ZERO);
            let v = a.value.checked_mul(&n).ok_or_else(overflow)?;
            one(Item::Quantity(super::quantity::Quantity::new(
                v,
                a.unit.clone(),
            )))
        }
        (BinOp::Div, Quantity(a), Int(_) | Dec(_)) => {
            let n = num(y).unwrap_or(Decimal::ZERO);
            Ok(a.value
                .checked_div(&n)
                .map(|v| Item::Quantity(super::quantity::Quantity::new(v, a.unit.clone())))
                .into_iter()
                .collect())
        }
        _ => err(format!(
            "cannot apply {:?} to {} and {}",
            op,
            x.kind_name(),
            y.kind_name()
        )),
    }
}
