//! Pratt parser from tokens to the expression tree, with function names resolved and
//! arities checked at compile time.

use super::decimal::Decimal;
use super::lexer::{tokenize, Tok, Token};
use super::quantity::{is_calendar_keyword, Quantity};
use super::temporal::Temporal;
use super::ParseError;

/// Deepest expression tree accepted (guards the recursive evaluator).
pub const MAX_DEPTH: u32 = 128;

#[derive(Debug, Clone)]
pub enum Lit {
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(String),
    Temporal(Temporal),
    Quantity(Quantity),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeOp {
    Is,
    As,
    OfType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeSpec {
    pub namespace: Option<String>,
    pub name: String,
}

macro_rules! funcs {
    ($( $v:ident = $name:literal ($min:literal, $max:literal) ),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Func { $($v),* }
        impl Func {
            pub fn lookup(name: &str) -> Option<(Func, usize, usize)> {
                match name {
                    $($name => Some((Func::$v, $min, $max)),)*
                    _ => None,
                }
            }
            pub fn name(self) -> &'static str {
                match self { $(Func::$v => $name),* }
            }
        }
    };
}

funcs! {
    Empty = "empty"(0, 0), Exists = "exists"(0, 1), All = "all"(1, 1),
    AllTrue = "allTrue"(0, 0), AnyTrue = "anyTrue"(0, 0), AllFalse = "allFalse"(0, 0),
    AnyFalse = "anyFalse"(0, 0), SubsetOf = "subsetOf"(1, 1), SupersetOf = "supersetOf"(1, 1),
    Count = "count"(0, 0), Distinct = "distinct"(0, 0), IsDistinct = "isDistinct"(0, 0),
    Where = "where"(1, 1), Select = "select"(1, 1), Repeat = "repeat"(1, 1),
    Single = "single"(0, 0), First = "first"(0, 0), Last = "last"(0, 0), Tail = "tail"(0, 0),
    Skip = "skip"(1, 1), Take = "take"(1, 1), Intersect = "intersect"(1, 1),
    Exclude = "exclude"(1, 1), Union = "union"(1, 1), Combine = "combine"(1, 1),
    Iif = "iif"(2, 3), ToBoolean = "toBoolean"(0, 0), ConvertsToBoolean = "convertsToBoolean"(0, 0),
    ToInteger = "toInteger"(0, 0), ConvertsToInteger = "convertsToInteger"(0, 0),
    ToDecimal = "toDecimal"(0, 0), ConvertsToDecimal = "convertsToDecimal"(0, 0),
    ToStringFn = "toString"(0, 0), ConvertsToString = "convertsToString"(0, 0),
    ToDate = "toDate"(0, 0), ConvertsToDate = "convertsToDate"(0, 0),
    ToDateTime = "toDateTime"(0, 0), ConvertsToDateTime = "convertsToDateTime"(0, 0),
    ToTime = "toTime"(0, 0), ConvertsToTime = "convertsToTime"(0, 0),
    ToQuantity = "toQuantity"(0, 1), ConvertsToQuantity = "convertsToQuantity"(0, 1),
    IndexOf = "indexOf"(1, 1), LastIndexOf = "lastIndexOf"(1, 1), Substring = "substring"(1, 2),
    StartsWith = "startsWith"(1, 1), EndsWith = "endsWith"(1, 1), ContainsStr = "contains"(1, 1),
    Upper = "upper"(0, 0), Lower = "lower"(0, 0), Replace = "replace"(2, 2),
    Matches = "matches"(1, 1), MatchesFull = "matchesFull"(1, 1),
    ReplaceMatches = "replaceMatches"(2, 2), Length = "length"(0, 0),
    ToChars = "toChars"(0, 0), Trim = "trim"(0, 0), Split = "split"(1, 1), Join = "join"(0, 1),
    Encode = "encode"(1, 1), Decode = "decode"(1, 1), Escape = "escape"(1, 1),
    Unescape = "unescape"(1, 1),
    Abs = "abs"(0, 0), Ceiling = "ceiling"(0, 0), Exp = "exp"(0, 0), Floor = "floor"(0, 0),
    Ln = "ln"(0, 0), Log = "log"(1, 1), Power = "power"(1, 1), Round = "round"(0, 1),
    Sqrt = "sqrt"(0, 0), Truncate = "truncate"(0, 0),
    Children = "children"(0, 0), Descendants = "descendants"(0, 0),
    Trace = "trace"(1, 2), Now = "now"(0, 0), Today = "today"(0, 0), TimeOfDay = "timeOfDay"(0, 0),
    Aggregate = "aggregate"(1, 2), Sum = "sum"(0, 0), Min = "min"(0, 0), Max = "max"(0, 0),
    Avg = "avg"(0, 0),
    Not = "not"(0, 0), TypeFn = "type"(0, 0),
    Extension = "extension"(1, 1), HasValue = "hasValue"(0, 0), GetValue = "getValue"(0, 0),
    Resolve = "resolve"(0, 0), MemberOf = "memberOf"(1, 1), ConformsTo = "conformsTo"(1, 1),
    HtmlChecks = "htmlChecks"(0, 0), HtmlChecks2 = "htmlchecks"(0, 0),
    ElementDefinition = "elementDefinition"(0, 0), Slice = "slice"(2, 2),
    CheckModifiers = "checkModifiers"(1, 1), Subsumes = "subsumes"(1, 1),
    SubsumedBy = "subsumedBy"(1, 1), Comparable = "comparable"(1, 1),
    // type functions are parsed specially; listed for arity
    IsFn = "is"(1, 1), AsFn = "as"(1, 1), OfTypeFn = "ofType"(1, 1),
}

impl Func {
    /// Functions that evaluate their arguments once per input item, with that item as `$this`.
    pub fn per_item(self) -> bool {
        matches!(
            self,
            Func::Where | Func::Select | Func::All | Func::Exists | Func::Repeat | Func::Aggregate
        )
    }
}

#[derive(Debug)]
pub enum Ast {
    Empty,
    Lit(Lit),
    This,
    IndexVar,
    Total,
    Env(String),
    Ident(String),
    Member(Box<Ast>, String),
    Call {
        target: Option<Box<Ast>>,
        func: Func,
        args: Vec<Ast>,
        /// Pre-compiled pattern when the regex argument is a literal.
        regex: Option<Pattern>,
    },
    Type {
        target: Option<Box<Ast>>,
        op: TypeOp,
        spec: TypeSpec,
    },
    Indexer(Box<Ast>, Box<Ast>),
    Neg(Box<Ast>),
    Bin(BinOp, Box<Ast>, Box<Ast>),
    /// A sub-expression whose value is the same wherever it is evaluated during one
    /// evaluation: computed once into the given slot (`share.rs`).
    Memo(usize, Box<Ast>),
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: u32,
}

pub fn parse(src: &str) -> Result<Ast, ParseError> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let (ast, _) = p.expr(0)?;
    let t = p.peek();
    if t.tok != Tok::Eof {
        return Err(ParseError::new(
            t.pos,
            format!("unexpected {}", describe(&t.tok)),
        ));
    }
    Ok(ast)
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("identifier '{s}'"),
        Tok::DelimIdent(s) => format!("identifier `{s}`"),
        Tok::Str(s) => format!("string '{s}'"),
        Tok::Num(s) => format!("number {s}"),
        Tok::Date(s) | Tok::DateTime(s) => format!("date @{s}"),
        Tok::Time(s) => format!("time @T{s}"),
        Tok::Env(s) => format!("%{s}"),
        Tok::Dollar(s) => format!("${s}"),
        Tok::Sym(s) => format!("'{s}'"),
        Tok::Eof => "end of expression".to_string(),
    }
}

