"""``pip install .`` gives a working program, away from the source tree.

The wheel is built from a copy of the tree (no build/ nor egg-info left here) and
installed into a fresh virtual environment under tmp_path. The dependencies come
from this test's own environment through a .pth file, so nothing is downloaded;
the project itself is importable only from the new environment's site-packages.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 120  # a hung pip or import fails the test rather than the run

# Runs inside the new environment: every module of every installed package of the
# project, where each was found, and the default catalog and policies loaded the
# way the API loads them (api.app.load_policies on default Settings).
PROBE = """
import importlib, json, pkgutil, sys
from pathlib import Path

packages, modules = sys.argv[1].split(","), {}
for name in packages:
    module = importlib.import_module(name)
    modules[name] = module.__file__
    if hasattr(module, "__path__"):
        for info in pkgutil.walk_packages(module.__path__, name + "."):
            modules[info.name] = importlib.import_module(info.name).__file__
modules["worker"] = importlib.import_module("worker").__file__

from api.app import load_policies
from core.settings import Settings

settings = Settings()
runtime = load_policies(settings)
engine = runtime.holder.engine
print(json.dumps({
    "modules": modules,
    "catalog_path": str(settings.catalog_path),
    "policies_dir": str(settings.policies_dir),
    "resources": [entry.id for entry in engine.catalog.entries()],
    "policy_count": engine.policy_count,
}))
"""


def source_modules() -> tuple[list[str], set[str]]:
    """The project's packages (top-level directories with an __init__.py, not tests) and all their modules."""
    packages = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests")
    modules = {"worker"}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return packages, modules


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(  # noqa: S603 - our own commands
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=DEADLINE_S
    )
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".data", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "docs"
        ),
    )
    dist = tmp_path / "dist"
    # No build isolation: the dev extra's setuptools builds it, offline.
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, src, cwd=tmp_path)
    (wheel,) = dist.glob("jit_access-*.whl")
    return wheel


def make_venv(tmp_path: Path, wheel: Path) -> Path:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp_path
    )
    # The dependencies: this environment's site-packages, after the new one's. Its
    # editable-install hook (a .pth there) is not run, so the source tree stays out.
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip()
    (Path(purelib) / "_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


def test_installed_wheel_runs_outside_the_source_tree(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "config/catalog.yaml" in names
    assert {"config/policies/schema.cedarschema", "config/policies/request.cedar"} <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "bench/"))], "tests or bench shipped in the wheel"

    venv = make_venv(tmp_path, wheel)
    elsewhere = tmp_path / "elsewhere"  # no config/ here: the defaults must come from the install
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JIT_", "PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONNOUSERSITE"] = "1"
    packages, expected = source_modules()
    (tmp_path / "probe.py").write_text(PROBE)
    found = json.loads(
        run(venv / "bin" / "python", tmp_path / "probe.py", ",".join(packages), cwd=elsewhere, env=env).splitlines()[-1]
    )

    installed = venv.resolve()
    assert set(found["modules"]) == expected, "modules missing from (or extra in) the wheel"
    strays = {m: f for m, f in found["modules"].items() if not Path(f).resolve().is_relative_to(installed)}
    assert not strays, f"imported from outside the installed environment: {strays}"

    # The shipped example, loaded by default from the install, not from the working directory.
    assert Path(found["catalog_path"]).resolve().is_relative_to(installed)
    assert Path(found["policies_dir"]).resolve().is_relative_to(installed)
    assert "postgres:orders/public.customers" in found["resources"]
    assert found["policy_count"] > 0

    help_text = run(venv / "bin" / "jit", "--help", cwd=elsewhere, env=env)
    assert "Usage: jit" in help_text and "policy" in help_text
    checked = run(venv / "bin" / "jit", "policy", "check", found["policies_dir"], cwd=elsewhere, env=env)
    assert checked.startswith("ok: ")
