use super::*;
use proptest::prelude::*;
use serde_json::json;

fn call(v: Value) -> Call {
    serde_json::from_value(v).expect("call")
}

fn calls(v: Value) -> Vec<Call> {
    serde_json::from_value(v).expect("calls")
}

/// One Python function with several parameter kinds.
fn funcs() -> Vec<Value> {
    vec![
        json!({"name": "trip.plan", "description": "d", "parameters": {"type": "dict",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "budget": {"type": "float"},
            "flexible": {"type": "boolean"},
            "stops": {"type": "array", "items": {"type": "string"}},
            "counts": {"type": "array", "items": {"type": "integer"}},
            "prefs": {"type": "dict", "properties": {"seat": {"type": "string"}, "meal": {"type": "string"}}},
            "legs": {"type": "array", "items": {"type": "dict"}},
            "note": {"type": "string"},
            "extra": {"type": "string"}
        },
        "required": ["city", "days"]}}),
    ]
}

fn answer() -> Vec<Value> {
    vec![json!({"trip.plan": {
        "city": ["New York, NY", "NYC"],
        "days": [3],
        "budget": [100.0, ""],
        "flexible": [true, ""],
        "stops": [["Boston", "Salem"], ""],
        "counts": [[1, 2], ""],
        "prefs": [{"seat": ["aisle"], "meal": ["veg", ""]}, ""],
        "legs": [[{"from": ["A"]}, {"from": ["B"]}], ""],
        "note": ["hi"]
    }})]
}

fn simple(args: Value) -> Check {
    let mut a = args;
    if a.get("note").is_none() {
        a["note"] = json!("hi");
    }
    check(
        Category::SimplePython,
        &funcs(),
        Some(&answer()),
        &[call(json!({"name": "trip.plan", "arguments": a}))],
    )
}

fn reason(r: Check) -> Reason {
    r.expect_err("should fail").reason
}

#[test]
fn exact_answer_passes() {
    assert_eq!(simple(json!({"city": "NYC", "days": 3})), Ok(()));
    assert_eq!(
        simple(
            json!({"city": "NYC", "days": 3, "budget": 100.0, "flexible": true,
            "stops": ["Boston", "Salem"], "counts": [1, 2], "prefs": {"seat": "aisle"},
            "legs": [{"from": "A"}, {"from": "B"}]})
        ),
        Ok(())
    );
}

#[test]
fn strings_are_standardised() {
    // Lower-cased, with ` ,./-_*^` deleted.
    assert_eq!(simple(json!({"city": "new york ny", "days": 3})), Ok(()));
    assert_eq!(simple(json!({"city": "NEW-YORK/NY.", "days": 3})), Ok(()));
    assert_eq!(
        reason(simple(json!({"city": "Boston", "days": 3}))),
        Reason::WrongValue
    );
}

#[test]
fn types_are_strict() {
    // A float for an integer fails, as does a numeric string or a bool.
    assert_eq!(
        reason(simple(json!({"city": "NYC", "days": 3.0}))),
        Reason::WrongType
    );
    assert_eq!(
        reason(simple(json!({"city": "NYC", "days": "3"}))),
        Reason::WrongType
    );
    assert_eq!(
        reason(simple(json!({"city": "NYC", "days": true}))),
        Reason::WrongType
    );
    // An int passes for a float.
    assert_eq!(
        simple(json!({"city": "NYC", "days": 3, "budget": 100})),
        Ok(())
    );
    assert_eq!(
        reason(simple(json!({"city": "NYC", "days": 3, "budget": "100"}))),
        Reason::WrongType
    );
    // Element types are checked one level deep...
    let f = vec![json!({"name": "f", "parameters": {"type": "dict",
        "properties": {"xs": {"type": "array", "items": {"type": "integer"}}}, "required": []}})];
    let run = |key: Value, xs: Value| {
        check(
            Category::SimplePython,
            &f,
            Some(&[json!({"f": {"xs": key}})]),
            &[call(json!({"name": "f", "arguments": {"xs": xs}}))],
        )
    };
    assert_eq!(run(json!([[1, 2]]), json!([1, 2])), Ok(()));
    assert_eq!(
        reason(run(json!([[1, 2]]), json!([1.0, 2]))),
        Reason::WrongType
    );
    // ...except that, as in BFCL, a non-list alternative ("") skips that
    // check, and then 1.0 == 1 in the value comparison.
    assert_eq!(run(json!([[1, 2], ""]), json!([1.0, 2])), Ok(()));
}

