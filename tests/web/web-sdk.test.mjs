// @tributary/web end to end: the Vite-built sample page (samples/web/dist) in headless Chromium
// against a running `tributary serve` (its own port and data directory per test).
//
// Needs TRIBUTARY_BIN (the `tributary` binary), the built sample (SAMPLE_DIST, default
// samples/web/dist) and Debian's chromium (CHROMIUM, default /usr/bin/chromium);
// scripts/test-web.sh installs and builds all three and runs this file.
//
// What counts: events in the warehouse (SQLite, primary key id: it hides duplicates), every
// event's id in the archive (archive.jsonl, everything routed), and the ingest's own counters on
// /metrics — `tributary_events_accepted_total` counts the events stored (each id once) and
// `tributary_events_deduplicated_total` the events that arrived again with an id already
// stored: an event sent twice shows there even though the warehouse stores it once.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.TRIBUTARY_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SAMPLE_DIST = process.env.SAMPLE_DIST || join(here, '..', '..', 'samples', 'web', 'dist');
const TEST_TIMEOUT_MS = 90_000;

const servers = new Set();
const workDirs = new Set();
let browser = null;
let sampleServer = null;

after(async () => {
  if (browser) await Promise.race([browser.close().catch(() => {}), sleep(5_000)]);
  for (const server of servers) await stopServer(server);
  sampleServer?.close();
  for (const dir of workDirs) rmSync(dir, { recursive: true, force: true });
});
process.on('exit', () => {
  for (const server of servers) server.kill('SIGKILL');
});
setTimeout(() => {
  console.error('web-sdk.test.mjs: watchdog: still running after 10 min, exiting');
  for (const server of servers) server.kill('SIGKILL');
  process.exit(1);
}, 600_000).unref();

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms).unref?.() ?? resolve);
}

async function eventually(what, check, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms: ${last?.message ?? last}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** A free TCP port on 127.0.0.1 (the server is restarted on it in the offline test). */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
    probe.on('error', reject);
  });
}

function newWorkDir() {
  const dir = mkdtempSync(join(tmpdir(), 'tributary-web-'));
  workDirs.add(dir);
  return dir;
}

/** `tributary serve` on 127.0.0.1:port with its data in workDir; resolves once it listens. */
function startServer(workDir, port) {
  const server = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`], {
    cwd: workDir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  servers.add(server);
  const stderr = [];
  createInterface({ input: server.stderr }).on('line', (line) => {
    stderr.push(line);
    if (stderr.length > 200) stderr.shift();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tributary serve did not listen within 15 s:\n${stderr.join('\n')}`)), 15_000);
    server.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`tributary serve exited (${code ?? signal}) before listening:\n${stderr.join('\n')}`));
    });
    createInterface({ input: server.stdout }).on('line', (line) => {
      if (/^tributary: listening on /.test(line)) {
        clearTimeout(timer);
        resolve(server);
      }
    });
  });
}

