"""What the commands share: ``--help`` with only real defaults, and one-line usage errors from
every tool."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backends.errors import DISTRIBUTION
from mlp.version import VERSION
from tests.helpers import ROOT, assert_one_line, one_line, run_module


@pytest.mark.parametrize("module", ["mlp.cli.train", "mlp.cli.evaluate", "bench.cli"])
def test_help_shows_only_real_defaults(module):
    """No ``(default: None)``/``False``/``[...]`` noise, and no default said twice."""
    parser = importlib.import_module(module).build_parser()
    help_text = " ".join(parser.format_help().split())
    assert "(default: None)" not in help_text
    assert "(default: False)" not in help_text
    assert "(default: [" not in help_text
    assert "(default: {" not in help_text
    assert "(default: " in help_text
    assert not re.search(r"\(default: [^)]*\) \(default:", help_text)


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--epochs", "0"],
        ["mlp.cli.download", "cifar"],
        ["mlp.cli.synthetic", "unused-folder", "0", "5"],
        ["bench.ops", "--calls", "0"],
        ["bench.ops", "--device", ""],
        ["bench.ops", "--device", "tpu"],
    ],
)
def test_usage_errors_are_one_line(argv):
    done = run_module(*argv)
    assert_one_line(done, f"python -m {argv[0]}", 2)
    assert "usage:" not in done.stderr and not (ROOT / "unused-folder").exists()


@pytest.mark.parametrize(
    "command",
    ["mlp-train", "mlp-eval", "mlp-export", "mlp-predict", "mlp.cli.download", "bench.ops"],
)
def test_every_command_has_a_version_and_plain_help(command):
    """``--version`` names the version and the distribution; ``--help`` shows no reST."""
    runner = [str(Path(sys.executable).parent / command)]
    if "." in command:
        runner = [sys.executable, "-m", command]
    shown = {}
    for flag in ("--version", "--help"):
        result = subprocess.run([*runner, flag], capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        shown[flag] = result.stdout
    assert shown["--version"].split()[-2:] == [VERSION, f"({DISTRIBUTION})"]
    assert "usage:" in shown["--help"] and "``" not in shown["--help"]


class _Broken:
    """A standard output that fails as a full disk or a closed pipe makes it fail."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    def write(self, text: str) -> int:
        raise self.error

    def flush(self) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (OSError(28, "No space left on device"), "cannot write the standard output: No space"),
        (BrokenPipeError(32, "Broken pipe"), ""),  # `| head`: the reader went; nothing to say
    ],
)
def test_a_standard_output_that_fails_is_one_line_or_a_quiet_end(monkeypatch, capsys, error, said):
    from mlp.cli.common import report_errors

    monkeypatch.setattr(sys, "stdout", _Broken(error))
    status = report_errors("mlp-eval", lambda: print("test accuracy: 0.8770"))
    err = capsys.readouterr().err
    assert status == 1
    assert (said in one_line(err, "mlp-eval")) if said else err == ""


def test_a_full_disk_under_standard_output_is_one_line_from_the_command(tmp_path):
    """The real thing: mlp-eval's report written into /dev/full (a traceback before)."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    from mlp import MLP
    from mlp.data.synthetic import write_dataset

    data = write_dataset(tmp_path / "data", n_train=20, n_test=10)
    checkpoint = MLP([784, 10], seed=0).save(tmp_path / "run.npz")
    command = [sys.executable, "-m", "mlp.cli.evaluate", "--checkpoint", str(checkpoint)]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [*command, "--data-dir", str(data)], stdout=full, stderr=subprocess.PIPE,
            text=True, timeout=120,
        )  # fmt: skip
    line = assert_one_line(done, "mlp-eval", 1)
    assert "cannot write the standard output: No space left on device" in line
