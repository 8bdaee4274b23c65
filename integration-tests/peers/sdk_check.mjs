#!/usr/bin/env node
// Checks the parts of the browser SDK (web/switchboard.js) that need no browser, under node:
// the event-stream parser against a stream cut at every possible place, and the token reader.
// With --api URL --room ROOM --token T it also follows the bridge's real event stream through
// the SDK's own `events()` for --seconds S and reports what it got.
//
// Output: ONE JSON line {"parser": {...}, "claims": {...}, "live": {...}}; {"error"} and exit 1.

import { SseParser, tokenClaims, Switchboard } from '../../web/switchboard.js';

function parseArgs(argv) {
  const o = { api: null, room: null, token: null, seconds: 3 };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k === '--api') o.api = v;
    else if (k === '--room') o.room = v;
    else if (k === '--token') o.token = v;
    else if (k === '--seconds') o.seconds = Number(v);
    else throw new Error(`unknown argument ${k}`);
  }
  return o;
}

// What the bridge sends, and the line ends and comments any SSE server may use.
const STREAM = 'event: participant_joined\ndata: {"participant_id":"a1","kind":"webrtc"}\n\n'
  + ': keep-alive\n\n'
  + 'event: route_changed\r\ndata: {"slot":"0",\r\ndata: "route":"forward"}\r\n\r\n'
  + 'event:dtmf\rdata:{"digit":"#"}\r\r'
  + 'data: no name\n\n'
  + 'event: empty\n\n';

const WANT = [
  { name: 'participant_joined', data: '{"participant_id":"a1","kind":"webrtc"}' },
  { name: 'route_changed', data: '{"slot":"0",\n"route":"forward"}' },
  { name: 'dtmf', data: '{"digit":"#"}' },
  { name: 'message', data: 'no name' },
];

function parse(chunks) {
  const p = new SseParser();
  return chunks.flatMap((c) => p.push(c));
}

function parserChecks() {
  const failures = [];
  const same = (got) => JSON.stringify(got) === JSON.stringify(WANT);
  if (!same(parse([STREAM]))) failures.push({ cut: 'none', got: parse([STREAM]) });
  for (let i = 1; i < STREAM.length; i++) {
    const got = parse([STREAM.slice(0, i), STREAM.slice(i)]);
    if (!same(got)) failures.push({ cut: i, got });
  }
  const bytewise = parse([...STREAM]);
  if (!same(bytewise)) failures.push({ cut: 'every character', got: bytewise });
  return { events: parse([STREAM]), cuts: STREAM.length, failures };
}

function claimsChecks() {
  const b64url = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const token = `${b64url({ alg: 'HS256', kid: 'k' })}.${b64url({ sub: 'zoë', room: 'demo', grants: ['publish'] })}.sig`;
  return { good: tokenClaims(token), garbage: tokenClaims('not a token'), missing: tokenClaims(null) };
}

async function live(o) {
  const sb = new Switchboard({ token: o.token, base: o.api });
  const got = [];
  const stream = sb.events(o.room, (e) => got.push(e));
  const ended = await Promise.race([
    stream.done.then(() => 'ended', (e) => `error ${e.status} ${e.code}`),
    new Promise((r) => setTimeout(() => r('running'), o.seconds * 1000)),
  ]);
  stream.close();
  await stream.done.catch(() => {});
  let refused = null;
  try {
    await new Switchboard({ base: o.api }).room(o.room);
  } catch (e) {
    refused = { name: e.name, status: e.status, code: e.code, message_has_token: e.message.includes(o.token) };
  }
  return { events: got, state_after: ended, refused };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const out = { parser: parserChecks(), claims: claimsChecks() };
  if (o.api) out.live = await live(o);
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.log(JSON.stringify({ error: String((e && e.stack) || e) }));
  process.exit(1);
});
