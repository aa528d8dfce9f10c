"""Our model server against KServe's Python model server, same model, same load, one run.

    python benchmarks/server_vs_kserve.py [--duration 3] [--kserve-version 0.21.0] [--json out.json]

- KServe (the ``kserve`` package: its ``ModelServer``, FastAPI on uvicorn, with a ``kserve.Model``
  whose ``predict`` runs the model) is installed by this script into its own virtualenv under
  ``$XDG_CACHE_HOME/aicloud-bench/kserve-<version>`` (default ``~/.cache``), never into the
  project's environment. The first run takes about a minute (pip); later runs reuse it.
- Both serve the same reference MLP (256 -> 3 x 1024 -> 10, the same weights) at fp32 and at int8;
  the KServe model imports this repository's ``workloads.server.quantize.prepare_model``, so both
  run the very same prepared module (int8: per-row ``RowwiseInt8Linear``). What differs is the
  serving stack: our dynamic batching and fast path against KServe's per-request ``predict``.
- Pinned alike: each server on CPU 0 with one torch thread, the load generator on CPU 1 (the
  closed-loop asyncio client of ``benchmarks/server_throughput.py``: keep-alive, one connection
  per concurrent client, batch-1 JSON v2 requests). The two servers alternate per case so that
  drift of a shared machine hits both; requests/s ratios are printed side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import orjson
import torch
import uvloop

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from server_throughput import CLIENT_CPU, SERVER_CPU, _free_port, _load, _wait_ready  # noqa: E402

from workloads.artifact import save_artifact  # noqa: E402
from workloads.drift import compute_reference  # noqa: E402
from workloads.models import build_model  # noqa: E402

MLP = {"in_features": 256, "hidden": [1024, 1024, 1024], "num_classes": 10}
CONCURRENCY = (1, 64)

KSERVE_MODEL = textwrap.dedent(
    '''
    """The reference MLP served by KServe's ModelServer (written by benchmarks/server_vs_kserve.py)."""
    import argparse
    import sys

    import numpy as np
    import torch
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
    from kserve.utils.utils import generate_uuid

    cli = argparse.ArgumentParser()
    cli.add_argument("--repo")
    cli.add_argument("--state")
    cli.add_argument("--precision")
    cli.add_argument("--port", type=int)
    opts, _ = cli.parse_known_args()
    sys.path.insert(0, opts.repo)
    from workloads.models import build_model  # noqa: E402
    from workloads.server.quantize import prepare_model  # noqa: E402

    MLP = {"in_features": 256, "hidden": [1024, 1024, 1024], "num_classes": 10}


    class Bench(Model):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            torch.set_num_threads(1)
            model = build_model("mlp", **MLP)
            model.load_state_dict(torch.load(opts.state, weights_only=True))
            self.module = prepare_model(
                model.eval(), precision=opts.precision, device=torch.device("cpu"), engine="rowwise"
            )
            self.ready = True

        def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
            x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
            with torch.inference_mode():
                y = self.module(torch.from_numpy(x)).numpy()
            out = InferOutput(name="output__0", shape=list(y.shape), datatype="FP32")
            out.set_data_from_numpy(y, binary_data=False)
            return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name, infer_outputs=[out])


    if __name__ == "__main__":
        ModelServer(http_port=opts.port, enable_grpc=False, workers=1, enable_latency_logging=False).start(
            [Bench("bench")]
        )
    '''
)


def kserve_python(version: str) -> Path:
    """The Python of a virtualenv holding ``kserve==version`` (created on first use)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aicloud-bench" / f"kserve-{version}"
    python = cache / "bin" / "python"
    marker = cache / ".installed"
    if marker.exists():
        return python
    print(f"installing kserve=={version} into {cache} (first run only) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(cache)], check=True)
    started = time.monotonic()
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"kserve=={version}", f"torch=={torch.__version__}", "numpy"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install kserve=={version} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    marker.write_text(f"installed in {time.monotonic() - started:.0f} s\n")
    return python


def _serve_and_load(cmd: list[str], port: int, body_bytes: list[bytes], path: str, seconds: float,
                    warmup: float, log: Path) -> list[dict]:  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(["taskset", "-c", str(SERVER_CPU), *cmd], stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_ready(port, proc, timeout=180)
            runs = []
            for c in CONCURRENCY:
                r = uvloop.run(_load(port, path, body_bytes, c, seconds, warmup))
                runs.append({"concurrency": c, "rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
                             "errors": r.errors, "requests": r.requests})  # fmt: skip
            return runs
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--kserve-version", default="0.21.0")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        print("needs two CPUs (server core and client core)", file=sys.stderr)
        return 2
    try:
        kserve = kserve_python(args.kserve_version)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"KServe could not be installed here: {exc}", file=sys.stderr)
        return 1
    os.sched_setaffinity(0, {CLIENT_CPU})
    print(f"load average before: {os.getloadavg()}")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = build_model("mlp", **MLP).eval()
        x = torch.randn(256, MLP["in_features"])
        with torch.no_grad():
            y = model(x).argmax(dim=1)
        artifact = save_artifact(
            str(Path(tmp) / "model"),
            model=model,
            arch="mlp",
            kwargs=MLP,
            heldout_x=x,
            heldout_y=y,
            reference=compute_reference(x.numpy()),
            name="bench",
            version=1,
        )
        state = Path(tmp) / "state.pt"
        torch.save(model.state_dict(), state)
        script = Path(tmp) / "kserve_model.py"
        script.write_text(KSERVE_MODEL)
        rng = np.random.default_rng(0)
        bodies = [
            orjson.dumps({"inputs": [{"name": "input__0", "shape": [1, MLP["in_features"]], "datatype": "FP32",
                                      "data": rng.standard_normal(MLP["in_features"], dtype=np.float32)}]},
                         option=orjson.OPT_SERIALIZE_NUMPY)
            for _ in range(64)
        ]  # fmt: skip
        path = "/v2/models/bench/infer"
        log = Path(tmp) / "servers.log"
        for precision in ("fp32", "int8"):
            for server in ("aicloud", "kserve"):
                port = _free_port()
                if server == "aicloud":
                    cmd = [sys.executable, "-m", "workloads.server", "--model", artifact, "--host", "127.0.0.1",
                           "--port", str(port), "--precision", precision, "--torch-threads", "1",
                           "--log-level", "warning"]  # fmt: skip
                else:
                    # No access or trace logging, like ours (--configure_logging false leaves
                    # uvicorn's access logger without handlers, so uvicorn skips it).
                    cmd = [str(kserve), str(script), "--repo", str(REPO), "--state", str(state),
                           "--precision", precision, "--port", str(port), "--configure_logging", "false"]  # fmt: skip
                runs = _serve_and_load(cmd, port, bodies, path, args.duration, args.warmup, log)
                results[f"{server}/{precision}"] = {"runs": runs}
                for r in runs:
                    print(
                        f"  {server:8s} {precision}  c={r['concurrency']:<3d} {r['rps']:8.0f} req/s  "
                        f"p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}",
                        flush=True,
                    )
        if any(r["requests"] == 0 for v in results.values() for r in v["runs"]):
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
    print(f"load average after: {os.getloadavg()}")
    ratios = {}
    for precision in ("fp32", "int8"):
        for i, c in enumerate(CONCURRENCY):
            ours = results[f"aicloud/{precision}"]["runs"][i]["rps"]
            theirs = results[f"kserve/{precision}"]["runs"][i]["rps"]
            ratios[f"{precision}/c={c}"] = ours / theirs if theirs else float("inf")
            print(f"aicloud / KServe {precision} c={c}: {ours:.0f} / {theirs:.0f} req/s = {ours / theirs:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"kserve_version": args.kserve_version, "results": results,
                                               "ratios": ratios}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
