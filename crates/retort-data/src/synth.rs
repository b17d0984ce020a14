//! Schema synthesis: single-call examples written from the tool pool's own
//! schemas, so that training sees thousands of tools instead of the few
//! hundred the teacher corpora call.
//!
//! The teacher corpora call about 2,000 distinct tools, while the pool holds
//! over 6,000 real schemas (Seal-Tools, ToolRL, CallNavi, LiveMCPBench, ...)
//! that no teacher example uses. For a pool tool, [`synthesize`] picks
//! arguments (every required parameter, some optional ones), draws a value
//! for each from its schema (an enum member, a number in range, a string
//! the corpora used for a parameter of that name, an example listed in the
//! parameter's description, or a small pool by the parameter's words), and
//! writes a request that states what the tool does and mentions each value
//! next to words of its parameter's name, in a shuffled order. The call is
//! exactly the mentioned values, so optional parameters are filled only
//! when the request states them.
//!
//! The templates are generic English written for this module; nothing is
//! taken from BFCL. The examples pass [`validate_all`] and the build's BFCL,
//! held-out-tool and duplicate filters like every other training example,
//! and are augmented (distractors, irrelevance, masking, noise) by the same
//! [`crate::augment::Augmenter`].

use std::collections::BTreeMap;

use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Number, Value};

use retort_core::{Call, Example, Schema, SchemaType, Tool, validate_all};

use crate::augment::{ValueBank, words};
use crate::rng::example_rng;

/// Knobs of [`synthesize`].
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Examples written per pool tool.
    pub per_tool: usize,
    /// Chance that each optional parameter is filled (and mentioned).
    pub p_optional: f64,
    /// Most arguments in one call (tools requiring more are skipped).
    pub max_args: usize,
    /// Longest request, in characters.
    pub max_query_chars: usize,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            per_tool: 3,
            p_optional: 0.3,
            max_args: 5,
            max_query_chars: 400,
            seed: 0,
        }
    }
}

/// What [`synthesize`] made and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SynthReport {
    /// Examples written.
    pub examples: usize,
    /// Pool tools with at least one example.
    pub tools_used: usize,
    /// Attempts skipped, by reason.
    pub skipped: BTreeMap<String, usize>,
}

/// Single-call examples for the tools of `pool` (`per_tool` attempts each),
/// with values drawn as described in the module documentation. Every
/// example's id starts with `synth:` and its source is `synth`.
pub fn synthesize(
    pool: &[Tool],
    bank: &ValueBank,
    cfg: &SynthConfig,
) -> (Vec<Example>, SynthReport) {
    let mut report = SynthReport::default();
    let mut out = Vec::new();
    for tool in pool {
        let mut used = false;
        for k in 0..cfg.per_tool {
            let mut rng = example_rng(cfg.seed, &tool.name, &format!("synth{k}"));
            match one(tool, bank, cfg, &mut rng) {
                Ok((query, args)) => {
                    let ex = Example {
                        id: format!("synth:{}~{k}", tool.name),
                        source: "synth".into(),
                        query,
                        tools: vec![tool.clone()],
                        calls: vec![Call::new(tool.name.clone(), args)],
                        teacher: None,
                        context: Vec::new(),
                    };
                    if let Err(e) = validate_all(&ex.calls, &ex.tools) {
                        *report
                            .skipped
                            .entry(format!("invalid/{}", e.kind.reason()))
                            .or_default() += 1;
                        continue;
                    }
                    used = true;
                    report.examples += 1;
                    out.push(ex);
                }
                Err(reason) => *report.skipped.entry(reason.to_string()).or_default() += 1,
            }
        }
        report.tools_used += usize::from(used);
    }
    (out, report)
}

/// One value: the JSON argument and how the request mentions it.
struct Drawn {
    value: Value,
    mention: String,
}

