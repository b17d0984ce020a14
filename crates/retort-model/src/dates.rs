//! Dates taken from the request (`DecodeConfig::request_dates`).
//!
//! The decoder writes a date its own way: it copies "March 8th" from the
//! request, or it generates "2023-04-15" from word pieces, and generated
//! digits are often not the request's ("April 25th" read as 2023-04-15).
//! The parameter's description may also ask for a layout the model never
//! sees (descriptions are cut to a few word pieces in the input), such as
//! "MM-DD-YYYY". After decoding, each string argument that reads as a
//! numeric date takes its day and month (and its year, when the request
//! gives one) from a date the request writes, in the layout the
//! parameter's description names, else in the layout the model wrote. A
//! rewritten call is kept only if it still validates against its tool.

use std::sync::LazyLock;

use regex::Regex;
use retort_core::{Call, Schema, SchemaType, Tool};
use serde_json::Value;

/// A calendar date written in the request, at byte `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mention {
    pub start: usize,
    pub year: Option<i32>,
    pub month: u32,
    pub day: u32,
}

/// The order of a numeric date's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// 2023-04-25
    Ymd,
    /// 04-25-2023
    Mdy,
    /// 25-04-2023
    Dmy,
}

/// How a numeric date is written: field order and separator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub order: Order,
    pub sep: char,
}

/// A string value that reads as a numeric date, with whatever followed it
/// (a time: "T20:00:00", " 14:30") kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateValue {
    pub layout: Layout,
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub rest: String,
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// The month a word names: its full name, or its first three letters
/// (and "sept"), with or without a trailing dot.
fn month_of(word: &str) -> Option<u32> {
    let w = word.trim_end_matches('.').to_lowercase();
    if w.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|m| {
            *m == w || (w.len() <= 4 && m.starts_with(&w) && (w.len() == 3 || w == "sept"))
        })
        .map(|i| i as u32 + 1)
}

const MONTH_RE: &str = r"(january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?";
const DAY_RE: &str = r"(\d{1,2})(?:st|nd|rd|th)?";

fn re(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

static YMD: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"\b(\d{4})([-/.])(\d{1,2})([-/.])(\d{1,2})\b"));
static XYY: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"\b(\d{1,2})([-/.])(\d{1,2})([-/.])(\d{4})\b"));
static MONTH_DAY: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(&format!(
        r"(?i)\b{MONTH_RE}\s+{DAY_RE}\b(?:,?\s+(\d{{4}})\b)?"
    ))
});
static DAY_MONTH: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(&format!(
        r"(?i)\b{DAY_RE}\s+(?:of\s+)?{MONTH_RE}(?:,?\s+(\d{{4}})\b)?"
    ))
});
static YEAR_MONTH_DAY: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(&format!(r"(?i)\b(\d{{4}})\s+{MONTH_RE}\s+{DAY_RE}\b")));
static VALUE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"^(?:(\d{4})([-/.])(\d{1,2})([-/.])(\d{1,2})|(\d{1,2})([-/.])(\d{1,2})([-/.])(\d{4}))([T ].*)?$",
    )
});
static DESCRIBED: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"(?i)\b(yyyy([-/.])mm([-/.])dd|mm([-/.])dd([-/.])yyyy|dd([-/.])mm([-/.])yyyy)\b|%Y([-/.])%m([-/.])%d|%m([-/.])%d([-/.])%Y|%d([-/.])%m([-/.])%Y",
    )
});

fn num<T: std::str::FromStr>(c: Option<regex::Match<'_>>) -> Option<T> {
    c.and_then(|m| m.as_str().parse().ok())
}

