//! The hand-set decoding rules ([`DecodeConfig`], the `"decode"` object of
//! `config.json`): biases added to the network's logits and constraints on
//! its choices while decoding, and rewrites of the decoded arguments after
//! it. Every rule is off by default (`false`, `0`), so a rule missing from
//! a configuration is off. Each is chosen on held-out validation data,
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
    /// Logit added to refusing (`STOP` before any call) while decoding;
    /// negative values make the model refuse less. 0: as trained.
    refusal_bias: f64,
    /// Logit added to `STOP` after the first call while decoding: positive
    /// values make further (parallel) calls rarer. 0: as trained.
    extra_call_bias: f64,
    /// Word-overlap prior on choosing the first call's function: each tool
    /// gets this logit times (the distinct word pieces of at least three
    /// characters it shares with the query, in its name, description or
    /// parameter names, minus the most any tool shares). Refusing is left
    /// as it is. 0: off.
    overlap_bias: f64,
    /// Logit added to `END_CALL` once every required parameter is given:
    /// positive values leave optional parameters out more often. 0: as
    /// trained.
    end_call_bias: f64,
    /// While decoding a value that is not an enum member, pieces are copied
    /// from the query only, never from the tools' text (a description's
    /// words are not argument values).
    query_copies_only: bool,
    /// After decoding, a further call of a function already called is kept
    /// only if it copies some query position that no earlier call of that
    /// function copied (a repeat must be about something new).
    novel_repeat_calls: bool,
    /// A number copied from the query keeps its thousands separators
    /// ("$12,000" gives 12000, not 12): right after copied digits that are
    /// followed in the query by `,` and a group of three digits (no spaces),
    /// the copy goes on through them. Not inside lists.
    thousands_separators: bool,
    /// A call's required parameters are all given before any optional one.
    /// The model tends to fill an optional parameter early with a value the
    /// query meant for a required one ("base 10, height 5" giving
    /// `unit: "10"`), which then leaves the required one a guess.
    required_first_params: bool,
    /// Logit added, at the first piece of a value that is not an enum
    /// member, to the query positions its parameter's name points at: the
    /// piece right after a query mention of one of the name's words
    /// (skipping "=", ":", "is", "of", ...), and for numbers also the number
    /// right before one ("3 passengers"). 0: off.
    name_anchor_bias: f64,
    /// Logit subtracted from refusing (at the first decision) per word
    /// piece the best-sharing tool shares with the request (the count
    /// `overlap_bias` uses): a request that names much of a tool is rarely
    /// one no tool fits. 0: off.
    refusal_overlap_bias: f64,
    /// Word-overlap prior on the function of every call after the first:
    /// counting, for each tool, the word pieces it shares with the request
    /// that no tool called so far shares, a tool loses this logit per
    /// piece fewer than the tool with the most. A request that asks for
    /// several things moves on to the tool for the part not yet answered.
    /// 0: off.
    later_overlap_bias: f64,
    /// Logit subtracted from stopping after a call per word piece (the
    /// most any tool has) that a tool shares with the request and no tool
    /// called so far does. 0: off.
    stop_rest_overlap_bias: f64,
    /// Lists read in order: when a copied array element is followed in
    /// the request by a list separator (`,` `;` "and" "or" `&` "plus") and
    /// an item of the same kind (a number after a number, a capitalised
    /// word after a capitalised word, a lower-case word after one), adding
    /// another element gains this logit, and the next element's first
    /// piece gains it at that item ("85, 90 and 88" reads as three
    /// elements, in that order). 0: off.
    next_item_bias: f64,
    /// The same reading between calls: logit subtracted from stopping when
    /// a value the last call copied is followed in the request by a list
    /// separator and an item of the same kind that no call has copied yet
    /// ("weather in Paris, London and Berlin" asks for three calls), and
    /// added to that item at the first piece of the same parameter in the
    /// next call of the function. 0: off.
    next_call_item_bias: f64,
    /// Optional parameters the request names: while a call chooses its
    /// next parameter (or ends), an optional parameter not given yet gains
    /// this logit when a word of its name (three letters or more, not a
    /// word of the function's name nor a general one such as "include",
    /// "max" or "type") is a word of the request, or shares its first five
    /// letters or more with one ("including human impact" names
    /// `include_human_impact`, "detailed" names `details`). 0: off.
    mentioned_param_bias: f64,
    /// Names are copied whole: in a text value that began with a
    /// capitalised word, at the end of a word, copying on into the next
    /// word gains this logit when it is capitalised too ("Santa Clara")
    /// and loses it when it is lower-case ("Los Angeles court"). 0: off.
    capital_run_bias: f64,
    /// Dates from the request: after decoding, a string argument that
    /// reads as a numeric date ("2023-04-15") takes its month and day, and
    /// its year when the request gives one, from a date the request writes
    /// ("April 25th", "25/04/2023"), and is written in the layout its
    /// parameter's description names ("MM-DD-YYYY"), else as the model
    /// wrote it (see [`crate::dates`]).
    request_dates: bool,
    /// Percentages as fractions: after decoding, a `number` argument equal
    /// to a number the request writes as a percentage ("5%", "5 percent")
    /// becomes its hundredth (0.05) when its parameter's description asks
    /// for a decimal or a fraction (see [`crate::percent`]).
    percent_fractions: bool,
    /// Logit subtracted, in a text value, from copying on into a query
    /// word written in lower case that is a word of the parameter's name
    /// ("New York court" for `court_location` stops before "court",
    /// "renewable energy" for `energy_type` before "energy"). 0: off.
    kind_word_bias: f64,
    /// A text value (or text array element) does not start by copying a
    /// lower-case "the", "a" or "an" from the query ("the neutron" reads
    /// "neutron"; "The Hague" keeps its capital).
    no_leading_articles: bool,
}

