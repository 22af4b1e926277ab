// One LoRA training step as a library call: noised latents through the U-Net, the loss, backward into the LoRA's gradients, clip and update.
//
// Everything random (noise, timesteps, captions, flips) is decided by the caller before a step, so a
// step is a pure function of its inputs: the trainer, the memory forecast on the meta device, the
// benchmarks and the golden tests against PyTorch all run this same code.
import { noGrad } from '../engine/autograd.js';
import { backward } from '../engine/grad.js';
import { huberLoss, mseLoss, scale } from '../engine/index.js';
import { globalGradNorm } from '../engine/optim/adamw.js';
import type { ArenaGroup, Optimizer } from '../engine/optim/optimizer.js';
import type { ParamArena } from '../engine/optim/arena.js';
import { keep, scope, tensor, type Tensor } from '../engine/tensor.js';
import { clipForward, type ClipConfig } from '../model/clip.js';
import { Layers } from '../model/layers.js';
import type { LoraNetwork } from '../model/lora.js';
import type { DeviceWeights } from '../model/pipeline.js';
import { unetForward, type UNetConfig } from '../model/unet.js';
import type { TrainConfig } from './config.js';
import { addNoise, alphasCumprod, minSnrWeight, predictionTarget } from './noise.js';

/** What a step runs: the frozen U-Net and text encoder with their tokenizer (a `Pipeline` has them all), and the LoRA it trains. */
export interface StepModel {
  unet: { config: UNetConfig; weights: DeviceWeights };
  clip: { config: ClipConfig; weights: DeviceWeights };
  tokenizer: { encodeForModel(text: string, maxLength: number): Int32Array };
  lora: LoraNetwork;
  /** Frozen text-encoder outputs by caption, [T, width] each: used for a micro-batch whose every caption has one. */
  contexts?: ReadonlyMap<string, Float32Array>;
}

/** The settings a step reads (`stepSettings(config)` makes them from a TrainConfig). */
export interface StepSettings extends Pick<TrainConfig, 'prediction' | 'loss' | 'huberDelta' | 'minSnrGamma' | 'gradientCheckpointing' | 'trainTextEncoder' | 'clipSkip' | 'maxGradNorm'> {
  /** ᾱ_t of the noise schedule, index t = 0 … 999. */
  alphasCumprod: Float64Array;
}

/** A step's settings from a TrainConfig: its loss settings and the noise schedule it names. */
export function stepSettings(c: TrainConfig): StepSettings {
  const { prediction, loss, huberDelta, minSnrGamma, gradientCheckpointing, trainTextEncoder, clipSkip, maxGradNorm } = c;
  return { prediction, loss, huberDelta, minSnrGamma, gradientCheckpointing, trainTextEncoder, clipSkip, maxGradNorm, alphasCumprod: alphasCumprod(c.zeroTerminalSnr) };
}

/** One micro-batch of B samples, every random choice already made. */
export interface MicroBatch {
  /** Clean latents x0 (VAE output times its scaling factor), [B, C, height, width] row-major; C = the U-Net's in-channels. */
  latents: Float32Array;
  /** The noise ε added to them, [B, C, height, width]. */
  noise: Float32Array;
  /** One timestep per sample, in [0, alphasCumprod.length). */
  timesteps: number[];
  /** One caption per sample (after shuffling and dropout). */
  captions: string[];
  /** Latent height and width (image size over the VAE's factor). */
  height: number;
  width: number;
}

/** The update of one optimizer step. */
export interface UpdateOptions {
  /** This update's number, 1 for the first: the optimizer's bias correction and the dropout masks' seeds. */
  step: number;
  /** Learning rates of the U-Net's and the text encoder's LoRA this step. */
  lr: { unet: number; te: number };
}

/** What a step gives back once the GPU has run it. */
export interface StepResult {
  /** The mean of the micro-batches' losses (each before the 1/accumulation scale). */
  loss: number;
  /** The loss or a gradient was NaN or infinite: the update was skipped, nothing changed. */
  nonFinite: boolean;
  /** Each micro-batch's per-sample losses (weighted as in the mean), in batch order: the per-image training loss. */
  sampleLosses?: number[][];
}

/** A step encoded but not yet read back: read it later (the next step can be encoded meanwhile). */
export interface PendingStep {
  /** Each micro-batch's loss [] and the flag [1] the optimizer raises on a non-finite norm. */
  readonly losses: readonly Tensor[];
  readonly flag: Tensor;
  /** Waits for the GPU, then frees the tensors. */
  read(): Promise<StepResult>;
  /** Frees the tensors unread (the meta device, which has nothing to read). */
  dispose(): void;
}

