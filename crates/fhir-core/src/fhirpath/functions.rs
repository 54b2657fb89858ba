//! The function library.

use std::borrow::Cow;

use serde_json::Value as Json;

use super::decimal::Decimal;
use super::eval::{err, push_values, single, Evaluator, Scope};
use super::parser::{build_regex, Ast, Func, Lit};
use super::quantity::{is_calendar_keyword, Quantity};
use super::temporal::{Precision, Temporal, TemporalKind};
use super::value::{Collection, Item, Prim};
use super::EvalError;

type R<T> = Result<T, EvalError>;

mod convert;
mod encode;
pub(crate) use convert::to_boolean;
use convert::*;
pub use encode::escape_html;
use encode::*;

fn boolean<'a>(b: bool) -> R<Collection<'a>> {
    Ok(vec![Item::Boolean(b)])
}

fn opt<'a>(i: Option<Item<'a>>) -> R<Collection<'a>> {
    Ok(i.into_iter().collect())
}

/// Evaluates a non-lambda argument in the caller's scope.
fn arg<'a>(ev: &Evaluator<'_, 'a>, args: &[Ast], i: usize, s: Scope<'_, 'a>) -> R<Collection<'a>> {
    match args.get(i) {
        Some(a) => ev.eval(a, s),
        None => Ok(Vec::new()),
    }
}

fn arg_string<'x, 'a>(
    ev: &Evaluator<'_, 'a>,
    args: &'x [Ast],
    i: usize,
    s: Scope<'_, 'a>,
) -> R<Option<Cow<'x, str>>> {
    // a literal (the usual case) is borrowed, not evaluated into a collection and copied
    if let Some(Ast::Lit(Lit::Str(t))) = args.get(i) {
        return Ok(Some(Cow::Borrowed(t)));
    }
    let v = arg(ev, args, i, s)?;
    match single(&v, "argument")? {
        None => Ok(None),
        Some(x) => match x.prim(ev.model) {
            Some(Prim::Str(t)) => Ok(Some(Cow::Owned(t.to_string()))),
            _ => err("expected a string argument"),
        },
    }
}

fn arg_int<'a>(ev: &Evaluator<'_, 'a>, args: &[Ast], i: usize, s: Scope<'_, 'a>) -> R<Option<i64>> {
    let v = arg(ev, args, i, s)?;
    match single(&v, "argument")? {
        None => Ok(None),
        Some(x) => match x.prim(ev.model) {
            Some(Prim::Int(n)) => Ok(Some(n)),
            _ => err("expected an integer argument"),
        },
    }
}

/// Evaluates `body` once per input item with `$this`/`$index` bound.
fn per_item<'a, F>(
    ev: &Evaluator<'_, 'a>,
    input: &[Item<'a>],
    body: &Ast,
    s: Scope<'_, 'a>,
    mut f: F,
) -> R<()>
where
    F: FnMut(usize, &Item<'a>, Collection<'a>) -> R<bool>,
{
    for (i, item) in input.iter().enumerate() {
        let scope = Scope {
            this: std::slice::from_ref(item),
            index: Some(i as i64),
            total: s.total,
        };
        let r = ev.eval(body, scope)?;
        if !f(i, item, r)? {
            break;
        }
    }
    Ok(())
}

/// [`per_item`] for a criterion: `f` gets each item with its criterion as a boolean
/// (`to_bool` of the result, named `what` in errors).
fn per_item_bool<'a, F>(
    ev: &Evaluator<'_, 'a>,
    input: &[Item<'a>],
    body: &Ast,
    s: Scope<'_, 'a>,
    what: &str,
    mut f: F,
) -> R<()>
where
    F: FnMut(&Item<'a>, Option<bool>) -> bool,
{
    for (i, item) in input.iter().enumerate() {
        let scope = Scope {
            this: std::slice::from_ref(item),
            index: Some(i as i64),
            total: s.total,
        };
        if !f(item, ev.eval_bool(body, scope, what)?) {
            break;
        }
    }
    Ok(())
}

/// The single input item's primitive, or `None` for empty input.
fn input_prim<'x, 'a>(
    ev: &Evaluator<'_, 'a>,
    input: &'x [Item<'a>],
    f: Func,
) -> R<Option<Prim<'x>>> {
    match input {
        [] => Ok(None),
        [x] => Ok(x.prim(ev.model)),
        _ => err(format!(
            "{}() needs a single item, got {}",
            f.name(),
            input.len()
        )),
    }
}

