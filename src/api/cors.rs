//! CORS, for browser pages on other origins that use WHIP, WHEP or the JSON API
//! (`http.cors_origins`). Off by default: with no origins listed no CORS header is ever sent.
//!
//! Preflights (OPTIONS) are answered by the layer itself, before routing reaches the token
//! check: a browser never sends credentials on a preflight. Cookies are never used, so
//! credentials are not allowed and `"*"` is safe to offer when an operator asks for it.

use axum::http::{header, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Which origins may call the API from a browser, as `http.cors_origins` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers at all (the default).
    Off,
    /// `"*"`: any origin.
    Any,
    /// These exact origins (`scheme://host[:port]`, as browsers send them).
    List(Vec<HeaderValue>),
}

impl CorsOrigins {
    /// Reads `http.cors_origins`; the error names the entry that is not an origin.
    pub fn parse(list: &[String]) -> Result<CorsOrigins, String> {
        if list.is_empty() {
            return Ok(CorsOrigins::Off);
        }
        if list.iter().any(|o| o == "*") {
            return if list.len() == 1 {
                Ok(CorsOrigins::Any)
            } else {
                Err("\"*\" already allows every origin: list it alone".into())
            };
        }
        list.iter().map(|o| origin(o)).collect::<Result<_, _>>().map(CorsOrigins::List)
    }

    /// The layer for the router, or `None` when CORS is off.
    pub fn layer(&self) -> Option<CorsLayer> {
        let allow = match self {
            CorsOrigins::Off => return None,
            CorsOrigins::Any => AllowOrigin::any(),
            CorsOrigins::List(l) => AllowOrigin::list(l.iter().cloned()),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::POST, Method::GET, Method::PATCH, Method::DELETE, Method::OPTIONS])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                // What a WHIP/WHEP client reads from a 201: the session URL, its entity tag, ICE
                // servers (Link) and the answer's type.
                .expose_headers([header::LOCATION, header::ETAG, header::LINK, header::CONTENT_TYPE]),
        )
    }
}

/// One origin as a browser serializes it: `http` or `https`, a lower-case host, an optional
/// port, nothing after. Anything else would never match, so it is refused at start-up.
fn origin(s: &str) -> Result<HeaderValue, String> {
    let bad = |why: &str| Err(format!("{s:?} is not an origin such as \"https://app.example.com\": {why}"));
    let Some(rest) = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")) else {
        return bad("it must start with https:// or http://");
    };
    if rest.is_empty() {
        return bad("it names no host");
    }
    if rest.contains(['/', '?', '#']) {
        return bad("an origin has no path, query or trailing slash");
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if !rest.chars().all(allowed) {
        return bad("browsers send the host in lower case, with no spaces or other characters");
    }
    HeaderValue::from_str(s).or_else(|_| bad("not a valid header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<CorsOrigins, String> {
        CorsOrigins::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn empty_is_off_and_star_alone_is_any() {
        assert_eq!(parse(&[]), Ok(CorsOrigins::Off));
        assert!(parse(&[]).unwrap().layer().is_none());
        assert_eq!(parse(&["*"]), Ok(CorsOrigins::Any));
        assert!(parse(&["*", "https://a.example"]).unwrap_err().contains("alone"));
    }

    #[test]
    fn origins_are_checked_as_browsers_send_them() {
        let ok = parse(&["https://app.example.com", "http://127.0.0.1:8080", "http://[::1]:3000"]).unwrap();
        assert!(matches!(&ok, CorsOrigins::List(l) if l.len() == 3));
        for (bad, why) in [
            ("app.example.com", "https://"),
            ("https://app.example.com/", "path"),
            ("https://app.example.com/whip", "path"),
            ("https://App.example.com", "lower case"),
            ("https://", "no host"),
            ("ftp://x.example", "https://"),
        ] {
            let e = parse(&["https://fine.example", bad]).unwrap_err();
            assert!(e.contains(bad) && e.contains(why), "{bad}: {e}");
        }
    }
}
