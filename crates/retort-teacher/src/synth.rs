//! Request synthesis: the prompts that make the teacher write varied,
//! realistic user requests for a tool set, and the parsing of its answer.
//!
//! No request is written here: each synthesis batch asks the teacher for a
//! mix of request kinds (single calls, several calls, requests missing a
//! required detail, requests no tool serves), with a writer persona, a style
//! and a tool to feature chosen per batch from the seed, so batches differ
//! while a re-run with the same seed sends the same prompts (and hits the
//! cache).

use retort_core::Tool;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What a synthesized request is meant to exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// One call of one tool, all details given.
    Single,
    /// Several calls: one tool several times or several tools.
    Multi,
    /// A tool fits but a required detail is missing.
    MissingInfo,
    /// No tool serves the request.
    NoTool,
}

impl RequestKind {
    pub const ALL: [RequestKind; 4] = [
        RequestKind::Single,
        RequestKind::Multi,
        RequestKind::MissingInfo,
        RequestKind::NoTool,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Single => "single",
            RequestKind::Multi => "multi",
            RequestKind::MissingInfo => "missing_info",
            RequestKind::NoTool => "no_tool",
        }
    }
    fn weight(self) -> f64 {
        match self {
            RequestKind::Single => 0.4,
            RequestKind::Multi => 0.2,
            RequestKind::MissingInfo => 0.15,
            RequestKind::NoTool => 0.25,
        }
    }
    fn describe(self) -> &'static str {
        match self {
            RequestKind::Single => {
                "fulfilled by one tool with a single call, giving every detail the call needs"
            }
            RequestKind::Multi => {
                "needing several calls at once: the same tool with different arguments, or different tools"
            }
            RequestKind::MissingInfo => {
                "for which a tool fits but a required detail is missing or ambiguous, so an assistant would have to ask back"
            }
            RequestKind::NoTool => {
                "sounding related but which none of the tools can serve (a different task, out of scope, or small talk)"
            }
        }
    }
    fn parse(s: &str) -> Option<Self> {
        let s = s.to_ascii_lowercase().replace(['-', ' '], "_");
        RequestKind::ALL.into_iter().find(|k| {
            k.as_str() == s
                || (s.starts_with("multi") && *k == RequestKind::Multi)
                || (s.starts_with("missing") && *k == RequestKind::MissingInfo)
                || ((s.starts_with("no_") || s == "none" || s == "irrelevant")
                    && *k == RequestKind::NoTool)
        })
    }
}

/// The system instruction of synthesis.
pub const SYNTH_SYSTEM: &str = "You write realistic test data for an assistant that can call tools. \
You invent what real users would type to such an assistant: natural, specific, varied in wording, length and \
concrete values (names, places, amounts, dates, identifiers). You never mention tool names, parameter names \
or JSON in the requests themselves. You answer with JSON only.";

/// The system instruction of answering with function calling.
pub const ANSWER_SYSTEM: &str = "You are a helpful assistant with access to the tools below. \
Call the tool or tools that fulfil the user's request, with arguments taken from the request. \
If several independent actions are requested, make all the calls. \
If a required detail is missing, do not guess it: ask the user instead of calling. \
If no tool can serve the request, do not call any tool; answer briefly in text.";

const PERSONAS: &[&str] = &[
    "a busy professional typing quickly on a phone",
    "a non-native English speaker",
    "a developer automating a chore",
    "a student trying the assistant for the first time",
    "a polite, slightly verbose retiree",
    "a support agent acting on behalf of a customer",
    "a small-business owner",
    "someone multitasking who gives context first",
];

const STYLES: &[&str] = &[
    "terse, almost keyword-like",
    "conversational, in full sentences",
    "casual, with a typo or two and no capital letters",
    "formal and precise",
    "indirect: the need is implied rather than stated as a command",
    "chatty, with irrelevant personal context around the actual need",
];

/// One planned synthesis batch.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthBatch {
    pub index: u64,
    pub count: usize,
    pub mix: Vec<(RequestKind, usize)>,
    pub persona: &'static str,
    pub style: &'static str,
    pub focus: Option<String>,
}

fn pick(seed: u64, batch: u64, what: &str, n: usize) -> usize {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(batch.to_le_bytes());
    h.update(what.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_le_bytes(b) % n.max(1) as u64) as usize
}

/// How many requests of each kind a batch of `count` asks for: the weights
/// (40% single, 20% multi, 15% missing information, 25% no tool) rounded
/// down, the remainder given in an order that rotates with the batch.
pub fn mix(count: usize, batch: u64) -> Vec<(RequestKind, usize)> {
    let mut counts: Vec<(RequestKind, usize)> = RequestKind::ALL
        .iter()
        .map(|&k| (k, (k.weight() * count as f64).floor() as usize))
        .collect();
    let mut left = count.saturating_sub(counts.iter().map(|c| c.1).sum::<usize>());
    let n = counts.len();
    let mut i = (batch as usize) % n;
    while left > 0 {
        counts[i].1 += 1;
        left -= 1;
        i = (i + 1) % n;
    }
    counts
}