fn input_str<'x, 'a>(ev: &Evaluator<'_, 'a>, input: &'x [Item<'a>], f: Func) -> R<Option<&'x str>> {
    match input_prim(ev, input, f)? {
        None => Ok(None),
        Some(Prim::Str(s)) => Ok(Some(s)),
        Some(_) if input.is_empty() => Ok(None),
        Some(p) => err(format!(
            "{}() needs a string, got {}",
            f.name(),
            p.kind_name()
        )),
    }
}

fn input_num<'a>(ev: &Evaluator<'_, 'a>, input: &[Item<'a>], f: Func) -> R<Option<Prim<'static>>> {
    match input_prim(ev, input, f)? {
        None => Ok(None),
        Some(Prim::Int(i)) => Ok(Some(Prim::Int(i))),
        Some(Prim::Dec(d)) => Ok(Some(Prim::Dec(d))),
        Some(p) => err(format!(
            "{}() needs a number, got {}",
            f.name(),
            p.kind_name()
        )),
    }
}

/// Reference text of a Reference node, or of a string/uri item.
fn reference_of(item: &Item<'_>) -> Option<String> {
    match item {
        Item::Node(n) => match n.value? {
            Json::Object(o) => o
                .get("reference")
                .and_then(Json::as_str)
                .map(str::to_string),
            Json::String(s) => Some(s.clone()),
            _ => None,
        },
        Item::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn same_resource(r: &Json, reference: &str) -> bool {
    let (Some(t), Some(id)) = (
        r.get("resourceType").and_then(Json::as_str),
        r.get("id").and_then(Json::as_str),
    ) else {
        return false;
    };
    let path = reference.split("/_history/").next().unwrap_or(reference);
    let mut parts = path.rsplit('/');
    matches!((parts.next(), parts.next()), (Some(i), Some(ty)) if i == id && ty == t)
}

impl<'a> Evaluator<'_, 'a> {
    fn resolve_one(&self, reference: &str) -> Option<&'a Json> {
        if let Some(id) = reference.strip_prefix('#') {
            for res in [self.ctx.resource, self.ctx.root_resource]
                .into_iter()
                .flatten()
            {
                let Some(r) = res.value else {
                    continue;
                };
                if id.is_empty() {
                    return Some(r);
                }
                if let Some(found) = r.get("contained").and_then(Json::as_array).and_then(|c| {
                    c.iter()
                        .find(|x| x.get("id").and_then(Json::as_str) == Some(id))
                }) {
                    return Some(found);
                }
            }
            return None;
        }
        let bundle = self.ctx.bundle.or_else(|| {
            self.ctx
                .root_resource
                .and_then(|n| n.value)
                .filter(|v| v.get("resourceType").and_then(Json::as_str) == Some("Bundle"))
        });
        if let Some(entries) = bundle.and_then(|b| b.get("entry")).and_then(Json::as_array) {
            for e in entries {
                let Some(res) = e.get("resource") else {
                    continue;
                };
                if e.get("fullUrl").and_then(Json::as_str) == Some(reference)
                    || same_resource(res, reference)
                {
                    return Some(res);
                }
            }
        }
        self.ctx.hooks.and_then(|h| h.resolve(reference))
    }
}

fn f64_result<'a>(v: f64) -> R<Collection<'a>> {
    opt(Decimal::from_f64(v).map(Item::Decimal))
}

