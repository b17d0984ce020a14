//! A reimplementation of BFCL's AST checker (`ast_checker.py` of bfcl-eval
//! 2026.3.23), rule for rule.
//!
//! Rules, per call: the function name must match (`.` may be written `_`);
//! every required parameter must be present; every supplied parameter must
//! be declared and listed in the answer key; types are strict (an `int`
//! passes for a `float` in Python, nothing else converts); strings compare
//! after [`standardize_string`]; lists compare in order; dicts one level
//! deep; `""` among the acceptable values lets a parameter be omitted. Java
//! and JavaScript arguments are strings in the language's syntax, converted
//! by [`crate::convert`] first. Calls: exact counts; parallel categories
//! match calls in any order (greedily, in key order, as BFCL does);
//! irrelevance passes with no call and relevance with at least one.

use indexmap::IndexMap;
use retort_core::Call;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::category::{Category, Language, Scoring};
use crate::convert;
use crate::py::{Py, PyType, py_in, standardize_string};

/// Why an entry failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No call where at least one was expected.
    NoCall,
    /// A call in an irrelevance category.
    UnexpectedCall,
    /// The number of calls differs from the answer key.
    WrongCount,
    /// The call names another function.
    WrongFunction,
    /// A required parameter is absent.
    MissingRequired,
    /// A parameter not declared, or not in the answer key.
    UnexpectedParam,
    /// A parameter the answer key expects (not marked optional) is absent.
    MissingParam,
    /// A value of the wrong type.
    WrongType,
    /// A value of the right type that the key does not accept.
    WrongValue,
    /// A dict argument with a key the answer does not have, or without one it needs.
    WrongDictKey,
    /// The entry declares a type BFCL's checker does not support.
    UnsupportedType,
    /// The entry's answer key is malformed.
    InvalidEntry,
    /// The model returned an error instead of a prediction.
    ModelError,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::NoCall,
        Reason::UnexpectedCall,
        Reason::WrongCount,
        Reason::WrongFunction,
        Reason::MissingRequired,
        Reason::UnexpectedParam,
        Reason::MissingParam,
        Reason::WrongType,
        Reason::WrongValue,
        Reason::WrongDictKey,
        Reason::UnsupportedType,
        Reason::InvalidEntry,
        Reason::ModelError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoCall => "no_call",
            Reason::UnexpectedCall => "unexpected_call",
            Reason::WrongCount => "wrong_count",
            Reason::WrongFunction => "wrong_function",
            Reason::MissingRequired => "missing_required",
            Reason::UnexpectedParam => "unexpected_param",
            Reason::MissingParam => "missing_param",
            Reason::WrongType => "wrong_type",
            Reason::WrongValue => "wrong_value",
            Reason::WrongDictKey => "wrong_dict_key",
            Reason::UnsupportedType => "unsupported_type",
            Reason::InvalidEntry => "invalid_entry",
            Reason::ModelError => "model_error",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed check: the reason and a message in BFCL's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub reason: Reason,
    pub detail: String,
}

impl Failure {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Failure {
            reason,
            detail: detail.into(),
        }
    }
}

type Check<T = ()> = Result<T, Failure>;

fn fail<T>(reason: Reason, detail: impl Into<String>) -> Check<T> {
    Err(Failure::new(reason, detail))
}

