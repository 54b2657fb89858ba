//! FHIRPath (R4 / FHIRPath N1 with common 2.0 additions) over `serde_json::Value`.
//!
//! ```text
//! let expr = fhirpath::compile("name.where(use = 'official').exists()")?;   // once
//! let ctx = EvalContext::new(&model, &patient_json);                          // per resource
//! let ok = fhirpath::evaluate_boolean(&expr, &ctx)?;                          // many times
//! ```
//!
//! * [`compile`] parses once; [`Expr`] is `Send + Sync` and cheap to evaluate repeatedly.
//! * Evaluation walks the JSON in place: no conversion of the resource.
//! * Type knowledge JSON cannot give (element types, choice types, inheritance) comes
//!   from a [`ModelInfo`]; [`SnapshotModel`] builds one from StructureDefinitions.
//! * Caller hooks ([`Hooks`]) answer `resolve()` beyond contained resources and the
//!   enclosing Bundle, `memberOf()`, `conformsTo()`, and receive `trace()` output.

mod decimal;
mod eval;
mod functions;
mod lexer;
mod model;
mod parser;
pub mod patch;
mod quantity;
mod reads;
mod share;
pub(crate) mod temporal;
mod value;

use std::collections::HashMap;
use std::fmt;

use serde_json::Value as Json;

pub use decimal::Decimal;
pub use functions::escape_html;
pub use model::{system_type_of_primitive, ChildDef, JsonOnlyModel, ModelInfo, SnapshotModel};
/// The regular expressions `matches()` compiles, for native rules that must match as it does.
pub(crate) use parser::{build_regex, Pattern};
pub use quantity::Quantity;
pub use temporal::{Precision, Temporal, TemporalKind};
pub use value::{Collection, Item, Node, TypeInfo};

/// A syntax error, with the byte offset in the source where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> Self {
        ParseError {
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FHIRPath syntax error at offset {}: {}",
            self.offset, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// An evaluation failure (type mismatch, `single()` on several items, unknown
/// variable, ...). Never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub message: String,
}

impl EvalError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        EvalError {
            message: message.into(),
        }
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FHIRPath evaluation error: {}", self.message)
    }
}

impl std::error::Error for EvalError {}

/// A compiled expression. Compile once, evaluate many times; shareable across threads.
#[derive(Debug)]
pub struct Expr {
    source: String,
    ast: parser::Ast,
}

impl Expr {
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn evaluate<'a>(&self, ctx: &EvalContext<'a>) -> Result<Collection<'a>, EvalError> {
        evaluate(self, ctx)
    }

    pub fn evaluate_boolean(&self, ctx: &EvalContext<'_>) -> Result<Option<bool>, EvalError> {
        evaluate_boolean(self, ctx)
    }

    /// The names of the focus's children this expression reads, when that is all it reads of the
    /// focus (`None` otherwise): on an element with none of them it answers as on an empty one.
    pub fn focus_children(&self) -> Option<Vec<String>> {
        reads::focus_children(&self.ast)
    }

    /// Sets of the focus's child names such that an element with none of the names of one set
    /// passes this expression (true or empty, no error) without evaluating it: the whole
    /// expression's [`Expr::focus_children`] when it holds on an empty element, and the first
    /// operand of `or`/`and`/`implies` where that decides the result (`x.empty() or …` passes
    /// wherever `x` is absent). Decided once, by evaluating those parts on an empty element.
    pub fn pass_guards(&self, model: &dyn ModelInfo) -> Vec<Vec<String>> {
        reads::pass_guards(&self.ast, model)
    }
}

/// Parses `src` into an [`Expr`]. Function names and arities are checked here.
pub fn compile(src: &str) -> Result<Expr, ParseError> {
    let mut ast = parser::parse(src)?;
    share::memoize(&mut ast);
    Ok(Expr {
        source: src.to_string(),
        ast,
    })
}

/// Evaluates `expr` in `ctx`, returning the result collection.
pub fn evaluate<'a>(expr: &Expr, ctx: &EvalContext<'a>) -> Result<Collection<'a>, EvalError> {
    eval::Evaluator::new(ctx).run(&expr.ast)
}

