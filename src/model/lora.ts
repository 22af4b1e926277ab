// A kohya-style LoRA network: which layers it adapts, its parameters, and the adapter hook the models call.
import { addInto, conv2d, dropout, noGrad, reshape, scale, scope, type Conv2dOptions, type LowRank } from '../engine/index.js';
import type { Backend } from '../engine/backend.js';
import { ParamArena } from '../engine/optim/arena.js';
import type { Tensor } from '../engine/tensor.js';
import type { Adapter, WeightShapes, WeightStore } from './layers.js';
import { clipLoraTargets, type ClipConfig } from './clip.js';
import { kohyaLoraName } from './keymap.js';
import { columnNorm, mergedWeight, moduleLayout, type ModuleLayout, type NetworkType } from './lycoris.js';
import { Rng } from '../engine/rng.js';
import { transformerDepth, unetTransformerNames, unetWeightShapes, type UNetConfig } from './unet.js';

/** Where a module lives and how it is shaped. */
export interface LoraModuleSpec {
  /** diffusers module path, e.g. `down_blocks.0.attentions.0.proj_in`. */
  path: string;
  part: 'unet' | 'te';
  kind: 'linear' | 'conv';
  inFeatures: number;
  outFeatures: number;
  /** Kernel size of the base conv (1 for linear and 1x1 convs). */
  kernel: number;
  rank: number;
  alpha: number;
  /** The base layer is a 1x1 conv (exported with [.., .., 1, 1] shapes). */
  pointwise: boolean;
}

export interface LoraOptions {
  rank: number;
  alpha: number;
  /** LoCon: rank for the 3x3 convs of ResBlocks, down- and upsamplers (0 = off). */
  convRank?: number;
  convAlpha?: number;
  /** Adapt the text encoder too (kohya's default), or only the U-Net. */
  textEncoder?: boolean;
}

/** The adapted modules of one transformer with `depth` blocks, in kohya's order. */
function transformerLayers(depth: number): string[] {
  const block = ['attn1.to_q', 'attn1.to_k', 'attn1.to_v', 'attn1.to_out.0', 'attn2.to_q', 'attn2.to_k', 'attn2.to_v', 'attn2.to_out.0', 'ff.net.0.proj', 'ff.net.2'];
  return ['proj_in', ...Array.from({ length: depth }, (_, d) => block.map((l) => `transformer_blocks.${d}.${l}`)).flat(), 'proj_out'];
}

/**
 * kohya's default targets: every Linear and 1x1 conv inside the U-Net's transformers (12 per transformer of one block)
 * and the text encoder's attention and MLP projections (6 per layer). With LoCon, kohya also adapts
 * the modules inside ResBlocks and samplers: 3x3 convs at the conv rank, and the Linear/1x1 ones
 * there (time_emb_proj, conv_shortcut) at the network rank.
 */
export function loraTargets(unet: UNetConfig, clip: ClipConfig | null, o: LoraOptions): LoraModuleSpec[] {
  const shapes = unetWeightShapes(unet);
  const specs: LoraModuleSpec[] = [];
  const push = (path: string, part: 'unet' | 'te', w: number[], rank: number, alpha: number) => {
    const pointwise = w.length === 4 && w[2] === 1;
    specs.push({ path, part, kind: w.length === 4 && !pointwise ? 'conv' : 'linear', inFeatures: w[1]!, outFeatures: w[0]!, kernel: w.length === 4 ? w[2]! : 1, rank, alpha, pointwise });
  };
  const layers = transformerLayers(transformerDepth(unet));
  for (const t of unetTransformerNames(unet)) for (const l of layers) push(`${t}.${l}`, 'unet', shapes.get(`${t}.${l}.weight`)!, o.rank, o.alpha);
  if (o.convRank) {
    for (const [name, w] of shapes) {
      if (!name.endsWith('.weight')) continue;
      const path = name.slice(0, -'.weight'.length);
      if (!/(resnets\.\d+\.(conv1|conv2|conv_shortcut|time_emb_proj)|(down|up)samplers\.0\.conv)$/.test(path)) continue;
      if (w.length === 4 && w[2] === 3) push(path, 'unet', w, o.convRank, o.convAlpha ?? o.convRank);
      else push(path, 'unet', w, o.rank, o.alpha);
    }
  }
  if (clip && o.textEncoder !== false) {
    for (const path of clipLoraTargets(clip)) {
      const mlp1 = path.endsWith('mlp.fc1');
      const mlp2 = path.endsWith('mlp.fc2');
      push(path, 'te', [mlp1 ? clip.mlp : clip.width, mlp2 ? clip.mlp : clip.width], o.rank, o.alpha);
    }
  }
  return specs;
}

