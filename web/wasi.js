// wasi.js: the WASI (preview 1) calls bin/mavref.wasm makes, for a browser, on an in-memory
// file system. Only what the binary imports (`make web` lists them and refuses a binary that
// needs another): arguments, environment, clocks, stdio, and files and directories in memory.
//
//   const fs = new MemFS();                       // paths: "model/unet/config.json", "out"
//   fs.writeFile('model/unet/config.json', bytes); fs.mkdir('out');
//   const wasi = new MemWasi({args: ['mavref', ...], env: {}, fs, stdout: s => ..., stderr: s => ...,
//                             onRename: (path, bytes) => ...});
//   const inst = await WebAssembly.instantiate(module, {wasi_snapshot_preview1: wasi.imports});
//   const status = wasi.start(inst);              // the program's exit status
//
// Both "." and "/" are preopened as the root of the in-memory tree, so relative and absolute
// paths name the same files. Plain script (no modules), for a page or a worker.
'use strict';

const WASI_ERRNO = {SUCCESS: 0, BADF: 8, EXIST: 20, INVAL: 28, IO: 29, ISDIR: 31, NOENT: 44, NOSYS: 52,
                    NOTDIR: 54, NOTEMPTY: 55, SPIPE: 70};
const FT_CHAR = 2, FT_DIR = 3, FT_FILE = 4;
const O_CREAT = 1, O_DIRECTORY = 2, O_EXCL = 4, O_TRUNC = 8;
const FD_APPEND = 1;
const RIGHTS_ALL = 0x1fffffffn;

class WasiExit extends Error {
  constructor(code) { super('exit ' + code); this.code = code; }
}

// A file: bytes [0, size) of data (which grows by doubling).
class MemFile {
  constructor(bytes) { this.data = bytes || new Uint8Array(0); this.size = this.data.length; }
  bytes() { return this.data.subarray(0, this.size); }
  reserve(n) {
    if (n <= this.data.length) return;
    const d = new Uint8Array(Math.max(n, 2 * this.data.length, 4096));
    d.set(this.data.subarray(0, this.size));
    this.data = d;
  }
}

// Files and directories by normalized path ("" is the root; no leading or trailing '/').
class MemFS {
  constructor() { this.files = new Map(); this.dirs = new Set(['']); }
  static norm(base, path) {
    const parts = path.startsWith('/') ? [] : (base ? base.split('/') : []);
    for (const p of path.split('/')) {
      if (p === '' || p === '.') continue;
      if (p === '..') { if (parts.length) parts.pop(); continue; }
      parts.push(p);
    }
    return parts.join('/');
  }
  static parent(p) { const i = p.lastIndexOf('/'); return i < 0 ? '' : p.slice(0, i); }
  mkdir(path) {
    const p = MemFS.norm('', path);
    if (p && !this.dirs.has(p)) { this.mkdir(MemFS.parent(p)); this.dirs.add(p); }
  }
  writeFile(path, bytes) {
    const p = MemFS.norm('', path);
    this.mkdir(MemFS.parent(p));
    this.files.set(p, new MemFile(bytes));
  }
  readFile(path) { const f = this.files.get(MemFS.norm('', path)); return f ? f.bytes() : null; }
  list(dir) {
    const d = MemFS.norm('', dir), pre = d ? d + '/' : '';
    return [...this.files.keys()].filter(k => k.startsWith(pre) && !k.slice(pre.length).includes('/'));
  }
}

