"""The CLIP tokenizer corpus: strings and the ids transformers' slow CLIPTokenizer gives them.

The tokenizer is transformers 4.57.6's CLIPTokenizer with ftfy 6.3.1, built from the
vocabulary that tools/gen_clip_vocab.py derives from bpe_simple_vocab_16e6.txt.gz and called
as Stable Diffusion calls it: tok(texts, padding='max_length', max_length=77, truncation=True).

Every string is generated from word lists and character pools with a fixed seed. One case per
category; each case file holds
    text (U8: the strings' UTF-8, concatenated), text_offsets (I64, N+1),
    ids (I32: each string's 77 ids with the trailing 49407s removed, concatenated;
         the C runner pads them back with 49407), ids_offsets (I64, N+1),
    mojibake (U8, N): 1 where ftfy's mojibake detector (ftfy.badness.is_bad) fired on a
         non-ASCII line, i.e. where ftfy went on to try re-decoding the text.
Tokenization does not depend on the precision: the same case is written for f32 and f64.
"""
import hashlib
import os

import numpy as np

import ftfy
import ftfy.bad_codecs  # noqa: F401  (registers the sloppy-windows-* codecs used below)

from vecspec import Case

HERE = os.path.dirname(os.path.abspath(__file__))
MERGES_REL = 'clip/clip_merges.txt'
MERGES = os.path.join(os.path.dirname(HERE), 'vectors', MERGES_REL)
PAD = 49407

_TOK = None


def tokenizer():
    global _TOK
    if _TOK is None:
        import gen_clip_vocab
        _TOK = gen_clip_vocab.clip_tokenizer()
    return _TOK


# ftfy's fix_encoding consults is_bad only for non-ASCII text; record when it says yes.
_BAD_SEEN = [False]
_orig_is_bad = ftfy.is_bad


def _recording_is_bad(text):
    r = _orig_is_bad(text)
    if r:
        _BAD_SEEN[0] = True
    return r


ftfy.is_bad = _recording_is_bad


def encode(texts):
    tok = tokenizer()
    ids, flags = [], []
    for t in texts:
        _BAD_SEEN[0] = False
        v = tok(t, padding='max_length', max_length=77, truncation=True).input_ids
        assert len(v) == 77 and v[0] == 49406, (t, v)
        while v and v[-1] == PAD:
            v = v[:-1]
        ids.append(v)
        flags.append(1 if _BAD_SEEN[0] else 0)
    return ids, flags


def pack(texts, ids, flags):
    b = [t.encode('utf-8') for t in texts]
    toff = np.cumsum([0] + [len(x) for x in b]).astype(np.int64)
    ioff = np.cumsum([0] + [len(v) for v in ids]).astype(np.int64)
    text = np.frombuffer(b''.join(b), dtype=np.uint8).copy()
    flat = np.array([i for v in ids for i in v], dtype=np.int32)
    return [('text', text), ('text_offsets', toff), ('ids', flat), ('ids_offsets', ioff),
            ('mojibake', np.array(flags, dtype=np.uint8))]


# ---------------------------------------------------------------------------------------
# word lists

SUBJECTS = ['a man', 'a woman', 'a child', 'two kids', 'an old man', 'a young woman', 'a dog', 'a cat',
            'a horse', 'a group of people', 'a teenager', 'a chef', 'a dancer', 'a surfer', 'a cyclist',
            'a golden retriever', 'a panda', 'an astronaut', 'a robot', 'a knight', 'a girl', 'a boy',
            'the crowd', 'a couple', 'a musician', 'a soldier', 'a bird', 'an eagle', 'a fox', 'a bear',
            'a shark', 'a dolphin', 'a butterfly', 'a car', 'a red car', 'a train', 'a boat', 'a drone',
            'a skateboarder', 'a firefighter', "a woman's hand", 'the camera', 'a teddy bear', 'Iron Man',
            'a corgi', 'an elephant', 'a lion', 'a jellyfish', 'a snowman', 'a ballerina']
