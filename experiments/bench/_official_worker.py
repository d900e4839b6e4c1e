"""Times the authors' PyTorch DS-ResNets, one SGD step at a time, for ``vs_official``.

Runs under the separate PyTorch virtualenv (never the project's): it imports only
torch, numpy and the authors' code, whose folder is the first argument. Commands come
as JSON lines on stdin, answers go as JSON lines on stdout:

* ``{"cmd": "setup", "preset": ..., "threads": n, "device": "cpu"}``: builds the net and its SGD
  optimiser as the authors' training scripts do, runs one warm-up step;
  answers ``{"first": seconds, "torch": version}``;
* ``{"cmd": "step"}``: one timed step of the last preset set up; ``{"seconds": s}``;
* ``{"cmd": "quit"}``.

One step is the authors' training loop body: ``zero_grad``, forward of the
``[T * B, C, H, W]`` input (time-major blocks of the batch), cross-entropy,
``backward``, ``SGD.step`` (lr 0.1, momentum 0.9, weight decay 1e-4).
"""

import importlib
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - PyTorch's convention

#: preset -> (net module, spike-layer module, constructor, batch, input [C, H, W], classes)
NETS = {
    "cifar10": ("ResNet_for_cifar10", "spike_layer_for_cifar10", "resnet20", 64, (3, 32, 32), 10),
    "gesture": ("ResNet_for_Gesture", "spike_layer_for_Gesture", "resnet20", 28, (2, 32, 32), 11),
    "cifar10dvs": (
        "ResNet_for_dvscifar10",
        "spike_layer_for_dvscifar10",
        "resnet14",
        32,
        (2, 42, 42),
        10,
    ),
}


def setup(preset: str, threads: int, device: str = "cpu") -> dict:
    net_module, layer_module, constructor, batch, shape, classes = NETS[preset]
    torch.set_num_threads(threads)
    device = torch.device(device)
    torch.manual_seed(0)
    time_steps = importlib.import_module(f"parallel_nets.{layer_module}").TimeStep
    model = getattr(importlib.import_module(f"parallel_nets.{net_module}"), constructor)()
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 3, (time_steps * batch, *shape)).astype(np.float32)
    data = torch.from_numpy(data).to(device)
    target = torch.from_numpy(rng.integers(0, classes, batch).astype(np.int64)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None

    def step() -> float:
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss = F.cross_entropy(model(data), target)
        loss.backward()
        optimizer.step()
        sync()
        return time.perf_counter() - t0

    return {"step": step, "time_steps": time_steps, "batch": batch}


def main() -> None:
    sys.path.insert(0, sys.argv[1])
    current = None
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        if command["cmd"] == "setup":
            current = None  # free the previous net before building the next
            current = setup(command["preset"], command["threads"], command.get("device", "cpu"))
            answer = {
                "first": current["step"](),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "time_steps": current["time_steps"],
                "batch": current["batch"],
            }
        else:
            answer = {"seconds": current["step"]()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
