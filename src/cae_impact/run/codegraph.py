"""The code a build step runs: the files of this package its entry points import, transitively.

A build step's cache key covers its own code, not all of ``src/`` (issue 19): editing the demo
generator must not invalidate a notebook that never imports it. The code of a step is found by
reading the package's sources with :mod:`ast`, never from a list of files, so that modules can
move or be renamed freely (only the entries in :mod:`cae_impact.run.steps` name modules).

* An **entry** is a dotted module name (``"cae_impact.report"``: all of it) or a module and some
  of its top-level names (``"cae_impact.pipeline:run_cleaning"``).
* Importing a module runs its **import-time code**: every top-level statement but the function
  definitions (imports, classes with their methods, constants, decorators and default values),
  and the ``__init__`` of each package on the way. So a module reached in any way brings the
  top-level functions its import-time code names. Its **top-level imports** count by the names
  they bind: ``from m import f`` at the top of a module brings ``m:f`` when the import-time code
  or an included function names ``f`` (the package's modules have no import-time effect beyond
  defining names, so an import whose names nothing included uses changes nothing a step does).
* A **function** brings the imports inside it (function-level imports, relative ones resolved)
  and the top-level functions of its module it names, recursively.
* ``from m import f`` brings ``m`` and its function ``f``; ``import m`` or ``from pkg import m``
  brings all of ``m`` (its module object can reach any of its functions).
* A **notebook**'s entries are read from its code cells: ``from cae_impact import pipeline``
  then ``pipeline.run_cleaning(...)`` gives ``cae_impact.pipeline:run_cleaning``.

``pipeline`` is a facade whose functions each import the pieces of one step: naming functions
rather than modules keeps the rendering modules out of the cleaning step's code, and the
cleaning modules out of the chapters'. A file counts whole: its digest is its content.

What is not followed: a module imported by a name computed at run time (``importlib`` with a
string; only the kernel server's preloading does that, and it computes nothing). The parse of
the package (about 60 files, 0.4 s) is done once per process, and the build's kernel server
does it before it forks the steps: a build parses the sources once. Each file's parse is also
kept on disk by its size and modification time (:data:`PARSE_CACHE`), so that a process without
the server reads it instead (about 10 ms) and parses only the files edited since. :func:`code_digest` is what enters a cache key: the relative path and sha256 of every
file of the closure and of the step's non-Python assets.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cae_impact.run.cache import file_hashes

PACKAGE = "cae_impact"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/cae_impact/
"""The package's folder (``src/cae_impact``); closures are computed over the files found in it."""


Edge = tuple[str, "frozenset[str] | None"]
"""An import: the module, and the names taken from it (None: the module object, so all of it;
an empty set: only its import-time code, e.g. a package whose submodule is imported)."""


