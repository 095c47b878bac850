"""Product code stays small: functions of at most 60 lines, modules of at most 600.

A function is counted from its first decorator to its last line, docstring included.
sandbox/ and bench/ are tools, not product, and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("bot", "rollout")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 600

def _modules() -> list[Path]:
    return sorted(p for package in PRODUCT for p in (ROOT / package).rglob("*.py"))


def _functions(tree: ast.Module) -> list[tuple[str, int]]:
    """``(qualified name, lines)`` of every function and method, nested ones included."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                lines = (child.end_lineno or child.lineno) - first + 1
                found.append((f"{prefix}{child.name}", lines))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _long_functions() -> dict[str, int]:
    long: dict[str, int] = {}
    for path in _modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        where = path.relative_to(ROOT).as_posix()
        for name, lines in _functions(tree):
            if lines > MAX_FUNCTION_LINES:
                long[f"{where}:{name}"] = lines
    return long


def test_the_product_is_scanned() -> None:
    assert len(_modules()) > 50
    names = {name for name, _ in _functions(ast.parse((ROOT / "bot/operations.py").read_text()))}
    assert "Operations.start" in names and "describe_failure" in names


def test_no_product_function_is_over_60_lines() -> None:
    long = _long_functions()
    over = [f"{name}: {lines} lines" for name, lines in sorted(long.items())]
    assert not over, (
        f"functions over {MAX_FUNCTION_LINES} lines (split them by meaning):\n" + "\n".join(over)
    )


def test_no_product_module_is_over_600_lines() -> None:
    over = [
        f"{path.relative_to(ROOT)}: {count} lines"
        for path in _modules()
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not over, (
        f"modules over {MAX_MODULE_LINES} lines (split them by concern):\n" + "\n".join(over)
    )
