"""One process of the two-process (multi-host) test: trains, then saves its parameters.

Usage: python -m tests.train.multihost_worker PROCESS_ID PORT OUT.npz
"""

import os
import sys

# one device per process, beside whatever else the parent test set (its compile settings)
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1"
).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from mlf_jax.train import AXIS, DataParallel, distributed  # noqa: E402
from tests.train import parallel_case as case  # noqa: E402


def main(process_id: int, port: str, out: str) -> None:
    distributed.initialize(f"127.0.0.1:{port}", 2, process_id)
    assert jax.process_count() == 2 and jax.device_count() == 2
    dp = DataParallel("shard_map")
    state = dp.put_state(case.initial_state(case.model(AXIS)))
    half = case.BATCH // 2
    losses = []
    for batch in case.batches():
        local = {k: v[process_id * half : (process_id + 1) * half] for k, v in batch.items()}
        state, metrics = dp.train_step(state, local)
        losses.append(float(np.asarray(metrics["loss"].addressable_data(0))))
    params = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), state.params)
    np.savez(out, losses=np.asarray(losses), **case.flat(params))
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
