"""Packaging: `core/` installs as `ttsadapt`, `plugins/` as `ttsadapt.plugins`, nothing else at top level."""

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
from helpers import REPO, cli
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


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


def _wheel_metadata(tmp_path) -> str:
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
    wheel = zipfile.ZipFile(next(tmp_path.glob("ttsadapt-*.whl")))
    return wheel.read(
        next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    ).decode()


def _requires(metadata_text: str) -> dict[str | None, list[Requirement]]:
    """Requires-Dist of the wheel by extra (None: the runtime requirements)."""
    groups: dict[str | None, list[Requirement]] = {}
    for line in metadata_text.splitlines():
        if line.startswith("Requires-Dist: "):
            req = Requirement(line.removeprefix("Requires-Dist: "))
            extra = None
            if req.marker is not None:
                found = re.search(r'extra == "([^"]+)"', str(req.marker))
                extra = found.group(1) if found else None
            groups.setdefault(extra, []).append(req)
    return groups


def test_wheel_dependencies_are_honest(tmp_path):
    from ttsadapt.plugins.metrics._provenance import PINNED_WEIGHTS

    groups = _requires(_wheel_metadata(tmp_path))
    runtime = {canonicalize_name(r.name): r for r in groups[None]}
    # torch is a range: pip keeps the torch a machine already has
    assert runtime["torch"].specifier.contains("2.13.0") and not any(
        s.operator == "==" for s in runtime["torch"].specifier
    )
    # the weight packages are pinned exactly, at the versions whose hashes are checked
    for dist, (_, version, files) in PINNED_WEIGHTS.items():
        spec = list(runtime[dist].specifier)
        assert [(s.operator, s.version) for s in spec] == [("==", version)], (dist, spec)
        assert files and all(len(h) == 64 for h in files.values())
    # setuptools<81 only beside the package that needs it (resemblyzer -> webrtcvad ->
    # pkg_resources), in whichever group that is
    for extra, reqs in groups.items():
        names = {canonicalize_name(r.name) for r in reqs}
        if "setuptools" in names:
            assert "resemblyzer" in names, f"setuptools pinned in {extra or 'runtime'} without need"
    # the default speaker encoder and its setuptools pin are the `speaker` extra, not runtime
    assert "setuptools" not in runtime and "resemblyzer" not in runtime
    speaker = {canonicalize_name(r.name) for r in groups["speaker"]}
    assert speaker == {"resemblyzer", "setuptools"}
    # the default tracker's package (Accelerate's TensorBoard tracker needs `tensorboard`)
    assert "tensorboard" in runtime
    # voxcpm is a documented `pip install --no-deps` step, never a dependency that drags gradio,
    # funasr, modelscope and torchaudio in
    every = {canonicalize_name(r.name) for reqs in groups.values() for r in reqs}
    assert not every & {"voxcpm", "gradio", "funasr", "modelscope", "torchaudio"}
    # test-only packages stay in the dev extra
    assert not {"pytest", "playwright", "ruff"} & set(runtime)


def test_installed_weight_packages_are_the_pinned_ones_and_match_their_hashes():
    from importlib import metadata

    from ttsadapt.plugins.metrics import _provenance

    for dist, (_, version, _) in _provenance.PINNED_WEIGHTS.items():
        assert metadata.version(dist) == version, dist
        checked = _provenance.verify_pinned(dist)
        assert checked == _provenance.PINNED_WEIGHTS[dist][2]


def test_a_changed_weight_file_is_an_error_naming_it(tmp_path, monkeypatch):
    from ttsadapt.plugins.metrics import _provenance

    monkeypatch.setenv("TTSADAPT_CACHE", str(tmp_path / "cache"))
    real = _provenance.package_file("speechmos", "")
    fake = tmp_path / "speechmos"
    shutil.copytree(real / "dnsmos_models", fake / "dnsmos_models")
    # the copy stands for the installed package: its files are checked against the table
    monkeypatch.setattr(_provenance, "_pinned_roots", lambda: {fake.resolve(): "speechmos"})
    good = fake / "dnsmos_models" / "model_v8.onnx"
    assert (
        _provenance.file_sha256(good)
        == _provenance.PINNED_WEIGHTS["speechmos"][2]["dnsmos_models/model_v8.onnx"]
    )
    bad = fake / "dnsmos_models" / "sig_bak_ovr.onnx"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    bad.write_bytes(bytes(data))
    with pytest.raises(
        _provenance.WeightFileError, match=r"sig_bak_ovr\.onnx.*speechmos==0\.0\.1\.1"
    ):
        _provenance.file_sha256(bad)
    monkeypatch.setattr(_provenance, "package_file", lambda package, rel: fake / rel)
    with pytest.raises(_provenance.WeightFileError, match=r"aecmos_models.* is missing"):
        _provenance.verify_pinned("speechmos")


def test_run_sh_installs_test_only_packages_for_test_and_bench_only():
    text = (REPO / "run.sh").read_text()
    runtime_apt = re.search(r"^apt_packages=\(([^)]*)\)", text, re.M).group(1).split()
    assert "chromium" not in runtime_apt and "espeak-ng" in runtime_apt
    test_block = re.search(r"^  test\|bench\)(.*?);;", text, re.M | re.S).group(1)
    assert "chromium" in test_block and 'extras="[dev,speaker,ray]"' in test_block
    # the quick suite scores speaker similarity and runs through Ray, a run per core
    assert 'extras="[speaker,ray]"' in text
    assert "ttsadapt run benchmarks/quick.toml --executor ray" in text
    assert 'pip" install -q -e ".$extras"' in text and '".[dev]"' not in text
    assert '--no-deps "$VOXCPM"' in text and 'VOXCPM="voxcpm==2.0.3"' in text
