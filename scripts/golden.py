#!/usr/bin/env python3
"""Independent PyTorch reference for LoRASmith's SD 1.x models: writes golden outputs.

Usage:
    /usr/bin/python3 scripts/golden.py <diffusers-folder> <out-folder>

<diffusers-folder> holds unet/, text_encoder/ and vae/, each with a config.json and its
safetensors file (diffusion_pytorch_model.safetensors, or model.safetensors for the text
encoder). The script builds the SD 1.x U-Net, CLIP text encoder and VAE in plain functional
PyTorch, written from the architecture description (docs: shared/reference/sd1-architecture.md),
computes everything in float64 and writes three F32 safetensors files to <out-folder>:

    unet.safetensors  sample [2,C,8,8], timesteps [2] (10, 777), context [2,77,ctx], out [2,C,8,8]
    clip.safetensors  ids [2,77] (token ids as F32), hidden_skip1 [2,77,W], hidden_skip2 [2,77,W]
    vae.safetensors   image [1,3,64,64] in [-1,1], mean [1,L,8,8], logvar [1,L,8,8],
                      latent [1,L,8,8], decoded [1,3,64,64]
    train_step.safetensors (when <diffusers-folder> has tokenizer/vocab.json)
                      x0 [2,C,8,8], noise [10,2,C,8,8], timesteps [10,2], ids [2,77],
                      init.<kohya name> / grad.<kohya name> / final.<kohya name> for every
                      LoRA tensor of the U-Net and the text encoder, loss [10], grad_norm [10]

train_step is the trainer's objective with a LoRA on kohya's default targets (rank 4, alpha 2,
no dropout): x_t = sqrt(acp) x0 + sqrt(1-acp) eps, the text encoder trained too, the U-Net's
epsilon prediction against eps in min-SNR-5 weighted MSE. grad.* are the raw gradients of the
first step at init.*; then ten steps, step s on noise[s] and timesteps[s], each clipping the
global gradient norm and taking a torch.optim.AdamW step (TRAIN below, also in the metadata).

Inputs are drawn with fixed seeds as float32 and the computation uses exactly those float32
values (widened to float64), so a test that loads the saved inputs sees the same numbers.
`latent` is the decoder's input as given to post_quant_conv (already divided by the
scaling factor). `logvar` is clamped to [-30, 20] as AutoencoderKL does.

Every tensor in a weight file must be used, and every weight the model needs must exist: a
name or shape mismatch is an error, so the script also checks the checkpoint's key names.
Only the standard library and torch (1.13 works: attention is an explicit softmax).
"""
import hashlib
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

DT = torch.float64

# ---------------------------------------------------------------------------------------------
# safetensors I/O (own implementation: 8-byte little-endian header length, JSON header, data)
# ---------------------------------------------------------------------------------------------

_DTYPES = {
    'F64': (torch.float64, 8),
    'F32': (torch.float32, 4),
    'F16': (torch.float16, 2),
    'BF16': (None, 2),  # decoded by hand (bits << 16 viewed as float32)
    'I64': (torch.int64, 8),
    'I32': (torch.int32, 4),
}


def read_safetensors(path):
    """All tensors of a safetensors file as a dict name -> tensor (in the file's dtype, BF16 -> F32)."""
    with open(path, 'rb') as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f'{path}: too short for a safetensors header')
    (n,) = struct.unpack('<Q', data[:8])
    if 8 + n > len(data):
        raise ValueError(f'{path}: header length {n} runs past the end of the file ({len(data)} bytes)')
    header = json.loads(data[8:8 + n].decode('utf-8'))
    body = bytearray(data[8 + n:])  # writable, so torch.frombuffer does not warn
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        dtype = info['dtype']
        if dtype not in _DTYPES:
            raise ValueError(f'{path}: tensor {name} has unsupported dtype {dtype}')
        tdt, size = _DTYPES[dtype]
        shape = [int(s) for s in info['shape']]
        start, end = info['data_offsets']
        count = math.prod(shape)
        if end - start != count * size or end > len(body) or start < 0:
            raise ValueError(f'{path}: tensor {name} offsets {start}..{end} do not fit shape {shape} {dtype}')
        if count == 0:
            t = torch.zeros(shape, dtype=tdt or torch.float32)
        elif dtype == 'BF16':
            bits = torch.frombuffer(body, dtype=torch.int16, count=count, offset=start).to(torch.int32)
            t = ((bits & 0xFFFF) << 16).view(torch.float32).reshape(shape).clone()
        else:
            t = torch.frombuffer(body, dtype=tdt, count=count, offset=start).reshape(shape).clone()
        out[name] = t
    return out


def write_safetensors(path, tensors, metadata=None):
    """Write name -> tensor as F32 (floating point) safetensors, header padded with spaces to 8 bytes."""
    header = {}
    if metadata:
        header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().to(torch.float32).contiguous().cpu()
        b = t.numpy().astype('<f4').tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(',', ':')).encode('utf-8')
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


