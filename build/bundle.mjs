#!/usr/bin/env node
// The start-up bundle: after tsc has written dist/, replaces dist/src/index.js (what `-r hatch-agent`
// loads) by one file holding every module the start-up runs, so a start-up compiles one file and
// resolves, stats and reads one path instead of about twenty (issues 21 and 22).
// - What goes in: src/index.ts and what it reaches by `import` (static imports are what runs at
//   every start). A `require()` call of one of our files is a lazy load on purpose (a patch at its
//   module's first load, the hatches at their first request, the flight recorder when it is on):
//   it stays out, and its path is rewritten to point at that file in dist/, which keeps every file
//   tsc wrote (the lazy parts, and the tests that load a file of dist/ on its own).
// - One instance of each module: a lazy file's `require('../log')` must reach the bundle's `log`,
//   not a second copy from dist/ (a second log level, a second registry). So, before index's body
//   runs (it starts the agent), the bundle puts each of its modules into Node's module cache under
//   the path of that module's file in dist/: a later require of that path finds the bundle's
//   exports there (live bindings: esbuild's namespace objects read the current values).
// - Packages (hot-shots, require-in-the-middle, import-in-the-middle) stay outside, loaded from
//   node_modules as before: their versions are the user's lockfile's, and src/require-hook.ts keeps
//   recognising require-in-the-middle by its file.
// - A lazy require of a module that is also in the bundle is refused here: run before the cache is
//   filled, it would load the second copy this avoids.
// Limitations: stack frames of start-up code name dist/src/index.js (with its own lines) instead
// of the module's file; no source map is written (tsc writes none either).
import * as esbuild from 'esbuild';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const outfile = path.join(dist, 'src/index.js');
const ENTRY = 'hatch-start-up-entry';
const FILL = 'hatch-start-up-fill';

/** dist/'s file for a source file (src/x.ts -> dist/src/x.js), relative to the bundle's folder. */
function distPath(source) {
  const rel = path.relative(root, source).replace(/\.m?ts$/, '.js');
  const target = path.relative(path.dirname(outfile), path.join(dist, rel)).split(path.sep).join('/');
  return target.startsWith('.') ? target : `./${target}`;
}

/** The modules src/index.ts reaches by static import, in the order Node would run them. */
async function eagerModules() {
  const r = await esbuild.build({ ...common(), write: false, metafile: true });
  return Object.keys(r.metafile.inputs)
    .map((f) => path.join(root, f))
    .filter((f) => !f.includes(`${path.sep}node_modules${path.sep}`));
}

function common(plugins = []) {
  return {
    entryPoints: [path.join(root, 'src/index.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    packages: 'external',
    tsconfig: path.join(root, 'tsconfig.json'),
    logLevel: 'warning',
    plugins: [lazyRequires, ...plugins],
  };
}

/** Our files reached by `require()` stay out of the bundle, pointed at their dist/ file. */
const lazyRequires = {
  name: 'lazy-requires',
  setup(build) {
    build.onResolve({ filter: /^\.\.?\// }, async (args) => {
      if (args.kind !== 'require-call' || args.namespace !== 'file') return undefined;
      const r = await build.resolve(args.path, { kind: 'import-statement', resolveDir: args.resolveDir });
      if (r.errors.length > 0) return { errors: r.errors };
      return { path: distPath(r.path), external: true, pluginData: r.path };
    });
  },
};

const eager = await eagerModules();
const index = path.join(root, 'src/index.ts');
const others = eager.filter((f) => f !== index);

const entry = {
  name: 'entry',
  setup(build) {
    build.onResolve({ filter: new RegExp(`^(${ENTRY}|${FILL})$`) }, (args) => ({
      path: args.path,
      namespace: 'hatch',
    }));
    build.onLoad({ filter: /.*/, namespace: 'hatch' }, (args) => {
      if (args.path === ENTRY)
        // The cache first, then index (whose body starts the agent, and may load lazy files).
        return {
          contents: `import '${FILL}';\nexport * from ${JSON.stringify(index)};\n`,
          resolveDir: root,
          loader: 'js',
        };
      const imports = others.map((f, i) => `import * as m${i} from ${JSON.stringify(f)};`).join('\n');
      // [in dist/src (else in dist/), path below that folder with '/' separators, exports]
      const list = others
        .map((f, i) => {
          const rel = path.relative(path.join(dist, 'src'), path.join(dist, path.relative(root, f)));
          const inSrc = !rel.startsWith('..');
          const below = (inSrc ? rel : path.relative(dist, path.join(dist, path.relative(root, f))))
            .split(path.sep)
            .join('/')
            .replace(/\.m?ts$/, '.js');
          return `[${inSrc}, ${JSON.stringify(below)}, m${i}]`;
        })
        .join(',\n  ');
      return {
        contents: `${imports}
import { dirname, sep } from 'node:path';
// Each module of this bundle, in Node's module cache under its file in dist/ (see build/bundle.mjs).
// One list of node_modules paths for all: these modules never resolve anything through Node.
const Module = require('node:module');
const paths = Module._nodeModulePaths(__dirname);
const inSrc = __dirname + sep;
const inDist = dirname(__dirname) + sep;
for (const [src, below, exports] of [
  ${list}
]) {
  const filename = (src ? inSrc : inDist) + (sep === '/' ? below : below.split('/').join(sep));
  if (Module._cache[filename] !== undefined) continue;
  Object.defineProperty(exports, '__esModule', { value: true });
  const m = new Module(filename);
  m.filename = filename;
  m.paths = paths;
  m.exports = exports;
  m.loaded = true;
  Module._cache[filename] = m;
}
`,
        resolveDir: root,
        loader: 'js',
      };
    });
  },
};

const eagerSet = new Set(eager);
const refuse = {
  name: 'refuse-second-copies',
  setup(build) {
    build.onEnd((result) => {
      for (const [file, info] of Object.entries(result.metafile?.inputs ?? {}))
        for (const imp of info.imports)
          if (imp.external && imp.kind === 'require-call' && imp.path.startsWith('.')) {
            const target = path.resolve(path.dirname(outfile), imp.path).replace(/\.js$/, '');
            for (const e of eagerSet)
              if (path.join(dist, path.relative(root, e)).replace(/\.m?ts$/, '') === target)
                throw new Error(`${file} requires ${imp.original ?? imp.path}, which the bundle holds: use an import`);
          }
    });
  },
};

await esbuild.build({
  ...common([entry, refuse]),
  entryPoints: [ENTRY],
  outfile,
  metafile: true,
  banner: { js: '// The start-up bundle of hatch-agent (build/bundle.mjs): src/index.ts and its imports.' },
});
const size = fs.statSync(outfile).size;
console.log(
  `start-up bundle: ${path.relative(root, outfile)}, ${eager.length} modules, ${(size / 1024).toFixed(1)} KiB`,
);