VERBS = ['is walking', 'is running', 'walks', 'runs', 'is dancing', 'plays guitar', 'is playing the piano',
         'is cooking pasta', 'is swimming', 'jumps', 'is riding a bike', 'rides a horse', 'is surfing',
         'is reading a book', 'is talking to the camera', 'eats an apple', 'is drinking coffee', 'sings',
         'is painting a picture', 'waves', 'is sleeping', 'is flying', 'drives', 'is typing on a laptop',
         'is laughing', 'is crying', 'looks around', 'climbs a rock', 'is skiing', 'is fishing',
         'throws a ball', 'catches a frisbee', 'is juggling', 'is knitting', 'is lifting weights']
PLACES = ['on the beach', 'in a park', 'in the kitchen', 'on a busy street', 'in the snow', 'underwater',
          'in space', 'on the moon', 'in a forest', 'in the desert', 'on a stage', 'in a living room',
          'at night', 'in the rain', 'in New York City', 'in Tokyo', 'on a mountain top', 'by the lake',
          'in a classroom', 'at the office', 'in a field of flowers', 'on a rooftop', 'in a cafe',
          'at the gym', 'in a swimming pool', 'on a boat', 'in a library', 'on the highway', 'in a cave',
          'at sunset', 'at sunrise', 'during a thunderstorm', 'in a cyberpunk city', 'in a medieval castle']
STYLES = ['4k', '8k', 'hd', 'high quality', 'slow motion', 'time-lapse', 'cinematic', 'drone shot',
          'close-up', 'wide angle', 'aerial view', 'trending on artstation', 'photorealistic',
          'unreal engine', 'octane render', 'oil painting', 'watercolor', 'anime style',
          'studio ghibli', 'by greg rutkowski', 'film grain', 'bokeh', 'golden hour', 'volumetric lighting',
          'highly detailed', 'masterpiece', 'best quality', 'shallow depth of field', 'handheld camera',
          'vhs footage', '35mm', 'f/1.8', 'macro', 'black and white', 'sepia', 'low poly', 'pixel art',
          'isometric', 'concept art', 'dslr', 'sharp focus', 'ultra-detailed', 'hdr', 'ray tracing']
ADJS = ['beautiful', 'tiny', 'huge', 'fluffy', 'shiny', 'old', 'futuristic', 'rusty', 'colorful', 'dark',
        'bright', 'misty', 'glowing', 'ancient', 'modern', 'cute', 'scary', 'majestic', 'wet', 'frozen']
NOUNS = ['city', 'forest', 'ocean', 'mountain', 'robot', 'castle', 'flower', 'river', 'spaceship',
         'waterfall', 'street', 'garden', 'bridge', 'volcano', 'island', 'temple', 'lighthouse', 'train',
         'village', 'portrait', 'landscape', 'sky', 'galaxy', 'cathedral', 'market', 'tree', 'cloud']

CONTRACTIONS = ["it's", "don't", "can't", "I'm", "you're", "we've", "they'll", "she'd", "he's", "isn't",
                "won't", "let's", "that's", "I'll", "we'd", "you've", "they're", "ain't", "o'clock",
                "rock'n'roll", "'tis", "y'all", "IT'S", "DON'T", "You'Re", "I'M", "WE'VE", "'S", "'ll",
                "dogs'", "James's", "'quoted'", "''", "'", "rock 'n' roll", "l'amour", "d'Artagnan"]
PUNCT = list('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~') + ['...', '--', '!!', '?!', '...!', '(((', ')))',
                                                      '[[', ']]', '::', '->', '=>', '<3', ':)', ':-(',
                                                      ';)', '***', '###', '@@', '$$', '%%', '&&', '||']

