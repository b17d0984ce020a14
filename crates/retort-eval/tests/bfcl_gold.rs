//! The scorer fed the answer key itself, on the real BFCL v4 data.
//!
//! Reads `$RETORT_BFCL_DIR`, or `../shared/data/bfcl` beside the workspace,
//! and skips (with a message) when neither exists.

use std::collections::BTreeSet;
use std::path::PathBuf;

use retort_eval::{Category, Reason, evaluate_gold, load_limited};

fn bfcl_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("RETORT_BFCL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/data/bfcl"
            ))
        });
    if dir.join("BFCL_v4_simple_python.json").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: no BFCL data at {} (set RETORT_BFCL_DIR)",
            dir.display()
        );
        None
    }
}

/// Entries no prediction can pass under BFCL's own checker (each was
/// confirmed by running bfcl-eval 2026.3.23's `ast_checker` on it).
const UNSOLVABLE: [(&str, Reason); 6] = [
    // ArrayList<any>: BFCL's Java converter turns every element into a
    // string, but the key holds ints and booleans.
    ("simple_java_36", Reason::WrongValue),
    ("simple_java_65", Reason::WrongValue),
    // A required array parameter whose list of acceptable values is empty.
    ("live_simple_106-63-0", Reason::MissingRequired),
    ("live_simple_112-68-0", Reason::MissingRequired),
    // The key uses a parameter the function does not declare...
    ("live_multiple_862-181-3", Reason::UnexpectedParam),
    // ...or omits the one it requires.
    ("live_multiple_964-207-0", Reason::MissingRequired),
];

#[test]
fn gold_answers_score_as_bfcl_says() {
    let Some(dir) = bfcl_dir() else { return };
    let cats: Vec<Category> = Category::ALL
        .into_iter()
        .filter(|c| *c != Category::LiveRelevance)
        .collect();
    let entries = load_limited(&dir, &cats, None).expect("BFCL data loads");
    let report = evaluate_gold(&entries);
    print!("{}", report.table());
    let failed: BTreeSet<(String, Reason)> = report
        .entries
        .iter()
        .filter_map(|e| e.failure.as_ref().map(|f| (e.id.clone(), f.reason)))
        .collect();
    let expected: BTreeSet<(String, Reason)> = UNSOLVABLE
        .iter()
        .map(|(id, r)| (id.to_string(), *r))
        .collect();
    assert_eq!(failed, expected);
    let score = |c| {
        let s = report.category(c).expect("category ran");
        (s.correct, s.total)
    };
    for c in [
        Category::SimplePython,
        Category::SimpleJavascript,
        Category::Multiple,
        Category::Parallel,
        Category::ParallelMultiple,
        Category::LiveParallel,
        Category::LiveParallelMultiple,
        Category::Irrelevance,
        Category::LiveIrrelevance,
    ] {
        let (ok, total) = score(c);
        assert_eq!(ok, total, "{c}: gold scored {ok}/{total}");
    }
    assert_eq!(score(Category::SimpleJava), (98, 100));
    assert_eq!(score(Category::LiveSimple), (256, 258));
    assert_eq!(score(Category::LiveMultiple), (1051, 1053));
    // Every entry loaded: BFCL v4's published sizes.
    assert_eq!(score(Category::SimplePython).1, 400);
    assert_eq!(score(Category::LiveIrrelevance).1, 884);
}

#[test]
fn every_category_loads_with_tools() {
    let Some(dir) = bfcl_dir() else { return };
    let entries = load_limited(&dir, &Category::ALL, None).expect("BFCL data loads");
    assert_eq!(entries.len(), 3_641);
    assert!(entries.iter().all(|e| !e.query.trim().is_empty()));
    assert!(entries.iter().all(|e| e.tools.len() == e.functions.len()));
    // Four live_irrelevance entries offer no function at all.
    let toolless: Vec<&str> = entries
        .iter()
        .filter(|e| e.tools.is_empty())
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(toolless.len(), 4, "{toolless:?}");
    assert!(
        toolless
            .iter()
            .all(|id| id.starts_with("live_irrelevance_"))
    );
    let relevance = entries
        .iter()
        .filter(|e| e.category == Category::LiveRelevance)
        .count();
    assert_eq!(relevance, 16);
}

/// Reorderings of the answer key that BFCL itself fails: its parallel
/// matcher is greedy, so an expected call whose key also accepts another
/// call's values can take that call first. (Each confirmed with
/// bfcl-eval's `ast_checker`.)
const GREEDY_ORDER: [(&str, &str); 2] = [
    // Its first expected call accepts "Microsoft" or "Apple" on 2022-01-01.
    ("parallel_178", "reversed"),
    ("parallel_178", "rotated"),
];

