#!/usr/bin/env python3
"""Cost of libopus decode entry points on this machine (see docs/benchmarks.md, S4).

Debian's libopus 1.3.1 is built with custom modes. There, opus_decoder_get_size() goes through
opus_custom_mode_create(), which runs the CPU-feature probe (cpuid). The multistream decoder,
which GStreamer's opusdec uses, calls opus_decoder_get_size() on every decode. In a VM, cpuid
traps to the hypervisor. This script times the calls with the packets of bench/media/tone.opus.ogg.

  python3 bench/opus_cpuid.py
"""

import ctypes
import sys
import time
from pathlib import Path


def opus_packets(path):
    data = path.read_bytes()
    packets, cur, pos = [], b"", 0
    while pos + 27 <= len(data):
        n = data[pos + 26]
        body = pos + 27 + n
        for seg in data[pos + 27:pos + 27 + n]:
            cur += data[body:body + seg]
            body += seg
            if seg < 255:
                packets.append(cur)
                cur = b""
        pos = body
    return [p for p in packets if not p.startswith(b"Opus")]


def main():
    media = Path(__file__).resolve().parent / "media" / "tone.opus.ogg"
    if not media.exists():
        sys.exit(f"{media} is missing: run bench/media.sh")
    lib = ctypes.CDLL("libopus.so.0")
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_multistream_decoder_create.restype = ctypes.c_void_p
    for f in (lib.opus_decode, lib.opus_multistream_decode):
        f.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    packets = opus_packets(media)
    err = ctypes.c_int()
    dec = lib.opus_decoder_create(48000, 1, ctypes.byref(err))
    mapping = (ctypes.c_ubyte * 1)(0)
    mdec = lib.opus_multistream_decoder_create(48000, 1, 1, 0, mapping, ctypes.byref(err))
    pcm = (ctypes.c_short * 5760)()
    calls = {
        "opus_decode": lambda p: lib.opus_decode(dec, p, len(p), pcm, 5760, 0),
        "opus_multistream_decode": lambda p: lib.opus_multistream_decode(mdec, p, len(p), pcm, 5760, 0),
        "opus_decoder_get_size(1)": lambda p: lib.opus_decoder_get_size(1),
        "(empty call, Python overhead)": lambda p: None,
    }
    n = 3000
    for name, fn in calls.items():
        t = time.perf_counter()
        for i in range(n):
            fn(packets[i % len(packets)])
        print(f"{name:32s} {(time.perf_counter() - t) / n * 1e6:7.1f} µs per call")


if __name__ == "__main__":
    main()
