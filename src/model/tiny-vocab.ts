// A small CLIP-format BPE vocabulary (vocab.json + merges.txt) learned from a word list, for the tiny demo model.

/** GPT-2/CLIP's reversible byte → printable character table. */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) {
    bs.push(b);
    cs.push(256 + n++);
  }
  const table = new Array<string>(256);
  bs.forEach((b, i) => (table[b] = String.fromCodePoint(cs[i]!)));
  return table;
}

/**
 * Learn BPE merges on `corpus` until the vocabulary has `size` entries (the last two being
 * <|startoftext|> and <|endoftext|>), in the same file formats as CLIP's tokenizer.
 */
export function buildTinyVocab(corpus: string, size: number): { vocabJson: string; mergesTxt: string } {
  const table = bytesToUnicode();
  const base = [...table, ...table.map((c) => c + '</w>')];
  const vocab = new Map<string, number>(base.map((t, i) => [t, i]));
  const words = new Map<string, number>();
  for (const w of corpus.toLowerCase().match(/[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu) ?? []) words.set(w, (words.get(w) ?? 0) + 1);
  // each word as symbols, the last carrying the end-of-word suffix
  let split = [...words].map(([w, c]) => {
    const chars = [...new TextEncoder().encode(w)].map((b) => table[b]!);
    chars[chars.length - 1] += '</w>';
    return { syms: chars, count: c };
  });
  const merges: string[] = [];
  while (vocab.size < size - 2) {
    const pairs = new Map<string, number>();
    for (const { syms, count } of split) for (let i = 0; i + 1 < syms.length; i++) {
      const k = syms[i] + ' ' + syms[i + 1];
      pairs.set(k, (pairs.get(k) ?? 0) + count);
    }
    let best = '';
    let bestN = 0;
    for (const [k, n] of pairs) if (n > bestN || (n === bestN && k < best)) [best, bestN] = [k, n];
    if (!best) break;
    const [a, b] = best.split(' ') as [string, string];
    merges.push(best);
    vocab.set(a + b, vocab.size);
    split = split.map(({ syms, count }) => {
      const out: string[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          out.push(a + b);
          i++;
        } else out.push(syms[i]!);
      }
      return { syms: out, count };
    });
  }
  vocab.set('<|startoftext|>', vocab.size);
  vocab.set('<|endoftext|>', vocab.size);
  return { vocabJson: JSON.stringify(Object.fromEntries(vocab)), mergesTxt: '#version: 0.2\n' + merges.join('\n') + '\n' };
}
