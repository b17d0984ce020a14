//! Tests of rendering, the schema state machine and value read-back.

use retort_core::{CallOptions, Tool, ToolFormat};
use serde_json::json;

use crate::grammar::{Choice, Grammar};
use crate::net::action;
use crate::render::{RenderLimits, render};
use crate::testutil::tok;

fn tools() -> Vec<Tool> {
    Tool::parse_many(
        &json!([
            {"name": "get_weather", "description": "Current weather for a city",
             "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "description": "City name"},
                "units": {"type": "string", "enum": ["Celsius", "Fahrenheit"]},
                "days": {"type": "integer"}},
              "required": ["city"]}},
            {"name": "buy", "description": "Buy a product",
             "parameters": {"type": "object", "properties": {
                "product": {"type": "string"},
                "qty": {"type": "integer"},
                "price": {"type": "number"},
                "gift": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}}},
              "required": ["product", "qty"]}}
        ]),
        ToolFormat::Auto,
    )
    .expect("tools")
}

const LIM: RenderLimits = RenderLimits {
    max_len: 512,
    choice_len: 512,
    tool_desc_tokens: 24,
    param_desc_tokens: 10,
};

#[test]
fn render_keeps_offsets_and_name_positions() {
    let Some(tok) = tok() else { return };
    let ts = tools();
    let q = "What is the weather in San Francisco?";
    let r = render(&tok, q, &ts, LIM, &[]).expect("render");
    assert_eq!(r.ids[0], tok.cls);
    assert_eq!(r.tools.len(), 2);
    // The function-name pointer lands on the name's first word piece.
    let p = r.tools[0].start;
    assert_eq!(&r.text[r.spans[p].0..r.spans[p].1], "get");
    let city = r.tools[0].params[0].start;
    assert_eq!(&r.text[r.spans[city].0..r.spans[city].1], "city");
    // The query is the start of the text, so spans index the original query.
    let sf = r
        .ids
        .iter()
        .position(|&i| tok.text(i) == "san")
        .expect("san");
    assert_eq!(&q[r.spans[sf].0..r.spans[sf + 1].1], "San Francisco");
    // Segments: 0 for the query, 1 for the tools.
    assert_eq!(r.segs[1], 0);
    assert_eq!(r.segs[p], 1);
    assert_eq!(r.tools[0].params[1].enum_ids.len(), 2);
}

#[test]
fn render_drops_tools_that_do_not_fit_but_keeps_gold() {
    let Some(tok) = tok() else { return };
    let ts = tools();
    let small = RenderLimits { max_len: 64, ..LIM };
    let r = render(&tok, "buy a pen", &ts, small, &[1]).expect("render");
    assert!(r.len() <= 64);
    assert_eq!(r.tools.len(), 1);
    assert_eq!(r.tools[0].index, 1);
}

/// The description limits cap each description at that many word pieces;
/// a parameter-description limit of 0 leaves them out, and the rest of
/// the rendering (names, types, enum members) is unchanged.
#[test]
fn render_caps_descriptions_at_their_limits() {
    let Some(tok) = tok() else { return };
    let ts = tools();
    let q = "What is the weather in Paris?";
    let words = |lim: RenderLimits| -> Vec<String> {
        let r = render(&tok, q, &ts, lim, &[]).expect("render");
        r.ids.iter().map(|&i| tok.text(i).to_string()).collect()
    };
    let full = words(LIM);
    let short = words(RenderLimits {
        tool_desc_tokens: 1,
        param_desc_tokens: 0,
        ..LIM
    });
    let has = |w: &[String], s: &str| w.iter().any(|x| x == s);
    // "Current weather for a city" keeps "current"; "City name" goes.
    assert!(has(&full, "weather") && has(&full, "name"), "{full:?}");
    assert!(has(&short, "current"), "{short:?}");
    assert!(!has(&short, "name"), "{short:?}");
    // Tool "Current weather ..." (5 pieces -> 1), "Buy a product" (3 -> 1),
    // "City name" (2 -> 0): 8 pieces fewer; everything else is kept.
    assert_eq!(full.len() - short.len(), 8, "{full:?}\n{short:?}");
    for w in ["get", "city", "units", "ce", "##hre", "product", "tags"] {
        assert!(has(&short, w), "{w} missing: {short:?}");
    }
}

