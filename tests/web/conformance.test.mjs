// The conformance suite (tests/conformance/) through the published web client: `createClient` of
// sdk-wasm/dist (the npm package) in headless Chromium, with its fetch transport, on the real
// clock, against a scripted endpoint on 127.0.0.1 (node:http, the page's own origin) that
// answers each POST /v1/batch with the scenario's next status.
//
// The client's options set only `flushAt`, `flushIntervalMs`, `maxQueueEvents` and
// `maxQueueBytes`; every other policy field is the browser default. A scenario whose policy
// needs another value (the retry scenarios shorten the backoff to milliseconds) is skipped here
// with the reason: sdk-wasm/tests/conformance.rs runs every scenario through the same wasm
// module with any policy. The checks are tests/conformance/scenario.rs's on a real clock (no
// upper bounds on gaps).
//
// Needs the built package (SDK_DIST, default sdk-wasm/dist) and Debian's chromium (CHROMIUM);
// scripts/test-web.sh builds and installs both and runs this file.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const CONFORMANCE = join(here, '..', 'conformance');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SDK_DIST = process.env.SDK_DIST || join(here, '..', '..', 'sdk-wasm', 'dist');

const { comment: _, ...PRESETS } = JSON.parse(readFileSync(join(CONFORMANCE, 'presets.json'), 'utf8'));
/** The policy fields createClient's options set, and the option of each. */
const CLIENT_OPTIONS = {
  flush_at_events: 'flushAt',
  flush_interval_ms: 'flushIntervalMs',
  capacity_events: 'maxQueueEvents',
  capacity_bytes: 'maxQueueBytes',
};
const SCENARIO_KEYS = new Set(['name', 'rule', 'policy', 'endpoint', 'then', 'actions', 'expect']);
const EXPECT_KEYS = new Set([
  'requests', 'min_requests', 'first_names', 'same_ids_in_every_request', 'accepted_once', 'accepted_in_order',
  'request_at_least_ms', 'gap_before_at_least_ms', 'gap_before_at_most_ms', 'counters',
]);

