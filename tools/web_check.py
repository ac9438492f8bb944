#!/usr/bin/env python3
"""web_check.py: drive the `make web` page in headless Chromium and check its video.

    python3 tools/web_check.py --dir build/web --prompt "a red circle moving left" \
        --screenshot build/web_check.png [--seed 0] [--steps N] [--timeout 1800]
    python3 tools/web_check.py --self-test toy.safetensors    # the measurement on true toy clips

Serves DIR on 127.0.0.1 (a free port, for this run only), starts Debian's chromium headless and
talks to it over the DevTools protocol on a pipe (--remote-debugging-pipe: Python's standard
library only, no driver download). It types the prompt into the page's prompt box, clicks
Generate, waits for the video (printing the page's progress line as it changes), saves a
screenshot, then reads the generated frames from the page (window.mavref.result: RGB bytes) and
measures the asked shape's motion:

  colour   as toy_measure in ref/toyworld.c (`mavref toy-eval`): a pixel is of the asked colour
           when that is the nearest of the toy world's four colours and its background
           (toy_colors, toy_background, read from ref/toyworld.c);
  motion   the blob's centroid in the first and the last frame (each must hold TOY_MIN_BLOB = 12
           pixels of it); the displacement along the asked direction (left: -x, right: +x,
           up: -y, down: +y) must be at least --min-move of the frame's size (1/4) and the
           largest of the four directions;
  shape    reported (checked with --check-shape): per frame, toy_measure's rule (second central
           moments mu20 >= 2 mu02: bar; else the centroid 8% of the box height below the box
           centre: triangle; else circle), the clip's shape by the most frames (right for every
           true toy clip, --self-test).

Exit status: 0 when the motion check passes (or, with --motion-not-gating, once the page has made
its video), 1 when it fails (the measurement is printed
either way), 2 when the page could not be driven (no chromium, the page reports an error, a
timeout).
"""
import argparse
import base64
import functools
import http.server
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRS = {'left': (-1, 0), 'right': (1, 0), 'up': (0, -1), 'down': (0, 1)}  # toy_dir_names' order
TOY_MIN_BLOB = 12  # ref/toyworld.h: fewer pixels of a colour in a frame is no blob


# ---------------------------------------------------------------------------------------------
# The measurement

def toy_palette(path=os.path.join(ROOT, 'ref', 'toyworld.c')):
    """{name: (r, g, b)} of the toy world's colours, and its background, from ref/toyworld.c."""
    src = open(path, encoding='utf-8').read()
    names = re.search(r'toy_color_names\[TOY_NCOLORS\]\s*=\s*\{([^}]*)\}', src).group(1)
    names = re.findall(r'"(\w+)"', names)
    body = re.search(r'toy_colors\[TOY_NCOLORS\]\[3\]\s*=\s*\{(.*?)\};', src, re.S).group(1)
    rgb = [tuple(int(v) for v in t.split(',')) for t in re.findall(r'\{([\d\s,]+)\}', body)]
    bg = re.search(r'toy_background\[3\]\s*=\s*\{([\d\s,]+)\}', src).group(1)
    shapes = re.findall(r'"(\w+)"', re.search(r'toy_shape_names\[TOY_NSHAPES\]\s*=\s*\{([^}]*)\}', src).group(1))
    if len(names) != len(rgb) or not names:
        raise SystemExit('web_check: cannot read the colours from %s' % path)
    return dict(zip(names, rgb)), tuple(int(v) for v in bg.split(',')), shapes


def parse_prompt(prompt, colors, shapes):
    words = re.findall(r'[a-z]+', prompt.lower())
    pick = lambda options: next((w for w in words if w in options), None)
    return pick(colors), pick(shapes), pick(DIRS)


def blob(rgb, width, height, want, colors, bg, max_dist):
    """One frame's blob of colour `want` (RGB bytes), as toy_measure (ref/toyworld.c) finds it: the
    pixels whose nearest of the background and the toy colours is `want` (and, with max_dist > 0,
    within max_dist of it). (count, cx, cy, shape) with the centroid in pixel units (x right, y
    down) and the shape by toy_measure's rule (None under TOY_MIN_BLOB pixels)."""
    refs = [('bg', bg)] + list(colors.items())
    target = colors[want]
    n = sx = sy = sxx = syy = 0
    x0, y0, x1, y1 = width, height, -1, -1
    for i in range(width * height):
        p = rgb[3 * i:3 * i + 3]
        d = lambda c: (p[0] - c[0]) ** 2 + (p[1] - c[1]) ** 2 + (p[2] - c[2]) ** 2
        if min(refs, key=lambda r: d(r[1]))[0] != want or (max_dist > 0 and d(target) > max_dist * max_dist):
            continue
        x, y = i % width, i // width
        n += 1; sx += x; sy += y; sxx += x * x; syy += y * y
        x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
    if n == 0:
        return 0, None, None, None
    cx, cy = sx / n, sy / n
    h = y1 - y0 + 1
    skew, mxx, myy = (cy - 0.5 * (y0 + y1)) / h, sxx / n - cx * cx, syy / n - cy * cy
    shape = None if n < TOY_MIN_BLOB else 'bar' if mxx >= 2 * myy else 'triangle' if skew > 0.08 else 'circle'
    return n, cx, cy, shape


