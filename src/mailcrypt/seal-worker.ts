// Worker thread body for SealPool: wraps message keys (ephemeral keygen, ECDH, PBKDF2, check
// hash) off the agent's event loop. Input: the folder public key's curve and point; output: the
// header and key material of makeSealParams().

import { parentPort } from 'node:worker_threads';
import { curveByName } from './curves.ts';
import { type EcPublicKey, publicKeyFromPoint } from './keys.ts';
import { makeSealParams } from './seal.ts';

interface Request {
  id: number;
  curve: string;
  point: Uint8Array;
}

const keys = new Map<string, EcPublicKey>();

parentPort!.on('message', (req: Request) => {
  const cacheKey = `${req.curve}:${Buffer.from(req.point).toString('hex')}`;
  let key = keys.get(cacheKey);
  Promise.resolve()
    .then(() => {
      if (!key) {
        key = publicKeyFromPoint(curveByName(req.curve), Buffer.from(req.point));
        if (keys.size > 10_000) keys.clear();
        keys.set(cacheKey, key);
      }
      return makeSealParams(key);
    })
    .then(
      (p) => {
        const header = new Uint8Array(p.header);
        const kd = new Uint8Array(p.kd);
        p.kd.fill(0);
        parentPort!.postMessage({ id: req.id, header, kd }, [header.buffer, kd.buffer]);
      },
      (err: Error) => parentPort!.postMessage({ id: req.id, error: err.message }),
    );
});

// Loaded (tsx and every import resolved): SealPool.ready() waits for this.
parentPort!.postMessage({ ready: true });
