"""The README's examples, run as a newcomer would run them, top to bottom, in a fresh folder.

Every ``bash`` and ``python`` block is run except the test command (it is what CI runs: the
first test checks that). A block that starts a server (the demo, ``minidl serve``) starts it
in the background on a free port instead of 8501, and the blocks after it talk to that port,
as a reader's second terminal would; the server is stopped with SIGTERM when the next one
starts, and at the end.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)
INSTALL = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[{extra}]" && '
READY_SECONDS = 120


def readme_blocks() -> list[tuple[str, str]]:
    return BLOCK.findall((ROOT / "README.md").read_text())


def test_the_readme_test_command_is_what_ci_runs():
    commands = [code.strip() for language, code in readme_blocks() if language == "bash"]
    assert commands[0].startswith(INSTALL.format(extra="demo"))
    assert commands[1] == INSTALL.format(extra="test") + "python -m pytest"
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert 'python -m pip install --quiet -e ".[test]"' in ci_lines
    assert "python -m pytest" in ci_lines


class Server:
    """A command started in the background; ``port`` is read from the line it prints when it
    is ready to answer."""

    def __init__(self, argv: list[str], ready: re.Pattern, cwd: Path) -> None:
        self.process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        while True:
            try:
                line = self.lines.get(timeout=READY_SECONDS)
            except queue.Empty:
                self.stop()
                raise AssertionError(f"{argv} not ready in {READY_SECONDS} s") from None
            assert line is not None, f"{argv} ended before it was ready:\n{self.text}"
            match = ready.search(line)
            if match:
                self.port = match.group(1)
                return

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.reader.join(timeout=30)  # the pipe is at its end once the process is gone
            self.process.stdout.close()


def run(argv: list[str], cwd: Path) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, f"{argv[:3]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_every_readme_example_runs_top_to_bottom(tmp_path):
    server: Server | None = None
    outputs = []
    try:
        for language, code in readme_blocks():
            port = server.port if server else "8501"
            if language == "python":
                outputs.append(run([sys.executable, "-c", code.replace("8501", port)],
                                   tmp_path))
                continue
            if code.strip().endswith("python -m pytest"):
                continue  # the test command: the test above checks that CI runs it
            for line in code.replace("\\\n", " ").strip().splitlines():
                if " python -m minidl demo" in line:  # the main job, after its install
                    server = restart(server, [sys.executable, "-m", "minidl", "demo",
                                              "--port", "0"],
                                     re.compile(r"^serving digits at http://127\.0\.0\.1:(\d+)"),
                                     tmp_path)
                elif line.startswith("python -m minidl serve"):
                    argv = shlex.split(line.replace("--rest_api_port 8501",
                                                    "--rest_api_port 0"))
                    server = restart(server, [sys.executable, *argv[1:]],
                                     re.compile(r"^minidl serving on http://127\.0\.0\.1:(\d+)"),
                                     tmp_path)
                else:
                    assert line.startswith("curl "), f"a README command the test can't run: {line}"
                    answer = json.loads(run(shlex.split(line.replace("8501", server.port)),
                                            tmp_path))
                    assert "error" not in answer, line
                    outputs.append(answer)
    finally:
        if server is not None:
            assert server.stop() == 0, server.text
    # what the README's comments promise
    status, zero = outputs[0], outputs[1]
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    assert np.argmax(zero["predictions"][0]) == 0  # the handwritten zero
    metadata, inferred = outputs[2], outputs[3]  # the same model over the V2 protocol
    assert metadata["inputs"][0]["shape"] == [-1, 64]
    np.testing.assert_array_equal(inferred["outputs"][0]["data"], zero["predictions"][0])
    keras_print = next(text for text in outputs if isinstance(text, str) and "[[" in text)
    assert abs(float(keras_print.strip().strip("[]")) - 19.0) < 0.1
    served = ast.literal_eval(next(text for text in outputs if isinstance(text, str)
                                   and "predictions" in text).strip())
    np.testing.assert_allclose(served["predictions"], [[-0.8], [-0.4]], atol=0.05)


def restart(server: Server | None, argv: list[str], ready: re.Pattern, cwd: Path) -> Server:
    if server is not None:
        assert server.stop() == 0, server.text
    return Server(argv, ready, cwd)
