//! `retort info`: a model's configuration and parameter count by part.

use std::path::PathBuf;

use anyhow::bail;
use retort_model::net::Layout;
use retort_model::{Model, ModelConfig};

/// The parameter budget of the student (DESIGN.md).
pub const MAX_PARAMS: usize = 26_500_000;

/// Describe a model: configuration and parameter count by part.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Model directory; without it, the embedded default model (or, in a
    /// build without one, the default architecture).
    #[arg(long)]
    model: Option<PathBuf>,
}

pub fn run(a: InfoArgs) -> anyhow::Result<()> {
    let (cfg, source) = match &a.model {
        Some(dir) => (Model::load(dir)?.cfg, dir.display().to_string()),
        None => match Model::embedded() {
            Ok(m) => (m.cfg, "embedded default model".to_string()),
            Err(e) => {
                println!("note: {e}");
                (
                    ModelConfig::minilm(vec![0; 2048]),
                    "default architecture (no weights)".to_string(),
                )
            }
        },
    };
    let layout = Layout::new(&cfg);
    println!("model: {source}");
    println!(
        "encoder: {} layers, d={}, {} heads, FFN {}, vocabulary {}, max {} input tokens",
        cfg.enc_layers, cfg.hidden, cfg.heads, cfg.enc_ffn, cfg.vocab_size, cfg.max_positions
    );
    println!(
        "decoder: {} layers, d={}, FFN {}, max {} steps; generation vocabulary {} word pieces + pointers",
        cfg.dec_layers,
        cfg.hidden,
        cfg.dec_ffn,
        cfg.max_steps,
        cfg.gen_vocab.len()
    );
    let masked = cfg.masked_layers();
    if masked >= cfg.enc_layers {
        println!(
            "encoder attention: block mask (tools attend only to themselves; tool encodings cached)"
        );
    } else if masked > 0 {
        println!(
            "encoder attention: block mask in layers 1-{masked} (their tool encodings cached), full in layers {}-{}",
            masked + 1,
            cfg.enc_layers
        );
    } else {
        println!("encoder attention: full");
    }
    if cfg.integer_products {
        let eight: Vec<String> = cfg
            .eight_bit_activations
            .iter()
            .filter_map(|m| serde_json::to_value(m).ok())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let products = if eight.is_empty() {
            "int8 weights, 16-bit activations".to_string()
        } else if retort_model::qgemm::eight_bit_fast() {
            format!(
                "int8 weights, 8-bit activations into {} (AVX-512 VNNI), 16-bit elsewhere",
                eight.join(", ")
            )
        } else {
            format!(
                "int8 weights, 16-bit activations (the 8-bit ones set for {} need AVX-512 VNNI, which this CPU lacks)",
                eight.join(", ")
            )
        };
        println!("encoder products: {products}");
    }
    println!("confidence temperature: {}", cfg.confidence_temperature);
    println!("parameters:");
    for (part, n) in layout.count_by_part() {
        println!("  {:<11} {:>11}", part.as_str(), group(n));
    }
    let total = layout.count();
    println!(
        "  {:<11} {:>11}  (budget {})",
        "total",
        group(total),
        group(MAX_PARAMS)
    );
    if total > MAX_PARAMS {
        bail!("{total} parameters exceed the budget of {MAX_PARAMS}");
    }
    Ok(())
}

fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
