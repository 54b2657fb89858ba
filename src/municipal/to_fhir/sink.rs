//! Where the mapping writes: JSON text written in place ([`Text`], what `sektorbro translate`
//! and the benchmark produce) or a `serde_json::Value` ([`Tree`], what the engine takes). One
//! mapping, two outputs, the same JSON.

use super::*;

/// Where the mapping writes: JSON text ([`Text`]) or a `serde_json::Value` ([`Tree`]). One
/// mapping, two outputs: the text is what `sektorbro translate` and the benchmark produce (no
/// `Value` tree to build), the tree what the engine takes.
pub(super) trait Sink {
    fn open(&mut self);
    fn close(&mut self);
    fn open_list(&mut self);
    fn close_list(&mut self);
    /// A member name: always one of our literals.
    fn key(&mut self, k: &str);
    fn str(&mut self, s: &str);
    /// A string made of parts that need no escaping (literals, UUIDs).
    fn plain(&mut self, parts: &[&str]);
    fn number(&mut self, n: &Number);
    fn uint(&mut self, n: u32);
    fn bool(&mut self, b: bool);

    /// `"k":"v"`.
    fn kv(&mut self, k: &str, v: &str) {
        self.key(k);
        self.str(v);
    }
}

/// JSON text written in place, byte for byte what `serde_json::to_string` writes for the
/// [`Tree`] of the same mapping (`tests/municipal.rs` compares the two).
pub(super) struct Text {
    pub(super) b: String,
    /// Whether the next value or key needs a comma before it.
    pub(super) comma: bool,
}

impl Text {
    fn sep(&mut self) {
        if self.comma {
            self.b.push(',');
        }
    }
}

/// Whether any byte of `bytes` is `"`, `\\` or a control character (below 0x20): eight bytes
/// at a time, as one word, since almost every string has none and most are short (a per-byte
/// loop cost half the time of writing the Bundle).
pub(super) fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    // `zero(x)` is not 0 exactly when some byte of `x` is 0: a borrow only ever marks bytes
    // above a byte that is 0 itself, so the word as a whole is never wrongly marked.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let marked = |c: &[u8]| {
        let mut w = [b'a'; 8];
        w[..c.len()].copy_from_slice(c);
        let w = u64::from_le_bytes(w);
        // Bytes below 0x20 (exact for the word, as 0x20 < 0x80), and bytes `"` or `\\`.
        (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
            | zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
    };
    if bytes.len() <= 8 {
        // Padded with a byte that needs no escaping.
        return marked(bytes) != 0;
    }
    let chunks = bytes.chunks_exact(8);
    // The last (partial) chunk as the last eight bytes, overlapping the chunk before: no
    // byte-by-byte tail.
    let last = &bytes[bytes.len() - 8..];
    chunks.fold(marked(last), |found, c| found | marked(c)) != 0
}

/// `s` as a JSON string, escaped as serde_json escapes: `"` and `\\` and the control
/// characters, the common ones by letter, the others as `\u00xx`.
pub(super) fn write_escaped(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        out.push_str(s);
    } else {
        let mut from = 0;
        for (i, &c) in bytes.iter().enumerate() {
            let escaped = match c {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            // Only ASCII bytes are escaped, so `i` is always a character boundary.
            out.push_str(&s[from..i]);
            if escaped.is_empty() {
                let _ = write!(out, "\\u{:04x}", c);
            } else {
                out.push_str(escaped);
            }
            from = i + 1;
        }
        out.push_str(&s[from..]);
    }
    out.push('"');
}

impl Sink for Text {
    fn open(&mut self) {
        self.sep();
        self.b.push('{');
        self.comma = false;
    }

    fn close(&mut self) {
        self.b.push('}');
        self.comma = true;
    }

    fn open_list(&mut self) {
        self.sep();
        self.b.push('[');
        self.comma = false;
    }

    fn close_list(&mut self) {
        self.b.push(']');
        self.comma = true;
    }

    fn key(&mut self, k: &str) {
        self.sep();
        self.b.push('"');
        self.b.push_str(k);
        self.b.push_str("\":");
        self.comma = false;
    }

    fn str(&mut self, s: &str) {
        self.sep();
        write_escaped(&mut self.b, s);
        self.comma = true;
    }

    fn plain(&mut self, parts: &[&str]) {
        self.sep();
        self.b.push('"');
        for p in parts {
            self.b.push_str(p);
        }
        self.b.push('"');
        self.comma = true;
    }

    fn number(&mut self, n: &Number) {
        self.sep();
        // With arbitrary_precision, a Number displays the digits it was read from, as
        // serde_json writes it.
        let _ = write!(self.b, "{n}");
        self.comma = true;
    }

    fn uint(&mut self, n: u32) {
        self.sep();
        let _ = write!(self.b, "{n}");
        self.comma = true;
    }

    fn bool(&mut self, b: bool) {
        self.sep();
        self.b.push_str(if b { "true" } else { "false" });
        self.comma = true;
    }
}

/// The same as a `Value`: open objects and lists on a stack, each with the key it will be
/// stored under.
#[derive(Default)]
pub(super) struct Tree {
    pub(super) stack: Vec<(Value, Option<String>)>,
    pub(super) key: Option<String>,
    pub(super) root: Value,
}

impl Tree {
    fn attach(&mut self, v: Value) {
        match self.stack.last_mut() {
            Some((Value::Object(m), _)) => {
                m.insert(self.key.take().unwrap_or_default(), v);
            }
            Some((Value::Array(a), _)) => a.push(v),
            _ => self.root = v,
        }
    }
}

impl Sink for Tree {
    fn open(&mut self) {
        let k = self.key.take();
        self.stack.push((Value::Object(Map::new()), k));
    }

    fn close(&mut self) {
        if let Some((v, k)) = self.stack.pop() {
            self.key = k;
            self.attach(v);
        }
    }

    fn open_list(&mut self) {
        let k = self.key.take();
        self.stack.push((Value::Array(Vec::new()), k));
    }

    fn close_list(&mut self) {
        self.close();
    }

    fn key(&mut self, k: &str) {
        self.key = Some(k.to_string());
    }

    fn str(&mut self, s: &str) {
        self.attach(Value::String(s.to_string()));
    }

    fn plain(&mut self, parts: &[&str]) {
        self.attach(Value::String(parts.concat()));
    }

    fn number(&mut self, n: &Number) {
        self.attach(Value::Number(n.clone()));
    }

    fn uint(&mut self, n: u32) {
        self.attach(Value::from(n));
    }

    fn bool(&mut self, b: bool) {
        self.attach(Value::Bool(b));
    }
}