/** kohya's key prefix: `lora_unet_` / `lora_te_` plus the diffusers path with dots as underscores. */
export function kohyaName(s: Pick<LoraModuleSpec, 'path' | 'part'>): string {
  return kohyaLoraName(s.path, s.part);
}

/** Shapes of a module's tensors as kohya writes them. */
export function kohyaShapes(s: LoraModuleSpec): { down: number[]; up: number[] } {
  if (s.kind === 'conv') return { down: [s.rank, s.inFeatures, s.kernel, s.kernel], up: [s.outFeatures, s.rank, 1, 1] };
  if (s.pointwise) return { down: [s.rank, s.inFeatures, 1, 1], up: [s.outFeatures, s.rank, 1, 1] };
  return { down: [s.rank, s.inFeatures], up: [s.outFeatures, s.rank] };
}

/** Starting weights of one module (engine layout), and the rank and alpha of the file they came from. */
export interface LoraInit {
  down: Float32Array;
  up: Float32Array;
  rank?: number;
  alpha?: number;
  /** A LyCORIS module's tensors by key (`hada_w1_a`, `lokr_w1`, `dora_scale`, ...), for the types other than LoRA. */
  tensors?: Map<string, Float32Array>;
}

/** Options of a LoraNetwork beyond its modules. */
export interface LoraNetworkOptions {
  /** Network dropout on the down projection's output while training (0 = off; LoRA only). */
  dropout?: number;
  /** kohya's LoRA (the default), or LoHa, LoKr or DoRA in LyCORIS' layout (`lycoris.ts`). */
  type?: NetworkType;
  /** The frozen weights by part: DoRA starts its magnitudes at their column norms. */
  base?: { unet: WeightStore; te: WeightStore | null };
}

/** What an adapter is for: training (dropout on, masks from `seed`) or not (previews, evaluation). */
export interface AdapterOptions {
  training?: boolean;
  /** Base seed of the dropout masks of this micro-step. */
  seed?: number;
}

interface LiveModule {
  spec: LoraModuleSpec;
  index: number;
  /** LoRA's factors (DoRA's too); absent for LoHa and LoKr. */
  down?: Tensor;
  up?: Tensor;
  /** Every trained tensor by key after the module name, in file order. */
  tensors: Map<string, Tensor>;
  /** The LyCORIS layout (types other than LoRA). */
  layout: ModuleLayout | null;
}

/**
 * The trainable network. Parameters live in one arena per part (U-Net, text encoder) so the optimizer
 * updates each part in one dispatch with its own learning rate. Implements the models' Adapter hook.
 */
export class LoraNetwork {
  readonly arenas: { unet: ParamArena; te: ParamArena | null };
  private readonly byPath = new Map<string, LiveModule>();
  /** Dropout on the down projection's output in training adapters (kohya's network_dropout); 0 disables. */
  readonly dropout: number;
  /** The network type: which tensors each module trains and how they change its layer. */
  readonly type: NetworkType;

  /** The modules trained: the given specs, with rank and alpha taken from `init` where it has them. */
  readonly specs: LoraModuleSpec[];

  /**
   * `seed` draws the down projections' starting values (the up projections start at zero); `init`
   * gives a module's weights instead (continuing an earlier file), `o.dropout` the network dropout.
   */
  constructor(backend: Backend, specs: LoraModuleSpec[], seed: number, init?: Map<string, LoraInit>, o: LoraNetworkOptions = {}) {
    this.dropout = o.dropout ?? 0;
    this.type = o.type ?? 'lora';
    if (this.type !== 'lora' && this.dropout > 0) throw new Error(`Network dropout (${this.dropout}) works on LoRA's down projection only; set it to 0 for ${this.type}`);
    this.specs = specs.map((s) => {
      const g = init?.get(kohyaName(s));
      return g && (g.rank !== undefined || g.alpha !== undefined) ? { ...s, rank: g.rank ?? s.rank, alpha: g.alpha ?? s.alpha } : s;
    });
    const unet = this.buildArena(backend, 'unet', seed, init);
    if (!unet) throw new Error('LoRA network has no U-Net modules');
    this.arenas = { unet, te: this.buildArena(backend, 'te', seed, init) };
    this.specs.forEach((spec, index) => {
      const arena = spec.part === 'unet' ? this.arenas.unet : this.arenas.te!;
      const layout = this.type === 'lora' ? null : moduleLayout(this.type, spec);
      const keys = layout ? layout.params.map((p) => p.key) : ['lora_down.weight', 'lora_up.weight'];
      const tensors = new Map(keys.map((k) => [k, arena.get(`${kohyaName(spec)}.${k}`)]));
      const m: LiveModule = { spec, index, down: tensors.get('lora_down.weight'), up: tensors.get('lora_up.weight'), tensors, layout };
      this.byPath.set(`${spec.part}:${spec.path}`, m);
      if (layout?.params.some((p) => p.init === 'norm') && !init?.get(kohyaName(spec))?.tensors) this.startMagnitude(m, o.base);
    });
  }

