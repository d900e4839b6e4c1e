"""One contender of ``experiments.bench.peers``: a dense layer over all T, then a
spiking neuron layer over time; forward and backward of the sum of the spikes.

Runs in the contender's own virtualenv (the peers) or the project's (ours), importing
only that library. Usage: ``python -P _peer_worker.py CONTENDER``; commands are JSON
lines on stdin, answers JSON lines on stdout:

* ``{"cmd": "setup", "n": N, "t": T, "batch": B, "threads": n, "device": "cpu"}``: builds the layer
  (weights ``N x N`` with bias, input ``[T, B, N]`` uniform in [0, 1)), runs and
  times one call (compilation or warm-up); answers ``{"first": seconds, ...}``;
* ``{"cmd": "time", "repeats": r}``: ``r`` timed calls; ``{"seconds": [...]}``;
* ``{"cmd": "quit"}``.

The neuron settings follow the Open Neuromorphic benchmark: leak factor 0.9 per step
(or the library's equivalent), threshold 1; everything else is each library's default
and is listed in ``MODELS``.
"""

import json
import sys
import time

#: contender -> (library, neuron, reset, surrogate), for the table of docs/results/speed.md.
MODELS = {
    "mj.lif": ("mlf_jax", "mj.lif (LIF)", "hard, to 0", "rectangular, width 1"),
    "mj.mlf": ("mlf_jax", "mj.mlf (MLF, K = 3)", "hard, to 0, per level", "rectangular, width 1"),
    "spyx": ("spyx", "spyx.nn.LIF", "by subtraction", "spyx's default (superspike)"),
    "spikingjelly": ("spikingjelly", "LIFNode, multi-step", "hard, to 0", "sigmoid(4)"),
    "snntorch": ("snntorch", "snn.Leaky", "by subtraction", "atan"),
    "norse": ("norse", "norse.torch.LIF (current-based)", "hard, to 0", "superspike"),
}

BETA, THRESHOLD = 0.9, 1.0


def _jax_layer(contender, n, t, batch):
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(0, 1 / np.sqrt(n), (n, n)).astype(np.float32))
    b = jnp.zeros((n,), jnp.float32)
    x = jnp.asarray(rng.random((t, batch, n), dtype=np.float32))

    if contender == "spyx":
        from flax import nnx
        from spyx.nn import LIF

        graphdef, lif_state = nnx.split(LIF((n,), beta=BETA, threshold=THRESHOLD, rngs=nnx.Rngs(0)))

        def neurons(cur):
            lif = nnx.merge(graphdef, lif_state)

            def body(v, ct):
                spikes, v = lif(ct, v)
                return v, spikes

            return jax.lax.scan(body, jnp.zeros(cur.shape[1:], cur.dtype), cur)[1]
    else:
        import mlf_jax as mj

        if contender == "mj.lif":

            def neurons(cur):
                return mj.lif(cur, threshold=THRESHOLD, tau=BETA)
        else:

            def neurons(cur):
                return mj.mlf(cur, thresholds=(THRESHOLD, THRESHOLD + 1, THRESHOLD + 2), tau=BETA)

    def loss(w, b, x):
        return jnp.sum(neurons(jnp.einsum("tbn,nm->tbm", x, w) + b))

    compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(w, b, x).compile()

    def call():
        jax.block_until_ready(compiled(w, b, x))

    return call, {"jax": jax.__version__}


def _torch_layer(contender, n, t, batch, threads, device):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    linear = torch.nn.Linear(n, n).to(device)
    x = torch.rand(t, batch, n, device=device, requires_grad=True)
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None

    if contender == "snntorch":
        import snntorch

        lif = snntorch.Leaky(beta=BETA, threshold=THRESHOLD).to(device)

        def neurons(cur):
            mem = lif.init_leaky()
            out = []
            for step in range(cur.shape[0]):
                spk, mem = lif(cur[step], mem)
                out.append(spk)
            return torch.stack(out)
    elif contender == "spikingjelly":
        from spikingjelly.activation_based import functional, neuron

        # tau = 10: v <- v + (x - v) / tau leaks by 0.9 per step
        lif = neuron.LIFNode(tau=10.0, v_threshold=THRESHOLD, step_mode="m").to(device)

        def neurons(cur):
            functional.reset_net(lif)
            return lif(cur)
    else:
        import norse.torch

        lif = norse.torch.LIF().to(
            device
        )  # dt * tau_mem_inv = 0.1: the membrane leaks by 0.9 per step

        def neurons(cur):
            return lif(cur)[0]

    def call():
        linear.zero_grad()
        x.grad = None
        neurons(linear(x)).sum().backward()
        sync()

    return call, {"torch": torch.__version__, "threads": torch.get_num_threads()}


def main() -> None:
    contender = sys.argv[1]
    call = None
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        if command["cmd"] == "setup":
            call = None
            t0 = time.perf_counter()
            args = (contender, command["n"], command["t"], command["batch"])
            if MODELS[contender][0] in ("mlf_jax", "spyx"):
                call, info = _jax_layer(*args)
            else:
                call, info = _torch_layer(*args, command["threads"], command.get("device", "cpu"))
            call()
            answer = {"first": time.perf_counter() - t0, **info}
        else:
            seconds = []
            for _ in range(command["repeats"]):
                t0 = time.perf_counter()
                call()
                seconds.append(time.perf_counter() - t0)
            answer = {"seconds": seconds}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
