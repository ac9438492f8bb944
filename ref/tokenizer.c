// tokenizer.c: the CLIP BPE tokenizer (transformers' slow CLIPTokenizer with ftfy), in the
// order the Python code runs it:
//   1. UTF-8 -> code points (strict; errors name the byte offset)
//   2. split on the literal special tokens <|startoftext|> / <|endoftext|> (the added-token
//      trie of PreTrainedTokenizer.tokenize); every other piece goes through 3-7 on its own
//   3. ftfy.fix_text (line by line): unescape_html, fix_encoding, ligatures, width, quotes,
//      line breaks, terminal escapes, control characters, NFC, repeated until stable
//   4. whitespace_clean: runs of regex \s -> one space, then str.strip()
//   5. str.lower() (with Python's Final_Sigma rule)
//   6. the pre-tokenizer regex: specials | 's 't 're 've 'm 'll 'd | L+ | N | [^\s L N]+
//   7. each chunk's UTF-8 bytes -> byte symbols, last one with </w>, then BPE merges by rank
// and finally BOS + first 75 ids + EOS, padded with EOS. SPEC.md section 7 has the details.
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode_tables.h"

// ---------------------------------------------------------------------------------------
// Growable code point buffer

typedef struct {
    uint32_t *v;  // (cap)
    size_t n, cap;
} CpBuf;

static int buf_reserve(CpBuf *b, size_t extra) {
    size_t need = b->n + extra, cap;
    uint32_t *p;
    if (need <= b->cap) return MV_OK;
    cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    p = (uint32_t *)realloc(b->v, cap * sizeof *p);
    if (!p) return mv_fail_oom("tokenizer: out of memory (%lu code points)", (unsigned long)cap);
    b->v = p;
    b->cap = cap;
    return MV_OK;
}

static int buf_push(CpBuf *b, uint32_t c) {
    if (b->n == b->cap && buf_reserve(b, 1)) return MV_ERR;
    b->v[b->n++] = c;
    return MV_OK;
}

static int buf_append(CpBuf *b, const uint32_t *s, size_t n) {
    if (n == 0) return MV_OK;
    if (buf_reserve(b, n)) return MV_ERR;
    memcpy(b->v + b->n, s, n * sizeof *s);
    b->n += n;
    return MV_OK;
}

static void buf_swap(CpBuf *a, CpBuf *b) {
    CpBuf t = *a;
    *a = *b;
    *b = t;
}

static int buf_equal(const CpBuf *a, const CpBuf *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof *a->v) == 0);
}

// ---------------------------------------------------------------------------------------
// Table lookups (all tables are sorted; binary search)

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid][0]) hi = mid;
        else if (c > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

// Row index of `c` in a table of rows of `width` uint32 keyed by the first one, or -1.
static long find_row(const uint32_t *tab, size_t nrows, size_t width, uint32_t c) {
    size_t lo = 0, hi = nrows;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t k = tab[mid * width];
        if (c < k) hi = mid;
        else if (c > k) lo = mid + 1;
        else return (long)mid;
    }
    return -1;
}

#define IN(tab, c) in_ranges(tab, tab##_n, (c))

// ---------------------------------------------------------------------------------------
// 1. UTF-8 decoding, strict as Python's bytes.decode('utf-8')

static int utf8_decode(CpBuf *out, const unsigned char *s, size_t len) {
    size_t i = 0;
    if (buf_reserve(out, len)) return MV_ERR;
    while (i < len) {
        unsigned c = s[i];
        uint32_t cp;
        size_t k, n;
        unsigned lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
        if (c < 0x80) { out->v[out->n++] = c; i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 3; cp = c & 0x0F;
            if (c == 0xE0) lo = 0xA0;       // overlong
            if (c == 0xED) hi = 0x9F;       // surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4; cp = c & 0x07;
            if (c == 0xF0) lo = 0x90;       // overlong
            if (c == 0xF4) hi = 0x8F;       // above U+10FFFF
        } else {
            return mv_fail("invalid UTF-8 at byte offset %lu: byte 0x%02X cannot start a character",
                           (unsigned long)i, c);
        }
        for (k = 1; k < n; k++) {
            unsigned b = i + k < len ? s[i + k] : 0x100;
            unsigned l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
            if (b == 0x100)
                return mv_fail("invalid UTF-8 at byte offset %lu: the text ends inside a %lu-byte character",
                               (unsigned long)i, (unsigned long)n);
            if (b < l || b > h)
                return mv_fail("invalid UTF-8 at byte offset %lu: byte 0x%02X cannot follow 0x%02X here",
                               (unsigned long)(i + k), b, c);
            cp = (cp << 6) | (b & 0x3F);
        }
        out->v[out->n++] = cp;
        i += n;
    }
    return MV_OK;
}

