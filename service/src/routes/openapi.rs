//! The OpenAPI 3 document, generated from the handlers' annotations, with
//! what utoipa's annotations cannot say added by `Constraints` (no field but
//! a book's, `Retry-After` on every 503, a distinct `operationId` for `POST`)
//! and by `document` (the links between operations: a stored book's `_id` is
//! what `GET`, `PUT` and `DELETE` take, which clients and schemathesis's
//! stateful phase follow).

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{AdditionalProperties, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{HttpMethod, ObjectBuilder, RefOr};
use utoipa::{Modify, OpenApi};

use crate::auth::WriteAccess;

#[derive(OpenApi)]
#[openapi(
    info(title = "books-ms", description = "Books: list, get, upsert and delete, over MongoDB."),
    paths(
        super::books::list_books,
        super::books::get_book,
        super::books::put_book,
        super::books::delete_book,
        super::health::health,
        super::health::ready,
        super::health::version,
        super::metrics::metrics,
    ),
    modifiers(&Constraints),
    tags((name = "books"), (name = "operations"))
)]
pub(crate) struct ApiDoc;

/// `GET /api/v1/openapi.json`: the document, saying whether this service's
/// writes need the write token.
pub(crate) async fn openapi_json(access: Option<web::Data<WriteAccess>>) -> HttpResponse {
    let writes_need_token = access.is_some_and(|a| a.required());
    HttpResponse::Ok().json(document_for(writes_need_token))
}

/// The document of a service whose writes are open (the default).
pub(crate) fn document() -> serde_json::Value {
    document_for(false)
}

/// The document as served. The writes name the `bearer` scheme; where the
/// service has no write token they also take no credentials (`{}` in their
/// `security`), which is what a client or a fuzzer must be told, since it
/// then gets no 401. Links are added as JSON: utoipa 5 serializes its
/// `Link` with snake_case keys (`operation_id`), which no reader understands.
pub(crate) fn document_for(writes_need_token: bool) -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
    let by_id = |target: &str| json!({ "operationId": target, "parameters": { "id": "$response.body#/_id" } });
    let get = ("GetBook", by_id("get_book"));
    let delete = ("DeleteBook", by_id("delete_book"));
    let replace =
        ("ReplaceBook", json!({ "operationId": "put_book", "requestBody": { "_id": "$response.body#/_id" } }));
    let links = [
        (BOOKS, "put", vec![get.clone(), delete.clone(), replace.clone()]),
        (BOOKS, "post", vec![get.clone(), delete.clone(), replace.clone()]),
        (BOOK, "get", vec![replace, delete]),
        // After a DELETE the book is gone: GET answers 404.
        (BOOK, "delete", vec![get]),
    ];
    for (path, method, links) in links {
        if let Some(ok) = doc.pointer_mut(&format!("/paths/{}/{method}/responses/200", escape(path))) {
            ok["links"] = links.into_iter().map(|(name, link)| (name.to_owned(), link)).collect();
        }
    }
    if writes_need_token {
        for (path, method) in [(BOOKS, "put"), (BOOKS, "post"), (BOOK, "delete")] {
            if let Some(Value::Array(security)) = doc.pointer_mut(&format!("/paths/{}/{method}/security", escape(path)))
            {
                security.retain(|requirement| requirement.as_object().is_some_and(|r| !r.is_empty()));
            }
        }
    }
    // `If-None-Match` on a write takes `*` only: an enum, which readers (and
    // fuzzers) honour where a header's `pattern` is often skipped.
    for method in ["put", "post"] {
        let Some(parameters) = doc.pointer_mut(&format!("/paths/{}/{method}/parameters", escape(BOOKS))) else {
            continue;
        };
        for parameter in parameters.as_array_mut().into_iter().flatten() {
            if parameter["name"] == "If-None-Match" {
                parameter["schema"] = json!({ "type": "string", "enum": ["*"] });
            }
        }
    }
    doc
}

/// A path as a JSON pointer token (RFC 6901).
fn escape(path: &str) -> String {
    path.replace('~', "~0").replace('/', "~1")
}

const BOOKS: &str = "/api/v1/books";
const BOOK: &str = "/api/v1/books/_id/{id}";

struct Constraints;

impl Modify for Constraints {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        // The write token (`WRITE_TOKEN`), which PUT, POST and DELETE name.
        if let Some(components) = doc.components.as_mut() {
            let bearer = HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("The service's write token (`WRITE_TOKEN`), when it has one; reads never need it"))
                .build();
            components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        }
        // Unknown fields are refused (400 naming the field), not dropped.
        if let Some(components) = doc.components.as_mut() {
            for name in ["Book", "BookSummary"] {
                if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
                    object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
                }
            }
        }
        // One annotation serves PUT and POST; an operationId must be unique.
        if let Some(post) = doc.paths.paths.get_mut(BOOKS).and_then(|books| books.post.as_mut()) {
            post.operation_id = Some("post_book".to_owned());
        }
        for item in doc.paths.paths.values_mut() {
            for method in [HttpMethod::Get, HttpMethod::Put, HttpMethod::Post, HttpMethod::Delete] {
                if let Some(operation) = operation_mut(item, method) {
                    retry_after_on_503(operation);
                }
            }
        }
    }
}

