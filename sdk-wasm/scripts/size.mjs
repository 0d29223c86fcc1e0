// The size budget: every .wasm and .js file of dist/ a browser loads, each compressed with
// `gzip -9`, at most 25 KB (25,000 bytes) in total. Exits 1 over budget. Run after the build.
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BUDGET_BYTES = 25_000;
const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const files = readdirSync(dist).filter((file) => /\.(wasm|m?js)$/.test(file) && !file.endsWith('.d.ts'));
if (files.length === 0) {
  console.error(`no .wasm or .js file in ${dist}: run \`npm run build\` first`);
  process.exit(1);
}
let total = 0;
for (const file of files.sort()) {
  const gzipped = execFileSync('gzip', ['-9', '-c', join(dist, file)]).length;
  total += gzipped;
  console.log(`${file.padEnd(28)} ${String(gzipped).padStart(6)} bytes gzip -9`);
}
console.log(`${'total'.padEnd(28)} ${String(total).padStart(6)} bytes (budget ${BUDGET_BYTES})`);
if (total > BUDGET_BYTES) {
  console.error(`over the size budget by ${total - BUDGET_BYTES} bytes`);
  process.exit(1);
}
