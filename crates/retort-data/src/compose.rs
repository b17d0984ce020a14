//! Composition: new multi-call examples from pairs or triples of single-call
//! examples of the same split.
//!
//! The public corpora call the same function several times in one request
//! in about 1% of their examples, while users often ask for "the weather in
//! Paris and in London". Composition joins the queries of two to four
//! single-call examples into one request and concatenates their calls:
//!
//! - *same function*: examples whose call uses the same tool (the same name
//!   and definition), e.g. two value-substituted variants of one example;
//!   the tool list is the first example's;
//! - *different functions*: examples with different tools; the tool lists
//!   are merged (a name defined differently by two examples is skipped).
//!
//! Every composite is validated; the draw is seeded, so the output is the
//! same for the same seed.

use std::collections::{BTreeMap, HashSet};

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use retort_core::{Example, Tool, validate_all};

/// Knobs of [`compose`].
#[derive(Debug, Clone)]
pub struct ComposeConfig {
    /// Composites to make, as a fraction of the input examples.
    pub fraction: f64,
    /// Share of the composites that repeat one function.
    pub p_same_function: f64,
    /// Most tools a composite offers.
    pub max_tools: usize,
    /// Longest composed query, in characters.
    pub max_query_chars: usize,
    pub seed: u64,
}

impl Default for ComposeConfig {
    fn default() -> Self {
        ComposeConfig {
            fraction: 0.12,
            p_same_function: 0.6,
            max_tools: 8,
            max_query_chars: 600,
            seed: 0,
        }
    }
}

/// What [`compose`] made and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ComposeReport {
    pub same_function: usize,
    pub different_functions: usize,
    /// Attempts skipped, by reason.
    pub skipped: BTreeMap<String, usize>,
}

const JOINERS: &[&str] = &[" Also, ", " And ", " Then ", " ", "; ", " In addition, "];

/// Join queries into one request: each part ends with punctuation, and a
/// connective before a part lowercases its first letter where that reads
/// naturally.
fn join_queries(parts: &[&str], rng: &mut ChaCha8Rng) -> String {
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        let p = p.trim();
        if i == 0 {
            out.push_str(p);
        } else {
            let j = *JOINERS.choose(rng).unwrap_or(&" ");
            // Close the previous sentence before a capitalised joiner.
            if j.trim_start().starts_with(char::is_uppercase)
                && !out.ends_with(['.', '?', '!', ';'])
            {
                out.push('.');
            }
            out.push_str(j);
            // After a connective ("Also, ", "Then ", "; ") the part continues the
            // sentence; after a bare space it stands on its own.
            let lower = !j.trim().is_empty();
            let mut cs = p.chars();
            match cs.next() {
                // Keep acronyms and proper nouns ("NASA", "I") as they are.
                Some(c)
                    if lower
                        && c.is_uppercase()
                        && !cs.clone().next().is_some_and(char::is_uppercase)
                        && c != 'I' =>
                {
                    out.extend(c.to_lowercase());
                    out.push_str(cs.as_str());
                }
                _ => out.push_str(p),
            }
        }
    }
    out
}

fn tool_key(t: &Tool) -> String {
    t.to_json().to_string()
}

/// The tool that the single call of `e` uses.
fn called_tool(e: &Example) -> Option<&Tool> {
    let c = e.calls.first()?;
    e.tools.iter().find(|t| t.name == c.name)
}

