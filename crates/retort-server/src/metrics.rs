//! Prometheus metrics, hand-written (text exposition format 0.0.4). One
//! [`Metrics`] per server instance: nothing global.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the latency histogram buckets.
pub const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The endpoints counted by name; anything else is `other`.
pub const ENDPOINTS: [&str; 5] = [
    "/tool-call",
    "/v1/chat/completions",
    "/v1/responses",
    "/healthz",
    "/metrics",
];

/// The metrics label of a request path.
pub fn endpoint_label(path: &str) -> &'static str {
    ENDPOINTS
        .iter()
        .find(|e| **e == path)
        .copied()
        .unwrap_or("other")
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Counters and histograms of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    model_latency: Mutex<Histogram>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    model_calls: AtomicU64,
    calls_returned: AtomicU64,
    no_call_answers: AtomicU64,
    fallbacks: AtomicU64,
    fallback_failures: AtomicU64,
    invalid_outputs: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another request panicked while counting;
    // the counters are still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    /// One finished HTTP request.
    pub fn observe_request(&self, endpoint: &'static str, status: u16, secs: f64) {
        *lock(&self.requests).entry((endpoint, status)).or_default() += 1;
        lock(&self.latency)
            .entry(endpoint)
            .or_default()
            .observe(secs);
    }

    /// One error answered, by error type.
    pub fn observe_error(&self, kind: &'static str) {
        *lock(&self.errors).entry(kind).or_default() += 1;
    }

    /// One model call and its duration.
    pub fn observe_model_call(&self, secs: f64, calls: usize) {
        self.model_calls.fetch_add(1, Ordering::Relaxed);
        lock(&self.model_latency).observe(secs);
        if calls == 0 {
            self.no_call_answers.fetch_add(1, Ordering::Relaxed);
        }
        self.calls_returned
            .fetch_add(calls as u64, Ordering::Relaxed);
    }

    pub fn inc_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn inc_fallback_failure(&self) {
        self.fallback_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn inc_invalid_output(&self) {
        self.invalid_outputs.fetch_add(1, Ordering::Relaxed);
    }

    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    pub fn model_calls(&self) -> u64 {
        self.model_calls.load(Ordering::Relaxed)
    }

    pub fn invalid_outputs(&self) -> u64 {
        self.invalid_outputs.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP retort_http_requests_total HTTP requests by endpoint and status code.\n",
        );
        out.push_str("# TYPE retort_http_requests_total counter\n");
        for ((ep, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "retort_http_requests_total{{endpoint=\"{ep}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP retort_http_request_duration_seconds End-to-end request latency by endpoint.\n",
        );
        out.push_str("# TYPE retort_http_request_duration_seconds histogram\n");
        for (ep, h) in lock(&self.latency).iter() {
            h.render(
                &mut out,
                "retort_http_request_duration_seconds",
                &format!("endpoint=\"{ep}\""),
            );
        }
        out.push_str(
            "# HELP retort_model_duration_seconds Time spent inside the model per call.\n",
        );
        out.push_str("# TYPE retort_model_duration_seconds histogram\n");
        lock(&self.model_latency).render(&mut out, "retort_model_duration_seconds", "");
        out.push_str("# HELP retort_errors_total Error responses by error type.\n");
        out.push_str("# TYPE retort_errors_total counter\n");
        for (kind, n) in lock(&self.errors).iter() {
            let _ = writeln!(out, "retort_errors_total{{type=\"{kind}\"}} {n}");
        }
        let counters = [
            (
                "retort_model_calls_total",
                "Requests answered by running the model.",
                &self.model_calls,
            ),
            (
                "retort_calls_returned_total",
                "Function calls produced by the model.",
                &self.calls_returned,
            ),
            (
                "retort_no_call_answers_total",
                "Model answers with no call (no tool fits).",
                &self.no_call_answers,
            ),
            (
                "retort_fallbacks_total",
                "Requests answered by the fallback teacher (confidence below the threshold).",
                &self.fallbacks,
            ),
            (
                "retort_fallback_failures_total",
                "Fallback attempts that failed (upstream error or invalid teacher answer); the model's answer was served.",
                &self.fallback_failures,
            ),
            (
                "retort_invalid_outputs_total",
                "Model outputs that failed re-validation (each one is a bug and a 500).",
                &self.invalid_outputs,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.observe_request("/tool-call", 200, 0.003);
        m.observe_request("/tool-call", 200, 0.2);
        m.observe_request("/tool-call", 400, 0.0005);
        m.observe_error("invalid_request_error");
        m.observe_model_call(0.002, 1);
        m.inc_fallback();
        m.inc_invalid_output();
        let t = m.render();
        assert!(
            t.contains("retort_http_requests_total{endpoint=\"/tool-call\",status=\"200\"} 2\n")
        );
        assert!(
            t.contains("retort_http_requests_total{endpoint=\"/tool-call\",status=\"400\"} 1\n")
        );
        assert!(t.contains(
            "retort_http_request_duration_seconds_bucket{endpoint=\"/tool-call\",le=\"0.005\"} 2\n"
        ));
        assert!(t.contains(
            "retort_http_request_duration_seconds_bucket{endpoint=\"/tool-call\",le=\"+Inf\"} 3\n"
        ));
        assert!(
            t.contains("retort_http_request_duration_seconds_count{endpoint=\"/tool-call\"} 3\n")
        );
        assert!(t.contains("retort_model_duration_seconds_count 1\n"));
        assert!(t.contains("retort_errors_total{type=\"invalid_request_error\"} 1\n"));
        assert!(t.contains("retort_fallbacks_total 1\n"));
        assert!(t.contains("retort_invalid_outputs_total 1\n"));
        assert_eq!(endpoint_label("/v1/responses"), "/v1/responses");
        assert_eq!(endpoint_label("/admin"), "other");
    }
}
