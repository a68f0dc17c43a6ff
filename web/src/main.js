// The built-in terminal page: an xterm.js terminal wired to one Connection, a status bar,
// a warning banner and a credentials form. Terminal output never reaches the DOM as HTML.

import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { WebLinksAddon } from '@xterm/addon-web-links';
import { Unicode11Addon } from '@xterm/addon-unicode11';
import '@xterm/xterm/css/xterm.css';
import './style.css';

import { Connection } from './connection.js';
import { StateView } from './overlay.js';
import { copyOnSelect, pageKeys } from './keys.js';
import { ReplayGuard } from './replay.js';
import { KeyBar, isTouchDevice } from './keybar.js';
import { credentialsFromFragment, describeUsage, isSafeLink } from './protocol.js';
import { Viewer, sessionFromFragment } from './viewer.js';

const RESIZE_DEBOUNCE_MS = 120;
const NOTICE_MS = 6000;
const OSC_CLIPBOARD = 52;
const SCREEN_READER_KEY = 'termcell.screenReader';
const COPY_ON_SELECT_KEY = 'termcell.copyOnSelect';
// The window title a program set (text only).
let programTitle = '';

// Served at /admin/viewer (on the admin listener), the page is a read-only view of a session.
const viewerMode = window.location.pathname === '/admin/viewer';

const el = (id) => document.getElementById(id);
const ui = {
  terminal: el('terminal'),
  banner: el('banner'),
  dot: el('status-dot'),
  state: el('status-text'),
  title: el('status-title'),
  newSession: el('new-session'),
  credentials: el('credentials'),
  credentialsReason: el('credentials-reason'),
  apiKey: el('api-key'),
  accessToken: el('access-token'),
  watchForm: el('watch-form'),
  watchSession: el('watch-session'),
  adminToken: el('admin-token'),
  overlay: el('overlay'),
  overlayTitle: el('overlay-title'),
  overlayReason: el('overlay-reason'),
  overlayAction: el('overlay-action'),
  announce: el('announce'),
  keybar: el('keybar'),
  screenReader: el('screen-reader'),
  usage: el('status-usage'),
  copySelect: el('copy-select'),
};
const view = new StateView(ui);

const term = new Terminal({
  cursorBlink: true,
  // ANSI black on the dark background (and any colour pair a program picks) is lightened
  // or darkened until it reads: WCAG AA for text.
  minimumContrastRatio: 4.5,
  // The Unicode 11 widths (emoji take two cells) need the proposed unicode API.
  allowProposedApi: true,
  fontFamily: 'ui-monospace, "DejaVu Sans Mono", "Cascadia Mono", Menlo, Consolas, monospace',
  fontSize: 14,
  lineHeight: 1.15,
  scrollback: 5000,
  // OSC 8 hyperlinks: the text may read one URL and the link go to another, so the target
  // is shown on hover and, when it differs from the text, confirmed before it opens.
  linkHandler: {
    activate: (_event, uri, range) => {
      const text = rangeText(range).trim();
      if (text === uri || window.confirm(`This link opens\n${uri}\n\nOpen it?`)) openLink(uri);
    },
    hover: (_event, uri) => showLinkTarget(uri),
    leave: () => showLinkTarget(null),
    allowNonHttpProtocols: false,
  },
  theme: {
    background: '#0f1216',
    foreground: '#d7dde6',
    cursor: '#7fd1b9',
    cursorAccent: '#0f1216',
    selectionBackground: '#2f4a5a',
    black: '#1c2128',
    red: '#e36d76',
    green: '#98c379',
    yellow: '#e5c07b',
    blue: '#61afef',
    magenta: '#c678dd',
    cyan: '#56b6c2',
    white: '#b8c0cc',
    brightBlack: '#5c6672',
    brightRed: '#ff8891',
    brightGreen: '#b5e38f',
    brightYellow: '#f5d38f',
    brightBlue: '#82c3ff',
    brightMagenta: '#dd9cf0',
    brightCyan: '#74d3de',
    brightWhite: '#eef1f5',
  },
});
const fit = new FitAddon();
term.loadAddon(fit);
term.loadAddon(new WebLinksAddon((_event, uri) => openLink(uri)));
term.loadAddon(new Unicode11Addon());
term.unicode.activeVersion = '11';
// No program in the sandbox may write the user's clipboard: swallow OSC 52.
term.parser.registerOscHandler(OSC_CLIPBOARD, () => true);
term.open(ui.terminal);
if (!viewerMode) fit.fit();
const copied = (text) => showBanner(`Copied ${text.length} characters`, 'info', 1500);
term.attachCustomKeyEventHandler(
  pageKeys(term, {
    copied,
    // The next control after the terminal: the overlay's or the status bar's button.
    leave: () => {
      const next = [ui.overlayAction, ui.newSession, ui.copySelect, ui.screenReader].find((b) => b.offsetParent !== null);
      if (next) next.focus();
      else term.blur();
    },
  }),
);
const replay = new ReplayGuard(term);

