// The built-in page as a demanding user drives it: pasting scripts against the command limit,
// closing and reopening tabs against the per-address session limit, the states of a
// session (ended, timed out, a black-holed link, a server restart), the page's weight.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './server.mjs';
import { startProxy } from './proxy.mjs';
import {
  launchBrowser,
  openTerminal,
  pageState,
  paste,
  run,
  screenText,
  waitForLine,
  waitForPrompt,
  waitForState,
} from './browser.mjs';

// The page's dead-link bound (web/src/connection.js: three unanswered pings, 3 s apart,
// so 9 to 12 s after the cut) and slack for timers and the test's own polling.
const DEAD_BOUND_MS = 12_000 + 2_000;

let browser;
const servers = [];

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await Promise.all(servers.map((server) => server.stop()));
});

async function server(extraArgs = []) {
  const started = await startServer({ extraArgs });
  servers.push(started);
  return started;
}

/** Commands that print computed markers, so that the typed text never matches. */
function script(prefix, lines) {
  return Array.from({ length: lines }, (_, i) => `echo ${prefix}-$((${i + 1}*1000))`).join('\n') + '\n';
}

describe('pasting', () => {
  it('runs a pasted script of 3 and of 40 lines whole', async () => {
    const page = await openTerminal(browser, await server());
    await paste(page, script('three', 3));
    await waitForLine(page, 'three-3000', { exact: true });
    await paste(page, script('forty', 40));
    await waitForLine(page, 'forty-40000', { exact: true });
    const text = await screenText(page);
    for (let i = 1; i <= 40; i += 1) assert.match(text, new RegExp(`^forty-${i * 1000}$`, 'm'), `line ${i} ran`);
    assert.doesNotMatch(text, /rate limit/);
    assert.equal(await page.isHidden('#banner'), true, 'no banner');
    await page.close();
  });

  it('drops the lines over the limit whole and says so in the banner', async () => {
    const page = await openTerminal(browser, await server(['--command-burst', '5', '--commands-per-minute', '60']));
    await paste(page, script('cut', 8));
    await waitForLine(page, 'cut-5000', { exact: true });
    await page.waitForSelector('#banner:not([hidden])');
    assert.match(await page.textContent('#banner'), /command rate limit reached \(60 per minute\): 3 lines not run/);
    // A second later one press is allowed again: the next command runs alone.
    await page.waitForTimeout(1500);
    await run(page, 'echo next-$((6*7))');
    await waitForLine(page, 'next-42', { exact: true });
    const text = await screenText(page);
    assert.doesNotMatch(text, /cut-6000|cut-7000|cut-8000/, 'refused lines never ran');
    assert.doesNotMatch(text, /\*1000\)\)echo/, 'no refused line joined with the next');
    await page.close();
  });
});

describe('tabs', () => {
  it('gives the places of closed tabs back after the short grace; a reload resumes', async () => {
    const limited = await server(['--closed-page-grace', '3', '--max-sessions-per-ip', '5']);
    const pages = [];
    for (let i = 0; i < 5; i += 1) pages.push(await openTerminal(browser, limited));

    // A reload resumes its session (within the short grace).
    const before = await pages[0].evaluate(() => window.termcell.sessionId);
    await pages[0].reload();
    await waitForState(pages[0], 'connected');
    assert.equal(await pages[0].evaluate(() => window.termcell.sessionId), before, 'the same session');

    for (const page of pages) await page.close();
    // At once the places are still held: the refusal names its cause and wait.
    const early = await browser.context.newPage();
    await early.goto(limited.url);
    await waitForState(early, 'ended');
    assert.match(
      await early.textContent('#status-text'),
      /5 sessions are open from your address; closed tabs count for 3s/,
    );
    await early.close();

    // After the short grace (not the 5 minutes of a lost connection) a new tab gets a session.
    await new Promise((resolve) => setTimeout(resolve, 3500));
    const sixth = await openTerminal(browser, limited);
    await run(sixth, 'echo sixth-$((2*3))');
    await waitForLine(sixth, 'sixth-6', { exact: true });
    await sixth.close();
  });
});

