// Builds the page into dist/ (or the directory given as the first argument, which must be
// missing or empty): one minified script and stylesheet, plus the static files. Everything
// the page needs at run time is in the output; nothing is fetched from elsewhere. The
// output depends only on src/ and the locked packages, so web/dist is committed and
// scripts/check-web-bundle.sh can rebuild it elsewhere and compare.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
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
await copyFile(new URL('favicon.svg', src), new URL('favicon.svg', out));
// index.html names the script and the stylesheet with their content's hash (`?v=`), so the
// server may let browsers keep them for a year (src/web_assets.rs: the same 16 hex digits).
let html = await readFile(new URL('index.html', src), 'utf8');
for (const file of ['app.js', 'app.css']) {
  const hash = createHash('sha256').update(await readFile(new URL(file, out))).digest('hex').slice(0, 16);
  const linked = html.replace(`"/${file}"`, `"/${file}?v=${hash}"`);
  if (linked === html) throw new Error(`build.mjs: index.html does not link /${file}`);
  html = linked;
}
await writeFile(new URL('index.html', out), html);
