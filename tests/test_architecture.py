"""The house rules of plantain_core's layout (docs/writing-a-plugin.md and README's Layout):
no import circle (imports inside functions count), at most 12 modules at the top, no
function over 8 parameters, a cheap ``import plantain_core``, and the built-in families
living in plugins/. Each check is also run on a planted defect, so it can fail."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
import warnings

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORE = ROOT / "plantain_core"


def modules(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Dotted name -> file of every module under ``root`` (a package: its ``__init__.py``)."""
    out = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        out[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    return out


def import_graph(mods: dict[str, pathlib.Path]) -> dict[str, set[str]]:
    """Module -> the modules it imports anywhere in its body (functions included). Edges to a
    package's ``__init__`` are left out, as in the repository's before-stop check: importing a
    name from a package is not a dependency on the package's other modules."""

    def targets(cur: str, node) -> list[str]:
        pkg = cur if mods[cur].name == "__init__.py" else cur.rsplit(".", 1)[0]
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            outs = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            outs = [a.name for a in node.names]
        return [o for o in outs if o in mods and o != cur and mods[o].name != "__init__.py"]

    edges = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges[m].update(targets(m, node))
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    # a deep graph recurses deeply; the limit is restored, as other tests rely on hitting it
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in edges:
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return out


def long_signatures(root: pathlib.Path, limit: int = 8) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "cli":
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
                if n > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({n})")
    return found


def plant(tmp_path: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_no_import_circle_in_plantain_core():
    assert circles(import_graph(modules(CORE))) == []


def test_the_circle_check_finds_a_planted_circle_through_a_function_level_import(tmp_path):
    root = plant(tmp_path, {
        "__init__.py": "", "a.py": "from .b import x\n", "c.py": "from . import a\n",
        "sub/__init__.py": "", "b.py": "def x():\n    from .sub.d import y\n",
        "sub/d.py": "def y():\n    from ..c import a\n",
    })
    assert circles(import_graph(modules(root))) == [["pkg.a", "pkg.b", "pkg.c", "pkg.sub.d"]]


def test_at_most_twelve_modules_at_the_top():
    top = sorted(p.name for p in CORE.glob("*.py"))
    assert len(top) <= 12, top
    # every other module sits in a package that says what it owns and may import
    for package in sorted(p.parent for p in CORE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
        assert "import" in doc, f"{package.name}/__init__.py: its docstring says nothing of what it may import"


def test_no_function_takes_more_than_eight_parameters(tmp_path):
    assert long_signatures(CORE) == []
    root = plant(tmp_path, {"m.py": "def f(a, b, c, d, e, g, h, i, *, j):\n    pass\n"})
    assert long_signatures(root) == [str(pathlib.Path('pkg', 'm.py')) + ':1 f (9)']


def test_import_plantain_core_imports_neither_torch_nor_numpy():
    code = ("import sys, plantain_core, plantain_core.models, plantain_core.plugins, plantain_core.spec\n"
            "plantain_core.ProbeSpec, plantain_core.Pair, plantain_core.Interpretation\n"
            "print(sorted(m for m in ('torch', 'numpy', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
    # and the check sees an import when there is one
    out = subprocess.run([sys.executable, "-c", code.replace("plantain_core.Interpretation", "plantain_core.LayoutStats")],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "['numpy']"


def test_built_in_families_are_plugins_the_core_does_not_import():
    mods = modules(CORE)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and not node.level:
                assert not (node.module or "").startswith("plantain_plugins"), f"{name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("plantain_plugins") for a in node.names), name
    from plantain_core.models.lookup import builtin_families
    from plantain_core.plugins import get_registry

    registry = get_registry()
    for family in builtin_families():
        assert type(family).__module__.startswith("plantain_plugins.families."), family
        entry = registry.families[family.name]
        assert entry.obj is family and entry.provider.distribution == "plantain"


OLD_PATHS = [  # 0.1 module, a name it had, where that name lives now
    ("plantain_core.family", "family_of", "plantain_core.models.lookup"),
    ("plantain_core.family", "ModelFamily", "plantain_core.models.family"),
    ("plantain_core.runner", "run_probe", "plantain_core.capture.runner"),
    ("plantain_core.stats", "paired_t", "plantain_core.stats.engine"),
    ("plantain_core.pairtable", "read_pairs", "plantain_core.spec.pairfile"),
    ("plantain_core.models.flux1", "FLUX1", "plantain_plugins.families.flux1"),
    ("plantain_core.models.builtin", "TINY_KLEIN", "plantain_plugins.families.builtin"),
]


@pytest.mark.parametrize("old, name, new", OLD_PATHS)
def test_old_import_paths_work_with_a_deprecation_warning(old, name, new):
    import importlib

    code = (f"import warnings\nwarnings.simplefilter('error', DeprecationWarning)\n"
            f"try:\n    from {old} import {name}\nexcept DeprecationWarning as w:\n    print('warned', w)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.startswith("warned") and new in out.stdout and "0.3" in out.stdout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        got = getattr(importlib.import_module(old), name)
    assert got is getattr(importlib.import_module(new), name)


def test_new_paths_warn_nothing():
    code = ("import warnings\nwarnings.simplefilter('error')\n"
            "from plantain_core.stats import engine\nfrom plantain_core.spec import probe_spec\n"
            "from plantain_core.capture import runner\nfrom plantain_core.causal import effects\n"
            "from plantain_core.sweep import run\nimport plantain_core.models.family\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "ok", out.stderr
