// web_smoke.mjs: the page's worker (web/worker.js and web/wasi.js, as `make web` copied them)
// run under node, without a browser: a check of the WASI shim and the worker that needs no
// Chromium (make web-smoke; .ci/run).
//
//   node tools/web_smoke.mjs build/web [PROMPT] [STEPS]
//
// Checks that every WASI call mavref.wasm imports is one web/wasi.js provides, then runs the
// worker's code as the page would (importScripts, fetch of the folder's files, postMessage),
// with STEPS sampling steps (default 1), and checks what it posts: a preview per step, the
// video (a GIF) and every frame's RGB bytes. Exit status 0 when all of that holds.
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import vm from 'node:vm';

const dir = process.argv[2] || 'build/web';
const prompt = process.argv[3] || 'a red circle moving left';
const steps = +(process.argv[4] || 1);
const fail = msg => { console.error('web_smoke: FAIL: ' + msg); process.exit(1); };
if (!existsSync(join(dir, 'files.json'))) fail(dir + '/files.json missing: run make web first');

// the page's global scope of a worker, in a node context
const posted = [];
const ctx = {
  console, performance, TextDecoder, TextEncoder, WebAssembly, onmessage: null,
  postMessage: m => posted.push(m),
  importScripts: (...names) => { for (const n of names) vm.runInContext(readFileSync(join(dir, n), 'utf8'), ctx, {filename: n}); },
  fetch: async path => {
    const p = join(dir, path);
    if (!existsSync(p)) return {ok: false, status: 404};
    const bytes = readFileSync(p);
    return {ok: true, status: 200, json: async () => JSON.parse(bytes.toString('utf8')),
            arrayBuffer: async () => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)};
  },
};
ctx.self = ctx;
vm.createContext(ctx);
ctx.importScripts('worker.js');

// every import of the binary is a call the shim provides
const mod = await WebAssembly.compile(readFileSync(join(dir, 'mavref.wasm')));
const calls = vm.runInContext('MemWasi.CALLS', ctx);
const missing = WebAssembly.Module.imports(mod).filter(i => i.module !== 'wasi_snapshot_preview1' || !calls.includes(i.name));
if (missing.length) fail('mavref.wasm imports what web/wasi.js lacks: ' + missing.map(i => i.module + '.' + i.name).join(', '));
console.log('web_smoke: mavref.wasm imports ' + WebAssembly.Module.imports(mod).length + ' WASI calls, all in web/wasi.js');

const t0 = Date.now();
await vm.runInContext('onmessage', ctx)({data: {type: 'run', prompt, seed: 0, steps}});
const log = posted.filter(m => m.type === 'log').map(m => m.text).join('');
const err = posted.find(m => m.type === 'error');
if (err) { console.error(log); fail('the worker reports: ' + err.text); }
const previews = posted.filter(m => m.type === 'preview'), done = posted.find(m => m.type === 'done');
if (!done) { console.error(log); fail('no video posted'); }
const settings = JSON.parse(readFileSync(join(dir, 'files.json'), 'utf8')).settings;
const gif = done.gif;
if (String.fromCharCode(...gif.subarray(0, 6)) !== 'GIF89a') fail('the video is not a GIF89a');
if (done.frames.length !== settings.frames) fail(done.frames.length + ' frames, expected ' + settings.frames);
for (const f of done.frames) if (f.length !== 3 * settings.width * settings.height) fail('a frame of ' + f.length + ' bytes');
if (previews.length !== steps || previews.some((p, k) => p.step !== k + 1 || String.fromCharCode(...p.gif.subarray(0, 3)) !== 'GIF'))
  fail(previews.length + ' step previews for ' + steps + ' steps');
const progress = posted.filter(m => m.type === 'status').map(m => m.fraction);
if (progress.some((f, k) => k && f < progress[k - 1])) fail('the progress went backwards: ' + progress.join(' '));
console.log('web_smoke: PASS: ' + JSON.stringify(prompt) + ', ' + steps + ' step(s): ' + previews.length +
            ' preview(s), a GIF of ' + gif.length + ' bytes, ' + done.frames.length + ' frames ' + settings.width + 'x' +
            settings.height + ' (' + ((Date.now() - t0) / 1000).toFixed(1) + ' s under node)');
