//! The demo page (`GET /demo`) and the browser SDK it uses (`GET /sdk/switchboard.js`): two
//! files from `web/`, embedded in the binary and served on open routes. Neither holds anything
//! secret; the page reads its token from the URL fragment, which never reaches this server.
//!
//! The page's Content-Security-Policy allows its own inline `<script>` and `<style>` by their
//! SHA-256, computed from the embedded file, so the policy cannot drift from the page: no inline
//! code but those blocks, scripts only from this origin, `fetch` only to this origin.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::IntoResponse;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const PAGE: &str = include_str!("../../web/demo.html");
const SDK: &str = include_str!("../../web/switchboard.js");

static PAGE_CSP: LazyLock<String> = LazyLock::new(|| csp(PAGE));

pub async fn page() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CONTENT_SECURITY_POLICY, PAGE_CSP.as_str()),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (REFERRER_POLICY, "no-referrer"),
            (CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

pub async fn sdk() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (CACHE_CONTROL, "no-cache"),
        ],
        SDK,
    )
}

/// The policy for `page`: each inline `<script>` (one without `src`) and `<style>` block is
/// allowed by its hash, nothing else inline. WebRTC media is not governed by CSP.
fn csp(page: &str) -> String {
    let hashes = |tag: &str| -> String {
        inline_blocks(page, tag).iter().map(|b| format!(" 'sha256-{}'", sha256_base64(b))).collect()
    };
    format!(
        "default-src 'none'; script-src 'self'{}; style-src{}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hashes("script"),
        hashes("style"),
    )
}

/// The text of every `<tag …>…</tag>` in `html` whose opening tag has no `src` attribute. The
/// page is our own file, so a plain scan suffices: no comments or CDATA hide a tag in it.
fn inline_blocks<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        // `<styles>` or `<scripting>` are other tags.
        if !after.starts_with(['>', ' ', '\n', '\t']) {
            rest = after;
            continue;
        }
        let Some(gt) = after.find('>') else { break };
        let Some(end) = after[gt + 1..].find(&close) else { break };
        if !after[..gt].contains("src=") {
            out.push(&after[gt + 1..gt + 1 + end]);
        }
        rest = &after[gt + 1 + end + close.len()..];
    }
    out
}

/// Browsers hash the block's text as parsed, and HTML parsing turns CRLF into LF: a checkout
/// with Windows line ends must still match.
fn sha256_base64(block: &str) -> String {
    let digest = Sha256::digest(block.replace("\r\n", "\n").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_one_inline_script_and_one_style_and_the_policy_names_both() {
        let scripts = inline_blocks(PAGE, "script");
        let styles = inline_blocks(PAGE, "style");
        assert_eq!(scripts.len(), 1, "the page's logic is one inline module");
        assert_eq!(styles.len(), 1);
        assert!(scripts[0].contains("import { Switchboard"), "the inline script is the page's module");
        let policy = csp(PAGE);
        assert!(policy.contains(&format!("script-src 'self' 'sha256-{}'", sha256_base64(scripts[0]))), "{policy}");
        assert!(policy.contains(&format!("style-src 'sha256-{}'", sha256_base64(styles[0]))), "{policy}");
        assert!(policy.starts_with("default-src 'none';"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
    }

    #[test]
    fn blocks_with_src_and_lookalike_tags_are_not_inline_code() {
        let html = "<script src=\"/a.js\"></script><scripting>x</scripting><script type=\"module\">one</script>\
                    <style>b{}</style><styles>no</styles>";
        assert_eq!(inline_blocks(html, "script"), ["one"]);
        assert_eq!(inline_blocks(html, "style"), ["b{}"]);
    }

    #[test]
    fn the_hash_is_the_one_browsers_compute() {
        // `echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64`
        assert_eq!(sha256_base64("alert(1)"), "bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI=");
        assert_eq!(sha256_base64("a\r\nb"), sha256_base64("a\nb"));
    }
}
