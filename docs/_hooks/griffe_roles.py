"""Griffe extension: Sphinx-style roles in docstrings as mkdocstrings cross-references.

The docstrings of ``mlf_jax`` name other objects with Sphinx roles (``:func:`mlf```,
``:class:`mlf_jax.nn.MLF```, ``:data:`NEURON_IMPLS```). Markdown would show the role as
text, so this extension rewrites each one before the docstring is parsed:

* a name that resolves to a public ``mlf_jax`` object, from the docstring's own scope
  outwards (the object, its parents, its module) as Python would, or as a full dotted
  path, becomes a link to that object's canonical path (``[`mlf`][mlf_jax.neurons.mlf]``);
  a target that is not rendered on any API page then fails the strict build;
* any other name (``jax.custom_vjp``, ``numpy.histogram``, private helpers) becomes
  plain code.

A leading ``~`` (Sphinx's "show the last component") is honoured, and reStructuredText's
literal-block marker ``::`` at the end of a paragraph becomes ``:`` (the indented block
after it is a code block in Markdown too). Module-level constants
documented with ``#:`` comments above them (Sphinx's convention, which griffe does not read)
get those comments as their docstring, so that they are rendered and can be linked to.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|data|mod|meth|attr|obj|exc|const):`(~?)([^`]+)`")


_LITERAL_MARKER = re.compile(r"(?<=\S)::[ \t]*\n(?=[ \t]*\n)")


def _is_private(path: str) -> bool:
    return any(p.startswith("_") and not p.startswith("__") for p in path.split("."))


def _child(obj: Any, parts: list[str]) -> Any | None:
    for part in parts:
        try:
            obj = obj.members[part]
        except (KeyError, AttributeError):
            return None
        if obj.is_alias:
            try:
                obj = obj.final_target
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                return None
    return obj


def _resolve(scope: Any, name: str, package: Any) -> str | None:
    """The path to link for ``name`` seen from ``scope``, or ``None``.

    The target's canonical path, or, for a public name of a private module (an object of
    ``mlf_jax.analysis._record`` exported as ``mlf_jax.analysis.record``), the public path
    through which it was found.
    """
    parts = name.split(".")
    if parts[0] == package.name:
        scopes, parts = [package], parts[1:]
    else:
        scopes = []
        while scope is not None:
            scopes.append(scope)
            scope = scope.parent
    for scope in scopes:
        found = _child(scope, parts)
        if found is None:
            continue
        if not _is_private(found.path):
            return found.path
        public = ".".join([scope.path, *parts])
        return _public_alias(found) if _is_private(public) else public
    return None


def _public_alias(obj: Any) -> str | None:
    """The path of a public alias of ``obj`` in one of the packages above it, if any."""
    package = obj.module
    while package is not None:
        for member in package.members.values():
            if member.is_alias and member.target_path == obj.path and not member.is_private:
                return member.path
        package = package.parent
    return None


class SphinxRoles(griffe.Extension):
    """Rewrites ``:role:`name``` in every docstring of the package (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self._done: set[str] = set()

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path not in self._done:
            self._done.add(pkg.path)
            self._visit(pkg, pkg, set())

    #: The same hook under its griffe 1.x name.
    on_package_loaded = on_package

    def _visit(self, obj: Any, package: Any, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.is_attribute and obj.docstring is None:
            obj.docstring = self._comment_docstring(obj)
        if obj.docstring is not None:
            obj.docstring.value = self._rewrite(obj.docstring.value, obj, package)
        for member in obj.members.values():
            if not member.is_alias:
                self._visit(member, package, seen)

    def _comment_docstring(self, attr: Any) -> griffe.Docstring | None:
        """The ``#:`` comment lines right above an attribute, as its docstring."""
        try:
            lines = attr.lines_collection[attr.filepath]
        except (KeyError, TypeError):
            return None
        comment: list[str] = []
        i = attr.lineno - 2  # the line above the assignment (lineno counts from 1)
        while i >= 0 and lines[i].strip().startswith("#:"):
            comment.insert(0, lines[i].strip()[2:].strip())
            i -= 1
        if not comment:
            return None
        source = attr.module.docstring
        return griffe.Docstring(
            "\n".join(comment),
            lineno=i + 2,
            endlineno=attr.lineno - 1,
            parent=attr,
            parser=source.parser if source is not None else None,
            parser_options=source.parser_options if source is not None else None,
        )

    def _rewrite(self, text: str, obj: Any, package: Any) -> str:
        def replace(match: re.Match) -> str:
            short, name = match.group(1) == "~", match.group(2).strip()
            title = name.rsplit(".", 1)[-1] if short else name
            target = _resolve(obj, name, package)
            if target is None:
                return f"`{title}`"
            return f"[`{title}`][{target}]"

        return _LITERAL_MARKER.sub(":\n", _ROLE.sub(replace, text))
