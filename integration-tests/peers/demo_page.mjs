#!/usr/bin/env node
// Drives the bridge's own demo page (/demo) in headless Chromium, as people would: each person
// opens /demo#token=..., types a name, presses Join, and later Mute and Leave. Everything the
// script reads comes from the page (its DOM, and the window.__demo hook over its
// RTCPeerConnection); nothing is joined behind the page's back.
//
// Options:
//   --api URL                 the bridge (the page is loaded from it: same origin as the API)
//   --person NAME=TOKEN       one page per person (repeat); NAME goes in the page's name field
//   --expect-tone NAME:HZ     wait until every page hears HZ on a slot carrying NAME
//   --expect NAME             wait until every page lists NAME too (repeat; e.g. a phone leg)
//   --expect-speaker          wait until every page names an active speaker
//   --mute NAME               once ready, NAME presses "Mute microphone" and "Turn camera off";
//                             the others' received audio energy from NAME is measured before
//                             and after (3 s each)
//   --screenshot PATH         once ready, a PNG of the first person's page
//   --timeout S               give up waiting for ready after S seconds (default 60)
//
// Output: ONE JSON line: {"ready", "pages": {NAME: {state, stats, url_after_load, ...}}, ...};
// on failure {"error": ...} and exit 1.

import fs from 'node:fs';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
// As peers/chromium_peer.mjs: Debian's Chromium, fake camera and microphone, no prompts.
const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
];