impl SynthBatch {
    /// Plan batch `index` of `count` requests for `tools` under `seed`.
    pub fn plan(tools: &[Tool], seed: u64, index: u64, count: usize) -> Self {
        let focus = (!tools.is_empty())
            .then(|| tools[pick(seed, index, "focus", tools.len())].name.clone());
        SynthBatch {
            index,
            count,
            mix: mix(count, index.wrapping_add(seed)),
            persona: PERSONAS[pick(seed, index, "persona", PERSONAS.len())],
            style: STYLES[pick(seed, index, "style", STYLES.len())],
            focus,
        }
    }

    /// The user prompt of this batch.
    pub fn prompt(&self, tools: &[Tool]) -> String {
        let mut s = String::new();
        s.push_str("The assistant has these tools (OpenAI function definitions):\n");
        for t in tools {
            s.push_str(&t.to_json().to_string());
            s.push('\n');
        }
        s.push_str(&format!(
            "\nWrite exactly {} different user requests to this assistant:\n",
            self.count
        ));
        for (kind, n) in &self.mix {
            if *n > 0 {
                let noun = if *n == 1 { "request" } else { "requests" };
                s.push_str(&format!(
                    "- {n} {noun} {} (kind \"{}\")\n",
                    kind.describe(),
                    kind.as_str()
                ));
            }
        }
        s.push_str(&format!(
            "\nWrite them as {} would. Style: {}. ",
            self.persona, self.style
        ));
        if let Some(f) = &self.focus
            && self.count > 1
        {
            s.push_str(&format!(
                "At least two of the requests that use a tool should need `{f}`. "
            ));
        }
        s.push_str(&format!(
            "Use fresh, concrete values; do not reuse the examples of the tool descriptions. \
             This is batch {} of a larger set, so avoid the most obvious requests.\n\n\
             Answer with a JSON object: {{\"requests\": [{{\"kind\": \"single|multi|missing_info|no_tool\", \"query\": \"...\"}}]}}",
            self.index
        ));
        s
    }
}

/// A request the teacher wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthRequest {
    pub kind: Option<RequestKind>,
    pub query: String,
}

/// Read the teacher's list of requests: `{"requests": [...]}` or a bare
/// array; items are `{"query": ...}` objects (also `request`/`text`/
/// `user_request`) or strings. Empty and non-text items are skipped.
pub fn parse_requests(v: &Value) -> Option<Vec<SynthRequest>> {
    let items = match v {
        Value::Array(a) => a,
        Value::Object(o) => o
            .get("requests")
            .or_else(|| o.get("queries"))
            .or_else(|| o.values().find(|x| x.is_array()))?
            .as_array()?,
        _ => return None,
    };
    let mut out = Vec::new();
    for it in items {
        let (query, kind) = match it {
            Value::String(s) => (s.as_str(), None),
            Value::Object(o) => {
                let q = ["query", "request", "text", "user_request", "prompt"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(Value::as_str));
                let Some(q) = q else { continue };
                (
                    q,
                    o.get("kind")
                        .and_then(Value::as_str)
                        .and_then(RequestKind::parse),
                )
            }
            _ => continue,
        };
        let query = query.trim();
        if !query.is_empty() {
            out.push(SynthRequest {
                kind,
                query: query.to_string(),
            });
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::ToolFormat;
    use serde_json::json;

    fn tools() -> Vec<Tool> {
        Tool::parse_many(
            &json!([{"name": "get_weather", "description": "Weather for a city"},
                    {"name": "book_table", "description": "Book a restaurant"}]),
            ToolFormat::Auto,
        )
        .expect("tools")
    }

    #[test]
    fn mix_sums_and_rotates() {
        for count in 1..20 {
            for b in 0..4 {
                let m = mix(count, b);
                assert_eq!(m.iter().map(|x| x.1).sum::<usize>(), count);
            }
        }
        let m = mix(8, 0);
        assert_eq!(m.iter().map(|x| x.1).collect::<Vec<_>>(), vec![4, 1, 1, 2]);
        assert_ne!(mix(8, 0), mix(8, 1));
    }

    #[test]
    fn plans_are_deterministic_and_vary() {
        let t = tools();
        assert_eq!(SynthBatch::plan(&t, 7, 3, 8), SynthBatch::plan(&t, 7, 3, 8));
        let prompts: std::collections::HashSet<String> = (0..6)
            .map(|b| SynthBatch::plan(&t, 7, b, 8).prompt(&t))
            .collect();
        assert_eq!(prompts.len(), 6);
        let p = SynthBatch::plan(&t, 7, 0, 8).prompt(&t);
        assert!(p.contains("Write exactly 8 different user requests"));
        assert!(p.contains("\"name\":\"get_weather\""));
        assert!(p.contains("no_tool"));
    }

    #[test]
    fn request_parsing() {
        let v = json!({"requests": [{"kind": "multi", "query": " a and b "}, "plain",
            {"kind": "weird", "request": "c"}, {"query": ""}, 5, {"nothing": 1}]});
        let r = parse_requests(&v).expect("list");
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0],
            SynthRequest {
                kind: Some(RequestKind::Multi),
                query: "a and b".into()
            }
        );
        assert_eq!(r[1].kind, None);
        assert_eq!(r[2].query, "c");
        assert_eq!(parse_requests(&json!("x")), None);
        assert_eq!(
            parse_requests(&json!([{"kind": "no tool", "query": "q"}])).expect("l")[0].kind,
            Some(RequestKind::NoTool)
        );
    }
}
