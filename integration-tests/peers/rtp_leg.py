#!/usr/bin/python3
"""A phone leg (plain RTP or SDES-SRTP) for the Switchboard integration tests.

Run it with Debian's /usr/bin/python3 (python3-gi, GStreamer base/good/bad/ugly/libav, numpy).
It behaves like the media side of a SIP gateway: ONE UDP socket is both the RTP port it
announces and the socket it sends from (symmetric RTP; RTCP is muxed: the offer says
a=rtcp-mux, and RTCP the bridge sends is counted and otherwise ignored).

GStreamer only encodes and decodes, and protects SRTP with srtpenc (libsrtp). Received SRTP
is authenticated and decrypted in Python (see SrtpUnprotect). Python sends and receives every
packet on that one socket, so each received packet is logged with its SSRC, sequence number,
timestamp, payload type and arrival time, and each sent packet carries the leg's own SSRC,
sequence numbers and timestamps.

Joining (through the bridge's HTTP API, urllib):
  default        POST {"sdp": offer} with the leg's own offer; the answer names the bridge's
                 address, PTs and (srtp) key
  --late-offer   POST {"kind": "rtp"|"srtp"} without sdp; the bridge's offer comes back in
                 "sdp"; the leg PATCHes its answer

Main options (all in --help):
  --codec pcmu|pcma|g722|opus, --tone HZ (0: send no audio), --srtp SUITE, --direction
  --report-loss PERCENT               send an RTCP receiver report every second claiming that
                                      share of the bridge's packets lost (plain RTP only)
  --audio-level-ext ID                offer RFC 6464 levels under extmap ID; once the answer
                                      takes them, GStreamer's `level` measures each frame and
                                      its rtphdrextclientaudiolevel writes the extension
  --hold-after S / --resume-after S   re-offer a=inactive (or a=sendonly with --hold-direction
                                      sendonly), then a=sendrecv, on the same port
  --dtmf-listen                       decode received RFC 4733 events into digits
  --dtmf-pcap FILES | --dtmf-digits D [--dtmf-source handbuilt|gst]   send digits
  --inject T:WHAT[xN]                 bad-auth, replay, truncated or foreign packets at T
  --ptime MS                          offer a=ptime:MS and send packets of MS ms (default 20)
  --restart-at S                      restart the stream at S, as a gateway does between early
                                      media and the answer: a new SSRC, and sequence numbers and
                                      timestamps far from the old ones (repeatable)
  --audio forward|mix|auto            the join's audio preference
  --save-audio PATH, --packet-log, --probe 440,660
  --duration S, --stop-file PATH      run S seconds at most; end early once PATH exists
  --timeline-after-rx N               count action times from the N-th received packet

Output: ONE JSON line on stdout at the end (see `report()`); on failure {"error": ...} and a
non-zero exit code. Times in the output are seconds since the leg started.
"""

import argparse
import base64
import os
import random
import socket
import struct
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtp", "1.0")
from gi.repository import Gst, GstRtp  # noqa: E402

import numpy as np  # noqa: E402

from peer_common import (  # noqa: E402
    add_join_args, exit_with_report, http_json, logger, participants_url, sample_bytes)

# name in SDP, static/dynamic PT the leg offers, RTP clock, PCM rate, GStreamer elements
CODECS = {
    "pcmu": dict(sdp="PCMU", pt=0, clock=8000, channels=1, rate=8000,
                 enc="mulawenc", pay="rtppcmupay", depay="rtppcmudepay", dec="mulawdec"),
    "pcma": dict(sdp="PCMA", pt=8, clock=8000, channels=1, rate=8000,
                 enc="alawenc", pay="rtppcmapay", depay="rtppcmadepay", dec="alawdec"),
    "g722": dict(sdp="G722", pt=9, clock=8000, channels=1, rate=16000,
                 enc="avenc_g722", pay="rtpg722pay", depay="rtpg722depay", dec="avdec_g722"),
    "opus": dict(sdp="opus", pt=111, clock=48000, channels=2, rate=48000,
                 enc="opusenc frame-size={ptime} bitrate=32000", pay="rtpopuspay", depay="rtpopusdepay",
                 dec="opusdec"),
}

# SDES suite -> (master key + salt length, srtpenc cipher, RTP auth, RTCP auth)
SUITES = {
    "AES_CM_128_HMAC_SHA1_80": (30, "aes-128-icm", "hmac-sha1-80", "hmac-sha1-80"),
    "AES_CM_128_HMAC_SHA1_32": (30, "aes-128-icm", "hmac-sha1-32", "hmac-sha1-80"),
    "AEAD_AES_128_GCM": (28, "aes-128-gcm", "null", "null"),
}

DTMF_CODES = "0123456789*#ABCD"


log = logger("rtp_leg")


class Fail(Exception):
    pass


# ------------------------------------------------------------------------------------------
# SDP
# ------------------------------------------------------------------------------------------

def parse_sdp(text):
    """The first audio m-line of an SDP: address, port, proto, formats, crypto, direction."""
    out = {"ip": None, "audio": None}
    session_dir = "sendrecv"
    cur = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            parts = line[2:].split()
            cur = None
            if parts and parts[0] == "audio" and out["audio"] is None:
                cur = {"port": int(parts[1]), "proto": parts[2], "pts": [int(p) for p in parts[3:] if p.isdigit()],
                       "rtpmap": {}, "fmtp": {}, "crypto": [], "direction": None, "rtcp_mux": False,
                       "ip": None, "ssrcs": [], "ptime": None}
                out["audio"] = cur
            continue
        if line.startswith("c="):
            ip = line.split()[-1]
            if cur is not None:
                cur["ip"] = ip
            elif out["ip"] is None:
                out["ip"] = ip
            continue
        if not line.startswith("a="):
            continue
        attr = line[2:]
        if attr in ("sendrecv", "sendonly", "recvonly", "inactive"):
            if cur is not None:
                cur["direction"] = attr
            else:
                session_dir = attr
            continue
        if cur is None:
            continue
        if attr.startswith("rtpmap:"):
            pt, enc = attr[7:].split(None, 1)
            bits = enc.split("/")
            cur["rtpmap"][int(pt)] = (bits[0], int(bits[1]) if len(bits) > 1 else 8000,
                                      int(bits[2]) if len(bits) > 2 else 1)
        elif attr.startswith("fmtp:"):
            pt, val = (attr[5:].split(None, 1) + [""])[:2]
            cur["fmtp"][int(pt)] = val
        elif attr.startswith("crypto:"):
            bits = attr[7:].split()
            if len(bits) >= 3 and bits[2].startswith("inline:"):
                cur["crypto"].append((int(bits[0]), bits[1], bits[2][7:].split("|")[0]))
        elif attr == "rtcp-mux":
            cur["rtcp_mux"] = True
        elif attr.startswith("ssrc:"):
            cur["ssrcs"].append(int(attr[5:].split()[0]))
        elif attr.startswith("ptime:"):
            cur["ptime"] = int(attr[6:])
    if out["audio"] is not None:
        a = out["audio"]
        if a["direction"] is None:
            a["direction"] = session_dir
        if a["ip"] is None:
            a["ip"] = out["ip"]
    return out


def find_pt(audio, name, clock=None):
    """The PT an SDP's audio m-line uses for encoding `name` (case-insensitive)."""
    for pt in audio["pts"]:
        m = audio["rtpmap"].get(pt)
        if m is None:
            # static payload types without rtpmap
            static = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000)}.get(pt)
            if static is None:
                continue
            m = (static[0], static[1], 1)
        if m[0].lower() == name.lower() and (clock is None or m[1] == clock):
            return pt
    return None


AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

# ------------------------------------------------------------------------------------------
# RTP helpers
# ------------------------------------------------------------------------------------------

