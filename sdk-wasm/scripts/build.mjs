// `npm run build`: the publishable package in dist/.
//
// 1. the wasm module: tributary-web for wasm32-unknown-unknown with nightly's build-std (the
//    standard library rebuilt for size, panics as immediate aborts: see docs/BENCHMARKS.md for
//    what each step saves), installing the nightly toolchain pieces when missing;
// 2. wasm-bindgen-cli at exactly the wasm-bindgen version of Cargo.lock (cargo install when
//    missing), ESM output for the web;
// 3. wasm-opt -Oz from the npm package binaryen;
// 4. esbuild bundles ts/ with the bindings into dist/index.js (one ESM file for bundlers and for
//    a plain <script type="module">; the .wasm is found beside it through import.meta.url);
// 5. tsc writes dist/index.d.ts; dist/package.json has `exports` and `files`.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { homedir } from 'node:os';

const here = join(dirname(fileURLToPath(import.meta.url)), '..');
const root = join(here, '..');
const bin = join(here, 'node_modules', '.bin');
// Pinned: the size budget is measured with this compiler, and `nightly` moves (a fresh machine
// would otherwise build with whatever nightly is newest, flags and size included).
const toolchain = process.env.TRIBUTARY_WASM_TOOLCHAIN ?? 'nightly-2026-05-20';
const target = 'wasm32-unknown-unknown';
// Its own folder: the nightly build-std artifacts would otherwise evict the stable ones.
const targetDir = join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'web-sdk');

const run = (command, args, options = {}) => {
  console.log(`$ ${command} ${args.join(' ')}`);
  execFileSync(command, args, { stdio: 'inherit', ...options });
};
const output = (command, args) => {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
};

// 1. Toolchain pieces, only when missing.
if (!output('rustup', ['toolchain', 'list']).split('\n').some((line) => line.startsWith(toolchain))) {
  run('rustup', ['toolchain', 'install', toolchain, '--profile', 'minimal']);
}
if (!output('rustup', ['component', 'list', '--installed', '--toolchain', toolchain]).includes('rust-src')) {
  run('rustup', ['component', 'add', 'rust-src', '--toolchain', toolchain]);
}
if (!output('rustup', ['target', 'list', '--installed', '--toolchain', toolchain]).includes(target)) {
  run('rustup', ['target', 'add', target, '--toolchain', toolchain]);
}
run(
  'cargo',
  [
    `+${toolchain}`, 'build', '--locked', '-p', 'tributary-web', '--lib', '--target', target,
    '--profile', 'wasm-release', '-Zbuild-std=std,panic_abort', '-Zbuild-std-features=optimize_for_size',
  ],
  {
    cwd: root,
    env: {
      ...process.env,
      CARGO_TARGET_DIR: targetDir,
      RUSTFLAGS: '-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none -Zfmt-debug=none',
    },
  },
);

// 2. wasm-bindgen-cli at the crate's exact version.
const lock = readFileSync(join(root, 'Cargo.lock'), 'utf8');
const version = lock.match(/name = "wasm-bindgen"\nversion = "([^"]+)"/)[1];
const cargoBin = join(process.env.CARGO_HOME ?? join(homedir(), '.cargo'), 'bin');
const wasmBindgen = join(cargoBin, 'wasm-bindgen');
if (!output(wasmBindgen, ['--version']).includes(version)) {
  run('cargo', ['install', 'wasm-bindgen-cli', '--version', version, '--force']);
}
const build = join(here, 'build');
rmSync(build, { recursive: true, force: true });
run(wasmBindgen, [
  '--target', 'web', '--out-dir', join(build, 'bindgen'),
  join(targetDir, target, 'wasm-release', 'tributary_web.wasm'),
]);

// 3. wasm-opt.
const dist = join(here, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
run(join(bin, 'wasm-opt'), [
  // The features rustc enables by default for wasm32-unknown-unknown, and no more: every
  // browser of the last years runs them (`--all-features` would allow proposals browsers lack).
  '-Oz', '--converge', '--strip-debug', '--strip-producers', '--enable-bulk-memory',
  '--enable-multivalue', '--enable-mutable-globals', '--enable-nontrapping-float-to-int',
  '--enable-reference-types', '--enable-sign-ext',
  join(build, 'bindgen', 'tributary_web_bg.wasm'), '-o', join(dist, 'tributary_web_bg.wasm'),
]);

// 4. The JavaScript.
run(join(bin, 'esbuild'), [
  join(here, 'ts', 'index.ts'), '--bundle', '--format=esm', '--minify', '--target=es2020',
  '--legal-comments=none', `--outfile=${join(dist, 'index.js')}`,
]);

// 5. Types and the package manifest.
run(join(bin, 'tsc'), ['-p', join(here, 'tsconfig.json')]);
for (const file of readdirSync(join(build, 'types', 'ts'))) {
  copyFileSync(join(build, 'types', 'ts', file), join(dist, file));
}
const manifest = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'));
delete manifest.scripts;
delete manifest.devDependencies;
manifest.main = './index.js';
manifest.module = './index.js';
manifest.types = './index.d.ts';
manifest.exports = {
  '.': { types: './index.d.ts', import: './index.js', default: './index.js' },
  './tributary_web_bg.wasm': './tributary_web_bg.wasm',
  './package.json': './package.json',
};
manifest.files = ['index.js', '*.d.ts', 'tributary_web_bg.wasm', 'README.md'];
writeFileSync(join(dist, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
if (existsSync(join(here, 'README.md'))) copyFileSync(join(here, 'README.md'), join(dist, 'README.md'));
console.log(`built ${dist}`);