class MemWasi {
  constructor({args, env, fs, stdout, stderr, onRename}) {
    this.args = args || [];
    this.env = Object.entries(env || {}).map(([k, v]) => k + '=' + v);
    this.fs = fs;
    this.out = [stdout || (() => {}), stderr || (() => {})];
    this.onRename = onRename || (() => {});
    this.decoders = [new TextDecoder(), new TextDecoder()];
    // fd -> {kind: 'std'|'dir'|'file', path, file, pos, append, preopen}
    this.fds = new Map([[0, {kind: 'std'}], [1, {kind: 'std'}], [2, {kind: 'std'}],
                        [3, {kind: 'dir', path: '', preopen: '.'}], [4, {kind: 'dir', path: '', preopen: '/'}]]);
    this.nextFd = 5;
    this.memory = null;
    const self = this;
    const wrap = f => function () {
      try { return f.apply(self, arguments); } catch (e) {
        if (e instanceof WasiExit) throw e;
        if (e instanceof RangeError) return WASI_ERRNO.IO; // out of memory for a file
        throw e;
      }
    };
    this.imports = {};
    for (const name of MemWasi.CALLS) this.imports[name] = wrap(this[name]);
  }

  start(instance) {
    this.memory = instance.exports.memory;
    try { instance.exports._start(); } catch (e) {
      if (e instanceof WasiExit) return e.code;
      throw e;
    }
    return 0;
  }

  // views of the memory, made again at each call (the memory may have grown)
  get u8() { return new Uint8Array(this.memory.buffer); }
  get dv() { return new DataView(this.memory.buffer); }
  str(ptr, len) { return new TextDecoder().decode(this.u8.subarray(ptr, ptr + len)); }
  putStrings(list, ptrs, buf) {
    const enc = new TextEncoder();
    for (const s of list) {
      const b = enc.encode(s + '\0');
      this.dv.setUint32(ptrs, buf, true); ptrs += 4;
      this.u8.set(b, buf); buf += b.length;
    }
    return WASI_ERRNO.SUCCESS;
  }
  sizes(list, countPtr, sizePtr) {
    const enc = new TextEncoder();
    this.dv.setUint32(countPtr, list.length, true);
    this.dv.setUint32(sizePtr, list.reduce((n, s) => n + enc.encode(s).length + 1, 0), true);
    return WASI_ERRNO.SUCCESS;
  }
  // the path under directory fd dirfd, normalized; null if dirfd is not a directory
  resolve(dirfd, ptr, len) {
    const d = this.fds.get(dirfd);
    if (!d || d.kind !== 'dir') return null;
    return MemFS.norm(d.path, this.str(ptr, len));
  }

  args_sizes_get(countPtr, sizePtr) { return this.sizes(this.args, countPtr, sizePtr); }
  args_get(ptrs, buf) { return this.putStrings(this.args, ptrs, buf); }
  environ_sizes_get(countPtr, sizePtr) { return this.sizes(this.env, countPtr, sizePtr); }
  environ_get(ptrs, buf) { return this.putStrings(this.env, ptrs, buf); }

  clock_time_get(id, precision, timePtr) {
    const ms = id === 0 ? Date.now() : performance.now(); // realtime, else monotonic
    this.dv.setBigUint64(timePtr, BigInt(Math.round(ms * 1e6)), true);
    return WASI_ERRNO.SUCCESS;
  }

  proc_exit(code) { throw new WasiExit(code); }

  fd_prestat_get(fd, ptr) {
    const d = this.fds.get(fd);
    if (!d || !d.preopen) return WASI_ERRNO.BADF;
    this.dv.setUint8(ptr, 0); // a directory
    this.dv.setUint32(ptr + 4, new TextEncoder().encode(d.preopen).length, true);
    return WASI_ERRNO.SUCCESS;
  }
  fd_prestat_dir_name(fd, ptr, len) {
    const d = this.fds.get(fd);
    if (!d || !d.preopen) return WASI_ERRNO.BADF;
    this.u8.set(new TextEncoder().encode(d.preopen).subarray(0, len), ptr);
    return WASI_ERRNO.SUCCESS;
  }

