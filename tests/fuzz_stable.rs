//! The fuzz targets on a stable toolchain (nightly, and so cargo-fuzz, is not always at hand):
//! a small mutational fuzzer over the same entry points (`fuzz/fuzz_targets/entries.rs`). No
//! coverage feedback, so it relies on seeds (`fuzz/seeds/TARGET/`, tracked; cargo-fuzz keeps its growing corpus in the ignored `fuzz/corpus/`), a dictionary per target and
//! many cheap mutations. Deterministic for a given `FUZZ_SEED`, which is printed, so a crash
//! (also a stack overflow, which aborts the process) can be replayed; a panicking input is
//! written to `fuzz/artifacts/TARGET/`.
//!
//! Ignored in `cargo test`; run one target with `scripts/fuzz-stable.sh TARGET SECONDS`.

#[path = "../fuzz/fuzz_targets/entries.rs"]
mod entries;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// xorshift64*: enough randomness for mutations, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = &[
    0, 1, 0x1b, 0x7f, 0x80, 0xff, b'\t', b'\n', b'\\', b'"', b'<', b'>',
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], dict: &[&[u8]]) {
    for _ in 0..1 + rng.below(6) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                input.drain(i..i + n);
            }
            4 if len > 0 => {
                // repeat a chunk: deep nesting, long runs
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let chunk = input[i..i + n].to_vec();
                let most = if rng.below(50) == 0 { 2000 } else { 8 };
                let times = 1 + rng.below(most);
                for _ in 0..times {
                    input.splice(i..i, chunk.iter().copied());
                }
            }
            5 | 6 if !dict.is_empty() => {
                let word = dict[rng.below(dict.len())];
                let i = rng.below(len + 1);
                input.splice(i..i, word.iter().copied());
            }
            7 if !corpus.is_empty() => {
                // splice: our head, another's tail
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            _ if len > 1 => {
                let i = rng.below(len);
                let j = rng.below(len);
                input.swap(i, j);
            }
            _ => input.push(rng.next() as u8),
        }
    }
    input.truncate(64 * 1024);
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn seeds(target: &str, builtin: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = builtin.iter().map(|s| s.to_vec()).collect();
    if let Ok(dir) = std::fs::read_dir(repo().join("fuzz/seeds").join(target)) {
        let mut files: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        files.sort();
        out.extend(files.iter().filter_map(|f| std::fs::read(f).ok()));
    }
    out
}

/// Run `f` on mutated inputs for `FUZZ_SECONDS` (default 10).
fn fuzz(target: &str, f: fn(&[u8]), builtin: &[&[u8]], dict: &[&[u8]]) {
    let secs: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("fuzz {target}: FUZZ_SEED={seed} for {secs} s");
    let mut rng = Rng(seed);
    let mut corpus = seeds(target, builtin);
    let seeded = corpus.len();
    for s in &corpus {
        f(s);
    }
    // panics are reported here, once, with the input saved
    std::panic::set_hook(Box::new(|_| {}));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut runs: u64 = 0;
    let mut failure = None;
    while Instant::now() < deadline {
        for _ in 0..64 {
            let mut input = corpus[rng.below(corpus.len())].clone();
            mutate(&mut rng, &mut input, &corpus, dict);
            runs += 1;
            if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(&input))) {
                failure = Some((input, e));
                break;
            }
            // keep some mutants, so mutations compound
            if rng.below(200) == 0 && corpus.len() < 20_000 {
                corpus.push(input);
            }
        }
        if failure.is_some() {
            break;
        }
    }
    let _ = std::panic::take_hook();
    eprintln!(
        "fuzz {target}: {runs} runs in {:.0} s, corpus {seeded} seeds + {} kept mutants",
        secs as f64
            - deadline
                .saturating_duration_since(Instant::now())
                .as_secs_f64(),
        corpus.len() - seeded
    );
    if let Some((input, e)) = failure {
        let dir = repo().join("fuzz/artifacts").join(target);
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("crash-{seed}-{runs}"));
        let _ = std::fs::write(&file, &input);
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("{target} panicked on {} ({msg})", file.display());
    }
}

#[test]
#[ignore = "a fuzz run: scripts/fuzz-stable.sh json_body SECONDS"]
fn json_body() {
    fuzz(
        "json_body",
        entries::json_body,
        &[
            br#"{"resourceType":"Patient","name":[{"family":"a\u0000b","given":["x"]}],"active":true}"#,
            br#"{"a":1,"a":2}"#,
            br#"{"n":[1e400,-0.0,1.50,18446744073709551616],"s":"\\u0000\"\t"}"#,
        ],
        &[
            b"{", b"}", b"[", b"]", b"\"", b":", b",", b"\\u0000", b"\\u001f", b"\\\\", b"\\n",
            b"\"resourceType\"", b"1e999", b"-0", b"null", b"true", b"\"$serde_json::private::Number\"",
        ],
    );
}

