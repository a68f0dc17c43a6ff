// Builds the page into dist/: one minified script and stylesheet, plus the static files.
// Everything the page needs at run time is in dist/; nothing is fetched from elsewhere.
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';

const dist = new URL('./dist/', import.meta.url);
const src = new URL('./src/', import.meta.url);

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  entryPoints: { app: new URL('main.js', src).pathname },
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome100', 'firefox100', 'safari15'],
  outdir: dist.pathname,
  legalComments: 'eof',
  logLevel: 'warning',
});
for (const file of ['index.html', 'favicon.svg']) {
  await copyFile(new URL(file, src), new URL(file, dist));
}
