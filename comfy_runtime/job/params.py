"""Every input a caller can set, declared once.

VideoRequest's fields (job/request.py), predict.py's Cog Inputs (cog_inputs.py), the CLI's render
flags and the workflow binding checks are all built from PARAMS: adding an input is one Param here
plus its bindings. A workflow may override a default (its model family's reference settings) in its
bindings file; the rules stay the same for every workflow.

Each rule renders itself, as Cog's own types render their schema: `cog()` gives its cog.Input constraints (what
coglet answers 422 for before predict runs), `field()` its pydantic annotation and Field constraints (every other
front door), `flag()` its argparse options. A refused value gets one line naming the input, the rule and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator

from comfy_runtime.job.prompt import MAX_PROMPT_CHARS, PLAIN_TEXT_PATTERN, prompt_text_problem

REQUIRED: Any = ...  # the default of an input the caller must give


@dataclass(frozen=True)
class Range:
    ge: float
    le: float

    def text(self) -> str:
        return f"{_number(self.ge)}-{_number(self.le)}"

    def bounds(self) -> tuple[float, float]:
        return self.ge, self.le

    def problem(self, name: str, value: float) -> str | None:
        if self.ge <= value <= self.le:
            return None
        return f"{name}={_number(value)} is out of range: use {self.text()}"

    def cog(self, param: Param) -> dict[str, Any]:
        return {"ge": param.kind(self.ge), "le": param.kind(self.le)}

    def field(self, param: Param) -> tuple[Any, dict[str, Any]]:
        # Our own check in place of pydantic's ge/le, whose message names no range; the schema keeps the bounds.
        return (Annotated[param.kind, AfterValidator(_checked(param.name, self.problem))],
                {"json_schema_extra": {"minimum": param.kind(self.ge), "maximum": param.kind(self.le)}})

    def flag(self, param: Param) -> dict[str, Any]:
        return {"type": param.kind}

    def form(self, param: Param) -> dict[str, Any]:
        return {"minimum": param.kind(self.ge), "maximum": param.kind(self.le)}


@dataclass(frozen=True)
class Grid:
    """Values on a grid, e.g. multiples of 16. Off-grid values are rejected, not rounded: a silently
    different resolution is worse than an error that says which values are allowed."""

    start: int
    stop: int
    step: int
    # "below": suggest the allowed value under the one asked for, which never costs more memory than the caller
    # planned for (sizes); "nearest" otherwise.
    suggest: Literal["nearest", "below"] = "nearest"

    @property
    def choices(self) -> list[int]:
        return list(range(self.start, self.stop + 1, self.step))

    def text(self) -> str:
        offset = self.start % self.step
        form = f"a multiple of {self.step}" if offset == 0 else f"{self.step}k+{offset}"
        return f"{form} from {self.start} to {self.stop}"

    def bounds(self) -> tuple[float, float]:
        return self.start, self.stop

    def problem(self, name: str, value: int) -> str | None:
        if value in self.choices:
            return None
        if self.suggest == "below":
            example = max([c for c in self.choices if c <= value] or [self.start])
        else:
            example = min(self.choices, key=lambda allowed: abs(allowed - value))
        return f"{name}={value} is not allowed: use {self.text()} (for example {example})"

    def cog(self, param: Param) -> dict[str, Any]:
        return {"choices": self.choices}  # the 422 then lists the allowed values

    def field(self, param: Param) -> tuple[Any, dict[str, Any]]:
        return Annotated[param.kind, AfterValidator(_checked(param.name, self.problem))], {}

    def flag(self, param: Param) -> dict[str, Any]:
        return {"type": param.kind}

    def form(self, param: Param) -> dict[str, Any]:
        # An HTML number input with min and step accepts exactly start + k*step: the same grid.
        return {"minimum": self.start, "maximum": self.stop, "step": self.step}


@dataclass(frozen=True)
class Choices:
    values: tuple[str, ...]

    def text(self) -> str:
        return "one of " + ", ".join(self.values)

    def cog(self, param: Param) -> dict[str, Any]:
        return {"choices": list(self.values)}

    def field(self, param: Param) -> tuple[Any, dict[str, Any]]:
        return Literal[self.values], {}

    def flag(self, param: Param) -> dict[str, Any]:
        return {"type": param.kind, "choices": self.values}

    def form(self, param: Param) -> dict[str, Any]:
        return {"choices": list(self.values)}


@dataclass(frozen=True)
class Text:
    max_length: int
    allow_empty: bool = False

    def text(self) -> str:
        return f"plain text, at most {self.max_length} characters"

    def problem(self, name: str, value: str) -> str | None:
        if self.allow_empty and value == "":
            return None
        problem = prompt_text_problem(value)
        return name + problem.removeprefix("prompt") if problem else None

    def cog(self, param: Param) -> dict[str, Any]:
        # What a JSON schema can say of plain text, so coglet answers 422 before predict runs; the rest (lone
        # surrogates, tokenizer markers) is the pydantic field's.
        constraints: dict[str, Any] = {"max_length": self.max_length}
        if not self.allow_empty:
            constraints |= {"min_length": 1, "regex": PLAIN_TEXT_PATTERN}
        return constraints

    def field(self, param: Param) -> tuple[Any, dict[str, Any]]:
        # Before pydantic's own str check, which would refuse undecodable text with a less helpful message.
        return (Annotated[param.kind, BeforeValidator(_checked(param.name, self.problem, str))],
                {"max_length": self.max_length} if self.allow_empty else {"min_length": 1})

    def flag(self, param: Param) -> dict[str, Any]:
        return {"type": param.kind}

    def form(self, param: Param) -> dict[str, Any]:
        return {"max_length": self.max_length, "multiline": True}


@dataclass(frozen=True)
class Reference:
    """Where a file comes from: a URL or a name. Only its form is checked here; the fetcher (supply/url_fetch.py)
    decides what may be fetched, and the file's content is checked before anything loads it."""

    forms: str
    max_length: int = 2048

    def text(self) -> str:
        return self.forms

    def problem(self, name: str, value: str) -> str | None:
        from comfy_runtime.lora.reference import lora_reference_problem

        return lora_reference_problem(value)

    def cog(self, param: Param) -> dict[str, Any]:
        return {"max_length": self.max_length}

    def field(self, param: Param) -> tuple[Any, dict[str, Any]]:
        return (Annotated[param.kind, AfterValidator(_checked(param.name, self.problem))],
                {"max_length": self.max_length})

    def flag(self, param: Param) -> dict[str, Any]:
        return {"type": param.kind}

    def form(self, param: Param) -> dict[str, Any]:
        return {"max_length": self.max_length}


