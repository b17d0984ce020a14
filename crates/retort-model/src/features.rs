//! Lexical features of the rendered input: facts about each token that the
//! network reads as learned inputs instead of hand-set decoding biases.
//!
//! Each token gets a bit set ([`bit`]): whether a query word also appears
//! in a tool's names, enum members or other schema text, whether a schema
//! word appears in the query, capitalisation, digits, list position and
//! quoting. The network adds a learned vector per set bit to the encoder
//! states the decoder reads (`ModelConfig::lexical_features`), so the
//! decoder's pointer can learn how much "this enum member is written in the
//! request" matters, where v0.3 added a fixed logit. Training and serving
//! both compute the bits here, from the same [`Rendered`] input.

use std::collections::HashSet;

use crate::render::Rendered;

/// The feature bits.
pub mod bit {
    /// Query word that is a word of a function or parameter name.
    pub const Q_IN_NAME: u16 = 1 << 0;
    /// Query word that is a word of an enum member.
    pub const Q_IN_ENUM: u16 = 1 << 1;
    /// Query word found elsewhere in the schema text (descriptions, types).
    pub const Q_IN_DESC: u16 = 1 << 2;
    /// Query word that starts with a capital letter.
    pub const Q_CAPITAL: u16 = 1 << 3;
    /// Token with a digit.
    pub const DIGIT: u16 = 1 << 4;
    /// Query word right after a list separator (`,` `;` `and` `or` `&`).
    pub const Q_AFTER_SEP: u16 = 1 << 5;
    /// Query word inside quotes.
    pub const Q_QUOTED: u16 = 1 << 6;
    /// Query word whose stem (not the word itself) matches a schema word's.
    pub const Q_STEM: u16 = 1 << 7;
    /// Schema word that appears in the query.
    pub const S_IN_QUERY: u16 = 1 << 8;
    /// Schema word whose stem (not the word itself) appears in the query.
    pub const S_STEM_IN_QUERY: u16 = 1 << 9;
    /// Token of an enum member all of whose words appear in the query.
    pub const S_ENUM_IN_QUERY: u16 = 1 << 10;
    /// Token of a function or parameter name all of whose words appear in the query.
    pub const S_NAME_IN_QUERY: u16 = 1 << 11;
}

/// Number of feature bits (rows of the learned feature table).
pub const COUNT: usize = 12;

/// Words too common to count as a match between request and schema.
const STOP: &[&str] = &[
    "a", "an", "the", "of", "to", "in", "on", "for", "and", "or", "is", "be", "by", "with", "at",
    "from", "as", "it", "this", "that", "me", "my", "i", "you", "your", "please", "can", "what",
];

/// What part of the input a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Special,
    Query,
    Name,
    Enum,
    Other,
}

/// One word: a run of touching alphanumeric tokens, or one other token.
struct Word {
    tokens: std::ops::Range<usize>,
    text: String,
    alnum: bool,
}

/// The feature bits of every token of `r`.
pub fn token_features(r: &Rendered) -> Vec<u16> {
    let roles = roles(r);
    let words = words(r, &roles);
    let mut out = vec![0u16; r.len()];
    let role_of = |w: &Word| roles.get(w.tokens.start).copied().unwrap_or(Role::Special);
    let mut query_words: HashSet<&str> = HashSet::new();
    let mut query_stems: HashSet<String> = HashSet::new();
    let (mut name_words, mut enum_words, mut other_words) =
        (HashSet::new(), HashSet::new(), HashSet::new());
    let mut schema_stems: HashSet<String> = HashSet::new();
    for w in words.iter().filter(|w| w.alnum && !is_stop(&w.text)) {
        match role_of(w) {
            Role::Query => {
                query_words.insert(w.text.as_str());
                query_stems.insert(stem(&w.text));
            }
            Role::Name => {
                name_words.insert(w.text.as_str());
            }
            Role::Enum => {
                enum_words.insert(w.text.as_str());
            }
            Role::Other => {
                other_words.insert(w.text.as_str());
            }
            Role::Special => continue,
        }
        if role_of(w) != Role::Query {
            schema_stems.insert(stem(&w.text));
        }
    }
    let mut quoted = false;
    let mut after_sep = false;
    for w in &words {
        let role = role_of(w);
        let mut bits = 0u16;
        if w.text.chars().any(|c| c.is_ascii_digit()) {
            bits |= bit::DIGIT;
        }
        match role {
            Role::Query => {
                if is_quote(&w.text) {
                    quoted = !quoted;
                    continue;
                }
                let matchable = w.alnum && !is_stop(&w.text);
                if matchable && name_words.contains(w.text.as_str()) {
                    bits |= bit::Q_IN_NAME;
                }
                if matchable && enum_words.contains(w.text.as_str()) {
                    bits |= bit::Q_IN_ENUM;
                }
                if matchable && other_words.contains(w.text.as_str()) {
                    bits |= bit::Q_IN_DESC;
                }
                if matchable
                    && bits & (bit::Q_IN_NAME | bit::Q_IN_ENUM | bit::Q_IN_DESC) == 0
                    && schema_stems.contains(&stem(&w.text))
                {
                    bits |= bit::Q_STEM;
                }
                if first_upper(r, w) {
                    bits |= bit::Q_CAPITAL;
                }
                if quoted {
                    bits |= bit::Q_QUOTED;
                }
                if after_sep && w.alnum {
                    bits |= bit::Q_AFTER_SEP;
                }
                after_sep = is_separator(&w.text);
            }
            Role::Name | Role::Enum | Role::Other if w.alnum && !is_stop(&w.text) => {
                if query_words.contains(w.text.as_str()) {
                    bits |= bit::S_IN_QUERY;
                } else if query_stems.contains(&stem(&w.text)) {
                    bits |= bit::S_STEM_IN_QUERY;
                }
            }
            _ => {}
        }
        for t in w.tokens.clone() {
            if let Some(o) = out.get_mut(t) {
                *o |= bits;
            }
        }
    }
    mark_whole_matches(&roles, &words, &query_words, &mut out);
    out
}

