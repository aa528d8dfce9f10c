"""Entry point of the Pulumi program (`main: stacks/` in Pulumi.yaml).

Reads the stack's `aicloud:` config from the engine, validates it before anything is created, and
builds the stack. A config error ends the run with the list of problems, not a traceback.
"""

import pulumi

from stacks.config import ConfigError, from_pulumi
from stacks.program import deploy

try:
    config = from_pulumi(pulumi.get_stack())
except ConfigError as exc:
    raise pulumi.RunError(exc.render()) from None

deploy(pulumi.get_stack(), config)