  /** Every module's dropout-mask seed under a micro-step's base seed (what a training adapter of `seed` draws), by module index. */
  dropoutSeeds(seed: number): number[] {
    return this.specs.map((_, i) => maskSeed(seed, i));
  }

  /** DoRA: the magnitude starts at the base weight's norm per input channel, so the first forward is the base model's. */
  private startMagnitude(m: LiveModule, base: LoraNetworkOptions['base']): void {
    const store = m.spec.part === 'unet' ? base?.unet : base?.te;
    if (!store) throw new Error(`DoRA starts its magnitudes from the base model's weights: pass them (base.${m.spec.part}) when building the network`);
    const slot = m.tensors.get('dora_scale')!;
    noGrad(() => scope(() => addInto(slot, reshape(columnNorm(store.get(`${m.spec.path}.weight`)), slot.shape))));
  }

  /** One part's parameters in one arena (null when the part has no modules). */
  private buildArena(backend: Backend, part: 'unet' | 'te', seed: number, init?: Map<string, LoraInit>): ParamArena | null {
    const mine = this.specs.filter((s) => s.part === part);
    if (!mine.length) return null;
    // The project's one seeded RNG (Philox), a stream per part: adding the text encoder leaves the U-Net's values as they were.
    const rng = new Rng(seed).fork(`lora-${part}`);
    if (this.type !== 'lora') return new ParamArena(backend, mine.flatMap((s) => lycorisEntries(this.type as Exclude<NetworkType, 'lora'>, s, rng, init?.get(kohyaName(s)))));
    const perModule = mine.map((s) => {
      const given = init?.get(kohyaName(s));
      const { down: downShape, up: upShape } = engineShapes(s);
      const fanIn = s.inFeatures * s.kernel * s.kernel;
      // kohya: kaiming_uniform_(a=sqrt(5)) gives bound 1/sqrt(fan_in); lora_up starts at zero so the first forward is the base model.
      const bound = 1 / Math.sqrt(fanIn);
      const down = given?.down ?? Float32Array.from({ length: fanIn * s.rank }, () => rng.uniform(-bound, bound));
      const up = given?.up ?? new Float32Array(s.outFeatures * s.rank);
      return {
        down: { name: `${kohyaName(s)}.lora_down.weight`, shape: downShape, init: down },
        up: { name: `${kohyaName(s)}.lora_up.weight`, shape: upShape, init: up },
      };
    });
    return new ParamArena(backend, stackedOrder(mine, perModule));
  }

  /** Look up the module for a layer of the U-Net or the text encoder. */
  module(part: 'unet' | 'te', path: string): LiveModule | undefined {
    return this.byPath.get(`${part}:${path}`);
  }

  /**
   * The adapter hook for one part (the models name layers without a part). A training adapter
   * applies the network dropout with masks drawn from `seed` (one seed per micro-step, so the
   * checkpointed recompute replays the same masks); the default, for previews and evaluation, has none.
   */
  adapter(part: 'unet' | 'te', o: AdapterOptions = {}): Adapter {
    const p = o.training && this.dropout > 0 ? this.dropout : 0;
    const seed = o.seed ?? 0;
    if (this.type !== 'lora') return { lowRank: () => null, convDelta: () => null, weight: (name, w) => this.weight(part, name, w) };
    return {
      lowRank: (name) => this.lowRank(part, name, p, seed),
      convDelta: (name, x, opts) => this.convDelta(part, name, x, opts, p, seed),
      frozen: (name) => !this.module(part, name),
    };
  }

  /** A LyCORIS module's layer weight: the base weight `w` merged with the module's delta (`lycoris.ts`). */
  private weight(part: 'unet' | 'te', name: string, w: Tensor): Tensor | null {
    const m = this.module(part, name);
    if (!m?.layout) return null;
    return mergedWeight(this.type as Exclude<NetworkType, 'lora'>, m.spec, (k) => m.tensors.get(k)!, m.layout.scale, w);
  }