fn operation_mut(item: &mut utoipa::openapi::PathItem, method: HttpMethod) -> Option<&mut Operation> {
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Put => item.put.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Delete => item.delete.as_mut(),
        _ => None,
    }
}

fn retry_after_on_503(operation: &mut Operation) {
    let Some(RefOr::T(unavailable)) = operation.responses.responses.get_mut("503") else { return };
    let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
    let header = HeaderBuilder::new().schema(seconds).description(Some("Seconds to wait before trying again")).build();
    unavailable.headers.insert("Retry-After".to_owned(), header);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        document()
    }

    /// A fuzzer sends any value the schema allows: the conditional headers
    /// are optional but never null, and say which values the service takes.
    #[test]
    fn the_conditional_headers_state_what_they_take() {
        let doc = doc();
        for (path, method, name, values) in [
            ("/api/v1/books", "put", "If-None-Match", Some(json!(["*"]))),
            ("/api/v1/books", "post", "If-None-Match", Some(json!(["*"]))),
            // Any value: what is not a matching entity tag is a 412.
            ("/api/v1/books/_id/{id}", "delete", "If-Match", None),
        ] {
            let parameters = doc["paths"][path][method]["parameters"].as_array().expect("parameters");
            let header = parameters.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{method} {name}"));
            assert_eq!(header["in"], "header", "{method} {name}");
            assert_ne!(header["required"], true, "{method} {name}");
            assert_eq!(header["schema"]["type"], "string", "{method} {name}: {}", header["schema"]);
            assert_eq!(header["schema"].get("enum"), values.as_ref(), "{method} {name}");
        }
    }

    /// The characters a `[^...]` class of literal characters and ranges leaves out.
    fn excluded(pattern: &str) -> Vec<(char, char)> {
        let class = pattern.strip_prefix("[^").and_then(|p| p.strip_suffix(']')).expect("a negated class");
        let chars: Vec<char> = class.chars().collect();
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            if i + 2 < chars.len() && chars[i + 1] == '-' {
                ranges.push((chars[i], chars[i + 2]));
                i += 3;
            } else {
                ranges.push((chars[i], chars[i]));
                i += 1;
            }
        }
        ranges
    }

    #[test]
    fn the_title_and_author_pattern_is_exactly_what_the_service_calls_blank() {
        let doc = doc();
        for field in ["title", "author"] {
            let pattern = doc["components"]["schemas"]["Book"]["properties"][field]["pattern"].as_str().unwrap();
            let ranges = excluded(pattern);
            for c in (0..=0x10FFFF).filter_map(char::from_u32) {
                let in_class = ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c));
                assert_eq!(in_class, c.is_whitespace(), "{field}: U+{:04X}", c as u32);
            }
        }
    }

    #[test]
    fn the_writes_name_the_bearer_scheme_and_need_it_only_when_a_token_is_set() {
        for (writes_need_token, security) in [(false, json!([{}, {"bearer": []}])), (true, json!([{"bearer": []}]))] {
            let doc = document_for(writes_need_token);
            assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
            for (path, method) in [(BOOKS, "put"), (BOOKS, "post"), (BOOK, "delete")] {
                let operation = &doc["paths"][path][method];
                assert_eq!(operation["security"], security, "{method} {path}");
                assert!(operation["responses"]["401"]["headers"]["WWW-Authenticate"].is_object(), "{method}");
            }
            assert!(doc["paths"][BOOKS]["get"].get("security").is_none());
            assert!(doc["paths"][BOOK]["get"].get("security").is_none());
        }
    }

    #[test]
    fn every_operation_id_is_unique() {
        let doc = doc();
        let mut ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let all = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all, "{ids:?}");
    }

    #[test]
    fn a_stored_book_links_to_reading_replacing_and_deleting_it() {
        let doc = doc();
        let links = &doc["paths"][BOOKS]["put"]["responses"]["200"]["links"];
        assert_eq!(links["GetBook"]["operationId"], "get_book");
        assert_eq!(links["GetBook"]["parameters"]["id"], "$response.body#/_id");
        assert_eq!(links["DeleteBook"]["operationId"], "delete_book");
        assert_eq!(links["ReplaceBook"]["requestBody"]["_id"], "$response.body#/_id");
        assert_eq!(doc["paths"][BOOKS]["post"]["operationId"], "post_book");
        assert_eq!(doc["components"]["schemas"]["Book"]["additionalProperties"], false);
        assert!(doc["paths"][BOOK]["get"]["responses"]["503"]["headers"]["Retry-After"].is_object());
    }
}
