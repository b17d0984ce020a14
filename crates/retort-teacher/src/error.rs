//! The typed errors of the teacher side. Every message that can carry text
//! from a server is passed through [`crate::ApiKey::redact`] before it is
//! stored here, so no error ever shows an API key.

use std::path::PathBuf;

/// Why a teacher request, a cache access or an output operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    #[error("no API key: set the {0} environment variable")]
    MissingKey(&'static str),
    #[error("invalid base URL {url:?}: {reason}")]
    BadBaseUrl { url: String, reason: String },
    #[error("could not build the HTTP client: {0}")]
    Client(String),
    #[error("teacher answered HTTP {status} (after {attempts} attempt(s)): {body}")]
    Status {
        status: u16,
        attempts: u32,
        body: String,
    },
    #[error("teacher request timed out (after {attempts} attempt(s))")]
    Timeout { attempts: u32 },
    #[error("could not reach the teacher (after {attempts} attempt(s)): {message}")]
    Transport { attempts: u32, message: String },
    #[error("malformed teacher response (after {attempts} attempt(s)): {message}")]
    Malformed { attempts: u32, message: String },
    #[error("the teacher returned no usable answer: {0}")]
    NoCandidate(String),
    #[error("the teacher produced a malformed function call")]
    MalformedFunctionCall,
    #[error("the cost budget of ${0:.4} is spent")]
    BudgetExhausted(f64),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    BadLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Config(String),
}

impl TeacherError {
    /// A short stable name of the failure, for counting dropped requests.
    pub fn reason(&self) -> &'static str {
        match self {
            TeacherError::MissingKey(_) => "missing_key",
            TeacherError::BadBaseUrl { .. } => "bad_base_url",
            TeacherError::Client(_) => "client",
            TeacherError::Status { status: 429, .. } => "http_429",
            TeacherError::Status { status, .. } if *status >= 500 => "http_5xx",
            TeacherError::Status { .. } => "http_4xx",
            TeacherError::Timeout { .. } => "timeout",
            TeacherError::Transport { .. } => "transport",
            TeacherError::Malformed { .. } => "malformed_response",
            TeacherError::NoCandidate(_) => "no_candidate",
            TeacherError::MalformedFunctionCall => "malformed_function_call",
            TeacherError::BudgetExhausted(_) => "budget_exhausted",
            TeacherError::Io { .. } => "io",
            TeacherError::BadLine { .. } => "bad_line",
            TeacherError::Config(_) => "config",
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TeacherError::Io {
            path: path.into(),
            source,
        }
    }
}
