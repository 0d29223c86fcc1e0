// @tributary/web: the browser client. The delivery queue itself (flush triggers, batches,
// retries, backoff, eviction, counters) is tributary-core compiled to WebAssembly; this file
// builds events, performs the queue's storage and network work and reports outcomes back.
//
// Invariants:
// - No public method throws into the host page: every failure goes to `onError`.
// - One tab per site and write key (the holder of a Web Lock) runs the queue; the others put
//   their events in the shared inbox, which the holder moves into the queue together with their
//   removal from the inbox in one IndexedDB transaction, so no event is queued twice.
// - An event is stored before it is uploaded (the core emits storage work before uploads) and
//   deleted only after a confirmed delivery; a beacon's events count as sent but stay stored
//   (sent-unconfirmed) and go again on the next page load, where the ingest's dedup by id absorbs
//   the repeat.

import init, { WebQueue } from '../build/bindgen/tributary_web.js';
import { autoContext, pageProperties } from './context.js';
import { keyValueStorage, openIndexedDb, type QueueStorage } from './storage.js';
import { uuidv7 } from './uuid.js';

export { LIBRARY } from './context.js';

/** Options of {@link createClient}. */
export interface ClientOptions {
  /** The write key the ingest knows (`server.write_keys`). */
  writeKey: string;
  /** The ingest's base URL, e.g. `http://127.0.0.1:8080`. */
  endpoint: string;
  /** Flush when this many events wait (default 20). */
  flushAt?: number;
  /** Flush when the oldest waiting event is this old, in ms (default 10000). */
  flushIntervalMs?: number;
  /** The most events queued; the oldest are evicted beyond (default 1000). */
  maxQueueEvents?: number;
  /** The most bytes of event JSON queued (default 2 MiB). */
  maxQueueBytes?: number;
  /** Where the queue lives between page loads (default `auto`: IndexedDB, else localStorage). */
  storage?: 'auto' | 'indexeddb' | 'localstorage' | 'memory';
  /** Whether tracking starts allowed; a stored `setConsent` choice wins (default true). */
  consent?: boolean;
  /** Called for what the queue does: `delivered`, `dropped`, `evicted`, `retry`, `paused`. */
  onEvent?: (notice: QueueNotice) => void;
  /** Called for every error the client caught instead of throwing (storage quota included). */
  onError?: (error: unknown, where: string) => void;
  /** The clock, Unix ms (tests drive time with it; default `Date.now`). */
  clock?: () => number;
  /** Where the .wasm file is (default: beside this module). */
  wasmUrl?: string | URL;
}

/** One thing the queue did. */
export interface QueueNotice {
  kind: 'delivered' | 'dropped' | 'evicted' | 'retry' | 'paused';
  count: number;
  detail: string;
}

/** What the client has done since the page loaded. */
export interface Counters {
  enqueued: number;
  restored: number;
  delivered: number;
  dropped: number;
  evicted: number;
  retried: number;
  uploads: number;
  queued: number;
  queuedBytes: number;
  beaconed: number;
}

/** The client {@link createClient} returns. */
export interface Client {
  /** Queues an event; returns its id, or undefined when it was not queued (see `onError`). */
  track(name: string, data?: Record<string, unknown>): string | undefined;
  /** Sets the user id and traits (kept for later events) and sends `$identify`. */
  identify(userId: string, traits?: Record<string, unknown>): string | undefined;
  /** Sends `$page` with the page's url, path, referrer, title and search. */
  page(name?: string, properties?: Record<string, unknown>): string | undefined;
  /** Sends what waits now; resolves when the queue is empty or a send failed. */
  flush(): Promise<void>;
  /** Forgets the user: a new anonymous id, no user id, no traits. */
  reset(): void;
  /** Allows (true) or stops (false) tracking, kept across loads; false also drops the queue. */
  setConsent(granted: boolean): void;
  /** The same as `setConsent(false)`. */
  optOut(): void;
  counters(): Counters;
  /** Resolves once the client is running (the wasm module loaded, this tab leader or follower). */
  readonly ready: Promise<void>;
  /** The storage in use once ready: `indexeddb`, `localstorage` or `memory`. */
  readonly storageKind: string;
  /** Whether this tab runs the queue. */
  readonly isLeader: boolean;
  /** The persisted anonymous id. */
  readonly anonymousId: string;
}

