"""Proof serving at scale (issue 15): inclusion and consistency proofs per
second over a 1,000,000-record log, and the peak memory of the process.

    python bench/proof_bench.py [--records N | --quick] [--proofs K]

1. Builds a valid chain of N realistic records in a fresh SQLite database
   (bench/verify_bench.py's generator) and seals it with two signed
   checkpoints, at N/2 and N.
2. In one `manage.py shell` process under /usr/bin/time -v (wall, CPU, peak
   RSS), measures side by side, on the same K random records:
   - baseline: what an inclusion answer costs without its proof (the record
     looked up by seq, the checkpoint read, the answer's JSON made);
   - the first proof of the process (it fills the tile cache: one pass over
     the record hashes);
   - warm inclusion proofs (audit.transparency.inclusion_document), and
     consistency proofs N/2 -> N (consistency_document);
   - for scale, a few proofs the way `audit prove` makes them (one streaming
     pass over the log per proof, no cache).
3. Prints proofs/s against the targets and the ratio to the baseline, and
   writes bench/results/proofs-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support import bench_env  # noqa: E402
from bench.verify_bench import build_chain  # noqa: E402
from tests.support.appserver import manage  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGET_INCLUSION_PER_S = 200  # warm, one process, one core, 1M records
TARGET_FIRST_PROOF_S = 15.0
TARGET_RSS_MB = 150

MEASURE = r"""
import json, random, time
from audit.checkpoints import public_vkey
from audit.proofs import _inclusion_proofs
from audit.transparency import checkpoint_at, checkpoint_document, consistency_document, inclusion_document, records_for

COUNT, K, STREAMED = {count}, {proofs}, {streamed}
rng = random.Random(20261204)
seqs = [rng.randrange(1, COUNT + 1) for _ in range(K)]
vkey = public_vkey()
out = {{}}

def rate(fn, items):
    started, cpu = time.perf_counter(), time.process_time()
    for item in items:
        fn(item)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {{"n": len(items), "per_s": len(items) / wall, "per_cpu_s": len(items) / cpu, "ms_each": 1000 * wall / len(items)}}

def lookup_only(seq):
    rows = records_for({{"seq": seq}}, None)
    json.dumps({{"checkpoint": checkpoint_document(checkpoint_at(None), vkey), "records": [json.loads(b) for _, _, b in rows]}})

started = time.perf_counter()
first = inclusion_document({{"seq": seqs[0]}}, None, None, vkey)
out["first_proof_s"] = time.perf_counter() - started
out["path_length"] = len(first["records"][0]["proof"])
out["baseline_lookup"] = rate(lookup_only, seqs)
out["inclusion"] = rate(lambda s: inclusion_document({{"seq": s}}, None, None, vkey), seqs)
out["baseline_lookup_again"] = rate(lookup_only, seqs)
out["consistency"] = rate(lambda _: consistency_document(COUNT // 2, COUNT, vkey), range(max(K // 4, 1)))
out["streamed"] = rate(lambda s: _inclusion_proofs([s - 1], COUNT), seqs[:STREAMED])
print("RESULT " + json.dumps(out))
"""


def measure(env: dict[str, str], count: int, proofs: int, streamed: int) -> dict[str, Any]:
    code = MEASURE.format(count=count, proofs=proofs, streamed=streamed)
    argv = ["/usr/bin/time", "-v", sys.executable, "manage.py", "shell", "-c", code]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    usage = dict(re.findall(r"^\s*(Maximum resident set size \(kbytes\)|Elapsed .*?): (\S+)$", done.stderr, re.M))
    found = re.search(r"^RESULT (.*)$", done.stdout, re.M)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"measurement failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(found.group(1))
    result["peak_rss_mb"] = int(usage["Maximum resident set size (kbytes)"]) / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 records")
    parser.add_argument("--proofs", type=int, default=2000, help="random records proven (warm)")
    parser.add_argument("--streamed", type=int, default=3, help="proofs made the uncached way, for scale")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    count = 100_000 if args.quick else args.records
    tmp = Path(tempfile.mkdtemp(prefix="veritta-proof-bench-"))
    db = tmp / "audit.sqlite3"
    env = bench_env(tmp, f"sqlite:///{db}", {"LOG_LEVEL": "WARNING"})
    result: dict[str, Any] = {"benchmark": "proofs", "records": count, "database": "sqlite", "started_utc": datetime.now(UTC).isoformat()}
    try:
        manage(env, "migrate", "--no-input", "-v0")
        _, _, build_s = build_chain(db, count, sample_size=0)
        result["build_s"] = build_s
        started = time.perf_counter()
        manage(env, "shell", "-c", f"from audit.checkpoints import checkpoint_create\nfor s in ({count // 2}, {count}): checkpoint_create(size=s)")
        result["checkpoints_s"] = time.perf_counter() - started
        result.update(measure(env, count, args.proofs, args.streamed))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # The baseline is measured before and after the proofs: their mean, so a
    # neighbour's load during the run weighs on both sides alike.
    inclusion = result["inclusion"]["per_s"]
    baseline = (result["baseline_lookup"]["per_s"] + result["baseline_lookup_again"]["per_s"]) / 2
    result["inclusion_over_lookup"] = inclusion / baseline
    result["targets"] = {
        "inclusion_per_s": TARGET_INCLUSION_PER_S,
        "first_proof_s": TARGET_FIRST_PROOF_S,
        "peak_rss_mb": TARGET_RSS_MB,
        "met": inclusion >= TARGET_INCLUSION_PER_S
        and result["first_proof_s"] <= TARGET_FIRST_PROOF_S
        and result["peak_rss_mb"] < TARGET_RSS_MB,
    }
    print(f"\n== proof serving, {count:,} records (SQLite), one process ==\n")
    print(f"{'what':34} {'per s':>9} {'ms each':>9}")
    for name in ("baseline_lookup", "inclusion", "baseline_lookup_again", "consistency", "streamed"):
        item = result[name]
        print(f"{name:34} {item['per_s']:9.1f} {item['ms_each']:9.2f}")
    print(f"\nfirst proof (fills the tile cache): {result['first_proof_s']:.2f} s (target <= {TARGET_FIRST_PROOF_S} s)")
    print(f"inclusion proofs/s: {inclusion:.0f} (target >= {TARGET_INCLUSION_PER_S}); over the lookup alone: {result['inclusion_over_lookup']:.2f}")
    print(f"peak RSS: {result['peak_rss_mb']:.0f} MB (target < {TARGET_RSS_MB} MB)")
    print("targets met" if result["targets"]["met"] else "TARGETS MISSED")
    output = args.output or RESULTS / f"proofs-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