static size_t utf8_encode(unsigned char *o, uint32_t c) {
    if (c < 0x80) { o[0] = (unsigned char)c; return 1; }
    if (c < 0x800) { o[0] = (unsigned char)(0xC0 | (c >> 6)); o[1] = (unsigned char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (c >> 12)); o[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (c >> 18)); o[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F)); o[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

// ---------------------------------------------------------------------------------------
// 3. ftfy 6.3.1 fix_text with its default configuration

// unescape_html: re.sub of HTML_ENTITY_RE  &#?[0-9A-Za-z]{1,24};
static int is_alnum_ascii(uint32_t c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int hexval(uint32_t c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

// html.unescape of "&#body;" as ftfy uses it: the replacement (0 or 1 code point; *n set),
// or 0 if the reference is not fully consumed (ftfy then keeps the text).
static int numeric_charref(const uint32_t *body, size_t len, uint32_t *cp, int *n) {
    uint32_t num = 0;
    size_t i = 0;
    int base = 10;
    long r;
    if (len && (body[0] == 'x' || body[0] == 'X')) { base = 16; i = 1; }
    if (i == len) return 0;
    for (; i < len; i++) {
        int d = base == 16 ? hexval(body[i]) : (body[i] >= '0' && body[i] <= '9' ? (int)(body[i] - '0') : -1);
        if (d < 0) return 0;
        num = num > 0x110000 ? 0x110001 : num * (uint32_t)base + (uint32_t)d;  // saturate
    }
    r = find_row(uc_html_invalid_charrefs, uc_html_invalid_charrefs_n, 2, num);
    *n = 1;
    if (r >= 0) *cp = uc_html_invalid_charrefs[2 * r + 1];
    else if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) *cp = 0xFFFD;
    else if (IN(uc_html_invalid_codepoints, num)) *n = 0;
    else *cp = num;
    return 1;
}

static int named_entity(const uint32_t *s, size_t len, CpBuf *out) {
    char key[32];
    size_t i, lo = 0, hi = uc_html_entities_n;
    for (i = 0; i < len; i++) key[i] = (char)s[i];
    key[len] = '\0';
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(key, uc_html_entities[mid].name);
        if (c < 0) hi = mid;
        else if (c > 0) lo = mid + 1;
        else {
            CpBuf tmp = {0, 0, 0};
            const char *v = uc_html_entities[mid].value;
            int rc = utf8_decode(&tmp, (const unsigned char *)v, strlen(v)) || buf_append(out, tmp.v, tmp.n);
            free(tmp.v);
            return rc ? MV_ERR : 1;
        }
    }
    return 0;
}

static int unescape_html(CpBuf *out, const CpBuf *in) {
    size_t i = 0, n = in->n;
    const uint32_t *s = in->v;
    out->n = 0;
    while (i < n) {
        size_t j, k;
        if (s[i] != '&') { if (buf_push(out, s[i])) return MV_ERR; i++; continue; }
        j = i + 1;
        if (j < n && s[j] == '#') j++;
        for (k = j; k < n && is_alnum_ascii(s[k]); k++) {}
        if (k == j || k - j > 24 || k >= n || s[k] != ';') {  // no match at this '&'
            if (buf_push(out, s[i])) return MV_ERR;
            i++;
            continue;
        }
        // the match is s[i..k]
        {
            int r = named_entity(s + i, k + 1 - i, out);
            if (r < 0) return MV_ERR;
            if (!r) {
                uint32_t cp = 0;
                int cnt = 0;
                if (s[i + 1] == '#' && numeric_charref(s + j, k - j, &cp, &cnt)) {
                    if (cnt && buf_push(out, cp)) return MV_ERR;
                } else if (buf_append(out, s + i, k + 1 - i)) {
                    return MV_ERR;
                }
            }
        }
        i = k + 1;
    }
    return MV_OK;
}

// ftfy.badness.is_bad: BADNESS_RE.search, the alternatives as generated tables.
static int bad_atom_match(uint32_t atom, uint32_t c) {
    uint32_t cls = atom & 0xFFF;
    if (atom & UC_BAD_ANY) return c != '\n';
    return in_ranges((const uint32_t (*)[2])(uc_bad_class_ranges + 2 * uc_bad_class_index[2 * cls]),
                     uc_bad_class_index[2 * cls + 1], c);
}

static int bad_match_at(const uint32_t *atoms, size_t na, const uint32_t *s, size_t n, size_t i) {
    uint32_t a;
    if (na == 0) return 1;
    a = atoms[0];
    if ((a & UC_BAD_OPT) && bad_match_at(atoms + 1, na - 1, s, n, i)) return 1;
    if (a & UC_BAD_START) return i == 0 && bad_match_at(atoms + 1, na - 1, s, n, i);
    if (i >= n || !bad_atom_match(a & ~(uint32_t)UC_BAD_OPT, s[i])) return 0;
    return bad_match_at(atoms + 1, na - 1, s, n, i + 1);
}

static int is_bad(const uint32_t *s, size_t n) {
    size_t i, a;
    for (i = 0; i < n; i++)
        for (a = 0; a < uc_bad_alts_n; a++)
            if (bad_match_at(uc_bad_atoms + uc_bad_alts[2 * a], uc_bad_alts[2 * a + 1], s, n, i)) return 1;
    return 0;
}

static int is_ascii(const CpBuf *b) {
    size_t i;
    for (i = 0; i < b->n; i++)
        if (b->v[i] >= 0x80) return 0;
    return 1;
}

// ---- fix_encoding: ftfy's mojibake repair (ftfy/__init__.py _fix_encoding_one_step_and_explain)
// Byte strings are held in CpBufs, one byte per element.

// Length of the first alternative of a generated bytes regex that matches at b[p], or 0.
static size_t bytes_alt_at(const uint32_t *masks, const uint32_t *alts, size_t nalts, const uint32_t *b,
                           size_t n, size_t p) {
    size_t a, k;
    for (a = 0; a < nalts; a++) {
        size_t first = alts[2 * a], len = alts[2 * a + 1];
        if (p + len > n) continue;
        for (k = 0; k < len; k++) {
            uint32_t v = b[p + k];
            if (!((masks[(first + k) * 8 + (v >> 5)] >> (v & 31)) & 1)) break;
        }
        if (k == len) return len;
    }
    return 0;
}

#define ALTERED_AT(b, n, p) bytes_alt_at(uc_altered_masks, uc_altered_alts, uc_altered_alts_n, b, n, p)
#define LOSSY_AT(b, n, p) bytes_alt_at(uc_lossy_masks, uc_lossy_alts, uc_lossy_alts_n, b, n, p)

// text.encode(encoding) for ftfy's CHARMAP_ENCODINGS[e]; 0 if the text has a character the
// encoding lacks (chardata.possible_encoding is false), 1 if encoded.
static int charmap_encode(CpBuf *out, const CpBuf *text, int e, int *possible) {
    size_t i;
    out->n = 0;
    *possible = 0;
    for (i = 0; i < text->n; i++) {
        uint32_t c = text->v[i], byte = 0x100, k;
        if (c < 0x80 && c != 0x1A) byte = c;
        else if (c == uc_charmap_1a[e]) byte = 0x1A;
        else
            for (k = 0; k < 128; k++)
                if (uc_charmap[e][k] == c) { byte = 0x80 + k; break; }
        if (byte == 0x100) return MV_OK;
        if (buf_push(out, byte)) return MV_ERR;
    }
    *possible = 1;
    return MV_OK;
}

// fixes.restore_byte_a0: A_GRAVE_WORD_RE  \xc3 (?! |quele|quela|quilo|s )  -> \xc3\xa0 , then
// every ALTERED_UTF8_RE match gets its 0x20 bytes turned into 0xA0.
static int restore_byte_a0(CpBuf *out, const CpBuf *in) {
    static const char *const keep[] = {" ", "quele", "quela", "quilo", "s "};
    CpBuf t = {0, 0, 0};
    size_t i = 0, k, m;
    out->n = 0;
    while (i < in->n) {
        int grave = in->v[i] == 0xC3 && i + 1 < in->n && in->v[i + 1] == 0x20;
        for (k = 0; grave && k < sizeof keep / sizeof keep[0]; k++) {
            size_t L = strlen(keep[k]);
            for (m = 0; m < L && i + 2 + m < in->n && in->v[i + 2 + m] == (unsigned char)keep[k][m]; m++) {}
            if (m == L) grave = 0;
        }
        if (grave) {
            if (buf_push(&t, 0xC3) || buf_push(&t, 0xA0) || buf_push(&t, 0x20)) goto fail;
            i += 2;
        } else {
            if (buf_push(&t, in->v[i])) goto fail;
            i++;
        }
    }
    for (i = 0; i < t.n;) {
        m = ALTERED_AT(t.v, t.n, i);
        if (!m) { if (buf_push(out, t.v[i])) goto fail; i++; continue; }
        for (k = 0; k < m; k++)
            if (buf_push(out, t.v[i + k] == 0x20 ? 0xA0 : t.v[i + k])) goto fail;
        i += m;
    }
    free(t.v);
    return MV_OK;
fail:
    free(t.v);
    return MV_ERR;
}

// fixes.replace_lossy_sequences: each LOSSY_UTF8_RE match -> the UTF-8 of U+FFFD.
static int replace_lossy(CpBuf *out, const CpBuf *in) {
    size_t i = 0, m;
    out->n = 0;
    while (i < in->n) {
        m = LOSSY_AT(in->v, in->n, i);
        if (m) {
            if (buf_push(out, 0xEF) || buf_push(out, 0xBF) || buf_push(out, 0xBD)) return MV_ERR;
            i += m;
        } else {
            if (buf_push(out, in->v[i])) return MV_ERR;
            i++;
        }
    }
    return MV_OK;
}

// One strictly valid UTF-8 character at b[p]: its length, or 0 if invalid.
static size_t utf8_char_at(const uint32_t *b, size_t n, size_t p, uint32_t *cp) {
    uint32_t c = b[p], lo = 0x80, hi = 0xBF, v;
    size_t len, k;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; lo = c == 0xE0 ? 0xA0 : 0x80; hi = c == 0xED ? 0x9F : 0xBF; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; lo = c == 0xF0 ? 0x90 : 0x80; hi = c == 0xF4 ? 0x8F : 0xBF; }
    else return 0;
    if (p + len > n) return 0;
    for (k = 1; k < len; k++) {
        uint32_t x = b[p + k];
        if (x < (k == 1 ? lo : 0x80) || x > (k == 1 ? hi : 0xBF)) return 0;
        v = (v << 6) | (x & 0x3F);
    }
    *cp = v;
    return len;
}

// bytes.decode('utf-8') or ftfy's 'utf-8-variants' (CESU-8 surrogate pairs, C0 80 = NUL).
// Returns MV_OK, 1 for a decoding error, MV_ERR for no memory. The variants' regexes use
// Python's '$', which also matches before a final '\n'; `dollar` reproduces that.
#define DOLLAR(p) ((p) == n || ((p) + 1 == n && b[p] == '\n'))
static int decode_bytes(CpBuf *out, const CpBuf *in, int variants) {
    const uint32_t *b = in->v;
    size_t n = in->n, p = 0, len;
    uint32_t cp;
    out->n = 0;
    while (p < n) {
        if (variants && b[p] == 0xC0) {
            if (n - p > 1 && (b[p + 1] == 0x80 || DOLLAR(p + 1))) {
                if (buf_push(out, 0)) return MV_ERR;
                p += 2;
                continue;
            }
            return 1;
        }
        if (variants && b[p] == 0xED && ((p + 1 < n && b[p + 1] >= 0xA0 && b[p + 1] <= 0xBF) || DOLLAR(p + 1))) {
            if (n - p >= 6 && b[p + 1] >= 0xA0 && b[p + 1] <= 0xAF && b[p + 2] >= 0x80 && b[p + 2] <= 0xBF &&
                b[p + 3] == 0xED && b[p + 4] >= 0xB0 && b[p + 4] <= 0xBF &&
                ((b[p + 5] >= 0x80 && b[p + 5] <= 0xBF) || DOLLAR(p + 5))) {
                cp = ((b[p + 1] & 0x0F) << 16) + ((b[p + 2] & 0x3F) << 10) + ((b[p + 4] & 0x0F) << 6) +
                     (b[p + 5] & 0x3F) + 0x10000;
                if (buf_push(out, cp)) return MV_ERR;
                p += 6;
                continue;
            }
            return 1;
        }
        if (!(len = utf8_char_at(b, n, p, &cp))) return 1;
        if (buf_push(out, cp)) return MV_ERR;
        p += len;
    }
    return MV_OK;
}
#undef DOLLAR

static int fix_encoding(CpBuf *out, const CpBuf *text);

// UTF8_DETECTOR_RE: one repetition of its group at s[p] (its length, or 0). The three
// first-character classes are disjoint (tools/gen_unicode.py checks), so at most one
// alternative can start here.
static size_t utf8_detector_step(const uint32_t *s, size_t n, size_t p) {
    size_t k, len = 0;
    if (IN(uc_utf8_first_of_2, s[p])) len = 1;
    else if (IN(uc_utf8_first_of_3, s[p])) len = 2;
    else if (IN(uc_utf8_first_of_4, s[p])) len = 3;
    if (!len || p + len >= n) return 0;
    for (k = 1; k <= len; k++)
        if (!IN(uc_utf8_continuation, s[p + k])) return 0;
    return len + 1;
}

// The end of the UTF8_DETECTOR_RE match starting at s[p] (p if none): not after a strict
// continuation character, then the group repeated greedily.
static size_t utf8_detector_at(const uint32_t *s, size_t n, size_t p) {
    size_t q = p, m;
    if (p > 0 && IN(uc_utf8_continuation_strict, s[p - 1])) return p;
    while (q < n && (m = utf8_detector_step(s, n, q))) q += m;
    return q;
}

// fixes.decode_inconsistent_utf8: fix each detected UTF-8-looking run on its own.
static int decode_inconsistent_utf8(CpBuf *out, const CpBuf *text) {
    size_t p = 0, q;
    CpBuf sub = {0, 0, 0}, fixed = {0, 0, 0};
    int rc = MV_ERR;
    out->n = 0;
    while (p < text->n) {
        q = utf8_detector_at(text->v, text->n, p);
        if (q == p) { if (buf_push(out, text->v[p])) goto done; p++; continue; }
        if (q - p < text->n && is_bad(text->v + p, q - p)) {
            sub.n = 0;
            if (buf_append(&sub, text->v + p, q - p) || fix_encoding(&fixed, &sub) || buf_append(out, fixed.v, fixed.n))
                goto done;
        } else if (buf_append(out, text->v + p, q - p)) {
            goto done;
        }
        p = q;
    }
    rc = MV_OK;
done:
    free(sub.v);
    free(fixed.v);
    return rc;
}

static int has_c1(const CpBuf *t) {
    size_t i;
    for (i = 0; i < t->n; i++)
        if (t->v[i] >= 0x80 && t->v[i] <= 0x9F) return 1;
    return 0;
}

// fixes.fix_c1_controls: C1 characters -> their sloppy-windows-1252 meaning.
static void fix_c1_controls(CpBuf *t) {
    size_t i;
    for (i = 0; i < t->n; i++)
        if (t->v[i] >= 0x80 && t->v[i] <= 0x9F) t->v[i] = uc_charmap[1][t->v[i] - 0x80];
}

// One step of fix_encoding; out receives the (possibly) changed text.
static int fix_encoding_step(CpBuf *out, const CpBuf *text) {
    CpBuf bytes = {0, 0, 0}, tmp = {0, 0, 0};
    int rc = MV_ERR, e, possible, latin1 = 0;
    size_t i;
    out->n = 0;
    if (text->n == 0 || is_ascii(text) || !is_bad(text->v, text->n)) return buf_append(out, text->v, text->n);
    for (e = 0; e < UC_N_CHARMAPS; e++) {
        int variants = 0, d;
        if (charmap_encode(&bytes, text, e, &possible)) goto done;
        if (!possible) continue;
        if (e == 0) latin1 = 1;
        if (strcmp(uc_charmap_names[e], "macroman") != 0) {
            for (i = 0; i < bytes.n && !ALTERED_AT(bytes.v, bytes.n, i); i++) {}
            if (i < bytes.n) {
                if (restore_byte_a0(&tmp, &bytes)) goto done;
                buf_swap(&tmp, &bytes);
            }
        }
        if (strncmp(uc_charmap_names[e], "sloppy", 6) == 0) {
            if (replace_lossy(&tmp, &bytes)) goto done;
            buf_swap(&tmp, &bytes);
        }
        for (i = 0; i < bytes.n; i++)
            if (bytes.v[i] == 0xED || bytes.v[i] == 0xC0) variants = 1;
        d = decode_bytes(out, &bytes, variants);
        if (d == MV_ERR) goto done;
        if (d == MV_OK) { rc = MV_OK; goto done; }
    }
    // embedded UTF-8 mojibake in otherwise different text
    for (i = 0; i < text->n && utf8_detector_at(text->v, text->n, i) == i; i++) {}
    if (i < text->n) {
        if (decode_inconsistent_utf8(out, text)) goto done;
        if (!buf_equal(out, text)) { rc = MV_OK; goto done; }
    }
    // Latin-1 text with C1 characters: meant as windows-1252 (strict; undefined bytes fail)
    if (latin1 && has_c1(text)) {
        for (i = 0; i < text->n; i++)
            if (text->v[i] >= 0x80 && text->v[i] <= 0x9F && !uc_cp1252_c1[text->v[i] - 0x80]) break;
        if (i == text->n) {
            out->n = 0;
            if (buf_append(out, text->v, text->n)) goto done;
            for (i = 0; i < out->n; i++)
                if (out->v[i] >= 0x80 && out->v[i] <= 0x9F) out->v[i] = uc_cp1252_c1[out->v[i] - 0x80];
            rc = MV_OK;
            goto done;
        }
    }
    out->n = 0;
    if (buf_append(out, text->v, text->n)) goto done;
    fix_c1_controls(out);
    rc = MV_OK;
done:
    free(bytes.v);
    free(tmp.v);
    return rc;
}

// ftfy.fix_encoding: steps until the text stops changing.
static int fix_encoding(CpBuf *out, const CpBuf *text) {
    CpBuf cur = {0, 0, 0};
    int rc = MV_ERR;
    out->n = 0;
    if (buf_append(&cur, text->v, text->n)) return MV_ERR;
    for (;;) {
        if (fix_encoding_step(out, &cur)) goto done;
        if (buf_equal(out, &cur)) break;
        buf_swap(out, &cur);
    }
    rc = MV_OK;
done:
    free(cur.v);
    return rc;
}

// The translate()-style fixers: ligatures, character width, quotes, then line breaks.
static int fix_chars(CpBuf *out, const CpBuf *in) {
    size_t i;
    CpBuf a = {0, 0, 0};
    int rc = MV_ERR;
    out->n = 0;
    // fix_latin_ligatures and fix_character_width (character by character, in this order)
    for (i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        long r = c >= 0x130 ? find_row(uc_ligatures, uc_ligatures_n, 4, c) : -1;
        uint32_t tmp[3];
        size_t k, m = 0;
        if (r >= 0) {
            for (k = 1; k < 4 && uc_ligatures[4 * r + k]; k++) tmp[m++] = uc_ligatures[4 * r + k];
        } else {
            tmp[m++] = c;
        }
        for (k = 0; k < m; k++) {
            uint32_t d = tmp[k];
            long w = d >= 0x3000 ? find_row(uc_width, uc_width_n, 3, d) : -1;
            if (w >= 0) {
                if (buf_push(&a, uc_width[3 * w + 1])) goto out;
                if (uc_width[3 * w + 2] && buf_push(&a, uc_width[3 * w + 2])) goto out;
            } else if (buf_push(&a, d)) {
                goto out;
            }
        }
    }
    // uncurl_quotes, then fix_line_breaks (\r\n, \r, U+2028, U+2029, U+0085 -> \n)
    for (i = 0; i < a.n; i++) {
        uint32_t c = a.v[i];
        if (c >= 0x2000 && IN(uc_double_quotes, c)) c = '"';
        else if (c >= 0x2B0 && IN(uc_single_quotes, c)) c = '\'';
        if (c == '\r' && i + 1 < a.n && a.v[i + 1] == '\n') continue;  // the \n follows
        if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85) c = '\n';
        if (buf_push(out, c)) goto out;
    }
    rc = MV_OK;
out:
    free(a.v);
    return rc;
}

