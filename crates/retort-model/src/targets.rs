//! Gold calls as decoder steps: the inputs fed by teacher forcing, the
//! allowed-output mask of the schema state machine and the target outputs of
//! every step.
//!
//! Action sequence of a request: for each call `<fn> (<param> <value
//! pieces...> [NEXT_ELEM ...] END_VAL)* END_CALL`, then `STOP`; a request
//! where no tool fits is just `STOP`. Arguments follow the schema's property
//! order. A value piece's target is every output that produces it: the
//! generation-vocabulary entry and every source position holding the same
//! word piece (the loss marginalises over them).

use std::collections::HashMap;

use retort_core::{CallOptions, Example, Tool};

use crate::grammar::{Choice, Grammar, value_pieces};
use crate::net::{action, kind};
use crate::render::{RenderLimits, Rendered, Tok, render};

/// One decoder step for training.
#[derive(Debug, Clone)]
pub struct Step {
    /// `(token, kind, pointer position)` fed to the decoder at this step.
    pub input: (u32, u32, Option<usize>),
    /// Allowed outputs: a bit set over the output space (64 per word).
    pub allowed: Vec<u64>,
    /// Gold outputs (a subset of `allowed`).
    pub target: Vec<u32>,
    /// Teacher distribution over outputs, when the teacher gave one.
    pub soft: Option<Vec<(u32, f32)>>,
}

/// Indices set in a bit set.
pub fn bits(set: &[u64]) -> impl Iterator<Item = usize> + '_ {
    set.iter().enumerate().flat_map(|(w, &word)| {
        (0..64)
            .filter(move |b| word >> b & 1 == 1)
            .map(move |b| w * 64 + b)
    })
}

/// A training example: the encoder input and its decoder steps.
#[derive(Debug, Clone)]
pub struct Item {
    pub ids: Vec<u32>,
    pub segs: Vec<u32>,
    /// Lexical feature bits of each input token ([`crate::features`]).
    pub feats: Vec<u16>,
    pub steps: Vec<Step>,
}

/// Why an example cannot be used for training.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("render: {0}")]
    Render(String),
    #[error("a call names a tool that is not offered")]
    UnknownTool,
    #[error("a call has an argument the schema does not declare")]
    UnknownArgument,
    #[error("a value cannot be expressed in the value grammar")]
    Value,
    #[error("a value piece can neither be copied nor generated")]
    Unreachable,
    #[error("the gold sequence breaks the schema constraints")]
    Constraint,
    #[error("more than {0} decoder steps")]
    TooLong(usize),
}

fn input_of(r: &Rendered, g: &Grammar<'_>, c: Choice, tok: &Tok) -> (u32, u32, Option<usize>) {
    match c {
        Choice::Action(a) => (tok.pad, kind::ACTION0 + a as u32, None),
        Choice::Function(t) => {
            let p = r.tools[t].start;
            (r.ids[p], kind::FUNCTION, Some(p))
        }
        Choice::Param(k) => {
            let p = match &g.state {
                crate::grammar::State::InCall { tool, .. } => r.tools[*tool].params[k].start,
                _ => 0,
            };
            (
                r.ids.get(p).copied().unwrap_or(tok.pad),
                kind::PARAM,
                Some(p),
            )
        }
        Choice::Token(t, _) => (t, kind::VALUE, None),
    }
}

/// The decoder input that follows choice `c` taken in state `g` (call before `g.step(c)`).
pub fn next_input(
    r: &Rendered,
    g: &Grammar<'_>,
    c: Choice,
    tok: &Tok,
) -> (u32, u32, Option<usize>) {
    input_of(r, g, c, tok)
}

