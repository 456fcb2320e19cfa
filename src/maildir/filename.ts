// Maildir file names as Dovecot writes them: `<sec>.M<usec>P<pid>Q<n>.<host>`, then
// `,S=<size>,W=<vsize>` (decrypted sizes, spec §2.5) and, in cur/, `:2,<flags>`.

export interface NameParts {
  sec: number;
  usec: number;
  pid: number;
  seq: number;
  host: string;
}

/** Dovecot escapes `/` and `:` in the host part. */
export function escapeHost(host: string): string {
  return host.replace(/\//g, '\\057').replace(/:/g, '\\072');
}

export function makeMaildirName(p: NameParts): string {
  return `${p.sec}.M${p.usec}P${p.pid}Q${p.seq}.${escapeHost(p.host)}`;
}

/** The S= and W= sizes of a name, if present. */
export function parseMaildirName(name: string): { base: string; size?: number; vsize?: number; flags?: string } {
  const colon = name.indexOf(':2,');
  const flags = colon >= 0 ? name.slice(colon + 3) : undefined;
  const main = colon >= 0 ? name.slice(0, colon) : name;
  const [base, ...ext] = main.split(',');
  const out: { base: string; size?: number; vsize?: number; flags?: string } = { base: base! };
  for (const e of ext) {
    const m = /^([SW])=(\d+)$/.exec(e);
    if (m) out[m[1] === 'S' ? 'size' : 'vsize'] = Number(m[2]);
  }
  if (flags !== undefined) out.flags = flags;
  return out;
}
