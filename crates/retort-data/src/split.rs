//! Validation split by held-out tools: a set of tool names is chosen, and
//! every example that offers any of them goes to validation, never to
//! training. Tool names are drawn in a seeded random order until validation
//! holds about the asked fraction of examples; tools used by very many
//! examples are skipped so one tool cannot swamp validation.

use std::collections::{BTreeSet, HashMap};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use retort_core::Example;

/// The result of the split.
#[derive(Debug, Default)]
pub struct Split {
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    pub held_out_tools: BTreeSet<String>,
}

/// Split `examples` so that about `fraction` of them land in validation.
pub fn split_by_tools(examples: Vec<Example>, fraction: f64, seed: u64) -> Split {
    let n = examples.len();
    let target = (n as f64 * fraction.clamp(0.0, 1.0)).round() as usize;
    let mut users: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, ex) in examples.iter().enumerate() {
        for t in &ex.tools {
            users.entry(t.name.as_str()).or_default().push(i);
        }
    }
    // Candidates: tools that some example calls, in a seeded random order.
    let mut names: Vec<&str> = examples
        .iter()
        .flat_map(|e| e.calls.iter().map(|c| c.name.as_str()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5b17);
    names.shuffle(&mut rng);
    let cap = (target / 10).max(5);
    let mut in_val = vec![false; n];
    let mut val_count = 0;
    let mut held = BTreeSet::new();
    for name in names {
        if val_count >= target {
            break;
        }
        let Some(u) = users.get(name) else { continue };
        let new: usize = u.iter().filter(|&&i| !in_val[i]).count();
        if new == 0 || new > cap {
            continue;
        }
        held.insert(name.to_string());
        for &i in u {
            if !in_val[i] {
                in_val[i] = true;
                val_count += 1;
            }
        }
    }
    let mut split = Split {
        held_out_tools: held,
        ..Default::default()
    };
    for (i, ex) in examples.into_iter().enumerate() {
        if in_val[i] {
            split.val.push(ex);
        } else {
            split.train.push(ex);
        }
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::{Call, Tool, ToolFormat};
    use serde_json::json;

    fn ex(i: usize, tools: &[String]) -> Example {
        Example {
            id: format!("e{i}"),
            source: "s".into(),
            query: format!("q{i}"),
            tools: tools
                .iter()
                .map(|n| Tool::parse(&json!({"name": n}), ToolFormat::Auto).expect("tool"))
                .collect(),
            calls: vec![Call::new(tools[0].clone(), Default::default())],
            teacher: None,
            context: Vec::new(),
        }
    }

    #[test]
    fn held_out_tools_never_in_train() {
        let exs: Vec<Example> = (0..400)
            .map(|i| {
                ex(
                    i,
                    &[
                        format!("t{}", i % 200),
                        format!("t{}", (i * 7) % 200),
                        "common".into(),
                    ],
                )
            })
            .collect();
        let s = split_by_tools(exs.clone(), 0.1, 3);
        assert!(!s.val.is_empty() && !s.train.is_empty());
        assert_eq!(s.val.len() + s.train.len(), 400);
        for e in &s.train {
            assert!(e.tools.iter().all(|t| !s.held_out_tools.contains(&t.name)));
        }
        for e in &s.val {
            assert!(e.tools.iter().any(|t| s.held_out_tools.contains(&t.name)));
        }
        assert!(
            !s.held_out_tools.contains("common"),
            "a tool used everywhere is not held out"
        );
        let again = split_by_tools(exs, 0.1, 3);
        assert_eq!(again.held_out_tools, s.held_out_tools);
    }
}
