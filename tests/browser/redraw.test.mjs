// A resumed session is drawn as it was, in xterm.js in a real browser against the real
// server: lines once, no stray input, vi cell for cell, a new size. xterm.js answers the
// terminal queries it is sent (as in any page), so a query drawn twice would reach the
// shell as input. Some tests play the reference's browser client, which does not clear its
// terminal when it reconnects: the page's own clear on `hello` is switched off for them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './server.mjs';
import { launchBrowser, run, screenText, waitForLine, waitForPrompt, waitForState } from './browser.mjs';

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

async function openTerminal(viewport = { width: 1000, height: 620 }) {
  const page = await browser.context.newPage();
  await page.setViewportSize(viewport);
  await page.goto(server.url);
  await waitForState(page, 'connected');
  await waitForPrompt(page);
  return page;
}

/** Makes the page keep its terminal across a reconnect, as the reference's client does. */
async function keepScreenOnReconnect(page) {
  await page.evaluate(() => {
    window.termcell.term.reset = () => {};
  });
}

/** Drops the socket and waits until the page has resumed the same session. */
async function dropAndResume(page, whileDown = async () => {}) {
  const { sessionId } = await page.evaluate(() => ({ sessionId: window.termcell.sessionId }));
  await page.evaluate(() => window.termcell.dropForTest());
  await waitForState(page, 'reconnecting');
  await whileDown();
  await waitForState(page, 'connected');
  assert.equal(await page.evaluate(() => window.termcell.sessionId), sessionId);
}

/** The visible screen of the active buffer, one string per row, and the cursor. */
function visibleScreen(page) {
  return page.evaluate(() => {
    const { term } = window.termcell;
    const buffer = term.buffer.active;
    const rows = [];
    for (let y = 0; y < term.rows; y += 1) {
      const line = buffer.getLine(buffer.viewportY + y);
      const cells = [];
      for (let x = 0; x < term.cols; x += 1) {
        const cell = line?.getCell(x);
        if (!cell) break;
        cells.push(`${cell.getChars() || ' '}${cell.isBold() ? '*' : ''}${cell.getFgColor()}`);
      }
      rows.push(cells.join('|'));
    }
    return { type: buffer.type, rows, cursor: [buffer.cursorX, buffer.cursorY] };
  });
}

/** Waits until the visible screen is `expected` (the snapshot may still be on its way). */
async function waitForScreen(page, expected, what) {
  const deadline = Date.now() + 15_000;
  let now;
  for (;;) {
    now = await visibleScreen(page);
    if (JSON.stringify(now) === JSON.stringify(expected)) return;
    if (Date.now() > deadline) break;
    await page.waitForTimeout(50);
  }
  assert.deepEqual(now, expected, what);
}

/** Writes a line into the page's terminal only: it is gone once the server clears it. */
function markLocally(page) {
  return page.evaluate(() => window.termcell.term.write('\r\nonly-on-this-page\r\n'));
}

async function waitUntilCleared(page) {
  await page.waitForFunction(() => {
    const buffer = window.termcell.term.buffer.active;
    for (let i = 0; i < buffer.length; i += 1) {
      if (buffer.getLine(i)?.translateToString(true).includes('only-on-this-page')) return false;
    }
    return true;
  });
}

async function endSession(page) {
  await run(page, 'exit');
  await waitForState(page, 'ended');
  await page.close();
}

describe('resume redraws the screen', () => {
  it('shows each of 50 lines once and types nothing for the user', async () => {
    const page = await openTerminal();
    await keepScreenOnReconnect(page);
    // From here on `cat -v` reads the terminal: an answer to a query would show as ^[.
    await run(page, 'for i in $(seq 1 50); do echo line-$i.; done; cat -v');
    await waitForLine(page, 'line-50.', { exact: true });
    await dropAndResume(page, () => markLocally(page));
    await waitUntilCleared(page);
    await waitForLine(page, 'line-50.', { exact: true });
    const lines = (await screenText(page)).split('\n').map((l) => l.trim());
    for (let n = 1; n <= 50; n += 1) {
      assert.equal(lines.filter((l) => l === `line-${n}.`).length, 1, `line-${n}. once:\n${lines.join('\n')}`);
    }
    await run(page, 'typed-after-resume');
    await page.keyboard.press('Control+D');
    await run(page, 'echo done-$((2+2))');
    await waitForLine(page, 'done-4', { exact: true });
    const text = await screenText(page);
    assert.doesNotMatch(text, /\^\[/, `stray input reached the shell:\n${text}`);
    assert.equal(text.split('\n').filter((l) => l.trim() === 'typed-after-resume').length, 2, text);
    await endSession(page);
  });

  it('brings vi back cell for cell, and :q works', async () => {
    const page = await openTerminal();
    await run(page, "printf 'alpha-%s\\nbeta\\ngamma\\n' $((6*7)) > /tmp/f; vi /tmp/f");
    await waitForLine(page, 'alpha-42', { exact: true });
    await page.waitForFunction(() => window.termcell.term.buffer.active.type === 'alternate');
    // vi's status line is its last output.
    await waitForLine(page, '1/3');
    const before = await visibleScreen(page);
    for (const keep of [false, true]) {
      if (keep) await keepScreenOnReconnect(page);
      // Whatever shows after the resume comes from the server.
      await dropAndResume(page, () => page.evaluate(() => window.termcell.term.write('\x1b[2Jwiped')));
      await waitForScreen(page, before, keep ? 'on the kept screen' : 'on a cleared screen');
    }
    await page.locator('#terminal').click();
    await page.keyboard.type(':q');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => window.termcell.term.buffer.active.type === 'normal');
    await run(page, 'echo after-vi-$((3*3))');
    await waitForLine(page, 'after-vi-9', { exact: true });
    await endSession(page);
  });

  it('draws the session at the size the window has when it comes back', async () => {
    const page = await openTerminal({ width: 1000, height: 620 });
    await run(page, 'for i in $(seq 1 40); do echo row-$i.; done');
    await waitForLine(page, 'row-40.', { exact: true });
    await keepScreenOnReconnect(page);
    await dropAndResume(page, async () => {
      await page.setViewportSize({ width: 640, height: 400 });
      await markLocally(page);
    });
    await waitUntilCleared(page);
    const [cols, rows] = await page.evaluate(() => [window.termcell.term.cols, window.termcell.term.rows]);
    const wanted = `size-${rows}x${cols}`;
    await run(page, 'echo size-$(stty size | tr " " x)');
    await waitForLine(page, wanted, { exact: true });
    const lines = (await screenText(page)).split('\n').map((l) => l.trim());
    for (let n = 1; n <= 40; n += 1) {
      assert.equal(lines.filter((l) => l === `row-${n}.`).length, 1, `row-${n}. once:\n${lines.join('\n')}`);
    }
    // No row of the redrawn screen is wider than the window.
    assert.ok(lines.every((l) => l.length <= cols), lines.join('\n'));
    await endSession(page);
  });
});
