// A minimal LMTP client for tests that swaks cannot express (SMTPUTF8, a client that vanishes
// mid-DATA, exact bytes on the wire). Replies are parsed per RFC 2033: one per accepted RCPT.

import net from 'node:net';

export interface Reply {
  code: number;
  text: string;
}

export class LmtpClient {
  private buf = '';
  private waiters: ((r: Reply) => void)[] = [];
  private replies: Reply[] = [];
  private closed = false;

  private constructor(readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => {
      this.buf += d.toString('utf8');
      let i: number;
      let lines: string[] = [];
      while ((i = this.buf.indexOf('\r\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        lines.push(line);
        if (line[3] === ' ' || line.length === 3) {
          const r = { code: Number(line.slice(0, 3)), text: lines.map((l) => l.slice(4)).join('\n') };
          lines = [];
          const w = this.waiters.shift();
          if (w) w(r);
          else this.replies.push(r);
        }
      }
    });
    sock.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w({ code: 0, text: 'connection closed' });
    });
    sock.on('error', () => undefined);
  }

  static connect(port: number, host = '127.0.0.1'): Promise<LmtpClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, host, () => resolve(new LmtpClient(s)));
      s.once('error', reject);
    });
  }

  reply(timeoutMs = 60_000): Promise<Reply> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    if (this.closed) return Promise.resolve({ code: 0, text: 'connection closed' });
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no LMTP reply in time')), timeoutMs);
      this.waiters.push((x) => {
        clearTimeout(t);
        resolve(x);
      });
    });
  }

  async cmd(line: string): Promise<Reply> {
    this.sock.write(line + '\r\n');
    return this.reply();
  }

  /** Send a message body (CRLF lines), dot-stuffed, and the final dot. */
  sendData(body: Buffer): void {
    const s = body.toString('latin1').replace(/(^|\r\n)\./g, '$1..');
    this.sock.write(Buffer.from(s + (s.endsWith('\r\n') || s.length === 0 ? '.\r\n' : '\r\n.\r\n'), 'latin1'));
  }

  close(): void {
    this.sock.destroy();
  }
}

export interface Transaction {
  from: string;
  to: string[];
  body: Buffer;
  mailParams?: string;
}

/** LHLO, MAIL, RCPT…, DATA; returns the RCPT replies and the per-recipient DATA replies. */
export async function lmtpSend(port: number, tx: Transaction): Promise<{ rcpt: Reply[]; data: Reply[] }> {
  const c = await LmtpClient.connect(port);
  try {
    await c.reply();
    await c.cmd('LHLO test.client');
    const mail = await c.cmd(`MAIL FROM:<${tx.from}>${tx.mailParams ? ' ' + tx.mailParams : ''}`);
    if (mail.code !== 250) throw new Error(`MAIL FROM refused: ${mail.code} ${mail.text}`);
    const rcpt: Reply[] = [];
    for (const to of tx.to) rcpt.push(await c.cmd(`RCPT TO:<${to}>`));
    const data: Reply[] = [];
    if (rcpt.some((r) => r.code === 250)) {
      const go = await c.cmd('DATA');
      if (go.code !== 354) return { rcpt, data: [go] };
      c.sendData(tx.body);
      for (const r of rcpt) if (r.code === 250) data.push(await c.reply());
    }
    await c.cmd('QUIT').catch(() => undefined);
    return { rcpt, data };
  } finally {
    c.close();
  }
}
