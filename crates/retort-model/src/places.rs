//! Places in the layout a description asks for (`ModelConfig::place_format`).
//!
//! A parameter described as "the city and state, e.g. San Francisco, CA"
//! or "in the format of 'City, Country'" wants "Berkeley, CA", but the
//! model, which sees one word piece of each parameter's description,
//! copies the city alone: "Berkeley", and from "Sydney, Australia" it
//! copies "Sydney", stopping at the comma. After decoding, a string
//! argument with no comma whose description asks for such a layout is
//! completed: with the state or country the request writes right after
//! it, else from a small gazetteer (US cities of about 100,000 people or
//! more and the state capitals, with their states; large cities and
//! capitals elsewhere, with their countries; `data/` beside this crate's
//! sources). A call that would no longer validate is left as it was.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use retort_core::{Call, SchemaType, Tool};
use serde_json::Value;

/// Lines of a data file, without comments and blank lines, split at `|`.
fn rows(text: &'static str) -> impl Iterator<Item = Vec<&'static str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split('|').map(str::trim).collect())
}

/// Lower-cased key -> value, the first row winning.
fn table(text: &'static str) -> HashMap<String, (&'static str, &'static str)> {
    let mut m = HashMap::new();
    for r in rows(text) {
        if let [city, region] = r.as_slice() {
            m.entry(city.to_lowercase()).or_insert((*city, *region));
        }
    }
    m
}

static US_CITIES: LazyLock<HashMap<String, (&str, &str)>> =
    LazyLock::new(|| table(include_str!("../data/us_cities.txt")));
static WORLD_CITIES: LazyLock<HashMap<String, (&str, &str)>> =
    LazyLock::new(|| table(include_str!("../data/world_cities.txt")));
/// State abbreviations and names, and country names, as they may follow
/// a city in a request.
static STATES: LazyLock<Vec<&str>> = LazyLock::new(|| {
    rows(include_str!("../data/states.txt"))
        .flat_map(|r| r.into_iter().take(2))
        .collect()
});
static COUNTRIES: LazyLock<Vec<&str>> = LazyLock::new(|| {
    rows(include_str!("../data/countries.txt"))
        .filter_map(|r| r.first().copied())
        .collect()
});

static STATE_LAYOUT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"\bCity, State\b|(?i:\bcity and state\b|\bformat(?:ted)?\s+(?:of\s+|as\s+|like\s+)?'?city,\s*state\b)|(?:e\.g\.,?|such as|like|example:?)\s*'?[A-Z][a-z]+(?: [A-Z][a-z]+)*, [A-Z]{2}\b",
    )
    .ok()
});
static COUNTRY_LAYOUT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"\b(?:City|Location), Country\b|(?i:\bcity and country\b|\bformat(?:ted)?\s+(?:of\s+|as\s+|like\s+)?'?(?:city|location),\s*country\b)",
    )
    .ok()
});

/// Which regions a description asks to follow a place: (state, country).
pub fn layout(description: &str) -> (bool, bool) {
    let m = |r: &LazyLock<Option<Regex>>| r.as_ref().is_some_and(|r| r.is_match(description));
    (m(&STATE_LAYOUT), m(&COUNTRY_LAYOUT))
}

/// The state or country the request writes right after `value` ("Sydney,
/// Australia" -> "Australia"), as written; the longest that fits.
pub fn region_after(query: &str, value: &str) -> Option<String> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    let re = Regex::new(&format!(r"(?i)\b{}\s*,\s*", regex::escape(v))).ok()?;
    for m in re.find_iter(query) {
        let rest = query.get(m.end()..)?;
        let fits = |name: &str| {
            let n = name.len();
            rest.get(..n).is_some_and(|head| {
                // Abbreviations as written ("CA", not "ca"); names in any case.
                let same = if n <= 3 {
                    head == name
                } else {
                    head.eq_ignore_ascii_case(name)
                };
                same && rest
                    .get(n..)
                    .is_some_and(|t| !t.starts_with(|c: char| c.is_alphanumeric()))
            })
        };
        let best = STATES
            .iter()
            .chain(COUNTRIES.iter())
            .copied()
            .filter(|n| fits(n))
            .max_by_key(|n| n.len());
        if let Some(name) = best {
            return rest.get(..name.len()).map(str::to_string);
        }
    }
    None
}

/// `value` completed for a description that asks for `state` and/or
/// `country` after a place: from the request, else from the gazetteer.
pub fn complete(value: &str, query: &str, state: bool, country: bool) -> Option<String> {
    if !(state || country) || value.contains(',') || value.trim().is_empty() {
        return None;
    }
    if let Some(region) = region_after(query, value) {
        return Some(format!("{}, {region}", value.trim()));
    }
    let key = value.trim().to_lowercase();
    if state && let Some((city, st)) = US_CITIES.get(&key) {
        return Some(format!("{city}, {st}"));
    }
    if country {
        if let Some((city, c)) = WORLD_CITIES.get(&key) {
            return Some(format!("{city}, {c}"));
        }
        if let Some((city, _)) = US_CITIES.get(&key) {
            return Some(format!("{city}, USA"));
        }
    }
    None
}

