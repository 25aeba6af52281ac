"""Packaging: `core/` installs as `ttsadapt`, `plugins/` as `ttsadapt.plugins`, nothing else at top level."""

import subprocess
import sys
import tomllib
import zipfile

from helpers import REPO, cli


def _declared_packages() -> set[str]:
    return set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )


def test_every_package_folder_is_declared():
    found = set()
    for top, prefix in (("core", "ttsadapt"), ("plugins", "ttsadapt.plugins")):
        for init in (REPO / top).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / top).parts
            found.add(".".join((prefix, *rel)))
    missing = found - _declared_packages()
    assert not missing, (
        f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    )


def test_wheel_has_only_the_ttsadapt_namespace(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    wheel = next(tmp_path.glob("ttsadapt-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"ttsadapt", next(t for t in tops if t.endswith(".dist-info"))}, tops
    assert "ttsadapt/cli.py" in names and "ttsadapt/plugins/metrics/dnsmos.py" in names
    assert "ttsadapt/plugins/metrics/wada_snr_table.json" in names
    assert "ttsadapt/plugins/backbones/reference/voxcpm2-tiny-espeak/model.safetensors" in names
    assert "ttsadapt/resources/sentences/en.txt" in names
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith("entry_points.txt")))
        .decode()
    )
    assert "ttsadapt = ttsadapt.cli:main" in entry_points


def test_every_command_has_help():
    for args in (
        [],
        ["plugins"],
        ["ls"],
        ["validate"],
        ["run"],
        ["leaderboard"],
        ["score"],
        ["data"],
        ["data", "inspect"],
        ["data", "build"],
    ):
        r = cli(*args, "--help")
        assert r.returncode == 0, (args, r.stderr)
        assert "usage: ttsadapt" in r.stdout


def test_unknown_command_is_a_usage_error():
    r = cli("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr
