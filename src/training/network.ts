// The run's LoRA network: the modules these settings train on a model, and the network as a kohya file with the run's metadata.
import { writeLoraFile, type SavePrecision } from '../model/lora-file.js';
import { loraTargets, type LoraModuleSpec, type LoraNetwork } from '../model/lora.js';
import type { Pipeline } from '../model/pipeline.js';
import type { TrainConfig } from './config.js';
import { loraMetadata, type RunFacts } from './metadata.js';

/** The LoRA modules these settings train on this model (kohya's targets; LoCon and the text encoder as set). */
export function loraSpecs(pipeline: Pick<Pipeline, 'unet' | 'clip'>, config: TrainConfig): LoraModuleSpec[] {
  const o = { rank: config.networkDim, alpha: config.networkAlpha, convRank: config.convDim, convAlpha: config.convAlpha, textEncoder: config.trainTextEncoder };
  return loraTargets(pipeline.unet.config, config.trainTextEncoder ? pipeline.clip.config : null, o);
}

/**
 * The rank and alpha of the saved linear and 3x3-conv modules, for the file's metadata: a continued
 * file keeps its own, which may differ from the settings' (the first module of each kind speaks for all).
 */
function savedRanks(specs: readonly LoraModuleSpec[], c: TrainConfig): NonNullable<RunFacts['network']> {
  const lin = specs.find((s) => s.kernel === 1);
  const conv = specs.find((s) => s.kernel > 1);
  return { dim: lin?.rank ?? c.networkDim, alpha: lin?.alpha ?? c.networkAlpha, convDim: conv?.rank ?? c.convDim, convAlpha: conv?.alpha ?? c.convAlpha };
}

/** The network as it is now, read back: a kohya-format `.safetensors` file with this metadata (all strings). */
export async function loraFile(lora: LoraNetwork, metadata: Record<string, string> = {}, precision: SavePrecision = 'fp16'): Promise<Uint8Array> {
  const modules = new Map<string, { spec: LoraModuleSpec; down?: Float32Array; up?: Float32Array }>();
  for (const [name, t, spec] of lora.parameters()) {
    const key = name.replace(/\.lora_(down|up)\.weight$/, '');
    const e = modules.get(key) ?? { spec };
    if (name.endsWith('lora_down.weight')) e.down = await t.read();
    else e.up = await t.read();
    modules.set(key, e);
  }
  return writeLoraFile([...modules.values()].map((m) => ({ spec: m.spec, down: m.down!, up: m.up! })), metadata, precision);
}

/** The run's file: `loraFile` with kohya's ss_* metadata from the run's facts. */
export function exportNetwork(lora: LoraNetwork, facts: Omit<RunFacts, 'network'>): Promise<Uint8Array> {
  return loraFile(lora, loraMetadata({ ...facts, network: savedRanks(lora.specs, facts.config) }), facts.config.savePrecision);
}