// remove_terminal_escapes (ANSI_RE  \033\[((?:\d|;)*)([a-zA-Z]) with re's Unicode \d), then
// remove_control_chars.
static int fix_controls(CpBuf *out, const CpBuf *in) {
    size_t i = 0;
    CpBuf a = {0, 0, 0};
    out->n = 0;
    while (i < in->n) {
        uint32_t c = in->v[i];
        if (c == 0x1B && i + 1 < in->n && in->v[i + 1] == '[') {
            size_t k = i + 2;
            while (k < in->n && (in->v[k] == ';' || IN(uc_re_digit, in->v[k]))) k++;
            if (k < in->n && in->v[k] < 0x80 && ((in->v[k] | 0x20) >= 'a' && (in->v[k] | 0x20) <= 'z')) {
                i = k + 1;
                continue;
            }
        }
        if (buf_push(&a, c)) { free(a.v); return MV_ERR; }
        i++;
    }
    for (i = 0; i < a.n; i++)
        if (!IN(uc_control_chars, a.v[i]) && buf_push(out, a.v[i])) { free(a.v); return MV_ERR; }
    free(a.v);
    return MV_OK;
}

// NFC (unicodedata.normalize('NFC')): full canonical decomposition, canonical ordering,
// canonical composition. Hangul syllables are algorithmic.
#define H_SBASE 0xAC00u
#define H_LBASE 0x1100u
#define H_VBASE 0x1161u
#define H_TBASE 0x11A7u
#define H_LCOUNT 19u
#define H_VCOUNT 21u
#define H_TCOUNT 28u
#define H_NCOUNT (H_VCOUNT * H_TCOUNT)
#define H_SCOUNT (H_LCOUNT * H_NCOUNT)

