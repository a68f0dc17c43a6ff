// The built-in page behind the shipped config/Caddyfile (the real Caddy from Debian, TLS
// from its internal CA): it loads, connects and runs commands under Caddy's security
// headers and Content-Security-Policy, with no policy violation.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from './server.mjs';
import { launchBrowser, run, waitForLine, waitForPrompt, waitForState } from './browser.mjs';

const caddyfile = fileURLToPath(new URL('../../config/Caddyfile', import.meta.url));

/** A free port below Linux's ephemeral range, which other tests' client sockets use. */
async function freePort(after = 0) {
  for (let port = Math.max(after + 1, 21000 + (process.pid % 5000)); ; port += 1) {
    const free = await new Promise((resolve) => {
      const probe = net.createServer().once('error', () => resolve(false));
      probe.listen(port, '0.0.0.0', () => probe.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

/** Waits until something accepts TCP connections on 127.0.0.1:`port`. */
async function waitForPort(port, child, log, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.end(() => resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`caddy did not start (exit ${child.exitCode}):\n${await log()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

let server;
let browser;
let caddy;
let dir;
let siteUrl;

before(async () => {
  const port = await freePort();
  siteUrl = `https://localhost:${port}`;
  server = await startServer({
    extraArgs: ['--trusted-proxies', '127.0.0.1', '--public-url', siteUrl],
  });
  dir = await mkdtemp(path.join(tmpdir(), 'termcell-browser-caddy-'));
  const env = {
    PATH: process.env.PATH,
    HOME: dir,
    XDG_DATA_HOME: path.join(dir, 'data'),
    XDG_CONFIG_HOME: path.join(dir, 'config'),
    SITE_ADDRESS: siteUrl,
    TERMCELL_UPSTREAM: new URL(server.url).host,
    TLS_ISSUER: 'internal',
    CADDY_ADMIN: 'off',
    CADDY_HTTP_PORT: String(await freePort(port)),
    CADDY_ACCESS_LOG: path.join(dir, 'access.log'),
  };
  const logFile = path.join(dir, 'caddy.log');
  caddy = spawn('sh', ['-c', `exec caddy run --adapter caddyfile --config "$0" 2>"$1"`, caddyfile, logFile], {
    env,
    stdio: 'ignore',
  });
  await waitForPort(port, caddy, () => readFile(logFile, 'utf8').catch(() => ''));
  browser = await launchBrowser({ ignoreHTTPSErrors: true });
});

after(async () => {
  await browser?.close();
  if (caddy && caddy.exitCode === null) {
    const exited = new Promise((resolve) => caddy.once('exit', resolve));
    caddy.kill('SIGTERM');
    await exited;
  }
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the page behind Caddy', () => {
  it('loads under the Content-Security-Policy, connects and runs a command', async () => {
    const page = await browser.context.newPage();
    const problems = [];
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('response', (response) => {
      if (response.status() >= 400) problems.push(`HTTP ${response.status()} for ${response.url()}`);
    });
    // Every violation of the policy is reported to the page as an event.
    await page.addInitScript(() => {
      window.cspViolations = [];
      document.addEventListener('securitypolicyviolation', (e) => {
        window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
      });
    });
    const response = await page.goto(siteUrl);
    const headers = response.headers();
    assert.match(headers['content-security-policy'] ?? '', /connect-src 'self'/);
    assert.match(headers['strict-transport-security'] ?? '', /max-age=31536000/);
    assert.equal(headers['x-frame-options'], 'DENY');
    await waitForState(page, 'connected');
    await waitForPrompt(page);
    await run(page, 'echo behind-caddy-$((6*7))');
    await waitForLine(page, 'behind-caddy-42');
    assert.deepEqual(await page.evaluate(() => window.cspViolations), []);
    assert.deepEqual(problems, []);
    await run(page, 'exit');
    await waitForState(page, 'ended');
    await page.close();
  });
});
