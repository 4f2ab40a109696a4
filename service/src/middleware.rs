//! Headers every response carries, errors included, and CORS preflights.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, HttpResponse};
use tracing_actix_web::RequestId;

use crate::configuration::CorsOrigins;

const ALLOWED_METHODS: &str = "GET, HEAD, PUT, POST, DELETE, OPTIONS";
/// What a page on another origin may send: the body's type, the write token
/// and the conditional headers of PUT and DELETE.
const ALLOWED_HEADERS: &str = "content-type, authorization, if-match, if-none-match";
const REQUEST_ID: &str = "x-request-id";
/// What a page on another origin may read: the request id, the `ETag`
/// that a conditional DELETE (`If-Match`) needs, and a 401's challenge.
const EXPOSED: &str = "x-request-id, etag, www-authenticate";

/// Pages on the allowed origins (`CORS_ORIGINS`; by default any, as with the
/// original service: `Access-Control-Allow-Origin: *`) may call the API, and
/// a preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered
/// here. With listed origins, a listed `Origin` is echoed (with `Vary:
/// Origin`, since the answer then depends on it) and any other gets no CORS
/// header at all, so the browser keeps the answer from the page.
pub(crate) async fn common_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let request_id = req.extensions().get::<RequestId>().map(|id| id.to_string());
    // The shared setting (an `Arc`), not a copy of its list per request.
    let configured = req.app_data::<web::Data<CorsOrigins>>().cloned();
    let any = CorsOrigins::Any;
    let origins = configured.as_ref().map_or(&any, |o| o.get_ref());
    let allow_origin = allowed_origin(origins, req.headers().get(header::ORIGIN));
    let mut res =
        if req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            let mut preflight = HttpResponse::NoContent();
            if allow_origin.is_some() {
                preflight
                    .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS))
                    .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS))
                    .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"));
            }
            req.into_response(preflight.finish())
        } else {
            next.call(req).await?.map_into_boxed_body()
        };
    insert(res.headers_mut(), request_id, allow_origin, matches!(origins, CorsOrigins::Listed(_)));
    Ok(res)
}

/// The `Access-Control-Allow-Origin` for a request from `origin`, if any.
fn allowed_origin(origins: &CorsOrigins, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
    match origins {
        CorsOrigins::Any => Some(HeaderValue::from_static("*")),
        CorsOrigins::Listed(listed) => {
            let origin = origin?;
            let text = origin.to_str().ok()?;
            listed.iter().any(|l| l.eq_ignore_ascii_case(text)).then(|| origin.clone())
        }
    }
}

fn insert(headers: &mut HeaderMap, request_id: Option<String>, allow_origin: Option<HeaderValue>, varies: bool) {
    if let Some(origin) = allow_origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
    }
    if varies {
        // Every answer, allowed or not: a cache must not give one origin's
        // answer to another.
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Some(value) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        headers.insert(header::HeaderName::from_static(REQUEST_ID), value);
    }
}