const log = (...a) => process.stderr.write(`[demo_page] ${a.join(' ')}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function parseArgs(argv) {
  const o = { api: null, people: [], tones: [], expect: [], speaker: false, mute: null, screenshot: null, timeout: 60 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--api': o.api = next().replace(/\/+$/, ''); break;
      case '--person': {
        const [name, token] = next().split('=', 2);
        if (!name || !token) throw new Error('--person NAME=TOKEN');
        o.people.push({ name, token });
        break;
      }
      case '--expect-tone': {
        const [name, hz] = next().split(':');
        o.tones.push({ name, hz: Number(hz) });
        break;
      }
      case '--expect': o.expect.push(next()); break;
      case '--expect-speaker': o.speaker = true; break;
      case '--mute': o.mute = next(); break;
      case '--screenshot': o.screenshot = next(); break;
      case '--timeout': o.timeout = Number(next()); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!o.api || o.people.length === 0) throw new Error('--api and at least one --person are required');
  return o;
}

// The slot (from the page's state) that carries `name`'s media of `kind`, or null.
function slotOf(state, name, kind) {
  const p = state.participants.find((x) => x.name === name);
  return p ? state.slots.find((s) => s.kind === kind && s.publisher_id === p.id) || null : null;
}

const statOf = (stats, slot) => (slot ? stats.find((s) => s.mid === slot.mid) || {} : {});

// Whether `me`'s page sees and hears everyone it should.
function ready(me, state, stats, opts) {
  if (!state.joined || state.connection !== 'connected') return false;
  const names = state.participants.map((p) => p.name);
  for (const other of opts.people) {
    if (other.name === me) continue;
    if (!names.includes(other.name)) return false;
    if (!((statOf(stats, slotOf(state, other.name, 'video')).framesDecoded || 0) >= 30)) return false;
    if (!((statOf(stats, slotOf(state, other.name, 'audio')).totalAudioEnergy || 0) > 0)) return false;
  }
  for (const name of opts.expect) if (!names.includes(name)) return false;
  if (opts.speaker && !state.speaker) return false;
  for (const { name, hz } of opts.tones) {
    const slot = slotOf(state, name, 'audio');
    if (!slot || !slot.peaks.some(([f, n]) => Math.abs(f - hz) <= 20 && n >= 5)) return false;
  }
  return true;
}

async function snapshot(page) {
  return { state: await page.evaluate(() => window.__demo.state()), stats: await page.evaluate(() => window.__demo.stats()) };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const out = { ready: false, pages: {} };
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
  const pages = {};
  try {
    for (const { name, token } of opts.people) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
      const page = await context.newPage();
      const rec = { console: [], request_urls: [], page_errors: [] };
      page.on('console', (m) => rec.console.push(m.text()));
      page.on('pageerror', (e) => rec.page_errors.push(e.message));
      page.on('request', (r) => rec.request_urls.push(r.url()));
      rec.failed = [];
      page.on('response', (r) => { if (r.status() >= 400) rec.failed.push(`${r.status()} ${r.request().method()} ${r.url()}`); });
      await page.goto(`${opts.api}/demo#token=${token}`);
      await page.waitForFunction(() => window.__demo !== undefined, null, { timeout: 15000 });
      rec.url_after_load = page.url();
      rec.room_field = await page.inputValue('#room');
      await page.fill('#name', name);
      await page.click('#join');
      pages[name] = { page, rec, token };
      log(name, 'pressed Join');
    }
    const deadline = Date.now() + opts.timeout * 1000;
    while (Date.now() < deadline) {
      let all = true;
      for (const [name, { page }] of Object.entries(pages)) {
        const { state, stats } = await snapshot(page);
        if (state.error) throw new Error(`${name}'s page shows an error: ${state.error}`);
        if (!ready(name, state, stats, opts)) all = false;
      }
      if (all) {
        out.ready = true;
        break;
      }
      await sleep(500);
    }
    log('ready:', out.ready);
    if (out.ready && opts.screenshot) {
      await pages[opts.people[0].name].page.screenshot({ path: opts.screenshot });
      out.screenshot = opts.screenshot;
    }
    for (const [name, { page }] of Object.entries(pages)) out.pages[name] = await snapshot(page);
    if (out.ready && opts.mute) out.mute = await mute(pages, opts.mute);
    const order = Object.entries(pages);
    for (const [i, [name, { page, rec, token }]] of order.entries()) {
      await page.click('#leave');
      await page.waitForFunction(() => !window.__demo.state().joined, null, { timeout: 10000 }).catch(() => {});
      // The pages still in the room hear of it before they leave in turn.
      const id = out.pages[name].state.me;
      for (const [, later] of order.slice(i + 1)) {
        await later.page.waitForFunction((pid) => window.__demo.state().events.some((e) => e.name === 'participant_left'
          && e.data.participant_id === pid), id, { timeout: 10000 }).catch(() => {});
      }
      const entry = out.pages[name];
      entry.after_leave = await page.evaluate(() => window.__demo.state());
      entry.url_after_load = rec.url_after_load;
      entry.room_field = rec.room_field;
      entry.page_errors = rec.page_errors;
      entry.console = rec.console.slice(-20);
      entry.failed_responses = rec.failed.map((f) => f.replace(opts.api, ''));
      entry.csp_violations = rec.console.filter((t) => /Content Security Policy/i.test(t));
      // The token must never be printed by the page, nor travel in a URL.
      entry.console_has_token = rec.console.some((t) => t.includes(token));
      entry.urls_with_token = rec.request_urls.filter((u) => u.includes(token)).length;
      entry.requests = rec.request_urls.map((u) => u.replace(opts.api, ''));
      entry.visible_url_has_token = (await page.evaluate(() => location.href)).includes(token);
    }
  } finally {
    await browser.close().catch(() => {});
  }
  console.log(JSON.stringify(out));
}

// `who` mutes; every other page's received audio energy from `who` over 3 s, before and after.
async function mute(pages, who) {
  const energies = async () => {
    const e = {};
    for (const [name, { page }] of Object.entries(pages)) {
      if (name === who) continue;
      const { state, stats } = await snapshot(page);
      e[name] = statOf(stats, slotOf(state, who, 'audio')).totalAudioEnergy || 0;
    }
    return e;
  };
  const e0 = await energies();
  await sleep(3000);
  const e1 = await energies();
  await pages[who].page.click('#mic');
  await pages[who].page.click('#cam');
  // What was in flight or in the jitter buffer plays out first.
  await sleep(1000);
  const e2 = await energies();
  await sleep(3000);
  const e3 = await energies();
  const result = { buttons: {
    mic: await pages[who].page.textContent('#mic'), cam: await pages[who].page.textContent('#cam') } };
  for (const name of Object.keys(e0)) result[name] = { before: e1[name] - e0[name], after: e3[name] - e2[name] };
  return result;
}

main().catch((e) => {
  console.log(JSON.stringify({ error: String((e && e.stack) || e) }));
  process.exit(1);
});
