"""The request's LoRA on the graph a run executes: a LoraLoaderModelOnly on the first-stage DiT's model chain."""

from __future__ import annotations

from comfy_runtime.graph.model_chain import insert_on_dit_chain
from comfy_runtime.graph.types import Graph


def add_lora(graph: Graph, lora_name: str, strength: float) -> Graph:
    """LoraLoaderModelOnly on the first-stage DiT. lora_name is the file's name under models/loras."""
    return insert_on_dit_chain(graph, "lora", "LoraLoaderModelOnly",
                               {"lora_name": lora_name, "strength_model": float(strength)}, "LoRA of the request")
