"""Serving throughput, side by side in one run, on one model (the train config's architecture):

  (a) raw in-process batched inference           (b) a no-op endpoint reading the upload as /predict does
  (c) dl_service /predict, multipart and raw body (d) the naive design: model.predict per request
  (e) BentoML 1.4 with adaptive batching, the same model, the same number of worker processes
  (f) the cost of the trust layer: /predict of the same model with and without calibration, prediction
      sets and the out-of-distribution score
  (g) the cost of shadow mode: /predict while a second version predicts every micro-batch and logs beside it
  (h) /predict with batches of at most 16: at concurrency 32 the model computes one half while the event loop
      reads the other, the overlap lock-step forgoes, and what it costs the model (the GIL they share)

Three groups of interleaved rounds (each contender takes its turn every round, ROUNDS rounds, the
order reversed every round; the tables show the median round and ratios are medians of the paired
per-round ratios):
  - concurrency 1: /predict (multipart, raw body) and BentoML;
  - concurrency 32, one process each: (b) multipart and raw, (c) multipart and raw, (c') the log off,
    (f), (g), (h) and (e);
  - concurrency 64: /predict with one process and with two (uvicorn --workers 2, the machine's cores),
    the no-op and BentoML with two workers each.
Then /predict at concurrency 8 and (d) at 32, one run each. Every run also records the CPU the server's
processes and wrk used, how busy the event loops were, and, for dl_service, its batches' model and log
times (dl_service_batch_stage_seconds on its /metrics): what bounds the ratios, printed at the end.

    python benchmarks/serving.py [--seconds 8] [--skip-bentoml]        (part of make bench)

Load comes from wrk (Debian's package) on loopback, uploading a real Fashion-MNIST PNG.
BentoML runs from its own virtual environment (.mlops/bench/bentoml-venv), built on first use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROUNDS = 6  # even: the order reverses every round, so a steady drift of the machine cancels out
NOOP, NOOP_RAW, NOOP_2 = "(b) no-op upload", "(b) no-op upload, raw body", "(b) no-op upload, 2 processes"
SERVICE, SERVICE_RAW = "(c) dl_service /predict", "(c) dl_service /predict, raw body"
SERVICE_2, SERVICE_2_RAW = "(c) dl_service, 2 processes", "(c) dl_service, 2 processes, raw body"
NO_LOG, NO_TRUST = "(c') dl_service, logging off", "(f) dl_service, no trust layer"
NAIVE, BENTOML, BENTOML_2 = "(d) naive per-request", "(e) BentoML 1.4 adaptive", "(e) BentoML 1.4, 2 workers"
SHADOWED = "(g) dl_service + shadow version"
HALF_BATCHES = "(h) dl_service, batches of 16"
RAW_BODY = {NOOP_RAW: NOOP, SERVICE_RAW: SERVICE, SERVICE_2_RAW: SERVICE_2}  # contender -> the server it loads
SERVICE_APP, NOOP_APP = "services.dl_service.app:create_app", "benchmarks.apps:create_noop_app"


def route(contender: str) -> tuple[str, str]:
    """The server a contender loads, and how it sends the image: the multipart field, or "-" for the raw body."""
    if contender in RAW_BODY:
        return RAW_BODY[contender], "-"
    return contender, "files" if contender in (BENTOML, BENTOML_2) else "file"


from deployments.stack.servers import free_port  # noqa: E402  (ROOT is on sys.path from here on)


@dataclass
class LoadResult:
    name: str
    concurrency: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    failed: int
    cores: float = float("nan")  # CPU the server's processes used during the run, in cores
    loop_busy: float = float("nan")  # share of the run its worker processes' main threads (event loops) ran
    load_cores: float = float("nan")  # CPU wrk itself used, in cores
    stages: dict[str, tuple[float, float]] = field(default_factory=dict)  # dl_service: stage -> (batches, seconds)
    wall_seconds: float = float("nan")  # the run, timed around wrk (CPU and stages are counted over it)

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cores / self.requests_per_second if self.requests_per_second else float("nan")


def batch_stages(url: str) -> dict[str, tuple[float, float]]:
    """dl_service's micro-batches so far, from its /metrics: stage -> (batches, seconds) for each stage of
    dl_service_batch_stage_seconds, and "images" -> (model calls, images); empty for other servers."""
    try:
        page = httpx.get(url.removesuffix("/predict") + "/metrics", timeout=30).text
    except httpx.HTTPError:
        return {}
    totals: dict[str, list[float]] = {}
    for line in page.splitlines():
        name, _, value = line.rpartition(" ")
        for metric, index in (("_count", 0), ("_sum", 1)):
            if name.startswith(f"dl_service_batch_stage_seconds{metric}{{stage="):
                totals.setdefault(name.split('"')[1], [0.0, 0.0])[index] = float(value)
            elif name == f"dl_service_batch_size{metric}":
                totals.setdefault("images", [0.0, 0.0])[index] = float(value)
    return {stage: (count, total) for stage, (count, total) in totals.items()}


def cpu_seconds(pid: int) -> dict[int, tuple[float, float]]:
    """CPU time so far of a server and its worker processes: pid -> (all its threads, its main thread)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    seconds: dict[int, tuple[float, float]] = {}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            main = next((t.user_time + t.system_time for t in process.threads() if t.id == process.pid), 0.0)
            seconds[process.pid] = (times.user + times.system, main)
    return seconds