  /**
   * The factors of an adapted linear (or 1x1 conv) layer: its output gains
   * up(dropout_p(down(x))) * alpha / rank. Pointwise (1x1 conv) modules are held as
   * [rank, in] / [out, rank] and reshaped only on export.
   */
  private lowRank(part: 'unet' | 'te', name: string, p: number, seed: number): LowRank | null {
    const m = this.module(part, name);
    if (!m?.down || !m.up) return null;
    return { down: m.down, up: m.up, scale: m.spec.alpha / m.spec.rank, ...(p > 0 ? { dropout: { p, seed: maskSeed(seed, m.index) } } : {}) };
  }

  /**
   * A conv layer's delta: LoCon's conv with the base kernel, stride and padding down to the rank,
   * then a 1x1 conv up. A 1x1 base conv (conv_shortcut) holds its weights as [rank, in] / [out, rank]
   * like a linear module; they are viewed as [.., .., 1, 1] kernels here.
   */
  private convDelta(part: 'unet' | 'te', name: string, x: Tensor, opts: Conv2dOptions, p: number, seed: number): Tensor | null {
    const m = this.module(part, name);
    if (!m?.down || !m.up) return null;
    const { rank, inFeatures, outFeatures } = m.spec;
    const down = m.spec.kind === 'conv' ? m.down : reshape(m.down, [rank, inFeatures, 1, 1]);
    const up = m.spec.kind === 'conv' ? m.up : reshape(m.up, [outFeatures, rank, 1, 1]);
    const h0 = conv2d(x, down, undefined, opts);
    const h = p > 0 ? dropout(h0, p, maskSeed(seed, m.index), true) : h0;
    return scale(conv2d(h, up), m.spec.alpha / rank);
  }

  /** Every parameter by kohya tensor name. */
  *parameters(): Generator<[string, Tensor, LoraModuleSpec]> {
    for (const m of this.byPath.values()) for (const [k, t] of m.tensors) yield [`${kohyaName(m.spec)}.${k}`, t, m.spec];
  }

  dispose(): void {
    this.arenas.unet.dispose();
    this.arenas.te?.dispose();
  }
}

/** A LyCORIS module's arena entries: the file's tensors where continuing one, else the type's starting values (a magnitude starts at zero and is filled from the base weight). */
function lycorisEntries(type: Exclude<NetworkType, 'lora'>, s: LoraModuleSpec, rng: Rng, given: LoraInit | undefined) {
  return moduleLayout(type, s).params.map((p) => {
    const data = given?.tensors?.get(p.key) ?? (p.init === 'norm' ? new Float32Array(p.shape.reduce((a, b) => a * b, 1)) : p.init(rng));
    return { name: `${kohyaName(s)}.${p.key}`, shape: p.shape, init: data };
  });
}

/** The dropout mask's seed of module `index` under a micro-step's base seed. */
function maskSeed(seed: number, index: number): number {
  return (seed * 1009 + index * 7919) >>> 0;
}

/** A module's tensor shapes as the engine holds them: pointwise convs as linear [rank, in] / [out, rank]. */
function engineShapes(s: LoraModuleSpec): { down: number[]; up: number[] } {
  if (s.kind === 'conv') return { down: [s.rank, s.inFeatures, s.kernel, s.kernel], up: [s.outFeatures, s.rank, 1, 1] };
  return { down: [s.rank, s.inFeatures], up: [s.outFeatures, s.rank] };
}

/** The module path's parent: `...attn1` for `...attn1.to_q`. */
const parentPath = (path: string) => path.slice(0, path.lastIndexOf('.'));

/**
 * Arena order: each run of neighbouring linear modules under one parent with the same input width
 * and rank (attention's q, k, v) puts its downs back to back, then its ups, so the models can run
 * the downs as one stacked GEMM (lowRankLinearGroup). Other modules keep down, up.
 */
function stackedOrder<E>(specs: readonly LoraModuleSpec[], entries: readonly { down: E; up: E }[]): E[] {
  const out: E[] = [];
  const joins = (a: LoraModuleSpec, b: LoraModuleSpec) => a.kind === 'linear' && b.kind === 'linear' && parentPath(a.path) === parentPath(b.path) && a.inFeatures === b.inFeatures && a.rank === b.rank;
  for (let i = 0; i < specs.length; ) {
    let j = i + 1;
    while (j < specs.length && joins(specs[i]!, specs[j]!)) j++;
    for (let k = i; k < j; k++) out.push(entries[k]!.down);
    for (let k = i; k < j; k++) out.push(entries[k]!.up);
    i = j;
  }
  return out;
}

export type { WeightShapes };
