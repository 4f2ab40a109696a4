//! Headers every response carries, errors included, and CORS preflights.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse};
use tracing_actix_web::RequestId;

const ALLOWED_METHODS: &str = "GET, HEAD, PUT, POST, DELETE, OPTIONS";
const REQUEST_ID: &str = "x-request-id";
/// What a page on another origin may read: the request id, and the `ETag`
/// that a conditional DELETE (`If-Match`) needs.
const EXPOSED: &str = "x-request-id, etag";

/// Pages on any origin may call the API, as with the original service:
/// `Access-Control-Allow-Origin: *` on every response, and a preflight
/// (`OPTIONS` with `Access-Control-Request-Method`) answered here.
pub(crate) async fn common_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let request_id = req.extensions().get::<RequestId>().map(|id| id.to_string());
    let mut res =
        if req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            let allow_headers = req
                .headers()
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static("content-type"));
            let preflight = HttpResponse::NoContent()
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
                .finish();
            req.into_response(preflight)
        } else {
            next.call(req).await?.map_into_boxed_body()
        };
    insert(res.headers_mut(), request_id);
    Ok(res)
}

fn insert(headers: &mut HeaderMap, request_id: Option<String>) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Some(value) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        headers.insert(header::HeaderName::from_static(REQUEST_ID), value);
    }
}