def build_model(workdir: Path, images: np.ndarray) -> tuple[Path, Path, Path, Path]:
    """The config's classifier and UAE, published to private storages with a production pointer: one
    version with a trust layer fitted on ``images`` as training fits it, one without, and the trusted one
    as versions 1 (production) and 2 (in shadow, every batch)."""
    import keras
    import pandas as pd

    from configs.schema import load_config
    from tasks.core.bundle import METADATA_FILE, MODEL_FILE, REFERENCE_FILE, TRUST_FILE, UAE_FILE
    from tasks.core.pointer import write_pointer
    from tasks.core.shadow_pointer import write_shadow
    from tasks.core.storage import publish_version
    from tasks.training.models import build_classifier, build_uae

    config = load_config(ROOT / "configs" / "train_config.yaml", root=ROOT)
    keras.utils.set_random_seed(0)
    bundle, storage, trusted = workdir / "bundle", workdir / "storage", workdir / "storage-trust"
    bundle.mkdir()
    classifier = build_classifier(config.model, 10)
    classifier.save(bundle / MODEL_FILE)
    build_uae(config.model.input_size, config.train.drift.uae_dim, 0).save(bundle / UAE_FILE)
    height, width = config.model.input_size
    metadata = {"class_names": [f"class_{i}" for i in range(10)], "input": {"height": height, "width": width}}
    (bundle / METADATA_FILE).write_text(json.dumps(metadata))
    pd.DataFrame({"brightness": [0.5]}).to_parquet(
        bundle / REFERENCE_FILE
    )  # a bundle needs one; serving never reads it
    publish_version(bundle, str(storage), config.model.name, "1")
    write_pointer(str(storage), config.model.name, "1", "benchmark", {})
    trust_layer(classifier, images).save(bundle / TRUST_FILE)
    publish_version(bundle, str(trusted), config.model.name, "1")
    write_pointer(str(trusted), config.model.name, "1", "benchmark", {})
    shadowed = workdir / "storage-shadow"
    for version in ("1", "2"):
        publish_version(bundle, str(shadowed), config.model.name, version)
    write_pointer(str(shadowed), config.model.name, "1", "benchmark", {})
    write_shadow(str(shadowed), config.model.name, "2", 1.0, "1", "benchmark")
    return storage, trusted, shadowed, bundle / MODEL_FILE


