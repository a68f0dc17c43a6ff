// The page's viewer mode (/admin/viewer on the admin listener) in a real browser against
// the real server: an operator watches a user's session read-only, sees the screen as it
// was and then live output, cannot type into it, and a wrong token gets no view.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './server.mjs';
import { launchBrowser, run, screenText, waitForLine, waitForPrompt, waitForState } from './browser.mjs';
import { describeViewClose, sessionFromFragment, tokenProtocol } from '../../web/src/viewer.js';

const TOKEN = 'browser-admin-token-0123456789';

let server;
let browser;

before(async () => {
  server = await startServer({ env: { TERMCELL_ADMIN_TOKEN: TOKEN } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A user's terminal tab with a connected session; resolves to the page and its id. */
async function userSession() {
  const page = await browser.context.newPage();
  await page.goto(server.url);
  await waitForState(page, 'connected');
  await page.waitForFunction(() => typeof window.termcell.sessionId === 'string');
  await waitForPrompt(page);
  return { page, id: await page.evaluate(() => window.termcell.sessionId) };
}

/** The viewer page for session `id`, the token typed into its form and submitted. */
async function openViewer(id, token) {
  const page = await browser.context.newPage();
  const sent = [];
  page.on('websocket', (ws) => ws.on('framesent', (frame) => sent.push(frame.payload)));
  const problems = [];
  page.on('pageerror', (err) => problems.push(err.message));
  await page.goto(`${server.adminUrl()}/admin/viewer#session=${id}`);
  assert.equal(await page.title(), 'termcell viewer');
  assert.equal(await page.inputValue('#watch-session'), id);
  await page.fill('#admin-token', token);
  await page.click('#watch-form button[type=submit]');
  return { page, sent, problems };
}

describe('viewer helpers', () => {
  it('puts the token in a subprotocol the server decodes', () => {
    assert.equal(tokenProtocol('ab?>~é'), `termcell.token.${Buffer.from('ab?>~é').toString('base64url')}`);
    assert.match(tokenProtocol(TOKEN), /^termcell\.token\.[A-Za-z0-9_-]+$/);
  });

  it('reads the session from the fragment and words the closes', () => {
    assert.equal(sessionFromFragment('#session=abc&x=1'), 'abc');
    assert.equal(sessionFromFragment(''), '');
    assert.match(describeViewClose(4010, ''), /not reading fast enough/);
    assert.match(describeViewClose(1006, ''), /wrong token/);
  });
});

describe('viewer mode', () => {
  it('shows the screen, then live output, and sends nothing typed into it', async () => {
    const user = await userSession();
    await run(user.page, 'echo before-$((1+1))');
    await waitForLine(user.page, 'before-2');

    const view = await openViewer(user.id, TOKEN);
    await waitForState(view.page, 'watching');
    assert.match(await view.page.textContent('#status-text'), /read-only/);
    await waitForLine(view.page, 'before-2');

    await run(user.page, 'echo live-$((2+3))');
    await waitForLine(view.page, 'live-5');

    // Typing into the view sends nothing and runs nothing.
    await run(view.page, 'echo typed-by-$((6*7))-viewer');
    await run(user.page, 'echo check-$((3+4))');
    await waitForLine(view.page, 'check-7');
    assert.deepEqual(view.sent, [], 'the view sent no frame');
    assert.ok(!(await screenText(user.page)).includes('typed-by-42-viewer'));

    await run(user.page, 'exit');
    await waitForState(view.page, 'ended');
    assert.match(await view.page.textContent('#status-text'), /Session ended/);
    assert.deepEqual(view.problems, []);
    await view.page.close();
    await user.page.close();
  });

  it('gets no view with a wrong token', async () => {
    const user = await userSession();
    const view = await openViewer(user.id, 'not-the-admin-token-at-all');
    await waitForState(view.page, 'ended');
    assert.match(await view.page.textContent('#status-text'), /refused|wrong token/);
    assert.ok(!(await screenText(view.page)).includes('$'), 'nothing of the session is shown');
    await view.page.close();
    await run(user.page, 'exit');
    await user.page.close();
  });
});
