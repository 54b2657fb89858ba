//! Work shared within one evaluation, decided once at compile time. Two kinds of sub-expression
//! give the same collection every time they are evaluated during one evaluation, so they are
//! wrapped in [`Ast::Memo`] and evaluated once:
//!
//! * inside a per-item argument (`where`, `select`, `all`, `exists`, `repeat`, `iif`, …), a
//!   sub-expression that reads nothing of any scope (`%resource.snapshot.element.first().path`
//!   in `element.all(path.startsWith(…))`, `%resource.descendants().reference` in dom-3), which
//!   would otherwise be evaluated again for every item;
//! * a sub-expression written more than once where the focus is the evaluation's own
//!   (`children().element.where(…)` three times in sdf-9).
//!
//! Nothing that calls `trace()` is shared (its output is a side effect).

use std::collections::HashMap;

use super::parser::{Ast, Func};

/// Wraps the shareable sub-expressions of `ast`; returns the number of memo slots used.
pub(super) fn memoize(ast: &mut Ast) -> usize {
    let mut counts = HashMap::new();
    count_root(ast, &mut counts);
    let mut slots = Slots {
        repeated: counts
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, _)| (k, None))
            .collect(),
        next: 0,
    };
    wrap_root(ast, &mut slots);
    slots.next
}

struct Slots {
    /// Structural keys of root-scope sub-expressions that occur more than once, with their slot.
    repeated: HashMap<String, Option<usize>>,
    next: usize,
}

impl Slots {
    fn fresh(&mut self) -> usize {
        self.next += 1;
        self.next - 1
    }
}

/// A structural key (the tree's debug form: names, literals, operators, regex patterns).
fn key(ast: &Ast) -> String {
    format!("{ast:?}")
}

/// Worth sharing: evaluates more than a literal or a variable.
fn substantial(ast: &Ast) -> bool {
    matches!(
        ast,
        Ast::Member(..) | Ast::Call { .. } | Ast::Type { .. } | Ast::Indexer(..) | Ast::Bin(..)
    )
}

/// Functions whose arguments are evaluated with another `$this` (per item, or on the target).
fn rescopes(func: Func) -> bool {
    matches!(
        func,
        Func::Where
            | Func::Select
            | Func::All
            | Func::Exists
            | Func::Repeat
            | Func::Aggregate
            | Func::Iif
            | Func::Trace
    )
}

fn calls_trace(ast: &Ast) -> bool {
    let mut found = false;
    visit(ast, &mut |a| {
        if let Ast::Call {
            func: Func::Trace, ..
        } = a
        {
            found = true;
        }
    });
    found
}

fn visit(ast: &Ast, f: &mut dyn FnMut(&Ast)) {
    f(ast);
    match ast {
        Ast::Member(t, _) | Ast::Neg(t) | Ast::Memo(_, t) => visit(t, f),
        Ast::Call { target, args, .. } => {
            if let Some(t) = target {
                visit(t, f);
            }
            for a in args {
                visit(a, f);
            }
        }
        Ast::Type { target, .. } => {
            if let Some(t) = target {
                visit(t, f);
            }
        }
        Ast::Indexer(a, b) | Ast::Bin(_, a, b) => {
            visit(a, f);
            visit(b, f);
        }
        Ast::Empty
        | Ast::Lit(_)
        | Ast::This
        | Ast::IndexVar
        | Ast::Total
        | Ast::Env(_)
        | Ast::Ident(_) => {}
    }
}

/// Whether `ast` reads the scope it is evaluated in (`$this`, `$index`, `$total`, or the focus
/// through a bare name or a function without a target).
fn reads_scope(ast: &Ast) -> bool {
    match ast {
        Ast::Empty | Ast::Lit(_) | Ast::Env(_) => false,
        Ast::This | Ast::IndexVar | Ast::Total | Ast::Ident(_) => true,
        Ast::Member(t, _) | Ast::Neg(t) | Ast::Memo(_, t) => reads_scope(t),
        Ast::Call { target: None, .. } | Ast::Type { target: None, .. } => true,
        Ast::Call {
            target: Some(t),
            func,
            args,
            ..
        } => {
            reads_scope(t)
                || if rescopes(*func) {
                    // their own `$this`/`$index`; `$total` passes through from outside
                    args.iter().any(|a| {
                        let mut total = false;
                        visit(a, &mut |x| total |= matches!(x, Ast::Total));
                        total
                    })
                } else {
                    args.iter().any(reads_scope)
                }
        }
        Ast::Type {
            target: Some(t), ..
        } => reads_scope(t),
        Ast::Indexer(a, b) | Ast::Bin(_, a, b) => reads_scope(a) || reads_scope(b),
    }
}