def trust_layer(classifier, images: np.ndarray):  # type: ignore[no-untyped-def]
    """A trust layer of ``classifier`` fitted on ``images`` with its own predictions as labels: the cost of
    applying it does not depend on how well it was fitted, only on the shapes and on how large its sets are."""
    from sklearn.covariance import LedoitWolf

    from tasks.core.bundle import CLASSIFIER_OUTPUT
    from tasks.core.trust import TrustModel, softmax
    from tasks.training.calibration import feature_model, fit_ood_threshold

    features = np.asarray(feature_model(classifier)(images.astype(np.float32), training=False), dtype=np.float64)
    kernel, bias = (np.asarray(w, dtype=np.float64) for w in classifier.get_layer(CLASSIFIER_OUTPUT).get_weights())
    logits = features @ kernel + bias
    predicted = logits.argmax(axis=1)
    means = np.stack(
        [
            features[predicted == c].mean(axis=0) if (predicted == c).any() else features.mean(axis=0)
            for c in range(len(bias))
        ]
    )
    precision = LedoitWolf().fit(features - means[predicted]).precision_
    # Thresholds that give the set sizes of a trained version (about 1.1 classes, 90% singletons): the
    # second class joins a set when the top two hold less mass than on 90% of these images.
    top_two = np.sort(softmax(logits), axis=1)[:, -2:].sum(axis=1)
    thresholds = np.full(len(bias), float(np.quantile(top_two, 0.1)))
    unfitted = TrustModel(
        1.0, 0.05, thresholds, False, "mahalanobis_or_energy", 0.0, means, precision, kernel, bias, np.ones((2, 2))
    )
    return fit_ood_threshold(unfitted, features, logits, "mahalanobis_or_energy", 0.05)


def raw_throughput(model_path: Path, image: Path, seconds: float, batch: int = 32) -> float:
    """(a) the model alone: batches of preprocessed images, no HTTP, no logging."""
    import keras
    import tensorflow as tf

    from tasks.core.preprocessing import InputSpec, preprocess

    model = keras.models.load_model(model_path)
    spec = InputSpec(model.input_shape[1], model.input_shape[2])
    pixels = np.repeat(preprocess(image.read_bytes(), spec)[None], batch, axis=0).astype(np.float32)
    infer = tf.function(lambda x: model(x, training=False))
    infer(pixels)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        infer(pixels).numpy()
        count += batch
    return count / (time.perf_counter() - started)


@contextmanager
def server(command: list[str], env: dict[str, str], port: int, ready_path: str, log: Path):  # type: ignore[no-untyped-def]
    """The server running and ready; yields its process (whose pid names its workers too, for cpu_seconds)."""
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=output, stderr=output)
        try:
            deadline = time.monotonic() + 180
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[0:4]} exited:\n{log.read_text()[-3000:]}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=2).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0:4]} never became ready:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def wrk(url: str, image: Path, concurrency: int, seconds: float, field: str = "file") -> dict[str, float]:
    threads = str(min(2, concurrency))
    command = [
        "wrk",
        "-t",
        threads,
        "-c",
        str(concurrency),
        "-d",
        f"{max(1, round(seconds))}s",  # wrk takes whole seconds
        "--timeout",
        "30s",
        "-s",
        str(ROOT / "benchmarks" / "wrk_upload.lua"),
        url,
    ]
    env = {**os.environ, "BENCH_IMAGE": str(image), "BENCH_FIELD": field}
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("JSON "))
    return json.loads(line[5:])


def measure(
    name: str, url: str, image: Path, concurrency: int, seconds: float, field: str = "file", pid: int | None = None
) -> LoadResult:
    """One wrk run after a warm-up; with the server's ``pid``, also the CPU its processes and wrk used."""
    wrk(url, image, concurrency, min(2.0, seconds), field)  # warm-up
    stages_before = batch_stages(url)
    before, load_before = cpu_seconds(pid) if pid else {}, resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    summary = wrk(url, image, concurrency, seconds, field)
    wall = time.perf_counter() - started
    after, load_after = cpu_seconds(pid) if pid else {}, resource.getrusage(resource.RUSAGE_CHILDREN)
    stages_after = batch_stages(url)
    result = LoadResult(
        name,
        concurrency,
        summary["requests"] / (summary["duration_us"] / 1e6),
        summary["p50_us"] / 1000,
        summary["p99_us"] / 1000,
        int(summary["errors"] + summary["non2xx"]),
        wall_seconds=wall,
        load_cores=(load_after.ru_utime + load_after.ru_stime - load_before.ru_utime - load_before.ru_stime) / wall,
        stages={
            stage: (count - stages_before[stage][0], spent - stages_before[stage][1])
            for stage, (count, spent) in stages_after.items()
            if stage in stages_before
        },
    )
    used = {pid: (after[pid][0] - before[pid][0], after[pid][1] - before[pid][1]) for pid in after if pid in before}
    if used:
        result.cores = sum(total for total, _ in used.values()) / wall
        loops = [main / wall for _, main in used.values() if main > 0.05 * wall]  # not a supervisor's idle loop
        result.loop_busy = statistics.mean(loops) if loops else 0.0
    return result


