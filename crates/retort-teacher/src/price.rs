//! Per-model prices (USD per million tokens) for the cost estimate.
//!
//! Sources (see the crate README for the full citation):
//! - Gemini: <https://ai.google.dev/gemini-api/docs/pricing>, standard paid
//!   tier, prompts up to 200k tokens, as transcribed on 2026-10-07
//!   (`api-evangelist/deepmind`, `plans/deepmind-plans-pricing.yml`); output
//!   prices of the 2.5 family that transcript omits are from secondary pages
//!   dated July 2026.
//! - OpenAI GPT-5.x: <https://developers.openai.com/api/docs/pricing>,
//!   standard tier, as transcribed on 2026-05-04 (`api-evangelist/openai`,
//!   `plans/openai-plans-pricing.yml`). GPT-4.x: secondary pages, 2026-05.
//!
//! Prices change; `--price-input`/`--price-output` override the table.

/// Input and output price of a model, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    /// Output tokens, thinking tokens included.
    pub output_per_mtok: f64,
}

impl Price {
    /// Cost in USD of one exchange.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_mtok + output_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

/// (model-name prefix, input, output). The longest matching prefix wins.
const TABLE: &[(&str, f64, f64)] = &[
    // Gemini Developer API, standard tier (2026-10-07).
    ("gemini-3.8-flash", 0.75, 3.75), // promotional price through 2026-12-31
    ("gemini-3.5-flash-lite", 0.30, 2.50),
    ("gemini-3.5-flash", 1.50, 9.00),
    ("gemini-3.1-pro", 2.00, 12.00),
    ("gemini-2.5-pro", 1.25, 10.00),
    ("gemini-2.5-flash-lite", 0.10, 0.40),
    ("gemini-2.5-flash", 0.30, 2.50),
    // OpenAI, standard tier (2026-05-04).
    ("gpt-5.5-pro", 30.00, 180.00),
    ("gpt-5.5", 5.00, 30.00),
    ("gpt-5.4-nano", 0.20, 1.25),
    ("gpt-5.4-mini", 0.75, 4.50),
    ("gpt-5.4", 2.50, 15.00),
    // OpenAI GPT-4.x (secondary sources, 2026-05).
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4o", 2.50, 10.00),
];

/// The price of `model` from the table, matching the longest prefix of the
/// lower-cased name (a leading `models/` is ignored).
pub fn price_for(model: &str) -> Option<Price> {
    let m = model.trim().to_ascii_lowercase();
    let m = m.strip_prefix("models/").unwrap_or(&m);
    TABLE
        .iter()
        .filter(|(prefix, _, _)| m.starts_with(prefix))
        .max_by_key(|(prefix, _, _)| prefix.len())
        .map(|&(_, i, o)| Price {
            input_per_mtok: i,
            output_per_mtok: o,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let p = price_for("gpt-5.4-mini-2026-03-01").expect("known");
        assert_eq!(p.input_per_mtok, 0.75);
        assert_eq!(price_for("gpt-5.4").map(|p| p.output_per_mtok), Some(15.0));
        assert_eq!(
            price_for("models/gemini-2.5-flash-lite").map(|p| p.input_per_mtok),
            Some(0.10)
        );
        assert_eq!(
            price_for("Gemini-2.5-Flash").map(|p| p.input_per_mtok),
            Some(0.30)
        );
        assert_eq!(price_for("llama3.1:8b"), None);
    }

    #[test]
    fn cost_arithmetic() {
        let p = Price {
            input_per_mtok: 0.30,
            output_per_mtok: 2.50,
        };
        let c = p.cost(1_000_000, 100_000);
        assert!((c - 0.55).abs() < 1e-12, "{c}");
    }
}
