"""The aicloud PyTorch DDP trainer.

Launch with torchrun (or plainly, as one process)::

    torchrun --standalone --nproc-per-node=2 -m workloads.trainer --preset debug --out /tmp/run1
    python -m workloads.trainer --preset debug --out file:///tmp/run1 --set train.steps=20

See ``python -m workloads.trainer --help`` for the configuration keys.
"""

from workloads.trainer.config import PRESETS, ConfigError, TrainerConfig, preset
from workloads.trainer.loop import Trainer, TrainResult
from workloads.trainer.telemetry import METRICS

__all__ = ["PRESETS", "ConfigError", "TrainerConfig", "preset", "Trainer", "TrainResult", "METRICS"]