describe('page weight', () => {
  it('sends app.js compressed and serves a second load from the cache', async () => {
    const served = await server();
    const size = (page) =>
      page.evaluate(() => {
        const entry = performance.getEntriesByType('resource').find((e) => e.name.includes('/app.js'));
        return { transfer: entry.transferSize, encoded: entry.encodedBodySize, decoded: entry.decodedBodySize };
      });
    const first = await openTerminal(browser, served);
    const cold = await size(first);
    assert.ok(cold.encoded < 100_000 && cold.decoded > 250_000, `compressed: ${JSON.stringify(cold)}`);
    await first.close();
    const second = await openTerminal(browser, served);
    const warm = await size(second);
    assert.equal(warm.transfer, 0, `from the cache: ${JSON.stringify(warm)}`);
    await second.close();
  });
});

describe('states', () => {
  it('shows the end in an overlay and starts a new session with the keyboard only', async () => {
    const page = await openTerminal(browser, await server());
    const { sessionId } = await pageState(page);
    await run(page, 'exit');
    await waitForState(page, 'ended');
    assert.ok(await page.isVisible('#overlay'));
    assert.equal(await page.textContent('#overlay-title'), 'Session ended');
    assert.match(await page.textContent('#overlay-reason'), /Session ended by user/);
    assert.match(await page.title(), /^\[ended\]/);
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'overlay-action', 'the button has the keyboard');
    assert.equal(await page.evaluate(() => window.termcell.term.options.cursorBlink), false);
    await page.keyboard.press('Enter');
    await waitForState(page, 'connected');
    assert.notEqual((await pageState(page)).sessionId, sessionId);
    assert.ok(await page.isHidden('#overlay'));
    assert.doesNotMatch(await page.title(), /ended/);
    await waitForPrompt(page);
    await run(page, 'echo again-$((4*4))');
    await waitForLine(page, 'again-16', { exact: true });
    await page.close();
  });

  it('shows a timeout in the overlay; Enter in the terminal starts a new session', async () => {
    const page = await openTerminal(browser, await server(['--idle-timeout', '3', '--warn-before', '1']));
    await waitForState(page, 'ended', 15_000);
    assert.match(await page.textContent('#overlay-reason'), /inactivity/);
    assert.match(await page.title(), /^\[ended\]/);
    // Back into the terminal, as a user who clicked it: Enter there acts too.
    await page.locator('#terminal').click({ position: { x: 5, y: 5 } });
    await page.keyboard.press('Enter');
    await waitForState(page, 'connected');
    await page.close();
  });

  it('detects a black-holed link, keeps typed input and sends it once the session is back', async () => {
    const served = await server();
    const proxy = await startProxy(served.url);
    try {
      const page = await openTerminal(browser, proxy);
      const { sessionId } = await pageState(page);
      proxy.blackhole();
      const cut = Date.now();
      await waitForState(page, 'reconnecting', 20_000);
      const detected = Date.now() - cut;
      assert.ok(detected <= DEAD_BOUND_MS, `detected after ${detected} ms`);
      assert.match(await page.textContent('#overlay-reason'), /connection lost/);
      assert.match(await page.title(), /^\[reconnecting\]/);
      await page.locator('#terminal').click({ position: { x: 5, y: 5 } });
      await page.keyboard.type('echo kept-$((8*8))', { delay: 5 });
      assert.equal(await page.evaluate(() => window.termcell.queuedInput), 'echo kept-$((8*8))');
      await page.waitForFunction(() =>
        document.querySelector('#overlay-reason').textContent.includes('18 typed characters will be sent'),
      );
      proxy.up();
      await waitForState(page, 'connected', 20_000);
      assert.equal((await pageState(page)).sessionId, sessionId, 'the same session');
      await page.keyboard.press('Enter');
      await waitForLine(page, 'kept-64', { exact: true });
      await page.close();
    } finally {
      await proxy.close();
    }
  });

  it('reconnects within a second of the server being back', async () => {
    const served = await server();
    const proxy = await startProxy(served.url);
    try {
      const page = await openTerminal(browser, proxy);
      proxy.down();
      await waitForState(page, 'reconnecting');
      // Long enough for the backoff to have grown past several seconds.
      await page.waitForTimeout(6000);
      proxy.up();
      const back = Date.now();
      await waitForState(page, 'connected', 15_000);
      const took = Date.now() - back;
      assert.ok(took <= 1000, `reconnected ${took} ms after the server was back`);
      await page.close();
    } finally {
      await proxy.close();
    }
  });
});