@dataclass(frozen=True)
class ImageRef:
    """A start image, given as a string so every front end shares one rule: a data URI (data:image/png;base64,...)
    or an https URL. The Cog input is a string too: coglet would fetch a URL given for a cog.Path itself, with no
    address check (docs/models.md). Its bytes are checked when the render takes it (render/start_image.py)."""

    max_length: int

    def text(self) -> str:
        return "a data URI (data:image/png;base64,...) or an https URL of a PNG, JPEG or WebP image"

    def problem(self, name: str, value: str) -> str | None:
        if len(value) > self.max_length:
            return (f"{name} is {len(value):,} characters long; the limit is {self.max_length:,}: send a smaller image "
                    "or an https URL to it")
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        if scheme not in ("data", "https", "http"):
            return f"{name} must be a data URI or an https URL: encode the file as data:image/png;base64,..."
        return None

    def cog(self, param: Param) -> dict[str, Any]:
        return {"max_length": self.max_length}

    def field(self, param: Param) -> tuple[Any, dict[str, Any]]:
        # A Path object comes only from Python callers (the CLI, a test): a local file they chose. A string, the
        # only thing JSON can carry, must be a data URI or a URL, never a path on this machine.
        return Annotated[str | Path, BeforeValidator(_checked(param.name, self.problem, str))], {}

    def flag(self, param: Param) -> dict[str, Any]:
        return {"type": _image_arg}

    def form(self, param: Param) -> dict[str, Any]:
        return {"max_length": self.max_length}


