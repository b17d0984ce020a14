//! Augmentation (DESIGN.md): from one cleaned example, derive variants by
//!
//! - value substitution: a number or a string copied verbatim from the query
//!   is replaced in the query and in every call together (strings by another
//!   value of a parameter of the same name seen elsewhere in the corpus);
//! - distractor tools, similar (shared name/description words) or random,
//!   turning single-tool examples into multiple choice;
//! - irrelevance: the gold tools are removed and the target becomes no call;
//! - consistent name masking: functions and parameters renamed in the tools
//!   and the calls alike (synonyms, case-style changes or random words);
//! - shuffled tool order;
//! - casing and punctuation noise on the query, never inside a span that a
//!   call copies, so copied values still appear verbatim.
//!
//! Every variant is drawn from a ChaCha stream seeded by (seed, example id,
//! variant number), so the output is the same for the same seed whatever the
//! thread count, and every variant is checked with `validate_all` (a variant
//! that fails is discarded and counted).

use std::collections::{BTreeSet, HashMap, HashSet};

use indexmap::IndexMap;
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use retort_core::{Category, Example, Schema, SchemaType, Tool, validate_all};

use crate::rng::example_rng;

/// Knobs of the augmenter.
#[derive(Debug, Clone)]
pub struct AugmentConfig {
    /// Variants per example.
    pub per_example: usize,
    pub seed: u64,
    /// Most tools offered by a variant.
    pub max_tools: usize,
    /// Probability that a variant of a call example becomes a no-call one.
    pub p_irrelevance: f64,
    /// For single-call examples: probability of staying single (1–2 tools);
    /// otherwise it becomes multiple choice (3+ tools).
    pub p_single: f64,
    pub p_value_substitution: f64,
    pub p_masking: f64,
    pub p_noise: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            per_example: 10,
            seed: 0,
            max_tools: 8,
            p_irrelevance: 0.22,
            p_single: 0.3,
            p_value_substitution: 0.5,
            p_masking: 0.3,
            p_noise: 0.3,
        }
    }
}

/// Words that carry no meaning for tool similarity.
const STOP: &[&str] = &[
    "a",
    "an",
    "the",
    "of",
    "to",
    "for",
    "and",
    "or",
    "in",
    "on",
    "by",
    "with",
    "from",
    "is",
    "it",
    "this",
    "that",
    "be",
    "as",
    "at",
    "get",
    "set",
    "api",
    "data",
    "given",
    "specified",
    "specific",
    "information",
    "details",
    "based",
    "using",
    "use",
    "provide",
    "provided",
    "retrieve",
    "returns",
    "return",
    "list",
    "about",
    "all",
    "any",
    "which",
    "can",
    "will",
];

/// Split a name or text into lower-case words (shared with the model).
pub use retort_core::split_words as words;

fn content_words(s: &str) -> BTreeSet<String> {
    words(s)
        .into_iter()
        .filter(|w| w.len() > 2 && !STOP.contains(&w.as_str()))
        .collect()
}

/// The distractor pool with a word index for similar-tool lookups.
pub struct ToolPool {
    pub tools: Vec<Tool>,
    name_words: Vec<BTreeSet<String>>,
    index: HashMap<String, Vec<usize>>,
}

/// Posting lists longer than this are too common to signal similarity.
const MAX_POSTING: usize = 400;

