"""Deterministic safetensors writing for the golden corpus.

The bytes depend only on the tensors and metadata: keys in insertion order, compact JSON,
header padded with spaces to a multiple of 8, little-endian data. Running the exporter twice
therefore gives byte-identical files.
"""
import hashlib
import json
import os
import struct

import numpy as np

_DTYPES = {
    np.dtype('float32'): 'F32',
    np.dtype('float64'): 'F64',
    np.dtype('int32'): 'I32',
    np.dtype('int64'): 'I64',
    np.dtype('uint8'): 'U8',
}


def write_safetensors(path, tensors, meta=None):
    """tensors: list of (name, ndarray) in file order; meta: dict of str -> str."""
    header = {}
    if meta:
        header['__metadata__'] = {str(k): str(v) for k, v in meta.items()}
    blobs = []
    off = 0
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr)
        dt = _DTYPES[arr.dtype]
        data = arr.astype(arr.dtype.newbyteorder('<'), copy=False).tobytes()
        header[name] = {'dtype': dt, 'shape': list(arr.shape), 'data_offsets': [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(',', ':'), ensure_ascii=True).encode()
    h += b' ' * (-len(h) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()
