//! Tokenizer and input rendering.
//!
//! The encoder reads `[CLS] query [SEP]` (segment 0), then for each tool
//! `name : description ; param ( type , required ) values : a | b description ; ... [SEP]`
//! (segment 1). Every token keeps its byte span in [`Rendered::text`], so a
//! value copied from the input keeps its original casing, and the positions of
//! function names, parameter names and enum members are remembered for the
//! pointer decisions.

use retort_core::{Schema, SchemaType, Tool};
use serde_json::Value;

use crate::error::ModelError;

/// Coarse classes of word pieces used by the value grammars.
pub mod class {
    /// `[CLS]`, `[SEP]`, `[PAD]`, `[UNK]`, `[MASK]`, unused slots.
    pub const SPECIAL: u8 = 1;
    /// A word start made of ASCII digits only (`"10"`).
    pub const DIGITS: u8 = 2;
    /// A continuation made of ASCII digits only (`"##4"`).
    pub const HASH_DIGITS: u8 = 4;
    /// `-`
    pub const MINUS: u8 = 8;
    /// `.`
    pub const DOT: u8 = 16;
    /// `true` or `false`
    pub const BOOL: u8 = 32;
    /// Any `##` continuation.
    pub const CONT: u8 = 64;
    /// `,`
    pub const COMMA: u8 = 128;
}

/// Word pieces with their byte spans.
pub type Piece = Vec<(u32, (usize, usize))>;

/// The MiniLM WordPiece tokenizer, padding and truncation turned off.
pub struct Tok {
    inner: tokenizers::Tokenizer,
    /// Token text by id.
    pub vocab: Vec<String>,
    /// [`class`] bits by id.
    pub class: Vec<u8>,
    pub cls: u32,
    pub sep: u32,
    pub pad: u32,
    pub unk: u32,
}

impl std::fmt::Debug for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tok")
            .field("vocab", &self.vocab.len())
            .finish()
    }
}

impl Tok {
    /// Load a `tokenizer.json` (HF tokenizers format).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let mut inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let map = inner.get_vocab(true);
        let n = map.values().map(|&i| i as usize + 1).max().unwrap_or(0);
        let mut vocab = vec![String::new(); n];
        for (s, i) in map {
            vocab[i as usize] = s;
        }
        let id = |s: &str| -> Result<u32, ModelError> {
            inner
                .token_to_id(s)
                .ok_or_else(|| ModelError::Tokenizer(format!("vocabulary has no {s}")))
        };
        let (cls, sep, pad, unk) = (id("[CLS]")?, id("[SEP]")?, id("[PAD]")?, id("[UNK]")?);
        let class = vocab.iter().map(|s| classify(s)).collect();
        Ok(Tok {
            inner,
            vocab,
            class,
            cls,
            sep,
            pad,
            unk,
        })
    }

    /// Load `tokenizer.json` from a directory.
    pub fn load(dir: &std::path::Path) -> Result<Self, ModelError> {
        let path = dir.join("tokenizer.json");
        let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        Self::from_bytes(&bytes)
    }

    /// Word pieces of `text` with their byte spans in `text`.
    pub fn encode(&self, text: &str) -> Result<Piece, ModelError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc
            .get_ids()
            .iter()
            .copied()
            .zip(enc.get_offsets().iter().copied())
            .collect())
    }

    /// Word-piece ids of `text`.
    pub fn ids(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        Ok(self.encode(text)?.into_iter().map(|(i, _)| i).collect())
    }

    /// The text of a token (`""` for an unknown id).
    pub fn text(&self, id: u32) -> &str {
        self.vocab
            .get(id as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn class_of(&self, id: u32) -> u8 {
        self.class
            .get(id as usize)
            .copied()
            .unwrap_or(class::SPECIAL)
    }
}

fn classify(s: &str) -> u8 {
    let mut c = 0;
    if (s.starts_with('[') && s.ends_with(']') && s.len() > 2) || s.is_empty() {
        c |= class::SPECIAL;
    }
    if let Some(rest) = s.strip_prefix("##") {
        c |= class::CONT;
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            c |= class::HASH_DIGITS;
        }
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        c |= class::DIGITS;
    }
    if s == "-" {
        c |= class::MINUS;
    }
    if s == "." {
        c |= class::DOT;
    }
    if s == "," {
        c |= class::COMMA;
    }
    if s == "true" || s == "false" {
        c |= class::BOOL;
    }
    c
}

