// ops_tokenizer.c: the CLIP tokenizer's corpus runner and unit tests.
//
// A 'tokenize' case holds N strings and the ids transformers' CLIPTokenizer gave them:
//   text (U8, concatenated UTF-8), text_offsets (I64, N+1),
//   ids (I32, the 77 ids of each string with the trailing 49407s cut off, concatenated),
//   ids_offsets (I64, N+1), mojibake (U8, N: 1 where ftfy's mojibake detector fired and
//   ftfy went on to try re-decoding the text; counted in the output),
//   metadata merges = the merges file relative to the vectors folder, merges_sha256.
// Every string must give exactly the expected 77 ids.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "tests.h"
#include "../ref/tokenizer.h"
#include "../ref/unicode_tables.h"

static void print_text(const unsigned char *s, size_t n) {
    size_t i;
    printf("\"");
    for (i = 0; i < n && i < 300; i++) {
        if (s[i] >= 0x20 && s[i] != 0x7F && s[i] != '"' && s[i] != '\\') putchar(s[i]);
        else printf("\\x%02x", s[i]);
    }
    printf("%s\"", n > 300 ? "..." : "");
}

static void print_ids(const char *what, const int32_t *v, size_t n) {
    size_t i;
    printf("    %s:", what);
    for (i = 0; i < n; i++) printf(" %d", (int)v[i]);
    printf("\n");
}

// The vectors folder of a case file: "<dir>/<prec>/<name>.safetensors".
static void vectors_dir(char *out, size_t cap, const char *path) {
    char *p;
    snprintf(out, cap, "%s", path);
    p = strrchr(out, '/');
    if (p) *p = '\0';
    p = strrchr(out, '/');
    if (p) *p = '\0';
    else snprintf(out, cap, ".");
}

int run_tokenize(Case *c) {
    int64_t *text = NULL, *toff = NULL, *ids = NULL, *ioff = NULL, *moji = NULL;
    size_t ntext, ntoff, nids, nioff, nmoji, N, i, k, shown = 0, bad = 0, nmojibake = 0, ntok = 0;
    unsigned char *bytes = NULL;
    const char *merges, *want_sha;
    char dir[1024], mpath[1200], hex[65];
    Tokenizer tok, tok_hf;
    int32_t got[CLIP_CONTEXT], exp[CLIP_CONTEXT];
    clock_t t0;
    double secs;
    int rc = 1;
    if (!(merges = case_meta_str(c, "merges")) || !(want_sha = case_meta_str(c, "merges_sha256"))) return 1;
    vectors_dir(dir, sizeof dir, c->path);
    snprintf(mpath, sizeof mpath, "%s/%s", dir, merges);
    if (sha256_file(mpath, hex) || strcmp(hex, want_sha) != 0) {
        harness_failf(c->name, "%s: missing or sha256 differs from the case's merges_sha256 %s", mpath, want_sha);
        return 1;
    }
    if (build_tokenizer(&tok, mpath)) return case_error(c, "build_tokenizer") ? 1 : 1;
    // the same tokenizer read from Hugging Face's vocab.json + merges.txt (--model DIR) must
    // give the same ids on every string
    {
        char vj[1100], mt[1100];
        snprintf(vj, sizeof vj, "%s/model/makeavid/tokenizer/vocab.json", dir);
        snprintf(mt, sizeof mt, "%s/model/makeavid/tokenizer/merges.txt", dir);
        if (build_tokenizer_hf(&tok_hf, vj, mt)) { case_error(c, "build_tokenizer_hf"); free_tokenizer(&tok); return 1; }
    }
    if (st_read_i64(&c->vec, "text", &text, &ntext) || st_read_i64(&c->vec, "text_offsets", &toff, &ntoff) ||
        st_read_i64(&c->vec, "ids", &ids, &nids) || st_read_i64(&c->vec, "ids_offsets", &ioff, &nioff) ||
        st_read_i64(&c->vec, "mojibake", &moji, &nmoji)) {
        case_error(c, "reading the case");
        goto out;
    }
    N = nmoji;
    if (N == 0 || ntoff != N + 1 || nioff != N + 1 || toff[0] != 0 || ioff[0] != 0 ||
        (size_t)toff[N] != ntext || (size_t)ioff[N] != nids) {
        harness_failf(c->name, "inconsistent offsets (N=%lu)", (unsigned long)N);
        goto out;
    }
    for (i = 0; i < N; i++)
        if (toff[i + 1] < toff[i] || ioff[i + 1] < ioff[i] || ioff[i + 1] - ioff[i] > CLIP_CONTEXT) {
            harness_failf(c->name, "bad offsets at string %lu", (unsigned long)i);
            goto out;
        }
    bytes = (unsigned char *)malloc(ntext ? ntext : 1);
    if (!bytes) { harness_failf(c->name, "out of memory"); goto out; }
    for (i = 0; i < ntext; i++) bytes[i] = (unsigned char)text[i];
    t0 = clock();
    for (i = 0; i < N; i++) {
        size_t n0 = (size_t)toff[i], len = (size_t)(toff[i + 1] - toff[i]);
        size_t ne = (size_t)(ioff[i + 1] - ioff[i]);
        int r = tokenize(&tok, (const char *)bytes + n0, len, got);
        int32_t got_hf[CLIP_CONTEXT];
        int r_hf = tokenize(&tok_hf, (const char *)bytes + n0, len, got_hf);
        for (k = 0; k < CLIP_CONTEXT; k++) exp[k] = k < ne ? (int32_t)ids[ioff[i] + (int64_t)k] : CLIP_EOS;
        if (r_hf != r || memcmp(got_hf, exp, sizeof got_hf) != 0) {
            bad++;
            if (shown++ < 5) printf("FAIL %s: string %lu: the tokenizer from vocab.json + merges.txt gives other ids\n", c->name, (unsigned long)i);
            continue;
        }
        if (moji[i]) nmojibake++;
        if (r > 0) ntok += (size_t)r;
        if (r < 0 || memcmp(got, exp, sizeof got) != 0) {
            bad++;
            if (shown++ < 5) {
                printf("FAIL %s: string %lu ", c->name, (unsigned long)i);
                print_text(bytes + n0, len);
                printf("%s\n", r < 0 ? "" : " gives other ids");
                if (r < 0) printf("    error: %s\n", mv_error());
                else print_ids("got     ", got, CLIP_CONTEXT);
                print_ids("expected", exp, CLIP_CONTEXT);
            }
        }
    }
    secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    c->checks++;
    if (bad) {
        harness_failf(c->name, "%lu of %lu strings differ from transformers' ids", (unsigned long)bad, (unsigned long)N);
        c->failed++;
        goto out;
    }
    printf("  ok %s ids: %lu strings exact, also from vocab.json + merges.txt (%lu of them checked by ftfy's mojibake repair; %lu ids) in %.1f ms\n",
           c->name, (unsigned long)N, (unsigned long)nmojibake, (unsigned long)ntok, secs * 1e3);
    rc = 0;
out:
    free(text);
    free(toff);
    free(ids);
    free(ioff);
    free(moji);
    free(bytes);
    free_tokenizer(&tok);
    free_tokenizer(&tok_hf);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Unit tests that need no merges file: an empty merge table gives one id per byte.

static int in_ranges_local(const uint32_t (*r)[2], size_t n, uint32_t c) {
    size_t i;
    for (i = 0; i < n; i++)
        if (c >= r[i][0] && c <= r[i][1]) return 1;
    return 0;
}

static int bytes_only(Tokenizer *t) {
    static uint32_t key[1];
    static int32_t rank[1];
    int b, n = 0;
    memset(t, 0, sizeof *t);
    for (b = 0; b < 256; b++)
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) t->byte_id[b] = (uint16_t)n++;
    for (b = 0; b < 256; b++)
        if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) t->byte_id[b] = (uint16_t)n++;
    key[0] = 0;
    t->pair_keys = key;
    t->pair_rank = rank;
    t->pair_cap = 1;
    return n == 256 ? 0 : 1;
}

