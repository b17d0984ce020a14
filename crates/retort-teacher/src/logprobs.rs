//! Mapping token log-probabilities onto the student's decisions.
//!
//! Teacher APIs report log-probabilities per *token* (OpenAI
//! `logprobs.content`, Gemini `logprobsResult`), while the student decides
//! per *function* and per *argument*. The mapping:
//!
//! 1. The tokens are concatenated into the generated text, remembering each
//!    token's character span.
//! 2. For call `i`, the function name is searched in that text (after the
//!    previous call). The **decisive token** is the first token of the name
//!    after which no other offered tool name is still possible. Each top
//!    alternative at that position is extended with the name prefix already
//!    written; if exactly one tool name is consistent with it, its
//!    probability is credited to that tool (log-sum-exp when several
//!    alternatives lead to the same tool). Alternatives consistent with no
//!    tool are left out. Decision label: `call{i}:function`.
//! 3. For each scalar argument, the parameter name and then the value's text
//!    are searched after the function name. For a parameter with a string
//!    `enum`, the members are the candidates, as for names. Otherwise the
//!    top alternatives of the value's first token are recorded as they are
//!    (the student's first copy/generate step). Label: `call{i}:arg:{name}`.
//! 4. When only one candidate exists the decision has the chosen entry only,
//!    with the summed log-probability of the tokens that wrote it.
//!
//! Decisions whose text cannot be found in the tokens (OpenAI, for example,
//! reports logprobs for message content only, not for `tool_calls`) are
//! simply absent: `teacher.logprobs` holds what could be mapped, never a guess.

use retort_core::{Call, DecisionLogprobs, SchemaType, Tool};
use serde_json::Value;

use crate::protocol::TokenLogprob;

struct Text {
    text: String,
    /// Byte start of each token in `text`.
    starts: Vec<usize>,
}

impl Text {
    fn new(tokens: &[TokenLogprob]) -> Self {
        let mut text = String::new();
        let mut starts = Vec::with_capacity(tokens.len());
        for t in tokens {
            starts.push(text.len());
            text.push_str(&t.token);
        }
        Text { text, starts }
    }

    /// Index of the token containing byte `pos`.
    fn token_at(&self, tokens: &[TokenLogprob], pos: usize) -> Option<usize> {
        let i = self.starts.partition_point(|&s| s <= pos).checked_sub(1)?;
        (pos < self.starts[i] + tokens[i].token.len()).then_some(i)
    }
}

fn logsumexp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-' || c == '.'
}

/// Candidates consistent with `written`: those that start with it, or that
/// it starts with followed by a non-identifier character.
fn consistent<'a>(written: &str, candidates: &'a [String]) -> Vec<&'a String> {
    candidates
        .iter()
        .filter(|c| {
            c.starts_with(written)
                || (written.starts_with(c.as_str())
                    && written[c.len()..]
                        .chars()
                        .next()
                        .is_none_or(|ch| !is_ident(ch)))
        })
        .collect()
}