/// `choice_len` caps the input only while several tools compete: the
/// least relevant tool goes, but a lone tool keeps the whole `max_len`.
#[test]
fn choice_len_drops_tools_but_never_shrinks_a_lone_one() {
    let Some(tok) = tok() else { return };
    let ts = tools();
    let q = "What is the weather in Paris?";
    let full = render(&tok, q, &ts, LIM, &[]).expect("render");
    assert_eq!(full.tools.len(), 2);
    let capped = RenderLimits {
        choice_len: full.len() - 1,
        ..LIM
    };
    let r = render(&tok, q, &ts, capped, &[]).expect("render");
    assert!(r.len() < full.len());
    // Shorter descriptions alone would fit, so both tools stay.
    assert_eq!(r.tools.len(), 2, "{} tokens", r.len());
    let tight = RenderLimits {
        choice_len: 24,
        ..LIM
    };
    let r = render(&tok, q, &ts, tight, &[]).expect("render");
    assert_eq!(r.tools.len(), 1);
    assert_eq!(
        r.tools[0].index, 0,
        "the weather tool shares words with the query"
    );
    let alone = render(&tok, q, &ts[..1], tight, &[]).expect("render");
    let alone_full = render(&tok, q, &ts[..1], LIM, &[]).expect("render");
    assert_eq!(
        alone.ids, alone_full.ids,
        "a lone tool is not cut by choice_len"
    );
    assert!(alone.len() > 24);
}

/// One tool too long for the input on its own is shrunk, not refused: its
/// enum lists keep their leading members, then optional parameters go,
/// never a required one; the cut enum still decodes to a listed member.
#[test]
fn render_shrinks_a_lone_tool_that_does_not_fit() {
    let Some(tok) = tok() else { return };
    let countries: Vec<String> = (0..120).map(|i| format!("country{i}")).collect();
    let mut props = serde_json::Map::new();
    props.insert(
        "q".into(),
        json!({"type": "string", "description": "Query"}),
    );
    props.insert("cr".into(), json!({"type": "string", "enum": countries}));
    for i in 0..40 {
        props.insert(
            format!("option_{i}"),
            json!({"type": "string", "description": "An option of the search"}),
        );
    }
    let ts = Tool::parse_many(
        &json!([{"name": "search", "description": "Search the web",
                 "parameters": {"type": "object", "properties": props,
                                "required": ["q", "cr"]}}]),
        ToolFormat::Auto,
    )
    .expect("tools");
    let small = RenderLimits {
        max_len: 128,
        ..LIM
    };
    let r = render(&tok, "search for cats", &ts, small, &[]).expect("render");
    assert!(r.len() <= 128, "{} tokens", r.len());
    assert_eq!(r.tools.len(), 1);
    let names: Vec<&str> = r.tools[0].params.iter().map(|p| p.name.as_str()).collect();
    assert!(names.contains(&"q") && names.contains(&"cr"), "{names:?}");
    assert!(names.len() < 42, "optional parameters left out: {names:?}");
    let cr = r.tools[0]
        .params
        .iter()
        .position(|p| p.name == "cr")
        .expect("cr");
    let shown = r.tools[0].params[cr].enum_ids.len();
    assert!((4..120).contains(&shown), "{shown} members shown");
    // Choosing the last member shown gives that member of the schema.
    let opts = CallOptions::default();
    let mut g = Grammar::new(&tok, &r, &ts, &[], &opts, 40);
    let q = r.tools[0]
        .params
        .iter()
        .position(|p| p.name == "q")
        .expect("q");
    let cats = (0..r.len())
        .find(|&i| tok.text(r.ids[i]) == "cats")
        .expect("cats");
    drive(&mut g, &[Choice::Function(0), Choice::Param(cr)]);
    for &t in &r.tools[0].params[cr].enum_ids[shown - 1] {
        drive(&mut g, &[Choice::Token(t, None)]);
    }
    drive(
        &mut g,
        &[
            Choice::Action(action::END_VAL),
            Choice::Param(q),
            Choice::Token(r.ids[cats], Some(cats)),
            Choice::Action(action::END_VAL),
            Choice::Action(action::END_CALL),
            Choice::Action(action::STOP),
        ],
    );
    assert_eq!(
        g.calls[0].arguments["cr"],
        json!(format!("country{}", shown - 1))
    );
    retort_core::validate_all(&g.calls, &ts).expect("valid");
    // A tool whose required parameters alone do not fit is still refused.
    let tiny = RenderLimits { max_len: 12, ..LIM };
    assert!(render(&tok, "search for cats", &ts, tiny, &[]).is_err());
}