impl ToolPool {
    /// Build a pool; tools with the same name as an earlier one are skipped.
    pub fn new(tools: Vec<Tool>) -> ToolPool {
        let mut seen = HashSet::new();
        let tools: Vec<Tool> = tools
            .into_iter()
            .filter(|t| seen.insert(t.name.clone()))
            .collect();
        let mut index: HashMap<String, Vec<usize>> = HashMap::new();
        let mut name_words = Vec::with_capacity(tools.len());
        for (i, t) in tools.iter().enumerate() {
            let mut ws = content_words(&t.name);
            name_words.push(ws.clone());
            ws.extend(content_words(&t.description));
            for w in ws {
                index.entry(w).or_default().push(i);
            }
        }
        ToolPool {
            tools,
            name_words,
            index,
        }
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Pool indices ranked by word overlap with `tools` (best first), at
    /// most `k`.
    fn similar(&self, tools: &[&Tool], k: usize) -> Vec<usize> {
        let mut score: HashMap<usize, usize> = HashMap::new();
        let mut ws = BTreeSet::new();
        for t in tools {
            ws.extend(content_words(&t.name));
            ws.extend(content_words(&t.description));
        }
        for w in &ws {
            if let Some(p) = self.index.get(w)
                && p.len() <= MAX_POSTING
            {
                for &i in p {
                    *score.entry(i).or_default() += 1;
                }
            }
        }
        let mut ranked: Vec<(usize, usize)> = score.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.into_iter().take(k).map(|(i, _)| i).collect()
    }
}

/// String values of each parameter name seen in the corpus (only values that
/// appear verbatim in their query, i.e. copyable ones).
#[derive(Debug, Default)]
pub struct ValueBank {
    by_param: HashMap<String, Vec<String>>,
}

const MAX_VALUES_PER_PARAM: usize = 300;

impl ValueBank {
    pub fn from_examples(examples: &[Example]) -> ValueBank {
        let mut sets: HashMap<String, BTreeSet<String>> = HashMap::new();
        for ex in examples {
            for c in &ex.calls {
                for (k, v) in &c.arguments {
                    if let Value::String(s) = v
                        && usable_string(s)
                        && ex.query.contains(s.as_str())
                    {
                        let set = sets.entry(k.to_lowercase()).or_default();
                        if set.len() < MAX_VALUES_PER_PARAM {
                            set.insert(s.clone());
                        }
                    }
                }
            }
        }
        ValueBank {
            by_param: sets
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
        }
    }

    pub(crate) fn values(&self, param: &str) -> &[String] {
        self.by_param
            .get(&param.to_lowercase())
            .map_or(&[], Vec::as_slice)
    }
}

fn usable_string(s: &str) -> bool {
    let n = s.chars().count();
    (2..=60).contains(&n) && !s.contains('\n') && !s.contains('$')
}

/// What one augmentation run produced and discarded.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct AugmentReport {
    pub variants: usize,
    /// Variants discarded, by reason.
    pub discarded: std::collections::BTreeMap<String, usize>,
    /// How often each transform was applied.
    pub applied: std::collections::BTreeMap<String, usize>,
}

impl AugmentReport {
    pub fn merge(&mut self, o: AugmentReport) {
        self.variants += o.variants;
        for (k, v) in o.discarded {
            *self.discarded.entry(k).or_default() += v;
        }
        for (k, v) in o.applied {
            *self.applied.entry(k).or_default() += v;
        }
    }
    fn note(&mut self, what: &str) {
        *self.applied.entry(what.to_string()).or_default() += 1;
    }
}

/// The augmenter: a pool, a value bank and a configuration.
pub struct Augmenter<'a> {
    pub pool: &'a ToolPool,
    pub values: &'a ValueBank,
    pub cfg: AugmentConfig,
}

