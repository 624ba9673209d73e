//! The route table: every endpoint is added through [`Routes`], which
//! builds the axum router and, beside it, the list of `(method, path)`
//! pairs it serves. The contract test checks that list against the
//! published API description (`docs/api`, served at `/v1/openapi.json`),
//! so an endpoint cannot be added without a documented, tested shape.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing;
use axum::Router;

/// One endpoint the daemon serves: `path` is the template as the API
/// description writes it (`/v1/sprites/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub method: Method,
    pub path: String,
}

/// A router under construction and the endpoints added to it.
pub(crate) struct Routes<S> {
    router: Router<S>,
    endpoints: Vec<Endpoint>,
}

macro_rules! method {
    ($name:ident, $method:expr) => {
        pub(crate) fn $name<H, T>(self, path: &str, handler: H) -> Self
        where
            H: Handler<T, S>,
            T: 'static,
        {
            self.at($method, path, routing::$name(handler))
        }
    };
}

impl<S> Routes<S>
where
    S: Clone + Send + Sync + 'static,
{
    pub(crate) fn new() -> Self {
        Routes {
            router: Router::new(),
            endpoints: Vec::new(),
        }
    }

    method!(get, Method::GET);
    method!(post, Method::POST);
    method!(put, Method::PUT);
    method!(delete, Method::DELETE);

    /// axum merges method routers added for the same path, so each method
    /// of a path is its own line of the table.
    fn at(mut self, method: Method, path: &str, route: routing::MethodRouter<S>) -> Self {
        self.router = self.router.route(path, route);
        self.endpoints.push(Endpoint {
            method,
            path: path.to_string(),
        });
        self
    }

    /// `inner`'s endpoints, served under `prefix`.
    pub(crate) fn nest(mut self, prefix: &str, inner: Routes<S>) -> Self {
        self.router = self.router.nest(prefix, inner.router);
        self.endpoints
            .extend(inner.endpoints.into_iter().map(|e| Endpoint {
                method: e.method,
                path: format!("{prefix}{}", e.path),
            }));
        self
    }

    pub(crate) fn into_parts(self) -> (Router<S>, Vec<Endpoint>) {
        (self.router, self.endpoints)
    }
}
