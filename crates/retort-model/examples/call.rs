//! Decode one request with a model directory and print the prediction.
//!
//! `cargo run --release -p retort-model --example call -- MODEL_DIR TOOLS.json "PROMPT"`

use retort_core::{CallOptions, Tool, ToolCaller, ToolFormat};
use retort_model::Model;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("RETORT_TRACE").is_some() {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(tools), Some(prompt)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: call MODEL_DIR TOOLS.json PROMPT");
        std::process::exit(2);
    };
    let model = Model::load(std::path::Path::new(dir))?;
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tools)?)?;
    let tools = Tool::parse_many(&v, ToolFormat::Auto)?;
    let t = std::time::Instant::now();
    let p = model.call(prompt, &tools, &CallOptions::default())?;
    println!("{}", serde_json::to_string_pretty(&p)?);
    eprintln!("{:.1} ms", t.elapsed().as_secs_f64() * 1000.0);
    Ok(())
}
