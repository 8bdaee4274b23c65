#!/usr/bin/python3
"""A GStreamer webrtcbin peer for the Switchboard integration tests.

Run it with Debian's /usr/bin/python3 (it needs python3-gi, gir1.2-gst-plugins-bad-1.0 and
python3-numpy).  It joins a room through the bridge's HTTP API itself (urllib, no trickle ICE:
the bridge takes no trickle, so the offer is POSTed only once ICE gathering is complete), stays in the
room for --duration seconds and prints ONE JSON line on stdout at the end.

Roles (combinable):
  --publish-tone HZ   audiotestsrc sine HZ -> opusenc -> rtpopuspay -> webrtcbin
  --receive SECONDS   recvonly audio transceiver(s); incoming Opus is decoded to S16LE mono 48 kHz
                      and the dominant frequency of the last SECONDS of audio is reported
  --publish-video ARGB  a sendonly video transceiver: a solid ARGB picture (e.g. 0xffff0000 for red),
                      320x240 at 15 fps, in --video-codec (vp8 or h264)
  --receive-video     a recvonly video transceiver in --video-codec; the pictures are decoded, and
                      their count, the last one's size and its colour at a few points are reported
  --video-pref P      send "video": P in the join body (auto or composite)
  --keyframe-every N  the published video's keyframe interval in frames (default 30)
With both, the single audio transceiver is sendrecv (use --recv-slots for extra recvonly slots).

  --rtp-log           report each received RTP packet's arrival (unix time) and sequence number,
                      from which a test counts the packets lost in a stretch of time
Other modes:
  --dump-offer        build an offer (gathering complete) and print {"offer": sdp}; no HTTP at all
  --offer-file PATH --answer-file PATH
                      no HTTP either: write the offer (gathering complete) to PATH, wait for the
                      answer to appear in the other file, apply it, and stay --duration seconds.
                      For tests that carry the SDP themselves (e.g. through the ng protocol)

Output (last stdout line), e.g.
  {"participant_id": "...", "received_rtp_packets": 812, "dominant_hz": 440.1, "rms": 0.35, ...}
On failure: {"error": "..."} and a non-zero exit code.
"""

import argparse
import json
import os
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstRtp", "1.0")
from gi.repository import GLib, Gst, GstRtp, GstSdp, GstWebRTC  # noqa: E402

import numpy as np  # noqa: E402

from peer_common import add_join_args, exit_with_report, http_json, logger, participants_url  # noqa: E402

RATE = 48000
OPUS_CAPS = "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111"
VIDEO_CAPS = {
    "vp8": "application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000,payload=96",
    "h264": "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=102,"
            "packetization-mode=(string)1,profile-level-id=(string)42e01f",
}
VIDEO_ENCODE = {
    "vp8": "vp8enc deadline=1 keyframe-max-dist=%(key)d ! rtpvp8pay pt=96 mtu=1200",
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=%(key)d ! "
            "video/x-h264,profile=constrained-baseline ! rtph264pay pt=102 mtu=1200 config-interval=-1",
}
VIDEO_DECODE = {"VP8": "rtpvp8depay ! vp8dec", "H264": "rtph264depay ! avdec_h264"}
# Where the last received picture's colour is reported, as fractions of its width and height.
VIDEO_POINTS = [(0.25, 0.5), (0.75, 0.5), (0.5, 0.5), (0.04, 0.5), (0.25, 0.04)]


log = logger("webrtcbin_peer")


def fail(msg, code=2, **extra):
    out = {"error": msg}
    out.update(extra)
    print(json.dumps(out), flush=True)
    sys.exit(code)


def dominant_frequency(samples, rate):
    """Dominant frequency (Hz) of an int16 mono signal: Hann window, rfft, parabolic peak."""
    if len(samples) < 256:
        return None
    x = samples.astype(np.float64)
    x -= x.mean()
    w = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * w))
    spec[0] = 0.0
    k = int(np.argmax(spec))
    if 0 < k < len(spec) - 1:
        a, b, c = spec[k - 1], spec[k], spec[k + 1]
        denom = a - 2 * b + c
        delta = 0.5 * (a - c) / denom if denom != 0 else 0.0
    else:
        delta = 0.0
    return float((k + delta) * rate / len(x))


