//! The OpenAPI 3 document, generated from the handlers' annotations.

use actix_web::HttpResponse;
use utoipa::OpenApi;

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
    ),
    tags((name = "books"), (name = "operations"))
)]
pub(crate) struct ApiDoc;

/// `GET /api/v1/openapi.json`
pub(crate) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