impl Augmenter<'_> {
    /// All variants of one example (possibly fewer than asked when some fail
    /// validation or repeat).
    pub fn variants(&self, ex: &Example) -> (Vec<Example>, AugmentReport) {
        let mut report = AugmentReport::default();
        let mut out = Vec::with_capacity(self.cfg.per_example);
        for k in 0..self.cfg.per_example {
            let mut rng = example_rng(self.cfg.seed, &ex.id, &format!("aug{k}"));
            let v = self.variant(ex, k, &mut rng, &mut report);
            match validate_all(&v.calls, &v.tools) {
                Ok(()) if v.tools.len() <= self.cfg.max_tools && !v.tools.is_empty() => {
                    report.variants += 1;
                    out.push(v);
                }
                Ok(()) => {
                    *report.discarded.entry("tool_count".into()).or_default() += 1;
                }
                Err(e) => {
                    *report
                        .discarded
                        .entry(format!("invalid/{}", e.kind.reason()))
                        .or_default() += 1;
                }
            }
        }
        (out, report)
    }

    fn variant(
        &self,
        ex: &Example,
        k: usize,
        rng: &mut ChaCha8Rng,
        report: &mut AugmentReport,
    ) -> Example {
        let mut v = ex.clone();
        v.id = format!("{}~aug{k}", ex.id);
        if rng.random_bool(self.cfg.p_value_substitution)
            && !v.calls.is_empty()
            && substitute_values(&mut v, self.values, rng)
        {
            report.note("value_substitution");
        }
        let gold: Vec<String> = unique_names(&v);
        let target = match ex.category() {
            Category::NoCall => Category::NoCall,
            Category::Parallel => {
                if rng.random_bool(self.cfg.p_irrelevance) {
                    Category::NoCall
                } else {
                    Category::Parallel
                }
            }
            Category::Single | Category::MultipleChoice => {
                if rng.random_bool(self.cfg.p_irrelevance) {
                    Category::NoCall
                } else if gold.len() <= 2 && rng.random_bool(self.cfg.p_single) {
                    Category::Single
                } else {
                    Category::MultipleChoice
                }
            }
        };
        let max = self.cfg.max_tools;
        match target {
            Category::NoCall => {
                report.note("irrelevance");
                let had_calls = !v.calls.is_empty();
                v.tools.retain(|t| !gold.contains(&t.name));
                v.calls.clear();
                let want = rng.random_range(1..=max.min(6));
                let avoid: Vec<&Tool> =
                    ex.tools.iter().filter(|t| gold.contains(&t.name)).collect();
                let avoid_words: Vec<BTreeSet<String>> =
                    avoid.iter().map(|t| content_words(&t.name)).collect();
                if had_calls || v.tools.len() < want {
                    v.tools.truncate(want);
                    self.add_random(&mut v, want, &avoid_words, rng);
                }
            }
            Category::Single => {
                report.note("single");
                v.tools.retain(|t| gold.contains(&t.name));
                if v.tools.len() < 2 && rng.random_bool(0.4) {
                    self.add_similar_or_random(&mut v, 2, rng);
                }
            }
            Category::MultipleChoice | Category::Parallel => {
                let lo = if target == Category::MultipleChoice {
                    3
                } else {
                    v.tools.len().max(gold.len())
                };
                let want = rng.random_range(lo.min(max)..=max).max(gold.len());
                if v.tools.len() > want {
                    let keep: Vec<Tool> = {
                        let mut others: Vec<Tool> = v
                            .tools
                            .iter()
                            .filter(|t| !gold.contains(&t.name))
                            .cloned()
                            .collect();
                        others.shuffle(rng);
                        others.truncate(want - gold.len());
                        others
                    };
                    v.tools.retain(|t| {
                        gold.contains(&t.name) || keep.iter().any(|x| x.name == t.name)
                    });
                }
                if v.tools.len() < want {
                    report.note("distractors");
                    self.add_similar_or_random(&mut v, want, rng);
                }
            }
        }
        if rng.random_bool(self.cfg.p_masking) && mask_names(&mut v, rng) {
            report.note("masking");
        }
        if !v.query.is_empty() && rng.random_bool(self.cfg.p_noise) && query_noise(&mut v, rng) {
            report.note("noise");
        }
        v.tools.shuffle(rng);
        v
    }

    fn add_random(
        &self,
        v: &mut Example,
        want: usize,
        avoid: &[BTreeSet<String>],
        rng: &mut ChaCha8Rng,
    ) {
        if self.pool.is_empty() {
            return;
        }
        let mut tries = 0;
        while v.tools.len() < want && tries < want * 8 {
            tries += 1;
            let i = rng.random_range(0..self.pool.len());
            let t = &self.pool.tools[i];
            if v.tools.iter().any(|x| x.name == t.name) {
                continue;
            }
            // Never offer a tool named like a removed gold tool: it might
            // answer the query after all.
            let nw = &self.pool.name_words[i];
            if avoid.iter().any(|a| !a.is_empty() && a == nw) {
                continue;
            }
            v.tools.push(t.clone());
        }
    }

    fn add_similar_or_random(&self, v: &mut Example, want: usize, rng: &mut ChaCha8Rng) {
        if self.pool.is_empty() {
            return;
        }
        let gold_names = unique_names(v);
        let gold_tools: Vec<&Tool> = v
            .tools
            .iter()
            .filter(|t| gold_names.contains(&t.name))
            .collect();
        let gold_words: Vec<BTreeSet<String>> =
            gold_tools.iter().map(|t| content_words(&t.name)).collect();
        let mut similar = self.pool.similar(&gold_tools, 24);
        similar.shuffle(rng);
        let n_similar = rng.random_range(0..=want.saturating_sub(v.tools.len()));
        let mut added = 0;
        for i in similar {
            if added >= n_similar {
                break;
            }
            let t = &self.pool.tools[i];
            if v.tools.iter().any(|x| x.name == t.name)
                || gold_words.iter().any(|g| g == &self.pool.name_words[i])
            {
                continue;
            }
            v.tools.push(t.clone());
            added += 1;
        }
        self.add_random(v, want, &gold_words, rng);
    }
}