pub(crate) fn call<'a>(
    ev: &Evaluator<'_, 'a>,
    func: Func,
    input: Collection<'a>,
    args: &[Ast],
    regex: Option<&super::parser::Pattern>,
    s: Scope<'_, 'a>,
) -> R<Collection<'a>> {
    use Func::*;
    match func {
        Empty => boolean(input.is_empty()),
        Exists => {
            if let Some(c) = args.first() {
                let mut found = false;
                per_item_bool(ev, &input, c, s, "exists", |_, b| {
                    found = b == Some(true);
                    !found
                })?;
                boolean(found)
            } else {
                boolean(!input.is_empty())
            }
        }
        All => {
            let mut all = true;
            per_item_bool(ev, &input, &args[0], s, "all", |_, b| {
                all = b == Some(true);
                all
            })?;
            boolean(all)
        }
        AllTrue | AnyTrue | AllFalse | AnyFalse => {
            let mut vals = Vec::with_capacity(input.len());
            for x in &input {
                match x.prim(ev.model) {
                    Some(Prim::Bool(b)) => vals.push(b),
                    _ => return err(format!("{}() needs booleans", func.name())),
                }
            }
            boolean(match func {
                AllTrue => vals.iter().all(|b| *b),
                AnyTrue => vals.iter().any(|b| *b),
                AllFalse => vals.iter().all(|b| !*b),
                _ => vals.iter().any(|b| !*b),
            })
        }
        SubsetOf | SupersetOf => {
            let other = arg(ev, args, 0, s)?;
            let (small, big) = if func == SubsetOf {
                (&input, &other)
            } else {
                (&other, &input)
            };
            boolean(small.iter().all(|x| ev.contains_item(big, x)))
        }
        Count => Ok(vec![Item::Integer(input.len() as i64)]),
        Distinct => Ok(ev.distinct(input)),
        IsDistinct => {
            let n = input.len();
            boolean(ev.distinct(input).len() == n)
        }
        Where => {
            let mut out = Vec::new();
            per_item_bool(ev, &input, &args[0], s, "where", |item, b| {
                if b == Some(true) {
                    out.push(item.clone());
                }
                true
            })?;
            Ok(out)
        }
        Select => {
            let mut out = Vec::new();
            per_item(ev, &input, &args[0], s, |_, _, r| {
                out.extend(r);
                Ok(true)
            })?;
            Ok(out)
        }
        Repeat => {
            let mut out: Collection<'a> = Vec::new();
            let mut frontier = input;
            let mut rounds = 0;
            while !frontier.is_empty() {
                rounds += 1;
                if rounds > 10_000 || out.len() > 1_000_000 {
                    return err("repeat() did not terminate");
                }
                let mut next = Vec::new();
                per_item(ev, &frontier, &args[0], s, |_, _, r| {
                    for x in r {
                        if !ev.contains_item(&out, &x) {
                            out.push(x.clone());
                            next.push(x);
                        }
                    }
                    Ok(true)
                })?;
                frontier = next;
            }
            Ok(out)
        }
        Single => match input.len() {
            0 | 1 => Ok(input),
            n => err(format!("single() on a collection of {n} items")),
        },
        First => Ok(input.into_iter().take(1).collect()),
        Last => Ok(input.into_iter().last().into_iter().collect()),
        Tail => Ok(input.into_iter().skip(1).collect()),
        Skip => {
            let Some(n) = arg_int(ev, args, 0, s)? else {
                return Ok(Vec::new());
            };
            let n = n.max(0) as usize;
            Ok(input.into_iter().skip(n).collect())
        }
        Take => {
            let Some(n) = arg_int(ev, args, 0, s)? else {
                return Ok(Vec::new());
            };
            let n = n.max(0) as usize;
            Ok(input.into_iter().take(n).collect())
        }
        Intersect => {
            let other = arg(ev, args, 0, s)?;
            let keep: Collection<'a> = input
                .into_iter()
                .filter(|x| ev.contains_item(&other, x))
                .collect();
            Ok(ev.distinct(keep))
        }
        Exclude => {
            let other = arg(ev, args, 0, s)?;
            Ok(input
                .into_iter()
                .filter(|x| !ev.contains_item(&other, x))
                .collect())
        }
        Union => {
            let mut all = input;
            all.extend(arg(ev, args, 0, s)?);
            Ok(ev.distinct(all))
        }
        Combine => {
            let mut all = input;
            all.extend(arg(ev, args, 0, s)?);
            Ok(all)
        }
        Iif => {
            let scope = Scope {
                this: &input,
                index: s.index,
                total: s.total,
            };
            let c = ev.eval(&args[0], scope)?;
            let cond = match c.as_slice() {
                [] => None,
                [x] => match x.prim(ev.model) {
                    Some(Prim::Bool(b)) => Some(b),
                    _ => return err("iif() criterion must be a boolean"),
                },
                _ => return err("iif() criterion must be a single boolean"),
            };
            if cond == Some(true) {
                ev.eval(&args[1], scope)
            } else if let Some(e) = args.get(2) {
                ev.eval(e, scope)
            } else {
                Ok(Vec::new())
            }
        }
        ToBoolean | ConvertsToBoolean => {
            let r = input_prim(ev, &input, func)?.map(|p| to_boolean(&p));
            conv(func == ConvertsToBoolean, r, Item::Boolean)
        }
        ToInteger | ConvertsToInteger => {
            let r = input_prim(ev, &input, func)?.map(|p| to_integer(&p));
            conv(func == ConvertsToInteger, r, Item::Integer)
        }
        ToDecimal | ConvertsToDecimal => {
            let r = input_prim(ev, &input, func)?.map(|p| to_decimal(&p));
            conv(func == ConvertsToDecimal, r, Item::Decimal)
        }
        ToStringFn | ConvertsToString => {
            let r = input_prim(ev, &input, func)?.map(|p| Some(to_text(&p)));
            let r = if r.is_none() && !input.is_empty() {
                Some(None)
            } else {
                r
            };
            conv(func == ConvertsToString, r, Item::String)
        }
        ToDate | ConvertsToDate => {
            let r = input_prim(ev, &input, func)?.map(|p| to_date(&p));
            conv(func == ConvertsToDate, r, Item::Temporal)
        }
        ToDateTime | ConvertsToDateTime => {
            let r = input_prim(ev, &input, func)?.map(|p| to_datetime(&p));
            conv(func == ConvertsToDateTime, r, Item::Temporal)
        }
        ToTime | ConvertsToTime => {
            let r = input_prim(ev, &input, func)?.map(|p| to_time(&p));
            conv(func == ConvertsToTime, r, Item::Temporal)
        }
        ToQuantity | ConvertsToQuantity => {
            let unit = arg_string(ev, args, 0, s)?;
            let r = input_prim(ev, &input, func)?.map(|p| {
                let q = to_quantity(&p)?;
                match &unit {
                    Some(u) => q.convert_to(u).map(|v| Quantity::new(v, u.clone())),
                    None => Some(q),
                }
            });
            conv(func == ConvertsToQuantity, r, Item::Quantity)
        }
        IndexOf | LastIndexOf => {
            let Some(x) = input_str(ev, &input, func)? else {
                return Ok(Vec::new());
            };
            let Some(sub) = arg_string(ev, args, 0, s)? else {
                return Ok(Vec::new());
            };
            let pos = if func == IndexOf {
                x.find(&*sub)
            } else {
                x.rfind(&*sub)
            };
            Ok(vec![Item::Integer(match pos {
                Some(b) => x[..b].chars().count() as i64,
                None => -1,
            })])
        }
        Substring => {
            let Some(x) = input_str(ev, &input, func)? else {
                return Ok(Vec::new());
            };
            let Some(start) = arg_int(ev, args, 0, s)? else {
                return Ok(Vec::new());
            };
            let chars: Vec<char> = x.chars().collect();
            if start < 0 || start as usize >= chars.len() {
                return Ok(Vec::new());
            }
            let start = start as usize;
            let end = match args.get(1) {
                Some(_) => match arg_int(ev, args, 1, s)? {
                    Some(l) if l <= 0 => start,
                    Some(l) => start.saturating_add(l as usize).min(chars.len()),
                    None => chars.len(),
                },
                None => chars.len(),
            };
            Ok(vec![Item::String(chars[start..end].iter().collect())])
        }
        StartsWith | EndsWith | ContainsStr => {
            let Some(x) = input_str(ev, &input, func)? else {
                return Ok(Vec::new());
            };
            let Some(sub) = arg_string(ev, args, 0, s)? else {
                return Ok(Vec::new());
            };
            boolean(match func {
                StartsWith => x.starts_with(&*sub),
                EndsWith => x.ends_with(&*sub),
                _ => x.contains(&*sub),
            })
        }
        Upper | Lower | Trim | Length | ToChars => {
            let Some(x) = input_str(ev, &input, func)? else {
                return Ok(Vec::new());
            };
            Ok(match func {
                Upper => vec![Item::String(x.to_uppercase())],
                Lower => vec![Item::String(x.to_lowercase())],
                Trim => vec![Item::String(x.trim().to_string())],
                Length => vec![Item::Integer(x.chars().count() as i64)],
                _ => x.chars().map(|c| Item::String(c.to_string())).collect(),
            })
        }
        Replace => {
            let Some(x) = input_str(ev, &input, func)? else {
                return Ok(Vec::new());
            };
            let (Some(p), Some(r)) = (arg_string(ev, args, 0, s)?, arg_string(ev, args, 1, s)?)
            else {
                return Ok(Vec::new());
            };
            Ok(vec![Item::String(x.replace(&*p, &r))])
        }
        Matches | MatchesFull | ReplaceMatches => {
            let Some(x) = input_str(ev, &input, func)? else {
                return Ok(Vec::new());
            };
            let owned;
            let re = match regex {
                Some(r) => r,
                None => {
                    let Some(p) = arg_string(ev, args, 0, s)? else {
                        return Ok(Vec::new());
                    };
                    let p = if func == MatchesFull {
                        format!("^(?:{p})$")
                    } else {
                        p.into_owned()
                    };
                    owned = build_regex(&p).map_err(EvalError::new)?;
                    &owned
                }
            };
            if func == ReplaceMatches {
                let Some(r) = arg_string(ev, args, 1, s)? else {
                    return Ok(Vec::new());
                };
                let out = re.replace_all(x, &r).map_err(EvalError::new)?;
                Ok(vec![Item::String(out.into_owned())])
            } else {
                boolean(re.is_match(x).map_err(EvalError::new)?)
            }
        }
        Split => {
            let Some(x) = input_str(ev, &input, func)? else {
                return Ok(Vec::new());
            };
            let Some(sep) = arg_string(ev, args, 0, s)? else {
                return Ok(Vec::new());
            };
            Ok(x.split(&*sep)
                .map(|p| Item::String(p.to_string()))
                .collect())
        }
        Join => {
            let sep = arg_string(ev, args, 0, s)?.unwrap_or_default();
            let mut parts = Vec::with_capacity(input.len());
            for x in &input {
                match x.prim(ev.model) {
                    Some(Prim::Str(t)) => parts.push(t.to_string()),
                    _ => return err("join() needs strings"),
                }
            }
            Ok(vec![Item::String(parts.join(&sep))])
        }
        Encode | Decode | Escape | Unescape => {
            let Some(x) = input_str(ev, &input, func)? else {
                return Ok(Vec::new());
            };
            let Some(fmt) = arg_string(ev, args, 0, s)? else {
                return Ok(Vec::new());
            };
            let r = match (func, &*fmt) {
                (Encode, "base64") => Some(base64_encode(x.as_bytes(), false)),
                (Encode, "urlbase64") => Some(base64_encode(x.as_bytes(), true)),
                (Encode, "hex") => Some(x.bytes().map(|b| format!("{b:02x}")).collect()),
                (Decode, "base64" | "urlbase64") => {
                    base64_decode(x).and_then(|b| String::from_utf8(b).ok())
                }
                (Decode, "hex") => {
                    let bytes: Option<Vec<u8>> = (0..x.len() / 2)
                        .map(|i| {
                            x.get(2 * i..2 * i + 2)
                                .and_then(|h| u8::from_str_radix(h, 16).ok())
                        })
                        .collect();
                    bytes.and_then(|b| String::from_utf8(b).ok())
                }
                (Escape, "html") => Some(escape_html(x)),
                (Escape, "json") => Some(escape_json(x)),
                (Unescape, "html") => Some(unescape_html(x)),
                (Unescape, "json") => unescape_json(x),
                _ => None,
            };
            opt(r.map(Item::String))
        }
        Abs | Ceiling | Floor | Truncate | Exp | Ln | Sqrt | Round | Log | Power => {
            math(ev, func, &input, args, s)
        }
        Children => {
            let mut out = Vec::new();
            for x in &input {
                ev.children_of(x, &mut out);
            }
            Ok(out)
        }
        Descendants => Ok(ev.descendants_of(&input)),
        Trace => {
            let name = arg_string(ev, args, 0, s)?.unwrap_or_default();
            if let Some(h) = ev.ctx.hooks {
                if let Some(p) = args.get(1) {
                    let mut shown = Vec::new();
                    per_item(ev, &input, p, s, |_, _, r| {
                        shown.extend(r);
                        Ok(true)
                    })?;
                    h.trace(&name, &shown);
                } else {
                    h.trace(&name, &input);
                }
            }
            Ok(input)
        }
        Now => Ok(vec![Item::Temporal(Temporal::now())]),
        Today => Ok(vec![Item::Temporal(Temporal::today())]),
        TimeOfDay => Ok(vec![Item::Temporal(Temporal::time_of_day())]),
        Aggregate => {
            let mut total = arg(ev, args, 1, s)?;
            for (i, item) in input.iter().enumerate() {
                let scope = Scope {
                    this: std::slice::from_ref(item),
                    index: Some(i as i64),
                    total: Some(&total),
                };
                total = ev.eval(&args[0], scope)?;
            }
            Ok(total)
        }
        Sum | Min | Max | Avg => aggregate_math(ev, func, &input),
        Not => Ok(not(ev, &input)?.map(Item::Boolean).into_iter().collect()),
        TypeFn => Ok(input
            .iter()
            .map(|x| Item::TypeInfo(ev.type_info_of(x)))
            .collect()),
        Extension => {
            let Some(url) = arg_string(ev, args, 0, s)? else {
                return Ok(Vec::new());
            };
            let mut exts = Vec::new();
            for x in &input {
                if let Item::Node(n) = x {
                    ev.children_named(n, "extension", &mut exts)?;
                }
            }
            Ok(exts
                .into_iter()
                .filter(|e| {
                    e.as_node()
                        .and_then(|n| n.value)
                        .and_then(|v| v.get("url"))
                        .and_then(Json::as_str)
                        == Some(&*url)
                })
                .collect())
        }
        HasValue => boolean(match input.as_slice() {
            [Item::Node(n)] => n.has_primitive_value(),
            [Item::TypeInfo(_)] => false,
            [_] => true,
            _ => false,
        }),
        GetValue => Ok(match input.as_slice() {
            [x @ Item::Node(n)] if n.has_primitive_value() => {
                x.prim(ev.model).map(|p| p.to_item()).into_iter().collect()
            }
            _ => Vec::new(),
        }),
        Resolve => {
            let mut out = Vec::new();
            for x in &input {
                if let Some(r) = reference_of(x).and_then(|r| ev.resolve_one(&r)) {
                    push_values(Some(r), None, "", "", &mut out);
                }
            }
            Ok(out)
        }
        MemberOf => {
            let Some(vs) = arg_string(ev, args, 0, s)? else {
                return Ok(Vec::new());
            };
            let [x] = input.as_slice() else {
                return Ok(Vec::new());
            };
            opt(ev
                .ctx
                .hooks
                .and_then(|h| h.member_of(x, &vs))
                .map(Item::Boolean))
        }
        ConformsTo => {
            let Some(url) = arg_string(ev, args, 0, s)? else {
                return Ok(Vec::new());
            };
            let [x] = input.as_slice() else {
                return Ok(Vec::new());
            };
            match ev.ctx.hooks {
                Some(h) => opt(h
                    .conforms_to(x, &url)
                    .map_err(EvalError::new)?
                    .map(Item::Boolean)),
                None => Ok(Vec::new()),
            }
        }
        HtmlChecks | HtmlChecks2 => boolean(true),
        ElementDefinition | Slice | Subsumes | SubsumedBy | Comparable => Ok(Vec::new()),
        CheckModifiers => Ok(input),
        IsFn | AsFn | OfTypeFn => err("type function reached the evaluator"),
    }
}