class Weights:
    """Weights by name in float64; records which were used so unused file entries are reported."""

    def __init__(self, tensors, label, ignore=(), lora=None):
        self.t = tensors
        self.label = label
        self.used = set()
        self.ignore = ignore
        self.lora = lora  # a Lora (training step) or None (plain forward)

    def has(self, name):
        return name in self.t

    def __call__(self, name):
        if name not in self.t:
            raise KeyError(f'{self.label}: missing weight {name}')
        self.used.add(name)
        return self.t[name].to(DT)

    def first(self, *names):
        """The first of several alternative names that exists (old/new checkpoint spellings)."""
        for n in names:
            if n in self.t:
                return self(n)
        raise KeyError(f'{self.label}: missing weight, none of {names}')

    def check_all_used(self):
        unused = sorted(k for k in self.t if k not in self.used and not any(k.endswith(s) for s in self.ignore))
        if unused:
            raise ValueError(f'{self.label}: {len(unused)} weights in the file were not used by the model: {unused[:20]}')


# ---------------------------------------------------------------------------------------------
# Functional building blocks (float64)
# ---------------------------------------------------------------------------------------------

def linear(x, w, b=None):
    if w.dim() == 4:  # a 1x1 conv weight [out, in, 1, 1] used on tokens
        w = w.reshape(w.shape[0], w.shape[1])
    y = torch.matmul(x, w.transpose(0, 1))
    return y if b is None else y + b


def adapted(W, path, x, y, layout=None):
    """y plus the LoRA delta of module `path` on its input x (tokens [.., in]); y itself without a LoRA.
    layout maps the delta's token layout to y's (the 1x1-conv projections)."""
    if W.lora is None or not W.lora.has(path):
        return y
    d = W.lora.delta(path, x)
    return y + (d if layout is None else layout(d))


def conv2d(x, w, b=None, stride=1, pad=0):
    """pad: int (all sides) or (left, right, top, bottom), applied as zero padding before the conv."""
    if isinstance(pad, int):
        pad = (pad, pad, pad, pad)
    if any(pad):
        x = F.pad(x, pad)
    return F.conv2d(x, w, b, stride=stride)


