// Switchboard's browser SDK: the HTTP API v1 (docs/api.md) for a page that holds an
// RTCPeerConnection. An ES module with no dependencies and no build step; the bridge serves it
// at /sdk/switchboard.js. Its functions are listed in docs/sdk.md.
//
//   import { Switchboard } from '/sdk/switchboard.js';
//   const sb = new Switchboard({ token });
//   const session = await sb.join('demo', pc, { displayName: 'alice' });
//   const events = sb.events('demo', (e) => console.log(e.name, e.data));
//   ...
//   await session.leave(); events.close();
//
// Every call carries `Authorization: Bearer <token>`. The token is kept in a private field: it
// is never put in a URL, an error message or anything this module logs or exposes.

/** An API error: the HTTP status and the body's `{"error": {"code", "message"}}`. */
export class SwitchboardError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'SwitchboardError';
    this.status = status;
    this.code = code;
  }
}

/**
 * The claims of a token, read without checking its signature (only the bridge can check it):
 * `{sub, room, grants, exp, ...}`, or null when it is not a JWT. For filling in a form, never
 * for deciding what is allowed.
 */
export function tokenClaims(token) {
  const part = typeof token === 'string' ? token.split('.')[1] : undefined;
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

/**
 * Server-sent events, parsed as the HTML standard says, from text that arrives in chunks cut
 * anywhere: lines end with LF, CRLF or CR; `data:` lines join with LF; a blank line ends an
 * event; lines starting with `:` (the bridge's keep-alives) are comments. EventSource would do
 * this, but it cannot send an Authorization header.
 */
export class SseParser {
  #buffer = '';
  #name = '';
  #data = [];
  #afterCr = false;

  /** Feeds one chunk; returns the events it completed, each `{name, data}` (data a string). */
  push(chunk) {
    const out = [];
    let text = chunk;
    // A CR ended the previous chunk: an LF starting this one is the same line end.
    if (this.#afterCr && text.startsWith('\n')) text = text.slice(1);
    this.#afterCr = text.endsWith('\r');
    this.#buffer += text;
    const lines = this.#buffer.split(/\r\n|\r|\n/);
    this.#buffer = lines.pop();
    for (const line of lines) this.#line(line, out);
    return out;
  }

  #line(line, out) {
    if (line === '') {
      if (this.#data.length > 0) out.push({ name: this.#name || 'message', data: this.#data.join('\n') });
      this.#name = '';
      this.#data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.#name = value;
    else if (field === 'data') this.#data.push(value);
    // `id` and `retry` mean nothing here: the bridge replays no events.
  }
}

/**
 * Creates the offer and waits until ICE gathering is complete (the bridge takes no trickled
 * candidates), at most `timeoutMs`; then returns the local description's SDP.
 */
export async function gatheredOffer(pc, timeoutMs = 5000) {
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== 'complete') {
    await new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState !== 'complete') return;
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', done);
        resolve();
      };
      // Past the timeout, the candidates gathered so far go: one host candidate is enough on a LAN.
      const timer = setTimeout(() => {
        pc.removeEventListener('icegatheringstatechange', done);
        resolve();
      }, timeoutMs);
      pc.addEventListener('icegatheringstatechange', done);
    });
  }
  return pc.localDescription.sdp;
}

/** One path segment: ids are checked by the bridge, but a stray `/` or `?` must not move the call. */
const seg = encodeURIComponent;

/** A client of one bridge, with one token. */
export class Switchboard {
  #token;

  /**
   * `token`: the Bearer token (null when the bridge runs with `auth.enabled = false`).
   * `base`: the bridge's URL; '' (the default) is the page's own origin.
   */
  constructor({ token = null, base = '' } = {}) {
    this.#token = token;
    this.base = base.replace(/\/+$/, '');
  }

