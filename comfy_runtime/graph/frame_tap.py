"""Take the decoded frames losslessly, in place of the workflow's own video file.

ComfyUI's SaveVideo writes h264 at x264's default quality (CRF 23) with no setting for it, and not
reproducibly. Encoding the delivered file from that file would cap every format's quality at it and
carry its run-to-run jitter into our bytes. So the graph a run executes gets a SaveAnimatedPNG on the
frames CreateVideo would take, instead of CreateVideo -> SaveVideo: exact 8-bit frames, and the
delivered file is encoded from those.
zlib level 0 because the file lives only until the delivered one is written: compressing it harder
costs time for nothing (bench/savevideo_replaced.py measures it against one PNG per frame at SaveImage's
level 4; figures in docs/benchmarks.md). Read back, every frame is bit-exact.
The tap takes the place of CreateVideo -> SaveVideo in the copy that runs: their h264 file would only
be thrown away, and at 848x480x73 it costs seconds of x264 per prediction (same bench). The bundled
workflow files keep their SaveVideo (they stay valid ComfyUI graphs, and setup validates them as they are); a graph
without CreateVideo -> SaveVideo gets no tap, and its video is re-encoded from its own file instead.
Only the embedded backend taps (ServedModel.from_settings, render/served_model.py): a remote server would keep
every ~90 MB tap file.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from comfy_runtime.graph.types import Graph, is_link

TAP_NODE_PREFIX = "hv_frames_"


@dataclass(frozen=True)
class FrameTap:
    node_id: str
    fps: Fraction


def add_frame_tap(graph: Graph, filename_prefix: str, replace_saver: bool = True) -> tuple[Graph, FrameTap | None]:
    """A copy of graph with a lossless save on the frames of its first CreateVideo -> SaveVideo, or graph as
    it is when it has none. replace_saver drops that SaveVideo (and its CreateVideo, when nothing else reads
    it): the tap then is the graph's only video output. filename_prefix must be unique per run, and it names
    the node too: ComfyUI keeps node instances by node id between runs, and a save node's instance keeps the
    output folder it was made in, so a reused id would write this run's frames into the previous run's folder."""
    for saver_id, node in graph.items():
        if node.get("class_type") != "SaveVideo":
            continue
        link = node.get("inputs", {}).get("video")
        source = graph.get(str(link[0])) if is_link(link) else None
        if source is None or source.get("class_type") != "CreateVideo":
            continue
        images, fps = source["inputs"].get("images"), source["inputs"].get("fps")
        # Frames from a link and a plain fps value; a video with an audio track keeps its own file (with sound).
        if not is_link(images) or is_link(fps) or fps is None or source["inputs"].get("audio"):
            continue
        tapped = copy.deepcopy(graph)
        if replace_saver:
            del tapped[saver_id]
            if not any(_links_to(other, str(link[0])) for other in tapped.values()):
                del tapped[str(link[0])]
        node_id = f"{TAP_NODE_PREFIX}{filename_prefix}"
        tapped[node_id] = {
            "class_type": "SaveAnimatedPNG",
            "_meta": {"title": "Lossless frames for the delivered file"},
            "inputs": {"images": list(images), "filename_prefix": filename_prefix, "fps": float(fps),
                       "compress_level": 0},
        }
        return tapped, FrameTap(node_id, Fraction(float(fps)).limit_denominator(1001))
    return graph, None


def _links_to(node: dict[str, Any], node_id: str) -> bool:
    return any(is_link(value) and value and str(value[0]) == node_id for value in node.get("inputs", {}).values())


def tapped_file(tap: FrameTap, ui_outputs: dict[str, Any], files: list[Path]) -> Path | None:
    """The tap's animated PNG among the run's files; None when the run did not bring it back."""
    names = [item.get("filename") for item in ui_outputs.get(tap.node_id, {}).get("images", [])]
    found = [path for path in files if path.name in names]
    return found[0] if len(names) == 1 and len(found) == 1 else None