/// Make composites from the single-call, single-turn examples of `examples`.
pub fn compose(examples: &[Example], cfg: &ComposeConfig) -> (Vec<Example>, ComposeReport) {
    let mut report = ComposeReport::default();
    let singles: Vec<&Example> = examples
        .iter()
        .filter(|e| e.calls.len() == 1 && e.context.is_empty() && !e.query.trim().is_empty())
        .filter(|e| called_tool(e).is_some())
        .collect();
    // Examples by the exact tool their call uses.
    let mut by_tool: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, e) in singles.iter().enumerate() {
        if let Some(t) = called_tool(e) {
            by_tool.entry(tool_key(t)).or_default().push(i);
        }
    }
    let groups: Vec<&Vec<usize>> = by_tool.values().filter(|v| v.len() >= 2).collect();
    let want = (examples.len() as f64 * cfg.fraction).round() as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x636f_6d70_6f73_6500);
    let mut out = Vec::with_capacity(want);
    let mut seen: HashSet<String> = HashSet::new();
    let skip = |report: &mut ComposeReport, why: &str| {
        *report.skipped.entry(why.to_string()).or_default() += 1;
    };
    let mut attempts = 0usize;
    while out.len() < want && attempts < want * 4 + 16 && singles.len() >= 2 {
        attempts += 1;
        let k = match rng.random_range(0..10) {
            0..=5 => 2,
            6..=8 => 3,
            _ => 4,
        };
        let same = !groups.is_empty() && rng.random_bool(cfg.p_same_function);
        let picks: Vec<&Example> = if same {
            let Some(g) = groups.choose(&mut rng) else {
                break;
            };
            let mut idx: Vec<usize> = g.to_vec();
            idx.shuffle(&mut rng);
            idx.into_iter().take(k).map(|i| singles[i]).collect()
        } else {
            (0..k)
                .filter_map(|_| singles.choose(&mut rng).copied())
                .collect()
        };
        // Distinct queries and distinct calls, or the composite repeats itself.
        let queries: HashSet<&str> = picks.iter().map(|e| e.query.trim()).collect();
        let calls: HashSet<String> = picks
            .iter()
            .filter_map(|e| serde_json::to_string(&e.calls[0]).ok())
            .collect();
        if picks.len() < 2 || queries.len() < picks.len() || calls.len() < picks.len() {
            skip(&mut report, "repeats");
            continue;
        }
        let mut tools: Vec<Tool> = Vec::new();
        let mut clash = false;
        if same {
            tools = picks[0].tools.clone();
        } else {
            for e in &picks {
                for t in &e.tools {
                    match tools.iter().find(|x| x.name == t.name) {
                        Some(x) if x != t => clash = true,
                        Some(_) => {}
                        None => tools.push(t.clone()),
                    }
                }
            }
            // Keep every called tool, then the others up to the limit.
            let called: HashSet<&str> = picks.iter().map(|e| e.calls[0].name.as_str()).collect();
            if tools.len() > cfg.max_tools {
                let mut others: Vec<Tool> = tools
                    .iter()
                    .filter(|t| !called.contains(t.name.as_str()))
                    .cloned()
                    .collect();
                others.shuffle(&mut rng);
                others.truncate(cfg.max_tools.saturating_sub(called.len()));
                tools.retain(|t| {
                    called.contains(t.name.as_str()) || others.iter().any(|o| o.name == t.name)
                });
            }
            tools.shuffle(&mut rng);
        }
        if clash {
            skip(&mut report, "tool_name_clash");
            continue;
        }
        if tools.len() > cfg.max_tools {
            skip(&mut report, "too_many_tools");
            continue;
        }
        let parts: Vec<&str> = picks.iter().map(|e| e.query.as_str()).collect();
        let query = join_queries(&parts, &mut rng);
        if query.chars().count() > cfg.max_query_chars {
            skip(&mut report, "query_too_long");
            continue;
        }
        let calls: Vec<_> = picks.iter().map(|e| e.calls[0].clone()).collect();
        if let Err(e) = validate_all(&calls, &tools) {
            skip(&mut report, &format!("invalid/{}", e.kind.reason()));
            continue;
        }
        let ids: Vec<&str> = picks.iter().map(|e| e.id.as_str()).collect();
        let id = format!("compose:{}", ids.join("+"));
        if !seen.insert(id.clone()) {
            skip(&mut report, "repeats");
            continue;
        }
        if same {
            report.same_function += 1;
        } else {
            report.different_functions += 1;
        }
        out.push(Example {
            id,
            source: picks[0].source.clone(),
            query,
            tools,
            calls,
            teacher: None,
            context: Vec::new(),
        });
    }
    (out, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::Call;
    use serde_json::json;

    fn tool(name: &str) -> Tool {
        Tool::parse(
            &json!({"name": name, "description": "d", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}}),
            retort_core::ToolFormat::OpenAi,
        )
        .expect("tool")
    }

    fn ex(id: &str, fname: &str, city: &str) -> Example {
        Example {
            id: id.into(),
            source: "t".into(),
            query: format!("What is the {fname} in {city}?"),
            tools: vec![tool(fname)],
            calls: vec![Call {
                name: fname.into(),
                arguments: json!({"city": city})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            }],
            teacher: None,
            context: Vec::new(),
        }
    }

    #[test]
    fn composites_are_valid_deterministic_and_copy_their_values() {
        let mut exs = Vec::new();
        for (i, c) in ["Paris", "London", "Rome", "Oslo", "Lima"]
            .iter()
            .enumerate()
        {
            exs.push(ex(&format!("w{i}"), "weather", c));
            exs.push(ex(&format!("t{i}"), "time", c));
        }
        let cfg = ComposeConfig {
            fraction: 1.0,
            seed: 7,
            ..ComposeConfig::default()
        };
        let (a, rep) = compose(&exs, &cfg);
        let (b, _) = compose(&exs, &cfg);
        assert_eq!(
            serde_json::to_string(&a).ok(),
            serde_json::to_string(&b).ok()
        );
        assert!(!a.is_empty());
        assert!(
            rep.same_function > 0 && rep.different_functions > 0,
            "{rep:?}"
        );
        for e in &a {
            assert!(e.calls.len() >= 2);
            validate_all(&e.calls, &e.tools).expect("valid");
            for c in &e.calls {
                let city = c.arguments["city"].as_str().unwrap_or("");
                assert!(e.query.contains(city), "{} lacks {city}", e.query);
            }
            let names: HashSet<&str> = e.tools.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(names.len(), e.tools.len(), "tools are unique");
        }
    }

    #[test]
    fn join_lowercases_after_connectives_but_keeps_acronyms() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for _ in 0..20 {
            let q = join_queries(&["Find A", "NASA news", "Book it"], &mut rng);
            assert!(q.contains("NASA news"), "{q}");
            assert!(q.starts_with("Find A"), "{q}");
        }
    }

    #[test]
    fn clashing_definitions_are_skipped() {
        let mut a = ex("a", "weather", "Paris");
        let mut b = ex("b", "weather", "Rome");
        b.tools[0].description = "another".into();
        a.calls[0].arguments.insert("city".into(), json!("Paris"));
        let cfg = ComposeConfig {
            fraction: 5.0,
            p_same_function: 0.0,
            seed: 1,
            ..ComposeConfig::default()
        };
        let (out, rep) = compose(&[a, b], &cfg);
        assert!(out.is_empty(), "{out:?}");
        assert!(rep.skipped.contains_key("tool_name_clash"), "{rep:?}");
    }
}
