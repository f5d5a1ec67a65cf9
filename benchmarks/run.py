"""Speed and memory side by side: this package (TensorFlow, JAX, torch), segmentation_models 1.0.1, SMP.

Every measurement runs in its own subprocess (`benchmarks/worker.py`) on the same machine in one run;
contenders alternate within each configuration so that a change of machine load hits all of them.

    python benchmarks/run.py --quick                  # Unet-resnet34 256x256, seven contenders, ratio rows
    python benchmarks/run.py --json results.json      # full grid: 5 architectures x 2 backbones x 256/512
    python benchmarks/tables.py results.json          # markdown tables for docs/benchmarks.md

Architectures/backbones that a contender lacks are skipped with the reason printed.

``--interleave`` runs a configuration's contenders in processes that live side by side and take turns call by
call (one computing at a time, the order reversed every turn): each timed call of one contender is next to the
same call of the others, so drift of the machine's speed hits both sides of a ratio, and the ratios also come
paired (the median over calls of the per-call time ratios). All contenders of a configuration are resident at
once: at 512x512 that is 4-11 GB each.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "benchmarks" / "worker.py"
ORACLE_DIR = ROOT / ".oracle" / "sm101"
RESULT_PREFIX = "BENCH_RESULT "
GATE_PREFIX = "BENCH_GATE "
# between turns: a process that has just finished a call may still have threads spinning (OpenMP, Eigen) for
# a few milliseconds before they sleep; the next contender starts after them
TURN_PAUSE_S = 0.05

CONTENDERS = (
    "ours-tensorflow",
    "ours-jax",
    "ours-torch",
    "ours-torch-retain",
    "sm101-tensorflow",
    "smp-torch",
    "smp-torch-retain",
)
# -retain: glibc keeping freed memory (segmentation_models/accel/allocator.py). ours-torch-retain is ours as the
# command line runs it (accel.enable(allocator=True); a Python user's opt-in); smp-torch-retain is SMP on the same
# allocator setting, so the kernels alone are compared.
SMP_PEERS = ("smp-torch", "smp-torch-retain")
# FPN-smp: our FPN with pyramid_style="smp"; Unet-smp: our Unet with feature_layout="smp" (see worker.OUR_VARIANTS)
ARCHS = ("Unet", "Unet-smp", "FPN", "FPN-smp", "DeepLabV3Plus")
BACKBONES = ("resnet34", "efficientnetb0")
SIZES = (256, 512)


def contender_env(contender: str, device: str = "cpu") -> dict:
    """Environment of a contender's subprocess (1.0.1 as in tests/conftest.py::run_oracle); GPUs hidden on CPU runs."""
    env = dict(os.environ)
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    kind, _, rest = contender.partition("-")
    backend = rest.partition("-")[0]
    if kind == "sm101":
        env.update(PYTHONPATH=str(ORACLE_DIR), SM_FRAMEWORK="tf.keras", KERAS_BACKEND="tensorflow")
    else:
        env["PYTHONPATH"] = str(ROOT)
        if backend:
            env["KERAS_BACKEND"] = backend
    return env


def run_worker(contender: str, worker_args: list[str], timeout: float, device: str = "cpu") -> dict:
    """Run one worker subprocess; its result record, or an error record with the tail of its output."""
    kind = contender.partition("-")[0]
    cmd = [sys.executable, str(WORKER), "--contender", kind, *worker_args]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=str(ROOT), env=contender_env(contender, device), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            record = json.loads(line[len(RESULT_PREFIX) :])
            record["process_wall_s"] = wall
            return record
    tail = (proc.stdout[-1500:] + "\n" + proc.stderr[-3000:]).strip()
    return {"status": "error", "reason": f"exit code {proc.returncode}: {tail}", "process_wall_s": wall}


