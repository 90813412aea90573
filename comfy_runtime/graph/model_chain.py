"""Transforms of the graph a run executes that change the DiT: EasyCache, its weight dtype, torch.compile, and the
place a LoRA goes (comfy_runtime/lora/graph.py inserts it with insert_on_dit_chain).

Each inserts one core ComfyUI node on the model chain right after the DiT loader (UNETLoader), re-pointing every
node that read the loader's model to it, so the rest of the workflow stays as it is. The chain is found by
following links from the loader to the samplers, not by node ids, so v1 graphs (ModelSamplingSD3 -> BasicGuider)
and 1.5 graphs (CFGGuider, a super-resolution stage with its own DiT) are both handled: the transforms apply to the
first-stage DiT(s), the ones feeding a sampler that no other sampler feeds (a super-resolution DiT refines
another sampler's output, and a LoRA is trained for the base model).
Nodes inserted here carry ids starting with NODE_PREFIX; each next one goes after them, so the order of the
calls is the order on the chain (loader -> LoRA -> EasyCache -> compile -> the workflow's own nodes).
"""

from __future__ import annotations

import copy
from typing import Any

from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.graph.types import Graph
from comfy_runtime.job.params import CACHE_LEVELS

NODE_PREFIX = "hv_model_"
DIT_LOADERS = ("UNETLoader",)
SAMPLERS = ("SamplerCustomAdvanced", "SamplerCustom", "KSampler", "KSamplerAdvanced")
# EasyCache's own defaults (comfy_extras/nodes_easycache.py): the first 15% of the steps lay out the composition
# and are always computed, as are the last 5% that settle the detail.
CACHE_START_PERCENT = 0.15
CACHE_END_PERCENT = 0.95


class ModelChainError(HunyuanVideoError, ValueError):
    pass


def _links(node: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(name, str(value[0]), int(value[1])) for name, value in node.get("inputs", {}).items()
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)]


def _upstream(graph: Graph, node_id: str) -> set[str]:
    seen: set[str] = set()
    stack = [node_id]
    while stack:
        for _, source, _ in _links(graph.get(stack.pop(), {})):
            if source not in seen and source in graph:
                seen.add(source)
                stack.append(source)
    return seen


def first_stage_loaders(graph: Graph) -> list[str]:
    """The DiT loaders feeding a sampler that no other sampler feeds, in node-id order."""
    samplers = [nid for nid, node in graph.items() if node.get("class_type") in SAMPLERS]
    upstream = {nid: _upstream(graph, nid) for nid in samplers}
    first = [nid for nid in samplers if not any(other in upstream[nid] for other in samplers if other != nid)]
    loaders = {nid for sampler in first for nid in upstream[sampler] if graph[nid].get("class_type") in DIT_LOADERS}
    return sorted(loaders)


def _chain_end(graph: Graph, loader: str) -> str:
    """The loader, or the last node this module inserted after it."""
    current = loader
    while True:
        following = [nid for nid, node in graph.items() if nid.startswith(NODE_PREFIX)
                     and any(source == current and slot == 0 for name, source, slot in _links(node) if name == "model")]
        if len(following) != 1:
            return current
        current = following[0]


def insert_on_dit_chain(graph: Graph, what: str, class_type: str, inputs: dict[str, Any], title: str) -> Graph:
    loaders = first_stage_loaders(graph)
    if not loaders:
        raise ModelChainError(
            f"cannot add {what}: the workflow has no {' or '.join(DIT_LOADERS)} feeding a sampler "
            f"({', '.join(SAMPLERS)}); load its DiT with UNETLoader"
        )
    graph = copy.deepcopy(graph)
    for loader in loaders:
        after = _chain_end(graph, loader)
        node_id = f"{NODE_PREFIX}{what}_{loader}"
        for node in graph.values():
            for name, source, slot in _links(node):
                if source == after and slot == 0:
                    node["inputs"][name] = [node_id, 0]
        graph[node_id] = {"class_type": class_type, "_meta": {"title": title},
                          "inputs": {"model": [after, 0], **inputs}}
    return graph


def add_cache(graph: Graph, level: str) -> Graph:
    """EasyCache at the named level (job/params.py CACHE_LEVELS); "off" returns the graph unchanged."""
    if level not in CACHE_LEVELS:
        raise ModelChainError(f"cache={level!r}: use one of {', '.join(CACHE_LEVELS)}")
    threshold = CACHE_LEVELS[level]
    if threshold is None:
        return graph
    return insert_on_dit_chain(graph, "cache", "EasyCache", {
        "reuse_threshold": threshold, "start_percent": CACHE_START_PERCENT, "end_percent": CACHE_END_PERCENT,
        "verbose": False,
    }, f"EasyCache ({level})")


def add_sequence_parallel(graph: Graph) -> Graph:
    """HVSequenceParallel (backends/parallel) last on the first-stage DiT's chain, so what runs split is the DiT with
    its LoRA and cache. A super-resolution DiT is not split: it runs whole on every rank."""
    return insert_on_dit_chain(graph, "sequence_parallel", "HVSequenceParallel", {}, "DiT split over the GPUs")


def apply_dit_settings(graph: Graph, weight_dtype: str = "default", compile_model: bool = False) -> Graph:
    """The deployment's DiT settings: the loader's weight_dtype, and TorchCompileModel (inductor) on the chain."""
    if weight_dtype != "default":
        graph = copy.deepcopy(graph)
        for node in graph.values():  # every DiT the workflow loads: a super-resolution one is as large
            if node.get("class_type") in DIT_LOADERS:
                node["inputs"]["weight_dtype"] = weight_dtype
    if compile_model:
        graph = insert_on_dit_chain(graph, "compile", "TorchCompileModel", {"backend": "inductor"}, "torch.compile of the DiT")
    return graph
