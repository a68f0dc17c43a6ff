// The built-in page as a demanding user drives it: closing and reopening tabs against the
// per-address session limit, and the states of a session (ended, timed out, a black-holed
// link, a server restart).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startProxy } from './proxy.mjs';
import {
  openTerminal,
  pageState,
  pageTestEnv,
  run,
  waitForLine,
  waitForPrompt,
  waitForState,
} from './browser.mjs';

// The page's dead-link bound (web/src/connection.js: three unanswered pings, 3 s apart,
// so 9 to 12 s after the cut) and slack for timers and the test's own polling.
const DEAD_BOUND_MS = 12_000 + 2_000;

const env = pageTestEnv();

describe('tabs', () => {
  it('gives the places of closed tabs back after the short grace; a reload resumes', async () => {
    const limited = await env.server(['--closed-page-grace', '3', '--max-sessions-per-ip', '5']);
    const pages = [];
    for (let i = 0; i < 5; i += 1) pages.push(await openTerminal(env.browser, limited));

    // A reload resumes its session (within the short grace).
    const before = await pages[0].evaluate(() => window.termcell.sessionId);
    await pages[0].reload();
    await waitForState(pages[0], 'connected');
    assert.equal(await pages[0].evaluate(() => window.termcell.sessionId), before, 'the same session');

    for (const page of pages) await page.close();
    // At once the places are still held: the refusal names its cause and wait.
    const early = await env.browser.context.newPage();
    await early.goto(limited.url);
    await waitForState(early, 'ended');
    assert.match(
      await early.textContent('#status-text'),
      /5 sessions are open from your address; closed tabs count for 3s/,
    );
    await early.close();

    // After the short grace (not the 5 minutes of a lost connection) a new tab gets a session.
    await new Promise((resolve) => setTimeout(resolve, 3500));
    const sixth = await openTerminal(env.browser, limited);
    await run(sixth, 'echo sixth-$((2*3))');
    await waitForLine(sixth, 'sixth-6', { exact: true });
    await sixth.close();
  });
});

describe('states', () => {
  it('shows the end in an overlay and starts a new session with the keyboard only', async () => {
    const page = await openTerminal(env.browser, await env.server());
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
    const page = await openTerminal(env.browser, await env.server(['--idle-timeout', '3', '--warn-before', '1']));
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
    const served = await env.server();
    const proxy = await startProxy(served.url);
    try {
      const page = await openTerminal(env.browser, proxy);
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
    const served = await env.server();
    const proxy = await startProxy(served.url);
    try {
      const page = await openTerminal(env.browser, proxy);
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