def _image_arg(value: str) -> str | Path:
    """On the command line a start image may also be a local file: the caller owns this machine."""
    if value.split(":", 1)[0].lower() in ("data", "http", "https"):
        return value
    return Path(value).expanduser()


Rule = Range | Grid | Choices | Text | Reference | ImageRef


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _checked(name: str, problem, only: type | None = None):
    """A pydantic validator raising the rule's own one-line problem; `only` skips values of other types (pydantic's
    type check then names them)."""

    def check(value: Any) -> Any:
        if only is not None and not isinstance(value, only):
            return value
        found = problem(name, value)
        if found:
            raise ValueError(found)
        return value

    return check


@dataclass(frozen=True)
class Param:
    """One input: what it is, its type, default and rule. `role` says where its value goes: into the
    workflow's graph through bindings, or to the encoder of the delivered file."""

    name: str
    kind: type
    default: Any
    summary: str
    rule: Rule
    advice: str = ""
    optional: bool = False  # None is allowed and means "choose for me" (a random seed)
    # graph: set into the workflow through its bindings; transform: changes the graph's shape (a LoRA or cache node
    # inserted, graph/model_chain.py); select: chooses the workflow (upscale); delivery: read by the encoder.
    role: Literal["graph", "transform", "select", "delivery"] = "graph"
    # Advice that depends on the node the input feeds in the served model's graph, by class_type (guidance is v1's
    # embedded guidance, FluxGuidance, but real classifier-free guidance in 1.5, CFGGuider).
    advice_by_node: tuple[tuple[str, str], ...] = ()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def description(self, feeds: str | None = None) -> str:
        """The one line a caller reads in the Cog schema and the CLI help, generated from the rule; `feeds` is the
        class of the node this input feeds in the served graph, where the advice depends on it."""
        advice = dict(self.advice_by_node).get(feeds or "", self.advice)
        return f"{self.summary}: {self.rule.text()}." + (f" {advice}" if advice else "")

    def declaration(self) -> dict[str, Any]:
        """This input as JSON for a form (the gateway's GET /inputs, the jobs page): its rule's own `form()`
        bounds, so a form offers what VideoRequest accepts; the gateway's 422 stays the judge."""
        return {"name": self.name, "type": self.kind.__name__, "required": self.required, "optional": self.optional,
                "default": None if self.required else self.default, "summary": self.summary,
                "rule": self.rule.text(), "description": self.description(), **self.rule.form(self)}


SIZE = Grid(64, 1280, 16, suggest="below")  # the VAE downsamples 8x and the DiT patchifies 2x2
FRAMES = Grid(1, 129, 4)  # the causal VAE packs 4 frames per latent frame after the first
MAX_SEED = 2**32 - 1
# x264's scale: 18 is its "visually lossless" point, 23 its default (SaveVideo's); 0 would switch x264 to a
# lossless profile most players refuse. encode.py maps it onto VP9's 0-63; GIF ignores it.
CRF = Range(1, 51)
OFF_GRID = "Other values are rejected, not rounded."
LORA_FORMS = "an https:// URL, hf://owner/repo/path.safetensors@revision, or the name of a file under models/loras"
# EasyCache's reuse_threshold per level: the larger, the more DiT calls are skipped (and the further the video
# drifts from the uncached one). Measured trade-offs are in docs/lora-and-speed.md.
CACHE_LEVELS = {"off": None, "fast": 0.2, "faster": 0.3, "fastest": 0.5}
# The start image's bytes may be at most this large; a data URI is base64 (4 characters per 3 bytes) plus its header.
MAX_IMAGE_BYTES = 20 * 2**20
MAX_IMAGE_URI_CHARS = MAX_IMAGE_BYTES * 4 // 3 + 100
UPSCALES = ("none", "1080p")