let browser = null;
after(async () => {
  if (browser) await browser.close().catch(() => {});
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The policy the scenario asks for, and the createClient options that give it, or why none do. */
function clientOptions(scenario) {
  const { preset, ...fields } = scenario.policy;
  if (!PRESETS[preset]) return { skip: `unknown preset ${preset}` };
  const wanted = { ...PRESETS[preset], ...fields };
  const options = {};
  const ours = { ...PRESETS.browser };
  for (const [field, option] of Object.entries(CLIENT_OPTIONS)) {
    options[option] = wanted[field];
    ours[field] = wanted[field];
  }
  const differ = Object.keys(wanted).filter((field) => wanted[field] !== ours[field]);
  if (differ.length) {
    return {
      skip: `needs ${differ.map((field) => `${field} = ${wanted[field]}`).join(', ')}, which createClient's options do not set (browser default: ${differ.map((field) => PRESETS.browser[field]).join(', ')})`,
    };
  }
  return { options };
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };
const PAGE = `<!doctype html><meta charset="utf-8"><title>conformance</title>
<script type="module">
  import { createClient } from './sdk/index.js';
  window.createClient = createClient;
</script>`;

/** The page (with the package under /sdk/) and the scripted endpoint, on one 127.0.0.1 origin. */
function startEndpoint(scenario) {
  const state = { requests: [], started: performance.now() };
  const answers = scenario.endpoint ?? [];
  const then = scenario.then ?? { status: 200 };
  const server = createServer((request, response) => {
    const path = new URL(request.url, 'http://x').pathname;
    if (request.method === 'POST' && path === '/v1/batch') {
      const chunks = [];
      request.on('data', (chunk) => chunks.push(chunk));
      request.on('end', () => {
        const batch = JSON.parse(Buffer.concat(chunks).toString('utf8')).batch;
        const index = state.requests.length;
        const answer = index < answers.length ? answers[index] : then;
        state.requests.push({
          ids: batch.map((event) => event.id),
          names: batch.map((event) => event.name),
          at: performance.now() - state.started,
          status: answer.status,
        });
        const ok = answer.status >= 200 && answer.status < 300;
        const headers = { 'Content-Type': 'application/json' };
        if (answer.retry_after_s !== undefined) headers['Retry-After'] = String(answer.retry_after_s);
        response.writeHead(answer.status, headers);
        response.end(JSON.stringify(ok ? { accepted: batch.length, rejected: [] } : { error: { code: 'scripted', message: `scripted answer ${answer.status}` } }));
      });
      return;
    }
    if (path === '/') {
      response.writeHead(200, { 'Content-Type': 'text/html' }).end(PAGE);
      return;
    }
    const file = normalize(join(SDK_DIST, path.replace(/^\/sdk\//, '')));
    if (!path.startsWith('/sdk/') || !file.startsWith(SDK_DIST) || !existsSync(file)) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' });
    response.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, state })));
}

/** scenario.rs's `check` on a real clock (no upper bounds on gaps). */
function check(file, scenario, requests, counters) {
  const expect = scenario.expect;
  const counts = requests.map((request) => request.ids.length);
  const context = `${file} (${scenario.name}): requests ${JSON.stringify(counts)}, counters ${JSON.stringify(counters)}`;
  if (expect.requests) assert.deepEqual(counts, expect.requests, context);
  if (expect.min_requests !== undefined) assert.ok(counts.length >= expect.min_requests, `at least ${expect.min_requests} requests: ${context}`);
  if (expect.first_names) assert.deepEqual(requests[0]?.names, expect.first_names, context);
  for (const [index, least] of Object.entries(expect.request_at_least_ms ?? {})) {
    const request = requests[Number(index)];
    assert.ok(request, `request ${index}: ${context}`);
    assert.ok(request.at >= least, `request ${index} at ${request.at.toFixed(1)} ms, at least ${least}: ${context}`);
  }
  const accepted = requests.filter((request) => request.status >= 200 && request.status < 300);
  if (expect.accepted_in_order) {
    const order = accepted.flatMap((request) => request.names).map((name) => Number(name.replace(/^e-/, '')));
    assert.ok(order.every((n, i) => i === 0 || order[i - 1] < n), `accepted in tracking order: ${order}: ${context}`);
  }
  if (expect.same_ids_in_every_request) {
    for (const request of requests) assert.deepEqual(request.ids, requests[0].ids, context);
  }
  if (expect.accepted_once) {
    const seen = new Set();
    for (const id of accepted.flatMap((request) => request.ids)) {
      assert.ok(!seen.has(id), `${id} accepted twice: ${context}`);
      seen.add(id);
    }
  }
  for (const [index, least] of Object.entries(expect.gap_before_at_least_ms ?? {})) {
    const i = Number(index);
    assert.ok(i >= 1 && i < requests.length, `request ${i}: ${context}`);
    const gap = Math.max(0, requests[i].at - requests[i - 1].at);
    assert.ok(gap >= least, `gap before request ${i} is ${gap.toFixed(1)} ms, at least ${least}: ${context}`);
  }
  // gap_before_at_most_ms: only on a virtual clock (README), and this runner's clock is real.
  for (const [name, value] of Object.entries(expect.counters ?? {})) {
    assert.ok(name in counters, `unknown counter ${name}: ${context}`);
    assert.equal(counters[name], value, `counter ${name}: ${context}`);
  }
}

async function run(file, scenario, options) {
  browser ??= await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  const { server, state } = await startEndpoint(scenario);
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    const origin = `http://127.0.0.1:${server.address().port}`;
    await page.goto(origin + '/');
    await page.waitForFunction(() => window.createClient !== undefined);
    await page.evaluate(async ({ origin, options }) => {
      window.notices = [];
      window.errors = [];
      window.client = window.createClient({
        writeKey: 'conformance-key',
        endpoint: origin,
        storage: 'memory',
        onEvent: (notice) => window.notices.push(notice),
        onError: (error, where) => window.errors.push(`${where}: ${error}`),
        ...options,
      });
      await window.client.ready;
    }, { origin, options });

    state.started = performance.now();
    let tracked = 0;
    for (const action of scenario.actions) {
      if (action === 'flush') {
        // flush() resolves when the queue is empty or a send failed: not awaited, as the other
        // runners' flush returns at once (the queue is drained below).
        await page.evaluate(() => void window.client.flush());
      } else if (action.track) {
        const pad = action.track.pad_bytes ?? 0;
        await page.evaluate(({ from, count, pad }) => {
          for (let n = from; n < from + count; n++) window.client.track(`e-${n}`, pad ? { pad: 'x'.repeat(pad) } : {});
        }, { from: tracked, count: action.track.count, pad });
        tracked += action.track.count;
      } else if (action.wait) {
        await sleep(action.wait.ms);
      } else {
        assert.fail(`${file}: unknown action ${JSON.stringify(action)}`);
      }
    }
    // Until the queue has been empty for 100 ms (30 s at most).
    const deadline = performance.now() + 30_000;
    let emptySince = null;
    while (performance.now() < deadline) {
      if ((await page.evaluate(() => window.client.counters().queued)) === 0) {
        emptySince ??= performance.now();
        if (performance.now() - emptySince >= 100) break;
      } else {
        emptySince = null;
      }
      await sleep(10);
    }
    const { counters, notices, errors } = await page.evaluate(() => ({
      counters: window.client.counters(),
      notices: window.notices,
      errors: window.errors,
    }));
    const dropped = {};
    for (const notice of notices.filter((notice) => notice.kind === 'dropped')) {
      const reason = notice.detail.split(':')[0];
      dropped[reason] = (dropped[reason] ?? 0) + notice.count;
    }
    assert.equal(Object.values(dropped).reduce((a, b) => a + b, 0), counters.dropped, `the notices' drops add up: ${JSON.stringify(notices)}`);
    assert.deepEqual(errors, []);
    assert.deepEqual(pageErrors, []);
    check(file, scenario, state.requests, {
      delivered: counters.delivered,
      retried: counters.retried,
      evicted: counters.evicted,
      dropped_permanent: dropped.permanent ?? 0,
      dropped_too_large: dropped.too_large ?? 0,
      dropped_expired: dropped.expired ?? 0,
      dropped_rejected: dropped.rejected ?? 0,
      dropped_invalid: dropped.invalid ?? 0,
      queued: counters.queued,
    });
  } finally {
    await context.close();
    server.close();
  }
}

const files = readdirSync(join(CONFORMANCE, 'scenarios')).filter((name) => name.endsWith('.json')).sort();
assert.ok(files.length > 0, 'no scenario files');
for (const file of files) {
  const scenario = JSON.parse(readFileSync(join(CONFORMANCE, 'scenarios', file), 'utf8'));
  const unknown = [
    ...Object.keys(scenario).filter((key) => !SCENARIO_KEYS.has(key)),
    ...Object.keys(scenario.expect).filter((key) => !EXPECT_KEYS.has(key)),
    ...Object.keys(scenario.policy).filter((key) => key !== 'preset' && !(key in PRESETS.browser)),
  ];
  const { options, skip } = clientOptions(scenario);
  test(`conformance (createClient in Chromium): ${file}`, { timeout: 60_000 }, async (t) => {
    assert.deepEqual(unknown, [], `${file}: fields this runner does not know`);
    if (skip) {
      console.log(`conformance (createClient): skipping ${file}: ${skip}`);
      t.skip(skip);
      return;
    }
    assert.ok(existsSync(join(SDK_DIST, 'index.js')), `the package is not built: ${SDK_DIST} (npm run build in sdk-wasm)`);
    await run(file, scenario, options);
  });
}
