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
 */
export class TextStreamer {
  #ids: number[] = [];
  #emitted = 0;
  constructor(private readonly tok: TextTokenizer) {}

  push(id: number): string {
    this.#ids.push(id);
    const text = this.tok.decode(this.#ids);
    if (text.endsWith('\uFFFD')) return '';
    const piece = text.slice(this.#emitted);
    this.#emitted = text.length;
    return piece;
  }

  /** Whatever is left (a final partial character is emitted as it decodes). */
  flush(): string {
    const text = this.tok.decode(this.#ids);
    const piece = text.slice(this.#emitted);
    this.#emitted = text.length;
    return piece;
  }
}
