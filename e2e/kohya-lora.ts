// LoRA files as another trainer would write them for the tiny demo U-Net: kohya names (LoRA, or LyCORIS' LoHa), their own rank, F32 tensors, seeded values.
import { readFileSync } from 'node:fs';

/** The U-Net's attention projections (diffusers names) with their [out, in] shapes, from the model file's header. */
function attentionLinears(unetFile: string): [string, [number, number]][] {
  const b = readFileSync(unetFile);
  const header = JSON.parse(b.subarray(8, 8 + Number(b.readBigUInt64LE(0))).toString('utf8')) as Record<string, { shape: number[] }>;
  return Object.entries(header)
    .filter(([k]) => /\.attn[12]\.to_(q|k|v|out\.0)\.weight$/.test(k))
    .map(([k, v]) => [k.replace(/\.weight$/, ''), v.shape as [number, number]]);
}

/** A seeded generator of values uniform in ±scale, so a file is the same every time. */
function uniform(seed: number, scale: number): (n: number) => Float32Array {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
  return (n) => Float32Array.from({ length: n }, () => rand() * scale);
}

/**
 * kohya's layout: `lora_unet_<diffusers name with _>.lora_down.weight` [rank, in], `.lora_up.weight` [out, rank],
 * `.alpha` (a scalar). Values are uniform in ±scale from a seeded generator, so a file is the same every time.
 */
export function kohyaLora(unetFile: string, rank: number, scale: number, seed: number): Buffer {
  const values = uniform(seed, scale);
  const tensors: [string, number[], Float32Array][] = [];
  for (const [name, [out, inp]] of attentionLinears(unetFile)) {
    const key = `lora_unet_${name.replace(/\./g, '_')}`;
    tensors.push([`${key}.lora_down.weight`, [rank, inp], values(rank * inp)]);
    tensors.push([`${key}.lora_up.weight`, [out, rank], values(out * rank)]);
    tensors.push([`${key}.alpha`, [], Float32Array.of(rank)]);
  }
  return safetensors(tensors, { ss_network_module: 'networks.lora', ss_network_dim: String(rank), ss_network_alpha: String(rank) });
}

/** A LoHa in LyCORIS' layout on the same layers: `hada_w1_a`/`hada_w2_a` [out, rank], `hada_w1_b`/`hada_w2_b` [rank, in], `alpha`. */
export function lohaLora(unetFile: string, rank: number, scale: number, seed: number): Buffer {
  const values = uniform(seed, scale);
  const tensors: [string, number[], Float32Array][] = [];
  for (const [name, [out, inp]] of attentionLinears(unetFile)) {
    const key = `lora_unet_${name.replace(/\./g, '_')}`;
    for (const w of ['hada_w1', 'hada_w2']) tensors.push([`${key}.${w}_a`, [out, rank], values(out * rank)], [`${key}.${w}_b`, [rank, inp], values(rank * inp)]);
    tensors.push([`${key}.alpha`, [], Float32Array.of(rank)]);
  }
  return safetensors(tensors, { ss_network_module: 'lycoris.kohya', ss_network_args: JSON.stringify({ algo: 'loha' }) });
}

/** The tensors as a .safetensors file (F32, header padded to 8 bytes). */
function safetensors(tensors: [string, number[], Float32Array][], metadata: Record<string, string>): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let at = 0;
  for (const [name, shape, data] of tensors) header[name] = { dtype: 'F32', shape, data_offsets: [at, (at += data.byteLength)] };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, Buffer.from(json), ...tensors.map(([, , d]) => Buffer.from(d.buffer, d.byteOffset, d.byteLength))]);
}
