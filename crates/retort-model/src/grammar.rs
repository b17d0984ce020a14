//! The schema state machine behind constrained decoding.
//!
//! Built from the request's tools, it says at every step which outputs are
//! allowed (declared functions only; that function's parameters, each once;
//! required parameters before `END_CALL`; value word pieces that can still
//! form a valid literal of the parameter's type; enum members only; arrays
//! element by element) and turns the chosen outputs into calls. The same
//! machine produces the training masks from gold calls, so the model is
//! trained on exactly the distributions it decodes from.

use retort_core::{Call, CallOptions, Schema, SchemaType, Tool};
use serde_json::{Map, Value};

use crate::net::{OutSpace, action};
use crate::render::{Rendered, Tok, class};

/// One decision of the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Action(usize),
    /// Index into [`Rendered::tools`].
    Function(usize),
    /// Index into the current tool's [`crate::render::RTool::params`].
    Param(usize),
    /// A value word piece; `Some(p)` when copied from source position `p`.
    Token(u32, Option<usize>),
}

/// How a value's word pieces are checked and read back.
#[derive(Debug, Clone, PartialEq)]
pub enum VKind {
    /// Members' word-piece ids, and their JSON values.
    Enum(Vec<Vec<u32>>, Vec<Value>),
    Integer,
    Number,
    Boolean,
    Text,
    Json,
}

impl VKind {
    fn of(s: &Schema, enum_ids: &[Vec<u32>]) -> VKind {
        // A tool too long for the input may have had its enum list cut to
        // its leading members (`render`); only those rendered can be chosen.
        if let Some(vals) = &s.enum_values
            && !enum_ids.is_empty()
            && let Some(shown) = vals.get(..enum_ids.len())
        {
            return VKind::Enum(enum_ids.to_vec(), shown.to_vec());
        }
        match s.ty {
            SchemaType::Integer => VKind::Integer,
            SchemaType::Number => VKind::Number,
            SchemaType::Boolean => VKind::Boolean,
            SchemaType::String => VKind::Text,
            SchemaType::Object | SchemaType::Array | SchemaType::Any => VKind::Json,
        }
    }
}

/// The value being decoded.
#[derive(Debug, Clone)]
pub struct ValState {
    pub kind: VKind,
    /// Element kind when the parameter is an array decoded element by element.
    pub array: bool,
    pub done: Vec<Vec<(u32, Option<usize>)>>,
    pub cur: Vec<(u32, Option<usize>)>,
    pub total: usize,
    schema_ty: SchemaType,
}

impl ValState {
    /// Is this value an enum member (pointed at in the tool's text)?
    pub fn is_enum(&self) -> bool {
        matches!(self.kind, VKind::Enum(..))
    }
}

/// Where the decoder is.
#[derive(Debug, Clone)]
pub enum State {
    Between,
    InCall {
        tool: usize,
        used: Vec<bool>,
    },
    InValue {
        tool: usize,
        used: Vec<bool>,
        param: usize,
        v: ValState,
    },
    Done,
}

/// The state machine of one request.
pub struct Grammar<'a> {
    pub tok: &'a Tok,
    pub r: &'a Rendered,
    pub tools: &'a [Tool],
    pub gen_ids: &'a [u32],
    pub space: OutSpace,
    pub require_call: bool,
    pub single_call: bool,
    /// Rendered-tool index of the forced function.
    pub forced: Option<usize>,
    pub max_value_tokens: usize,
    pub max_calls: usize,
    pub state: State,
    pub calls: Vec<Call>,
    cur_args: Map<String, Value>,
}

/// Why a choice was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("choice {0:?} not allowed here")]
pub struct NotAllowed(pub Choice);

impl<'a> Grammar<'a> {
    pub fn new(
        tok: &'a Tok,
        r: &'a Rendered,
        tools: &'a [Tool],
        gen_ids: &'a [u32],
        opts: &CallOptions,
        max_value_tokens: usize,
    ) -> Self {
        let forced = opts.force_function.as_ref().and_then(|name| {
            r.tools
                .iter()
                .position(|t| tools.get(t.index).is_some_and(|x| &x.name == name))
        });
        Grammar {
            tok,
            r,
            tools,
            gen_ids,
            space: OutSpace {
                n_gen: gen_ids.len(),
                src: r.len(),
            },
            require_call: opts.require_call || forced.is_some(),
            single_call: opts.single_call_only,
            forced,
            max_value_tokens: max_value_tokens.max(1),
            max_calls: 16,
            state: State::Between,
            calls: Vec::new(),
            cur_args: Map::new(),
        }
    }