fn unique_names(ex: &Example) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in &ex.calls {
        if !out.contains(&c.name) {
            out.push(c.name.clone());
        }
    }
    out
}

// ---------------------------------------------------------------- values

/// Byte ranges where `needle` occurs in `hay` as a whole token (not glued to
/// an alphanumeric character on either side).
fn token_occurrences(hay: &str, needle: &str) -> Vec<(usize, usize)> {
    if needle.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(i) = hay[start..].find(needle) {
        let a = start + i;
        let b = a + needle.len();
        let before = hay[..a].chars().next_back();
        let after = hay[b..].chars().next();
        let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
        let numeric_glue = |c: Option<char>| {
            c.is_some_and(|c| c == '.' || c == ',') && needle.chars().all(|c| c.is_ascii_digit())
        };
        let after_glued = numeric_glue(after)
            && hay[b + 1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit());
        let before_glued = numeric_glue(before)
            && hay[..a.saturating_sub(1)]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_digit());
        if !glued(before) && !glued(after) && !after_glued && !before_glued {
            out.push((a, b));
        }
        start = b;
    }
    out
}

fn replace_ranges(s: &str, ranges: &[(usize, usize)], with: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for &(a, b) in ranges {
        out.push_str(&s[last..a]);
        out.push_str(with);
        last = b;
    }
    out.push_str(&s[last..]);
    out
}

fn param_schema<'a>(ex: &'a Example, call: usize, key: &str) -> Option<&'a Schema> {
    let c = ex.calls.get(call)?;
    ex.tool(&c.name)?.parameters.properties.get(key)
}

/// Replace every top-level argument equal to `old` (in every call) by `new`.
fn replace_in_calls(ex: &mut Example, old: &Value, new: &Value) {
    for c in &mut ex.calls {
        for v in c.arguments.values_mut() {
            if v == old {
                *v = new.clone();
            } else if let Value::Array(a) = v {
                for x in a.iter_mut() {
                    if x == old {
                        *x = new.clone();
                    }
                }
            }
        }
    }
}

/// Every string inside the calls (recursively).
fn call_strings(ex: &Example) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for c in &ex.calls {
        for v in c.arguments.values() {
            walk(v, &mut out);
        }
    }
    out
}

