"""Turn `benchmarks/run.py --json OUT` results into the markdown tables of docs/benchmarks.md.

python benchmarks/tables.py results.json > tables.md
python benchmarks/tables.py part1.json part2.json     # one grid measured in several runs: one set of tables
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.run import PAIRED_PHASES, PEER_NAMES, _fmt, merge_rounds, ratio_rows, summarize  # noqa: E402

CONTENDER_LABELS = {
    "ours-tensorflow": "ours (TensorFlow)",
    "ours-jax": "ours (JAX)",
    "ours-torch": "ours (torch)",
    "ours-torch-retain": "ours (torch, freed memory retained: the command line's setting)",
    "sm101-tensorflow": "segmentation_models 1.0.1 (TF)",
    "smp-torch": "SMP 0.6 (torch)",
    "smp-torch-retain": "SMP 0.6 (torch, freed memory retained as ours)",
}


def speed_table(payload: dict) -> str:
    peak = (payload.get("matmul") or {}).get("peak_gflops")
    results = merge_rounds(payload["results"])
    lines = [
        "| model | size | contender | train img/s | infer img/s (batch) | batch-1 latency ms | peak RSS MB "
        "(train) | peak RSS MB (infer) | GFLOP/img | % matmul peak (train / infer) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = list(CONTENDER_LABELS)
    results.sort(
        key=lambda r: (
            r["arch"],
            r["backbone"],
            r["size"],
            order.index(r["contender_id"]) if r["contender_id"] in order else 99,
        )
    )
    for r in results:
        label = CONTENDER_LABELS.get(r["contender_id"], r["contender_id"])
        model = f"{r['arch']}-{r['backbone']}"
        if r.get("status") != "ok":
            reason = r.get("reason", "").splitlines()[0][:120].replace("|", "/") if r.get("reason") else ""
            lines.append(f"| {model} | {r['size']} | {label} | {r.get('status')}: {reason} | | | | | | |")
            continue
        s = summarize(r, r.get("matmul_peak_gflops", peak))
        frac = (
            f"{_fmt(s['train_peak_frac'] and 100 * s['train_peak_frac'], '.0f')} / "
            f"{_fmt(s['infer_peak_frac'] and 100 * s['infer_peak_frac'], '.0f')}"
        )
        lines.append(
            f"| {model} | {r['size']} | {label} | {_fmt(s['train_ips'])} | {_fmt(s['infer_ips'])} | "
            f"{_fmt(s['latency_ms'], '.1f')} | {_fmt(s['peak_rss_mb'], '.0f')} | "
            f"{_fmt(s['infer_rss_mb'], '.0f')} | {_fmt(s['gflop'])} | {frac} |"
        )
    return "\n".join(lines)


def ratio_table(payload: dict) -> str:
    """Ratios of the best rounds; for interleaved runs also the paired ratios (median of per-call time ratios)."""
    rows = ratio_rows(merge_rounds(payload["results"]), payload["results"])
    paired = any(f"{key}_paired" in r for r in rows for key in PAIRED_PHASES)
    head = "| model | size | ours / peer | train | infer (batch) | batch-1 latency | peak RSS (ours/peer) |"
    rule = "|---|---|---|---|---|---|---|"
    if paired:
        head += " train, paired | infer, paired | batch-1, paired | calls paired (train/infer/b1) |"
        rule += "---|---|---|---|"
    lines = [head, rule]
    for r in rows:
        peer = PEER_NAMES.get(r["peer"], r["peer"])
        line = (
            f"| {r['arch']}-{r['backbone']} | {r['size']} | {r['ours']} / {peer} | {_fmt(r['train'])}x | "
            f"{_fmt(r['infer'])}x | {_fmt(r['latency'])}x | {_fmt(r['memory'])}x |"
        )
        if paired:
            line += "".join(f" {_fmt(r.get(f'{key}_paired'))}x |" for key in PAIRED_PHASES)
            line += " " + "/".join(str(r.get(f"{key}_pairs", 0)) for key in PAIRED_PHASES) + " |"
        lines.append(line)
    return "\n".join(lines)


_DTYPES = {"off": "float32", "bf16": "bfloat16", "fp16": "float16"}


def header(payload: dict) -> str:
    m = payload.get("machine", {})
    mm = payload.get("matmul") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())
    s = payload.get("settings", {})
    finished = payload.get("finished_utc") or "(cut short)"
    return (
        f"Run {payload.get('started_utc')} to {finished}; {m.get('cpu')} x{m.get('cpus')}, "
        f"{m.get('mem_gb')} GB; load average at start {m.get('loadavg_start')}, at end "
        f"{payload.get('loadavg_end')}.\n{versions}.\nbatch {s.get('batch')}, {s.get('steps')} timed training "
        f"steps, {s.get('infer_steps')} timed inference calls, {s.get('warmup')} warm-up call(s), "
        f"jit_compile={s.get('jit_compile')}, SMP channels_last={s.get('smp_channels_last')}, device "
        f"{s.get('device', 'cpu')}, mixed precision {s.get('mixed_precision', 'off')}. "
        f"{_DTYPES[s.get('mixed_precision', 'off')]} matmul peak {_fmt(mm.get('peak_gflops'), '.1f')} GFLOP/s "
        f"(n={mm.get('n')}).\n"
        f"Command: `python benchmarks/run.py {' '.join(payload.get('argv', []))}`"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json_files", nargs="+", help="one run's JSON, or the parts of a grid run in several runs")
    args = p.parse_args(argv)
    payloads = [json.loads(Path(f).read_text()) for f in args.json_files]
    headers = "\n\n".join(header(payload) for payload in payloads)
    payload = combine(payloads)
    print(headers + "\n\n### Speed and memory\n\n" + speed_table(payload) + "\n\n### Ratios\n\n" + ratio_table(payload))
    return 0


def combine(payloads: list[dict]) -> dict:
    """One payload from several runs' payloads: their results together, each record keeping its own run's matmul
    peak (``matmul_peak_gflops``) for the FLOP fractions."""
    if len(payloads) == 1:
        return payloads[0]
    results = []
    for payload in payloads:
        peak = (payload.get("matmul") or {}).get("peak_gflops")
        results += [dict(record, matmul_peak_gflops=peak) for record in payload["results"]]
    return dict(payloads[0], results=results)


if __name__ == "__main__":
    sys.exit(main())
