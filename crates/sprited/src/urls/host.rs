//! Which sprite, if any, a request is for: `<name>.<url-domain>` by the
//! Host header or the authority of an absolute-form request target.
//!
//! Exact matching only, so one sprite's content is never served on another
//! name: lowercased, the port dropped, and nothing else forgiven (a trailing
//! dot, nested labels, punycode and non-ASCII hosts are refused, not
//! "corrected" into a sprite name).

use axum::http::header::HOST;
use axum::http::{HeaderMap, Uri};

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Not a sprite host: the API.
    Api,
    /// `<name>.<url-domain>`.
    Sprite(String),
    /// A host under the URL domain that is no sprite name, or an ambiguous
    /// request: refused with 400.
    Refuse(&'static str),
}

/// Route a request by its target and headers.
pub fn route(uri: &Uri, headers: &HeaderMap, domain: &str) -> Route {
    let mut hosts = headers.get_all(HOST).iter();
    let header = match (hosts.next(), hosts.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => return Route::Refuse("more than one Host header"),
        (Some(v), None) => match v.to_str() {
            Ok(s) => Some(s),
            Err(_) => return Route::Refuse("the Host header is not plain ASCII"),
        },
    };
    let authority = uri.authority().map(|a| a.as_str());
    let host = match (authority, header) {
        (Some(a), Some(h)) => {
            if strip_port(&a.to_ascii_lowercase()) != strip_port(&h.to_ascii_lowercase()) {
                return Route::Refuse(
                    "the Host header and the request target name different hosts",
                );
            }
            a
        }
        (Some(a), None) => a,
        (None, Some(h)) => h,
        (None, None) => return Route::Api,
    };
    classify(&strip_port(&host.to_ascii_lowercase()), domain)
}

/// `host:port` → `host`; an IPv6 literal stays as it is (it is never a
/// sprite host).
fn strip_port(host: &str) -> String {
    if host.starts_with('[') {
        return host.to_string();
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => host.to_string(),
    }
}

fn classify(host: &str, domain: &str) -> Route {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if host == domain || host == format!("{domain}.") {
        return Route::Api;
    }
    let under = |suffix: &str| host.strip_suffix(suffix).and_then(|h| h.strip_suffix('.'));
    if under(&format!("{domain}.")).is_some() {
        return Route::Refuse("a host name with a trailing dot is not a sprite URL");
    }
    let Some(label) = under(&domain) else {
        return Route::Api;
    };
    if label.contains('.') {
        return Route::Refuse("no sprite has a dotted name");
    }
    if label.starts_with("xn--") {
        return Route::Refuse("internationalised (punycode) names are not sprite names");
    }
    if sprites_api::name::validate(label).is_err() {
        return Route::Refuse("not a sprite name");
    }
    Route::Sprite(label.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const D: &str = "sprites.localhost";

    fn with_host(uri: &str, host: Option<&[u8]>) -> Route {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(HOST, HeaderValue::from_bytes(v).expect("header"));
        }
        route(&uri.parse().expect("uri"), &h, D)
    }

    #[test]
    fn exact_names_route_to_sprites() {
        assert_eq!(
            with_host("/", Some(b"web.sprites.localhost")),
            Route::Sprite("web".into())
        );
        assert_eq!(
            with_host("/", Some(b"web.sprites.localhost:8080")),
            Route::Sprite("web".into())
        );
        assert_eq!(
            with_host("/", Some(b"WEB.Sprites.LocalHost")),
            Route::Sprite("web".into())
        );
        assert_eq!(
            with_host("/../other/x", Some(b"web.sprites.localhost")),
            Route::Sprite("web".into())
        );
    }

    #[test]
    fn other_hosts_go_to_the_api() {
        assert_eq!(
            with_host("/v1/sprites", Some(b"127.0.0.1:8080")),
            Route::Api
        );
        assert_eq!(with_host("/v1/sprites", Some(b"localhost")), Route::Api);
        assert_eq!(with_host("/", Some(b"sprites.localhost")), Route::Api);
        assert_eq!(with_host("/", Some(b"[::1]:80")), Route::Api);
        assert_eq!(with_host("/", None), Route::Api);
        assert_eq!(with_host("/", Some(b"websprites.localhost")), Route::Api);
    }

    #[test]
    fn tricks_are_refused() {
        for h in [
            &b"web.sprites.localhost."[..],
            b"web.sprites.localhost.:80",
            b"a.web.sprites.localhost",
            b"xn--wb-fka.sprites.localhost",
            b"w\xc3\xa9b.sprites.localhost",
            b"-web.sprites.localhost",
            b"web_1.sprites.localhost",
            b".sprites.localhost",
        ] {
            assert!(
                matches!(with_host("/", Some(h)), Route::Refuse(_)),
                "{}",
                String::from_utf8_lossy(h)
            );
        }
    }

    #[test]
    fn absolute_targets_route_by_authority_and_must_agree() {
        assert_eq!(
            with_host("http://web.sprites.localhost/x", None),
            Route::Sprite("web".into())
        );
        assert_eq!(
            with_host(
                "http://web.sprites.localhost:9/x",
                Some(b"web.sprites.localhost")
            ),
            Route::Sprite("web".into())
        );
        assert!(matches!(
            with_host(
                "http://other.sprites.localhost/",
                Some(b"web.sprites.localhost")
            ),
            Route::Refuse(_)
        ));
        assert!(matches!(
            with_host("http://other.sprites.localhost/", Some(b"127.0.0.1")),
            Route::Refuse(_)
        ));
    }

    #[test]
    fn two_host_headers_are_refused() {
        let mut h = HeaderMap::new();
        h.append(HOST, HeaderValue::from_static("a.sprites.localhost"));
        h.append(HOST, HeaderValue::from_static("b.sprites.localhost"));
        assert!(matches!(
            route(&"/".parse().expect("uri"), &h, D),
            Route::Refuse(_)
        ));
    }
}

/// Issue 19's fuzzing: any host routes somewhere, and only a valid label
/// directly under the domain is a sprite.
#[cfg(test)]
mod properties {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_host_routes(host in prop::collection::vec(any::<u8>(), 0..80), path in "/[ -~]{0,20}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&host) {
                h.insert(HOST, v);
            }
            let Ok(uri) = path.parse::<Uri>() else { return Ok(()) };
            if let Route::Sprite(name) = route(&uri, &h, "sprites.localhost") {
                prop_assert!(sprites_api::name::validate(&name).is_ok());
                let host = String::from_utf8_lossy(&host).to_ascii_lowercase();
                let want = format!("{name}.sprites.localhost");
                prop_assert!(host.starts_with(&want));
            }
        }

        #[test]
        fn sprite_hosts_route_to_their_sprite(name in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", port in prop::option::of(1u16..)) {
            prop_assume!(!name.starts_with("xn--"));
            let host = match port {
                Some(p) => format!("{name}.sprites.localhost:{p}"),
                None => format!("{name}.sprites.localhost"),
            };
            let mut h = HeaderMap::new();
            h.insert(HOST, HeaderValue::from_str(&host).unwrap());
            prop_assert_eq!(route(&"/".parse().unwrap(), &h, "sprites.localhost"), Route::Sprite(name));
        }
    }
}