/// Evaluates `expr` and applies FHIRPath's singleton-to-boolean rule:
/// empty → `None`; one Boolean → its value; one other item → `Some(true)`;
/// several items → an error. A constraint passes when the result is `None` or
/// `Some(true)`.
pub fn evaluate_boolean(expr: &Expr, ctx: &EvalContext<'_>) -> Result<Option<bool>, EvalError> {
    let ev = eval::Evaluator::new(ctx);
    if eval::Evaluator::gives_boolean(&expr.ast) {
        // empty or one boolean: the same answer without building the collection
        return ev.run_bool(&expr.ast);
    }
    let r = ev.run(&expr.ast)?;
    match r.as_slice() {
        [] => Ok(None),
        [Item::Boolean(b)] => Ok(Some(*b)),
        [Item::Node(n)] if matches!(n.value, Some(Json::Bool(_))) => {
            Ok(n.value.and_then(Json::as_bool))
        }
        [_] => Ok(Some(true)),
        _ => Err(EvalError::new(format!(
            "expected a single boolean, got {} items",
            r.len()
        ))),
    }
}

/// Caller-supplied behaviour. Every method has a neutral default.
pub trait Hooks<'a>: Send + Sync {
    /// Resolves a reference that is neither a contained resource (`#id`) nor an entry of
    /// the enclosing Bundle. Return `None` when unknown (the result is then empty).
    fn resolve(&self, _reference: &str) -> Option<&'a Json> {
        None
    }

    /// `memberOf(valueSet)` for a code, Coding or CodeableConcept item. `None` = unknown
    /// (the result is empty).
    fn member_of(&self, _item: &Item<'a>, _value_set: &str) -> Option<bool> {
        None
    }

    /// `conformsTo(profile)`. `Ok(None)` = cannot tell (empty result); `Err` = invalid
    /// profile URL (an evaluation error).
    fn conforms_to(&self, _item: &Item<'a>, _profile: &str) -> Result<Option<bool>, String> {
        Ok(None)
    }

    /// Receives `trace(name)` output.
    fn trace(&self, _name: &str, _items: &[Item<'a>]) {}
}

/// Everything an evaluation needs besides the expression.
pub struct EvalContext<'a> {
    pub model: &'a dyn ModelInfo,
    /// The input collection (`$this` at the top level); usually one node.
    pub focus: Collection<'a>,
    /// `%resource`: the resource containing the focus.
    pub resource: Option<Node<'a>>,
    /// `%rootResource`: the top resource (differs from `%resource` inside contained).
    pub root_resource: Option<Node<'a>>,
    /// `%context`; defaults to the focus.
    pub context: Option<Collection<'a>>,
    /// The Bundle that holds the resource, for `resolve()` of entry references.
    pub bundle: Option<&'a Json>,
    /// `%name` variables supplied by the caller.
    pub variables: HashMap<String, Collection<'a>>,
    pub hooks: Option<&'a dyn Hooks<'a>>,
    /// Strict mode: navigating to an element the model does not define is an error
    /// instead of an empty result (needs a model that knows the focus type).
    pub strict: bool,
}

impl<'a> EvalContext<'a> {
    /// Context for evaluating against a whole resource: the focus, `%resource`,
    /// `%rootResource` and `%context` are all the resource.
    pub fn new(model: &'a dyn ModelInfo, resource: &'a Json) -> Self {
        let node = Node::resource(resource);
        EvalContext {
            model,
            focus: vec![Item::Node(node)],
            resource: Some(node),
            root_resource: Some(node),
            context: None,
            bundle: None,
            variables: HashMap::new(),
            hooks: None,
            strict: false,
        }
    }

    /// Context with an arbitrary focus and no resource.
    pub fn with_items(model: &'a dyn ModelInfo, focus: Collection<'a>) -> Self {
        EvalContext {
            model,
            focus,
            resource: None,
            root_resource: None,
            context: None,
            bundle: None,
            variables: HashMap::new(),
            hooks: None,
            strict: false,
        }
    }

    /// Sets the focus to an element inside the resource (keeps `%resource`).
    pub fn with_focus(mut self, node: Node<'a>) -> Self {
        self.focus = vec![Item::Node(node)];
        self
    }

    pub fn with_resource(mut self, resource: &'a Json) -> Self {
        self.resource = Some(Node::resource(resource));
        self
    }

    pub fn with_root_resource(mut self, resource: &'a Json) -> Self {
        self.root_resource = Some(Node::resource(resource));
        self
    }

    pub fn with_context(mut self, context: Collection<'a>) -> Self {
        self.context = Some(context);
        self
    }

    pub fn with_bundle(mut self, bundle: &'a Json) -> Self {
        self.bundle = Some(bundle);
        self
    }

    pub fn with_variable(mut self, name: impl Into<String>, value: Collection<'a>) -> Self {
        self.variables.insert(name.into(), value);
        self
    }

    pub fn with_hooks(mut self, hooks: &'a dyn Hooks<'a>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }
}

#[cfg(test)]
mod tests;