function openLink(uri) {
  if (isSafeLink(uri)) window.open(uri, '_blank', 'noopener,noreferrer');
}

/** The text of a buffer range (1-based, inclusive), as the link shows it on screen. */
function rangeText(range) {
  const buffer = term.buffer.active;
  let text = '';
  for (let y = range.start.y; y <= range.end.y; y += 1) {
    const line = buffer.getLine(y - 1)?.translateToString(true) ?? '';
    const from = y === range.start.y ? range.start.x - 1 : 0;
    const to = y === range.end.y ? range.end.x : line.length;
    text += line.slice(from, to);
  }
  return text;
}

/** A link's real target in the status bar while the pointer is on it. */
function showLinkTarget(uri) {
  ui.title.textContent = uri ? `link: ${uri}` : programTitle;
}

/**
 * A status bar button that turns a setting on and off, off until the user turns it on and
 * kept in this browser under `key`; `apply(on)` puts it into effect (at load too). Returns
 * the setting's current value.
 */
function keptToggle(button, key, apply) {
  let on = window.localStorage.getItem(key) === 'on';
  const show = () => {
    button.setAttribute('aria-pressed', String(on));
    apply(on);
  };
  button.addEventListener('click', () => {
    on = !on;
    window.localStorage.setItem(key, on ? 'on' : 'off');
    show();
  });
  show();
  return () => on;
}

// Screen-reader mode: xterm.js then keeps an accessible text copy of the screen and
// announces new output.
keptToggle(ui.screenReader, SCREEN_READER_KEY, (on) => {
  term.options.screenReaderMode = on;
});
// Copy-on-select.
const copySelection = keptToggle(ui.copySelect, COPY_ON_SELECT_KEY, () => {});
copyOnSelect(term, ui.terminal, copySelection, { copied });

const wsUrl = `${window.location.protocol === 'https:' ? 'wss:' : 'ws:'}//${window.location.host}/`;
let viewer = null;
const connection = viewerMode ? null : new Connection({
  url: wsUrl,
  storage: window.sessionStorage,
  credentials: credentialsFromFragment(window.location.hash),
  size: () => ({ cols: term.cols, rows: term.rows }),
  on: {
    state: showState,
    output: (data) => replay.write(data),
    hello: (_id, resumed) => {
      // What a resumed session sends first is drawn from the past: its queries are not
      // answered (the answers would reach the shell as typed text).
      if (resumed) replay.expectReplay();
      // A resumed session is drawn again by the server after hello (its snapshot clears the
      // terminal first too): start from a clean screen.
      term.reset();
      if (ui.banner.dataset.kind === 'warning') hideBanner();
      term.focus();
    },
    warning: showWarning,
    notice: (text) => showBanner(text, 'info', NOTICE_MS),
    usage: showUsage,
  },
});

/** The session's latest resource use, in the status bar (cleared when it is not connected). */
function showUsage(message) {
  const usage = message && describeUsage(message);
  ui.usage.hidden = !usage;
  ui.usage.textContent = usage ? usage.text : '';
  ui.usage.title = usage ? usage.title : '';
}

