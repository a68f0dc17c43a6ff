// Keys the page takes before the terminal does: copy and paste the way browser terminals
// do, and a keyboard way out of the terminal. Returns xterm's custom key handler: false
// means "not for the terminal" (and the browser's own action, such as a paste, goes on).

const IS_MAC = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);

/**
 * @param {import('@xterm/xterm').Terminal} term
 * @param {object} on callbacks: copied(text) after a copy, leave() to move the keyboard
 *   out of the terminal.
 */
export function pageKeys(term, on) {
  return (event) => {
    if (event.type !== 'keydown') return true;
    const key = event.key.toLowerCase();
    const ctrl = event.ctrlKey && !event.altKey && !event.metaKey;
    const cmd = IS_MAC && event.metaKey && !event.ctrlKey && !event.altKey;

    // Copy: Ctrl+Shift+C, Cmd+C, Ctrl+Insert, or Ctrl+C while text is selected (without a
    // selection Ctrl+C is the terminal's interrupt, as always).
    const copyKey =
      (ctrl && event.shiftKey && key === 'c') ||
      (cmd && key === 'c') ||
      (ctrl && key === 'insert') ||
      (ctrl && !event.shiftKey && key === 'c' && term.hasSelection());
    if (copyKey) {
      event.preventDefault();
      if (term.hasSelection()) copy(term.getSelection(), on);
      return false;
    }

    // Paste: Ctrl+V, Ctrl+Shift+V, Cmd+V, Shift+Insert. The terminal must not take the key
    // (it would send ^V); the browser's paste then reaches the terminal, which sends it
    // bracketed when the program asked for that.
    const pasteKey =
      (ctrl && key === 'v') || (cmd && key === 'v') || (event.shiftKey && !event.ctrlKey && key === 'insert');
    if (pasteKey) return false;

    // Out of the terminal: Ctrl+Shift+Tab moves the keyboard on (Tab stays the shell's).
    if (ctrl && event.shiftKey && key === 'tab') {
      event.preventDefault();
      on.leave();
      return false;
    }
    return true;
  };
}

/**
 * Copy-on-select: when the mouse button that made a selection in the terminal is released,
 * the selection goes to the clipboard (as in PuTTY and many X terminals). Only while
 * `enabled()` holds; a program that reads the mouse makes no selection, so nothing is copied.
 * @param {import('@xterm/xterm').Terminal} term
 * @param {HTMLElement} element the terminal's element
 * @param {() => boolean} enabled
 * @param {object} on callbacks: copied(text) after a copy
 */
export function copyOnSelect(term, element, enabled, on) {
  let pressed = false;
  element.addEventListener('mousedown', () => {
    pressed = true;
  });
  // On the window: a drag may end outside the terminal.
  window.addEventListener('mouseup', () => {
    if (!pressed) return;
    pressed = false;
    if (enabled() && term.hasSelection()) copy(term.getSelection(), on);
  });
}

async function copy(text, on) {
  try {
    await navigator.clipboard.writeText(text);
    on.copied(text);
  } catch {
    // Without clipboard access (an insecure origin) the browser's own copy still works.
    document.execCommand('copy');
    on.copied(text);
  }
}
