// The key bar of touch devices: the keys a phone keyboard lacks (Esc, Tab, Ctrl, arrows,
// and characters that are hard to reach there). Its buttons never take the focus, so the
// phone's keyboard stays up. Ctrl is sticky: it applies to the next key typed.

const KEYS = [
  { label: 'Esc', send: '\x1b' },
  { label: 'Tab', send: '\t' },
  { label: 'Ctrl', ctrl: true },
  { label: '←', arrow: 'D', name: 'Left' },
  { label: '↑', arrow: 'A', name: 'Up' },
  { label: '↓', arrow: 'B', name: 'Down' },
  { label: '→', arrow: 'C', name: 'Right' },
  { label: '|', send: '|' },
  { label: '~', send: '~' },
  { label: '/', send: '/' },
  { label: '-', send: '-' },
];

/**
 * Whether this device is driven by touch (a phone or tablet): its primary pointer is coarse.
 * A laptop with a touch screen as well has a fine primary pointer (its touchpad or mouse)
 * and a keyboard, so it gets no key bar.
 */
export function isTouchDevice() {
  return window.matchMedia('(pointer: coarse)').matches;
}

export class KeyBar {
  /**
   * @param {HTMLElement} root the bar's element (filled here).
   * @param {import('@xterm/xterm').Terminal} term
   * @param {(data: string) => void} send what a key sends (as if typed).
   */
  constructor(root, term, send) {
    this.term = term;
    this.send = send;
    this.ctrl = false;
    for (const key of KEYS) {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = key.label;
      button.setAttribute('aria-label', key.name ?? key.label);
      button.tabIndex = -1;
      // Keep the focus (and the phone's keyboard) in the terminal.
      button.addEventListener('pointerdown', (event) => event.preventDefault());
      button.addEventListener('mousedown', (event) => event.preventDefault());
      button.addEventListener('click', () => this.press(key, button));
      if (key.ctrl) {
        button.setAttribute('aria-pressed', 'false');
        this.ctrlButton = button;
      }
      root.append(button);
    }
    root.hidden = false;
  }

  press(key, button) {
    if (key.ctrl) {
      this.setCtrl(!this.ctrl);
    } else if (key.arrow) {
      // Programs that asked for application cursor keys (vi, less) get ESC O x.
      const prefix = this.term.modes.applicationCursorKeysMode ? '\x1bO' : '\x1b[';
      this.send(prefix + key.arrow);
      this.setCtrl(false);
    } else {
      this.send(this.apply(key.send));
    }
    this.term.focus();
    button.blur();
  }

  /** Typed input, with a pending Ctrl applied to it. */
  apply(data) {
    if (!this.ctrl || data.length !== 1) return data;
    this.setCtrl(false);
    const code = data.toUpperCase().charCodeAt(0);
    // Ctrl+@ … Ctrl+_ are the control characters 0 … 31.
    return code >= 0x40 && code <= 0x5f ? String.fromCharCode(code & 0x1f) : data;
  }

  setCtrl(on) {
    this.ctrl = on;
    this.ctrlButton.setAttribute('aria-pressed', String(on));
  }
}
