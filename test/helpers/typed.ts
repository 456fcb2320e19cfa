// For fuzz tests: run a parser; a result or a bad-format MailsealError is fine, anything else
// (another exception) fails the property.

import { MailsealError } from '../../src/errors.ts';

export function typed(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch (err) {
    if (err instanceof MailsealError && err.code === 'bad-format') return true;
    throw err;
  }
}