fn infix(t: &Tok) -> Option<(BinOp, u8)> {
    Some(match t {
        Tok::Sym("*") => (BinOp::Mul, 10),
        Tok::Sym("/") => (BinOp::Div, 10),
        Tok::Ident(s) if s == "div" => (BinOp::IntDiv, 10),
        Tok::Ident(s) if s == "mod" => (BinOp::Mod, 10),
        Tok::Sym("+") => (BinOp::Add, 9),
        Tok::Sym("-") => (BinOp::Sub, 9),
        Tok::Sym("&") => (BinOp::Concat, 9),
        Tok::Sym("|") => (BinOp::Union, 7),
        Tok::Sym("<") => (BinOp::Lt, 6),
        Tok::Sym("<=") => (BinOp::Le, 6),
        Tok::Sym(">") => (BinOp::Gt, 6),
        Tok::Sym(">=") => (BinOp::Ge, 6),
        Tok::Sym("=") => (BinOp::Eq, 5),
        Tok::Sym("!=") => (BinOp::Ne, 5),
        Tok::Sym("~") => (BinOp::Equiv, 5),
        Tok::Sym("!~") => (BinOp::NotEquiv, 5),
        Tok::Ident(s) if s == "in" => (BinOp::In, 4),
        Tok::Ident(s) if s == "contains" => (BinOp::Contains, 4),
        Tok::Ident(s) if s == "and" => (BinOp::And, 3),
        Tok::Ident(s) if s == "or" => (BinOp::Or, 2),
        Tok::Ident(s) if s == "xor" => (BinOp::Xor, 2),
        Tok::Ident(s) if s == "implies" => (BinOp::Implies, 1),
        _ => return None,
    })
}

