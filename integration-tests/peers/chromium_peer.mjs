#!/usr/bin/env node
// A headless Chromium WebRTC peer for the Switchboard integration tests.
//
// Drives Debian's /usr/bin/chromium through playwright-core (never downloads a browser). The page
// is served from a local http server on 127.0.0.1 (navigator.mediaDevices is undefined on
// about:blank). The page builds the RTCPeerConnection with Chromium's fake microphone and camera,
// waits for ICE gathering to complete (the bridge takes no trickle), and hands the
// offer to this script, which POSTs it to the bridge's HTTP API (no CORS involved) and passes the
// answer back. Remote tracks are played in <audio>/<video> elements. After --duration seconds the
// script reads getStats() and prints ONE JSON line:
//   {"participant_id", "connection_state", "inbound": {"audio": {...}, "video": {...}}, ...}
// On failure it prints {"error": "..."} (plus what it knows) and exits 1.
//
// Options: --api URL --room NAME --duration S [--audio-codec pcmu|opus] [--no-video] [--recvonly]
//          [--sendonly] [--display-name NAME] [--no-leave] [--timeout S] [--video-pref auto|composite]
//          [--dtmf DIGITS [--dtmf-at S]]   press DIGITS with RTCDTMFSender S seconds after the answer,
//                                          once connected (120 ms each, 80 ms apart); reported as "dtmf"
//          [--dump-offer]   build an offer and print {"offer": sdp}; no bridge needed

import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
];

function log(...a) {
  process.stderr.write(`[chromium_peer] ${a.join(' ')}\n`);
}