/// The largest logit a rule may add (in either direction).
pub const MAX_BIAS: f64 = 50.0;

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
/// is refused), so that such a model decodes as it did. Keys of rules that
/// no longer exist stay where they are and are ignored.
pub(crate) fn lift_flat_rules(cfg: &mut serde_json::Value) -> Result<(), ModelError> {
    let Some(obj) = cfg.as_object_mut() else {
        return Ok(());
    };
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
        d.set("refusal_bias", "-2.5").expect("number");
        d.set_assignment("kind_word_bias = 16").expect("assignment");
        assert!(d.contiguous_copy);
        assert_eq!(d.refusal_bias, -2.5);
        assert_eq!(d.kind_word_bias, 16.0);
        d.set("contiguous_copy", "false").expect("bool");
        assert!(!d.contiguous_copy);
        for (k, v) in [
            ("contiguous_copy", "1"),
            ("contiguous_copy", "yes"),
            ("refusal_bias", "true"),
            ("refusal_bias", "NaN"),
            ("refusal_bias", "inf"),
        ] {
            let e = d.set(k, v).expect_err(v).to_string();
            assert!(e.contains(k), "{e}");
        }
        assert_eq!(d.refusal_bias, -2.5, "a refused value changes nothing");
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
        assert!(d.set_assignment("refusal_bias").is_err());
        assert!(d.set_assignment("=1").is_err());
        let bad: Result<DecodeConfig, _> =
            serde_json::from_str(r#"{"refusal_bias": 1, "typo": 2}"#);
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
        assert!(help.contains("refusal_bias=NUMBER"), "{help}");
    }

    #[test]
    fn check_bounds_the_logits() {
        let mut d = DecodeConfig {
            next_item_bias: 50.0,
            ..Default::default()
        };
        d.check().expect("50 is allowed");
        d.next_item_bias = -50.5;
        let e = d.check().expect_err("too large").to_string();
        assert!(e.contains("next_item_bias"), "{e}");
        d.next_item_bias = f64::NAN;
        assert!(d.check().is_err());
    }

    #[test]
    fn flat_rules_of_older_configurations_move_into_decode() {
        let mut v = serde_json::json!({
            "hidden": 4, "refusal_bias": 2.5, "contiguous_copy": true, "copy_bias": 0.0
        });
        lift_flat_rules(&mut v).expect("lift");
        assert_eq!(
            v,
            serde_json::json!({
                "hidden": 4, "copy_bias": 0.0,
                "decode": {"refusal_bias": 2.5, "contiguous_copy": true}
            })
        );
        let mut both = serde_json::json!({"refusal_bias": 1.0, "decode": {"refusal_bias": 2.0}});
        assert!(lift_flat_rules(&mut both).is_err());
        let mut new = serde_json::json!({"decode": {"refusal_bias": 2.0}});
        let before = new.clone();
        lift_flat_rules(&mut new).expect("nothing to lift");
        assert_eq!(new, before);
    }
}
