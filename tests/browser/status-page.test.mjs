// The status page (`GET /` of `tributary serve`) in headless Chromium: its numbers appear, grow
// with traffic and always equal what `/metrics` says.
//
// Needs TRIBUTARY_BIN (the `tributary` binary) and Debian's chromium (CHROMIUM, default
// /usr/bin/chromium). scripts/test-browser.sh installs both and runs this file.
//
// How a DOM read is compared with `/metrics` without flaking: the page shows the snapshot of its
// latest poll of `/metrics`, taken up to a second before we look. So we
//   1. fetch `/metrics` ourselves ("before") and note the page's poll count u,
//   2. wait in the page until its poll count reaches u + 2 and read every number in the same
//      synchronous step (the page renders a whole snapshot synchronously, so the read is of one
//      snapshot). Poll u + 1 may have been in flight during step 1, but poll u + 2 only starts
//      after poll u + 1 finished, hence after "before" was answered,
//   3. fetch `/metrics` again ("after").
// The snapshot shown was thus taken between "before" and "after", so a counter shown must lie in
// [before, after]: a page that shows another series' value, a stale or a mangled number fails.
// Gauges (lag, retrying, DLQ depth) may go up and down: they must lie between before and after
// too, and when they don't, the read is retried a few times (all at 0 once the pipeline is
// idle, which the test waits for), so a page that shows a wrong gauge still fails every try.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const BIN = process.env.TRIBUTARY_BIN;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const DESTINATIONS = ["archive", "datawarehouse", "hubspotcrm", "mixpanel"];
const CARD_SERIES = [
  "tributary_events_accepted_total",
  "tributary_events_rejected_total",
  "tributary_events_deduplicated_total",
  "tributary_events_unrouted_total",
];
const DESTINATION_METRICS = [
  "tributary_destination_delivered_total",
  "tributary_destination_retrying",
  "tributary_destination_dead_lettered_total",
  "tributary_log_lag_events",
  "tributary_log_lag_seconds",
  "tributary_dlq_depth",
];
const TEST_TIMEOUT_MS = 50_000;

// Everything started here, so that it is stopped whatever happens.
let server = null;
let browser = null;
let workDir = null;

function killServer(signal = "SIGKILL") {
  if (server && server.exitCode === null && server.signalCode === null) server.kill(signal);
}

async function cleanup() {
  if (browser) {
    const closing = browser.close().catch(() => {});
    // A browser that does not close within 5 s is killed when this process exits (playwright-core
    // kills the browsers it launched on exit).
    await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
    browser = null;
  }
  if (server) {
    const exited = new Promise((resolve) => {
      if (server.exitCode !== null || server.signalCode !== null) resolve();
      else server.once("exit", resolve);
    });
    killServer("SIGTERM");
    const timer = setTimeout(() => killServer("SIGKILL"), 3_000);
    await exited;
    clearTimeout(timer);
    server = null;
  }
  if (workDir) {
    rmSync(workDir, { recursive: true, force: true });
    workDir = null;
  }
}

after(cleanup);
process.on("exit", () => killServer("SIGKILL"));
// The whole file stops by itself even if something hangs beyond the test's own timeout.
setTimeout(() => {
  console.error("status-page.test.mjs: watchdog: still running after 60 s, exiting");
  killServer("SIGKILL");
  process.exit(1);
}, 60_000).unref();

/** Starts `tributary serve` in a fresh directory; resolves to its base URL. */
function startServer() {
  workDir = mkdtempSync(join(tmpdir(), "tributary-browser-"));
  server = spawn(BIN, ["serve", "--listen", "127.0.0.1:0"], {
    cwd: workDir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stderr = [];
  createInterface({ input: server.stderr }).on("line", (line) => {
    stderr.push(line);
    if (stderr.length > 200) stderr.shift();
  });
  server.stderrLines = stderr;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("tributary serve did not print its address within 15 s:\n" + stderr.join("\n"))), 15_000);
    server.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    server.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`tributary serve exited (${code ?? signal}) before listening:\n${stderr.join("\n")}`));
    });
    createInterface({ input: server.stdout }).on("line", (line) => {
      const match = /^tributary: listening on (http:\/\/\S+)$/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1].replace(/\/$/, ""));
      }
    });
  });
}

/** Sends `count` demo events with `tributary send`; all must be accepted. */
function send(base, count) {
  return new Promise((resolve, reject) => {
    execFile(BIN, ["send", "--endpoint", base, "--count", String(count)], { timeout: 20_000 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`tributary send failed: ${error.message}\n${stdout}${stderr}`));
      if (!stdout.includes(`${count} accepted, 0 rejected`)) return reject(new Error(`tributary send: ${stdout}${stderr}`));
      resolve(stdout.trim());
    });
  });
}

