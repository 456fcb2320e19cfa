// The native addon (src/native/, built by `npm ci` through node-gyp). Key wrapping: the fixed
// per-message work of mail_crypt v2 — message key, ephemeral EC key + ECDH through the system's
// libcrypto.so.3 (deep-bound: node's own OpenSSL has no fast P-521), PBKDF2-HMAC-SHA256 and the
// check-hash chain with SHA-NI where the CPU has it, the key's AES-256-CBC — in one call on
// libuv's threadpool (design.md, "Where the CPU goes"). If the addon is not built, libcrypto.so.3
// is missing, or MAILSEAL_NATIVE=0, callers use the node:crypto path (in worker threads). Results
// are checked against node:crypto in test/mailcrypt/native.test.ts and, end to end, by real
// Dovecot. Its file jobs (durable write, directory fsync, uidlist head) and CRLF → LF serve
// src/maildir and src/deliver, through nativeAddon().

import { createRequire } from 'node:module';
import { badFormat, MailsealError } from '../errors.ts';
import type { Curve } from './curves.ts';

/** A large message's tmp/ file in the addon (src/native/direct.c): O_DIRECT where the file system takes it. */
export type DirectFile = { readonly __directFile: unique symbol };

export interface Addon {
  /** The interface's version (ADDON_ABI in seal.c); absent before 2. */
  abi?: number;
  /** With `probe`, the same job then reads what the key lookup needs (see Probe). */
  seal(curve: string, field: number, point: Buffer, rounds: number, probe?: ProbePaths): Promise<[Buffer, Buffer, Buffer, Buffer, (Probe | null)?]>;
  pbkdf2(password: Buffer, salt: Buffer, rounds: number, length: number): Buffer;
  chain(h0: Buffer, rounds: number): Buffer;
  /** With `syncDir`, that directory is fsynced after the rename, in the same job. */
  writeDurable(tmpPath: string, finalPath: string, buffers: Buffer[], syncDir?: string): Promise<void>;
  syncDir(dir: string): Promise<void>;
  /** Create `tmpPath` (O_EXCL, 0600), O_DIRECT on where the file system takes it; one job. */
  fileOpen(tmpPath: string): Promise<DirectFile>;
  /** Append `buffers` (≤ 64); whole 4 KiB blocks go to the disk now, the rest with the next call. */
  fileAppend(f: DirectFile, buffers: Buffer[]): Promise<void>;
  /** Append the last `buffers`, fsync, close, rename to `finalPath`; with `syncDir`, fsync it too. */
  fileCommit(f: DirectFile, finalPath: string, buffers: Buffer[], syncDir?: string): Promise<void>;
  /** Close and unlink the tmp file (resolves at once if already committed or aborted). */
  fileAbort(f: DirectFile): Promise<void>;
  /** Whether O_DIRECT is on for `f`. */
  fileDirect(f: DirectFile): boolean;
  /** The first `length` (≤ 4096) bytes of a file, or null if it does not exist; one job. */
  readHead(file: string, length: number): Promise<Buffer | null>;
  /** CRLF → LF of `src` into `dst`; state = [held CR, LFs written]; returns the bytes written. */
  lfConvert(src: Buffer, dst: Buffer, state: Float64Array): number;
  /** Which SHA-256 compression runs: "sha-ni" or "portable". */
  sha256: string;
  /** The EC library, or null (then `ecError` says why). */
  ec: string | null;
  ecError: string | null;
  /** P-521 ECDH through per-key fixed-base tables (libcrypto's nistp521 code is there). */
  p521Tables: boolean;
  /** For tests: [tables built, seals through a table, tables evicted] since the addon loaded. */
  p521TableStats(): [number, number, number];
}

/** A folder's dovecot-uidlist and its user's dict: what a delivery's key lookup reads. */
export type ProbePaths = [uidlist: string, dict: string];