const POLL_IDLE = 0;
const POLL_WAIT = 1;
const POLL_UPLOAD = 2;
const POLL_PERSIST = 3;
const POLL_DELETE = 4;
const POLL_SAVE_RETRY = 5;
/** The in-flight quota beacons and keepalive fetches share in a page. */
const BEACON_QUOTA = 65536;

let wasmReady: Promise<unknown> | undefined;

/** A client for one write key and endpoint. Never throws; see {@link ClientOptions.onError}. */
export function createClient(options: ClientOptions): Client {
  const clock = options.clock ?? Date.now;
  const report = (error: unknown, where: string) => {
    try {
      options.onError?.(error, where);
    } catch {
      // the app's own callback failed: nothing sensible left to do
    }
  };
  const guard =
    <A extends unknown[], R>(where: string, body: (...args: A) => R, fallback: R) =>
    (...args: A): R => {
      try {
        return body(...args);
      } catch (error) {
        report(error, where);
        return fallback;
      }
    };

  const endpoint = options.endpoint.replace(/\/+$/, '') + '/v1/batch';
  const prefix = `tributary:${options.writeKey}:`;
  const local = (() => {
    try {
      return localStorage;
    } catch {
      return undefined;
    }
  })();
  const remember = (key: string, value?: string) => {
    try {
      if (value === undefined) local?.removeItem(prefix + key);
      else local?.setItem(prefix + key, value);
    } catch (error) {
      report(error, 'localStorage');
    }
  };
  const recall = (key: string) => {
    try {
      return local?.getItem(prefix + key) ?? undefined;
    } catch {
      return undefined;
    }
  };

  let anonymousId = recall('anonymous_id') ?? uuidv7(clock());
  remember('anonymous_id', anonymousId);
  let userId = recall('user_id');
  let traits: Record<string, unknown> = {};
  try {
    traits = JSON.parse(recall('traits') ?? '{}');
  } catch {
    traits = {};
  }
  const storedConsent = recall('consent');
  let consent = storedConsent ? storedConsent === 'granted' : options.consent !== false;

  let queue: WebQueue | undefined;
  let storage: QueueStorage = keyValueStorage(prefix);
  let leader = false;
  let followerReady = false;
  let beaconed = 0;
  const early: [string, string][] = [];
  const inboxKeysToRemove: number[] = [];
  const inboxSeen = new Set<number>();
  const flushWaiters: (() => void)[] = [];
  let keepaliveBytes = 0;
  let pumping = false;
  let pumpAgain = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let afterBeacon = false;
  const channel = typeof BroadcastChannel === 'undefined' ? undefined : new BroadcastChannel(prefix + 'inbox');

  const newQueue = () =>
    new WebQueue(
      options.maxQueueEvents ?? 0,
      options.maxQueueBytes ?? 0,
      options.flushAt ?? 0,
      options.flushIntervalMs ?? 0,
      crypto.getRandomValues(new Uint32Array(1))[0],
    );

  const safely = async (work: Promise<void>, where: string) => {
    try {
      await work;
    } catch (error) {
      report(error, where);
    }
  };

  const settleFlushes = () => {
    for (const resolve of flushWaiters.splice(0)) resolve();
  };

  const readNotices = () => {
    if (!queue) return;
    for (const line of queue.notices().split('\n')) {
      if (!line) continue;
      const [kind, count] = line.split(' ', 2);
      const detail = line.slice(kind.length + count.length + 2);
      const plain = { kind, count: Number(count), detail } as QueueNotice;
      if (plain.kind === 'retry' || plain.kind === 'paused') settleFlushes();
      try {
        options.onEvent?.(plain);
      } catch (error) {
        report(error, 'onEvent');
      }
    }
    if (queue.counters()[7] === 0) settleFlushes();
  };

  const retryAfterMs = (header: string | null) => {
    if (!header) return NaN;
    const seconds = Number(header);
    if (Number.isFinite(seconds)) return seconds * 1000;
    const at = Date.parse(header);
    return Number.isFinite(at) ? Math.max(0, at - Date.now()) : NaN;
  };

  const upload = (id: number, body: Uint8Array<ArrayBuffer>) => {
    const keepalive = keepaliveBytes + body.byteLength <= BEACON_QUOTA;
    if (keepalive) keepaliveBytes += body.byteLength;
    fetch(endpoint, {
      method: 'POST',
      body,
      keepalive,
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${options.writeKey}` },
    })
      .then(async (response) => {
        if (response.ok) {
          let rejected: { index: number; error?: string }[] = [];
          try {
            rejected = (await response.json()).rejected ?? [];
          } catch {
            rejected = [];
          }
          queue?.completed_accepted(
            id,
            rejected.map((entry) => entry.index),
            rejected[0]?.error ?? '',
            clock(),
          );
        } else {
          queue?.completed_status(id, response.status, retryAfterMs(response.headers.get('Retry-After')), clock());
        }
      })
      .catch((error) => queue?.completed_failed(id, String(error), clock()))
      .finally(() => {
        if (keepalive) keepaliveBytes -= body.byteLength;
        pump();
      });
  };

  /** Storage work, started synchronously (so it survives a page going away) and awaited. */
  const storageWork = (code: number): Promise<void> | undefined => {
    const q = queue!;
    if (code === POLL_PERSIST) {
      const records = [];
      for (let index = 0; index < q.persist_count(); index++) {
        records.push({ seq: q.persist_seq(index), at: q.persist_enqueued_at(index), json: q.persist_payload(index) });
      }
      return safely(storage.persist(records, inboxKeysToRemove.splice(0)), 'storage.persist');
    }
    if (code === POLL_DELETE) {
      // A beacon's events stay stored: it is unconfirmed, so the next page load sends them again.
      return afterBeacon ? Promise.resolve() : safely(storage.remove(Array.from(q.delete_seqs())), 'storage.remove');
    }
    if (code === POLL_SAVE_RETRY) {
      const notBefore = q.retry_not_before();
      return safely(
        storage.saveRetry({
          failures: q.retry_failures(),
          notBefore: Number.isNaN(notBefore) ? null : notBefore,
          paused: q.retry_paused(),
        }),
        'storage.saveRetry',
      );
    }
    return undefined;
  };

  const pump = async (): Promise<void> => {
    if (!queue) return;
    if (pumping) {
      pumpAgain = true;
      return;
    }
    pumping = true;
    try {
      for (;;) {
        pumpAgain = false;
        const code = queue.poll(clock());
        const work = storageWork(code);
        if (work) {
          await work;
          continue;
        }
        if (code === POLL_UPLOAD) {
          upload(queue.upload_id(), queue.upload_body() as Uint8Array<ArrayBuffer>);
          continue;
        }
        if (code === POLL_WAIT) {
          clearTimeout(timer);
          timer = setTimeout(pump, Math.max(0, queue.wait_until() - clock()));
        }
        if (code === POLL_WAIT || code === POLL_IDLE) break;
      }
    } catch (error) {
      report(error, 'pump');
    } finally {
      pumping = false;
      readNotices();
      if (pumpAgain) void pump();
    }
  };

  const enqueue = (name: string, json: string) => {
    const problem = queue!.enqueue(name, json, clock());
    if (problem) report(new Error(problem), 'track');
  };

  const drainInbox = async () => {
    if (!queue) return;
    try {
      for (const entry of await storage.inboxAll()) {
        if (inboxSeen.has(entry.key)) continue;
        inboxSeen.add(entry.key);
        enqueue(entry.name, entry.json);
        inboxKeysToRemove.push(entry.key);
      }
    } catch (error) {
      report(error, 'storage.inboxAll');
    }
    void pump();
  };

  const becomeLeader = async () => {
    leader = true;
    const q = newQueue();
    try {
      const { events, retry } = await storage.load();
      events.sort((a, b) => a.seq - b.seq);
      for (const event of events) q.restore_record(event.seq, event.at, event.json);
      q.finish_restore(0, retry?.failures ?? 0, retry?.notBefore ?? NaN, retry?.paused ?? false);
    } catch (error) {
      report(error, 'storage.load');
      storage = keyValueStorage(prefix);
    }
    queue = q;
    for (const [name, json] of early.splice(0)) enqueue(name, json);
    if (channel) channel.onmessage = () => void drainInbox();
    await drainInbox();
  };

  const openStorage = async () => {
    const wanted = options.storage ?? 'auto';
    if (wanted === 'memory') return;
    if (wanted !== 'localstorage' && typeof indexedDB !== 'undefined') {
      try {
        storage = await openIndexedDb(prefix + 'queue');
        return;
      } catch (error) {
        report(error, 'indexedDB.open');
      }
    }
    if (local) storage = keyValueStorage(prefix, local);
  };

  const start = async () => {
    await (wasmReady ??= init(options.wasmUrl ? { module_or_path: options.wasmUrl } : undefined));
    await openStorage();
    const locks = (navigator as Navigator & { locks?: LockManager }).locks;
    if (!locks || storage.kind === 'memory') {
      await becomeLeader();
      return;
    }
    const name = prefix + 'queue';
    // Held until the page goes away; the next tab in line then takes over the queue.
    const lead = () => becomeLeader().then(() => new Promise<never>(() => {}));
    let running!: () => void;
    const leading = new Promise<void>((resolve) => (running = resolve));
    const first = await new Promise<boolean>((resolve) => {
      locks
        .request(name, { ifAvailable: true }, (lock) => {
          resolve(lock !== null);
          return lock ? becomeLeader().then(running).then(() => new Promise<never>(() => {})) : undefined;
        })
        .catch((error) => {
          report(error, 'navigator.locks');
          resolve(false);
        });
    });
    if (first) return leading;
    followerReady = true;
    for (const [event, json] of early.splice(0)) toInbox(event, json);
    void locks
      .request(name, () => {
        followerReady = false;
        return lead();
      })
      .catch((error) => report(error, 'navigator.locks'));
  };

  const toInbox = (name: string, json: string) => {
    void storage
      .inboxAdd(name, json)
      .then(() => channel?.postMessage('inbox'))
      .catch((error) => report(error, 'storage.inboxAdd'));
  };

  const send = (name: string, data: unknown, extraContext?: Record<string, unknown>): string | undefined => {
    if (!consent) return undefined;
    if (typeof data !== 'object' || data === null || Array.isArray(data)) {
      report(new TypeError(`data of "${name}" must be a plain object`), 'track');
      return undefined;
    }
    const now = clock();
    const id = uuidv7(now);
    const context = { ...autoContext(), ...extraContext, traits };
    const event: Record<string, unknown> = {
      id,
      name,
      data,
      timestamp: new Date(now).toISOString(),
      anonymous_id: anonymousId,
      source: 'web',
      context,
    };
    if (userId) event.user_id = userId;
    const json = JSON.stringify(event);
    if (queue) {
      enqueue(name, json);
      void pump();
    } else if (followerReady) {
      toInbox(name, json);
    } else {
      // Before the module is running (or if it never loads): bounded like the queue.
      if (early.push([name, json]) > (options.maxQueueEvents || 1000)) {
        early.shift();
        report(new Error('the client is not running yet: the oldest waiting event was dropped'), 'track');
      }
    }
    return id;
  };

  /** The page may be going away: the oldest events go by beacon, within the quota left. */
  const sendBeacons = () => {
    if (!queue || typeof navigator.sendBeacon !== 'function') return;
    const head = new TextEncoder().encode(`{"write_key":${JSON.stringify(options.writeKey)},`);
    let budget = BEACON_QUOTA - keepaliveBytes;
    while (queue.start_beacon(budget - head.byteLength, clock())) {
      const id = queue.upload_id();
      const body = queue.upload_body();
      const full = new Uint8Array(head.byteLength + body.byteLength - 1);
      full.set(head);
      full.set(body.subarray(1), head.byteLength);
      if (navigator.sendBeacon(endpoint, new Blob([full], { type: 'text/plain' }))) {
        budget -= full.byteLength;
        beaconed += queue.upload_count();
        afterBeacon = true;
        queue.completed_accepted(id, [], '', clock());
      } else {
        queue.completed_failed(id, 'the browser refused the beacon', clock());
        break;
      }
    }
    // Start the storage work now, while the page still runs.
    for (let code = queue.poll(clock()); storageWork(code); code = queue.poll(clock()));
    afterBeacon = false;
    readNotices();
  };

  if (typeof addEventListener === 'function') {
    addEventListener('pagehide', guard('pagehide', sendBeacons, undefined));
    addEventListener(
      'visibilitychange',
      guard('visibilitychange', () => document.visibilityState === 'hidden' && sendBeacons(), undefined),
    );
    addEventListener('online', guard('online', () => void pump(), undefined));
  }

  const ready = start().catch((error) => report(error, 'start'));

  return {
    track: guard('track', (name: string, data: Record<string, unknown> = {}) => send(name, data), undefined),
    identify: guard(
      'identify',
      (id: string, newTraits: Record<string, unknown> = {}) => {
        if (!consent) return undefined;
        userId = String(id);
        traits = { ...traits, ...newTraits };
        remember('user_id', userId);
        remember('traits', JSON.stringify(traits));
        return send('$identify', newTraits);
      },
      undefined,
    ),
    page: guard(
      'page',
      (name?: string, properties: Record<string, unknown> = {}) =>
        send('$page', { ...pageProperties(), ...(name ? { name } : {}), ...properties }),
      undefined,
    ),
    flush: () =>
      new Promise<void>((resolve) => {
        try {
          if (!queue || queue.counters()[7] === 0) return resolve();
          flushWaiters.push(resolve);
          queue.request_flush();
          void pump();
        } catch (error) {
          report(error, 'flush');
          resolve();
        }
      }),
    reset: guard(
      'reset',
      () => {
        anonymousId = uuidv7(clock());
        userId = undefined;
        traits = {};
        remember('anonymous_id', anonymousId);
        remember('user_id');
        remember('traits');
      },
      undefined,
    ),
    setConsent: guard(
      'setConsent',
      (granted: boolean) => {
        consent = granted;
        remember('consent', granted ? 'granted' : 'denied');
        if (!granted) {
          early.length = 0;
          if (queue) {
            queue.free();
            queue = newQueue();
          }
          void safely(storage.clear(), 'storage.clear');
        }
      },
      undefined,
    ),
    optOut() {
      this.setConsent(false);
    },
    counters: () => {
      const values = queue ? Array.from(queue.counters()) : [0, 0, 0, 0, 0, 0, 0, 0, 0];
      const [enqueued, restored, delivered, dropped, evicted, retried, uploads, queued, queuedBytes] = values;
      return { enqueued, restored, delivered, dropped, evicted, retried, uploads, queued, queuedBytes, beaconed };
    },
    ready,
    get storageKind() {
      return storage.kind;
    },
    get isLeader() {
      return leader;
    },
    get anonymousId() {
      return anonymousId;
    },
  };
}
