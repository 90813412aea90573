"""procrastinate's line for a job that ended as the farm means it to: one line, no traceback.

A cancel ends a job with JobAborted and a failed render with RenderJobFailed; procrastinate logs either with the
exception's traceback, which is the queue's plumbing, not news. The reason goes on the line instead; any other
exception (a bug) keeps its traceback.
"""

from __future__ import annotations

import logging

from procrastinate import exceptions

from comfy_runtime.errors import HunyuanVideoError


class JobEndsOnOneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, exceptions.JobAborted | HunyuanVideoError):
            reason = " ".join(str(error).split())[:300]
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {reason})" if reason else record.getMessage()
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def install() -> None:
    """Once per process: on procrastinate's worker logger, where the job outcome lines come from."""
    logger = logging.getLogger("procrastinate.worker")
    if not any(isinstance(existing, JobEndsOnOneLine) for existing in logger.filters):
        logger.addFilter(JobEndsOnOneLine())
