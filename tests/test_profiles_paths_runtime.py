from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dlnotes import runtime
from dlnotes.runtime import paths, profiles


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
    assert capsys.readouterr().out.splitlines() == [line, runtime.GPU_HINT]
    assert "profile smoke" in line
    assert "on tensorflow" in line
    assert "no GPU visible" in line  # the test machines have no GPU
    assert "Change runtime type" in runtime.GPU_HINT


def test_stand_in_notice_is_a_warning_box_with_the_css_class() -> None:
    notice = runtime.StandInNotice("random <weights>", "No `DLNOTES_X`.", "Run `cmd --y`.")
    html = notice._repr_html_()
    assert html.startswith(f'<div class="admonition warning {runtime.STAND_IN_CLASS}">')
    assert "random &lt;weights&gt;" in html and "<code>DLNOTES_X</code>" in html
    assert "<code>cmd --y</code>" in html and "meaningless" in html
    assert repr(notice).startswith("WARNING, stand-in: random <weights>.")
    with pytest.raises(ValueError, match="remedy must not be blank, got ' '"):
        runtime.StandInNotice("x", "y", " ")


def test_show_stand_in_prints_outside_a_notebook(capsys: pytest.CaptureFixture[str]) -> None:
    runtime.show_stand_in("toy data", "No data.", "Download it.")
    notice = runtime.StandInNotice("toy data", "No data.", "Download it.")
    assert capsys.readouterr().out.strip() == repr(notice)


def test_show_stand_in_displays_html_in_a_notebook_kernel(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "from dlnotes import runtime\n"
                "runtime.show_stand_in('toy data', 'No data.', 'Download it.')"
            )
        ]
    )
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    assert [output.output_type for output in outputs] == ["display_data"]
    assert runtime.STAND_IN_CLASS in outputs[0].data["text/html"]
    assert outputs[0].data["text/plain"].startswith("WARNING, stand-in: toy data.")


def test_pretrained_files_come_from_the_configured_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DLNOTES_PRETRAINED_DIR", raising=False)
    assert paths.pretrained_dir() is None
    assert paths.pretrained_file(paths.MOBILENET_V2_WEIGHTS) is None
    monkeypatch.setenv("DLNOTES_PRETRAINED_DIR", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="absent' is not a folder"):
        paths.pretrained_dir()
    monkeypatch.setenv("DLNOTES_PRETRAINED_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"holds no mobilenet_v2_1\.0_224\.weights\.h5"):
        paths.pretrained_file(paths.MOBILENET_V2_WEIGHTS)
    (tmp_path / paths.MOBILENET_V2_WEIGHTS).write_bytes(b"x")
    assert (
        paths.pretrained_file(paths.MOBILENET_V2_WEIGHTS) == tmp_path / paths.MOBILENET_V2_WEIGHTS
    )


def test_native_stderr_is_silenced_and_restored(capfd: pytest.CaptureFixture[str]) -> None:
    import os

    with runtime.native_stderr_silenced():
        os.write(2, b"noise from C++\n")
    os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n"


def test_import_quietly_returns_the_module_and_silences_native_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # A module that, like TensorFlow's C++ runtime, writes to file descriptor 2 when imported.
    (tmp_path / "noisy_module.py").write_text(
        "import os\nos.write(2, b'native log line\\n')\nVALUE = 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = runtime.import_quietly("noisy_module")
    assert module.VALUE == 42
    assert "native log line" not in capfd.readouterr().err
    assert runtime.import_quietly("noisy_module") is module  # a second import is free
    assert runtime.import_quietly("json").dumps([1]) == "[1]"


def test_tensorflow_hub_imports_where_pkg_resources_is_missing() -> None:
    # tensorflow_hub 0.16.1 imports pkg_resources, which Python 3.12 venvs and setuptools >= 81
    # lack; simulated here by blocking the module (an entry of None makes its import fail).
    script = (
        "import sys\n"
        "sys.modules['pkg_resources'] = None\n"
        "try:\n"
        "    import tensorflow_hub\n"
        "except ModuleNotFoundError as error:\n"
        "    assert error.name == 'pkg_resources', error\n"
        "else:\n"
        "    raise AssertionError('pkg_resources was not blocked')\n"
        "sys.modules.pop('tensorflow_hub', None)\n"
        "from dlnotes import runtime\n"
        "hub = runtime.import_quietly('tensorflow_hub')\n"
        "assert callable(hub.load) and hub.KerasLayer\n"
        "assert sys.modules['pkg_resources'] is None  # the stand-in was removed again\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