ACCENTED = ['café', 'naïve', 'résumé', 'jalapeño', 'crème brûlée', 'façade', 'Zürich', 'São Paulo',
            'Ångström', 'smörgåsbord', 'piñata', 'Björk', 'Dvořák', 'Łódź', 'Kraków', 'Ærø', 'Øresund',
            'straße', 'STRASSE', 'Straße', 'İstanbul', 'ıi', 'Şişli', 'Ğ', 'Ž', 'Čeština', 'español',
            'français', 'Français', 'Ñandú', 'coöperate', 'Mötley Crüe', 'Häagen-Dazs', 'über', 'ÜBER',
            'élève', 'ÉLÈVE', 'Đà Nẵng', 'Hà Nội', 'Tiếng Việt', 'ﬁne', 'ﬂower', 'ﬀ', 'ﬃ', 'ﬄ', 'ﬅ', 'ﬆ',
            'Ĳssel', 'ĳs', 'ǅ', 'ǈ', 'ǋ', 'Ǳ', 'ŉ', 'æon', 'œuvre', 'Œuvre', 'ſ', 'ﬅ',
            'e\u0301', 'a\u0300', 'n\u0303', 'o\u0308', 'u\u0308\u0301', 'A\u030a', 'c\u0327',
            'e\u0323\u0302', 'e\u0302\u0323', 'q\u0307\u0323', 'ǖ', 'Å', 'Ω', 'K', 'ḱ', 'ẛ̣', 'ﬀ',
            'ｆｕｌｌｗｉｄｔｈ', 'ＨＥＬＬＯ　ＷＯＲＬＤ', '１２３', 'ﾊﾝｶｸ', 'ｶﾞ', '￥', '￡', '￣',
            '\u201ccurly\u201d', '\u2018single\u2019', '\u201ehigh\u201f', '\u2019tis', 'it\u2019s',
            'don\u2019t', '\u02bcokina', '\u201b', 'I\u2019M', '\u2039guillemets\u203a', '«quotes»']
GREEK = ['ΑΘΗΝΑ', 'Αθήνα', 'ΟΔΟΣ', 'ΟΔΟΣ ΣΑΣ', 'Σ', 'ΣΑ', 'ΑΣ', 'ΑΣ.', 'ΑΣ\u0301', 'Α\u0301Σ', 'ΑΣΑ', 'ΑΣ1',
         'καλημέρα', 'ΚΑΛΗΜΕΡΑ', 'φιλοσοφία', 'ΦΙΛΟΣΟΦΙΑ', 'Ελλάδα', 'ΕΛΛΆΔΑ', 'ψυχή', 'ΐ', 'ΰ', 'ς',
         'ΣΟΦΟΣ ΚΑΙ ΣΟΦΟΣ', 'Σ\u0345', 'ᾼ', 'ᾳ', 'ᾈ', 'ΩΣ\'', 'ΆΣ\u00ad', 'Α\u00adΣ']
CYRILLIC = ['Москва', 'МОСКВА', 'привет мир', 'Привет, Мир!', 'Україна', 'Ґанок', 'ґ', 'Беларусь',
            'български', 'Српски', 'ёлка', 'ЁЛКА', 'Й', 'й', 'щи', 'ЪЫЬ', 'Їжак', 'Ѣ', 'Ѵ', 'Ӂ']
CJK = ['東京', '日本語', '中文', '北京欢迎你', '漢字', '你好世界', '猫が好き', 'こんにちは', 'カタカナ',
       'ひらがな', 'ラーメン', '한국어', '안녕하세요', '서울', '한글', 'ㄱㄴㄷ', '\u1100\u1161\u11a8', '\u1112\u1161',
       '𠀀', '𪚥', '〒', '〇', '々', '。', '、', '「引用」', '『本』', '（括弧）', '！', '？', '…', 'ー',
       '富士山の夕日', '可爱的猫', '一二三', '壹貳參', '〡〢〣', '①②③', '⑩', '㈠', '㊙', '㍻', '㎞', '㋀']
RTL = ['שלום', 'עברית', 'مرحبا', 'العربية', 'السلام عليكم', 'فارسی', 'اردو', 'ܐܪܡܝܐ', 'ދިވެހި',
       '\u202eevil\u202c', '\u200fRTL\u200e', '\u061c', 'مرحبا123', '١٢٣', '۴۵۶', 'ﷺ', 'ﻻ', 'אָ', 'בּ']
