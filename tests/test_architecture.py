"""The folder tree is the architecture: these tests read the imports and keep the arrows pointing down.

services -> tasks.core; a stage -> core, configs and the stages before it; configs -> tasks.core.errors;
flows -> stages; Prefect only in each stage's tasks.py; flows that wire and do not compute.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.core.settings import REPO_ROOT

# A stage may import the stages before it, never one after it.
STAGES = ("data", "training", "evaluation", "deployment", "monitoring", "ops")


def python_files(folder: str) -> list[Path]:
    return sorted((REPO_ROOT / folder).rglob("*.py"))


def imports(path: Path) -> Iterator[str]:
    """Every module a file imports, at the top or inside a function."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def project_imports(path: Path) -> set[str]:
    roots = ("tasks", "configs", "flows", "services", "deployments")
    return {name for name in imports(path) if name.split(".")[0] in roots}


def relative(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


def test_tasks_holds_stage_packages_and_no_loose_modules() -> None:
    loose = sorted(p.name for p in (REPO_ROOT / "tasks").glob("*.py") if p.name != "__init__.py")
    assert loose == []
    packages = sorted(p.name for p in (REPO_ROOT / "tasks").iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(("core", *STAGES))


def test_services_import_only_tasks_core() -> None:
    wrong = [
        f"{relative(path)}: {name}"
        for path in python_files("services")
        for name in project_imports(path)
        if name.startswith(("tasks", "configs", "flows", "deployments")) and not name.startswith("tasks.core")
    ]
    assert wrong == []


def test_core_imports_no_stage_config_flow_or_service() -> None:
    wrong = [
        f"{relative(path)}: {name}"
        for path in python_files("tasks/core")
        for name in project_imports(path)
        if name != "tasks" and not name.startswith("tasks.core")
    ]
    assert wrong == []


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_core_configs_and_earlier_stages_only(stage: str) -> None:
    later = STAGES[STAGES.index(stage) + 1 :]
    forbidden = ("flows", "services", "deployments", *(f"tasks.{s}" for s in later))
    wrong = [
        f"{relative(path)}: {name}"
        for path in python_files(f"tasks/{stage}")
        for name in project_imports(path)
        if name.startswith(forbidden)
    ]
    assert wrong == []


def test_configs_import_nothing_from_tasks_but_errors() -> None:
    wrong = [
        f"{relative(path)}: {name}"
        for path in python_files("configs")
        for name in project_imports(path)
        if not name.startswith(("configs", "tasks.core.errors")) and name not in ("tasks", "tasks.core")
    ]
    assert wrong == []


@pytest.mark.parametrize("stage", ["core", *STAGES])
def test_prefect_is_imported_only_by_a_stage_tasks_module(stage: str) -> None:
    wrong = [
        relative(path)
        for path in python_files(f"tasks/{stage}")
        if path.name != "tasks.py" and any(name.split(".")[0] == "prefect" for name in imports(path))
    ]
    assert wrong == []


def flow_functions() -> Iterator[tuple[Path, ast.FunctionDef]]:
    for path in python_files("flows"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and getattr(d.func, "id", "") == "flow" for d in node.decorator_list
            ):
                yield path, node


def test_every_flow_is_found() -> None:
    assert sorted(node.name for _, node in flow_functions()) == [
        "add_reviews_flow",
        "deploy_flow",
        "eval_flow",
        "full_flow",
        "monitor_flow",
        "train_flow",
    ]


@pytest.mark.parametrize("path_and_flow", list(flow_functions()), ids=lambda item: item[1].name)
def test_flow_body_is_a_short_list_of_task_calls(path_and_flow: tuple[Path, ast.FunctionDef]) -> None:
    """Flows wire, they do not compute: no body over 30 lines, no hand-written run lifecycle."""
    path, node = path_and_flow
    first = node.body[1] if isinstance(node.body[0], ast.Expr) else node.body[0]  # after the docstring
    length = (node.end_lineno or 0) - first.lineno + 1
    assert length <= 30, f"{relative(path)}: {node.name} body is {length} lines"
    source = ast.get_source_segment(path.read_text(encoding="utf-8"), node) or ""
    assert "finish_tracking_run" not in source and "except BaseException" not in source
