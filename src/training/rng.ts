// The seeded Philox RNG, re-exported where training code has always imported it; it lives in engine/rng.ts so model/ (LoRA init) can use it too.
export { detCosSin2Pi, detLog, philox4x32, Rng } from '../engine/rng.js';