/// Score predicted calls for one entry. `functions` are the entry's raw
/// BFCL function descriptions and `answer` its `ground_truth` (ignored, and
/// may be `None`, for the (ir)relevance categories).
pub fn check(
    category: Category,
    functions: &[Value],
    answer: Option<&[Value]>,
    calls: &[Call],
) -> Check {
    let scoring = category.scoring();
    match scoring {
        Scoring::Irrelevance => {
            return if calls.is_empty() {
                Ok(())
            } else {
                fail(
                    Reason::UnexpectedCall,
                    format!("expected no call, got {} call(s)", calls.len()),
                )
            };
        }
        Scoring::Relevance => {
            return if calls.is_empty() {
                fail(Reason::NoCall, "expected at least one call, got none")
            } else {
                Ok(())
            };
        }
        _ => {}
    }
    let Some(answer) = answer else {
        return fail(Reason::InvalidEntry, "the entry has no answer key");
    };
    if calls.is_empty() {
        return fail(Reason::NoCall, "expected a call, got none");
    }
    let lang = category.language();
    let answers = answer
        .iter()
        .map(AnswerCall::parse)
        .collect::<Check<Vec<_>>>()?;
    let outputs: Vec<Output> = calls.iter().map(Output::from_call).collect();
    match scoring {
        Scoring::Parallel => parallel_no_order(functions, &outputs, &answers, lang),
        Scoring::Multiple => {
            if outputs.len() != answers.len() {
                return wrong_count(answers.len(), outputs.len());
            }
            let Some(first) = answers.first() else {
                return fail(Reason::InvalidEntry, "empty answer key");
            };
            let desc = find_description(functions, &first.name)?;
            simple_function_checker(desc, &outputs[0], first, lang)
        }
        _ => {
            if outputs.len() != 1 {
                return wrong_count(1, outputs.len());
            }
            let (Some(desc), Some(first)) = (functions.first(), answers.first()) else {
                return fail(Reason::InvalidEntry, "no function or no answer");
            };
            simple_function_checker(desc, &outputs[0], first, lang)
        }
    }
}

fn wrong_count(expected: usize, got: usize) -> Check {
    fail(
        Reason::WrongCount,
        format!("Wrong number of functions: expected {expected}, got {got}."),
    )
}

/// One expected call: the function and each parameter's acceptable values.
struct AnswerCall {
    name: String,
    params: IndexMap<String, Vec<Py>>,
}

impl AnswerCall {
    fn parse(v: &Value) -> Check<AnswerCall> {
        let Some((name, params)) = v.as_object().and_then(|o| o.iter().next()) else {
            return fail(
                Reason::InvalidEntry,
                format!("answer {v} is not {{name: params}}"),
            );
        };
        let Some(params) = params.as_object() else {
            return fail(
                Reason::InvalidEntry,
                format!("answer params of {name} are not a dict"),
            );
        };
        let mut out = IndexMap::new();
        for (k, vals) in params {
            let Some(vals) = vals.as_array() else {
                return fail(
                    Reason::InvalidEntry,
                    format!("acceptable values of {name}.{k} are not a list"),
                );
            };
            out.insert(k.clone(), vals.iter().map(Py::from_json).collect());
        }
        Ok(AnswerCall {
            name: name.clone(),
            params: out,
        })
    }
}

/// A predicted call in Python form.
struct Output {
    name: String,
    params: IndexMap<String, Py>,
}

impl Output {
    fn from_call(c: &Call) -> Output {
        Output {
            name: c.name.clone(),
            params: c
                .arguments
                .iter()
                .map(|(k, v)| (k.clone(), Py::from_json(v)))
                .collect(),
        }
    }
}

fn find_description<'a>(functions: &'a [Value], name: &str) -> Check<&'a Value> {
    functions
        .iter()
        .find(|f| f.get("name").and_then(Value::as_str) == Some(name))
        .ok_or_else(|| {
            Failure::new(
                Reason::InvalidEntry,
                format!("the answer key names {name:?}, which the entry does not offer"),
            )
        })
}

fn is_blank(v: &Py) -> bool {
    matches!(v, Py::Str(s) if s.is_empty())
}

/// A language's type table (BFCL's `*_TYPE_CONVERSION`).
type TypeMap = fn(&str) -> Option<PyType>;

fn python_type(ty: &str) -> Option<PyType> {
    Some(match ty {
        "string" | "any" => PyType::Str,
        "integer" => PyType::Int,
        "float" => PyType::Float,
        "boolean" => PyType::Bool,
        "array" | "tuple" => PyType::List,
        "dict" => PyType::Dict,
        _ => return None,
    })
}

fn java_type(ty: &str) -> Option<PyType> {
    Some(match ty {
        "byte" | "short" | "integer" | "long" => PyType::Int,
        "float" | "double" => PyType::Float,
        "boolean" => PyType::Bool,
        "char" | "String" | "any" => PyType::Str,
        "Array" | "ArrayList" | "Queue" | "Stack" => PyType::List,
        "Set" => PyType::Set,
        "HashMap" | "Hashtable" => PyType::Dict,
        _ => return None,
    })
}

fn js_type(ty: &str) -> Option<PyType> {
    Some(match ty {
        "String" | "any" => PyType::Str,
        "integer" | "Bigint" => PyType::Int,
        "float" => PyType::Float,
        "Boolean" => PyType::Bool,
        "dict" => PyType::Dict,
        "array" => PyType::List,
        _ => return None,
    })
}