def uvicorn(factory: str, workers: int = 1) -> list[str]:
    """The service's own stack (uvicorn with uvloop and httptools); ``--port`` goes last."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]


def bentoml_command() -> list[str]:
    """The same model in BentoML (BENCH_WORKERS processes); ``--port`` goes last."""
    serve = ["-m", "bentoml", "serve", "benchmarks.bentoml_service:Classifier", "--host", "127.0.0.1"]
    return [str(bentoml_python()), *serve]


def bentoml_python() -> Path:
    """BentoML in its own virtual environment: it pins a certifi newer than the registry serves."""
    venv = ROOT / ".mlops" / "bench" / "bentoml-venv"
    python = venv / "bin" / "python"
    if not (venv / "bin" / "bentoml").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--no-deps", "bentoml==1.4.40"], check=True)
        subprocess.run([*pip, "-r", str(ROOT / "benchmarks" / "bentoml-requirements.txt")], check=True)
    return python


def test_images() -> tuple[Path, np.ndarray]:
    """The PNG every contender is sent, and 512 test images (model inputs) to fit a trust layer on."""
    from tasks.core.preprocessing import InputSpec, preprocess
    from tasks.data.dataset import read_manifest

    data_dir = ROOT / "datasets" / "fashion-mnist" / "data"
    manifest = read_manifest(data_dir)
    paths = manifest.loc[manifest["split"] == "test", "path"]
    calibration = np.stack([preprocess((data_dir / p).read_bytes(), InputSpec(28, 28)) for p in paths[:512]])
    return data_dir / paths.iloc[0], calibration


def service_settings(state: Path, storage_url: Path, **settings: str) -> dict[str, str]:
    """A dl_service of its own: state folder, storage and SQLite log (``state``.db), plus ``MLOPS_SERVICE_*``."""
    return {
        "MLOPS_HOME": str(state),
        "MLOPS_STORAGE_URL": str(storage_url),
        "MLOPS_PREDICTION_DB_URL": f"sqlite:///{state}.db",
        **settings,
    }


@dataclass(frozen=True)
class Contender:
    """One server under load: where to send, how (``field``: the multipart field, "-" the raw body), and
    the server's process id, whose CPU is measured."""

    url: str
    field: str = "file"
    pid: int | None = None


def interleaved(
    contenders: dict[str, Contender], image: Path, concurrency: int, seconds: float
) -> dict[str, list[LoadResult]]:
    """ROUNDS load runs of each contender, taking turns, the order reversed every round: this shared
    machine drifts by +-20% within minutes, so one run each would compare noise, and a fixed order
    would charge the drift to whoever runs last."""
    rounds: dict[str, list[LoadResult]] = {name: [] for name in contenders}
    for round_number in range(ROUNDS):
        order = list(contenders.items()) if round_number % 2 == 0 else list(reversed(contenders.items()))
        for name, contender in order:
            rounds[name].append(
                measure(name, contender.url, image, concurrency, seconds, contender.field, contender.pid)
            )
    return rounds


def paired(with_it: list[LoadResult], without: list[LoadResult]) -> tuple[float, float, float]:
    """Median, low and high of the per-round ratios of two contenders' rates (each round ran both back to back)."""
    ratios = sorted(a.requests_per_second / b.requests_per_second for a, b in zip(with_it, without, strict=True))
    return statistics.median(ratios), ratios[0], ratios[-1]