#[test]
#[ignore = "a fuzz run: scripts/fuzz-stable.sh search_query SECONDS"]
fn search_query() {
    fuzz(
        "search_query",
        entries::search_query,
        &[
            b"name=a&birthdate=ge2020-01-01&_count=10&_sort=-_lastUpdated",
            b"identifier=urn:oid:1.2|x,y&subject:Patient.name:exact=A&_include=CarePlan:subject",
            b"_has:Observation:patient:code=1234&_elements=id,name&_summary=count&_total=accurate",
        ],
        &[
            b"&",
            b"=",
            b",",
            b"|",
            b":",
            b"%00",
            b"%2C",
            b"_include",
            b"_revinclude",
            b":exact",
            b":missing",
            b"ge",
            b"lt",
            b"eq",
            b"ap",
            b"_has:",
            b".",
            b"*",
            b"$",
            b"\\,",
            b"_sort=",
            b"_count=",
            b"_id=",
            b"subject:",
            b"code:text=",
        ],
    );
}

#[test]
#[ignore = "a fuzz run: scripts/fuzz-stable.sh narrative SECONDS"]
fn narrative() {
    fuzz(
        "narrative",
        entries::narrative,
        &[
            br#"<div xmlns="http://www.w3.org/1999/xhtml"><p>Hej <b>Jens</b><br/></p><a href="https://x">x</a></div>"#,
            br#"<p style="color: red">x</p><img src="data:image/png;base64,AA==" alt=""/>"#,
            br#"<table border="0"><tr><td colspan="2">x</td></tr></table><!-- note -->"#,
        ],
        &[
            b"<", b">", b"/>", b"</", b"<a href=\"", b"\"", b"'", b"javascript:", b"&#106;", b"&#x6A;",
            b"&#9;", b"&lt;", b"&amp;", b"<!--", b"-->", b"--!>", b"<![CDATA[", b"]]>", b"<?x ?>",
            b"<!DOCTYPE", b" onerror=\"", b"<script>", b"<svg", b" style=\"", b"url(", b"data:",
            b"xmlns:x=\"http://www.w3.org/1999/xhtml\"", b"<x:", b"xml:lang=\"", b"<img src=\"",
        ],
    );
}

#[test]
#[ignore = "a fuzz run: scripts/fuzz-stable.sh jwt SECONDS"]
fn jwt() {
    fuzz(
        "jwt",
        entries::jwt,
        &[
            b"{\"alg\":\"ES256\",\"kid\":\"k\"}\xff{\"iss\":\"https://issuer.test\",\"sub\":\"x\",\"exp\":0,\"aud\":\"https://gw.test/fhir\",\"scope\":\"system/*.rs\"}",
            b"{\"alg\":\"none\"}\xff{}",
            b"eyJhbGciOiJFUzI1NiJ9.e30.AAAA",
        ],
        &[
            b"\xff", b"\"alg\"", b"\"ES256\"", b"\"RS256\"", b"\"none\"", b"\"HS256\"", b"\"kid\"",
            b"\"exp\"", b"\"nbf\"", b"\"iat\"", b"\"aud\"", b"\"iss\"", b"\"sub\"", b"\"scope\"",
            b"1e23", b"-1", b"[", b"]", b"{", b"}", b",", b":", b"\"https://issuer.test\"",
            b"\"https://gw.test/fhir\"", b".", b"\"client_id\"",
        ],
    );
}

#[test]
#[ignore = "a fuzz run: scripts/fuzz-stable.sh cert_subject SECONDS"]
fn cert_subject() {
    fuzz(
        "cert_subject",
        entries::cert_subject,
        &[
            b"CN=haderslev-ehr,O=Haderslev Kommune,C=DK",
            b"CN=a\\,b+OU=x,O=\"quoted\",1.2.3.4=#0403414243",
        ],
        &[
            b"CN=",
            b"O=",
            b"OU=",
            b"C=",
            b",",
            b"+",
            b"\\",
            b"\"",
            b"#",
            b"=",
            b"\x30\x82",
            b"\x06\x03\x55\x04\x03",
            b"\x0c",
            b"\x13",
            b"\x31",
        ],
    );
}
