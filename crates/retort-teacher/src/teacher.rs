//! A live teacher: one protocol, one model, an HTTP client with retries, an
//! optional response cache and a cost meter with an optional budget.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use retort_core::Tool;
use serde_json::Value;

use crate::cache::Cache;
use crate::error::TeacherError;
use crate::http::{Http, RetryPolicy};
use crate::price::{Price, price_for};
use crate::protocol::{self, Answer, CallMode, Options, Protocol};
use crate::secret::ApiKey;

/// How to reach a teacher.
#[derive(Debug, Clone)]
pub struct TeacherConfig {
    pub protocol: Protocol,
    /// Model name; the protocol's default when `None`.
    pub model: Option<String>,
    /// Base URL; the official endpoint when `None`.
    pub base_url: Option<String>,
    /// The key; required for the official endpoints only (local
    /// OpenAI-compatible servers usually take none).
    pub api_key: Option<ApiKey>,
    pub retry: RetryPolicy,
    /// Top alternatives per token to ask for (0: no log-probabilities).
    /// Switched off by itself when the server rejects the field.
    pub top_logprobs: u8,
    /// Price override; otherwise looked up in [`crate::price`].
    pub price: Option<Price>,
    /// Stop sending new paid requests once this many USD are estimated spent.
    pub max_cost: Option<f64>,
}

impl TeacherConfig {
    /// A configuration with defaults and the key from the protocol's
    /// environment variable (`GEMINI_API_KEY` / `OPENAI_API_KEY`).
    pub fn from_env(protocol: Protocol) -> Self {
        TeacherConfig {
            protocol,
            model: None,
            base_url: None,
            api_key: ApiKey::from_env(protocol.key_env()),
            retry: RetryPolicy::default(),
            top_logprobs: 5,
            price: None,
            max_cost: None,
        }
    }
}

/// Counters of one teacher's traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Meter {
    /// Exchanges answered by the server (each may have taken retries).
    pub paid_requests: u64,
    /// Exchanges answered from the cache.
    pub cache_hits: u64,
    /// Attempts beyond the first, over all exchanges.
    pub retries: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Estimated USD of the paid requests; `None` when the price is unknown.
    pub cost_usd: Option<f64>,
}

/// A teacher answer and where it came from.
#[derive(Debug, Clone)]
pub struct Reply {
    pub answer: Answer,
    pub cached: bool,
}

#[derive(Debug, Default)]
struct Disabled {
    temperature: bool,
    logprobs: bool,
    json_mode: bool,
}

/// A live teacher.
pub struct Teacher {
    protocol: Protocol,
    model: String,
    url: String,
    http: Http,
    cache: Option<Cache>,
    top_logprobs: u8,
    price: Option<Price>,
    max_cost: Option<f64>,
    disabled: Mutex<Disabled>,
    meter: Mutex<Meter>,
    in_flight: AtomicU64,
}

impl std::fmt::Debug for Teacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teacher")
            .field("protocol", &self.protocol)
            .field("model", &self.model)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

impl Teacher {
    pub fn new(config: TeacherConfig, cache: Option<Cache>) -> Result<Self, TeacherError> {
        let protocol = config.protocol;
        let model = config
            .model
            .clone()
            .unwrap_or_else(|| protocol.default_model().to_string());
        let model = model.trim().trim_start_matches("models/").to_string();
        if model.is_empty() || (protocol == Protocol::Gemini && model.contains(['/', '?', '#'])) {
            return Err(TeacherError::Config(format!(
                "invalid model name {model:?}"
            )));
        }
        let official = config.base_url.is_none();
        let base = config
            .base_url
            .clone()
            .unwrap_or_else(|| protocol.default_base_url().to_string());
        let key = config.api_key.clone();
        let redact = |s: &str| match &key {
            Some(k) => k.redact(s),
            None => s.to_string(),
        };
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(TeacherError::BadBaseUrl {
                url: redact(&base),
                reason: "must start with http:// or https://".into(),
            });
        }
        if key.is_none() && (official || protocol == Protocol::Gemini) {
            return Err(TeacherError::MissingKey(protocol.key_env()));
        }
        let (url, auth) = match protocol {
            Protocol::Gemini => (
                join_url(&base, &format!("v1beta/models/{model}:generateContent")),
                key.as_ref()
                    .map(|k| ("x-goog-api-key", k.expose().to_string())),
            ),
            Protocol::OpenAi => (
                join_url(&base, "chat/completions"),
                key.as_ref()
                    .map(|k| ("authorization", format!("Bearer {}", k.expose()))),
            ),
        };
        let http = Http::new(config.retry.clone(), key, auth)?;
        let price = config.price.or_else(|| price_for(&model));
        if config.max_cost.is_some() && price.is_none() {
            return Err(TeacherError::Config(format!(
                "--max-cost needs a price, and model {model:?} is not in the price table: \
                 pass --price-input and --price-output (USD per million tokens)"
            )));
        }
        Ok(Teacher {
            protocol,
            model,
            url,
            http,
            cache,
            top_logprobs: config.top_logprobs,
            price,
            max_cost: config.max_cost,
            disabled: Mutex::new(Disabled::default()),
            meter: Mutex::new(Meter {
                cost_usd: price.map(|_| 0.0),
                ..Meter::default()
            }),
            in_flight: AtomicU64::new(0),
        })
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// The counters so far.
    pub fn meter(&self) -> Meter {
        self.meter.lock().map(|m| *m).unwrap_or_default()
    }

