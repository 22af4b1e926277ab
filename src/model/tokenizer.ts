// The CLIP tokenizer of SD 1.x (byte-level BPE with an end-of-word suffix) on @huggingface/tokenizers, built from vocab.json + merges.txt.
import { Tokenizer } from '@huggingface/tokenizers';

const BOS_TOKEN = '<|startoftext|>';
const EOS_TOKEN = '<|endoftext|>';

/** CLIP's word pattern (the original is case-insensitive; the text is lower-cased before it runs). */
const CLIP_WORDS = "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

/**
 * CLIP's pipeline as a tokenizer.json, since SD 1.x repositories ship only vocab.json and
 * merges.txt: NFC, whitespace runs collapsed to one space, lower-case; split into CLIP's words
 * (whitespace dropped); bytes mapped to GPT-2's printable alphabet without a prefix space; BPE
 * with `</w>` appended to each word's last symbol. The special tokens are matched before all that.
 *
 * The library expresses all of it, so no adapter is needed. Not reproduced: the original's
 * `ftfy.fix_text` (mojibake repair, curly to straight quotes, ...) and its double
 * `html.unescape`; Hugging Face's CLIPTokenizerFast omits them too, and on ordinary captions
 * they change nothing.
 */
function clipTokenizerJson(vocab: Record<string, number>, merges: string[]): object {
  const special = (content: string) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true });
  return {
    version: '1.0',
    added_tokens: [special(BOS_TOKEN), special(EOS_TOKEN)],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }] },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: CLIP_WORDS }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: EOS_TOKEN, continuing_subword_prefix: '', end_of_word_suffix: '</w>', fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  };
}

function parseVocab(vocabJson: string): Record<string, number> {
  let vocab: unknown;
  try {
    vocab = JSON.parse(vocabJson);
  } catch (e) {
    throw new Error(`tokenizer vocab.json is not valid JSON: ${(e as Error).message}`);
  }
  if (!vocab || typeof vocab !== 'object' || Array.isArray(vocab)) throw new Error('tokenizer vocab.json is not an object of token -> id');
  const v = vocab as Record<string, number>;
  if (v[BOS_TOKEN] === undefined || v[EOS_TOKEN] === undefined) throw new Error(`tokenizer vocab.json lacks ${BOS_TOKEN} or ${EOS_TOKEN}: not a CLIP vocabulary`);
  return v;
}

/** SD 1.x's text tokenizer: ids for the text encoder, with BOS/EOS and EOS padding to 77. */
export class ClipTokenizer {
  private constructor(
    private readonly tok: Tokenizer,
    /** `<|startoftext|>` (49406 in CLIP's vocabulary). */
    readonly bos: number,
    /** `<|endoftext|>` (49407), also the padding id in SD 1.x. */
    readonly eos: number,
  ) {}

  /** Build from the contents of `vocab.json` and `merges.txt` (a diffusers `tokenizer/` folder). */
  static fromFiles(vocabJson: string, mergesTxt: string): ClipTokenizer {
    const vocab = parseVocab(vocabJson);
    const merges = mergesTxt.split(/\r?\n/).filter((l) => l.trim() && !l.startsWith('#version'));
    const tok = new Tokenizer(clipTokenizerJson(vocab, merges), { add_bos_token: false, add_eos_token: false });
    return new ClipTokenizer(tok, vocab[BOS_TOKEN]!, vocab[EOS_TOKEN]!);
  }

  /** Token ids of `text`, without BOS/EOS. */
  encode(text: string): number[] {
    return this.tok.encode(text.trim(), { add_special_tokens: false }).ids;
  }

  /** BOS, the ids truncated to maxLength − 2, EOS, then EOS padding to maxLength: what SD 1.x feeds its text encoder. */
  encodeForModel(text: string, maxLength = 77): Int32Array {
    if (!Number.isInteger(maxLength) || maxLength < 2) throw new Error(`encodeForModel: maxLength ${maxLength} leaves no room for BOS and EOS`);
    const ids = this.encode(text).slice(0, maxLength - 2);
    const out = new Int32Array(maxLength).fill(this.eos);
    out[0] = this.bos;
    out.set(ids, 1);
    return out;
  }

  /** Number of tokens the text takes without BOS/EOS (a caption over 75 is truncated). */
  tokenLength(text: string): number {
    return this.encode(text).length;
  }
}