describe('copy and paste', () => {
  async function clipboardPage() {
    const served = await server();
    await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: served.url });
    return openTerminal(browser, served);
  }
  const readClipboard = (page) => page.evaluate(() => navigator.clipboard.readText());
  const writeClipboard = (page, text) => page.evaluate((t) => navigator.clipboard.writeText(t), text);

  /** Selects the first buffer line that is exactly `text` (as a mouse selection would). */
  async function selectLine(page, text) {
    await page.evaluate((wanted) => {
      const { term } = window.termcell;
      const buffer = term.buffer.active;
      for (let i = 0; i < buffer.length; i += 1) {
        if (buffer.getLine(i)?.translateToString(true).trim() === wanted) {
          term.select(0, i, wanted.length);
          return;
        }
      }
      throw new Error(`no line ${wanted}`);
    }, text);
  }

  it('copies the selection with Ctrl+C and Ctrl+Shift+C; Ctrl+C without one interrupts', async () => {
    const page = await clipboardPage();
    await run(page, 'echo copy-$((6*7))');
    await waitForLine(page, 'copy-42', { exact: true });
    await selectLine(page, 'copy-42');
    await page.keyboard.press('Control+c');
    await page.waitForFunction(() => navigator.clipboard.readText().then((t) => t === 'copy-42'));
    assert.equal(await page.evaluate(() => window.termcell.term.hasSelection()), true, 'the selection stays');
    assert.match(await page.textContent('#banner'), /Copied 7 characters/);

    await run(page, 'echo other-$((7*7))');
    await waitForLine(page, 'other-49', { exact: true });
    await selectLine(page, 'other-49');
    await page.keyboard.press('Control+Shift+C');
    await page.waitForFunction(() => navigator.clipboard.readText().then((t) => t === 'other-49'));

    // Without a selection Ctrl+C is ^C: it stops a running command.
    await page.evaluate(() => window.termcell.term.clearSelection());
    await run(page, 'sleep 60');
    await page.waitForTimeout(300);
    await page.keyboard.press('Control+c');
    // Within 15 s: only if the sleep was interrupted.
    await run(page, 'echo after-$((1+2))');
    await waitForLine(page, 'after-3', { exact: true });
    assert.equal(await readClipboard(page), 'other-49', 'an interrupt copies nothing');
    await page.close();
  });

  it('pastes with Ctrl+V and Ctrl+Shift+V, never sending ^V', async () => {
    const page = await clipboardPage();
    await writeClipboard(page, 'echo pasted-$((5*5))');
    await page.locator('#terminal').click();
    await page.keyboard.press('Control+v');
    await page.keyboard.press('Enter');
    await waitForLine(page, 'pasted-25', { exact: true });
    await writeClipboard(page, 'echo again-$((5*6))');
    await page.keyboard.press('Control+Shift+V');
    await page.keyboard.press('Enter');
    await waitForLine(page, 'again-30', { exact: true });
    assert.doesNotMatch(await screenText(page), /\^V/);
    await page.close();
  });

  it('answers queries in live output only, never in replayed output', async () => {
    const page = await openTerminal(browser, await server());
    const answers = await page.evaluate(async () => {
      const { term } = window.termcell;
      const seen = [];
      const listener = term.onData((d) => seen.push(d));
      const settle = () => new Promise((resolve) => setTimeout(resolve, 300));
      window.termcell.replayForTest('\x1b[6n\x1b[c\x1b]11;?\x07');
      await settle();
      const replayed = seen.splice(0);
      term.write('\x1b[6n');
      await settle();
      listener.dispose();
      return { replayed, live: seen };
    });
    assert.deepEqual(answers.replayed, [], 'no answer to a replayed query');
    assert.equal(answers.live.length, 1, 'a live query is answered');
    assert.match(answers.live[0], /^\x1b\[\d+;\d+R$/);
    await page.close();
  });

  it('a reload with vi open sends vi nothing it did not get from the user', async () => {
    const page = await openTerminal(browser, await server());
    await run(page, 'vi /tmp/notes');
    await waitForLine(page, '/tmp/notes');
    for (let i = 0; i < 2; i += 1) {
      await page.reload();
      await waitForState(page, 'connected');
      await waitForLine(page, '/tmp/notes');
      await page.waitForTimeout(1200);
    }
    const screen = await screenText(page);
    assert.doesNotMatch(screen, /not implemented|\[\d+;\d+R|\^\[/, 'no answer to a replayed query reached vi');
    await page.locator('#terminal').click();
    await page.keyboard.type(':q!', { delay: 5 });
    await page.keyboard.press('Enter');
    await run(page, 'echo vi-done-$((2+2))');
    await waitForLine(page, 'vi-done-4', { exact: true });
    await page.close();
  });
});