/// Change one copied value (a number or a string) in the query and the calls
/// together. Returns whether anything changed.
pub fn substitute_values(ex: &mut Example, bank: &ValueBank, rng: &mut ChaCha8Rng) -> bool {
    // Candidates: (call index, key, value).
    let mut cands: Vec<(usize, String, Value)> = Vec::new();
    for (ci, c) in ex.calls.iter().enumerate() {
        for (k, v) in &c.arguments {
            let Some(s) = param_schema(ex, ci, k) else {
                continue;
            };
            if s.enum_values.is_some() {
                continue;
            }
            match v {
                Value::Number(n)
                    if n.is_i64() && matches!(s.ty, SchemaType::Integer | SchemaType::Number) =>
                {
                    cands.push((ci, k.clone(), v.clone()));
                }
                Value::String(st) if s.ty == SchemaType::String && usable_string(st) => {
                    cands.push((ci, k.clone(), v.clone()));
                }
                _ => {}
            }
        }
    }
    cands.shuffle(rng);
    let strings = call_strings(ex);
    for (ci, key, old) in cands {
        let Some(schema) = param_schema(ex, ci, &key).cloned() else {
            continue;
        };
        let (old_text, new_value) = match &old {
            Value::Number(n) => {
                let Some(x) = n.as_i64() else { continue };
                let lo = schema
                    .minimum
                    .map_or(if x >= 0 { 0 } else { x * 2 - 10 }, |m| m.ceil() as i64);
                let hi = schema
                    .maximum
                    .map_or(x.saturating_mul(2).saturating_add(10).max(lo + 1), |m| {
                        m.floor() as i64
                    });
                if hi <= lo {
                    continue;
                }
                let mut y = rng.random_range(lo..=hi);
                if y == x {
                    y = if y < hi { y + 1 } else { y - 1 };
                }
                if y == x {
                    continue;
                }
                (x.to_string(), Value::from(y))
            }
            Value::String(s) => {
                let pool = bank.values(&key);
                let choices: Vec<&String> = pool
                    .iter()
                    .filter(|c| *c != s && !ex.query.contains(c.as_str()))
                    .collect();
                let Some(new) = choices.choose(rng) else {
                    continue;
                };
                if let Some(ml) = schema.max_length
                    && new.chars().count() as u64 > ml
                {
                    continue;
                }
                (s.clone(), Value::String((*new).clone()))
            }
            _ => continue,
        };
        // The value must be copied from the query, and no other string of the
        // calls may contain it partially (it would go out of sync).
        let occ = token_occurrences(&ex.query, &old_text);
        if occ.is_empty() {
            continue;
        }
        if strings
            .iter()
            .any(|s| s != &old_text && s.contains(&old_text))
        {
            continue;
        }
        let new_text = match &new_value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        ex.query = replace_ranges(&ex.query, &occ, &new_text);
        replace_in_calls(ex, &old, &new_value);
        return true;
    }
    false
}

// --------------------------------------------------------------- masking

const SYNONYMS: &[(&str, &[&str])] = &[
    ("get", &["fetch", "retrieve", "obtain", "lookup"]),
    ("fetch", &["get", "retrieve", "load"]),
    ("retrieve", &["get", "fetch", "obtain"]),
    ("search", &["find", "lookup", "query", "seek"]),
    ("find", &["search", "locate", "lookup"]),
    ("create", &["make", "add", "new", "generate"]),
    ("add", &["insert", "create", "append"]),
    ("delete", &["remove", "erase", "drop"]),
    ("remove", &["delete", "drop", "erase"]),
    ("update", &["modify", "edit", "change"]),
    ("list", &["enumerate", "show", "all"]),
    ("calculate", &["compute", "calc", "estimate"]),
    ("compute", &["calculate", "calc"]),
    ("send", &["dispatch", "deliver", "post"]),
    ("book", &["reserve", "schedule"]),
    ("check", &["verify", "inspect", "test"]),
    ("convert", &["transform", "translate"]),
    ("analyze", &["examine", "assess", "evaluate"]),
    ("generate", &["create", "produce", "make"]),
    ("name", &["title", "label"]),
    ("id", &["identifier", "key", "ref"]),
    ("date", &["day", "when"]),
    ("location", &["place", "where", "area"]),
    ("city", &["town", "municipality"]),
    ("amount", &["sum", "quantity", "total"]),
    ("number", &["count", "num", "qty"]),
    ("user", &["customer", "account", "person"]),
    ("type", &["kind", "category"]),
    ("query", &["search", "text", "terms"]),
    ("info", &["details", "data"]),
    ("price", &["cost", "rate"]),
    ("weather", &["forecast", "climate"]),
    ("message", &["text", "note"]),
    ("email", &["mail", "address"]),
];

