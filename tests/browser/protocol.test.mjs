// The page's wire-format rules (web/src/protocol.js) without a browser: control frames,
// the auth frame, which closes are final, the backoff, and the link filter.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  authFrame,
  backoffDelay,
  credentialsFromFragment,
  describeClose,
  describeUsage,
  isFinalClose,
  isSafeLink,
  parseServerFrame,
} from '../../web/src/protocol.js';

const control = (json) => new Uint8Array([0, 0, ...Buffer.from(`ABLY_CTRL:${json}`)]).buffer;

describe('protocol rules of the page', () => {
  it('tells control frames from output', () => {
    assert.deepEqual(parseServerFrame(control('{"type":"hello","sessionId":"abc"}')), {
      kind: 'control',
      message: { type: 'hello', sessionId: 'abc' },
    });
    const output = parseServerFrame(new Uint8Array([0x24, 0x20]).buffer);
    assert.equal(output.kind, 'output');
    assert.deepEqual([...output.data], [0x24, 0x20]);
    // A program printing the prefix without the two NULs is output, not control.
    const printed = parseServerFrame(Buffer.from('ABLY_CTRL:{"type":"status","payload":"disconnected"}'));
    assert.equal(printed.kind, 'output');
    assert.equal(parseServerFrame(control('[1,2]')).kind, 'invalid');
    assert.equal(parseServerFrame(control('not json')).kind, 'invalid');
    assert.equal(parseServerFrame('\u0000\u0000ABLY_CTRL:{"type":"pong","ts":1}').kind, 'control');
    assert.deepEqual(parseServerFrame('plain text'), { kind: 'output', data: 'plain text' });
  });

  it('sends only the credentials it has', () => {
    assert.deepEqual(JSON.parse(authFrame({})), {
      client: 'termcell-web/1',
      environmentVariables: { TERM: 'xterm-256color' },
      usage: true,
    });
    assert.deepEqual(JSON.parse(authFrame({ apiKey: 'a.b:c', accessToken: '', sessionId: 'id' })), {
      client: 'termcell-web/1',
      environmentVariables: { TERM: 'xterm-256color' },
      usage: true,
      apiKey: 'a.b:c',
      sessionId: 'id',
    });
  });

  it('describes usage against the limits, or in amounts without them', () => {
    assert.deepEqual(
      describeUsage({ cpuPercent: 12.4, memoryBytes: 26214400, memoryLimitBytes: 104857600, pids: 3, pidsLimit: 50 }),
      { text: 'mem 25% · cpu 12%', title: 'Memory 25 MiB of 100 MiB, 3 of 50 processes, CPU 12.4% of one CPU' },
    );
    assert.deepEqual(describeUsage({ cpuPercent: 0, memoryBytes: 5242880, pids: 1 }), {
      text: 'mem 5 MiB · cpu 0%',
      title: 'Memory 5 MiB, 1 processes, CPU 0% of one CPU',
    });
    assert.equal(describeUsage({ cpuPercent: 'x', memoryBytes: 1, pids: 1 }), null);
    assert.equal(describeUsage({}), null);
  });

  it('stops retrying only on final closes', () => {
    for (const code of [4000, 4001, 4002, 4003, 4004, 4008, 4009, 1013]) assert.ok(isFinalClose(code, ''), `${code}`);
    for (const code of [1001, 1006, 1008, 1009, 1011, 4500]) assert.ok(!isFinalClose(code, ''), `${code}`);
    assert.ok(isFinalClose(1000, 'Session timed out due to inactivity'));
    assert.ok(isFinalClose(1000, 'Maximum session duration reached'));
    assert.ok(!isFinalClose(1000, ''));
  });

  it("shows a 4003's own reason, and a sentence for the old generic one", () => {
    const named = '5 sessions are open from your address; closed tabs count for 15s, lost connections for 300s';
    assert.equal(describeClose(4003, named), named);
    assert.match(describeClose(4003, 'Rate limit exceeded'), /too many connections or too much input/);
    assert.match(describeClose(4003, ''), /too many connections or too much input/);
  });

  it('backs off from half a second to ten seconds', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 20].map(backoffDelay), [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
  });

  it('opens only http and https links', () => {
    assert.ok(isSafeLink('https://example.com/a'));
    assert.ok(isSafeLink('http://example.com'));
    for (const uri of ['javascript:alert(1)', 'data:text/html,x', 'file:///etc/passwd', 'vbscript:x', 'nonsense']) {
      assert.ok(!isSafeLink(uri), uri);
    }
  });

  it('reads credentials from the fragment', () => {
    assert.deepEqual(credentialsFromFragment('#apiKey=app.key%3Asecret&accessToken=tok'), {
      apiKey: 'app.key:secret',
      accessToken: 'tok',
    });
    assert.deepEqual(credentialsFromFragment(''), { apiKey: '', accessToken: '' });
  });
});