fn unsupported<T>(lang: Language, ty: &str) -> Check<T> {
    fail(
        Reason::UnsupportedType,
        format!("type {ty:?} is not supported by BFCL's {lang:?} checker"),
    )
}

/// Port of `simple_function_checker`.
fn simple_function_checker(
    desc: &Value,
    output: &Output,
    answer: &AnswerCall,
    lang: Language,
) -> Check {
    checked_function(desc, output, answer, lang, &mut 0)
}

/// [`simple_function_checker`], counting in `progress` the checks passed
/// before a failure (so parallel matching can report the closest call).
fn checked_function(
    desc: &Value,
    output: &Output,
    answer: &AnswerCall,
    lang: Language,
    progress: &mut usize,
) -> Check {
    let func_name = desc.get("name").and_then(Value::as_str).unwrap_or_default();
    let empty = serde_json::Map::new();
    let params = desc.get("parameters");
    let details = params
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let required: Vec<&str> = params
        .and_then(|p| p.get("required"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();

    if output.name != func_name && output.name != func_name.replace('.', "_") {
        return fail(
            Reason::WrongFunction,
            format!(
                "Function name {func_name:?} not found in model output (got {:?}).",
                output.name
            ),
        );
    }
    *progress += 1;
    for r in &required {
        if !output.params.contains_key(*r) {
            return fail(
                Reason::MissingRequired,
                format!("Missing required parameter: {r:?}."),
            );
        }
    }
    *progress += 1;
    for (param, value) in &output.params {
        let (Some(detail), Some(possible)) = (details.get(param), answer.params.get(param)) else {
            return fail(
                Reason::UnexpectedParam,
                format!("Unexpected parameter: {param:?}."),
            );
        };
        let Some(ty) = detail.get("type").and_then(Value::as_str) else {
            return unsupported(lang, "(none)");
        };
        let nested_ty = || {
            detail
                .get("items")
                .and_then(|i| i.get("type"))
                .and_then(Value::as_str)
        };
        let mut value = value.clone();
        let expected;
        let mut nested = None;
        match lang {
            Language::Java | Language::JavaScript => {
                let (map, known): (TypeMap, fn(&str) -> bool) = match lang {
                    Language::Java => (java_type, convert::java_type_known),
                    _ => (js_type, convert::js_type_known),
                };
                let Some(e) = map(ty).filter(|_| known(ty)) else {
                    return unsupported(lang, ty);
                };
                expected = e;
                let Py::Str(text) = &value else {
                    return fail(
                        Reason::WrongType,
                        format!(
                            "Incorrect type for parameter {param:?}. Expected type String, got {}. Parameter value: {}.",
                            value.ty().name(),
                            value.to_json()
                        ),
                    );
                };
                let is_nested = matches!(ty, "Array" | "ArrayList" | "array");
                let nested_name = if is_nested {
                    let Some(n) = nested_ty() else {
                        return unsupported(lang, &format!("{ty} without items"));
                    };
                    let Some(nt) = map(n) else {
                        return unsupported(lang, n);
                    };
                    nested = Some(nt);
                    Some(n)
                } else {
                    None
                };
                let converted = match lang {
                    Language::Java => convert::java(text, ty, nested_name),
                    _ => convert::js(text, ty, nested_name),
                };
                value = match converted {
                    Ok(v) => v,
                    Err(e) => return fail(Reason::UnsupportedType, e.to_string()),
                };
            }
            Language::Python => {
                let Some(e) = python_type(ty) else {
                    return unsupported(lang, ty);
                };
                expected = e;
                if matches!(ty, "array" | "tuple") {
                    let Some(nt) = nested_ty().and_then(python_type) else {
                        return unsupported(lang, &format!("{ty} of {:?}", nested_ty()));
                    };
                    nested = Some(nt);
                }
                if let (Py::Int(i), "float") = (&value, ty) {
                    value = Py::Float(*i as f64);
                }
            }
        }

        let is_variable = type_checker(param, &value, possible, expected, nested)?;
        if !is_variable {
            match (expected, &value) {
                (PyType::Dict, _) => {
                    dict_checker(param, &value, possible)?;
                    *progress += 1;
                    continue;
                }
                (PyType::List, Py::List(items)) if nested == Some(PyType::Dict) => {
                    list_dict_checker(param, items, possible)?;
                    *progress += 1;
                    continue;
                }
                (PyType::Str, Py::Str(s)) => {
                    string_checker(param, s, possible)?;
                    *progress += 1;
                    continue;
                }
                (PyType::List, Py::List(items)) => {
                    list_checker(param, items, possible)?;
                    *progress += 1;
                    continue;
                }
                _ => {}
            }
        }
        if !py_in(&value, possible) {
            return fail(
                Reason::WrongValue,
                format!(
                    "Invalid value for parameter {param:?}: {}. Expected one of {}.",
                    value.to_json(),
                    list_json(possible)
                ),
            );
        }
        *progress += 1;
    }
    for (param, possible) in &answer.params {
        if !output.params.contains_key(param) && !possible.iter().any(is_blank) {
            return fail(
                Reason::MissingParam,
                format!("Optional parameter {param:?} not provided and not marked as optional."),
            );
        }
    }
    Ok(())
}

fn list_json(v: &[Py]) -> String {
    Value::Array(v.iter().map(Py::to_json).collect()).to_string()
}

/// Port of `type_checker`; returns whether the value is a "variable" (its
/// type matches the answer key's rather than the declared one).
fn type_checker(
    param: &str,
    value: &Py,
    possible: &[Py],
    expected: PyType,
    nested: Option<PyType>,
) -> Check<bool> {
    let answer_type = possible.iter().find(|a| !is_blank(a)).map(Py::ty);
    let is_variable = answer_type.is_some_and(|t| t != expected);
    if value.ty() == expected {
        let Some(nested) = nested else {
            return Ok(is_variable);
        };
        let items: &[Py] = match value {
            Py::List(l) => l,
            _ => &[],
        };
        for alt in possible {
            let ok = match alt {
                Py::List(alt_items) => items
                    .iter()
                    .all(|v| type_checker(param, v, alt_items, nested, None).is_ok()),
                _ => true,
            };
            if ok {
                return Ok(is_variable);
            }
        }
        return fail(
            Reason::WrongType,
            format!(
                "Nested type checking failed for parameter {param:?}. Expected inner type {}. Parameter value: {}.",
                nested.name(),
                value.to_json()
            ),
        );
    }
    if answer_type.is_some_and(|t| t == value.ty()) {
        return Ok(true);
    }
    fail(
        Reason::WrongType,
        format!(
            "Incorrect type for parameter {param:?}. Expected type {}, got {}. Parameter value: {}.",
            expected.name(),
            value.ty().name(),
            value.to_json()
        ),
    )
}

fn standardize(v: &Py) -> Py {
    match v {
        Py::Str(s) => Py::Str(standardize_string(s)),
        other => other.clone(),
    }
}

/// The alternative as a Python sequence (`len(x)` / `x[j]`): a list, or a
/// string's characters. `None` where Python would raise.
fn as_sequence(alt: &Py) -> Option<Vec<Py>> {
    match alt {
        Py::List(l) => Some(l.clone()),
        Py::Str(s) => Some(s.chars().map(|c| Py::Str(c.to_string())).collect()),
        _ => None,
    }
}

/// Port of `string_checker`.
fn string_checker(param: &str, value: &str, possible: &[Py]) -> Check {
    let v = standardize_string(value);
    let ok = possible
        .iter()
        .any(|a| matches!(a, Py::Str(s) if standardize_string(s) == v));
    if ok {
        Ok(())
    } else {
        fail(
            Reason::WrongValue,
            format!(
                "Invalid value for parameter {param:?}: {value:?}. Expected one of {}. Case insensitive.",
                list_json(possible)
            ),
        )
    }
}

/// Port of `list_checker`: in order, strings standardised one level deep.
fn list_checker(param: &str, value: &[Py], possible: &[Py]) -> Check {
    let out = Py::List(value.iter().map(standardize).collect());
    let ok = possible.iter().filter_map(as_sequence).any(|alt| {
        let alt = Py::List(alt.iter().map(standardize).collect());
        crate::py::py_eq(&out, &alt)
    });
    if ok {
        Ok(())
    } else {
        fail(
            Reason::WrongValue,
            format!(
                "Invalid value for parameter {param:?}: {}. Expected one of {}.",
                Py::List(value.to_vec()).to_json(),
                list_json(possible)
            ),
        )
    }
}

/// Port of `dict_checker`: keys must be in the answer, values among its
/// acceptable ones, and every non-optional key present.
fn dict_checker(param: &str, value: &Py, possible: &[Py]) -> Check {
    let Py::Dict(out) = value else {
        return fail(
            Reason::WrongType,
            format!(
                "Parameter {param:?} should hold a dict, got {}.",
                value.ty().name()
            ),
        );
    };
    let mut result = fail(
        Reason::WrongValue,
        format!("No acceptable dict for parameter {param:?}."),
    );
    for alt in possible {
        if is_blank(alt) {
            continue;
        }
        let Py::Dict(alt) = alt else {
            result = fail(
                Reason::WrongValue,
                format!("Parameter {param:?}: the answer is not a dict."),
            );
            continue;
        };
        let mut flag = true;
        for (k, v) in out {
            let Some(accepted) = alt.get(k) else {
                result = fail(
                    Reason::WrongDictKey,
                    format!("Unexpected dict key parameter: '{k}'."),
                );
                flag = false;
                break;
            };
            let accepted: Vec<Py> = as_sequence(accepted)
                .unwrap_or_default()
                .iter()
                .map(standardize)
                .collect();
            if !py_in(&standardize(v), &accepted) {
                result = fail(
                    Reason::WrongValue,
                    format!(
                        "Invalid value for parameter {k:?}: {}. Expected one of {}.",
                        v.to_json(),
                        list_json(&accepted)
                    ),
                );
                flag = false;
                break;
            }
        }
        for (k, accepted) in alt {
            let optional = match accepted {
                Py::List(l) => l.iter().any(is_blank),
                // `"" in "text"` is true in Python.
                Py::Str(_) => true,
                _ => false,
            };
            if !out.contains_key(k) && !optional {
                result = fail(
                    Reason::WrongDictKey,
                    format!("Missing dict key parameter: '{k}'."),
                );
                flag = false;
                break;
            }
        }
        if flag {
            return Ok(());
        }
    }
    result
}

/// Port of `list_dict_checker`: a list of dicts, in order.
fn list_dict_checker(param: &str, value: &[Py], possible: &[Py]) -> Check {
    let mut result = fail(
        Reason::WrongValue,
        format!("No acceptable list of dicts for {param:?}."),
    );
    for alt in possible {
        let Some(alt) = as_sequence(alt) else {
            continue;
        };
        if alt.len() != value.len() {
            result = fail(
                Reason::WrongValue,
                "Wrong number of dictionaries in the list.",
            );
            continue;
        }
        let mut flag = true;
        for (v, a) in value.iter().zip(&alt) {
            result = dict_checker(param, v, std::slice::from_ref(a));
            if result.is_err() {
                flag = false;
                break;
            }
        }
        if flag {
            return Ok(());
        }
    }
    result
}

/// Port of `parallel_function_checker_no_order`: for each expected call in
/// key order, the first unmatched predicted call that passes is taken.
fn parallel_no_order(
    functions: &[Value],
    outputs: &[Output],
    answers: &[AnswerCall],
    lang: Language,
) -> Check {
    if outputs.len() != answers.len() {
        return wrong_count(answers.len(), outputs.len());
    }
    let mut matched = vec![false; outputs.len()];
    for (i, ans) in answers.iter().enumerate() {
        let desc = find_description(functions, &ans.name)?;
        let mut closest: Option<(usize, Failure)> = None;
        let mut found = false;
        for (idx, out) in outputs.iter().enumerate() {
            if matched[idx] {
                continue;
            }
            let mut progress = 0;
            match checked_function(desc, out, ans, lang, &mut progress) {
                Ok(()) => {
                    matched[idx] = true;
                    found = true;
                    break;
                }
                Err(e) => {
                    if closest.as_ref().is_none_or(|(p, _)| progress > *p) {
                        closest = Some((progress, e));
                    }
                }
            }
        }
        if !found {
            // Report the unmatched call that got furthest through the checks.
            let best = closest
                .map(|(_, e)| e)
                .unwrap_or_else(|| Failure::new(Reason::WrongFunction, "no call left"));
            return fail(
                best.reason,
                format!(
                    "Could not find a matching function for index {i} of possible answers ({}): {}",
                    ans.name, best.detail
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
