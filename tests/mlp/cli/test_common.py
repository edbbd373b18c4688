"""What the commands share: ``--help`` with only real defaults, and one-line usage errors from
every tool."""

from __future__ import annotations

import importlib
import importlib.util
import re

import pytest

from tests.helpers import ROOT, assert_one_line, run_module


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
