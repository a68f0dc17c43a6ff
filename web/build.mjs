// Builds the page into dist/ (or the directory given as the first argument, which must be
// missing or empty): one minified script and stylesheet, plus the static files. Everything
// the page needs at run time is in the output; nothing is fetched from elsewhere. The
// output depends only on src/ and the locked packages, so web/dist is committed and
// scripts/check-web-bundle.sh can rebuild it elsewhere and compare.
import { build } from 'esbuild';
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const src = new URL('./src/', import.meta.url);
const defaultOut = new URL('./dist/', import.meta.url);
// npm runs scripts in web/; a relative argument means relative to where npm was started.
const given = process.argv[2] && resolve(process.env.INIT_CWD ?? '.', process.argv[2]);
const out = given ? pathToFileURL(given + '/') : defaultOut;

if (out.href === defaultOut.href) {
  await rm(out, { recursive: true, force: true });
} else {
  const existing = await readdir(out).catch((err) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  if (existing.length > 0) {
    console.error(`build.mjs: ${given} is not empty; give a new or empty directory`);
    process.exit(1);
  }
}
await mkdir(out, { recursive: true });
await build({
  entryPoints: { app: fileURLToPath(new URL('main.js', src)) },
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome100', 'firefox100', 'safari15'],
  outdir: fileURLToPath(out),
  legalComments: 'eof',
  logLevel: 'warning',
});
for (const file of ['index.html', 'favicon.svg']) {
  await copyFile(new URL(file, src), new URL(file, out));
}