/** The LoRA's parameter arenas, U-Net first. */
export function loraArenas(lora: LoraNetwork): ParamArena[] {
  return [lora.arenas.unet, ...(lora.arenas.te ? [lora.arenas.te] : [])];
}

/** The base seed of the dropout masks of micro-batch `micro` of update `step` (1-based). */
export function dropoutSeed(step: number, micro: number): number {
  return ((step - 1) * 4099 + micro) >>> 0;
}

/**
 * The U-Net's input and what it should output, on the host: x_t = √ᾱ x0 + √(1-ᾱ) ε [B, C, h, w],
 * the target (ε, or v) [B, C, h, w], and each sample's min-SNR loss weight [B].
 */
export function noisedInputs(s: StepSettings, b: MicroBatch): { noisy: Float32Array; target: Float32Array; weights: Float32Array } {
  const B = b.timesteps.length;
  const n = b.latents.length / B;
  const noisy = new Float32Array(B * n);
  const target = new Float32Array(B * n);
  const weights = new Float32Array(B);
  b.timesteps.forEach((t, i) => {
    const acp = s.alphasCumprod[t]!;
    const x0 = b.latents.subarray(i * n, (i + 1) * n);
    const eps = b.noise.subarray(i * n, (i + 1) * n);
    addNoise(x0, eps, acp, noisy.subarray(i * n, (i + 1) * n));
    predictionTarget(s.prediction, x0, eps, acp, target.subarray(i * n, (i + 1) * n));
    weights[i] = minSnrWeight(acp, s.minSnrGamma, s.prediction);
  });
  return { noisy, target, weights };
}

/**
 * The U-Net's conditioning for these captions, [B, T, width]: the cached encoder outputs when every
 * caption has one, else the text encoder run now (with its LoRA when it is trained, without gradient when not).
 */
export function textContext(m: StepModel, s: StepSettings, captions: readonly string[], seed = 0): Tensor {
  const { clip, tokenizer } = m;
  const T = clip.config.maxPositions;
  const cached = captions.map((cap) => m.contexts?.get(cap));
  const backend = m.lora.arenas.unet.backend;
  if (cached.every((x) => x !== undefined)) {
    const per = cached[0]!.length;
    const data = new Float32Array(per * captions.length);
    cached.forEach((x, i) => data.set(x, i * per));
    return tensor(backend, data, [captions.length, T, per / T]);
  }
  const ids = new Int32Array(captions.length * T);
  captions.forEach((cap, i) => ids.set(tokenizer.encodeForModel(cap, T), i * T));
  const layers = new Layers(clip.weights, s.trainTextEncoder ? m.lora.adapter('te', { training: true, seed }) : null);
  const run = () => clipForward(layers, clip.config, ids, captions.length, s.clipSkip);
  return s.trainTextEncoder ? run() : noGrad(run);
}

/**
 * Each sample's loss [] of a batch of B > 1, without gradient: the batch loss with sample b's weight
 * times B and the others' 0 is w_b · mean((pred_b − target_b)²), the term sample b adds to the batch mean.
 */
function perSampleLosses(s: StepSettings, pred: Tensor, tgt: Tensor, weights: Float32Array): Tensor[] {
  const B = weights.length;
  return noGrad(() =>
    Array.from({ length: B }, (_, b) => {
      const w = tensor(pred.backend, weights.map((v, i) => (i === b ? v * B : 0)), [B]);
      return keep(s.loss === 'l2' ? mseLoss(pred, tgt, w) : huberLoss(pred, tgt, s.huberDelta, w));
    }),
  );
}

/**
 * One micro-batch's loss [], with loss/accum backpropagated into the LoRA's gradients (which
 * accumulate: zero them first, `zeroGrads`). `seed`: the dropout masks' base seed (`dropoutSeed`).
 * The caller owns the returned scalar; everything else the step made is freed. With `perSample`, a
 * batch of more than one also pushes each sample's loss there (the caller owns them too).
 */
export function microStep(m: StepModel, s: StepSettings, b: MicroBatch, accum: number, seed: number, perSample?: Tensor[]): Tensor {
  const B = b.timesteps.length;
  const shape = [B, m.unet.config.inChannels, b.height, b.width];
  const { noisy, target, weights } = noisedInputs(s, b);
  const backend = m.lora.arenas.unet.backend;
  return scope(() => {
    const context = textContext(m, s, b.captions, seed); // [B, T, width]
    const unet = new Layers(m.unet.weights, m.lora.adapter('unet', { training: true, seed }));
    const pred = unetForward(unet, m.unet.config, tensor(backend, noisy, shape), b.timesteps, context, { gradientCheckpointing: s.gradientCheckpointing });
    const tgt = tensor(backend, target, shape);
    const wt = tensor(backend, weights, [B]);
    const loss = s.loss === 'l2' ? mseLoss(pred, tgt, wt) : huberLoss(pred, tgt, s.huberDelta, wt);
    if (perSample && B > 1) perSample.push(...perSampleLosses(s, pred, tgt, weights));
    // loss/accum, so the accumulated gradients are those of the mean over micro-batches (no scale for one).
    backward(accum === 1 ? loss : scale(loss, 1 / accum));
    return loss;
  });
}

