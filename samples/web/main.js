// The sample page: a client for `tributary serve`, buttons that send events, live counters.
// `?endpoint=…&writeKey=…&flushAt=…&flushIntervalMs=…&storage=…` override the defaults (the
// end-to-end tests point the page at their own server this way).
import { createClient } from '@tributary/web';

const params = new URLSearchParams(location.search);
const endpoint = params.get('endpoint') ?? 'http://127.0.0.1:8080';
const number = (name) => (params.has(name) ? Number(params.get(name)) : undefined);
const log = document.getElementById('log');
const notices = [];
const errors = [];

const client = createClient({
  endpoint,
  writeKey: params.get('writeKey') ?? 'dev-write-key',
  flushAt: number('flushAt'),
  flushIntervalMs: number('flushIntervalMs'),
  storage: params.get('storage') ?? undefined,
  onEvent: (notice) => {
    notices.push(notice);
    log.textContent = `${notice.kind} ${notice.count} ${notice.detail}\n` + log.textContent.slice(0, 2000);
  },
  onError: (error, where) => {
    errors.push(`${where}: ${error}`);
    log.textContent = `error in ${where}: ${error}\n` + log.textContent.slice(0, 2000);
  },
});
document.getElementById('endpoint').textContent = endpoint;

let clicks = 0;
for (const button of document.querySelectorAll('button[data-event]')) {
  button.addEventListener('click', () => {
    clicks += 1;
    client.track(button.dataset.event, { button: button.id, click: clicks });
  });
}
document.getElementById('login').addEventListener('click', () =>
  client.identify('demo-user', { email: 'demo@example.com' }),
);
document.getElementById('flush').addEventListener('click', () => client.flush());
document.getElementById('reset').addEventListener('click', () => client.reset());
document.getElementById('consent').addEventListener('change', (event) => client.setConsent(event.target.checked));

const table = document.getElementById('counters');
setInterval(() => {
  const counters = client.counters();
  table.innerHTML = Object.entries(counters)
    .map(([name, value]) => `<tr><td>${name}</td><td data-counter="${name}">${value}</td></tr>`)
    .join('');
}, 250);

client.ready.then(() => client.page());

// For the end-to-end tests (and the curious, in the console).
window.tributary = { client, notices, errors };
