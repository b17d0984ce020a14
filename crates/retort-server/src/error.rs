//! The JSON error body every failure is answered with:
//! `{"error": {"message": "...", "type": "...", "param": ..., "code": ...}}`
//! (the OpenAI error shape, so OpenAI clients raise typed exceptions).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Error `type` of a client mistake.
pub const INVALID_REQUEST: &str = "invalid_request_error";
/// Error `type` of a missing or wrong bearer token.
pub const AUTHENTICATION: &str = "authentication_error";
/// Error `type` of a request that ran past the server's time limit.
pub const TIMEOUT: &str = "timeout_error";
/// Error `type` of a server-side failure (a bug).
pub const SERVER: &str = "server_error";

/// An error answered to the client as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The error `type`: one of the constants of this module.
    pub kind: &'static str,
    /// The request field at fault, e.g. `"messages[1].content"`.
    pub param: Option<String>,
    /// A stable machine-readable code, e.g. `"invalid_json"`.
    pub code: Option<&'static str>,
}

/// Marker put on every error response so the metrics layer can count errors
/// by type.
#[derive(Debug, Clone, Copy)]
pub struct ErrorKind(pub &'static str);

impl ApiError {
    /// A 400 `invalid_request_error`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: INVALID_REQUEST,
            param: None,
            code: None,
        }
    }

    /// A 400 `invalid_request_error` about one field.
    pub fn param(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(param.into()),
            ..ApiError::invalid(message)
        }
    }

    /// A 500 `server_error`.
    pub fn server(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: SERVER,
            param: None,
            code: Some(code),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn with_kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        resp.extensions_mut().insert(ErrorKind(self.kind));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_openai_shape() {
        let e = ApiError::param("prompt", "'prompt' must not be empty").with_code("empty_prompt");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.body(),
            json!({"error": {"message": "'prompt' must not be empty",
                "type": "invalid_request_error", "param": "prompt", "code": "empty_prompt"}})
        );
        let s = ApiError::server("invalid_model_output", "bug");
        assert_eq!(s.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(s.body()["error"]["param"], serde_json::Value::Null);
    }
}