/// Write one request and its arguments for `tool`, or say why not.
fn one(
    tool: &Tool,
    bank: &ValueBank,
    cfg: &SynthConfig,
    rng: &mut ChaCha8Rng,
) -> Result<(String, Map<String, Value>), &'static str> {
    let props = &tool.parameters.properties;
    if props.is_empty() {
        return Err("no_parameters");
    }
    let required = &tool.parameters.required;
    if required.len() > cfg.max_args {
        return Err("too_many_required");
    }
    let mut chosen: Vec<&String> = props
        .keys()
        .filter(|k| required.contains(k) || rng.random_bool(cfg.p_optional))
        .collect();
    if chosen.is_empty() {
        let keys: Vec<&String> = props.keys().collect();
        chosen.extend(keys.choose(rng).copied());
    }
    let mut args = Map::new();
    let mut mentions: Vec<String> = Vec::new();
    for name in chosen {
        if args.len() >= cfg.max_args {
            break;
        }
        let Some(schema) = props.get(name) else {
            continue;
        };
        match draw(name, schema, bank, rng) {
            Some(d) => {
                mentions.push(d.mention);
                args.insert(name.clone(), d.value);
            }
            None if required.contains(name) => return Err("no_value_for_required"),
            None => {}
        }
    }
    if args.is_empty() {
        return Err("no_value");
    }
    if rng.random_bool(0.7) {
        mentions.shuffle(rng);
    }
    let query = request(tool, &mentions, rng);
    if query.chars().count() > cfg.max_query_chars {
        return Err("query_too_long");
    }
    Ok((query, args))
}

/// The words of a parameter or tool name, lower-cased ("startDate" ->
/// "start date").
fn phrase(name: &str) -> String {
    let ws = words(name);
    if ws.is_empty() {
        name.to_string()
    } else {
        ws.join(" ")
    }
}