/// `not()`: empty stays empty; a value that does not convert to a boolean gives false.
pub(crate) fn not<'a>(ev: &Evaluator<'_, 'a>, input: &[Item<'a>]) -> R<Option<bool>> {
    match input {
        [] => Ok(None),
        [x] => Ok(Some(match x.prim(ev.model).as_ref().and_then(to_boolean) {
            Some(b) => !b,
            None => false,
        })),
        _ => err("not() needs a single boolean"),
    }
}

fn conv<'a, T>(
    converts: bool,
    r: Option<Option<T>>,
    mk: impl Fn(T) -> Item<'a>,
) -> R<Collection<'a>> {
    match r {
        None => Ok(Vec::new()),
        Some(v) => {
            if converts {
                boolean(v.is_some())
            } else {
                opt(v.map(mk))
            }
        }
    }
}

fn math<'a>(
    ev: &Evaluator<'_, 'a>,
    func: Func,
    input: &[Item<'a>],
    args: &[Ast],
    s: Scope<'_, 'a>,
) -> R<Collection<'a>> {
    use Func::*;
    if func == Abs {
        if let [x] = input {
            if let Some(Prim::Quantity(q)) = x.prim(ev.model) {
                return Ok(vec![Item::Quantity(Quantity::new(
                    q.value.abs(),
                    q.unit.clone(),
                ))]);
            }
        }
    }
    let Some(p) = input_num(ev, input, func)? else {
        return Ok(Vec::new());
    };
    let d = to_dec(&p);
    match func {
        Abs => Ok(vec![match p {
            Prim::Int(i) => {
                Item::Integer(i.checked_abs().ok_or_else(|| EvalError::new("overflow"))?)
            }
            _ => Item::Decimal(d.abs()),
        }]),
        Ceiling => opt(d.ceil().trunc_i64().map(Item::Integer)),
        Floor => opt(d.floor().trunc_i64().map(Item::Integer)),
        Truncate => opt(d.truncate().trunc_i64().map(Item::Integer)),
        Round => {
            let digits = arg_int(ev, args, 0, s)?.unwrap_or(0);
            if digits < 0 {
                return err("round() precision must be >= 0");
            }
            Ok(vec![Item::Decimal(d.round(digits.min(28) as u32))])
        }
        Exp => f64_result(d.to_f64().exp()),
        Ln => {
            let v = d.to_f64();
            if v <= 0.0 {
                return Ok(Vec::new());
            }
            f64_result(v.ln())
        }
        Sqrt => {
            let v = d.to_f64();
            if v < 0.0 {
                return Ok(Vec::new());
            }
            f64_result(v.sqrt())
        }
        Log => {
            let b = arg(ev, args, 0, s)?;
            let Some(bp) = single(&b, "log")?.and_then(|x| x.prim(ev.model)) else {
                return Ok(Vec::new());
            };
            let base = to_dec(&bp).to_f64();
            let v = d.to_f64();
            if v <= 0.0 || base <= 0.0 || base == 1.0 {
                return Ok(Vec::new());
            }
            f64_result(v.ln() / base.ln())
        }
        Power => {
            let e = arg(ev, args, 0, s)?;
            let Some(ep) = single(&e, "power")?.and_then(|x| x.prim(ev.model)) else {
                return Ok(Vec::new());
            };
            if let (Prim::Int(b), Prim::Int(x)) = (&p, &ep) {
                if *x >= 0 {
                    return opt(u32::try_from(*x)
                        .ok()
                        .and_then(|x| b.checked_pow(x))
                        .map(Item::Integer));
                }
            }
            let r = d.to_f64().powf(to_dec(&ep).to_f64());
            if r.is_nan() {
                return Ok(Vec::new());
            }
            f64_result(r)
        }
        _ => err("unsupported math function"),
    }
}