def group_norm(x, groups, w, b, eps):
    B, C = x.shape[0], x.shape[1]
    g = x.reshape(B, groups, -1)
    mean = g.mean(dim=2, keepdim=True)
    var = ((g - mean) ** 2).mean(dim=2, keepdim=True)
    y = ((g - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    shape = [1, C] + [1] * (x.dim() - 2)
    return y * w.reshape(shape) + b.reshape(shape)


def layer_norm(x, w, b, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def silu(x):
    return x * torch.sigmoid(x)


def gelu(x):  # exact (erf) GELU
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def upsample2x(x):  # nearest neighbour
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def attention(q, k, v, heads, causal=False):
    """Scaled dot-product attention with an explicit softmax. q [B,N,C], k/v [B,M,C] -> [B,N,C]."""
    B, N, C = q.shape
    M = k.shape[1]
    d = C // heads
    if d * heads != C:
        raise ValueError(f'{C} channels do not split into {heads} heads')
    qh = q.reshape(B, N, heads, d).permute(0, 2, 1, 3)
    kh = k.reshape(B, M, heads, d).permute(0, 2, 1, 3)
    vh = v.reshape(B, M, heads, d).permute(0, 2, 1, 3)
    s = torch.matmul(qh, kh.transpose(-1, -2)) / math.sqrt(d)
    if causal:
        mask = torch.ones(N, M, dtype=torch.bool).triu(1)
        s = s.masked_fill(mask, float('-inf'))
    s = s - s.amax(dim=-1, keepdim=True)
    p = torch.exp(s)
    p = p / p.sum(dim=-1, keepdim=True)
    o = torch.matmul(p, vh)
    return o.permute(0, 2, 1, 3).reshape(B, N, C)


def timestep_embedding(t, dim, flip_sin_to_cos=True, freq_shift=0.0):
    """Sinusoidal embedding: freqs exp(-ln(10000) i / (half - shift)); [cos, sin] when flipped."""
    half = dim // 2
    i = torch.arange(half, dtype=DT)
    freqs = torch.exp(-math.log(10000.0) * i / (half - freq_shift))
    a = t.to(DT)[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(a), torch.sin(a)], dim=1) if flip_sin_to_cos else torch.cat([torch.sin(a), torch.cos(a)], dim=1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


def to_tokens(x):  # [B,C,H,W] -> [B,HW,C]
    B, C, H, W = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, H * W, C)


def from_tokens(t, H, W):  # [B,HW,C] -> [B,C,H,W]
    B, N, C = t.shape
    return t.reshape(B, H, W, C).permute(0, 3, 1, 2)


# ---------------------------------------------------------------------------------------------
# U-Net (UNet2DConditionModel semantics, SD 1.x)
# ---------------------------------------------------------------------------------------------

def unet_resblock(W, p, x, temb, groups, eps):
    cout = W(f'{p}.conv1.weight').shape[0]
    h = conv2d(silu(group_norm(x, groups, W(f'{p}.norm1.weight'), W(f'{p}.norm1.bias'), eps)), W(f'{p}.conv1.weight'), W(f'{p}.conv1.bias'), pad=1)
    h = h + linear(silu(temb), W(f'{p}.time_emb_proj.weight'), W(f'{p}.time_emb_proj.bias'))[:, :, None, None]
    h = conv2d(silu(group_norm(h, groups, W(f'{p}.norm2.weight'), W(f'{p}.norm2.bias'), eps)), W(f'{p}.conv2.weight'), W(f'{p}.conv2.bias'), pad=1)
    if x.shape[1] != cout:
        x = conv2d(x, W(f'{p}.conv_shortcut.weight'), W(f'{p}.conv_shortcut.bias'))
    return x + h


def attn_block(W, p, x, ctx, heads, causal=False, qkv_bias=False):
    kv = x if ctx is None else ctx
    bias = (lambda n: W(f'{p}.{n}.bias')) if qkv_bias else (lambda n: None)
    q = adapted(W, f'{p}.to_q', x, linear(x, W(f'{p}.to_q.weight'), bias('to_q')))
    k = adapted(W, f'{p}.to_k', kv, linear(kv, W(f'{p}.to_k.weight'), bias('to_k')))
    v = adapted(W, f'{p}.to_v', kv, linear(kv, W(f'{p}.to_v.weight'), bias('to_v')))
    a = attention(q, k, v, heads, causal)
    return adapted(W, f'{p}.to_out.0', a, linear(a, W(f'{p}.to_out.0.weight'), W(f'{p}.to_out.0.bias')))


def unet_transformer(W, p, x, ctx, groups, heads):
    """Transformer2DModel with 1x1-conv projections (SD 1.x), one BasicTransformerBlock."""
    B, C, H, Wd = x.shape
    h = group_norm(x, groups, W(f'{p}.norm.weight'), W(f'{p}.norm.bias'), 1e-6)
    pin = W(f'{p}.proj_in.weight')
    if pin.dim() == 4:
        h = adapted(W, f'{p}.proj_in', to_tokens(h), to_tokens(conv2d(h, pin, W(f'{p}.proj_in.bias'))))
    else:  # linear projection (not SD 1.x, accepted anyway)
        h = adapted(W, f'{p}.proj_in', to_tokens(h), linear(to_tokens(h), pin, W(f'{p}.proj_in.bias')))
    blk = f'{p}.transformer_blocks.0'
    ln = lambda n, t: layer_norm(t, W(f'{blk}.{n}.weight'), W(f'{blk}.{n}.bias'), 1e-5)
    h = h + attn_block(W, f'{blk}.attn1', ln('norm1', h), None, heads)
    h = h + attn_block(W, f'{blk}.attn2', ln('norm2', h), ctx, heads)
    x3 = ln('norm3', h)
    ff = adapted(W, f'{blk}.ff.net.0.proj', x3, linear(x3, W(f'{blk}.ff.net.0.proj.weight'), W(f'{blk}.ff.net.0.proj.bias')))
    val, gate = ff.chunk(2, dim=-1)
    g = val * gelu(gate)
    h = h + adapted(W, f'{blk}.ff.net.2', g, linear(g, W(f'{blk}.ff.net.2.weight'), W(f'{blk}.ff.net.2.bias')))
    pout = W(f'{p}.proj_out.weight')
    if pout.dim() == 4:
        h = adapted(W, f'{p}.proj_out', h, conv2d(from_tokens(h, H, Wd), pout, W(f'{p}.proj_out.bias')), lambda d: from_tokens(d, H, Wd))
    else:
        h = from_tokens(adapted(W, f'{p}.proj_out', h, linear(h, pout, W(f'{p}.proj_out.bias'))), H, Wd)
    return h + x


def unet_forward(W, cfg, sample, timesteps, context):
    ch = list(cfg['block_out_channels'])
    n = len(ch)
    nl = cfg.get('layers_per_block', 2)
    groups = cfg.get('norm_num_groups', 32)
    eps = cfg.get('norm_eps', 1e-5)
    down_types = cfg['down_block_types']
    up_types = cfg['up_block_types']
    hd = cfg.get('attention_head_dim', 8)  # SD 1.x: this is the number of heads
    heads = list(hd) if isinstance(hd, (list, tuple)) else [hd] * n
    if cfg.get('transformer_layers_per_block', 1) not in (1, [1] * n):
        raise ValueError('only one transformer block per attention is supported (SD 1.x)')

    temb = timestep_embedding(timesteps, ch[0], cfg.get('flip_sin_to_cos', True), cfg.get('freq_shift', 0))
    temb = linear(temb, W('time_embedding.linear_1.weight'), W('time_embedding.linear_1.bias'))
    temb = linear(silu(temb), W('time_embedding.linear_2.weight'), W('time_embedding.linear_2.bias'))

    h = conv2d(sample, W('conv_in.weight'), W('conv_in.bias'), pad=1)
    skips = [h]
    for i in range(n):
        for j in range(nl):
            h = unet_resblock(W, f'down_blocks.{i}.resnets.{j}', h, temb, groups, eps)
            if down_types[i].startswith('CrossAttn'):
                h = unet_transformer(W, f'down_blocks.{i}.attentions.{j}', h, context, groups, heads[i])
            skips.append(h)
        if i < n - 1:
            h = conv2d(h, W(f'down_blocks.{i}.downsamplers.0.conv.weight'), W(f'down_blocks.{i}.downsamplers.0.conv.bias'), stride=2, pad=1)
            skips.append(h)

    h = unet_resblock(W, 'mid_block.resnets.0', h, temb, groups, eps)
    h = unet_transformer(W, 'mid_block.attentions.0', h, context, groups, heads[-1])
    h = unet_resblock(W, 'mid_block.resnets.1', h, temb, groups, eps)

    rheads = heads[::-1]
    for i in range(n):
        for j in range(nl + 1):
            h = torch.cat([h, skips.pop()], dim=1)
            h = unet_resblock(W, f'up_blocks.{i}.resnets.{j}', h, temb, groups, eps)
            if up_types[i].startswith('CrossAttn'):
                h = unet_transformer(W, f'up_blocks.{i}.attentions.{j}', h, context, groups, rheads[i])
        if i < n - 1:
            h = conv2d(upsample2x(h), W(f'up_blocks.{i}.upsamplers.0.conv.weight'), W(f'up_blocks.{i}.upsamplers.0.conv.bias'), pad=1)
    assert not skips

    h = silu(group_norm(h, groups, W('conv_norm_out.weight'), W('conv_norm_out.bias'), eps))
    return conv2d(h, W('conv_out.weight'), W('conv_out.bias'), pad=1)


# ---------------------------------------------------------------------------------------------
# CLIP text encoder
# ---------------------------------------------------------------------------------------------

def clip_hidden_states(W, cfg, ids):
    """All hidden states: [embeddings, after layer 1, ..., after layer N] (before final_layer_norm)."""
    P = 'text_model'
    heads = cfg['num_attention_heads']
    eps = cfg.get('layer_norm_eps', 1e-5)
    act = cfg.get('hidden_act', 'quick_gelu')
    actf = {'quick_gelu': quick_gelu, 'gelu': gelu}[act]
    T = ids.shape[1]
    h = W(f'{P}.embeddings.token_embedding.weight')[ids] + W(f'{P}.embeddings.position_embedding.weight')[:T][None]
    states = [h]
    for i in range(cfg['num_hidden_layers']):
        l = f'{P}.encoder.layers.{i}'
        lin = lambda n, t: adapted(W, f'{l}.{n}', t, linear(t, W(f'{l}.{n}.weight'), W(f'{l}.{n}.bias')))
        x = layer_norm(h, W(f'{l}.layer_norm1.weight'), W(f'{l}.layer_norm1.bias'), eps)
        a = attention(lin('self_attn.q_proj', x), lin('self_attn.k_proj', x), lin('self_attn.v_proj', x), heads, causal=True)
        h = h + lin('self_attn.out_proj', a)
        x = layer_norm(h, W(f'{l}.layer_norm2.weight'), W(f'{l}.layer_norm2.bias'), eps)
        h = h + lin('mlp.fc2', actf(lin('mlp.fc1', x)))
        states.append(h)
    return states


def clip_forward(W, cfg, ids, clip_skip=1):
    """Clip skip n: hidden state n-1 layers before the last, then final_layer_norm."""
    states = clip_hidden_states(W, cfg, ids)
    eps = cfg.get('layer_norm_eps', 1e-5)
    return layer_norm(states[-clip_skip], W('text_model.final_layer_norm.weight'), W('text_model.final_layer_norm.bias'), eps)


# ---------------------------------------------------------------------------------------------
# VAE (AutoencoderKL)
# ---------------------------------------------------------------------------------------------

VAE_EPS = 1e-6


def vae_resblock(W, p, x, groups):
    cout = W(f'{p}.conv1.weight').shape[0]
    h = conv2d(silu(group_norm(x, groups, W(f'{p}.norm1.weight'), W(f'{p}.norm1.bias'), VAE_EPS)), W(f'{p}.conv1.weight'), W(f'{p}.conv1.bias'), pad=1)
    h = conv2d(silu(group_norm(h, groups, W(f'{p}.norm2.weight'), W(f'{p}.norm2.bias'), VAE_EPS)), W(f'{p}.conv2.weight'), W(f'{p}.conv2.bias'), pad=1)
    if x.shape[1] != cout:
        x = conv2d(x, W(f'{p}.conv_shortcut.weight'), W(f'{p}.conv_shortcut.bias'))
    return x + h


def vae_attention(W, p, x, groups):
    """Single-head self-attention over H*W positions (Linear q/k/v/out, or the pre-2023 names)."""
    B, C, H, Wd = x.shape
    t = to_tokens(group_norm(x, groups, W(f'{p}.group_norm.weight'), W(f'{p}.group_norm.bias'), VAE_EPS))
    lin = lambda new, old, t: linear(t, W.first(f'{p}.{new}.weight', f'{p}.{old}.weight'), W.first(f'{p}.{new}.bias', f'{p}.{old}.bias'))
    q, k, v = lin('to_q', 'query', t), lin('to_k', 'key', t), lin('to_v', 'value', t)
    o = lin('to_out.0', 'proj_attn', attention(q, k, v, 1))
    return from_tokens(o, H, Wd) + x


def vae_mid(W, p, h, groups):
    h = vae_resblock(W, f'{p}.mid_block.resnets.0', h, groups)
    h = vae_attention(W, f'{p}.mid_block.attentions.0', h, groups)
    return vae_resblock(W, f'{p}.mid_block.resnets.1', h, groups)


def vae_encode(W, cfg, x):
    ch = list(cfg['block_out_channels'])
    n = len(ch)
    nl = cfg.get('layers_per_block', 2)
    g = cfg.get('norm_num_groups', 32)
    h = conv2d(x, W('encoder.conv_in.weight'), W('encoder.conv_in.bias'), pad=1)
    for i in range(n):
        for j in range(nl):
            h = vae_resblock(W, f'encoder.down_blocks.{i}.resnets.{j}', h, g)
        if i < n - 1:  # asymmetric: pad right and bottom by one, 3x3 stride 2, no padding
            h = conv2d(h, W(f'encoder.down_blocks.{i}.downsamplers.0.conv.weight'), W(f'encoder.down_blocks.{i}.downsamplers.0.conv.bias'), stride=2, pad=(0, 1, 0, 1))
    h = vae_mid(W, 'encoder', h, g)
    h = silu(group_norm(h, g, W('encoder.conv_norm_out.weight'), W('encoder.conv_norm_out.bias'), VAE_EPS))
    h = conv2d(h, W('encoder.conv_out.weight'), W('encoder.conv_out.bias'), pad=1)
    moments = conv2d(h, W('quant_conv.weight'), W('quant_conv.bias'))
    mean, logvar = moments.chunk(2, dim=1)
    return mean, logvar.clamp(-30.0, 20.0)


def vae_decode(W, cfg, z):
    """z: latent as given to post_quant_conv (already divided by the scaling factor)."""
    ch = list(cfg['block_out_channels'])
    n = len(ch)
    nl = cfg.get('layers_per_block', 2)
    g = cfg.get('norm_num_groups', 32)
    h = conv2d(z, W('post_quant_conv.weight'), W('post_quant_conv.bias'))
    h = conv2d(h, W('decoder.conv_in.weight'), W('decoder.conv_in.bias'), pad=1)
    h = vae_mid(W, 'decoder', h, g)
    for i in range(n):
        for j in range(nl + 1):
            h = vae_resblock(W, f'decoder.up_blocks.{i}.resnets.{j}', h, g)
        if i < n - 1:
            h = conv2d(upsample2x(h), W(f'decoder.up_blocks.{i}.upsamplers.0.conv.weight'), W(f'decoder.up_blocks.{i}.upsamplers.0.conv.bias'), pad=1)
    h = silu(group_norm(h, g, W('decoder.conv_norm_out.weight'), W('decoder.conv_norm_out.bias'), VAE_EPS))
    return conv2d(h, W('decoder.conv_out.weight'), W('decoder.conv_out.bias'), pad=1)


# ---------------------------------------------------------------------------------------------
# Inputs, loading, main
# ---------------------------------------------------------------------------------------------

UNET_SEED, CLIP_SEED, VAE_SEED = 1234, 5678, 9012
TIMESTEPS = [10.0, 777.0]
CLIP_LENGTHS = [5, 9]


def unet_inputs(cfg):
    g = torch.Generator().manual_seed(UNET_SEED)
    sample = torch.randn(2, cfg.get('in_channels', 4), 8, 8, generator=g, dtype=torch.float32)
    context = torch.randn(2, 77, cfg.get('cross_attention_dim', 768), generator=g, dtype=torch.float32)
    return sample, torch.tensor(TIMESTEPS, dtype=torch.float32), context


def clip_inputs(cfg):
    g = torch.Generator().manual_seed(CLIP_SEED)
    V = cfg['vocab_size']
    T = cfg.get('max_position_embeddings', 77)
    bos, eos = V - 2, V - 1
    ids = torch.full((2, T), eos, dtype=torch.int64)
    for b, n in enumerate(CLIP_LENGTHS):
        ids[b, 0] = bos
        ids[b, 1:1 + n] = torch.randint(0, V - 2, (n,), generator=g)
        ids[b, 1 + n] = eos
    return ids


def vae_inputs(cfg):
    g = torch.Generator().manual_seed(VAE_SEED)
    image = torch.rand(1, cfg.get('in_channels', 3), 64, 64, generator=g, dtype=torch.float32) * 2 - 1
    latent = torch.randn(1, cfg.get('latent_channels', 4), 8, 8, generator=g, dtype=torch.float32)
    return image, latent


# ---------------------------------------------------------------------------------------------
# One LoRA training step and ten AdamW steps (the trainer's epsilon objective, min-SNR weighted)
# ---------------------------------------------------------------------------------------------

TRAIN_SEED = 4321
TRAIN = {
    'rank': 4, 'alpha': 2.0,  # scale alpha / rank = 0.5, so a scale of 1 (or rank / alpha) is caught
    'steps': 10, 'batch': 2, 'latent_hw': 8,
    'lr_unet': 1e-3, 'lr_te': 5e-4,  # larger than the recipe's so ten steps move the weights measurably
    'beta1': 0.9, 'beta2': 0.99, 'eps': 1e-8, 'weight_decay': 0.01,  # the recipe's AdamW (optimizer.ts)
    'max_grad_norm': 0.25,  # under the norms seen (0.19-0.36), so about half the steps clip
    'min_snr_gamma': 5.0, 'clip_skip': 1,
}
TRAIN_CAPTIONS = ['black cat on the beach', 'a photo of blue boat']  # whole words of the tiny vocabulary
UNET_LORA = r'^(.*\.attentions\.\d+)\.(proj_in|proj_out|transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.(0\.proj|2)))\.weight$'
TE_LORA = r'^text_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])\.weight$'


class Lora:
    """LoRA modules by diffusers path: y += (alpha / rank) * up(down(x)), kohya's forward without dropout.
    down [rank, in] and up [out, rank] are float64 leaves; `used` catches a module the model never calls."""

    def __init__(self, mods, scale):
        self.mods = mods
        self.scale = scale
        self.used = set()

    def has(self, path):
        return path in self.mods

    def delta(self, path, x):
        self.used.add(path)
        down, up = self.mods[path]
        return linear(linear(x, down.reshape(down.shape[0], -1)), up.reshape(up.shape[0], -1)) * self.scale

    def check_all_used(self, label):
        missing = sorted(set(self.mods) - self.used)
        if missing:
            raise ValueError(f'{label}: LoRA modules the forward never reached: {missing[:10]}')


def lora_modules(tensors, pattern, part, rank, g):
    """kohya name -> (path, down, up) for every weight matching pattern, in file-name order. Shapes as
    kohya writes them: [rank, in] / [out, rank], with trailing 1x1 for a 1x1-conv base layer. down is
    kaiming-uniform-like (bound 1/sqrt(in)); up is nonzero (uniform, bound 0.5) so every gradient is informative."""
    import re
    out = {}
    for name in sorted(tensors):
        if not re.match(pattern, name):
            continue
        path = name[:-len('.weight')]
        w = tensors[name]
        o, i = w.shape[0], w.shape[1]
        tail = [1, 1] if w.dim() == 4 else []
        down = ((torch.rand([rank, i] + tail, generator=g, dtype=torch.float32) * 2 - 1) / math.sqrt(i))
        up = (torch.rand([o, rank] + tail, generator=g, dtype=torch.float32) * 2 - 1) * 0.5
        out[f'lora_{part}_' + path.replace('.', '_')] = (path, down, up)
    if not out:
        raise ValueError(f'lora_{part}: no module matches {pattern}')
    return out


def ddpm_alphas_cumprod(steps=1000, beta_start=0.00085, beta_end=0.012):
    """SD 1.x's scaled-linear schedule: betas = linspace(sqrt(start), sqrt(end))^2, acp = cumprod(1 - betas)."""
    betas = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), steps, dtype=DT) ** 2
    return torch.cumprod(1 - betas, dim=0)


