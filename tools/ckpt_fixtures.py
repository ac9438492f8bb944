"""Checkpoint-reader fixtures: small files written by the real writers, and their values.

    make ckpt-fixtures        (= tools/.venv/bin/python tools/ckpt_fixtures.py vectors/checkpoint)

writes into vectors/checkpoint/:
  flax_*.msgpack     flax.serialization.to_bytes of nested parameter trees (float32, float16,
                     bfloat16, float64, every int dtype, bool, numpy and native scalars, and
                     chunked arrays: flax's MAX_CHUNK_SIZE lowered to 64 bytes while writing);
  torch_*.pt         torch.save (the zip format of PyTorch >= 1.6) of state dicts: float32,
                     float16 with an int64 position_ids buffer, bfloat16, views (a transposed
                     tensor, a storage offset, tensors sharing one storage), a nested LDM-style
                     checkpoint; torch_legacy.pt in the pre-1.6 format (which mavref refuses);
  evil_*.pt          torch-style archives whose data.pkl (written by Python's pickle) names a
                     global a state dict never needs (os.system, builtins.eval, ...): mavref
                     must refuse them by name without running anything;
  NAME.expected.safetensors   for each readable fixture, every tensor as the writing library
                     holds it, widened to float64 by numpy (exact), under the same name, with
                     metadata dtypes = "DTYPE NAME" lines (the stored dtypes); written by the
                     safetensors library.
The torch part runs in /usr/bin/python3 (Debian's python3-torch), which hands its values over
as .npz; everything else runs in the exporter's environment. Nothing here is computed by mavref.
"""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np

SEED = 14


def special_values(dtype):
    """Values that catch decoding mistakes: signed zero, infinities, NaN, extremes, subnormals."""
    fi = np.finfo(dtype)
    return np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, fi.max, -fi.max, fi.tiny,
                     fi.smallest_subnormal, -fi.smallest_subnormal, fi.eps, 1 / 3], dtype=dtype)


# ---------------------------------------------------------------------------------------
# Flax msgpack (exporter environment)

def flax_fixtures(out):
    import ml_dtypes
    import flax.serialization as ser

    rng = np.random.default_rng(SEED)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    files = {}
    files['flax_f32'] = {
        'conv_in': {'spatial_conv': {'kernel': f32(3, 3, 4, 5), 'bias': f32(5)},
                    'temporal_conv': {'kernel': f32(3, 5, 5), 'bias': f32(5)}},
        'down_blocks_0': {'resnets_0': {'norm1': {'scale': f32(5), 'bias': special_values(np.float32)}}},
        'time_embedding': {'linear_1': {'kernel': f32(2, 3, 2, 2, 1, 2)}},
    }
    files['flax_f16'] = {'a': {'kernel': f32(4, 3).astype(np.float16), 'special': special_values(np.float16)}}
    files['flax_bf16'] = {'a': {'kernel': f32(4, 3).astype(ml_dtypes.bfloat16),
                                'special': special_values(np.float32).astype(ml_dtypes.bfloat16)}}
    ints = {}
    for dt in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
        ii = np.iinfo(dt)
        lo, hi = max(int(ii.min), -(1 << 24)), min(int(ii.max), 1 << 24)
        ints[np.dtype(dt).name] = np.array([lo, hi, 0, 1, 7], dtype=dt)
    files['flax_mixed'] = {
        'f64': {'kernel': rng.standard_normal((2, 3)), 'special': special_values(np.float64)},
        'ints': ints,
        'mask': np.array([[True, False, True]]),
        'scalars': {'np_f32': np.float32(1.5), 'np_i32': np.int32(-7), 'py_int': 3, 'py_neg': -300000,
                    'py_float': 2.5, 'py_bool': True, 'zero_d': np.array(0.25, dtype=np.float32)},
        'empty': np.zeros((0, 3), np.float32),
        'layers': [f32(2), f32(1, 2)],  # a list: to_state_dict names its items '0', '1'
        'nothing': None,                # an empty leaf: no tensor
    }
    old = ser.MAX_CHUNK_SIZE
    ser.MAX_CHUNK_SIZE = 64  # bytes: everything above 64 bytes is chunked
    try:
        files['flax_chunked'] = {'big': {'kernel': f32(5, 7), 'bf16': f32(3, 30).astype(ml_dtypes.bfloat16)},
                                 'small': f32(3)}
        chunked = ser.to_bytes(files['flax_chunked'])
    finally:
        ser.MAX_CHUNK_SIZE = old
    for name, tree in files.items():
        data = chunked if name == 'flax_chunked' else ser.to_bytes(tree)
        with open(os.path.join(out, name + '.msgpack'), 'wb') as fp:
            fp.write(data)
        # the values as flax itself reads them back
        restored = ser.msgpack_restore(data)
        flat = {}
        flatten(restored, '', flat)
        write_expected(os.path.join(out, name + '.msgpack.expected.safetensors'), flat)