/// One parameter of a rendered tool.
#[derive(Debug, Clone)]
pub struct RParam {
    pub name: String,
    /// Position of the parameter name's first token.
    pub start: usize,
    /// Token ids of each enum member as rendered (empty without `enum`).
    pub enum_ids: Vec<Vec<u32>>,
}

/// One rendered tool.
#[derive(Debug, Clone)]
pub struct RTool {
    /// Index of the tool in the request.
    pub index: usize,
    /// Position of the function name's first token.
    pub start: usize,
    pub params: Vec<RParam>,
    /// Distinct word pieces (of at least 3 characters) of the query that
    /// occur in the tool's name, description or parameter names (the
    /// relevance tools are left out by, and `overlap_bias`'s count), by id
    /// in query order.
    pub shared: Vec<u32>,
}

impl RTool {
    /// How many word pieces the tool shares with the query (`shared`).
    pub fn overlap(&self) -> usize {
        self.shared.len()
    }
}

/// The encoder input of one request.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub ids: Vec<u32>,
    pub segs: Vec<u32>,
    /// Byte span of each token in `text` (`(0, 0)` for `[CLS]`/`[SEP]`).
    pub spans: Vec<(usize, usize)>,
    /// The rendered text: the query first, then the schema text.
    pub text: String,
    /// The rendered tools, in request order (tools that did not fit are left out).
    pub tools: Vec<RTool>,
}

