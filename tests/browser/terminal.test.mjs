// The built-in terminal page in a real browser against the real server: commands, resize,
// resume after a drop, the end of a session, credentials, and the README screenshot.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { startServer } from './server.mjs';
import {
  launchBrowser,
  pageState,
  run,
  screenText,
  waitForLine,
  waitForPrompt,
  waitForState,
} from './browser.mjs';

const screenshotPath = fileURLToPath(new URL('../../docs/screenshot.png', import.meta.url));

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Opens the page in a new tab and waits for a connected session. */
async function openTerminal(viewport = { width: 1000, height: 620 }) {
  const page = await browser.context.newPage();
  await page.setViewportSize(viewport);
  const problems = [];
  const origin = new URL(server.url).origin;
  page.on('request', (request) => {
    if (!request.url().startsWith(origin)) problems.push(`request outside the server: ${request.url()}`);
  });
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} for ${response.url()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws));
  await page.goto(server.url);
  await waitForState(page, 'connected');
  await page.waitForFunction(() => typeof window.termcell.sessionId === 'string');
  await waitForPrompt(page);
  return { page, problems, sockets };
}

/**
 * Ends the session the way a user does (`exit`), so sessions do not linger in their resume
 * grace period and count against the per-address session limit, then closes the tab.
 */
async function endSession(page) {
  await run(page, 'exit');
  await waitForState(page, 'ended');
  await page.close();
}

