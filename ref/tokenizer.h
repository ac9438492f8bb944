// tokenizer.h: the CLIP BPE tokenizer of Stable Diffusion 1.5's text encoder.
//
// Gives exactly the ids of transformers 4.57.6's slow CLIPTokenizer with ftfy 6.3.1
// installed, called as SD calls it: tokenizer(text, padding="max_length", max_length=77,
// truncation=True). That is: <|startoftext|> (49406), the first 75 BPE tokens of the text,
// <|endoftext|> (49407), then 49407 as padding up to 77 ids. The steps are in
// SPEC.md section 7; the Unicode and ftfy tables are generated (ref/unicode_tables.c).
// ftfy's mojibake repair (re-decoding text that was decoded with the wrong one of ten
// single-byte encodings, CESU-8, lossy sequences, C1 controls) is implemented in full.
#ifndef MAVREF_TOKENIZER_H
#define MAVREF_TOKENIZER_H

#include "mavref.h"

#define CLIP_CONTEXT 77      // ids per prompt
#define CLIP_VOCAB 49408     // vocabulary size
#define CLIP_BOS 49406       // <|startoftext|>
#define CLIP_EOS 49407       // <|endoftext|>, also the padding id
#define CLIP_N_MERGES 48894  // merge ranks 0..48893 make ids 512..49405

typedef struct {
    uint32_t *pair_keys;  // (pair_cap) open-addressing table: (a << 16 | b) + 1, 0 = empty
    int32_t *pair_rank;   // (pair_cap) merge rank of the pair
    size_t pair_cap;      // power of two
    uint16_t byte_id[256];  // id of each byte's symbol (GPT-2 byte-to-unicode order)
} Tokenizer;

// Read the merges file written by tools/gen_clip_vocab.py (vectors/clip/clip_merges.txt).
// Errors name the file and the line.
int build_tokenizer(Tokenizer *t, const char *merges_path);
// The same tokenizer from Hugging Face's tokenizer/vocab.json and merges.txt (as CLIPTokenizer
// writes them). The files must hold the CLIP vocabulary: ids 0..511 the byte symbols, merge
// rank r making id 512 + r, <|startoftext|> 49406 and <|endoftext|> 49407; anything else is
// refused with a message naming the file and the line or id.
int build_tokenizer_hf(Tokenizer *t, const char *vocab_path, const char *merges_path);
void free_tokenizer(Tokenizer *t);

// Tokenize `len` bytes of UTF-8 text into ids (CLIP_CONTEXT of them, padded with CLIP_EOS).
// Returns the number of ids before the padding (2..77), or MV_ERR for invalid UTF-8 (the
// message names the byte offset) or no memory; mv_error() explains.
int tokenize(const Tokenizer *t, const char *text, size_t len, int32_t ids[CLIP_CONTEXT]);

#endif