/// The gold choices of an example (no copy positions yet).
pub fn gold_choices(g: &Grammar<'_>, ex: &Example, tok: &Tok) -> Result<Vec<Choice>, Skip> {
    let mut out = Vec::new();
    for call in &ex.calls {
        let t =
            g.r.tools
                .iter()
                .position(|rt| g.tools.get(rt.index).is_some_and(|x| x.name == call.name))
                .ok_or(Skip::UnknownTool)?;
        out.push(Choice::Function(t));
        let rt = &g.r.tools[t];
        if call
            .arguments
            .keys()
            .any(|k| !rt.params.iter().any(|p| &p.name == k))
        {
            return Err(Skip::UnknownArgument);
        }
        for (k, p) in rt.params.iter().enumerate() {
            let Some(v) = call.arguments.get(&p.name) else {
                continue;
            };
            out.push(Choice::Param(k));
            let vk = g.value_kind(t, k);
            let pieces = value_pieces(tok, &vk, v).ok_or(Skip::Value)?;
            for (e, el) in pieces.iter().enumerate() {
                if e > 0 {
                    out.push(Choice::Action(action::NEXT_ELEM));
                }
                if vk.array && el.is_empty() {
                    return Err(Skip::Value);
                }
                out.extend(el.iter().map(|&t| Choice::Token(t, None)));
            }
            out.push(Choice::Action(action::END_VAL));
        }
        out.push(Choice::Action(action::END_CALL));
    }
    out.push(Choice::Action(action::STOP));
    Ok(out)
}

/// Replay choices through the grammar, collecting inputs, masks and targets.
pub fn replay(
    g: &mut Grammar<'_>,
    choices: &[Choice],
    gen_index: &HashMap<u32, usize>,
    tok: &Tok,
) -> Result<Vec<Step>, Skip> {
    let sp = g.space;
    let mut steps = Vec::with_capacity(choices.len());
    let mut input = (tok.pad, kind::BOS, None);
    for &c in choices {
        let mask = g.mask();
        let mut allowed = vec![0u64; mask.len().div_ceil(64)];
        for (i, _) in mask.iter().enumerate().filter(|x| *x.1) {
            allowed[i / 64] |= 1 << (i % 64);
        }
        let mut target: Vec<u32> = Vec::new();
        match c {
            Choice::Action(a) => target.push(a as u32),
            Choice::Function(t) => {
                if let Some(rt) = g.r.tools.get(t) {
                    target.push(sp.src_index(rt.start) as u32);
                }
            }
            Choice::Param(k) => {
                if let crate::grammar::State::InCall { tool, .. } = &g.state
                    && let Some(p) = g.r.tools[*tool].params.get(k)
                {
                    target.push(sp.src_index(p.start) as u32);
                }
            }
            Choice::Token(t, _) => {
                if let Some(&gi) = gen_index.get(&t) {
                    target.push(sp.gen_index(gi) as u32);
                }
                for (p, &id) in g.r.ids.iter().enumerate() {
                    if id == t && g.r.spans[p] != (0, 0) {
                        target.push(sp.src_index(p) as u32);
                    }
                }
            }
        }
        target.retain(|&i| mask.get(i as usize).copied().unwrap_or(false));
        if target.is_empty() {
            return Err(if matches!(c, Choice::Token(..)) {
                Skip::Unreachable
            } else {
                Skip::Constraint
            });
        }
        steps.push(Step {
            input,
            allowed,
            target,
            soft: None,
        });
        input = input_of(g.r, g, c, tok);
        g.step(c).map_err(|_| Skip::Constraint)?;
    }
    Ok(steps)
}

/// Settings of item building.
#[derive(Debug, Clone, Copy)]
pub struct ItemLimits {
    pub render: RenderLimits,
    pub max_steps: usize,
    pub max_value_tokens: usize,
}

