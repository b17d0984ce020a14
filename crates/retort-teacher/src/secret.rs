//! API keys that never print themselves.

use std::fmt;

/// The text put where a key was.
pub const REDACTED: &str = "[REDACTED]";

/// An API key. `Debug` and `Display` print `[REDACTED]`; the key itself is
/// only handed to the HTTP layer, as a header marked sensitive.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A key from a string; `None` when it is empty or only whitespace.
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let key = key.into().trim().to_string();
        if key.is_empty() {
            None
        } else {
            Some(ApiKey(key))
        }
    }

    /// The key in environment variable `var`, if set and not empty.
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var).ok().and_then(ApiKey::new)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced by `[REDACTED]`.
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.0, REDACTED)
    }

    /// Whether `text` contains the key.
    pub fn appears_in(&self, text: &str) -> bool {
        text.contains(&self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({REDACTED})")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Redact with an optional key.
pub(crate) fn redact_opt(key: Option<&ApiKey>, text: &str) -> String {
    match key {
        Some(k) => k.redact(text),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_itself() {
        let k = ApiKey::new("sk-very-secret-123").expect("non-empty");
        assert_eq!(format!("{k:?}"), "ApiKey([REDACTED])");
        assert_eq!(format!("{k}"), "[REDACTED]");
        assert_eq!(
            k.redact("auth: Bearer sk-very-secret-123!"),
            "auth: Bearer [REDACTED]!"
        );
        assert!(k.appears_in("xx sk-very-secret-123"));
        assert!(ApiKey::new("   ").is_none());
    }
}