def train_inputs(ucfg, tokenizer_vocab, max_len):
    g = torch.Generator().manual_seed(TRAIN_SEED)
    B, n, hw = TRAIN['batch'], TRAIN['steps'], TRAIN['latent_hw']
    C = ucfg.get('in_channels', 4)
    x0 = torch.randn(B, C, hw, hw, generator=g, dtype=torch.float32)
    noise = torch.randn(n, B, C, hw, hw, generator=g, dtype=torch.float32)
    timesteps = torch.randint(0, 1000, (n, B), generator=g).to(torch.float32)
    bos, eos = tokenizer_vocab['<|startoftext|>'], tokenizer_vocab['<|endoftext|>']
    ids = torch.full((B, max_len), eos, dtype=torch.int64)
    for b, cap in enumerate(TRAIN_CAPTIONS):
        toks = [tokenizer_vocab[w + '</w>'] for w in cap.split()]
        ids[b, 0] = bos
        ids[b, 1:1 + len(toks)] = torch.tensor(toks)
    return x0, noise, timesteps, ids, g


def train_loss(Wu, ucfg, Wc, ccfg, x0, noise, timesteps, ids, acp):
    """The trainer's loss: x_t = sqrt(acp) x0 + sqrt(1 - acp) eps, target eps, min-SNR weight
    min(snr, gamma) / snr per item, mean over items of weight * mean((pred - eps)^2)."""
    a = acp[timesteps.long()]
    sa, sb = a.sqrt()[:, None, None, None], (1 - a).sqrt()[:, None, None, None]
    noisy = sa * x0 + sb * noise
    context = clip_forward(Wc, ccfg, ids, TRAIN['clip_skip'])
    pred = unet_forward(Wu, ucfg, noisy, timesteps, context)
    snr = a / (1 - a)
    weight = torch.minimum(snr, torch.full_like(snr, TRAIN['min_snr_gamma'])) / snr
    per_item = ((pred - noise) ** 2).reshape(pred.shape[0], -1).mean(dim=1)
    return (weight * per_item).mean()


