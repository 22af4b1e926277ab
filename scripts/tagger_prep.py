# The wd taggers' preprocessing as SmilingWolf's demo does it with PIL (alpha over white, pad to a centred
# white square, BICUBIC resize, RGB -> BGR float32), on two patterned RGBA images; writes the reference
# src/training/tagger-prep.test.ts checks prepareTaggerInput against. Run: /usr/bin/python3 scripts/tagger_prep.py
import json
import numpy as np
from PIL import Image


def pattern(w, h):
    a = np.zeros((h, w, 4), np.uint8)
    for y in range(h):
        for x in range(w):
            alpha = (x * 23) % 256 if (x + y) % 5 == 0 else 255
            a[y, x] = [(x * 37 + y * 11) % 256, (x * x + 3 * y) % 256, (255 - x * 5 - y * 7) % 256, alpha]
    return Image.fromarray(a, 'RGBA')


def prepare(img, size):
    canvas = Image.new('RGBA', img.size, (255, 255, 255))
    canvas.alpha_composite(img)
    img = canvas.convert('RGB')
    side = max(img.size)
    square = Image.new('RGB', (side, side), (255, 255, 255))
    square.paste(img, ((side - img.size[0]) // 2, (side - img.size[1]) // 2))
    if side != size:
        square = square.resize((size, size), Image.BICUBIC)
    return np.asarray(square, np.float32)[:, :, ::-1]


cases = []
for w, h, size in [(40, 24, 16), (10, 13, 32), (20, 20, 20)]:
    cases.append({'width': w, 'height': h, 'size': size, 'bgr': prepare(pattern(w, h), size).reshape(-1).astype(int).tolist()})
with open('src/training/testdata/tagger-prep.json', 'w') as f:
    json.dump({'generator': 'scripts/tagger_prep.py', 'pil': Image.__version__, 'cases': cases}, f)
