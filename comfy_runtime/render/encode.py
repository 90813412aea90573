"""Write the delivered video (mp4, webm or gif) with PyAV (no ffmpeg binary).

Every format is encoded here, mp4 included, because ComfyUI's SaveVideo offers no quality setting,
writes its index at the end of the file (a browser must fetch the whole file before playing) and is
not reproducible: libx264 with PyAV's defaults (macroblock-tree rate control on, threads by core
count) now and then writes a different stream for identical frames. Our mp4 pins every option that
changes the bytes, so the same frames give the same file on any machine. The frames are the exact
ones the workflow decoded (frame_tap.py); a workflow without the tap is re-encoded from its own file
(encode_run picks which).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
from PIL import Image, ImageSequence

from comfy_runtime.backends.contract import RunResult
from comfy_runtime.errors import HunyuanVideoError
from comfy_runtime.graph.frame_tap import tapped_file
from comfy_runtime.job.params import BY_NAME, CRF

if TYPE_CHECKING:
    from comfy_runtime.render.plan import RunPlan

DEFAULT_CRF = BY_NAME["crf"].default
MIN_CRF, MAX_CRF = int(CRF.ge), int(CRF.le)
VP9_MAX_CRF = 63
# Fixed, not per-core: x264's frame threading changes the bitstream with the thread count.
X264_THREADS = 4
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".mkv")


class RenderFailed(HunyuanVideoError, RuntimeError):
    pass


@dataclass(frozen=True)
class Format:
    codec: str
    pix_fmt: str
    container_options: dict[str, str]


FORMATS: dict[str, Format] = {
    # faststart: the index (moov) goes before the data, so playback starts before the download ends.
    "mp4": Format("libx264", "yuv420p", {"movflags": "+faststart"}),
    "webm": Format("libvpx-vp9", "yuv420p", {}),
    "gif": Format("gif", "rgb8", {}),
}


def codec_options(output_format: str, crf: int) -> dict[str, str]:
    """Encoder options for one format at one quality (crf on x264's 1-51 scale; lower is better)."""
    if not MIN_CRF <= crf <= MAX_CRF:
        raise ValueError(f"crf={crf} is out of range: use {MIN_CRF} (best, largest) to {MAX_CRF} (worst, smallest)")
    if output_format == "mp4":
        return {
            "crf": str(crf),
            "preset": "medium",
            "profile": "high",
            # mbtree: the source of the run-to-run differences measured on SaveVideo's files.
            "x264-params": f"no-mbtree=1:threads={X264_THREADS}",
        }
    if output_format == "webm":
        # VP9's scale is 0-63; the same fraction of it keeps "lower is better" comparable across formats.
        return {"crf": str(round(crf * VP9_MAX_CRF / MAX_CRF)), "b": "0", "row-mt": "1", "deadline": "good",
                "cpu-used": "4"}
    if output_format == "gif":
        return {}
    raise ValueError(f"output_format={output_format!r} is not one of {sorted(FORMATS)}")


def encode_run(plan: RunPlan, result: RunResult, stem: Path) -> Path:
    """The delivered file of a run: encoded from the tap's exact frames, or (no tap) re-encoded from the workflow's
    own video."""
    request, workflow = plan.request, plan.workflow
    if plan.tap is not None:
        frames = tapped_file(plan.tap, result.ui_outputs, result.files)
        if frames is None:
            raise RenderFailed(
                f"workflow {workflow.name!r} finished but its frames were not saved (files: "
                f"{result.files}); check the ComfyUI log above for the frame tap's SaveAnimatedPNG"
            )
        return encode_frames(frames, plan.tap.fps, stem, request.output_format, request.crf)
    videos = [path for path in result.files if path.suffix.lower() in VIDEO_SUFFIXES]
    if not videos:
        raise RenderFailed(
            f"workflow {workflow.name!r} finished but saved no video (files: {result.files}); "
            "its output node must be a video saver such as SaveVideo"
        )
    return transcode(videos[0], request.output_format, request.crf)


def encode_frames(frames: Path, fps: Fraction, stem: Path, output_format: str, crf: int = DEFAULT_CRF) -> Path:
    """Encode the frames of a lossless (animated) PNG as output_format at fps into `<stem>.<format>`,
    replacing a file of that name."""

    def decoded(image: Image.Image) -> Iterator[av.VideoFrame]:
        for frame in ImageSequence.Iterator(image):
            yield av.VideoFrame.from_ndarray(np.asarray(frame.convert("RGB")), format="rgb24")

    with Image.open(frames) as image:
        width, height = image.size
        return _encode(decoded(image), fps, width, height, stem.with_name(f"{stem.name}.{output_format}"),
                       output_format, crf)


def transcode(source: Path, output_format: str, crf: int = DEFAULT_CRF) -> Path:
    """Encode source's frames into output_format next to it, keeping every frame, the size and the frame
    rate. An mp4 source is replaced by the re-encoded file. For a workflow without a lossless frame tap."""
    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        return _encode(
            src.decode(stream), stream.average_rate or Fraction(24), stream.codec_context.width,
            stream.codec_context.height, source.with_suffix(f".{output_format}"), output_format, crf,
        )


def _encode(frames: Iterable[av.VideoFrame], rate: Fraction, width: int, height: int, target: Path,
            output_format: str, crf: int) -> Path:
    spec = FORMATS[output_format]
    options = codec_options(output_format, crf)
    # Written aside, then renamed: the target may be the very file being read, and a reader never sees half a file.
    partial = target.with_name(f"{target.stem}.partial{target.suffix}")
    try:
        with av.open(str(partial), mode="w", format=output_format, options=spec.container_options) as dst:
            stream = dst.add_stream(spec.codec, rate=rate, options=options)
            stream.width, stream.height, stream.pix_fmt = width, height, spec.pix_fmt
            frame_time = 1 / rate
            for index, frame in enumerate(frames):
                image = frame.reformat(format=spec.pix_fmt) if frame.format.name != spec.pix_fmt else frame
                # The muxer picks its own time base (GIF counts in 1/100 s); frames say theirs.
                image.pts = index
                image.time_base = frame_time
                for packet in stream.encode(image):
                    dst.mux(packet)
            for packet in stream.encode():
                dst.mux(packet)
    except BaseException:  # a failed or cancelled encode leaves no half file behind
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return target