const RANDOM_WORDS: &[&str] = &[
    "alpha", "bravo", "cobalt", "delta", "ember", "falcon", "garnet", "harbor", "indigo",
    "juniper", "kestrel", "lumen", "maple", "nimbus", "onyx", "pixel", "quartz", "raven", "sierra",
    "tango", "umber", "vector", "willow", "xenon", "yonder", "zephyr", "atlas", "beacon", "cedar",
    "dune", "echo", "fjord", "glade", "helix", "iris", "jade", "karma", "lotus", "mesa", "nova",
    "orbit", "prism", "quill", "ridge", "slate", "tundra", "unity", "vortex", "wren", "yarrow",
    "zenith", "op", "task", "unit", "item", "node", "field",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MaskScheme {
    Synonyms,
    Style,
    Random,
}

fn join_style(ws: &[String], camel: bool) -> String {
    if camel {
        let mut out = String::new();
        for (i, w) in ws.iter().enumerate() {
            if i == 0 {
                out.push_str(w);
            } else {
                let mut cs = w.chars();
                if let Some(f) = cs.next() {
                    out.extend(f.to_uppercase());
                    out.push_str(cs.as_str());
                }
            }
        }
        out
    } else {
        ws.join("_")
    }
}

fn mask_one(name: &str, scheme: MaskScheme, rng: &mut ChaCha8Rng) -> String {
    let ws = words(name);
    let is_camel = !name.contains('_') && name.chars().any(|c| c.is_uppercase());
    match scheme {
        MaskScheme::Style => join_style(&ws, !is_camel),
        MaskScheme::Synonyms => {
            let mut changed = false;
            let ws2: Vec<String> = ws
                .iter()
                .map(|w| match SYNONYMS.iter().find(|(k, _)| k == w) {
                    Some((_, syn)) if rng.random_bool(0.8) => {
                        changed = true;
                        syn.choose(rng)
                            .map_or_else(|| w.clone(), |s| (*s).to_string())
                    }
                    _ => w.clone(),
                })
                .collect();
            if changed {
                join_style(&ws2, is_camel)
            } else {
                join_style(&ws2, !is_camel)
            }
        }
        MaskScheme::Random => {
            let n = rng.random_range(1..=3);
            let ws: Vec<String> = (0..n)
                .map(|_| RANDOM_WORDS.choose(rng).map_or("x", |v| v).to_string())
                .collect();
            join_style(&ws, false)
        }
    }
}

fn fresh(name: String, taken: &HashSet<String>, original: &str) -> String {
    let base = if name.is_empty() {
        "f".to_string()
    } else {
        name
    };
    if !taken.contains(&base) && base != original {
        return base;
    }
    for i in 2.. {
        let c = format!("{base}_{i}");
        if !taken.contains(&c) {
            return c;
        }
    }
    base
}

/// Rename functions and their top-level parameters consistently in the tools
/// and in the calls. Returns whether anything changed.
pub fn mask_names(ex: &mut Example, rng: &mut ChaCha8Rng) -> bool {
    let scheme = *[MaskScheme::Synonyms, MaskScheme::Style, MaskScheme::Random]
        .choose(rng)
        .unwrap_or(&MaskScheme::Style);
    let mut fn_map: HashMap<String, String> = HashMap::new();
    let mut taken: HashSet<String> = HashSet::new();
    let mut param_maps: HashMap<String, HashMap<String, String>> = HashMap::new();
    for t in &ex.tools {
        let mut masked = mask_one(&t.name, scheme, rng);
        if masked == t.name {
            // Nothing to restyle or no synonym: fall back to random words.
            masked = mask_one(&t.name, MaskScheme::Random, rng);
        }
        let new = fresh(masked, &taken, &t.name);
        taken.insert(new.clone());
        let mut ptaken = HashSet::new();
        let mut pm = HashMap::new();
        for p in t.parameters.properties.keys() {
            let np = if rng.random_bool(0.7) {
                fresh(mask_one(p, scheme, rng), &ptaken, "")
            } else {
                fresh(p.clone(), &ptaken, "")
            };
            ptaken.insert(np.clone());
            pm.insert(p.clone(), np);
        }
        param_maps.insert(t.name.clone(), pm);
        fn_map.insert(t.name.clone(), new);
    }
    for t in &mut ex.tools {
        let pm = param_maps.get(&t.name).cloned().unwrap_or_default();
        let props = std::mem::take(&mut t.parameters.properties);
        t.parameters.properties = props
            .into_iter()
            .map(|(k, v)| (pm.get(&k).cloned().unwrap_or(k), v))
            .collect::<IndexMap<_, _>>();
        for r in &mut t.parameters.required {
            if let Some(n) = pm.get(r) {
                *r = n.clone();
            }
        }
        if let Some(n) = fn_map.get(&t.name) {
            t.name = n.clone();
        }
    }
    for c in &mut ex.calls {
        let pm = param_maps.get(&c.name).cloned().unwrap_or_default();
        let args = std::mem::take(&mut c.arguments);
        c.arguments = args
            .into_iter()
            .map(|(k, v)| (pm.get(&k).cloned().unwrap_or(k), v))
            .collect::<Map<_, _>>();
        if let Some(n) = fn_map.get(&c.name) {
            c.name = n.clone();
        }
    }
    true
}

// ----------------------------------------------------------------- noise

/// Casing / punctuation noise on the query outside every span a call
/// copies. Returns whether the query changed.
pub fn query_noise(ex: &mut Example, rng: &mut ChaCha8Rng) -> bool {
    let strings: Vec<String> = call_strings(ex)
        .into_iter()
        .filter(|s| !s.is_empty() && ex.query.contains(s.as_str()))
        .collect();
    let mut protected = vec![false; ex.query.len()];
    for s in &strings {
        let mut start = 0;
        while let Some(i) = ex.query[start..].find(s.as_str()) {
            let a = start + i;
            for p in &mut protected[a..a + s.len()] {
                *p = true;
            }
            start = a + s.len().max(1);
        }
    }
    let q = &ex.query;
    let op = rng.random_range(0..5);
    let mut out = String::with_capacity(q.len());
    let chars: Vec<(usize, char)> = q.char_indices().collect();
    for (j, &(i, c)) in chars.iter().enumerate() {
        if protected[i] {
            out.push(c);
            continue;
        }
        let prev_digit = j > 0 && chars[j - 1].1.is_ascii_digit();
        let next_digit = chars.get(j + 1).is_some_and(|x| x.1.is_ascii_digit());
        match op {
            0 => out.extend(c.to_lowercase()),
            1 if j == 0 => out.extend(c.to_lowercase()),
            2 if (c == ',' || c == ';') && !(prev_digit && next_digit) => {}
            3 if j == 0 => out.extend(c.to_uppercase()),
            4 => out.extend(c.to_uppercase()),
            _ => out.push(c),
        }
    }
    // Trailing punctuation (never protected: a copied value ending the query
    // keeps its own characters since we only touch the last char when free).
    let last_free = q.len().checked_sub(1).is_some_and(|l| !protected[l]);
    if op != 4 && last_free && rng.random_bool(0.5) {
        while out.ends_with(['?', '.', '!']) {
            out.pop();
        }
    }
    if op == 4 && out.chars().count() > 120 {
        // Shouting a long query is implausible; lowercase instead.
        return false;
    }
    if strings.iter().any(|s| !out.contains(s.as_str())) || out == *q || out.trim().is_empty() {
        return false;
    }
    ex.query = out;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::{Call, ToolFormat};
    use serde_json::json;

    fn tool(v: Value) -> Tool {
        Tool::parse(&v, ToolFormat::Auto).expect("tool")
    }

    fn weather() -> Tool {
        tool(
            json!({"name": "get_weather", "description": "Weather forecast for a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 14},
                "units": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}),
        )
    }

    fn base() -> Example {
        Example {
            id: "w1".into(),
            source: "t".into(),
            query: "What is the weather in Paris for 3 days, in c?".into(),
            tools: vec![weather()],
            calls: vec![Call::new(
                "get_weather",
                json!({"city": "Paris", "days": 3, "units": "c"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )],
            teacher: None,
            context: Vec::new(),
        }
    }

    fn pool() -> ToolPool {
        let mut tools = vec![
            tool(
                json!({"name": "get_forecast_weather", "description": "weather forecast by city"}),
            ),
            tool(json!({"name": "getWeather", "description": "weather"})),
        ];
        for i in 0..30 {
            tools.push(tool(
                json!({"name": format!("tool_{i}"), "description": format!("does thing {i}"),
                "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}),
            ));
        }
        ToolPool::new(tools)
    }

    fn bank() -> ValueBank {
        let mut other = base();
        other.query = "weather in Lyon".into();
        other.calls[0]
            .arguments
            .insert("city".into(), json!("Lyon"));
        let mut third = base();
        third.query = "weather in Berlin".into();
        third.calls[0]
            .arguments
            .insert("city".into(), json!("Berlin"));
        ValueBank::from_examples(&[base(), other, third])
    }

    #[test]
    fn deterministic_and_valid() {
        let pool = pool();
        let bank = bank();
        let aug = Augmenter {
            pool: &pool,
            values: &bank,
            cfg: AugmentConfig {
                per_example: 40,
                seed: 7,
                ..Default::default()
            },
        };
        let (a, ra) = aug.variants(&base());
        let (b, _) = aug.variants(&base());
        assert_eq!(a, b, "same seed, same variants");
        let aug2 = Augmenter {
            cfg: AugmentConfig {
                per_example: 40,
                seed: 8,
                ..Default::default()
            },
            ..aug
        };
        let (c, _) = aug2.variants(&base());
        assert_ne!(a, c, "another seed, other variants");
        assert!(a.len() >= 35, "few discards: {ra:?}");
        let mut cats = HashSet::new();
        for v in &a {
            assert_eq!(validate_all(&v.calls, &v.tools), Ok(()), "{v:?}");
            assert!(v.tools.len() <= 8 && !v.tools.is_empty());
            cats.insert(v.category());
            // Copied string values still appear verbatim in the query.
            for s in call_strings(v) {
                if s != "c" {
                    assert!(v.query.contains(&s), "{s:?} not in {:?}", v.query);
                }
            }
            if v.calls.is_empty() {
                assert!(
                    v.tools.iter().all(|t| t.name != "get_weather"
                        && t.name != "getWeather"
                        && t.name != "get_weather_2"),
                    "gold tool removed: {:?}",
                    v.tools
                );
            }
        }
        assert_eq!(
            cats.len(),
            3,
            "single, multiple choice and no-call all occur: {cats:?}"
        );
    }

    #[test]
    fn value_substitution_changes_query_and_call_together() {
        let mut rng = example_rng(1, "x", "y");
        let bank = bank();
        let mut changed = 0;
        for _ in 0..20 {
            let mut ex = base();
            if substitute_values(&mut ex, &bank, &mut rng) {
                changed += 1;
                let city = ex.calls[0].arguments["city"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let days = ex.calls[0].arguments["days"].as_i64().unwrap_or_default();
                assert!(ex.query.contains(&city));
                assert!(
                    ex.query.contains(&format!("for {days} days")),
                    "{}",
                    ex.query
                );
                assert!((1..=14).contains(&days));
                assert_ne!(ex.query, base().query);
                assert_eq!(
                    ex.calls[0].arguments["units"], "c",
                    "enums are not substituted"
                );
            }
        }
        assert!(changed > 10);
    }

    #[test]
    fn masking_is_consistent() {
        for seed in 0..30 {
            let mut rng = example_rng(seed, "m", "m");
            let mut ex = base();
            mask_names(&mut ex, &mut rng);
            assert_eq!(validate_all(&ex.calls, &ex.tools), Ok(()));
            let t = &ex.tools[0];
            assert_eq!(ex.calls[0].name, t.name);
            assert_ne!(t.name, "get_weather");
            assert_eq!(t.parameters.properties.len(), 3);
            assert_eq!(t.parameters.required.len(), 1);
            // The required parameter kept its value under its new name.
            assert_eq!(ex.calls[0].arguments[&t.parameters.required[0]], "Paris");
        }
    }

    #[test]
    fn noise_keeps_copied_values() {
        for seed in 0..50 {
            let mut rng = example_rng(seed, "n", "n");
            let mut ex = base();
            ex.query = "Weather in New York, please. For 3,5 days?".into();
            ex.calls[0]
                .arguments
                .insert("city".into(), json!("New York"));
            query_noise(&mut ex, &mut rng);
            assert!(ex.query.contains("New York"), "{}", ex.query);
            assert!(ex.query.contains("3,5"), "{}", ex.query);
        }
    }

    #[test]
    fn token_boundaries() {
        assert_eq!(
            token_occurrences("room 10 and 100 and 10.5 and 10", "10"),
            vec![(5, 7), (29, 31)]
        );
        assert_eq!(token_occurrences("Parisian Paris", "Paris"), vec![(9, 14)]);
        assert_eq!(
            words("getWeatherData v2_x"),
            vec!["get", "weather", "data", "v2", "x"]
        );
    }
}
