"""The request's LoRA on the graph a run executes: a LoraLoaderModelOnly on the first-stage DiT's model chain.

The plan places the node (add_lora with NOT_FETCHED) before the file is fetched, so a request the limits refuse
fetches nothing; name_lora_file then names the fetched file on it."""

from __future__ import annotations

import copy

from comfy_runtime.graph.model_chain import NODE_PREFIX, insert_on_dit_chain
from comfy_runtime.graph.types import Graph

NOT_FETCHED = ""  # the lora_name of a placed node whose file is not fetched yet
_NODE = "LoraLoaderModelOnly"


def add_lora(graph: Graph, lora_name: str, strength: float) -> Graph:
    """LoraLoaderModelOnly on the first-stage DiT. lora_name is the file's name under models/loras."""
    return insert_on_dit_chain(graph, "lora", _NODE,
                               {"lora_name": lora_name, "strength_model": float(strength)}, "LoRA of the request")


def name_lora_file(graph: Graph, lora_name: str) -> Graph:
    """The graph with lora_name on the LoRA node(s) add_lora placed."""
    graph = copy.deepcopy(graph)
    placed = [node for node_id, node in graph.items()
              if node_id.startswith(f"{NODE_PREFIX}lora_") and node.get("class_type") == _NODE]
    if not placed:
        raise ValueError("the graph has no LoRA node to name the file on: place it with add_lora first")
    for node in placed:
        node["inputs"]["lora_name"] = lora_name
    return graph