OTHER_SCRIPTS = ['नमस्ते', 'हिन्दी', 'বাংলা', 'ਪੰਜਾਬੀ', 'ગુજરાતી', 'தமிழ்', 'తెలుగు', 'ಕನ್ನಡ', 'മലയാളം',
                 'ภาษาไทย', 'ສະບາຍດີ', 'ქართული', 'Հայերեն', 'አማርኛ', 'ᏣᎳᎩ', 'ᚠᚢᚦ', 'ⵜⴰⵎⴰⵣⵉⵖⵜ', '𐌰𐌱',
                 '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '𝐁𝐨𝐥𝐝', '𝟙𝟚𝟛', 'ℌ', 'ℵ', 'Ⅻ', 'ⅻ', 'Ⓐⓑ', '🄰', 'ᴀʙᴄ', 'ˢᵘᵖ', '₀₁₂', '½',
                 '²³', '٣', '߁', '๓', '፲', '𝟎', '᧑', 'ǃ', 'ʔ', 'ꙮ', 'ꓘ', 'ᵹ']
EMOJI = ['😀', '😂', '🥲', '❤️', '❤', '♥', '👍', '👍🏽', '👍🏿', '🙏', '🔥', '✨', '🎉', '🐱', '🐶', '🦄', '🌈',
         '👨‍👩‍👧‍👦', '👩‍💻', '🧑🏽‍🚀', '🏳️‍🌈', '🏴‍☠️', '🇺🇸', '🇯🇵', '🇩🇪', '🏴󠁧󠁢󠁷󠁬󠁳󠁿', '#️⃣', '1️⃣', '©️',
         '™', '®', '☀️', '⛄', '⚽', '🍕', '🍣', '🚀', '🛸', '🎬', '📷', '🎥', '🤖', '👀', '💯', '✅', '❌',
         '⭐', '🌟', '💥', '🫠', '🪐', '🧊', '\u200d', '\ufe0f', '\ufe0e', '✌︎', '☺', '♀', '♂️', '⚧',
         '→', '⇒', '∞', '√', '≈', '≠', '±', '×', '÷', '°', '€', '£', '¥', '₹', '₿', '§', '¶', '†', '•',
         '—', '–', '…', '‰', '′', '″', '№', '℃', '㎡', '♪', '♫', '☆', '★', '■', '□', '▲', '◆', '○',
         '│', '┌', '═', '╬', '░', '▓', '█']
ENTITIES = ['&amp;', '&lt;', '&gt;', '&quot;', '&apos;', '&nbsp;', '&copy;', '&reg;', '&trade;',
            '&hellip;', '&mdash;', '&ndash;', '&eacute;', '&Eacute;', '&EACUTE;', '&uuml;', '&UUML;',
            '&szlig;', '&SZLIG;', '&ntilde;', '&NTILDE;', '&nTILDE;', '&amp;amp;', '&amp;lt;',
            '&amp;amp;amp;', '&#39;', '&#039;', '&#x27;', '&#X27;', '&#8217;', '&#x2019;', '&#128512;',
            '&#x1F600;', '&#0;', '&#x0;', '&#128;', '&#x80;', '&#x9F;', '&#150;', '&#13;', '&#10;',
            '&#9;', '&#65;', '&#x41;', '&#xD800;', '&#1114112;', '&#x110000;', '&#99999999999999999999;',
            '&#x10FFFF;', '&#xFFFE;', '&#1;', '&#127;', '&#x7f;', '&#12ab;', '&#x12G;', '&#xZZ;', '&#;',
            '&#x;', '&;', '&amp', '&lt', '&copy', '&notin;', '&not;', '&notit;', '&NotNestedGreaterGreater;',
            '&nsubE;', '&bne;', '&fjlig;', '&ThickSpace;', '&MediumSpace;', '&NewLine;', '&Tab;', '&ZeroWidthSpace;',
            '&zwj;', '&zwnj;', '&lrm;', '&rlm;', '&shy;', '&AElig;', '&aelig;', '&AELIG;', '&Alpha;',
            '&ALPHA;', '&alpha;', '&Sigma;', '&sigma;', '&sigmaf;', '&euro;', '&pound;', '&yen;', '&cent;',
            '&frac12;', '&sup2;', '&deg;', '&times;', '&divide;', '&larr;', '&rArr;', '&hearts;', '&spades;',
            '&bogus;', '&abcdefghijklmnopqrstuvwxy;', '&abcdefghijklmnopqrstuvwx;', '&ABCDEF;', '&AMP;',
            '&LT;', '&GT;', '&QUOT;', '&COPY;', '&Ouml;', '&OUML;', '&oUML;', '&IJlig;', '&ijlig;', '&fflig;']
