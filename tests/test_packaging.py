"""A regular (non-editable) install serves the whole browser UI.

The UI lives in the checkout's top-level ``web/`` and is installed as ``profviz/_web/``
(pyproject.toml ``[tool.setuptools]``). These tests build a real wheel from the tracked files
(isolated build, as ``pip install .`` does, with the build requirements from pyproject.toml),
install it into a fresh virtualenv and serve pages from the installed copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.venvs import child_venv

ROOT = Path(__file__).resolve().parents[1]
INSTALLED_WEB = "profviz/_web/"

pytestmark = pytest.mark.slow


def tracked_files(*paths: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--", *paths], cwd=ROOT, check=True, capture_output=True).stdout
    return [name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


def quiet_pip_env() -> dict[str, str]:
    return {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the tracked files (no build/ leftovers, nothing untracked)."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    for name in tracked_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(work / "dist")],
        capture_output=True, text=True, timeout=180, env=quiet_pip_env(),
    )
    assert built.returncode == 0, f"pip wheel failed:\n{built.stdout}\n{built.stderr}"
    wheels = list((work / "dist").glob("profviz-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_ships_every_ui_file_but_not_the_ui_tests(wheel_names):
    web_files = [name for name in tracked_files("web") if not name.startswith("web/tests/")]
    assert {"web/index.html", "web/vendor/d3.min.js", "web/vendor/d3.LICENSE"} <= set(web_files)
    missing = [name for name in web_files if INSTALLED_WEB + name.removeprefix("web/") not in wheel_names]
    assert missing == [], f"UI files missing from the wheel: {missing}"
    assert not [name for name in wheel_names if name.startswith(INSTALLED_WEB + "tests/")]
    assert not [name for name in wheel_names if name.startswith("web/")], "web/ must be installed under profviz/, not top level"


def test_wheel_ships_every_tracked_package_file(wheel_names):
    """Guards the explicit package list in pyproject.toml: a new subpackage must be added there."""
    expected = tracked_files("profviz") + [name.replace("samples/profviz_shop/", "profviz_shop/") for name in tracked_files("samples/profviz_shop")]
    missing = [name for name in expected if name not in wheel_names]
    assert missing == [], f"files missing from the wheel (add their package to [tool.setuptools] packages): {missing}"


SERVE_FROM_INSTALL = r"""
import json, re, sys
import profviz
from profviz.server import create_app
from profviz.server.pages import WEB_ROOT_KEY

app = create_app(sys.argv[1])
client = app.test_client()
index = client.get("/")
html = index.get_data(as_text=True)
referenced = re.findall(r'(?:src|href)="(/[^"/][^"]*)"', html)
responses = {}
for path in ["/", "/profiles/1", *referenced]:
    response = client.get(path)
    responses[path] = {"status": response.status_code, "type": response.mimetype, "size": len(response.get_data())}
print(json.dumps({
    "profviz_file": profviz.__file__,
    "web_root": app.config[WEB_ROOT_KEY],
    "referenced": referenced,
    "responses": responses,
}))
"""


def test_installed_wheel_serves_the_ui_from_the_installed_copy(wheel, tmp_path):
    venv = tmp_path / "venv"
    bin_dir = child_venv(venv)
    python, pip = bin_dir / "python", bin_dir / "pip"
    installed = subprocess.run(
        [str(pip), "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed", str(wheel)],
        capture_output=True, text=True, timeout=120, env=quiet_pip_env(),
    )
    assert installed.returncode == 0, f"pip install failed:\n{installed.stdout}\n{installed.stderr}"

    served = subprocess.run(
        [str(python), "-c", SERVE_FROM_INSTALL, str(tmp_path / "store.db")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
    )
    assert served.returncode == 0, served.stderr
    result = json.loads(served.stdout.strip().splitlines()[-1])

    site_packages = venv.resolve()
    assert Path(result["profviz_file"]).resolve().is_relative_to(site_packages), result["profviz_file"]
    assert Path(result["web_root"]).resolve().is_relative_to(site_packages), result["web_root"]
    assert Path(result["web_root"]).name == "_web"

    responses = result["responses"]
    assert "/vendor/d3.min.js" in result["referenced"]
    assert "/js/main.js" in result["referenced"] and "/css/app.css" in result["referenced"]
    expected_type = {".js": "text/javascript", ".css": "text/css"}
    for path, response in responses.items():
        assert response["status"] == 200, (path, response)
        assert response["size"] > 0, (path, response)
        suffix = re.search(r"\.[a-z0-9]+$", path)
        assert response["type"] == (expected_type[suffix.group()] if suffix else "text/html"), (path, response)
    assert responses["/vendor/d3.min.js"]["size"] > 100_000, "the vendored d3 bundle looks truncated"
