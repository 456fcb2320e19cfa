// Dovecot's `file:` dict format (spec §4.3; dict-file.c, strescape.c): alternating key and
// value lines, each ending in LF, escaped with str_tabescape. Pure functions, no I/O.

import { badFormat } from '../errors.ts';

/** A dict larger than this is refused (a mail_crypt dict is a few KiB). */
export const MAX_DICT_BYTES = 16 * 1024 * 1024;

const ESC: Record<string, string> = { '1': '\x01', t: '\t', r: '\r', n: '\n', '0': '\0' };
const UNESC: Record<string, string> = { '\x01': '\x011', '\t': '\x01t', '\r': '\x01r', '\n': '\x01n' };

/** str_tabunescape: `\x01` followed by 1, t, r, n or 0. */
export function unescape(s: string): string {
  if (!s.includes('\x01')) return s;
  return s.replace(/\x01(.?)/gs, (_m, c: string) => {
    const v = ESC[c];
    if (v === undefined) throw badFormat('dict: invalid escape sequence');
    return v;
  });
}

/** str_append_tabescaped. NUL cannot be written (Dovecot cannot either). */
export function escape(s: string): string {
  if (s.includes('\0')) throw badFormat('dict: NUL cannot be stored');
  return s.replace(/[\x01\t\r\n]/g, (c) => UNESC[c]!);
}

/**
 * Parse a dict file. As in dict-file.c, reading stops at a key without a value (a final line
 * with no LF still counts as a line).
 * @throws MailsealError bad-format (too large, bad escapes)
 */
export function parseDict(text: string): Map<string, string> {
  if (text.length > MAX_DICT_BYTES) throw badFormat('dict: file too large');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const m = new Map<string, string>();
  for (let i = 0; i + 1 < lines.length; i += 2) m.set(unescape(lines[i]!), unescape(lines[i + 1]!));
  return m;
}

/** Serialise a dict: `key\nvalue\n` per entry, escaped. */
export function serializeDict(m: Map<string, string>): string {
  let out = '';
  for (const [k, v] of m) out += `${escape(k)}\n${escape(v)}\n`;
  return out;
}