#[test]
fn parameters_must_be_in_schema_and_key() {
    // Declared but not in the answer key: an extra optional parameter fails.
    assert_eq!(
        reason(simple(json!({"city": "NYC", "days": 3, "extra": "x"}))),
        Reason::UnexpectedParam
    );
    // Not declared at all.
    assert_eq!(
        reason(simple(json!({"city": "NYC", "days": 3, "zzz": 1}))),
        Reason::UnexpectedParam
    );
    assert_eq!(
        reason(simple(json!({"city": "NYC"}))),
        Reason::MissingRequired
    );
    // `note` is optional in the schema but the key has no "": it must be given.
    let r = check(
        Category::SimplePython,
        &funcs(),
        Some(&answer()),
        &[call(
            json!({"name": "trip.plan", "arguments": {"city": "NYC", "days": 3}}),
        )],
    );
    assert_eq!(reason(r), Reason::MissingParam);
}

#[test]
fn lists_are_ordered() {
    assert_eq!(
        simple(json!({"city": "NYC", "days": 3, "stops": ["boston", "SALEM"]})),
        Ok(())
    );
    assert_eq!(
        reason(simple(
            json!({"city": "NYC", "days": 3, "stops": ["Salem", "Boston"]})
        )),
        Reason::WrongValue
    );
    assert_eq!(
        reason(simple(json!({"city": "NYC", "days": 3, "counts": [2, 1]}))),
        Reason::WrongValue
    );
}

#[test]
fn dicts_one_level() {
    assert_eq!(
        simple(json!({"city": "NYC", "days": 3, "prefs": {"seat": "Aisle", "meal": "veg"}})),
        Ok(())
    );
    assert_eq!(
        reason(simple(
            json!({"city": "NYC", "days": 3, "prefs": {"seat": "window"}})
        )),
        Reason::WrongValue
    );
    assert_eq!(
        reason(simple(
            json!({"city": "NYC", "days": 3, "prefs": {"seat": "aisle", "x": 1}})
        )),
        Reason::WrongDictKey
    );
    assert_eq!(
        reason(simple(
            json!({"city": "NYC", "days": 3, "prefs": {"meal": "veg"}})
        )),
        Reason::WrongDictKey
    );
    // A list of dicts, in order.
    assert_eq!(
        reason(simple(
            json!({"city": "NYC", "days": 3, "legs": [{"from": "B"}, {"from": "A"}]})
        )),
        Reason::WrongValue
    );
    assert_eq!(
        reason(simple(
            json!({"city": "NYC", "days": 3, "legs": [{"from": "A"}]})
        )),
        Reason::WrongValue
    );
}

#[test]
fn names_and_counts() {
    // `.` may be written `_`.
    let r = check(
        Category::SimplePython,
        &funcs(),
        Some(&answer()),
        &[call(
            json!({"name": "trip_plan", "arguments": {"city": "NYC", "days": 3, "note": "hi"}}),
        )],
    );
    assert_eq!(r, Ok(()));
    let r = check(
        Category::SimplePython,
        &funcs(),
        Some(&answer()),
        &[call(
            json!({"name": "trip.plans", "arguments": {"city": "NYC", "days": 3, "note": "hi"}}),
        )],
    );
    assert_eq!(reason(r), Reason::WrongFunction);
    let one = json!({"name": "trip.plan", "arguments": {"city": "NYC", "days": 3, "note": "hi"}});
    let r = check(
        Category::SimplePython,
        &funcs(),
        Some(&answer()),
        &calls(json!([one.clone(), one])),
    );
    assert_eq!(reason(r), Reason::WrongCount);
    let r = check(Category::SimplePython, &funcs(), Some(&answer()), &[]);
    assert_eq!(reason(r), Reason::NoCall);
}

