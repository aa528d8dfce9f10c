"""The quantized model server: Open Inference Protocol v2 over HTTP with dynamic batching.

``python -m workloads.server --model URI [--model-b URI] --port 8080`` loads a serving artifact
(``workloads.artifact``) from a local path, ``s3://`` or ``gs://`` URI, quantizes it for the
hardware (int8 with per-row activation scales on CPU, so batching never changes a request's
result; bf16 on CUDA; fp32 on request), reports the accuracy
cost on the artifact's held-out sample and serves it. Modules:

- :mod:`~workloads.server.config`: settings and the command line;
- :mod:`~workloads.server.protocol`: request validation, response encoding, typed errors;
- :mod:`~workloads.server.quantize`: serving graph and precisions;
- :mod:`~workloads.server.model`: a loaded, checked model and its drift monitor;
- :mod:`~workloads.server.batching`: the bounded queue and the model worker thread;
- :mod:`~workloads.server.metrics`: every Prometheus metric, defined once;
- :mod:`~workloads.server.app`: routes, connection limits, lifecycle and the lossless drain;
- :mod:`~workloads.server.loadgen`: a kube-proxy-like keep-alive load generator for drain
  measurements (benchmarks and tests).
"""