/** Clear every LoRA gradient (one fill per arena). */
export function zeroGrads(lora: LoraNetwork): void {
  for (const a of loraArenas(lora)) a.zeroGrad();
}

/**
 * The loss and LoRA gradients of one optimizer step without the update: gradients zeroed, then each
 * micro-batch's loss divided by their number and backpropagated. Returns the (unscaled) losses, kept.
 * With `perSample`, each micro-batch's per-sample losses are added there (empty for a batch of one).
 */
export function lossAndGradients(m: StepModel, s: StepSettings, micro: readonly MicroBatch[], step: number, perSample?: Tensor[][]): Tensor[] {
  zeroGrads(m.lora);
  return micro.map((b, i) => {
    const mine: Tensor[] = [];
    perSample?.push(mine);
    return keep(microStep(m, s, b, micro.length, dropoutSeed(step, i), perSample ? mine : undefined));
  });
}

/**
 * Clip by the global gradient norm (when `maxGradNorm` > 0) and update the LoRA with the
 * optimizer. Returns the flag [1] it raises, instead of updating, on a non-finite norm.
 */
export function applyUpdate(lora: LoraNetwork, s: Pick<StepSettings, 'maxGradNorm'>, optimizer: Optimizer, o: UpdateOptions): Tensor {
  const arenas = loraArenas(lora);
  const norm = globalGradNorm(arenas);
  const flag = tensor(lora.arenas.unet.backend, [0], [1]);
  const groups: ArenaGroup[] = [{ arena: lora.arenas.unet, lr: o.lr.unet }, ...(lora.arenas.te ? [{ arena: lora.arenas.te, lr: o.lr.te }] : [])];
  optimizer.update(groups, { step: o.step, maxGradNorm: s.maxGradNorm > 0 ? s.maxGradNorm : undefined, gradNorm: norm, nanFlag: flag });
  norm.dispose();
  return flag;
}

/**
 * One optimizer step from its micro-batches (llm.c's order): zero the gradients, each micro-step's
 * loss/accum backward, clip, update, submit. Nothing is read back here: the returned step is read
 * once the GPU gets there, so the next one can be encoded meanwhile.
 */
export function trainStep(m: StepModel, s: StepSettings, optimizer: Optimizer, micro: readonly MicroBatch[], o: UpdateOptions): PendingStep {
  const perSample: Tensor[][] = [];
  const losses = lossAndGradients(m, s, micro, o.step, perSample);
  const flag = applyUpdate(m.lora, s, optimizer, o);
  m.lora.arenas.unet.backend.flush();
  const dispose = () => {
    for (const l of [...losses, ...perSample.flat()]) l.dispose();
    flag.dispose();
  };
  const read = async (): Promise<StepResult> => {
    // Every readback is encoded now, so the tensors can go back to the pool at once (a step then
    // leaves the pool as it found it, which a recorded step plan needs: replay.ts).
    const reads = [...losses, flag, ...perSample.flat()].map((t) => t.read());
    dispose();
    return stepResult(await Promise.all(reads), perSample.map((ts) => ts.length));
  };
  return { losses, flag, read, dispose };
}

/**
 * A step's result from its readbacks in `trainStep`'s order: each micro-batch's loss, the flag, then
 * each micro-batch's per-sample losses (`perSample[i]` of them; none for a batch of one, whose
 * sample loss is the micro-batch's loss).
 */
export function stepResult(vals: readonly Float32Array[], perSample: readonly number[]): StepResult {
  const n = perSample.length;
  let at = n + 1;
  const sampleLosses = perSample.map((k, i) => (k ? vals.slice(at, (at += k)).map((v) => v[0]!) : [vals[i]![0]!]));
  const loss = vals.slice(0, n).reduce((a, v) => a + v[0]!, 0) / n;
  return { loss, nonFinite: vals[n]![0] !== 0 || !Number.isFinite(loss), sampleLosses };
}

/** Every LoRA gradient by kohya tensor name, read back (after `lossAndGradients` or a step). */
export async function readGradients(lora: LoraNetwork): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, t] of lora.parameters()) out.set(name, await t.grad!.read());
  return out;
}
