// Headless Chromium from the distribution (no browser download) with a throw-away profile,
// and small helpers to read the terminal page's state and screen.
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer } from './server.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Launches Chromium with a fresh user-data dir; `close()` removes the dir. */
export async function launchBrowser({ ignoreHTTPSErrors = false } = {}) {
  const profile = await mkdtemp(path.join(tmpdir(), 'termcell-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1000, height: 620 },
    ignoreHTTPSErrors,
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** The whole terminal buffer (scrollback included) as text, one line per buffer row. */
export function screenText(page) {
  return page.evaluate(() => {
    const buffer = window.termcell.term.buffer.active;
    const lines = [];
    for (let i = 0; i < buffer.length; i += 1) lines.push(buffer.getLine(i)?.translateToString(true) ?? '');
    return lines.join('\n');
  });
}

/**
 * Waits until a line of the terminal buffer contains `text` (or, with `exact`, is exactly
 * `text` after trimming). Tests print computed values (`$((6*7))`) so that the typed command
 * itself never matches.
 */
export async function waitForLine(page, text, { timeout = 15_000, exact = false } = {}) {
  try {
    await page.waitForFunction(
      ([wanted, whole]) => {
        const buffer = window.termcell.term.buffer.active;
        for (let i = 0; i < buffer.length; i += 1) {
          const line = buffer.getLine(i)?.translateToString(true).trim() ?? '';
          if (whole ? line === wanted : line.includes(wanted)) return true;
        }
        return false;
      },
      [text, exact],
      { timeout, polling: 50 },
    );
  } catch (err) {
    throw new Error(`${JSON.stringify(text)} not on screen: ${err.message}\n--- screen ---\n${await screenText(page)}`);
  }
}

/** Waits until the shell has printed something (its prompt), so typing does not race it. */
export async function waitForPrompt(page, timeout = 15_000) {
  await page.waitForFunction(
    () => {
      const buffer = window.termcell.term.buffer.active;
      for (let i = 0; i < buffer.length; i += 1) {
        if (buffer.getLine(i)?.translateToString(true).trim()) return true;
      }
      return false;
    },
    null,
    { timeout, polling: 50 },
  );
}

export function pageState(page) {
  return page.evaluate(() => ({ state: window.termcell.state, sessionId: window.termcell.sessionId }));
}

export async function waitForState(page, state, timeout = 20_000) {
  try {
    await page.waitForFunction((wanted) => window.termcell?.state === wanted, state, { timeout, polling: 20 });
  } catch (err) {
    const now = await page.evaluate(() => window.termcell?.state).catch(() => 'no page');
    const status = await page.textContent('#status-text').catch(() => '');
    throw new Error(`state ${state} not reached (now ${now}, status "${status}"): ${err.message}`);
  }
}

/** Types a command into the terminal the way a user does (keyboard events), then Enter. */
export async function run(page, command) {
  await page.locator('#terminal').click();
  await page.keyboard.type(command, { delay: 5 });
  await page.keyboard.press('Enter');
}

/** Pastes `text` into the terminal as the browser does for a user's paste (a paste event). */
export async function paste(page, text) {
  await page.locator('#terminal').click();
  await page.evaluate((data) => {
    const transfer = new DataTransfer();
    transfer.setData('text/plain', data);
    const target = document.querySelector('#terminal textarea');
    target.dispatchEvent(new ClipboardEvent('paste', { clipboardData: transfer, bubbles: true, cancelable: true }));
  }, text);
}

/** Opens the page of `server` in a new tab and waits for a connected session with a prompt. */
export async function openTerminal(browser, server, viewport = { width: 1000, height: 620 }) {
  const page = await browser.context.newPage();
  await page.setViewportSize(viewport);
  await page.goto(server.url);
  await waitForState(page, 'connected');
  await page.waitForFunction(() => typeof window.termcell.sessionId === 'string');
  await waitForPrompt(page);
  return page;
}

/**
 * For a test file: one browser for all its tests, and `server(extraArgs)` to start a server
 * with its own settings; all are stopped after the file.
 */
export function pageTestEnv() {
  const env = { browser: null, servers: [] };
  before(async () => {
    env.browser = await launchBrowser();
  });
  after(async () => {
    await env.browser?.close();
    await Promise.all(env.servers.map((server) => server.stop()));
  });
  env.server = async (extraArgs = []) => {
    const started = await startServer({ extraArgs });
    env.servers.push(started);
    return started;
  };
  return env;
}