    /// Whether `text` contains this teacher's API key.
    pub fn leaks_key(&self, text: &str) -> bool {
        self.http.key().is_some_and(|k| k.appears_in(text))
    }

    /// Redact the key from `text`.
    pub fn redact(&self, text: &str) -> String {
        self.http.redact(text)
    }

    fn options(&self, json_mode: bool, temperature: f64) -> Options {
        let d = self.disabled.lock().map(|d| Disabled {
            temperature: d.temperature,
            logprobs: d.logprobs,
            json_mode: d.json_mode,
        });
        let d = d.unwrap_or_default();
        Options {
            temperature: (!d.temperature).then_some(temperature),
            // Log-probabilities are for answers; synthesis (JSON mode) needs none.
            top_logprobs: if d.logprobs || json_mode {
                0
            } else {
                self.top_logprobs
            },
            json_mode: json_mode && !d.json_mode,
        }
    }

    /// On a 400 that names an optional field we sent, switch the field off.
    /// Returns whether something was switched off.
    fn disable_rejected(&self, err: &TeacherError, opts: Options) -> bool {
        let TeacherError::Status {
            status: 400, body, ..
        } = err
        else {
            return false;
        };
        let body = body.to_ascii_lowercase();
        let Ok(mut d) = self.disabled.lock() else {
            return false;
        };
        if opts.top_logprobs > 0 && body.contains("logprob") {
            tracing::warn!("the teacher rejects log-probabilities; continuing without them");
            d.logprobs = true;
            return true;
        }
        if opts.json_mode
            && (body.contains("response_format")
                || body.contains("responsemimetype")
                || body.contains("json mode"))
        {
            tracing::warn!("the teacher rejects JSON mode; relying on the prompt instead");
            d.json_mode = true;
            return true;
        }
        if opts.temperature.is_some() && body.contains("temperature") {
            tracing::warn!("the teacher rejects `temperature`; using its default");
            d.temperature = true;
            return true;
        }
        false
    }

    fn budget_check(&self) -> Result<(), TeacherError> {
        let Some(max) = self.max_cost else {
            return Ok(());
        };
        let m = self.meter();
        let spent = m.cost_usd.unwrap_or(0.0);
        // Requests in flight will cost about the average so far.
        let avg = if m.paid_requests > 0 {
            spent / m.paid_requests as f64
        } else {
            0.0
        };
        let projected = spent + avg * self.in_flight.load(Ordering::SeqCst) as f64;
        if spent >= max || projected >= max {
            Err(TeacherError::BudgetExhausted(max))
        } else {
            Ok(())
        }
    }

    /// Whether the budget (if any) is spent.
    pub fn budget_exhausted(&self) -> bool {
        self.budget_check().is_err()
    }

    fn body(&self, system: &str, user: &str, tools: &[Tool], mode: CallMode, o: Options) -> Value {
        match self.protocol {
            Protocol::Gemini => protocol::gemini_body(system, user, tools, mode, o),
            Protocol::OpenAi => protocol::openai_body(&self.model, system, user, tools, mode, o),
        }
    }

    fn parse(&self, v: &Value) -> Result<Answer, TeacherError> {
        match self.protocol {
            Protocol::Gemini => protocol::parse_gemini(v),
            Protocol::OpenAi => protocol::parse_openai(v),
        }
        .map_err(|e| match e {
            TeacherError::Malformed { attempts, message } => TeacherError::Malformed {
                attempts,
                message: self.redact(&message),
            },
            TeacherError::NoCandidate(m) => TeacherError::NoCandidate(self.redact(&m)),
            other => other,
        })
    }

