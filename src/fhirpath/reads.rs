//! What an expression reads of its focus: when it only navigates to named children (no `$this`,
//! no environment variable, no function applied to the focus itself), an element lacking all of
//! those children gives the same answer as an empty one, so a caller can decide once per
//! expression instead of once per element.

use super::parser::{Ast, Func};

/// The focus's child names `ast` reads, or `None` when it may read more of the focus.
pub(super) fn focus_children(ast: &Ast) -> Option<Vec<String>> {
    let mut out = Vec::new();
    roots(ast, &mut out).then_some(out)
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
        Ast::Member(t, _) => roots(t, out),
        Ast::Call {
            target: Some(t),
            func,
            args,
            ..
        } => {
            if !roots(t, out) {
                return false;
            }
            let per_item = matches!(
                func,
                Func::Where
                    | Func::Select
                    | Func::All
                    | Func::Exists
                    | Func::Repeat
                    | Func::Aggregate
            );
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
        Ast::Member(t, _) | Ast::Neg(t) => no_environment(t),
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
}