static unsigned ccc_of(uint32_t c) {
    long r;
    if (c < 0x300) return 0;
    r = find_row(uc_ccc, uc_ccc_n, 2, c);
    return r >= 0 ? uc_ccc[2 * r + 1] : 0;
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
    size_t lo = 0, hi = uc_compose_n;
    if (a >= H_LBASE && a < H_LBASE + H_LCOUNT && b >= H_VBASE && b < H_VBASE + H_VCOUNT)
        return H_SBASE + ((a - H_LBASE) * H_VCOUNT + (b - H_VBASE)) * H_TCOUNT;
    if (a >= H_SBASE && a < H_SBASE + H_SCOUNT && (a - H_SBASE) % H_TCOUNT == 0 && b > H_TBASE &&
        b < H_TBASE + H_TCOUNT)
        return a + (b - H_TBASE);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const uint32_t *row = uc_compose + 3 * mid;
        if (a < row[0] || (a == row[0] && b < row[1])) hi = mid;
        else if (a > row[0] || b > row[1]) lo = mid + 1;
        else return row[2];
    }
    return 0;
}

static int nfc(CpBuf *out, const CpBuf *in) {
    size_t i, k, starter = (size_t)-1;
    unsigned last_cc = 0;
    CpBuf d = {0, 0, 0};
    out->n = 0;
    for (i = 0; i < in->n && in->v[i] < UC_NFC_SAFE_BELOW; i++) {}
    if (i == in->n) return buf_append(out, in->v, in->n);  // nothing to do
    // decompose
    for (i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        long r;
        if (c >= H_SBASE && c < H_SBASE + H_SCOUNT) {
            uint32_t s = c - H_SBASE, t = s % H_TCOUNT;
            if (buf_push(&d, H_LBASE + s / H_NCOUNT) || buf_push(&d, H_VBASE + (s % H_NCOUNT) / H_TCOUNT) ||
                (t && buf_push(&d, H_TBASE + t)))
                goto fail;
        } else if (c >= 0xC0 && (r = find_row(uc_decomp, uc_decomp_n, 3, c)) >= 0) {
            if (buf_append(&d, uc_decomp_pool + uc_decomp[3 * r + 1], uc_decomp[3 * r + 2])) goto fail;
        } else if (buf_push(&d, c)) {
            goto fail;
        }
    }
    // canonical ordering: stable sort of each run of non-starters by combining class
    for (i = 1; i < d.n; i++) {
        uint32_t c = d.v[i];
        unsigned cc = ccc_of(c);
        if (cc == 0) continue;
        for (k = i; k > 0 && ccc_of(d.v[k - 1]) > cc; k--) d.v[k] = d.v[k - 1];
        d.v[k] = c;
    }
    // compose: c joins the last starter unless blocked by a character in between whose
    // class is 0 or not lower than c's
    for (i = 0; i < d.n; i++) {
        uint32_t c = d.v[i], comp;
        unsigned cc = ccc_of(c);
        if (starter != (size_t)-1) {
            int adjacent = out->n - 1 == starter;
            if ((adjacent || (last_cc != 0 && last_cc < cc)) && (comp = compose_pair(out->v[starter], c))) {
                out->v[starter] = comp;
                continue;
            }
        }
        if (cc == 0) starter = out->n;
        if (buf_push(out, c)) goto fail;
        last_cc = cc;
    }
    free(d.v);
    return MV_OK;
fail:
    free(d.v);
    return MV_ERR;
}

