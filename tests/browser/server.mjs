// Starts the real termcell binary on free loopback ports with a unique deployment name, and
// stops it again. The port is read from the "listening on" line the server prints.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
export const serverBinary = process.env.TERMCELL_BIN
  ? path.resolve(process.env.TERMCELL_BIN)
  : path.resolve(here, '../../target/debug/termcell');

const LISTEN_LINE = /listening on http:\/\/([0-9.]+):(\d+)/;
const ADMIN_LINE = /admin API listening on http:\/\/([0-9.]+):(\d+)/;
// The first start on a machine may build the sandbox image.
const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 15_000;

/** Starts the server; resolves to `{ url, stop }` once it listens. */
export async function startServer({ requireCredentials = false, extraArgs = [], env = {} } = {}) {
  const deployment = `browser-test-${randomBytes(4).toString('hex')}`;
  // The server's files (audit log) go to a scratch dir, never into the source tree.
  const workDir = await mkdtemp(path.join(tmpdir(), 'termcell-browser-'));
  const args = [
    '--listen', '127.0.0.1:0',
    '--admin-listen', '127.0.0.1:0',
    '--deployment', deployment,
    '--audit-log', path.join(workDir, 'audit.log'),
  ];
  if (requireCredentials) args.push('--require-credentials');
  args.push(...extraArgs);
  const child = spawn(serverBinary, args, {
    cwd: workDir,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', ...env },
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let log = '';

  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(`no listen line within ${START_TIMEOUT_MS / 1000}s`), START_TIMEOUT_MS);
    function fail(why) {
      clearTimeout(timer);
      child.kill('SIGKILL');
      rm(workDir, { recursive: true, force: true }).catch(() => {});
      reject(new Error(`${serverBinary} ${args.join(' ')}: ${why}\n--- server stderr ---\n${log.slice(-4000)}`));
    }
    child.once('error', (err) => fail(err.message));
    exited.then(({ code, signal }) => fail(`exited early (code ${code}, signal ${signal})`));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      log += chunk;
      if (process.env.TERMCELL_TEST_VERBOSE) process.stderr.write(chunk);
      const match = LISTEN_LINE.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve(`http://${match[1]}:${match[2]}`);
      }
    });
  });

  async function stop() {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      let timer;
      const timeout = new Promise((resolve) => {
        timer = setTimeout(resolve, STOP_TIMEOUT_MS, 'timeout');
      });
      if ((await Promise.race([exited, timeout])) === 'timeout') {
        child.kill('SIGKILL');
        await exited;
      }
      clearTimeout(timer);
    }
    // A grandchild that inherited stderr would otherwise keep this process alive.
    child.stderr.destroy();
    await rm(workDir, { recursive: true, force: true });
  }

  /** The admin listener's URL, once the server printed it. */
  function adminUrl() {
    const match = ADMIN_LINE.exec(log);
    return match ? `http://${match[1]}:${match[2]}` : null;
  }

  return { url, deployment, stop, log: () => log, adminUrl };
}
