// The CLIP tokenizer (byte-level BPE with end-of-word suffix) on @huggingface/tokenizers, built from vocab.json + merges.txt.
import { Tokenizer } from '@huggingface/tokenizers';

/**
 * CLIP's pipeline expressed as a tokenizer.json: whitespace collapsed and lower-cased, split on
 * CLIP's word pattern, byte-level mapping without a prefix space, then BPE with `</w>` marking the
 * end of each word. SD 1.x repositories ship only vocab.json and merges.txt, so we assemble it here.
 */
function clipTokenizerJson(vocab: Record<string, number>, merges: string[]): Record<string, unknown> {
  return {
    version: '1.0',
    added_tokens: [
      { id: vocab['<|startoftext|>'], content: '<|startoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
      { id: vocab['<|endoftext|>'], content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
    ],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }] },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: '<|endoftext|>', continuing_subword_prefix: '', end_of_word_suffix: '</w>', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

/** SD 1.x's text tokenizer: ids for the text encoder, with BOS/EOS and EOS padding to 77. */
export class ClipTokenizer {
  readonly bos: number;
  readonly eos: number;
  private constructor(private readonly tok: Tokenizer, vocab: Record<string, number>) {
    const bos = vocab['<|startoftext|>'];
    const eos = vocab['<|endoftext|>'];
    if (bos === undefined || eos === undefined) throw new Error('tokenizer vocab.json lacks <|startoftext|> or <|endoftext|>: not a CLIP vocabulary');
    this.bos = bos;
    this.eos = eos;
  }

  /** Build from the contents of `vocab.json` and `merges.txt` (a diffusers `tokenizer/` folder). */
  static fromFiles(vocabJson: string, mergesTxt: string): ClipTokenizer {
    let vocab: Record<string, number>;
    try {
      vocab = JSON.parse(vocabJson);
    } catch (e) {
      throw new Error(`tokenizer vocab.json is not valid JSON: ${(e as Error).message}`);
    }
    const merges = mergesTxt.split('\n').filter((l) => l && !l.startsWith('#version'));
    const tok = new Tokenizer(clipTokenizerJson(vocab, merges) as never, { add_bos_token: false, add_eos_token: false } as never);
    return new ClipTokenizer(tok, vocab);
  }

  /** Token ids of `text` without BOS/EOS. */
  encode(text: string): number[] {
    return this.tok.encode(text.trim(), { add_special_tokens: false } as never).ids;
  }

  /** BOS, the ids (truncated to maxLength − 2), EOS, then EOS padding to maxLength, as SD 1.x feeds the text encoder. */
  encodeForModel(text: string, maxLength = 77): number[] {
    const ids = this.encode(text).slice(0, maxLength - 2);
    const out = [this.bos, ...ids, this.eos];
    while (out.length < maxLength) out.push(this.eos);
    return out;
  }

  /** Number of tokens the text takes (to warn when a caption exceeds 75). */
  tokenLength(text: string): number {
    return this.encode(text).length;
  }
}