int test_tokenizer_utf8(void) {
    static const struct { const char *s; size_t len; const char *where; } bad[] = {
        {"\xff", 1, "byte offset 0"},
        {"ab\xc3", 3, "byte offset 2"},
        {"a\xe0\x80\x80", 4, "byte offset 2"},    // overlong
        {"\xed\xa0\x80", 3, "byte offset 1"},     // surrogate
        {"xy\xf4\x90\x80\x80", 6, "byte offset 3"},  // above U+10FFFF
        {"\xc0\xaf", 2, "byte offset 0"},
        {"ok \x80", 4, "byte offset 3"},
    };
    Tokenizer t;
    int32_t ids[CLIP_CONTEXT];
    size_t i;
    int fails = bytes_only(&t);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = tokenize(&t, bad[i].s, bad[i].len, ids);
        fails += EXPECT(r == MV_ERR && strstr(mv_error(), bad[i].where) && strstr(mv_error(), "invalid UTF-8"),
                        "case %lu: expected an invalid UTF-8 error at %s, got %d '%s'", (unsigned long)i,
                        bad[i].where, r, mv_error());
    }
    // a NUL byte inside the length is a character (ftfy removes it), not the end
    fails += EXPECT(tokenize(&t, "A\0 B", 4, ids) == 4 && ids[1] == 320 && ids[2] == 321 && ids[3] == CLIP_EOS,
                    "\"A\\0 B\" should give BOS a b EOS");
    fails += EXPECT(tokenize(&t, "", 0, ids) == 2 && ids[0] == CLIP_BOS && ids[1] == CLIP_EOS && ids[76] == CLIP_EOS,
                    "empty text should give BOS EOS and padding");
    return fails;
}

int test_tokenizer_limits(void) {
    Tokenizer t;
    int32_t ids[CLIP_CONTEXT], want[CLIP_CONTEXT];
    int r, w, fails = bytes_only(&t), c;
    // mojibake is repaired as ftfy does: "cafÃ©" (UTF-8 read as Latin-1) tokenizes as "café"
    r = tokenize(&t, "caf\xc3\x83\xc2\xa9", 7, ids);
    w = tokenize(&t, "caf\xc3\xa9", 5, want);
    fails += EXPECT(r > 0 && r == w && memcmp(ids, want, sizeof ids) == 0, "mojibake: got %d '%s'", r, mv_error());
    // ...and so is its HTML-escaped form
    r = tokenize(&t, "caf&Atilde;&copy;", 17, ids);
    fails += EXPECT(r > 0 && r == w && memcmp(ids, want, sizeof ids) == 0, "escaped mojibake: got %d", r);
    // the ASCII fast paths of the pre-tokenizer agree with the generated tables
    for (c = 0; c < 0x80; c++) {
        int letter = in_ranges_local(uc_rx_letter, uc_rx_letter_n, (uint32_t)c);
        int number = in_ranges_local(uc_rx_number, uc_rx_number_n, (uint32_t)c);
        fails += EXPECT(letter == (((c | 0x20) >= 'a' && (c | 0x20) <= 'z')), "letter table at 0x%02X", c);
        fails += EXPECT(number == (c >= '0' && c <= '9'), "number table at 0x%02X", c);
    }
    return fails;
}