CONTROLS = ['\x00', '\x01', '\x07', '\x08', '\t', '\n', '\x0b', '\x0c', '\r', '\r\n', '\n\r', '\x0e',
            '\x1a', '\x1b', '\x1c', '\x1d', '\x1e', '\x1f', '\x7f', '\x85', '\xa0', '\u1680', '\u2000',
            '\u2007', '\u200a', '\u200b', '\u200c', '\u200d', '\u200e', '\u2028', '\u2029', '\u202f',
            '\u205f', '\u2060', '\u206a', '\u206f', '\u3000', '\ufeff', '\ufff9', '\ufffb', '\ufffc',
            '\ufffd', '\U000e0001', '\U000e0041', '\U0001d173', '\x1b[31m', '\x1b[0m', '\x1b[1;32;40m',
            '\x1b[K', '\x1b[', '\x1b[12', '\x1b[٣m', '\x1b[;;H', '\x1b]0;title\x07', '\u00ad', '\u034f',
            '\u180e', '\u061c', '\u0600', '\U000110bd', '\U0001bca0', '\u2066', '\u2069']


def pick(r, seq):
    return seq[int(r.integers(len(seq)))]


def captions(r, n):
    out = []
    for _ in range(n):
        kind = int(r.integers(6))
        s, v, p = pick(r, SUBJECTS), pick(r, VERBS), pick(r, PLACES)
        if kind == 0:
            t = f'{s} {v} {p}'
        elif kind == 1:
            t = f'{s.capitalize()} {v} {p}.'
        elif kind == 2:
            t = f'{s} {v} {p}, {pick(r, STYLES)}, {pick(r, STYLES)}'
        elif kind == 3:
            t = f'Video of {s} that {v.replace("is ", "")} {p} while {pick(r, SUBJECTS)} {pick(r, VERBS)}'
        elif kind == 4:
            t = f'{pick(r, ADJS)} {pick(r, NOUNS)} {p} | {pick(r, STYLES)}'
        else:
            t = f'{s.upper()} {v} {p}!!! #{pick(r, NOUNS)} @{pick(r, NOUNS)}{int(r.integers(100))}'
        out.append(t)
    return out


def prompts(r, n):
    out = []
    for _ in range(n):
        parts = []
        for _ in range(int(r.integers(1, 8))):
            k = int(r.integers(7))
            w = pick(r, STYLES) if k < 3 else f'{pick(r, ADJS)} {pick(r, NOUNS)}'
            if k == 3:
                w = f'({w}:{r.uniform(0.5, 1.8):.1f})'
            elif k == 4:
                w = '((' + w + '))'
            elif k == 5:
                w = '[' + w + ']'
            parts.append(w)
        sep = pick(r, [', ', ',', ' , ', ' ', '; ', ' | ', '. ', ',\n'])
        t = sep.join(parts)
        if r.integers(4) == 0:
            t = t.title()
        if r.integers(5) == 0:
            t = '  ' + t + ' \t'
        out.append(t)
    return out


def punct_digits(r, n):
    out = []
    for _ in range(n):
        k = int(r.integers(8))
        if k == 0:
            t = ''.join(pick(r, PUNCT) for _ in range(int(r.integers(1, 6))))
        elif k == 1:
            t = str(int(r.integers(0, 10 ** int(r.integers(1, 15)))))
        elif k == 2:
            t = f'{r.uniform(-1000, 1000):.{int(r.integers(0, 5))}f}'
        elif k == 3:
            t = f'{int(r.integers(24)):02d}:{int(r.integers(60)):02d} on {int(r.integers(1, 29))}/{int(r.integers(1, 13))}/{int(r.integers(1900, 2100))}'
        elif k == 4:
            t = ' '.join(pick(r, CONTRACTIONS) for _ in range(int(r.integers(1, 5))))
        elif k == 5:
            t = f'{pick(r, SUBJECTS)}{pick(r, PUNCT)}{pick(r, CONTRACTIONS)} {int(r.integers(1000))}{pick(r, PUNCT)}'
        elif k == 6:
            t = f'${int(r.integers(100))}.{int(r.integers(100)):02d} (50% off!) x{int(r.integers(10))} #{int(r.integers(99))} 1st 2nd 3rd v1.2.3'
        else:
            t = ''.join(pick(r, list("abc'sStTdDmMlLrReEvV ")) for _ in range(int(r.integers(1, 12))))
        out.append(t)
    return out


