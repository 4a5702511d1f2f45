"""The house's rules, read from the code's own imports: rs_core's sub-packages stand in layers and no import runs
back up; rs_core never imports Streamlit; no private name is imported across modules; no import circle among
rs_core's modules or the app's widgets."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top: a module may import its own layer and the layers below it, never a layer above.
LAYERS = [
    ("foundation", ("rs_core.checks", "rs_core.untrusted", "rs_core.rounding", "rs_core.data")),
    ("models", ("rs_core.models",)),
    ("smoothing", ("rs_core.smoothing",)),
    ("attacks", ("rs_core.attacks",)),  # attacks on g use smoothing; training (SmoothAdv) may use attacks
    ("training", ("rs_core.training",)),
    ("dual", ("rs_core.dual",)),
    ("logs", ("rs_core.logs",)),
    ("cli", ("rs_core.cli",)),
]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path, root: Path = ROOT) -> list[tuple[str, list[str], int]]:
    """(module, names, line) for every import in the file, function-level ones included."""
    tree = ast.parse(path.read_text(), str(path))
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, [a.name for a in node.names], node.lineno))
    return out


def layer_of(module: str) -> int | None:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def rs_core_files(root: Path = ROOT) -> list[Path]:
    return sorted((root / "rs_core").rglob("*.py"))


def test_every_rs_core_module_has_a_layer():
    loose = [module_name(p) for p in rs_core_files()
             if layer_of(module_name(p)) is None and module_name(p) not in ("rs_core", "rs_core.__main__")]
    assert not loose, f"modules outside every layer: {loose}"


def upward_imports(root: Path = ROOT) -> list[str]:
    upward = []
    for path in rs_core_files(root):
        mine = layer_of(module_name(path, root))
        if mine is None:
            continue
        for module, names, line in imports(path, root):
            targets = [module] + [f"{module}.{n}" for n in names]
            theirs = max((t for t in map(layer_of, targets) if t is not None), default=None)
            if theirs is not None and theirs > mine:
                upward.append(f"{path.relative_to(root)}:{line} ({LAYERS[mine][0]}) imports {module} "
                              f"({LAYERS[theirs][0]})")
    return upward


def test_no_import_runs_back_up_a_layer():
    upward = upward_imports()
    assert not upward, "\n".join(upward)


def test_rs_core_never_imports_streamlit():
    found = [f"{p.relative_to(ROOT)}:{line}" for p in rs_core_files() for module, _, line in imports(p)
             if module.split(".")[0] == "streamlit"]
    assert not found, found


@pytest.mark.parametrize("folder", ["rs_core", "widgets", "pages", "benchmarks"])
def test_no_private_name_is_imported_across_modules(folder):
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")) + ([ROOT / "app.py"] if folder == "pages" else []):
        for module, names, line in imports(path):
            if module.split(".")[0] not in ("rs_core", "widgets"):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private += [part for part in module.split(".") if part.startswith("_") and not part.startswith("__")]
            if private:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {private} from {module}")
    assert not found, "\n".join(found)


def circles(files: list[Path], root: Path = ROOT) -> list[list[str]]:
    """Strongly connected groups (more than one module) of the import graph among ``files``."""
    names = {module_name(p, root): p for p in files}
    graph = {}
    for name, path in names.items():
        targets = set()
        for module, imported, _ in imports(path, root):
            for t in [module] + [f"{module}.{n}" for n in imported]:
                if t in names and t != name:
                    targets.add(t)
        graph[name] = targets
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("folder", ["rs_core", "widgets"])
def test_no_import_circle(folder):
    assert circles(sorted((ROOT / folder).rglob("*.py"))) == []


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path):
    """The rules above can fail: a planted circle and a planted upward import are found."""
    pkg = tmp_path / "rs_core"
    for sub in ("models", "cli"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "a.py").write_text("from rs_core.models import b\nfrom rs_core.cli.main import run\n")
    (pkg / "models" / "b.py").write_text("from .a import x\n")
    (pkg / "cli" / "main.py").write_text("")
    assert circles(rs_core_files(tmp_path), tmp_path) == [["rs_core.models.a", "rs_core.models.b"]]
    assert upward_imports(tmp_path) == ["rs_core/models/a.py:2 (models) imports rs_core.cli.main (cli)"]


def test_the_command_line_starts_without_scipy_stats_or_optimize():
    """A `python -m rs_core …` start pays for torch; scipy.stats and scipy.optimize (~0.4 s more) are imported only
    by the calls that need them (PREDICT's binomial test, the anytime bound's root), not by every command."""
    code = ("import sys, rs_core.cli.main; bad = [m for m in ('scipy.stats', 'scipy.optimize', 'statsmodels', "
            "'pandas') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