/// Turn an example into a training item.
pub fn build_item(
    tok: &Tok,
    ex: &Example,
    gen_vocab: &[u32],
    gen_index: &HashMap<u32, usize>,
    lim: ItemLimits,
) -> Result<Item, Skip> {
    let keep: Vec<usize> = ex
        .calls
        .iter()
        .filter_map(|c| ex.tools.iter().position(|t| t.name == c.name))
        .collect();
    let r = render(tok, &ex.query, &ex.tools, lim.render, &keep)
        .map_err(|e| Skip::Render(e.to_string()))?;
    let opts = CallOptions::default();
    let mut g = Grammar::new(tok, &r, &ex.tools, gen_vocab, &opts, lim.max_value_tokens);
    let choices = gold_choices(&g, ex, tok)?;
    if choices.len() > lim.max_steps {
        return Err(Skip::TooLong(lim.max_steps));
    }
    let mut steps = replay(&mut g, &choices, gen_index, tok)?;
    attach_teacher_logprobs(ex, &r, &ex.tools, &choices, &mut steps, gen_vocab.len());
    Ok(Item {
        ids: r.ids.clone(),
        segs: r.segs.clone(),
        feats: crate::features::token_features(&r),
        steps,
    })
}

/// Soft targets from the teacher's per-decision log-probabilities: the k-th
/// `"function"` decision is mapped onto the k-th function choice (names not
/// offered are dropped, the rest renormalised).
fn attach_teacher_logprobs(
    ex: &Example,
    r: &Rendered,
    tools: &[Tool],
    choices: &[Choice],
    steps: &mut [Step],
    n_gen: usize,
) {
    let Some(teacher) = &ex.teacher else { return };
    let mut decisions = teacher.logprobs.iter().filter(|d| d.decision == "function");
    let sp = crate::net::OutSpace {
        n_gen,
        src: r.len(),
    };
    for (i, c) in choices.iter().enumerate() {
        if !matches!(c, Choice::Function(_)) {
            continue;
        }
        let Some(d) = decisions.next() else { break };
        let mut soft: Vec<(u32, f32)> = d
            .top
            .iter()
            .filter_map(|(name, lp)| {
                let rt = r
                    .tools
                    .iter()
                    .find(|rt| tools.get(rt.index).is_some_and(|t| &t.name == name))?;
                Some((sp.src_index(rt.start) as u32, lp.exp() as f32))
            })
            .collect();
        let z: f32 = soft.iter().map(|x| x.1).sum();
        if z > 0.0 && z.is_finite() {
            for s in &mut soft {
                s.1 /= z;
            }
            if let Some(st) = steps.get_mut(i) {
                st.soft = Some(soft);
            }
        }
    }
}

/// The generation vocabulary: word pieces every number needs (digits,
/// sign, dot, `true`/`false`, punctuation) plus the most frequent value
/// pieces of the training data, up to `size`.
pub fn build_gen_vocab(tok: &Tok, examples: &[Example], size: usize) -> Vec<u32> {
    let mut forced: Vec<u32> = Vec::new();
    let push = |v: &mut Vec<u32>, t: u32| {
        if !v.contains(&t) {
            v.push(t);
        }
    };
    for s in [
        "-", ".", ",", ":", "/", "true", "false", "null", "\"", "[", "]", "{", "}", "_", "'", "(",
        ")", "%", "$", "@", "#", "+", "=", "&",
    ] {
        if let Ok(ids) = tok.ids(s) {
            for t in ids {
                push(&mut forced, t);
            }
        }
    }
    for n in 0..100 {
        if let Ok(ids) = tok.ids(&n.to_string()) {
            for t in ids {
                push(&mut forced, t);
            }
        }
    }
    for d in 0..10 {
        if let Some(&id) = tok
            .vocab
            .iter()
            .position(|s| s == &format!("##{d}"))
            .map(|i| i as u32)
            .as_ref()
        {
            push(&mut forced, id);
        }
    }
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for ex in examples {
        for call in &ex.calls {
            for v in call.arguments.values() {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if let Ok(ids) = tok.ids(&text) {
                    for t in ids {
                        *counts.entry(t).or_default() += 1;
                    }
                }
            }
        }
    }
    let mut ranked: Vec<(u32, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut out = forced;
    for (t, _) in ranked {
        if out.len() >= size {
            break;
        }
        if tok.class_of(t) & crate::render::class::SPECIAL == 0 && !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// `token id -> index` of a generation vocabulary.
pub fn gen_index(gen_vocab: &[u32]) -> HashMap<u32, usize> {
    gen_vocab.iter().enumerate().map(|(i, &t)| (t, i)).collect()
}
