"""The micro-batcher's wait, A/B: the adaptive wait (BATCH_WAIT_MS 2, taken only while requests arrive
closer together than that) against no wait at all (BATCH_WAIT_MS 0), plain and with a shadow version on
every batch, at concurrency 1 and 32, in interleaved paired rounds (benchmarks/serving.py's machinery).

    python benchmarks/batch_wait.py [--seconds 8] [--rounds 4]        (about 6 min)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import serving
from deployments.stack.servers import free_port

ADAPTIVE, NO_WAIT = "adaptive wait (2 ms)", "no wait (0 ms)"
SHADOW_ADAPTIVE, SHADOW_NO_WAIT = "+ shadow, adaptive wait", "+ shadow, no wait"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    serving.ROUNDS = args.rounds
    image, calibration = serving.test_images()
    with tempfile.TemporaryDirectory(prefix="bench-batch-wait-") as folder, contextlib.ExitStack() as servers:
        workdir = Path(folder)
        _, trusted, shadowed, _ = serving.build_model(workdir, calibration)
        started = {}
        for number, (name, storage, wait) in enumerate(
            (
                (ADAPTIVE, trusted, "2"),
                (NO_WAIT, trusted, "0"),
                (SHADOW_ADAPTIVE, shadowed, "2"),
                (SHADOW_NO_WAIT, shadowed, "0"),
            )
        ):
            env = serving.service_settings(workdir / str(number), storage, MLOPS_SERVICE_BATCH_WAIT_MS=wait)
            port = free_port()
            command = [*serving.uvicorn(serving.SERVICE_APP), "--port", str(port)]
            servers.enter_context(serving.server(command, env, port, "/ready", workdir / f"{number}.log"))
            started[name] = serving.Contender(f"http://127.0.0.1:{port}/predict")
        for concurrency, names in ((1, (ADAPTIVE, NO_WAIT)), (32, tuple(started))):
            rounds = serving.interleaved({name: started[name] for name in names}, image, concurrency, args.seconds)
            print(f"\nconcurrency {concurrency}, median of {args.rounds} interleaved rounds")
            serving.print_rounds(rounds, 26)
            pairs = [(ADAPTIVE, NO_WAIT)] + (
                [(SHADOW_ADAPTIVE, ADAPTIVE), (SHADOW_NO_WAIT, NO_WAIT)] if concurrency > 1 else []
            )
            for with_it, against in pairs:
                serving.print_paired(f"{with_it} / {against}", rounds[with_it], rounds[against])
    return 0


if __name__ == "__main__":
    sys.exit(main())
