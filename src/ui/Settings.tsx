// The settings form: basics first, advanced folded away, help per field, per-field errors and a live summary.
import { useEffect } from 'react';
import { MemoryLine } from './MemoryLine.js';
import { chooseConfig, useApp } from './store.js';
import { trainer } from './worker.js';
import type { TrainConfig } from '../training/config.js';

type Field = { key: keyof TrainConfig; label: string; help: string; kind: 'number' | 'text' | 'bool' | 'select'; options?: string[]; step?: number };

const BASIC: Field[] = [
  { key: 'runName', label: 'Run name', help: 'Name of the downloaded file.', kind: 'text' },
  { key: 'triggerWord', label: 'Trigger word', help: 'Put in front of every caption; use it in prompts to call the LoRA.', kind: 'text' },
  { key: 'baseSteps', label: 'Base steps', help: 'Steps at batch 1; divided by the effective batch (2000 is a good start).', kind: 'number' },
  { key: 'batchSize', label: 'Batch size', help: 'Images per pass; more needs more GPU memory.', kind: 'number' },
  { key: 'gradAccumulation', label: 'Gradient accumulation', help: 'Passes averaged per update: a bigger batch without the memory.', kind: 'number' },
  { key: 'unetLr', label: 'U-Net learning rate', help: 'At batch 1; scaled with the batch as set below (1e-4).', kind: 'number', step: 1e-5 },
  { key: 'textEncoderLr', label: 'Text-encoder learning rate', help: 'At batch 1 (5e-5).', kind: 'number', step: 1e-5 },
  { key: 'networkDim', label: 'Network dim (rank)', help: 'Capacity of the LoRA (16).', kind: 'number' },
  { key: 'networkAlpha', label: 'Network alpha', help: 'Output scale is alpha / dim (16).', kind: 'number' },
  { key: 'resolution', label: 'Resolution', help: 'Training size in pixels (512 for SD 1.5; 64 for the tiny demo).', kind: 'number', step: 64 },
];

const ADVANCED: Field[] = [
  { key: 'optimizer', label: 'Optimizer', help: 'AdamW (default), Lion (LR about a third of AdamW\'s), SGD with momentum, or Prodigy (set both LRs to 1).', kind: 'select', options: ['adamw', 'lion', 'sgd', 'prodigy'] },
  { key: 'lrScaling', label: 'LR scaling with batch', help: 'none, linear (×batch) or sqrt (×√batch).', kind: 'select', options: ['none', 'linear', 'sqrt'] },
  { key: 'divideStepsByBatch', label: 'Divide steps by batch', help: 'Keep the number of images seen constant.', kind: 'bool' },
  { key: 'scheduler', label: 'LR schedule', help: 'Shape of the learning rate over the run.', kind: 'select', options: ['constant', 'constant_with_warmup', 'linear', 'cosine', 'cosine_with_restarts', 'polynomial'] },
  { key: 'warmup', label: 'Warmup', help: 'Fraction of the steps (below 1) or steps, per the unit.', kind: 'number', step: 0.01 },
  { key: 'warmupUnit', label: 'Warmup unit', help: 'fraction or steps.', kind: 'select', options: ['fraction', 'steps'] },
  { key: 'trainTextEncoder', label: 'Train the text encoder', help: 'Off trains only the U-Net.', kind: 'bool' },
  { key: 'networkDropout', label: 'Network dropout', help: 'On the LoRA down-projection (0.1).', kind: 'number', step: 0.01 },
  { key: 'convDim', label: 'Conv dim (LoCon)', help: '0 leaves 3x3 convolutions alone.', kind: 'number' },
  { key: 'weightDecay', label: 'Weight decay', help: 'AdamW decoupled decay (0.01).', kind: 'number', step: 0.001 },
  { key: 'maxGradNorm', label: 'Max grad norm', help: 'Gradient clipping (1; 0 disables).', kind: 'number', step: 0.1 },
  { key: 'noiseOffset', label: 'Noise offset', help: 'Helps very dark or bright images (0.01).', kind: 'number', step: 0.01 },
  { key: 'minSnrGamma', label: 'Min-SNR gamma', help: 'Loss weighting (5; 0 off).', kind: 'number' },
  { key: 'prediction', label: 'Prediction', help: 'epsilon for SD 1.x.', kind: 'select', options: ['epsilon', 'v_prediction'] },
  { key: 'clipSkip', label: 'Clip skip', help: '1 for most models, 2 for anime models.', kind: 'number' },
  { key: 'enableBuckets', label: 'Aspect-ratio buckets', help: 'Keep image shapes instead of square crops.', kind: 'bool' },
  { key: 'flipAug', label: 'Flip augmentation', help: 'Random horizontal mirroring.', kind: 'bool' },
  { key: 'shuffleCaptions', label: 'Shuffle caption tags', help: 'After the kept ones.', kind: 'bool' },
  { key: 'keepTokens', label: 'Keep tokens', help: 'Leading tags kept in place.', kind: 'number' },
  { key: 'repeats', label: 'Repeats', help: 'Times each image appears per epoch.', kind: 'number' },
  { key: 'cacheTextEncoderOutputs', label: 'Cache text-encoder outputs', help: 'Encode each caption once (frozen text encoder, no shuffling or dropout).', kind: 'bool' },
  { key: 'gradientCheckpointing', label: 'Gradient checkpointing', help: 'Less memory, about a third slower.', kind: 'bool' },
  { key: 'seed', label: 'Seed', help: 'Same seed, same run.', kind: 'number' },
  { key: 'saveEvery', label: 'Save every', help: 'Steps between saved LoRAs (0 = every tenth of the run).', kind: 'number' },
  { key: 'sampleEvery', label: 'Sample every', help: 'Steps between preview images (0 = every tenth of the run).', kind: 'number' },
  { key: 'sampleSteps', label: 'Sample steps', help: 'Denoising steps per preview image (0 = no previews; 20 is typical).', kind: 'number' },
  { key: 'samplePrompt', label: 'Sample prompt', help: 'Prompt of the previews; empty uses the trigger word and the first caption.', kind: 'text' },
  { key: 'sampleGuidance', label: 'Sample guidance', help: 'Classifier-free guidance scale of the previews (7.5).', kind: 'number', step: 0.5 },
  { key: 'savePrecision', label: 'Save precision', help: 'fp16 files are half the size.', kind: 'select', options: ['fp16', 'fp32'] },
];