def run_train_step(ucfg, utensors, ccfg, ctensors, vocab):
    """Loss and every LoRA gradient of one step, then the losses and final LoRA of TRAIN['steps'] AdamW
    steps (torch.optim.AdamW after torch's clip_grad_norm_, U-Net and text encoder in one global norm)."""
    x0, noise, timesteps, ids, g = train_inputs(ucfg, vocab, ccfg.get('max_position_embeddings', 77))
    r = TRAIN['rank']
    mods = {**lora_modules(utensors, UNET_LORA, 'unet', r, g), **lora_modules(ctensors, TE_LORA, 'te', r, g)}
    leaves = {k: (p, d.to(DT).requires_grad_(), u.to(DT).requires_grad_()) for k, (p, d, u) in mods.items()}
    part = lambda pre: Lora({p: (d, u) for k, (p, d, u) in leaves.items() if k.startswith(pre)}, TRAIN['alpha'] / r)
    lu, lt = part('lora_unet_'), part('lora_te_')
    Wu, Wc = Weights(utensors, 'unet', lora=lu), Weights(ctensors, 'text_encoder', ('position_ids',), lora=lt)
    params = lambda pre: [t for k, (_, d, u) in leaves.items() if k.startswith(pre) for t in (d, u)]
    opt = torch.optim.AdamW([{'params': params('lora_unet_'), 'lr': TRAIN['lr_unet']}, {'params': params('lora_te_'), 'lr': TRAIN['lr_te']}],
                            betas=(TRAIN['beta1'], TRAIN['beta2']), eps=TRAIN['eps'], weight_decay=TRAIN['weight_decay'])
    every = [t for _, d, u in leaves.values() for t in (d, u)]
    acp = ddpm_alphas_cumprod()
    out = {'x0': x0, 'noise': noise, 'timesteps': timesteps, 'ids': ids.to(torch.float32)}
    out.update({f'init.{k}.lora_down.weight': d for k, (_, d, _) in mods.items()})
    out.update({f'init.{k}.lora_up.weight': u for k, (_, _, u) in mods.items()})
    losses, norms = [], []
    with torch.enable_grad():
        for s in range(TRAIN['steps']):
            opt.zero_grad()
            loss = train_loss(Wu, ucfg, Wc, ccfg, x0.to(DT), noise[s].to(DT), timesteps[s].to(DT), ids, acp)
            loss.backward()
            if s == 0:
                Wu.check_all_used(), Wc.check_all_used(), lu.check_all_used('unet'), lt.check_all_used('te')
                out.update({f'grad.{k}.lora_down.weight': d.grad.clone() for k, (_, d, _) in leaves.items()})
                out.update({f'grad.{k}.lora_up.weight': u.grad.clone() for k, (_, _, u) in leaves.items()})
            norms.append(torch.nn.utils.clip_grad_norm_(every, TRAIN['max_grad_norm']))
            losses.append(loss.detach())
            opt.step()
    out['loss'] = torch.stack(losses)
    out['grad_norm'] = torch.stack(norms)
    out.update({f'final.{k}.lora_down.weight': d.detach() for k, (_, d, _) in leaves.items()})
    out.update({f'final.{k}.lora_up.weight': u.detach() for k, (_, _, u) in leaves.items()})
    return out


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def load_component(folder, sub, filenames):
    with open(os.path.join(folder, sub, 'config.json')) as f:
        cfg = json.load(f)
    for fn in filenames:
        path = os.path.join(folder, sub, fn)
        if os.path.exists(path):
            return cfg, read_safetensors(path), path
    raise FileNotFoundError(f'{folder}/{sub}: none of {filenames}')