fn drive(g: &mut Grammar<'_>, cs: &[Choice]) {
    for &c in cs {
        g.step(c).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn copy_restores_original_casing() {
    let Some(tok) = tok() else { return };
    let ts = tools();
    let q = "Is it raining in San Francisco? Also buy an iPhone 15 Pro";
    let r = render(&tok, q, &ts, LIM, &[]).expect("render");
    let pos = |w: &str, from: usize| {
        (from..r.len())
            .find(|&i| tok.text(r.ids[i]) == w)
            .expect("word")
    };
    let opts = CallOptions::default();
    let mut g = Grammar::new(&tok, &r, &ts, &[], &opts, 40);
    let san = pos("san", 0);
    drive(
        &mut g,
        &[
            Choice::Function(0),
            Choice::Param(0),
            Choice::Token(r.ids[san], Some(san)),
            Choice::Token(r.ids[san + 1], Some(san + 1)),
            Choice::Action(action::END_VAL),
            Choice::Action(action::END_CALL),
            Choice::Function(1),
            Choice::Param(0),
        ],
    );
    let ip = pos("iphone", 0);
    let n = tok.ids("iPhone 15 Pro").expect("ids").len();
    for k in 0..n {
        let c = Choice::Token(r.ids[ip + k], Some(ip + k));
        drive(&mut g, &[c]);
    }
    // qty = 2, generated (not copied).
    let two = tok.ids("2").expect("ids")[0];
    drive(
        &mut g,
        &[
            Choice::Action(action::END_VAL),
            Choice::Param(1),
            Choice::Token(two, None),
            Choice::Action(action::END_VAL),
            Choice::Action(action::END_CALL),
            Choice::Action(action::STOP),
        ],
    );
    assert!(g.is_done());
    assert_eq!(g.calls.len(), 2);
    assert_eq!(g.calls[0].arguments["city"], json!("San Francisco"));
    assert_eq!(g.calls[1].arguments["product"], json!("iPhone 15 Pro"));
    assert_eq!(g.calls[1].arguments["qty"], json!(2));
    retort_core::validate_all(&g.calls, &ts).expect("valid");
}

#[test]
fn masks_follow_the_schema() {
    let Some(tok) = tok() else { return };
    let ts = tools();
    let r = render(&tok, "buy 3 pens for 2.5 dollars", &ts, LIM, &[]).expect("render");
    let opts = CallOptions {
        require_call: true,
        ..Default::default()
    };
    let mut g = Grammar::new(&tok, &r, &ts, &[], &opts, 40);
    // require_call: STOP is not allowed before the first call.
    assert!(!g.allowed(Choice::Action(action::STOP)));
    assert!(g.allowed(Choice::Function(1)));
    drive(&mut g, &[Choice::Function(1)]);
    // Required parameters before END_CALL.
    assert!(!g.allowed(Choice::Action(action::END_CALL)));
    drive(&mut g, &[Choice::Param(1)]);
    // Integer: digits or a sign, never words or a dot.
    let id = |s: &str| tok.ids(s).expect("ids")[0];
    assert!(g.allowed(Choice::Token(id("3"), None)));
    assert!(g.allowed(Choice::Token(id("-"), None)));
    assert!(!g.allowed(Choice::Token(id("pens"), None)));
    assert!(!g.allowed(Choice::Action(action::END_VAL)));
    drive(&mut g, &[Choice::Token(id("3"), None)]);
    assert!(!g.allowed(Choice::Token(id("."), None)));
    drive(&mut g, &[Choice::Action(action::END_VAL)]);
    // A parameter only once.
    assert!(!g.allowed(Choice::Param(1)));
    drive(&mut g, &[Choice::Param(2)]);
    // Number: a dot is fine after digits.
    drive(&mut g, &[Choice::Token(id("2"), None)]);
    assert!(g.allowed(Choice::Token(id("."), None)));
    drive(
        &mut g,
        &[
            Choice::Token(id("."), None),
            Choice::Token(id("5"), None),
            Choice::Action(action::END_VAL),
            Choice::Param(3),
        ],
    );
    // Boolean: true/false only.
    assert!(g.allowed(Choice::Token(id("true"), None)));
    assert!(!g.allowed(Choice::Token(id("yes"), None)));
    drive(
        &mut g,
        &[
            Choice::Token(id("false"), None),
            Choice::Action(action::END_VAL),
            Choice::Param(4),
        ],
    );
    // Arrays: element by element.
    assert!(g.allowed(Choice::Action(action::END_VAL)), "empty array");
    assert!(!g.allowed(Choice::Action(action::NEXT_ELEM)));
    drive(
        &mut g,
        &[
            Choice::Token(id("red"), None),
            Choice::Action(action::NEXT_ELEM),
            Choice::Token(id("blue"), None),
            Choice::Action(action::END_VAL),
        ],
    );
    // "product" is required and still missing.
    assert!(!g.allowed(Choice::Action(action::END_CALL)));
    let pen = id("pens");
    drive(
        &mut g,
        &[
            Choice::Param(0),
            Choice::Token(pen, None),
            Choice::Action(action::END_VAL),
            Choice::Action(action::END_CALL),
        ],
    );
    let c = &g.calls[0];
    assert_eq!(c.arguments["qty"], json!(3));
    assert_eq!(c.arguments["price"], json!(2.5));
    assert_eq!(c.arguments["gift"], json!(false));
    assert_eq!(c.arguments["tags"], json!(["red", "blue"]));
}

#[test]
fn enum_values_only_members_and_options() {
    let Some(tok) = tok() else { return };
    let ts = tools();
    let r = render(&tok, "weather in Oslo in fahrenheit", &ts, LIM, &[]).expect("render");
    let opts = CallOptions {
        single_call_only: true,
        force_function: Some("get_weather".into()),
        ..Default::default()
    };
    let mut g = Grammar::new(&tok, &r, &ts, &[], &opts, 40);
    assert!(!g.allowed(Choice::Function(1)), "forced function only");
    assert!(
        !g.allowed(Choice::Action(action::STOP)),
        "forced: a call is required"
    );
    drive(&mut g, &[Choice::Function(0), Choice::Param(1)]);
    let members = &r.tools[0].params[1].enum_ids;
    let first = members[1][0];
    assert!(g.allowed(Choice::Token(first, None)));
    assert!(!g.allowed(Choice::Token(tok.ids("kelvin").expect("ids")[0], None)));
    for &t in &members[1] {
        drive(&mut g, &[Choice::Token(t, None)]);
    }
    drive(&mut g, &[Choice::Action(action::END_VAL), Choice::Param(0)]);
    let oslo = tok.ids("oslo").expect("ids");
    for t in oslo {
        drive(&mut g, &[Choice::Token(t, None)]);
    }
    drive(
        &mut g,
        &[
            Choice::Action(action::END_VAL),
            Choice::Action(action::END_CALL),
        ],
    );
    // single_call_only: no second call.
    assert!(!g.allowed(Choice::Function(0)));
    drive(&mut g, &[Choice::Action(action::STOP)]);
    assert_eq!(g.calls[0].arguments["units"], json!("Fahrenheit"));
    assert_eq!(g.calls[0].arguments["city"], json!("oslo"));
}

#[test]
fn render_leaves_out_the_least_related_tool_first() {
    let Some(tok) = tok() else { return };
    let mut ts = tools();
    ts.reverse(); // buy, get_weather: the unrelated tool is first now
    let full = render(&tok, "weather in Oslo", &ts, LIM, &[]).expect("render");
    let small = RenderLimits {
        max_len: full.len() - 1,
        ..LIM
    };
    let r = render(&tok, "weather in Oslo", &ts, small, &[]).expect("render");
    assert!(r.tools.iter().any(|t| ts[t.index].name == "get_weather"));
}

#[test]
fn render_ranked_leaves_out_the_lowest_scored_tool_and_asks_only_when_needed() {
    let Some(tok) = tok() else { return };
    let ts = tools(); // get_weather, buy
    let full = render(&tok, "weather in Oslo", &ts, LIM, &[]).expect("render");
    let mut asked = 0;
    // Everything fits: the scores are never computed.
    let r = crate::render::render_ranked(&tok, "weather in Oslo", &ts, LIM, &[], &mut || {
        asked += 1;
        Ok(Some(vec![0.0, 10.0]))
    })
    .expect("render");
    assert_eq!((r.tools.len(), asked), (2, 0));
    // Room for either tool alone, not for both.
    let alone = |i: usize| {
        render(&tok, "weather in Oslo", &ts[i..=i], LIM, &[])
            .expect("render")
            .len()
    };
    let small = RenderLimits {
        max_len: alone(0).max(alone(1)),
        ..LIM
    };
    assert!(small.max_len < full.len());
    // A large enough added score overrules word overlap: "buy" stays.
    let r = crate::render::render_ranked(&tok, "weather in Oslo", &ts, small, &[], &mut || {
        asked += 1;
        Ok(Some(vec![0.0, 10.0]))
    })
    .expect("render");
    assert_eq!(asked, 1);
    let names: Vec<&str> = r.tools.iter().map(|t| ts[t.index].name.as_str()).collect();
    assert_eq!(names, ["buy"]);
    // Scores of the wrong length fall back to word overlap.
    let r = crate::render::render_ranked(&tok, "weather in Oslo", &ts, small, &[], &mut || {
        Ok(Some(vec![1.0]))
    })
    .expect("render");
    let names: Vec<&str> = r.tools.iter().map(|t| ts[t.index].name.as_str()).collect();
    assert_eq!(names, ["get_weather"]);
}

/// A very long query is cut so that a tool still fits, instead of leaving
/// no room for any tool.
#[test]
fn long_queries_are_cut_to_leave_room_for_a_tool() {
    let Some(tok) = tok() else { return };
    let mut props = serde_json::Map::new();
    for i in 0..20 {
        props.insert(format!("field_number_{i}"), json!({"type": "string"}));
    }
    let ts = Tool::parse_many(
        &json!([{"name": "wide_tool", "description": "many fields",
                 "parameters": {"type": "object", "properties": props}}]),
        ToolFormat::Auto,
    )
    .expect("tools");
    let q = "please tell me about the weather ".repeat(100);
    let r = render(&tok, &q, &ts, LIM, &[]).expect("a tool fits");
    assert!(r.len() <= 512, "{}", r.len());
    assert_eq!(r.tools.len(), 1);
    let query_tokens = r.segs.iter().filter(|&&s| s == 0).count();
    assert!(
        query_tokens >= (512 - 8) / 2,
        "the query keeps at least half: {query_tokens}"
    );
    // A short query is never cut.
    let r = render(&tok, "weather please", &ts, LIM, &[]).expect("render");
    assert_eq!(r.segs.iter().filter(|&&s| s == 0).count(), 2 + 2);
}

/// Generated pieces (not copied) are joined with spaces between words, but
/// a `:` or `.` between digits joins them ("14:30:00", "3.5"), while a
/// `:` after a word and a `,` keep theirs.
#[test]
fn generated_times_and_decimals_have_no_spaces_inside() {
    let Some(tok) = tok() else { return };
    let r = render(&tok, "hello", &tools(), LIM, &[]).expect("render");
    let gen_ = |s: &str| -> Vec<(u32, Option<usize>)> {
        tok.ids(s)
            .expect("ids")
            .into_iter()
            .map(|t| (t, None))
            .collect()
    };
    let text = |s: &str| crate::grammar::detokenize(&tok, &r, &gen_(s));
    assert_eq!(text("2023-03-17 14:30:00"), "2023-03-17 14:30:00");
    assert_eq!(text("3.5 kg"), "3.5 kg");
    assert_eq!(text("note: buy milk"), "note: buy milk");
    assert_eq!(text("paris, france"), "paris, france");
    assert_eq!(text("at 9: 30"), "at 9:30");
    assert_eq!(text("end. 5 more"), "end. 5 more");
}
