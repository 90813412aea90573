"""Every error the product raises on purpose, under one base.

Each message names the fix. The CLI prints a HunyuanVideoError as one line and exits with its exit_status
(2 for refused input or a workflow that does not bind, as argparse's usage errors; 1 otherwise); anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class HunyuanVideoError(Exception):
    """Base of every error raised on purpose; its message says what to do."""

    exit_status = 1  # the CLI's exit status for it


class InputRejected(HunyuanVideoError, ValueError):
    """A request that must not run (off-grid, over budget, too long); nothing was rendered."""

    exit_status = 2


class ComfyRuntimeError(HunyuanVideoError, RuntimeError):
    """Base for everything a backend raises on purpose."""


class WorkflowInvalidError(ComfyRuntimeError):
    """ComfyUI refused the graph before running it."""

    def __init__(self, message: str, node_errors: dict[str, Any] | None = None):
        super().__init__(message)
        self.node_errors = node_errors or {}


@dataclass
class NodeFailure:
    node_id: str
    class_type: str
    exception_type: str
    message: str
    traceback: list[str] = field(default_factory=list)


class NodeExecutionError(ComfyRuntimeError):
    """A node raised while the graph ran."""

    def __init__(self, failure: NodeFailure):
        self.failure = failure
        super().__init__(
            f"node {failure.node_id} ({failure.class_type}) failed: {failure.exception_type}: {failure.message}"
        )


class OutOfMemory(NodeExecutionError):
    """A node ran out of (GPU) memory; the backend has already freed its models and caches."""


class ExecutionInterrupted(ComfyRuntimeError):
    """The run was interrupted (cancel, time limit) before it finished."""


class RunTimedOut(ExecutionInterrupted):
    """The run passed its time limit and was interrupted."""
