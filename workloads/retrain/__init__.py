"""Drift-triggered retraining: the decisions, as plain Python run by a Kubernetes CronJob.

- :mod:`~workloads.retrain.detect`: drift on real arrays (PSI plus a two-sample chi-square test);
- :mod:`~workloads.retrain.gate`: the evaluation gate and the rollout decision;
- :mod:`~workloads.retrain.decisions`: the append-only decision log (one object per decision);
- :mod:`~workloads.retrain.clients`: Prometheus and Kubernetes, thin;
- :mod:`~contracts.retrain`: the settings the component renders and the trigger reads;
- :mod:`~workloads.retrain.controller`: one tick of the loop (``run_once``).

``python -m workloads.retrain --settings /etc/aicloud-retrain/settings.json`` runs one tick with the
settings the ``RetrainingPipeline`` component renders into a ConfigMap.
"""
