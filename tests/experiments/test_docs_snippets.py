"""The Python snippets of the guides run as written (from the repository root)."""

import re
from pathlib import Path

import pytest

from mlf_jax.data import fashion_mnist

ROOT = Path(__file__).resolve().parents[2]


def _snippets(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)


def test_loading_the_main_weights_from_python(monkeypatch, capsys):
    try:
        fashion_mnist.find_files(fashion_mnist.DEFAULT_DIR, "test")
    except fashion_mnist.DatasetNotFoundError as e:
        pytest.skip(f"Fashion-MNIST is not installed (make data): {e}")
    (snippet,) = [s for s in _snippets("docs/guides/training.md") if "export.load" in s]
    monkeypatch.chdir(ROOT)
    exec(compile(snippet, "training.md", "exec"), {})  # noqa: S102
    accuracy = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.85 <= accuracy <= 1.0  # 256 test images; the model's test accuracy is 91.41 %