impl Rendered {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Limits of the rendering.
#[derive(Debug, Clone, Copy)]
pub struct RenderLimits {
    /// Most tokens in all.
    pub max_len: usize,
    /// Most tokens in all while two or more tools are kept: beyond it,
    /// descriptions are shortened and the least relevant tools left out
    /// as for `max_len`, but a lone tool may still use `max_len`. At least
    /// `max_len`: no other limit.
    pub choice_len: usize,
    pub tool_desc_tokens: usize,
    pub param_desc_tokens: usize,
}

struct PreParam {
    name: String,
    name_text: String,
    name_toks: Piece,
    head_text: String,
    head_toks: Piece,
    enum_members: Vec<(String, Piece)>,
    desc_text: String,
    desc_toks: Piece,
}

struct PreTool {
    name_toks: Piece,
    name_text: String,
    desc_text: String,
    desc_toks: Piece,
    params: Vec<PreParam>,
}

/// The type as rendered for the encoder.
pub fn type_words(s: &Schema) -> String {
    match (s.ty, &s.items) {
        (SchemaType::Array, Some(it)) => format!("array of {}", it.ty.as_str()),
        (t, _) => t.as_str().to_string(),
    }
}

/// How an enum member is written in the rendered schema (and emitted).
pub fn enum_member_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn pre_tool(tok: &Tok, tool: &Tool) -> Result<PreTool, ModelError> {
    let mut params = Vec::new();
    for (name, s) in &tool.parameters.properties {
        let req = if tool.parameters.is_required(name) {
            "required"
        } else {
            "optional"
        };
        let head_text = format!(" ( {} , {} )", type_words(s), req);
        let mut enum_members = Vec::new();
        if let Some(vals) = &s.enum_values {
            for v in vals {
                let t = enum_member_text(v);
                let toks = tok.encode(&t)?;
                enum_members.push((t, toks));
            }
        }
        let desc_text = s.description.clone().unwrap_or_default();
        params.push(PreParam {
            name: name.clone(),
            name_toks: tok.encode(name)?,
            name_text: name.clone(),
            head_toks: tok.encode(&head_text)?,
            head_text,
            enum_members,
            desc_toks: tok.encode(&desc_text)?,
            desc_text,
        });
    }
    Ok(PreTool {
        name_toks: tok.encode(&tool.name)?,
        name_text: tool.name.clone(),
        desc_toks: tok.encode(&tool.description)?,
        desc_text: tool.description.clone(),
        params,
    })
}

struct Builder {
    r: Rendered,
}

impl Builder {
    fn special(&mut self, id: u32, seg: u32) {
        self.r.ids.push(id);
        self.r.segs.push(seg);
        self.r.spans.push((0, 0));
    }
    /// Append `text` (its first `limit` tokens) and return the position of its first token.
    fn piece(&mut self, text: &str, toks: &Piece, limit: usize, seg: u32) -> usize {
        let start = self.r.ids.len();
        let n = toks.len().min(limit);
        let end_byte = if n == toks.len() {
            text.len()
        } else {
            toks.get(n.wrapping_sub(1)).map(|t| t.1.1).unwrap_or(0)
        };
        let base = self.r.text.len();
        self.r.text.push_str(text.get(..end_byte).unwrap_or(text));
        for &(id, (a, b)) in toks.iter().take(n) {
            self.r.ids.push(id);
            self.r.segs.push(seg);
            self.r.spans.push((base + a, base + b));
        }
        start
    }
    fn sep_text(&mut self, s: &str) {
        self.r.text.push_str(s);
    }
}

fn tool_len(t: &PreTool, td: usize, pd: usize, sep_lens: usize) -> usize {
    let mut n = t.name_toks.len() + 1 + t.desc_toks.len().min(td) + 1;
    for p in &t.params {
        n += 1 + p.name_toks.len() + p.head_toks.len() + p.desc_toks.len().min(pd);
        if !p.enum_members.is_empty() {
            n += 2 + p.enum_members.iter().map(|m| m.1.len() + 1).sum::<usize>();
        }
    }
    n + sep_lens
}

/// Separator ids, tokenized once.
struct Seps {
    colon: u32,
    semi: u32,
    bar: u32,
    enum_word: u32,
}

fn single(tok: &Tok, s: &str) -> Result<u32, ModelError> {
    let ids = tok.ids(s)?;
    match ids.as_slice() {
        [one] => Ok(*one),
        _ => Err(ModelError::Tokenizer(format!(
            "{s:?} is not a single word piece"
        ))),
    }
}

/// How many distinct word pieces (of at least 3 characters) of the query
/// occur in a tool's name, description or parameter names.
fn overlap(query: &Piece, t: &PreTool) -> usize {
    shared_pieces(query, t).len()
}

/// The distinct word pieces (of at least 3 characters) of the query that
/// occur in a tool's name, description or parameter names, in query order.
fn shared_pieces(query: &Piece, t: &PreTool) -> Vec<u32> {
    let mut tool_ids: Vec<u32> = t
        .name_toks
        .iter()
        .chain(&t.desc_toks)
        .chain(
            t.params
                .iter()
                .flat_map(|p| p.name_toks.iter().chain(&p.desc_toks)),
        )
        .map(|x| x.0)
        .collect();
    tool_ids.sort_unstable();
    tool_ids.dedup();
    let mut seen: Vec<u32> = Vec::new();
    for &(id, (a, b)) in query {
        if b.saturating_sub(a) >= 3 && tool_ids.binary_search(&id).is_ok() && !seen.contains(&id) {
            seen.push(id);
        }
    }
    seen
}

/// Make the rendering of the tools left (`included`) shorter by one step,
/// when even one of them does not fit: first the longest enum list of more
/// than 4 members keeps its leading half (at least 4), then the last
/// optional parameter is left out (the model can then neither give it nor
/// the members cut, so every answer still validates). False when nothing is
/// left to cut.
fn shrink(pre: &mut [PreTool], included: &[usize], tools: &[Tool]) -> bool {
    let longest = included
        .iter()
        .flat_map(|&i| {
            pre.get(i).into_iter().flat_map(move |t| {
                t.params
                    .iter()
                    .enumerate()
                    .map(move |(k, p)| (p.enum_members.len(), i, k))
            })
        })
        .max_by_key(|&(n, i, k)| (n, std::cmp::Reverse((i, k))));
    if let Some((n, i, k)) = longest
        && n > 4
        && let Some(p) = pre.get_mut(i).and_then(|t| t.params.get_mut(k))
    {
        p.enum_members.truncate((n / 2).max(4));
        return true;
    }
    for &i in included.iter().rev() {
        let (Some(t), Some(def)) = (pre.get_mut(i), tools.get(i)) else {
            continue;
        };
        if let Some(k) = t
            .params
            .iter()
            .rposition(|p| !def.parameters.is_required(&p.name))
        {
            t.params.remove(k);
            return true;
        }
    }
    false
}

/// Tools prepared for word-overlap scoring against many queries.
pub struct OverlapIndex<'a> {
    tok: &'a Tok,
    pre: Vec<PreTool>,
}

