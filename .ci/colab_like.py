"""Run every chapter as a Colab reader runs it: installed wheel, Colab's versions, no checkout.

Usage:
    .venv/bin/python .ci/colab_like.py [--python python3.12] [--work DIR] [NOTEBOOK ...]

1. Builds the wheel of this checkout and installs it, with its ``tensorflow`` extra, into a fresh
   virtual environment made with ``--python`` (Colab runs Python 3.12), together with the
   versions Google Colab ships (:data:`COLAB_VERSIONS`) and ``ipykernel`` (Colab's kernel) —
   nothing else of ``requirements.txt``.
2. Serves the real mini archive of Tiny ImageNet on a loopback address and points the chapters'
   download at it (``DLNOTES_DATA_URL``/``DLNOTES_DATA_MD5``), and the pretrained weights at
   ``../shared/models`` (``DLNOTES_PRETRAINED_DIR``), as a Colab reader's downloads would give.
   Every other address is unreachable (the proxy variables point at a closed port).
3. Executes each notebook of ``notebooks/`` (nbclient, a kernel of that environment) as the
   only file of a new empty folder, with an empty cache — a fresh Colab runtime — and checks that
   it ran without an error, with no stand-in box, no output on stderr and no Sphinx-only
   directive in any cell.

Prints one line per notebook with its time, writes ``report.json`` in the work folder, and exits
with 1 if any notebook failed. ``.ci/run`` runs it after the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
MINI_ARCHIVE = Path(
    os.environ.get(
        "DLNOTES_MINI_ARCHIVE", REPO.parent / "shared" / "data" / "tiny-imagenet-mini.zip"
    )
)
PRETRAINED = Path(os.environ.get("DLNOTES_PRETRAINED_DIR") or REPO.parent / "shared" / "models")
COLAB_VERSIONS = ("tensorflow==2.20.0", "keras==3.13.2")
"""What Google Colab ships (checked 2026); the rest comes from the wheel's own requirements."""
KERNEL = "colab-like"
CELL_TIMEOUT = 900
STAND_IN = "dlnotes-stand-in"
SPHINX_ONLY = re.compile(r"```\{(literalinclude|include)\}")


def _run(*command: str | Path, log: Path | None = None, **kwargs: Any) -> str:
    """Run a command; its output goes to ``log`` (shown if it fails) or is returned."""
    if log is None:
        return subprocess.run(
            list(map(str, command)), check=True, text=True, capture_output=True, **kwargs
        ).stdout
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(map(str, command))}\n")
        handle.flush()
        done = subprocess.run(
            list(map(str, command)), text=True, stdout=handle, stderr=subprocess.STDOUT, **kwargs
        )
    if done.returncode:
        sys.stderr.write(log.read_text()[-5000:])
        raise subprocess.CalledProcessError(done.returncode, list(map(str, command)))
    return ""


def build_wheel(out: Path, log: Path) -> Path:
    """Build this checkout's wheel into ``out`` and return its path."""
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", out, REPO, log=log)
    (wheel,) = out.glob("dlnotes-*.whl")
    return wheel


def make_environment(python: str, venv: Path, wheel: Path, log: Path) -> Path:
    """A fresh virtual environment with Colab's versions and the wheel; returns its Python."""
    _run(python, "-m", "venv", venv, log=log)
    interpreter = venv / "bin" / "python"
    _run(interpreter, "-m", "pip", "install", "--upgrade", "pip", log=log)
    _run(
        interpreter, "-m", "pip", "install", *COLAB_VERSIONS, "ipykernel",
        f"dlnotes[tensorflow] @ {wheel.as_uri()}", log=log,
    )  # fmt: skip
    return interpreter


@contextlib.contextmanager
def mirror(archive: Path) -> Iterator[str]:
    """Serve ``archive`` on 127.0.0.1; yields its address."""
    body = archive.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != f"/{archive.name}":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{archive.name}"
    finally:
        server.shutdown()
        server.server_close()


def install_kernel(interpreter: Path, jupyter_path: Path) -> None:
    """A kernel spec named :data:`KERNEL` that starts ``interpreter``'s ipykernel."""
    spec = jupyter_path / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [
        str(interpreter), "-m", "ipykernel_launcher", "-f", "{connection_file}",
        "--IPKernelApp.log_level=ERROR",
    ]  # fmt: skip
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Colab-like", "language": "python"})
    )


@contextlib.contextmanager
def environment(values: dict[str, str], removed: tuple[str, ...]) -> Iterator[None]:
    """Set and remove environment variables for the kernels started inside the block."""
    saved = dict(os.environ)
    for key in removed:
        os.environ.pop(key, None)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def problems(notebook: nbformat.NotebookNode) -> list[str]:
    """What an executed notebook shows that a Colab reader must not see."""
    found = []
    for index, cell in enumerate(notebook.cells):
        if SPHINX_ONLY.search(cell.source):
            found.append(f"cell {index} relies on a Sphinx-only directive")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                found.append(f"cell {index} wrote to stderr: {output.get('text', '')[:300]!r}")
            text = json.dumps(output.get("data", {})) + str(output.get("text", ""))
            if STAND_IN in text or "WARNING, stand-in" in text:
                found.append(f"cell {index} shows a stand-in")
    return found


