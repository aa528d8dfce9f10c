"""Moved to `contracts.retrain` (shared by the RetrainingPipeline component and the trigger)."""

from contracts.retrain import *  # noqa: F403
from contracts.retrain import __all__  # noqa: F401
