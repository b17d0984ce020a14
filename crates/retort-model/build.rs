//! Embed the default model from `models/` when it is present at build time.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(retort_embedded)");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    for f in ["model.safetensors", "config.json", "tokenizer.json"] {
        println!("cargo::rerun-if-changed={}", dir.join(f).display());
    }
    println!("cargo::rerun-if-changed={}", dir.display());
    if ["model.safetensors", "config.json", "tokenizer.json"]
        .iter()
        .all(|f| dir.join(f).is_file())
    {
        println!("cargo::rustc-cfg=retort_embedded");
    }
}
