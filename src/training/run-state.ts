// A run's state to and from its file: the LoRA's and the optimizer's GPU buffers read back whole (float32, padding and
// all) with the run's position, and written into a fresh trainer so that its next update is the one the run would have made.
import type { ParamArena } from '../engine/optim/arena.js';
import type { Optimizer } from '../engine/optim/optimizer.js';
import { Prodigy } from '../engine/optim/prodigy.js';
import { kohyaName, type LoraInit, type LoraModuleSpec, type LoraNetwork } from '../model/lora.js';
import { RUN_STATE_VERSION, writeRunStateFile, type ArenaLayout, type RunStateContents, type RunStateFacts } from './run-state-file.js';

export { readRunStateFile, readRunStateSummary, isRunStateFile, datasetFingerprint, type RunStateContents, type RunStateFacts, type RunStateSummary } from './run-state-file.js';

/** The tensor holding Prodigy's control buffer (d, its max, the numerator, k). */
const PRODIGY_CONTROL = 'optimizer.prodigy.control';
const PARTS = ['unet', 'te'] as const;
const paramsName = (part: string) => `arena.${part}.params`;
const stateName = (part: string, key: string) => `arena.${part}.${key}`;

/** The facts a save knows beyond the LoRA and the optimizer. */
export type RunPosition = Omit<RunStateFacts, 'version' | 'arenas' | 'modules' | 'optimizer'>;

/** One arena's parameters and optimizer state buffers, read back into `out`; returns its layout. */
async function readArena(part: string, arena: ParamArena, out: Map<string, Float32Array>): Promise<ArenaLayout> {
  out.set(paramsName(part), await arena.flatParams.read());
  const state = arena.stateKeys;
  for (const key of state) out.set(stateName(part, key), await arena.stateBuffer(key).read());
  const params: ArenaLayout['params'] = {};
  for (const [name, offset] of arena.offsets) params[name] = [offset, arena.get(name).size];
  return { numel: arena.numel, params, state };
}

/** The run-state file of the LoRA and optimizer as they are now, at this position. */
export async function captureRunState(lora: LoraNetwork, optimizer: Optimizer, at: RunPosition): Promise<Uint8Array> {
  const tensors = new Map<string, Float32Array>();
  const unet = await readArena('unet', lora.arenas.unet, tensors);
  const te = lora.arenas.te ? await readArena('te', lora.arenas.te, tensors) : null;
  if (optimizer instanceof Prodigy) {
    const words = await optimizer.controlWords();
    if (words) tensors.set(PRODIGY_CONTROL, words);
  }
  const modules = lora.specs.map((s) => ({ name: kohyaName(s), rank: s.rank, alpha: s.alpha }));
  const facts: RunStateFacts = { version: RUN_STATE_VERSION, ...at, optimizer: at.config.optimizer, modules, arenas: { unet, te } };
  return writeRunStateFile(facts, tensors);
}

/** A tensor the file must have, or an error naming it. */
function need(r: RunStateContents, name: string, length?: number): Float32Array {
  const t = r.tensors.get(name);
  if (!t) throw new Error(`The run-state file lacks its tensor "${name}": it is damaged. Continue from the run's LoRA file instead (the optimizer then starts fresh).`);
  if (length !== undefined && t.length !== length) throw new Error(`The run-state file's tensor "${name}" has ${t.length} values, its layout says ${length}: it is damaged.`);
  return t;
}

/**
 * The LoRA's starting weights from a run state, module by module (engine layout, the state's rank and
 * alpha), for the modules these settings train; refuses a state whose modules are not the same set.
 */
export function runStateWeights(r: RunStateContents, specs: readonly LoraModuleSpec[]): Map<string, LoraInit> {
  const saved = new Map(r.facts.modules.map((m) => [m.name, m]));
  const wanted = specs.map((s) => ({ s, k: kohyaName(s) }));
  const absent = wanted.filter((w) => !saved.has(w.k)).map((w) => w.k);
  if (absent.length || saved.size !== specs.length)
    throw new Error(`The run state has ${saved.size} LoRA modules, these settings train ${specs.length}${absent.length ? ` (not in the state: ${absent[0]})` : ''}: it is from another base model or other targets.`);
  const init = new Map<string, LoraInit>();
  for (const { s, k } of wanted) {
    const layout = r.facts.arenas[s.part];
    if (!layout) throw new Error(`The run state has no ${s.part} arena, but ${k} is trained: it is damaged.`);
    const flat = need(r, paramsName(s.part), layout.numel);
    const slice = (n: string) => {
      const at = layout.params[n];
      if (!at) throw new Error(`The run state's layout has no parameter ${n}: it is damaged.`);
      return flat.slice(at[0], at[0] + at[1]);
    };
    const m = saved.get(k)!;
    // Every tensor of the module by key (LoHa/LoKr/DoRA have others than down and up: lycoris.ts).
    const tensors = new Map(Object.keys(layout.params).filter((n) => n.startsWith(`${k}.`)).map((n) => [n.slice(k.length + 1), slice(n)]));
    const [down, up] = [tensors.get('lora_down.weight'), tensors.get('lora_up.weight')];
    if (!tensors.size) throw new Error(`The run state's layout has no parameters of ${k}: it is damaged.`);
    init.set(k, { down: down ?? new Float32Array(0), up: up ?? new Float32Array(0), rank: m.rank, alpha: m.alpha, tensors });
  }
  return init;
}

/** Whether the arena lays its parameters out as the state's layout says (so flat buffers copy across as they are). */
function sameLayout(arena: ParamArena, layout: ArenaLayout): boolean {
  if (arena.numel !== layout.numel || arena.offsets.size !== Object.keys(layout.params).length) return false;
  return [...arena.offsets].every(([name, off]) => layout.params[name]?.[0] === off && layout.params[name][1] === arena.get(name).size);
}

/**
 * Write the state's flat buffers into a network built from `runStateWeights`: the parameters (bit for
 * bit, padding included), every optimizer state buffer, and Prodigy's control buffer.
 */
export function restoreRunState(r: RunStateContents, lora: LoraNetwork, optimizer: Optimizer): void {
  const arenas: ParamArena[] = [];
  for (const part of PARTS) {
    const arena = lora.arenas[part];
    const layout = r.facts.arenas[part];
    if (!arena && !layout) continue;
    if (!arena || !layout || !sameLayout(arena, layout)) throw new Error(`The run state's ${part} LoRA layout does not match the network these settings build: it is from another version or model.`);
    arena.flatParams.write(need(r, paramsName(part), layout.numel));
    for (const key of layout.state) arena.stateBuffer(key).write(need(r, stateName(part, key), layout.numel));
    arenas.push(arena);
  }
  const ctl = r.tensors.get(PRODIGY_CONTROL);
  if (ctl && optimizer instanceof Prodigy) optimizer.restoreControl(arenas, ctl);
  else if (ctl || (optimizer instanceof Prodigy && r.facts.step > 0)) throw new Error(`The run state's optimizer (${r.facts.optimizer}) does not match the settings' (${optimizer.name}).`);
}