async function stopServer(server) {
  if (server.exitCode !== null || server.signalCode !== null) {
    servers.delete(server);
    return;
  }
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGTERM');
  const timer = setTimeout(() => server.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
  servers.delete(server);
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };

/** Serves the built sample on its own origin (the ingest answers CORS for it). */
function startSampleServer() {
  return new Promise((resolve) => {
    const server = createServer((request, response) => {
      const path = normalize(decodeURIComponent(new URL(request.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
      const file = join(SAMPLE_DIST, path === '/' ? 'index.html' : path);
      if (!file.startsWith(SAMPLE_DIST) || !existsSync(file)) {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' });
      response.end(readFileSync(file));
    });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function metrics(port) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const value = (name) => {
    const match = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text);
    return match ? Number(match[1]) : 0;
  };
  return {
    accepted: value('tributary_events_accepted_total'),
    deduplicated: value('tributary_events_deduplicated_total'),
  };
}

/** The warehouse's rows as {id, name, anonymous_id}. */
function warehouse(workDir) {
  const db = join(workDir, 'tributary-data', 'warehouse.db');
  if (!existsSync(db)) return [];
  const out = execFileSync('sqlite3', ['-json', db, 'SELECT id, name, anonymous_id, data, context FROM events'], {
    encoding: 'utf8',
  });
  return out.trim() ? JSON.parse(out) : [];
}

/** The archive's envelopes (every event routed, once per id: the log dropped duplicates). */
function archive(workDir) {
  const file = join(workDir, 'tributary-data', 'archive.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line));
}

async function setup() {
  assert.ok(BIN, 'TRIBUTARY_BIN must name the tributary binary (scripts/test-web.sh sets it)');
  assert.ok(existsSync(join(SAMPLE_DIST, 'index.html')), `the sample is not built: ${SAMPLE_DIST}`);
  browser ??= await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  sampleServer ??= await startSampleServer();
  const workDir = newWorkDir();
  const port = await freePort();
  const server = await startServer(workDir, port);
  const context = await browser.newContext();
  const pageErrors = [];
  const open = async (query = '') => {
    const page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    const url = `http://127.0.0.1:${sampleServer.address().port}/?endpoint=http://127.0.0.1:${port}${query}`;
    await page.goto(url);
    await page.waitForFunction(() => window.tributary !== undefined);
    await page.evaluate(() => window.tributary.client.ready);
    return page;
  };
  return { workDir, port, server, context, open, pageErrors };
}

const clickNames = (rows) => rows.filter((row) => row.name === 'button_click' || row.name === 'search');

test('clicks become events in the warehouse, with the auto context', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { workDir, port, context, open, pageErrors } = await setup();
  const page = await open('&flushAt=1');
  await page.click('#buy');
  await page.click('#search');
  await page.click('#buy');
  const rows = await eventually('3 clicks in the warehouse', () => {
    const rows = clickNames(warehouse(workDir));
    assert.equal(rows.length, 3);
    return rows;
  });
  const anonymousId = await page.evaluate(() => window.tributary.client.anonymousId);
  for (const row of rows) {
    assert.equal(row.anonymous_id, anonymousId);
    const eventContext = JSON.parse(row.context);
    assert.equal(eventContext.library.name, '@tributary/web');
    assert.equal(eventContext.page.path, '/');
    assert.ok(eventContext.userAgent.length > 0);
    assert.ok(eventContext.locale && eventContext.timezone && eventContext.screen.width > 0);
  }
  assert.deepEqual(rows.map((row) => JSON.parse(row.data).click).sort(), [1, 2, 3]);
  // The $page event of the load is in the archive (no warehouse rule takes it).
  await eventually('the $page event in the archive', () =>
    assert.ok(archive(workDir).some((event) => event.name === '$page' && event.data.path === '/')),
  );
  assert.equal(await page.evaluate(() => window.tributary.client.storageKind), 'indexeddb');
  assert.deepEqual(await page.evaluate(() => window.tributary.errors), []);
  assert.equal((await metrics(port)).deduplicated, 0);
  assert.deepEqual(pageErrors, []);
  await context.close();
});

test('offline (server down) then online delivers every queued event once', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { workDir, port, server, context, open, pageErrors } = await setup();
  const page = await open('&flushAt=1');
  await eventually('the $page event accepted', async () => assert.equal((await metrics(port)).accepted, 1));
  await stopServer(server);
  for (let index = 0; index < 6; index++) await page.click(index % 2 ? '#search' : '#buy');
  // The client tries, fails and keeps the events.
  await eventually('a failed upload', async () =>
    assert.ok(await page.evaluate(() => window.tributary.notices.some((notice) => notice.kind === 'retry'))),
  );
  assert.equal(await page.evaluate(() => window.tributary.client.counters().queued), 6);
  await sleep(2_000);
  await startServer(workDir, port);
  await eventually('6 clicks in the warehouse', () => assert.equal(clickNames(warehouse(workDir)).length, 6), 60_000);
  const after = await metrics(port);
  assert.equal(after.accepted, 6, 'each queued event sent once to the restarted server');
  assert.equal(after.deduplicated, 0);
  const ids = archive(workDir).map((event) => event.id);
  assert.equal(new Set(ids).size, ids.length);
  assert.equal(ids.length, 7);
  assert.deepEqual(pageErrors, []);
  await context.close();
});

test('reloading the page mid-queue loses nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { workDir, port, context, open, pageErrors } = await setup();
  // Nothing is sent before the reload: no flush trigger fires.
  const page = await open('&flushAt=100&flushIntervalMs=600000');
  for (let index = 0; index < 5; index++) await page.click('#buy');
  await eventually('5 events stored', async () => {
    assert.equal(await page.evaluate(() => window.tributary.client.counters().queued), 6);
  });
  // Give IndexedDB's commit a moment, then reload the way a user does.
  await sleep(300);
  assert.equal((await metrics(port)).accepted, 0);
  await page.goto(page.url().replace('flushAt=100', 'flushAt=1'));
  await page.waitForFunction(() => window.tributary !== undefined);
  await eventually('5 clicks in the warehouse after the reload', () =>
    assert.equal(clickNames(warehouse(workDir)).length, 5),
  );
  const restored = await page.evaluate(() => window.tributary.client.counters().restored);
  assert.equal(restored, 6, 'the 5 clicks and the first $page came back from IndexedDB');
  // The reload hid the page, so its events also went by beacon; the restored copies were sent
  // again (a beacon is unconfirmed) and the ingest dropped them as duplicates.
  await eventually('every event stored once', async () => {
    const ids = archive(workDir).map((event) => event.id);
    assert.equal(ids.length, 7, '5 clicks and 2 $page events');
    assert.equal(new Set(ids).size, 7);
    const now = await metrics(port);
    assert.equal(now.accepted, 7);
    assert.equal(now.deduplicated, 6, 'the 6 events the beacon took were sent again');
  });
  assert.deepEqual(pageErrors, []);
  await context.close();
});

test('closing the page delivers through the beacon, and the next load resends unconfirmed', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { workDir, port, context, open } = await setup();
  const page = await open('&flushAt=100&flushIntervalMs=600000');
  for (let index = 0; index < 3; index++) await page.click('#search');
  const counters = await page.evaluate(() => window.tributary.client.counters());
  assert.equal(counters.uploads, 0, 'nothing was sent by fetch');
  assert.equal(counters.queued, 4);
  await sleep(300);
  await page.close({ runBeforeUnload: true });
  await eventually('3 clicks in the warehouse after the page closed', () =>
    assert.equal(clickNames(warehouse(workDir)).length, 3),
  );
  assert.equal((await metrics(port)).accepted, 4, 'the 3 clicks and the $page, by beacon');
  // The beacon was not confirmed: the next load sends the same events again, and the ingest
  // drops them as duplicates.
  const next = await open('&flushAt=1');
  await eventually('the beaconed events resent and deduplicated', async () => {
    const now = await metrics(port);
    assert.equal(now.deduplicated, 4);
    assert.equal(now.accepted, 4 + 1, 'only the new $page is new');
  });
  assert.equal(clickNames(warehouse(workDir)).length, 3);
  assert.equal(await next.evaluate(() => window.tributary.client.counters().queued), 0);
  await context.close();
});

test('two tabs share one queue and send no event twice', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { workDir, port, context, open, pageErrors } = await setup();
  const first = await open('&flushAt=1');
  const second = await open('&flushAt=1');
  const leaders = await Promise.all([first, second].map((page) => page.evaluate(() => window.tributary.client.isLeader)));
  assert.deepEqual(leaders.sort(), [false, true], 'exactly one tab runs the queue');
  for (let index = 0; index < 8; index++) {
    await (index % 2 ? second : first).click('#buy');
  }
  await eventually('8 clicks in the warehouse', () => assert.equal(clickNames(warehouse(workDir)).length, 8));
  await eventually('every event accepted once', async () => {
    const now = await metrics(port);
    assert.equal(now.accepted, 10, '8 clicks and 2 $page events');
    assert.equal(now.deduplicated, 0, 'no event was sent twice');
  });
  const ids = archive(workDir).map((event) => event.id);
  assert.equal(ids.length, 10);
  assert.equal(new Set(ids).size, 10);
  // The leader goes away: the other tab takes the queue over.
  const leader = leaders[0] ? first : second;
  const follower = leader === first ? second : first;
  await leader.close();
  await eventually('the other tab leads', async () =>
    assert.equal(await follower.evaluate(() => window.tributary.client.isLeader), true),
  );
  await follower.click('#search');
  await eventually('the click after the handover', () => assert.equal(clickNames(warehouse(workDir)).length, 9));
  assert.deepEqual(pageErrors, []);
  await context.close();
});

test('a full IndexedDB quota does not break the page', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { workDir, port, context, pageErrors } = await setup();
  const origin = `http://127.0.0.1:${sampleServer.address().port}`;
  const page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  const cdp = await context.newCDPSession(page);
  await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 1 });
  await page.goto(`${origin}/?endpoint=http://127.0.0.1:${port}&flushAt=1`);
  await page.waitForFunction(() => window.tributary !== undefined);
  await page.evaluate(() => window.tributary.client.ready);
  for (let index = 0; index < 4; index++) await page.click('#buy');
  // The page keeps working: its own script still runs, the events still go out from memory,
  // and the storage failures were reported, not thrown.
  await eventually('4 clicks in the warehouse', () => assert.equal(clickNames(warehouse(workDir)).length, 4));
  const errors = await page.evaluate(() => window.tributary.errors);
  assert.ok(errors.some((error) => /quota/i.test(error)), `a quota error was reported: ${JSON.stringify(errors)}`);
  assert.equal(await page.evaluate(() => 1 + 1), 2);
  assert.deepEqual(pageErrors, []);
  assert.equal((await metrics(port)).deduplicated, 0);
  await context.close();
});