fn valid(month: u32, day: u32) -> bool {
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// The layout a description names ("in the format YYYY-MM-DD",
/// "mm/dd/yyyy", "%d.%m.%Y"), if any.
pub fn described_layout(description: &str) -> Option<Layout> {
    let c = DESCRIBED.as_ref()?.captures(description)?;
    let sep = |i: usize| c.get(i).and_then(|m| m.as_str().chars().next());
    let (order, s) = if c.get(2).is_some() {
        (Order::Ymd, sep(2))
    } else if c.get(4).is_some() {
        (Order::Mdy, sep(4))
    } else if c.get(6).is_some() {
        (Order::Dmy, sep(6))
    } else if c.get(8).is_some() {
        (Order::Ymd, sep(8))
    } else if c.get(10).is_some() {
        (Order::Mdy, sep(10))
    } else {
        (Order::Dmy, sep(12))
    };
    Some(Layout { order, sep: s? })
}

/// The dates a request writes, in the order they appear: numeric ones
/// (2023-04-25, 04/25/2023, 25.04.2023; two numbers of 12 or less read
/// month first unless `day_first`) and ones that name the month ("April
/// 25th", "Apr. 25, 2023", "the 25th of April 2023", "2023 April 25").
pub fn mentions(query: &str, day_first: bool) -> Vec<Mention> {
    let mut out: Vec<Mention> = Vec::new();
    // Byte spans taken: a date read by one form is not read again by a
    // shorter one ("April 4" inside "2023 April 4").
    let mut taken: Vec<(usize, usize)> = Vec::new();
    let mut push = |m: regex::Match<'_>, year: Option<i32>, month: u32, day: u32| {
        let (a, b) = (m.start(), m.end());
        if valid(month, day) && !taken.iter().any(|&(s, e)| a < e && s < b) {
            taken.push((a, b));
            out.push(Mention {
                start: a,
                year,
                month,
                day,
            });
        }
    };
    if let Some(re) = YMD.as_ref() {
        for c in re.captures_iter(query) {
            // The same separator twice: "2023-04-25", not "2023-04/25".
            if c.get(2).map(|m| m.as_str()) != c.get(4).map(|m| m.as_str()) {
                continue;
            }
            if let (Some(m), Some(y), Some(mo), Some(d)) =
                (c.get(0), num(c.get(1)), num(c.get(3)), num(c.get(5)))
            {
                push(m, Some(y), mo, d);
            }
        }
    }
    if let Some(re) = XYY.as_ref() {
        for c in re.captures_iter(query) {
            if c.get(2).map(|m| m.as_str()) != c.get(4).map(|m| m.as_str()) {
                continue;
            }
            if let (Some(m), Some(a), Some(b), Some(y)) = (
                c.get(0),
                num::<u32>(c.get(1)),
                num::<u32>(c.get(3)),
                num(c.get(5)),
            ) {
                let (mo, d) = if a > 12 || (day_first && b <= 12) {
                    (b, a)
                } else {
                    (a, b)
                };
                push(m, Some(y), mo, d);
            }
        }
    }
    if let Some(re) = YEAR_MONTH_DAY.as_ref() {
        for c in re.captures_iter(query) {
            if let (Some(m), Some(y), Some(mo), Some(d)) = (
                c.get(0),
                num(c.get(1)),
                c.get(2).and_then(|w| month_of(w.as_str())),
                num(c.get(3)),
            ) {
                push(m, Some(y), mo, d);
            }
        }
    }
    if let Some(re) = MONTH_DAY.as_ref() {
        for c in re.captures_iter(query) {
            if let (Some(m), Some(mo), Some(d)) = (
                c.get(0),
                c.get(1).and_then(|w| month_of(w.as_str())),
                num(c.get(2)),
            ) {
                // "may 5 people" is not a date: a lower-case "may" needs
                // a year or an ordinal day.
                let word = c.get(1).map(|w| w.as_str()).unwrap_or("");
                let ordinal = m
                    .as_str()
                    .chars()
                    .filter(|x| x.is_ascii_alphabetic())
                    .count()
                    > word.len();
                if word == "may" && c.get(3).is_none() && !ordinal {
                    continue;
                }
                push(m, num(c.get(3)), mo, d);
            }
        }
    }
    if let Some(re) = DAY_MONTH.as_ref() {
        for c in re.captures_iter(query) {
            if let (Some(m), Some(d), Some(mo)) = (
                c.get(0),
                num(c.get(1)),
                c.get(2).and_then(|w| month_of(w.as_str())),
            ) {
                let word = c.get(2).map(|w| w.as_str()).unwrap_or("");
                if word == "may" && c.get(3).is_none() {
                    continue;
                }
                push(m, num(c.get(3)), mo, d);
            }
        }
    }
    out.sort_by_key(|m| m.start);
    // "from April 4, 2023 to April 8": a date without a year takes the
    // year of the nearest one before it that has one.
    let mut year = None;
    for m in &mut out {
        match m.year {
            Some(y) => year = Some(y),
            None => m.year = year,
        }
    }
    out
}