def flatten(tree, prefix, flat):
    if isinstance(tree, dict):
        for k, v in tree.items():
            flatten(v, prefix + '/' + k if prefix else k, flat)
    elif tree is None:
        pass
    else:
        flat[prefix] = tree


ST_NAMES = {'float32': 'F32', 'float64': 'F64', 'float16': 'F16', 'bfloat16': 'BF16', 'int8': 'I8',
            'int16': 'I16', 'int32': 'I32', 'int64': 'I64', 'uint8': 'U8', 'uint16': 'U16',
            'uint32': 'U32', 'uint64': 'U64', 'bool': 'BOOL'}


def write_expected(path, flat, dtypes=None):
    """flat: name -> array or Python scalar; dtypes: name -> numpy dtype name when the array was widened."""
    from safetensors.numpy import save_file
    tensors, meta = {}, {}
    for name, v in flat.items():
        if isinstance(v, bool):
            dt, a = 'bool', np.array(v)
        elif isinstance(v, int):
            dt, a = 'int64', np.array(v, dtype=np.int64)
        elif isinstance(v, float):
            dt, a = 'float64', np.array(v, dtype=np.float64)
        else:
            a = np.asarray(v)
            dt = dtypes[name] if dtypes else a.dtype.name
        tensors[name] = a.astype(np.float64)  # exact: every value here fits a double
        meta[name] = ST_NAMES[dt]
    # one metadata key (the library orders several keys differently run to run): "DTYPE NAME" lines
    save_file(tensors, path, metadata={'dtypes': ''.join('%s %s\n' % (meta[k], k) for k in sorted(meta))})


# ---------------------------------------------------------------------------------------
# torch.save (Debian's /usr/bin/python3 with python3-torch)

TORCH_PART = r'''
import json, os, sys
import numpy as np
import torch
out = sys.argv[1]
torch.manual_seed(14)

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_in = torch.nn.Conv2d(4, 5, 3)
        self.norm = torch.nn.GroupNorm(1, 5)
        self.proj = torch.nn.Linear(5, 3)
        self.register_buffer("position_ids", torch.arange(7).expand((1, -1)))

files = {}
m = Tiny()
sd = m.state_dict()
files["torch_f32"] = sd
files["torch_f16"] = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
files["torch_f16"]["special"] = torch.tensor([0.0, -0.0, 1.0, float("inf"), float("-inf"), float("nan"), 65504.0, 6e-8])
files["torch_f16"]["special"] = files["torch_f16"]["special"].half()
files["torch_bf16"] = {k: v.bfloat16() for k, v in sd.items() if v.is_floating_point()}
base = torch.randn(4, 6)
shared = torch.randn(3, 5, dtype=torch.float64)
views = {
    "transposed": base.t(),                  # (6, 4), strides (1, 6)
    "rows": base[1:3],                       # storage offset 6
    "every_other": base[:, ::2],             # strides (6, 2)
    "shared_a": shared[0], "shared_b": shared[2], "shared_all": shared,
    "ints_i32": torch.tensor([[-5, 7], [1 << 24, -(1 << 24)]], dtype=torch.int32),
    "ints_i16": torch.tensor([-300, 300], dtype=torch.int16),
    "ints_i8": torch.tensor([-128, 127], dtype=torch.int8),
    "ints_u8": torch.tensor([0, 255], dtype=torch.uint8),
    "mask": torch.tensor([True, False, True]),
    "scalar": torch.tensor(3.25),
    "empty": torch.zeros(0, 3),
    "param": torch.nn.Parameter(torch.randn(2, 2)),
}
files["torch_views"] = views
files["torch_nested"] = {"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.randn(2, 3, 1, 1),
                                        "model.diffusion_model.out.2.bias": torch.randn(2)},
                         "epoch": 3, "global_step": 100, "name": "ldm"}
names = {}
arrays = {}
for fname, d in files.items():
    torch.save(d, os.path.join(out, fname + ".pt"))
    flat = {}
    def walk(prefix, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(prefix + "/" + k if prefix else k, x)
        elif isinstance(v, torch.Tensor):
            flat[prefix] = v
    walk("", d)
    names[fname] = {k: str(v.dtype).replace("torch.", "") for k, v in flat.items()}
    for k, v in flat.items():
        arrays[fname + "|" + k] = v.detach().to(torch.float64).numpy()  # exact widening, by torch
torch.save({"w": torch.randn(2)}, os.path.join(out, "torch_legacy.pt"), _use_new_zipfile_serialization=False)
np.savez(os.path.join(out, "torch_values.npz"), **arrays)
with open(os.path.join(out, "torch_dtypes.json"), "w") as fp:
    json.dump(names, fp)
print("torch", torch.__version__)
'''