def mix(r, n, pools, joiners=(' ', '', ', ', ' - ', '\n')):
    out = []
    for _ in range(n):
        items = [pick(r, pick(r, pools)) for _ in range(int(r.integers(1, 6)))]
        t = pick(r, list(joiners)).join(items)
        if r.integers(3) == 0:
            t = f'{pick(r, SUBJECTS)} {t} {pick(r, PLACES)}'
        out.append(t)
    return out


def html_cases(r, n):
    out = []
    for _ in range(n):
        k = int(r.integers(5))
        e = [pick(r, ENTITIES) for _ in range(int(r.integers(1, 4)))]
        if k == 0:
            t = ''.join(e)
        elif k == 1:
            t = f'{pick(r, SUBJECTS)} {e[0]} {pick(r, NOUNS)}{"".join(e[1:])}'
        elif k == 2:  # a '<' switches unescaping off for its line and every later line
            t = pick(r, [f'<b>{e[0]}</b>', f'{e[0]} <3 {e[-1]}', f'a < b {e[0]}', f'{e[0]}\n<i>{e[-1]}\n{e[0]}',
                         f'{e[0]}\n{e[-1]} <\n{e[0]}', f'&lt;b&gt;{e[0]}'])
        elif k == 3:
            t = '\n'.join(e) + ' ' + pick(r, ACCENTED)
        else:
            t = pick(r, ['Tom &amp; Jerry', 'AT&amp;T', 'AT&T', 'R&D', 'fish &amp;chips', '&&', '& ;',
                         'P&EACUTE;REZ', 'BUNDESSTRA&SZLIG;E', 'caf&eacute; &amp; cr&egrave;me',
                         'it&#8217;s', '&quot;hi&quot;', '1 &lt; 2 &gt; 0', '&#x3C;tag&#x3E;',
                         '&lt;|endoftext|&gt;', '&lt;|startoftext|&gt;x', '&amp;lt;b&amp;gt;']) + ''.join(e[1:])
        out.append(t)
    return out


def control_cases(r, n):
    specials = ['<|startoftext|>', '<|endoftext|>', '<|STARTOFTEXT|>', '<|EndOfText|>', '<|endoftext|',
                '<|ſtartoftext|>', '<|endoftext|><|endoftext|>', ' <|endoftext|> ', '<|startoftext|>a',
                'a<|endoftext|>b', '<|', '|>', '<||>']
    fixed = ['', ' ', '  ', '\t', '\n', '\r\n', ' \n \t ', '\u3000', '\xa0', '\u2028\u2029', '\x00',
             '\ufeff', '\u200b', '\x1c\x1d', ' \x1c', '\x1f ', 'a\x1cb', '\x85', '\x1b[0m', '\ufeffhello']
    out = list(fixed)
    while len(out) < n:
        k = int(r.integers(4))
        c = [pick(r, CONTROLS) for _ in range(int(r.integers(1, 4)))]
        if k == 0:
            t = pick(r, SUBJECTS) + c[0] + pick(r, VERBS) + ''.join(c[1:]) + pick(r, PLACES)
        elif k == 1:
            t = ''.join(c)
        elif k == 2:
            t = pick(r, specials) if r.integers(2) else f'{pick(r, SUBJECTS)}{pick(r, specials)}{pick(r, NOUNS)}'
        else:
            t = c[0].join([pick(r, NOUNS), pick(r, ACCENTED), pick(r, NOUNS)])
        out.append(t)
    return out[:n]


