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
from comfy_runtime.supply.nodes import NodesError, node_load_report
from comfy_runtime.supply.weights import WeightsMode, ensure_weights

log = logging.getLogger(__name__)


class SupplyChecks(Protocol):
    def before_boot(self, graph: dict[str, Any]) -> None: ...

    def after_boot(self, graph: dict[str, Any], runtime: Any, schemas: dict[str, NodeSchema]) -> None: ...


class NoSupplyChecks:
    """For a ComfyUI that owns its weights and nodes (the remote backend): nothing to check here."""

    def before_boot(self, graph: dict[str, Any]) -> None:
        pass

    def after_boot(self, graph: dict[str, Any], runtime: Any, schemas: dict[str, NodeSchema]) -> None:
        pass


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