def run_unet(cfg, tensors, label='unet'):
    W = Weights(tensors, label)
    sample, timesteps, context = unet_inputs(cfg)
    out = unet_forward(W, cfg, sample.to(DT), timesteps.to(DT), context.to(DT))
    W.check_all_used()
    return {'sample': sample, 'timesteps': timesteps, 'context': context, 'out': out}


def run_clip(cfg, tensors, label='text_encoder'):
    W = Weights(tensors, label, ignore=('position_ids',))
    ids = clip_inputs(cfg)
    states = clip_hidden_states(W, cfg, ids)
    eps = cfg.get('layer_norm_eps', 1e-5)
    fw, fb = W('text_model.final_layer_norm.weight'), W('text_model.final_layer_norm.bias')
    skip1 = layer_norm(states[-1], fw, fb, eps)
    skip2 = layer_norm(states[-2], fw, fb, eps)
    W.check_all_used()
    return {'ids': ids.to(torch.float32), 'hidden_skip1': skip1, 'hidden_skip2': skip2}


def run_vae(cfg, tensors, label='vae'):
    W = Weights(tensors, label)
    image, latent = vae_inputs(cfg)
    mean, logvar = vae_encode(W, cfg, image.to(DT))
    decoded = vae_decode(W, cfg, latent.to(DT))
    W.check_all_used()
    return {'image': image, 'mean': mean, 'logvar': logvar, 'latent': latent, 'decoded': decoded}


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().split('\n\n')[1], file=sys.stderr)
        return 2
    folder, out = argv[1], argv[2]
    os.makedirs(out, exist_ok=True)
    torch.set_grad_enabled(False)
    jobs = [
        ('unet', 'unet', ['diffusion_pytorch_model.safetensors'], run_unet),
        ('clip', 'text_encoder', ['model.safetensors'], run_clip),
        ('vae', 'vae', ['diffusion_pytorch_model.safetensors'], run_vae),
    ]
    for name, sub, files, fn in jobs:
        cfg, tensors, path = load_component(folder, sub, files)
        res = fn(cfg, tensors)
        for k, v in res.items():
            if not torch.isfinite(v.to(DT)).all():
                raise ValueError(f'{name}: {k} has non-finite values')
        meta = {
            'generator': 'scripts/golden.py (float64 PyTorch reference)',
            'weights': os.path.join(sub, os.path.basename(path)),
            'weights_sha256': _sha256(path),
        }
        if name == 'unet':
            meta['note'] = 'out = unet(sample, timesteps, context); timesteps stored as F32'
        elif name == 'clip':
            meta['note'] = 'ids as F32; hidden_skipN = final_layer_norm(hidden state N-1 layers before the last)'
        else:
            meta['note'] = 'mean/logvar = encoder(image) (logvar clamped to [-30,20]); decoded = decoder(latent), latent fed to post_quant_conv as is (no scaling)'
        dest = os.path.join(out, f'{name}.safetensors')
        write_safetensors(dest, res, meta)
        summary = ', '.join(f'{k} {list(v.shape)}' for k, v in res.items())
        print(f'{dest}: {summary}')
    write_train_step(folder, out)
    return 0