  /**
   * One API call: the parsed JSON body (null for 204), or a thrown SwitchboardError.
   * `keepalive` lets the call outlive the page (a leave on `pagehide`).
   */
  async request(method, url, body, { keepalive = false } = {}) {
    const headers = {};
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    const init = { method, headers, cache: 'no-store', keepalive };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(this.base + url, init);
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!res.ok) {
      const e = (json && json.error) || {};
      throw new SwitchboardError(res.status, e.code || `http_${res.status}`, e.message || `${method} ${url}: HTTP ${res.status}`);
    }
    return json;
  }

  /** `GET /v1/rooms/{room}`: the room with its participants, each with its tracks and slots. */
  room(room) {
    return this.request('GET', `/v1/rooms/${seg(room)}`);
  }

  /** `GET /v1/rooms/{room}/participants/{id}`. */
  participant(room, id) {
    return this.request('GET', `/v1/rooms/${seg(room)}/participants/${seg(id)}`);
  }

  /**
   * Joins `room` with `pc` (`POST /v1/rooms/{room}/participants`, kind `webrtc`): the tracks and
   * transceivers already on `pc` are offered, the bridge's answer is applied, and the returned
   * Session renegotiates by itself when tracks are added or removed later.
   * `options`: `displayName`, `audio` ('auto' | 'forward' | 'mix'), `video` ('auto' |
   * 'composite'), `iceTimeoutMs`.
   */
  async join(room, pc, options = {}) {
    const sdp = await gatheredOffer(pc, options.iceTimeoutMs);
    const body = { kind: 'webrtc', sdp };
    if (options.displayName) body.display_name = options.displayName;
    if (options.audio) body.audio = options.audio;
    if (options.video) body.video = options.video;
    let joined;
    try {
      joined = await this.request('POST', `/v1/rooms/${seg(room)}/participants`, body);
    } catch (e) {
      await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      throw e;
    }
    const { sdp: answer, ...view } = joined;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    return new Session(this, room, pc, view, options.iceTimeoutMs);
  }

  /**
   * Follows `GET /v1/rooms/{room}/events`. `onEvent({name, data})` is called for each event,
   * `data` parsed from JSON. Returns `{close(), done}`: `done` resolves when the stream ends (the
   * room was removed, or close() was called) and rejects with a SwitchboardError when the bridge
   * refused it, or a network error.
   */
  events(room, onEvent) {
    const abort = new AbortController();
    const headers = { accept: 'text/event-stream' };
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    const url = `${this.base}/v1/rooms/${seg(room)}/events`;
    const done = (async () => {
      let res;
      try {
        res = await fetch(url, { headers, signal: abort.signal, cache: 'no-store' });
      } catch (e) {
        if (abort.signal.aborted) return;
        throw e;
      }
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        const e = body.error || {};
        throw new SwitchboardError(res.status, e.code || `http_${res.status}`, e.message || `events: HTTP ${res.status}`);
      }
      const parser = new SseParser();
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      try {
        for (;;) {
          const { value, done: end } = await reader.read();
          if (end) break;
          for (const ev of parser.push(decoder.decode(value, { stream: true }))) {
            let data = ev.data;
            try {
              data = JSON.parse(ev.data);
            } catch {
              // Not JSON: handed on as the string it is.
            }
            onEvent({ name: ev.name, data });
          }
        }
      } catch (e) {
        if (!abort.signal.aborted) throw e;
      }
    })();
    return { close: () => abort.abort(), done };
  }
}

/**
 * One participant this page joined as. `id`, `room`, `pc`, and `view` (the participant as the
 * bridge last described it: tracks, subscriptions). Fires 'renegotiated' (detail: the view) and
 * 'error' (detail: the error) events.
 */
export class Session extends EventTarget {
  #client;
  #iceTimeoutMs;
  #chain = Promise.resolve();
  #pending = false;
  #closed = false;

  constructor(client, room, pc, view, iceTimeoutMs) {
    super();
    this.#client = client;
    this.#iceTimeoutMs = iceTimeoutMs;
    this.room = room;
    this.id = view.id;
    this.pc = pc;
    this.view = view;
    // addTrack, removeTrack and addTransceiver set the negotiation-needed flag; the bridge
    // hears of it through a PATCH with the new offer.
    this.onNegotiationNeeded = () => {
      this.renegotiate().catch((error) => this.dispatchEvent(new CustomEvent('error', { detail: error })));
    };
    pc.addEventListener('negotiationneeded', this.onNegotiationNeeded);
  }

  #url() {
    return `/v1/rooms/${seg(this.room)}/participants/${seg(this.id)}`;
  }

  /**
   * Sends a new offer (`PATCH .../participants/{id}`) and applies the answer. Calls made while
   * one is running coalesce into one more: each offer describes everything on `pc` so far.
   * A refused offer is rolled back, so the session goes on as it was.
   */
  renegotiate() {
    if (this.#pending) return this.#chain;
    this.#pending = true;
    this.#chain = this.#chain.catch(() => {}).then(async () => {
      this.#pending = false;
      if (this.#closed) return this.view;
      const sdp = await gatheredOffer(this.pc, this.#iceTimeoutMs);
      let res;
      try {
        res = await this.#client.request('PATCH', this.#url(), { sdp });
      } catch (e) {
        await this.pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
        throw e;
      }
      const { sdp: answer, ...view } = res;
      await this.pc.setRemoteDescription({ type: 'answer', sdp: answer });
      this.view = view;
      this.dispatchEvent(new CustomEvent('renegotiated', { detail: view }));
      return view;
    });
    return this.#chain;
  }

  /** Reads the participant again (`GET`), e.g. after a `route_changed` event for it. */
  async refresh() {
    this.view = await this.#client.request('GET', this.#url());
    return this.view;
  }

  /**
   * Leaves (`DELETE`) and closes `pc`. The page's own media tracks are the page's to stop.
   * The DELETE is sent with `keepalive`, so a leave started as the page unloads still arrives.
   */
  async leave() {
    if (this.#closed) return;
    this.#closed = true;
    this.pc.removeEventListener('negotiationneeded', this.onNegotiationNeeded);
    try {
      await this.#client.request('DELETE', this.#url(), undefined, { keepalive: true });
    } finally {
      this.pc.close();
    }
  }
}