/// A value that reads as a numeric date: "2023-04-25", "04/25/2023",
/// "2023-11-01T20:00:00". Two numbers of 12 or less before a year read
/// month first unless `day_first`.
pub fn parse_value(v: &str, day_first: bool) -> Option<DateValue> {
    let c = VALUE.as_ref()?.captures(v)?;
    let rest = c
        .get(11)
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    if c.get(1).is_some() {
        if c.get(2)?.as_str() != c.get(4)?.as_str() {
            return None;
        }
        let (year, month, day) = (num(c.get(1))?, num(c.get(3))?, num(c.get(5))?);
        let sep = c.get(2)?.as_str().chars().next()?;
        return valid(month, day).then_some(DateValue {
            layout: Layout {
                order: Order::Ymd,
                sep,
            },
            year,
            month,
            day,
            rest,
        });
    }
    if c.get(7)?.as_str() != c.get(9)?.as_str() {
        return None;
    }
    let (a, b, year): (u32, u32, i32) = (num(c.get(6))?, num(c.get(8))?, num(c.get(10))?);
    let sep = c.get(7)?.as_str().chars().next()?;
    let day_first = a > 12 || (day_first && b <= 12);
    let (order, month, day) = if day_first {
        (Order::Dmy, b, a)
    } else {
        (Order::Mdy, a, b)
    };
    valid(month, day).then_some(DateValue {
        layout: Layout { order, sep },
        year,
        month,
        day,
        rest,
    })
}

/// Write a date in a layout (two-digit month and day, four-digit year).
pub fn format(layout: Layout, year: i32, month: u32, day: u32, rest: &str) -> String {
    let s = layout.sep;
    match layout.order {
        Order::Ymd => format!("{year:04}{s}{month:02}{s}{day:02}{rest}"),
        Order::Mdy => format!("{month:02}{s}{day:02}{s}{year:04}{rest}"),
        Order::Dmy => format!("{day:02}{s}{month:02}{s}{year:04}{rest}"),
    }
}

/// The date a value should take, among the request's dates not taken by
/// an earlier argument (all of them once every one is taken): the one
/// that agrees with the value on year, month and day, else the first that
/// agrees on the month, else on the year, else the first. The model's
/// digits are often its own (an "April 25th" it wrote as 2023-04-15), but
/// its month mostly comes from the request. `None` when the request
/// writes no date.
fn pick(value: &DateValue, mentions: &[Mention], used: &[usize]) -> Option<usize> {
    let free: Vec<usize> = (0..mentions.len()).filter(|i| !used.contains(i)).collect();
    let pool = if free.is_empty() {
        (0..mentions.len()).collect()
    } else {
        free
    };
    let score = |m: &Mention| {
        let (y, mo, d) = (
            m.year == Some(value.year),
            m.month == value.month,
            m.day == value.day,
        );
        (y && mo && d, mo, y)
    };
    // The first of the best: `max_by_key` keeps the last of equals.
    pool.into_iter().rev().max_by_key(|&i| score(&mentions[i]))
}