impl<'a> OverlapIndex<'a> {
    pub fn new(tok: &'a Tok, tools: &[Tool]) -> Result<Self, ModelError> {
        let pre = tools
            .iter()
            .map(|t| pre_tool(tok, t))
            .collect::<Result<_, _>>()?;
        Ok(OverlapIndex { tok, pre })
    }

    /// For each tool, how many distinct word pieces (of at least 3
    /// characters) of the query occur in its name, description or parameter
    /// names: the relevance [`render`] leaves tools out by.
    pub fn scores(&self, query: &str) -> Result<Vec<f32>, ModelError> {
        let q = self.tok.encode(query)?;
        Ok(self.pre.iter().map(|t| overlap(&q, t) as f32).collect())
    }
}

/// Render a request. Tool descriptions are shortened, and when the input is
/// still too long, tools not listed in `keep` are left out, those sharing the
/// fewest word pieces with the query first.
pub fn render(
    tok: &Tok,
    query: &str,
    tools: &[Tool],
    limits: RenderLimits,
    keep: &[usize],
) -> Result<Rendered, ModelError> {
    render_ranked(tok, query, tools, limits, keep, &mut || Ok(None))
}

/// Relevance of each tool to the query added to the word pieces it shares
/// with the query, one per tool, computed only when some tool must be left
/// out (`None`: shared word pieces alone).
pub type RankFn<'a> = dyn FnMut() -> Result<Option<Vec<f32>>, ModelError> + 'a;

