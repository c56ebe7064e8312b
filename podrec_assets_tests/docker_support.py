"""Helpers of the test_docker_* files: where the deployment files are, and the resolved compose model."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from podrec_assets.settings import PROJECT_ROOT

DOCKER_DIR = PROJECT_ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
ENV_EXAMPLE = DOCKER_DIR / ".env.example"
VENV_BIN = Path(sys.executable).parent

# services built from docker/Dockerfile that run podrec code; the Dash app runs its own image
PODREC_SERVICES = ("code-location", "webserver", "daemon")


def require_tool(name: str, install_hint: str) -> str:
    """The tool's path, or a failure (never a skip) that says how to install it."""
    path = shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    assert path, f"`{name}` is not installed, so the docker/ files cannot be validated: {install_hint}"
    return path


def docker_compose(*args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess:
    """Debian's docker-compose (1.29, no engine needed for `config`) in a clean environment, so variables of
    the calling shell never leak into the interpolation."""
    tool = require_tool("docker-compose", "`make system-packages` (Debian package docker-compose)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [
            tool,
            "--project-directory",
            str(DOCKER_DIR),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(env_file),
            "--profile",
            "spark",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def resolved_compose(env_file: Path = ENV_EXAMPLE) -> dict:
    """The compose model after interpolation and validation by docker-compose."""
    result = docker_compose("config", env_file=env_file)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def dockerfiles() -> list[Path]:
    return sorted(p for p in DOCKER_DIR.iterdir() if p.name == "Dockerfile" or p.name.endswith(".Dockerfile"))


def distribution_closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution pip installs for these requirements (as installed here), by normalised name."""
    seen: set[str] = set()
    todo = [(r, "") for r in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = normalise(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        seen.add(name)
        for dependency in metadata.requires(requirement.name) or []:
            dep = Requirement(dependency)
            if dep.marker is None or dep.marker.evaluate({"extra": ""}):
                todo.append((dep, ""))
            else:
                todo += [(dep, e) for e in requirement.extras if dep.marker.evaluate({"extra": e})]
    return {s for s in seen if "[" not in s}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