const TYPE_BP: u8 = 8;
const PREFIX_BP: u8 = 11;

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn peek_at(&self, k: usize) -> &Tok {
        &self.toks[(self.pos + k).min(self.toks.len() - 1)].tok
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn expect_sym(&mut self, s: &'static str) -> Result<(), ParseError> {
        let t = self.next();
        if t.tok == Tok::Sym(s) {
            Ok(())
        } else {
            Err(ParseError::new(
                t.pos,
                format!("expected '{s}', found {}", describe(&t.tok)),
            ))
        }
    }

    fn check_depth(&self, d: u32, pos: usize) -> Result<u32, ParseError> {
        if d > MAX_DEPTH {
            Err(ParseError::new(pos, "expression nested too deeply"))
        } else {
            Ok(d)
        }
    }

    /// Returns the tree and its depth.
    fn expr(&mut self, min_bp: u8) -> Result<(Ast, u32), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::new(
                self.peek().pos,
                "expression nested too deeply",
            ));
        }
        let r = self.expr_inner(min_bp);
        self.depth -= 1;
        r
    }

    fn expr_inner(&mut self, min_bp: u8) -> Result<(Ast, u32), ParseError> {
        let start = self.peek().pos;
        let (mut lhs, mut depth) = match &self.peek().tok {
            Tok::Sym("-") | Tok::Sym("+") => {
                let neg = self.peek().tok == Tok::Sym("-");
                self.next();
                let (e, d) = self.expr(PREFIX_BP)?;
                let e = match (neg, e) {
                    (false, e) => e,
                    (true, Ast::Lit(Lit::Int(i))) => Ast::Lit(Lit::Int(-i)),
                    (true, Ast::Lit(Lit::Dec(x))) => Ast::Lit(Lit::Dec(x.neg())),
                    (true, e) => Ast::Neg(Box::new(e)),
                };
                (e, d + 1)
            }
            _ => self.term()?,
        };
        loop {
            let t = self.peek().clone();
            // postfix: member access / call, indexer
            match &t.tok {
                Tok::Sym(".") => {
                    self.next();
                    let (inv, arg_depth) = self.invocation(Some(lhs))?;
                    lhs = inv;
                    depth = self.check_depth(depth.max(arg_depth) + 1, t.pos)?;
                    continue;
                }
                Tok::Sym("[") => {
                    self.next();
                    let (idx, d) = self.expr(0)?;
                    self.expect_sym("]")?;
                    lhs = Ast::Indexer(Box::new(lhs), Box::new(idx));
                    depth = self.check_depth(depth.max(d) + 1, t.pos)?;
                    continue;
                }
                _ => {}
            }
            if min_bp > PREFIX_BP {
                break;
            }
            if let Tok::Ident(s) = &t.tok {
                if s == "is" || s == "as" {
                    if TYPE_BP < min_bp {
                        break;
                    }
                    self.next();
                    let spec = self.type_spec()?;
                    let op = if s == "is" { TypeOp::Is } else { TypeOp::As };
                    lhs = Ast::Type {
                        target: Some(Box::new(lhs)),
                        op,
                        spec,
                    };
                    depth = self.check_depth(depth + 1, t.pos)?;
                    continue;
                }
            }
            let Some((op, bp)) = infix(&t.tok) else {
                break;
            };
            if bp < min_bp {
                break;
            }
            self.next();
            let (rhs, d) = self.expr(bp + 1)?;
            lhs = Ast::Bin(op, Box::new(lhs), Box::new(rhs));
            depth = self.check_depth(depth.max(d) + 1, start)?;
        }
        Ok((lhs, depth))
    }

    fn type_spec(&mut self) -> Result<TypeSpec, ParseError> {
        let t = self.next();
        let first = match t.tok {
            Tok::Ident(s) | Tok::DelimIdent(s) => s,
            other => {
                return Err(ParseError::new(
                    t.pos,
                    format!("expected a type name, found {}", describe(&other)),
                ))
            }
        };
        if self.peek().tok == Tok::Sym(".") {
            if let Tok::Ident(s) | Tok::DelimIdent(s) = self.peek_at(1).clone() {
                self.next();
                self.next();
                return Ok(TypeSpec {
                    namespace: Some(first),
                    name: s,
                });
            }
        }
        Ok(TypeSpec {
            namespace: None,
            name: first,
        })
    }

    fn term(&mut self) -> Result<(Ast, u32), ParseError> {
        let t = self.next();
        let ast = match t.tok {
            Tok::Num(n) => {
                let unit = match self.peek().tok.clone() {
                    Tok::Str(u) => {
                        self.next();
                        Some(u)
                    }
                    Tok::Ident(u) if is_calendar_keyword(&u) => {
                        self.next();
                        Some(u)
                    }
                    _ => None,
                };
                let dec =
                    Decimal::parse(&n).ok_or_else(|| ParseError::new(t.pos, "invalid number"))?;
                match unit {
                    Some(u) => Ast::Lit(Lit::Quantity(Quantity::new(dec, u))),
                    None if !n.contains('.') => match n.parse::<i64>() {
                        Ok(i) => Ast::Lit(Lit::Int(i)),
                        Err(_) => return Err(ParseError::new(t.pos, "integer literal too large")),
                    },
                    None => Ast::Lit(Lit::Dec(dec)),
                }
            }
            Tok::Str(s) => Ast::Lit(Lit::Str(s)),
            Tok::Date(s) => Ast::Lit(Lit::Temporal(
                Temporal::parse_date(&s).ok_or_else(|| ParseError::new(t.pos, "invalid date"))?,
            )),
            Tok::DateTime(s) => Ast::Lit(Lit::Temporal(
                Temporal::parse_datetime(&s)
                    .ok_or_else(|| ParseError::new(t.pos, "invalid date-time"))?,
            )),
            Tok::Time(s) => Ast::Lit(Lit::Temporal(
                Temporal::parse_time(&s).ok_or_else(|| ParseError::new(t.pos, "invalid time"))?,
            )),
            Tok::Env(s) => Ast::Env(s),
            Tok::Dollar(s) => match s.as_str() {
                "this" => Ast::This,
                "index" => Ast::IndexVar,
                _ => Ast::Total,
            },
            Tok::Sym("{") => {
                self.expect_sym("}")?;
                Ast::Empty
            }
            Tok::Sym("(") => {
                let (e, d) = self.expr(0)?;
                self.expect_sym(")")?;
                return Ok((e, d + 1));
            }
            Tok::Ident(ref s) if s == "true" || s == "false" => Ast::Lit(Lit::Bool(s == "true")),
            Tok::Ident(_) | Tok::DelimIdent(_) => {
                self.pos -= 1;
                let (a, arg_depth) = self.invocation(None)?;
                return Ok((a, self.check_depth(arg_depth + 2, t.pos)?));
            }
            other => {
                return Err(ParseError::new(
                    t.pos,
                    format!("unexpected {}", describe(&other)),
                ))
            }
        };
        Ok((ast, 1))
    }

    /// An identifier or a function call, optionally applied to `target`. Also returns
    /// the depth of the deepest argument.
    fn invocation(&mut self, target: Option<Ast>) -> Result<(Ast, u32), ParseError> {
        let t = self.next();
        let (name, delimited) = match t.tok {
            Tok::Ident(s) => (s, false),
            Tok::DelimIdent(s) => (s, true),
            other => {
                return Err(ParseError::new(
                    t.pos,
                    format!("expected an identifier, found {}", describe(&other)),
                ))
            }
        };
        if delimited || self.peek().tok != Tok::Sym("(") {
            let a = match target {
                Some(tg) => Ast::Member(Box::new(tg), name),
                None => Ast::Ident(name),
            };
            return Ok((a, 0));
        }
        // function call
        self.next();
        let mut args = Vec::new();
        let mut arg_depth = 0;
        if self.peek().tok != Tok::Sym(")") {
            loop {
                let (a, d) = self.expr(0)?;
                arg_depth = arg_depth.max(d);
                args.push(a);
                if self.peek().tok == Tok::Sym(",") {
                    self.next();
                    continue;
                }
                break;
            }
        }
        self.expect_sym(")")?;
        let Some((func, min, max)) = Func::lookup(&name) else {
            return Err(ParseError::new(t.pos, format!("unknown function '{name}'")));
        };
        if args.len() < min || args.len() > max {
            return Err(ParseError::new(
                t.pos,
                format!(
                    "function '{name}' takes {} argument(s), got {}",
                    if min == max {
                        min.to_string()
                    } else {
                        format!("{min}..{max}")
                    },
                    args.len()
                ),
            ));
        }
        let target = target.map(Box::new);
        let type_op = match func {
            Func::IsFn => Some(TypeOp::Is),
            Func::AsFn => Some(TypeOp::As),
            Func::OfTypeFn => Some(TypeOp::OfType),
            _ => None,
        };
        if let Some(op) = type_op {
            let spec = match args.pop() {
                Some(Ast::Ident(n)) => TypeSpec {
                    namespace: None,
                    name: n,
                },
                Some(Ast::Member(ns, n)) => match *ns {
                    Ast::Ident(ns) => TypeSpec {
                        namespace: Some(ns),
                        name: n,
                    },
                    _ => return Err(ParseError::new(t.pos, "expected a type name")),
                },
                _ => return Err(ParseError::new(t.pos, "expected a type name")),
            };
            return Ok((Ast::Type { target, op, spec }, arg_depth));
        }
        let mut regex = None;
        if matches!(
            func,
            Func::Matches | Func::MatchesFull | Func::ReplaceMatches
        ) {
            if let Some(Ast::Lit(Lit::Str(p))) = args.first() {
                let pat = if func == Func::MatchesFull {
                    format!("^(?:{p})$")
                } else {
                    p.clone()
                };
                regex = Some(build_regex(&pat).map_err(|e| ParseError::new(t.pos, e))?);
            }
        }
        Ok((
            Ast::Call {
                target,
                func,
                args,
                regex,
            },
            arg_depth,
        ))
    }
}

