"""``python -m workloads.trainer``: run :func:`workloads.trainer.cli.main` and exit at once.

The process ends with ``os._exit`` right after flushing: by then the process group is gone
(``cli.main`` tears it down), and skipping interpreter finalisation avoids the gloo abort at exit
("terminate called without an active exception") while keeping main's exit code exact.
"""

import logging
import os
import sys

from workloads.trainer.cli import main

code = main()
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
