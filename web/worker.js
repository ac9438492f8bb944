// worker.js: runs `mavref generate` (mavref.wasm, the same C sources as bin/mavref) in a Web
// Worker, so that the page stays responsive. The model folders listed in files.json (written
// by `make web`) are fetched once into memory; each run gets a fresh in-memory file system.
//
// page -> worker  {type: 'run', prompt, seed, steps, guidance}
// worker -> page  {type: 'status', text, fraction}      loading and progress (fraction 0..1)
//                 {type: 'log', text}                   mavref's stdout and stderr
//                 {type: 'preview', step, steps, gif}   the clip predicted at a step (GIF bytes)
//                 {type: 'done', gif, frames, width, height, seconds}   frames: RGB bytes each
//                 {type: 'error', text}
'use strict';
importScripts('wasi.js');

let manifest = null, wasmModule = null;
const files = new Map(); // path in the page's folder -> bytes

async function load() {
  if (wasmModule) return;
  const r = await fetch('files.json');
  if (!r.ok) throw new Error('files.json: HTTP ' + r.status);
  manifest = await r.json();
  const total = manifest.files.reduce((n, f) => n + f.size, 0);
  let done = 0;
  for (const f of manifest.files) {
    const resp = await fetch(f.path);
    if (!resp.ok) throw new Error(f.path + ': HTTP ' + resp.status);
    const bytes = new Uint8Array(await resp.arrayBuffer());
    if (bytes.length !== f.size) throw new Error(f.path + ': ' + bytes.length + ' bytes, expected ' + f.size);
    files.set(f.path, bytes);
    done += f.size;
    postMessage({type: 'status', text: 'loading the model: ' + (done / 1048576).toFixed(1) + ' of ' +
                 (total / 1048576).toFixed(1) + ' MiB', fraction: 0.05 * done / total});
  }
  const wasm = await fetch('mavref.wasm');
  if (!wasm.ok) throw new Error('mavref.wasm: HTTP ' + wasm.status);
  wasmModule = await WebAssembly.compile(await wasm.arrayBuffer());
}

// A binary PPM (P6, maxval 255): {width, height, rgb}
function readPPM(b) {
  let pos = 0;
  const tok = () => {
    for (;;) {
      while (pos < b.length && /\s/.test(String.fromCharCode(b[pos]))) pos++;
      if (b[pos] !== 35) break; // '#' comment
      while (pos < b.length && b[pos] !== 10) pos++;
    }
    let s = '';
    while (pos < b.length && !/\s/.test(String.fromCharCode(b[pos]))) s += String.fromCharCode(b[pos++]);
    return s;
  };
  if (tok() !== 'P6') throw new Error('not a binary PPM');
  const width = +tok(), height = +tok(), maxval = +tok();
  if (maxval !== 255) throw new Error('PPM maxval ' + maxval);
  pos++;
  return {width, height, rgb: b.slice(pos, pos + 3 * width * height)};
}

function run(req) {
  const s = manifest.settings, steps = req.steps || s.steps;
  const fs = new MemFS();
  for (const [p, bytes] of files) fs.writeFile(p, bytes);
  fs.mkdir('out');
  const args = ['mavref', 'generate', '--model', s.model, '--hint-model', s.hint, '--frames', String(s.frames),
                '--width', String(s.width), '--height', String(s.height), '--steps', String(steps),
                '--seed', String(req.seed || 0), '--fps', String(s.fps), '--out', 'out/demo',
                '--preview', 'out/demo', '--ppm-frames'];
  args.push(...(s.extra_args || []));
  if (req.guidance) args.push('--guidance', String(req.guidance));
  args.push('--prompt', req.prompt);
  postMessage({type: 'log', text: args.map(a => /[\s"']/.test(a) ? JSON.stringify(a) : a).join(' ') + '\n'});
  postMessage({type: 'status', text: 'encoding the prompt and drawing the first frame (the 2-D UNet)', fraction: 0.05});
  let line = '';
  const onErr = text => {
    postMessage({type: 'log', text});
    line += text;
    let nl;
    while ((nl = line.indexOf('\n')) >= 0) {
      const l = line.slice(0, nl);
      line = line.slice(nl + 1);
      const m = /^step (\d+)\/(\d+)/.exec(l);
      if (m) {
        const k = +m[1], n = +m[2];
        postMessage({type: 'status', text: k < n ? 'denoising: step ' + k + ' of ' + n + ' done' :
                     'decoding the ' + s.frames + ' frames', fraction: 0.1 + 0.85 * k / n});
      }
    }
  };
  const wasi = new MemWasi({
    args, env: {}, fs,
    stdout: text => postMessage({type: 'log', text}),
    stderr: onErr,
    onRename: (path, bytes) => {
      const m = /^out\/demo_step(\d+)\.gif$/.exec(path);
      if (m) postMessage({type: 'preview', step: +m[1], steps, gif: bytes.slice()});
    },
  });
  const t0 = performance.now();
  const status = wasi.start(new WebAssembly.Instance(wasmModule, {wasi_snapshot_preview1: wasi.imports}));
  if (status !== 0) throw new Error('mavref exited with status ' + status + ' (see the log)');
  const frames = [];
  for (let f = 0; f < s.frames; f++) {
    const p = readPPM(fs.readFile('out/demo_' + String(f).padStart(6, '0') + '.ppm'));
    frames.push(p.rgb);
  }
  postMessage({type: 'done', gif: fs.readFile('out/demo.gif').slice(), frames, width: s.width, height: s.height,
               seconds: (performance.now() - t0) / 1000});
}

onmessage = async e => {
  if (e.data.type !== 'run') return;
  try {
    await load();
    run(e.data);
  } catch (err) {
    postMessage({type: 'error', text: String(err && err.message || err)});
  }
};
