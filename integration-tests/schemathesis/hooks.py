"""Schemathesis checks of our own (loaded through SCHEMATHESIS_HOOKS by tests/schemathesis.rs).

Every 4xx the API answers must carry its error body, {"error": {"code", "message"}}: a client
reads the code, a person the message (docs/api.md, Errors).
"""

import schemathesis


@schemathesis.check
def error_body_on_4xx(ctx, response, case):
    if not 400 <= response.status_code < 500:
        return None
    where = f"{case.method} {case.formatted_path} answered {response.status_code}"
    ctype = response.headers.get("content-type", [""])
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    if not ctype.startswith("application/json"):
        raise AssertionError(f"{where} with Content-Type {ctype!r}, not the JSON error body")
    try:
        body = response.json()
    except Exception as e:  # noqa: BLE001 - any parse failure is the finding
        raise AssertionError(f"{where} with a body that is not JSON: {e}") from e
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        raise AssertionError(f"{where} without an `error` object: {body!r}")
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not code or not isinstance(message, str) or not message.strip():
        raise AssertionError(f"{where} with an error lacking a code or a message: {body!r}")
    return None


# WHIP and WHEP take their offer as application/sdp: text on the wire, like text/plain.
schemathesis.serializer.alias("application/sdp", "text/plain")
