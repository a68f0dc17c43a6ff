// One terminal session over a sequence of WebSockets: auth, resume after drops with
// backoff, and the final/non-final decision on every close. Knows nothing of the DOM.

import {
  authFrame,
  backoffDelay,
  describeClose,
  isFinalClose,
  parseServerFrame,
  pingMessage,
  resizeMessage,
} from './protocol.js';

const SESSION_KEY = 'termcell.sessionId';
// A ping every few seconds; a link where DEAD_AFTER_PINGS pings in a row had no answer (nor
// anything else) is lost: a black-holed network never closes by itself. The cut is found
// 9 to 12 s after it happens. Counting unanswered pings, not time since the last message,
// keeps a background tab (whose timers the browser slows to one a minute) from looking
// dead. Before `connected` the server may be creating the sandbox: a longer bound there.
const PING_INTERVAL_MS = 3_000;
const DEAD_AFTER_PINGS = 3;
const DEAD_BEFORE_CONNECTED_PINGS = 10;
// While reconnecting, the server is asked whether it answers (GET /health) this often;
// when it answers again after not answering, the page reconnects at once.
const PROBE_INTERVAL_MS = 500;
// Input typed while reconnecting is sent once the session is back, up to this much.
const MAX_QUEUED_INPUT = 4096;
const TEST_DROP_CODE = 4500;
// The page's own close of a link it found dead: not final, so the server keeps the full grace.
const LOST_CODE = 4501;
// The close reason (code 1000) that tells the server the page is closing (docs/protocol.md).
const PAGE_CLOSED_REASON = 'page-closed';

export class Connection {
  /**
   * @param {object} options
   * @param {string} options.url WebSocket URL of the server.
   * @param {Storage} options.storage where the session id survives a reload (sessionStorage).
   * @param {{apiKey: string, accessToken: string}} options.credentials
   * @param {() => {cols: number, rows: number}} options.size the terminal size to announce.
   * @param {object} options.on callbacks: state(state, detail), output(data),
   *   hello(sessionId, resumed), warning(reason, secondsLeft), notice(text).
   */
  constructor({ url, storage, credentials, size, on }) {
    this.url = url;
    this.storage = storage;
    this.credentials = credentials;
    this.size = size;
    this.on = on;
    this.ws = null;
    this.state = 'idle';
    this.sessionId = storage.getItem(SESSION_KEY);
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.probeTimer = null;
    this.queued = '';
    this.overflowed = false;
    // A resume that the server rejects (4002) falls back to one fresh session, not a loop.
    this.freshFallbackUsed = false;
  }

  get storedSessionId() {
    return this.storage.getItem(SESSION_KEY);
  }

