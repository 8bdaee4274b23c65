#!/usr/bin/python3
"""A phone leg that offers Opus and then sends garbage: well-formed RTP headers (version 2, the
negotiated Opus PT, one SSRC, sequence numbers +1, timestamps +960 every 20 ms) carrying random
bytes as the Opus payload. For the Switchboard integration tests (what a broken or hostile
sender does to the audio MCU).

Standard library only. It joins through the HTTP API with its own SDP offer (plain RTP/AVP,
a=rtcp-mux, symmetric RTP on one UDP socket), sends for --duration seconds, counts what the
bridge sends back, leaves (DELETE), and prints ONE JSON line:
  {"participant_id", "answer_sdp", "join", "sent_packets", "sent_bytes", "received_packets",
   "received_rtcp", "bridge_addr", "left_status"}
On failure {"error": ...} and exit code 1.

Options: --api URL --room NAME [--display-name N] [--duration S] [--seed N]
         [--min-payload B] [--max-payload B] [--pt PT]
"""

import argparse
import random
import socket
import struct
import threading
import time

from peer_common import add_join_args, exit_with_report, http_json, logger, participants_url

log = logger("rtp_garbage")


def answer_target(sdp, want="opus"):
    """(ip, port, pt) of the answer's first audio m-line and its PT for `want`."""
    ip, port, pts, pt = None, None, [], None
    in_audio = False
    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith("m="):
            in_audio = line.startswith("m=audio") and port is None
            if in_audio:
                parts = line.split()
                port = int(parts[1])
                pts = parts[3:]
        elif line.startswith("c=") and (in_audio or ip is None):
            ip = line.split()[-1]
        elif in_audio and line.startswith("a=rtpmap:"):
            num, enc = line[9:].split(None, 1)
            if enc.lower().startswith(want + "/") and num in pts and pt is None:
                pt = int(num)
    return ip, port, pt


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_join_args(p, "garbage")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--min-payload", type=int, default=3)
    p.add_argument("--max-payload", type=int, default=160)
    p.add_argument("--pt", type=int, default=111, help="the PT to offer for Opus")
    a = p.parse_args()
    rng = random.Random(a.seed)
    out = {"participant_id": None}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    port = sock.getsockname()[1]
    ssrc = rng.randint(1, 2**32 - 1)
    stop = threading.Event()
    counts = {"rtp": 0, "rtcp": 0}

    def receive():
        while not stop.is_set():
            try:
                data, _src = sock.recvfrom(65536)
            except (socket.timeout, OSError):
                continue
            if len(data) >= 2 and 192 <= data[1] <= 223:
                counts["rtcp"] += 1
            else:
                counts["rtp"] += 1

    url = participants_url(a.api, a.room)
    try:
        offer = "\r\n".join([
            "v=0", "o=- %d 1 IN IP4 127.0.0.1" % rng.randint(1, 2**31), "s=rtp_garbage", "c=IN IP4 127.0.0.1",
            "t=0 0", "m=audio %d RTP/AVP %d 101" % (port, a.pt), "a=rtpmap:%d opus/48000/2" % a.pt,
            "a=fmtp:%d minptime=10;useinbandfec=1" % a.pt, "a=rtpmap:101 telephone-event/48000",
            "a=fmtp:101 0-15", "a=ptime:20", "a=rtcp-mux", "a=ssrc:%d cname:rtp-garbage-%d" % (ssrc, port),
            "a=sendrecv"]) + "\r\n"
        st, res = http_json("POST", url, {"sdp": offer, "display_name": a.display_name})
        if st != 201 or not isinstance(res, dict) or not isinstance(res.get("sdp"), str):
            raise RuntimeError("POST %s -> %s %s" % (url, st, res))
        out["participant_id"] = res["id"]
        out["answer_sdp"] = res["sdp"]
        out["join"] = {k: v for k, v in res.items() if k != "sdp"}
        ip, bport, pt = answer_target(res["sdp"])
        if ip is None or not bport or pt is None:
            raise RuntimeError("the answer has no usable Opus m-line:\n%s" % res["sdp"])
        out["bridge_addr"] = "%s:%d" % (ip, bport)
        log("joined as", res["id"], "sending garbage to", out["bridge_addr"], "pt", pt)
        rx = threading.Thread(target=receive, daemon=True)
        rx.start()
        seq = rng.randint(0, 65535)
        ts = rng.randint(0, 2**32 - 1)
        sent = sent_bytes = 0
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < a.duration:
            header = struct.pack("!BBHII", 0x80, (0x80 if n == 0 else 0) | pt, seq, ts, ssrc)
            payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(a.min_payload, a.max_payload)))
            sock.sendto(header + payload, (ip, bport))
            sent += 1
            sent_bytes += len(header) + len(payload)
            seq = (seq + 1) & 0xFFFF
            ts = (ts + 960) & 0xFFFFFFFF
            n += 1
            time.sleep(max(0.0, start + n * 0.02 - time.monotonic()))
        stop.set()
        rx.join(timeout=1)
        out.update(sent_packets=sent, sent_bytes=sent_bytes, received_packets=counts["rtp"],
                   received_rtcp=counts["rtcp"])
        st, _ = http_json("DELETE", "%s/%s" % (url, out["participant_id"]), timeout=5)
        out["left_status"] = st
    except Exception as e:  # noqa: BLE001
        stop.set()
        out["error"] = "%s: %s" % (type(e).__name__, e)
    exit_with_report(out)


if __name__ == "__main__":
    main()
