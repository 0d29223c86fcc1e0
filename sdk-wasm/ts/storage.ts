// Where the queue lives between page loads: IndexedDB, else localStorage, else memory.
//
// Three kinds of data, per write key:
// - `events`: the queue's records, keyed by the core's sequence number ({seq, at, json}).
// - `inbox`: events tracked by tabs that do not hold the queue, waiting for the tab that does.
// - `meta`: the retry state.
// Every method rejects on a storage error (a full quota included); the client catches, reports
// and keeps the events in memory.

export interface StoredEvent {
  seq: number;
  at: number;
  json: string;
}

export interface InboxEntry {
  key: number;
  name: string;
  json: string;
}

export interface RetryState {
  failures: number;
  notBefore: number | null;
  paused: boolean;
}

export interface QueueStorage {
  kind: 'indexeddb' | 'localstorage' | 'memory';
  load(): Promise<{ events: StoredEvent[]; retry: RetryState | null }>;
  /** Writes records and removes the inbox entries they came from, atomically where possible. */
  persist(records: StoredEvent[], inboxKeys: number[]): Promise<void>;
  remove(seqs: number[]): Promise<void>;
  saveRetry(state: RetryState): Promise<void>;
  inboxAdd(name: string, json: string): Promise<void>;
  inboxAll(): Promise<InboxEntry[]>;
  clear(): Promise<void>;
}

const promised = <T>(request: IDBRequest<T>): Promise<T> =>
  new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });

const done = (tx: IDBTransaction): Promise<void> =>
  new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = tx.onabort = () => reject(tx.error ?? new Error('transaction aborted'));
  });

export async function openIndexedDb(name: string): Promise<QueueStorage> {
  const open = indexedDB.open(name, 1);
  open.onupgradeneeded = () => {
    const db = open.result;
    db.createObjectStore('events', { keyPath: 'seq' });
    db.createObjectStore('inbox', { autoIncrement: true });
    db.createObjectStore('meta');
  };
  const db = await promised(open);
  const tx = (stores: string[], mode: IDBTransactionMode = 'readwrite') => db.transaction(stores, mode);
  return {
    kind: 'indexeddb',
    async load() {
      const t = tx(['events', 'meta'], 'readonly');
      const events = promised(t.objectStore('events').getAll() as IDBRequest<StoredEvent[]>);
      const retry = promised(t.objectStore('meta').get('retry') as IDBRequest<RetryState | undefined>);
      return { events: await events, retry: (await retry) ?? null };
    },
    async persist(records, inboxKeys) {
      const t = tx(['events', 'inbox']);
      for (const record of records) t.objectStore('events').put(record);
      for (const key of inboxKeys) t.objectStore('inbox').delete(key);
      await done(t);
    },
    async remove(seqs) {
      const t = tx(['events']);
      for (const seq of seqs) t.objectStore('events').delete(seq);
      await done(t);
    },
    async saveRetry(state) {
      const t = tx(['meta']);
      t.objectStore('meta').put(state, 'retry');
      await done(t);
    },
    async inboxAdd(name, json) {
      const t = tx(['inbox']);
      t.objectStore('inbox').add({ name, json });
      await done(t);
    },
    async inboxAll() {
      const t = tx(['inbox'], 'readonly');
      const store = t.objectStore('inbox');
      const [keys, values] = await Promise.all([
        promised(store.getAllKeys()),
        promised(store.getAll() as IDBRequest<{ name: string; json: string }[]>),
      ]);
      return values.map((value, index) => ({ key: keys[index] as number, ...value }));
    },
    async clear() {
      const t = tx(['events', 'inbox', 'meta']);
      for (const store of ['events', 'inbox', 'meta']) t.objectStore(store).clear();
      await done(t);
    },
  };
}

/** localStorage (or, with `store` omitted, memory): one JSON value per kind of data. */
export function keyValueStorage(prefix: string, store?: Storage): QueueStorage {
  const memory = new Map<string, string>();
  const get = <T>(key: string, fallback: T): T => {
    const text = store ? store.getItem(prefix + key) : memory.get(key);
    return text == null ? fallback : (JSON.parse(text) as T);
  };
  const set = (key: string, value: unknown) => {
    const text = JSON.stringify(value);
    if (store) store.setItem(prefix + key, text);
    else memory.set(key, text);
  };
  const events = () => get<StoredEvent[]>('events', []);
  const inbox = () => get<{ next: number; entries: InboxEntry[] }>('inbox', { next: 1, entries: [] });
  return {
    kind: store ? 'localstorage' : 'memory',
    async load() {
      return { events: events(), retry: get<RetryState | null>('retry', null) };
    },
    async persist(records, inboxKeys) {
      const seqs = new Set(records.map((record) => record.seq));
      set('events', events().filter((event) => !seqs.has(event.seq)).concat(records));
      if (inboxKeys.length) {
        const box = inbox();
        box.entries = box.entries.filter((entry) => !inboxKeys.includes(entry.key));
        set('inbox', box);
      }
    },
    async remove(seqs) {
      set('events', events().filter((event) => !seqs.includes(event.seq)));
    },
    async saveRetry(state) {
      set('retry', state);
    },
    async inboxAdd(name, json) {
      const box = inbox();
      box.entries.push({ key: box.next++, name, json });
      set('inbox', box);
    },
    async inboxAll() {
      return inbox().entries;
    },
    async clear() {
      for (const key of ['events', 'inbox', 'retry']) {
        if (store) store.removeItem(prefix + key);
        else memory.delete(key);
      }
    },
  };
}