  fd_fdstat_get(fd, ptr) {
    const d = this.fds.get(fd);
    if (!d) return WASI_ERRNO.BADF;
    const dv = this.dv;
    dv.setUint8(ptr, d.kind === 'std' ? FT_CHAR : d.kind === 'dir' ? FT_DIR : FT_FILE);
    dv.setUint16(ptr + 2, d.append ? FD_APPEND : 0, true);
    dv.setBigUint64(ptr + 8, RIGHTS_ALL, true);
    dv.setBigUint64(ptr + 16, RIGHTS_ALL, true);
    return WASI_ERRNO.SUCCESS;
  }
  fd_fdstat_set_flags(fd, flags) {
    const d = this.fds.get(fd);
    if (!d) return WASI_ERRNO.BADF;
    d.append = !!(flags & FD_APPEND);
    return WASI_ERRNO.SUCCESS;
  }

  fd_close(fd) {
    const d = this.fds.get(fd);
    if (!d || d.preopen) return WASI_ERRNO.BADF;
    this.fds.delete(fd);
    return WASI_ERRNO.SUCCESS;
  }

  // iovecs: (ptr, len) pairs of u32
  fd_read(fd, iovs, n, nreadPtr) {
    const d = this.fds.get(fd);
    if (!d) return WASI_ERRNO.BADF;
    let total = 0;
    if (d.kind === 'file') {
      const src = d.file.bytes();
      for (let i = 0; i < n; i++) {
        const p = this.dv.getUint32(iovs + 8 * i, true), len = this.dv.getUint32(iovs + 8 * i + 4, true);
        const k = Math.max(0, Math.min(len, src.length - d.pos));
        this.u8.set(src.subarray(d.pos, d.pos + k), p);
        d.pos += k; total += k;
        if (k < len) break;
      }
    } else if (d.kind === 'dir') return WASI_ERRNO.ISDIR;
    this.dv.setUint32(nreadPtr, total, true); // stdin: end of file
    return WASI_ERRNO.SUCCESS;
  }
  fd_write(fd, iovs, n, nwrittenPtr) {
    const d = this.fds.get(fd);
    if (!d) return WASI_ERRNO.BADF;
    if (d.kind === 'dir') return WASI_ERRNO.ISDIR;
    let total = 0;
    for (let i = 0; i < n; i++) {
      const p = this.dv.getUint32(iovs + 8 * i, true), len = this.dv.getUint32(iovs + 8 * i + 4, true);
      const src = this.u8.subarray(p, p + len);
      if (d.kind === 'std') {
        if (fd === 1 || fd === 2) this.out[fd - 1](this.decoders[fd - 1].decode(src, {stream: true}));
      } else {
        const f = d.file;
        if (d.append) d.pos = f.size;
        f.reserve(d.pos + len);
        f.data.set(src, d.pos);
        d.pos += len;
        if (d.pos > f.size) f.size = d.pos;
      }
      total += len;
    }
    this.dv.setUint32(nwrittenPtr, total, true);
    return WASI_ERRNO.SUCCESS;
  }
  fd_seek(fd, offset, whence, newPtr) {
    const d = this.fds.get(fd);
    if (!d) return WASI_ERRNO.BADF;
    if (d.kind !== 'file') return WASI_ERRNO.SPIPE;
    const base = whence === 0 ? 0 : whence === 1 ? d.pos : whence === 2 ? d.file.size : -1;
    const pos = base + Number(offset);
    if (base < 0 || pos < 0) return WASI_ERRNO.INVAL;
    d.pos = pos;
    this.dv.setBigUint64(newPtr, BigInt(pos), true);
    return WASI_ERRNO.SUCCESS;
  }