/// Rewrite the date arguments of `calls` from the dates `query` writes and
/// the layouts their parameters' descriptions name (see the module
/// documentation). Calls are visited in order, and each call's arguments
/// in its tool's declaration order, so "from ... to ..." fills start
/// before end. A call that would no longer validate is left as it was.
pub fn dates_from_request(calls: &mut [Call], query: &str, tools: &[Tool]) {
    let mut found: Option<Vec<Mention>> = None;
    // A date an argument took stays taken, its call rewritten or not.
    let mut used: Vec<usize> = Vec::new();
    crate::rewrite::rewrite_arguments(calls, tools, |schema, v| {
        let Value::String(v) = v else { return None };
        if !text_schema(schema) {
            return None;
        }
        let described = schema.description.as_deref().and_then(described_layout);
        let day_first = described.is_some_and(|l| l.order == Order::Dmy);
        let dv = parse_value(v, day_first)?;
        let ms = found.get_or_insert_with(|| mentions(query, day_first));
        let (year, month, day) = match pick(&dv, ms, &used) {
            Some(i) => {
                used.push(i);
                let m = ms[i];
                (m.year.unwrap_or(dv.year), m.month, m.day)
            }
            None => (dv.year, dv.month, dv.day),
        };
        let layout = described.unwrap_or(dv.layout);
        Some(Value::String(format(layout, year, month, day, &dv.rest)))
    });
}

