"""The architecture contract: no import cycle among the project's modules, each layer imports
only the layers below it, and no module imports another package's private module (run by
`make lint` and `make test`).

Imports are read from the source (``ast``), inside functions too, so a lazy import counts:
it is still an edge of the design."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mlf_jax", "experiments")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The project modules ``name`` imports (``from a import b``: ``a.b`` when that is a
    module, else ``a``); third-party names are kept whole (``flax``, ``flax.linen``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in MODULES else base)
    return found - {name}


GRAPH = {name: {m for m in _imports(name) if m in MODULES} for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


#: The one deliberate exception: the ``mlf-train`` console script, which runs the
#: ``experiments.train`` of the clone it is installed from (editable).
EXEMPT = {"mlf_jax._cli"}


def _under(prefixes: tuple[str, ...]) -> list[str]:
    inside = tuple(p + "." for p in prefixes)
    return [m for m in MODULES if (m in prefixes or m.startswith(inside)) and m not in EXEMPT]


#: (modules, what they must not import, why)
RULES = [
    (("mlf_jax",), ("experiments", "ml_collections"),
     "the library knows nothing of the experiments and their configs"),
    (("mlf_jax.neurons", "mlf_jax.surrogate", "mlf_jax.checks", "mlf_jax.unroll",
      "mlf_jax.thresholds", "mlf_jax.shard_map_casts", "mlf_jax.kernels", "mlf_jax.reparam",
      "mlf_jax.encoders", "mlf_jax.losses", "mlf_jax.zoo"),
     ("flax", "mlf_jax.nn", "mlf_jax.models", "mlf_jax.train", "mlf_jax.data",
      "mlf_jax.analysis"),
     "neurons and their kernels are pure JAX functions: no Flax, no layers above them"),
    (("mlf_jax.nn", "mlf_jax.models", "mlf_jax.analysis"), ("mlf_jax.train", "mlf_jax.data",
     "optax", "orbax"),
     "layers, models and analysis know nothing of training or data"),
    (("mlf_jax.data",), ("mlf_jax.train", "mlf_jax.models", "mlf_jax.nn", "flax"),
     "the data readers know nothing of models or training"),
]  # fmt: skip


def _reachable(name: str) -> set[str]:
    """``name`` and every project module it imports, directly or through others."""
    seen, todo = {name}, [name]
    while todo:
        for child in GRAPH[todo.pop()] - seen:
            seen.add(child)
            todo.append(child)
    return seen


def _all_imports(name: str) -> set[str]:
    """What importing ``name`` imports: its own imports and those of every project module
    it reaches (a rule cannot be sidestepped through a module in between)."""
    return set().union(*(_imports(m) for m in _reachable(name)))


@pytest.mark.parametrize("modules, forbidden, why", RULES, ids=lambda v: str(v)[:30])
def test_layers_import_only_below_them(modules, forbidden, why):
    broken = {
        name: sorted(i for i in _all_imports(name) if i in forbidden or i.startswith(
            tuple(f + "." for f in forbidden)))
        for name in _under(modules)
    }  # fmt: skip
    broken = {k: v for k, v in broken.items() if v}
    assert not broken, f"{why}; but: {broken}"


def _private_imports(name: str) -> list[str]:
    """The private modules (a ``_``-prefixed part) of another package that ``name`` imports,
    project or third-party (``jax._src``): a private module serves its own package alone."""
    own = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for imported in _imports(name):
        parts = imported.split(".")
        for i, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                if ".".join(parts[:i]) != own:
                    out.append(imported)
                break
    return sorted(out)


def test_the_private_import_finder_finds_one():
    assert _private_imports("mlf_jax.nn.neuron") == []


def test_no_module_imports_another_packages_private_module():
    broken = {name: found for name in sorted(MODULES) if (found := _private_imports(name))}
    assert not broken, (
        "a private module serves its own package; make the name public where it is shared, "
        f"or move it to where it is used; but: {broken}"
    )