    fn schema(&self, tool: usize, param: usize) -> Option<&'a Schema> {
        let rt = self.r.tools.get(tool)?;
        let t = self.tools.get(rt.index)?;
        let name = &rt.params.get(param)?.name;
        t.parameters.properties.get(name)
    }

    fn tool_def(&self, tool: usize) -> Option<&'a Tool> {
        self.tools.get(self.r.tools.get(tool)?.index)
    }

    /// Is a value token with this id acceptable now?
    pub fn token_ok(&self, v: &ValState, t: u32) -> bool {
        if v.total >= self.max_value_tokens {
            return false;
        }
        let c = self.tok.class_of(t);
        if c & class::SPECIAL != 0 {
            return false;
        }
        let last = v.cur.last().map(|x| self.tok.class_of(x.0));
        let digit = |c: u8| c & (class::DIGITS | class::HASH_DIGITS) != 0;
        match &v.kind {
            VKind::Enum(members, _) => {
                let n = v.cur.len();
                members.iter().any(|m| {
                    m.len() > n
                        && m.get(n) == Some(&t)
                        && m[..n].iter().eq(v.cur.iter().map(|x| &x.0))
                })
            }
            VKind::Integer => match last {
                None => c & (class::DIGITS | class::MINUS) != 0,
                Some(l) if l & class::MINUS != 0 => c & class::DIGITS != 0,
                Some(_) => c & class::HASH_DIGITS != 0 && v.cur.len() < 8,
            },
            VKind::Number => {
                let seen_dot = v
                    .cur
                    .iter()
                    .any(|x| self.tok.class_of(x.0) & class::DOT != 0);
                match last {
                    None => c & (class::DIGITS | class::MINUS) != 0,
                    Some(l) if l & class::MINUS != 0 => c & class::DIGITS != 0,
                    Some(l) if l & class::DOT != 0 => c & class::DIGITS != 0,
                    Some(l) if digit(l) => {
                        v.cur.len() < 10
                            && (c & class::HASH_DIGITS != 0 || (!seen_dot && c & class::DOT != 0))
                    }
                    Some(_) => false,
                }
            }
            VKind::Boolean => v.cur.is_empty() && c & class::BOOL != 0,
            VKind::Text | VKind::Json => true,
        }
    }

    /// Can the current element end here?
    fn element_complete(&self, v: &ValState) -> bool {
        let digit = |c: u8| c & (class::DIGITS | class::HASH_DIGITS) != 0;
        match &v.kind {
            VKind::Enum(members, _) => members
                .iter()
                .any(|m| m.iter().eq(v.cur.iter().map(|x| &x.0))),
            VKind::Integer | VKind::Number => {
                v.cur.last().is_some_and(|x| digit(self.tok.class_of(x.0)))
            }
            VKind::Boolean => v.cur.len() == 1,
            VKind::Text => !v.array || !v.cur.is_empty(),
            VKind::Json => !v.cur.is_empty() || !v.array,
        }
    }

    fn action_ok(&self, a: usize) -> bool {
        match &self.state {
            State::Between => a == action::STOP && (!self.require_call || !self.calls.is_empty()),
            State::InCall { tool, used } => {
                a == action::END_CALL
                    && self.tool_def(*tool).is_some_and(|t| {
                        t.parameters.required.iter().all(|req| {
                            self.r.tools[*tool]
                                .params
                                .iter()
                                .position(|p| &p.name == req)
                                .is_none_or(|k| used.get(k).copied().unwrap_or(false))
                        })
                    })
            }
            State::InValue { v, .. } => {
                let complete = self.element_complete(v);
                match a {
                    action::END_VAL => {
                        if v.array && v.cur.is_empty() {
                            v.done.is_empty()
                        } else {
                            complete
                        }
                    }
                    action::NEXT_ELEM => v.array && !v.cur.is_empty() && complete,
                    _ => false,
                }
            }
            State::Done => false,
        }
    }

    fn function_ok(&self, t: usize) -> bool {
        matches!(self.state, State::Between)
            && t < self.r.tools.len()
            && (self.calls.is_empty() || !self.single_call)
            && self.calls.len() < self.max_calls
            && self.forced.is_none_or(|f| f == t)
    }

    fn param_ok(&self, k: usize) -> bool {
        match &self.state {
            State::InCall { tool, used } => {
                k < self.r.tools[*tool].params.len() && !used.get(k).copied().unwrap_or(true)
            }
            _ => false,
        }
    }

    /// Is `c` allowed now?
    pub fn allowed(&self, c: Choice) -> bool {
        match c {
            Choice::Action(a) => self.action_ok(a),
            Choice::Function(t) => self.function_ok(t),
            Choice::Param(k) => self.param_ok(k),
            Choice::Token(t, p) => match &self.state {
                State::InValue { v, .. } => {
                    self.token_ok(v, t) && p.is_none_or(|p| self.r.ids.get(p) == Some(&t))
                }
                _ => false,
            },
        }
    }

    /// The choice an output index stands for.
    pub fn choice_of(&self, i: usize) -> Option<Choice> {
        let sp = self.space;
        if i < action::COUNT {
            return Some(Choice::Action(i));
        }
        if i < action::COUNT + sp.n_gen {
            return self
                .gen_ids
                .get(i - action::COUNT)
                .map(|&t| Choice::Token(t, None));
        }
        let p = i - action::COUNT - sp.n_gen;
        if p >= sp.src {
            return None;
        }
        match &self.state {
            State::Between => self
                .r
                .tools
                .iter()
                .position(|t| t.start == p)
                .map(Choice::Function),
            State::InCall { tool, .. } => self.r.tools[*tool]
                .params
                .iter()
                .position(|q| q.start == p)
                .map(Choice::Param),
            State::InValue { .. } => self.r.ids.get(p).map(|&t| Choice::Token(t, Some(p))),
            State::Done => None,
        }
    }

    /// The allowed-output mask over the output space.
    pub fn mask(&self) -> Vec<bool> {
        let sp = self.space;
        let mut m = vec![false; sp.size()];
        for (a, slot) in m.iter_mut().enumerate().take(action::COUNT) {
            *slot = self.action_ok(a);
        }
        match &self.state {
            State::Between => {
                for (t, rt) in self.r.tools.iter().enumerate() {
                    if self.function_ok(t) {
                        m[sp.src_index(rt.start)] = true;
                    }
                }
            }
            State::InCall { tool, .. } => {
                for (k, p) in self.r.tools[*tool].params.iter().enumerate() {
                    if self.param_ok(k) {
                        m[sp.src_index(p.start)] = true;
                    }
                }
            }
            State::InValue { v, .. } => {
                for (g, &t) in self.gen_ids.iter().enumerate() {
                    m[sp.gen_index(g)] = self.token_ok(v, t);
                }
                for (p, &t) in self.r.ids.iter().enumerate() {
                    m[sp.src_index(p)] = self.token_ok(v, t);
                }
            }
            State::Done => {}
        }
        m
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Apply a choice.
    pub fn step(&mut self, c: Choice) -> Result<(), NotAllowed> {
        if !self.allowed(c) {
            return Err(NotAllowed(c));
        }
        let state = std::mem::replace(&mut self.state, State::Done);
        self.state = match (state, c) {
            (State::Between, Choice::Action(_)) => State::Done,
            (State::Between, Choice::Function(t)) => {
                self.cur_args = Map::new();
                State::InCall {
                    tool: t,
                    used: vec![false; self.r.tools[t].params.len()],
                }
            }
            (State::InCall { tool, .. }, Choice::Action(_)) => {
                let name = self
                    .tool_def(tool)
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                self.calls
                    .push(Call::new(name, std::mem::take(&mut self.cur_args)));
                State::Between
            }
            (State::InCall { tool, mut used }, Choice::Param(k)) => {
                used[k] = true;
                let schema = self.schema(tool, k);
                let enum_ids = &self.r.tools[tool].params[k].enum_ids;
                let (kind, array, schema_ty) = match schema {
                    Some(s) if s.ty == SchemaType::Array && s.enum_values.is_none() => {
                        match s.items.as_deref() {
                            Some(it)
                                if matches!(
                                    it.ty,
                                    SchemaType::String
                                        | SchemaType::Integer
                                        | SchemaType::Number
                                        | SchemaType::Boolean
                                ) && it.enum_values.is_none() =>
                            {
                                (VKind::of(it, &[]), true, s.ty)
                            }
                            _ => (VKind::Json, false, s.ty),
                        }
                    }
                    Some(s) => (VKind::of(s, enum_ids), false, s.ty),
                    None => (VKind::Json, false, SchemaType::Any),
                };
                State::InValue {
                    tool,
                    used,
                    param: k,
                    v: ValState {
                        kind,
                        array,
                        done: Vec::new(),
                        cur: Vec::new(),
                        total: 0,
                        schema_ty,
                    },
                }
            }
            (
                State::InValue {
                    tool,
                    used,
                    param,
                    mut v,
                },
                Choice::Token(t, p),
            ) => {
                v.cur.push((t, p));
                v.total += 1;
                State::InValue {
                    tool,
                    used,
                    param,
                    v,
                }
            }
            (
                State::InValue {
                    tool,
                    used,
                    param,
                    mut v,
                },
                Choice::Action(a),
            ) => {
                if a == action::NEXT_ELEM {
                    let cur = std::mem::take(&mut v.cur);
                    v.done.push(cur);
                    State::InValue {
                        tool,
                        used,
                        param,
                        v,
                    }
                } else {
                    if !v.cur.is_empty() || !v.array {
                        let cur = std::mem::take(&mut v.cur);
                        v.done.push(cur);
                    }
                    let value = self.read_value(&v);
                    let name = self.r.tools[tool].params[param].name.clone();
                    self.cur_args.insert(name, value);
                    State::InCall { tool, used }
                }
            }
            (s, _) => s,
        };
        Ok(())
    }

    /// Read the decoded value back as JSON.
    fn read_value(&self, v: &ValState) -> Value {
        let read = |el: &[(u32, Option<usize>)]| -> Value {
            match &v.kind {
                VKind::Enum(members, vals) => members
                    .iter()
                    .position(|m| m.iter().eq(el.iter().map(|x| &x.0)))
                    .and_then(|i| vals.get(i).cloned())
                    .unwrap_or(Value::Null),
                VKind::Integer => {
                    let s = join_compact(self.tok, el);
                    s.parse::<i64>().map(Value::from).unwrap_or(Value::Null)
                }
                VKind::Number => {
                    let s = join_compact(self.tok, el);
                    if s.contains('.') {
                        s.parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                            .map(Value::Number)
                            .unwrap_or(Value::Null)
                    } else {
                        s.parse::<i64>().map(Value::from).unwrap_or(Value::Null)
                    }
                }
                VKind::Boolean => {
                    Value::Bool(el.first().is_some_and(|x| self.tok.text(x.0) == "true"))
                }
                VKind::Text => Value::String(detokenize(self.tok, self.r, el)),
                VKind::Json => {
                    let s = detokenize_json(self.tok, self.r, el);
                    match serde_json::from_str::<Value>(&s) {
                        Ok(x) => x,
                        Err(_) => match v.schema_ty {
                            SchemaType::Object => Value::Object(Map::new()),
                            SchemaType::Array => Value::Array(Vec::new()),
                            _ => Value::String(detokenize(self.tok, self.r, el)),
                        },
                    }
                }
            }
        };
        if v.array {
            Value::Array(v.done.iter().map(|e| read(e)).collect())
        } else {
            v.done.first().map(|e| read(e)).unwrap_or_else(|| read(&[]))
        }
    }
}

