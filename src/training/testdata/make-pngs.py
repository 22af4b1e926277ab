#!/usr/bin/python3
"""Writes the small PNGs decode-node.test.ts checks pixel by pixel, with encoders independent of ours:
Pillow (Debian's python3-pil) for palette, grey, 16-bit and tRNS files, netpbm's pnmtopng for 2- and
4-bit grey, and optipng (libpng) for Adam7-interlaced copies (apt-get install python3-pil netpbm optipng). Every file is 13x11 and its pixels follow
formulas that decode-node.test.ts repeats; t = (3x + 5y) below.

    cd src/training/testdata && /usr/bin/python3 make-pngs.py
"""
import subprocess

from PIL import Image

W, H = 13, 11


def t(x, y):
    return 3 * x + 5 * y


def palette_colour(i):
    return ((i * 37) % 256, (i * 91 + 17) % 256, (i * 53 + 101) % 256)


def palette_png(path, bits, colours, alpha=False):
    im = Image.new('P', (W, H))
    im.putpalette([c for i in range(colours) for c in palette_colour(i)])
    im.putdata([t(x, y) % colours for y in range(H) for x in range(W)])
    extra = {'transparency': bytes((i * 29) % 256 for i in range(colours))} if alpha else {}
    im.save(path, bits=bits, **extra)


def grey_png(path, levels, key=None):
    im = Image.new('L', (W, H))
    im.putdata([(t(x, y) % levels) * 255 // (levels - 1) for y in range(H) for x in range(W)])
    im.save(path, **({'transparency': key} if key is not None else {}))


def rgb(x, y):
    return ((x * 40) % 256, (y * 50) % 256, ((x + y) * 30) % 256)


palette_png('pal1.png', 1, 2)
palette_png('pal2.png', 2, 4)
palette_png('pal4.png', 4, 16)
palette_png('pal8-trns.png', 8, 200, alpha=True)
im = Image.new('1', (W, H))
im.putdata([255 * (t(x, y) % 2) for y in range(H) for x in range(W)])
im.save('grey1.png')
grey_png('grey8-trns.png', 256, key=21)
im = Image.new('I;16', (W, H))
im.putdata([(t(x, y) * 2741) % 65536 for y in range(H) for x in range(W)])
im.save('grey16.png')
im = Image.new('RGB', (W, H))
im.putdata([rgb(x, y) for y in range(H) for x in range(W)])
im.save('rgb-trns.png', transparency=rgb(2, 1))

# pnmtopng picks the smallest bit depth that holds a PGM's maxval: 3 -> 2-bit, 15 -> 4-bit grey.
for levels, name in ((4, 'grey2.png'), (16, 'grey4.png')):
    rows = [' '.join(str(t(x, y) % levels) for x in range(W)) for y in range(H)]
    pgm = f'P2\n{W} {H}\n{levels - 1}\n' + '\n'.join(rows) + '\n'
    with open(name, 'wb') as f:
        subprocess.run(['pnmtopng'], input=pgm.encode(), stdout=f, check=True)
for src in ('pal4.png', 'grey16.png', 'rgb-trns.png', 'grey2.png'):
    out = src.replace('.png', '-adam7.png')
    subprocess.run(['rm', '-f', out], check=True)
    subprocess.run(['optipng', '-quiet', '-force', '-o1', '-nx', '-i1', '-out', out, src], check=True)
