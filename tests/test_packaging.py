"""The wheel: everything installs under one `zchat` namespace, and nothing else does.

Each top-level folder becomes zchat.<folder> (pyproject.toml, package-dir), so a wheel
that put `envelope/` or `broker/` at the top of site-packages would shadow other
distributions' modules of those names. The wheel is built from a copy of the tree,
without build isolation (setuptools and wheel come with the dev extra), so the test needs
no network and leaves no build/ behind in the working tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("envelope", "wire", "broker", "peer", "bench")
BUILD_TIMEOUT = 50  # seconds; pytest's own timeout is 60

#: No dependencies, no index, no isolated build environment: nothing to download.
PIP_WHEEL = (
    *(sys.executable, "-m", "pip", "wheel"),
    *("--no-deps", "--no-index", "--no-build-isolation", "--quiet"),
)

#: What a copy of the tree leaves out: local state that is no part of the source.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def installed_name(path: Path) -> str:
    """Where a source file lands in the wheel: envelope/x.py -> zchat/envelope/x.py."""
    parts = path.relative_to(ROOT).parts
    return "/".join(parts if parts[0] == "zchat" else ("zchat", *parts))


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE, symlinks=True)
    out = work / "dist"
    result = subprocess.run(
        [*PIP_WHEEL, "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("zchat-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


@pytest.mark.slow
def test_the_wheel_puts_everything_under_zchat(wheel_names: list[str]) -> None:
    tops = {PurePosixPath(name).parts[0] for name in wheel_names}
    metadata = {top for top in tops if top.endswith(".dist-info")}
    assert len(metadata) == 1
    assert tops - metadata == {"zchat"}


def test_the_wheel_holds_every_folder_as_a_zchat_subpackage(wheel_names: list[str]) -> None:
    expected = {
        "zchat/envelope/__init__.py",
        "zchat/wire/protocol.py",
        "zchat/broker/core.py",
        "zchat/peer/core.py",
        "zchat/bench/__init__.py",
        "zchat/py.typed",
        *(f"zchat/{package}/py.typed" for package in PACKAGES),
    }
    assert expected <= set(wheel_names)


def test_the_wheel_holds_every_source_module_and_no_other(wheel_names: list[str]) -> None:
    # A new subpackage (zchat/commands/, say) must be listed in pyproject.toml's
    # packages, or it would be missing from every install but the editable one.
    in_tree = {
        installed_name(path)
        for folder in ("zchat", *PACKAGES)
        for path in (ROOT / folder).rglob("*.py")
    }
    in_wheel = {name for name in wheel_names if name.endswith(".py")}
    assert in_wheel == in_tree


def test_the_wheel_holds_no_tests(wheel_names: list[str]) -> None:
    assert [name for name in wheel_names if "tests/" in name or "/test_" in name] == []
