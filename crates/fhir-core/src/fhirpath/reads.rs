//! What an expression reads of its focus: when it only navigates to named children (no `$this`,
//! no environment variable, no function applied to the focus itself), an element lacking all of
//! those children gives the same answer as an empty one, so a caller can decide once per
//! expression instead of once per element.

use super::eval::Evaluator;
use super::parser::{Ast, BinOp, Func};
use super::value::Item;
use super::{EvalContext, ModelInfo, Node};

/// The focus's child names `ast` reads, or `None` when it may read more of the focus.
pub(super) fn focus_children(ast: &Ast) -> Option<Vec<String>> {
    let mut out = Vec::new();
    roots(ast, &mut out).then_some(out)
}

/// What a sub-expression gives when none of some children of the focus are present.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Known {
    True,
    False,
    Empty,
}

/// Sets of the focus's child names such that, on an element with none of the names of one set,
/// `ast` passes (gives `true` or an empty result) without error. Each set comes from a
/// sub-expression the evaluator decides first: the whole expression when it reads only named
/// children, else the left operand of `or` (true), `and` (false) or `implies` (false), which
/// short-circuits the rest exactly as evaluation would, and `not()` of such a sub-expression.
pub(super) fn pass_guards(ast: &Ast, model: &dyn ModelInfo) -> Vec<Vec<String>> {
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let ctx = EvalContext::new(model, &empty).with_focus(Node::untyped(&empty));
    let ev = Evaluator::new(&ctx);
    let mut sets: Vec<Vec<String>> = guards(ast, &ev)
        .into_iter()
        .filter(|(_, k)| *k != Known::False)
        .map(|(mut names, _)| {
            names.sort();
            names.dedup();
            names
        })
        .collect();
    // smallest first; a set that contains another adds nothing
    sets.sort_by_key(Vec::len);
    let mut out: Vec<Vec<String>> = Vec::new();
    for s in sets {
        if !out.iter().any(|o| o.iter().all(|n| s.contains(n))) {
            out.push(s);
        }
    }
    out
}

fn guards(ast: &Ast, ev: &Evaluator<'_, '_>) -> Vec<(Vec<String>, Known)> {
    let mut out = Vec::new();
    if let Some(names) = focus_children(ast) {
        let known = match ev.run(ast).as_deref() {
            Ok([]) => Some(Known::Empty),
            Ok([Item::Boolean(true)]) => Some(Known::True),
            Ok([Item::Boolean(false)]) => Some(Known::False),
            _ => None,
        };
        if let Some(k) = known {
            out.push((names, k));
        }
    }
    match ast {
        Ast::Memo(_, inner) => out.extend(guards(inner, ev)),
        Ast::Bin(op @ (BinOp::Or | BinOp::And | BinOp::Implies), l, _) => {
            for (names, k) in guards(l, ev) {
                match (op, k) {
                    (BinOp::Or, Known::True) => out.push((names, Known::True)),
                    (BinOp::And, Known::False) => out.push((names, Known::False)),
                    (BinOp::Implies, Known::False) => out.push((names, Known::True)),
                    _ => {}
                }
            }
        }
        Ast::Call {
            target: Some(t),
            func: Func::Not,
            ..
        } => {
            for (names, k) in guards(t, ev) {
                let k = match k {
                    Known::True => Known::False,
                    Known::False => Known::True,
                    Known::Empty => Known::Empty,
                };
                out.push((names, k));
            }
        }
        _ => {}
    }
    out
}

