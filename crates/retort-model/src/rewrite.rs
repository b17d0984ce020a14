//! Rewriting decoded arguments after decoding (dates, percentages): one
//! walk shared by those rules.

use retort_core::{Call, Schema, Tool};
use serde_json::Value;

/// Offer each call's top-level arguments to `f`, call by call and, within
/// a call, in its tool's declaration order (so "from ... to ..." meets
/// the start before the end). `f(schema, value)` returns the new value,
/// or `None` to keep it. A call whose new arguments no longer validate
/// against its tool keeps all its old ones.
pub(crate) fn rewrite_arguments(
    calls: &mut [Call],
    tools: &[Tool],
    mut f: impl FnMut(&Schema, &Value) -> Option<Value>,
) {
    for call in calls.iter_mut() {
        let Some(tool) = tools.iter().find(|t| t.name == call.name) else {
            continue;
        };
        let mut new = call.clone();
        let mut changed = false;
        for (name, schema) in &tool.parameters.properties {
            let Some(v) = new.arguments.get(name) else {
                continue;
            };
            if let Some(out) = f(schema, v)
                && &out != v
            {
                new.arguments.insert(name.clone(), out);
                changed = true;
            }
        }
        if changed && retort_core::validate(&new, std::slice::from_ref(tool)).is_ok() {
            *call = new;
        }
    }
}
