import { Tokenizer } from '@huggingface/tokenizers';
import { ModelError } from '../errors.js';

/**
 * A checkpoint's `tokenizer.json` (+ `tokenizer_config.json`) through `@huggingface/tokenizers`, the maintained
 * pure-JS port of HF tokenizers (byte-level BPE, SentencePiece, WordPiece…), so ids match transformers' exactly.
 */
export class TextTokenizer {
  readonly #tok: Tokenizer;

  constructor(json: Record<string, unknown>, config: Record<string, unknown> = {}) {
    try {
      this.#tok = new Tokenizer(json, config);
    } catch (e) {
      throw new ModelError('config_invalid', 'tokenizer.json could not be read', { file: 'tokenizer.json', expected: 'a HF tokenizers file', got: e instanceof Error ? e.message : String(e), cause: e });
    }
  }

  /** Token ids of `text` (special tokens added as the tokenizer's post-processor says, like transformers). */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    return this.#tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  /** Text of `ids`; `skipSpecialTokens` drops e.g. `<|endoftext|>`. */
  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return '';
    return this.#tok.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  /** The id of a token string, if the vocabulary has it. */
  tokenToId(token: string): number | undefined {
    return this.#tok.token_to_id(token);
  }
}

/**
 * Turns a growing list of ids into text pieces: each call returns only the new text, holding back a trailing
 * partial UTF-8 character (byte-level BPE splits characters across tokens) until the next token completes it.
 * Decodes a short window, not the whole sequence (TGI's prefix/read offsets): the text of ids[prefix:read] is
 * what was emitted last; the text of ids[prefix:] minus it is the new piece. A window keeps the decoder's
 * context (leading spaces, merges) while the cost per token stays constant.
 */
export class TextStreamer {
  #ids: number[] = [];
  #prefix = 0;
  #read = 0;
  constructor(private readonly tok: TextTokenizer) {}

  push(id: number): string {
    this.#ids.push(id);
    const before = this.tok.decode(this.#ids.slice(this.#prefix, this.#read));
    const now = this.tok.decode(this.#ids.slice(this.#prefix));
    if (now.length <= before.length || now.endsWith('\uFFFD') || !now.startsWith(before)) return '';
    const piece = now.slice(before.length);
    this.#prefix = this.#read;
    this.#read = this.#ids.length;
    return piece;
  }

  /** Whatever is left (a final partial character is emitted as it decodes). */
  flush(): string {
    const before = this.tok.decode(this.#ids.slice(this.#prefix, this.#read));
    const now = this.tok.decode(this.#ids.slice(this.#prefix));
    this.#prefix = this.#read = this.#ids.length;
    return now.startsWith(before) ? now.slice(before.length) : '';
  }
}
