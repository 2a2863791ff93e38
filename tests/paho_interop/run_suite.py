"""Run one vendored Paho interoperability suite against HOST:PORT; write JSON.

Not part of the upstream suites (see README.md): it does what their
``if __name__ == "__main__"`` blocks do -- set the module globals ``host``,
``port``, ``topics``, ``wildtopics``, ``nosubscribe_topics`` and
``topic_prefix`` -- without
parsing a command line, then runs the suite's ``Test`` class with unittest and
records each test's outcome::

    python run_suite.py client_test5 127.0.0.1 1883 results.json [test_name ...]

The JSON maps each test method name to ``{"outcome": "passed" | "failed" |
"error", "detail": traceback text}``. The exit status is 0 whether or not the
tests passed: the caller reads the file.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent

# What the suites' __main__ blocks set (client_test5 sets them again in setData).
TOPICS = ("TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA")
WILDTOPICS = ("TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#")
NOSUBSCRIBE_TOPICS = ("test/nosubscribe",)


class _Recorder(unittest.TextTestResult):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.outcomes: dict[str, dict[str, str]] = {}

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self.outcomes[test._testMethodName] = {"outcome": "passed", "detail": ""}

    def addFailure(self, test: unittest.TestCase, err: object) -> None:
        super().addFailure(test, err)  # type: ignore[arg-type]
        self.outcomes[test._testMethodName] = {"outcome": "failed", "detail": self.failures[-1][1]}

    def addError(self, test: unittest.TestCase, err: object) -> None:
        super().addError(test, err)  # type: ignore[arg-type]
        name = getattr(test, "_testMethodName", str(test))
        self.outcomes[name] = {"outcome": "error", "detail": self.errors[-1][1]}


def main(argv: list[str]) -> int:
    suite_name, host, port, output, *names = argv
    sys.path.insert(0, str(HERE))
    logging.basicConfig(level=logging.ERROR)
    suite = importlib.import_module(suite_name)
    suite.host = host
    suite.port = int(port)
    suite.topics = TOPICS
    suite.wildtopics = WILDTOPICS
    suite.nosubscribe_topics = NOSUBSCRIBE_TOPICS
    suite.topic_prefix = f"{suite_name}/"  # client_test5's __main__ sets it
    loader = unittest.TestLoader()
    if names:
        tests = unittest.TestSuite(suite.Test(name) for name in names)
    else:
        tests = loader.loadTestsFromTestCase(suite.Test)
    stream = io.StringIO()
    runner = unittest.TextTestRunner(stream=stream, resultclass=_Recorder, verbosity=2)
    result = runner.run(tests)
    sys.stdout.write(stream.getvalue())
    Path(output).write_text(json.dumps(result.outcomes, indent=1))  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