/// `S_ENUM_IN_QUERY` / `S_NAME_IN_QUERY`: every token of an enum member or
/// a name whose words (ignoring stop words and punctuation) all appear in
/// the query.
fn mark_whole_matches(
    roles: &[Role],
    words: &[Word],
    query_words: &HashSet<&str>,
    out: &mut [u16],
) {
    let mut region: Vec<&Word> = Vec::new();
    let mut region_role = Role::Special;
    let flush = |region: &mut Vec<&Word>, role: Role, out: &mut [u16]| {
        let content: Vec<&&Word> = region
            .iter()
            .filter(|w| w.alnum && !is_stop(&w.text))
            .collect();
        let whole = !content.is_empty()
            && content
                .iter()
                .all(|w| query_words.contains(w.text.as_str()));
        if whole {
            let b = if role == Role::Enum {
                bit::S_ENUM_IN_QUERY
            } else {
                bit::S_NAME_IN_QUERY
            };
            for w in region.iter() {
                for t in w.tokens.clone() {
                    if let Some(o) = out.get_mut(t) {
                        *o |= b;
                    }
                }
            }
        }
        region.clear();
    };
    for w in words {
        let role = roles.get(w.tokens.start).copied().unwrap_or(Role::Special);
        // An enum member ends at `|`; a name ends where its role does.
        let boundary = role != region_role || (role == Role::Enum && w.text == "|");
        if boundary {
            if matches!(region_role, Role::Enum | Role::Name) {
                flush(&mut region, region_role, out);
            }
            region.clear();
            region_role = role;
        }
        if w.text != "|" {
            region.push(w);
        }
    }
    if matches!(region_role, Role::Enum | Role::Name) {
        flush(&mut region, region_role, out);
    }
}

/// The role of every token, from the rendered tools' recorded positions.
fn roles(r: &Rendered) -> Vec<Role> {
    let n = r.len();
    let mut roles: Vec<Role> = (0..n)
        .map(|i| match (r.segs.get(i), r.spans.get(i)) {
            (_, Some(&(a, b))) if a == b => Role::Special,
            (Some(0), _) => Role::Query,
            _ => Role::Other,
        })
        .collect();
    let text_at = |i: usize| -> &str {
        r.spans
            .get(i)
            .and_then(|&(a, b)| r.text.get(a..b))
            .unwrap_or("")
    };
    for t in &r.tools {
        // The function name runs from its first token up to the `:`.
        let mut i = t.start;
        while i < n && roles[i] == Role::Other && text_at(i) != ":" {
            roles[i] = Role::Name;
            i += 1;
        }
        let starts: Vec<usize> = t.params.iter().map(|p| p.start).collect();
        for (k, p) in t.params.iter().enumerate() {
            let end = starts
                .get(k + 1)
                .copied()
                .unwrap_or_else(|| next_special(r, p.start));
            // The parameter name runs up to its `(` type head.
            let mut i = p.start;
            while i < end && roles[i] == Role::Other && text_at(i) != "(" {
                roles[i] = Role::Name;
                i += 1;
            }
            mark_enum_members(r, &mut roles, &p.enum_ids, i, end);
        }
    }
    roles
}

/// Each member's token run, found in order inside `from..end`, becomes `Enum`.
fn mark_enum_members(
    r: &Rendered,
    roles: &mut [Role],
    members: &[Vec<u32>],
    from: usize,
    end: usize,
) {
    let mut at = from;
    for m in members {
        if m.is_empty() {
            continue;
        }
        let found = (at..end.saturating_sub(m.len() - 1))
            .find(|&s| r.ids.get(s..s + m.len()) == Some(m.as_slice()));
        if let Some(s) = found {
            for role in roles.iter_mut().skip(s).take(m.len()) {
                *role = Role::Enum;
            }
            at = s + m.len();
        }
    }
}