// fix_and_explain on one segment (a line): the fixers in ftfy's order until nothing changes.
static int fix_segment(CpBuf *out, const uint32_t *s, size_t n, int unescape) {
    CpBuf cur = {0, 0, 0}, orig = {0, 0, 0}, tmp = {0, 0, 0};
    int rc = MV_ERR;
    if (buf_append(&cur, s, n)) goto done;
    for (;;) {
        orig.n = 0;
        if (buf_append(&orig, cur.v, cur.n)) goto done;
        if (unescape) {
            if (unescape_html(&tmp, &cur)) goto done;
            buf_swap(&tmp, &cur);
        }
        if (fix_encoding(&tmp, &cur)) goto done;
        buf_swap(&tmp, &cur);
        fix_c1_controls(&cur);
        if (fix_chars(&tmp, &cur)) goto done;
        buf_swap(&tmp, &cur);
        // fix_surrogates: valid UTF-8 holds no surrogates
        if (fix_controls(&tmp, &cur)) goto done;
        buf_swap(&tmp, &cur);
        if (nfc(&tmp, &cur)) goto done;
        buf_swap(&tmp, &cur);
        if (buf_equal(&cur, &orig)) break;
    }
    rc = buf_append(out, cur.v, cur.n);
done:
    free(cur.v);
    free(orig.v);
    free(tmp.v);
    return rc;
}