def write_train_step(folder, out):
    """train_step.safetensors, when the folder has a tokenizer (the captions' ids come from its vocab.json)."""
    vocab_path = os.path.join(folder, 'tokenizer', 'vocab.json')
    if not os.path.exists(vocab_path):
        print(f'{folder}: no tokenizer/vocab.json, train_step.safetensors not written')
        return
    with open(vocab_path) as f:
        vocab = json.load(f)
    ucfg, ut, upath = load_component(folder, 'unet', ['diffusion_pytorch_model.safetensors'])
    ccfg, ct, cpath = load_component(folder, 'text_encoder', ['model.safetensors'])
    res = run_train_step(ucfg, ut, ccfg, ct, vocab)
    for k, v in res.items():
        if not torch.isfinite(v.to(DT)).all():
            raise ValueError(f'train_step: {k} has non-finite values')
    meta = {
        'generator': 'scripts/golden.py (float64 PyTorch reference)',
        'weights_sha256': f'unet {_sha256(upath)} text_encoder {_sha256(cpath)}',
        'train': json.dumps(TRAIN, sort_keys=True),
        'captions': json.dumps(TRAIN_CAPTIONS),
        'note': 'x0 [B,C,h,w], noise [steps,B,C,h,w], timesteps [steps,B], ids [B,77] (F32); step s uses noise[s], timesteps[s]; '
                'grad.* = raw gradients of step 0 at init.*; loss[s] before update s; grad_norm[s] = global norm before clipping; '
                'final.* = after all steps (AdamW, clipping to max_grad_norm)',
    }
    dest = os.path.join(out, 'train_step.safetensors')
    write_safetensors(dest, res, meta)
    n = sum(1 for k in res if k.startswith('grad.'))
    print(f'{dest}: {n} LoRA tensors, losses {[round(float(v), 6) for v in res["loss"]]}, grad norms {[round(float(v), 4) for v in res["grad_norm"]]}')


if __name__ == '__main__':
    sys.exit(main(sys.argv))