fn next_special(r: &Rendered, from: usize) -> usize {
    (from..r.len())
        .find(|&i| r.spans.get(i).is_some_and(|&(a, b)| a == b))
        .unwrap_or(r.len())
}

/// Words of the rendered input, each within one role.
fn words(r: &Rendered, roles: &[Role]) -> Vec<Word> {
    let mut out: Vec<Word> = Vec::new();
    for (i, &(a, b)) in r.spans.iter().enumerate() {
        if a == b {
            continue;
        }
        let piece = r.text.get(a..b).unwrap_or("");
        let alnum = piece.chars().all(char::is_alphanumeric) && !piece.is_empty();
        let role = roles.get(i).copied().unwrap_or(Role::Special);
        if let Some(last) = out.last_mut() {
            let prev_end = r.spans.get(i - 1).map(|s| s.1).unwrap_or(usize::MAX);
            let same_role = roles.get(last.tokens.start).copied() == Some(role);
            if last.alnum && alnum && same_role && last.tokens.end == i && prev_end == a {
                last.tokens.end = i + 1;
                last.text.push_str(&piece.to_lowercase());
                continue;
            }
        }
        out.push(Word {
            tokens: i..i + 1,
            text: piece.to_lowercase(),
            alnum,
        });
    }
    out
}

fn first_upper(r: &Rendered, w: &Word) -> bool {
    r.spans
        .get(w.tokens.start)
        .and_then(|&(a, b)| r.text.get(a..b))
        .and_then(|s| s.chars().next())
        .is_some_and(char::is_uppercase)
}

fn is_stop(w: &str) -> bool {
    STOP.contains(&w)
}

fn is_quote(w: &str) -> bool {
    matches!(w, "\"" | "'" | "`" | "“" | "”" | "‘" | "’")
}

fn is_separator(w: &str) -> bool {
    matches!(w, "," | ";" | "and" | "or" | "&" | "/")
}

/// A crude English stem: common inflection suffixes off.
fn stem(w: &str) -> String {
    for suffix in ["ing", "ed", "es", "s"] {
        if let Some(base) = w.strip_suffix(suffix)
            && base.chars().count() >= 3
        {
            return base.to_string();
        }
    }
    w.to_string()
}

