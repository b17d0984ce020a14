//! The hand-set decoding rules ([`DecodeConfig`], the `"decode"` object of
//! `config.json`): biases added to the network's logits and constraints on
//! its choices while decoding. Every rule is off by default (`false`, `0`),
//! so a rule missing from a configuration is off. Each is chosen on held-out validation data,
//! never on test data; `retort train --eval-only --decode KEY=VALUE`
//! measures one.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// The value of one rule: a switch or a logit.
trait RuleValue: Sized {
    /// What `set` accepts, for messages and help texts.
    const KIND: &'static str;
    fn parse_value(s: &str) -> Option<Self>;
    /// The logit, for a rule that adds one.
    fn as_bias(&self) -> Option<f64>;
}

impl RuleValue for bool {
    const KIND: &'static str = "true|false";
    fn parse_value(s: &str) -> Option<Self> {
        match s {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
    fn as_bias(&self) -> Option<f64> {
        None
    }
}

impl RuleValue for f64 {
    const KIND: &'static str = "NUMBER";
    fn parse_value(s: &str) -> Option<Self> {
        s.parse::<f64>().ok().filter(|x| x.is_finite())
    }
    fn as_bias(&self) -> Option<f64> {
        Some(*self)
    }
}

/// Declares [`DecodeConfig`] with one list of its rules: the struct, the
/// names ([`DecodeConfig::KEYS`]), the kind of each and [`DecodeConfig::set`].
macro_rules! decode_rules {
    ($($(#[$doc:meta])* $name:ident: $ty:ty,)*) => {
        /// The decoding rules of a model (`config.json`'s `"decode"`
        /// object). Every rule is off by default; unknown keys are refused.
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct DecodeConfig {
            $($(#[$doc])* pub $name: $ty,)*
        }

        impl DecodeConfig {
            /// The rules' names, in declaration order.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($name)),*];

            /// The values rule `key` takes (`true|false` or `NUMBER`).
            pub fn kind(key: &str) -> Option<&'static str> {
                match key {
                    $(stringify!($name) => Some(<$ty as RuleValue>::KIND),)*
                    _ => None,
                }
            }

            /// Set rule `key` from its text `value` (`true` or `false` for
            /// switches, a finite number for logits). An unknown key or a
            /// value of the wrong kind is refused, naming the known keys.
            pub fn set(&mut self, key: &str, value: &str) -> Result<(), ModelError> {
                match key {
                    $(stringify!($name) => {
                        self.$name = <$ty as RuleValue>::parse_value(value).ok_or_else(|| {
                            ModelError::Config(format!(
                                "decode rule {key} takes {}, got {value:?}",
                                <$ty as RuleValue>::KIND
                            ))
                        })?;
                    })*
                    _ => {
                        return Err(ModelError::Config(format!(
                            "unknown decode rule {key:?}; the rules are: {}",
                            Self::KEYS.join(", ")
                        )))
                    }
                }
                Ok(())
            }

            /// Every logit is finite and within `-MAX_BIAS..=MAX_BIAS`.
            pub fn check(&self) -> Result<(), ModelError> {
                $(if let Some(b) = RuleValue::as_bias(&self.$name)
                    && !(b.is_finite() && b.abs() <= MAX_BIAS)
                {
                    return Err(ModelError::Config(format!(
                        "decode rule {} must be within -{MAX_BIAS}..{MAX_BIAS}, got {b}",
                        stringify!($name)
                    )));
                })*
                Ok(())
            }
        }
    };
}

decode_rules! {
    /// While decoding, a value piece copied right after another copied
    /// piece must come from the next query position.
    contiguous_copy: bool,
    /// While decoding, copies keep whole words: a value never starts with
    /// a copied word-piece continuation (`##...`), and after a copied piece
    /// whose next query piece continues the same word, that piece is the
    /// only copy allowed and the value cannot end there.
    whole_word_copy: bool,
    /// Word-overlap prior on choosing the first call's function: each tool
    /// gets this logit times (the distinct word pieces of at least three
    /// characters it shares with the query, in its name, description or
    /// parameter names, minus the most any tool shares). Refusing is left
    /// as it is. 0: off.
    overlap_bias: f64,
    /// Word-overlap prior on the function of every call after the first:
    /// counting, for each tool, the word pieces it shares with the request
    /// that no tool called so far shares, a tool loses this logit per
    /// piece fewer than the tool with the most. A request that asks for
    /// several things moves on to the tool for the part not yet answered.
    /// 0: off.
    later_overlap_bias: f64,
}

/// The largest logit a rule may add (in either direction).
pub const MAX_BIAS: f64 = 50.0;

/// Rules that existed once and were removed (validation kept the others):
/// a configuration that still names one, at the top level or in
/// `"decode"`, loads with a warning and decodes as if the rule were off;
/// [`DecodeConfig::set`] refuses them like any unknown key.
pub const REMOVED_KEYS: &[&str] = &[
    "refusal_bias",
    "extra_call_bias",
    "end_call_bias",
    "query_copies_only",
    "novel_repeat_calls",
    "thousands_separators",
    "required_first_params",
    "name_anchor_bias",
    "refusal_overlap_bias",
    "stop_rest_overlap_bias",
    "next_item_bias",
    "next_call_item_bias",
    "mentioned_param_bias",
    "capital_run_bias",
    "request_dates",
    "percent_fractions",
    "kind_word_bias",
    "no_leading_articles",
];

impl DecodeConfig {
    /// `KEY=VALUE` for every rule (`contiguous_copy=true|false, ...`), for
    /// help texts.
    pub fn keys_help() -> String {
        Self::KEYS
            .iter()
            .map(|k| format!("{k}={}", Self::kind(k).unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Set a rule from `KEY=VALUE` (see [`DecodeConfig::set`]).
    pub fn set_assignment(&mut self, assignment: &str) -> Result<(), ModelError> {
        let (key, value) = split_assignment(assignment)?;
        self.set(key, value)
    }
}

/// `KEY=VALUE` split at its first `=`, both sides trimmed.
pub fn split_assignment(assignment: &str) -> Result<(&str, &str), ModelError> {
    match assignment.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim(), v.trim())),
        _ => Err(ModelError::Config(format!(
            "expected KEY=VALUE, got {assignment:?}; the keys are: {}",
            DecodeConfig::KEYS.join(", ")
        ))),
    }
}

/// Configurations written before the `"decode"` object held its rules as
/// top-level keys: move those into `"decode"` (a key given in both places
/// is refused), so that such a model decodes as it did. Keys of removed
/// rules ([`REMOVED_KEYS`]), at the top level or in `"decode"`, are dropped
/// with a warning; other keys of rules that no longer exist stay where
/// they are and are ignored.
pub(crate) fn lift_flat_rules(cfg: &mut serde_json::Value) -> Result<(), ModelError> {
    let Some(obj) = cfg.as_object_mut() else {
        return Ok(());
    };
    drop_removed(obj, "");
    if let Some(decode) = obj.get_mut("decode").and_then(|d| d.as_object_mut()) {
        drop_removed(decode, "decode.");
    }
    let flat: Vec<(String, serde_json::Value)> = DecodeConfig::KEYS
        .iter()
        .filter_map(|k| obj.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    if flat.is_empty() {
        return Ok(());
    }
    let decode = obj
        .entry("decode")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    let Some(decode) = decode.as_object_mut() else {
        return Err(ModelError::Config("\"decode\" must be an object".into()));
    };
    for (k, v) in flat {
        if decode.contains_key(&k) {
            return Err(ModelError::Config(format!(
                "{k} is given both at the top level and in \"decode\""
            )));
        }
        decode.insert(k, v);
    }
    Ok(())
}

/// Take the keys of removed rules out of `obj`, warning about each
/// (`at`: where `obj` sits, for the message).
fn drop_removed(obj: &mut serde_json::Map<String, serde_json::Value>, at: &str) {
    for k in REMOVED_KEYS {
        if let Some(v) = obj.remove(*k) {
            tracing::warn!(
                "config.json: ignoring {at}{k} = {v}: the decoding rule {k} was removed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_every_rule_off() {
        let d = DecodeConfig::default();
        let v = serde_json::to_value(&d).expect("json");
        let obj = v.as_object().expect("object");
        assert_eq!(obj.len(), DecodeConfig::KEYS.len());
        for (k, x) in obj {
            assert!(
                x == &serde_json::json!(false) || x == &serde_json::json!(0.0),
                "{k} is {x}"
            );
        }
        let empty: DecodeConfig = serde_json::from_str("{}").expect("empty");
        assert_eq!(empty, d, "a missing key is off");
    }

    #[test]
    fn set_parses_switches_and_logits() {
        let mut d = DecodeConfig::default();
        d.set("contiguous_copy", "true").expect("bool");
        d.set("overlap_bias", "-2.5").expect("number");
        d.set_assignment("later_overlap_bias = 16")
            .expect("assignment");
        assert!(d.contiguous_copy);
        assert_eq!(d.overlap_bias, -2.5);
        assert_eq!(d.later_overlap_bias, 16.0);
        d.set("contiguous_copy", "false").expect("bool");
        assert!(!d.contiguous_copy);
        for (k, v) in [
            ("contiguous_copy", "1"),
            ("contiguous_copy", "yes"),
            ("overlap_bias", "true"),
            ("overlap_bias", "NaN"),
            ("overlap_bias", "inf"),
        ] {
            let e = d.set(k, v).expect_err(v).to_string();
            assert!(e.contains(k), "{e}");
        }
        assert_eq!(d.overlap_bias, -2.5, "a refused value changes nothing");
    }

    #[test]
    fn unknown_keys_name_the_known_ones() {
        let mut d = DecodeConfig::default();
        let e = d
            .set("copy_bias", "1")
            .expect_err("removed rule")
            .to_string();
        assert!(e.contains("copy_bias"), "{e}");
        for k in DecodeConfig::KEYS {
            assert!(e.contains(k), "{e} lacks {k}");
        }
        for k in REMOVED_KEYS {
            assert!(!DecodeConfig::KEYS.contains(k), "{k}");
            let e = d.set(k, "0").expect_err(k).to_string();
            assert!(e.contains("unknown decode rule"), "{e}");
        }
        assert!(d.set_assignment("overlap_bias").is_err());
        assert!(d.set_assignment("=1").is_err());
        let bad: Result<DecodeConfig, _> =
            serde_json::from_str(r#"{"overlap_bias": 1, "typo": 2}"#);
        assert!(bad.is_err(), "unknown keys in config.json are refused");
    }

    #[test]
    fn keys_match_the_serialised_fields() {
        let v = serde_json::to_value(DecodeConfig::default()).expect("json");
        let names: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut keys = DecodeConfig::KEYS.to_vec();
        let mut sorted = names.clone();
        keys.sort_unstable();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
        let help = DecodeConfig::keys_help();
        assert!(help.contains("contiguous_copy=true|false"), "{help}");
        assert!(help.contains("overlap_bias=NUMBER"), "{help}");
    }

    #[test]
    fn check_bounds_the_logits() {
        let mut d = DecodeConfig {
            later_overlap_bias: 50.0,
            ..Default::default()
        };
        d.check().expect("50 is allowed");
        d.later_overlap_bias = -50.5;
        let e = d.check().expect_err("too large").to_string();
        assert!(e.contains("later_overlap_bias"), "{e}");
        d.later_overlap_bias = f64::NAN;
        assert!(d.check().is_err());
    }

    #[test]
    fn flat_rules_of_older_configurations_move_into_decode() {
        let mut v = serde_json::json!({
            "hidden": 4, "overlap_bias": 2.5, "contiguous_copy": true, "copy_bias": 0.0
        });
        lift_flat_rules(&mut v).expect("lift");
        assert_eq!(
            v,
            serde_json::json!({
                "hidden": 4, "copy_bias": 0.0,
                "decode": {"overlap_bias": 2.5, "contiguous_copy": true}
            })
        );
        let mut both = serde_json::json!({"overlap_bias": 1.0, "decode": {"overlap_bias": 2.0}});
        assert!(lift_flat_rules(&mut both).is_err());
        let mut new = serde_json::json!({"decode": {"overlap_bias": 2.0}});
        let before = new.clone();
        lift_flat_rules(&mut new).expect("nothing to lift");
        assert_eq!(new, before);
    }

    #[test]
    fn removed_rules_are_dropped_wherever_they_are() {
        let mut v = serde_json::json!({
            "hidden": 4, "refusal_bias": 2.5, "overlap_bias": 1.0,
            "decode": {"kind_word_bias": 16.0, "request_dates": true, "contiguous_copy": true}
        });
        lift_flat_rules(&mut v).expect("lift");
        assert_eq!(
            v,
            serde_json::json!({
                "hidden": 4,
                "decode": {"contiguous_copy": true, "overlap_bias": 1.0}
            })
        );
        let decode: DecodeConfig = serde_json::from_value(v["decode"].clone()).expect("decode");
        assert!(decode.contiguous_copy);
        assert_eq!(decode.overlap_bias, 1.0);
    }
}
