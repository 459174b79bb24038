from __future__ import annotations

from pathlib import Path

import pytest

from dlnotes import paths, profiles, runtime


def test_data_dir_prefers_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DLNOTES_DATA_DIR", str(tmp_path / "somewhere"))
    assert paths.data_dir() == tmp_path / "somewhere"


def test_data_dir_defaults_to_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DLNOTES_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert paths.data_dir() == tmp_path / "dlnotes" / "tiny-imagenet-200"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.cache_dir() == tmp_path / "home" / ".cache" / "dlnotes"


def test_empty_data_dir_variable_is_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DLNOTES_DATA_DIR", "  ")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert paths.data_dir() == tmp_path / "dlnotes" / "tiny-imagenet-200"


@pytest.mark.parametrize(
    ("requested", "gpu", "full_data", "expected"),
    [
        ("smoke", True, True, "smoke"),
        ("full", False, False, "full"),
        ("auto", True, True, "full"),
        ("auto", True, False, "smoke"),
        ("auto", False, True, "smoke"),
        (" AUTO ", False, False, "smoke"),
    ],
)
def test_resolve_profile(requested: str, gpu: bool, full_data: bool, expected: str) -> None:
    profile = profiles.resolve_profile(requested, gpu_available=gpu, full_data=full_data)
    assert profile.name == expected
    assert profile.reason


def test_auto_reason_names_what_is_missing() -> None:
    profile = profiles.resolve_profile("auto", gpu_available=False, full_data=True)
    assert profile.reason == "auto: no GPU is visible"


def test_unknown_profile_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown run profile 'fast'"):
        profiles.resolve_profile("fast", gpu_available=True, full_data=True)


def test_pick_returns_the_value_of_the_profile() -> None:
    assert profiles.Profile("smoke", "x").pick(smoke=2, full=30) == 2
    assert profiles.Profile("full", "x").pick(smoke=2, full=30) == 30


def test_get_profile_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLNOTES_PROFILE", "full")
    assert profiles.get_profile().name == "full"
    monkeypatch.setenv("DLNOTES_PROFILE", "smoke")
    assert profiles.get_profile().name == "smoke"
    assert profiles.get_profile("full").is_full


def test_auto_profile_is_smoke_on_the_mini_subset(
    monkeypatch: pytest.MonkeyPatch, tiny_imagenet: Path
) -> None:
    monkeypatch.setenv("DLNOTES_PROFILE", "auto")
    assert not profiles.full_dataset_present(tiny_imagenet)
    assert profiles.get_profile().name == "smoke"


def test_full_dataset_is_recognised_by_its_200_classes(tmp_path: Path) -> None:
    assert not profiles.full_dataset_present(tmp_path)
    (tmp_path / "wnids.txt").write_text("".join(f"n{i:08d}\n" for i in range(200)))
    (tmp_path / "train").mkdir()
    assert not profiles.full_dataset_present(tmp_path)  # no val annotations yet
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "val_annotations.txt").write_text("")
    assert profiles.full_dataset_present(tmp_path)


def test_setup_reports_profile_backend_and_device(capsys: pytest.CaptureFixture[str]) -> None:
    runtime.setup()
    line = runtime.describe()
    assert capsys.readouterr().out.strip() == line
    assert "profile smoke" in line
    assert "on tensorflow" in line
    assert "no GPU visible" in line  # the test machines have no GPU


def test_native_stderr_is_silenced_and_restored(capfd: pytest.CaptureFixture[str]) -> None:
    import os

    with runtime.native_stderr_silenced():
        os.write(2, b"noise from C++\n")
    os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n"


def test_import_quietly_returns_the_module() -> None:
    assert runtime.import_quietly("json").dumps([1]) == "[1]"