/// The bits as a dense `[len, COUNT]` 0/1 matrix (row-major).
pub fn dense(bits: &[u16]) -> Vec<f32> {
    let mut out = vec![0f32; bits.len() * COUNT];
    for (row, &b) in out.chunks_exact_mut(COUNT).zip(bits) {
        for (k, x) in row.iter_mut().enumerate() {
            if b & (1 << k) != 0 {
                *x = 1.0;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{RenderLimits, Tok, render};
    use retort_core::Tool;

    fn tools() -> Vec<Tool> {
        serde_json::from_value(serde_json::json!([{
            "name": "lock_door", "description": "Lock or unlock a door",
            "parameters": {"type": "object", "properties": {
                "door": {"type": "string", "enum": ["front", "back door", "garage"]},
                "action": {"type": "string", "enum": ["lock", "unlock"]}},
                "required": ["door", "action"]}}]))
        .expect("tools")
    }

    fn limits() -> RenderLimits {
        RenderLimits {
            max_len: 512,
            choice_len: 512,
            tool_desc_tokens: 8,
            param_desc_tokens: 1,
        }
    }

    fn bits_of(r: &Rendered, f: &[u16], word: &str, seg: u32) -> Vec<u16> {
        (0..r.len())
            .filter(|&i| {
                r.segs[i] == seg
                    && r.spans
                        .get(i)
                        .and_then(|&(a, b)| r.text.get(a..b))
                        .is_some_and(|s| s.eq_ignore_ascii_case(word))
            })
            .map(|i| f[i])
            .collect()
    }

    #[test]
    fn enum_members_written_in_the_request_are_marked() {
        let tok: Tok = crate::testutil::tok().expect("models/tokenizer.json");
        let r = render(&tok, "Unlock the back door", &tools(), limits(), &[]).expect("render");
        let f = token_features(&r);
        assert_eq!(f.len(), r.len());
        // In the query: "unlock" is an enum word, "Unlock" is capitalised.
        let unlock_q = bits_of(&r, &f, "unlock", 0);
        assert!(
            unlock_q.iter().all(|b| b & bit::Q_IN_ENUM != 0),
            "{unlock_q:?}"
        );
        assert!(unlock_q.iter().all(|b| b & bit::Q_CAPITAL != 0));
        // In the schema: the member "unlock" is whole in the query, "lock" is not.
        let unlock_s = bits_of(&r, &f, "unlock", 1);
        assert!(
            unlock_s.iter().any(|b| b & bit::S_ENUM_IN_QUERY != 0),
            "{unlock_s:?}"
        );
        let lock_s = bits_of(&r, &f, "lock", 1);
        assert!(
            lock_s.iter().all(|b| b & bit::S_ENUM_IN_QUERY == 0),
            "{lock_s:?}"
        );
        // "back door" is a two-word member, both words in the query.
        let back = bits_of(&r, &f, "back", 1);
        assert!(
            back.iter().all(|b| b & bit::S_ENUM_IN_QUERY != 0),
            "{back:?}"
        );
        let garage = bits_of(&r, &f, "garage", 1);
        assert!(garage.iter().all(|b| b & bit::S_ENUM_IN_QUERY == 0));
    }

    #[test]
    fn digits_quotes_and_list_positions() {
        let tok: Tok = crate::testutil::tok().expect("models/tokenizer.json");
        let r = render(
            &tok,
            "lock front, garage and \"shed\" at 10",
            &tools(),
            limits(),
            &[],
        )
        .expect("render");
        let f = token_features(&r);
        assert!(bits_of(&r, &f, "10", 0).iter().all(|b| b & bit::DIGIT != 0));
        assert!(
            bits_of(&r, &f, "shed", 0)
                .iter()
                .all(|b| b & bit::Q_QUOTED != 0)
        );
        assert!(
            bits_of(&r, &f, "garage", 0)
                .iter()
                .all(|b| b & bit::Q_AFTER_SEP != 0)
        );
        assert!(
            bits_of(&r, &f, "front", 0)
                .iter()
                .all(|b| b & bit::Q_AFTER_SEP == 0)
        );
        assert!(
            bits_of(&r, &f, "lock", 0)
                .iter()
                .all(|b| b & bit::Q_IN_NAME != 0)
        );
    }

    #[test]
    fn stems_and_dense_rows() {
        assert_eq!(stem("doors"), "door");
        assert_eq!(stem("locked"), "lock");
        assert_eq!(stem("is"), "is");
        let d = dense(&[bit::DIGIT | bit::Q_CAPITAL, 0]);
        assert_eq!(d.len(), 2 * COUNT);
        assert_eq!(d[4], 1.0);
        assert_eq!(d[3], 1.0);
        assert_eq!(d[COUNT..].iter().sum::<f32>(), 0.0);
    }

    /// A model with features: the learned table changes the encoder states
    /// the decoder reads (so serving uses it), and save -> load keeps every
    /// answer.
    #[test]
    fn features_reach_inference_and_survive_save_load() {
        use crate::net::{HostParams, Layout};
        use crate::{Model, ModelConfig, weights::Storage};
        use retort_core::CallOptions;
        let tj = crate::testutil::tokenizer_json().expect("models/tokenizer.json");
        let mut cfg = ModelConfig::tiny(vec![1012, 1015, 1016]);
        cfg.lexical_features = true;
        let layout = Layout::new(&cfg);
        let w = layout.features.expect("a features table");
        let mut host = HostParams::init(&layout, 11);
        let zeros = host.clone();
        let random = HostParams::init(&Layout::new(&ModelConfig::tiny(vec![1012])), 5);
        // Fill the (zero-initialised) table with large values.
        for (k, x) in host.values[w].iter_mut().enumerate() {
            *x = random.values[0][k % random.values[0].len()] * 200.0;
        }
        let m = Model::from_parts(cfg.clone(), &host, &tj).expect("model");
        let dir = tempfile::tempdir().expect("tmp");
        m.save(dir.path(), Storage::F32).expect("save");
        let back = Model::load(dir.path()).expect("load");
        let t = tools();
        let o = CallOptions {
            require_call: true,
            ..CallOptions::default()
        };
        let q = "Unlock the back door";
        let a = m.predict(q, &t, &o).expect("a");
        assert_eq!(a, back.predict(q, &t, &o).expect("b"));
        retort_core::validate_all(&a.calls, &t).expect("valid");
        // The same weights with a zero table decode from other states.
        let r = render(&m.tok, q, &t, limits(), &[]).expect("render");
        let device = burn::tensor::Device::flex();
        let feats = m.net.request_features(&r, &device).expect("features");
        let n = r.len();
        let base = burn::tensor::Tensor::<3>::zeros([1, n, cfg.hidden], &device);
        let with = m
            .net
            .add_features(&m.params, base.clone(), Some(feats.clone()));
        let z = Model::from_parts(cfg, &zeros, &tj).expect("zero model");
        let without = z.net.add_features(&z.params, base, Some(feats));
        let diff: f32 = (with - without).abs().sum().into_scalar::<f32>();
        assert!(diff > 1.0, "features changed nothing ({diff})");
    }
}