def mojibake_cases(r, n):
    encs = ['latin-1', 'sloppy-windows-1252', 'windows-1252', 'sloppy-windows-1251', 'sloppy-windows-1250',
            'sloppy-windows-1253', 'sloppy-windows-1254', 'sloppy-windows-1257', 'iso-8859-2', 'macroman',
            'cp437']
    srcs = ACCENTED + GREEK + CYRILLIC + CJK[:12] + EMOJI[:40] + ['“quoted”', '‘hi’', '— dash –', '…', 'à la mode',
                                                                  'Ã', 'naïve café', '€5', '•']
    out = []
    while len(out) < n:
        s = pick(r, srcs)
        if r.integers(2):
            s = f'{pick(r, SUBJECTS)} {s} {pick(r, NOUNS)}'
        enc = pick(r, encs)
        try:
            m = s.encode('utf-8').decode(enc, errors='replace')
        except LookupError:
            continue
        k = int(r.integers(5))
        if k == 1:
            m = m.replace('\xa0', ' ')
        elif k == 2:
            m = m.encode('utf-8').decode(pick(r, encs[:3]), errors='replace')  # twice
        elif k == 3:
            m = f'{pick(r, ACCENTED)} {m}'  # mixed with correct text
        out.append(m)
    return out


def cesu8(s):
    """UTF-8 with astral characters as two encoded surrogates (CESU-8)."""
    out = b''
    for ch in s:
        if ord(ch) < 0x10000:
            out += ch.encode('utf-8')
        else:
            v = ord(ch) - 0x10000
            out += chr(0xD800 + (v >> 10)).encode('utf-8', 'surrogatepass')
            out += chr(0xDC00 + (v & 0x3FF)).encode('utf-8', 'surrogatepass')
    return out


def mojibake_mixed(r, n):
    """The harder paths of ftfy.fix_encoding: restore_byte_a0, lossy sequences (U+FFFD),
    CESU-8 and Java NUL (utf-8-variants), inconsistent mixes, C1 controls, several lines."""
    encs = ['latin-1', 'sloppy-windows-1252', 'sloppy-windows-1251', 'sloppy-windows-1250', 'macroman', 'cp437',
            'iso-8859-2', 'sloppy-windows-1253', 'sloppy-windows-1257']
    words = ACCENTED + GREEK[:10] + CYRILLIC[:10] + CJK[:10] + EMOJI[:30] + ['à la mode', 'às vezes', 'àquele',
                                                                            'à quel point', 'fàcil', 'à', 'À']
    out = []
    while len(out) < n:
        k = int(r.integers(10))
        w = pick(r, words)
        if k == 0:  # a0 -> space
            m = w.encode('utf-8').decode(pick(r, encs[:2])).replace('\xa0', ' ')
            t = f'{pick(r, SUBJECTS)} {m} {pick(r, NOUNS)}'
        elif k == 1:  # lossy: undefined windows-1252 bytes became U+FFFD
            t = f'{pick(r, ["“", "”", "‘", "’", "–", "…", "€"])}{w}{pick(r, ["”", "’", "Ý", "ŝ"])}'
            t = t.encode('utf-8').decode('windows-1252', errors='replace')
        elif k == 2:  # CESU-8 astral characters, maybe a Java NUL
            b = cesu8(f'{pick(r, EMOJI)} {w} {pick(r, ["𝔘", "😀", "🇯🇵", "𠀀"])}')
            if r.integers(2):
                b += b'\xc0\x80' + pick(r, [b'', b'x', b' end'])
            t = b.decode(pick(r, ['latin-1', 'sloppy-windows-1252']))
        elif k == 3:  # correct text next to mojibake of something else
            t = f'{pick(r, ACCENTED)} {w.encode("utf-8").decode(pick(r, encs))} {pick(r, CJK)}'
        elif k == 4:  # C1 controls
            t = f'{pick(r, SUBJECTS)} {"".join(chr(int(r.integers(0x80, 0xA0))) for _ in range(int(r.integers(1, 3))))}{w}'
            if r.integers(2):
                t = t.encode('utf-8', errors='replace').decode('latin-1')
        elif k == 5:  # several lines, some broken, one may hold '<'
            lines = [pick(r, [w, w.encode('utf-8').decode(pick(r, encs)), '<b>', pick(r, ENTITIES),
                              'À', 'Ã©', 'Ã', pick(r, SUBJECTS)]) for _ in range(int(r.integers(2, 5)))]
            t = pick(r, ['\n', '\r\n', '\n\n']).join(lines) + pick(r, ['', '\n', ' À\n', 'Ã\n'])
        elif k == 6:  # HTML-escaped mojibake
            m = w.encode('utf-8').decode('latin-1')
            t = ''.join(f'&#{ord(c)};' if ord(c) > 127 and r.integers(2) else c for c in m)
        elif k == 7:  # twice broken
            m = w.encode('utf-8').decode(pick(r, encs[:2]), errors='replace')
            t = m.encode('utf-8').decode(pick(r, encs[:2]), errors='replace')
        elif k == 8:  # random bytes of UTF-8 lead/continuation shapes read as windows-1252 / latin-1
            b = bytes(int(x) for x in r.integers(0x80, 0x100, int(r.integers(1, 8))))
            t = pick(r, SUBJECTS) + ' ' + b.decode(pick(r, ['latin-1', 'sloppy-windows-1252', 'cp437']))
        else:  # Â and Ã before punctuation and spaces
            t = pick(r, ['Â', 'Ã', 'Ã\xa0', 'Â\xa0', 'â€', 'Ã ']) + pick(r, [' ', '!', '©', '®', '»', '·', '°', 'a', ''])
            t = f'{pick(r, NOUNS)}{t}{pick(r, [" la", "s", " quelle", "quele", "", " "])}'
        out.append(t)
    return out


