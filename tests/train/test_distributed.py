"""Multi-host settings checked before JAX starts anything (mlf_jax.train.distributed)."""

import pytest

from mlf_jax.train import distributed

ENV = ("MLF_JAX_COORDINATOR", "MLF_JAX_NUM_PROCESSES", "MLF_JAX_PROCESS_ID")


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_nothing_set_is_one_process_and_auto_is_left_to_jax():
    assert distributed.settings() is None
    assert distributed.settings(None, None, -1) is None
    assert distributed.settings(auto=True) == {}


def test_complete_settings_are_returned_as_jax_takes_them(monkeypatch):
    assert distributed.settings("10.0.0.2:8476", 4, 0) == {
        "coordinator_address": "10.0.0.2:8476",
        "num_processes": 4,
        "process_id": 0,
    }
    assert distributed.settings("[fd00::2]:8476", 2, 1)["coordinator_address"] == "[fd00::2]:8476"
    monkeypatch.setenv("MLF_JAX_COORDINATOR", "host:1")
    monkeypatch.setenv("MLF_JAX_NUM_PROCESSES", "3")
    monkeypatch.setenv("MLF_JAX_PROCESS_ID", "2")
    assert distributed.settings() == {
        "coordinator_address": "host:1",
        "num_processes": 3,
        "process_id": 2,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("h:1", None, None), r"missing \['num_processes', 'process_id'\]"),
        ((None, 2, -1), r"missing \['coordinator_address', 'process_id'\]"),
        (("h:1", 2, 5), r"x.process_id must be in 0 \.\. 1 .*x.num_processes=2\), got 5"),
        (("h:1", 2, 2), r"must be in 0 \.\. 1"),
        (("localhost", 2, 0), r"x.coordinator_address must be host:port.*got 'localhost'"),
        ((":8476", 2, 0), "must be host:port"),
        (("localhost:", 2, 0), "must end in a port number 1 .. 65535"),
        (("localhost:http", 2, 0), "must end in a port number"),
        (("localhost:70000", 2, 0), "must end in a port number"),
        (("fd00::2", 2, 0), "IPv6 address without brackets"),
    ],
)
def test_each_mistake_is_named_before_jax_starts(args, message):
    with pytest.raises(ValueError, match=message):
        distributed.settings(*args, prefix="x.")
    with pytest.raises(ValueError, match=message.replace("x.", "")):
        distributed.initialize(*args)  # the same check first: JAX is never called


def test_a_value_from_the_environment_is_named_by_its_variable(monkeypatch):
    monkeypatch.setenv("MLF_JAX_PROCESS_ID", "one")
    with pytest.raises(ValueError, match="MLF_JAX_PROCESS_ID must be an integer, got 'one'"):
        distributed.settings("h:1", 2)
    monkeypatch.setenv("MLF_JAX_PROCESS_ID", "7")
    with pytest.raises(ValueError, match="MLF_JAX_PROCESS_ID must be in 0 .. 1"):
        distributed.settings("h:1", 2)
