"""Verittà's own cost per governed request, in one process, without HTTP.

The WSGI application is called directly (no gunicorn, no socket, no client),
on a SQLite database prepared as `http_bench.py` prepares it (bench/settings.py,
a stored `vk_` key, rate limits out of reach), so what is measured is the
request's own work: wall time and CPU time (this process, all threads: the
executor's too) per request of

  governed  POST /process with the key: every gate, the executor, three
            chained audit records in two commits (each an fsync);
  stack     POST to a path no route matches, answered 404 with the error
            envelope by the same middleware stack: the floor under every
            request of the app.

Rounds alternate governed and stack, and the best round of each is
reported (the machine is shared: the best is the least disturbed).
`--profile` adds a cProfile of the governed requests (profiled times are
inflated; read them as shares).

    .venv/bin/python bench/hotpath_bench.py                # 5 rounds of 1000
    .venv/bin/python bench/hotpath_bench.py --profile 40   # + the top 40 functions
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def wsgi_caller(app: Callable[..., Any], path: str, api_key: str | None, body: bytes) -> Callable[[], str]:
    """A function making one POST through `app`; it returns the status line."""

    def call() -> str:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.errors": sys.stderr,
        }
        if api_key:
            environ["HTTP_X_API_KEY"] = api_key
        status: list[str] = []
        b"".join(app(environ, lambda s, h, e=None: status.append(s)))
        return status[0]

    return call


def timed(call: Callable[[], str], n: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per request over n requests."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        call()
    return (time.perf_counter() - wall) / n * 1e3, (time.process_time() - cpu) / n * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="requests per scenario per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="then cProfile governed: top N functions")
    parser.add_argument("--output", type=Path, help="JSON result file (default: none)")
    args = parser.parse_args()

    api_key = os.environ.get("HOTPATH_API_KEY")
    if not api_key:
        # Imported here only: it imports the test settings, which must not be
        # the settings of the measuring process.
        from bench.http_bench import BODY, governed_env, prepare_database

        # Prepared as http_bench prepares it, then measured in a fresh process
        # with exactly the bench's environment (settings are read at import).
        tmp = Path(tempfile.mkdtemp(prefix="veritta-hotpath-"))
        env = governed_env(tmp, f"sqlite:///{tmp / 'veritta.sqlite3'}")
        env["HOTPATH_API_KEY"] = prepare_database(env)
        env["HOTPATH_BODY"] = BODY.decode()
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, __file__, *sys.argv[1:]], env)
    import django

    django.setup()
    from django.core.wsgi import get_wsgi_application

    body = os.environ["HOTPATH_BODY"].encode()  # the body http_bench sends
    app = get_wsgi_application()
    governed = wsgi_caller(app, "/process", api_key, body)
    stack = wsgi_caller(app, "/bench/no-such-route", None, body)
    first = governed()
    if not first.startswith("200"):
        raise SystemExit(f"governed answered {first}")
    for _ in range(100):  # warm: imports, profile cache, prepared statements
        governed()
        stack()
    rounds: dict[str, list[tuple[float, float]]] = {"governed": [], "stack": []}
    for _ in range(args.rounds):
        rounds["governed"].append(timed(governed, args.requests))
        rounds["stack"].append(timed(stack, args.requests))
    best = {name: (min(w for w, _ in got), min(c for _, c in got)) for name, got in rounds.items()}
    load = os.getloadavg()
    print(f"in-process, SQLite, {args.rounds} rounds of {args.requests}; load average {load[0]:.2f} {load[1]:.2f}")
    for name, (wall, cpu) in best.items():
        print(f"  {name:9} wall {wall:6.3f} ms/request   CPU {cpu:6.3f} ms/request   (best round)")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.requests):
            governed()
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(args.profile)
        stats.sort_stats("cumulative").print_stats(args.profile)
    if args.output:
        result = {
            "bench": "hotpath",
            "requests": args.requests,
            "rounds": args.rounds,
            "load_average": list(load),
            "best_ms": {name: {"wall": round(w, 4), "cpu": round(c, 4)} for name, (w, c) in best.items()},
            "rounds_ms": {name: [[round(w, 4), round(c, 4)] for w, c in got] for name, got in rounds.items()},
        }
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
