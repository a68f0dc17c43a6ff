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
const PING_INTERVAL_MS = 20_000;
const TEST_DROP_CODE = 4500;
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
    const socket = { ws, resumeId, helloSeen: false, lastEnd: null };
    this.ws = ws;
    this.socket = socket;
    this.setState('connecting');

    ws.onopen = () => {
      ws.send(authFrame({ ...this.credentials, sessionId: resumeId }));
      this.pingTimer = setInterval(() => this.sendRaw(pingMessage(Date.now())), PING_INTERVAL_MS);
    };
    ws.onmessage = (event) => {
      if (this.ws === ws) this.handleFrame(socket, event.data);
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

  /** Terminal input, sent as a raw text frame. Input typed while disconnected is dropped. */
  sendInput(text) {
    if (this.state === 'connected') this.sendRaw(text);
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
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, PAGE_CLOSED_REASON);
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
        break;
      case 'warning':
        this.on.warning(String(message.reason ?? ''), Number(message.secondsLeft) || 0);
        break;
      case 'notice':
        // Input a limit removed (also a line in the terminal, where it happened).
        this.on.notice(String(message.reason ?? ''));
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
      this.setState('ended', { reason: describeClose(code, reason) });
      return;
    }
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.setState('reconnecting', { until: Date.now() + delay, reason: describeClose(code, reason) });
    this.retryTimer = setTimeout(() => this.connect(), delay);
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
    this.retryTimer = null;
    this.pingTimer = null;
  }

  // Stops listening to the current socket (if any) before a new one replaces it; a
  // `user-closed-*` reason tells the server that session is no longer wanted.
  detach() {
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, 'user-closed-replaced');
  }
}