def run_notebook(source: Path, folder: Path, env: dict[str, str]) -> dict[str, Any]:
    """Execute ``source`` as the only file of the empty ``folder``."""
    folder.mkdir(parents=True)
    notebook_path = folder / source.name
    shutil.copy(source, notebook_path)
    notebook = nbformat.read(notebook_path, as_version=4)
    started = time.perf_counter()
    error = None
    removed = ("DLNOTES_DATA_DIR", "DLNOTES_PROFILE", "PYTHONPATH", "MPLBACKEND", "CI")
    with environment(env, removed):
        client = NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT,
            kernel_name=KERNEL,
            resources={"metadata": {"path": str(folder)}},
        )
        try:
            client.execute()
        except Exception as failure:  # nbclient's CellExecutionError and kernel deaths
            error = f"{type(failure).__name__}: {str(failure)[-2000:]}"
    seconds = time.perf_counter() - started
    nbformat.write(notebook, notebook_path)
    found = problems(notebook)
    return {
        "notebook": source.name,
        "seconds": round(seconds, 1),
        "error": error,
        "problems": found,
        "ok": error is None and not found,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--python", default="python3.12", help="interpreter of the environment")
    parser.add_argument("--work", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args(argv)
    for needed in (MINI_ARCHIVE, PRETRAINED / "mobilenet_v2_1.0_224.weights.h5"):
        if not needed.is_file():
            print(f"error: {needed} is missing", file=sys.stderr)
            return 1
    work = args.work or Path(tempfile.mkdtemp(prefix="dlnotes-colab-like-"))
    work.mkdir(parents=True, exist_ok=True)
    notebooks = args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb"))
    started = time.perf_counter()
    log = work / "install.log"
    wheel = build_wheel(work / "dist", log)
    interpreter = make_environment(args.python, work / "venv", wheel, log)
    installed = _run(
        interpreter, "-c", "import dlnotes, keras, sys, tensorflow as tf; "
        "print(dlnotes.__file__, keras.__version__, tf.__version__, sys.version.split()[0])",
        cwd=work,
    ).split()  # fmt: skip
    packages = _run(interpreter, "-m", "pip", "freeze", "--exclude-editable").splitlines()
    if not Path(installed[0]).is_relative_to(work / "venv"):
        print(f"error: dlnotes was imported from {installed[0]}, not the wheel", file=sys.stderr)
        return 1
    versions = {"keras": installed[1], "tensorflow": installed[2], "python": installed[3]}
    print(f"environment ready in {time.perf_counter() - started:.0f} s: {versions}", flush=True)
    install_kernel(interpreter, work / "jupyter")
    results = []
    with mirror(MINI_ARCHIVE) as url:
        for index, source in enumerate(notebooks):
            cache = work / "cache" / source.stem
            env = {
                "JUPYTER_PATH": str(work / "jupyter"),
                "DLNOTES_DATA_URL": url,
                "DLNOTES_DATA_MD5": hashlib.md5(MINI_ARCHIVE.read_bytes()).hexdigest(),
                "DLNOTES_PRETRAINED_DIR": str(PRETRAINED.resolve()),
                "XDG_CACHE_HOME": str(cache),
                "KERAS_HOME": str(cache / "keras"),
                "TFHUB_CACHE_DIR": str(cache / "tfhub"),
                "HTTP_PROXY": "http://127.0.0.1:9",
                "HTTPS_PROXY": "http://127.0.0.1:9",
                "http_proxy": "http://127.0.0.1:9",
                "https_proxy": "http://127.0.0.1:9",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            }
            result = run_notebook(source, work / "run" / f"{index:02d}", env)
            results.append(result)
            status = "ok" if result["ok"] else "FAILED"
            print(f"{status:6} {result['seconds']:7.1f} s  {source.name}", flush=True)
            for line in result["problems"] + ([result["error"]] if result["error"] else []):
                print(f"         {line}", flush=True)
    total = time.perf_counter() - started
    report = {
        "versions": versions,
        "seconds": round(total, 1),
        "notebooks": results,
        "packages": packages,
    }
    (work / "report.json").write_text(json.dumps(report, indent=2))
    failed = [r["notebook"] for r in results if not r["ok"]]
    print(
        f"{len(results) - len(failed)} of {len(results)} notebooks ran as in Colab "
        f"(Python {versions['python']}, TensorFlow {versions['tensorflow']}, Keras "
        f"{versions['keras']}) in {total:.0f} s; report: {work / 'report.json'}",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
