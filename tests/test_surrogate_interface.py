"""The ``Surrogate`` docstring's example family works as the interface says."""

import dataclasses
import re
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

import mlf_jax as mj


def _example_family():
    doc = mj.surrogate.Surrogate.__doc__
    code = textwrap.dedent(doc.split("For example::", 1)[1])
    namespace = {"dataclasses": dataclasses, "jnp": jnp, "mj": mj}
    exec(code, namespace)  # noqa: S102 - the documented example, run as written
    (name,) = re.findall(r"class (\w+)\(", code)
    return namespace[name]


def test_documented_family_grad_is_the_derivative_of_its_relaxation():
    family = _example_family()(width=1.0)
    z = jnp.linspace(-0.7, 0.7, 141)
    finite_difference = (family.relaxation(z + 1e-3) - family.relaxation(z - 1e-3)) / 2e-3
    np.testing.assert_allclose(family.grad(z), finite_difference, atol=2e-3)
    np.testing.assert_allclose(family.relaxation(jnp.array([-1.0, 1.0])), [0.0, 1.0], atol=1e-6)
    # it plugs into spike and the neurons: the backward pass uses grad
    g = jax.grad(lambda z: mj.spike(z, family).sum())(jnp.array([0.0, 0.25, 0.6]))
    np.testing.assert_allclose(g, [2.0, 1.0, 0.0], atol=1e-6)
    assert family.support() == (-0.5, 0.5)
