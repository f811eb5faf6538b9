"""Serving throughput, side by side in one run, on one model (the train config's architecture):

  (a) raw in-process batched inference           (b) a no-op upload endpoint on the same stack
  (c) dl_service /predict at concurrency 1..64   (d) the naive design: model.predict per request
  (e) BentoML 1.4 with adaptive batching, the same model, the same number of worker processes
  (f) the cost of the trust layer: /predict of the same model with and without calibration, prediction
      sets and the out-of-distribution score (interleaved, paired rounds)
  (g) the cost of shadow mode: /predict while a second version predicts every micro-batch and logs beside it

    make bench-serving        (or: python benchmarks/serving.py [--seconds 8])

Load comes from wrk (Debian's package) on loopback, uploading a real Fashion-MNIST PNG.
BentoML runs from its own virtual environment (.mlops/bench/bentoml-venv), built on first use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONCURRENCY = (1, 8, 32, 64)
ROUNDS = 6  # even: the order reverses every round, so a steady drift of the machine cancels out
NOOP, SERVICE, NO_LOG = "(b) no-op upload", "(c) dl_service /predict", "(c') dl_service, logging off"
NAIVE, BENTOML = "(d) naive per-request", "(e) BentoML 1.4 adaptive"
NO_TRUST = "(f) dl_service, no trust layer"
SHADOWED = "(g) dl_service + shadow version"

from deployments.stack.servers import free_port  # noqa: E402  (ROOT is on sys.path from here on)


@dataclass
class LoadResult:
    name: str
    concurrency: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    failed: int


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
            yield
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


def measure(name: str, url: str, image: Path, concurrency: int, seconds: float, field: str = "file") -> LoadResult:
    wrk(url, image, concurrency, min(2.0, seconds), field)  # warm-up
    summary = wrk(url, image, concurrency, seconds, field)
    return LoadResult(
        name,
        concurrency,
        summary["requests"] / (summary["duration_us"] / 1e6),
        summary["p50_us"] / 1000,
        summary["p99_us"] / 1000,
        int(summary["errors"] + summary["non2xx"]),
    )


def uvicorn(factory: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each load run")
    parser.add_argument("--skip-bentoml", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    from tasks.data.dataset import read_manifest

    data_dir = ROOT / "datasets" / "fashion-mnist" / "data"
    manifest = read_manifest(data_dir)
    from tasks.core.preprocessing import InputSpec, preprocess

    test_paths = manifest.loc[manifest["split"] == "test", "path"]
    image = data_dir / test_paths.iloc[0]
    calibration = np.stack([preprocess((data_dir / p).read_bytes(), InputSpec(28, 28)) for p in test_paths[:512]])
    results: list[LoadResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as folder, contextlib.ExitStack() as servers:
        workdir = Path(folder)
        storage, trusted, shadowed, model_path = build_model(workdir, calibration)
        raw = raw_throughput(model_path, image, args.seconds)
        service_env = {
            "MLOPS_HOME": str(workdir / "state"),
            "MLOPS_STORAGE_URL": str(trusted),
            "MLOPS_PREDICTION_DB_URL": f"sqlite:///{workdir / 'predictions.db'}",
        }
        no_log = {**service_env, "MLOPS_SERVICE_LOG_PREDICTIONS": "false"}
        no_trust = {
            "MLOPS_HOME": str(workdir / "state-no-trust"),
            "MLOPS_STORAGE_URL": str(storage),
            "MLOPS_PREDICTION_DB_URL": f"sqlite:///{workdir / 'predictions-no-trust.db'}",
        }
        with_shadow = {
            "MLOPS_HOME": str(workdir / "state-shadow"),
            "MLOPS_STORAGE_URL": str(shadowed),
            "MLOPS_PREDICTION_DB_URL": f"sqlite:///{workdir / 'predictions-shadow.db'}",
        }
        # The servers compared at concurrency 32 run side by side and take turns, ROUNDS times, the order
        # reversed every round: this shared machine drifts by +-20% within minutes, so one run each
        # would compare noise, and a fixed order would charge the drift to whoever runs last.
        urls = {}
        for name, factory, env, ready in (
            (NOOP, "benchmarks.apps:create_noop_app", {}, "/docs"),
            (SERVICE, "services.dl_service.app:create_app", service_env, "/ready"),
            (NO_LOG, "services.dl_service.app:create_app", no_log, "/ready"),
            (NO_TRUST, "services.dl_service.app:create_app", no_trust, "/ready"),
            (SHADOWED, "services.dl_service.app:create_app", with_shadow, "/ready"),
        ):
            port = free_port()
            servers.enter_context(server(uvicorn(factory, port), env, port, ready, workdir / f"{port}.log"))
            urls[name] = f"http://127.0.0.1:{port}/predict"
        rounds: dict[str, list[LoadResult]] = {name: [] for name in urls}
        for round_number in range(ROUNDS):
            order = list(urls.items()) if round_number % 2 == 0 else list(reversed(urls.items()))
            for name, url in order:
                rounds[name].append(measure(name, url, image, 32, args.seconds))
        results.extend(median_run(runs) for runs in rounds.values())
        shadow_coverage = shadowed_share(urls[SHADOWED].removesuffix("/predict"))
        for concurrency in (c for c in CONCURRENCY if c != 32):
            results.append(measure(SERVICE, urls[SERVICE], image, concurrency, args.seconds))
        servers.close()
        port = free_port()
        url = f"http://127.0.0.1:{port}/predict"
        naive_env = {"BENCH_MODEL_PATH": str(model_path)}
        with server(uvicorn("benchmarks.apps:create_naive_app", port), naive_env, port, "/docs", workdir / "v.log"):
            results.append(measure(NAIVE, url, image, 32, args.seconds))
        if not args.skip_bentoml:
            command = [
                str(bentoml_python()),
                "-m",
                "bentoml",
                "serve",
                "benchmarks.bentoml_service:Classifier",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            with server(command, naive_env, port, "/readyz", workdir / "bentoml.log"):
                results.append(measure(BENTOML, url, image, 32, args.seconds, field="files"))
    report(raw, sorted(results, key=lambda r: (r.name, r.concurrency)), rounds)
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


def report(raw: float, results: list[LoadResult], rounds: dict[str, list[LoadResult]]) -> None:
    print(f"\nServing benchmark ({os.cpu_count()} cores, one worker process each, wrk on loopback)")
    print(f"(a) raw in-process batched inference (batch 32): {raw:,.0f} images/s")
    print(f"concurrency 32, median of {ROUNDS} interleaved rounds:")
    for name, runs in rounds.items():
        print(f"  {name:<30}" + "  ".join(f"{r.requests_per_second:>7,.0f}" for r in runs) + "  req/s")
    print(f"{'server':<32}{'conc.':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}")
    for r in results:
        print(
            f"{r.name:<32}{r.concurrency:>6}{r.requests_per_second:>10,.0f}{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}{r.failed:>8}"
        )
    by_name = {(r.name, r.concurrency): r.requests_per_second for r in results}
    ours, noop = by_name[(SERVICE, 32)], by_name[(NOOP, 32)]
    print(f"\n/predict at 32 vs min(raw, no-op): {ours / min(raw, noop):.2f} (target >= 0.7)")
    print(f"/predict at 32 vs naive:           {ours / by_name[(NAIVE, 32)]:.1f}x (target >= 20)")
    bento = by_name.get((BENTOML, 32))
    if bento:
        print(f"/predict at 32 vs BentoML:         {ours / bento:.2f}x (target >= 1.0)")
    # Each round runs them back to back, so their ratio is paired against the machine's drift.
    costs = (
        ("the durable prediction log", SERVICE, NO_LOG, 15),
        ("the trust layer", SERVICE, NO_TRUST, 5),
        ("a shadow version", SHADOWED, SERVICE, 10),
    )
    for what, with_it, without, target in costs:
        paired = sorted(
            on.requests_per_second / off.requests_per_second
            for on, off in zip(rounds[with_it], rounds[without], strict=True)
        )
        print(
            f"cost of {what}: {100 * (1 - statistics.median(paired)):.1f}% (median of {len(paired)} paired rounds, "
            f"range {100 * (1 - paired[-1]):.0f}..{100 * (1 - paired[0]):.0f}%; target <= {target}%)"
        )


if __name__ == "__main__":
    sys.exit(main())
