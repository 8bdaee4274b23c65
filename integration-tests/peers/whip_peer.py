#!/usr/bin/python3
"""A GStreamer webrtcbin WHIP publisher or WHEP player, for the Switchboard integration tests.

It is peers/webrtcbin_peer.py (imported, unchanged: the same pipeline, the same roles
--publish-tone HZ and --receive SECONDS) with WHIP/WHEP signalling instead of the JSON API:
the offer, complete with every ICE candidate (no trickle), is POSTed as application/sdp to
<api>/whip/<room> (--protocol whip) or <api>/whep/<room> (--protocol whep), the 201's body is
the answer and its Location header the session URL, which the peer DELETEs when it is done
(unless --no-leave). The token is --token, or SB_API_TOKEN.

With --save-audio FILE the received audio (S16LE mono, 48 kHz) is written to FILE, so a test
can analyse it itself. Run with Debian's /usr/bin/python3.

Output: webrtcbin_peer.py's JSON line, with "join": {"status", "location", "content_type"}
and "left_status" the DELETE's status.
"""

import os
import sys
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import webrtcbin_peer as base  # noqa: E402
from webrtcbin_peer import GLib, np  # noqa: E402

log = base.log


def http_sdp(method, url, token, body=None, timeout=10.0):
    """One WHIP/WHEP request: (status, headers, body text). HTTP error statuses are returned
    too; transport errors raise."""
    data = None if body is None else body.encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/sdp")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode(errors="replace")


class WhipPeer(base.Peer):
    def __init__(self, args):
        self.session_url = None
        super().__init__(args)

    def token(self):
        return self.args.token or os.environ.get("SB_API_TOKEN")

    def post_offer(self):
        a = self.args
        url = "%s/%s/%s" % (a.api.rstrip("/"), a.protocol, a.room)
        try:
            status, headers, text = http_sdp("POST", url, self.token(), self.offer_sdp)
        except Exception as e:  # noqa: BLE001
            self.error = "POST %s failed: %s" % (url, e)
            GLib.idle_add(self.loop.quit)
            return
        location = headers.get("Location")
        content_type = headers.get("Content-Type")
        if status != 201 or not location or not text.startswith("v=0"):
            self.error = "POST %s -> %s (Location %s, Content-Type %s) %s" % (
                url, status, location, content_type, text[:2000])
            GLib.idle_add(self.loop.quit)
            return
        self.session_url = urllib.parse.urljoin(a.api, location)
        self.participant_id = location.rstrip("/").rsplit("/", 1)[-1]
        self.join_response = {"status": status, "location": location, "content_type": content_type}
        self.answer_sdp = text
        log("%s session" % a.protocol, location)
        GLib.idle_add(self.apply_answer)

    def run(self):
        # The base leaves through the JSON API; this peer leaves through its session URL.
        leave, self.args.no_leave = not self.args.no_leave, True
        report = super().run()
        if self.session_url and leave:
            try:
                status, _, _ = http_sdp("DELETE", self.session_url, self.token(), timeout=3)
                report["left_status"] = status
            except Exception as e:  # noqa: BLE001
                report["left_status"] = "error: %s" % e
        return report

    def report(self):
        out = super().report()
        if self.args.save_audio:
            with self.samples_lock:
                pcm = np.concatenate(self.samples) if self.samples else np.zeros(0, dtype=np.int16)
            with open(self.args.save_audio, "wb") as f:
                f.write(pcm.astype("<i2").tobytes())
            out["audio_file"] = self.args.save_audio
        return out


def main():
    p = base.arg_parser(__doc__, "whip", "receive audio and analyse the last SECONDS of it")
    p.add_argument("--protocol", choices=["whip", "whep"], required=True)
    p.add_argument("--token", default=None, help="Bearer token (default: SB_API_TOKEN)")
    p.add_argument("--save-audio", default=None, metavar="FILE",
                   help="write the received audio (S16LE mono 48 kHz) to FILE")
    a = p.parse_args()
    a.dump_offer = False
    base.run(WhipPeer, a)


if __name__ == "__main__":
    main()