def rtp_header(data):
    """(marker, pt, seq, ts, ssrc, header_len) of an RTP packet, or None."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    cc = data[0] & 0x0F
    hl = 12 + 4 * cc
    if data[0] & 0x10:
        if len(data) < hl + 4:
            return None
        hl += 4 + 4 * struct.unpack("!H", data[hl + 2:hl + 4])[0]
    if len(data) < hl:
        return None
    marker = bool(data[1] & 0x80)
    pt = data[1] & 0x7F
    seq, ts, ssrc = struct.unpack("!HII", data[2:12])
    return marker, pt, seq, ts, ssrc, hl


def rtp_payload(data, hl):
    end = len(data)
    if data[0] & 0x20 and end > hl:
        end -= data[-1]
    return data[hl:max(hl, end)]


def opus_samples_48k(payload):
    """How many 48 kHz samples an Opus packet holds, from its TOC (RFC 6716 3.1), or None."""
    if not payload:
        return None
    config, code = payload[0] >> 3, payload[0] & 3
    if config < 12:
        frame = (480, 960, 1920, 2880)[config % 4]
    elif config < 16:
        frame = (480, 960)[config % 2]
    else:
        frame = (120, 240, 480, 960)[config % 4]
    if code == 0:
        frames = 1
    elif code < 3:
        frames = 2
    elif len(payload) > 1:
        frames = payload[1] & 0x3F
    else:
        return None
    return frame * frames


def is_rtcp(data):
    return len(data) >= 2 and 192 <= data[1] <= 223


def read_pcap(path):
    """UDP payloads of a classic pcap (Ethernet/IPv4/UDP), with their capture times."""
    with open(path, "rb") as f:
        blob = f.read()
    magic = struct.unpack("<I", blob[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        endian = ">"
    else:
        raise Fail("%s is not a pcap file" % path)
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack(endian + "I", blob[20:24])[0]
    off = 24
    out = []
    while off + 16 <= len(blob):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", blob[off:off + 16])
        frame = blob[off + 16:off + 16 + incl]
        off += 16 + incl
        t = sec + frac / (1e9 if nano else 1e6)
        if linktype == 1:  # Ethernet
            ethertype = struct.unpack("!H", frame[12:14])[0]
            ip = frame[14:]
            if ethertype == 0x8100:
                ip = frame[18:]
        elif linktype == 113:  # Linux cooked
            ip = frame[16:]
        elif linktype in (101, 228):  # raw IPv4
            ip = frame
        else:
            raise Fail("%s: unsupported pcap link type %d" % (path, linktype))
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        udp = ip[ihl:]
        ulen = struct.unpack("!H", udp[4:6])[0]
        out.append((t, bytes(udp[8:ulen])))
    return out


# ------------------------------------------------------------------------------------------
# SRTP: srtpenc (libsrtp) protects what the leg sends; Python checks what it receives
# ------------------------------------------------------------------------------------------

class SrtpProtect:
    """appsrc ! srtpenc ! appsink, used synchronously: one RTP packet in, one SRTP packet out."""

    def __init__(self, suite, key):
        _, cipher, auth, rtcp_auth = SUITES[suite]
        self.pipe = Gst.parse_launch(
            "appsrc name=src format=time caps=application/x-rtp ! srtpenc name=enc "
            "rtp-cipher=%s rtp-auth=%s rtcp-cipher=%s rtcp-auth=%s ! appsink name=sink sync=false"
            % (cipher, auth, cipher, rtcp_auth))
        self.pipe.get_by_name("enc").set_property("key", Gst.Buffer.new_wrapped(key))
        self.src = self.pipe.get_by_name("src")
        self.sink = self.pipe.get_by_name("sink")
        self.lock = threading.Lock()
        self.pipe.set_state(Gst.State.PLAYING)

    def protect(self, packet):
        with self.lock:
            self.src.emit("push-buffer", Gst.Buffer.new_wrapped(bytes(packet)))
            s = self.sink.emit("try-pull-sample", Gst.SECOND)
        return None if s is None else sample_bytes(s)

    def stop(self):
        self.pipe.set_state(Gst.State.NULL)


class SrtpUnprotect:
    """SRTP receive side in Python (RFC 3711 AES-CM + HMAC-SHA1, RFC 7714 AES-GCM), with the
    `cryptography` package: authenticates, decrypts, and hands RTP packets to `on_packet`.

    Why not GStreamer's srtpdec: fed from appsrc in this Python program, its output buffers
    trip GStreamer refcount assertions and packets silently go missing (seen with 1.22 and
    python3-gi on Debian 12), which would look like loss caused by the bridge. `self_check()`
    proves this implementation agrees with libsrtp (srtpenc) for the suite before it is used."""

    def __init__(self, suite, key, on_packet):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        self._Cipher, self._algorithms, self._modes = Cipher, algorithms, modes
        self.suite = suite
        self.gcm = suite == "AEAD_AES_128_GCM"
        self.tag_len = {"AES_CM_128_HMAC_SHA1_80": 10, "AES_CM_128_HMAC_SHA1_32": 4, "AEAD_AES_128_GCM": 16}[suite]
        master_key, master_salt = key[:16], key[16:]
        salt_len = 12 if self.gcm else 14
        self.enc_key = self._kdf(master_key, master_salt, 0, 16)
        self.auth_key = None if self.gcm else self._kdf(master_key, master_salt, 1, 20)
        self.salt = self._kdf(master_key, master_salt, 2, salt_len)
        self.aead = AESGCM(self.enc_key) if self.gcm else None
        self.on_packet = on_packet
        self.key = key
        self.streams = {}  # ssrc -> [roc, highest seq, recent indexes]
        self.pushed = 0
        self.out = 0
        self.auth_failed = 0
        self.replayed = 0

    def _ctr(self, key, iv, data):
        e = self._Cipher(self._algorithms.AES(key), self._modes.CTR(iv)).encryptor()
        return e.update(data) + e.finalize()

    def _kdf(self, master_key, master_salt, label, n):
        # RFC 3711 4.3.1 with key_derivation_rate 0: x = (label || r=0) XOR master salt, the
        # salt right-padded to 112 bits (RFC 7714 12-byte salts get two zero bytes, as libsrtp
        # does); the key stream of AES-CM with IV x * 2^16.
        x = bytearray(master_salt + bytes(14 - len(master_salt)))
        x[7] ^= label
        return self._ctr(master_key, bytes(x) + b"\0\0", bytes(n))

    def _index(self, ssrc, seq):
        st = self.streams.get(ssrc)
        if st is None:
            return 0, None
        roc, s_l = st[0], st[1]
        if s_l < 32768:
            v = roc - 1 if seq - s_l > 32768 else roc
        else:
            v = roc + 1 if s_l - 32768 > seq else roc
        return max(v, 0), st

    def unprotect(self, data):
        """The RTP packet, or None (too short, authentication failed, or a replay)."""
        h = rtp_header(data)
        if h is None or len(data) < h[5] + self.tag_len:
            self.auth_failed += 1
            return None
        _m, _pt, seq, _ts, ssrc, hl = h
        roc, st = self._index(ssrc, seq)
        index = (roc << 16) | seq
        if st is not None and index in st[2]:
            self.replayed += 1
            return None
        if self.gcm:
            iv = bytearray(bytes(2) + struct.pack("!IIH", ssrc, roc, seq))
            for i in range(12):
                iv[i] ^= self.salt[i]
            try:
                payload = self.aead.decrypt(bytes(iv), bytes(data[hl:]), bytes(data[:hl]))
            except Exception:  # noqa: BLE001  (InvalidTag)
                self.auth_failed += 1
                return None
        else:
            import hmac
            import hashlib
            body, tag = data[:-self.tag_len], data[-self.tag_len:]
            mac = hmac.new(self.auth_key, body + struct.pack("!I", roc), hashlib.sha1).digest()[:self.tag_len]
            if not hmac.compare_digest(mac, tag):
                self.auth_failed += 1
                return None
            iv = bytearray(self.salt + b"\0\0")
            for i, b in enumerate(struct.pack("!I", ssrc)):
                iv[4 + i] ^= b
            for i, b in enumerate(struct.pack("!Q", index)[2:]):
                iv[8 + i] ^= b
            payload = self._ctr(self.enc_key, bytes(iv), bytes(body[hl:]))
        if st is None:
            st = self.streams[ssrc] = [0, seq, set()]
        if roc > st[0] or (roc == st[0] and ((seq - st[1]) & 0xFFFF) < 0x8000):
            st[0], st[1] = roc, seq
        st[2].add(index)
        if len(st[2]) > 4096:
            lo = ((st[0] << 16) | st[1]) - 1024
            st[2] = {i for i in st[2] if i >= lo}
        return bytes(data[:hl]) + payload

    def push(self, data):
        self.pushed += 1
        plain = self.unprotect(data)
        if plain is not None:
            self.out += 1
            self.on_packet(plain)



def srtp_self_check(suite):
    """Packets protected by libsrtp (srtpenc) must come out of SrtpUnprotect unchanged, across
    a sequence number wrap; a corrupted and a replayed one must not."""
    key = os.urandom(SUITES[suite][0])
    enc = SrtpProtect(suite, key)
    plain = [struct.pack("!BBHII", 0x80, 0, (65533 + i) & 0xFFFF, 160 * i, 0x5EED) + bytes([i]) * 160
             for i in range(6)]
    protected = [enc.protect(p) for p in plain]
    enc.stop()
    got = []
    dec = SrtpUnprotect(suite, key, got.append)
    bad = bytearray(protected[-1])
    bad[-1] ^= 1
    for p in protected[:-1] + [bytes(bad), protected[-1], protected[2]]:
        dec.push(p)
    if got != plain or dec.auth_failed != 1 or dec.replayed != 1:
        raise Fail("SRTP self-check for %s failed: %d of %d packets matched, %d auth failures, %d replays"
                   % (suite, sum(1 for a, b in zip(got, plain) if a == b), len(plain), dec.auth_failed, dec.replayed))


# ------------------------------------------------------------------------------------------
# Audio analysis
# ------------------------------------------------------------------------------------------

def analyse(samples, rate, probes):
    """Dominant frequency, RMS, and level (dBFS, full-scale sine = -3 dB) of +-25 Hz around
    each probe frequency."""
    out = {"samples": int(len(samples)), "seconds": round(len(samples) / rate, 3)}
    if len(samples) < 256:
        out.update(dominant_hz=None, rms=0.0, bands={str(p): None for p in probes})
        return out
    x = samples.astype(np.float64) / 32768.0
    x -= x.mean()
    out["rms"] = round(float(np.sqrt(np.mean(x * x))), 5)
    w = np.hanning(len(x))
    spec = np.fft.rfft(x * w)
    power = np.abs(spec) ** 2
    mag = np.sqrt(power)
    mag[0] = 0.0
    k = int(np.argmax(mag))
    delta = 0.0
    if 0 < k < len(mag) - 1:
        a, b, c = mag[k - 1], mag[k], mag[k + 1]
        den = a - 2 * b + c
        delta = 0.5 * (a - c) / den if den != 0 else 0.0
    out["dominant_hz"] = round(float((k + delta) * rate / len(x)), 2) if mag[k] > 0 else None
    # Parseval with the window's energy: mean square of the band-limited signal.
    norm = 2.0 / (len(x) * np.sum(w * w))
    freqs = np.fft.rfftfreq(len(x), 1.0 / rate)
    bands = {}
    for p in probes:
        sel = (freqs >= p - 25) & (freqs <= p + 25)
        ms = float(np.sum(power[sel]) * norm)
        bands[str(p)] = round(10 * np.log10(ms), 2) if ms > 1e-20 else -200.0
    out["bands"] = bands
    return out


# ------------------------------------------------------------------------------------------
# The leg
# ------------------------------------------------------------------------------------------

class Leg:
    def __init__(self, a):
        self.a = a
        self.t0 = time.monotonic()
        self.t0_unix = time.time()
        self.codec = CODECS[a.codec]
        self.kind = "srtp" if a.srtp else "rtp"
        self.error = None
        self.timeline = []  # [(t, what)]
        self.stop_flag = threading.Event()
        self.stopped_by_file = False
        self.base = 0.0  # what action times count from (see --timeline-after-rx)

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((a.bind_ip, a.port))
        self.sock.settimeout(0.2)
        self.local_port = self.sock.getsockname()[1]

        # negotiated
        self.participant_id = None
        self.join_view = None
        self.offer_sdp = None
        self.answer_sdp = None
        self.bridge_offer_sdp = None
        # The extmap id the bridge's answer took our audio levels under (None: not sending them).
        self.level_ext = None
        self.sent_loss_reports = 0
        self.dest = None
        self.audio_pt = None
        self.te_pt = None
        self.te_clock = 8000
        self.direction = a.direction
        self.renegotiations = []
        self.sdp_version = 1
        self.session_id = random.randint(1, 2**31)
        self.crypto_tag = 1

        # SRTP
        self.suite = a.srtp
        self.local_key = os.urandom(SUITES[a.srtp][0]) if a.srtp else None
        if a.srtp and a.srtp_key:
            self.local_key = base64.b64decode(a.srtp_key)
        self.bridge_key = None
        self.protector = None
        self.unprotector = None
        self.bridge_key_changes = 0

        # send state
        self.send_lock = threading.Lock()
        self.ssrc = a.ssrc if a.ssrc is not None else random.randint(1, 2**32 - 1)
        self.seq = random.randint(0, 65535)
        self.ts_base = random.randint(0, 2**32 - 1)
        self.pay_ts0 = None
        self.ts_align = 0
        self.first_audio_sent = False
        self.dtmf_active = False
        self.sent_audio = 0
        self.restarts = []  # the streams after each --restart-at: at, ssrc, first seq, ts offset
        self.sent_dtmf = 0
        self.sent_events = {}  # event timestamp -> what the leg sent
        self.suppressed_audio = 0
        self.sent_history = []  # last protected packets, for --inject replay
        self.pending_bad_auth = 0
        self.injected = {}
        self.send_errors = 0

        # receive state
        # (t, pt, seq, ts, ssrc, marker, payload_len, Opus samples at 48 kHz or None)
        self.rx_log = []
        self.raw_dump = [] if a.dump_packets else None
        self.early = []
        self.key_lock = threading.Lock()
        self.rx_rtcp = 0
        self.rx_bye = 0
        # (middle 32 bits of its NTP time, when it arrived) of the bridge's last SR: echoed in
        # the receiver reports' LSR and DLSR, so the bridge can measure the round trip.
        self.last_sr = None
        self.rx_malformed = 0
        self.rx_sources = {}
        self.rx_plain = 0
        self.rx_unknown_pt = 0
        self.dtmf_events = {}  # (ssrc, ts) -> dict
        self.dtmf_order = []
        self.audio_chunks = []  # (t, np.int16 array)
        self.audio_lock = threading.Lock()
        self.decoder = None
        self.sender = None
        self.bus_errors = []

    def now(self):
        return time.monotonic() - self.t0

    def mark(self, what):
        self.timeline.append((round(self.now(), 3), what))
        log("%.2f" % self.now(), what)

    # ---- SDP -------------------------------------------------------------------------------
    def proto(self):
        return "RTP/SAVP" if self.suite else "RTP/AVP"

    def media_lines(self, direction, audio_pt, te_pt, te_clock, rtpmap_name, clock, channels, crypto_tag):
        lines = ["m=audio %d %s %d %d" % (self.local_port, self.proto(), audio_pt, te_pt)]
        lines.append("a=rtpmap:%d %s/%d%s" % (audio_pt, rtpmap_name, clock, "/%d" % channels if channels > 1 else ""))
        if self.a.codec == "opus":
            lines.append("a=fmtp:%d minptime=10;useinbandfec=1" % audio_pt)
        lines.append("a=rtpmap:%d telephone-event/%d" % (te_pt, te_clock))
        lines.append("a=fmtp:%d 0-15" % te_pt)
        lines.append("a=ptime:%d" % self.a.ptime)
        if not self.a.no_rtcp_mux:
            lines.append("a=rtcp-mux")
        if self.suite:
            lines.append("a=crypto:%d %s inline:%s" % (crypto_tag, self.suite,
                                                       base64.b64encode(self.local_key).decode()))
        if self.a.audio_level_ext:
            lines.append("a=extmap:%d %s" % (self.a.audio_level_ext, AUDIO_LEVEL_URI))
        lines.append("a=ssrc:%d cname:rtp-leg-%d" % (self.ssrc, self.local_port))
        lines.append("a=%s" % direction)
        return lines

    def session_sdp(self, media):
        lines = ["v=0", "o=- %d %d IN IP4 %s" % (self.session_id, self.sdp_version, self.a.bind_ip),
                 "s=rtp_leg", "c=IN IP4 %s" % self.a.bind_ip, "t=0 0"] + media
        return "\r\n".join(lines) + "\r\n"

    def build_offer(self, direction):
        c = self.codec
        te_clock = 48000 if self.a.codec == "opus" else 8000
        pt = self.a.pt if self.a.pt is not None else c["pt"]
        return self.session_sdp(self.media_lines(direction, pt, self.a.te_pt, te_clock, c["sdp"], c["clock"],
                                                 c["channels"], self.crypto_tag))

    def take_remote(self, text, is_answer):
        """Applies the bridge's SDP (answer to our offer, or its offer): address, PTs, key."""
        sdp = parse_sdp(text)
        audio = sdp["audio"]
        if audio is None or audio["port"] == 0:
            raise Fail("the bridge's SDP has no usable audio m-line:\n%s" % text)
        c = self.codec
        pt = find_pt(audio, c["sdp"], c["clock"])
        if pt is None:
            raise Fail("the bridge's SDP has no %s:\n%s" % (c["sdp"], text))
        te_clock = 48000 if self.a.codec == "opus" else 8000
        te = find_pt(audio, "telephone-event", te_clock)
        if te is None:
            te = find_pt(audio, "telephone-event")
        if te is not None:
            self.te_clock = audio["rtpmap"][te][1]
        self.audio_pt, self.te_pt = pt, te
        self.dest = (audio["ip"], audio["port"])
        if is_answer and self.a.audio_level_ext:
            # RFC 8285: send the extension only if the answer kept it, under the offered id.
            taken = "a=extmap:%d/recvonly %s" % (self.a.audio_level_ext, AUDIO_LEVEL_URI)
            taken_any = "a=extmap:%d %s" % (self.a.audio_level_ext, AUDIO_LEVEL_URI)
            lines = [x.strip() for x in text.splitlines()]
            self.level_ext = self.a.audio_level_ext if (taken in lines or taken_any in lines) else None
        if self.suite:
            if is_answer:
                chosen = [x for x in audio["crypto"] if x[0] == self.crypto_tag]
                if not chosen:
                    raise Fail("the bridge's answer has no a=crypto with our tag %d:\n%s" % (self.crypto_tag, text))
                tag, suite, key = chosen[0]
                if suite != self.suite:
                    raise Fail("the bridge answered tag %d with suite %s, we offered %s" % (tag, suite, self.suite))
            else:
                chosen = [x for x in audio["crypto"] if x[1] == self.suite]
                if not chosen:
                    raise Fail("the bridge's offer has no a=crypto with suite %s:\n%s" % (self.suite, text))
                tag, suite, key = chosen[0]
                self.crypto_tag = tag
            key = base64.b64decode(key)
            if len(key) != SUITES[self.suite][0]:
                raise Fail("the bridge's %s key has %d bytes" % (suite, len(key)))
            if self.bridge_key is not None and key != self.bridge_key:
                self.bridge_key_changes += 1
                log("the bridge changed its SRTP key")
            if self.bridge_key != key:
                with self.key_lock:
                    self.bridge_key = key
                    self.unprotector = SrtpUnprotect(self.suite, key, self.on_plain)
                    early, self.early = self.early, []
                    for data in early:
                        self.unprotector.push(data)
        return audio

    # ---- signalling ------------------------------------------------------------------------
    def url(self, suffix=""):
        return participants_url(self.a.api, self.a.room, suffix)

    def join(self):
        body = {"display_name": self.a.display_name}
        if self.a.audio:
            body["audio"] = self.a.audio
        if self.a.late_offer:
            body["kind"] = self.kind
            st, res = http_json("POST", self.url(), body)
            if st != 201 or not isinstance(res, dict) or not isinstance(res.get("sdp"), str):
                raise Fail("POST %s (late offer, kind %s) -> %s %s" % (self.url(), self.kind, st, res))
            self.participant_id = res["id"]
            self.bridge_offer_sdp = res["sdp"]
            self.join_view = {k: v for k, v in res.items() if k != "sdp"}
            self.mark("joined (late offer) as %s" % self.participant_id)
            audio = self.take_remote(res["sdp"], is_answer=False)
            c = self.codec
            rtpmap = audio["rtpmap"].get(self.audio_pt, (c["sdp"], c["clock"], c["channels"]))
            te_pt = self.te_pt if self.te_pt is not None else self.a.te_pt
            lines = self.media_lines(self.direction, self.audio_pt, te_pt, self.te_clock, rtpmap[0], rtpmap[1],
                                     rtpmap[2], self.crypto_tag)
            if not audio["rtcp_mux"]:
                lines = [x for x in lines if x != "a=rtcp-mux"]
            self.answer_sdp = self.session_sdp(lines)
            st, res = http_json("PATCH", self.url("/" + self.participant_id), {"sdp": self.answer_sdp})
            if st != 200:
                raise Fail("PATCH answer -> %s %s\nanswer was:\n%s" % (st, res, self.answer_sdp))
            self.mark("answer accepted")
        else:
            self.offer_sdp = self.build_offer(self.direction)
            body["sdp"] = self.offer_sdp
            if self.a.send_kind:
                body["kind"] = self.kind
            st, res = http_json("POST", self.url(), body)
            if st != 201 or not isinstance(res, dict) or not isinstance(res.get("sdp"), str):
                raise Fail("POST %s -> %s %s\noffer was:\n%s" % (self.url(), st, res, self.offer_sdp))
            self.participant_id = res["id"]
            self.answer_sdp = res["sdp"]
            self.join_view = {k: v for k, v in res.items() if k != "sdp"}
            self.mark("joined as %s" % self.participant_id)
            self.take_remote(res["sdp"], is_answer=True)

    def reoffer(self, direction):
        self.sdp_version += 1
        offer = self.build_offer(direction) if not self.a.late_offer else self.build_reoffer_after_late(direction)
        at = self.now()
        st, res = http_json("PATCH", self.url("/" + self.participant_id), {"sdp": offer})
        entry = {"at": round(at, 3), "direction": direction, "status": st, "offer_sdp": offer}
        if st == 200 and isinstance(res, dict) and isinstance(res.get("sdp"), str):
            entry["answer_sdp"] = res["sdp"]
            entry["answer_direction"] = parse_sdp(res["sdp"])["audio"]["direction"]
            self.take_remote(res["sdp"], is_answer=True)
            self.direction = direction
        else:
            entry["response"] = res
            self.error = self.error or "re-offer (%s) -> %s %s" % (direction, st, res)
        self.renegotiations.append(entry)
        self.mark("re-offer %s -> %s" % (direction, st))

    def build_reoffer_after_late(self, direction):
        c = self.codec
        return self.session_sdp(self.media_lines(direction, self.audio_pt, self.te_pt or self.a.te_pt,
                                                 self.te_clock, c["sdp"], c["clock"], c["channels"],
                                                 self.crypto_tag))

    def leave(self):
        if self.participant_id is None:
            return None
        try:
            st, _ = http_json("DELETE", self.url("/" + self.participant_id), timeout=5)
            return st
        except Exception as e:  # noqa: BLE001
            return "error: %s" % e

    # ---- sending ---------------------------------------------------------------------------
    def sending_allowed(self):
        return self.dest is not None and self.direction in ("sendrecv", "sendonly")

    def next_seq(self):
        s = self.seq
        self.seq = (self.seq + 1) & 0xFFFF
        return s

    def ts_now(self):
        clock = self.codec["clock"]
        return (self.ts_base + int(self.now() * clock)) & 0xFFFFFFFF

    def transmit(self, packet, kind):
        """Protects (srtp) and sends one RTP packet from the leg's socket. Call with send_lock."""
        data = packet
        if self.protector is not None:
            data = self.protector.protect(packet)
            if data is None:
                self.send_errors += 1
                return
            if kind == "audio" and self.pending_bad_auth > 0:
                self.pending_bad_auth -= 1
                bad = bytearray(data)
                bad[-1] ^= 0x5A
                bad[-2] ^= 0xA5
                data = bytes(bad)
                self.injected["bad-auth"] = self.injected.get("bad-auth", 0) + 1
            self.sent_history.append(data)
            del self.sent_history[:-64]
        else:
            self.sent_history.append(data)
            del self.sent_history[:-64]
        try:
            self.sock.sendto(data, self.dest)
        except OSError as e:
            self.send_errors += 1
            log("send failed:", e)

    def on_encoded(self, sink):
        data = sample_bytes(sink.emit("pull-sample"))
        h = rtp_header(data)
        if h is None:
            return Gst.FlowReturn.OK
        _marker, _pt, _seq, pts, _ssrc, hl = h
        # The payloader's header extension block (the audio level), kept as GStreamer wrote it.
        ext = data[12 + 4 * (data[0] & 0x0F):hl] if data[0] & 0x10 else b""
        payload = rtp_payload(data, hl)
        with self.send_lock:
            if self.pay_ts0 is None:
                # The leg's audio timestamps start at its wall-clock timestamp of the first packet
                # and then follow the payloader's (sample-exact) timestamps.
                self.pay_ts0 = pts
                self.ts_align = self.ts_now()
            ts = (self.ts_align + pts - self.pay_ts0) & 0xFFFFFFFF
            if not self.sending_allowed() or self.stop_flag.is_set():
                return Gst.FlowReturn.OK
            if self.dtmf_active:
                self.suppressed_audio += 1
                return Gst.FlowReturn.OK
            m = not self.first_audio_sent
            self.first_audio_sent = True
            pkt = struct.pack("!BBHII", 0x90 if ext else 0x80, (0x80 if m else 0) | self.audio_pt, self.next_seq(),
                              ts, self.ssrc) + ext + payload
            self.transmit(pkt, "audio")
            self.sent_audio += 1
        return Gst.FlowReturn.OK

    def start_sender(self):
        if not self.a.tone:
            return
        c = self.codec
        ptime = self.a.ptime
        spb = c["rate"] * min(ptime, 20) // 1000
        desc = ("audiotestsrc is-live=true wave=sine freq=%f volume=%f samplesperbuffer=%d ! "
                "audio/x-raw,format=S16LE,rate=%d,channels=1 ! %s%s ! %s name=pay pt=%d min-ptime=%d "
                "max-ptime=%d ! appsink name=sink emit-signals=true sync=false"
                % (self.a.tone, self.a.amplitude, spb, c["rate"],
                   "level audio-level-meta=true ! " if self.level_ext else "", c["enc"].format(ptime=ptime),
                   c["pay"], self.audio_pt or 96, ptime * 1000000, ptime * 1000000))
        self.sender = Gst.parse_launch(desc)
        if self.level_ext:
            ext = Gst.ElementFactory.make("rtphdrextclientaudiolevel")
            if ext is None:
                raise Fail("GStreamer has no rtphdrextclientaudiolevel (gstreamer1.0-plugins-good)")
            GstRtp.RTPHeaderExtension.set_id(ext, self.level_ext)
            self.sender.get_by_name("pay").emit("add-extension", ext)
        self.sender.get_by_name("sink").connect("new-sample", self.on_encoded)
        self.sender.set_state(Gst.State.PLAYING)

    def restart_stream(self):
        """A new SSRC, and sequence numbers and timestamps far from the old ones (half the number
        space away, give or take), as a gateway's stream from another media server."""
        with self.send_lock:
            old = self.ssrc
            while self.ssrc == old:
                self.ssrc = random.randint(1, 2**32 - 1)
            self.seq = (self.seq + 16384 + random.randint(0, 32767)) & 0xFFFF
            offset = 2**30 + random.randint(0, 2**31)
            self.ts_align = (self.ts_align + offset) & 0xFFFFFFFF
            self.restarts.append({"at": round(self.now(), 3), "ssrc": self.ssrc, "seq": self.seq,
                                  "ts_offset": offset})
        self.mark("stream restarted: ssrc %d, seq %d" % (self.ssrc, self.seq))

    def send_dtmf_packet(self, marker, ts, payload, seq=None):
        with self.send_lock:
            if self.te_pt is None or not self.sending_allowed():
                return False
            s = self.next_seq() if seq is None else seq
            pkt = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | self.te_pt, s, ts, self.ssrc) + payload
            self.transmit(pkt, "dtmf")
            self.sent_dtmf += 1
            if len(payload) >= 4:
                code, flags, dur = struct.unpack("!BBH", payload[:4])
                ev = self.sent_events.get(ts)
                if ev is None:
                    ev = self.sent_events[ts] = {"digit": DTMF_CODES[code] if code < 16 else str(code), "ts": ts,
                                                 "packets": 0, "end_packets": 0, "markers": 0, "max_duration": 0}
                ev["packets"] += 1
                ev["end_packets"] += int(bool(flags & 0x80))
                ev["markers"] += int(marker)
                ev["max_duration"] = max(ev["max_duration"], dur)
                ev["duration_ms"] = round(ev["max_duration"] * 1000.0 / self.te_clock, 1)
            return True

    def dtmf_handbuilt(self, digits, duration_ms, marker):
        """RFC 4733 by hand: updates every 20 ms, three end packets (each its own sequence
        number), marker bit only if asked for (carriers often leave it unset)."""
        step = self.te_clock // 50
        for d in digits:
            code = DTMF_CODES.index(d.upper())
            total = max(step, duration_ms * self.te_clock // 1000)
            with self.send_lock:
                self.dtmf_active = True
            ts = self.ts_now()
            self.mark("dtmf %s start (ts %d)" % (d, ts))
            sent = 0
            n = 0
            t_next = time.monotonic()
            while True:
                n += 1
                dur = min(n * step, total)
                end = dur >= total
                self.send_dtmf_packet(marker and n == 1, ts, struct.pack("!BBH", code, (0x80 if end else 0) | 10, dur))
                sent += 1
                t_next += 0.02
                time.sleep(max(0.0, t_next - time.monotonic()))
                if end:
                    for _ in range(2):
                        self.send_dtmf_packet(False, ts, struct.pack("!BBH", code, 0x80 | 10, dur))
                        t_next += 0.02
                        time.sleep(max(0.0, t_next - time.monotonic()))
                    break
            with self.send_lock:
                self.dtmf_active = False
            time.sleep(self.a.dtmf_gap)

    def dtmf_pcap(self, files):
        """Replays the telephone-event packets of pcap files from this leg's socket: the
        payloads as captured, the pcap's relative timing, sequence numbers and timestamps (so
        repeated end packets keep their repeated sequence numbers), moved into the leg's own
        SSRC, sequence and timestamp space."""
        for path in files:
            pkts = []
            for t, udp in read_pcap(path):
                h = rtp_header(udp)
                if h is None:
                    continue
                pkts.append((t, h, rtp_payload(udp, h[5])))
            if not pkts:
                raise Fail("%s holds no RTP packets" % path)
            t_first = pkts[0][0]
            seq_first = pkts[0][1][2]
            ts_map = {}
            with self.send_lock:
                self.dtmf_active = True
                seq_base = self.seq
            start = time.monotonic()
            max_seq = seq_base
            self.mark("pcap %s: %d packets" % (os.path.basename(path), len(pkts)))
            for t, (marker, _pt, seq, ts, _ssrc, _hl), payload in pkts:
                delay = start + (t - t_first) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if ts not in ts_map:
                    ts_map[ts] = self.ts_now()
                my_seq = (seq_base + ((seq - seq_first) & 0xFFFF)) & 0xFFFF
                if ((my_seq - max_seq) & 0xFFFF) < 0x8000:
                    max_seq = my_seq
                self.send_dtmf_packet(marker, ts_map[ts], payload, seq=my_seq)
            with self.send_lock:
                self.seq = (max_seq + 1) & 0xFFFF
                self.dtmf_active = False
            time.sleep(self.a.dtmf_gap)

    def dtmf_gst(self, digits, duration_ms):
        """Digits from GStreamer's rtpdtmfsrc (start/stop events), re-stamped into the leg's
        SSRC, sequence and timestamp space."""
        pipe = Gst.parse_launch(
            "rtpdtmfsrc name=d pt=%d clock-rate=%d packet-redundancy=3 ! appsink name=sink sync=false "
            "async=false emit-signals=true" % (self.te_pt or 101, self.te_clock))
        ts_map = {}
        got = {"n": 0}

        def on_sample(sink):
            data = sample_bytes(sink.emit("pull-sample"))
            h = rtp_header(data)
            if h is None:
                return Gst.FlowReturn.OK
            marker, _pt, _seq, ts, _ssrc, hl = h
            if ts not in ts_map:
                ts_map[ts] = self.ts_now()
            got["n"] += 1
            self.send_dtmf_packet(marker, ts_map[ts], rtp_payload(data, hl))
            return Gst.FlowReturn.OK

        pipe.get_by_name("sink").connect("new-sample", on_sample)
        # The element's own send_event refuses custom events; its src pad takes them.
        src = pipe.get_by_name("d").get_static_pad("src")
        pipe.set_state(Gst.State.PLAYING)
        time.sleep(0.1)
        for d in digits:
            code = DTMF_CODES.index(d.upper())
            with self.send_lock:
                self.dtmf_active = True
            self.mark("rtpdtmfsrc %s start" % d)
            st = Gst.Structure.new_from_string("dtmf-event,type=(int)1,number=(int)%d,volume=(int)10,start=(boolean)true" % code)
            src.send_event(Gst.Event.new_custom(Gst.EventType.CUSTOM_UPSTREAM, st))
            time.sleep(duration_ms / 1000.0)
            st = Gst.Structure.new_from_string("dtmf-event,type=(int)1,start=(boolean)false")
            src.send_event(Gst.Event.new_custom(Gst.EventType.CUSTOM_UPSTREAM, st))
            time.sleep(0.1)
            with self.send_lock:
                self.dtmf_active = False
            time.sleep(self.a.dtmf_gap)
        time.sleep(0.2)
        pipe.set_state(Gst.State.NULL)
        self.mark("rtpdtmfsrc produced %d packets" % got["n"])

    def inject(self, what, count):
        self.mark("inject %s x%d" % (what, count))
        if what == "bad-auth":
            if self.protector is None:
                raise Fail("--inject bad-auth needs --srtp")
            with self.send_lock:
                self.pending_bad_auth += count
            return
        for _ in range(count):
            if what == "replay":
                with self.send_lock:
                    if len(self.sent_history) < 8:
                        raise Fail("--inject replay: fewer than 8 packets sent so far")
                    data = self.sent_history[-6]
                    self.sock.sendto(data, self.dest)
            elif what == "truncated":
                # 5 bytes: an RTP version byte, a PT, and nothing that makes a header.
                with self.send_lock:
                    self.sock.sendto(b"\x80" + bytes([self.audio_pt]) + b"\x00\x01\x00", self.dest)
            elif what == "foreign":
                other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                other.bind((self.a.bind_ip, 0))
                with self.send_lock:
                    data = self.sent_history[-1] if self.sent_history else b""
                if data:
                    other.sendto(data, self.dest)
                other.close()
            else:
                raise Fail("unknown --inject kind %r" % what)
            self.injected[what] = self.injected.get(what, 0) + 1
            time.sleep(0.02)

    # ---- receiving -------------------------------------------------------------------------
    def receive_loop(self):
        while not self.stop_flag.is_set():
            try:
                data, src = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                # ICMP port unreachable from an earlier send, etc.
                continue
            t = self.now()
            self.rx_sources["%s:%d" % src] = self.rx_sources.get("%s:%d" % src, 0) + 1
            if is_rtcp(data):
                self.rx_rtcp += 1
                if not self.suite:
                    self.scan_rtcp(data)
                continue
            h = rtp_header(data)
            if h is None:
                self.rx_malformed += 1
                continue
            marker, pt, seq, ts, ssrc, hl = h
            dur = opus_samples_48k(rtp_payload(data, hl)) if self.a.codec == "opus" and not self.suite else None
            self.rx_log.append((round(t, 4), pt, seq, ts, ssrc, int(marker), len(data) - hl, dur))
            if self.raw_dump is not None:
                self.raw_dump.append(data)
            if self.suite:
                with self.key_lock:
                    if self.unprotector is not None:
                        self.unprotector.push(data)
                    else:
                        # Media that overtook the HTTP answer carrying the bridge's key.
                        self.early.append(data)
            else:
                self.on_plain(data)

    def scan_rtcp(self, data):
        off = 0
        while off + 4 <= len(data):
            pt = data[off + 1]
            length = (struct.unpack("!H", data[off + 2:off + 4])[0] + 1) * 4
            if pt == 203:
                self.rx_bye += 1
            elif pt == 200 and off + 16 <= len(data):
                sec, frac = struct.unpack("!II", data[off + 8:off + 16])
                self.last_sr = (((sec & 0xFFFF) << 16) | (frac >> 16), time.monotonic())
            off += length

    def on_plain(self, data):
        """A decrypted (or plain) RTP packet from the bridge."""
        h = rtp_header(data)
        if h is None:
            return
        marker, pt, seq, ts, ssrc, hl = h
        self.rx_plain += 1
        payload = rtp_payload(data, hl)
        if self.te_pt is not None and pt == self.te_pt:
            self.on_dtmf(marker, seq, ts, ssrc, payload)
        elif pt == self.audio_pt:
            self.decode(data)
        else:
            self.rx_unknown_pt += 1

    def on_dtmf(self, marker, seq, ts, ssrc, payload):
        if len(payload) < 4:
            return
        code, flags, dur = struct.unpack("!BBH", payload[:4])
        key = (ssrc, ts)
        ev = self.dtmf_events.get(key)
        t = round(self.now(), 3)
        if ev is None:
            ev = {"digit": DTMF_CODES[code] if code < 16 else "event-%d" % code, "code": code, "ts": ts,
                  "ssrc": ssrc, "first_at": t, "packets": 0, "end_packets": 0, "markers": 0,
                  "max_duration": 0, "volume": flags & 0x3F, "seqs": []}
            self.dtmf_events[key] = ev
            self.dtmf_order.append(key)
        ev["packets"] += 1
        ev["last_at"] = t
        ev["seqs"].append(seq)
        ev["markers"] += int(marker)
        ev["max_duration"] = max(ev["max_duration"], dur)
        if flags & 0x80:
            ev["end_packets"] += 1
        if ev["code"] != code:
            ev["code_changed"] = True

    def decode(self, packet):
        if self.decoder is None:
            c = self.codec
            caps = ("application/x-rtp,media=audio,clock-rate=%d,encoding-name=%s,payload=%d"
                    % (c["clock"], c["sdp"].upper(), self.audio_pt))
            if self.a.codec == "opus":
                caps = ("application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=%d"
                        % self.audio_pt)
            desc = ("appsrc name=src is-live=true format=time do-timestamp=true caps=\"%s\" ! %s ! %s ! "
                    "audioconvert ! audioresample ! audio/x-raw,format=S16LE,channels=1,rate=%d ! "
                    "appsink name=sink emit-signals=true sync=false" % (caps, c["depay"], c["dec"], c["rate"]))
            self.decoder = Gst.parse_launch(desc)
            self.decoder.get_by_name("sink").connect("new-sample", self.on_decoded)
            self.decoder.set_state(Gst.State.PLAYING)
            self.decoder_src = self.decoder.get_by_name("src")
        self.decoder_src.emit("push-buffer", Gst.Buffer.new_wrapped(bytes(packet)))

    def on_decoded(self, sink):
        arr = np.frombuffer(sample_bytes(sink.emit("pull-sample")), dtype=np.int16).copy()
        with self.audio_lock:
            self.audio_chunks.append((self.now(), arr))
        return Gst.FlowReturn.OK

    def check_bus(self):
        for p in (self.sender, self.decoder):
            if p is None:
                continue
            bus = p.get_bus()
            while True:
                m = bus.pop_filtered(Gst.MessageType.ERROR)
                if m is None:
                    break
                err, dbg = m.parse_error()
                self.bus_errors.append("%s: %s" % (err.message, dbg))

    # ---- main ------------------------------------------------------------------------------
    def run(self):
        rx = threading.Thread(target=self.receive_loop, daemon=True)
        rx.start()
        if self.suite:
            srtp_self_check(self.suite)
            self.protector = SrtpProtect(self.suite, self.local_key)
        self.join()
        self.start_sender()
        a = self.a
        if a.timeline_after_rx:
            # Action times (and --duration) count from when media is flowing in: robust to a
            # slow start of this leg or of the other side.
            while len(self.rx_log) < a.timeline_after_rx and self.now() < a.duration + 20:
                if not self.sleep_until(self.now() + 0.05):  # base is still 0 here
                    break
            self.base = self.now()
            self.mark("timeline starts: %d packets received" % len(self.rx_log))
        actions = []
        if a.hold_after is not None:
            actions.append((a.hold_after, "hold", None))
        for at in a.restart_at:
            actions.append((at, "restart", None))
        if a.resume_after is not None:
            actions.append((a.resume_after, "resume", None))
        if a.dtmf_pcap or a.dtmf_digits:
            actions.append((a.dtmf_at, "dtmf", None))
        for spec in a.inject:
            t, _, what = spec.partition(":")
            what, _, n = what.partition("x")
            actions.append((float(t), "inject", (what, int(n or 1))))
        actions.sort(key=lambda x: x[0])
        threads = []
        if a.report_loss is not None:
            th = threading.Thread(target=self.loss_report_thread, daemon=True)
            th.start()
            threads.append(th)
        for at, what, arg in actions:
            if not self.sleep_until(at):
                break
            if what == "hold":
                self.reoffer(self.a.hold_direction)
            elif what == "resume":
                self.reoffer("sendrecv")
            elif what == "dtmf":
                th = threading.Thread(target=self.dtmf_thread, daemon=True)
                th.start()
                threads.append(th)
            elif what == "restart":
                self.restart_stream()
            elif what == "inject":
                self.inject(*arg)
            self.check_bus()
        self.sleep_until(a.duration)
        for th in threads:
            th.join(timeout=10)
        self.check_bus()
        self.stop_flag.set()
        if self.sender is not None:
            self.sender.set_state(Gst.State.NULL)
        rx.join(timeout=2)
        time.sleep(0.1)  # let the decoders drain
        left = None if a.no_leave else self.leave()
        return left

    def sleep_until(self, t):
        """Sleeps until `t` seconds after the start; False if --stop-file appeared first."""
        t += self.base
        while self.now() < t:
            if self.a.stop_file and os.path.exists(self.a.stop_file):
                if not self.stopped_by_file:
                    self.stopped_by_file = True
                    self.mark("stop file seen")
                return False
            time.sleep(min(0.05, max(0.0, t - self.now())))
        return not self.stopped_by_file

    def loss_report_thread(self):
        """Every second, an RTCP RR (muxed) claiming --report-loss percent of the bridge's latest
        stream lost, as a receiver behind a lossy link would send. It echoes the bridge's last
        SR (LSR, DLSR), so the bridge measures the round trip; jitter is reported as 0."""
        fraction = max(0, min(255, round(self.a.report_loss * 256 / 100)))
        while not self.stop_flag.wait(1.0):
            if not self.rx_log or self.dest is None or self.suite:
                continue
            last = self.rx_log[-1]
            seq, ssrc = last[2], last[4]
            lsr, dlsr = 0, 0
            if self.last_sr is not None:
                lsr, at = self.last_sr
                dlsr = min(0xFFFFFFFF, int((time.monotonic() - at) * 65536))
            block = struct.pack("!IIIIII", ssrc, (fraction << 24) | 0, seq, 0, lsr, dlsr)
            rr = struct.pack("!BBHI", 0x81, 201, 7, self.ssrc) + block
            with self.send_lock:
                try:
                    self.sock.sendto(rr, self.dest)
                    self.sent_loss_reports += 1
                except OSError as e:
                    log("RR send failed:", e)

    def dtmf_thread(self):
        try:
            a = self.a
            if a.dtmf_pcap:
                self.dtmf_pcap([p for p in a.dtmf_pcap.split(",") if p])
            if a.dtmf_digits:
                if a.dtmf_source == "gst":
                    self.dtmf_gst(a.dtmf_digits, a.dtmf_duration_ms)
                else:
                    self.dtmf_handbuilt(a.dtmf_digits, a.dtmf_duration_ms, a.dtmf_marker)
        except Exception as e:  # noqa: BLE001
            self.error = self.error or "dtmf sender: %s" % e

    # ---- report ----------------------------------------------------------------------------
    def stream_stats(self):
        rtp = self.rx_log
        by_pt = {}
        for e in rtp:
            by_pt[str(e[1])] = by_pt.get(str(e[1]), 0) + 1
        ssrcs = []
        for e in rtp:
            if e[4] not in ssrcs:
                ssrcs.append(e[4])
        bad_steps = []
        for prev, cur in zip(rtp, rtp[1:]):
            step = (cur[2] - prev[2]) & 0xFFFF
            if step != 1:
                bad_steps.append({"at": cur[0], "from": prev[2], "to": cur[2], "step": step if step < 0x8000 else step - 0x10000,
                                  "ssrc_changed": prev[4] != cur[4]})
        # timestamp vs wall clock, between consecutive audio packets of one SSRC
        clock = self.codec["clock"]
        audio = [e for e in rtp if e[1] == self.audio_pt]
        worst = {"excess_ms": 0.0}
        max_gap = {"wall_ms": 0.0}
        backwards = 0
        for prev, cur in zip(audio, audio[1:]):
            if prev[4] != cur[4]:
                continue
            dts = (cur[3] - prev[3]) & 0xFFFFFFFF
            if dts >= 0x80000000:
                dts -= 0x100000000
            if dts <= 0:
                backwards += 1
            ts_ms = dts * 1000.0 / clock
            wall_ms = (cur[0] - prev[0]) * 1000.0
            excess = ts_ms - wall_ms
            if abs(excess) > abs(worst["excess_ms"]):
                worst = {"excess_ms": round(excess, 1), "ts_ms": round(ts_ms, 1), "wall_ms": round(wall_ms, 1),
                         "at": cur[0]}
            if wall_ms > max_gap["wall_ms"]:
                max_gap = {"wall_ms": round(wall_ms, 1), "ts_ms": round(ts_ms, 1), "at": cur[0]}
        return {
            "packets": len(rtp),
            "rtcp_packets": self.rx_rtcp,
            "rtcp_bye": self.rx_bye,
            "malformed": self.rx_malformed,
            "by_pt": by_pt,
            # audio-PT packets too short for 10 ms of audio: a telephone-event passed off as audio
            "short_audio": sum(1 for e in rtp if e[1] == self.audio_pt and e[6] < 40),
            "ssrcs": ssrcs,
            "seq_steps_not_1": len(bad_steps),
            "seq_step_examples": bad_steps[:20],
            "ts_not_increasing": backwards,
            "max_ts_vs_wall": worst,
            "largest_gap": max_gap,
            "first_at": rtp[0][0] if rtp else None,
            "last_at": rtp[-1][0] if rtp else None,
            "sources": self.rx_sources,
            "decrypted": self.unprotector.out if self.unprotector else None,
            "srtp_auth_failed": self.unprotector.auth_failed if self.unprotector else None,
            "srtp_replayed": self.unprotector.replayed if self.unprotector else None,
            "plain_rtp": self.rx_plain,
            "unknown_pt": self.rx_unknown_pt,
        }

    def audio_report(self):
        rate = self.codec["rate"]
        with self.audio_lock:
            chunks = list(self.audio_chunks)
        if not chunks:
            return {"rate": rate, "samples": 0, "dominant_hz": None}
        allx = np.concatenate([c for _, c in chunks])
        if self.a.save_audio:
            with open(self.a.save_audio, "wb") as f:
                f.write(allx.astype("<i2").tobytes())
        tail = allx[-int(self.a.analyze_last * rate):]
        out = analyse(tail, rate, self.a.probe)
        out["rate"] = rate
        out["total_samples"] = int(len(allx))
        out["first_at"] = round(chunks[0][0], 3)
        out["file"] = self.a.save_audio
        return out

    def dtmf_report(self):
        evs = []
        for key in self.dtmf_order:
            ev = dict(self.dtmf_events[key])
            ev["duration_ms"] = round(ev["max_duration"] * 1000.0 / self.te_clock, 1)
            seqs = ev.pop("seqs")
            ev["distinct_seqs"] = len(set(seqs))
            evs.append(ev)
        return {"digits": "".join(e["digit"] for e in evs if len(e["digit"]) == 1), "events": evs}

    def report(self, left):
        out = {
            "participant_id": self.participant_id,
            "t0_unix": self.t0_unix,
            "kind": self.kind,
            "codec": self.a.codec,
            "local_port": self.local_port,
            "ssrc": self.ssrc,
            "bridge_addr": "%s:%d" % self.dest if self.dest else None,
            "audio_pt": self.audio_pt,
            "audio_level_ext": self.level_ext,
            "sent_loss_reports": self.sent_loss_reports,
            "te_pt": self.te_pt,
            "join": self.join_view,
            "offer_sdp": self.offer_sdp,
            "answer_sdp": self.answer_sdp,
            "bridge_offer_sdp": self.bridge_offer_sdp,
            "renegotiations": self.renegotiations,
            "ptime": self.a.ptime,
            "restarts": self.restarts,
            "bridge_key_changes": self.bridge_key_changes,
            "sent": {"audio_packets": self.sent_audio, "dtmf_packets": self.sent_dtmf,
                     "dtmf_events": list(self.sent_events.values()),
                     "audio_suppressed_for_dtmf": self.suppressed_audio, "injected": self.injected,
                     "errors": self.send_errors},
            "received": self.stream_stats(),
            "audio": self.audio_report(),
            "timeline": self.timeline,
            "left_status": left,
            "stopped_by_file": self.stopped_by_file,
            "ran_s": round(self.now(), 3),
            "timeline_base": round(self.base, 3),
            "gst_errors": self.bus_errors,
        }
        if self.a.dtmf_listen:
            out["dtmf"] = self.dtmf_report()
        if self.a.packet_log:
            out["packet_log"] = self.rx_log
        if self.raw_dump is not None:
            with open(self.a.dump_packets, "w") as f:
                f.writelines(d.hex() + "\n" for d in self.raw_dump)
        if self.suite:
            out["srtp"] = {"suite": self.suite, "local_key": base64.b64encode(self.local_key).decode(),
                           "bridge_key": base64.b64encode(self.bridge_key).decode() if self.bridge_key else None}
        return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_join_args(p, "rtp-leg")
    p.add_argument("--bind-ip", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="local RTP port (0: any free one)")
    p.add_argument("--codec", choices=sorted(CODECS), default="pcmu")
    p.add_argument("--ssrc", type=int, default=None, help="the SSRC to send with (default: random)")
    p.add_argument("--pt", type=int, default=None, help="PT to offer for the codec (default: its usual one)")
    p.add_argument("--te-pt", type=int, default=101, help="telephone-event PT to offer")
    p.add_argument("--tone", type=float, default=0.0, help="send a sine of HZ (0: send no audio)")
    p.add_argument("--amplitude", type=float, default=0.5)
    p.add_argument("--report-loss", type=float, default=None,
                   help="send an RTCP RR every second claiming this percent of the bridge's packets lost")
    p.add_argument("--audio-level-ext", type=int, default=None,
                   help="offer RFC 6464 audio levels under this extmap id and send them if taken")
    p.add_argument("--srtp", choices=sorted(SUITES), default=None)
    p.add_argument("--srtp-key", default=None, help="the leg's own base64 key||salt (default: random)")
    p.add_argument("--late-offer", action="store_true")
    p.add_argument("--send-kind", action="store_true", help="also send \"kind\" with an offer")
    p.add_argument("--direction", choices=["sendrecv", "sendonly", "recvonly", "inactive"], default="sendrecv")
    p.add_argument("--no-rtcp-mux", action="store_true")
    p.add_argument("--hold-after", type=float, default=None)
    p.add_argument("--resume-after", type=float, default=None)
    p.add_argument("--hold-direction", choices=["inactive", "sendonly"], default="inactive",
                   help="what the hold re-offer says (sendonly: the leg keeps sending, music on hold)")
    p.add_argument("--dtmf-listen", action="store_true")
    p.add_argument("--dtmf-pcap", default=None, help="comma-separated pcap files to replay")
    p.add_argument("--dtmf-digits", default=None)
    p.add_argument("--dtmf-source", choices=["handbuilt", "gst"], default="handbuilt")
    p.add_argument("--dtmf-marker", action="store_true", help="set the marker bit on an event's first packet")
    p.add_argument("--dtmf-duration-ms", type=int, default=160)
    p.add_argument("--dtmf-at", type=float, default=1.0)
    p.add_argument("--dtmf-gap", type=float, default=0.25)
    p.add_argument("--inject", action="append", default=[],
                   help="T:WHAT[xN] with WHAT bad-auth|replay|truncated|foreign (repeatable)")
    p.add_argument("--probe", default="", help="comma-separated frequencies for band levels")
    p.add_argument("--analyze-last", type=float, default=2.0, help="seconds of received audio to analyse")
    p.add_argument("--save-audio", default=None, help="write all received audio (S16LE mono) here")
    p.add_argument("--packet-log", action="store_true", help="include every received packet in the output")
    p.add_argument("--dump-packets", default=None, help="write every received RTP datagram (hex) here")
    p.add_argument("--duration", type=float, default=5.0, help="seconds to run (at most, with --stop-file)")
    p.add_argument("--ptime", type=int, default=20, help="a=ptime to offer, and the packet duration sent (ms)")
    p.add_argument("--restart-at", type=float, action="append", default=[],
                   help="restart the stream (new SSRC, sequence and timestamp) at this time (repeatable)")
    p.add_argument("--audio", choices=["forward", "mix", "auto"], default=None, help="the join's audio preference")
    p.add_argument("--stop-file", default=None, help="end as soon as this file exists")
    p.add_argument("--timeline-after-rx", type=int, default=0,
                   help="count action times and --duration from the N-th received RTP packet, not the start")
    p.add_argument("--no-leave", action="store_true")
    a = p.parse_args()
    a.probe = [float(x) if "." in x else int(x) for x in a.probe.split(",") if x.strip()]
    if a.srtp_key and not a.srtp:
        p.error("--srtp-key needs --srtp")

    Gst.init(None)
    leg = None
    try:
        missing = [e.split()[0] for c in (CODECS[a.codec],) for e in (c["enc"], c["pay"], c["depay"], c["dec"])
                   if Gst.ElementFactory.find(e.split()[0]) is None]
        if a.srtp:
            missing += [e for e in ("srtpenc",) if Gst.ElementFactory.find(e) is None]
        if missing:
            raise Fail("GStreamer elements missing: %s" % ", ".join(missing))
        leg = Leg(a)
        left = leg.run()
        out = leg.report(left)
        if leg.error:
            out["error"] = leg.error
    except Fail as e:
        out = leg.report(None) if leg else {}
        out["error"] = str(e)
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        out = {}
        try:
            out = leg.report(None) if leg else {}
        except Exception:  # noqa: BLE001
            pass
        out["error"] = "%s: %s" % (type(e).__name__, e)
    exit_with_report(out)


if __name__ == "__main__":
    main()
