"""The ComfyUI node that splits a DiT over the deployment's GPUs, inserted on the model chain of every run.

A node, not a patch applied behind ComfyUI's back, so the split is part of the graph the run validates and
caches like any other model transform (graph/model_chain.add_sequence_parallel puts it after the loader).
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

from comfy_runtime.backends.parallel.ulysses import Shard, UlyssesDiT

CLASS_TYPE = "HVSequenceParallel"


class SequenceParallelModel:
    CATEGORY = "hunyuan_video"
    DESCRIPTION = "The DiT's forward split over this deployment's GPUs (Ulysses sequence parallelism)."
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "split"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",)}}

    def split(self, model: Any) -> tuple[Any]:
        # The default group: after a rebuild it is the new one, so a model ComfyUI cached stays usable.
        shard = Shard(dist.get_rank(), dist.get_world_size())
        return (UlyssesDiT.for_model(model.model.diffusion_model, shard).install(model),)


def register(node_class_mappings: dict[str, Any]) -> None:
    node_class_mappings[CLASS_TYPE] = SequenceParallelModel