class Peer:
    def __init__(self, args):
        self.args = args
        self.loop = GLib.MainLoop()
        self.error = None
        self.participant_id = None
        self.join_response = None
        self.received_rtp_packets = 0
        self.sent_rtp_packets = 0
        self.incoming_pads = 0
        self.first_rtp_at = None
        self.first_rtp_unix = None
        self.rtp_log = []  # (unix time, sequence number) of each received packet, with --rtp-log
        self.samples = []
        self.samples_lock = threading.Lock()
        self.offer_sdp = None
        self.answer_sdp = None
        self.gathering_done = False
        self.start = time.monotonic()
        self.negotiation_needed = 0
        self.renegotiations = 0  # this peer never renegotiates; reported so tests can say so
        self.stats = {}
        self.audio_linked = False
        self.video_linked = False
        self.video_frames = 0
        self.last_picture = None  # (width, height, RGB bytes)
        self.build()

    # ---- pipeline -------------------------------------------------------------------------
    def build(self):
        a = self.args
        self.pipe = Gst.Pipeline.new("peer")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        if self.webrtc is None:
            fail("webrtcbin element not found (install gstreamer1.0-plugins-bad and gstreamer1.0-nice)")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.webrtc.set_property("latency", 100)
        self.pipe.add(self.webrtc)

        # libnice ignores loopback interfaces; the bridge answers with a 127.0.0.1 host candidate.
        # Keep the agent referenced for the process lifetime: webrtcbin 1.22's agent is a floating
        # GstObject, and dropping the Python wrapper unrefs webrtcbin's own reference (crash).
        self.ice_agent = self.webrtc.get_property("ice-agent")
        self.ice_agent.set_property("ice-tcp", False)  # the bridge is UDP only
        for ip in a.local_ip:
            ok = self.ice_agent.emit("add-local-ip-address", ip)
            log("add-local-ip-address", ip, "->", ok)

        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("pad-added", self.on_pad_added)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering_state)
        self.webrtc.connect("notify::connection-state", self.on_state_notify)
        self.webrtc.connect("notify::ice-connection-state", self.on_state_notify)

        caps = Gst.Caps.from_string(OPUS_CAPS)
        if a.publish_tone is not None:
            src = Gst.parse_bin_from_description(
                "audiotestsrc is-live=true wave=sine freq=%f volume=0.5 ! audioconvert ! "
                "audioresample ! audio/x-raw,rate=48000,channels=1 ! "
                "opusenc bitrate=64000 frame-size=20 ! rtpopuspay pt=111 name=pay ! "
                "capsfilter caps=\"%s\"" % (a.publish_tone, OPUS_CAPS),
                True,
            )
            self.pipe.add(src)
            pay = src.get_by_name("pay")
            pay.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self.on_sent_buffer)
            sinkpad = self.webrtc.request_pad_simple("sink_%u")
            src.get_static_pad("src").link(sinkpad)
            trans = sinkpad.get_property("transceiver")
            direction = (
                GstWebRTC.WebRTCRTPTransceiverDirection.SENDRECV
                if a.receive is not None
                else GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY
            )
            trans.set_property("direction", direction)
            extra = max(0, a.recv_slots - 1) if a.receive is not None else 0
        else:
            extra = a.recv_slots if a.receive is not None else 0
        for _ in range(extra):
            self.webrtc.emit(
                "add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, caps
            )
        if a.publish_video is not None:
            vcaps = VIDEO_CAPS[a.video_codec]
            vsrc = Gst.parse_bin_from_description(
                "videotestsrc is-live=true pattern=solid-color foreground-color=%d ! "
                "video/x-raw,width=320,height=240,framerate=15/1 ! videoconvert ! %s name=vpay ! "
                "capsfilter caps=\"%s\"" % (int(a.publish_video, 0), VIDEO_ENCODE[a.video_codec] % {"key": a.keyframe_every}, vcaps),
                True,
            )
            self.pipe.add(vsrc)
            vsrc.get_by_name("vpay").get_static_pad("src").add_probe(
                Gst.PadProbeType.BUFFER | Gst.PadProbeType.BUFFER_LIST, self.on_sent_buffer)
            vsink = self.webrtc.request_pad_simple("sink_%u")
            vsrc.get_static_pad("src").link(vsink)
            vsink.get_property("transceiver").set_property(
                "direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        if a.receive_video:
            self.webrtc.emit(
                "add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
                Gst.Caps.from_string(VIDEO_CAPS[a.video_codec]),
            )
        if a.publish_tone is None and extra == 0 and a.publish_video is None and not a.receive_video:
            fail("nothing to do: give --publish-tone, --receive, --publish-video and/or --receive-video")

        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self.on_bus)

    def on_sent_buffer(self, pad, info):
        # Video payloaders push a frame's packets as one buffer list.
        if info.type & Gst.PadProbeType.BUFFER_LIST:
            self.sent_rtp_packets += info.get_buffer_list().length()
        else:
            self.sent_rtp_packets += 1
        return Gst.PadProbeReturn.OK

    def on_recv_buffer(self, pad, info):
        self.received_rtp_packets += 1
        if self.args.rtp_log:
            ok, rtp = GstRtp.RTPBuffer.map(info.get_buffer(), Gst.MapFlags.READ)
            if ok:
                self.rtp_log.append((round(time.time(), 4), rtp.get_seq()))
                rtp.unmap()
        if self.first_rtp_at is None:
            self.first_rtp_at = time.monotonic() - self.start
            # Wall clock, for tests that compare it with when they started another peer.
            self.first_rtp_unix = time.time()
        return Gst.PadProbeReturn.OK

    def on_pad_added(self, element, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        self.incoming_pads += 1
        log("incoming pad", pad.get_name(), pad.get_current_caps())
        pad.add_probe(Gst.PadProbeType.BUFFER, self.on_recv_buffer)
        caps = pad.get_current_caps()
        st = caps.get_structure(0) if caps is not None and caps.get_size() > 0 else None
        media = st.get_string("media") if st is not None else None
        if media == "video":
            self.link_video(pad, st.get_string("encoding-name"))
            return
        # Only the first incoming audio stream is analysed (with --receive); others are counted
        # and dropped.
        if self.args.receive is None or self.audio_linked:
            self.discard(pad)
            return
        dec = Gst.parse_bin_from_description(
            "rtpopusdepay ! opusdec plc=true ! audioconvert ! audioresample ! "
            "audio/x-raw,format=S16LE,channels=1,rate=48000 ! "
            "appsink name=out emit-signals=true sync=false max-buffers=0 drop=false",
            True,
        )
        self.audio_linked = True
        self.pipe.add(dec)
        dec.get_by_name("out").connect("new-sample", self.on_sample)
        dec.sync_state_with_parent()
        res = pad.link(dec.get_static_pad("sink"))
        log("linked decoder:", res)

    def discard(self, pad):
        """Counts a stream's packets (the probe is on the pad) and drops them."""
        sink = Gst.ElementFactory.make("fakesink", None)
        sink.set_property("sync", False)
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def link_video(self, pad, encoding):
        decode = VIDEO_DECODE.get((encoding or "").upper())
        if not self.args.receive_video or self.video_linked or decode is None:
            log("video pad not analysed:", encoding)
            self.discard(pad)
            return
        self.video_linked = True
        dec = Gst.parse_bin_from_description(
            "%s ! videoconvert ! video/x-raw,format=RGB ! "
            "appsink name=vout emit-signals=true sync=false max-buffers=1 drop=true" % decode,
            True,
        )
        self.pipe.add(dec)
        dec.get_by_name("vout").connect("new-sample", self.on_video_sample)
        dec.sync_state_with_parent()
        log("linked video decoder:", pad.link(dec.get_static_pad("sink")))

    def on_video_sample(self, sink):
        sample = sink.emit("pull-sample")
        st = sample.get_caps().get_structure(0)
        w, h = st.get_value("width"), st.get_value("height")
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        if ok:
            data = bytes(info.data)
            buf.unmap(info)
            with self.samples_lock:
                self.video_frames += 1
                self.last_picture = (w, h, data)
        return Gst.FlowReturn.OK

    def video_report(self):
        with self.samples_lock:
            frames, picture = self.video_frames, self.last_picture
        out = {"video_frames": frames, "video_width": None, "video_height": None, "video_pixels": {}}
        if picture is None:
            return out
        w, h, data = picture
        stride = (w * 3 + 3) // 4 * 4  # RGB rows are padded to 4 bytes
        out["video_width"], out["video_height"] = w, h
        for fx, fy in VIDEO_POINTS:
            x, y = min(int(fx * w), w - 1), min(int(fy * h), h - 1)
            i = y * stride + x * 3
            out["video_pixels"]["%g,%g" % (fx, fy)] = list(data[i:i + 3])
        return out

    def on_sample(self, sink):
        sample = sink.emit("pull-sample")
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        if ok:
            arr = np.frombuffer(bytes(info.data), dtype=np.int16)
            buf.unmap(info)
            with self.samples_lock:
                self.samples.append(arr)
        return Gst.FlowReturn.OK

    def on_bus(self, bus, msg):
        t = msg.type
        if t == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            self.error = "pipeline error: %s (%s)" % (err.message, dbg)
            log(self.error)
            self.loop.quit()
        elif t == Gst.MessageType.WARNING:
            err, dbg = msg.parse_warning()
            log("warning:", err.message)
        return True

    def on_state_notify(self, element, pspec):
        log(pspec.name, "=", element.get_property(pspec.name).value_nick)

    # ---- negotiation ----------------------------------------------------------------------
    def on_negotiation_needed(self, element):
        self.negotiation_needed += 1
        if self.negotiation_needed > 1:
            # The bridge never needs us to renegotiate; note it and do nothing.
            log("on-negotiation-needed again (ignored)")
            return
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, element, None)
        element.emit("create-offer", None, promise)

    def on_offer_created(self, promise, element, _):
        promise.wait()
        reply = promise.get_reply()  # keep it in a variable: chained access crashes in 1.22
        offer = reply.get_value("offer")
        element.emit("set-local-description", offer, Gst.Promise.new())
        log("offer created; gathering ICE candidates")

    def on_gathering_state(self, element, pspec):
        state = element.get_property("ice-gathering-state")
        log("ice-gathering-state =", state.value_nick)
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not self.gathering_done:
            self.gathering_done = True
            GLib.idle_add(self.after_gathering)

    def after_gathering(self):
        desc = self.webrtc.get_property("local-description")
        self.offer_sdp = desc.sdp.as_text()
        if "a=candidate" not in self.offer_sdp:
            log("warning: offer holds no a=candidate line")
        if self.args.dump_offer:
            self.loop.quit()
            return False
        if getattr(self.args, "offer_file", None):
            threading.Thread(target=self.exchange_through_files, daemon=True).start()
            return False
        threading.Thread(target=self.post_offer, daemon=True).start()
        return False

    def exchange_through_files(self):
        """Writes the offer (whole, by a rename) and polls for the answer's file."""
        a = self.args
        tmp = a.offer_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.offer_sdp)
        os.rename(tmp, a.offer_file)
        log("offer written to", a.offer_file, "; waiting for", a.answer_file)
        while not os.path.exists(a.answer_file):
            time.sleep(0.05)
        with open(a.answer_file) as f:
            self.answer_sdp = f.read()
        GLib.idle_add(self.apply_answer)

    def post_offer(self):
        a = self.args
        body = {"sdp": self.offer_sdp, "display_name": a.display_name}
        if a.kind:
            body["kind"] = a.kind
        if a.video_pref:
            body["video"] = a.video_pref
        url = participants_url(a.api, a.room)
        try:
            status, resp = http_json("POST", url, body)
        except Exception as e:  # noqa: BLE001
            self.error = "POST %s failed: %s" % (url, e)
            GLib.idle_add(self.loop.quit)
            return
        if status != 201 or not isinstance(resp, dict) or "sdp" not in resp:
            self.error = "POST %s -> %s %s" % (url, status, json.dumps(resp)[:2000])
            GLib.idle_add(self.loop.quit)
            return
        self.join_response = resp
        self.participant_id = resp.get("id")
        self.answer_sdp = resp["sdp"]
        log("joined as", self.participant_id)
        GLib.idle_add(self.apply_answer)

    def apply_answer(self):
        ok, sdpmsg = GstSdp.SDPMessage.new_from_text(self.answer_sdp)
        if ok != GstSdp.SDPResult.OK:
            self.error = "answer SDP does not parse"
            self.loop.quit()
            return False
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdpmsg)
        promise = Gst.Promise.new_with_change_func(self.on_answer_set, None, None)
        self.webrtc.emit("set-remote-description", answer, promise)
        return False

    def on_answer_set(self, promise, _a, _b):
        promise.wait()
        reply = promise.get_reply()
        if reply is not None and reply.has_field("error"):
            self.error = "set-remote-description failed: %s" % reply.get_value("error")
            GLib.idle_add(self.loop.quit)
            return
        log("answer applied")
        GLib.timeout_add(int(self.args.duration * 1000), self.finish)

    def finish(self):
        self.collect_stats()
        self.loop.quit()
        return False

    def collect_stats(self):
        done = threading.Event()
        result = {}

        def on_stats(promise, _a, _b):
            try:
                reply = promise.get_reply()
                if reply is not None:
                    for i in range(reply.n_fields()):
                        name = reply.nth_field_name(i)
                        st = reply.get_value(name)
                        if not isinstance(st, Gst.Structure):
                            continue
                        kind = st.get_name()
                        if kind not in ("inbound-rtp", "outbound-rtp"):
                            continue
                        entry = {}
                        for f in ("packets-received", "packets-sent", "packets-lost", "bytes-received", "bytes-sent", "ssrc"):
                            if st.has_field(f):
                                v = st.get_value(f)
                                if isinstance(v, (int, float)):
                                    entry[f] = v
                        result.setdefault(kind, []).append(entry)
            except Exception as e:  # noqa: BLE001
                log("stats parse failed:", e)
            done.set()

        promise = Gst.Promise.new_with_change_func(on_stats, None, None)
        self.webrtc.emit("get-stats", None, promise)
        done.wait(2.0)
        self.stats = result

    # ---- run ------------------------------------------------------------------------------
    def run(self):
        self.pipe.set_state(Gst.State.PLAYING)
        hard = self.args.timeout or (self.args.duration + 30)
        GLib.timeout_add(int(hard * 1000), self.on_hard_timeout)
        self.loop.run()
        report = self.report()
        if self.participant_id and not self.args.no_leave:
            url = participants_url(self.args.api, self.args.room, "/" + self.participant_id)
            try:
                status, _ = http_json("DELETE", url, timeout=3)
                report["left_status"] = status
            except Exception as e:  # noqa: BLE001
                report["left_status"] = "error: %s" % e
        self.pipe.set_state(Gst.State.NULL)
        return report

    def on_hard_timeout(self):
        if self.error is None:
            if self.args.dump_offer or self.participant_id is None:
                self.error = "timed out after %ss (gathering_done=%s)" % (
                    self.args.timeout or (self.args.duration + 30), self.gathering_done)
            else:
                self.error = "timed out waiting for the answer to be applied"
        self.loop.quit()
        return False

    def report(self):
        if self.args.dump_offer:
            if self.offer_sdp is None:
                return {"error": self.error or "no offer"}
            return {"offer": self.offer_sdp}
        with self.samples_lock:
            pcm = np.concatenate(self.samples) if self.samples else np.zeros(0, dtype=np.int16)
        out = {
            "participant_id": self.participant_id,
            "received_rtp_packets": self.received_rtp_packets,
            "sent_rtp_packets": self.sent_rtp_packets,
            "incoming_streams": self.incoming_pads,
            "first_rtp_after_s": self.first_rtp_at,
            "first_rtp_unix_s": self.first_rtp_unix,
            "decoded_seconds": round(len(pcm) / RATE, 3),
            "dominant_hz": None,
            "rms": None,
            "connection_state": self.webrtc.get_property("connection-state").value_nick,
            "ice_connection_state": self.webrtc.get_property("ice-connection-state").value_nick,
            "renegotiations": self.renegotiations,
            "stats": self.stats,
        }
        if self.args.rtp_log:
            out["rtp_log"] = self.rtp_log
        if self.args.receive_video:
            out.update(self.video_report())
        if self.join_response is not None:
            out["join"] = {k: v for k, v in self.join_response.items() if k != "sdp"}
            out["answer_sdp"] = self.answer_sdp
        if self.args.receive is not None and len(pcm):
            window = pcm[-int(self.args.receive * RATE):]
            out["dominant_hz"] = dominant_frequency(window, RATE)
            out["rms"] = float(np.sqrt(np.mean((window.astype(np.float64) / 32768.0) ** 2)))
        if self.error:
            out["error"] = self.error
        return out


