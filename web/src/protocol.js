// The wire format of termcell (docs/protocol.md) as seen from the browser: pure functions,
// no DOM and no socket, so they can be tested under Node.

export const CLIENT_NAME = 'termcell-web/1';

// 0x00 0x00 "ABLY_CTRL:" marks a control message; the JSON object follows.
const CONTROL_PREFIX = [0, 0, ...Array.from('ABLY_CTRL:', (c) => c.charCodeAt(0))];
const CONTROL_PREFIX_TEXT = '\u0000\u0000ABLY_CTRL:';

// Codes after which the page must not reconnect by itself.
const FINAL_CODES = new Set([4000, 4001, 4002, 4003, 4004, 4008, 4009, 1013]);

// A 1000 close from the server is final when it ends the session for good (idle or
// maximum duration); any other 1000 is treated like a drop.
const FINAL_NORMAL_REASON = /inactiv|timed out|timeout|duration/i;

export const BACKOFF_FIRST_MS = 500;
export const BACKOFF_MAX_MS = 10_000;

const utf8 = new TextDecoder('utf-8');

/**
 * Classifies one frame from the server.
 * Returns `{ kind: 'control', message }` for a control message, `{ kind: 'output', data }`
 * for terminal output (a Uint8Array or a string), or `{ kind: 'invalid' }` for a control
 * prefix followed by something that is not a JSON object.
 */
export function parseServerFrame(data) {
  if (typeof data === 'string') {
    if (!data.startsWith(CONTROL_PREFIX_TEXT)) return { kind: 'output', data };
    return controlFromJson(data.slice(CONTROL_PREFIX_TEXT.length));
  }
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (!hasControlPrefix(bytes)) return { kind: 'output', data: bytes };
  return controlFromJson(utf8.decode(bytes.subarray(CONTROL_PREFIX.length)));
}

function hasControlPrefix(bytes) {
  if (bytes.length < CONTROL_PREFIX.length) return false;
  for (let i = 0; i < CONTROL_PREFIX.length; i += 1) {
    if (bytes[i] !== CONTROL_PREFIX[i]) return false;
  }
  return true;
}

function controlFromJson(text) {
  try {
    const message = JSON.parse(text);
    if (message && typeof message === 'object' && !Array.isArray(message)) {
      return { kind: 'control', message };
    }
  } catch {
    // fall through: a broken control frame is dropped, never shown as output
  }
  return { kind: 'invalid' };
}

/** The first frame of every connection. Empty credentials are left out. */
export function authFrame({ apiKey, accessToken, sessionId } = {}) {
  const frame = {
    client: CLIENT_NAME,
    environmentVariables: { TERM: 'xterm-256color' },
    // The session's resource use, shown in the status bar (`usage` control messages).
    usage: true,
  };
  if (apiKey) frame.apiKey = apiKey;
  if (accessToken) frame.accessToken = accessToken;
  if (sessionId) frame.sessionId = sessionId;
  return JSON.stringify(frame);
}

/**
 * The status bar's text and tooltip for a `usage` control message; null for a malformed one.
 * Percentages of the limits when the server states them, else the amounts.
 */
export function describeUsage(message) {
  const memory = Number(message.memoryBytes);
  const pids = Number(message.pids);
  const cpu = Number(message.cpuPercent);
  if (![memory, pids, cpu].every(Number.isFinite)) return null;
  const memoryLimit = Number(message.memoryLimitBytes);
  const pidsLimit = Number(message.pidsLimit);
  const mib = (bytes) => `${Math.round(bytes / 1048576)} MiB`;
  const hasMemoryLimit = Number.isFinite(memoryLimit) && memoryLimit > 0;
  const hasPidsLimit = Number.isFinite(pidsLimit) && pidsLimit > 0;
  const memoryText = hasMemoryLimit ? `${Math.round((memory * 100) / memoryLimit)}%` : mib(memory);
  return {
    text: `mem ${memoryText} · cpu ${Math.round(cpu)}%`,
    title:
      `Memory ${mib(memory)}${hasMemoryLimit ? ` of ${mib(memoryLimit)}` : ''}, ` +
      `${pids}${hasPidsLimit ? ` of ${pidsLimit}` : ''} processes, ` +
      `CPU ${cpu}% of one CPU`,
  };
}

export function resizeMessage(cols, rows) {
  return JSON.stringify({ type: 'resize', cols, rows });
}

export function pingMessage(now) {
  return JSON.stringify({ type: 'ping', ts: now });
}

/** Whether a close from the server ends the session for this page (no automatic retry). */
export function isFinalClose(code, reason = '') {
  if (FINAL_CODES.has(code)) return true;
  return code === 1000 && FINAL_NORMAL_REASON.test(reason);
}

/** Delay before reconnect attempt number `attempt` (0-based): 0.5 s, 1 s, 2 s … 10 s. */
export function backoffDelay(attempt) {
  return Math.min(BACKOFF_FIRST_MS * 2 ** Math.max(0, attempt), BACKOFF_MAX_MS);
}

/** A sentence for the user about why the connection ended or dropped. */
export function describeClose(code, reason) {
  switch (code) {
    case 4009:
      return 'the server is at capacity, try again in a few minutes';
    case 4003:
      // The server names the cause and the wait; older servers only say "Rate limit exceeded".
      return reason && reason !== 'Rate limit exceeded'
        ? reason
        : 'too many connections or too much input from this address, wait a minute and try again';
    case 4004:
      return reason || 'the session was ended by the administrator';
    case 1001:
      return 'the server is restarting';
    case 1006:
      return 'cannot reach the server (it may be down, or limiting connections from this address)';
    default:
      return reason || `connection closed (code ${code})`;
  }
}

/** Only http and https links may be opened from terminal output. */
export function isSafeLink(uri) {
  try {
    const url = new URL(uri);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/** Credentials from the URL fragment (`#apiKey=…&accessToken=…`); the fragment never reaches the server. */
export function credentialsFromFragment(hash) {
  const params = new URLSearchParams(hash.startsWith('#') ? hash.slice(1) : hash);
  return {
    apiKey: params.get('apiKey') || '',
    accessToken: params.get('accessToken') || '',
  };
}