def long_cases(r, n):
    out = []
    for _ in range(n):
        k = int(r.integers(4))
        if k == 0:
            t = ', '.join(captions(r, int(r.integers(5, 20))))
        elif k == 1:
            t = ' '.join(prompts(r, int(r.integers(5, 15))))
        elif k == 2:
            t = ' '.join(mix(r, int(r.integers(10, 30)), [ACCENTED, CJK, EMOJI, GREEK, CYRILLIC]))
        else:
            t = ('a ' * int(r.integers(70, 80))).strip() + pick(r, ['', ' <|endoftext|> tail', ' end'])
        out.append(t)
    return out


def random_cases(r, n):
    """Random characters from a mixed pool: fuzzing the character classes and NFC."""
    pool = set()
    for lst in (ACCENTED, GREEK, CYRILLIC, CJK, RTL, OTHER_SCRIPTS, EMOJI, CONTROLS, PUNCT):
        for s in lst:
            pool.update(s)
    pool.update('abcxyzABCXYZ0189 \'')
    pool.update(chr(c) for c in range(0x300, 0x370))  # combining marks
    pool.update(chr(c) for c in range(0x1100, 0x1200, 7))  # Hangul jamo
    pool = sorted(pool)
    out = []
    for _ in range(n):
        out.append(''.join(pick(r, pool) for _ in range(int(r.integers(1, 25)))))
    return out


CATEGORIES = [
    # name, seed, generator, count
    ('captions', 9001, captions, 4000),
    ('prompts', 9002, prompts, 3000),
    ('punct_digits', 9003, punct_digits, 2500),
    ('latin', 9004, lambda r, n: mix(r, n, [ACCENTED, ACCENTED, CONTRACTIONS, NOUNS]), 2000),
    ('scripts', 9005, lambda r, n: mix(r, n, [GREEK, CYRILLIC, CJK, RTL, OTHER_SCRIPTS]), 2500),
    ('emoji', 9006, lambda r, n: mix(r, n, [EMOJI, EMOJI, NOUNS, CJK]), 1500),
    ('html', 9007, html_cases, 1500),
    ('control', 9008, control_cases, 1500),
    ('long', 9009, long_cases, 400),
    ('random', 9010, random_cases, 2000),
    ('mojibake', 9011, mojibake_cases, 1500),
    ('mojibake_mixed', 9012, mojibake_mixed, 2500),
]


def cases(prec):
    msha = hashlib.sha256(open(MERGES, 'rb').read()).hexdigest()
    for name, seed, gen, count in CATEGORIES:
        r = np.random.default_rng(seed)
        texts = gen(r, count)
        ids, flags = encode(texts)
        yield Case(name=f'tokenize_{name}', op='tokenize', seed=seed, tol=1e-10,
                   tensors=pack(texts, ids, flags),
                   meta={'merges': MERGES_REL, 'merges_sha256': msha, 'strings': str(len(texts)),
                         'mojibake_strings': str(sum(flags))},
                   level='quick' if name in ('captions', 'control') else 'full')