/// Targeted perturbations of the answer key, applied to every real entry
/// where they make sense, each failing with its reason.
#[test]
fn perturbed_gold_fails_with_the_right_reason() {
    use retort_core::Call;
    use retort_eval::{Scoring, gold_calls, score_entry};
    use serde_json::Value;

    let Some(dir) = bfcl_dir() else { return };
    let cats = [
        Category::SimplePython,
        Category::Multiple,
        Category::Parallel,
        Category::ParallelMultiple,
        Category::LiveSimple,
        Category::LiveMultiple,
        Category::LiveParallel,
        Category::LiveParallelMultiple,
    ];
    let entries = load_limited(&dir, &cats, None).expect("BFCL data loads");
    let unsolvable: Vec<&str> = UNSOLVABLE.iter().map(|(id, _)| *id).collect();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let expect = |e: &retort_eval::Entry, calls: &[Call], want: Option<Reason>, what: &str| {
        let got = score_entry(e, calls).err().map(|f| f.reason);
        assert_eq!(got, want, "{what} on {}: {calls:?}", e.id);
    };
    for e in entries
        .iter()
        .filter(|e| !unsolvable.contains(&e.id.as_str()))
    {
        let gold = gold_calls(e).expect("keyed category");
        expect(e, &gold, None, "gold");
        let desc = |c: &Call| {
            e.functions
                .iter()
                .find(|f| f.get("name").and_then(Value::as_str) == Some(c.name.as_str()))
                .and_then(|f| f.get("parameters"))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let key_params = |i: usize| -> Vec<String> {
            e.answer.as_ref().expect("key")[i]
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(Value::as_object)
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default()
        };
        // One extra call, and in parallel categories any order.
        let mut bad = gold.clone();
        bad.push(gold[0].clone());
        expect(e, &bad, Some(Reason::WrongCount), "extra call");
        *counts.entry("wrong_count").or_default() += 1;
        if e.category.scoring() == Scoring::Parallel {
            let mut swapped = gold.clone();
            swapped.reverse();
            let mut rotated = gold.clone();
            rotated.rotate_left(1);
            for (what, calls) in [("reversed", &swapped), ("rotated", &rotated)] {
                if GREEDY_ORDER.contains(&(e.id.as_str(), what)) {
                    expect(e, calls, Some(Reason::WrongValue), what);
                } else {
                    expect(e, calls, None, what);
                }
            }
            *counts.entry("parallel_reordered").or_default() += 1;
            // Which call a parallel failure is blamed on is a heuristic;
            // the per-call perturbations below use single-call entries.
            continue;
        }
        let c0 = &gold[0];
        let params = desc(c0);
        let props = params.get("properties").and_then(Value::as_object);
        let ty = |k: &str| {
            props
                .and_then(|p| p.get(k))
                .and_then(|p| p.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        // A float for an integer.
        if let Some((k, v)) = c0
            .arguments
            .iter()
            .find(|(k, v)| ty(k) == "integer" && v.is_i64())
        {
            let mut bad = gold.clone();
            let f = v.as_i64().unwrap_or(0) as f64;
            bad[0].arguments.insert(k.clone(), Value::from(f));
            expect(e, &bad, Some(Reason::WrongType), "float for integer");
            *counts.entry("float_for_integer").or_default() += 1;
        }
        // An extra optional parameter that the key does not list.
        let listed = key_params(0);
        if let Some(extra) = props.and_then(|p| p.keys().find(|k| !listed.contains(k))) {
            let mut bad = gold.clone();
            bad[0].arguments.insert(extra.clone(), Value::from("x"));
            expect(
                e,
                &bad,
                Some(Reason::UnexpectedParam),
                "extra optional parameter",
            );
            *counts.entry("extra_optional").or_default() += 1;
        }
        // A reversed list of distinct scalars (unless the key accepts it too).
        let reversible = c0.arguments.iter().find(|(_, v)| {
            v.as_array().is_some_and(|a| {
                a.len() >= 2
                    && a.iter().all(|x| !x.is_array() && !x.is_object())
                    && a.first() != a.last()
            })
        });
        if let Some((k, v)) = reversible {
            let mut rev = v.as_array().cloned().unwrap_or_default();
            rev.reverse();
            let accepted = e.answer.as_ref().expect("key")[0]
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(|p| p.get(k.as_str()))
                .and_then(Value::as_array)
                .is_some_and(|alts| alts.contains(&Value::Array(rev.clone())));
            if !accepted {
                let mut bad = gold.clone();
                bad[0].arguments.insert(k.clone(), Value::Array(rev));
                expect(e, &bad, Some(Reason::WrongValue), "reversed list");
                *counts.entry("reversed_list").or_default() += 1;
            }
        }
        // A missing required parameter.
        let required = params.get("required").and_then(Value::as_array);
        if let Some(r) = required.and_then(|r| r.iter().filter_map(Value::as_str).next()) {
            let mut bad = gold.clone();
            bad[0].arguments.shift_remove(r);
            expect(e, &bad, Some(Reason::MissingRequired), "missing required");
            *counts.entry("missing_required").or_default() += 1;
        }
    }
    println!("perturbations checked: {counts:?}");
    for (k, n) in &counts {
        assert!(*n >= 10, "{k}: only {n} entries");
    }
}