  connect() {
    this.stopTimers();
    this.detach();
    const resumeId = this.storedSessionId;
    const ws = new WebSocket(this.url);
    ws.binaryType = 'arraybuffer';
    const socket = { ws, resumeId, helloSeen: false, lastEnd: null, unanswered: 0 };
    this.ws = ws;
    this.socket = socket;
    this.setState('connecting');

    ws.onopen = () => {
      ws.send(authFrame({ ...this.credentials, sessionId: resumeId }));
    };
    // The heartbeat runs from the start: a connect that hangs is a lost link too.
    this.pingTimer = setInterval(() => this.heartbeat(socket), PING_INTERVAL_MS);
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      socket.unanswered = 0;
      this.handleFrame(socket, event.data);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      // A proxy may drop the close reason; the status message before the close carries it too.
      const reason = event.reason || socket.lastEnd?.reason || '';
      this.handleClose(socket, event.code, reason);
    };
  }

  /** Forget the stored session and start a new one. */
  newSession() {
    this.storage.removeItem(SESSION_KEY);
    this.freshFallbackUsed = false;
    this.attempt = 0;
    this.connect();
  }

  setCredentials(credentials) {
    this.credentials = credentials;
    this.attempt = 0;
    this.connect();
  }

  /**
   * Terminal input, sent as a raw text frame. While (re)connecting it is kept (up to
   * MAX_QUEUED_INPUT) and sent once the same session is back; what cannot be sent is
   * reported through `on.notice`, never dropped silently. Returns false when the input
   * was not taken (the session ended).
   */
  sendInput(text) {
    if (this.state === 'connected') {
      this.sendRaw(text);
      return true;
    }
    if (this.state !== 'connecting' && this.state !== 'reconnecting') return false;
    if (this.queued.length + text.length <= MAX_QUEUED_INPUT) {
      this.queued += text;
    } else if (!this.overflowed) {
      this.overflowed = true;
      this.on.notice('Too much typed while disconnected: the rest of it will not be sent.');
    }
    return true;
  }

  /** What was typed while disconnected and is waiting to be sent. */
  get queuedInput() {
    return this.queued;
  }

  /** Reconnect now instead of waiting for the backoff (a user's request). */
  reconnectNow() {
    if (this.state !== 'reconnecting') return;
    this.attempt = 0;
    this.connect();
  }

  /** Sends the input typed while disconnected, or says why it is not sent. */
  flushQueued(resumed) {
    const queued = this.queued;
    this.queued = '';
    this.overflowed = false;
    if (!queued) return;
    if (resumed) this.sendRaw(queued);
    else this.on.notice(`${queued.length} characters typed while disconnected were not sent: this is a new session.`);
  }

  // One heartbeat: a ping, or the verdict that the link is lost.
  heartbeat(socket) {
    if (this.socket !== socket || this.ws !== socket.ws) return;
    const bound = this.state === 'connected' ? DEAD_AFTER_PINGS : DEAD_BEFORE_CONNECTED_PINGS;
    if (socket.unanswered >= bound) {
      // The socket may never report its end on a dead network: leave it now.
      const silent = Math.round((socket.unanswered * PING_INTERVAL_MS) / 1000);
      this.detach(LOST_CODE, 'connection lost');
      this.handleClose(socket, LOST_CODE, `connection lost: no answer from the server for ${silent}s`);
      return;
    }
    socket.unanswered += 1;
    this.sendRaw(pingMessage(Date.now()));
  }

  // While reconnecting: ask whether the server answers; once it answers after not
  // answering (it restarted), reconnect at once instead of at the end of the backoff.
  startProbe() {
    let down = false;
    const probe = async () => {
      if (this.state !== 'reconnecting') return;
      let up = false;
      try {
        up = (await fetch('/health', { cache: 'no-store' })).ok;
      } catch {
        up = false;
      }
      if (this.state !== 'reconnecting') return;
      if (!up) down = true;
      else if (down) {
        this.reconnectNow();
        return;
      }
      this.probeTimer = setTimeout(probe, PROBE_INTERVAL_MS);
    };
    this.probeTimer = setTimeout(probe, PROBE_INTERVAL_MS);
  }

  resize(cols, rows) {
    if (this.state === 'connected') this.sendRaw(resizeMessage(cols, rows));
  }

  /**
   * The page is going away (a closed tab or a reload): tell the server, so the session
   * waits only the short closed-page grace. A reload resumes it within that grace.
   */
  closePage() {
    this.stopTimers();
    this.detach(1000, PAGE_CLOSED_REASON);
  }

  /** Closes the socket as a network drop would (non-final code), to exercise resume. */
  dropForTest() {
    this.ws?.close(TEST_DROP_CODE, 'test drop');
  }

  handleFrame(socket, data) {
    const frame = parseServerFrame(data);
    if (frame.kind === 'output') {
      this.on.output(frame.data);
      return;
    }
    if (frame.kind !== 'control') return;
    const message = frame.message;
    switch (message.type) {
      case 'status':
        this.handleStatus(socket, message);
        break;
      case 'hello':
        if (typeof message.sessionId !== 'string') return;
        socket.helloSeen = true;
        this.attempt = 0;
        this.freshFallbackUsed = false;
        this.storage.setItem(SESSION_KEY, message.sessionId);
        this.sessionId = message.sessionId;
        this.on.hello(message.sessionId, message.sessionId === socket.resumeId);
        this.flushQueued(message.sessionId === socket.resumeId);
        break;
      case 'warning':
        this.on.warning(String(message.reason ?? ''), Number(message.secondsLeft) || 0);
        break;
      case 'notice':
        // Input a limit removed (also a line in the terminal, where it happened).
        this.on.notice(String(message.reason ?? ''));
        break;
      case 'usage':
        this.on.usage?.(message);
        break;
      default:
        // pong and anything unknown: nothing to do
        break;
    }
  }

  handleStatus(socket, message) {
    if (message.payload === 'connected') {
      this.setState('connected');
      const { cols, rows } = this.size();
      this.resize(cols, rows);
    } else if (message.payload === 'error' || message.payload === 'disconnected') {
      socket.lastEnd = { code: message.code, reason: String(message.reason ?? '') };
    }
  }

  handleClose(socket, code, reason) {
    this.stopTimers();
    this.ws = null;
    if (code === 4002 && socket.resumeId && !socket.helloSeen && !this.freshFallbackUsed) {
      this.storage.removeItem(SESSION_KEY);
      this.freshFallbackUsed = true;
      this.on.notice('The previous session is gone; starting a new one.');
      this.connect();
      return;
    }
    if (code === 4001) {
      this.setState('credentials', { reason: reason || 'Missing credentials' });
      return;
    }
    if (isFinalClose(code, reason)) {
      this.storage.removeItem(SESSION_KEY);
      this.flushQueued(false);
      this.setState('ended', { reason: describeClose(code, reason), refused: !socket.helloSeen });
      return;
    }
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.setState('reconnecting', { until: Date.now() + delay, reason: describeClose(code, reason) });
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.startProbe();
  }

  sendRaw(text) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  setState(state, detail = {}) {
    this.state = state;
    this.on.state(state, detail);
  }

  stopTimers() {
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    clearTimeout(this.probeTimer);
    this.retryTimer = null;
    this.pingTimer = null;
    this.probeTimer = null;
  }

  // Stops listening to the current socket (if any) before a new one replaces it; by
  // default a `user-closed-*` reason tells the server that session is no longer wanted.
  detach(code = 1000, reason = 'user-closed-replaced') {
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(code, reason);
  }
}