#[test]
fn variables_use_the_keys_type() {
    // BFCL: when the key holds a string for an integer parameter (a
    // variable name), a string output is checked against it.
    let f = vec![json!({"name": "f", "parameters": {"type": "dict",
        "properties": {"n": {"type": "integer"}}, "required": ["n"]}})];
    let a = vec![json!({"f": {"n": ["count"]}})];
    let ok = call(json!({"name": "f", "arguments": {"n": "count"}}));
    assert_eq!(check(Category::SimplePython, &f, Some(&a), &[ok]), Ok(()));
    // Variables are compared exactly (no standardisation).
    let no = call(json!({"name": "f", "arguments": {"n": "Count"}}));
    assert_eq!(
        reason(check(Category::SimplePython, &f, Some(&a), &[no])),
        Reason::WrongValue
    );
}

#[test]
fn unknown_types_are_reported() {
    let f = vec![json!({"name": "f", "parameters": {"type": "dict",
        "properties": {"n": {"type": "object"}}, "required": []}})];
    let a = vec![json!({"f": {"n": [{}]}})];
    let c = call(json!({"name": "f", "arguments": {"n": {}}}));
    assert_eq!(
        reason(check(Category::SimplePython, &f, Some(&a), &[c])),
        Reason::UnsupportedType
    );
}

