// The page's viewer mode (served at /admin/viewer on the admin listener): a live read-only
// view of one session through the admin API's watch socket. Nothing typed is ever sent:
// the socket carries the server's events (text) and the session's output (binary) only.
// Knows nothing of the DOM.

const PROTOCOL = 'termcell.watch';
const TOKEN_PROTOCOL = 'termcell.token.';

/** The session id in the fragment (`#session=<uuid>`), or ''. */
export function sessionFromFragment(hash) {
  return new URLSearchParams(hash.replace(/^#/, '')).get('session') ?? '';
}

/** The admin token as a subprotocol: browsers cannot set `Authorization` on a WebSocket. */
export function tokenProtocol(token) {
  const bytes = new TextEncoder().encode(token);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return TOKEN_PROTOCOL + btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Why a view closed, in words, from its close code. */
export function describeViewClose(code, reason) {
  switch (code) {
    case 1000:
      return reason || 'session ended';
    case 4009:
      return reason || 'too many viewers';
    case 4010:
      return reason || 'dropped: not reading fast enough';
    case 1006:
      return 'refused or lost (wrong token, or no such session?)';
    default:
      return reason || `closed (${code})`;
  }
}

export class Viewer {
  /**
   * @param {object} options
   * @param {string} options.url the watch socket's URL.
   * @param {string} options.token the admin token.
   * @param {object} options.on callbacks: state(state, detail), output(bytes), size(cols, rows).
   */
  constructor({ url, token, on }) {
    this.url = url;
    this.token = token;
    this.on = on;
    this.state = 'idle';
    this.ws = null;
  }

  setState(state, detail = {}) {
    this.state = state;
    this.on.state(state, detail);
  }

  connect() {
    const ws = new WebSocket(this.url, [PROTOCOL, tokenProtocol(this.token)]);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.setState('connecting');
    ws.onmessage = (event) => {
      if (typeof event.data !== 'string') {
        this.on.output(new Uint8Array(event.data));
        return;
      }
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === 'watching' || message.type === 'resize') this.on.size(message.cols, message.rows);
      if (message.type === 'watching') this.setState('watching');
    };
    ws.onclose = (event) => this.setState('ended', { reason: describeViewClose(event.code, event.reason) });
  }
}
