// The built-in page as a demanding user drives it: pasting scripts against the command
// limit, copying and pasting with the keys of browser terminals, resume not answering
// replayed queries.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  openTerminal,
  pageTestEnv,
  paste,
  run,
  screenText,
  waitForLine,
  waitForState,
} from './browser.mjs';

const env = pageTestEnv();

/** Commands that print computed markers, so that the typed text never matches. */
function script(prefix, lines) {
  return Array.from({ length: lines }, (_, i) => `echo ${prefix}-$((${i + 1}*1000))`).join('\n') + '\n';
}

describe('pasting', () => {
  it('runs a pasted script of 3 and of 40 lines whole', async () => {
    const page = await openTerminal(env.browser, await env.server());
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
    const page = await openTerminal(env.browser, await env.server(['--command-burst', '5', '--commands-per-minute', '60']));
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

describe('copy and paste', () => {
  async function clipboardPage() {
    const served = await env.server();
    await env.browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: served.url });
    return openTerminal(env.browser, served);
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

  /** Double-clicks the word at the start of the visible line that is exactly `text`. */
  async function doubleClickLine(page, text) {
    const at = await page.evaluate((wanted) => {
      const { term } = window.termcell;
      const buffer = term.buffer.active;
      const screen = document.querySelector('#terminal .xterm-screen').getBoundingClientRect();
      for (let row = 0; row < term.rows; row += 1) {
        if (buffer.getLine(buffer.viewportY + row)?.translateToString(true).trim() === wanted) {
          const cell = { width: screen.width / term.cols, height: screen.height / term.rows };
          return { x: screen.left + cell.width * 2.5, y: screen.top + cell.height * (row + 0.5) };
        }
      }
      throw new Error(`no visible line ${wanted}`);
    }, text);
    await page.mouse.dblclick(at.x, at.y);
  }

  it('copies a mouse selection on release only when copy-on-select is on', async () => {
    const page = await clipboardPage();
    await run(page, 'echo pick-$((6*7))');
    await waitForLine(page, 'pick-42', { exact: true });
    await writeClipboard(page, 'before');
    assert.equal(await page.getAttribute('#copy-select', 'aria-pressed'), 'false', 'off by default');
    await doubleClickLine(page, 'pick-42');
    assert.equal(await page.evaluate(() => window.termcell.term.getSelection()), 'pick-42', 'the word is selected');
    await page.waitForTimeout(300);
    assert.equal(await readClipboard(page), 'before', 'a selection alone copies nothing while off');

    await page.click('#copy-select');
    assert.equal(await page.getAttribute('#copy-select', 'aria-pressed'), 'true');
    await page.evaluate(() => window.termcell.term.clearSelection());
    await doubleClickLine(page, 'pick-42');
    await page.waitForFunction(() => navigator.clipboard.readText().then((t) => t === 'pick-42'));
    assert.match(await page.textContent('#banner'), /Copied 7 characters/);

    // The setting is kept in this browser: a reload (which resumes the session) keeps it.
    await page.reload();
    await waitForState(page, 'connected');
    assert.equal(await page.getAttribute('#copy-select', 'aria-pressed'), 'true', 'kept across a reload');
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
    const page = await openTerminal(env.browser, await env.server());
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
    const page = await openTerminal(env.browser, await env.server());
    await run(page, 'vi /tmp/notes');
    await waitForLine(page, '~', { exact: true });
    for (let i = 0; i < 2; i += 1) {
      await page.reload();
      await waitForState(page, 'connected');
      await waitForLine(page, '~', { exact: true });
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
