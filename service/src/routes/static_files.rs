//! Static files from `client/` at the same paths as the original (`GET /`
//! is `client/index.html`, `GET /components/x.js` is
//! `client/components/x.js`), and never anything outside that folder.

use std::path::{Path, PathBuf};

use actix_files::NamedFile;
use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{web, HttpRequest, HttpResponse};
use percent_encoding::percent_decode_str;

use crate::error::ApiError;

/// The canonical path of the static folder, resolved once at start.
#[derive(Debug, Clone)]
pub(crate) struct StaticRoot(Option<PathBuf>);

impl StaticRoot {
    /// A folder that does not exist serves nothing (every path is a 404)
    /// rather than stopping the API from starting.
    pub(crate) fn new(dir: &Path) -> Self {
        match dir.canonicalize() {
            Ok(root) if root.is_dir() => StaticRoot(Some(root)),
            _ => {
                tracing::warn!(dir = %dir.display(), "static folder not found; no static files will be served");
                StaticRoot(None)
            }
        }
    }

    /// Maps a request path to a file inside the root, or `None`.
    ///
    /// The path is percent-decoded once, then refused when any segment is
    /// `..`, `.`, hidden (`.git`), or holds a backslash or NUL; what is left
    /// is resolved (symlinks included) and must still be inside the root.
    pub(crate) fn resolve(&self, raw_path: &str) -> Option<PathBuf> {
        let root = self.0.as_ref()?;
        let decoded = percent_decode_str(raw_path).decode_utf8().ok()?;
        let mut path = root.clone();
        for segment in decoded.split('/').filter(|s| !s.is_empty()) {
            if segment.starts_with('.') || segment.contains(['\\', '\0']) {
                return None;
            }
            path.push(segment);
        }
        if path.is_dir() {
            path.push("index.html");
        }
        let resolved = path.canonicalize().ok()?;
        (resolved.starts_with(root) && resolved.is_file()).then_some(resolved)
    }
}

/// Any `GET`/`HEAD` that no API route took.
pub(crate) async fn static_file(req: HttpRequest, root: web::Data<StaticRoot>) -> Result<HttpResponse, ApiError> {
    if !matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD) {
        return Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" });
    }
    let not_found = || ApiError::FileNotFound(req.path().to_owned());
    let file = root.resolve(req.uri().path()).ok_or_else(not_found)?;
    let named = NamedFile::open_async(&file).await.map_err(|_| not_found())?;
    let mut response = named.into_response(&req);
    // Revalidate every time (ETag / Last-Modified make that a cheap 304), so a
    // deploy's new components are picked up at once.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        CacheControl(vec![CacheDirective::NoCache]).to_string().parse().expect("a valid header"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, StaticRoot) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("site/components")).unwrap();
        std::fs::write(dir.path().join("site/index.html"), "home").unwrap();
        std::fs::write(dir.path().join("site/components/a.js"), "a").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
        let root = StaticRoot::new(&dir.path().join("site"));
        (dir, root)
    }

    #[test]
    fn files_inside_resolve() {
        let (_dir, root) = root();
        assert!(root.resolve("/components/a.js").unwrap().ends_with("components/a.js"));
        assert!(root.resolve("/").unwrap().ends_with("index.html"));
        assert!(root.resolve("/components%2Fa.js").is_some());
    }

    #[test]
    fn ways_out_are_refused() {
        let (dir, root) = root();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), dir.path().join("site/link.txt")).unwrap();
        for path in [
            "/../secret.txt",
            "/components/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "/..%5Csecret.txt",
            "/link.txt",
            "/.hidden",
            "/%00",
            "/missing.js",
        ] {
            assert_eq!(root.resolve(path), None, "{path}");
        }
    }
}