/// Concatenate word pieces without spaces (numbers).
fn join_compact(tok: &Tok, el: &[(u32, Option<usize>)]) -> String {
    let mut s = String::new();
    for &(t, _) in el {
        let x = tok.text(t);
        s.push_str(x.strip_prefix("##").unwrap_or(x));
    }
    s
}

fn no_space_before(x: &str) -> bool {
    x.starts_with("##")
        || matches!(
            x,
            "." | "," | "!" | "?" | ";" | ":" | ")" | "]" | "}" | "%" | "'" | "-" | "/" | "_" | "@"
        )
}

fn no_space_after(x: &str) -> bool {
    matches!(x, "(" | "[" | "{" | "$" | "#" | "@" | "'" | "-" | "/" | "_")
}

/// Rebuild a string value from its pieces: runs of consecutive copies
/// become slices of the source text (original casing); the rest is joined
/// from word pieces.
pub fn detokenize(tok: &Tok, r: &Rendered, el: &[(u32, Option<usize>)]) -> String {
    let mut s = String::new();
    let mut prev = String::new();
    let mut i = 0;
    while i < el.len() {
        let span = el[i]
            .1
            .and_then(|p| r.spans.get(p))
            .copied()
            .filter(|sp| *sp != (0, 0));
        let (text, first, last, next) = match span {
            Some((a, _)) => {
                let mut j = i;
                while j + 1 < el.len()
                    && el[j + 1].1.is_some()
                    && el[j + 1].1 == el[j].1.map(|q| q + 1)
                {
                    j += 1;
                }
                let end = el[j]
                    .1
                    .and_then(|q| r.spans.get(q))
                    .map(|sp| sp.1)
                    .unwrap_or(a)
                    .max(a);
                (
                    r.text.get(a..end).unwrap_or("").to_string(),
                    tok.text(el[i].0).to_string(),
                    tok.text(el[j].0).to_string(),
                    j + 1,
                )
            }
            None => {
                let t = tok.text(el[i].0);
                (
                    t.strip_prefix("##").unwrap_or(t).to_string(),
                    t.to_string(),
                    t.to_string(),
                    i + 1,
                )
            }
        };
        // A `:` or `.` between digits joins them: "14:30", "3.5".
        let joins_digits = matches!(prev.as_str(), ":" | ".")
            && s.strip_suffix(prev.as_str())
                .is_some_and(|h| h.ends_with(|c: char| c.is_ascii_digit()))
            && text.starts_with(|c: char| c.is_ascii_digit());
        if !s.is_empty() && !no_space_before(&first) && !no_space_after(&prev) && !joins_digits {
            s.push(' ');
        }
        s.push_str(&text);
        prev = last;
        i = next;
    }
    s
}

