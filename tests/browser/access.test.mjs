// The built-in page as a demanding user drives it: the page's weight, rendering and
// accessibility, and a phone.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  openTerminal,
  pageTestEnv,
  run,
  screenText,
  waitForLine,
  waitForPrompt,
  waitForState,
} from './browser.mjs';

const env = pageTestEnv();

describe('page weight', () => {
  it('sends app.js compressed and serves a second load from the cache', async () => {
    const served = await env.server();
    const size = (page) =>
      page.evaluate(() => {
        const entry = performance.getEntriesByType('resource').find((e) => e.name.includes('/app.js'));
        return { transfer: entry.transferSize, encoded: entry.encodedBodySize, decoded: entry.decodedBodySize };
      });
    const first = await openTerminal(env.browser, served);
    const cold = await size(first);
    assert.ok(cold.encoded < 100_000 && cold.decoded > 250_000, `compressed: ${JSON.stringify(cold)}`);
    await first.close();
    const second = await openTerminal(env.browser, served);
    const warm = await size(second);
    assert.equal(warm.transfer, 0, `from the cache: ${JSON.stringify(warm)}`);
    await second.close();
  });
});

describe('rendering and accessibility', () => {
  it('makes black text readable, gives emoji two cells and lets the keyboard out', async () => {
    const page = await openTerminal(env.browser, await env.server());
    await run(page, "printf '\\033[30mblack-%s\\033[0m\\n' $((6*7))");
    await waitForLine(page, 'black-42', { exact: true });
    // Drawn on the next animation frame: wait for the row.
    await page.waitForFunction(() =>
      [...document.querySelectorAll('.xterm-rows span')].some((s) => s.textContent.includes('black-42')),
    );
    const ratio = await page.evaluate(() => {
      const span = [...document.querySelectorAll('.xterm-rows span')].find((s) => s.textContent.includes('black-42'));
      const rgb = (css) => css.match(/\d+/g).slice(0, 3).map(Number);
      const luminance = ([r, g, b]) => {
        const lin = (c) => ((c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
        return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
      };
      const fg = luminance(rgb(getComputedStyle(span).color));
      const bg = luminance([0x0f, 0x12, 0x16]);
      return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    });
    assert.ok(ratio >= 4.5, `contrast of black text ${ratio.toFixed(2)}:1`);

    const width = await page.evaluate(
      () =>
        new Promise((resolve) => {
          const { term } = window.termcell;
          term.write('\r\n\u{1F600}X', () => {
            const buffer = term.buffer.active;
            const line = buffer.getLine(buffer.baseY + buffer.cursorY);
            resolve({ emoji: line.getCell(0).getWidth(), x: line.getCell(2).getChars() });
          });
        }),
    );
    assert.deepEqual(width, { emoji: 2, x: 'X' });

    // Tab stays the shell's; Ctrl+Shift+Tab leaves the terminal for the page's buttons.
    await page.locator('#terminal').click();
    await page.keyboard.press('Tab');
    assert.match(await page.evaluate(() => document.activeElement?.className), /xterm-helper-textarea/);
    await page.keyboard.press('Control+Shift+Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.tagName), 'BUTTON');

    // Screen-reader mode is a setting that the page keeps.
    await page.click('#screen-reader');
    assert.equal(await page.evaluate(() => window.termcell.term.options.screenReaderMode), true);
    assert.equal(await page.getAttribute('#screen-reader', 'aria-pressed'), 'true');
    await page.click('#screen-reader');
    assert.equal(await page.evaluate(() => window.termcell.term.options.screenReaderMode), false);
    await page.close();
  });

  it('shows an OSC 8 link target on hover and asks before opening a mismatched one', async () => {
    const page = await openTerminal(env.browser, await env.server());
    await run(page, "printf '\\033]8;;https://other.example/x\\033\\\\https://docs.example/\\033]8;;\\033\\\\ end-%s\\n' $((2*2))");
    await waitForLine(page, 'end-4');
    // Drawn on the next animation frame: wait for the row.
    await page.waitForFunction(() =>
      [...document.querySelectorAll('.xterm-rows > div')].some((row) => row.textContent.startsWith('https://docs.example/')),
    );
    const box = await page.evaluate(() => {
      const span = [...document.querySelectorAll('.xterm-rows > div')].find((row) =>
        row.textContent.startsWith('https://docs.example/'),
      );
      const r = span.getBoundingClientRect();
      return { x: r.left + 20, y: r.top + r.height / 2 };
    });
    await page.mouse.move(box.x, box.y);
    await page.waitForFunction(() => document.querySelector('#status-title').textContent === 'link: https://other.example/x');
    // The click returns once the dialog is answered: answer it from a handler.
    const asked = [];
    page.on('dialog', (dialog) => {
      asked.push(dialog.message());
      dialog.dismiss();
    });
    const opened = [];
    env.browser.context.on('page', (tab) => opened.push(tab.url()));
    await page.mouse.click(box.x, box.y);
    assert.equal(asked.length, 1, 'one question');
    assert.match(asked[0], /https:\/\/other\.example\/x/);
    assert.deepEqual(opened, [], 'declined: nothing opens');
    await page.close();
  });

  it('announces a warning once and keeps it out of the terminal', async () => {
    const page = await openTerminal(env.browser, await env.server(['--idle-timeout', '4', '--warn-before', '3']));
    await page.waitForSelector('#banner:not([hidden])', { timeout: 10_000 });
    assert.match(await page.textContent('#announce'), /inactivity/);
    assert.equal(await page.getAttribute('#banner span', 'aria-hidden'), 'true');
    assert.doesNotMatch(await screenText(page), /\[termcell\] Session will end/);
    await waitForState(page, 'ended', 15_000);
    await page.close();
  });
});

describe('mobile', () => {
  it('shows no key bar on a laptop whose screen also takes touch', async () => {
    const page = await env.browser.context.newPage();
    // Touch points, but the primary pointer stays the (fine) mouse.
    await page.addInitScript(() => Object.defineProperty(navigator, 'maxTouchPoints', { get: () => 10 }));
    await page.goto((await env.server()).url);
    await waitForState(page, 'connected');
    assert.equal(await page.evaluate(() => navigator.maxTouchPoints), 10);
    assert.equal(await page.evaluate(() => window.matchMedia('(pointer: fine)').matches), true);
    assert.equal(await page.isHidden('#keybar'), true, 'the keyboard has every key');
    await page.close();
  });

  it('has a key bar that sends Esc and Ctrl-C, and a status bar that fits', async () => {
    const page = await env.browser.context.newPage();
    const cdp = await env.browser.context.newCDPSession(page);
    await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: true, maxTouchPoints: 5 });
    await page.setViewportSize({ width: 390, height: 844 });
    const served = await env.server();
    await page.goto(served.url);
    await waitForState(page, 'connected');
    await waitForPrompt(page);
    assert.ok(await page.isVisible('#keybar'));
    const fits = await page.evaluate(() => {
      const bar = document.querySelector('#status');
      return bar.scrollWidth <= bar.clientWidth;
    });
    assert.ok(fits, 'the status bar fits');

    // Ctrl, then c: an interrupt.
    await run(page, 'sleep 60');
    await page.waitForTimeout(300);
    await page.click('#keybar button[aria-label="Ctrl"]');
    await page.keyboard.type('c');
    await run(page, 'echo mobile-$((3*3))');
    await waitForLine(page, 'mobile-9', { exact: true });

    // Esc leaves vi's insert mode.
    await run(page, 'vi /tmp/k');
    // vi is up once it draws its empty lines (the command line also reads /tmp/k).
    await waitForLine(page, '~', { exact: true });
    await page.keyboard.type('iabc', { delay: 5 });
    await page.click('#keybar button[aria-label="Esc"]');
    // vi takes an Esc followed at once by more bytes as the start of a key's escape
    // sequence: on a loaded machine the Esc and ":wq" could reach it in one read.
    await page.waitForTimeout(500);
    await page.keyboard.type(':wq', { delay: 5 });
    await page.keyboard.press('Enter');
    await run(page, 'cat /tmp/k');
    await waitForLine(page, 'abc', { exact: true });
    await page.close();
  });
});
