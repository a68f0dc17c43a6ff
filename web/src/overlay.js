// The states of the page that are not a working terminal, shown where the user looks: an
// overlay over the terminal (ended, refused, connection lost) with the reason and one
// action (a button, also Enter), the state in the tab's title, and a polite announcement
// for screen readers. Knows nothing of the connection: main.js says what to show.

const APP_NAME = 'termcell';

export class StateView {
  /**
   * @param {object} ui elements: overlay, overlayTitle, overlayReason, overlayAction,
   *   announce.
   */
  constructor(ui) {
    this.ui = ui;
    this.action = null;
    this.programTitle = '';
    this.stateLabel = '';
    ui.overlayAction.addEventListener('click', () => this.act());
  }

  get visible() {
    return !this.ui.overlay.hidden;
  }

  /**
   * Shows the overlay. `focus`: move the keyboard to its button (when nothing else can be
   * typed; while reconnecting the terminal keeps the keyboard, and Enter there acts).
   */
  show({ title, reason, actionLabel, action, focus }) {
    const { ui } = this;
    ui.overlayTitle.textContent = title;
    ui.overlayReason.textContent = reason;
    ui.overlayAction.textContent = actionLabel;
    this.action = action;
    ui.overlay.hidden = false;
    if (focus) ui.overlayAction.focus();
  }

  /** Updates the reason line of a visible overlay (a countdown). */
  setReason(reason) {
    this.ui.overlayReason.textContent = reason;
  }

  hide() {
    this.ui.overlay.hidden = true;
    this.action = null;
  }

  /** The overlay's action, once: from the button or from Enter. */
  act() {
    const action = this.action;
    if (!action) return false;
    this.hide();
    action();
    return true;
  }

  /** The tab's title: the state first when it is not "connected", then the program's title. */
  setTitle({ state, program }) {
    if (state !== undefined) this.stateLabel = state;
    if (program !== undefined) this.programTitle = program;
    const name = this.programTitle ? `${this.programTitle} · ${APP_NAME}` : APP_NAME;
    document.title = this.stateLabel ? `[${this.stateLabel}] ${name}` : name;
  }

  /** Says `text` to screen readers without interrupting them. */
  announce(text) {
    // A changed text node is what live regions announce; the same text twice needs a reset.
    this.ui.announce.textContent = '';
    setTimeout(() => {
      this.ui.announce.textContent = text;
    }, 50);
  }
}
