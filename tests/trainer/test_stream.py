"""Parquet and Iceberg training data, streamed: the split, the sharding across ranks and workers,
exact resume, bounded reads, column mapping errors, and whole runs on local files, a local Iceberg
SQL catalog and moto S3 (``moto_server`` on 127.0.0.1: Arrow's S3 client is C++, so the
in-process mock cannot reach it)."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from workloads import storage
from workloads.artifact import load_artifact
from workloads.trainer import loop, stream
from workloads.trainer.config import DataConfig, merge, parse_overrides, preset
from workloads.trainer.data import synthetic
from workloads.trainer.distributed import DistContext
from workloads.trainer.loop import Preempted, Trainer
from workloads.trainer.stream import DataError, SlotStream, heldout_mask, open_stream

CPU = DistContext(0, 1, 0, torch.device("cpu"), None)
F, C = 16, 4


def write_dataset(root: Path, *, files: int = 3, rows: int = 2000, row_group: int = 500, wide: bool = True) -> None:
    """``files`` Parquet files of the debug task: columns f0..f15 (or one list column) + label."""
    root.mkdir(parents=True, exist_ok=True)
    x, y = synthetic(files * rows, F, C, 0)
    for i in range(files):
        xs, ys = x[i * rows : (i + 1) * rows].numpy(), y[i * rows : (i + 1) * rows].numpy().astype("int32")
        if wide:
            columns = {f"f{j}": xs[:, j] for j in range(F)}
        else:
            columns = {"x": pa.FixedSizeListArray.from_arrays(pa.array(xs.ravel()), F)}
        pq.write_table(pa.table({**columns, "label": ys}), root / f"part-{i:03d}.parquet", row_group_size=row_group)


def data_config(uri: str, **overrides: object) -> DataConfig:
    return DataConfig(source="parquet", uri=uri, in_features=F, num_classes=C, **overrides)  # type: ignore[arg-type]


def config(out: Path | str, *overrides: str):
    base = ["train.steps=30", "checkpoint.every=10", "checkpoint.keep_last=5", f"out={out}", "data.source=parquet"]
    return merge(preset("debug"), parse_overrides([*base, *overrides]))


def train(cfg) -> None:
    Trainer(cfg, CPU, stream=io.StringIO()).train()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("parquet")
    write_dataset(root)
    return root


# ------------------------------------------------------------------------------- the split
def test_heldout_split_is_a_fixed_fraction_independent_of_sharding() -> None:
    indices = np.arange(200_000)
    mask = heldout_mask(indices, 0.1, seed=0)
    assert abs(mask.mean() - 0.1) < 0.005
    assert np.array_equal(mask[1000:2000], heldout_mask(indices[1000:2000], 0.1, seed=0))
    assert not np.array_equal(mask, heldout_mask(indices, 0.1, seed=1))


def test_slots_partition_every_epoch_into_whole_row_groups(dataset: Path) -> None:
    source = open_stream(data_config(str(dataset)), 0).source
    assert len(source.units) == 12 and source.total_rows == 6000
    for slots in (1, 4, 5):  # 2 ranks x 2 workers; and a count that does not divide 12
        seen = []
        for slot in range(slots):
            units = SlotStream(source, data_config(str(dataset)), seed=0, slot=slot, slots=slots, batch_size=8)._units()
            first_epoch = []
            for epoch, index, _ in units:
                if epoch > 0:
                    break
                first_epoch.append(index)
            seen += first_epoch
        assert sorted(seen) == list(range(12)), slots


def test_ranks_read_disjoint_training_rows_and_never_heldout_rows(dataset: Path) -> None:
    cfg = data_config(str(dataset), read_rows=128)
    source = open_stream(cfg, 0).source
    table = pq.read_table(dataset)
    heldout = heldout_mask(np.arange(table.num_rows), cfg.heldout_fraction, 0)
    f0, f1 = (table.column(n).to_numpy()[~heldout] for n in ("f0", "f1"))
    train_keys = set(zip(f0.tolist(), f1.tolist(), strict=True))
    drawn: list[set[tuple[float, float]]] = []
    for slot in range(2):
        keys: set[tuple[float, float]] = set()
        batches = SlotStream(source, cfg, seed=0, slot=slot, slots=2, batch_size=50).batches()
        for _ in range(2400 // 50):  # about half an epoch of each slot
            x, _ = next(batches)
            keys |= {(float(a), float(b)) for a, b in x[:, :2].tolist()}
        drawn.append(keys)
    assert not drawn[0] & drawn[1]
    assert drawn[0] | drawn[1] <= train_keys


def test_seek_continues_exactly_where_the_stream_was(dataset: Path) -> None:
    cfg = data_config(str(dataset), read_rows=300)
    source = open_stream(cfg, 0).source
    slot = SlotStream(source, cfg, seed=3, slot=1, slots=2, batch_size=64)
    whole = [next(it) for it in [slot.batches()] for _ in range(70)]  # crosses an epoch
    resumed = slot.batches(skip_batches=45)
    for x, y in whole[45:]:
        rx, ry = next(resumed)
        assert torch.equal(x, rx) and torch.equal(y, ry)


def test_reads_are_bounded_by_read_rows(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    largest = []
    original = stream._columns_to_numpy

    def spy(batch, *args, **kwargs):
        largest.append(batch.num_rows)
        return original(batch, *args, **kwargs)

    monkeypatch.setattr(stream, "_columns_to_numpy", spy)
    cfg = data_config(str(dataset), read_rows=200)
    batches = SlotStream(open_stream(cfg, 0).source, cfg, seed=0, slot=0, slots=1, batch_size=32).batches()
    for _ in range(400):  # 12,800 rows: two epochs of the whole dataset
        next(batches)
    assert max(largest) == 200


# ---------------------------------------------------------------------------- column mapping
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"label": "target"}, r"data\.label: column 'target' is not in .*part-000\.parquet \(columns: f0, "),
        ({"features": ["f0", "nope"]}, r"data\.features: column 'nope' is not in "),
        ({"features": ["f0", "f1"]}, r"data\.in_features: got 16; the feature columns .* are 2 wide"),
        ({"label": "f3"}, r"data\.label: column 'f3' .* is float, not an integer"),
    ],
)
def test_column_mapping_errors_name_the_column(dataset: Path, overrides: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        open_stream(data_config(str(dataset), **overrides), 0)


def test_missing_data_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.uri: no \.parquet/\.parq files under"):
        open_stream(data_config(str(tmp_path / "empty")), 0)


def test_fixed_size_list_feature_column(tmp_path: Path) -> None:
    write_dataset(tmp_path / "lists", files=1, wide=False)
    cfg = data_config(str(tmp_path / "lists"), features=["x"])
    x, y = next(SlotStream(open_stream(cfg, 0).source, cfg, seed=0, slot=0, slots=1, batch_size=8).batches())
    assert x.shape == (8, F) and x.dtype == torch.float32 and y.dtype == torch.int64


# ------------------------------------------------------------------------------- whole runs
def test_trains_on_local_parquet_with_heldout_and_reference_from_the_source(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(config(out, f"data.uri={dataset}", "data.read_rows=256"))
    artifact = load_artifact(str(out / "model"))
    assert artifact.manifest["metrics"]["heldout_accuracy"] > 0.5
    rows = pq.read_table(dataset)
    heldout = heldout_mask(np.arange(rows.num_rows), 0.1, 0)
    first_heldout = np.stack([rows.column(f"f{j}").to_numpy()[heldout][:5] for j in range(F)], axis=1)
    assert np.allclose(artifact.heldout_x[:5].numpy(), first_heldout)
    assert artifact.reference["count"] == int((~heldout).sum())


def test_sigterm_mid_run_checkpoints_that_step_and_resume_is_exact(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM during step 17: the step finishes, a checkpoint of step 17 is written (no step
    lost), Preempted is raised, and the resumed run ends bit-identical to an uninterrupted one."""
    reference, preempted = tmp_path / "reference", tmp_path / "preempted"
    train(config(reference, f"data.uri={dataset}", "data.read_rows=256"))

    def sigterm_at_17(rank: int, step: int) -> None:
        if step == 16:  # arrives while step 17 is computed next
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(loop, "maybe_inject_fault", sigterm_at_17)
    with pytest.raises(Preempted) as info:
        train(config(preempted, f"data.uri={dataset}", "data.read_rows=256"))
    assert (info.value.step, info.value.signal_step) == (17, 16)
    assert (preempted / "checkpoints" / "ckpt-000000017.pt").exists()
    monkeypatch.undo()
    train(config(preempted, f"data.uri={dataset}", "data.read_rows=256"))
    a = load_artifact(str(reference / "model")).model.state_dict()
    b = load_artifact(str(preempted / "model")).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_trains_on_an_iceberg_table_through_a_sql_catalog(dataset: Path, tmp_path: Path) -> None:
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse"}
    sql = SqlCatalog("lake", **catalog)
    sql.create_namespace("features")
    table_data = pq.read_table(dataset)
    table = sql.create_table("features.debug", schema=table_data.schema)
    for batch in (table_data.slice(0, 3000), table_data.slice(3000)):
        table.append(batch)
    out = tmp_path / "run"
    cat = "{" + ", ".join(f"{k}: '{v}'" for k, v in catalog.items()) + "}"
    train(
        config(out, "data.source=iceberg", "data.table=features.debug", f"data.catalog={cat}", "data.catalog_name=lake")
    )
    assert load_artifact(str(out / "model")).manifest["metrics"]["heldout_accuracy"] > 0.5
    with pytest.raises(DataError, match=r"data\.table: no Iceberg table 'features\.missing' in catalog 'lake'"):
        train(
            config(
                tmp_path / "x",
                "data.source=iceberg",
                "data.table=features.missing",
                f"data.catalog={cat}",
                "data.catalog_name=lake",
            )
        )


