"""The API reference (docs/api/*.md) covers the public API, and every page names real modules.

The site itself is built by ``make docs`` (``mkdocs build --strict``) in CI; these tests do
not run mkdocs. They read the ``::: identifier`` directives of the API pages (with the
``options:`` block that may follow each) and check that

* every identifier resolves to an importable module, or to an attribute of one;
* every name in the ``__all__`` of ``mlf_jax``, of each sub-package and of each public
  module that a sub-package exports appears on some page: either its module is rendered
  with its members and lists the name in its own ``__all__`` (the same object), or the
  name is itself a module rendered on some page.

So a new public function, or a new public module, cannot be added without its docs.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import types
from pathlib import Path

import pytest
import yaml

import mlf_jax

API_DIR = Path(__file__).resolve().parent.parent / "docs" / "api"

_DIRECTIVE = re.compile(r"^::: *(?P<ident>[A-Za-z_][\w.]*) *$")


def parse_directives(text: str) -> list[tuple[str, dict]]:
    """``[(identifier, options), ...]`` of the ``::: identifier`` lines of a page.

    The options are the YAML under ``options:`` in the indented block after the line.
    """
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if not match:
            continue
        block = []
        for following in lines[i + 1 :]:
            if following.strip() and not following.startswith(" "):
                break
            block.append(following)
        config = yaml.safe_load("\n".join(block)) if "".join(block).strip() else None
        options = (config or {}).get("options") or {}
        out.append((match.group("ident"), options))
    return out


def directives() -> list[tuple[str, dict, str]]:
    found = []
    for page in sorted(API_DIR.glob("*.md")):
        for ident, options in parse_directives(page.read_text()):
            found.append((ident, options, page.name))
    return found


def resolve(identifier: str) -> object:
    """The module ``identifier``, or the attribute it names in the longest importable prefix."""
    parts = identifier.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(identifier)


def public_modules() -> list[types.ModuleType]:
    """``mlf_jax``, its sub-packages, and every module listed in one of their ``__all__``."""
    modules = [mlf_jax]
    for info in pkgutil.walk_packages(mlf_jax.__path__, "mlf_jax."):
        if info.ispkg and not any(p.startswith("_") for p in info.name.split(".")):
            modules.append(importlib.import_module(info.name))
    for package in list(modules):
        for name in getattr(package, "__all__", ()):
            value = getattr(package, name)
            if isinstance(value, types.ModuleType) and value not in modules:
                modules.append(value)
    return modules


def test_the_directive_parser_reads_identifiers_and_options():
    page = "# x\n\n::: a.b\n    options:\n      members: false\n\ntext\n\n::: c\n"
    assert parse_directives(page) == [("a.b", {"members": False}), ("c", {})]


def test_every_api_page_has_a_directive():
    pages = sorted(API_DIR.glob("*.md"))
    assert pages, f"no API pages in {API_DIR}"
    without = [p.name for p in pages if not parse_directives(p.read_text())]
    assert not without, f"API pages without a '::: module' directive: {without}"


@pytest.mark.parametrize(("identifier", "page"), [(i, p) for i, _, p in directives()])
def test_every_directive_names_an_importable_module(identifier, page):
    assert identifier.split(".")[0] == "mlf_jax", f"{page}: {identifier} is not in mlf_jax"
    try:
        resolve(identifier)
    except (ImportError, AttributeError) as e:
        pytest.fail(f"{page}: '::: {identifier}' does not resolve: {e}")


def test_every_public_name_is_on_an_api_page():
    rendered_modules = set()  # modules rendered on some page (with or without members)
    documented = {}  # id(object) -> identifier of a module that renders it as a member
    for identifier, options, _ in directives():
        try:
            obj = resolve(identifier)
        except (ImportError, AttributeError):
            continue  # reported by test_every_directive_names_an_importable_module
        if isinstance(obj, types.ModuleType):
            rendered_modules.add(obj.__name__)
            if options.get("members", True) is not False:
                for name in getattr(obj, "__all__", ()):
                    documented.setdefault(id(getattr(obj, name)), identifier)
        else:
            documented.setdefault(id(obj), identifier)

    missing = []
    for module in public_modules():
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, types.ModuleType):
                ok = value.__name__ in rendered_modules
            else:
                ok = id(value) in documented
            if not ok:
                missing.append(f"{module.__name__}.{name}")
    assert not missing, (
        "public names on no page of docs/api (add a '::: module' directive, or the "
        f"module to an existing page): {missing}"
    )
