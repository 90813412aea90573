"""Remote backend: a ComfyUI server elsewhere (a separate pod), driven through its own API.

HTTP (httpx): /system_stats to wait for the server, /object_info for node schemas, /prompt to submit
(with our client id and prompt id), /history for the outcome, /view for the files, /upload/image for
input media, /queue + /interrupt to cancel, /free after an out-of-memory. Progress comes over /ws
(websocket-client). /history is the source of truth for how a run ended: the websocket only tells us
when to look, so a dropped websocket costs progress lines, never the result.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websocket

from comfy_runtime.backends.contract import (
    INTERRUPT_GRACE_SECONDS,
    NodeStarted,
    ProgressCallback,
    RunResult,
    RunTracker,
    StepProgress,
    describe_validation_failure,
    is_out_of_memory,
    node_failure_from_event,
    timed_out_message,
)
from comfy_runtime.backends.outputs import collect_output_files, output_items
from comfy_runtime.errors import (
    ComfyRuntimeError,
    ExecutionInterrupted,
    NodeExecutionError,
    OutOfMemory,
    RunTimedOut,
    WorkflowInvalidError,
)
from comfy_runtime.graph.check import check_graph
from comfy_runtime.graph.node_schema import node_schema_from_object_info
from comfy_runtime.graph.types import Graph, NodeSchema
from comfy_runtime.redact import url_without_credentials

log = logging.getLogger(__name__)

# How often the run loop wakes from the websocket to look at cancel and the deadline (and lets an
# exception that Cog raises into this thread land: a blocking recv would hold it until a message came).
RECV_SLICE_SECONDS = 0.05
# With no websocket message for this long, ask /history anyway (a half-open connection looks idle).
HISTORY_POLL_SECONDS = 2.0
# While a cancel is on its way: how often to re-check /queue and /history.
CANCEL_CHECK_SECONDS = 0.25
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class ComfyUIUnreachable(ComfyRuntimeError):
    """The ComfyUI server did not answer (at start-up, or for too long during a run)."""


@dataclass
class _Watch(RunTracker):
    """What the websocket told us about one prompt."""

    prompt_id: str = field(kw_only=True)
    finished: bool = False  # a terminal event arrived; /history will (soon) hold the outcome
    events: list[str] = field(default_factory=list)

    def on_message(self, kind: str, data: dict[str, Any]) -> None:
        if data.get("prompt_id") != self.prompt_id:
            return  # another client's prompt, the queue status, or a reconnect's replay without an id
        self.events.append(kind)
        if kind == "executing":
            node = data.get("node")
            if node is None:  # sent after ComfyUI wrote the history entry
                self.finished = True
            else:
                self.current_node = str(node)
                self.emit(NodeStarted(self.current_node, self.class_of(node) or "?"))
        elif kind == "progress":
            node = data.get("node")
            node = str(node) if node is not None else None
            self.emit(StepProgress(node, self.class_of(node), int(data.get("value", 0)), int(data.get("max", 0))))
        elif kind in ("execution_success", "execution_error", "execution_interrupted"):
            self.finished = True


@dataclass
class _FollowLoop:
    """The clocks of the loop that follows one prompt to its end (time.monotonic() readings)."""

    deadline: float | None  # the time limit, None for none
    last_look: float  # the last look at /history
    timed_out: bool = False
    stop_sent: float | None = None  # when we asked the server to stop our prompt
    lost_since: float | None = None  # since when neither /ws nor /history answers

    @property
    def look_every(self) -> float:
        return CANCEL_CHECK_SECONDS if self.stop_sent is not None else HISTORY_POLL_SECONDS


@dataclass(frozen=True)
class _Ended:
    entry: dict[str, Any] | None  # None: removed from the queue before it ran


class RemoteRuntime:
    """A ComfyUI server at `base_url`. One run at a time per instance; the server may serve others too."""

    def __init__(
        self,
        base_url: str,
        startup_timeout: float = 600.0,
        request_timeout: float = 60.0,
        reconnect_timeout: float = 120.0,
        interrupt_grace: float = INTERRUPT_GRACE_SECONDS,
    ):
        self.base_url = base_url.rstrip("/")
        self.shown_url = url_without_credentials(self.base_url)  # for logs and errors
        self.ws_url = re.sub(r"^http", "ws", self.base_url) + "/ws"
        self.startup_timeout = startup_timeout
        self.request_timeout = request_timeout
        self.reconnect_timeout = reconnect_timeout
        self.interrupt_grace = interrupt_grace
        self.client_id = uuid.uuid4().hex
        self.ws_connects = 0  # how often the websocket was opened; a reconnect makes it > 1
        self._http = httpx.Client(base_url=self.base_url, timeout=request_timeout)
        self._ws: websocket.WebSocket | None = None
        self._object_info: dict[str, Any] | None = None
        self._started = False
        self._run_lock = threading.Lock()
        self._cancel = threading.Event()
        self._prompt_id: str | None = None  # ours, while it is queued or running

    @property
    def prompt_in_flight(self) -> str | None:
        """The id ComfyUI gave our prompt, while it is queued or running there."""
        return self._prompt_id

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no answer yet"
        while True:
            try:
                response = self._http.get("/system_stats", timeout=min(self.request_timeout, 10.0))
                if response.status_code == 200:
                    break
                last_error = f"HTTP {response.status_code}"
            except httpx.TransportError as error:
                last_error = f"{type(error).__name__}: {error}"
            if time.monotonic() >= deadline:
                raise ComfyUIUnreachable(
                    f"ComfyUI at {self.shown_url} did not answer GET /system_stats with 200 within "
                    f"{self.startup_timeout:g} s (HV_COMFYUI_STARTUP_TIMEOUT); last error: {last_error}. "
                    "Check that the server runs and that this worker can reach HV_COMFYUI_URL; if it is still "
                    "loading its nodes, raise HV_COMFYUI_STARTUP_TIMEOUT"
                )
            time.sleep(0.05)
        self._started = True

    def close(self) -> None:
        self._close_ws()
        self._http.close()

    # -- queries ---------------------------------------------------------------------------
    def object_info(self) -> dict[str, Any]:
        self.start()
        if self._object_info is None:
            self._object_info = self._http.get("/object_info").raise_for_status().json()
        return self._object_info

    def node_schemas(self) -> dict[str, NodeSchema]:
        schemas = {}
        for name, info in self.object_info().items():
            try:
                schemas[name] = node_schema_from_object_info(name, info)
            except Exception as error:  # one broken node must not hide the others
                log.warning("node %s has no readable schema: %s", name, error)
        return schemas

    def validate(self, graph: Graph) -> None:
        error, node_errors = check_graph(graph, self.object_info())
        if error is not None:
            # Choice lists (LoadImage's files) grow with uploads, ours or another client's: before refusing,
            # look once more with the server's node list as it is now.
            self._object_info = None
            error, node_errors = check_graph(graph, self.object_info())
        if error is not None:
            raise WorkflowInvalidError(describe_validation_failure(error, node_errors), node_errors)

    def upload_input(self, path: Path, name: str | None = None) -> str:
        """Put a media file into the server's input folder; return the name a LoadImage-style node takes."""
        self.start()
        safe = safe_upload_name(name or Path(path).name)
        with Path(path).open("rb") as handle:
            response = self._http.post(
                "/upload/image", files={"image": (safe, handle)}, data={"type": "input", "overwrite": "true"}
            )
        if response.status_code != 200:
            raise ComfyRuntimeError(
                f"ComfyUI refused the upload of {path} as {safe!r}: HTTP {response.status_code} {response.text[:300]}. "
                "Check the file type and the server's --max-upload-size"
            )
        body = response.json()
        return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else body["name"]

    # -- running ---------------------------------------------------------------------------
    def run(
        self, graph: Graph, output_dir: Path, on_progress: ProgressCallback | None = None, timeout: float | None = None
    ) -> RunResult:
        self.start()
        output_dir = Path(output_dir).resolve()
        output_dir.mkdir(parents=True, exist_ok=True)
        with self._run_lock:
            self._cancel.clear()
            watch = _Watch(graph, on_progress, prompt_id=uuid.uuid4().hex)
            # /prompt would queue the valid part of a graph that is valid only in part: check it whole first.
            self.validate(graph)
            self._open_ws()  # before submitting: ComfyUI sends events only to a socket open at that moment
            self._prompt_id = watch.prompt_id
            try:
                self._submit(watch)
                entry, timed_out = self._follow(watch, timeout)
            except WorkflowInvalidError:
                raise  # refused at the door: nothing was queued
            except BaseException:
                # A failure, a time limit, or Cog's cancel (an exception raised into this thread): stop our prompt.
                self._stop_prompt(watch.prompt_id)
                raise
            finally:
                self._prompt_id = None
        return self._result(entry, watch, output_dir, timeout if timed_out else None)

    def interrupt(self) -> None:
        self._cancel.set()
        prompt_id = self._prompt_id
        if prompt_id is not None:
            self._stop_prompt(prompt_id)

    def _submit(self, watch: _Watch) -> None:
        response = self._http.post(
            "/prompt", json={"prompt": watch.graph, "client_id": self.client_id, "prompt_id": watch.prompt_id}
        )
        if response.status_code == 400:
            body = _json_or_empty(response)
            raise WorkflowInvalidError(
                describe_validation_failure(body.get("error"), body.get("node_errors") or {}), body.get("node_errors") or {}
            )
        if response.status_code != 200:
            raise ComfyRuntimeError(
                f"ComfyUI at {self.shown_url} answered POST /prompt with HTTP {response.status_code}: "
                f"{response.text[:500]}. Check the server's log"
            )

    def _follow(self, watch: _Watch, timeout: float | None) -> tuple[dict[str, Any] | None, bool]:
        """Wait for the prompt to end; return its /history entry (None: removed before it ran) and
        whether the time limit was passed."""
        loop = _FollowLoop(deadline=time.monotonic() + timeout if timeout else None, last_look=time.monotonic())
        while True:
            self._stop_when_due(watch, loop, timeout)
            self._listen(watch, loop)
            if watch.finished or time.monotonic() - loop.last_look >= loop.look_every:
                ended = self._look_at_history(watch, loop)
                if ended is not None:
                    return ended.entry, loop.timed_out
            self._fail_when_lost(watch, loop)

    def _stop_when_due(self, watch: _Watch, loop: _FollowLoop, timeout: float | None) -> None:
        """Past the time limit or on a cancel, ask the server once to stop our prompt; when it has not within
        the grace, give up on it with an error that says it may still be running."""
        now = time.monotonic()
        if loop.deadline is not None and not loop.timed_out and now >= loop.deadline:
            loop.timed_out = True
        if loop.stop_sent is None and (loop.timed_out or self._cancel.is_set()):
            self._stop_prompt(watch.prompt_id)
            loop.stop_sent = now
        if loop.stop_sent is not None and now - loop.stop_sent > self.interrupt_grace:
            if loop.timed_out:
                stuck = f"ComfyUI did not stop within {self.interrupt_grace:g} s; check the server, it may still be running it"
                raise RunTimedOut(timed_out_message(timeout, watch, stuck))
            raise ExecutionInterrupted(
                f"ComfyUI at {self.shown_url} did not stop prompt {watch.prompt_id} within "
                f"{self.interrupt_grace:g} s of the interrupt; check the server, it may still be running it"
            )

    def _listen(self, watch: _Watch, loop: _FollowLoop) -> None:
        """One slice of websocket events, or one try at getting the websocket back."""
        if self._ws is not None:
            self._receive(watch)
        elif self._reconnect():
            loop.lost_since = None
            loop.last_look = 0.0  # events of the gap are lost: ask /history at once
        else:
            loop.lost_since = loop.lost_since or time.monotonic()
            time.sleep(0.25)

    def _look_at_history(self, watch: _Watch, loop: _FollowLoop) -> _Ended | None:
        """/history's word on the prompt: its entry once it has ended, an empty end when it was removed from the
        queue before it ran (after our stop), None while it is still queued or running."""
        loop.last_look = time.monotonic()
        try:
            entry = self._history_entry(watch.prompt_id)
            if entry is None and loop.stop_sent is not None and not self._is_queued(watch.prompt_id):
                # Gone from the queue: finished (look again, history is written first) or deleted.
                entry = self._history_entry(watch.prompt_id)
                if entry is None:
                    return _Ended(None)
            loop.lost_since = None if self._ws is not None else loop.lost_since
        except httpx.TransportError as error:
            entry = None
            loop.lost_since = loop.lost_since or time.monotonic()
            log.warning("ComfyUI at %s did not answer: %s", self.shown_url, error)
        if entry is not None:
            return _Ended(entry)
        if watch.finished:
            time.sleep(0.005)  # the terminal event can beat the history entry by a moment
        return None

    def _fail_when_lost(self, watch: _Watch, loop: _FollowLoop) -> None:
        if loop.lost_since is not None and time.monotonic() - loop.lost_since > self.reconnect_timeout:
            raise ComfyUIUnreachable(
                f"lost ComfyUI at {self.shown_url} for more than {self.reconnect_timeout:g} s while prompt "
                f"{watch.prompt_id} ran (neither /ws nor /history answered); check the server. The prompt may "
                "still finish there; its files would be in the server's output folder"
            )

    def _result(self, entry: dict[str, Any] | None, watch: _Watch, output_dir: Path, timed_out: float | None) -> RunResult:
        if entry is None:
            if timed_out is not None:
                raise RunTimedOut(
                    f"the prediction waited past its time limit of {timed_out:g} s (HV_PREDICT_TIMEOUT) in the queue of "
                    f"ComfyUI at {self.shown_url}, behind other prompts; it was removed from the queue. Add ComfyUI "
                    "servers, or raise HV_PREDICT_TIMEOUT"
                )
            raise ExecutionInterrupted("the run was cancelled before ComfyUI started it; nothing was saved")
        messages = dict((event, data) for event, data in (entry.get("status") or {}).get("messages", []))
        if "execution_interrupted" in messages:
            if timed_out is not None:
                raise RunTimedOut(timed_out_message(timed_out, watch))
            raise ExecutionInterrupted("the run was interrupted before it finished; nothing was saved")
        if "execution_error" in messages:
            failure = node_failure_from_event(messages["execution_error"])
            if is_out_of_memory(failure):
                self._free_server_memory()
                raise OutOfMemory(failure)
            raise NodeExecutionError(failure)
        ui_outputs = entry.get("outputs") or {}
        folders = {"output": output_dir, "temp": output_dir / "temp"}
        self._download_outputs(ui_outputs, folders)
        return RunResult(
            prompt_id=watch.prompt_id,
            files=collect_output_files(ui_outputs, folders),
            ui_outputs=ui_outputs,
            execution_seconds=execution_seconds_of(messages),
        )

    # -- websocket -------------------------------------------------------------------------
    def _open_ws(self) -> None:
        if self._ws is not None and self._ws.connected:
            return
        self._close_ws()
        ws = websocket.create_connection(f"{self.ws_url}?clientId={self.client_id}", timeout=self.request_timeout)
        ws.settimeout(RECV_SLICE_SECONDS)
        self._ws = ws
        self.ws_connects += 1

    def _reconnect(self) -> bool:
        try:
            self._open_ws()
            log.info("reconnected the websocket to %s", self.shown_url)
            return True
        except (OSError, websocket.WebSocketException) as error:
            log.warning("websocket to %s is down, retrying: %s", self.shown_url, error)
            return False

    def _close_ws(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close(timeout=1)
            except Exception:  # already broken: closing is best effort
                pass

    def drop_websocket(self) -> None:
        """Cut the websocket as a network failure would (tests use it); the run in flight reconnects."""
        ws = self._ws
        if ws is not None and ws.sock is not None:
            ws.sock.shutdown(socket.SHUT_RDWR)

    def _receive(self, watch: _Watch) -> None:
        assert self._ws is not None
        try:
            message = self._ws.recv()
        except websocket.WebSocketTimeoutException:
            return
        except (OSError, websocket.WebSocketException) as error:
            log.warning("websocket to %s dropped during prompt %s: %s", self.shown_url, watch.prompt_id, error)
            self._close_ws()
            return
        if not message:
            self._close_ws()  # a clean close from the server mid-run: treat it like a drop
            return
        if isinstance(message, bytes):
            return  # preview images
        try:
            body = json.loads(message)
        except ValueError:
            return
        watch.on_message(str(body.get("type")), body.get("data") or {})

    # -- HTTP helpers ----------------------------------------------------------------------
    def _history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        response = self._http.get(f"/history/{prompt_id}")
        response.raise_for_status()
        return response.json().get(prompt_id)

    def _is_queued(self, prompt_id: str) -> bool:
        queue = self._http.get("/queue").raise_for_status().json()
        items = list(queue.get("queue_running", [])) + list(queue.get("queue_pending", []))
        return any(len(item) > 1 and item[1] == prompt_id for item in items)

    def _stop_prompt(self, prompt_id: str) -> None:
        """Stop our prompt and nobody else's: ComfyUI's interrupt stops whatever runs on the server."""
        try:
            queue = self._http.get("/queue").raise_for_status().json()
            if any(item[1] == prompt_id for item in queue.get("queue_pending", [])):
                self._http.post("/queue", json={"delete": [prompt_id]})
            if any(item[1] == prompt_id for item in queue.get("queue_running", [])):
                # With the prompt id ComfyUI checks again on its side, which closes the gap between our look
                # at /queue and this call (another client's prompt may have started in it).
                self._http.post("/interrupt", json={"prompt_id": prompt_id})
        except httpx.HTTPError as error:
            log.warning("could not stop prompt %s on %s: %s", prompt_id, self.shown_url, error)

    def _free_server_memory(self) -> None:
        try:
            self._http.post("/free", json={"unload_models": True, "free_memory": True})
        except httpx.HTTPError as error:
            log.warning("could not ask %s to free memory: %s", self.shown_url, error)

    def _download_outputs(self, ui_outputs: dict[str, Any], folders: dict[str, Path]) -> None:
        for item, target in output_items(ui_outputs, folders):
            self._download(item, target)

    def _download(self, item: dict[str, Any], target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        params = {"filename": item["filename"], "subfolder": item.get("subfolder", ""), "type": item.get("type", "output")}
        with self._http.stream("GET", "/view", params=params) as response:
            if response.status_code != 200:
                raise ComfyRuntimeError(
                    f"ComfyUI at {self.shown_url} could not serve output {params} (HTTP {response.status_code}); "
                    "was it removed from the server's output folder?"
                )
            with partial.open("wb") as handle:
                for chunk in response.iter_bytes(1 << 20):
                    handle.write(chunk)
        partial.replace(target)


def safe_upload_name(name: str) -> str:
    """A file name with no folder part and no characters a shell or a path could misread."""
    base = Path(str(name).replace("\\", "/")).name
    cleaned = _SAFE_NAME.sub("_", base).lstrip(".")
    if not cleaned or cleaned in {".", ".."}:
        raise ValueError(f"{name!r} is not usable as an upload name; give the file a plain name such as input.png")
    return cleaned


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"error": {"message": response.text[:500], "details": ""}}
    return body if isinstance(body, dict) else {}


def execution_seconds_of(messages: dict[str, dict[str, Any]]) -> float:
    """ComfyUI's own execution time, from its millisecond timestamps in the history status messages."""
    start = messages.get("execution_start", {}).get("timestamp")
    end = messages.get("execution_success", {}).get("timestamp")
    if start is None or end is None:
        return 0.0
    return max(0.0, (end - start) / 1000.0)