def measure(frames, width, height, prompt, args, out=sys.stdout):
    """Print the measurement of a video (a list of RGB byte strings); True when the check passes."""
    colors, bg, shapes = toy_palette()
    color, shape, direction = parse_prompt(prompt, colors, shapes)
    if not color or not direction:
        print('web_check: the prompt %r names no toy colour (%s) or no direction (%s)' %
              (prompt, ', '.join(colors), ', '.join(DIRS)), file=out)
        return False
    size = min(width, height)
    print('measure: %r -> colour %s %s, shape %s, direction %s; %d frames %dx%d; a pixel is %s when that is the '
          'nearest of the toy colours and the background %s%s (toy_measure, ref/toyworld.c)' %
          (prompt, color, colors[color], shape, direction, len(frames), width, height, color, bg,
           ' and within %g of it' % args.max_dist if args.max_dist > 0 else ''), file=out)
    per = [blob(f, width, height, color, colors, bg, args.max_dist) for f in frames]
    for k, (n, cx, cy, sh) in enumerate(per):
        print('  frame %2d: %4d %s pixels%s' % (k, n, color, '' if not n else
              ', centroid (%.1f, %.1f), shape %s' % (cx, cy, sh or '-')), file=out)
    (n0, x0, y0, _), (n1, x1, y1, _) = per[0], per[-1]
    if n0 < args.min_pixels or n1 < args.min_pixels:
        print('FAIL: too few %s pixels to find the shape: first frame %d, last frame %d (need %d, TOY_MIN_BLOB)' %
              (color, n0, n1, args.min_pixels), file=out)
        return False
    dx, dy = x1 - x0, y1 - y0
    along = {d: dx * u[0] + dy * u[1] for d, u in DIRS.items()}
    measured = max(DIRS, key=lambda d: along[d])  # the first of the largest, in toy_dir_names' order
    need = args.min_move * size
    votes = {}
    for n, _, _, sh in per:
        if sh:
            votes[sh] = votes.get(sh, 0) + 1
    seen = max(shapes, key=lambda s: (votes.get(s, 0), -shapes.index(s))) if votes else None
    shape_ok = not args.check_shape or seen == shape
    print('shape %s: %s (frames voting %s); asked %s' % (
        ('PASS' if shape_ok else 'FAIL') if args.check_shape else '(not checked; --check-shape)', seen,
        ', '.join('%s %d' % kv for kv in sorted(votes.items())) or 'none', shape), file=out)
    move_ok = along[direction] >= need and measured == direction
    print('%s: the %s blob moved %.1f px %s (%.2f of the frame; needs >= %.1f px = %g, and %s the largest of the '
          'four directions: measured %s); centroid (%.1f, %.1f) -> (%.1f, %.1f)' % (
              'PASS' if move_ok else 'FAIL', color, along[direction], direction, along[direction] / size, need,
              args.min_move, direction, measured, x0, y0, x1, y1), file=out)
    return move_ok and shape_ok


def self_test(path, args):
    """The measurement on every clip of a `mavref toyworld` file, with its caption as the prompt."""
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    meta = head.get('__metadata__', {})
    failed = total = 0
    for name, t in sorted(head.items()):
        if not name.startswith('frames.'):
            continue
        F, H, W, _ = t['shape']
        a, b = t['data_offsets']
        data = raw[8 + n + a:8 + n + b]
        frames = [data[f * H * W * 3:(f + 1) * H * W * 3] for f in range(F)]
        caption = meta['caption.' + name.split('.')[1]]
        total += 1
        if not measure(frames, W, H, caption, args):
            failed += 1
    print('self-test: %d of %d toy clips pass the measurement' % (total - failed, total))
    return 0 if failed == 0 and total else 1


# ---------------------------------------------------------------------------------------------
# Chromium over the DevTools protocol (a pipe: fd 3 in, fd 4 out; messages end with NUL)