/// [`render`], leaving out first the tools with the lowest relevance:
/// shared word pieces plus `rank()`'s score (the last such tool on ties),
/// when the input is too long.
pub fn render_ranked(
    tok: &Tok,
    query: &str,
    tools: &[Tool],
    limits: RenderLimits,
    keep: &[usize],
    rank: &mut RankFn<'_>,
) -> Result<Rendered, ModelError> {
    let seps = Seps {
        colon: single(tok, ":")?,
        semi: single(tok, ";")?,
        bar: single(tok, "|")?,
        enum_word: single(tok, "values")?,
    };
    let q = tok.encode(query)?;
    let mut pre: Vec<PreTool> = tools
        .iter()
        .map(|t| pre_tool(tok, t))
        .collect::<Result<_, _>>()?;
    // The query keeps up to max_len - 64 tokens, but a long query is cut
    // further (never below half the input) so that at least one tool (every
    // kept tool) fits with its descriptions at their shortest.
    let (mut td_min, mut pd_min) = (limits.tool_desc_tokens, limits.param_desc_tokens);
    while td_min > 4 || pd_min > 2 {
        td_min /= 2;
        pd_min /= 2;
    }
    let need: usize = if keep.is_empty() {
        pre.iter()
            .map(|t| tool_len(t, td_min, pd_min, 0))
            .min()
            .unwrap_or(0)
    } else {
        keep.iter()
            .filter_map(|&i| pre.get(i))
            .map(|t| tool_len(t, td_min, pd_min, 0))
            .sum()
    };
    let max_query = limits.max_len.saturating_sub(8).max(1) / 2;
    let cap = max_query
        .max(limits.max_len.saturating_sub(64))
        .min(limits.max_len.saturating_sub(2 + need).max(max_query));
    let qn = q.len().min(cap);
    let budget = limits.max_len.saturating_sub(qn + 2);
    let choice_budget = limits.choice_len.saturating_sub(qn + 2).min(budget);
    // Shorten descriptions, then drop tools, until the input fits.
    let mut td = limits.tool_desc_tokens;
    let mut pd = limits.param_desc_tokens;
    let mut included: Vec<usize> = (0..tools.len()).collect();
    // Relevance of each tool, computed when the first tool must go.
    let mut scores: Option<Vec<f32>> = None;
    loop {
        let total: usize = included.iter().map(|&i| tool_len(&pre[i], td, pd, 0)).sum();
        let limit = if included.len() > 1 {
            choice_budget
        } else {
            budget
        };
        if total <= limit {
            break;
        }
        if td > 4 || pd > 2 {
            td /= 2;
            pd /= 2;
            continue;
        }
        // Leave out the least relevant tool (the last such tool on ties).
        let s = match &mut scores {
            Some(s) => s,
            None => {
                let mut base: Vec<f32> = pre.iter().map(|t| overlap(&q, t) as f32).collect();
                if let Some(extra) = rank()?.filter(|e| e.len() == base.len()) {
                    for (b, e) in base.iter_mut().zip(extra) {
                        *b += e;
                    }
                }
                scores.insert(base)
            }
        };
        let victim = included
            .iter()
            .enumerate()
            .filter(|(_, i)| !keep.contains(i))
            .min_by(|(ka, ia), (kb, ib)| s[**ia].total_cmp(&s[**ib]).then(kb.cmp(ka)))
            .map(|(k, _)| k);
        match victim {
            // The last tool is shrunk rather than left out.
            Some(k) if included.len() > 1 => {
                included.remove(k);
            }
            _ if shrink(&mut pre, &included, tools) => {}
            _ => {
                return Err(ModelError::InvalidRequest(format!(
                    "the tools do not fit into {} input tokens, even with their \
                     descriptions shortened, enum lists cut to 4 members and \
                     optional parameters left out",
                    limits.max_len
                )));
            }
        }
    }
    if included.is_empty() && !tools.is_empty() {
        return Err(ModelError::InvalidRequest(format!(
            "no tool fits into {} input tokens",
            limits.max_len
        )));
    }
    let mut b = Builder {
        r: Rendered {
            ids: Vec::new(),
            segs: Vec::new(),
            spans: Vec::new(),
            text: String::new(),
            tools: Vec::new(),
        },
    };
    b.special(tok.cls, 0);
    b.piece(query, &q, qn, 0);
    b.special(tok.sep, 0);
    let push_sep = |b: &mut Builder, id: u32, s: &str| {
        b.sep_text(" ");
        let a = b.r.text.len();
        b.sep_text(s);
        b.r.ids.push(id);
        b.r.segs.push(1);
        b.r.spans.push((a, a + s.len()));
    };
    for &i in &included {
        let t = &pre[i];
        b.sep_text("\n");
        let start = b.piece(&t.name_text, &t.name_toks, usize::MAX, 1);
        push_sep(&mut b, seps.colon, ":");
        b.sep_text(" ");
        b.piece(&t.desc_text, &t.desc_toks, td, 1);
        let mut params = Vec::new();
        for p in &t.params {
            push_sep(&mut b, seps.semi, ";");
            b.sep_text(" ");
            let pstart = b.piece(&p.name_text, &p.name_toks, usize::MAX, 1);
            b.piece(&p.head_text, &p.head_toks, usize::MAX, 1);
            let mut enum_ids = Vec::new();
            if !p.enum_members.is_empty() {
                push_sep(&mut b, seps.enum_word, "values");
                push_sep(&mut b, seps.colon, ":");
                for (k, (text, toks)) in p.enum_members.iter().enumerate() {
                    if k > 0 {
                        push_sep(&mut b, seps.bar, "|");
                    }
                    b.sep_text(" ");
                    b.piece(text, toks, usize::MAX, 1);
                    enum_ids.push(toks.iter().map(|x| x.0).collect());
                }
            }
            b.sep_text(" ");
            b.piece(&p.desc_text, &p.desc_toks, pd, 1);
            params.push(RParam {
                name: p.name.clone(),
                start: pstart,
                enum_ids,
            });
        }
        b.special(tok.sep, 1);
        b.r.tools.push(RTool {
            index: i,
            start,
            params,
            shared: shared_pieces(&q, t),
        });
    }
    Ok(b.r)
}
