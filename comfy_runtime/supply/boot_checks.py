"""The setup-time checks of weights and custom nodes, as the service runs them before READY."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from comfy_runtime.graph.types import NodeSchema
from comfy_runtime.settings import Settings
from comfy_runtime.supply.commands import NODES_VERIFY_COMMAND
from comfy_runtime.supply.lockfile import load_lock
from comfy_runtime.supply.manifest import load_manifest
from comfy_runtime.supply.nodes import NodesError, node_load_report
from comfy_runtime.supply.weights import FETCH_COMMAND, WeightsMode, ensure_weights, required_entries

log = logging.getLogger(__name__)


class SupplyChecks(Protocol):
    def before_boot(self, graph: dict[str, Any]) -> None: ...

    def after_boot(self, graph: dict[str, Any], runtime: Any, schemas: dict[str, NodeSchema]) -> None: ...

    def unavailable(self, graph: dict[str, Any]) -> str | None:
        """Why an optional stage's graph cannot be served here (its weights absent where none are fetched)."""

    def dit_in_channels(self, file_name: str) -> int | None:
        """Input channels of a DiT file in diffusion_models/, read from its header; None where unknown."""


class NoSupplyChecks:
    """For a ComfyUI that owns its weights and nodes (the remote backend): nothing to check here."""

    def before_boot(self, graph: dict[str, Any]) -> None:
        pass

    def after_boot(self, graph: dict[str, Any], runtime: Any, schemas: dict[str, NodeSchema]) -> None:
        pass

    def unavailable(self, graph: dict[str, Any]) -> str | None:
        return None

    def dit_in_channels(self, file_name: str) -> int | None:
        return None


NO_SUPPLY_CHECKS = NoSupplyChecks()


@dataclass(frozen=True)
class SupplyChain:
    models_dir: Path
    weights_mode: WeightsMode
    manifest: Path
    nodes_lock: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> SupplyChain:
        return cls(settings.models_dir, settings.weights_mode, settings.weights_manifest, settings.nodes_lock)

    def before_boot(self, graph: dict[str, Any]) -> None:
        """Weights first: a missing or broken file fails in seconds, before ComfyUI is imported."""
        entries = ensure_weights(graph, self.models_dir, self.weights_mode, self.manifest)
        if entries:
            log.info("weights (%s mode): %s verified", self.weights_mode, ", ".join(str(e.relative_path) for e in entries))

    def unavailable(self, graph: dict[str, Any]) -> str | None:
        if self.weights_mode != "off":  # lazy fetches what is missing; bake fails loudly on a broken image
            return None
        missing = [str(e.relative_path) for e in required_entries(graph, load_manifest(self.manifest))
                   if not (self.models_dir / e.relative_path).is_file()]
        if missing:
            return (f"HV_WEIGHTS_MODE=off and its weights are not in {self.models_dir}: {', '.join(missing)}; "
                    f"run `{FETCH_COMMAND}` or use HV_WEIGHTS_MODE=lazy")
        return None

    def dit_in_channels(self, file_name: str) -> int | None:
        return dit_in_channels(self.models_dir / "diffusion_models" / file_name)

    def after_boot(self, graph: dict[str, Any], runtime: Any, schemas: dict[str, NodeSchema]) -> None:
        loaded = getattr(runtime, "loaded_custom_nodes", None)
        if loaded is None:  # a backend that cannot tell which modules loaded (remote): nothing to check here
            return
        report = node_load_report(load_lock(self.nodes_lock), set(loaded()), graph, set(schemas))
        error = report.error()
        if error:
            raise NodesError(error)
        if report.failed:
            log.warning(
                "locked custom node(s) %s did not load (this workflow does not need them); "
                "run `%s`", ", ".join(report.failed), NODES_VERIFY_COMMAND,
            )


def dit_in_channels(path: Path) -> int | None:
    """img_in's input channels from a DiT's safetensors header (no tensor is read); None for an unreadable file."""
    import json
    import struct

    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100 * 2**20:
                return None
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError):
        return None
    for key in ("img_in.proj.weight", "model.diffusion_model.img_in.proj.weight"):
        if key in header:
            return int(header[key]["shape"][1])
    return None
