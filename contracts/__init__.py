"""Contracts the workload images and the infrastructure share, in one neutral place.

`workloads/*` (what runs in the images) and `components/*` (what deploys them) both import from
here and never from each other: lake URIs (`contracts.lake`), the model server's ports, paths and
metric names (`contracts.serving`), and the retraining trigger's settings file
(`contracts.retrain`). Plain Python only: no Pulumi, torch or cloud SDKs.
"""
