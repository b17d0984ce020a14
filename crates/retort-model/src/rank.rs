//! Ranking tools against a query, for catalogues that do not fit into the
//! input (DESIGN.md, "Big catalogues").
//!
//! The query and each tool become sentence embeddings: the mean of the
//! encoder's token states after the first `rank_layers` layers, scaled to
//! unit length (the all-MiniLM-L6-v2 recipe). A tool's score is the cosine
//! between its embedding and the query's. The student's lowest encoder
//! layers are MiniLM's, frozen in training, so their pooled states keep
//! MiniLM's sentence-embedding skill (`retort eval rank` measures it).
//! Embeddings are cached by token sequence, so a catalogue sent with every
//! request is embedded once.

use std::sync::Arc;

use burn::tensor::Device;
use retort_core::Tool;

use crate::cache::EmbedCache;
use crate::error::ModelError;
use crate::fastenc;
use crate::net::{Net, Params};
use crate::render::Tok;

/// Longest text (in word pieces, with `[CLS]` and `[SEP]`) embedded for
/// ranking; the rest of a long description is left out.
pub const RANK_TOKENS: usize = 128;

/// Default size of the embedding cache: about 10,000 tools or queries.
pub const DEFAULT_EMBED_CACHE_BYTES: usize = 16 << 20;

/// An identifier split into words: `get_current_weather`,
/// `getCurrentWeather` and `weather.current` become lower-case words
/// separated by spaces.
pub fn words(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut prev_lower = false;
    for c in name.chars() {
        if c == '_' || c == '.' || c == '-' || c == '/' {
            if !out.ends_with(' ') {
                out.push(' ');
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            out.push(' ');
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        out.extend(c.to_lowercase());
    }
    out.trim().to_string()
}

/// The text a tool is ranked by: its name in words, its description, and
/// its parameters' names in words.
pub fn tool_text(t: &Tool) -> String {
    let mut s = words(&t.name);
    let desc = t.description.trim();
    if !desc.is_empty() {
        s.push_str(": ");
        s.push_str(desc);
    }
    let params: Vec<String> = t.parameters.properties.keys().map(|k| words(k)).collect();
    if !params.is_empty() {
        s.push_str(" (");
        s.push_str(&params.join(", "));
        s.push(')');
    }
    s
}

/// Embeds texts with a model's lowest encoder layers.
pub struct Ranker<'a> {
    pub net: &'a Net,
    pub params: &'a Params,
    pub tok: &'a Tok,
    pub device: &'a Device,
    /// Encoder layers used (at least 1).
    pub layers: usize,
    pub cache: Option<&'a EmbedCache>,
}

impl Ranker<'_> {
    /// The unit-length sentence embedding of `text`.
    pub fn embed(&self, text: &str) -> Result<Arc<Vec<f32>>, ModelError> {
        let mut ids = Vec::with_capacity(RANK_TOKENS);
        ids.push(self.tok.cls);
        ids.extend(
            self.tok
                .ids(text)?
                .into_iter()
                .take(RANK_TOKENS.saturating_sub(2)),
        );
        ids.push(self.tok.sep);
        // The layer count is part of the key: two rankers never share.
        let mut key = ids.clone();
        key.push(u32::MAX - self.layers.min(1 << 20) as u32);
        let make = || fastenc::pooled(self.net, self.params, &ids, self.layers.max(1), self.device);
        match self.cache {
            Some(c) => c.get_or_try_insert(&key, make),
            None => make().map(Arc::new),
        }
    }

    /// The embeddings of tools, in their order.
    pub fn embed_tools(&self, tools: &[Tool]) -> Result<Vec<Arc<Vec<f32>>>, ModelError> {
        tools.iter().map(|t| self.embed(&tool_text(t))).collect()
    }

    /// The cosine between the query and each embedded tool.
    pub fn scores_against(
        &self,
        query: &str,
        tools: &[Arc<Vec<f32>>],
    ) -> Result<Vec<f32>, ModelError> {
        let q = self.embed(query)?;
        Ok(tools
            .iter()
            .map(|e| q.iter().zip(e.iter()).map(|(a, b)| a * b).sum())
            .collect())
    }

    /// The cosine between the query and each tool, in the tools' order.
    pub fn scores(&self, query: &str, tools: &[Tool]) -> Result<Vec<f32>, ModelError> {
        let embedded = self.embed_tools(tools)?;
        self.scores_against(query, &embedded)
    }
}

/// One ranking question: a query and the names of the tools it calls.
#[derive(Debug, Clone)]
pub struct RankCase {
    pub query: String,
    pub gold: Vec<String>,
}

/// How well a scorer ranks a catalogue: recall at each k (the share of
/// gold tools ranked within the top k) and the mean reciprocal rank.
#[derive(Debug, Clone, PartialEq)]
pub struct RankReport {
    /// Gold tools looked up (a case counts once per distinct gold tool
    /// found in the catalogue).
    pub golds: usize,
    pub recall: Vec<(usize, f64)>,
    pub mrr: f64,
}

