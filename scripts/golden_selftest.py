#!/usr/bin/env python3
"""Self-test of scripts/golden.py (no real weights needed).

Usage:
    /usr/bin/python3 scripts/golden_selftest.py [--keep DIR]

1. Checks golden.py's helpers (group norm, layer norm, conv with symmetric and asymmetric
   padding, attention with and without a causal mask, GELU, timestep embedding, safetensors
   round trip incl. F16/BF16) against torch.nn modules / direct formulas in float64, and a
   transformer block and a ResBlock against versions built from torch.nn modules.
2. Builds a random diffusers-layout folder for the tiny config (weight names and shapes derived
   from the logic of src/model/{unet,clip,vae}.ts `*WeightShapes`, config.json as
   src/model/tiny.ts writes it). When node and tsx are available the names, shapes and configs
   are also compared with the TypeScript functions themselves.
3. Runs golden.py on the folder (as a subprocess), checks the output files, keys and shapes,
   and that a second run gives identical bytes.
4. Property checks: zero conv_out -> zero U-Net output; a zero time_emb_proj everywhere ->
   output independent of the timestep; zero attn2.to_out -> independent of the context;
   batch rows independent; CLIP causality; a CLIP with an identity last layer has
   hidden_skip1 == hidden_skip2; quant_conv bias passes through to mean/logvar with the clamp;
   old VAE attention names give the same result; a missing or an extra weight is an error.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.dont_write_bytecode = True  # keep scripts/ clean of __pycache__
sys.path.insert(0, HERE)
import golden as G  # noqa: E402

DT = torch.float64
FAILS = []


def check(cond, what):
    print(('ok   ' if cond else 'FAIL ') + what)
    if not cond:
        FAILS.append(what)


def close(a, b, tol=1e-10):
    return a.shape == b.shape and float((a.to(DT) - b.to(DT)).abs().max()) <= tol * max(1.0, float(b.to(DT).abs().max()))


# ---------------------------------------------------------------------------------------------
# 1. helpers vs torch.nn
# ---------------------------------------------------------------------------------------------

def test_helpers():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 5, 7, dtype=DT)
    gn = nn.GroupNorm(4, 16, eps=1e-6).double()
    nn.init.normal_(gn.weight)
    nn.init.normal_(gn.bias)
    check(close(G.group_norm(x, 4, gn.weight, gn.bias, 1e-6), gn(x)), 'group_norm == nn.GroupNorm')

    t = torch.randn(3, 11, 24, dtype=DT)
    ln = nn.LayerNorm(24, eps=1e-5).double()
    nn.init.normal_(ln.weight)
    nn.init.normal_(ln.bias)
    check(close(G.layer_norm(t, ln.weight, ln.bias, 1e-5), ln(t)), 'layer_norm == nn.LayerNorm')

    for stride in (1, 2):
        cv = nn.Conv2d(16, 8, 3, stride=stride, padding=1).double()
        check(close(G.conv2d(x, cv.weight, cv.bias, stride=stride, pad=1), cv(x)), f'conv2d pad 1 stride {stride} == nn.Conv2d')
    # asymmetric (0,1,0,1) pad + stride 2: compare against an explicit unfold-and-matmul convolution
    cv = nn.Conv2d(16, 8, 3, stride=2, padding=0).double()
    xp = torch.zeros(2, 16, 6, 8, dtype=DT)
    xp[:, :, :5, :7] = x
    cols = F.unfold(xp, 3, stride=2)  # [B, 16*9, L]
    ref = (cv.weight.reshape(8, -1) @ cols + cv.bias[:, None]).reshape(2, 8, 2, 3)
    got = G.conv2d(x, cv.weight, cv.bias, stride=2, pad=(0, 1, 0, 1))
    check(close(got, ref), 'conv2d asymmetric pad (0,1,0,1) stride 2 == explicit im2col')
    check(got.shape == (2, 8, 2, 3), 'asymmetric downsample of 5x7 gives 2x3 (as SD: floor((n+1-3)/2)+1)')

    # attention vs nn.MultiheadAttention (self, causal, cross with another width)
    E, H = 24, 3
    for causal in (False, True):
        mha = nn.MultiheadAttention(E, H, bias=True, batch_first=True).double()
        nn.init.normal_(mha.in_proj_bias)
        nn.init.normal_(mha.out_proj.bias)
        wq, wk, wv = mha.in_proj_weight.chunk(3)
        bq, bk, bv = mha.in_proj_bias.chunk(3)
        mine = G.linear(G.attention(G.linear(t, wq, bq), G.linear(t, wk, bk), G.linear(t, wv, bv), H, causal), mha.out_proj.weight, mha.out_proj.bias)
        mask = torch.ones(11, 11, dtype=torch.bool).triu(1) if causal else None
        ref, _ = mha(t, t, t, attn_mask=mask, need_weights=False)
        check(close(mine, ref), f'attention (heads 3, causal={causal}) == nn.MultiheadAttention')
    ctx = torch.randn(3, 7, 10, dtype=DT)
    mha = nn.MultiheadAttention(E, H, bias=False, kdim=10, vdim=10, batch_first=True).double()
    mine = G.linear(G.attention(G.linear(t, mha.q_proj_weight), G.linear(ctx, mha.k_proj_weight), G.linear(ctx, mha.v_proj_weight), H), mha.out_proj.weight)
    ref, _ = mha(t, ctx, ctx, need_weights=False)
    check(close(mine, ref), 'cross-attention (kdim 10) == nn.MultiheadAttention')

    check(close(G.gelu(t), F.gelu(t)), 'gelu == F.gelu (erf)')
    check(close(G.silu(t), F.silu(t)), 'silu == F.silu')
    check(close(G.quick_gelu(t), t * torch.sigmoid(1.702 * t)), 'quick_gelu')
    check(close(G.upsample2x(x), F.interpolate(x, scale_factor=2, mode='nearest')), 'upsample2x == F.interpolate nearest')

    e = G.timestep_embedding(torch.tensor([0.0, 777.0]), 32, True, 0)
    check(close(e[0], torch.cat([torch.ones(16), torch.zeros(16)]).to(DT)), 'timestep embedding t=0: cos first (ones), then sin (zeros)')
    check(abs(float(e[1, 1]) - math.cos(777 * math.exp(-math.log(10000) / 16))) < 1e-12, 'timestep embedding freq i=1 is exp(-ln(1e4)/half)')
    check(abs(float(e[1, 16 + 15]) - math.sin(777 * math.exp(-math.log(10000) * 15 / 16))) < 1e-12, 'timestep embedding sin half, last freq')

    # safetensors round trip: writer, header alignment, F16/BF16 decoding
    d = tempfile.mkdtemp()
    try:
        p = os.path.join(d, 'a.safetensors')
        G.write_safetensors(p, {'a': torch.arange(6.0).reshape(2, 3), 'b': torch.tensor([1.5])}, {'k': 'v'})
        raw = open(p, 'rb').read()
        n = int.from_bytes(raw[:8], 'little')
        check(n % 8 == 0 and raw[8 + n - 1:8 + n] in (b' ', b'}'), 'writer pads the header to a multiple of 8')
        r = G.read_safetensors(p)
        check(torch.equal(r['a'], torch.arange(6.0).reshape(2, 3)) and torch.equal(r['b'], torch.tensor([1.5])), 'safetensors F32 round trip')
        v = torch.randn(5, 3)
        hdr = {'h': {'dtype': 'F16', 'shape': [5, 3], 'data_offsets': [0, 30]}, 'bf': {'dtype': 'BF16', 'shape': [5, 3], 'data_offsets': [30, 60]}}
        write_raw(os.path.join(d, 'h.safetensors'), hdr, v.half().numpy().tobytes() + bf16_bytes(v))
        r = G.read_safetensors(os.path.join(d, 'h.safetensors'))
        check(torch.equal(r['h'], v.half()), 'safetensors F16 decode')
        check(torch.equal(r['bf'], v.bfloat16().float()), 'safetensors BF16 decode')
    finally:
        shutil.rmtree(d)


def write_raw(path, header, body):
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(len(h).to_bytes(8, 'little') + h + body)


def bf16_bytes(v):
    return v.bfloat16().view(torch.int16).numpy().astype('<i2').tobytes()


class NNTransformer(nn.Module):
    """Transformer2DModel built from torch.nn modules, to cross-check golden.unet_transformer."""

    def __init__(self, c, ctx, heads, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c, eps=1e-6)
        self.proj_in = nn.Conv2d(c, c, 1)
        self.n1, self.n2, self.n3 = nn.LayerNorm(c), nn.LayerNorm(c), nn.LayerNorm(c)
        self.a1 = nn.MultiheadAttention(c, heads, bias=False, batch_first=True)
        self.a2 = nn.MultiheadAttention(c, heads, bias=False, kdim=ctx, vdim=ctx, batch_first=True)
        self.a1.out_proj.bias = nn.Parameter(torch.randn(c))
        self.a2.out_proj.bias = nn.Parameter(torch.randn(c))
        self.ff0, self.ff2 = nn.Linear(c, 8 * c), nn.Linear(4 * c, c)
        self.proj_out = nn.Conv2d(c, c, 1)
        for p in self.parameters():
            nn.init.normal_(p, std=0.3)

    def forward(self, x, ctx):
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        n = self.n1(h)
        h = h + self.a1(n, n, n, need_weights=False)[0]
        n = self.n2(h)
        h = h + self.a2(n, ctx, ctx, need_weights=False)[0]
        a, g = self.ff0(self.n3(h)).chunk(2, -1)
        h = h + self.ff2(a * F.gelu(g))
        return self.proj_out(h.transpose(1, 2).reshape(B, C, H, W)) + x

    def weights(self, p):
        c = self.proj_in.weight.shape[0]
        b = f'{p}.transformer_blocks.0'
        w = {f'{p}.norm.weight': self.norm.weight, f'{p}.norm.bias': self.norm.bias,
             f'{p}.proj_in.weight': self.proj_in.weight, f'{p}.proj_in.bias': self.proj_in.bias,
             f'{p}.proj_out.weight': self.proj_out.weight, f'{p}.proj_out.bias': self.proj_out.bias,
             f'{b}.ff.net.0.proj.weight': self.ff0.weight, f'{b}.ff.net.0.proj.bias': self.ff0.bias,
             f'{b}.ff.net.2.weight': self.ff2.weight, f'{b}.ff.net.2.bias': self.ff2.bias}
        for i, n in enumerate((self.n1, self.n2, self.n3)):
            w[f'{b}.norm{i + 1}.weight'], w[f'{b}.norm{i + 1}.bias'] = n.weight, n.bias
        q, k, v = self.a1.in_proj_weight.chunk(3)
        w.update({f'{b}.attn1.to_q.weight': q, f'{b}.attn1.to_k.weight': k, f'{b}.attn1.to_v.weight': v,
                  f'{b}.attn1.to_out.0.weight': self.a1.out_proj.weight, f'{b}.attn1.to_out.0.bias': self.a1.out_proj.bias,
                  f'{b}.attn2.to_q.weight': self.a2.q_proj_weight, f'{b}.attn2.to_k.weight': self.a2.k_proj_weight,
                  f'{b}.attn2.to_v.weight': self.a2.v_proj_weight,
                  f'{b}.attn2.to_out.0.weight': self.a2.out_proj.weight, f'{b}.attn2.to_out.0.bias': self.a2.out_proj.bias})
        assert c
        return {k: v.detach() for k, v in w.items()}


def test_blocks():
    torch.manual_seed(1)
    m = NNTransformer(32, 20, 4, 8).double()
    x = torch.randn(2, 32, 4, 3, dtype=DT)
    ctx = torch.randn(2, 9, 20, dtype=DT)
    W = G.Weights(m.weights('t'), 't')
    with torch.no_grad():
        got = G.unet_transformer(W, 't', x, ctx, 8, 4)
        ref = m(x, ctx)
    W.check_all_used()
    check(close(got, ref), 'unet_transformer == torch.nn Transformer2D (GN 1e-6, LN, MHA, GEGLU)')

    # ResBlock with a shortcut conv, from nn modules
    n1, c1, tp = nn.GroupNorm(8, 16, eps=1e-5).double(), nn.Conv2d(16, 32, 3, padding=1).double(), nn.Linear(40, 32).double()
    n2, c2, sc = nn.GroupNorm(8, 32, eps=1e-5).double(), nn.Conv2d(32, 32, 3, padding=1).double(), nn.Conv2d(16, 32, 1).double()
    for mod in (n1, n2):
        nn.init.normal_(mod.weight)
        nn.init.normal_(mod.bias)
    x = torch.randn(2, 16, 5, 5, dtype=DT)
    temb = torch.randn(2, 40, dtype=DT)
    with torch.no_grad():
        h = c1(F.silu(n1(x))) + tp(F.silu(temb))[:, :, None, None]
        ref = sc(x) + c2(F.silu(n2(h)))
    w = {'r.norm1.weight': n1.weight, 'r.norm1.bias': n1.bias, 'r.conv1.weight': c1.weight, 'r.conv1.bias': c1.bias,
         'r.time_emb_proj.weight': tp.weight, 'r.time_emb_proj.bias': tp.bias, 'r.norm2.weight': n2.weight, 'r.norm2.bias': n2.bias,
         'r.conv2.weight': c2.weight, 'r.conv2.bias': c2.bias, 'r.conv_shortcut.weight': sc.weight, 'r.conv_shortcut.bias': sc.bias}
    W = G.Weights({k: v.detach() for k, v in w.items()}, 'r')
    with torch.no_grad():
        got = G.unet_resblock(W, 'r', x, temb, 8, 1e-5)
    W.check_all_used()
    check(close(got, ref), 'unet_resblock (with conv_shortcut) == torch.nn version')


# ---------------------------------------------------------------------------------------------
# 2. tiny config: weight names/shapes (from the TypeScript *WeightShapes logic) and config.json
# ---------------------------------------------------------------------------------------------

TINY_UNET = dict(inChannels=4, outChannels=4, blockChannels=[32, 64, 64], layersPerBlock=1, attention=[True, True, False], heads=2, crossAttentionDim=32, groups=8)
TINY_CLIP = dict(vocabSize=1024, maxPositions=77, width=32, layers=2, heads=2, mlp=64)
TINY_VAE = dict(inChannels=3, latentChannels=4, blockChannels=[8, 16, 32, 32], layersPerBlock=1, groups=4, scalingFactor=0.18215)


def _lin(m, n, o, i, bias=True):
    m[f'{n}.weight'] = [o, i]
    if bias:
        m[f'{n}.bias'] = [o]


def _conv(m, n, o, i, k, bias=True):
    m[f'{n}.weight'] = [o, i, k, k]
    if bias:
        m[f'{n}.bias'] = [o]


def _norm(m, n, c):
    m[f'{n}.weight'] = [c]
    m[f'{n}.bias'] = [c]


def unet_shapes(c):
    m = {}
    ch = c['blockChannels']
    n = len(ch)
    c0 = ch[0]
    temb = 4 * c0

    def res(name, cin, cout):
        _norm(m, f'{name}.norm1', cin)
        _conv(m, f'{name}.conv1', cout, cin, 3)
        _lin(m, f'{name}.time_emb_proj', cout, temb)
        _norm(m, f'{name}.norm2', cout)
        _conv(m, f'{name}.conv2', cout, cout, 3)
        if cin != cout:
            _conv(m, f'{name}.conv_shortcut', cout, cin, 1)

    def tr(name, cc):
        ctx = c['crossAttentionDim']
        _norm(m, f'{name}.norm', cc)
        _conv(m, f'{name}.proj_in', cc, cc, 1)
        t = f'{name}.transformer_blocks.0'
        _norm(m, f'{t}.norm1', cc)
        for p in ('to_q', 'to_k', 'to_v'):
            _lin(m, f'{t}.attn1.{p}', cc, cc, False)
        _lin(m, f'{t}.attn1.to_out.0', cc, cc)
        _norm(m, f'{t}.norm2', cc)
        _lin(m, f'{t}.attn2.to_q', cc, cc, False)
        _lin(m, f'{t}.attn2.to_k', cc, ctx, False)
        _lin(m, f'{t}.attn2.to_v', cc, ctx, False)
        _lin(m, f'{t}.attn2.to_out.0', cc, cc)
        _norm(m, f'{t}.norm3', cc)
        _lin(m, f'{t}.ff.net.0.proj', 8 * cc, cc)
        _lin(m, f'{t}.ff.net.2', cc, 4 * cc)
        _conv(m, f'{name}.proj_out', cc, cc, 1)

    _conv(m, 'conv_in', c0, c['inChannels'], 3)
    _lin(m, 'time_embedding.linear_1', temb, c0)
    _lin(m, 'time_embedding.linear_2', temb, temb)
    cin = c0
    for i in range(n):
        for j in range(c['layersPerBlock']):
            res(f'down_blocks.{i}.resnets.{j}', cin if j == 0 else ch[i], ch[i])
            if c['attention'][i]:
                tr(f'down_blocks.{i}.attentions.{j}', ch[i])
        if i < n - 1:
            _conv(m, f'down_blocks.{i}.downsamplers.0.conv', ch[i], ch[i], 3)
        cin = ch[i]
    cm = ch[-1]
    res('mid_block.resnets.0', cm, cm)
    tr('mid_block.attentions.0', cm)
    res('mid_block.resnets.1', cm, cm)
    rev, rattn = ch[::-1], c['attention'][::-1]
    prev = rev[0]
    for i in range(n):
        cout, inp = rev[i], rev[min(i + 1, n - 1)]
        for j in range(c['layersPerBlock'] + 1):
            skip = inp if j == c['layersPerBlock'] else cout
            res(f'up_blocks.{i}.resnets.{j}', (prev if j == 0 else cout) + skip, cout)
            if rattn[i]:
                tr(f'up_blocks.{i}.attentions.{j}', cout)
        if i < n - 1:
            _conv(m, f'up_blocks.{i}.upsamplers.0.conv', cout, cout, 3)
        prev = cout
    _norm(m, 'conv_norm_out', c0)
    _conv(m, 'conv_out', c['outChannels'], c0, 3)
    return m


def clip_shapes(c):
    m = {}
    P = 'text_model'
    w = c['width']
    m[f'{P}.embeddings.token_embedding.weight'] = [c['vocabSize'], w]
    m[f'{P}.embeddings.position_embedding.weight'] = [c['maxPositions'], w]
    for i in range(c['layers']):
        l = f'{P}.encoder.layers.{i}'
        _norm(m, f'{l}.layer_norm1', w)
        for p in ('q_proj', 'k_proj', 'v_proj', 'out_proj'):
            _lin(m, f'{l}.self_attn.{p}', w, w)
        _norm(m, f'{l}.layer_norm2', w)
        _lin(m, f'{l}.mlp.fc1', c['mlp'], w)
        _lin(m, f'{l}.mlp.fc2', w, c['mlp'])
    _norm(m, f'{P}.final_layer_norm', w)
    return m


def vae_shapes(c):
    m = {}
    ch = c['blockChannels']
    n = len(ch)
    c0, top, lat = ch[0], ch[-1], c['latentChannels']

    def res(name, cin, cout):
        _norm(m, f'{name}.norm1', cin)
        _conv(m, f'{name}.conv1', cout, cin, 3)
        _norm(m, f'{name}.norm2', cout)
        _conv(m, f'{name}.conv2', cout, cout, 3)
        if cin != cout:
            _conv(m, f'{name}.conv_shortcut', cout, cin, 1)

    def mid(prefix):
        res(f'{prefix}.mid_block.resnets.0', top, top)
        a = f'{prefix}.mid_block.attentions.0'
        _norm(m, f'{a}.group_norm', top)
        for p in ('to_q', 'to_k', 'to_v', 'to_out.0'):
            _lin(m, f'{a}.{p}', top, top)
        res(f'{prefix}.mid_block.resnets.1', top, top)

    _conv(m, 'encoder.conv_in', c0, c['inChannels'], 3)
    cin = c0
    for i in range(n):
        for j in range(c['layersPerBlock']):
            res(f'encoder.down_blocks.{i}.resnets.{j}', cin if j == 0 else ch[i], ch[i])
        if i < n - 1:
            _conv(m, f'encoder.down_blocks.{i}.downsamplers.0.conv', ch[i], ch[i], 3)
        cin = ch[i]
    mid('encoder')
    _norm(m, 'encoder.conv_norm_out', top)
    _conv(m, 'encoder.conv_out', 2 * lat, top, 3)
    _conv(m, 'quant_conv', 2 * lat, 2 * lat, 1)
    _conv(m, 'post_quant_conv', lat, lat, 1)
    _conv(m, 'decoder.conv_in', top, lat, 3)
    mid('decoder')
    rev = ch[::-1]
    prev = rev[0]
    for i in range(n):
        for j in range(c['layersPerBlock'] + 1):
            res(f'decoder.up_blocks.{i}.resnets.{j}', prev if j == 0 else rev[i], rev[i])
        if i < n - 1:
            _conv(m, f'decoder.up_blocks.{i}.upsamplers.0.conv', rev[i], rev[i], 3)
        prev = rev[i]
    _norm(m, 'decoder.conv_norm_out', c0)
    _conv(m, 'decoder.conv_out', c['inChannels'], c0, 3)
    return m


def unet_config_json(c):
    return {'_class_name': 'UNet2DConditionModel', 'in_channels': c['inChannels'], 'out_channels': c['outChannels'],
            'block_out_channels': c['blockChannels'], 'layers_per_block': c['layersPerBlock'],
            'down_block_types': ['CrossAttnDownBlock2D' if a else 'DownBlock2D' for a in c['attention']],
            'up_block_types': ['CrossAttnUpBlock2D' if a else 'UpBlock2D' for a in c['attention'][::-1]],
            'attention_head_dim': c['heads'], 'cross_attention_dim': c['crossAttentionDim'], 'norm_num_groups': c['groups'],
            'norm_eps': 1e-5, 'flip_sin_to_cos': True, 'freq_shift': 0, 'sample_size': 64}


def clip_config_json(c):
    return {'_class_name': 'CLIPTextModel', 'architectures': ['CLIPTextModel'], 'vocab_size': c['vocabSize'],
            'max_position_embeddings': c['maxPositions'], 'hidden_size': c['width'], 'num_hidden_layers': c['layers'],
            'num_attention_heads': c['heads'], 'intermediate_size': c['mlp'], 'hidden_act': 'quick_gelu',
            'layer_norm_eps': 1e-5, 'projection_dim': c['width']}


def vae_config_json(c):
    return {'_class_name': 'AutoencoderKL', 'in_channels': c['inChannels'], 'out_channels': c['inChannels'],
            'latent_channels': c['latentChannels'], 'block_out_channels': c['blockChannels'],
            'layers_per_block': c['layersPerBlock'], 'norm_num_groups': c['groups'], 'scaling_factor': c['scalingFactor'],
            'down_block_types': ['DownEncoderBlock2D'] * len(c['blockChannels']),
            'up_block_types': ['UpDecoderBlock2D'] * len(c['blockChannels'])}


TS_DUMP = """
import { unetWeightShapes } from '%(root)s/src/model/unet.ts';
import { clipWeightShapes } from '%(root)s/src/model/clip.ts';
import { vaeWeightShapes } from '%(root)s/src/model/vae.ts';
import { TINY_UNET, TINY_CLIP, TINY_VAE, unetConfigJson, clipConfigJson, vaeConfigJson } from '%(root)s/src/model/tiny.ts';
console.log(JSON.stringify({
  unet: [...unetWeightShapes(TINY_UNET)], clip: [...clipWeightShapes(TINY_CLIP)], vae: [...vaeWeightShapes(TINY_VAE)],
  unetConfig: unetConfigJson(TINY_UNET), clipConfig: clipConfigJson(TINY_CLIP), vaeConfig: vaeConfigJson(TINY_VAE),
}));
"""


def test_against_typescript():
    tsx = os.path.join(ROOT, 'node_modules', '.bin', 'tsx')
    if not os.path.exists(tsx) or shutil.which('node') is None:
        print('skip TypeScript cross-check (no node_modules/.bin/tsx or node)')
        return
    d = tempfile.mkdtemp()
    try:
        p = os.path.join(d, 'dump.ts')
        with open(p, 'w') as f:
            f.write(TS_DUMP % {'root': ROOT})
        r = subprocess.run([tsx, p], capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        shutil.rmtree(d)
    if r.returncode != 0:
        print('skip TypeScript cross-check (tsx failed: %s)' % r.stderr.strip()[-300:])
        return
    ts = json.loads(r.stdout)
    for key, mine in (('unet', unet_shapes(TINY_UNET)), ('clip', clip_shapes(TINY_CLIP)), ('vae', vae_shapes(TINY_VAE))):
        theirs = {k: v for k, v in ts[key]}
        same = mine == theirs
        if not same:
            only_py = sorted(set(mine) - set(theirs))
            only_ts = sorted(set(theirs) - set(mine))
            shape = sorted(k for k in set(mine) & set(theirs) if mine[k] != theirs[k])
            print(f'  {key}: only in python {only_py[:5]}, only in ts {only_ts[:5]}, shape differs {shape[:5]}')
        check(same, f'{key} weight names/shapes == TypeScript {key}WeightShapes (TINY)')
    check(ts['unetConfig'] == unet_config_json(TINY_UNET), 'unet config.json == TypeScript unetConfigJson(TINY_UNET)')
    check(ts['clipConfig'] == clip_config_json(TINY_CLIP), 'clip config.json == TypeScript clipConfigJson(TINY_CLIP)')
    check(ts['vaeConfig'] == vae_config_json(TINY_VAE), 'vae config.json == TypeScript vaeConfigJson(TINY_VAE)')


# ---------------------------------------------------------------------------------------------
# 3. random tiny folder, golden.py end to end
# ---------------------------------------------------------------------------------------------

def random_weights(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        if 'norm' in name.split('.')[-2] and len(shape) == 1:  # GroupNorm / LayerNorm affine
            t = (1.0 if name.endswith('.weight') else 0.0) + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith('.bias'):
            t = 0.05 * torch.randn(shape, generator=g)
        elif 'embedding' in name:
            t = 0.5 * torch.randn(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:])
            t = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        out[name] = t.float()
    return out


def write_folder(folder, unet_w, clip_w, vae_w, clip_dtype='F32'):
    for sub, cfg, fn, w in (('unet', unet_config_json(TINY_UNET), 'diffusion_pytorch_model.safetensors', unet_w),
                            ('text_encoder', clip_config_json(TINY_CLIP), 'model.safetensors', clip_w),
                            ('vae', vae_config_json(TINY_VAE), 'diffusion_pytorch_model.safetensors', vae_w)):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
        with open(os.path.join(folder, sub, 'config.json'), 'w') as f:
            json.dump(cfg, f, indent=2)
        path = os.path.join(folder, sub, fn)
        if sub == 'text_encoder' and clip_dtype == 'F16':
            hdr, body, off = {}, b'', 0
            for k, v in w.items():
                b = v.half().numpy().tobytes()
                hdr[k] = {'dtype': 'F16', 'shape': list(v.shape), 'data_offsets': [off, off + len(b)]}
                body += b
                off += len(b)
            write_raw(path, hdr, body)
        else:
            G.write_safetensors(path, w)


def test_end_to_end(keep):
    work = keep or tempfile.mkdtemp(prefix='golden-selftest-')
    os.makedirs(work, exist_ok=True)
    try:
        uw, cw, vw = random_weights(unet_shapes(TINY_UNET), 1), random_weights(clip_shapes(TINY_CLIP), 2), random_weights(vae_shapes(TINY_VAE), 3)
        folder = os.path.join(work, 'tiny')
        write_folder(folder, uw, cw, vw)
        outs = [os.path.join(work, 'out1'), os.path.join(work, 'out2')]
        for o in outs:
            r = subprocess.run([sys.executable, os.path.join(HERE, 'golden.py'), folder, o], capture_output=True, text=True)
            print(r.stdout.strip())
            check(r.returncode == 0, f'golden.py runs (rc {r.returncode}) {r.stderr.strip()[-500:]}')
            if r.returncode:
                return
        expect = {
            'unet': {'sample': [2, 4, 8, 8], 'timesteps': [2], 'context': [2, 77, 32], 'out': [2, 4, 8, 8]},
            'clip': {'ids': [2, 77], 'hidden_skip1': [2, 77, 32], 'hidden_skip2': [2, 77, 32]},
            'vae': {'image': [1, 3, 64, 64], 'mean': [1, 4, 8, 8], 'logvar': [1, 4, 8, 8], 'latent': [1, 4, 8, 8], 'decoded': [1, 3, 64, 64]},
        }
        res = {}
        for name, keys in expect.items():
            p = os.path.join(outs[0], f'{name}.safetensors')
            raw = open(p, 'rb').read()
            n = int.from_bytes(raw[:8], 'little')
            hdr = json.loads(raw[8:8 + n])
            check(n % 8 == 0 and all(v['dtype'] == 'F32' for k, v in hdr.items() if k != '__metadata__'), f'{name}.safetensors: F32, header length {n} multiple of 8')
            t = G.read_safetensors(p)
            res[name] = t
            check({k: list(v.shape) for k, v in t.items()} == keys, f'{name}.safetensors keys/shapes {keys}')
            check(all(torch.isfinite(v).all() and v.abs().max() > 0 for v in t.values()), f'{name}: finite, nonzero')
            check(raw == open(os.path.join(outs[1], f'{name}.safetensors'), 'rb').read(), f'{name}: second run is byte-identical')
        ids = res['clip']['ids']
        check(ids[0, 0] == 1022 and ids[0, 6] == 1023 and ids[0, 7:].eq(1023).all() and ids[1, 10] == 1023 and ids[:, 1:6].lt(1022).all(), 'clip ids: BOS 1022, 5/9 tokens, EOS-padded')
        check(res['unet']['timesteps'].tolist() == [10.0, 777.0], 'unet timesteps 10, 777')
        im = res['vae']['image']
        check(im.min() >= -1 and im.max() <= 1, 'vae image in [-1, 1]')
        print('  stats: unet out std %.3f, clip skip1 std %.3f, vae mean std %.3f logvar mean %.3f decoded std %.3f' % (
            res['unet']['out'].std(), res['clip']['hidden_skip1'].std(), res['vae']['mean'].std(), res['vae']['logvar'].mean(), res['vae']['decoded'].std()))
        test_properties(uw, cw, vw, res)

        # F16 text encoder weights: same as F32 weights rounded to f16
        folder16 = os.path.join(work, 'tiny16')
        write_folder(folder16, uw, cw, vw, clip_dtype='F16')
        _, t16, _ = G.load_component(folder16, 'text_encoder', ['model.safetensors'])
        got = G.run_clip(clip_config_json(TINY_CLIP), t16)
        ref = G.run_clip(clip_config_json(TINY_CLIP), {k: v.half() for k, v in cw.items()})
        check(close(got['hidden_skip1'], ref['hidden_skip1'], 0), 'F16 text-encoder file == F32 weights rounded to f16')
    finally:
        if not keep:
            shutil.rmtree(work)
        else:
            print(f'kept {work}')


def test_properties(uw, cw, vw, res):
    ucfg, ccfg, vcfg = unet_config_json(TINY_UNET), clip_config_json(TINY_CLIP), vae_config_json(TINY_VAE)
    base = G.run_unet(ucfg, uw)
    check(close(base['out'], res['unet']['out'].to(DT), 1e-6), 'in-process unet == file (f32 rounding)')

    w = dict(uw, **{'conv_out.weight': torch.zeros_like(uw['conv_out.weight']), 'conv_out.bias': torch.zeros_like(uw['conv_out.bias'])})
    check(G.run_unet(ucfg, w)['out'].abs().max() == 0, 'unet: zero conv_out -> zero output')

    W = G.Weights(uw, 'unet')
    s, t, c = (v.to(DT) for v in G.unet_inputs(ucfg))
    one = G.unet_forward(W, ucfg, s[1:], t[1:], c[1:])
    check(close(one, base['out'][1:], 1e-12), 'unet: batch rows independent (row 1 alone == row 1 in batch)')
    swapped = G.unet_forward(W, ucfg, s, t.flip(0), c)
    check(not close(swapped, base['out'], 1e-6), 'unet: output depends on the timestep')

    w = {k: (torch.zeros_like(v) if '.time_emb_proj.' in k else v) for k, v in uw.items()}
    W = G.Weights(w, 'unet')
    check(close(G.unet_forward(W, ucfg, s, t, c), G.unet_forward(W, ucfg, s, t.flip(0) * 3 + 1, c), 1e-12), 'unet: zero time_emb_proj -> independent of timestep')

    w = {k: (torch.zeros_like(v) if '.attn2.to_out.0.' in k else v) for k, v in uw.items()}
    W = G.Weights(w, 'unet')
    check(close(G.unet_forward(W, ucfg, s, t, c), G.unet_forward(W, ucfg, s, t, torch.randn_like(c)), 1e-12), 'unet: zero attn2.to_out -> independent of context')
    check(not close(G.unet_forward(G.Weights(uw, 'u'), ucfg, s, t, torch.randn_like(c)), base['out'], 1e-6), 'unet: output depends on the context')

    try:
        G.run_unet(ucfg, dict(uw, extra=torch.zeros(1)))
        check(False, 'unet: an extra weight is an error')
    except ValueError:
        check(True, 'unet: an extra weight is an error')
    try:
        G.run_unet(ucfg, {k: v for k, v in uw.items() if k != 'up_blocks.1.attentions.0.proj_out.bias'})
        check(False, 'unet: a missing weight is an error')
    except KeyError:
        check(True, 'unet: a missing weight is an error')

    # CLIP
    W = G.Weights(cw, 'clip')
    ids = G.clip_inputs(ccfg)
    h1 = G.clip_forward(W, ccfg, ids, 1)
    check(close(h1, res['clip']['hidden_skip1'].to(DT), 1e-6), 'clip: file hidden_skip1 == clip_forward(skip 1)')
    check(close(G.clip_forward(W, ccfg, ids, 2), res['clip']['hidden_skip2'].to(DT), 1e-6), 'clip: file hidden_skip2 == clip_forward(skip 2)')
    ids2 = ids.clone()
    ids2[:, 4] = 7
    h2 = G.clip_forward(W, ccfg, ids2, 1)
    check(close(h2[:, :4], h1[:, :4], 0) and not close(h2[:, 4:], h1[:, 4:], 1e-6), 'clip: causal (changing token 4 changes only positions >= 4)')
    last = f'text_model.encoder.layers.{TINY_CLIP["layers"] - 1}'
    w = {k: (torch.zeros_like(v) if k.startswith(last + '.self_attn.out_proj') or k.startswith(last + '.mlp.fc2') else v) for k, v in cw.items()}
    r = G.run_clip(ccfg, w)
    check(close(r['hidden_skip1'], r['hidden_skip2'], 0), 'clip: identity last layer -> hidden_skip1 == hidden_skip2')
    check(not close(res['clip']['hidden_skip1'], res['clip']['hidden_skip2'], 1e-3), 'clip: skip1 != skip2 with random weights')
    r = G.run_clip(ccfg, dict(cw, **{'text_model.embeddings.position_ids': torch.arange(77)[None]}))
    check(close(r['hidden_skip1'], h1, 0), 'clip: an I64 position_ids entry is ignored')

    # VAE
    lat = TINY_VAE['latentChannels']
    b = torch.cat([torch.linspace(-2, 2, lat), torch.tensor([50.0, -50.0, 3.0, -4.0])])
    w = dict(vw, **{'quant_conv.weight': torch.zeros_like(vw['quant_conv.weight']), 'quant_conv.bias': b})
    r = G.run_vae(vae_config_json(TINY_VAE), w)
    check(close(r['mean'][0, :, 0, 0], b[:lat].to(DT), 0) and r['logvar'][0, :, 2, 5].tolist() == [20.0, -30.0, 3.0, -4.0], 'vae: quant_conv bias -> mean, logvar clamped to [-30, 20]')
    w = dict(vw, **{'post_quant_conv.weight': torch.zeros_like(vw['post_quant_conv.weight'])})
    W = G.Weights(w, 'vae')
    z = torch.randn(1, lat, 8, 8, dtype=DT)
    check(close(G.vae_decode(W, vcfg, z), G.vae_decode(W, vcfg, z * 5), 0), 'vae: zero post_quant_conv -> decoder independent of latent')
    ren = {}
    for k, v in vw.items():
        for new, old in (('to_q', 'query'), ('to_k', 'key'), ('to_v', 'value'), ('to_out.0', 'proj_attn')):
            if f'attentions.0.{new}.' in k:
                k = k.replace(f'.{new}.', f'.{old}.')
                v = v.reshape(*v.shape, 1, 1) if v.dim() == 2 else v  # also as a 1x1 conv weight
        ren[k] = v
    r = G.run_vae(vcfg, ren)
    check(close(r['decoded'], res['vae']['decoded'].to(DT), 1e-6) and close(r['mean'], res['vae']['mean'].to(DT), 1e-6), 'vae: old attention names (query/key/value/proj_attn, 1x1-conv shaped) give the same result')
    w = {k: (torch.zeros_like(v) if 'mid_block.attentions.0.to_out.0' in k else v) for k, v in vw.items()}
    W = G.Weights(w, 'vae')
    x = torch.randn(1, 32, 8, 8, dtype=DT)
    check(close(G.vae_attention(W, 'decoder.mid_block.attentions.0', x, 4), x, 0), 'vae: zero to_out -> mid attention is the identity')


def main(argv):
    keep = argv[argv.index('--keep') + 1] if '--keep' in argv else None
    torch.set_grad_enabled(False)
    test_helpers()
    test_blocks()
    test_against_typescript()
    test_end_to_end(keep)
    print(f'\n{len(FAILS)} failed' if FAILS else '\nall passed')
    return 1 if FAILS else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