# ------------------------------------------------------------------------------------ moto S3
@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A ``moto_server`` on a free 127.0.0.1 port (bounded readiness poll)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "moto_server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise TimeoutError("moto_server did not listen within 30 s")
    yield f"http://127.0.0.1:{port}"
    proc.kill()
    proc.wait(timeout=30)


@pytest.fixture
def s3_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    storage._s3_client_for.cache_clear()
    return moto_endpoint


def test_trains_from_s3_through_a_lake_uri(
    dataset: Path, s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.s3_client().create_bucket(Bucket="lake-curated")
    for path in sorted(dataset.iterdir()):
        storage.write_bytes(f"s3://lake-curated/features/debug/{path.name}", path.read_bytes())
    monkeypatch.setenv("AICLOUD_LAKE_CURATED", "s3://lake-curated")
    out = "s3://lake-curated/runs/r1"
    train(config(out, "data.uri=lake://curated/features/debug", "data.read_rows=512"))
    artifact = load_artifact(f"{out}/model")
    assert artifact.manifest["metrics"]["heldout_accuracy"] > 0.5
    assert open_stream(data_config("lake://curated/features/debug"), 0).source.total_rows == 6000


def test_missing_s3_bucket_is_named(s3_env: str) -> None:
    with pytest.raises(DataError, match=r"data\.uri: cannot list s3://no-such-bucket/x: .*NoSuchBucket"):
        open_stream(data_config("s3://no-such-bucket/x"), 0)


def test_workers_stream_the_same_batches_as_the_slots_they_stand_for(dataset: Path) -> None:
    """With DataLoader workers a rank's batch j comes from worker j % workers (spawned processes)."""
    cfg = data_config(str(dataset), read_rows=256, workers=2, prefetch=2)
    source = open_stream(cfg, 0).source
    batches = stream.StreamBatches(source, cfg, batch_size=32, rank=1, world_size=2, seed=0, device=torch.device("cpu"))
    batches.seek(5)
    got = [batches.next() for _ in range(6)]
    slots = [SlotStream(source, cfg, seed=0, slot=2 + w, slots=4, batch_size=32) for w in range(2)]
    # 5 drawn before: worker 0 made 3 (j=0,2,4), worker 1 made 2 (j=1,3); j=5 is worker 1's third
    expected_iters = [slots[0].batches(3), slots[1].batches(2)]
    for j, (x, y) in enumerate(got, start=5):
        ex, ey = next(expected_iters[j % 2])
        assert torch.equal(x, ex) and torch.equal(y, ey)
