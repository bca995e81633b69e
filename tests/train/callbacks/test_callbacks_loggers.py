import csv
import json
import math

import pytest

from kiln.train.callbacks import CSVLogger, JSONLogger

# values whose decimal repr is long: a lossy writer would change them
LOGS = [
    {"loss": 0.1 + 0.2, "accuracy": 1 / 3},
    {"loss": 2 / 3, "accuracy": 0.7, "val_loss": math.pi},  # val_loss appears in epoch 2
    {"loss": 1e-9, "accuracy": 0.71, "val_loss": 1.5e300},
]


def _csv_rows(path, sep=","):
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter=sep)
        return reader.fieldnames, list(reader)


def test_csv_parses_back_to_exactly_the_logged_numbers(fake, tmp_path):
    path = tmp_path / "logs" / "train.csv"
    fake.run(fake.Trainer(epochs=3), [CSVLogger(path, separator=";")], LOGS)
    header, rows = _csv_rows(path, sep=";")
    assert header == ["epoch", "loss", "accuracy", "val_loss"]  # widened when val_loss appeared
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert rows[0]["val_loss"] == ""
    for row, logs in zip(rows, LOGS, strict=True):
        assert {k: float(row[k]) for k in logs} == logs


def test_csv_row_is_on_disk_when_the_epoch_ends(fake, tmp_path):
    path = tmp_path / "train.csv"
    seen = []

    class Peek(CSVLogger):
        def on_epoch_end(self, trainer, epoch, logs):
            super().on_epoch_end(trainer, epoch, logs)
            seen.append(len(_csv_rows(path)[1]))

    fake.run(fake.Trainer(epochs=3), [Peek(path)], LOGS)
    assert seen == [1, 2, 3]


def test_csv_truncates_unless_append(fake, tmp_path):
    path = tmp_path / "train.csv"
    fake.run(fake.Trainer(epochs=2), [CSVLogger(path)], LOGS)
    fake.run(fake.Trainer(epochs=1), [CSVLogger(path)], LOGS)
    assert len(_csv_rows(path)[1]) == 1
    fake.run(fake.Trainer(epochs=3), [CSVLogger(path, append=True)], LOGS)
    assert [r["epoch"] for r in _csv_rows(path)[1]] == ["1", "1", "2", "3"]


@pytest.mark.parametrize("logger", [CSVLogger, JSONLogger])
def test_resume_continues_the_file_without_duplicate_epochs(fake, tmp_path, logger):
    path = tmp_path / "log"
    first = fake.Trainer(epochs=3, steps_per_epoch=4)
    cb_first = logger(path)
    fake.run(first, [cb_first], LOGS, stop_at_step=2 * 4 + 2)  # killed during epoch 3
    state = cb_first.state_dict()
    # the crashed run got further than its checkpoint: a stray row for epoch 3 is on disk
    cb_first.on_epoch_end(first, 2, dict(LOGS[2]))
    second = fake.Trainer(epochs=3, steps_per_epoch=4)
    second.epoch, second.step = first.epoch, first.step
    cb_second = logger(path)  # not append: resuming is what continues the file
    cb_second.load_state_dict(state)
    fake.run(second, [cb_second], LOGS)
    if logger is CSVLogger:
        epochs = [int(r["epoch"]) for r in _csv_rows(path)[1]]
    else:
        epochs = [json.loads(line)["epoch"] for line in path.read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_json_lines_parse_back_exactly(fake, tmp_path):
    path = tmp_path / "train.jsonl"
    logs = [*LOGS, {"loss": 0.5, "val_loss": math.nan}]
    trainer = fake.Trainer(epochs=4, steps_per_epoch=5)
    fake.run(trainer, [JSONLogger(path)], logs)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    times = [r["time"] for r in records]
    assert times == sorted(times) and times[0] > 1.6e9
    for record, expected in zip(records[:3], LOGS, strict=True):
        assert {k: record[k] for k in expected} == expected
    assert records[3]["val_loss"] is None  # NaN is written as null: every line is strict JSON


def test_loggers_write_on_the_main_process_only(fake, tmp_path):
    trainer = fake.Trainer(epochs=2, is_main_process=False)
    fake.run(trainer, [CSVLogger(tmp_path / "a.csv"), JSONLogger(tmp_path / "a.jsonl")], LOGS)
    assert list(tmp_path.iterdir()) == []