/// A value and its mention for parameter `name`, or `None` when the schema
/// has no value this module can write (objects, `any`, strings without a
/// source).
fn draw(name: &str, schema: &Schema, bank: &ValueBank, rng: &mut ChaCha8Rng) -> Option<Drawn> {
    let p = phrase(name);
    if let Some(members) = &schema.enum_values {
        let m = members.choose(rng)?;
        let text = match m {
            Value::String(s) if usable(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        return Some(Drawn {
            value: m.clone(),
            mention: mention(&p, &text, rng),
        });
    }
    match schema.ty {
        SchemaType::Boolean => {
            let b = rng.random_bool(0.5);
            let forms: &[&str] = if b {
                &[
                    "with {p}",
                    "{p} enabled",
                    "{p} set to true",
                    "{p} turned on",
                ]
            } else {
                &[
                    "without {p}",
                    "{p} disabled",
                    "{p} set to false",
                    "{p} turned off",
                ]
            };
            let f = forms.choose(rng).copied().unwrap_or("{p} set to true");
            Some(Drawn {
                value: Value::Bool(b),
                mention: f.replace("{p}", &p),
            })
        }
        SchemaType::Integer | SchemaType::Number | SchemaType::String => {
            let (value, text) = scalar(name, schema, bank, rng)?;
            Some(Drawn {
                value,
                mention: mention(&p, &text, rng),
            })
        }
        SchemaType::Array => {
            let items = schema.items.as_deref()?;
            if !matches!(
                items.ty,
                SchemaType::Integer | SchemaType::Number | SchemaType::String
            ) {
                return None;
            }
            let lo = schema.min_items.unwrap_or(1).max(1) as usize;
            let hi = schema.max_items.map_or(4, |m| m as usize).max(lo).min(4);
            if lo > hi {
                return None;
            }
            let n = rng.random_range(lo..=hi).max(if hi >= 2 { 2 } else { 1 });
            let mut values: Vec<Value> = Vec::new();
            let mut texts: Vec<String> = Vec::new();
            for _ in 0..n * 4 {
                if values.len() >= n {
                    break;
                }
                let (v, t) = match &items.enum_values {
                    Some(members) => {
                        let m = members.choose(rng)?;
                        match m {
                            Value::String(s) if usable(s) => (m.clone(), s.clone()),
                            Value::Number(x) => (m.clone(), x.to_string()),
                            _ => return None,
                        }
                    }
                    None => scalar(name, items, bank, rng)?,
                };
                if !texts.contains(&t) {
                    values.push(v);
                    texts.push(t);
                }
            }
            if values.len() < lo {
                return None;
            }
            let text = join_list(&texts, rng);
            Some(Drawn {
                value: Value::Array(values),
                mention: mention(&p, &text, rng),
            })
        }
        SchemaType::Object | SchemaType::Any => None,
    }
}

/// A scalar value and its text: numbers from a range that suits the name,
/// strings from the corpora, the description's examples or a word pool.
fn scalar(
    name: &str,
    schema: &Schema,
    bank: &ValueBank,
    rng: &mut ChaCha8Rng,
) -> Option<(Value, String)> {
    let ws = words(name);
    match schema.ty {
        SchemaType::Integer => {
            let (lo, hi) = int_range(&ws, schema, rng);
            let n = rng.random_range(lo..=hi);
            Some((Value::from(n), n.to_string()))
        }
        SchemaType::Number => {
            let (lo, hi) = int_range(&ws, schema, rng);
            if rng.random_bool(0.5) {
                let n = rng.random_range(lo..=hi);
                return Some((Value::from(n), n.to_string()));
            }
            let decimals = rng.random_range(1..=2u32);
            let scale = 10f64.powi(decimals as i32);
            let x = (rng.random_range(lo as f64..=hi as f64) * scale).round() / scale;
            let text = format!("{x:.prec$}", prec = decimals as usize);
            let parsed: f64 = text.parse().ok()?;
            let number = Number::from_f64(parsed)?;
            // "2.50" would not be read back as the same literal: keep the
            // shortest form, the one the JSON value prints.
            let shown = number.to_string();
            Some((Value::Number(number), shown))
        }
        SchemaType::String => {
            let s = string_value(name, &ws, schema, bank, rng)?;
            Some((Value::String(s.clone()), s))
        }
        _ => None,
    }
}

/// A range for an integer named by `ws`, inside the schema's bounds.
fn int_range(ws: &[String], schema: &Schema, rng: &mut ChaCha8Rng) -> (i64, i64) {
    let has = |k: &[&str]| ws.iter().any(|w| k.contains(&w.as_str()));
    let (mut lo, mut hi) = if has(&["year"]) {
        (1950, 2030)
    } else if has(&["age"]) {
        (1, 90)
    } else if has(&["month"]) {
        (1, 12)
    } else if has(&["day"]) {
        (1, 28)
    } else if has(&["hour", "hours"]) {
        (1, 23)
    } else if has(&[
        "limit", "count", "num", "number", "top", "max", "size", "page", "k", "results",
    ]) {
        (1, 50)
    } else {
        match rng.random_range(0..10) {
            0..=3 => (1, 10),
            4..=7 => (10, 500),
            _ => (500, 100_000),
        }
    };
    if let Some(m) = schema.minimum {
        lo = lo.max(m.ceil() as i64);
    }
    if let Some(m) = schema.maximum {
        hi = hi.min(m.floor() as i64);
    }
    if lo > hi {
        // The schema's own bounds win over the name's range.
        lo = schema.minimum.map_or(hi, |m| m.ceil() as i64);
        hi = schema.maximum.map_or(lo, |m| m.floor() as i64).max(lo);
    }
    (lo, hi)
}

fn usable(s: &str) -> bool {
    let n = s.chars().count();
    (1..=60).contains(&n) && !s.contains(['\n', '$', '"'])
}

/// A string for parameter `name`: one the corpora used for this parameter
/// name (or one of its words), an example from its description, or a small
/// pool chosen by its words.
fn string_value(
    name: &str,
    ws: &[String],
    schema: &Schema,
    bank: &ValueBank,
    rng: &mut ChaCha8Rng,
) -> Option<String> {
    let ok = |s: &&String| {
        usable(s)
            && schema
                .max_length
                .is_none_or(|m| s.chars().count() as u64 <= m)
            && schema
                .min_length
                .is_none_or(|m| s.chars().count() as u64 >= m)
    };
    let mut candidates: Vec<Vec<String>> = Vec::new();
    let from_bank: Vec<String> = bank.values(name).iter().filter(ok).cloned().collect();
    let from_desc: Vec<String> = schema
        .description
        .as_deref()
        .map(described_examples)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| ok(&s))
        .collect();
    let from_pool: Vec<String> = word_pool(ws, rng).into_iter().filter(|s| ok(&s)).collect();
    let from_word_bank: Vec<String> = ws
        .iter()
        .filter(|w| w.len() > 2)
        .flat_map(|w| bank.values(w).iter().filter(ok).cloned())
        .collect();
    for c in [from_bank, from_desc, from_pool, from_word_bank] {
        if !c.is_empty() {
            candidates.push(c);
        }
    }
    // Mostly the first (most specific) source, sometimes another one.
    let pick = if candidates.len() > 1 && rng.random_bool(0.3) {
        candidates.get(1)
    } else {
        candidates.first()
    }?;
    pick.choose(rng).cloned()
}

/// Examples listed in a description: "(e.g., DNA, fingerprints, blood)",
/// "e.g. 'en'", "such as Paris or London".
fn described_examples(desc: &str) -> Vec<String> {
    let lower = desc.to_lowercase();
    let start = ["e.g.,", "e.g.", "eg.", "for example,", "such as", "like "]
        .iter()
        .filter_map(|m| lower.find(m).map(|i| i + m.len()))
        .min();
    let Some(start) = start else {
        return Vec::new();
    };
    let Some(rest) = desc.get(start..) else {
        return Vec::new();
    };
    let end = rest.find([')', '.', ';', '\n']).unwrap_or(rest.len());
    let list = rest.get(..end).unwrap_or("");
    list.split([',', '/'])
        .flat_map(|p| p.split(" or "))
        .map(|p| {
            p.trim()
                .trim_start_matches("and ")
                .trim_matches(|c: char| c == '\'' || c == '"' || c == '`' || c.is_whitespace())
                .to_string()
        })
        .filter(|p| {
            !p.is_empty()
                && p.split_whitespace().count() <= 4
                && p.chars().any(char::is_alphanumeric)
        })
        .collect()
}

/// Small value pools chosen by the words of a parameter name, more specific
/// rows first.
fn word_pool(ws: &[String], rng: &mut ChaCha8Rng) -> Vec<String> {
    const CONTACT: &[(&[&str], &[&str])] = &[
        (
            &["email", "mail"],
            &[
                "alice@example.com",
                "j.smith@mailbox.org",
                "support@acme.io",
                "li.wei@company.cn",
            ],
        ),
        (
            &["url", "link", "website", "site", "endpoint"],
            &[
                "https://example.com",
                "https://docs.acme.io/start",
                "www.openlibrary.org",
                "https://news.example.net/today",
            ],
        ),
        (
            &["phone", "mobile", "telephone"],
            &[
                "555-0123",
                "+1 202 555 0147",
                "(415) 555-0199",
                "+44 20 7946 0958",
            ],
        ),
    ];
    const ROWS: &[(&[&str], &[&str])] = &[
        (
            &["date", "birthday", "deadline", "day", "since", "until"],
            &[
                "2024-03-15",
                "2023-11-02",
                "2025-01-20",
                "2024-07-04",
                "2022-12-31",
                "2025-06-01",
                "March 3, 2024",
                "next Monday",
                "tomorrow",
            ],
        ),
        (
            &["time", "hour"],
            &["09:30", "14:00", "18:45", "7 pm", "noon", "08:15"],
        ),
        (
            &["currency"],
            &["USD", "EUR", "JPY", "GBP", "INR", "CAD", "AUD"],
        ),
        (
            &["symbol", "ticker", "stock"],
            &["AAPL", "MSFT", "TSLA", "AMZN", "NVDA", "IBM"],
        ),
        (
            &["language", "lang", "locale"],
            &[
                "English",
                "Spanish",
                "French",
                "German",
                "Japanese",
                "Portuguese",
                "Hindi",
                "en",
                "fr",
            ],
        ),
        (
            &["country", "nation"],
            &[
                "France", "Japan", "Brazil", "Canada", "India", "Kenya", "Mexico", "Norway",
                "Vietnam", "Egypt",
            ],
        ),
        (
            &[
                "city",
                "location",
                "place",
                "destination",
                "origin",
                "address",
                "town",
                "venue",
                "region",
                "area",
            ],
            &[
                "Paris",
                "Tokyo",
                "Nairobi",
                "Lisbon",
                "Denver",
                "Osaka",
                "Toronto",
                "Prague",
                "Cape Town",
                "Buenos Aires",
                "Melbourne",
                "Hanoi",
                "Seattle, WA",
                "221B Baker Street",
            ],
        ),
        (
            &[
                "company",
                "organization",
                "organisation",
                "brand",
                "vendor",
                "employer",
            ],
            &[
                "Acme Corp",
                "Globex",
                "Initech",
                "Umbrella Ltd",
                "Stark Industries",
                "Nike",
            ],
        ),
        (
            &["team", "club"],
            &[
                "Lakers",
                "Real Madrid",
                "Yankees",
                "Chelsea",
                "Warriors",
                "Bayern",
            ],
        ),
        (
            &[
                "movie", "film", "book", "song", "album", "title", "show", "series", "track",
            ],
            &[
                "Inception",
                "The Hobbit",
                "Pride and Prejudice",
                "Abbey Road",
                "Interstellar",
                "Dune",
                "Bohemian Rhapsody",
                "The Office",
            ],
        ),
        (
            &[
                "genre", "category", "topic", "subject", "field", "domain", "interest",
            ],
            &[
                "science fiction",
                "jazz",
                "sports",
                "technology",
                "history",
                "cooking",
                "finance",
                "travel",
            ],
        ),
        (
            &[
                "cuisine",
                "food",
                "dish",
                "recipe",
                "ingredient",
                "meal",
                "ingredients",
            ],
            &[
                "sushi",
                "pasta",
                "tacos",
                "vegan curry",
                "chicken",
                "tofu",
                "pancakes",
            ],
        ),
        (
            &["product", "item", "goods"],
            &[
                "laptop",
                "running shoes",
                "coffee maker",
                "headphones",
                "yoga mat",
                "desk lamp",
            ],
        ),
        (
            &["color", "colour"],
            &["red", "blue", "green", "black", "white", "yellow"],
        ),
        (
            &["unit", "units"],
            &["celsius", "fahrenheit", "metric", "imperial", "kg", "miles"],
        ),
        (
            &["file", "filename", "path", "folder", "directory"],
            &[
                "report.pdf",
                "data.csv",
                "notes.txt",
                "/home/user/photos",
                "image.png",
                "backup.zip",
            ],
        ),
        (
            &["status", "state"],
            &[
                "active",
                "pending",
                "completed",
                "cancelled",
                "open",
                "closed",
            ],
        ),
        (
            &["format"],
            &["json", "pdf", "csv", "summary", "detailed", "standard"],
        ),
        (
            &[
                "query",
                "keyword",
                "keywords",
                "search",
                "term",
                "text",
                "message",
                "content",
                "question",
                "prompt",
                "comment",
                "note",
                "description",
            ],
            &[
                "renewable energy",
                "machine learning basics",
                "climate change",
                "healthy breakfast ideas",
                "electric cars",
                "ancient Rome",
                "Meeting moved to 3pm",
                "Happy birthday!",
                "budget travel tips",
            ],
        ),
        (
            &[
                "author",
                "user",
                "username",
                "person",
                "artist",
                "customer",
                "owner",
                "employee",
                "patient",
                "player",
                "contact",
                "recipient",
                "sender",
                "doctor",
                "student",
                "driver",
                "guest",
                "friend",
            ],
            &[
                "Alice Johnson",
                "Bob Smith",
                "Maria Garcia",
                "Chen Wei",
                "Priya Patel",
                "John Doe",
                "Emma Brown",
                "Ahmed Khan",
                "Yuki Tanaka",
                "Lucas Silva",
            ],
        ),
    ];
    let row = |rows: &[(&[&str], &[&str])]| -> Option<Vec<String>> {
        rows.iter()
            .find(|(keys, _)| ws.iter().any(|w| keys.contains(&w.as_str())))
            .map(|(_, values)| values.iter().map(|s| s.to_string()).collect())
    };
    if let Some(v) = row(CONTACT) {
        return v;
    }
    // "customer_id" is an identifier, not a customer's name.
    if ws.iter().any(|w| {
        matches!(
            w.as_str(),
            "id" | "code" | "key" | "token" | "number" | "account" | "order" | "reference"
        )
    }) {
        // Identifiers: letters and digits, fresh for each draw.
        let letters: String = (0..rng.random_range(1..=3))
            .map(|_| char::from(b'A' + rng.random_range(0..26u8)))
            .collect();
        let digits = rng.random_range(100..1_000_000u32);
        return vec![format!("{letters}{digits}"), digits.to_string()];
    }
    row(ROWS).unwrap_or_default()
}

/// "a, b and c" (or "a, b, c").
fn join_list(items: &[String], rng: &mut ChaCha8Rng) -> String {
    match items {
        [] => String::new(),
        [a] => a.clone(),
        [init @ .., last] if rng.random_bool(0.7) => format!("{} and {last}", init.join(", ")),
        all => all.join(", "),
    }
}

/// How the request mentions a value next to words of its parameter's name.
fn mention(p: &str, v: &str, rng: &mut ChaCha8Rng) -> String {
    const FORMS: &[&str] = &[
        "{p} {v}",
        "{p} {v}",
        "{p} of {v}",
        "the {p} {v}",
        "the {p} is {v}",
        "{p}: {v}",
        "{p} = {v}",
        "{v} as the {p}",
        "{p} set to {v}",
        "a {p} of {v}",
        "{p} '{v}'",
    ];
    let f = FORMS.choose(rng).copied().unwrap_or("{p} {v}");
    // Replace the value last, so a value containing "{p}" stays as it is.
    f.replace("{p}", p).replace("{v}", v)
}

/// Words that start a description without saying what to do.
const NOT_VERBS: &[&str] = &[
    "a", "an", "the", "this", "that", "it", "api", "tool", "function", "used", "use", "for", "to",
    "when", "if", "in", "on", "with", "by", "given", "based", "endpoint", "method", "allows",
    "provides", "helps", "lets",
];

/// What the request asks, in the imperative: the description's first clause
/// ("Retrieves the weather for a city" -> "retrieve the weather for a
/// city"), or the tool name's words.
fn intent(tool: &Tool, rng: &mut ChaCha8Rng) -> String {
    let desc = tool.description.trim();
    let clause_end = desc.find(['.', ';', '(', '\n', ':']).unwrap_or(desc.len());
    let clause = desc.get(..clause_end).unwrap_or("").trim();
    let mut ws: Vec<&str> = clause.split_whitespace().take(14).collect();
    let first = ws.first().map(|w| w.to_lowercase()).unwrap_or_default();
    let usable_desc = ws.len() >= 2
        && first.chars().all(|c| c.is_ascii_alphabetic())
        && !NOT_VERBS.contains(&first.as_str());
    if usable_desc && rng.random_bool(0.8) {
        let verb = imperative(&first);
        ws[0] = &verb;
        let mut s = ws.join(" ");
        while s.ends_with([',', ' ']) {
            s.pop();
        }
        s
    } else {
        phrase(&tool.name)
    }
}

/// "retrieves" -> "retrieve", "searches" -> "search", "queries" -> "query".
fn imperative(w: &str) -> String {
    if let Some(stem) = w.strip_suffix("ies")
        && w.len() > 4
    {
        return format!("{stem}y");
    }
    for suffix in ["ches", "shes", "sses", "xes", "zes"] {
        if w.ends_with(suffix) {
            return w[..w.len() - 2].to_string();
        }
    }
    if w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && w.len() > 3 {
        return w[..w.len() - 1].to_string();
    }
    w.to_string()
}

/// The whole request: the intent and the mentions, in one of several
/// shapes.
fn request(tool: &Tool, mentions: &[String], rng: &mut ChaCha8Rng) -> String {
    let what = intent(tool, rng);
    let list = join_list(mentions, rng);
    let openers: &[&str] = &[
        "{w}",
        "Please {w}",
        "Can you {w}",
        "I need to {w}",
        "Help me {w}",
        "I'd like to {w}",
        "Could you {w}",
        "I want to {w}",
    ];
    let opener = openers.choose(rng).copied().unwrap_or("{w}");
    let question = opener.starts_with("Can") || opener.starts_with("Could");
    let ask = capitalize(&opener.replace("{w}", &what));
    let end = if question { "?" } else { "." };
    match rng.random_range(0..6) {
        0 | 1 => format!("{ask} with {list}{end}"),
        2 => format!("{ask} for {list}{end}"),
        3 => format!("{ask}: {list}{end}"),
        4 => {
            let lead = capitalize(&list);
            format!("{lead}. {ask}{end}")
        }
        _ => {
            let sentences: Vec<String> = mentions
                .iter()
                .map(|m| format!("{}.", capitalize(m)))
                .collect();
            format!("{ask}{end} {}", sentences.join(" "))
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(v: Value) -> Tool {
        Tool::parse(&v, retort_core::ToolFormat::OpenAi).expect("tool")
    }

    fn pool() -> Vec<Tool> {
        vec![
            tool(json!({"name": "analyzeEvidence",
                "description": "Analyzes the chemical evidence collected from a crime scene",
                "parameters": {"type": "object", "properties": {
                    "evidence_type": {"type": "string", "description": "The type of evidence (e.g., DNA, fingerprints, blood)"},
                    "sample_count": {"type": "integer", "minimum": 1, "maximum": 9},
                    "urgent": {"type": "boolean"},
                    "method": {"type": "string", "enum": ["spectroscopy", "chromatography"]}},
                  "required": ["evidence_type", "sample_count"]}})),
            tool(json!({"name": "convert_units",
                "description": "Convert a value between units.",
                "parameters": {"type": "object", "properties": {
                    "value": {"type": "number"},
                    "units": {"type": "array", "items": {"type": "string"}}},
                  "required": ["value", "units"]}})),
            tool(json!({"name": "configure",
                "description": "Set options",
                "parameters": {"type": "object", "properties": {
                    "options": {"type": "object"}}, "required": ["options"]}})),
            tool(json!({"name": "ping", "description": "Check the service",
                "parameters": {"type": "object", "properties": {}}})),
        ]
    }

    fn cfg() -> SynthConfig {
        SynthConfig {
            per_tool: 12,
            seed: 7,
            ..SynthConfig::default()
        }
    }

    #[test]
    fn examples_are_valid_deterministic_and_mention_their_values() {
        let bank = ValueBank::default();
        let (a, rep) = synthesize(&pool(), &bank, &cfg());
        let (b, _) = synthesize(&pool(), &bank, &cfg());
        assert_eq!(a, b, "same seed, same examples");
        assert_eq!(rep.examples, a.len());
        assert_eq!(rep.tools_used, 2, "{rep:?}");
        assert_eq!(rep.skipped.get("no_parameters"), Some(&12));
        assert_eq!(rep.skipped.get("no_value_for_required"), Some(&12));
        assert_eq!(a.len(), 24);
        for e in &a {
            assert!(validate_all(&e.calls, &e.tools).is_ok(), "{e:?}");
            assert_eq!(e.source, "synth");
            let call = &e.calls[0];
            for (k, v) in &call.arguments {
                match v {
                    Value::String(s) => {
                        assert!(e.query.contains(s.as_str()), "{k} {s} in {}", e.query)
                    }
                    Value::Number(n) => {
                        assert!(e.query.contains(&n.to_string()), "{k} {n} in {}", e.query)
                    }
                    Value::Array(items) => {
                        for it in items {
                            let t = match it {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            assert!(e.query.contains(&t), "{t} in {}", e.query);
                        }
                    }
                    Value::Bool(_) => {}
                    other => panic!("unexpected value {other}"),
                }
            }
        }
        let evidence: Vec<&Example> = a
            .iter()
            .filter(|e| e.tools[0].name == "analyzeEvidence")
            .collect();
        // Values come from the description's examples; the integer stays in bounds.
        for e in &evidence {
            let args = &e.calls[0].arguments;
            let t = args["evidence_type"].as_str().unwrap_or("");
            assert!(["DNA", "fingerprints", "blood"].contains(&t), "{t}");
            let n = args["sample_count"].as_i64().unwrap_or(0);
            assert!((1..=9).contains(&n));
        }
        // Optional parameters appear in some examples, not in all.
        let with_optional = evidence
            .iter()
            .filter(|e| e.calls[0].arguments.len() > 2)
            .count();
        assert!(
            with_optional > 0 && with_optional < evidence.len(),
            "{with_optional}"
        );
    }

    #[test]
    fn bank_values_are_preferred_for_known_parameter_names() {
        let ex = Example {
            id: "x".into(),
            source: "t".into(),
            query: "Evidence type Tire Marks please".into(),
            tools: vec![pool()[0].clone()],
            calls: vec![Call::new(
                "analyzeEvidence",
                json!({"evidence_type": "Tire Marks", "sample_count": 2})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )],
            teacher: None,
            context: vec![],
        };
        let bank = ValueBank::from_examples(&[ex]);
        let (a, _) = synthesize(&pool()[..1], &bank, &cfg());
        assert!(
            a.iter()
                .any(|e| e.calls[0].arguments["evidence_type"] == "Tire Marks")
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(imperative("retrieves"), "retrieve");
        assert_eq!(imperative("searches"), "search");
        assert_eq!(imperative("queries"), "query");
        assert_eq!(imperative("calculate"), "calculate");
        assert_eq!(imperative("access"), "access");
        assert_eq!(
            described_examples("The city (e.g., 'Paris', London or New York)"),
            vec!["Paris", "London", "New York"]
        );
        assert!(described_examples("A city name").is_empty());
        let mut rng = example_rng(1, "t", "pool");
        let ws = |s: &str| words(s);
        let ids = word_pool(&ws("customer_id"), &mut rng);
        assert!(!ids.is_empty() && ids.iter().all(|v| v.chars().any(|c| c.is_ascii_digit())));
        assert!(word_pool(&ws("phone_number"), &mut rng).contains(&"555-0123".to_string()));
        assert!(word_pool(&ws("customer"), &mut rng).contains(&"Bob Smith".to_string()));
        assert!(word_pool(&ws("evidence_type"), &mut rng).is_empty());
        assert_eq!(phrase("startDate"), "start date");
        assert_eq!(phrase("evidence_type"), "evidence type");
    }
}