class Browser:
    def __init__(self, exe, profile, width, height):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        high = [None, None]

        def child():  # fds 3 and 4 in the child; dup2 clears close-on-exec
            import fcntl
            high[0] = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            high[1] = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        cmd = [exe, '--headless', '--remote-debugging-pipe', '--no-sandbox', '--disable-gpu',
               '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check', '--disable-extensions',
               '--disable-background-networking', '--disable-component-update', '--disable-sync',
               '--disable-features=Translate,MediaRouter', '--hide-scrollbars', '--mute-audio',
               '--user-data-dir=' + profile, '--window-size=%d,%d' % (width, height), 'about:blank']
        self.log = open(os.path.join(profile, 'chromium.log'), 'wb')
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=child, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.next_id = 0
        self.replies = {}
        self.events = []
        self.cv = threading.Condition()
        self.closed = False
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        buf = b''
        while True:
            try:
                chunk = os.read(self.from_chrome, 1 << 20)
            except OSError:
                chunk = b''
            if not chunk:
                with self.cv:
                    self.closed = True
                    self.cv.notify_all()
                return
            buf += chunk
            while b'\0' in buf:
                msg, buf = buf.split(b'\0', 1)
                m = json.loads(msg)
                with self.cv:
                    if 'id' in m:
                        self.replies[m['id']] = m
                    else:
                        self.events.append(m)
                    self.cv.notify_all()

    def send(self, method, params=None, session=None, timeout=60):
        with self.cv:
            self.next_id += 1
            mid = self.next_id
        msg = {'id': mid, 'method': method, 'params': params or {}}
        if session:
            msg['sessionId'] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b'\0')
        end = time.time() + timeout
        with self.cv:
            while mid not in self.replies:
                if self.closed:
                    raise RuntimeError('chromium closed the DevTools pipe (see its log)')
                left = end - time.time()
                if left <= 0:
                    raise RuntimeError('no reply to %s in %d s' % (method, timeout))
                self.cv.wait(left)
            m = self.replies.pop(mid)
        if 'error' in m:
            raise RuntimeError('%s: %s' % (method, m['error'].get('message')))
        return m.get('result', {})

    def close(self):
        try:
            self.send('Browser.close', timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.to_chrome, self.from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()


class Page:
    def __init__(self, browser, session):
        self.b, self.s = browser, session

    def __call__(self, method, params=None, timeout=60):
        return self.b.send(method, params, self.s, timeout)

    def js(self, expr, timeout=60):
        r = self('Runtime.evaluate', {'expression': expr, 'returnByValue': True, 'awaitPromise': True}, timeout)
        if 'exceptionDetails' in r:
            raise RuntimeError('page script: %s' % r['exceptionDetails'].get('text'))
        return r['result'].get('value')

    def click(self, selector):
        rect = self.js('(() => { const r = document.querySelector(%s).getBoundingClientRect(); '
                       'return [r.x + r.width / 2, r.y + r.height / 2]; })()' % json.dumps(selector))
        for kind in ('mousePressed', 'mouseReleased'):
            self('Input.dispatchMouseEvent', {'type': kind, 'x': rect[0], 'y': rect[1], 'button': 'left',
                                              'clickCount': 1})

    def screenshot(self, path):
        png = base64.b64decode(self('Page.captureScreenshot', {'format': 'png'})['data'])
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(png)
        print('web_check: screenshot %s (%d bytes)' % (path, len(png)))


def find_chromium(name):
    for exe in ([name] if name else ['chromium', 'chromium-browser', 'google-chrome']):
        path = shutil.which(exe)
        if path:
            return path
    return None


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = dict(http.server.SimpleHTTPRequestHandler.extensions_map, **{'.wasm': 'application/wasm',
                                                                                    '.js': 'text/javascript'})

    def log_message(self, *a):
        pass


def drive(args):
    exe = find_chromium(args.chromium)
    if not exe:
        print('web_check: no chromium found (Debian: apt-get install chromium)', file=sys.stderr)
        return 2
    version = subprocess.run([exe, '--version'], capture_output=True, text=True).stdout.strip()
    print('web_check: %s' % version)
    if not os.path.exists(os.path.join(args.dir, 'files.json')):
        print('web_check: %s/files.json missing: run make web first' % args.dir, file=sys.stderr)
        return 2
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(QuietHandler, directory=args.dir))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = 'http://127.0.0.1:%d/index.html' % server.server_address[1]
    print('web_check: serving %s at %s (this run only)' % (args.dir, url))
    profile = tempfile.mkdtemp(prefix='mavref-web-check-')
    browser = None
    t0 = time.time()
    try:
        browser = Browser(exe, profile, args.width, args.height)
        target = browser.send('Target.createTarget', {'url': 'about:blank'})['targetId']
        session = browser.send('Target.attachToTarget', {'targetId': target, 'flatten': True})['sessionId']
        page = Page(browser, session)
        page('Page.enable')
        page('Runtime.enable')
        page('Emulation.setDeviceMetricsOverride', {'width': args.width, 'height': args.height,
                                                    'deviceScaleFactor': 1, 'mobile': False})
        page('Page.navigate', {'url': url})
        end = time.time() + 60
        while not page.js("document.readyState === 'complete' && !!window.mavref && /^ready/.test("
                          "(document.getElementById('status') || {}).textContent)"):
            if time.time() > end:
                print('web_check: the page did not get ready in 60 s: %r' %
                      page.js("(document.getElementById('status') || {}).textContent"), file=sys.stderr)
                return 2
            time.sleep(0.2)
        # type the prompt (and the seed, steps) as a person would: focus, select, insert text
        fields = [('#prompt', args.prompt), ('#seed', str(args.seed))]
        if args.steps:
            fields.append(('#steps-n', str(args.steps)))
        for sel, text in fields:
            page.click(sel)
            page.js('document.querySelector(%s).select()' % json.dumps(sel))
            page('Input.insertText', {'text': text})
        typed = page.js("document.getElementById('prompt').value")
        if typed != args.prompt:
            print('web_check: the prompt box holds %r after typing %r' % (typed, args.prompt), file=sys.stderr)
            return 2
        print('web_check: typed %r (seed %d), clicking Generate' % (typed, args.seed))
        page.click('#go')
        last, state = None, None
        end = time.time() + args.timeout
        while True:
            state, text = page.js("[window.mavref.state, document.getElementById('status').textContent]")
            if text != last:
                print('  [%5.0f s] %s' % (time.time() - t0, text))
                last = text
            if state in ('done', 'error'):
                break
            if time.time() > end:
                print('web_check: no video after %d s (--timeout)' % args.timeout, file=sys.stderr)
                page.screenshot(args.screenshot)
                return 2
            time.sleep(1)
        time.sleep(0.5)  # let the GIFs and the frames paint
        page.screenshot(args.screenshot)
        if state == 'error':
            print('web_check: the page reports an error: %s' % page.js('window.mavref.error'), file=sys.stderr)
            print(page.js("document.getElementById('log').textContent")[-2000:], file=sys.stderr)
            return 2
        res = json.loads(page.js('JSON.stringify(window.mavref.result)'))
        nprev = page.js("document.querySelectorAll('#steps img').length")
        print('web_check: video of %d frames %dx%d in %.1f s in the page; %d step previews shown' %
              (len(res['frames']), res['width'], res['height'], res['seconds'], nprev))
        frames = [base64.b64decode(f) for f in res['frames']]
        if measure(frames, res['width'], res['height'], res['prompt'], args):
            return 0
        if args.motion_not_gating:
            print('web_check: the page made its video; the motion check failed, which measures the model, not the '
                  'page (--motion-not-gating: exit 0)')
            return 0
        return 1
    except RuntimeError as e:
        print('web_check: %s' % e, file=sys.stderr)
        return 2
    finally:
        if browser:
            browser.close()
        server.shutdown()
        server.server_close()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dir', default='build/web', help='the folder `make web` wrote')
    ap.add_argument('--prompt', default='a red circle moving left')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--steps', type=int, default=0, help='sampling steps (default: the page\'s, WEB_STEPS)')
    ap.add_argument('--screenshot', default='build/web_check.png')
    ap.add_argument('--timeout', type=float, default=1800, help='seconds to wait for the video')
    ap.add_argument('--chromium', default=None, help='the browser (default: chromium on PATH)')
    ap.add_argument('--width', type=int, default=1280)
    ap.add_argument('--height', type=int, default=940)
    ap.add_argument('--max-dist', type=float, default=0, help='also require an RGB distance to the asked colour '
                    'of at most this (0: nearest only, as toy_measure)')
    ap.add_argument('--min-move', type=float, default=0.25, help='displacement, a fraction of the frame')
    ap.add_argument('--min-pixels', type=int, default=TOY_MIN_BLOB, help='blob size in the first and last frame')
    ap.add_argument('--check-shape', action='store_true', help='also require the asked shape (toy_measure\'s rule, '
                    'the most frames\' vote)')
    ap.add_argument('--motion-not-gating', action='store_true', help='exit 0 once the page has made its video, the '
                    'motion check printed but not required (for a model below its bar: .ci/run while the toy model is)')
    ap.add_argument('--self-test', metavar='TOY.safetensors', help='measure the clips of `mavref toyworld` instead')
    args = ap.parse_args()
    if args.self_test:
        return self_test(args.self_test, args)
    return drive(args)


if __name__ == '__main__':
    sys.exit(main())
