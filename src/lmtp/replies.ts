// LMTP reply text and enhanced status codes (design.md "LMTP replies").
//
// smtp-server picks an enhanced status code from the numeric code alone for replies built from
// an error (550 → 5.1.1, 452 → 4.2.2, …), which is wrong for several of ours (550 5.1.3 for a bad
// address, 452 4.3.1 for a full disk). Our reply texts therefore start with their enhanced code,
// and this shim moves it to where smtp-server puts enhanced codes, instead of its guess.

import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { MailsealError } from '../errors.ts';

const ENHANCED = /^([245]\.\d{1,3}\.\d{1,3}) ([^]*)$/;

interface ConnectionInternals {
  send(code: number, data?: unknown, context?: unknown): void;
  _getEnhancedStatusCode(code: number, context?: unknown): string;
  _useEnhancedStatusCodes(): boolean;
  __enhanced?: string;
}

let installed = false;

/** Patch smtp-server's connection once so that a leading "X.Y.Z " in a reply is used as its enhanced code. */
export function installEnhancedCodes(): void {
  if (installed) return;
  installed = true;
  const proto = (SMTPConnection as unknown as { prototype: ConnectionInternals }).prototype;
  const send = proto.send;
  const pick = proto._getEnhancedStatusCode;
  proto.send = function (this: ConnectionInternals, code, data, context) {
    const m = typeof data === 'string' ? ENHANCED.exec(data) : null;
    if (!m) return send.call(this, code, data, context);
    this.__enhanced = m[1];
    try {
      return send.call(this, code, m[2], context);
    } finally {
      this.__enhanced = undefined;
    }
  };
  proto._getEnhancedStatusCode = function (this: ConnectionInternals, code, context) {
    if (this.__enhanced && context !== false && this._useEnhancedStatusCodes()) return this.__enhanced;
    return pick.call(this, code, context);
  };
}

/** An Error smtp-server sends as the reply for one recipient. */
export function replyError(err: MailsealError, text?: string): Error & { responseCode: number } {
  const e = new Error(`${err.enhanced} ${text ?? err.message}`) as Error & { responseCode: number };
  e.responseCode = err.responseCode;
  return e;
}

/** The 250 text for a stored message: `2.0.0 <rcpt> <id> Saved` (as Dovecot words it). */
export function savedText(rcpt: string, id: string): string {
  return `2.0.0 <${rcpt}> ${id} Saved`;
}
