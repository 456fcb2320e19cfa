// One error class for the whole agent, and the table that maps its codes to LMTP replies and
// CLI exit codes (design.md "LMTP replies"). Anything that is not a MailsealError is `internal`:
// temporary (451) unless proven permanent.

export type ErrorCode =
  | 'no-user' // unknown or disabled recipient
  | 'bad-address' // malformed address, path tricks
  | 'too-big' // over the size limit
  | 'no-key' // user or folder key missing / unusable
  | 'disk-full' // ENOSPC / EDQUOT
  | 'bad-format' // a parser met bytes it does not accept
  | 'bad-password' // wrong password or recovery code
  | 'locked' // a dotlock could not be taken in time
  | 'usage' // a CLI user mistake
  | 'internal';

interface Reply {
  responseCode: number;
  enhanced: string;
  exit: number;
}

const replies: Record<ErrorCode, Reply> = {
  'no-user': { responseCode: 550, enhanced: '5.1.1', exit: 1 },
  'bad-address': { responseCode: 550, enhanced: '5.1.3', exit: 1 },
  'too-big': { responseCode: 552, enhanced: '5.3.4', exit: 1 },
  'no-key': { responseCode: 451, enhanced: '4.3.0', exit: 1 },
  'disk-full': { responseCode: 452, enhanced: '4.3.1', exit: 1 },
  'bad-format': { responseCode: 451, enhanced: '4.3.0', exit: 1 },
  'bad-password': { responseCode: 451, enhanced: '4.3.0', exit: 1 },
  locked: { responseCode: 451, enhanced: '4.3.0', exit: 1 },
  usage: { responseCode: 501, enhanced: '5.5.4', exit: 2 },
  internal: { responseCode: 451, enhanced: '4.3.0', exit: 1 },
};

export class MailsealError extends Error {
  readonly code: ErrorCode;
  /** SMTP reply code; smtp-server reads this property by this name. */
  readonly responseCode: number;
  readonly enhanced: string;
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MailsealError';
    this.code = code;
    const r = replies[code];
    this.responseCode = r.responseCode;
    this.enhanced = r.enhanced;
    this.exitCode = r.exit;
  }
}

/** Shorthand for the parsers, which only ever throw `bad-format`. */
export function badFormat(message: string, cause?: unknown): MailsealError {
  return new MailsealError('bad-format', message, cause === undefined ? undefined : { cause });
}

/** Classify any thrown value: MailsealError passes, filesystem-full errors become disk-full. */
export function toMailsealError(err: unknown): MailsealError {
  if (err instanceof MailsealError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new MailsealError('disk-full', 'no space left on the mail store', { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new MailsealError('internal', message, { cause: err });
}