class GatedWorker:
    """A worker process started with ``--gated``: it computes only between a GO line and its next gate."""

    def __init__(self, contender: str, worker_args: list[str], device: str):
        kind = contender.partition("-")[0]
        self.contender = contender
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), "--contender", kind, "--gated", *worker_args],
            cwd=str(ROOT),
            env=contender_env(contender, device),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue = queue.Queue()
        self.tail: list[str] = []
        self.record: dict | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_gate(self, timeout: float) -> str | None:
        """Until the worker waits at its next gate (its label), or has ended (None, its record kept)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                self.record = {"status": "error", "reason": f"timed out after {timeout:.0f} s"}
                return None
            if line is None:
                self.proc.wait()
                if self.record is None:
                    self.stderr.seek(0)
                    tail = ("\n".join(self.tail[-20:]) + "\n" + self.stderr.read()[-3000:]).strip()
                    self.record = {"status": "error", "reason": f"exit code {self.proc.returncode}: {tail}"}
                return None
            if line.startswith(GATE_PREFIX):
                return line[len(GATE_PREFIX) :]
            if line.startswith(RESULT_PREFIX):
                self.record = json.loads(line[len(RESULT_PREFIX) :])
            else:
                self.tail.append(line)

    def go(self) -> None:
        self.proc.stdin.write("GO\n")
        self.proc.stdin.flush()


def run_interleaved(worker_args: dict[str, list[str]], timeout: float, device: str = "cpu") -> dict[str, dict]:
    """Run the contenders' workers side by side, one call at a time in turns (each turn's order reversed from
    the last); their records, each with ``interleaved: True``."""
    t0 = time.perf_counter()
    workers = [GatedWorker(contender, wargs, device) for contender, wargs in worker_args.items()]
    waiting = [w for w in workers if w.wait_for_gate(timeout) is not None]  # all started, none computing yet
    turn = 0
    try:
        while waiting:
            order = waiting if turn % 2 == 0 else list(reversed(waiting))
            for worker in order:
                worker.go()
                if worker.wait_for_gate(timeout) is None:
                    waiting.remove(worker)
                time.sleep(TURN_PAUSE_S)
            turn += 1
    finally:
        for worker in workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
    wall = time.perf_counter() - t0
    return {
        w.contender: dict(w.record or {"status": "error", "reason": "no record"}, interleaved=True, process_wall_s=wall)
        for w in workers
    }


def paired_ratios(results: list[dict], ours: str, peer: str, config: tuple, phase: str) -> list[float]:
    """Per-call peer time / ours time (>1: ours faster) of each interleaved round of a configuration, pooled over
    the rounds: call i of one contender next to call i of the other."""
    rounds: dict[int, dict] = {}
    for r in results:
        if (
            (r.get("arch"), r.get("backbone"), r.get("size")) == config
            and r.get("interleaved")
            and r.get("status") == "ok"
        ):
            rounds.setdefault(r.get("round", 0), {})[r["contender_id"]] = r
    ratios = []
    for by in rounds.values():
        if ours in by and peer in by:
            a, b = (by[ours].get(phase) or {}).get("times_s"), (by[peer].get(phase) or {}).get("times_s")
            ratios += [tb / ta for ta, tb in zip(a or [], b or [])]
    return ratios


def images_per_s(record: dict, key: str) -> float | None:
    """Images per second of a timed phase (median call time); batch 1 for 'infer_b1'."""
    if record.get("status") != "ok" or key not in record:
        return None
    images = 1 if key == "infer_b1" else record["batch"]
    return images / record[key]["median_s"]


def summarize(record: dict, peak_gflops: float | None) -> dict:
    """Derived numbers of one record: images/s, latency, memory, fraction of the matmul peak."""
    row = {
        "train_ips": images_per_s(record, "train"),
        "infer_ips": images_per_s(record, "infer_batch"),
        "latency_ms": record["infer_b1"]["median_s"] * 1e3
        if record.get("status") == "ok" and "infer_b1" in record
        else None,
        "peak_rss_mb": record.get("peak_rss_train_mb", record.get("peak_rss_mb")),
        "infer_rss_mb": record.get("peak_rss_infer_mb"),
        "gflop": None,
        "train_peak_frac": None,
        "infer_peak_frac": None,
        "device_peak_mb": None,
    }
    if record.get("device") == "gpu":  # the memory that counts there: the framework's peak device allocation
        row["device_peak_mb"] = (record.get("framework_memory") or {}).get("peak_mb")
    flops = record.get("flops_per_image")
    if flops:
        row["gflop"] = flops / 1e9
        if peak_gflops:
            if row["train_ips"]:  # training ~ 3x the forward FLOPs (forward + two backward matmuls)
                row["train_peak_frac"] = 3 * flops * row["train_ips"] / 1e9 / peak_gflops
            if row["infer_ips"]:
                row["infer_peak_frac"] = flops * row["infer_ips"] / 1e9 / peak_gflops
    return row


def _fmt(value, spec=".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_row(contender: str, record: dict, peak: float | None) -> None:
    if record.get("status") != "ok":
        reason = record.get("reason", "")  # a traceback's last lines say what went wrong
        shown = reason if len(reason) <= 400 else "..." + reason[-400:]
        print(f"  {contender:<17} {record.get('status', 'error').upper()}: {shown}", flush=True)
        return
    s = summarize(record, peak)
    print(
        f"  {contender:<17} train {_fmt(s['train_ips']):>7} img/s | infer {_fmt(s['infer_ips']):>7} img/s | "
        f"b1 {_fmt(s['latency_ms'], '.1f'):>7} ms | RSS {_fmt(s['peak_rss_mb'], '.0f'):>6} MB | "
        + (f"device peak {_fmt(s['device_peak_mb'], '.0f')} MB | " if s["device_peak_mb"] is not None else "")
        + f"{_fmt(s['gflop'])} GFLOP/img | peak frac train {_fmt(s['train_peak_frac'])} infer "
        f"{_fmt(s['infer_peak_frac'])}",
        flush=True,
    )


PAIRED_PHASES = {"train": "train", "infer": "infer_batch", "latency": "infer_b1"}


def ratio_rows(results: list[dict], raw: list[dict] | None = None) -> list[dict]:
    """ours/1.0.1 (TensorFlow) and ours/SMP (best of JAX/torch, and each backend) per configuration, from the
    records of :func:`merge_rounds`; with the unmerged records of interleaved rounds (``raw``) also the paired
    ratios (``train_paired``, ...: medians of the per-call time ratios) and their number of calls."""
    rows = []
    configs = sorted({(r["arch"], r["backbone"], r["size"]) for r in results})
    for arch, backbone, size in configs:
        by = {
            r["contender_id"]: summarize(r, None)
            for r in results
            if (r["arch"], r["backbone"], r["size"]) == (arch, backbone, size) and r.get("status") == "ok"
        }

        memory = "device_peak_mb" if any(v["device_peak_mb"] is not None for v in by.values()) else "peak_rss_mb"

        def ratio(a, b, key, invert=False):
            if a not in by or b not in by or not by[a][key] or not by[b][key]:  # noqa: B023  (called in this iteration)
                return None
            return by[b][key] / by[a][key] if invert else by[a][key] / by[b][key]  # noqa: B023  (called in this iteration)

        def compare(ours, peer):
            values = {
                "train": ratio(ours, peer, "train_ips"),
                "infer": ratio(ours, peer, "infer_ips"),
                "latency": ratio(ours, peer, "latency_ms", invert=True),
                "memory": ratio(ours, peer, memory),  # noqa: B023  (called in this iteration)
            }
            for key, phase in PAIRED_PHASES.items():
                calls = paired_ratios(raw or [], ours, peer, (arch, backbone, size), phase)  # noqa: B023  (called in this iteration)
                if calls:
                    values[f"{key}_paired"] = statistics.median(calls)
                    values[f"{key}_pairs"] = len(calls)
            return values

        pairs = [
            ("ours-tensorflow", "sm101-tensorflow"),
            ("ours-tensorflow", "smp-torch"),
            ("ours-jax", "smp-torch"),
            ("ours-torch", "smp-torch"),
            ("ours-torch-retain", "smp-torch"),
            ("ours-torch-retain", "smp-torch-retain"),
        ]
        for ours, peer in pairs:
            values = compare(ours, peer)
            if any(v is not None for v in values.values()):
                rows.append({"arch": arch, "backbone": backbone, "size": size, "ours": ours, "peer": peer, **values})
        best = [o for o in ("ours-jax", "ours-torch") if o in by and by[o]["train_ips"]]
        top = max(best, key=lambda o: by[o]["train_ips"]) if best else None
        for peer in SMP_PEERS:
            if top and peer in by:
                rows.append(
                    {
                        "arch": arch,
                        "backbone": backbone,
                        "size": size,
                        "ours": f"best({top})",
                        "peer": peer,
                        **compare(top, peer),
                    }
                )
    return rows


PEER_NAMES = {"sm101-tensorflow": "1.0.1", "smp-torch": "SMP", "smp-torch-retain": "SMP-retain"}


def print_ratios(rows: list[dict]) -> None:
    print("\nRatios (>1 means ours is faster; memory: ours/peer peak RSS, <1 means ours uses less):")
    for r in rows:
        peer = PEER_NAMES.get(r["peer"], r["peer"])
        paired = ""
        if any(f"{key}_paired" in r for key in PAIRED_PHASES):
            paired = "  | paired medians: " + "  ".join(
                f"{key} {_fmt(r.get(f'{key}_paired'))}x (n={r.get(f'{key}_pairs', 0)})" for key in PAIRED_PHASES
            )
        print(
            f"  RATIO {r['arch']}-{r['backbone']}@{r['size']}  {r['ours']}/{peer}: train {_fmt(r['train'])}x  "
            f"infer {_fmt(r['infer'])}x  b1-latency {_fmt(r['latency'])}x  memory {_fmt(r['memory'])}x{paired}",
            flush=True,
        )


def machine_info() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_gb"] = round(int(line.split()[1]) / 2**20, 1)
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    versions = {}
    for name in ("keras", "tensorflow", "jax", "torch", "numpy"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001
            versions[name] = None
    info["versions"] = versions
    return info


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="Unet-resnet34 at 256x256 only, few steps, all contenders")
    p.add_argument("--archs", nargs="+", default=None, help=f"default {' '.join(ARCHS)}")
    p.add_argument("--backbones", nargs="+", default=None, help=f"default {' '.join(BACKBONES)}")
    p.add_argument("--sizes", "--size", nargs="+", type=int, default=None, help="default 256 512")
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 10; --quick 3)")
    p.add_argument("--infer-steps", type=int, default=None, help="timed inference calls (default 10; --quick 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed first calls (tracing/compilation)")
    p.add_argument("--repeat", type=int, default=1, help="rounds over the contenders (alternating)")
    p.add_argument(
        "--interleave",
        action="store_true",
        help="each round: the contenders' processes side by side, taking turns call by call (paired "
        "ratios; all of a configuration's contenders resident at once)",
    )
    p.add_argument("--jit-compile", choices=("auto", "true", "false"), default="auto", help="ours and 1.0.1")
    p.add_argument("--smp-channels-last", action="store_true")
    p.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="gpu: every contender on the GPU (an error row if a framework sees none); memory ratios "
        "then compare the frameworks' peak device allocations",
    )
    p.add_argument(
        "--mixed-precision",
        choices=("off", "bf16", "fp16"),
        default="off",
        help="ours/1.0.1: Keras' mixed_bfloat16/mixed_float16 policy; SMP: torch.autocast (+ GradScaler "
        "for fp16); the matmul peak is then measured in that dtype",
    )
    p.add_argument(
        "--with-other-frameworks",
        action="store_true",
        help="ours/1.0.1: let Keras import the other backends' frameworks (JAX, TensorFlow, torch) and the "
        "[data] extra (OpenCV, matplotlib) when installed; by default they are hidden, as in a "
        "`pip install segmentation-models-keras[<backend>]` install",
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker process")
    p.add_argument("--no-matmul", action="store_true", help="skip the matmul-peak measurement")
    p.add_argument("--matmul-n", type=int, default=2048, help="square matmul size for the peak")
    p.add_argument("--json", dest="json_out", default=None, help="write all results to this JSON file")
    args = p.parse_args(argv)
    args.archs = args.archs or (["Unet"] if args.quick else list(ARCHS))
    args.backbones = args.backbones or (["resnet34"] if args.quick else list(BACKBONES))
    args.sizes = args.sizes or ([256] if args.quick else list(SIZES))
    args.steps = args.steps or (3 if args.quick else 10)
    args.infer_steps = args.infer_steps or (3 if args.quick else 10)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = _dt.datetime.now(_dt.timezone.utc)
    info = machine_info()
    print(
        f"segmentation_models benchmark, {started:%Y-%m-%d %H:%M} UTC, {info.get('cpu')} x{info.get('cpus')}, "
        f"load {info.get('loadavg_start')}",
        flush=True,
    )
    peak = None
    matmul = None
    if not args.no_matmul:
        matmul = run_worker(
            "matmul-",
            ["--matmul-n", str(args.matmul_n), "--device", args.device, "--mixed-precision", args.mixed_precision],
            args.timeout,
            args.device,
        )
        peak = matmul.get("peak_gflops")
        dtype = {"off": "float32", "bf16": "bfloat16", "fp16": "float16"}[args.mixed_precision]
        print(
            f"{dtype} matmul peak ({args.device}): {_fmt(peak, '.1f')} GFLOP/s (numpy float32 "
            f"{_fmt(matmul.get('numpy_gflops'), '.1f')}, torch float32 {_fmt(matmul.get('torch_gflops'), '.1f')})",
            flush=True,
        )
    results = []
    for arch in args.archs:
        for backbone in args.backbones:
            for size in args.sizes:
                print(f"\n{arch}-{backbone} {size}x{size} batch {args.batch}", flush=True)
                for round_ in range(args.repeat):
                    order = args.contenders if round_ % 2 == 0 else list(reversed(args.contenders))
                    worker_args = {c: contender_args(args, c, arch, backbone, size) for c in order}
                    if args.interleave:
                        records = run_interleaved(worker_args, args.timeout, args.device)
                        measured = ((c, records[c]) for c in order)
                    else:  # one after the other, each printed when measured
                        measured = ((c, run_worker(c, worker_args[c], args.timeout, args.device)) for c in order)
                    for contender, record in measured:
                        record.update(
                            contender_id=contender,
                            arch=arch,
                            backbone=backbone,
                            size=size,
                            batch=args.batch,
                            round=round_,
                        )
                        print_row(contender, record, peak)
                        results.append(record)
                if args.json_out:  # after every configuration: a grid cut short keeps what it measured
                    write_json(args, started, info, matmul, results, finished=False)
    rows = ratio_rows(merge_rounds(results), results)
    print_ratios(rows)
    if args.json_out:
        write_json(args, started, info, matmul, results, finished=True)
        print(f"\nwrote {args.json_out}")
    return 0 if all(r.get("status") != "error" for r in results) else 1


def contender_args(args, contender: str, arch: str, backbone: str, size: int) -> list[str]:
    """The worker's command-line arguments for one contender and configuration."""
    worker_args = [
        "--arch",
        arch,
        "--backbone",
        backbone,
        "--size",
        str(size),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--infer-steps",
        str(args.infer_steps),
        "--warmup",
        str(args.warmup),
        "--jit-compile",
        args.jit_compile,
        "--device",
        args.device,
        "--mixed-precision",
        args.mixed_precision,
    ]
    if args.smp_channels_last:
        worker_args.append("--channels-last")
    if contender.endswith("-retain"):
        worker_args.append("--retain-freed-memory")
    if args.with_other_frameworks:
        worker_args.append("--with-other-frameworks")
    return worker_args