test('identify, reset and consent: ids persist across loads, opt-out sends nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { workDir, port, context, open, pageErrors } = await setup();
  const page = await open('&flushAt=1');
  const anonymousId = await page.evaluate(() => window.tributary.client.anonymousId);
  await page.click('#login');
  await page.click('#buy');
  const identified = await eventually('the identified click', () => {
    const rows = clickNames(warehouse(workDir));
    assert.equal(rows.length, 1);
    return rows[0];
  });
  const row = JSON.parse(
    execFileSync('sqlite3', ['-json', join(workDir, 'tributary-data', 'warehouse.db'), `SELECT user_id, context FROM events WHERE id = '${identified.id}'`], { encoding: 'utf8' }),
  )[0];
  assert.equal(row.user_id, 'demo-user');
  assert.equal(JSON.parse(row.context).traits.email, 'demo@example.com');
  await eventually('the $identify event in the archive', () =>
    assert.ok(archive(workDir).some((event) => event.name === '$identify' && event.user_id === 'demo-user')),
  );

  // The anonymous id survives a reload; reset makes a new one and forgets the user.
  await page.reload();
  await page.waitForFunction(() => window.tributary !== undefined);
  assert.equal(await page.evaluate(() => window.tributary.client.anonymousId), anonymousId);
  await page.click('#reset');
  const fresh = await page.evaluate(() => window.tributary.client.anonymousId);
  assert.notEqual(fresh, anonymousId);
  await page.click('#search');
  await eventually('the click after reset', () => {
    const rows = clickNames(warehouse(workDir)).filter((event) => event.name === 'search');
    assert.equal(rows.length, 1);
    assert.equal(rows[0].anonymous_id, fresh);
  });

  // Opted out (kept across loads): clicks send nothing.
  await page.uncheck('#consent');
  await page.reload();
  await page.waitForFunction(() => window.tributary !== undefined);
  const before = (await metrics(port)).accepted;
  for (let index = 0; index < 3; index++) await page.click('#buy');
  await page.evaluate(() => window.tributary.client.flush());
  await sleep(1_000);
  assert.equal((await metrics(port)).accepted, before, 'nothing sent while opted out');
  assert.equal(await page.evaluate(() => window.tributary.client.counters().enqueued), 0);
  assert.deepEqual(pageErrors, []);
  await context.close();
});