/// A plain string parameter (not an enum: its members are the only
/// values).
fn text_schema(s: &Schema) -> bool {
    s.ty == SchemaType::String && s.enum_values.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn tool(params: Value) -> Tool {
        Tool::parse_many(
            &json!([{"name": "f", "description": "d", "parameters":
                {"type": "object", "properties": params}}]),
            retort_core::ToolFormat::Auto,
        )
        .expect("tool")
        .remove(0)
    }

    fn call(args: Value) -> Call {
        Call {
            name: "f".into(),
            arguments: args.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn request_dates_in_every_form() {
        let q = "Fly on April 25th, 2023, back on the 3rd of May and call 2023/05/09 or 12.06.2024; 2023 April 4";
        let m = mentions(q, false);
        let got: Vec<_> = m.iter().map(|m| (m.year, m.month, m.day)).collect();
        assert_eq!(
            got,
            vec![
                (Some(2023), 4, 25),
                // The year of the date before it.
                (Some(2023), 5, 3),
                (Some(2023), 5, 9),
                (Some(2024), 12, 6),
                (Some(2023), 4, 4),
            ]
        );
        // Day first when the description says so.
        assert_eq!(mentions("on 12.06.2024", true)[0].month, 6);
        // A day above 12 decides by itself.
        assert_eq!(mentions("on 25/04/2023", false)[0].month, 4);
        // Not dates.
        assert!(mentions("we may 5 people take, version 1.2.3, 99/99/2023", false).is_empty());
        assert!(mentions("Call at 10:30 in March", false).is_empty());
    }

    #[test]
    fn values_and_layouts() {
        let v = parse_value("2023-11-01T20:00:00", false).expect("date");
        assert_eq!(
            (v.year, v.month, v.day, v.rest.as_str()),
            (2023, 11, 1, "T20:00:00")
        );
        let v = parse_value("04/25/2023", false).expect("date");
        assert_eq!(v.layout.order, Order::Mdy);
        assert_eq!(
            parse_value("25-04-2023", false).map(|v| v.layout.order),
            Some(Order::Dmy)
        );
        assert!(parse_value("2023-04/25", false).is_none());
        assert!(parse_value("April 25", false).is_none());
        assert!(parse_value("2023-13-01", false).is_none());
        let l = described_layout("The date, in the format of MM-DD-YYYY.").expect("layout");
        assert_eq!((l.order, l.sep), (Order::Mdy, '-'));
        let l = described_layout("as %d/%m/%Y").expect("layout");
        assert_eq!((l.order, l.sep), (Order::Dmy, '/'));
        assert!(described_layout("The start date").is_none());
        assert_eq!(format(l, 2023, 4, 5, ""), "05/04/2023");
    }

    #[test]
    fn generated_dates_take_the_requests_day_and_the_described_layout() {
        let t = tool(json!({
            "start_date": {"type": "string", "description": "Start, YYYY-MM-DD"},
            "end_date": {"type": "string", "description": "End, format MM/DD/YYYY"},
            "note": {"type": "string"},
            "kind": {"type": "string", "enum": ["2023-01-01"]}
        }));
        let q = "the sales report from February 27, 2015, to December 14, 2002";
        // The model wrote its own digits, end first.
        let mut calls = vec![call(json!({
            "end_date": "2015-12-31", "start_date": "2015-01-01", "note": "report",
            "kind": "2023-01-01"
        }))];
        dates_from_request(&mut calls, q, std::slice::from_ref(&t));
        let a = &calls[0].arguments;
        assert_eq!(a["start_date"], json!("2015-02-27"));
        assert_eq!(a["end_date"], json!("12/14/2002"));
        assert_eq!(a["note"], json!("report"));
        assert_eq!(a["kind"], json!("2023-01-01"));
        // No year in the request: the model's year stays; a time stays.
        let t2 = tool(json!({"when": {"type": "string"}}));
        let mut calls = vec![call(json!({"when": "2023-04-15 10:00"}))];
        dates_from_request(
            &mut calls,
            "forecast for April 22nd please",
            std::slice::from_ref(&t2),
        );
        assert_eq!(calls[0].arguments["when"], json!("2023-04-22 10:00"));
        // No date in the request: only the described layout applies.
        let t3 = tool(json!({"d": {"type": "string", "description": "mm-dd-yyyy"}}));
        let mut calls = vec![call(json!({"d": "2022/08/16"}))];
        dates_from_request(&mut calls, "air quality in London", &[t3]);
        assert_eq!(calls[0].arguments["d"], json!("08-16-2022"));
        // Digits of the model's own: the dates go in the request's order,
        // and a date without a year takes the year before it.
        let t4 = tool(json!({
            "from_date": {"type": "string"}, "to_date": {"type": "string"}
        }));
        let mut calls = vec![call(
            json!({"from_date": "2022-06-20", "to_date": "2022-07-10"}),
        )];
        dates_from_request(&mut calls, "a room from July 10, 2023 to July 20", &[t4]);
        assert_eq!(calls[0].arguments["from_date"], json!("2023-07-10"));
        assert_eq!(calls[0].arguments["to_date"], json!("2023-07-20"));
        // Two calls take two dates, in order.
        let mut calls = vec![
            call(json!({"when": "2023-03-01"})),
            call(json!({"when": "2023-03-01"})),
        ];
        dates_from_request(&mut calls, "weather on March 3 and March 5", &[t2]);
        assert_eq!(calls[0].arguments["when"], json!("2023-03-03"));
        assert_eq!(calls[1].arguments["when"], json!("2023-03-05"));
    }

    #[test]
    fn a_rewrite_that_breaks_the_schema_is_not_kept() {
        let t = tool(json!({"d": {"type": "string", "maxLength": 9}}));
        // Too long after rewriting? "2023-4-5" (8) -> "2023-04-05" (10).
        let mut calls = vec![call(json!({"d": "2023-4-5"}))];
        dates_from_request(&mut calls, "on April 5", &[t]);
        assert_eq!(calls[0].arguments["d"], json!("2023-4-5"));
    }

    proptest! {
        /// Any text: no panic, and every mention is a real calendar day.
        #[test]
        fn mentions_never_panic(q in "\\PC{0,120}") {
            for m in mentions(&q, false) {
                prop_assert!(valid(m.month, m.day));
                prop_assert!(q.is_char_boundary(m.start));
            }
            let _ = parse_value(&q, true);
            let _ = described_layout(&q);
        }

        /// A date written in any layout reads back as the same date.
        #[test]
        fn format_then_parse(y in 1000i32..9999, mo in 1u32..=12, d in 1u32..=31, o in 0usize..3, s in 0usize..3) {
            let order = [Order::Ymd, Order::Mdy, Order::Dmy][o];
            let sep = ['-', '/', '.'][s];
            let text = format(Layout { order, sep }, y, mo, d, "");
            let v = parse_value(&text, order == Order::Dmy).expect("parses");
            prop_assert_eq!((v.year, v.month, v.day), (y, mo, d));
            let m = mentions(&format!("on {text} please"), order == Order::Dmy);
            prop_assert_eq!(m.len(), 1);
            prop_assert_eq!((m[0].year, m[0].month, m[0].day), (Some(y), mo, d));
        }
    }
}
