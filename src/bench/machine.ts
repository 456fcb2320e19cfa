// What the figures were measured on: CPU, cores, kernel, Node and both OpenSSLs, Dovecot, and
// the filesystem the bench's mail root lives on (the disk is half the story of durable mail).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface MachineInfo {
  cpu: string;
  cores: number;
  kernel: string;
  node: string;
  /** Node's bundled OpenSSL. */
  openssl: string;
  /** `openssl version` of the system, if installed. */
  systemOpenssl: string | null;
  dovecot: string | null;
  /** Mount point, type and device of the bench dir. */
  filesystem: string;
}

function systemOpenssl(): string | null {
  try {
    return execFileSync('openssl', ['version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

/** The /proc/mounts entry with the longest mount point that contains `dir`. */
function filesystemOf(dir: string): string {
  try {
    let best: string[] | null = null;
    for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const f = line.split(' ');
      if (f.length < 3) continue;
      const mp = f[1]!.replace(/\\040/g, ' ');
      if ((dir === mp || dir.startsWith(mp.endsWith('/') ? mp : mp + path.sep)) && (!best || mp.length > best[1]!.length)) best = f;
    }
    return best ? `${best[2]} on ${best[1]} (${best[0]})` : 'unknown';
  } catch {
    return 'unknown';
  }
}

export function machineInfo(dir: string, dovecot: string | undefined): MachineInfo {
  return {
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    openssl: process.versions.openssl ?? 'unknown',
    systemOpenssl: systemOpenssl(),
    dovecot: dovecot ?? null,
    filesystem: filesystemOf(path.resolve(dir)),
  };
}