def print_rounds(rounds: dict[str, list[LoadResult]], width: int) -> None:
    """Each contender's rate in every round, then its median round's rate, latencies and failures."""
    for name, runs in rounds.items():
        middle = median_run(runs)
        print(
            f"  {name:<{width}}"
            + "  ".join(f"{r.requests_per_second:>6,.0f}" for r in runs)
            + f"  req/s; median {middle.requests_per_second:,.0f}, p50 {middle.p50_ms:.1f} ms, "
            f"p99 {middle.p99_ms:.1f} ms, failed {sum(r.failed for r in runs)}"
        )


def print_paired(what: str, with_it: list[LoadResult], without: list[LoadResult]) -> None:
    middle, low, high = paired(with_it, without)
    print(f"  {what}: {middle:.3f} (paired rounds {low:.3f}..{high:.3f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each load run")
    parser.add_argument("--skip-bentoml", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    image, calibration = test_images()
    groups: dict[int, dict[str, list[LoadResult]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as folder, contextlib.ExitStack() as servers:
        workdir = Path(folder)
        storage, trusted, shadowed, model_path = build_model(workdir, calibration)
        raw = {batch: raw_throughput(model_path, image, args.seconds, batch) for batch in (32, 16)}

        def service_env(name: str, storage_url: Path, **settings: str) -> dict[str, str]:
            return service_settings(workdir / name, storage_url, **settings)

        bento = {"BENCH_MODEL_PATH": str(model_path)}
        started: dict[str, str] = {}
        pids: dict[str, int] = {}
        for name, command, env, ready in (
            (NOOP, uvicorn(NOOP_APP), {}, "/docs"),
            (SERVICE, uvicorn(SERVICE_APP), service_env("service", trusted), "/ready"),
            (
                NO_LOG,
                uvicorn(SERVICE_APP),
                service_env("no-log", trusted, MLOPS_SERVICE_LOG_PREDICTIONS="false"),
                "/ready",
            ),
            (NO_TRUST, uvicorn(SERVICE_APP), service_env("no-trust", storage), "/ready"),
            (SHADOWED, uvicorn(SERVICE_APP), service_env("shadow", shadowed), "/ready"),
            (
                HALF_BATCHES,
                uvicorn(SERVICE_APP),
                service_env("half-batches", trusted, MLOPS_SERVICE_BATCH_SIZE="16"),
                "/ready",
            ),
            (NOOP_2, uvicorn(NOOP_APP, workers=2), {}, "/docs"),
            (
                SERVICE_2,
                uvicorn(SERVICE_APP, workers=2),
                service_env("service-2", trusted, MLOPS_SERVICE_WORKERS="2"),  # told, as gunicorn's workers are
                "/ready",
            ),
            *(
                []
                if args.skip_bentoml
                else [
                    (BENTOML, bentoml_command(), bento, "/readyz"),
                    (BENTOML_2, bentoml_command(), {**bento, "BENCH_WORKERS": "2"}, "/readyz"),
                ]
            ),
        ):
            port = free_port()
            command = [*command, "--port", str(port)]
            process = servers.enter_context(server(command, env, port, ready, workdir / f"{port}.log"))
            started[name], pids[name] = f"http://127.0.0.1:{port}/predict", process.pid

        def contenders(*names: str) -> dict[str, Contender]:
            routes = {name: route(name) for name in names}
            return {
                name: Contender(started[loads], field, pids[loads])
                for name, (loads, field) in routes.items()
                if loads in started
            }

        groups[1] = interleaved(contenders(SERVICE, SERVICE_RAW, BENTOML), image, 1, args.seconds)
        groups[32] = interleaved(
            contenders(NOOP, NOOP_RAW, SERVICE, SERVICE_RAW, NO_LOG, NO_TRUST, SHADOWED, HALF_BATCHES, BENTOML),
            image,
            32,
            args.seconds,
        )
        groups[64] = interleaved(
            contenders(SERVICE, SERVICE_2, SERVICE_2_RAW, NOOP_2, BENTOML_2), image, 64, args.seconds
        )
        shadow_coverage = shadowed_share(started[SHADOWED].removesuffix("/predict"))
        groups[8] = {SERVICE: [measure(SERVICE, started[SERVICE], image, 8, args.seconds, pid=pids[SERVICE])]}
        servers.close()
        port = free_port()
        url = f"http://127.0.0.1:{port}/predict"
        with server(
            [*uvicorn("benchmarks.apps:create_naive_app"), "--port", str(port)], bento, port, "/docs", workdir / "v.log"
        ) as naive:
            groups[32][NAIVE] = [measure(NAIVE, url, image, 32, args.seconds, pid=naive.pid)]
    report(raw, groups)
    print(f"shadow coverage: {shadow_coverage:.1%} of answered predictions also predicted by the shadow")
    return 0


def shadowed_share(url: str) -> float:
    """Shadow predictions over answered ones, from the shadowed service's /metrics (it skips when behind)."""
    page = httpx.get(f"{url}/metrics", timeout=30).text

    def total(metric: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines() if line.startswith(metric + "{"))

    return total("dl_service_shadow_predictions_total") / max(total("dl_service_predictions_total"), 1.0)


def median_run(runs: list[LoadResult]) -> LoadResult:
    return sorted(runs, key=lambda r: r.requests_per_second)[len(runs) // 2]


def report(raw: dict[int, float], groups: dict[int, dict[str, list[LoadResult]]]) -> None:
    print(f"\nServing benchmark ({os.cpu_count()} cores, wrk on loopback, one process each unless named)")
    print(
        "(a) raw in-process batched inference: "
        + ", ".join(f"batch {b}: {rate:,.0f} images/s ({1000 * b / rate:.2f} ms a batch)" for b, rate in raw.items())
    )
    median: dict[tuple[str, int], LoadResult] = {}
    for concurrency, rounds in sorted(groups.items()):
        print(
            f"\nconcurrency {concurrency}" + (f", median of {ROUNDS} interleaved rounds:" if len(rounds) > 1 else ":")
        )
        for name, runs in rounds.items():
            median[(name, concurrency)] = median_run(runs)
            if len(runs) > 1:
                print(f"  {name:<40}" + "  ".join(f"{r.requests_per_second:>7,.0f}" for r in runs) + "  req/s")
    print(
        f"\n{'server':<42}{'conc.':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}"
        f"{'cores':>7}{'CPU ms/req':>11}{'loop busy':>10}{'wrk cores':>10}"
    )
    for (name, concurrency), r in sorted(median.items(), key=lambda item: (item[0][1], item[0][0])):
        print(
            f"{name:<42}{concurrency:>6}{r.requests_per_second:>10,.0f}{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}{r.failed:>8}"
            f"{r.cores:>7.2f}{r.cpu_ms_per_request:>11.3f}{r.loop_busy:>10.0%}{r.load_cores:>10.2f}"
        )
    failed = sum(r.failed for rounds in groups.values() for runs in rounds.values() for r in runs)
    print(f"\nfailed requests in every run together: {failed} (target 0)")

    def rate(name: str, concurrency: int) -> float:
        return median[(name, concurrency)].requests_per_second

    def ratio_line(what: str, with_it: str, without: str, concurrency: int, target: str) -> None:
        if (with_it, concurrency) in median and (without, concurrency) in median:
            middle, low, high = paired(groups[concurrency][with_it], groups[concurrency][without])
            print(f"{what:<52}{middle:>6.2f}x (paired rounds {low:.2f}..{high:.2f}; target {target})")

    print()
    ratio_line("/predict vs BentoML, concurrency 1", SERVICE, BENTOML, 1, ">= 1.0")
    ratio_line("/predict raw body vs BentoML, concurrency 1", SERVICE_RAW, BENTOML, 1, ">= 1.0")
    if (BENTOML, 1) in median:
        p50 = " / ".join(f"{median[(name, 1)].p50_ms:.1f}" for name in (SERVICE, SERVICE_RAW, BENTOML))
        print(f"{'p50 at concurrency 1: /predict, raw body, BentoML':<52}{p50} ms (target: /predict <= BentoML)")
    ratio_line("/predict vs the no-op upload, concurrency 32", SERVICE, NOOP, 32, ">= 0.5")
    ratio_line("/predict raw body vs the no-op raw body, concurrency 32", SERVICE_RAW, NOOP_RAW, 32, ">= 0.5")
    ratio_line("/predict vs BentoML, concurrency 32", SERVICE, BENTOML, 32, ">= 3")
    ratio_line("batches of 16 vs 32, concurrency 32", HALF_BATCHES, SERVICE, 32, "none: the overlap's worth")
    naive = rate(NAIVE, 32)
    versus_naive = f"{rate(SERVICE, 32) / naive:>6.1f}x" if naive else "  (naive answered nothing in the run)"
    print(f"{'/predict vs naive, concurrency 32':<52}{versus_naive} (target >= 20)")
    print(f"{'p99 of /predict at concurrency 32':<52}{median[(SERVICE, 32)].p99_ms:>6.1f} ms (target <= 70)")
    ratio_line("2 processes vs 1, concurrency 64", SERVICE_2, SERVICE, 64, ">= 1.6")
    ratio_line("2 processes vs BentoML with 2 workers, concurrency 64", SERVICE_2, BENTOML_2, 64, ">= 3")
    ratio_line("2 processes vs the 2-process no-op, concurrency 64", SERVICE_2, NOOP_2, 64, "none")
    where_the_time_goes(median)
    costs = (
        ("cost of the durable prediction log", SERVICE, NO_LOG, 15),
        ("cost of the trust layer", SERVICE, NO_TRUST, 5),
        ("cost of a shadow version", SHADOWED, SERVICE, 10),
    )
    for what, with_it, without, target in costs:
        middle, low, high = paired(groups[32][with_it], groups[32][without])
        print(
            f"{what:<52}{100 * (1 - middle):>5.1f}% (median of {ROUNDS} paired rounds, "
            f"range {100 * (1 - high):.0f}..{100 * (1 - low):.0f}%; target <= {target}%)"
        )


def print_batch_stages(what: str, run: LoadResult) -> None:
    """The mean batch of a dl_service run: its model call and log commit, its size, how often one went."""
    mean_ms = {stage: 1000 * total / count for stage, (count, total) in run.stages.items() if count}
    if "inference" in mean_ms and "log" in mean_ms:
        calls, images = run.stages["images"]
        print(
            f"{what:<52}{mean_ms['inference']:>6.2f} model, {mean_ms['log']:.2f} log commit; "
            f"{images / calls:.1f} images a batch, one every {1000 * run.wall_seconds / calls:.2f} ms"
        )


def where_the_time_goes(median: dict[tuple[str, int], LoadResult]) -> None:
    """What bounds the two ratios that compare the service with itself: how much of the run one process's
    event loop was busy, and how many requests per second the cores wrk leaves can hold at the CPU each
    request costs."""
    if (SERVICE, 32) in median and (NOOP, 32) in median:
        service, noop = median[(SERVICE, 32)], median[(NOOP, 32)]
        print(
            f"{'at 32, the event loop ran (of the run)':<52}{service.loop_busy:>6.0%} for /predict, "
            f"{noop.loop_busy:.0%} for the no-op; CPU per request {service.cpu_ms_per_request:.3f} ms "
            f"and {noop.cpu_ms_per_request:.3f} ms"
        )
        for name, label in ((SERVICE, "a batch of /predict"), (HALF_BATCHES, "a batch of at most 16")):
            if (name, 32) in median:
                print_batch_stages(f"  {label} at 32, off the loop (ms)", median[(name, 32)])
    if (SERVICE, 64) in median and (SERVICE_2, 64) in median:
        one, two, cores = median[(SERVICE, 64)], median[(SERVICE_2, 64)], os.cpu_count() or 1
        left = cores - two.load_cores  # what wrk leaves of the machine
        print(
            f"{'at 64, 2 processes used (cores)':<52}{two.cores:>6.2f} of {cores} (wrk {two.load_cores:.2f}), "
            f"{two.cpu_ms_per_request:.3f} ms CPU per request (one process: {one.cpu_ms_per_request:.3f})"
        )
        print(
            f"{'  the cores wrk leaves hold, at that cost':<52}{1000 * left / two.cpu_ms_per_request:>6,.0f} req/s; "
            f"1.6x one process ({1.6 * one.requests_per_second:,.0f}) needs <= "
            f"{1000 * left / (1.6 * one.requests_per_second):.3f} ms per request"
        )


if __name__ == "__main__":
    sys.exit(main())