  path_open(dirfd, dirflags, ptr, len, oflags, rightsBase, rightsInh, fdflags, fdPtr) {
    const p = this.resolve(dirfd, ptr, len), fs = this.fs;
    if (p === null) return WASI_ERRNO.BADF;
    let entry;
    if (fs.dirs.has(p)) {
      if (oflags & (O_CREAT | O_TRUNC) && oflags & O_EXCL) return WASI_ERRNO.EXIST;
      entry = {kind: 'dir', path: p};
    } else {
      if (oflags & O_DIRECTORY) return fs.files.has(p) ? WASI_ERRNO.NOTDIR : WASI_ERRNO.NOENT;
      let f = fs.files.get(p);
      if (f && (oflags & O_CREAT) && (oflags & O_EXCL)) return WASI_ERRNO.EXIST;
      if (!f) {
        if (!(oflags & O_CREAT)) return WASI_ERRNO.NOENT;
        if (!fs.dirs.has(MemFS.parent(p))) return WASI_ERRNO.NOENT;
        f = new MemFile();
        fs.files.set(p, f);
      }
      if (oflags & O_TRUNC) f.size = 0;
      entry = {kind: 'file', path: p, file: f, pos: 0, append: !!(fdflags & FD_APPEND)};
    }
    const fd = this.nextFd++;
    this.fds.set(fd, entry);
    this.dv.setUint32(fdPtr, fd, true);
    return WASI_ERRNO.SUCCESS;
  }
  path_filestat_get(dirfd, flags, ptr, len, buf) {
    const p = this.resolve(dirfd, ptr, len), fs = this.fs;
    if (p === null) return WASI_ERRNO.BADF;
    const isDir = fs.dirs.has(p), f = fs.files.get(p);
    if (!isDir && !f) return WASI_ERRNO.NOENT;
    const dv = this.dv;
    for (let i = 0; i < 64; i += 8) dv.setBigUint64(buf + i, 0n, true);
    dv.setUint8(buf + 16, isDir ? FT_DIR : FT_FILE);
    dv.setBigUint64(buf + 24, 1n, true);
    dv.setBigUint64(buf + 32, BigInt(isDir ? 0 : f.size), true);
    return WASI_ERRNO.SUCCESS;
  }
  path_rename(fd, ptr, len, newFd, newPtr, newLen) {
    const from = this.resolve(fd, ptr, len), to = this.resolve(newFd, newPtr, newLen), fs = this.fs;
    if (from === null || to === null) return WASI_ERRNO.BADF;
    const f = fs.files.get(from);
    if (!f) return fs.dirs.has(from) ? WASI_ERRNO.NOSYS : WASI_ERRNO.NOENT;
    if (fs.dirs.has(to)) return WASI_ERRNO.ISDIR;
    if (!fs.dirs.has(MemFS.parent(to))) return WASI_ERRNO.NOENT;
    fs.files.delete(from);
    fs.files.set(to, f); // replaces an existing file, as POSIX rename
    this.onRename(to, f.bytes());
    return WASI_ERRNO.SUCCESS;
  }
  path_unlink_file(fd, ptr, len) {
    const p = this.resolve(fd, ptr, len), fs = this.fs;
    if (p === null) return WASI_ERRNO.BADF;
    if (fs.dirs.has(p)) return WASI_ERRNO.ISDIR;
    return fs.files.delete(p) ? WASI_ERRNO.SUCCESS : WASI_ERRNO.NOENT;
  }
  path_remove_directory(fd, ptr, len) {
    const p = this.resolve(fd, ptr, len), fs = this.fs;
    if (p === null) return WASI_ERRNO.BADF;
    if (!fs.dirs.has(p) || p === '') return fs.files.has(p) ? WASI_ERRNO.NOTDIR : WASI_ERRNO.NOENT;
    const pre = p + '/';
    for (const k of [...fs.files.keys(), ...fs.dirs]) if (k.startsWith(pre)) return WASI_ERRNO.NOTEMPTY;
    fs.dirs.delete(p);
    return WASI_ERRNO.SUCCESS;
  }
}
MemWasi.CALLS = ['args_get', 'args_sizes_get', 'environ_get', 'environ_sizes_get', 'clock_time_get', 'proc_exit',
                 'fd_prestat_get', 'fd_prestat_dir_name', 'fd_fdstat_get', 'fd_fdstat_set_flags', 'fd_close',
                 'fd_read', 'fd_write', 'fd_seek', 'path_open', 'path_filestat_get', 'path_rename',
                 'path_unlink_file', 'path_remove_directory'];

if (typeof module !== 'undefined') module.exports = {MemFS, MemWasi, WasiExit};
