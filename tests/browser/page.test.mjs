// The built-in page as a demanding user drives it: pasting scripts against the command limit,
// closing and reopening tabs against the per-address session limit.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './server.mjs';
import { launchBrowser, openTerminal, paste, run, screenText, waitForLine, waitForState } from './browser.mjs';

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
