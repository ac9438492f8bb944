// wasi_run.mjs: run a wasm32-wasi program under node's WASI, as if it were native.
//
//   node --no-warnings --no-turbo-fast-api-calls tools/wasi_run.mjs PROGRAM [ARGS...]
//
// The program sees ARGS, the environment, and the current directory (preopened as "."), so
// relative paths such as vectors/ and build/ work as in a native run; its exit status is ours.
// (--no-turbo-fast-api-calls: node 20's WASI fast calls corrupt node's heap once the module's
// memory has grown, nodejs/node#46777; the Makefile's wasm-test passes it.)
import { readFileSync } from 'node:fs';
import process from 'node:process';
import { WASI } from 'node:wasi';

if (process.argv.length < 3) {
    process.stderr.write('usage: node tools/wasi_run.mjs PROGRAM.wasm [ARGS...]\n');
    process.exit(2);
}
const wasi = new WASI({
    version: 'preview1',
    args: process.argv.slice(2),
    env: process.env,
    preopens: { '.': '.' },
    returnOnExit: true,
});
const module = await WebAssembly.compile(readFileSync(process.argv[2]));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