fn roots(ast: &Ast, out: &mut Vec<String>) -> bool {
    match ast {
        Ast::Empty | Ast::Lit(_) => true,
        Ast::This | Ast::IndexVar | Ast::Total | Ast::Env(_) => false,
        // A capitalised head may name the focus's own type (`Patient.name`).
        Ast::Ident(n) => {
            if n.starts_with(|c: char| c.is_ascii_uppercase()) {
                return false;
            }
            out.push(n.clone());
            true
        }
        Ast::Member(t, _) | Ast::Memo(_, t) => roots(t, out),
        Ast::Call {
            target: Some(t),
            func,
            args,
            ..
        } => {
            if !roots(t, out) {
                return false;
            }
            let per_item = func.per_item();
            args.iter().all(|a| {
                if per_item {
                    // evaluated on each item of the target, not on the focus
                    no_environment(a)
                } else {
                    roots(a, out)
                }
            })
        }
        Ast::Call { target: None, .. } => false,
        Ast::Type {
            target: Some(t), ..
        } => roots(t, out),
        Ast::Type { target: None, .. } => false,
        Ast::Indexer(a, b) | Ast::Bin(_, a, b) => roots(a, out) && roots(b, out),
        Ast::Neg(a) => roots(a, out),
    }
}

fn no_environment(ast: &Ast) -> bool {
    match ast {
        Ast::Env(_) => false,
        Ast::Empty | Ast::Lit(_) | Ast::This | Ast::IndexVar | Ast::Total | Ast::Ident(_) => true,
        Ast::Member(t, _) | Ast::Neg(t) | Ast::Memo(_, t) => no_environment(t),
        Ast::Call { target, args, .. } => {
            target.as_deref().is_none_or(no_environment) && args.iter().all(no_environment)
        }
        Ast::Type { target, .. } => target.as_deref().is_none_or(no_environment),
        Ast::Indexer(a, b) | Ast::Bin(_, a, b) => no_environment(a) && no_environment(b),
    }
}

#[cfg(test)]
mod tests {
    use super::super::compile;

    fn reads(src: &str) -> Option<Vec<String>> {
        compile(src).expect("compiles").focus_children()
    }

    #[test]
    fn named_children_only() {
        assert_eq!(
            reads("contained.contained.empty()"),
            Some(vec!["contained".into()])
        );
        assert_eq!(
            reads("start.hasValue().not() or end.hasValue().not() or (start <= end)"),
            Some(vec![
                "start".into(),
                "end".into(),
                "start".into(),
                "end".into()
            ])
        );
        assert_eq!(
            reads("code.exists() implies system.exists()").map(|v| v.len()),
            Some(2)
        );
        assert_eq!(
            reads("item.where(linkId = 'x').exists()"),
            Some(vec!["item".into()])
        );
        assert_eq!(
            reads("hasValue() or (children().count() > id.count())"),
            None
        );
        assert_eq!(
            reads("contained.where(('#'+id in %resource.descendants().reference)).empty()"),
            None
        );
        assert_eq!(reads("$this.code.exists()"), None);
        assert_eq!(reads("Patient.name.exists()"), None);
    }

    fn guards(src: &str) -> Vec<Vec<String>> {
        let expr = compile(src).expect("compiles");
        expr.pass_guards(&super::super::JsonOnlyModel)
    }

    #[test]
    fn pass_guards_from_first_operands() {
        let v = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let cases: &[(&str, &[&str])] = &[
            // the left operand decides: only `contentReference` matters
            (
                "contentReference.empty() or (type.empty() and iif(binding.exists(), true, false))",
                &["contentReference"],
            ),
            // the whole expression reads only named children; its left operand needs fewer
            ("fixed.empty() or (type.count() <= 1)", &["fixed"]),
            (
                "(isModifier.exists() and isModifier) implies isModifierReason.exists()",
                &["isModifier"],
            ),
            ("code.exists().not() or system.exists()", &["code"]),
        ];
        for (src, names) in cases {
            assert_eq!(guards(src), vec![v(names)], "{src}");
        }
        // a right operand is only reached after the left one, so it cannot guard alone
        assert!(guards("iif(a.exists(), b, c) or d.empty()").is_empty());
        // fails on an empty element: no guard
        assert!(guards("name.exists()").is_empty());
        assert_eq!(
            guards("name.exists() implies x.exists()"),
            vec![v(&["name"])]
        );
    }
}
