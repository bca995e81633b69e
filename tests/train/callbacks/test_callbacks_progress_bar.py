import io
import re

from rich.console import Console

from kiln.train.callbacks import ProgressBar

LOGS = [
    {"loss": 0.0412, "accuracy": 0.9871, "val_loss": 0.05, "lr": 1e-4},
    {"loss": 0.03, "accuracy": 0.99, "val_loss": 0.04, "lr": 5e-5},
]


def _console(terminal=False):
    return Console(file=io.StringIO(), force_terminal=terminal, width=120)


def _fit(fake, verbose, console, **trainer_kwargs):
    trainer = fake.Trainer(epochs=2, steps_per_epoch=4, verbose=verbose, **trainer_kwargs)
    fake.run(trainer, [ProgressBar(console=console)], LOGS)
    return console.file.getvalue()


SUMMARY = (
    r"Epoch 1/2 · 4/4 · \d+\.\ds · loss 0\.0412 · accuracy 0\.9871 · val_loss 0\.0500"
    r" · lr 1\.000e-04\n"
    r"Epoch 2/2 · 4/4 · \d+\.\ds · loss 0\.0300 · accuracy 0\.9900 · val_loss 0\.0400"
    r" · lr 5\.000e-05\n"
)


def test_verbose_2_prints_one_summary_line_per_epoch(fake):
    assert re.fullmatch(SUMMARY, _fit(fake, 2, _console()))


def test_verbose_1_off_a_terminal_prints_only_the_summaries(fake):
    out = _fit(fake, 1, _console())
    assert re.fullmatch(SUMMARY, out)
    assert "\x1b" not in out


def test_verbose_0_and_other_processes_print_nothing(fake):
    assert _fit(fake, 0, _console()) == ""
    assert _fit(fake, 1, _console(), is_main_process=False) == ""


def test_the_bar_shows_steps_and_the_latest_metrics(fake):
    console = _console(terminal=True)
    frames = []

    class Snapshot(ProgressBar):
        def on_batch_end(self, trainer, step, logs):
            super().on_batch_end(trainer, step, logs)
            if step == 2:  # the fake trainer hands over {"loss": step} every 2 steps
                self._progress.refresh()
                frames.append(console.file.getvalue())

    trainer = fake.Trainer(epochs=2, steps_per_epoch=4, verbose=1)
    fake.run(trainer, [Snapshot(console=console)], LOGS)
    assert "Epoch 1/2" in frames[0] and "2/4" in frames[0] and "loss 2.0000" in frames[0]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", console.file.getvalue())
    assert re.search(r"Epoch 2/2 · 4/4 · \d+\.\ds · loss 0\.0300", plain)


def test_a_run_resumed_mid_epoch_counts_from_the_epoch_start(fake):
    console = _console()
    trainer = fake.Trainer(epochs=2, steps_per_epoch=4, verbose=2)
    trainer.epoch, trainer.step = 1, 6
    fake.run(trainer, [ProgressBar(console=console)], LOGS)
    assert console.file.getvalue().startswith("Epoch 2/2 · 4/4 · ")


def test_epochs_that_ran_while_the_step_compiled_say_so(fake):
    class Compiling(fake.Trainer):  # compiles behind the training until step 6
        @property
        def compiling_behind(self):
            return self.step < 6

    console = _console(terminal=True)
    frames = []  # what each step drew: the bar after it

    class Snapshot(ProgressBar):
        def on_batch_end(self, trainer, step, logs):
            super().on_batch_end(trainer, step, logs)
            start = len(console.file.getvalue())
            self._progress.refresh()
            frames.append(console.file.getvalue()[start:])

    fake.run(Compiling(epochs=2, steps_per_epoch=4, verbose=1), [Snapshot(console=console)], LOGS)
    assert "Epoch 1/2 (compiling)" in frames[0]
    assert "Epoch 2/2 (compiling)" in frames[4]  # step 5
    assert "Epoch 2/2" in frames[5] and "(compiling)" not in frames[5]  # step 6: compiled
    summaries = [line for line in console.file.getvalue().splitlines() if "· 4/4 ·" in line]
    assert summaries[0].endswith("· eager while the step compiled")
    assert summaries[1].endswith("· eager while the step compiled")  # its step 5
    quiet = _console()
    fake.run(fake.Trainer(epochs=1, steps_per_epoch=4, verbose=2), [ProgressBar(console=quiet)],
             LOGS)  # fmt: skip
    assert "eager while" not in quiet.file.getvalue()  # a trainer that compiles first