/// Visits the sub-expressions evaluated with the evaluation's own focus, counting their keys.
fn count_root(ast: &Ast, counts: &mut HashMap<String, usize>) {
    if substantial(ast) {
        *counts.entry(key(ast)).or_default() += 1;
    }
    match ast {
        Ast::Member(t, _) | Ast::Neg(t) => count_root(t, counts),
        Ast::Call {
            target, func, args, ..
        } => {
            if let Some(t) = target {
                count_root(t, counts);
            }
            if !rescopes(*func) {
                for a in args {
                    count_root(a, counts);
                }
            }
        }
        Ast::Type {
            target: Some(t), ..
        } => count_root(t, counts),
        Ast::Indexer(a, b) | Ast::Bin(_, a, b) => {
            count_root(a, counts);
            count_root(b, counts);
        }
        _ => {}
    }
}

fn wrap(ast: &mut Ast, slot: usize) {
    let inner = std::mem::replace(ast, Ast::Empty);
    *ast = Ast::Memo(slot, Box::new(inner));
}

/// Root scope: share repeated sub-expressions (unless inside one already shared); look inside
/// per-item arguments.
fn wrap_root(ast: &mut Ast, slots: &mut Slots) {
    if substantial(ast) && !calls_trace(ast) {
        let k = key(ast);
        if let Some(entry) = slots.repeated.get(&k).copied() {
            let slot = match entry {
                Some(s) => s,
                None => {
                    let s = slots.fresh();
                    slots.repeated.insert(k, Some(s));
                    s
                }
            };
            // evaluated once as a whole; its per-item arguments still share their constants
            descend(ast, slots, false);
            wrap(ast, slot);
            return;
        }
    }
    descend(ast, slots, true);
}

fn descend(ast: &mut Ast, slots: &mut Slots, repeats: bool) {
    let root = |a: &mut Ast, slots: &mut Slots| {
        if repeats {
            wrap_root(a, slots)
        } else {
            descend(a, slots, false)
        }
    };
    match ast {
        Ast::Member(t, _) | Ast::Neg(t) => root(t, slots),
        Ast::Call {
            target, func, args, ..
        } => {
            if let Some(t) = target {
                root(t, slots);
            }
            let per_item = rescopes(*func);
            for a in args {
                if per_item {
                    wrap_constant(a, slots);
                } else {
                    root(a, slots);
                }
            }
        }
        Ast::Type {
            target: Some(t), ..
        } => root(t, slots),
        Ast::Indexer(a, b) | Ast::Bin(_, a, b) => {
            root(a, slots);
            root(b, slots);
        }
        _ => {}
    }
}

/// Inside a per-item argument: share the largest sub-expressions that read no scope at all.
fn wrap_constant(ast: &mut Ast, slots: &mut Slots) {
    if substantial(ast) && !reads_scope(ast) && !calls_trace(ast) {
        let slot = slots.fresh();
        wrap(ast, slot);
        return;
    }
    match ast {
        Ast::Member(t, _) | Ast::Neg(t) => wrap_constant(t, slots),
        Ast::Call { target, args, .. } => {
            if let Some(t) = target {
                wrap_constant(t, slots);
            }
            for a in args {
                wrap_constant(a, slots);
            }
        }
        Ast::Type {
            target: Some(t), ..
        } => wrap_constant(t, slots),
        Ast::Indexer(a, b) | Ast::Bin(_, a, b) => {
            wrap_constant(a, slots);
            wrap_constant(b, slots);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::parser::{parse, Ast};
    use super::memoize;

    fn memos(src: &str) -> (usize, String) {
        let mut ast = parse(src).expect("parses");
        let n = memoize(&mut ast);
        (n, format!("{ast:?}"))
    }

    fn count(ast: &str) -> usize {
        ast.matches("Memo(").count()
    }

    #[test]
    fn constant_parts_of_per_item_arguments() {
        let (n, ast) = memos(
            "element.tail().all(path.startsWith(%resource.snapshot.element.first().path&'.'))",
        );
        assert_eq!(n, 1);
        assert_eq!(count(&ast), 1);
        assert!(ast.contains("Memo(0, Bin(Concat"));
        // reads the item: not shared; the constant beside it is
        assert_eq!(memos("item.where(linkId = 'x' and text.exists())").0, 0);
        assert_eq!(memos("item.where(linkId = %resource.id)").0, 1);
        // `$total` belongs to the enclosing aggregate
        assert_eq!(
            memos("(1 | 2).aggregate($total + %resource.select($total).count(), 0)").0,
            0
        );
        // trace output is a side effect: only what it traces is shared
        let (n, ast) = memos("a.where(%resource.b.trace('x').exists())");
        assert_eq!(n, 1);
        assert!(
            ast.contains("Memo(0, Member(Env(\"resource\"), \"b\"))"),
            "{ast}"
        );
    }

    #[test]
    fn repeated_parts_at_the_root() {
        let (n, ast) = memos(
            "children().element.where(path.contains('.').not()).label.empty() and children().element.where(path.contains('.').not()).code.empty()",
        );
        assert_eq!(n, 1);
        assert_eq!(count(&ast), 2);
        assert_eq!(memos("a.b.c.exists() and a.b.d.exists()").0, 1);
        assert_eq!(memos("a.exists() and b.exists()").0, 0);
        // the same text inside a per-item argument reads another focus
        assert_eq!(memos("a.b.exists() and x.where(a.b.exists()).empty()").0, 0);
        let _ = Ast::Empty;
    }
}