    /// Ask the teacher to answer `user` with `tools` (function calling).
    pub async fn answer(
        &self,
        system: &str,
        user: &str,
        tools: &[Tool],
        mode: CallMode,
    ) -> Result<Reply, TeacherError> {
        self.exchange(system, user, tools, mode, false, 0.0).await
    }

    /// Plain generation with JSON output (no tools), at `temperature`.
    pub async fn generate_json(
        &self,
        system: &str,
        user: &str,
        temperature: f64,
    ) -> Result<Reply, TeacherError> {
        self.exchange(system, user, &[], CallMode::Auto, true, temperature)
            .await
    }

    async fn exchange(
        &self,
        system: &str,
        user: &str,
        tools: &[Tool],
        mode: CallMode,
        json_mode: bool,
        temperature: f64,
    ) -> Result<Reply, TeacherError> {
        let namespace = format!("{}\n{}", self.protocol.name(), self.model);
        // At most one retry per optional field the server may reject.
        for _ in 0..4 {
            let opts = self.options(json_mode, temperature);
            let body = self.body(system, user, tools, mode, opts);
            let bytes =
                serde_json::to_vec(&body).map_err(|e| TeacherError::Config(e.to_string()))?;
            let key = Cache::key(&namespace, &bytes);
            if let Some(cache) = &self.cache
                && let Some(v) = cache.get(&key)
                && let Ok(answer) = self.parse(&v)
            {
                if let Ok(mut m) = self.meter.lock() {
                    m.cache_hits += 1;
                }
                return Ok(Reply {
                    answer,
                    cached: true,
                });
            }
            self.budget_check()?;
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let result = self.http.post_json(&self.url, &bytes).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let reply = match result {
                Ok(r) => r,
                Err(e) => {
                    if self.disable_rejected(&e, opts) {
                        continue;
                    }
                    return Err(e);
                }
            };
            let parsed = self.parse(&reply.body);
            if let Ok(mut m) = self.meter.lock() {
                m.paid_requests += 1;
                m.retries += u64::from(reply.attempts.saturating_sub(1));
                if let Ok(a) = &parsed {
                    m.input_tokens += a.usage.input_tokens;
                    m.output_tokens += a.usage.output_tokens;
                    if let (Some(p), Some(c)) = (self.price, m.cost_usd.as_mut()) {
                        *c += p.cost(a.usage.input_tokens, a.usage.output_tokens);
                    }
                }
            }
            let answer = parsed?;
            if let Some(cache) = &self.cache {
                let text = reply.body.to_string();
                if self.leaks_key(&text) {
                    tracing::warn!("not caching a teacher response that contains the API key");
                } else if let Err(e) = cache.put(&key, &reply.body) {
                    tracing::warn!("could not cache a teacher response: {e}");
                }
            }
            return Ok(Reply {
                answer,
                cached: false,
            });
        }
        Err(TeacherError::Config(
            "the teacher kept rejecting the request's optional fields".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors() {
        let mut c = TeacherConfig::from_env(Protocol::Gemini);
        c.api_key = None;
        assert!(matches!(
            Teacher::new(c.clone(), None),
            Err(TeacherError::MissingKey("GEMINI_API_KEY"))
        ));
        c.api_key = ApiKey::new("k-123456");
        c.base_url = Some("ftp://x".into());
        assert!(matches!(
            Teacher::new(c.clone(), None),
            Err(TeacherError::BadBaseUrl { .. })
        ));
        c.base_url = Some("http://127.0.0.1:9/".into());
        c.model = Some("models/my-own-model".into());
        c.max_cost = Some(1.0);
        let e = Teacher::new(c.clone(), None).expect_err("no price");
        assert!(e.to_string().contains("--price-input"), "{e}");
        c.max_cost = None;
        let t = Teacher::new(c, None).expect("ok");
        assert_eq!(
            t.url,
            "http://127.0.0.1:9/v1beta/models/my-own-model:generateContent"
        );
        assert!(!format!("{t:?}").contains("k-123456"));

        // A local OpenAI-compatible server needs no key.
        let mut o = TeacherConfig::from_env(Protocol::OpenAi);
        o.api_key = None;
        o.base_url = Some("http://localhost:11434/v1".into());
        let t = Teacher::new(o, None).expect("keyless local");
        assert_eq!(t.url, "http://localhost:11434/v1/chat/completions");
    }
}