def write_json(args, started, info: dict, matmul: dict | None, results: list[dict], finished: bool) -> None:
    """The run so far as JSON (``finished_utc`` is null until the last configuration is measured)."""
    payload = {
        "started_utc": started.isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "machine": info,
        "matmul": matmul,
        "settings": {k: v for k, v in vars(args).items() if k != "json_out"},
        "results": results,
        "ratios": ratio_rows(merge_rounds(results), results),
        "finished_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds") if finished else None,
        "loadavg_end": os.getloadavg(),
    }
    Path(args.json_out).write_text(json.dumps(payload, indent=1))


def merge_rounds(results: list[dict]) -> list[dict]:
    """One record per (contender, configuration), each metric from its least disturbed round: the fastest
    training, batched inference and batch-1 latency, and the smallest peak RSS, over the ``--repeat`` rounds."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["contender_id"], r["arch"], r["backbone"], r["size"]), []).append(r)
    merged = []
    for rounds in groups.values():
        ok = [r for r in rounds if r.get("status") == "ok"]
        if not ok:
            merged.append(rounds[0])
            continue
        best = dict(ok[0])
        for phase in ("train", "infer_batch", "infer_b1"):
            timed = [r[phase] for r in ok if isinstance(r.get(phase), dict) and "median_s" in r[phase]]
            if timed:
                best[phase] = min(timed, key=lambda t: t["median_s"])
        for field in ("peak_rss_train_mb", "peak_rss_infer_mb", "peak_rss_mb"):
            values = [r[field] for r in ok if r.get(field) is not None]
            if values:
                best[field] = min(values)
        best["rounds"] = len(ok)
        merged.append(best)
    return merged


if __name__ == "__main__":
    sys.exit(main())