test('the localStorage fallback keeps the queue across a reload too', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { workDir, port, context, open, pageErrors } = await setup();
  const page = await open('&storage=localstorage&flushAt=100&flushIntervalMs=600000');
  assert.equal(await page.evaluate(() => window.tributary.client.storageKind), 'localstorage');
  for (let index = 0; index < 3; index++) await page.click('#search');
  await eventually('4 events in localStorage', async () => {
    const stored = await page.evaluate(() =>
      JSON.parse(localStorage.getItem('tributary:dev-write-key:events') ?? '[]').length,
    );
    assert.equal(stored, 4, 'the 3 clicks and the $page');
  });
  assert.equal((await metrics(port)).accepted, 0);
  await page.goto(page.url().replace('flushAt=100', 'flushAt=1'));
  await page.waitForFunction(() => window.tributary !== undefined);
  await eventually('3 clicks in the warehouse after the reload', () =>
    assert.equal(clickNames(warehouse(workDir)).length, 3),
  );
  assert.equal(await page.evaluate(() => window.tributary.client.counters().restored), 4);
  await eventually('every event stored once, the delivered ones removed', async () => {
    const ids = archive(workDir).map((event) => event.id);
    assert.equal(ids.length, 5, '3 clicks and 2 $page events');
    assert.equal(new Set(ids).size, 5);
    assert.equal((await metrics(port)).accepted, 5);
    const left = await page.evaluate(() => JSON.parse(localStorage.getItem('tributary:dev-write-key:events') ?? '[]').length);
    assert.equal(left, 0);
  });
  assert.deepEqual(pageErrors, []);
  await context.close();
});