/// Complete the place arguments of `calls` (see the module documentation).
pub fn places_in_layout(calls: &mut [Call], query: &str, tools: &[Tool]) {
    crate::rewrite::rewrite_arguments(calls, tools, |schema, v| {
        let Value::String(v) = v else { return None };
        if schema.ty != SchemaType::String || schema.enum_values.is_some() {
            return None;
        }
        let (state, country) = schema
            .description
            .as_deref()
            .map(layout)
            .unwrap_or_default();
        complete(v, query, state, country).map(Value::String)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A call of `eat` with these arguments.
    fn call(args: Value) -> Call {
        Call {
            name: "eat".into(),
            arguments: args.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn the_tables_load() {
        assert!(US_CITIES.len() > 250, "{}", US_CITIES.len());
        assert!(WORLD_CITIES.len() > 150, "{}", WORLD_CITIES.len());
        assert_eq!(US_CITIES.get("portland"), Some(&("Portland", "OR")));
        assert_eq!(US_CITIES.get("columbus"), Some(&("Columbus", "OH")));
        assert!(STATES.contains(&"CA") && STATES.contains(&"California"));
        assert!(COUNTRIES.contains(&"France"));
    }

    #[test]
    fn layouts_from_descriptions() {
        assert_eq!(
            layout("The city and state, e.g. San Francisco, CA"),
            (true, false)
        );
        assert_eq!(layout("in the format of 'City, State'"), (true, false));
        assert_eq!(
            layout("in the format of 'City, State' or 'City, Country', such as 'Berkeley, CA'"),
            (true, true)
        );
        assert_eq!(layout("formatted as 'city, country'"), (false, true));
        // A loose list of what a location may be is no layout.
        assert_eq!(
            layout("The location (e.g., city, state, country)"),
            (false, false)
        );
        assert_eq!(layout("The city name"), (false, false));
    }

    #[test]
    fn completes_from_the_request_then_the_gazetteer() {
        let q =
            "Find a hotel in Sydney, Australia, then dinner in Austin, TX and lunch in berkeley";
        assert_eq!(region_after(q, "Sydney").as_deref(), Some("Australia"));
        assert_eq!(region_after(q, "austin").as_deref(), Some("TX"));
        assert_eq!(region_after("in Paris, then Rome", "Paris"), None);
        // "ca" in lower case is no state.
        assert_eq!(region_after("in Fresno, ca va", "Fresno"), None);
        assert_eq!(
            complete("Sydney", q, true, false).as_deref(),
            Some("Sydney, Australia")
        );
        assert_eq!(
            complete("berkeley", q, true, false).as_deref(),
            Some("Berkeley, CA")
        );
        assert_eq!(
            complete("Paris", q, true, true).as_deref(),
            Some("Paris, France")
        );
        assert_eq!(complete("Paris", q, true, false), None);
        assert_eq!(
            complete("Chicago", q, false, true).as_deref(),
            Some("Chicago, USA")
        );
        assert_eq!(complete("Berkeley, CA", q, true, false), None);
        assert_eq!(complete("Gotham", q, true, true), None);
        assert_eq!(complete("Berkeley", q, false, false), None);
    }

    #[test]
    fn only_described_strings_and_valid_calls_change() {
        let tools = Tool::parse_many(
            &json!([{"name": "eat", "description": "d", "parameters": {"type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city and state, e.g. Oakland, CA"},
                "home": {"type": "string", "description": "Home town"},
                "short": {"type": "string", "maxLength": 8,
                          "description": "in the format of 'City, State'"}
            }}}]),
            retort_core::ToolFormat::Auto,
        )
        .expect("tools");
        let mut calls = vec![call(json!({"city": "Berkeley", "home": "Denver"}))];
        places_in_layout(&mut calls, "eat in Berkeley, I live in Denver", &tools);
        assert_eq!(calls[0].arguments["city"], json!("Berkeley, CA"));
        assert_eq!(calls[0].arguments["home"], json!("Denver"));
        // "Denver, CO" is longer than 8: the call stays as it was.
        let mut calls = vec![call(json!({"city": "Berkeley", "short": "Denver"}))];
        places_in_layout(&mut calls, "Berkeley, Denver", &tools);
        assert_eq!(calls[0].arguments["city"], json!("Berkeley"));
    }

    proptest! {
        #[test]
        fn never_panics(q in "\\PC{0,80}", v in "\\PC{0,20}") {
            let _ = region_after(&q, &v);
            let _ = complete(&v, &q, true, true);
            let _ = layout(&q);
        }
    }
}
