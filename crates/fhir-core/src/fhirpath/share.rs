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
    func.per_item() || matches!(func, Func::Iif | Func::Trace)
}

/// Calls `f` on each direct sub-expression, saying whether it is an argument evaluated with
/// another `$this` ([`rescopes`]). (Mutable only: the read-only walks run on the same tree.)
fn each_child_mut(ast: &mut Ast, f: &mut dyn FnMut(&mut Ast, bool)) {
    match ast {
        Ast::Member(t, _) | Ast::Neg(t) | Ast::Memo(_, t) => f(t, false),
        Ast::Call {
            target, func, args, ..
        } => {
            if let Some(t) = target {
                f(t, false);
            }
            let rescoped = rescopes(*func);
            for a in args {
                f(a, rescoped);
            }
        }
        Ast::Type {
            target: Some(t), ..
        } => f(t, false),
        Ast::Indexer(a, b) | Ast::Bin(_, a, b) => {
            f(a, false);
            f(b, false);
        }
        _ => {}
    }
}

fn calls_trace(ast: &mut Ast) -> bool {
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

fn visit(ast: &mut Ast, f: &mut dyn FnMut(&Ast)) {
    f(ast);
    each_child_mut(ast, &mut |c, _| visit(c, f));
}

/// Whether `ast` reads the scope it is evaluated in (`$this`, `$index`, `$total`, or the focus
/// through a bare name or a function without a target).
fn reads_scope(ast: &mut Ast) -> bool {
    match ast {
        Ast::Empty | Ast::Lit(_) | Ast::Env(_) => false,
        Ast::This | Ast::IndexVar | Ast::Total | Ast::Ident(_) => true,
        Ast::Call { target: None, .. } | Ast::Type { target: None, .. } => true,
        _ => {
            let mut reads = false;
            each_child_mut(ast, &mut |c, rescoped| {
                // a rescoping function's arguments have their own `$this`/`$index`; `$total`
                // passes through from outside
                reads = reads
                    || if rescoped {
                        uses_total(c)
                    } else {
                        reads_scope(c)
                    };
            });
            reads
        }
    }
}

fn uses_total(ast: &mut Ast) -> bool {
    let mut total = false;
    visit(ast, &mut |x| total |= matches!(x, Ast::Total));
    total
}

/// Visits the sub-expressions evaluated with the evaluation's own focus, counting their keys.
fn count_root(ast: &mut Ast, counts: &mut HashMap<String, usize>) {
    if substantial(ast) {
        *counts.entry(key(ast)).or_default() += 1;
    }
    each_child_mut(ast, &mut |c, rescoped| {
        if !rescoped {
            count_root(c, counts);
        }
    });
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
    each_child_mut(ast, &mut |c, rescoped| {
        if rescoped {
            wrap_constant(c, slots);
        } else if repeats {
            wrap_root(c, slots);
        } else {
            descend(c, slots, false);
        }
    });
}

/// Inside a per-item argument: share the largest sub-expressions that read no scope at all.
fn wrap_constant(ast: &mut Ast, slots: &mut Slots) {
    if substantial(ast) && !reads_scope(ast) && !calls_trace(ast) {
        let slot = slots.fresh();
        wrap(ast, slot);
        return;
    }
    each_child_mut(ast, &mut |c, _| wrap_constant(c, slots));
}

#[cfg(test)]
mod tests {
    use super::super::parser::parse;
    use super::memoize;

    fn memos(src: &str) -> (usize, String) {
        let mut ast = parse(src).expect("parses");
        let n = memoize(&mut ast);
        (n, format!("{ast:?}"))
    }

    /// `src` uses `slots` memo slots in `nodes` places, and the tree shows `part`.
    fn expect(src: &str, slots: usize, nodes: usize, part: &str) {
        let (n, ast) = memos(src);
        assert_eq!((n, ast.matches("Memo(").count()), (slots, nodes), "{src}");
        assert!(ast.contains(part), "{ast}");
    }

    #[test]
    fn shared_parts() {
        // (expression, memo slots, memo nodes, a piece of the memoized tree)
        let cases: &[(&str, usize, usize, &str)] = &[
            ("element.tail().all(path.startsWith(%resource.snapshot.element.first().path&'.'))", 1, 1, "Memo(0, Bin(Concat"),
            // trace output is a side effect: only what it traces is shared
            ("a.where(%resource.b.trace('x').exists())", 1, 1, "Memo(0, Member(Env(\"resource\"), \"b\"))"),
            ("children().element.where(path.contains('.').not()).label.empty() and children().element.where(path.contains('.').not()).code.empty()", 1, 2, "Memo(0, Call"),
        ];
        for (src, slots, nodes, part) in cases {
            expect(src, *slots, *nodes, part);
        }
    }

    #[test]
    fn constant_parts_of_per_item_arguments() {
        // reads the item: not shared; the constant beside it is
        assert_eq!(memos("item.where(linkId = 'x' and text.exists())").0, 0);
        assert_eq!(memos("item.where(linkId = %resource.id)").0, 1);
        // `$total` belongs to the enclosing aggregate
        assert_eq!(
            memos("(1 | 2).aggregate($total + %resource.select($total).count(), 0)").0,
            0
        );
    }

    #[test]
    fn repeated_parts_at_the_root() {
        assert_eq!(memos("a.b.c.exists() and a.b.d.exists()").0, 1);
        assert_eq!(memos("a.exists() and b.exists()").0, 0);
        // the same text inside a per-item argument reads another focus
        assert_eq!(memos("a.b.exists() and x.where(a.b.exists()).empty()").0, 0);
    }
}
