//! Who may write: with a write token configured (`WRITE_TOKEN`,
//! `WRITE_TOKEN_FILE`), PUT, POST and DELETE on the books API need
//! `Authorization: Bearer <token>`; without one, writes are open, as in the
//! original service. Reads are never checked.
//!
//! A write handler takes a [`Writer`] as its first argument: the check runs
//! before the body is read and before the repository is called, so a refused
//! write costs nothing and writes nothing.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The configured write token, kept as its SHA-256 digest: comparing
/// digests in constant time hides the token's length as well as its bytes
/// (`subtle` compares slices of unequal length in no time at all).
#[derive(Clone)]
pub(crate) struct WriteAccess {
    token_digest: Option<[u8; 32]>,
}

impl WriteAccess {
    pub(crate) fn new(token: Option<&SecretString>) -> Self {
        WriteAccess { token_digest: token.map(|t| digest(t.expose_secret())) }
    }

    /// Whether writes need the token.
    pub(crate) fn required(&self) -> bool {
        self.token_digest.is_some()
    }

    /// `Ok` when writes are open or `authorization` carries the token.
    fn check(&self, authorization: Option<&header::HeaderValue>) -> Result<(), ApiError> {
        let Some(expected) = &self.token_digest else { return Ok(()) };
        let presented = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(ApiError::Unauthorized { presented: false })?;
        if bool::from(digest(presented).ct_eq(expected)) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized { presented: true })
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Proof that the request may write: extracting it checks the token.
/// An app built without [`WriteAccess`] is open.
pub(crate) struct Writer;

impl FromRequest for Writer {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let authorization = req.headers().get(header::AUTHORIZATION);
        let result = match req.app_data::<web::Data<WriteAccess>>() {
            Some(access) => access.check(authorization),
            None => Ok(()),
        };
        if let Err(e) = &result {
            tracing::warn!(error = %e, "write refused");
        }
        ready(result.map(|()| Writer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(token: Option<&str>, authorization: Option<&str>) -> Result<(), ApiError> {
        let token = token.map(|t| SecretString::from(t.to_owned()));
        let value = authorization.map(|a| header::HeaderValue::from_str(a).unwrap());
        WriteAccess::new(token.as_ref()).check(value.as_ref())
    }

    #[test]
    fn without_a_token_writes_are_open() {
        assert!(check(None, None).is_ok());
        assert!(check(None, Some("Bearer anything")).is_ok());
    }

    #[test]
    fn only_the_bearer_token_itself_is_taken() {
        assert!(check(Some("s3cret"), Some("Bearer s3cret")).is_ok());
        assert!(check(Some("s3cret"), Some("bearer s3cret")).is_ok());
        for refused in
            [None, Some("s3cret"), Some("Basic s3cret"), Some("Bearer"), Some("Bearer s3cre"), Some("Bearer s3cretx")]
        {
            assert!(matches!(check(Some("s3cret"), refused), Err(ApiError::Unauthorized { .. })), "{refused:?}");
        }
    }
}