/// The distribution over `candidates` of the choice of `chosen`, written at
/// byte `start` of the text.
fn choice(
    text: &Text,
    tokens: &[TokenLogprob],
    start: usize,
    chosen: &str,
    candidates: &[String],
) -> Option<DecisionLogprobs> {
    let end = start + chosen.len();
    let first = text.token_at(tokens, start)?;
    if consistent("", candidates).len() <= 1 {
        let mut lp = 0.0;
        let mut k = first;
        while k < tokens.len() && text.starts[k] < end {
            lp += tokens[k].logprob;
            k += 1;
        }
        return Some(DecisionLogprobs {
            decision: String::new(),
            top: vec![(chosen.to_string(), lp)],
        });
    }
    let mut k = first;
    while k < tokens.len() && text.starts[k] < end {
        let tok_start = text.starts[k];
        // Part of the token before the value (e.g. an opening quote).
        let lead = if tok_start < start {
            text.text.get(tok_start..start)?
        } else {
            ""
        };
        let written = text.text.get(start..tok_start.max(start))?;
        let before = consistent(written, candidates).len();
        let after_written = text
            .text
            .get(start..(tok_start + tokens[k].token.len()).min(end))?;
        let after = consistent(after_written, candidates).len();
        if before > 1 && after <= 1 {
            let mut alts: Vec<(String, f64)> = Vec::new();
            let mut seen_chosen = false;
            let chosen_tok = (tokens[k].token.clone(), tokens[k].logprob);
            let mut options = tokens[k].top.clone();
            if !options.iter().any(|(t, _)| *t == chosen_tok.0) {
                options.push(chosen_tok);
            }
            for (alt, lp) in options {
                let Some(rest) = alt.strip_prefix(lead) else {
                    continue;
                };
                let cand_text = format!("{written}{rest}");
                let fits = consistent(&cand_text, candidates);
                if fits.len() != 1 {
                    continue;
                }
                let name = fits[0].clone();
                seen_chosen |= name == chosen;
                match alts.iter_mut().find(|(n, _)| *n == name) {
                    Some(entry) => entry.1 = logsumexp(entry.1, lp),
                    None => alts.push((name, lp)),
                }
            }
            if !seen_chosen {
                return None;
            }
            alts.sort_by(|a, b| b.1.total_cmp(&a.1));
            return Some(DecisionLogprobs {
                decision: String::new(),
                top: alts,
            });
        }
        k += 1;
    }
    None
}

