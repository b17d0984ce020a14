//! POST JSON with retries: exponential backoff with jitter on 429, 408 and
//! 5xx (honouring `Retry-After` and Google's `RetryInfo.retryDelay`), on
//! timeouts, broken connections and bodies that are not JSON.

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::error::TeacherError;
use crate::secret::{ApiKey, redact_opt};

/// How requests are retried and timed out.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled each time.
    pub base_delay: Duration,
    /// Largest backoff.
    pub max_delay: Duration,
    /// Largest wait a server's `Retry-After` may impose.
    pub max_retry_after: Duration,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for a whole attempt, from connecting to the last body byte: a
    /// hung connection is abandoned after this and retried.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The backoff before attempt `attempt + 1` (attempt counts from 1):
    /// `base * 2^(attempt-1)` capped at `max_delay`, with full jitter in its
    /// upper half.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let cap = exp.min(self.max_delay);
        let half = cap / 2;
        let jitter_ms = cap.saturating_sub(half).as_millis() as u64;
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::rng().random_range(0..=jitter_ms)
        };
        half + Duration::from_millis(extra)
    }
}

/// An HTTP client that knows the key to send and to redact.
pub(crate) struct Http {
    client: reqwest::Client,
    policy: RetryPolicy,
    key: Option<ApiKey>,
    headers: HeaderMap,
}

/// A successful exchange.
pub(crate) struct JsonReply {
    pub body: Value,
    /// Attempts made for it (1 when the first one succeeded).
    pub attempts: u32,
}

enum Attempt {
    Done(Value),
    /// Retry after the given wait (or the policy's backoff).
    Retry(TeacherError, Option<Duration>),
    Fail(TeacherError),
}

impl Http {
    /// `auth_header` is e.g. `("authorization", "Bearer KEY")`; its value is
    /// marked sensitive.
    pub fn new(
        policy: RetryPolicy,
        key: Option<ApiKey>,
        auth_header: Option<(&'static str, String)>,
    ) -> Result<Self, TeacherError> {
        let client = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.request_timeout)
            .build()
            .map_err(|e| TeacherError::Client(redact_opt(key.as_ref(), &e.to_string())))?;
        let mut headers = HeaderMap::new();
        if let Some((name, value)) = auth_header {
            let mut v = HeaderValue::from_str(&value).map_err(|_| {
                TeacherError::Config(
                    "the API key contains characters not allowed in an HTTP header".into(),
                )
            })?;
            v.set_sensitive(true);
            headers.insert(HeaderName::from_static(name), v);
        }
        Ok(Http {
            client,
            policy,
            key,
            headers,
        })
    }

    pub fn redact(&self, text: &str) -> String {
        redact_opt(self.key.as_ref(), text)
    }

    pub fn key(&self) -> Option<&ApiKey> {
        self.key.as_ref()
    }

    /// POST `body` to `url`, retrying what can be retried.
    pub async fn post_json(&self, url: &str, body: &[u8]) -> Result<JsonReply, TeacherError> {
        let max = self.policy.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(url, body, attempt).await {
                Attempt::Done(body) => {
                    return Ok(JsonReply {
                        body,
                        attempts: attempt,
                    });
                }
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(e, wait) => {
                    if attempt >= max {
                        return Err(e);
                    }
                    let wait = match wait {
                        Some(w) => w.min(self.policy.max_retry_after),
                        None => self.policy.backoff(attempt),
                    };
                    tracing::debug!(
                        "teacher attempt {attempt} failed ({}); retrying in {:?}",
                        e.reason(),
                        wait
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(&self, url: &str, body: &[u8], attempts: u32) -> Attempt {
        let sent = self
            .client
            .post(url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(self.transport_error(e, attempts), None),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Attempt::Retry(self.transport_error(e, attempts), None),
        };
        if status.is_success() {
            return match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => Attempt::Done(v),
                Err(e) => Attempt::Retry(
                    TeacherError::Malformed {
                        attempts,
                        message: format!("body is not JSON ({e}): {}", self.snippet(&bytes)),
                    },
                    None,
                ),
            };
        }
        let code = status.as_u16();
        let err = TeacherError::Status {
            status: code,
            attempts,
            body: self.snippet(&bytes),
        };
        if code == 429 || code == 408 || status.is_server_error() {
            let wait = retry_after.or_else(|| google_retry_delay(&bytes));
            Attempt::Retry(err, wait)
        } else {
            Attempt::Fail(err)
        }
    }

    fn transport_error(&self, e: reqwest::Error, attempts: u32) -> TeacherError {
        if e.is_timeout() {
            TeacherError::Timeout { attempts }
        } else {
            // Without the URL: it could carry a key in its query string.
            let e = e.without_url();
            let mut message = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                message.push_str(": ");
                message.push_str(&s.to_string());
                src = s.source();
            }
            TeacherError::Transport {
                attempts,
                message: self.redact(&message),
            }
        }
    }

    /// The start of a body, for error messages, with the key redacted.
    fn snippet(&self, bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        let text = self.redact(&text);
        let mut s: String = text.chars().take(300).collect();
        if text.chars().count() > 300 {
            s.push('…');
        }
        s
    }
}

/// `Retry-After`: delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Gemini's 429 body: `error.details[].retryDelay` such as `"38s"`.
fn google_retry_delay(bytes: &[u8]) -> Option<Duration> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let details = v.get("error")?.get("details")?.as_array()?;
    details.iter().find_map(|d| {
        let s = d.get("retryDelay")?.as_str()?;
        let secs: f64 = s.strip_suffix('s')?.parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("soon"), None);
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(100));
        let d = parse_retry_after(&future).expect("date");
        assert!(d > Duration::from_secs(90) && d <= Duration::from_secs(100));
    }

    #[test]
    fn google_retry_info() {
        let body = br#"{"error":{"code":429,"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"38s"}]}}"#;
        assert_eq!(google_retry_delay(body), Some(Duration::from_secs(38)));
        assert_eq!(google_retry_delay(b"not json"), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let b1 = p.backoff(1);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b3 = p.backoff(3);
            assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
            let b30 = p.backoff(30);
            assert!(b30 >= Duration::from_millis(500) && b30 <= Duration::from_millis(1000));
        }
    }
}
