"""Counting a model's parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

__all__ = ["num_params"]


def num_params(variables: Mapping[str, Any]) -> int:
    """The number of trainable parameters: the entries of ``variables['params']``.

    ``variables`` is what ``model.init`` returns (or its ``jax.eval_shape``, to count without
    allocating anything); a bare ``params`` tree (without the ``'params'`` key) counts too.
    Running statistics (``'batch_stats'``) are not parameters and are not counted.
    """
    params = variables.get("params", variables) if isinstance(variables, Mapping) else variables
    return sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree.leaves(params))
