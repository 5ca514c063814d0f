"""The JSON log line of an exception: its class and where it was raised
(file, line, function), never its message or a traceback's values."""

from __future__ import annotations

import json
import logging
import sys

from veritta_site.logging import JsonFormatter


def _raise_with_a_secret_in_the_message() -> None:
    raise ValueError("token=s3cr3t-value")


def test_an_exception_is_logged_by_class_and_place_never_by_message():
    try:
        _raise_with_a_secret_in_the_message()
    except ValueError:
        record = logging.LogRecord("veritta.errors", logging.ERROR, __file__, 1, "uncaught", None, sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["exc_class"] == "ValueError"
    assert line["exc_at"][-1].startswith("test_json_logs.py:")
    assert line["exc_at"][-1].endswith(":_raise_with_a_secret_in_the_message")
    assert "s3cr3t" not in json.dumps(line)