/**
 * What the key lookup reads (FolderKeys.activeKey), read in the seal's job instead of two jobs of
 * its own: the uidlist's first 512 bytes (null: no such file) and the dict's identity (null: no
 * dict), ino/size/mtimeMs computed as node:fs computes them.
 */
export interface Probe {
  head: Buffer | null;
  dict: { ino: number; size: number; mtimeMs: number } | null;
}

/** One message key, wrapped for the header (spec §2.3). */
export interface Wrapped {
  /** The ephemeral public point (uncompressed). */
  point: Buffer;
  /** kd encrypted with AES-256-CBC under PBKDF2(ECDH secret, point). */
  encryptedKey: Buffer;
  /** The check hash of kd. */
  check: Buffer;
  /** The 60 bytes of key material: GCM key(32) ‖ IV(12) ‖ AAD(16). */
  kd: Buffer;
  /** When asked for: the lookup's reads, done after the seal in the same job (null: a read failed). */
  probe?: Probe | null;
}

export interface NativeSeal {
  /** For logs and `bench`: "libcrypto.so.3 (system), sha-ni". */
  readonly description: string;
  /**
   * A random message key kd, an ephemeral key pair on `curve`, ECDH with `peerPoint`,
   * t = PBKDF2(secret, point, rounds, 48), kd under AES-256-CBC with t, and the check hash of kd;
   * t and the secret never leave the addon. Runs on the threadpool.
   */
  wrap(curve: Curve, peerPoint: Buffer, rounds: number, probe?: ProbePaths): Promise<Wrapped>;
}

/** The addon interface this code calls (ADDON_ABI in src/native/seal.c). */
const ABI = 2;

/** From src/mailcrypt/ and from dist/mailcrypt/ alike: the addon is built in src/native/. */
const ADDON = '../../src/native/build/Release/mailseal_native.node';

let addon: Addon | null | undefined;
let why = '';

/** The addon itself (also when its EC part is unavailable), or null with the reason in `nativeStatus()`. */
export function nativeAddon(): Addon | null {
  if (addon !== undefined) return addon;
  if (process.env.MAILSEAL_NATIVE === '0') {
    why = 'MAILSEAL_NATIVE=0';
    return (addon = null);
  }
  try {
    addon = createRequire(import.meta.url)(ADDON) as Addon;
  } catch (err) {
    why = `addon not built (${(err as Error).message.split('\n')[0]}): run "npm run build:native"`;
    addon = null;
  }
  if (addon && addon.abi !== ABI) {
    // A build/ left from another version would fail calls it does not know: not used at all.
    why = `addon built from another version (interface ${addon.abi ?? 1}, this code needs ${ABI}): run "npm run build:native"`;
    addon = null;
  }
  return addon;
}

let seal: NativeSeal | null | undefined;

/** The native path, or null where it is not available (see `nativeStatus()`). */
export function nativeSeal(): NativeSeal | null {
  if (seal !== undefined) return seal;
  const a = nativeAddon();
  if (a && !a.ec) why = `no system libcrypto (${a.ecError})`;
  if (!a || !a.ec) return (seal = null);
  seal = {
    description: `${a.ec}, ${a.sha256}${a.p521Tables ? ', P-521 key tables' : ''}`,
    async wrap(curve, peerPoint, rounds, probe) {
      try {
        const [point, encryptedKey, check, kd, found] = await a.seal(curve.name, curve.size, peerPoint, rounds, probe);
        return probe ? { point, encryptedKey, check, kd, probe: found ?? null } : { point, encryptedKey, check, kd };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EBADPOINT') throw badFormat(`invalid ${curve.name} point`);
        throw new MailsealError('internal', `sealing failed: ${(err as Error).message}`);
      }
    },
  };
  return seal;
}

/** One line for logs and reports: which path seals messages, and why not the native one. */
export function nativeStatus(): string {
  const s = nativeSeal();
  return s ? `native (${s.description})` : `node:crypto in worker threads (slower for P-521: ${why})`;
}