EVIL = {  # fixture name -> (module, name, args, protocol): what the pickle would call
    'evil_posix_system': ('os', 'system', ('touch build/ckpt-PWNED',), 2),   # os.system pickles as posix.system
    'evil_builtins_eval': ('builtins', 'eval', ('open("build/ckpt-PWNED", "w")',), 2),
    'evil_builtins_getattr': ('builtins', 'getattr', (0, 'real'), 2),
    'evil_subprocess_popen': ('subprocess', 'Popen', (['touch', 'build/ckpt-PWNED'],), 2),
    'evil_builtins_exec_p4': ('builtins', 'exec', ('open("build/ckpt-PWNED", "w")',), 4),  # STACK_GLOBAL
}


def evil_fixtures(out):
    """torch-style archives (zipfile, stored) whose data.pkl is a real pickle of a state dict
    holding an object whose __reduce__ names the global. Never unpickled here."""
    import importlib
    import pickle

    class Evil:
        def __init__(self, fn, args):
            self.fn, self.args = fn, args

        def __reduce__(self):
            return (self.fn, self.args)

    pickles = {}
    for name, (mod, fn, args, proto) in EVIL.items():
        target = getattr(importlib.import_module(mod), fn)
        pickles[name] = pickle.dumps({'weight': Evil(target, args)}, protocol=proto, fix_imports=False)
        assert fn.encode() in pickles[name]
    # The name os.system itself, as a hand-made pickle would spell it (pickle.dumps writes posix.system).
    pickles['evil_os_system'] = b'\x80\x02}q\x00X\x06\x00\x00\x00weightq\x01cos\nsystem\nq\x02X\x16\x00\x00\x00touch build/ckpt-PWNEDq\x03\x85q\x04Rq\x05s.'
    for name, data in pickles.items():
        with zipfile.ZipFile(os.path.join(out, name + '.pt'), 'w', zipfile.ZIP_STORED) as z:
            for member, payload in (('archive/data.pkl', data), ('archive/version', b'3\n')):
                z.writestr(zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0)), payload)  # reproducible bytes


def torch_fixtures(out):
    subprocess.run(['/usr/bin/python3', '-c', TORCH_PART, out], check=True)
    vals = np.load(os.path.join(out, 'torch_values.npz'))
    with open(os.path.join(out, 'torch_dtypes.json')) as fp:
        names = json.load(fp)
    for fname, dts in names.items():
        flat = {k: vals[fname + '|' + k] for k in dts}
        write_expected(os.path.join(out, fname + '.pt.expected.safetensors'), flat, dts)
    os.remove(os.path.join(out, 'torch_values.npz'))
    os.remove(os.path.join(out, 'torch_dtypes.json'))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else 'vectors/checkpoint'
    os.makedirs(out, exist_ok=True)
    flax_fixtures(out)
    torch_fixtures(out)
    evil_fixtures(out)
    print('wrote', len(os.listdir(out)), 'files to', out)


if __name__ == '__main__':
    main()
