#!/usr/bin/env bash
# Pre-encodes the benchmark media once with ffmpeg (apt `ffmpeg`), into bench/media/:
#   tone.ulaw          440 Hz tone, raw G.711 mu-law, 8 kHz (160 bytes = one 20 ms packet)
#   tone.opus.ogg      the same tone, Opus 48 kHz mono, 32 kbit/s CBR, 20 ms frames
#   silence.opus.ogg   digital silence, same encoder settings
#   video.ivf          VP8 640x360 30 fps, ~1 Mbit/s (testsrc2), 4 s
# The load generator loops these payloads; nothing is encoded while a benchmark runs.
set -euo pipefail
dir="${1:-$(dirname "$0")/media}"
mkdir -p "$dir"
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }
[ -s "$dir/tone.ulaw" ] ||
  ff -f lavfi -i "sine=frequency=440:sample_rate=8000:duration=4" -ac 1 -f mulaw "$dir/tone.ulaw"
[ -s "$dir/tone.opus.ogg" ] ||
  ff -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=4" -ac 1 -c:a libopus -b:a 32k -vbr off \
    -frame_duration 20 -application voip "$dir/tone.opus.ogg"
[ -s "$dir/silence.opus.ogg" ] ||
  ff -f lavfi -i "anullsrc=r=48000:cl=mono" -t 4 -c:a libopus -b:a 32k -vbr off \
    -frame_duration 20 -application voip "$dir/silence.opus.ogg"
[ -s "$dir/video.ivf" ] ||
  ff -f lavfi -i "testsrc2=size=640x360:rate=30" -t 4 -c:v libvpx -b:v 1M -minrate 1M -maxrate 1M \
    -bufsize 500k -g 60 -deadline realtime -cpu-used 8 -error-resilient 1 -f ivf "$dir/video.ivf"
ls -l "$dir"