// fix_text: segments end after each \n (or every 1,000,000 code points); unescape_html is
// switched off for this and every later segment once a segment contains '<'.
static int ftfy_fix_text(CpBuf *out, const uint32_t *s, size_t n) {
    size_t pos = 0;
    int unescape = 1;
    out->n = 0;
    while (pos < n) {
        size_t end = pos, k;
        int rc;
        while (end < n && s[end] != '\n') end++;
        end = end < n ? end + 1 : n;
        if (end - pos > 1000000) end = pos + 1000000;
        for (k = pos; k < end && unescape; k++)
            if (s[k] == '<') unescape = 0;
        if ((rc = fix_segment(out, s + pos, end - pos, unescape)) != MV_OK) return rc;
        pos = end;
    }
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// 4-5. whitespace_clean and lower-casing

static int whitespace_clean(CpBuf *out, const CpBuf *in) {
    size_t i, a = 0, b;
    int rc;
    CpBuf t = {0, 0, 0};
    out->n = 0;
    for (i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        if (c == ' ' || (c < 0x80 ? (c >= 9 && c <= 13) : IN(uc_rx_space, c))) {
            while (i + 1 < in->n && (in->v[i + 1] == ' ' || IN(uc_rx_space, in->v[i + 1]))) i++;
            c = ' ';
        }
        if (buf_push(&t, c)) { free(t.v); return MV_ERR; }
    }
    b = t.n;
    while (a < b && IN(uc_py_space, t.v[a])) a++;
    while (b > a && IN(uc_py_space, t.v[b - 1])) b--;
    rc = b > a ? buf_append(out, t.v + a, b - a) : MV_OK; // t.v is NULL when nothing was left
    free(t.v);
    return rc;
}

static int final_sigma(const uint32_t *s, size_t n, size_t i) {
    size_t j = i;
    int fin;
    while (j > 0 && IN(uc_case_ignorable, s[j - 1])) j--;
    fin = j > 0 && IN(uc_cased, s[j - 1]);
    if (fin) {
        for (j = i + 1; j < n && IN(uc_case_ignorable, s[j]); j++) {}
        fin = j == n || !IN(uc_cased, s[j]);
    }
    return fin;
}

static int lower(CpBuf *out, const CpBuf *in) {
    size_t i;
    out->n = 0;
    for (i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        long r;
        if (c < 0x80) {
            if (c >= 'A' && c <= 'Z') c += 32;
        } else if (c == 0x3A3) {
            c = final_sigma(in->v, in->n, i) ? 0x3C2 : 0x3C3;
        } else if ((r = find_row(uc_lower, uc_lower_n, 2, c)) >= 0) {
            c = uc_lower[2 * r + 1];
        } else if ((r = find_row(uc_lower_multi, uc_lower_multi_n, 4, c)) >= 0) {
            size_t k;
            for (k = 1; k < 4 && uc_lower_multi[4 * r + k]; k++)
                if (buf_push(out, uc_lower_multi[4 * r + k])) return MV_ERR;
            continue;
        }
        if (buf_push(out, c)) return MV_ERR;
    }
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// 6. the pre-tokenizer regex (regex module, IGNORECASE)

static int lit_char_match(uint32_t want, uint32_t c) {
    size_t r, k;
    for (r = 0; r < uc_rx_literal_n; r++)
        if (uc_rx_literal[r][0] == want) {
            for (k = 1; k < 5 && uc_rx_literal[r][k]; k++)
                if (uc_rx_literal[r][k] == c) return 1;
            return 0;
        }
    return 0;
}

static size_t lit_match(const uint32_t *s, size_t n, size_t i, const char *lit) {
    size_t k;
    for (k = 0; lit[k]; k++)
        if (i + k >= n || !lit_char_match((unsigned char)lit[k], s[i + k])) return 0;
    return k;
}

static int is_letter(uint32_t c) {
    if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    return IN(uc_rx_letter, c);
}
static int is_number(uint32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    return IN(uc_rx_number, c);
}
static int is_other(uint32_t c) { return IN(uc_rx_other, c); }

// Length of the regex match at s[i] (0: no alternative matches; findall moves on by one).
static size_t pretoken_at(const uint32_t *s, size_t n, size_t i) {
    static const char *const lits[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve",
                                       "'m", "'ll", "'d"};
    size_t k, m;
    for (k = 0; k < sizeof lits / sizeof lits[0]; k++)
        if ((m = lit_match(s, n, i, lits[k]))) return m;
    if (is_letter(s[i])) {
        for (m = i + 1; m < n && is_letter(s[m]); m++) {}
        return m - i;
    }
    if (is_number(s[i])) return 1;
    if (is_other(s[i])) {
        for (m = i + 1; m < n && is_other(s[m]); m++) {}
        return m - i;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------
// 7. byte-level BPE

static uint32_t pair_hash(uint32_t key) { return key * 2654435761u; }

static int32_t pair_rank(const Tokenizer *t, uint32_t a, uint32_t b) {
    uint32_t key = ((a << 16) | b) + 1;
    size_t mask = t->pair_cap - 1, h = pair_hash(key) & mask;
    while (t->pair_keys[h]) {
        if (t->pair_keys[h] == key) return t->pair_rank[h];
        h = (h + 1) & mask;
    }
    return -1;
}

// BPE of one chunk's bytes; appends ids to out (at most `room` of them are kept).
static void bpe(const Tokenizer *t, const unsigned char *bytes, size_t nb, int32_t *out, size_t *nout,
                size_t room, uint32_t *word) {
    size_t n = nb, i, k;
    for (i = 0; i < nb; i++) word[i] = t->byte_id[bytes[i]];
    word[n - 1] += 256;  // the last symbol carries </w>
    while (n > 1) {
        int32_t best = -1;
        uint32_t a, b;
        for (i = 0; i + 1 < n; i++) {
            int32_t r = pair_rank(t, word[i], word[i + 1]);
            if (r >= 0 && (best < 0 || r < best)) best = r;
        }
        if (best < 0) break;
        // merge every occurrence of the best pair, left to right
        for (i = 0; i + 1 < n && pair_rank(t, word[i], word[i + 1]) != best; i++) {}
        a = word[i];
        b = word[i + 1];
        for (i = 0, k = 0; i < n;) {
            if (i + 1 < n && word[i] == a && word[i + 1] == b) {
                word[k++] = 512 + (uint32_t)best;
                i += 2;
            } else {
                word[k++] = word[i++];
            }
        }
        n = k;
    }
    for (i = 0; i < n && *nout < room; i++) out[(*nout)++] = (int32_t)word[i];
}

// Pre-tokenize and BPE one cleaned, lower-cased piece.
static int encode_piece(const Tokenizer *t, const CpBuf *s, int32_t *out, size_t *nout, size_t room) {
    size_t i = 0;
    unsigned char *bytes;
    uint32_t *word;
    if (!s->n) return MV_OK;
    bytes = (unsigned char *)mv_malloc(4 * s->n, "tokenizer bytes");
    word = (uint32_t *)mv_malloc(4 * s->n * sizeof *word, "tokenizer word");
    if (!bytes || !word) { free(bytes); free(word); return MV_ERR; }
    while (i < s->n && *nout < room) {
        size_t m = pretoken_at(s->v, s->n, i), nb = 0, k;
        if (!m) { i++; continue; }
        for (k = 0; k < m; k++) nb += utf8_encode(bytes + nb, s->v[i + k]);
        if (nb == 15 && memcmp(bytes, "<|startoftext|>", 15) == 0) out[(*nout)++] = CLIP_BOS;
        else if (nb == 13 && memcmp(bytes, "<|endoftext|>", 13) == 0) out[(*nout)++] = CLIP_EOS;
        else bpe(t, bytes, nb, out, nout, room, word);
        i += m;
    }
    free(bytes);
    free(word);
    return MV_OK;
}

// ---------------------------------------------------------------------------------------
// The tokenizer

static int make_pair_table(Tokenizer *t, uint32_t *keys, const char *path);

// byte ids: printable bytes first in byte order, then the rest in byte order (GPT-2's map)
static void set_byte_ids(Tokenizer *t) {
    int b, n = 0;
    for (b = 0; b < 256; b++)
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) t->byte_id[b] = (uint16_t)n++;
    for (b = 0; b < 256; b++)
        if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) t->byte_id[b] = (uint16_t)n++;
}

int build_tokenizer(Tokenizer *t, const char *path) {
    FILE *fp;
    char line[256];
    long lineno = 1, r;
    uint32_t *keys = NULL, *nk; // (cap) the pair keys in rank order, read before the table is made
    size_t i, cap = 0;
    memset(t, 0, sizeof *t);
    set_byte_ids(t);
    fp = fopen(path, "r");
    if (!fp) return mv_fail("%s: cannot open the CLIP merges file", path);
    if (!fgets(line, sizeof line, fp) || strncmp(line, "# mavref CLIP BPE merges v1 ", 28) != 0) {
        fclose(fp);
        return mv_fail("%s: line 1 is not a mavref CLIP merges header (make it with tools/gen_clip_vocab.py)", path);
    }
    // Every line is read and checked before the 1 MiB pair table is allocated.
    for (r = 0; r < CLIP_N_MERGES; r++) {
        unsigned long a, c;
        char extra;
        lineno++;
        if (!fgets(line, sizeof line, fp) || sscanf(line, "%lu %lu %c", &a, &c, &extra) != 2 ||
            a >= 512 + (unsigned long)r || c >= 512 + (unsigned long)r) {
            fclose(fp);
            free(keys);
            return mv_fail("%s: line %ld: expected two ids of earlier symbols (merge rank %ld of %d)",
                           path, lineno, r, CLIP_N_MERGES);
        }
        if ((size_t)r == cap) {
            cap = cap ? 2 * cap : 1024;
            nk = (uint32_t *)realloc(keys, cap * sizeof *keys);
            if (!nk) { fclose(fp); free(keys); return mv_fail_oom("%s: out of memory", path); }
            keys = nk;
        }
        keys[r] = (uint32_t)((a << 16) | c) + 1;
    }
    i = fgets(line, sizeof line, fp) != NULL;
    fclose(fp);
    if (i) { free(keys); return mv_fail("%s: more than %d merges", path, CLIP_N_MERGES); }
    return make_pair_table(t, keys, path);
}

// The pair table from the pair keys in rank order (consumes keys).
static int make_pair_table(Tokenizer *t, uint32_t *keys, const char *path) {
    long r;
    t->pair_cap = 131072;
    t->pair_keys = (uint32_t *)mv_calloc(t->pair_cap, sizeof *t->pair_keys, "tokenizer merges");
    t->pair_rank = (int32_t *)mv_calloc(t->pair_cap, sizeof *t->pair_rank, "tokenizer merges");
    if (!t->pair_keys || !t->pair_rank) { free(keys); free_tokenizer(t); return MV_ERR; }
    for (r = 0; r < CLIP_N_MERGES; r++) {
        uint32_t key = keys[r];
        size_t h = pair_hash(key) & (t->pair_cap - 1);
        while (t->pair_keys[h] && t->pair_keys[h] != key) h = (h + 1) & (t->pair_cap - 1);
        if (t->pair_keys[h]) {
            free(keys);
            free_tokenizer(t);
            return mv_fail("%s: line %ld: duplicate merge %lu %lu", path, r + 2, (unsigned long)((key - 1) >> 16),
                           (unsigned long)((key - 1) & 0xFFFF));
        }
        t->pair_keys[h] = key;
        t->pair_rank[h] = (int32_t)r;
    }
    free(keys);
    return MV_OK;
}

void free_tokenizer(Tokenizer *t) {
    free(t->pair_keys);
    free(t->pair_rank);
    t->pair_keys = NULL;
    t->pair_rank = NULL;
}

// One piece between special tokens: ftfy, whitespace_clean, lower, pre-tokenize, BPE.
static int encode_text(const Tokenizer *t, const uint32_t *s, size_t n, int32_t *out, size_t *nout, size_t room) {
    CpBuf a = {0, 0, 0}, b = {0, 0, 0};
    int rc = ftfy_fix_text(&a, s, n);
    if (rc == MV_OK) rc = whitespace_clean(&b, &a);
    if (rc == MV_OK) rc = lower(&a, &b);
    if (rc == MV_OK) rc = encode_piece(t, &a, out, nout, room);
    free(a.v);
    free(b.v);
    return rc;
}

static int special_at(const uint32_t *s, size_t n, size_t i, const char *lit) {
    size_t k;
    for (k = 0; lit[k]; k++)
        if (i + k >= n || s[i + k] != (unsigned char)lit[k]) return 0;
    return 1;
}

int tokenize(const Tokenizer *t, const char *text, size_t len, int32_t ids[CLIP_CONTEXT]) {
    CpBuf s = {0, 0, 0};
    size_t nout = 1, i, start = 0;
    const size_t room = CLIP_CONTEXT - 1;  // BOS + 75 tokens; EOS goes last
    int rc;
    ids[0] = CLIP_BOS;
    if ((rc = utf8_decode(&s, (const unsigned char *)text, len)) != MV_OK) { free(s.v); return rc; }
    // the added-token split: exact <|startoftext|> / <|endoftext|>, leftmost first
    i = 0;
    while (nout < room) {
        int32_t special = -1;
        size_t skip = 0;
        if (i < s.n) {
            if (s.v[i] == '<' && special_at(s.v, s.n, i, "<|startoftext|>")) { special = CLIP_BOS; skip = 15; }
            else if (s.v[i] == '<' && special_at(s.v, s.n, i, "<|endoftext|>")) { special = CLIP_EOS; skip = 13; }
            if (special < 0) { i++; continue; }
        }
        if (i > start && (rc = encode_text(t, s.v + start, i - start, ids, &nout, room)) != MV_OK) {
            free(s.v);
            return rc;
        }
        if (i == s.n) break;
        if (nout < room) ids[nout++] = special;
        i += skip;
        start = i;
    }
    free(s.v);
    ids[nout++] = CLIP_EOS;
    rc = (int)nout;
    for (; nout < CLIP_CONTEXT; nout++) ids[nout] = CLIP_EOS;
    return rc;
}

// ---------------------------------------------------------------------------------------
// The tokenizer from Hugging Face's files (tokenizer/vocab.json and merges.txt)

static int read_all(const char *path, char **out, size_t *len) {
    FILE *fp = fopen(path, "rb");
    long n;
    if (!fp) return mv_fail("%s: cannot open for reading", path);
    if (fseek(fp, 0, SEEK_END) || (n = ftell(fp)) < 0 || n > (32L << 20) || fseek(fp, 0, SEEK_SET)) {
        fclose(fp);
        return mv_fail("%s: unreadable, or larger than 32 MiB", path);
    }
    *out = (char *)mv_malloc((size_t)n + 1, path);
    if (!*out) { fclose(fp); return MV_ERR; }
    if (fread(*out, 1, (size_t)n, fp) != (size_t)n) { fclose(fp); free(*out); return mv_fail("%s: read error", path); }
    fclose(fp);
    (*out)[n] = '\0';
    *len = (size_t)n;
    return MV_OK;
}

// One JSON string at s[*i] (the opening quote), decoded in place into dst (UTF-8, NUL-ended).
static int vocab_string(const char *s, size_t len, size_t *i, char *dst, size_t cap) {
    size_t o = 0;
    if (*i >= len || s[*i] != '"') return MV_ERR;
    for ((*i)++; *i < len && s[*i] != '"'; (*i)++) {
        unsigned long cp = (unsigned char)s[*i];
        if (o + 5 >= cap || cp < 0x20) return MV_ERR;
        if (cp == '\\') {
            char e = ++(*i) < len ? s[*i] : 0;
            if (e == 'u') {
                char hex[5] = {0};
                if (*i + 4 >= len) return MV_ERR;
                memcpy(hex, s + *i + 1, 4);
                cp = strtoul(hex, NULL, 16);
                *i += 4;
                if (cp >= 0xD800 && cp < 0xDC00) { // a surrogate pair
                    unsigned long lo;
                    if (*i + 6 >= len || s[*i + 1] != '\\' || s[*i + 2] != 'u') return MV_ERR;
                    memcpy(hex, s + *i + 3, 4);
                    lo = strtoul(hex, NULL, 16);
                    if (lo < 0xDC00 || lo >= 0xE000) return MV_ERR;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    *i += 6;
                }
                o += utf8_encode((unsigned char *)dst + o, (uint32_t)cp);
            } else {
                const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t", *p = e ? strchr(from, e) : NULL;
                if (!p) return MV_ERR;
                dst[o++] = to[p - from];
            }
        } else {
            dst[o++] = (char)cp;
        }
    }
    if (*i >= len) return MV_ERR;
    (*i)++;
    dst[o] = '\0';
    return MV_OK;
}

typedef struct { const char *s; int id; } VocabItem;
static int vocab_cmp(const void *a, const void *b) { return strcmp(((const VocabItem *)a)->s, ((const VocabItem *)b)->s); }

static int vocab_lookup(const VocabItem *v, size_t n, const char *s) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v[mid].s, s);
        if (c == 0) return v[mid].id;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

int build_tokenizer_hf(Tokenizer *t, const char *vocab_path, const char *merges_path) {
    char *text = NULL, *mtext = NULL, *pool = NULL, **sym = NULL, buf[1024];
    VocabItem *items = NULL;
    uint32_t *keys = NULL;
    size_t len = 0, mlen = 0, i = 0, n = 0, used = 0;
    int rc = MV_ERR, b;
    long r;
    memset(t, 0, sizeof *t);
    set_byte_ids(t);
    if (read_all(vocab_path, &text, &len)) return MV_ERR;
    sym = (char **)mv_calloc(CLIP_VOCAB, sizeof *sym, "vocabulary");
    items = (VocabItem *)mv_calloc(CLIP_VOCAB, sizeof *items, "vocabulary");
    pool = (char *)mv_malloc(len + 1, "vocabulary"); // decoded strings are never longer than the JSON
    keys = (uint32_t *)mv_calloc(CLIP_N_MERGES, sizeof *keys, "merges");
    if (!sym || !items || !pool || !keys) goto done;
    // {"symbol": id, ...}
    while (i < len && strchr(" \t\r\n", text[i])) i++;
    if (i >= len || text[i++] != '{') { mv_fail("%s: not a JSON object", vocab_path); goto done; }
    for (;;) {
        char *end;
        long id;
        while (i < len && strchr(" \t\r\n", text[i])) i++;
        if (i < len && text[i] == '}') break;
        if (n == CLIP_VOCAB) { mv_fail("%s: more than %d entries (mavref's CLIP tokenizer has %d)", vocab_path, CLIP_VOCAB, CLIP_VOCAB); goto done; }
        if (vocab_string(text, len, &i, pool + used, len + 1 - used)) { mv_fail("%s: byte %lu: expected a JSON string", vocab_path, (unsigned long)i); goto done; }
        while (i < len && strchr(" \t\r\n", text[i])) i++;
        if (i >= len || text[i++] != ':') { mv_fail("%s: byte %lu: expected ':'", vocab_path, (unsigned long)i); goto done; }
        id = strtol(text + i, &end, 10);
        if (end == text + i || id < 0 || id >= CLIP_VOCAB || sym[id]) {
            mv_fail("%s: byte %lu: expected a new id below %d", vocab_path, (unsigned long)i, CLIP_VOCAB);
            goto done;
        }
        i = (size_t)(end - text);
        sym[id] = pool + used;
        items[n].s = pool + used;
        items[n].id = (int)id;
        used += strlen(pool + used) + 1;
        n++;
        while (i < len && strchr(" \t\r\n", text[i])) i++;
        if (i < len && text[i] == ',') { i++; continue; }
        if (i < len && text[i] == '}') break;
        mv_fail("%s: byte %lu: expected ',' or '}'", vocab_path, (unsigned long)i);
        goto done;
    }
    if (n != CLIP_VOCAB) { mv_fail("%s: %lu entries, mavref's CLIP tokenizer has %d", vocab_path, (unsigned long)n, CLIP_VOCAB); goto done; }
    // ids 0..511: the byte symbols (GPT-2's map), then the same with "</w>"; the two specials last
    for (b = 0; b < 256; b++) {
        unsigned char u[8];
        size_t k = utf8_encode(u, (uint32_t)(t->byte_id[b] < 188 ? b : 256 + (t->byte_id[b] - 188)));
        u[k] = 0;
        snprintf(buf, sizeof buf, "%s</w>", (const char *)u);
        if (strcmp(sym[t->byte_id[b]], (const char *)u) || strcmp(sym[256 + t->byte_id[b]], buf)) {
            mv_fail("%s: id %d is '%s', not the byte symbol mavref's CLIP tokenizer has there", vocab_path, t->byte_id[b], sym[t->byte_id[b]]);
            goto done;
        }
    }
    if (strcmp(sym[CLIP_BOS], "<|startoftext|>") || strcmp(sym[CLIP_EOS], "<|endoftext|>")) {
        mv_fail("%s: ids %d and %d must be <|startoftext|> and <|endoftext|>", vocab_path, CLIP_BOS, CLIP_EOS);
        goto done;
    }
    qsort(items, n, sizeof *items, vocab_cmp);
    // merges.txt: a "#version" line, then "A B" per rank; transformers reads the first 48894
    if (read_all(merges_path, &mtext, &mlen)) goto done;
    i = 0;
    if (strncmp(mtext, "#version", 8) != 0) { mv_fail("%s: line 1 is not a \"#version\" header", merges_path); goto done; }
    while (i < mlen && mtext[i] != '\n') i++;
    for (r = 0; r < CLIP_N_MERGES; r++) {
        size_t s0 = ++i, sp = 0, e;
        int a, c, m;
        while (i < mlen && mtext[i] != '\n') { if (mtext[i] == ' ' && !sp) sp = i; i++; }
        e = i > s0 && mtext[i - 1] == '\r' ? i - 1 : i;
        if (i > mlen || !sp || e - s0 >= sizeof buf - 1) {
            mv_fail("%s: line %ld: expected \"A B\" (merge rank %ld of %d)", merges_path, r + 2, r, CLIP_N_MERGES);
            goto done;
        }
        memcpy(buf, mtext + s0, sp - s0);
        buf[sp - s0] = '\0';
        a = vocab_lookup(items, n, buf);
        memcpy(buf, mtext + sp + 1, e - sp - 1);
        buf[e - sp - 1] = '\0';
        c = vocab_lookup(items, n, buf);
        // the merged symbol must be id 512 + rank, as the C tokenizer assumes
        memcpy(buf, mtext + s0, sp - s0);
        memcpy(buf + (sp - s0), mtext + sp + 1, e - sp - 1);
        buf[e - s0 - 1] = '\0';
        m = vocab_lookup(items, n, buf);
        if (a < 0 || c < 0 || a >= 512 + r || c >= 512 + r || m != 512 + r) {
            mv_fail("%s: line %ld: the merge's symbols are not ids of vocab.json below %ld, or '%s' is not id %ld",
                    merges_path, r + 2, 512 + r, buf, 512 + r);
            goto done;
        }
        keys[r] = ((uint32_t)a << 16 | (uint32_t)c) + 1;
    }
    rc = make_pair_table(t, keys, merges_path);
    keys = NULL; // consumed
done:
    free(text);
    free(mtext);
    free(pool);
    free(sym);
    free(items);
    free(keys);
    return rc;
}