fn aggregate_math<'a>(ev: &Evaluator<'_, 'a>, func: Func, input: &[Item<'a>]) -> R<Collection<'a>> {
    if input.is_empty() {
        return Ok(Vec::new());
    }
    let mut prims = Vec::with_capacity(input.len());
    for x in input {
        match x.prim(ev.model) {
            Some(p) => prims.push(p.to_item()),
            None => return err(format!("{}() needs primitive values", func.name())),
        }
    }
    let all_int = prims.iter().all(|p| matches!(p, Item::Integer(_)));
    match func {
        Func::Sum | Func::Avg => {
            let mut acc = Decimal::ZERO;
            for p in &prims {
                let d = match p {
                    Item::Integer(i) => Decimal::from_i64(*i),
                    Item::Decimal(d) => *d,
                    _ => return err("sum()/avg() need numbers"),
                };
                acc = acc
                    .checked_add(&d)
                    .ok_or_else(|| EvalError::new("overflow"))?;
            }
            if func == Func::Avg {
                return opt(acc
                    .checked_div(&Decimal::from_i64(prims.len() as i64))
                    .map(Item::Decimal));
            }
            if all_int {
                return opt(acc.trunc_i64().map(Item::Integer));
            }
            Ok(vec![Item::Decimal(acc)])
        }
        _ => {
            let mut best = 0;
            for i in 1..prims.len() {
                let (Some(a), Some(b)) = (prims[i].prim(ev.model), prims[best].prim(ev.model))
                else {
                    continue;
                };
                let o = super::value::compare_prims(&a, &b).map_err(EvalError::new)?;
                let better = match (func, o) {
                    (Func::Min, Some(std::cmp::Ordering::Less)) => true,
                    (Func::Max, Some(std::cmp::Ordering::Greater)) => true,
                    (_, None) => return Ok(Vec::new()),
                    _ => false,
                };
                if better {
                    best = i;
                }
            }
            Ok(vec![prims.swap_remove(best)])
        }
    }
}
