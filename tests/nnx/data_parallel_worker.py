"""Run by test_data_parallel.py in a process with 4 fake CPU devices: an mlf_jax.nnx ResNet's
train step on a batch sharded over the devices (jax.sharding, nnx.jit), against the same step
on one device. Prints a JSON line of what it found."""

import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import mlf_jax as mj
import mlf_jax.nnx as mjx

SETTINGS = dict(widths=(4, 4, 4), num_classes=3, time_steps=2, in_channels=1, learn_thresholds=True)


def make():
    net = mjx.resnet(8, rngs=nnx.Rngs(0), **SETTINGS)
    return net, nnx.Optimizer(net, mj.train.sgd(0.1), wrt=nnx.Param)


step = nnx.jit(mjx.train_step)


def main():
    assert jax.device_count() == 4, jax.devices()
    # a batch whose quarters differ, so that per-device statistics would differ from global
    x = (
        jax.random.normal(jax.random.key(0), (16, 8, 8, 1))
        * jnp.arange(1, 17)[:, None, None, None]
        / 4
    )
    y = jnp.arange(16) % 3

    one_net, one_opt = make()
    with jax.default_device(jax.devices()[0]):
        one_losses = [float(step(one_net, one_opt, x, y)) for _ in range(2)]

    mesh = Mesh(jax.devices(), ("data",))  # automatic partitioning (jax.make_mesh: AxisType.Auto)
    net, opt = make()
    state = jax.device_put(nnx.state((net, opt)), NamedSharding(mesh, P()))  # replicated
    nnx.update((net, opt), state)
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    ys = jax.device_put(y, NamedSharding(mesh, P("data")))
    losses = [float(step(net, opt, xs, ys)) for _ in range(2)]

    one = nnx.to_pure_dict(nnx.state(one_net))
    dp = nnx.to_pure_dict(nnx.state(net))
    diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))), dp, one)
    mean = nnx.state(net, nnx.BatchStat)["stem_bn"]["mean"]
    print(
        json.dumps(
            {
                "input_shards": len(xs.addressable_shards),
                "state_devices": len(mean.get_value().sharding.device_set),
                "losses": [losses, one_losses],
                "max_param_diff": max(jax.tree.leaves(diffs)),
                "max_stat_diff": max(
                    jax.tree.leaves(
                        jax.tree.map(
                            lambda a, b: float(np.max(np.abs(a - b))),
                            nnx.to_pure_dict(nnx.state(net, nnx.BatchStat)),
                            nnx.to_pure_dict(nnx.state(one_net, nnx.BatchStat)),
                        )
                    )
                ),
                "stat_scale": float(np.max(np.abs(np.asarray(mean)))),
            }
        )
    )


if __name__ == "__main__":
    main()
