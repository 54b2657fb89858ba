//! The R4 examples package as raw bytes, for the validation bench and the instruction-count
//! workload (`examples/validation_workload.rs`): every top-level JSON file but the manifest, in
//! archive order, every `stride`th of them.

use std::io::Read as _;
use std::path::Path;

pub fn example_bytes(package: &Path, stride: usize) -> Vec<Vec<u8>> {
    let file = std::fs::File::open(package).expect("package");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    let mut i = 0usize;
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        if name.ends_with(".json")
            && name != "package/package.json"
            && name.matches('/').count() == 1
        {
            if i % stride.max(1) == 0 {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).expect("read");
                out.push(bytes);
            }
            i += 1;
        }
    }
    out
}