fn two_funcs() -> Vec<Value> {
    vec![
        json!({"name": "add", "parameters": {"type": "dict",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}),
        json!({"name": "mul", "parameters": {"type": "dict",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}),
    ]
}

#[test]
fn multiple_needs_the_right_function() {
    let a = vec![json!({"mul": {"a": [2], "b": [3]}})];
    let good = calls(json!([{"name": "mul", "arguments": {"a": 2, "b": 3}}]));
    let bad = calls(json!([{"name": "add", "arguments": {"a": 2, "b": 3}}]));
    assert_eq!(
        check(Category::Multiple, &two_funcs(), Some(&a), &good),
        Ok(())
    );
    assert_eq!(
        reason(check(Category::Multiple, &two_funcs(), Some(&a), &bad)),
        Reason::WrongFunction
    );
}

#[test]
fn parallel_is_order_free_with_exact_counts() {
    let a = vec![
        json!({"add": {"a": [1], "b": [2]}}),
        json!({"mul": {"a": [3], "b": [4]}}),
        json!({"add": {"a": [5], "b": [6]}}),
    ];
    let fwd = json!([{"name": "add", "arguments": {"a": 1, "b": 2}},
        {"name": "mul", "arguments": {"a": 3, "b": 4}},
        {"name": "add", "arguments": {"a": 5, "b": 6}}]);
    let mut swapped = fwd.as_array().expect("array").clone();
    swapped.reverse();
    for cat in [
        Category::Parallel,
        Category::ParallelMultiple,
        Category::LiveParallel,
    ] {
        assert_eq!(
            check(cat, &two_funcs(), Some(&a), &calls(fwd.clone())),
            Ok(())
        );
        assert_eq!(
            check(
                cat,
                &two_funcs(),
                Some(&a),
                &calls(Value::Array(swapped.clone()))
            ),
            Ok(())
        );
    }
    let short = json!([{"name": "add", "arguments": {"a": 1, "b": 2}},
        {"name": "mul", "arguments": {"a": 3, "b": 4}}]);
    assert_eq!(
        reason(check(
            Category::Parallel,
            &two_funcs(),
            Some(&a),
            &calls(short)
        )),
        Reason::WrongCount
    );
    let wrong = json!([{"name": "add", "arguments": {"a": 1, "b": 2}},
        {"name": "mul", "arguments": {"a": 3, "b": 4}},
        {"name": "add", "arguments": {"a": 5, "b": 7}}]);
    assert_eq!(
        reason(check(
            Category::Parallel,
            &two_funcs(),
            Some(&a),
            &calls(wrong)
        )),
        Reason::WrongValue
    );
}

#[test]
fn relevance_and_irrelevance() {
    let c = calls(json!([{"name": "add", "arguments": {"a": 1}}]));
    for cat in [Category::Irrelevance, Category::LiveIrrelevance] {
        assert_eq!(check(cat, &two_funcs(), None, &[]), Ok(()));
        assert_eq!(
            reason(check(cat, &two_funcs(), None, &c)),
            Reason::UnexpectedCall
        );
    }
    // Any call counts as relevant, even an invalid one.
    assert_eq!(
        check(Category::LiveRelevance, &two_funcs(), None, &c),
        Ok(())
    );
    assert_eq!(
        reason(check(Category::LiveRelevance, &two_funcs(), None, &[])),
        Reason::NoCall
    );
}

#[test]
fn java_arguments_are_java_strings() {
    let f = vec![
        json!({"name": "Svc.run", "parameters": {"type": "dict", "properties": {
        "n": {"type": "long"}, "on": {"type": "boolean"},
        "ids": {"type": "ArrayList", "items": {"type": "integer"}},
        "name": {"type": "String"}}, "required": ["n"]}}),
    ];
    let a = vec![
        json!({"Svc.run": {"n": [42], "on": [true, ""], "ids": [[1, 2], ""], "name": ["Bob", ""]}}),
    ];
    let run = |args: Value| {
        check(
            Category::SimpleJava,
            &f,
            Some(&a),
            &[call(json!({"name": "Svc.run", "arguments": args}))],
        )
    };
    assert_eq!(
        run(
            json!({"n": "42L", "on": "true", "ids": "new ArrayList<>(Arrays.asList(1, 2))", "name": "bob"})
        ),
        Ok(())
    );
    // A long needs its suffix; a bare JSON number is not a Java string.
    assert_eq!(reason(run(json!({"n": "42"}))), Reason::WrongType);
    assert_eq!(reason(run(json!({"n": 42}))), Reason::WrongType);
    assert_eq!(
        reason(run(json!({"n": "42L", "on": "yes"}))),
        Reason::WrongType
    );
    assert_eq!(
        reason(run(
            json!({"n": "42L", "ids": "new ArrayList<>(Arrays.asList(2, 1))"})
        )),
        Reason::WrongValue
    );
}

#[test]
fn javascript_arguments_are_js_strings() {
    let f = vec![
        json!({"name": "draw", "parameters": {"type": "dict", "properties": {
        "xs": {"type": "array", "items": {"type": "float"}},
        "opts": {"type": "dict"}, "label": {"type": "String"}}, "required": ["xs"]}}),
    ];
    let a = vec![
        json!({"draw": {"xs": [[1.5, 2.0]], "opts": [{"color": ["red"]}, ""], "label": ["", "t"]}}),
    ];
    let run = |args: Value| {
        check(
            Category::SimpleJavascript,
            &f,
            Some(&a),
            &[call(json!({"name": "draw", "arguments": args}))],
        )
    };
    assert_eq!(
        run(json!({"xs": "[1.5, 2.0]", "opts": "{color: 'red'}", "label": "'T'"})),
        Ok(())
    );
    assert_eq!(reason(run(json!({"xs": "[2.0, 1.5]"}))), Reason::WrongValue);
    assert_eq!(reason(run(json!({"xs": [1.5, 2.0]}))), Reason::WrongType);
}

#[test]
fn malformed_keys_are_invalid_entries() {
    let c = calls(json!([{"name": "add", "arguments": {"a": 1, "b": 2}}]));
    assert_eq!(
        reason(check(
            Category::Multiple,
            &two_funcs(),
            Some(&[json!("x")]),
            &c
        )),
        Reason::InvalidEntry
    );
    assert_eq!(
        reason(check(Category::Multiple, &two_funcs(), None, &c)),
        Reason::InvalidEntry
    );
    assert_eq!(
        reason(check(
            Category::Multiple,
            &two_funcs(),
            Some(&[json!({"nope": {}})]),
            &c
        )),
        Reason::InvalidEntry
    );
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "new ArrayList<>(Arrays.asList(1, 2))",
            "new int[]{1,",
            "{a: [1, {b: 2}], c: 'x'}",
            "[[1, 2], [3",
            "new HashMap<String, Object>() {{ put(\"k\", 1); }}",
            "42L",
            "3.5f",
            "",
            "'",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_call() -> impl Strategy<Value = Call> {
    let name = prop::sample::select(vec![
        "trip.plan",
        "trip_plan",
        "add",
        "mul",
        "draw",
        "Svc.run",
        "x",
    ]);
    let key = prop::sample::select(vec![
        "city", "days", "budget", "stops", "prefs", "legs", "a", "b", "xs", "opts", "n", "ids",
        "on", "zz",
    ]);
    (name, prop::collection::btree_map(key, arb_json(), 0..6)).prop_map(|(n, args)| {
        Call::new(
            n,
            args.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    // The scorer gives a verdict, never a panic, on any predicted calls, in
    // every language and category shape.
    #[test]
    fn never_panics(cs in prop::collection::vec(arb_call(), 0..4), key in arb_json()) {
        let java = vec![json!({"name": "Svc.run", "parameters": {"type": "dict", "properties": {
            "n": {"type": "long"}, "ids": {"type": "ArrayList", "items": {"type": "integer"}},
            "on": {"type": "HashMap"}}, "required": ["n"]}})];
        let js = vec![json!({"name": "draw", "parameters": {"type": "dict", "properties": {
            "xs": {"type": "array", "items": {"type": "float"}}, "opts": {"type": "dict"}}, "required": []}})];
        let _ = check(Category::SimplePython, &funcs(), Some(&answer()), &cs);
        let _ = check(Category::ParallelMultiple, &two_funcs(), Some(&[json!({"add": {"a": [1], "b": [2]}}), json!({"mul": {"a": [1], "b": [2]}})]), &cs);
        let _ = check(Category::Multiple, &two_funcs(), Some(&[json!({"mul": {"a": [key.clone()], "b": [key.clone(), ""]}})]), &cs);
        let _ = check(Category::SimpleJava, &java, Some(&[json!({"Svc.run": {"n": [key.clone()], "ids": [key.clone()], "on": [key.clone()]}})]), &cs);
        let _ = check(Category::SimpleJavascript, &js, Some(&[json!({"draw": {"xs": [key.clone()], "opts": [key.clone(), ""]}})]), &cs);
        let _ = check(Category::LiveIrrelevance, &js, None, &cs);
        // An arbitrary answer key shape never panics either.
        let _ = check(Category::Parallel, &two_funcs(), Some(std::slice::from_ref(&key)), &cs);
    }

    // Any order of a correct parallel answer passes.
    #[test]
    fn parallel_permutations_pass(perm in Just(vec![0usize, 1, 2]).prop_shuffle()) {
        let a = vec![
            json!({"add": {"a": [1], "b": [2]}}),
            json!({"mul": {"a": [3], "b": [4]}}),
            json!({"add": {"a": [1], "b": [3]}}),
        ];
        let all = [
            call(json!({"name": "add", "arguments": {"a": 1, "b": 2}})),
            call(json!({"name": "mul", "arguments": {"a": 3, "b": 4}})),
            call(json!({"name": "add", "arguments": {"a": 1, "b": 3}})),
        ];
        let cs: Vec<Call> = perm.iter().map(|i| all[*i].clone()).collect();
        prop_assert_eq!(check(Category::Parallel, &two_funcs(), Some(&a), &cs), Ok(()));
    }
}