def arg_parser(doc, display_name, receive_help):
    """The options of this peer that the peers built on it (webrtc_listener.py) share."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_join_args(p, display_name, api="http://127.0.0.1:8080", room="test")
    p.add_argument("--publish-tone", type=float, default=None, metavar="HZ")
    p.add_argument("--receive", type=float, default=None, metavar="SECONDS", help=receive_help)
    p.add_argument("--recv-slots", type=int, default=1, help="number of receive audio m-lines")
    p.add_argument("--duration", type=float, default=None, help="seconds to stay in the room after joining")
    p.add_argument("--timeout", type=float, default=None, help="hard timeout (default duration+30)")
    p.add_argument("--kind", default=None, help="send this 'kind' in the join body")
    p.add_argument("--publish-video", default=None, metavar="ARGB", help="publish a solid picture of this colour")
    p.add_argument("--receive-video", action="store_true", help="receive video and report its pictures")
    p.add_argument("--video-codec", default="vp8", choices=sorted(VIDEO_CAPS))
    p.add_argument("--keyframe-every", type=int, default=30, metavar="FRAMES",
                   help="the video encoder's keyframe interval (a recording starts at a keyframe)")
    p.add_argument("--video-pref", default=None, help="send this 'video' preference in the join body")
    p.add_argument("--local-ip", action="append", default=None,
                   help="local address for ICE (default 127.0.0.1; repeatable)")
    p.add_argument("--no-leave", action="store_true", help="do not DELETE the participant at the end")
    p.add_argument("--rtp-log", action="store_true",
                   help="report [unix time, sequence number] of every received RTP packet (rtp_log)")
    return p


def run(peer_class, a):
    """Fills in the --local-ip and --duration defaults, runs a `peer_class(a)` and exits with
    its report."""
    if a.local_ip is None:
        a.local_ip = ["127.0.0.1"]
    if a.duration is None:
        a.duration = max(5.0, (a.receive or 0) + 1.0)
    Gst.init(None)
    # Exits with os._exit: interpreter teardown would drop the ICE agent wrapper (see build()).
    exit_with_report(peer_class(a).run())


def main():
    p = arg_parser(__doc__, "webrtcbin", "receive audio and analyse the last SECONDS of it")
    p.add_argument("--dump-offer", action="store_true", help="print {\"offer\": sdp} and exit; no HTTP")
    p.add_argument("--offer-file", default=None, help="write the offer here instead of POSTing it")
    p.add_argument("--answer-file", default=None, help="with --offer-file: read the answer from here")
    a = p.parse_args()
    if bool(a.offer_file) != bool(a.answer_file):
        p.error("--offer-file and --answer-file go together")
    if a.dump_offer and a.publish_tone is None and a.receive is None:
        a.publish_tone = 440.0
    run(Peer, a)


if __name__ == "__main__":
    main()