@dataclass
class _Module:
    """What one source file imports: at top level (``body``) and inside each top-level function."""

    name: str
    path: Path
    body_edges: set[Edge] = field(default_factory=set)
    body_names: set[str] = field(default_factory=set)
    functions: dict[str, tuple[set[Edge], set[str]]] = field(default_factory=dict)
    """Top-level function -> (what it imports, the names it refers to)."""
    defined: set[str] = field(default_factory=set)
    """Every top-level name the module defines (functions, classes, constants)."""
    bindings: dict[str, set[Edge]] = field(default_factory=dict)
    """Top-level import -> what it loads, by the local name it binds: followed only when the
    import-time code or an included function names it."""


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _resolve(node: ast.Import | ast.ImportFrom, here: str, is_package: bool, known: set[str]) -> set[Edge]:
    """What an import statement loads from the package (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return {(a.name, None) for a in node.names if a.name in known}
    if node.level:
        base = here.split(".") if is_package else here.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    if module not in known:
        return set()
    edges: set[Edge] = set()
    names = set()
    for alias in node.names:
        if f"{module}.{alias.name}" in known:  # ``from . import present``: a module, not a name
            edges.add((f"{module}.{alias.name}", None))
        elif alias.name == "*":
            edges.add((module, None))
        else:
            names.add(alias.name)
    edges.add((module, frozenset(names)))
    return edges


def _scan(tree: ast.AST, here: str, is_package: bool, known: set[str]) -> tuple[set[Edge], set[str]]:
    edges: set[Edge] = set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            edges |= _resolve(node, here, is_package, known)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):  # a name bound here is not a use
            names.add(node.id)
    return edges, names


def _drop_annotations(tree: ast.Module) -> None:
    """Leave out the annotations of a module that has ``from __future__ import annotations``.

    They are strings there, never run: a name used only in them loads nothing.
    """
    if not any(isinstance(s, ast.ImportFrom) and s.module == "__future__"
               and any(a.name == "annotations" for a in s.names) for s in tree.body):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is not None:
                    arg.annotation = None
        elif isinstance(node, ast.AnnAssign):
            node.annotation = ast.Constant(None)


def _parse(name: str, path: Path, known: set[str]) -> _Module:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    _drop_annotations(tree)
    is_package = path.name == "__init__.py"
    mod = _Module(name, path)
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # decorators and default values run when the module is imported
            for part in [*stmt.decorator_list, *stmt.args.defaults, *stmt.args.kw_defaults]:
                if part is not None:
                    e, n = _scan(part, name, is_package, known)
                    mod.body_edges |= e
                    mod.body_names |= n
            mod.functions[stmt.name] = _scan(ast.Module(body=stmt.body, type_ignores=[]), name, is_package, known)
            mod.defined.add(stmt.name)
            continue
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            # a top-level import binds names; what it loads counts when one of them is used
            for alias in stmt.names:
                local = (alias.asname or alias.name).split(".")[0]
                one = type(stmt)(**{**{f: getattr(stmt, f) for f in stmt._fields}, "names": [alias]})
                mod.bindings.setdefault(local, set()).update(_resolve(one, name, is_package, known))
                mod.defined.add(local)
            continue
        # classes (whole), constants, if/try blocks: the module's import-time code
        if isinstance(stmt, ast.ClassDef):
            mod.defined.add(stmt.name)
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                mod.defined.add(node.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                mod.defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        e, n = _scan(stmt, name, is_package, known)
        mod.body_edges |= e
        mod.body_names |= n
    return mod


def _sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts and not p.name.startswith("."))


_GRAPHS: dict[tuple[str, str], dict[str, _Module]] = {}
_CLOSURES: dict[tuple, list[Path]] = {}
_NOTEBOOKS: dict[tuple, list[str]] = {}


def forget() -> None:
    """Forget what this process parsed (after editing the sources: tests)."""
    _GRAPHS.clear()
    _CLOSURES.clear()
    _NOTEBOOKS.clear()


def package_graph(root: Path | None = None, package: str = PACKAGE) -> dict[str, _Module]:
    """Every module of the package, parsed once per process (a build step is one process).

    The kernel server parses it before it forks the steps, so they share it; sources edited
    while a build runs count from the next build, as the code the server imported does. A
    process without the server (a step run by hand, ``make verify``) reads the parse of the
    files whose size and modification time are unchanged from :data:`PARSE_CACHE`.
    """
    root = Path(root) if root is not None else PACKAGE_DIR
    if (str(root), package) not in _GRAPHS:
        names = {_module_name(p, root, package): p for p in _sources(root)}
        _GRAPHS[(str(root), package)] = _parse_all(names, root)
    return _GRAPHS[(str(root), package)]


_FORMAT = 4  # the parse kept on disk: 2 since top-level imports are kept by the names they bind

PARSE_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cae-impact" / "codegraph"
"""Where the parse of each source file is kept between processes, by path, size and mtime."""


def _parse_all(names: dict[str, Path], root: Path) -> dict[str, _Module]:
    known = set(names)
    stats = {n: (p.stat().st_size, p.stat().st_mtime_ns) for n, p in names.items()}
    store = PARSE_CACHE / f"{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]}.json"
    try:
        saved = json.loads(store.read_text(encoding="utf-8"))
        if sorted(saved.get("known", [])) != sorted(known) or saved.get("format") != _FORMAT:
            saved = {}  # another set of modules: every import may resolve differently
    except (OSError, ValueError):
        saved = {}
    cached = saved.get("modules", {})
    graph, changed = {}, False
    for n, p in names.items():
        entry = cached.get(n)
        if entry and tuple(entry["stat"]) == stats[n]:
            graph[n] = _Module(n, p, _edges(entry["body_edges"]), set(entry["body_names"]),
                               {f: (_edges(e), set(r)) for f, (e, r) in entry["functions"].items()},
                               set(entry["defined"]),
                               {b: _edges(e) for b, e in entry["bindings"].items()})
        else:
            graph[n] = _parse(n, p, known)
            changed = True
    if changed or set(cached) != known:
        payload = {"format": _FORMAT, "known": sorted(known), "modules": {n: {
            "stat": stats[n], "body_edges": _json_edges(m.body_edges), "body_names": sorted(m.body_names),
            "functions": {f: [_json_edges(e), sorted(r)] for f, (e, r) in m.functions.items()},
            "defined": sorted(m.defined),
            "bindings": {b: _json_edges(e) for b, e in m.bindings.items()}} for n, m in graph.items()}}
        try:
            store.parent.mkdir(parents=True, exist_ok=True)
            tmp = store.with_name(f".{store.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(payload), encoding="utf-8")
            tmp.replace(store)
        except OSError:
            pass  # only slower next time
    return graph


def _json_edges(edges: set[Edge]) -> list:
    return sorted(([m, None if names is None else sorted(names)] for m, names in edges),
                  key=lambda e: (e[0], e[1] is None, e[1] or []))


def _edges(data: list) -> set[Edge]:
    return {(m, None if names is None else frozenset(names)) for m, names in data}


class UnknownEntry(LookupError):
    """An entry names a module (or a function) the package does not have."""


def parse_entry(entry: str) -> Edge:
    """``"pkg.mod"`` -> ``("pkg.mod", None)``; ``"pkg.mod:f,g"`` -> ``("pkg.mod", {"f", "g"})``."""
    module, sep, wanted = entry.partition(":")
    if not sep:
        return module, None
    return module, frozenset(n.strip() for n in wanted.split(",") if n.strip())


def closure(entries: Iterable[str], root: Path | None = None, package: str = PACKAGE) -> list[Path]:
    """The source files a step's entries run, sorted (see the module's docstring)."""
    root = Path(root) if root is not None else PACKAGE_DIR
    memo = (str(root), package, tuple(entries))
    if memo not in _CLOSURES:
        _CLOSURES[memo] = _closure(memo[2], root, package)
    return list(_CLOSURES[memo])


def _closure(entries: tuple[str, ...], root: Path, package: str) -> list[Path]:
    graph = package_graph(root, package)
    todo: list[Edge] = []
    for entry in entries:
        module, names = parse_entry(entry)
        if module not in graph:
            raise UnknownEntry(f"code entry {entry!r}: no module {module} under {root}")
        missing = sorted((names or set()) - graph[module].defined)
        if missing:
            raise UnknownEntry(f"code entry {entry!r}: {module} defines no {missing[0]}")
        todo.append((module, names))
    whole: set[str] = set()
    loaded: set[str] = set()  # modules whose import-time code is included
    functions: set[tuple[str, str]] = set()
    while todo:
        module, names = todo.pop()
        if module not in graph or module in whole:
            continue
        mod = graph[module]
        if module not in loaded:  # importing it runs its parents' and its own top-level code
            loaded.add(module)
            parts = module.split(".")
            todo += [(".".join(parts[:i]), frozenset()) for i in range(1, len(parts))]
            todo += sorted(mod.body_edges, key=str)
            todo += sorted((e for n in mod.body_names for e in mod.bindings.get(n, ())), key=str)
            todo.append((module, frozenset(n for n in mod.body_names if n in mod.functions)))
        if names is None:
            whole.add(module)
            names = frozenset(mod.functions)
            todo += sorted((e for es in mod.bindings.values() for e in es), key=str)
        for fn in sorted(names):
            if fn not in mod.functions or (module, fn) in functions:
                continue  # a class or constant (import-time code), or done already
            functions.add((module, fn))
            edges, refs = mod.functions[fn]
            todo += sorted(edges, key=str)
            todo += sorted((e for n in refs for e in mod.bindings.get(n, ())), key=str)
            todo.append((module, frozenset(n for n in refs if n in mod.functions)))
    return sorted(graph[m].path for m in loaded)


def notebook_entries(notebook: Path, package: str = PACKAGE) -> list[str]:
    """The entries of a notebook: the package's modules and functions its code cells use.

    ``from cae_impact import pipeline`` and then only ``pipeline.<name>`` attributes give
    ``cae_impact.pipeline:<names>``; a module used otherwise counts as a whole; ``from
    cae_impact.pipeline import f`` gives ``cae_impact.pipeline:f``. Lines of IPython magic
    (``%``, ``!``) are left out.
    """
    st = Path(notebook).stat()
    memo = (str(notebook), st.st_size, st.st_mtime_ns, package, str(PACKAGE_DIR))
    if memo not in _NOTEBOOKS:
        _NOTEBOOKS[memo] = _notebook_entries(Path(notebook), package)
    return list(_NOTEBOOKS[memo])


def _notebook_entries(notebook: Path, package: str) -> list[str]:
    cells = json.loads(Path(notebook).read_text(encoding="utf-8")).get("cells", [])

    source = "\n".join(
        "\n".join(line for line in ("".join(c["source"]) if isinstance(c["source"], list) else c["source"]).splitlines()
                  if not line.lstrip().startswith(("%", "!")))
        for c in cells if c.get("cell_type") == "code")
    tree = ast.parse(source, filename=str(notebook))
    graph_known = set(package_graph())
    bound: dict[str, str] = {}  # local name -> module
    entries: dict[str, set[str] | None] = {}  # module -> names used (None: the whole module)

    def ours(module: str) -> bool:
        return module == package or module.startswith(package + ".")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if ours(a.name):
                    if a.asname:
                        bound[a.asname] = a.name
                    else:
                        entries[a.name] = None  # ``import cae_impact.x``: used by its full name
        elif isinstance(node, ast.ImportFrom) and node.module and ours(node.module):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in graph_known:
                    bound[a.asname or a.name] = sub
                else:
                    entries.setdefault(node.module, set())
                    if entries[node.module] is not None:
                        entries[node.module].add(a.name)
    attrs: dict[str, set[str]] = {}
    other_uses: set[str] = set()
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in bound:
            parent = parents.get(node)
            if isinstance(parent, ast.Attribute) and parent.value is node:
                attrs.setdefault(node.id, set()).add(parent.attr)
            else:
                other_uses.add(node.id)
    for local, module in bound.items():
        if local in other_uses or local not in attrs:
            entries[module] = None
        elif entries.get(module, set()) is not None:
            entries[module] = entries.get(module, set()) | attrs[local]
    return sorted(m if names is None else f"{m}:{','.join(sorted(names))}" for m, names in entries.items())


def code_files(entries: Iterable[str], assets: Iterable[Path] = ()) -> list[Path]:
    """The files of a step's code: the closure of its entries, and its non-Python assets."""
    return sorted({*closure(entries), *(Path(a).resolve() for a in assets)})


def code_digest(files: Iterable[Path]) -> str:
    """One digest of the code files (path relative to the package's parent, and content)."""
    h = hashlib.sha256()
    for name, digest in file_hashes(files, PACKAGE_DIR.parent.resolve()).items():
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()
