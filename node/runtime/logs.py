"""Structured logs: one JSON object per line, to the config's log file or to stderr.

Lines carry `ts` (UTC, ISO 8601 with ms), `level`, `node`, `logger` and `msg` (and `exc` with the
traceback of a logged exception), so a consortium's logs can be merged and searched by machine.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path


class JsonLines(logging.Formatter):
    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        line = {"ts": ts, "level": record.levelname.lower(), "node": self.node_id, "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def setup_logging(level: str, log_file: Path | None, node_id: str) -> None:
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines(node_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would log every request at info; the RPC does its own error logging
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