/// A compiled FHIRPath regular expression: the `regex` crate (linear time) for every pattern it
/// supports, `fancy-regex` (backtracking, bounded) only for those that need look-around or
/// backreferences, which FHIRPath's regex flavour allows and some IGs use (dk-core's CPR rule).
/// Patterns come from loaded definitions, never from a request.
#[derive(Debug, Clone)]
pub enum Pattern {
    Plain(regex::Regex),
    Fancy(Box<fancy_regex::Regex>),
}

impl Pattern {
    pub fn is_match(&self, text: &str) -> Result<bool, String> {
        match self {
            Pattern::Plain(r) => Ok(r.is_match(text)),
            Pattern::Fancy(r) => r
                .is_match(text)
                .map_err(|e| format!("regular expression not evaluated: {e}")),
        }
    }

    pub fn replace_all<'t>(
        &self,
        text: &'t str,
        with: &str,
    ) -> Result<std::borrow::Cow<'t, str>, String> {
        match self {
            Pattern::Plain(r) => Ok(r.replace_all(text, with)),
            Pattern::Fancy(r) => r
                .try_replacen(text, 0, with)
                .map_err(|e| format!("regular expression not evaluated: {e}")),
        }
    }
}

/// Compiles a FHIRPath regular expression (single-line mode: `.` matches newlines).
pub fn build_regex(pattern: &str) -> Result<Pattern, String> {
    match regex::RegexBuilder::new(pattern)
        .dot_matches_new_line(true)
        .size_limit(1 << 20)
        .build()
    {
        Ok(r) => Ok(Pattern::Plain(r)),
        Err(plain) => fancy_regex::RegexBuilder::new(&format!("(?s){pattern}"))
            .backtrack_limit(100_000)
            .delegate_size_limit(1 << 20)
            .build()
            .map(|r| Pattern::Fancy(Box::new(r)))
            .map_err(|_| format!("invalid regular expression: {plain}")),
    }
}