/// Rebuild JSON text: spaces only between two word-like pieces.
pub fn detokenize_json(tok: &Tok, r: &Rendered, el: &[(u32, Option<usize>)]) -> String {
    let _ = r;
    let mut s = String::new();
    let mut prev_word = false;
    for &(t, p) in el {
        let x = match p.and_then(|p| r.spans.get(p)) {
            Some(&(a, b)) if (a, b) != (0, 0) => r.text.get(a..b).unwrap_or("").to_string(),
            _ => tok.text(t).to_string(),
        };
        let cont = x.starts_with("##");
        let bare = x.strip_prefix("##").unwrap_or(&x);
        let word = bare.chars().next().is_some_and(|c| c.is_alphanumeric());
        if word && prev_word && !cont {
            s.push(' ');
        }
        s.push_str(bare);
        prev_word = bare.chars().last().is_some_and(|c| c.is_alphanumeric());
    }
    s
}

/// The word pieces of a gold value (per element for arrays decoded element
/// by element), or `None` when the value cannot be expressed.
pub fn value_pieces(tok: &Tok, kind_of: &ValStateInit, value: &Value) -> Option<Vec<Vec<u32>>> {
    let one = |k: &VKind, v: &Value| -> Option<Vec<u32>> {
        match k {
            VKind::Enum(members, vals) => vals
                .iter()
                .position(|x| x == v)
                .and_then(|i| members.get(i).cloned()),
            VKind::Integer => {
                let n = v.as_i64().or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                        .map(|f| f as i64)
                })?;
                tok.ids(&n.to_string()).ok()
            }
            VKind::Number => {
                let text = if let Some(i) = v.as_i64() {
                    i.to_string()
                } else {
                    format!("{}", v.as_f64()?)
                };
                tok.ids(&text).ok()
            }
            VKind::Boolean => tok.ids(if v.as_bool()? { "true" } else { "false" }).ok(),
            VKind::Text => tok.ids(v.as_str()?).ok(),
            VKind::Json => tok.ids(&serde_json::to_string(v).ok()?).ok(),
        }
    };
    if kind_of.array {
        let arr = value.as_array()?;
        arr.iter().map(|e| one(&kind_of.kind, e)).collect()
    } else {
        Some(vec![one(&kind_of.kind, value)?])
    }
}

/// The value kind a parameter would be decoded with.
#[derive(Debug, Clone)]
pub struct ValStateInit {
    pub kind: VKind,
    pub array: bool,
}

impl Grammar<'_> {
    /// The value kind of parameter `k` of rendered tool `tool`.
    pub fn value_kind(&self, tool: usize, k: usize) -> ValStateInit {
        let mut g = Grammar {
            tok: self.tok,
            r: self.r,
            tools: self.tools,
            gen_ids: self.gen_ids,
            space: self.space,
            require_call: false,
            single_call: false,
            forced: None,
            max_value_tokens: self.max_value_tokens,
            max_calls: self.max_calls,
            state: State::InCall {
                tool,
                used: vec![false; self.r.tools.get(tool).map(|t| t.params.len()).unwrap_or(0)],
            },
            calls: Vec::new(),
            cur_args: Map::new(),
        };
        match g.step(Choice::Param(k)) {
            Ok(()) => match g.state {
                State::InValue { v, .. } => ValStateInit {
                    kind: v.kind,
                    array: v.array,
                },
                _ => ValStateInit {
                    kind: VKind::Json,
                    array: false,
                },
            },
            Err(_) => ValStateInit {
                kind: VKind::Json,
                array: false,
            },
        }
    }
}
