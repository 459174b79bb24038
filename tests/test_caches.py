"""What a re-run of the trainer reuses: the decoded images and JAX's compiled programs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dlnotes import runtime, training
from dlnotes.data import decode_cache
from dlnotes.training import datasets

KEY = "ab" * 32


def _decoded(count: int = 3, val: int = 2, size: int = 4) -> decode_cache.DecodedImages:
    rng = np.random.default_rng(count)
    return decode_cache.DecodedImages(
        rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8),
        rng.integers(0, 256, (val, size, size, 3), dtype=np.uint8),
        [1.0, 2.0, 3.0],
        [4.0, 5.0, 6.0],
    )


def test_stored_images_load_back_only_under_their_key_and_counts(tmp_path: Path) -> None:
    decoded = _decoded()
    entry = decode_cache.store(KEY, decoded, image_size=4, folder=tmp_path)
    assert entry is not None and entry.parent == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]  # staged aside, then renamed
    loaded = decode_cache.load(KEY, (3, 2), image_size=4, folder=tmp_path)
    assert loaded is not None
    np.testing.assert_array_equal(loaded.train_images, decoded.train_images)
    np.testing.assert_array_equal(loaded.val_images, decoded.val_images)
    assert (loaded.mean, loaded.std) == (decoded.mean, decoded.std)
    assert decode_cache.load("cd" * 32, (3, 2), image_size=4, folder=tmp_path) is None
    assert decode_cache.load(KEY, (4, 2), image_size=4, folder=tmp_path) is None
    assert decode_cache.load(KEY, (3, 2), image_size=8, folder=tmp_path) is None
    with pytest.raises(ValueError, match="got 'not a key'"):
        decode_cache.load("not a key", (3, 2), folder=tmp_path)


def test_a_damaged_entry_is_ignored_and_replaced(tmp_path: Path) -> None:
    entry = decode_cache.store(KEY, _decoded(), image_size=4, folder=tmp_path)
    assert entry is not None
    (entry / "train.npy").write_bytes(b"cut")
    assert decode_cache.load(KEY, (3, 2), image_size=4, folder=tmp_path) is None
    assert decode_cache.store(KEY, _decoded(), image_size=4, folder=tmp_path) == entry
    assert decode_cache.load(KEY, (3, 2), image_size=4, folder=tmp_path) is not None


def test_only_the_most_recently_used_entries_are_kept(tmp_path: Path) -> None:
    keys = [f"{i:02x}" * 32 for i in range(decode_cache.KEEP + 2)]
    for age, key in enumerate(keys):
        entry = decode_cache.store(key, _decoded(), image_size=4, folder=tmp_path)
        assert entry is not None
        os.utime(entry, (1_000_000 + age, 1_000_000 + age))
    decode_cache.store(keys[-1], _decoded(), image_size=4, folder=tmp_path)  # evicts
    kept = {key for key in keys if decode_cache.load(key, (3, 2), image_size=4, folder=tmp_path)}
    assert kept == set(keys[-decode_cache.KEEP :])


def test_the_cache_can_be_switched_off_or_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(decode_cache.DECODE_CACHE_ENV, "off")
    assert decode_cache.cache_folder() is None
    assert decode_cache.store(KEY, _decoded(), image_size=4) is None
    assert decode_cache.load(KEY, (3, 2), image_size=4) is None
    monkeypatch.setenv(decode_cache.DECODE_CACHE_ENV, str(tmp_path / "elsewhere"))
    assert decode_cache.cache_folder() == tmp_path / "elsewhere"
    monkeypatch.delenv(decode_cache.DECODE_CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert decode_cache.cache_folder() == tmp_path / "xdg" / "dlnotes" / "decoded"


def test_an_unwritable_cache_is_not_an_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder should be")
    assert decode_cache.store(KEY, _decoded(), image_size=4, folder=blocked) is None


def test_a_rerun_loads_the_decoded_images_and_changed_data_decodes_again(
    tiny_imagenet_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(decode_cache.DECODE_CACHE_ENV, str(tmp_path / "cache"))
    config = training.TrainConfig.for_profile("smoke", max_train_per_class=20)

    def load() -> datasets.Dataset:
        files = datasets.dataset_files(tiny_imagenet_copy, config)
        return datasets.load_dataset(tiny_imagenet_copy, config, files=files)

    first, second = load(), load()
    assert (first.decode_cache, second.decode_cache) == ("stored", "hit")
    np.testing.assert_array_equal(first.train_images, second.train_images)
    np.testing.assert_array_equal(first.val_images, second.val_images)
    assert (first.mean, first.std) == (second.mean, second.std)
    # A training image replaced by another of the same class: other pixels, decoded afresh.
    files = datasets.dataset_files(tiny_imagenet_copy, config)
    shutil.copy(files.train_paths[1], files.train_paths[0])
    third = load()
    assert third.decode_cache == "stored"
    np.testing.assert_array_equal(third.train_images[0], first.train_images[1])
    monkeypatch.setenv(decode_cache.DECODE_CACHE_ENV, "off")
    assert load().decode_cache == "off"


COMPILE_ONCE = textwrap.dedent(
    """
    import sys
    import numpy as np
    from dlnotes import runtime

    folder = runtime.enable_compilation_cache()
    keras = runtime.import_quietly("keras")
    width = int(sys.argv[1])
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(width), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    model.fit(np.ones((8, 4)), np.ones((8, 2)), epochs=1, batch_size=4, verbose=0)
    print(folder)
    """
)


@pytest.mark.slow
def test_jax_reuses_compiled_programs_and_compiles_a_changed_recipe(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    cache = tmp_path / "compiled"
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        runtime.environment.COMPILATION_CACHE_ENV: str(cache),
    }

    def run(width: int) -> set[str]:
        result = subprocess.run(
            [sys.executable, "-c", COMPILE_ONCE, str(width)],
            capture_output=True,
            text=True,
            timeout=300,
            env=environment,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip().splitlines()[-1] == str(cache)
        return {path.name for path in cache.rglob("*") if path.is_file()}

    first = run(8)
    assert first, "nothing was cached"
    assert run(8) == first  # the second run compiled nothing new
    assert run(16) > first  # another network: new programs


def test_the_compilation_cache_is_only_for_jax_and_can_be_switched_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(runtime.environment.COMPILATION_CACHE_ENV, raising=False)
    assert runtime.compilation_cache_folder() == tmp_path / "dlnotes" / "jax-compilation"
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert runtime.enable_compilation_cache() is None  # nothing to do on TensorFlow
    monkeypatch.setenv(runtime.environment.COMPILATION_CACHE_ENV, "off")
    assert runtime.compilation_cache_folder() is None


def test_the_cache_key_follows_modification_times_the_fingerprint_does_not(
    tiny_imagenet_copy: Path,
) -> None:
    config = training.TrainConfig.for_profile("smoke", max_train_per_class=5)
    before = datasets.dataset_files(tiny_imagenet_copy, config)
    assert len(before.cache_key) == 64 and before.cache_key != before.fingerprint
    first = Path(before.train_paths[0])
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9))
    after = datasets.dataset_files(tiny_imagenet_copy, config)
    assert after.fingerprint == before.fingerprint  # the run folder accepts the same files
    assert after.cache_key != before.cache_key  # but they are decoded afresh