// On touch devices, the keys a phone keyboard lacks (not in the read-only viewer).
const keybar = !viewerMode && isTouchDevice() ? new KeyBar(ui.keybar, term, (data) => typed(data)) : null;

term.onData((data) => typed(keybar ? keybar.apply(data) : data));

function typed(data) {
  if (!connection) return;
  // Enter while the session is lost or over is the overlay's action (reconnect now, new
  // session); typed input while reconnecting is kept and sent once the session is back.
  const taken = connection.sendInput(data);
  if (data === '\r' && connection.state === 'reconnecting') connection.reconnectNow();
  else if (!taken && data === '\r') view.act();
  if (banner.idle) hideBanner();
}
term.onResize(({ cols, rows }) => connection?.resize(cols, rows));
// The title comes from the sandbox: text only.
term.onTitleChange((title) => {
  programTitle = title;
  ui.title.textContent = title;
  view.setTitle({ program: title });
});

// Refit whenever the terminal's box changes: a window resize, or the banner showing or hiding.
let resizeTimer = null;
new ResizeObserver(() => {
  // A view takes the watched session's size.
  if (viewerMode) return;
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => fit.fit(), RESIZE_DEBOUNCE_MS);
}).observe(ui.terminal);

// The status bar.
let countdownTimer = null;
let everConnected = false;
let lostReason = '';
function typedNote() {
  const queued = connection?.queuedInput.length ?? 0;
  return queued ? ` ${queued} typed characters will be sent then.` : '';
}
function showState(state, detail) {
  clearInterval(countdownTimer);
  ui.dot.dataset.state = state;
  ui.newSession.hidden = viewerMode || (state !== 'ended' && state !== 'credentials');
  ui.credentials.hidden = state !== 'credentials';
  // A cursor that blinks on says "type here": only while typing reaches a session.
  term.options.cursorBlink = state === 'connected';
  if (state !== 'connected') showUsage(null);
  switch (state) {
    case 'connecting':
      ui.state.textContent = 'connecting…';
      view.setTitle({ state: everConnected ? 'reconnecting' : 'connecting' });
      // An overlay of a lost connection stays up, saying what happens now.
      if (view.visible) {
        const tick = () => view.setReason(`${lostReason}. Reconnecting now…${typedNote()}`);
        tick();
        countdownTimer = setInterval(tick, 250);
      }
      break;
    case 'connected':
      ui.state.textContent = 'connected';
      view.hide();
      view.setTitle({ state: '' });
      view.announce(everConnected ? 'Reconnected.' : 'Connected.');
      everConnected = true;
      break;
    case 'watching':
      ui.state.textContent = 'watching, read-only';
      break;
    case 'reconnecting': {
      // Warnings belonged to the lost connection; the server repeats any that still hold.
      hideBanner();
      view.show({
        title: 'Connection lost',
        reason: detail.reason,
        actionLabel: 'Reconnect now',
        action: () => connection?.reconnectNow(),
        focus: false,
      });
      lostReason = detail.reason;
      const tick = () => {
        const seconds = Math.max(0, Math.ceil((detail.until - Date.now()) / 1000));
        ui.state.textContent = `reconnecting in ${seconds}s (${detail.reason})`;
        view.setReason(`${detail.reason}. Reconnecting in ${seconds}s.${typedNote()}`);
      };
      tick();
      countdownTimer = setInterval(tick, 250);
      view.setTitle({ state: 'reconnecting' });
      view.announce(`Connection lost: ${detail.reason}. Reconnecting.`);
      break;
    }
    case 'ended': {
      ui.state.textContent = `ended: ${detail.reason}`;
      hideBanner();
      const title = detail.refused ? 'Session refused' : 'Session ended';
      view.show({ title, reason: detail.reason, actionLabel: 'New session', action: startNewSession, focus: true });
      view.setTitle({ state: detail.refused ? 'refused' : 'ended' });
      view.announce(`${title}: ${detail.reason}`);
      break;
    }
    case 'credentials':
      ui.state.textContent = `credentials needed: ${detail.reason}`;
      ui.credentialsReason.textContent = detail.reason;
      view.hide();
      view.setTitle({ state: 'credentials needed' });
      ui.apiKey.focus();
      break;
    default:
      ui.state.textContent = state;
  }
}

