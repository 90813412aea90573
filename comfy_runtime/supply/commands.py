"""The operator commands that error messages and logs quote, spelled once so a renamed command cannot leave a
message pointing at one that no longer exists (tests/test_supply_commands.py runs each one's --help)."""

from __future__ import annotations

CLI = "python -m comfy_runtime"

WEIGHTS_FETCH_COMMAND = f"{CLI} weights fetch"
WEIGHTS_VERIFY_COMMAND = f"{CLI} weights verify"
WEIGHTS_LOCK_COMMAND = f"{CLI} weights lock"
NODES_INSTALL_COMMAND = f"{CLI} nodes install"
NODES_VERIFY_COMMAND = f"{CLI} nodes verify"
NODES_LOCK_COMMAND = f"{CLI} nodes lock"
# Rewrites cog.yaml's generated install block from custom_nodes.lock without asking GitHub for the tag.
SYNC_COG_YAML_COMMAND = f"{CLI} nodes sync-cog-yaml"
COMFYUI_PROVISION_COMMAND = f"{CLI} comfyui provision"