/** `/metrics` as a Map from `name{labels}` to its value. */
async function scrape(base) {
  const response = await fetch(base + "/metrics", { signal: AbortSignal.timeout(5_000) });
  assert.equal(response.status, 200, "/metrics status");
  const text = await response.text();
  assert.match(text, /# EOF\n?$/, "/metrics ends with # EOF");
  const series = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)(?: \S+)?$/.exec(line);
    assert.ok(match, `unparsable /metrics line: ${line}`);
    const value = Number(match[2]);
    assert.ok(Number.isFinite(value), `non-numeric /metrics value: ${line}`);
    series.set(match[1], value);
  }
  return series;
}

const delivered = (name) => `tributary_destination_delivered_total{destination="${name}"}`;
const isCounter = (key) => /_total(\{|$)/.test(key);

/** Waits until `/metrics` says `predicate` holds; returns that scrape. */
async function until(base, what, predicate, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  let series;
  for (;;) {
    series = await scrape(base);
    if (predicate(series)) return series;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; /metrics: ${JSON.stringify([...series])}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** The pipeline is idle: `accepted` events accepted and nothing left to deliver or retry. */
const idle = (accepted) => (series) =>
  series.get("tributary_events_accepted_total") === accepted &&
  DESTINATIONS.every(
    (name) =>
      series.get(`tributary_log_lag_events{destination="${name}"}`) === 0 &&
      series.get(`tributary_destination_retrying{destination="${name}"}`) === 0,
  );

/** The page's poll count. */
const updates = (page) => page.evaluate(() => Number(document.body.dataset.updates || 0));

/**
 * Once the page has completed `minUpdates` polls, every `[data-metric]` element's text, the
 * destination rows, the "Events in / s" text and the state line, all read in one synchronous step.
 */
function readDom(page, minUpdates) {
  return page.evaluate(async (minUpdates) => {
    const deadline = Date.now() + 10_000;
    while (Number(document.body.dataset.updates || 0) < minUpdates) {
      if (Date.now() > deadline) throw new Error(`the page did not reach ${minUpdates} polls in 10 s (state: ${document.getElementById("state")?.textContent})`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const metrics = [...document.querySelectorAll("[data-metric]")].map((element) => [element.dataset.metric, element.textContent]);
    return {
      updates: Number(document.body.dataset.updates),
      metrics,
      rows: [...document.querySelectorAll("#destinations tr")].map((row) => ({
        destination: row.dataset.destination,
        cells: [...row.cells].map((cell) => cell.textContent),
      })),
      rateIn: document.getElementById("rate-in").textContent,
      state: document.getElementById("state").textContent,
      stateIsError: document.getElementById("state").classList.contains("error"),
    };
  }, minUpdates);
}

/** The number an element shows, or null when it shows no plain number. */
function shownNumber(text) {
  return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : null;
}

/** What is wrong with a DOM read compared with the scrapes around it: [counters, gauges]. */
function mismatches(dom, before, afterwards) {
  const counters = [];
  const gauges = [];
  const seen = new Set();
  for (const [key, text] of dom.metrics) {
    if (seen.has(key)) counters.push(`${key} is shown twice`);
    seen.add(key);
    const shown = shownNumber(text);
    if (!before.has(key) || !afterwards.has(key)) {
      counters.push(`${key} is shown (${JSON.stringify(text)}) but /metrics has no such series`);
      continue;
    }
    const low = Math.min(before.get(key), afterwards.get(key));
    const high = Math.max(before.get(key), afterwards.get(key));
    if (shown === null || shown < low || shown > high) {
      const message = `${key}: page shows ${JSON.stringify(text)}, /metrics said ${before.get(key)} before and ${afterwards.get(key)} after`;
      (isCounter(key) ? counters : gauges).push(message);
    }
  }
  const expected = [
    ...CARD_SERIES,
    ...DESTINATIONS.flatMap((name) => DESTINATION_METRICS.map((metric) => `${metric}{destination="${name}"}`)),
  ];
  for (const key of expected) if (!seen.has(key)) counters.push(`${key} is not on the page`);
  return [counters, gauges];
}

/** Reads the page and checks it against `/metrics` (see the top of this file); returns the read. */
async function readAndCompare(page, base) {
  let lastGauges = [];
  for (let attempt = 1; attempt <= 4; attempt += 1) {
    const before = await scrape(base);
    const polls = await updates(page);
    const dom = await readDom(page, polls + 2);
    const afterwards = await scrape(base);
    const [counters, gauges] = mismatches(dom, before, afterwards);
    assert.deepEqual(counters, [], "the page's counters disagree with /metrics");
    if (gauges.length === 0) return { dom, before, afterwards };
    lastGauges = gauges;
  }
  assert.deepEqual(lastGauges, [], "the page's gauges disagree with /metrics on 4 reads in a row");
}

const shown = (dom, key) => shownNumber(new Map(dom.metrics).get(key));

function checkLayout(dom) {
  assert.equal(dom.stateIsError, false, `the page reports an error: ${dom.state}`);
  assert.match(dom.state, /^updated /, "state line");
  assert.deepEqual(
    dom.rows.map((row) => row.destination),
    DESTINATIONS,
    "one row per destination, sorted",
  );
  for (const row of dom.rows) {
    assert.equal(row.cells.length, 8, `cells of the ${row.destination} row`);
    assert.equal(row.cells[0], row.destination, "first cell names the destination");
    assert.match(row.cells[1], /^\d+\.\d$/, `"Out / s" of ${row.destination} is a number`);
  }
  assert.match(dom.rateIn, /^\d+\.\d$/, `"Events in / s" shows a number, not ${JSON.stringify(dom.rateIn)}`);
}

test("the status page shows the numbers of /metrics, and they grow with traffic", { timeout: TEST_TIMEOUT_MS }, async () => {
  assert.ok(BIN, "set TRIBUTARY_BIN to the tributary binary (scripts/test-browser.sh does)");
  try {
    await checkStatusPage();
  } catch (error) {
    if (server?.stderrLines?.length) console.error("tributary serve's log (last lines):\n" + server.stderrLines.slice(-40).join("\n"));
    throw error;
  }
});

async function checkStatusPage() {
  const base = await startServer();

  await send(base, 200);
  await until(base, "the first 200 events to be delivered", idle(200));

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 20_000,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = await browser.newPage();
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  page.on("console", (message) => {
    // The browser's own request for /favicon.ico answers 404: not the page's doing.
    if (message.type() === "error" && !/\/favicon\.ico$/.test(message.location().url ?? "")) {
      pageErrors.push(`${message.text()} (${message.location().url})`);
    }
  });
  page.setDefaultTimeout(15_000);
  await page.goto(base + "/", { waitUntil: "load" });
  // Populated: two polls done, so every number and the rates are there.
  await page.waitForFunction(() => Number(document.body.dataset.updates || 0) >= 2, null, { timeout: 15_000 });

  const first = await readAndCompare(page, base);
  checkLayout(first.dom);
  assert.equal(shown(first.dom, "tributary_events_accepted_total"), 200, "accepted after the first 200 events");
  for (const name of DESTINATIONS) {
    assert.ok(shown(first.dom, delivered(name)) > 0, `${name} delivered something in the first batch`);
  }

  await send(base, 200);
  const [settled] = await Promise.all([
    until(base, "the next 200 events to be delivered", idle(400)),
    // The poll after the burst shows a positive rate, for a second.
    page
      .waitForFunction(() => Number(document.getElementById("rate-in").textContent) > 0, null, { polling: 50, timeout: 5_000 })
      .catch(() => assert.fail('"Events in / s" never showed a positive rate after 200 more events')),
  ]);
  // A few seconds between the two reads, and the page has polled since the pipeline settled.
  await new Promise((resolve) => setTimeout(resolve, 2_000));

  const second = await readAndCompare(page, base);
  checkLayout(second.dom);
  assert.ok(second.dom.updates >= first.dom.updates + 3, "the page kept polling");
  assert.equal(shown(second.dom, "tributary_events_accepted_total"), 400, "accepted after 400 events");
  assert.ok(
    shown(second.dom, "tributary_events_accepted_total") > shown(first.dom, "tributary_events_accepted_total"),
    "accepted grew",
  );
  for (const name of DESTINATIONS) {
    assert.ok(
      shown(second.dom, delivered(name)) > shown(first.dom, delivered(name)),
      `${name}: delivered grew from ${shown(first.dom, delivered(name))} to ${shown(second.dom, delivered(name))}`,
    );
    assert.equal(shown(second.dom, delivered(name)), settled.get(delivered(name)), `${name}: delivered once settled`);
  }
  assert.deepEqual(pageErrors, [], "errors in the page");
}
