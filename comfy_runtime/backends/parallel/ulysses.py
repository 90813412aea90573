"""Sequence-parallel HunyuanVideo DiT: one forward spread over the ranks of a torch.distributed group.

Ulysses, as xDiT runs HunyuanVideo: each rank holds 1/N of the image tokens through every block, and
attention swaps that split for one over heads (an all-to-all of q, k and v, yunchang's), so each rank attends
over the whole sequence with H/N heads, then swaps back. The text tokens are few (a few hundred against ~110k
image tokens at 720p): every rank keeps all of them, takes its own heads of their q, k and v, and the text
output's heads are gathered, so the text stream stays identical on every rank.

Installed through ComfyUI's own extension points, leaving its files unedited: a replacement for every DiT
block (`patches_replace["dit"]`, which shards the image before the first block and gathers it after the
last) and `optimized_attention_override`, which the blocks' attention calls consult. Both are keyed on this
module's marker in transformer_options, so the text refiner's attention (before the blocks) runs as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from comfy_runtime.backends.parallel.group import STOP, StopAgreement
from comfy_runtime.errors import HunyuanVideoError

# transformer_options key: the image tokens this rank holds, set by the block replacements for the attention
# override (which sees only q, k, v with the rank's image tokens first and the text after).
LOCAL_IMAGE_TOKENS = "hv_sequence_parallel_image_tokens"


class SequenceParallelRefused(HunyuanVideoError, ValueError):
    """A model or a shape this sequence-parallel split cannot serve."""


@dataclass(frozen=True)
class Shard:
    rank: int
    world: int
    group: Any = None  # a torch.distributed ProcessGroup; None is the default group

    def bounds(self, length: int) -> tuple[int, int]:
        size = length // self.world
        return self.rank * size, (self.rank + 1) * size


def check_heads(heads: int, world: int) -> None:
    if heads % world:
        raise SequenceParallelRefused(
            f"the DiT has {heads} attention heads, which {world} GPUs cannot share evenly (Ulysses splits the heads): "
            f"set HV_GPUS to a divisor of {heads}"
        )


class UlyssesDiT:
    """The block replacements and the attention override for one DiT (ComfyUI's HunyuanVideo class)."""

    def __init__(self, shard: Shard, double_blocks: int, single_blocks: int, heads: int,
                 stop: StopAgreement = STOP):
        check_heads(heads, shard.world)
        self.shard = shard
        self.stop = stop
        self.double_blocks = double_blocks
        self.single_blocks = single_blocks

    def __deepcopy__(self, memo: dict) -> UlyssesDiT:
        # ComfyUI deep-copies model_options on every clone of the patcher; the split holds the process's one stop
        # agreement (a lock), which must stay shared.
        return self

    @classmethod
    def for_model(cls, diffusion_model: Any, shard: Shard, stop: StopAgreement = STOP) -> UlyssesDiT:
        double = len(diffusion_model.double_blocks)
        single = len(diffusion_model.single_blocks)
        if not double:
            raise SequenceParallelRefused("the DiT has no double-stream blocks to split: this is not a HunyuanVideo DiT")
        return cls(shard, double, single, diffusion_model.num_heads, stop)

    def install(self, model_patcher: Any) -> Any:
        """A clone of model_patcher (ComfyUI's ModelPatcher of the DiT) whose forward runs split over the group."""
        patched = model_patcher.clone()
        for index in range(self.double_blocks):
            patched.set_model_patch_replace(self._double(index), "dit", "double_block", index)
        for index in range(self.single_blocks):
            patched.set_model_patch_replace(self._single(index), "dit", "single_block", index)
        patched.model_options["transformer_options"]["optimized_attention_override"] = self.attention
        return patched

    # -- the blocks -------------------------------------------------------------------------------------
    def _splittable(self, args: dict[str, Any], image_tokens: int) -> bool:
        # A per-token modulation (v1's "v2 (replace)" image-to-video) indexes tokens by their place in the whole
        # sequence; an uneven split would give ranks different shapes. Both run unsplit, on every rank alike.
        if args.get("modulation_dims_img") or args.get("modulation_dims"):
            return False
        return image_tokens % self.shard.world == 0

    def _double(self, index: int):
        first, last = index == 0, index == self.double_blocks - 1 and self.single_blocks == 0

        def block(args: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
            options = args["transformer_options"]
            img, pe = args["img"], args["pe"]
            if first:
                if self.stop.agreed(img.device):
                    import comfy.model_management

                    raise comfy.model_management.InterruptProcessingException()
                options.pop(LOCAL_IMAGE_TOKENS, None)
                if self._splittable(args, img.shape[1]):
                    full = img.shape[1]
                    start, stop = self.shard.bounds(full)
                    options[LOCAL_IMAGE_TOKENS] = (stop - start, full, start)
            split = options.get(LOCAL_IMAGE_TOKENS)
            if split is None:
                return extra["original_block"](args)
            local, full, start = split
            if first:
                img = img[:, start:start + local]
            out = extra["original_block"]({**args, "img": img, "pe": _local_pe(pe, full, start, local)})
            if last:
                out = {**out, "img": self._gather_image(out["img"])}
                options.pop(LOCAL_IMAGE_TOKENS, None)
            return out

        return block

    def _single(self, index: int):
        last = index == self.single_blocks - 1

        def block(args: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
            options = args["transformer_options"]
            split = options.get(LOCAL_IMAGE_TOKENS)
            if split is None:
                return extra["original_block"](args)
            local, full, start = split
            out = extra["original_block"]({**args, "pe": _local_pe(args["pe"], full, start, local)})
            if last:
                joined = out["img"]
                out = {**out, "img": torch.cat((self._gather_image(joined[:, :local]), joined[:, local:]), dim=1)}
                options.pop(LOCAL_IMAGE_TOKENS, None)
            return out

        return block

    def _gather_image(self, local: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(local) for _ in range(self.shard.world)]
        dist.all_gather(parts, local.contiguous(), group=self.shard.group)
        return torch.cat(parts, dim=1)

    # -- attention ------------------------------------------------------------------------------------
    def attention(self, func, q, k, v, heads, *args, **kwargs):
        """ComfyUI's optimized_attention_override: q, k, v as (batch, heads, tokens, head_dim), this rank's image
        tokens first, then every text token; returns (batch, tokens, heads * head_dim) like the function it wraps."""
        options = kwargs.get("transformer_options") or {}
        split = options.get(LOCAL_IMAGE_TOKENS)
        if split is None or not kwargs.get("skip_reshape"):
            return func(q, k, v, heads, *args, **kwargs)
        from yunchang.comm.all_to_all import all_to_all_4D

        local = split[0]
        world, rank, group = self.shard.world, self.shard.rank, self.shard.group
        per_rank = heads // world
        mine = slice(rank * per_rank, (rank + 1) * per_rank)

        def to_heads(t: torch.Tensor) -> torch.Tensor:
            # (b, H, local + text, d) -> (b, H/N, whole image + text, d)
            image = all_to_all_4D(t[:, :, :local].transpose(1, 2).contiguous(), 2, 1, group=group)
            text = t[:, mine, local:].transpose(1, 2)
            return torch.cat((image, text), dim=1).transpose(1, 2)

        out = func(to_heads(q), to_heads(k), to_heads(v), per_rank, *args, **kwargs)  # (b, tokens, H/N * d)
        batch, tokens, _ = out.shape
        head_dim = q.shape[-1]
        out = out.view(batch, tokens, per_rank, head_dim)
        whole_image = tokens - (q.shape[2] - local)
        image = all_to_all_4D(out[:, :whole_image].contiguous(), 1, 2, group=group)  # (b, local, H, d)
        text_parts = [torch.empty_like(out[:, whole_image:]) for _ in range(world)]
        dist.all_gather(text_parts, out[:, whole_image:].contiguous(), group=group)
        text = torch.cat(text_parts, dim=2)  # (b, text, H, d): the heads in rank order, as they were split
        return torch.cat((image, text), dim=1).reshape(batch, local + text.shape[1], heads * head_dim)


def _local_pe(pe: torch.Tensor, full: int, start: int, local: int) -> torch.Tensor:
    """The rotary table (batch, 1, tokens, ...) cut to this rank's image tokens and every text token."""
    return torch.cat((pe[:, :, start:start + local], pe[:, :, full:]), dim=2)
