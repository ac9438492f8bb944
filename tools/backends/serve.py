"""Run an adapter as a server, so that `mavref check` does not pay the import of torch and
diffusers (several seconds) on every case. Same results as running the adapter directly:
each request is served by a forked child of the process that imported the adapter.

    tools/.torch-venv/bin/python tools/backends/serve.py torch_diffusers /tmp/td.sock &
    bin/mavref check --backend 'python3 tools/backends/serve.py --client /tmp/td.sock {case} {out}'

The client uses the standard library only; it prints the adapter's stderr and exits with the
adapter's status (3: unsupported op). The server exits when its socket file is removed or
on SIGTERM.
"""
import importlib
import json
import os
import socket
import sys
import tempfile
import traceback


def client(sock, case, out):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    s.sendall(json.dumps({'case': os.path.abspath(case), 'out': os.path.abspath(out)}).encode() + b'\n')
    data = b''
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    reply = json.loads(data.decode())
    sys.stderr.write(reply['log'])
    return reply['code']


def serve(module, sock):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    mod = importlib.import_module(module)
    import torchcase
    if os.path.exists(sock):
        os.remove(sock)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock)
    srv.listen(4)
    srv.settimeout(5.0)
    print(f'serve: {module} on {sock}', file=sys.stderr, flush=True)
    while os.path.exists(sock):
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        with conn:
            req = json.loads(conn.makefile().readline())
            with tempfile.TemporaryFile() as log:
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        os.dup2(log.fileno(), 1)
                        os.dup2(log.fileno(), 2)
                        torchcase.main(mod.OPS, [module + '.py', req['case'], req['out']], getattr(mod, 'PRECHECK', None))
                        code = 0
                    except SystemExit as e:
                        code = e.code if isinstance(e.code, int) else (print(e.code, file=sys.stderr) or 1)
                    except BaseException:
                        traceback.print_exc()
                        code = 1
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
                _, st = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(st)
                code = code if code >= 0 else 128 - code
                log.seek(0)
                text = log.read().decode(errors='replace')
            conn.sendall(json.dumps({'code': code, 'log': text}).encode())
    srv.close()


if __name__ == '__main__':
    if len(sys.argv) == 5 and sys.argv[1] == '--client':
        sys.exit(client(*sys.argv[2:]))
    if len(sys.argv) == 3:
        serve(sys.argv[1], sys.argv[2])
    else:
        sys.exit(__doc__)