describe('terminal page', () => {
  it('runs a command typed by the user and loads only its own files', async () => {
    const { page, problems } = await openTerminal();
    assert.equal(await page.title(), 'termcell');
    const icon = await page.request.get(`${server.url}/favicon.svg`);
    assert.equal(icon.status(), 200);
    await run(page, 'echo browser-$((6*7))');
    await waitForLine(page, 'browser-42');
    assert.match(await page.textContent('#status-text'), /^connected/);
    assert.deepEqual(problems, []);
    await endSession(page);
  });

  it('shows a window title as text and never as markup', async () => {
    const { page } = await openTerminal();
    await run(page, "printf '\\033]0;<b id=injected>hi</b>\\007'; echo title-$((1+1))");
    await waitForLine(page, 'title-2');
    await page.waitForFunction(() => document.getElementById('status-title').textContent !== '');
    assert.equal(await page.textContent('#status-title'), '<b id=injected>hi</b>');
    assert.equal(await page.locator('#injected').count(), 0);
    await endSession(page);
  });

  it('fits the terminal to the window and gives the TTY that size', async () => {
    const { page } = await openTerminal({ width: 1200, height: 700 });
    const before = await page.evaluate(() => [window.termcell.term.cols, window.termcell.term.rows]);
    await page.setViewportSize({ width: 760, height: 430 });
    await page.waitForFunction(
      ([cols, rows]) => window.termcell.term.cols < cols && window.termcell.term.rows < rows,
      before,
    );
    const [cols, rows] = await page.evaluate(() => [window.termcell.term.cols, window.termcell.term.rows]);
    // The fit leaves less than one cell of slack in either direction, besides the gutter
    // xterm.js keeps for its scrollbar (15 px) and the pixel the fit addon rounds away.
    const slack = await page.evaluate(() => {
      const box = document.getElementById('terminal').getBoundingClientRect();
      const screen = document.querySelector('#terminal .xterm-screen').getBoundingClientRect();
      const { cols: c, rows: r } = window.termcell.term;
      return {
        width: box.width - screen.width,
        height: box.height - screen.height,
        cell: screen.width / c,
        line: screen.height / r,
      };
    });
    assert.ok(slack.width >= 0 && slack.width < slack.cell + 16, `width slack ${JSON.stringify(slack)}`);
    assert.ok(slack.height >= 0 && slack.height < slack.line + 1, `height slack ${JSON.stringify(slack)}`);
    // The resize reaches the TTY asynchronously: ask again until the shell sees it.
    const wanted = `size-${rows}x${cols}`;
    let seen = '';
    for (let attempt = 0; attempt < 5 && seen !== wanted; attempt += 1) {
      await run(page, `echo size-$(stty size | tr ' ' x)`);
      await waitForLine(page, wanted, { timeout: 3000 }).then(
        () => { seen = wanted; },
        () => {},
      );
    }
    assert.equal(seen, wanted, `stty size never showed ${rows}x${cols}:\n${await screenText(page)}`);
    await endSession(page);
  });

  it('resumes the same session after the socket drops and redraws its screen', async () => {
    const { page, sockets } = await openTerminal();
    await run(page, 'echo before-drop-$((3*5))');
    await waitForLine(page, 'before-drop-15');
    const { sessionId } = await pageState(page);

    await page.evaluate(() => window.termcell.dropForTest());
    // Wipe the screen while the page waits to reconnect, so whatever shows up afterwards came
    // from the server's snapshot.
    await page.waitForFunction(
      () => {
        if (window.termcell.state !== 'reconnecting') return false;
        window.termcell.term.reset();
        return true;
      },
      null,
      { polling: 10 },
    );
    assert.doesNotMatch(await screenText(page), /before-drop-15/);
    await waitForState(page, 'connected');
    assert.equal((await pageState(page)).sessionId, sessionId);
    assert.equal(sockets.length, 2);
    await waitForLine(page, 'before-drop-15');
    await run(page, 'echo after-drop-$((2*4))');
    await waitForLine(page, 'after-drop-8');
    await endSession(page);
  });

  it('starts a new session once when the stored one is gone', async () => {
    const page = await browser.context.newPage();
    const stale = randomUUID();
    await page.addInitScript((id) => window.sessionStorage.setItem('termcell.sessionId', id), stale);
    await page.goto(server.url);
    await waitForState(page, 'connected');
    await page.waitForFunction((old) => window.termcell.sessionId && window.termcell.sessionId !== old, stale);
    await waitForPrompt(page);
    await run(page, 'echo fresh-$((5+5))');
    await waitForLine(page, 'fresh-10');
    await endSession(page);
  });

  it('shows the end of the session and does not reconnect', async () => {
    const { page, sockets } = await openTerminal();
    const { sessionId } = await pageState(page);
    await run(page, 'exit');
    await waitForState(page, 'ended');
    assert.match(await page.textContent('#status-text'), /ended/);
    assert.ok(await page.isVisible('#new-session'));
    const socketsAtEnd = sockets.length;
    await page.waitForTimeout(3000);
    assert.deepEqual(await pageState(page), { state: 'ended', sessionId });
    assert.equal(sockets.length, socketsAtEnd);
    assert.equal(await page.evaluate(() => window.sessionStorage.getItem('termcell.sessionId')), null);

    await page.click('#new-session');
    await waitForState(page, 'connected');
    await page.waitForFunction((old) => window.termcell.sessionId !== old, sessionId);
    await waitForPrompt(page);
    await run(page, 'echo again-$((9*9))');
    await waitForLine(page, 'again-81');
    await endSession(page);
  });

  it("shows the session's own resource use in the status bar, and clears it at the end", async () => {
    const { page } = await openTerminal();
    // The server samples every 5 s by default.
    await page.waitForSelector('#status-usage:not([hidden])', { timeout: 15_000 });
    assert.match(await page.textContent('#status-usage'), /^mem \d+% · cpu \d+%$/);
    assert.match(await page.getAttribute('#status-usage', 'title'), /^Memory \d+ MiB of \d+ MiB, \d+ of \d+ processes, CPU [\d.]+% of one CPU$/);
    await run(page, 'exit');
    await waitForState(page, 'ended');
    assert.equal(await page.isHidden('#status-usage'), true, 'no figures of an ended session');
    await page.close();
  });

  it('saves a screenshot of a working session', async () => {
    const { page } = await openTerminal({ width: 960, height: 560 });
    await run(page, 'echo "Hello from termcell: a fresh, locked-down container per browser tab"');
    await waitForLine(page, 'Hello from termcell: a fresh, locked-down container per browser tab', { exact: true });
    await run(page, "id; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; ls --color=always /");
    await waitForLine(page, 'NoNewPrivs:');
    await page.waitForTimeout(500);
    await page.screenshot({ path: screenshotPath });
    await endSession(page);
  });
});

describe('terminal page with --require-credentials', () => {
  let strictServer;
  before(async () => {
    strictServer = await startServer({ requireCredentials: true });
  });
  after(async () => {
    await strictServer?.stop();
  });

  it('asks for credentials and connects with them', async () => {
    const page = await browser.context.newPage();
    await page.goto(strictServer.url);
    await waitForState(page, 'credentials');
    assert.ok(await page.isVisible('#credentials'));
    assert.match(await page.textContent('#status-text'), /Missing credentials/);
    await page.fill('#api-key', 'appid.keyid:not-a-real-secret');
    await page.click('#credentials button[type=submit]');
    await waitForState(page, 'connected');
    assert.ok(!(await page.isVisible('#credentials')));
    await waitForPrompt(page);
    await run(page, 'echo creds-$((4*4))');
    await waitForLine(page, 'creds-16');
    await endSession(page);
  });

  it('takes credentials from the URL fragment, never the query', async () => {
    const page = await browser.context.newPage();
    const requested = [];
    page.on('request', (request) => requested.push(request.url()));
    await page.goto(`${strictServer.url}/#apiKey=${encodeURIComponent('appid.keyid:fragment-secret')}`);
    await waitForState(page, 'connected');
    assert.ok(requested.every((url) => !url.includes('fragment-secret')), requested.join('\n'));
    await waitForPrompt(page);
    await endSession(page);
  });
});