function parseArgs(argv) {
  const o = {
    api: 'http://127.0.0.1:8080',
    room: 'test',
    duration: 5,
    audioCodec: null,
    video: true,
    direction: 'sendrecv',
    displayName: 'chromium',
    leave: true,
    timeout: null,
    dumpOffer: false,
    dtmf: null,
    dtmfAt: 2,
    videoPref: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--api': o.api = next().replace(/\/+$/, ''); break;
      case '--room': o.room = next(); break;
      case '--duration': o.duration = Number(next()); break;
      case '--audio-codec': o.audioCodec = next().toLowerCase(); break;
      case '--no-video': o.video = false; break;
      case '--recvonly': o.direction = 'recvonly'; break;
      case '--sendonly': o.direction = 'sendonly'; break;
      case '--display-name': o.displayName = next(); break;
      case '--no-leave': o.leave = false; break;
      case '--timeout': o.timeout = Number(next()); break;
      case '--dump-offer': o.dumpOffer = true; break;
      case '--dtmf': o.dtmf = next(); break;
      case '--dtmf-at': o.dtmfAt = Number(next()); break;
      case '--video-pref': o.videoPref = next(); break;
      case '-h': case '--help':
        process.stdout.write('see the header of chromium_peer.mjs\n'); process.exit(0);
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (o.audioCodec && !['pcmu', 'opus', 'pcma', 'g722'].includes(o.audioCodec)) {
    throw new Error(`--audio-codec must be pcmu|opus|pcma|g722, not ${o.audioCodec}`);
  }
  if (!(o.duration >= 0)) throw new Error('--duration must be a number of seconds');
  return o;
}

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>switchboard peer</title></head>
<body><div id="media"></div><script>
window.peer = {
  pc: null,
  elements: [],
  tracks: [],
  async offer(opts) {
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    pc.ontrack = (ev) => {
      const track = ev.track;
      this.tracks.push({ kind: track.kind, id: track.id, mid: ev.transceiver && ev.transceiver.mid });
      const el = document.createElement(track.kind === 'video' ? 'video' : 'audio');
      el.autoplay = true;
      el.playsInline = true;
      el.srcObject = new MediaStream([track]);
      document.getElementById('media').appendChild(el);
      this.elements.push(el);
      el.play().catch((e) => console.log('play() failed: ' + e));
    };
    let stream = null;
    if (opts.direction !== 'recvonly') {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: opts.video });
    }
    const kinds = opts.video ? ['audio', 'video'] : ['audio'];
    for (const kind of kinds) {
      let t;
      if (stream) {
        const track = stream.getTracks().find((x) => x.kind === kind);
        t = pc.addTransceiver(track, { direction: opts.direction, streams: [stream] });
      } else {
        t = pc.addTransceiver(kind, { direction: 'recvonly' });
      }
      if (kind === 'audio' && opts.audioCodec) {
        const want = 'audio/' + opts.audioCodec.toUpperCase();
        const all = RTCRtpReceiver.getCapabilities('audio').codecs;
        const codecs = all.filter((c) => c.mimeType.toUpperCase() === want.toUpperCase());
        if (codecs.length === 0) throw new Error('Chromium has no ' + want);
        // Digits need telephone-event at the codec's clock, which the preference list must name.
        const events = opts.dtmf ? all.filter((c) => c.mimeType.toLowerCase() === 'audio/telephone-event'
          && codecs.some((x) => x.clockRate === c.clockRate)) : [];
        t.setCodecPreferences(codecs.concat(events));
      }
    }
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const gathered = await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve(true);
      const timer = setTimeout(() => resolve(false), 8000);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(true); }
      });
    });
    return { sdp: pc.localDescription.sdp, gatheringComplete: gathered };
  },
  async answer(sdp) {
    await this.pc.setRemoteDescription({ type: 'answer', sdp });
  },
  // Resolves with the tones Chromium reports playing, once the last one is over.
  async dtmf(digits) {
    const sender = this.pc.getSenders().find((s) => s.track && s.track.kind === 'audio');
    if (!sender || !sender.dtmf) throw new Error('no audio sender with an RTCDTMFSender');
    if (!sender.dtmf.canInsertDTMF) throw new Error('canInsertDTMF is false: telephone-event not negotiated');
    // Tones played before DTLS is up are never sent; on a loaded machine that can take a while.
    await new Promise((resolve) => {
      if (this.pc.connectionState === 'connected') return resolve();
      const timer = setTimeout(resolve, 15000);
      this.pc.addEventListener('connectionstatechange', () => {
        if (this.pc.connectionState === 'connected') { clearTimeout(timer); resolve(); }
      });
    });
    const tones = [];
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, 15000);
      sender.dtmf.ontonechange = (ev) => {
        if (ev.tone === '') { clearTimeout(timer); resolve(); } else tones.push(ev.tone);
      };
      sender.dtmf.insertDTMF(digits, 120, 80);
    });
    return tones.join('');
  },
  async stats() {
    const pc = this.pc;
    const report = await pc.getStats();
    const all = [];
    report.forEach((r) => all.push(r));
    const byId = new Map(all.map((r) => [r.id, r]));
    const pick = (r, keys) => {
      const o = {};
      for (const k of keys) if (r[k] !== undefined) o[k] = r[k];
      return o;
    };
    const inbound = [];
    const outbound = [];
    for (const r of all) {
      if (r.type === 'inbound-rtp') {
        const e = pick(r, ['kind', 'ssrc', 'mid', 'packetsReceived', 'packetsLost', 'bytesReceived',
          'jitter', 'framesDecoded', 'framesReceived', 'keyFramesDecoded', 'frameWidth', 'frameHeight',
          'audioLevel', 'totalAudioEnergy', 'totalSamplesReceived', 'concealedSamples', 'nackCount',
          'pliCount', 'firCount']);
        const c = r.codecId && byId.get(r.codecId);
        if (c) e.codec = c.mimeType;
        inbound.push(e);
      } else if (r.type === 'outbound-rtp') {
        const e = pick(r, ['kind', 'ssrc', 'mid', 'packetsSent', 'bytesSent', 'framesEncoded',
          'nackCount', 'pliCount', 'firCount']);
        const c = r.codecId && byId.get(r.codecId);
        if (c) e.codec = c.mimeType;
        outbound.push(e);
      }
    }
    let selectedPair = null;
    for (const r of all) {
      if (r.type === 'transport' && r.selectedCandidatePairId) {
        const p = byId.get(r.selectedCandidatePairId);
        if (p) {
          const l = byId.get(p.localCandidateId) || {};
          const rem = byId.get(p.remoteCandidateId) || {};
          selectedPair = { state: p.state, local: (l.address || l.ip) + ':' + l.port + ' ' + l.candidateType,
            remote: (rem.address || rem.ip) + ':' + rem.port + ' ' + rem.candidateType };
        }
        selectedPair = selectedPair || {};
        selectedPair.dtlsState = r.dtlsState;
      }
    }
    return {
      connectionState: pc.connectionState,
      iceConnectionState: pc.iceConnectionState,
      signalingState: pc.signalingState,
      inbound, outbound, selectedPair,
      remoteTracks: this.tracks,
      playing: this.elements.map((el) => ({ tag: el.tagName.toLowerCase(), paused: el.paused,
        currentTime: el.currentTime, videoWidth: el.videoWidth || undefined })),
    };
  },
};
</script></body></html>`;

function serve() {
  return new Promise((resolve, reject) => {
    const server = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
    });
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function api(method, url, body) {
  const init = { method, headers: {} };
  // The harness hands every peer its token; the bridge refuses calls without one.
  if (process.env.SB_API_TOKEN) init.headers['authorization'] = `Bearer ${process.env.SB_API_TOKEN}`;
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = text; }
  return { status: res.status, json };
}

// Sum one kind's inbound-rtp entries into one object (a kind may have several slots).
function summarize(entries) {
  if (entries.length === 0) return null;
  const sumKeys = ['packetsReceived', 'packetsLost', 'bytesReceived', 'framesDecoded', 'framesReceived',
    'keyFramesDecoded', 'totalAudioEnergy', 'totalSamplesReceived', 'concealedSamples', 'packetsSent',
    'bytesSent', 'framesEncoded'];
  const out = {};
  for (const k of sumKeys) {
    if (entries.some((e) => e[k] !== undefined)) out[k] = entries.reduce((s, e) => s + (e[k] || 0), 0);
  }
  const levels = entries.map((e) => e.audioLevel).filter((x) => x !== undefined);
  if (levels.length) out.audioLevel = Math.max(...levels);
  const codecs = [...new Set(entries.map((e) => e.codec).filter(Boolean))];
  if (codecs.length) out.codecs = codecs;
  out.streams = entries;
  return out;
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.log(JSON.stringify({ error: String(e.message || e) }));
    process.exit(2);
  }
  if (!fs.existsSync(CHROMIUM)) {
    console.log(JSON.stringify({ error: `${CHROMIUM} not found: apt-get install chromium` }));
    process.exit(2);
  }
  const hardTimeout = (opts.timeout || opts.duration + 45) * 1000;
  const out = { participant_id: null };
  let context = null;
  let server = null;
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-chromium-'));
  const killer = setTimeout(() => {
    out.error = `hard timeout after ${hardTimeout / 1000}s`;
    console.log(JSON.stringify(out));
    process.exit(1);
  }, hardTimeout);
  let exitCode = 0;
  try {
    server = await serve();
    const pageUrl = `http://127.0.0.1:${server.address().port}/`;
    // launchPersistentContext is how playwright takes an explicit, fresh --user-data-dir.
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
    });
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (m) => log('page:', m.text()));
    page.on('pageerror', (e) => log('page error:', e.message));
    await page.goto(pageUrl);
    const offer = await page.evaluate((o) => window.peer.offer(o), {
      direction: opts.direction, video: opts.video, audioCodec: opts.audioCodec, dtmf: opts.dtmf,
    });
    if (!offer.gatheringComplete) log('warning: ICE gathering did not complete in 8 s; sending what we have');
    if (opts.dumpOffer) {
      console.log(JSON.stringify({ offer: offer.sdp }));
      return;
    }
    const url = `${opts.api}/v1/rooms/${encodeURIComponent(opts.room)}/participants`;
    let joined;
    try {
      const body = { sdp: offer.sdp, display_name: opts.displayName };
      if (opts.videoPref) body.video = opts.videoPref;
      joined = await api('POST', url, body);
    } catch (e) {
      throw new Error(`POST ${url} failed: ${e.cause ? e.cause.message || e.cause.code : e.message}`);
    }
    if (joined.status !== 201 || !joined.json || typeof joined.json.sdp !== 'string') {
      throw new Error(`POST ${url} -> ${joined.status} ${JSON.stringify(joined.json).slice(0, 2000)}`);
    }
    out.participant_id = joined.json.id;
    const { sdp: answerSdp, ...joinView } = joined.json;
    out.join = joinView;
    out.answer_sdp = answerSdp;
    log('joined as', out.participant_id);
    await page.evaluate((sdp) => window.peer.answer(sdp), answerSdp);
    const started = Date.now();
    if (opts.dtmf) {
      await new Promise((r) => setTimeout(r, opts.dtmfAt * 1000));
      out.dtmf = { sent: opts.dtmf, tones: await page.evaluate((d) => window.peer.dtmf(d), opts.dtmf) };
    }
    const left = opts.duration * 1000 - (Date.now() - started);
    await new Promise((r) => setTimeout(r, Math.max(0, left)));
    const st = await page.evaluate(() => window.peer.stats());
    out.connection_state = st.connectionState;
    out.ice_connection_state = st.iceConnectionState;
    out.selected_pair = st.selectedPair;
    out.inbound = {
      audio: summarize(st.inbound.filter((e) => e.kind === 'audio')),
      video: summarize(st.inbound.filter((e) => e.kind === 'video')),
    };
    out.outbound = {
      audio: summarize(st.outbound.filter((e) => e.kind === 'audio')),
      video: summarize(st.outbound.filter((e) => e.kind === 'video')),
    };
    out.remote_tracks = st.remoteTracks;
    out.playing = st.playing;
    if (opts.leave) {
      try {
        const del = await api('DELETE', `${url}/${encodeURIComponent(out.participant_id)}`);
        out.left_status = del.status;
      } catch (e) {
        out.left_status = `error: ${e.message}`;
      }
    }
  } catch (e) {
    out.error = String(e.message || e);
    exitCode = 1;
  } finally {
    clearTimeout(killer);
    if (context) await context.close().catch(() => {});
    if (server) server.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  if (!opts.dumpOffer || out.error) console.log(JSON.stringify(out));
  process.exit(exitCode);
}

main();