PARAMS: tuple[Param, ...] = (
    Param("prompt", str, REQUIRED, "What the video shows", Text(MAX_PROMPT_CHARS),
          "At most 256 LLaMA tokens (about 1000 characters of English)."),
    Param("negative_prompt", str, "", "What the video must not show", Text(MAX_PROMPT_CHARS, allow_empty=True),
          "Only for models with real classifier-free guidance (HunyuanVideo 1.5, not its cfg-distilled variant)."),
    Param("image", str, None, "Start frame: switches to image-to-video", ImageRef(MAX_IMAGE_URI_CHARS),
          f"At most {MAX_IMAGE_BYTES // 2**20} MB; fitted to the size by scaling to cover and cropping the centre. "
          "Leave empty for text-to-video.", optional=True),
    Param("upscale", str, "none", "Super-resolution stage after sampling", Choices(UPSCALES),
          "1080p runs HunyuanVideo 1.5's 1080p stage (each side x1.5) where the deployment enables it.",
          role="select"),
    Param("width", int, 848, "Frame width in pixels", SIZE, OFF_GRID),
    Param("height", int, 480, "Frame height in pixels", SIZE, OFF_GRID),
    Param("num_frames", int, 73, "Number of frames", FRAMES, "73 frames at 24 fps is about 3 s. " + OFF_GRID),
    Param("steps", int, 30, "Sampling steps", Range(1, 100), "20-50 is the useful range; more is slower and sharper."),
    Param("guidance", float, 6.0, "Guidance strength", Range(1.0, 20.0),
          "HunyuanVideo v1: embedded guidance (guidance-distilled); HunyuanVideo 1.5: classifier-free guidance scale.",
          advice_by_node=(
              ("FluxGuidance", "HunyuanVideo v1 is guidance-distilled: this is its embedded guidance, 6.0 the reference."),
              ("CFGGuider", "Classifier-free guidance scale: each step runs the model with and without the prompt "
                            "(6.0 the reference; 1.0 runs it once, as the cfg-distilled model does)."),
          )),
    Param("flow_shift", float, 7.0, "Flow-matching shift of the noise schedule", Range(1.0, 20.0),
          "Higher spends more steps on coarse motion."),
    Param("fps", int, 24, "Frames per second of the output video", Range(1, 60)),
    Param("seed", int, None, "Random seed", Range(0, MAX_SEED),
          "Leave empty for a random one; the seed used is printed in the logs.", optional=True),
    Param("lora_url", str, None, "LoRA for the DiT", Reference(LORA_FORMS),
          "safetensors only. Leave empty for none.", optional=True, role="transform"),
    Param("lora_strength", float, 1.0, "How strongly the LoRA changes the model", Range(-2.0, 2.0),
          "0 leaves the model as it is; negative values push away from the LoRA's style.", role="transform"),
    Param("cache", str, "off", "Reuse DiT results between similar steps (EasyCache)", Choices(tuple(CACHE_LEVELS)),
          "fast skips a few steps (0.2, ComfyUI's default), fastest the most (0.5); off computes every step.", role="transform"),
    Param("output_format", str, "mp4", "Container and codec of the video", Choices(("mp4", "webm", "gif")),
          role="delivery"),
    Param("crf", int, 18, "Quality of the mp4/webm, lower is better and larger", CRF,
          "x264 scale: 18 looks lossless, 23 is x264's default. Ignored for gif.", role="delivery"),
)
BY_NAME = {param.name: param for param in PARAMS}


def graph_input_types() -> dict[str, type]:
    """The inputs a workflow may bind, with the Python type each carries (the binding check's view)."""
    return {p.name: p.kind for p in PARAMS if p.role == "graph"}


def graph_input_ranges() -> dict[str, tuple[float, float]]:
    """The widest value each bindable input may take: the node input it feeds must accept all of it."""
    return {p.name: p.rule.bounds() for p in PARAMS if p.role == "graph" and isinstance(p.rule, Range | Grid)}


def defaults(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every optional input's default, with a workflow's own reference values laid over them."""
    base = {p.name: p.default for p in PARAMS if not p.required}
    return {**base, **(overrides or {})}
