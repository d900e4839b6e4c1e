"""The training loop's progress bar: its rate is the steps', not the compiling first step's."""

import re
import time

from experiments import trainer


def test_the_rate_leaves_out_the_compiling_first_step(capsys):
    bar = trainer._progress_bar(total=21, initial=0, main=True)
    with bar:
        time.sleep(2.0)  # the first step compiles
        bar.update(1)
        trainer._restart_clock(bar)
        for _ in range(20):  # the next 20 steps take 0.2 s in all
            time.sleep(0.01)
            bar.update(1)
    last = capsys.readouterr().err.strip().split("\r")[-1]  # the bar as it was left
    rate = float(re.search(r"([\d.]+)step/s", last)[1])
    # 20 steps in about 0.2 s: about 100 steps/s (the first step counted: 21 / 2.2 s, 10/s)
    assert rate > 30, last


def test_a_disabled_bar_is_left_alone():
    bar = trainer._progress_bar(total=3, initial=1, main=False)
    bar.update(1)
    trainer._restart_clock(bar)
    assert bar.disable
