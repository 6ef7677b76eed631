"""CPU time of the ingest's decode and validate steps alone, µs a reading, on any commit.

The batches are bench_ingest's (the demo site's 13 gateways, 5,000 readings each, zlib
level 1), made once by this tree and kept in a file, so an old commit is measured on the
very same bytes. Each pass decodes and validates every batch in turn, as bench_ingest's
breakdown does, timing each step with time.process_time_ns (CPU time of this process:
comparable on a busy machine, where wall time is not); a stage's figure is the best of
`--repeats` passes, with the part of it spent in the collector (gc.callbacks) beside it.
Three collector settings: `default` (as Python starts), `tuned` (ingest.commands.tune_gc,
as `facility ingest run` runs) and `off` (gc disabled: the step's own work, without the
collections its allocations set off). The process loads ingest.service first, so the
collector has what an ingest process holds to scan.

    .venv/bin/python -m bench.bench_ingest_stages [--batches 100] [--repeats 5]
        [--tree PATH] [--payloads FILE] [--also-import wiring.demo,...]

`--tree PATH` measures another checkout's decode_batch, Validator and demo site (e.g. a
`git worktree add /tmp/old <commit>`) with this venv, in a child process that imports
only the ingest's modules from PATH.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_RECORD = struct.Struct("<IIII")  # bench_ingest's payload file: topic, body, readings, seq
GC_MODES = ("default", "tuned", "off")
STAGES = ("decode", "validate")


def make_payloads(path: Path, batches: int) -> None:
    from bench.bench_ingest import BATCH_READINGS, write_payloads

    write_payloads(path, batches * BATCH_READINGS)


def read_bodies(path: Path, limit: int) -> list[bytes]:
    data = path.read_bytes()
    out: list[bytes] = []
    at = 0
    while at < len(data) and len(out) < limit:
        name_len, body_len, _, _ = _RECORD.unpack_from(data, at)
        at += _RECORD.size + name_len
        out.append(data[at : at + body_len])
        at += body_len
    return out


def _tune_gc() -> Callable[[], None]:
    """The tree's own tuning (an old tree called it _tune_gc)."""
    import ingest.commands as commands

    name = "tune_gc" if hasattr(commands, "tune_gc") else "_tune_gc"
    tune: Callable[[], None] = getattr(commands, name)
    return tune


def measure(
    tree: Path, payloads: Path, batches: int, repeats: int, also: Sequence[str] = ()
) -> dict[str, Any]:
    """Runs in the process whose sys.path starts with `tree`. The ingest's service module
    is loaded first, so the collector has what `facility ingest run` holds to scan, and
    the modules named in `also` (what another process holds besides)."""
    import ingest.service  # noqa: F401

    for name in also:
        importlib.import_module(name)
    from facility.config import load_site_config
    from facility.wire import decode_batch
    from ingest.validate import Validator

    bodies = read_bodies(payloads, batches)
    validator = Validator(load_site_config(tree / "deploy" / "sites" / "demo"))
    clock = time.process_time_ns
    collecting = [0, 0]  # CPU ns spent in collections so far, start of the current one

    def count_collections(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting[1] = clock()
        else:
            collecting[0] += clock() - collecting[1]

    gc.collect()
    result: dict[str, Any] = {"batches": len(bodies), "objects": len(gc.get_objects())}
    gc.callbacks.append(count_collections)
    thresholds = gc.get_threshold()
    for mode in GC_MODES:
        best = dict.fromkeys(STAGES, float("inf"))
        best_collector = dict.fromkeys(STAGES, 0.0)
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        gc.enable()
        gc.collect()
        if mode == "tuned":
            _tune_gc()()
        for body in bodies[:10]:  # warm: the validator's tables, the allocator
            validator.check(*decode_batch(body))
        if mode == "off":
            gc.disable()
        for _ in range(repeats):
            spent = dict.fromkeys(STAGES, 0)
            collector = dict.fromkeys(STAGES, 0)
            readings = accepted = refused = 0
            for body in bodies:
                c0, t0 = collecting[0], clock()
                batch, bad = decode_batch(body)
                c1, t1 = collecting[0], clock()
                verdict = validator.check(batch, bad)
                c2, t2 = collecting[0], clock()
                spent["decode"] += t1 - t0
                spent["validate"] += t2 - t1
                collector["decode"] += c1 - c0
                collector["validate"] += c2 - c1
                readings += len(batch.readings) + len(bad)
                accepted += len(verdict.accepted)
                refused += len(verdict.rejected)
            for stage in STAGES:
                if spent[stage] / readings / 1000 < best[stage]:
                    best[stage] = spent[stage] / readings / 1000
                    best_collector[stage] = collector[stage] / readings / 1000
        gc.enable()
        result[mode] = best
        result[f"{mode} collector"] = best_collector
        result["readings"], result["accepted"], result["refused"] = readings, accepted, refused
    gc.callbacks.remove(count_collections)
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    return result


def _child(
    tree: Path, payloads: Path, batches: int, repeats: int, also: Sequence[str]
) -> dict[str, Any]:
    code = (
        "import json, sys; from pathlib import Path; "
        f"sys.path.insert(0, {str(tree)!r}); sys.path.insert(1, {str(ROOT / 'bench')!r}); "
        "import bench_ingest_stages as m; "
        f"print(json.dumps(m.measure(Path({str(tree)!r}), Path({str(payloads)!r}), "
        f"{batches}, {repeats}, {list(also)!r})))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"measuring {tree} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def _commit(tree: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or "commit ?"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--batches", type=int, default=100, help="5,000-reading batches a pass")
    parser.add_argument("--repeats", type=int, default=5, help="passes; the best is kept")
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout to measure")
    parser.add_argument("--payloads", type=Path, help="batch file to use or make")
    parser.add_argument(
        "--also-import",
        default="",
        help="modules to load first, comma-separated (e.g. wiring.demo: what bench_ingest's "
        "process held): more objects for each full collection to scan",
    )
    args = parser.parse_args(argv)
    # Imported here, not at the top: the child imports this file from an old tree's path.
    from bench.common import print_header

    print_header()
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        payloads = args.payloads or Path(tmp) / "payloads.bin"
        if not payloads.exists():
            make_payloads(payloads, args.batches)
        load = os.getloadavg()
        also = [name for name in args.also_import.split(",") if name]
        r = _child(args.tree.resolve(), payloads, args.batches, args.repeats, also)
    print(
        f"{args.tree} ({_commit(args.tree)}): {r['batches']} batches, "
        f"{r['readings']:,} readings a pass "
        f"({r['accepted']:,} accepted, {r['refused']:,} refused), {r['objects']:,} objects "
        f"tracked before; best of {args.repeats}, CPU µs a reading (of it in collections); "
        f"load average {load[0]:.2f} {load[1]:.2f} at the start"
    )
    for mode in GC_MODES:
        collector = r[f"{mode} collector"]
        stages = ", ".join(f"{s} {r[mode][s]:.3f} ({collector[s]:.3f})" for s in STAGES)
        print(f"  GC {mode}: {stages}")


if __name__ == "__main__":
    main(sys.argv[1:])
