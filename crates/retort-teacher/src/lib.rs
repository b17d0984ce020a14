//! retort-teacher: live teachers and teacher data.
//!
//! - [`Teacher`]: a Gemini (`generateContent`) or OpenAI-compatible (chat
//!   completions) client with retries ([`RetryPolicy`]), timeouts, a
//!   content-addressed response [`Cache`], a cost meter and a budget. Keys
//!   are [`ApiKey`]s, which never print themselves and are redacted from
//!   every error.
//! - [`synth`]: the prompts with which the teacher writes user requests.
//! - [`distill()`]: a resumable run that synthesizes requests, answers them
//!   with function calling, cleans the calls and appends examples.
//! - [`logprobs`]: token log-probabilities mapped onto the student's decisions.
//! - [`import_log`]: logged OpenAI chat completions turned into examples.

pub mod cache;
pub mod distill;
pub mod error;
pub mod http;
pub mod import_log;
pub mod logprobs;
pub mod output;
pub mod price;
pub mod protocol;
pub mod secret;
pub mod synth;
pub mod teacher;

pub use cache::Cache;
pub use distill::{DistillConfig, DistillReport, distill, example_id};
pub use error::TeacherError;
pub use http::RetryPolicy;
pub use import_log::{ImportReport, import_openai_log};
pub use output::ExampleLog;
pub use price::{Price, price_for};
pub use protocol::{Answer, CallMode, Protocol, RawCall, TokenLogprob, Usage};
pub use secret::ApiKey;
pub use teacher::{Meter, Reply, Teacher, TeacherConfig};
