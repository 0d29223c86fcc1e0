//! Lists the conformance scenarios (`../tests/conformance/scenarios/*.json`) for
//! `tests/conformance.rs`, which runs in a browser and cannot read the folder itself: writes
//! `$OUT_DIR/conformance_scenarios.rs`, a `SCENARIOS` slice of (file name, contents) built with
//! `include_str!`. Without the folder (the crate outside its workspace) the slice is empty and
//! that test fails saying so; the library never uses it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let folder = manifest.join("../tests/conformance/scenarios");
    println!("cargo:rerun-if-changed={}", folder.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = String::from("/// Every scenario file: (file name, contents).\n");
    out.push_str("pub(crate) const SCENARIOS: &[(&str, &str)] = &[\n");
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    std::fs::write(Path::new(&out_dir).join("conformance_scenarios.rs"), out)
        .expect("OUT_DIR is writable");
}
