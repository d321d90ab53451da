/*
 * pretok.h — pre-tokenizer split patterns (internal to src/tokenizer).
 *
 * Written as the Hugging Face tokenizer.json files and llama.cpp's
 * pre-tokenizer table define them; compiled with PCRE2 UTF + UCP, so \p{L},
 * \p{N} and \s are Unicode classes as in the Oniguruma engine HF uses.
 */
#ifndef OPC_PRETOK_H
#define OPC_PRETOK_H

/* GPT-2 / ByteLevel(use_regex=true) */
#define OPC_PRE_RE_GPT2 \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
/* Llama-3 (llama-bpe): case-insensitive contractions, numbers in groups of 1-3 */
#define OPC_PRE_RE_LLAMA3                                                        \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"   \
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* Qwen2: as Llama-3 but every digit alone */
#define OPC_PRE_RE_QWEN2                                                         \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"        \
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* Digits(individual_digits=true); SmolLM/StarCoder split digits first, then GPT-2 */
#define OPC_PRE_RE_DIGIT "\\p{N}"
#define OPC_PRE_RE_DIGITS "\\p{N}+"
/* no split: the whole fragment is one pre-token */
#define OPC_PRE_RE_ALL "[\\s\\S]+"

#endif
