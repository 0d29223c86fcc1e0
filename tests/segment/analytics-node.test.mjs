// Segment's own server library, @segment/analytics-node, pointed at `tributary serve` unchanged
// (only `host` differs): every call type it makes is accepted and lands in the SQLite warehouse
// mapped as docs/SEGMENT.md says.
//
// Needs TRIBUTARY_BIN (the `tributary` binary) and python3 (to read the warehouse with its
// sqlite3 module). scripts/test-segment.sh installs the npm packages and runs this file.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { Analytics } from "@segment/analytics-node";

const BIN = process.env.TRIBUTARY_BIN;
const WRITE_KEY = "segment-test-key";
const TIMEOUT_MS = 30_000;

let server = null;
let workDir = null;

after(() => {
  if (server && server.exitCode === null && server.signalCode === null) server.kill("SIGKILL");
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

/** Starts `tributary serve` in a fresh folder; resolves with its base URL. */
async function startServer() {
  assert.ok(BIN, "TRIBUTARY_BIN must name the tributary binary");
  workDir = mkdtempSync(join(tmpdir(), "tributary-segment-"));
  writeFileSync(
    join(workDir, "tributary.toml"),
    `[server]
listen = "127.0.0.1:0"
write_keys = ["${WRITE_KEY}"]

[storage]
data_dir = "data"

[routing]
rules = "rules.json"

[destinations.datawarehouse]
kind = "sqlite"
path = "data/warehouse.db"
`,
  );
  writeFileSync(
    join(workDir, "rules.json"),
    JSON.stringify([{ destination_name: "datawarehouse", destination_arn: "local", enabled_events: ["*"] }]),
  );
  server = spawn(BIN, ["serve", "--config", "tributary.toml"], {
    cwd: workDir,
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  const lines = createInterface({ input: server.stdout });
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("serve did not start within 30 s")), TIMEOUT_MS);
    server.on("exit", (code) => reject(new Error(`serve exited with ${code}`)));
    lines.on("line", (line) => {
      const match = line.match(/^tributary: listening on (http:\/\/\S+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
}

/** Every warehouse row, by id, read with python3's sqlite3 (node 20 has no SQLite). */
async function warehouseRows() {
  const script = `
import json, sqlite3, sys
try:
    connection = sqlite3.connect(sys.argv[1], timeout=5)
    rows = connection.execute("SELECT id, name, user_id, anonymous_id, source, data, context, envelope FROM events").fetchall()
except sqlite3.Error:
    rows = []
print(json.dumps([{"id": r[0], "name": r[1], "user_id": r[2], "anonymous_id": r[3], "source": r[4],
                   "data": json.loads(r[5]), "context": json.loads(r[6]), "envelope": json.loads(r[7])} for r in rows]))
`;
  const { stdout } = await promisify(execFile)("python3", ["-c", script, join(workDir, "data", "warehouse.db")]);
  return Object.fromEntries(JSON.parse(stdout).map((row) => [row.id, row]));
}

test("analytics-node's calls land in the warehouse, mapped", { timeout: 60_000 }, async () => {
  const host = await startServer();
  const analytics = new Analytics({ writeKey: WRITE_KEY, host, flushAt: 4, flushInterval: 200 });
  const statuses = [];
  const errors = [];
  analytics.on("http_response", (response) => statuses.push(response.status));
  analytics.on("error", (error) => errors.push(error));

  analytics.identify({
    messageId: "node-identify",
    userId: "user-42",
    anonymousId: "anon-42",
    traits: { email: "ada@example.com", plan: "pro" },
    context: { ip: "198.51.100.23" },
  });
  analytics.track({
    messageId: "node-track",
    userId: "user-42",
    event: "Order Completed",
    properties: { order_id: "o-1", revenue: 30.5 },
    timestamp: new Date("2026-11-27T10:00:00Z"),
  });
  analytics.page({
    messageId: "node-page",
    anonymousId: "anon-42",
    name: "Pricing",
    category: "Docs",
    properties: { url: "https://example.com/pricing" },
  });
  analytics.screen({ messageId: "node-screen", userId: "user-42", name: "Settings", properties: { tab: "privacy" } });
  analytics.group({ messageId: "node-group", userId: "user-42", groupId: "acme", traits: { employees: 40 } });
  analytics.alias({ messageId: "node-alias", userId: "user-42", previousId: "anon-42" });
  await analytics.closeAndFlush({ timeout: 20_000 });

  assert.deepEqual(errors, [], "analytics-node reported no delivery error");
  assert.ok(statuses.length >= 2, `two batches at flushAt 4 (got ${statuses.length})`);
  assert.ok(statuses.every((status) => status === 200), `every batch answered 200: ${statuses}`);

  let rows = {};
  const deadline = Date.now() + TIMEOUT_MS;
  while (Date.now() < deadline) {
    rows = await warehouseRows();
    if (Object.keys(rows).length === 6) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.deepEqual(Object.keys(rows).sort(), [
    "node-alias",
    "node-group",
    "node-identify",
    "node-page",
    "node-screen",
    "node-track",
  ]);

  const identify = rows["node-identify"];
  assert.equal(identify.name, "$identify");
  assert.equal(identify.user_id, "user-42");
  assert.equal(identify.anonymous_id, "anon-42");
  assert.deepEqual(identify.data, { email: "ada@example.com", plan: "pro" });
  assert.equal(identify.context.ip, "198.51.100.0", "the forwarded end-user address, anonymized");
  assert.equal(identify.context.library.name, "@segment/analytics-node");
  assert.equal(identify.source, "server");

  const track = rows["node-track"];
  assert.equal(track.name, "Order Completed");
  assert.deepEqual(track.data, { order_id: "o-1", revenue: 30.5 });
  assert.equal(track.envelope.original_timestamp, "2026-11-27T10:00:00Z", "the client's timestamp, kept");
  assert.ok(track.envelope.sent_at, "the batch's sentAt");
  assert.ok(track.envelope.received_at);

  const page = rows["node-page"];
  assert.equal(page.name, "$page");
  assert.equal(page.anonymous_id, "anon-42");
  assert.deepEqual(page.data, { url: "https://example.com/pricing", name: "Pricing", category: "Docs" });

  const screen = rows["node-screen"];
  assert.equal(screen.name, "$screen");
  assert.deepEqual(screen.data, { tab: "privacy", name: "Settings" });

  const group = rows["node-group"];
  assert.equal(group.name, "$group");
  assert.deepEqual(group.data, { group_id: "acme", traits: { employees: 40 } });

  const alias = rows["node-alias"];
  assert.equal(alias.name, "$alias");
  assert.equal(alias.user_id, "user-42");
  assert.deepEqual(alias.data, { previous_id: "anon-42" });

  for (const row of Object.values(rows)) {
    assert.ok(!JSON.stringify(row.envelope).includes(WRITE_KEY), "the write key is never stored");
    assert.equal(row.envelope._metadata, undefined);
  }
});
