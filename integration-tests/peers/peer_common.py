"""What the Python peers of the Switchboard integration tests share: their log, the bridge's
HTTP API, the options that say where they join, and the one JSON line they end with.

Standard library only. The peers run as `python3 peers/<script>.py`, which puts this directory
on sys.path, so they import it as a sibling module.
"""

import json
import os
import sys
import urllib.error
import urllib.request


def logger(name):
    """A `log(*args)` that writes `[name] args...` to stderr (stdout is for the JSON report)."""

    def log(*args):
        print("[%s]" % name, *args, file=sys.stderr, flush=True)

    return log


def http_json(method, url, body=None, timeout=10.0):
    """One request to the bridge's API: (status, body as JSON; None when empty, the text when not
    JSON). HTTP error statuses are returned too; transport errors raise."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    # The harness hands every peer its token; the bridge refuses calls without one.
    token = os.environ.get("SB_API_TOKEN")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return e.code, parsed


def participants_url(api, room, suffix=""):
    """`<api>/v1/rooms/<room>/participants<suffix>`."""
    return "%s/v1/rooms/%s/participants%s" % (api.rstrip("/"), room, suffix)


def add_join_args(parser, display_name, api=None, room=None):
    """--api URL and --room NAME (required unless given a default) and --display-name."""
    parser.add_argument("--api", required=api is None, default=api, help="bridge HTTP API base URL")
    parser.add_argument("--room", required=room is None, default=room)
    parser.add_argument("--display-name", default=display_name)


def sample_bytes(sample):
    """The bytes of a GStreamer sample's buffer (from an appsink's pull-sample)."""
    buf = sample.get_buffer()
    return buf.extract_dup(0, buf.get_size())


def exit_with_report(report):
    """Prints the report as the one JSON line on stdout and exits at once: 1 if it has an
    error, else 0. (os._exit: GStreamer threads may still hold the interpreter, and its
    teardown would drop webrtcbin's ICE agent wrapper; see webrtcbin_peer.py.)"""
    print(json.dumps(report), flush=True)
    sys.stderr.flush()
    os._exit(1 if report.get("error") else 0)
