"""The libraries never print on their own: their loggers have a `NullHandler`, so Python's
last-resort handler (which prints warnings to stderr) never serves them, and an error the
caller gets as an exception is not printed a second time by a warning about it."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest


def run(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter (no logging configured), capturing its output."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.mark.parametrize("package", ["rock_core", "rock_sdk", "rock_agent"])
def test_the_package_logger_has_a_null_handler(package: str) -> None:
    __import__(package)
    handlers = logging.getLogger(package).handlers
    assert [type(h) for h in handlers] == [logging.NullHandler]


@pytest.mark.parametrize(
    ("package", "logger"),
    [("rock_core", "rock_core.connection"), ("rock_core", "rock_core"), ("rock_sdk", "rock_sdk")],
)
def test_warnings_are_not_printed_unless_the_application_configures_logging(
    package: str, logger: str
) -> None:
    done = run(
        f"import logging, {package}\n"
        f"logging.getLogger({logger!r}).warning('lost the link to host h: closed')\n"
        f"logging.getLogger({logger!r}).error('an error')\n"
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_an_application_that_configures_logging_gets_the_records() -> None:
    done = run(
        "import logging, rock_core\n"
        "logging.basicConfig(format='%(name)s %(levelname)s %(message)s')\n"
        "logging.getLogger('rock_core.connection').warning('lost the link to host h: closed')\n"
    )
    assert done.stderr == "rock_core.connection WARNING lost the link to host h: closed\n"