const change = chooseConfig;

function Input({ f }: { f: Field }) {
  const { config, errors } = useApp();
  const v = config[f.key];
  const id = `cfg-${f.key}`;
  const err = errors[f.key];
  const control =
    f.kind === 'bool' ? (
      <input id={id} type="checkbox" checked={Boolean(v)} onChange={(e) => change({ [f.key]: e.target.checked } as Partial<TrainConfig>)} />
    ) : f.kind === 'select' ? (
      <select id={id} value={String(v)} onChange={(e) => change({ [f.key]: e.target.value } as Partial<TrainConfig>)}>
        {f.options!.map((o) => <option key={o}>{o}</option>)}
      </select>
    ) : (
      <input id={id} type={f.kind === 'number' ? 'number' : 'text'} step={f.step ?? 'any'} value={typeof v === 'number' && Number.isNaN(v) ? '' : String(v)} aria-invalid={!!err} aria-describedby={`${id}-help`}
        onChange={(e) => change({ [f.key]: f.kind === 'number' ? (e.target.value === '' ? NaN : Number(e.target.value)) : e.target.value } as Partial<TrainConfig>)} />
    );
  return (
    <div className="field">
      <label htmlFor={id}>{f.label}</label>
      {control}
      <small id={`${id}-help`}>{f.help}</small>
      {err && <small className="error" data-testid={`error-${f.key}`}>{err}</small>}
    </div>
  );
}

export function Settings() {
  const { config, plan, errors, set, dataset, model, run } = useApp();
  useEffect(() => {
    const t = setTimeout(async () => {
      const r = await trainer().validateConfig(config);
      set(r.ok ? { errors: {}, plan: r.plan ?? null, memory: r.memory ?? null } : { errors: r.errors, plan: null, memory: null });
    }, 150);
    return () => clearTimeout(t);
    // After a run the memory advice, held back while it ran, is worked out.
  }, [config, dataset.length, model.status, run.status, set]);
  const exportPreset = () => {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([JSON.stringify(config, null, 2)], { type: 'application/json' }));
    a.download = `${config.runName}-preset.json`;
    a.click();
  };
  const importPreset = async (f: File) => {
    try {
      change(JSON.parse(await f.text()));
    } catch {
      set({ errors: { preset: `${f.name} is not a JSON preset` } });
    }
  };
  return (
    <section aria-labelledby="set-h">
      <h2 id="set-h">3. Settings</h2>
      <div className="fields">{BASIC.map((f) => <Input key={f.key} f={f} />)}</div>
      <details>
        <summary>Advanced</summary>
        <div className="fields">{ADVANCED.map((f) => <Input key={f.key} f={f} />)}</div>
      </details>
      <div className="row">
        <button onClick={exportPreset}>Export preset</button>
        <label className="file">Import preset<input type="file" accept=".json" onChange={(e) => e.target.files?.[0] && importPreset(e.target.files[0])} /></label>
        {errors.preset && <span className="error">{errors.preset}</span>}
      </div>
      <p className="summary" data-testid="summary">
        {plan
          ? `Effective batch ${plan.effectiveBatch} · ${plan.steps} optimizer steps · ${plan.epochs} epochs · U-Net LR ${plan.unetLr.toExponential(2)} · text-encoder LR ${plan.textEncoderLr.toExponential(2)} · warmup ${plan.warmupSteps} steps · saved every ${plan.saveEvery} steps`
          : 'Fix the settings marked in red.'}
      </p>
      <MemoryLine />
    </section>
  );
}
