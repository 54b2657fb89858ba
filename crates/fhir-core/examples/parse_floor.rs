//! The parse floor of issue #17: read every `.json` file under the folders (or files) named on
//! the command line and parse each into `serde_json::Value`, nothing else, as a whole process.
//! `scripts/validate-speed.sh` times it next to `sektorbro validate --format json` over the same
//! files; the CLI's goal is at most twice this program's wall and user CPU time.
//!
//! ```text
//! cargo build --release -p fhir-core --example parse_floor
//! target/release/examples/parse_floor FOLDER...
//! ```

use std::path::PathBuf;

/// Every `.json` file under `input` (recursively), or `input` itself. The order does not matter
/// here (every file is parsed once either way), so none is imposed.
fn collect(input: PathBuf, files: &mut Vec<PathBuf>) {
    match std::fs::read_dir(&input) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir() || p.extension().is_some_and(|x| x == "json"))
            .for_each(|p| collect(p, files)),
        Err(_) => files.push(input),
    }
}

fn main() {
    let mut files = Vec::new();
    for a in std::env::args_os().skip(1) {
        collect(PathBuf::from(a), &mut files);
    }
    let (mut objects, mut failed, mut bytes) = (0usize, 0usize, 0usize);
    for f in &files {
        let Ok(b) = std::fs::read(f) else {
            failed += 1;
            continue;
        };
        bytes += b.len();
        match serde_json::from_slice::<serde_json::Value>(&b) {
            Ok(v) => objects += usize::from(std::hint::black_box(v).is_object()),
            Err(_) => failed += 1,
        }
    }
    println!(
        "{} file(s), {:.1} MB: {objects} JSON object(s), {failed} unreadable",
        files.len(),
        bytes as f64 / 1e6
    );
}
