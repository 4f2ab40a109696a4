//! Every error a client can get, mapped to a status and a JSON body in one
//! place. 500 bodies stay opaque; the logs carry the whole cause chain.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{BookError, BookId};
use crate::repository::RepositoryError;

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code, e.g. `invalid_field`, `book_not_found`.
    pub error: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// The field or parameter at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    InvalidBook(#[from] BookError),
    #[error("the body must be JSON: send it with `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("the body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the body could not be read: {0}")]
    BadBody(String),
    #[error("the body did not arrive within {} ms of the request's headers; send it at once", .limit.as_millis())]
    BodyTimeout { limit: std::time::Duration },
    /// A write without the write token (`presented: false`) or with another.
    #[error("{}", if *presented {
        "the bearer token is not this service's write token; nothing was written"
    } else {
        "writes need `Authorization: Bearer <token>` with this service's write token; nothing was written"
    })]
    Unauthorized { presented: bool },
    #[error("no book with _id {0}")]
    BookNotFound(BookId),
    #[error("no such file: {0}")]
    FileNotFound(String),
    #[error("method not allowed here; allowed: {allow}")]
    MethodNotAllowed {
        /// The methods the resource takes, for the `Allow` header (RFC 9110).
        allow: &'static str,
    },
    /// A create-only PUT (`If-None-Match: *`) on an `_id` that is taken.
    #[error("a book with _id {0} exists; nothing was written (the PUT had If-None-Match: *, create only)")]
    BookExists(BookId),
    /// A conditional request whose condition is false: nothing was changed.
    #[error("{0}")]
    PreconditionFailed(String),
    /// A conditional header the service does not take.
    #[error("{0}")]
    BadPrecondition(String),
    #[error(transparent)]
    Database(#[from] RepositoryError),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidBook(BookError::MalformedJson(_)) => "malformed_json",
            ApiError::InvalidBook(BookError::NotAnObject) => "not_a_book",
            ApiError::InvalidBook(BookError::InvalidField { .. }) => "invalid_field",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::BadBody(_) => "bad_body",
            ApiError::BodyTimeout { .. } => "request_timeout",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::BookNotFound(_) => "book_not_found",
            ApiError::FileNotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::BookExists(_) => "book_exists",
            ApiError::PreconditionFailed(_) => "precondition_failed",
            ApiError::BadPrecondition(_) => "invalid_precondition",
            ApiError::Database(RepositoryError::Other(_)) | ApiError::Internal(_) => "internal",
            ApiError::Database(RepositoryError::OutcomeUnknown(_)) => "write_outcome_unknown",
            ApiError::Database(RepositoryError::InvalidStored(_)) => "stored_book_invalid",
            ApiError::Database(_) => "database_unavailable",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidBook(_) | ApiError::BadBody(_) | ApiError::BadPrecondition(_) => StatusCode::BAD_REQUEST,
            ApiError::BookExists(_) | ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::BookNotFound(_) | ApiError::FileNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            // The request was fine and the data is at fault: a server error,
            // but one that names the document and what is wrong with it.
            ApiError::Database(RepositoryError::Other(_) | RepositoryError::InvalidStored(_))
            | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %error_chain(self), "request failed");
        }
        let message = match self {
            ApiError::Database(RepositoryError::Other(_)) | ApiError::Internal(_) => {
                "internal error; see the service's logs".to_owned()
            }
            ApiError::Database(RepositoryError::OutcomeUnknown(_)) => {
                "the database did not confirm the write, which may have been applied: a PUT is safe to retry (it \
                 replaces the whole book); after a DELETE, GET the book to see whether it is gone"
                    .to_owned()
            }
            ApiError::Database(RepositoryError::InvalidStored(invalid)) => format!(
                "{invalid}; it was written by another program: a PUT of the whole book replaces it, a DELETE removes it"
            ),
            ApiError::Database(_) => "the database is unavailable; try again shortly".to_owned(),
            other => other.to_string(),
        };
        let field = match self {
            ApiError::InvalidBook(e) => e.field_name().map(str::to_owned),
            ApiError::Database(RepositoryError::InvalidStored(invalid)) => invalid.field().map(str::to_owned),
            _ => None,
        };
        let mut response = HttpResponse::build(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header(("Retry-After", "2"));
        }
        if let ApiError::BodyTimeout { .. } = self {
            // The rest of the body may still be on its way: this connection
            // cannot carry another request.
            response.force_close();
        }
        if let ApiError::Unauthorized { presented } = self {
            // RFC 6750: a request with no credentials gets the bare challenge.
            let challenge = if *presented { r#"Bearer error="invalid_token""# } else { "Bearer" };
            response.insert_header((actix_web::http::header::WWW_AUTHENTICATE, challenge));
        }
        if let ApiError::MethodNotAllowed { allow } = self {
            response.insert_header(("Allow", *allow));
        }
        response.json(ErrorBody { error: self.code(), message, field })
    }
}

/// `outer: inner: innermost`, for one log line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
