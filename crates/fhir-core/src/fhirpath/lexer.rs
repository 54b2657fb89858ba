//! Tokeniser for FHIRPath source text.

use super::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// Plain identifier (may be a keyword such as `and`, decided by the parser).
    Ident(String),
    /// `` `delimited` `` identifier (never a keyword).
    DelimIdent(String),
    Str(String),
    /// Integer or decimal literal text.
    Num(String),
    /// `@` literal body without the `@`.
    Date(String),
    DateTime(String),
    Time(String),
    /// `%name`, `%'name'` or ``%`name` ``.
    Env(String),
    /// `$this`, `$index`, `$total`.
    Dollar(String),
    Sym(&'static str),
    Eof,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub pos: usize,
}

const SYMS: [&str; 22] = [
    "<=", ">=", "!=", "!~", "(", ")", "[", "]", "{", "}", ".", ",", "+", "-", "*", "/", "&", "|",
    "=", "~", "<", ">",
];

pub fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let start = i;
            i += 2;
            loop {
                if i + 1 >= b.len() {
                    return Err(ParseError::new(start, "unterminated comment"));
                }
                if b[i] == b'*' && b[i + 1] == b'/' {
                    i += 2;
                    break;
                }
                i += 1;
            }
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(src[start..i].to_string()),
                pos: start,
            });
            continue;
        }
        if c.is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.push(Token {
                tok: Tok::Num(src[start..i].to_string()),
                pos: start,
            });
            continue;
        }
        match c {
            b'\'' => {
                let (s, n) = quoted(src, i, b'\'')?;
                i = n;
                out.push(Token {
                    tok: Tok::Str(s),
                    pos: start,
                });
            }
            b'`' => {
                let (s, n) = quoted(src, i, b'`')?;
                i = n;
                out.push(Token {
                    tok: Tok::DelimIdent(s),
                    pos: start,
                });
            }
            b'%' => {
                i += 1;
                let name = match b.get(i) {
                    Some(b'\'') | Some(b'`') | Some(b'"') => {
                        let q = b[i];
                        let (s, n) = quoted(src, i, q)?;
                        i = n;
                        s
                    }
                    Some(ch) if ch.is_ascii_alphabetic() || *ch == b'_' => {
                        let s = i;
                        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                            i += 1;
                        }
                        src[s..i].to_string()
                    }
                    _ => return Err(ParseError::new(start, "expected a name after '%'")),
                };
                out.push(Token {
                    tok: Tok::Env(name),
                    pos: start,
                });
            }
            b'$' => {
                i += 1;
                let s = i;
                while i < b.len() && b[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let name = &src[s..i];
                if !matches!(name, "this" | "index" | "total") {
                    return Err(ParseError::new(start, format!("unknown variable ${name}")));
                }
                out.push(Token {
                    tok: Tok::Dollar(name.to_string()),
                    pos: start,
                });
            }
            b'@' => {
                let (tok, n) = date_literal(src, i)?;
                i = n;
                out.push(Token { tok, pos: start });
            }
            _ => {
                let rest = &src[i..];
                let Some(sym) = SYMS.iter().find(|s| rest.starts_with(**s)) else {
                    let ch = rest.chars().next().unwrap_or('?');
                    return Err(ParseError::new(
                        start,
                        format!("unexpected character '{ch}'"),
                    ));
                };
                i += sym.len();
                out.push(Token {
                    tok: Tok::Sym(sym),
                    pos: start,
                });
            }
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: src.len(),
    });
    Ok(out)
}

/// Reads a quoted string or delimited identifier starting at `start` (the quote).
fn quoted(src: &str, start: usize, q: u8) -> Result<(String, usize), ParseError> {
    let b = src.as_bytes();
    let mut i = start + 1;
    let mut out = String::new();
    let mut seg = i;
    while i < b.len() {
        let c = b[i];
        if c == q {
            out.push_str(&src[seg..i]);
            return Ok((out, i + 1));
        }
        if c == b'\\' {
            out.push_str(&src[seg..i]);
            let Some(&e) = b.get(i + 1) else {
                break;
            };
            match e {
                b'\'' => out.push('\''),
                b'"' => out.push('"'),
                b'`' => out.push('`'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let hex = src
                        .get(i + 2..i + 6)
                        .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                        .ok_or_else(|| ParseError::new(i, "invalid \\u escape"))?;
                    let code = u32::from_str_radix(hex, 16)
                        .map_err(|_| ParseError::new(i, "invalid \\u escape"))?;
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    i += 4;
                }
                _ => return Err(ParseError::new(i, "invalid escape sequence")),
            }
            i += 2;
            seg = i;
            continue;
        }
        i += 1;
    }
    Err(ParseError::new(start, "unterminated string or identifier"))
}

fn digits(b: &[u8], i: usize, n: usize) -> bool {
    i + n <= b.len() && b[i..i + n].iter().all(u8::is_ascii_digit)
}

/// `@` literals: dates, date-times and times. Validity of the fields is checked by
/// the parser when it builds the value.
fn date_literal(src: &str, at: usize) -> Result<(Tok, usize), ParseError> {
    let b = src.as_bytes();
    let mut i = at + 1;
    let time_part = |mut i: usize| -> usize {
        // hh[:mm[:ss[.fff]]]
        if !digits(b, i, 2) {
            return i;
        }
        i += 2;
        if b.get(i) == Some(&b':') && digits(b, i + 1, 2) {
            i += 3;
            if b.get(i) == Some(&b':') && digits(b, i + 1, 2) {
                i += 3;
                if b.get(i) == Some(&b'.') && digits(b, i + 1, 1) {
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
        }
        i
    };
    if b.get(i) == Some(&b'T') {
        let s = i + 1;
        let e = time_part(s);
        if e == s {
            return Err(ParseError::new(at, "invalid time literal"));
        }
        return Ok((Tok::Time(src[s..e].to_string()), e));
    }
    if !digits(b, i, 4) {
        return Err(ParseError::new(at, "invalid date literal"));
    }
    let s = i;
    i += 4;
    if b.get(i) == Some(&b'-') && digits(b, i + 1, 2) {
        i += 3;
        if b.get(i) == Some(&b'-') && digits(b, i + 1, 2) {
            i += 3;
        }
    }
    if b.get(i) != Some(&b'T') {
        return Ok((Tok::Date(src[s..i].to_string()), i));
    }
    i += 1;
    i = time_part(i);
    // timezone
    if b.get(i) == Some(&b'Z') {
        i += 1;
    } else if matches!(b.get(i), Some(b'+') | Some(b'-'))
        && digits(b, i + 1, 2)
        && b.get(i + 3) == Some(&b':')
        && digits(b, i + 4, 2)
    {
        i += 6;
    }
    Ok((Tok::DateTime(src[s..i].to_string()), i))
}
