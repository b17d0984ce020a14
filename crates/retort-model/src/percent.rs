//! Percentages as fractions (`DecodeConfig::percent_fractions`).
//!
//! A request says "an interest rate of 5%"; a parameter described as "the
//! rate as a decimal" wants 0.05. The teachers' calls follow the
//! description (in the training data, 240 of 262 such arguments are
//! fractions), but the model never sees it: descriptions are cut to a
//! word piece or so in the input. So it copies 5. After decoding, a
//! `number` argument that equals a number the request writes right before
//! `%` or "percent" is divided by 100 when its parameter's description
//! asks for a decimal or a fraction. A call that would no longer validate
//! is left as it was.

use std::sync::LazyLock;

use regex::Regex;
use retort_core::{Call, SchemaType, Tool};
use serde_json::Value;

static PERCENT: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)(?:^|[^\w.])(\d+(?:\.\d+)?)\s?(?:%|percent\b)").ok());
static WANTS_FRACTION: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)\bdecimal\b|\bfraction\b|between 0(?:\.0)? and 1\b|\b0 to 1\b|\b0\.\d+\b").ok()
});
static DECIMAL_PLACES: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)\bdecimal\s+(?:places|digits|points?)\b").ok());

/// Does a description ask for a fraction ("as a decimal", "in decimal
/// form", "a fraction", "between 0 and 1", "e.g. 0.05")? "Decimal
/// places" does not.
pub fn wants_fraction(description: &str) -> bool {
    let hit = WANTS_FRACTION
        .as_ref()
        .is_some_and(|r| r.is_match(description));
    let places = DECIMAL_PLACES
        .as_ref()
        .is_some_and(|r| r.is_match(description));
    hit && !places
}

/// The numbers a request writes as percentages, as written ("5", "4.5").
pub fn percentages(query: &str) -> Vec<&str> {
    let Some(re) = PERCENT.as_ref() else {
        return Vec::new();
    };
    re.captures_iter(query)
        .filter_map(|c| c.get(1).map(|m| m.as_str()))
        .collect()
}

/// "4.5" -> 0.045, shifting the decimal point in the text so that the
/// fraction is the shortest decimal (4.5 / 100 in floating point is not).
pub fn shifted(written: &str) -> Option<f64> {
    let (int, frac) = written.split_once('.').unwrap_or((written, ""));
    let digits = format!("{int:0>3}{frac}");
    let (a, b) = digits.split_at(digits.len() - 2 - frac.len());
    format!("{a}.{b}").parse().ok()
}

/// Divide by 100 the percentages of `calls` whose parameters ask for a
/// fraction (see the module documentation).
pub fn percents_as_fractions(calls: &mut [Call], query: &str, tools: &[Tool]) {
    let written = percentages(query);
    if written.is_empty() {
        return;
    }
    crate::rewrite::rewrite_arguments(calls, tools, |schema, v| {
        if schema.ty != SchemaType::Number
            || schema.enum_values.is_some()
            || !schema.description.as_deref().is_some_and(wants_fraction)
        {
            return None;
        }
        let v = v.as_f64()?;
        let f = written
            .iter()
            .find(|w| w.parse::<f64>().is_ok_and(|x| x == v && x != 0.0))
            .and_then(|w| shifted(w))?;
        serde_json::Number::from_f64(f).map(Value::Number)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A call of `loan` with these arguments.
    fn call(args: Value) -> Call {
        Call {
            name: "loan".into(),
            arguments: args.as_object().cloned().unwrap_or_default(),
        }
    }

    fn tool() -> Tool {
        Tool::parse_many(
            &json!([{"name": "loan", "description": "d", "parameters": {"type": "object",
            "properties": {
                "rate": {"type": "number", "description": "Annual rate as a decimal, e.g. 0.05"},
                "tax": {"type": "number", "description": "Tax in percent"},
                "share": {"type": "number", "description": "Share, a fraction between 0 and 1",
                          "maximum": 0.5},
                "years": {"type": "integer", "description": "Years, as a decimal"}
            }}}]),
            retort_core::ToolFormat::Auto,
        )
        .expect("tool")
        .remove(0)
    }

    #[test]
    fn descriptions_that_want_fractions() {
        assert!(wants_fraction("The annual interest rate as a decimal."));
        assert!(wants_fraction("in decimal form. Example, 5% is 0.05"));
        assert!(wants_fraction("A fraction of the total"));
        assert!(wants_fraction("between 0 and 1"));
        assert!(!wants_fraction("The annual interest rate."));
        assert!(!wants_fraction("Round to 2 decimal places"));
        assert!(!wants_fraction("Discount in percent (0-100)"));
    }

    #[test]
    fn percent_texts_and_shifts() {
        assert_eq!(
            percentages("5% now, 4.5 percent later, 12 % and v1.5%? no: 2.0.1%"),
            vec!["5", "4.5", "12"]
        );
        assert_eq!(shifted("5"), Some(0.05));
        assert_eq!(shifted("4.5"), Some(0.045));
        assert_eq!(shifted("8.2"), Some(0.082));
        assert_eq!(shifted("150"), Some(1.5));
        assert_eq!(shifted("0.5"), Some(0.005));
    }

    #[test]
    fn only_described_numbers_that_the_request_writes_as_percentages() {
        let t = tool();
        let mut calls = vec![call(
            json!({"rate": 8.2, "tax": 7, "share": 30, "years": 5}),
        )];
        percents_as_fractions(
            &mut calls,
            "a rate of 8.2%, tax 7%, 30% share, 5% for 5 years",
            std::slice::from_ref(&t),
        );
        let a = &calls[0].arguments;
        // Rewritten: numbers described as a decimal or a fraction. Kept: a
        // "percent" description and an integer.
        assert_eq!(a["rate"], json!(0.082));
        assert_eq!(a["tax"], json!(7));
        assert_eq!(a["years"], json!(5));
        assert_eq!(a["share"], json!(0.3));
        // 80% -> 0.8 is over `share`'s maximum: the call is left as it was.
        let mut calls = vec![call(json!({"rate": 5, "share": 80}))];
        percents_as_fractions(&mut calls, "5% and 80%", std::slice::from_ref(&t));
        assert_eq!(calls[0].arguments["rate"], json!(5));
        // Not written as a percentage: kept.
        let mut calls = vec![call(json!({"rate": 5}))];
        percents_as_fractions(&mut calls, "5 loans at 3%", std::slice::from_ref(&t));
        assert_eq!(calls[0].arguments["rate"], json!(5));
    }

    proptest! {
        #[test]
        fn shifting_divides_by_a_hundred(int in 0u32..100_000, frac in "[0-9]{0,4}") {
            let w = if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") };
            let x: f64 = w.parse().expect("number");
            let f = shifted(&w).expect("shifts");
            prop_assert!((f - x / 100.0).abs() <= 1e-12 * x.max(1.0));
        }

        #[test]
        fn never_panics(q in "\\PC{0,80}") {
            let _ = percentages(&q);
            let _ = wants_fraction(&q);
        }
    }
}
