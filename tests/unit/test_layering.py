"""Dependencies point down: rules < core values < adapters < jobs < the composition root (services,
lambda_runtime, cli). Checked on every module's imports, including those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "shared" / "license_notifications"
CORE = {"models", "errors", "observability", "clock", "events", "outcome", "config"}
ROOT = {"services", "lambda_runtime", "cli", "ops"}


def layer(module: str) -> int:
    """0 rules, 1 core values, 2 adapters, 3 jobs, 4 the composition root."""
    top = module.split(".")[0]
    if top == "rules":
        return 0
    if top in CORE:
        return 1
    if top == "adapters":
        return 2
    if top == "jobs":
        return 3
    if top in ROOT:
        return 4
    raise AssertionError(f"unplaced module {module}: give it a layer")


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        if relative.name == "__init__":
            continue
        found.append((".".join(relative.parts), path))
    return found


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("license_notifications."):
            names.add(node.module.removeprefix("license_notifications."))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("license_notifications."):
                    names.add(alias.name.removeprefix("license_notifications."))
    return names


@pytest.mark.parametrize(("module", "path"), modules(), ids=[m for m, _ in modules()])
def test_no_import_points_up(module: str, path: Path):
    upward = sorted(name for name in imported(path) if layer(name) > layer(module))
    assert upward == [], f"{module} imports {upward} from a higher layer"


def test_jobs_never_import_the_composition_root_and_adapters_never_import_jobs():
    for module, path in modules():
        targets = {name.split(".")[0] for name in imported(path)}
        if module.startswith("jobs."):
            assert not targets & ROOT, module
        if module.startswith("adapters."):
            assert "jobs" not in targets, module
