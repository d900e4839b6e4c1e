"""Executes the notebooks headlessly, top to bottom, and fails on the first error in each.

Usage (from the repository root, with the project's venv)::

    .venv/bin/python notebooks/run.py                      # every notebook, small settings
    .venv/bin/python notebooks/run.py 01_mlf_neuron.ipynb  # only these (names or paths)
    .venv/bin/python notebooks/run.py --full --write       # full settings, outputs saved in place

Each notebook runs in a fresh ``python3`` kernel of *this* interpreter (ipykernel), with
its own folder (``notebooks/``) as the working directory and the environment variable
``MLF_JAX_NOTEBOOK_SMALL=1`` (small settings, a few minutes per notebook on a 2-core CPU)
unless ``--full`` is given. A notebook's first code cell (tagged ``parameters``) reads it::

    SMALL = os.environ.get("MLF_JAX_NOTEBOOK_SMALL", "0") == "1"

Plots use matplotlib's non-interactive inline backend and are embedded as PNG. Without
``--write`` nothing is written. With ``--write`` the executed notebook, outputs included,
replaces the file, and ``metadata.mlf_jax.small`` records which settings produced them (the
committed notebooks are run with ``--full``). The exit status is non-zero if any cell of any
notebook failed; the failure names the notebook and the cell (its index among all the
notebook's cells, counting from 0, and its first line), with the error and its traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from ipykernel.kernelspec import RESOURCES, get_kernel_dict
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from traitlets import default

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SMALL_ENV = "MLF_JAX_NOTEBOOK_SMALL"
PATTERN = "[0-9]*.ipynb"


class _ThisPythonSpecs(KernelSpecManager):
    """Every kernel name resolves to ipykernel on this interpreter (the venv's python),
    whatever ``python3`` kernel spec a user or system Jupyter installation may define."""

    def get_kernel_spec(self, kernel_name: str, **kwargs) -> KernelSpec:
        return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())


class _KernelManager(AsyncKernelManager):
    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self) -> KernelSpecManager:
        return _ThisPythonSpecs(data_dir=self.data_dir)


def find_notebooks(names: list[str]) -> list[Path]:
    """The notebooks to run: ``names`` (paths, or names inside notebooks/), or all of them."""
    if not names:
        found = sorted(HERE.glob(PATTERN))
        if not found:
            raise SystemExit(f"no notebooks matching {PATTERN} in {HERE}")
        return found
    out = []
    for name in names:
        path = Path(name)
        if not path.is_file():
            path = HERE / name
        if not path.is_file():
            raise SystemExit(f"notebook not found: {name} (looked in . and {HERE})")
        out.append(path.resolve())
    return out


def _cell_summary(cell) -> str:
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    return first if len(first) <= 80 else first[:77] + "..."


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_notebook(path: Path, *, small: bool, timeout: int, write: bool) -> str | None:
    """Executes one notebook; returns ``None`` on success or a description of the failure."""
    nb = nbformat.read(path, as_version=4)
    current: dict = {}

    def on_cell_execute(cell, cell_index):
        current["index"] = cell_index

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        kernel_manager_class=_KernelManager,
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
        on_cell_execute=on_cell_execute,
    )
    env = {
        **os.environ,
        SMALL_ENV: "1" if small else "0",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        # `import mlf_jax` imports tqdm.auto, which warns in a kernel without ipywidgets
        "PYTHONWARNINGS": ",".join(
            filter(None, [os.environ.get("PYTHONWARNINGS"), "ignore:IProgress not found"])
        ),
    }
    try:
        client.execute(env=env)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        if isinstance(err, CellExecutionError):
            reason = f"{err.ename}: {err.evalue}"
        elif isinstance(err, CellTimeoutError):
            reason = f"timed out after {timeout} s (--timeout)"
        else:
            reason = f"the kernel died ({err})"
        index = current.get("index")
        where = "" if index is None else f"cell {index} ({_cell_summary(nb.cells[index])!r}): "
        return _ANSI.sub("", f"{path.name}: {where}{reason}\n{err}")
    if write:
        nb.metadata["mlf_jax"] = {"small": small}
        nbformat.validate(nb)
        nbformat.write(nb, path)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help=f"notebooks to run (default: {PATTERN})")
    parser.add_argument(
        "--full", action="store_true", help=f"full settings ({SMALL_ENV}=0); default small"
    )
    parser.add_argument(
        "--write", action="store_true", help="save the executed notebooks with outputs in place"
    )
    parser.add_argument(
        "--timeout", type=int, default=900, help="seconds allowed per cell (default 900)"
    )
    args = parser.parse_args(argv)

    small = not args.full
    failures = []
    total = time.perf_counter()
    for path in find_notebooks(args.notebooks):
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"{name}: running ({'small' if small else 'full'} settings)", flush=True)
        start = time.perf_counter()
        error = run_notebook(path, small=small, timeout=args.timeout, write=args.write)
        seconds = time.perf_counter() - start
        if error is None:
            saved = ", written" if args.write else ""
            print(f"{name}: ok in {seconds:.1f} s{saved}", flush=True)
        else:
            print(f"{name}: FAILED after {seconds:.1f} s\n{error}", file=sys.stderr, flush=True)
            failures.append(error.splitlines()[0])
    print(f"total {time.perf_counter() - total:.1f} s", flush=True)
    if failures:
        print("failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
