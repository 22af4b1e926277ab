// The page's handle on the training worker (Comlink over the typed protocol).
import * as Comlink from 'comlink';
import type { TrainerApi } from '../protocol/index.js';

let api: Comlink.Remote<TrainerApi> | null = null;

/** The page's one training worker, started at the first call; every call goes through the protocol's TrainerApi. */
export function trainer(): Comlink.Remote<TrainerApi> {
  if (!api) api = Comlink.wrap<TrainerApi>(new Worker(new URL('../../workers/trainer.worker.ts', import.meta.url), { type: 'module' }));
  return api;
}
