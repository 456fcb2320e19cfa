// CRLF → LF as Dovecot stores it, with S= and W= counted while streaming, whatever the chunking.

import test from 'ava';
import fc from 'fast-check';
import { LfConverter } from '../../src/deliver/lf.ts';
import { nativeAddon } from '../../src/mailcrypt/native.ts';
import { rfc5322Date, traceHeaders } from '../../src/deliver/trace.ts';

// Every behaviour is checked on the native converter (src/native/lf.c) and on the TypeScript one.
let portable = false;
function run(chunks: Buffer[]) {
  const c = new LfConverter(portable);
  const out = Buffer.concat([...chunks.map((b) => Buffer.from(c.push(b))), c.end()]); // a push's result lives until the next

  return { out, size: c.size, vsize: c.vsize };
}

test('the native converter is in use by default', (t) => {
  t.truthy(nativeAddon()?.lfConvert);
  // A chunk without CR comes back as a view of itself from the TypeScript converter and as a copy
  // from the native one (large enough to be outside Buffer's shared pool).
  const src = Buffer.alloc(10_000, 'a');
  t.not(new LfConverter().push(src).buffer, src.buffer);
  t.is(new LfConverter(true).push(src).buffer, src.buffer);
});

for (const p of [false, true]) {
const tag = p ? ' (TypeScript)' : ' (native)';
test.serial(`CRLF becomes LF; bare LF and lone CR stay; sizes are the LF and CRLF sizes${tag}`, (t) => {
  portable = p;
  const { out, size, vsize } = run([Buffer.from('a\r\nb\nc\rd\r\n\r\n')]);
  t.is(out.toString(), 'a\nb\nc\rd\n\n');
  t.is(size, out.length);
  t.is(vsize, out.length + 4);
});

test.serial(`a CRLF split across chunks is still one LF; a final lone CR is kept${tag}`, (t) => {
  portable = p;
  t.is(run([Buffer.from('a\r'), Buffer.from('\nb\r')]).out.toString(), 'a\nb\r');
  t.is(run([Buffer.from('\r'), Buffer.from('\r'), Buffer.from('\n')]).out.toString(), '\r\n');
});

test.serial(`any chunking gives the same bytes as converting the whole (property)${tag}`, (t) => {
  portable = p;
  fc.assert(
    fc.property(fc.array(fc.constantFrom('\r', '\n', 'x', '\r\n', 'é'), { maxLength: 60 }), fc.array(fc.nat(80), { maxLength: 6 }), (parts, cuts) => {
      const whole = Buffer.from(parts.join(''));
      const points = [...new Set(cuts.map((c) => c % (whole.length + 1)))].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let prev = 0;
      for (const p of [...points, whole.length]) {
        chunks.push(whole.subarray(prev, p));
        prev = p;
      }
      const expect = Buffer.from(whole.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
      const r = run(chunks);
      const lines = expect.toString('latin1').split('\n').length - 1;
      return r.out.equals(expect) && r.size === expect.length && r.vsize === expect.length + lines;
    }),
    { numRuns: process.env.SLOW ? 5000 : 500 },
  );
  t.pass();
});
}

test('trace headers are the ones Dovecot LMTP writes, and client tokens cannot inject lines', (t) => {
  const d = new Date(Date.UTC(2026, 10, 23, 7, 52, 54));
  t.is(rfc5322Date(d), 'Mon, 23 Nov 2026 07:52:54 +0000');
  const h = traceHeaders({ from: 'sender@example.org', rcpt: 'p521@example.test', helo: '[127.0.0.1]', remoteAddress: '127.0.0.1', host: 'vm', id: 'ID1', date: d }).toString();
  t.is(h, 'Return-Path: <sender@example.org>\nDelivered-To: p521@example.test\nReceived: from [127.0.0.1] ([127.0.0.1])\n' +
    '\tby vm with LMTP\n\tid ID1\n\t(envelope-from <sender@example.org>)\n\tfor <p521@example.test>; Mon, 23 Nov 2026 07:52:54 +0000\n');
  const evil = traceHeaders({ from: 'a>\r\nX-Evil: 1', rcpt: 'b@c', helo: 'h\nX: y', remoteAddress: '::1', host: 'vm', id: 'x', date: d }).toString();
  t.is(evil.split('\n').length, 8);
  t.false(/\nX-Evil|\nX:/.test(evil));
});