// The banner: server warnings (with a live countdown) and short notices.
const banner = { timer: null, idle: false };
function showWarning(reason, secondsLeft) {
  const deadline = Date.now() + secondsLeft * 1000;
  // An idle warning is void once the user types again.
  banner.idle = /inactiv|idle/i.test(reason);
  clearInterval(banner.timer);
  // The reason is announced once; the countdown beside it is for the eyes only (a live
  // region rewritten every second would talk over everything).
  ui.banner.textContent = `${reason} `;
  const countdown = document.createElement('span');
  countdown.setAttribute('aria-hidden', 'true');
  ui.banner.append(countdown);
  const tick = () => {
    const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
    countdown.textContent = `(${left}s left)`;
    if (left === 0) hideBanner();
  };
  ui.banner.dataset.kind = 'warning';
  ui.banner.hidden = false;
  view.announce(`${reason}, in ${secondsLeft} seconds.`);
  tick();
  banner.timer = setInterval(tick, 1000);
}

function showBanner(text, kind, durationMs) {
  clearInterval(banner.timer);
  banner.idle = false;
  ui.banner.textContent = text;
  view.announce(text);
  ui.banner.dataset.kind = kind;
  ui.banner.hidden = false;
  banner.timer = setTimeout(hideBanner, durationMs);
}

function hideBanner() {
  clearInterval(banner.timer);
  banner.idle = false;
  ui.banner.hidden = true;
}

function startNewSession() {
  view.hide();
  term.reset();
  connection?.newSession();
  term.focus();
}
ui.newSession.addEventListener('click', startNewSession);

ui.credentials.addEventListener('submit', (event) => {
  event.preventDefault();
  connection?.setCredentials({ apiKey: ui.apiKey.value.trim(), accessToken: ui.accessToken.value.trim() });
  ui.accessToken.value = '';
  ui.apiKey.value = '';
});

// Read-only view for tests and for debugging from the console.
window.termcell = Object.freeze({
  get state() {
    return (connection ?? viewer)?.state ?? 'idle';
  },
  get sessionId() {
    return connection?.sessionId ?? null;
  },
  get queuedInput() {
    return connection?.queuedInput ?? '';
  },
  term,
  dropForTest: () => connection?.dropForTest(),
  /** Writes `data` as output drawn again on resume (its queries go unanswered). */
  replayForTest: (data) => {
    replay.expectReplay();
    replay.write(data);
  },
});

// A closed tab or a reload: the server keeps the session only for the short grace.
window.addEventListener('pagehide', () => connection?.closePage());

// The viewer mode: asks for the session and the admin token, then shows the session as
// it is and as it goes on; the terminal takes no input.
function startViewer() {
  term.options.disableStdin = true;
  document.title = 'termcell viewer';
  ui.state.textContent = 'viewer: admin token needed';
  ui.watchSession.value = sessionFromFragment(window.location.hash);
  ui.watchForm.hidden = false;
  ui.watchForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = ui.adminToken.value;
    ui.adminToken.value = '';
    ui.watchForm.hidden = true;
    const id = encodeURIComponent(ui.watchSession.value.trim());
    viewer = new Viewer({
      url: `${wsUrl}admin/sessions/${id}/watch`,
      token,
      on: {
        state: showState,
        output: (data) => term.write(data),
        size: (cols, rows) => term.resize(cols, rows),
      },
    });
    viewer.connect();
  });
  (ui.watchSession.value ? ui.adminToken : ui.watchSession).focus();
}

if (viewerMode) startViewer();
else connection.connect();
