"""The package's shape, as CONTRIBUTING.md sets it: no module over 500 lines, and no modules of
lionfer/ that import each other, two of them or round a loop (an import inside a function or
under `if TYPE_CHECKING:` counts: it ties the two modules as much as one at the top)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lionfer"
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def statements(tree: ast.AST, run_only: bool):
    """Every node of tree; where run_only, less function bodies and `if TYPE_CHECKING:` blocks,
    which importing the module does not run."""
    for node in ast.iter_child_nodes(tree):
        if run_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if run_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        yield node
        yield from statements(node, run_only)


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules of `known` that the module `name`, the file at path, imports anywhere in it;
    a package's __init__ only as importing it runs it (its lazy __getattr__ hands names on from
    its own modules once they are asked for). A name imported from a package counts as its
    module where it is one (from lionfer import run_names), else as the package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in statements(ast.parse(path.read_text()), path.name == "__init__.py"):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in names:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target:
                found.add(target)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports."""
    modules = package_modules()
    return {name: imported(path, name, set(modules)) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.append(member)
                if member == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_is_over_500_lines():
    long = {
        str(path.relative_to(ROOT)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, "split these modules along their seams (CONTRIBUTING.md, Layout)"


def test_no_modules_import_each_other():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_loop_and_an_import_inside_a_function(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]
    source = tmp_path / "lionfer" / "x.py"
    source.parent.mkdir()
    source.write_text("import os\n\ndef f():\n    from lionfer.y import g\n    from . import z\n")
    known = {"lionfer.x", "lionfer.y", "lionfer.z", "lionfer"}
    assert imported(source, "lionfer.x", known) == {"lionfer.y", "lionfer.z"}
    face = source.with_name("__init__.py")  # a package's face: its lazy imports are not run
    face.write_text(
        "from typing import TYPE_CHECKING\n\nfrom lionfer.y import g\n\nif TYPE_CHECKING:\n"
        "    import lionfer.x\n\ndef __getattr__(name):\n    import lionfer.z\n"
    )
    assert imported(face, "lionfer", known) == {"lionfer.y"}
