"""Command line of the trainer: presets, config files, ``--set`` overrides, exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import traceback
import typing
from typing import Any

import yaml

import contracts.trainer as contract
from workloads import storage
from workloads.models import FactoryError
from workloads.trainer import distributed
from workloads.trainer.config import (
    PRESETS,
    ConfigError,
    TrainerConfig,
    merge,
    parse_overrides,
    preset,
    to_dict,
)
from workloads.trainer.loop import Preempted, Trainer

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "EXIT_PREEMPTED",
    "build_config",
    "check_outputs",
    "main",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_PREEMPTED = contract.EXIT_PREEMPTED
"""128 + SIGTERM: checkpointed and stopped on SIGTERM. Job controllers retry it: Kubeflow's
``restartPolicy: ExitCode`` treats 128-255 as retryable, and a Job's ``podFailurePolicy`` can
match it; torchrun reports it as the worker's exit code."""


def _config_keys() -> str:
    """One line per settable key with its type and default, for --help."""
    lines = []
    defaults = TrainerConfig()
    for section in dataclasses.fields(TrainerConfig):
        value = getattr(defaults, section.name)
        if not dataclasses.is_dataclass(value):
            lines.append(f"  {section.name}")
            continue
        hints = typing.get_type_hints(type(value))
        for f in dataclasses.fields(value):
            hint = hints[f.name]
            kind = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            lines.append(f"  {section.name}.{f.name}: {kind} = {getattr(value, f.name)!r}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workloads.trainer",
        description="Train a model with PyTorch DDP (launch under torchrun for several processes) "
        "and export a serving artifact. Config = preset, then --config FILE, then --set / flags.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="keys for --set (defaults shown are the base defaults, before a preset):\n"
        + _config_keys()
        + "\n\nexit codes: 0 done, 1 training failed, 2 bad usage, config, URI or data, 130 interrupted, "
        "143 preempted by SIGTERM after a checkpoint (retry resumes)",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset")
    parser.add_argument("--config", metavar="FILE", help="YAML/JSON file (any storage URI)")
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one key, value parsed as YAML: --set train.steps=20 --set 'model.hidden=[64, 64]' (repeatable)",
    )
    parser.add_argument("--out", help="run directory URI (same as --set out=...)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus port (same as metrics.port)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    return parser


def build_config(args: argparse.Namespace) -> TrainerConfig:
    """Preset, then config file, then overrides; raises ConfigError naming the bad key."""
    config = preset(args.preset) if args.preset else TrainerConfig()
    if args.config:
        loaded: Any = yaml.safe_load(storage.read_bytes(args.config))
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config: {args.config} must hold a mapping of sections")
        config = merge(config, loaded)
    overrides = parse_overrides(args.overrides)
    if args.out is not None:
        overrides["out"] = args.out
    if args.metrics_port is not None:
        overrides.setdefault("metrics", {})["port"] = args.metrics_port
    config = merge(config, overrides)
    if config.out is None and not args.print_config:
        raise ConfigError("out: got None; allowed: a local path or file://, s3://, gs:// URI (pass --out)")
    return config


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_outputs(config: TrainerConfig) -> None:
    """Fail now, not after training, when ``out``, ``export.uri`` or ``metrics.uri`` is malformed
    or cannot be written: each is parsed (lake:// resolved) and a probe object is written and
    deleted under it. Raises ConfigError naming the key, the URI and the reason."""
    assert config.out is not None
    metrics_uri = config.metrics.uri or storage.join(config.out, "metrics.jsonl")
    targets = [("out", config.out, config.out), ("metrics.uri", metrics_uri, metrics_uri.rpartition("/")[0] or ".")]
    if config.export.enabled:
        targets.append(("export.uri", config.export.uri or storage.join(config.out, "model"), None))
    for key, uri, probe_dir in targets:
        where = probe_dir or uri
        probe = storage.join(where, f".aicloud-probe-{os.environ.get('RANK', '0')}-{os.getpid()}")
        try:
            storage.local_path(uri)  # scheme, bucket and lake:// resolution
            storage.write_bytes(probe, b"")
            storage.delete(probe)
        except Exception as exc:  # botocore, google and OS errors alike: say which key failed
            raise ConfigError(f"{key}: cannot write {uri!r}: {_one_line(exc)}") from exc


def main(argv: list[str] | None = None) -> int:
    """Parse, train, tear down; returns the exit code (see --help)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help or a usage error
        return int(exc.code or 0)
    try:
        config = build_config(args)
        if not args.print_config:
            check_outputs(config)
    except FileNotFoundError as exc:
        print(f"config error: --config: {args.config} does not exist ({_one_line(exc)})", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"config error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a malformed --config URI, unreadable object store, bad YAML
        print(f"config error: --config {args.config}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if args.print_config:
        print(json.dumps(to_dict(config), indent=2))
        return EXIT_OK
    ctx = None
    code = EXIT_FAILED
    try:
        ctx = distributed.setup(config.train.device)
        Trainer(config, ctx).train()
        code = EXIT_OK
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Preempted as exc:
        print(f"{exc}; exiting {EXIT_PREEMPTED} so the job is retried", file=sys.stderr)
        code = EXIT_PREEMPTED
    except (ConfigError, FactoryError) as exc:
        print(f"config error: {_one_line(exc)}", file=sys.stderr)
        code = EXIT_USAGE
    except Exception:
        traceback.print_exc()
    finally:
        try:
            distributed.teardown(ctx, clean=code in (EXIT_OK, EXIT_PREEMPTED))
        except Exception:
            traceback.print_exc()
            code = EXIT_FAILED
    return code