/// The raw alternatives of the token where a value starts.
fn raw_alternatives(
    text: &Text,
    tokens: &[TokenLogprob],
    start: usize,
) -> Option<DecisionLogprobs> {
    let k = text.token_at(tokens, start)?;
    let mut top = tokens[k].top.clone();
    if !top.iter().any(|(t, _)| *t == tokens[k].token) {
        top.push((tokens[k].token.clone(), tokens[k].logprob));
    }
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    Some(DecisionLogprobs {
        decision: String::new(),
        top,
    })
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Map token log-probabilities onto per-decision log-probabilities of
/// `calls` (see the module documentation).
pub fn map_decisions(
    tokens: &[TokenLogprob],
    calls: &[Call],
    tools: &[Tool],
) -> Vec<DecisionLogprobs> {
    if tokens.is_empty() {
        return Vec::new();
    }
    let text = Text::new(tokens);
    let names: Vec<String> = tools.iter().map(|t| t.name.clone()).collect();
    let mut out = Vec::new();
    let mut cursor = 0;
    for (i, call) in calls.iter().enumerate() {
        let Some(rel) = text.text.get(cursor..).and_then(|t| t.find(&call.name)) else {
            continue;
        };
        let name_pos = cursor + rel;
        if let Some(mut d) = choice(&text, tokens, name_pos, &call.name, &names) {
            d.decision = format!("call{i}:function");
            out.push(d);
        }
        let after_name = name_pos + call.name.len();
        let tool = tools.iter().find(|t| t.name == call.name);
        let mut furthest = after_name;
        for (arg, value) in &call.arguments {
            let Some(vtext) = scalar_text(value) else {
                continue;
            };
            let Some(krel) = text
                .text
                .get(after_name..)
                .and_then(|t| t.find(arg.as_str()))
            else {
                continue;
            };
            let key_end = after_name + krel + arg.len();
            let Some(vrel) = text.text.get(key_end..).and_then(|t| t.find(&vtext)) else {
                continue;
            };
            let vpos = key_end + vrel;
            furthest = furthest.max(vpos + vtext.len());
            let schema = tool.and_then(|t| t.parameters.properties.get(arg));
            let enum_members: Option<Vec<String>> = schema
                .filter(|s| s.ty == SchemaType::String)
                .and_then(|s| s.enum_values.as_ref())
                .map(|vals| {
                    vals.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                });
            let d = match enum_members {
                Some(members) if !members.is_empty() => {
                    choice(&text, tokens, vpos, &vtext, &members)
                }
                _ => raw_alternatives(&text, tokens, vpos),
            };
            if let Some(mut d) = d {
                d.decision = format!("call{i}:arg:{arg}");
                out.push(d);
            }
        }
        cursor = furthest;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::ToolFormat;
    use serde_json::json;

    fn tok(t: &str, lp: f64, top: &[(&str, f64)]) -> TokenLogprob {
        TokenLogprob {
            token: t.to_string(),
            logprob: lp,
            top: top.iter().map(|(a, b)| (a.to_string(), *b)).collect(),
        }
    }

    fn tools() -> Vec<Tool> {
        Tool::parse_many(
            &json!([
                {"name": "get_weather", "parameters": {"type": "object", "properties": {
                    "city": {"type": "string"}, "units": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}},
                {"name": "get_time", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "send_email", "parameters": {"type": "object", "properties": {}}}
            ]),
            ToolFormat::Auto,
        )
        .expect("tools")
    }

    #[test]
    fn function_and_arguments() {
        // {"name": "get_weather", "arguments": {"city": "Paris", "units": "celsius"}}
        let tokens = vec![
            tok("{\"name\": \"", -0.01, &[]),
            tok("get", -0.05, &[("get", -0.05), ("send", -3.0)]),
            tok(
                "_weather",
                -0.2,
                &[("_weather", -0.2), ("_time", -1.8), ("_w", -4.0)],
            ),
            tok("\", \"arguments\": {\"city\": \"", -0.01, &[]),
            tok("Par", -0.3, &[("Par", -0.3), ("Lon", -1.5)]),
            tok("is\", \"units\": \"", -0.01, &[]),
            tok("cel", -0.4, &[("cel", -0.4), ("fahr", -1.1), ("kel", -5.0)]),
            tok("sius\"}}", -0.01, &[]),
        ];
        let calls = vec![Call::new(
            "get_weather",
            json!({"city": "Paris", "units": "celsius"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )];
        let d = map_decisions(&tokens, &calls, &tools());
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(d[0].decision, "call0:function");
        // "get" leaves get_weather and get_time; "_weather" decides. "_w"
        // fits get_weather too and is summed into it.
        assert_eq!(d[0].top[0].0, "get_weather");
        assert!((d[0].top[0].1 - logsumexp(-0.2, -4.0)).abs() < 1e-12);
        assert_eq!(d[0].top[1], ("get_time".to_string(), -1.8));
        assert_eq!(d[1].decision, "call0:arg:city");
        assert_eq!(
            d[1].top,
            vec![("Par".to_string(), -0.3), ("Lon".to_string(), -1.5)]
        );
        assert_eq!(d[2].decision, "call0:arg:units");
        assert_eq!(
            d[2].top,
            vec![
                ("celsius".to_string(), -0.4),
                ("fahrenheit".to_string(), -1.1)
            ]
        );
    }

    #[test]
    fn token_spanning_the_boundary() {
        // The name's first token carries the opening quote.
        let tokens = vec![
            tok("call ", -0.1, &[]),
            tok(
                "\"send",
                -0.7,
                &[("\"send", -0.7), ("\"get", -0.9), ("x", -2.0)],
            ),
            tok("_email\"", -0.0, &[]),
        ];
        let calls = vec![Call::new("send_email", Default::default())];
        let d = map_decisions(&tokens, &calls, &tools());
        assert_eq!(d.len(), 1);
        // "get" is still ambiguous between two tools: not credited.
        assert_eq!(d[0].top, vec![("send_email".to_string(), -0.7)]);
    }

    #[test]
    fn missing_text_gives_nothing() {
        let tokens = vec![tok("I cannot help with that.", -0.5, &[])];
        let calls = vec![Call::new("get_time", Default::default())];
        assert!(map_decisions(&tokens, &calls, &tools()).is_empty());
        assert!(map_decisions(&[], &calls, &tools()).is_empty());
    }

    #[test]
    fn single_candidate_sums_tokens() {
        let only = Tool::parse_many(&json!([{"name": "ping"}]), ToolFormat::Auto).expect("t");
        let tokens = vec![tok("pi", -0.25, &[]), tok("ng", -0.5, &[])];
        let d = map_decisions(&tokens, &[Call::new("ping", Default::default())], &only);
        assert_eq!(d[0].top, vec![("ping".to_string(), -0.75)]);
    }
}
