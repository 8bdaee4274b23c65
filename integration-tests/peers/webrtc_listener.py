#!/usr/bin/python3
"""A GStreamer webrtcbin peer that decodes and keeps EVERY incoming audio stream, for the MCU
integration tests (mix and transcode routes to a WebRTC subscriber).

It is peers/webrtcbin_peer.py (imported, unchanged: the same signalling through the HTTP API,
the same roles --publish-tone HZ, --receive SECONDS, --recv-slots N) with one difference: where
webrtcbin_peer.py decodes only the first incoming stream, this one gives each incoming stream
its own Opus decoder, and with --save-audio PREFIX writes each one's decoded audio (S16LE mono,
48 kHz) to PREFIX.<mid>.s16le, so a test can check the tones in every slot itself.

Output: webrtcbin_peer.py's JSON line, plus
  "streams": [{"mid", "pad", "rtp_packets", "decoded_seconds", "dominant_hz", "rms", "file"}, ...]
in the order the streams arrived. Run with Debian's /usr/bin/python3.
"""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import webrtcbin_peer as base  # noqa: E402
from peer_common import sample_bytes  # noqa: E402
from webrtcbin_peer import Gst, np  # noqa: E402

RATE = base.RATE


class Stream:
    def __init__(self, pad, mid, mline):
        self.pad = pad
        self.mid = mid
        self.mline = mline
        self.rtp_packets = 0
        self.chunks = []
        self.lock = threading.Lock()

    def pcm(self):
        with self.lock:
            return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)


class Listener(base.Peer):
    def __init__(self, args):
        self.streams = []
        super().__init__(args)

    def on_pad_added(self, element, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        self.incoming_pads += 1
        trans = pad.get_property("transceiver")
        mid = trans.get_property("mid") if trans is not None else None
        mline = trans.get_property("mlineindex") if trans is not None else None
        st = Stream(pad.get_name(), mid, mline)
        self.streams.append(st)
        base.log("incoming stream", pad.get_name(), "mid", mid, pad.get_current_caps())

        def on_buffer(_pad, _info):
            st.rtp_packets += 1
            self.on_recv_buffer(_pad, _info)
            return Gst.PadProbeReturn.OK

        pad.add_probe(Gst.PadProbeType.BUFFER, on_buffer)
        dec = Gst.parse_bin_from_description(
            "rtpopusdepay ! opusdec plc=true ! audioconvert ! audioresample ! "
            "audio/x-raw,format=S16LE,channels=1,rate=%d ! "
            "appsink name=out emit-signals=true sync=false max-buffers=0 drop=false" % RATE,
            True,
        )
        self.pipe.add(dec)
        first = len(self.streams) == 1

        def on_sample(sink):
            arr = np.frombuffer(sample_bytes(sink.emit("pull-sample")), dtype=np.int16).copy()
            with st.lock:
                st.chunks.append(arr)
            if first:
                # The base report's dominant_hz / rms describe the first stream, as before.
                with self.samples_lock:
                    self.samples.append(arr)
            return Gst.FlowReturn.OK

        dec.get_by_name("out").connect("new-sample", on_sample)
        dec.sync_state_with_parent()
        base.log("linked decoder for", pad.get_name(), ":", pad.link(dec.get_static_pad("sink")))

    def report(self):
        out = super().report()
        if self.args.dump_offer:
            return out
        streams = []
        for i, st in enumerate(self.streams):
            pcm = st.pcm()
            entry = {"mid": st.mid, "mline": st.mline, "pad": st.pad, "rtp_packets": st.rtp_packets,
                     "decoded_seconds": round(len(pcm) / RATE, 3), "dominant_hz": None, "rms": None,
                     "file": None}
            if len(pcm):
                window = pcm[-int(max(self.args.receive or 1.0, 0.1) * RATE):]
                entry["dominant_hz"] = base.dominant_frequency(window, RATE)
                entry["rms"] = float(np.sqrt(np.mean((window.astype(np.float64) / 32768.0) ** 2)))
            if self.args.save_audio:
                path = "%s.%s.s16le" % (self.args.save_audio, st.mid if st.mid is not None else "pad%d" % i)
                with open(path, "wb") as f:
                    f.write(pcm.astype("<i2").tobytes())
                entry["file"] = path
            streams.append(entry)
        out["streams"] = streams
        return out


def main():
    p = base.arg_parser(__doc__, "webrtc-listener",
                        "receive audio; dominant_hz / rms describe the last SECONDS of each stream")
    p.add_argument("--save-audio", default=None, metavar="PREFIX",
                   help="write each incoming stream's decoded audio to PREFIX.<mid>.s16le")
    a = p.parse_args()
    a.dump_offer = False
    if a.receive is None:
        p.error("--receive is what this peer is for")
    base.run(Listener, a)


if __name__ == "__main__":
    main()
