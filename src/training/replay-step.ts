// Recorded training steps: each shape of step is recorded on two steps, then replayed from the plan (engine/replay.ts) instead of running the ops' code, while the plan stays valid.
import type { GpuBackend } from '../engine/backend.js';
import { makePlan, ReplayCounters, type StepPlan, type StepRecording, type StepValues } from '../engine/replay.js';
import type { Optimizer } from '../engine/optim/optimizer.js';
import { dropoutSeed, noisedInputs, stepResult, type MicroBatch, type StepModel, type StepResult, type StepSettings, type UpdateOptions } from './step.js';

/** Refused comparisons of one shape after which it is no longer recorded (recording costs some JS per dispatch). */
const MAX_REFUSALS = 3;

/**
 * What changes from one training step to the next, as `trainStep` uploads it: per micro-batch the
 * noised latents, target, loss weights (and each sample's for a batch of several), timesteps and
 * the text conditioning (cached encoder outputs, or token ids as the embedding uploads them); the
 * optimizer's hyperparameter words per group; and the dropout masks' seeds as words.
 */
export function stepValues(m: StepModel, s: StepSettings, optimizer: Optimizer, micro: readonly MicroBatch[], o: UpdateOptions): StepValues {
  const inputs = new Map<string, ArrayBufferView[]>();
  const add = (name: string, v: ArrayBufferView) => {
    const list = inputs.get(name);
    if (list) list.push(v);
    else inputs.set(name, [v]);
  };
  const words = new Map<string, number>();
  micro.forEach((b, i) => {
    const { noisy, target, weights } = noisedInputs(s, b);
    add('noisy', noisy);
    add('target', target);
    add('weights', weights);
    add('timesteps', Float32Array.from(b.timesteps));
    add(...textInput(m, b.captions));
    const B = weights.length;
    if (B > 1) for (let k = 0; k < B; k++) add('sampleWeights', weights.map((v, j) => (j === k ? v * B : 0)));
    if (m.lora.dropout > 0) m.lora.dropoutSeeds(dropoutSeed(o.step, i)).forEach((w, j) => words.set(`drop${i}.${j}`, w));
  });
  const { unet, te } = m.lora.arenas;
  const groups = [{ arena: unet, lr: o.lr.unet }, ...(te ? [{ arena: te, lr: o.lr.te }] : [])];
  for (const h of optimizer.hyperparameters?.(groups, { step: o.step, maxGradNorm: s.maxGradNorm > 0 ? s.maxGradNorm : undefined }) ?? []) add('hp', h);
  return { inputs, words };
}

/** The text conditioning `textContext` uploads: the cached outputs when every caption has one, else the token ids (as f32). */
function textInput(m: StepModel, captions: readonly string[]): [string, ArrayBufferView] {
  const cached = captions.map((c) => m.contexts?.get(c));
  if (cached.every((x) => x !== undefined)) {
    const per = cached[0]!.length;
    const data = new Float32Array(per * captions.length);
    cached.forEach((x, i) => data.set(x, i * per));
    return ['context', data];
  }
  const T = m.clip.config.maxPositions;
  const ids = new Int32Array(captions.length * T);
  captions.forEach((c, i) => ids.set(m.tokenizer.encodeForModel(c, T), i * T));
  return ['ids', Float32Array.from(ids)];
}

/** A step's shape: what decides which commands it records (micro-batch sizes and latent sizes, cached conditioning). */
export function stepKey(m: StepModel, micro: readonly MicroBatch[]): string {
  return micro.map((b) => `${b.timesteps.length}x${b.height}x${b.width}${b.captions.every((c) => m.contexts?.has(c)) ? 'c' : ''}`).join(',');
}

/**
 * Steps by shape: a shape's first two steps run normally and are recorded; when the two recordings
 * make a plan, later steps of that shape replay it (as long as `replayRefusal` finds it valid, else
 * it is recorded afresh). Refusals and drops are counted with their reasons.
 */
export class StepReplayer {
  readonly counters = new ReplayCounters();
  private readonly recordings = new Map<string, StepRecording>();
  private readonly plans = new Map<string, StepPlan>();
  private readonly refusals = new Map<string, number>();

  constructor(private readonly backend: GpuBackend) {}

  /**
   * One step of shape `key` with these values: replayed, or `run` (which must encode the whole step
   * and its readbacks before it returns, as `trainStep(...).read()` does), recorded while the shape
   * has no plan. `perSample`: each micro-batch's per-sample loss count, as `stepResult` takes it.
   */
  step(key: string, values: StepValues, perSample: readonly number[], run: () => Promise<StepResult>): Promise<StepResult> {
    const plan = this.plans.get(key);
    if (plan) {
      const reads = perSample.length + 1 + perSample.reduce((a, n) => a + n, 0);
      const why = plan.reads !== reads ? `the plan reads ${plan.reads} values, the step ${reads}` : this.backend.replayRefusal(plan, values);
      if (why === null) {
        this.counters.replayed++;
        const reads = this.backend.replay(plan, values);
        return Promise.all(reads).then((bufs) => stepResult(bufs.map((b) => new Float32Array(b)), perSample));
      }
      this.counters.refuse(`plan dropped: ${why}`);
      this.plans.delete(key);
    }
    if ((this.refusals.get(key) ?? 0) >= MAX_REFUSALS) return run();
    this.backend.startRecording(values);
    let out: Promise<StepResult>;
    try {
      out = run();
    } catch (e) {
      this.backend.stopRecording();
      throw e;
    }
    this.recorded(key, this.backend.stopRecording());
    return out;
  }

  private recorded(key: string, rec: StepRecording): void {
    this.counters.recorded++;
    const before = this.recordings.get(key);
    this.recordings.set(key, rec);
    if (!before) return;
    const plan = makePlan(before, rec);
    if (typeof plan !== 'string') {
      this.plans.set(key, plan);
      this.recordings.delete(key);
      return;
    }
    this.counters.refuse(plan);
    this.refusals.set(key, (this.refusals.get(key) ?? 0) + 1);
  }
}
