// Output drawn again on resume (or reload) may hold queries a program sent long ago
// (cursor position, device attributes, modes, colours). xterm.js answers queries through
// the same path as typed input, so those answers would reach the shell or vi as keystrokes
// (`^[[6;5R` on the command line). This guard swallows the queries in replayed output and
// answers them only in live output. Invariant: user input is never filtered; only the
// terminal's answers to queries parsed while replayed output is being written.

// Output that arrives this soon after a resumed hello is the server's drawing of the screen.
const REPLAY_WINDOW_MS = 1000;

export class ReplayGuard {
  constructor(term) {
    this.term = term;
    this.replayUntil = 0;
    // Replayed writes not yet parsed; queries are swallowed while there are any.
    this.pending = 0;
    const swallow = () => this.pending > 0;
    const parser = term.parser;
    // DSR and DECXCPR (cursor position, status), DA1/DA2/DA3, DECRQM, window reports.
    for (const id of [
      { final: 'n' },
      { prefix: '?', final: 'n' },
      { final: 'c' },
      { prefix: '>', final: 'c' },
      { prefix: '=', final: 'c' },
      { intermediates: '$', final: 'p' },
      { prefix: '?', intermediates: '$', final: 'p' },
      { final: 't' },
    ]) {
      parser.registerCsiHandler(id, swallow);
    }
    // DECRQSS and XTGETTCAP.
    parser.registerDcsHandler({ intermediates: '$', final: 'q' }, swallow);
    parser.registerDcsHandler({ intermediates: '+', final: 'q' }, swallow);
    // Colour queries (`OSC 4;n;?`, `OSC 10;?` …).
    for (const osc of [4, 10, 11, 12]) parser.registerOscHandler(osc, (data) => swallow() && data.includes('?'));
  }

  /** A resumed session's drawing follows. */
  expectReplay() {
    this.replayUntil = Date.now() + REPLAY_WINDOW_MS;
  }

  get replaying() {
    return this.pending > 0;
  }

  write(data) {
    if (Date.now() >= this.replayUntil) {
      this.term.write(data);
      return;
    }
    this.pending += 1;
    this.term.write(data, () => {
      this.pending -= 1;
    });
  }
}
