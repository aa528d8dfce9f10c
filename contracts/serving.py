"""The model server's contract with what deploys it: port, health and metrics paths, metric names.

`workloads/server` serves these; `components/endpoint` probes, scrapes and autoscales on them.
"""

from __future__ import annotations

SERVER_PORT = 8080
"""The model server's HTTP port (`python -m workloads.server --port`, default 8080)."""
PORT_NAME = "http"
READY_PATH = "/v2/health/ready"
"""Open Inference Protocol v2 readiness: 200 once every model is loaded, 503 before and while
draining. Readiness and startup probes and every load balancer health check use it."""
LIVE_PATH = "/v2/health/live"
"""Open Inference Protocol v2 liveness: 200 while the process runs."""
METRICS_PATH = "/metrics"
METRICS_PORT = 9464
"""The server's metrics port in a cluster (`--metrics-port`): only Prometheus may reach it, and no
Service a load balancer targets exposes it (not 9090/9091: Knative's queue-proxy, the sidecar of
serverless KServe pods, listens there)."""
METRICS_PORT_NAME = "metrics"
REQUESTS_METRIC = "aicloud_server_requests_total"
"""The server's request counter (`workloads.server.metrics.REQUESTS`), the KEDA trigger's input."""
REQUEST_DURATION_METRIC = "aicloud_server_request_duration_seconds"
"""The server's request latency histogram (`..._bucket` series feed the latency alert)."""
FEATURE_PSI_METRIC = "aicloud_server_feature_psi"
"""Per-feature drift (PSI) gauge the retraining trigger and the drift alert read."""
DRIFT_ROWS_METRIC = "aicloud_server_drift_rows"
"""Rows behind the current feature_psi values (the trigger's minimum-evidence guard)."""
SERVICE_PORT = 80
"""Port of the model's Services inside the cluster (forwarded to the pod's `http` port)."""
RUN_AS_USER = 10001
"""Non-root user and group the server runs as (any non-zero id works: the image needs no home)."""
