// Structured logging (pino): one JSON line per event to stderr. Secrets and message content are
// never passed to the logger; the redact list is a second line of defence.

import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level = 'info', destination: number | string = 2): Logger {
  return pino(
    {
      level,
      base: { svc: 'mailseal' },
      redact: { paths: ['password', 'secret', 'recoveryCode', '*.password', '*.secret', '*.recoveryCode'], censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ dest: destination, sync: false }),
  );
}