/// The rank (1 = first) of tool `g` under `scores`, with ties broken as
/// [`crate::render::render_ranked`] breaks them: the earlier tool ranks
/// higher.
pub fn rank_of(scores: &[f32], g: usize) -> usize {
    let Some(&sg) = scores.get(g) else {
        return scores.len() + 1;
    };
    1 + scores
        .iter()
        .enumerate()
        .filter(|&(j, &s)| s > sg || (s == sg && j < g))
        .count()
}

/// Rank `catalogue` for every case with `score(query)` (one score per
/// catalogue tool) and measure where the gold tools land. Gold names not in
/// the catalogue are skipped.
pub fn evaluate_ranking(
    catalogue: &[Tool],
    cases: &[RankCase],
    ks: &[usize],
    score: &mut dyn FnMut(&str) -> Result<Vec<f32>, ModelError>,
) -> Result<RankReport, ModelError> {
    let mut hits = vec![0usize; ks.len()];
    let (mut golds, mut rr) = (0usize, 0f64);
    for case in cases {
        let wanted: Vec<usize> = catalogue
            .iter()
            .enumerate()
            .filter(|(_, t)| case.gold.contains(&t.name))
            .map(|(i, _)| i)
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let scores = score(&case.query)?;
        if scores.len() != catalogue.len() {
            return Err(ModelError::InvalidRequest(format!(
                "{} scores for a catalogue of {} tools",
                scores.len(),
                catalogue.len()
            )));
        }
        for g in wanted {
            let r = rank_of(&scores, g);
            golds += 1;
            rr += 1.0 / r as f64;
            for (h, &k) in hits.iter_mut().zip(ks) {
                *h += (r <= k) as usize;
            }
        }
    }
    let share = |n: usize| {
        if golds == 0 {
            0.0
        } else {
            n as f64 / golds as f64
        }
    };
    Ok(RankReport {
        golds,
        recall: ks.iter().zip(&hits).map(|(&k, &h)| (k, share(h))).collect(),
        mrr: if golds == 0 { 0.0 } else { rr / golds as f64 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str) -> Tool {
        Tool::parse(
            &serde_json::json!({"name": name, "description": "", "parameters": {"type": "object", "properties": {}}}),
            retort_core::ToolFormat::Auto,
        )
        .expect("tool")
    }

    #[test]
    fn ranks_break_ties_towards_the_earlier_tool() {
        let s = [0.5, 0.9, 0.5, 0.1];
        assert_eq!(rank_of(&s, 1), 1);
        assert_eq!(rank_of(&s, 0), 2);
        assert_eq!(rank_of(&s, 2), 3);
        assert_eq!(rank_of(&s, 3), 4);
        assert_eq!(rank_of(&s, 9), 5);
    }

    #[test]
    fn ranking_report_counts_recall_and_reciprocal_rank() {
        let cat = vec![tool("a"), tool("b"), tool("c")];
        let cases = vec![
            RankCase {
                query: "first".into(),
                gold: vec!["a".into()],
            },
            RankCase {
                query: "second".into(),
                gold: vec!["c".into(), "zzz".into()],
            },
            RankCase {
                query: "none".into(),
                gold: vec!["zzz".into()],
            },
        ];
        // "a" ranks 1st for the first query, "c" 3rd for the second.
        let mut score = |_: &str| -> Result<Vec<f32>, ModelError> { Ok(vec![3.0, 2.0, 1.0]) };
        let r = evaluate_ranking(&cat, &cases, &[1, 2, 3], &mut score).expect("report");
        assert_eq!(r.golds, 2);
        assert_eq!(r.recall, vec![(1, 0.5), (2, 0.5), (3, 1.0)]);
        assert!((r.mrr - (1.0 + 1.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn identifiers_become_words() {
        assert_eq!(words("get_current_weather"), "get current weather");
        assert_eq!(words("getCurrentWeather"), "get current weather");
        assert_eq!(words("weather.current"), "weather current");
        assert_eq!(words("HTTPServer__start"), "httpserver start");
        assert_eq!(words("_x_"), "x");
        assert_eq!(words("sha256Sum"), "sha256 sum");
    }

    #[test]
    fn tool_text_names_description_and_parameters() {
        let t = Tool::parse(
            &serde_json::json!({
                "name": "get_weather",
                "description": "Current weather of a city.",
                "parameters": {"type": "object", "properties": {
                    "city": {"type": "string"}, "unitSystem": {"type": "string"}}}
            }),
            retort_core::ToolFormat::Auto,
        )
        .expect("tool");
        let s = tool_text(&t);
        assert!(
            s.starts_with("get weather: Current weather of a city. ("),
            "{s}"
        );
        assert!(s.contains("city") && s.contains("unit system"), "{s}");
    }
}
