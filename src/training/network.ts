// The run's LoRA network: the modules these settings train on a model, and the network as a kohya file with the run's metadata.
import { writeLoraFile, type SavePrecision } from '../model/lora-file.js';
import { loraTargets, type LoraModuleSpec, type LoraNetwork, type LoraNetworkOptions } from '../model/lora.js';
import { networkMetadata, writeLycorisFile } from '../model/lycoris-file.js';
import type { Pipeline } from '../model/pipeline.js';
import type { TrainConfig } from './config.js';
import { loraMetadata, type RunFacts } from './metadata.js';

/** The LoRA modules these settings train on this model (kohya's targets; LoCon and the text encoder as set). */
export function loraSpecs(pipeline: Pick<Pipeline, 'unet' | 'clip'>, config: TrainConfig): LoraModuleSpec[] {
  const o = { rank: config.networkDim, alpha: config.networkAlpha, convRank: config.convDim, convAlpha: config.convAlpha, textEncoder: config.trainTextEncoder };
  return loraTargets(pipeline.unet.config, config.trainTextEncoder ? pipeline.clip.config : null, o);
}

/** The network's options from the settings: its type, dropout, and the frozen weights DoRA starts its magnitudes from. */
export function networkOptions(pipeline: Pick<Pipeline, 'unet' | 'clip'>, config: TrainConfig): LoraNetworkOptions {
  return { dropout: config.networkDropout, type: config.networkType, base: { unet: pipeline.unet.weights, te: config.trainTextEncoder ? pipeline.clip.weights : null } };
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
  const modules = new Map<LoraModuleSpec, Map<string, Float32Array>>();
  for (const [name, t, spec] of lora.parameters()) {
    const tensors = modules.get(spec) ?? new Map<string, Float32Array>();
    tensors.set(name.slice(name.indexOf('.') + 1), await t.read());
    modules.set(spec, tensors);
  }
  const read = [...modules].map(([spec, tensors]) => ({ spec, tensors }));
  if (lora.type !== 'lora') return writeLycorisFile(lora.type, read, metadata, precision);
  return writeLoraFile(read.map(({ spec, tensors }) => ({ spec, down: tensors.get('lora_down.weight')!, up: tensors.get('lora_up.weight')! })), metadata, precision);
}

/** The run's file: `loraFile` with kohya's ss_* metadata from the run's facts. */
export function exportNetwork(lora: LoraNetwork, facts: Omit<RunFacts, 'network'>): Promise<Uint8Array> {
  const network = savedRanks(lora.specs, facts.config);
  return loraFile(lora, { ...loraMetadata({ ...facts, network }), ...networkMetadata(lora.type, network, facts.config.networkDropout) }, facts.config.savePrecision);
}
