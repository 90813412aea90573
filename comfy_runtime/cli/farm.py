"""`python -m comfy_runtime worker | gateway | jobs submit|status|cancel|wait`: the render farm's commands."""

from __future__ import annotations

import argparse
import json
import sys

from comfy_runtime.errors import HunyuanVideoError, InputRejected


def add_farm_commands(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser("worker", help="farm GPU worker: boot ComfyUI, then render queued jobs one at a time")
    worker.set_defaults(fn=_cmd_worker)

    gateway = commands.add_parser("gateway", help="farm HTTP gateway speaking Cog's prediction API (no GPU)")
    gateway.add_argument("--host", help="default: HV_FARM_GATEWAY_HOST")
    gateway.add_argument("--port", type=int, help="default: HV_FARM_GATEWAY_PORT")
    gateway.set_defaults(fn=_cmd_gateway)

    jobs = commands.add_parser("jobs", help="submit and follow farm jobs (HV_FARM_DATABASE_URL)")
    actions = jobs.add_subparsers(dest="action", required=True)
    submit = actions.add_parser("submit", help="queue one prediction; prints it as JSON (Cog's shape)")
    submit.add_argument("-i", "--input", dest="inputs", action="append", default=[], metavar="NAME=VALUE",
                        help="an input, as for `cog predict` (repeatable); VALUE is read as JSON when it parses")
    submit.add_argument("--json", dest="input_json", help="all inputs as one JSON object (merged under -i)")
    submit.add_argument("--id", help="prediction id (default: a random one)")
    submit.add_argument("--webhook", help="URL to POST the prediction to on start and completion")
    submit.add_argument("--wait", action="store_true", help="wait for the end, then print it")
    submit.add_argument("--timeout", type=float, help="with --wait: give up waiting after this many seconds")
    submit.set_defaults(fn=_cmd_jobs_submit)
    for name, help_text in (("status", "print a prediction as JSON"),
                            ("cancel", "cancel a prediction (queued: never starts; running: ComfyUI is interrupted)"),
                            ("wait", "wait until a prediction ends; exit 0 when it succeeded")):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("prediction_id")
        if name == "wait":
            action.add_argument("--timeout", type=float, help="give up waiting after this many seconds (exit 3)")
        action.set_defaults(fn=_cmd_jobs)


def _cmd_worker(args: argparse.Namespace) -> int:
    from comfy_runtime.farm.worker import run_worker

    return _guarded(run_worker)


def _cmd_gateway(args: argparse.Namespace) -> int:
    from comfy_runtime.farm.gateway import run_gateway

    return _guarded(lambda: run_gateway(host=args.host, port=args.port))


def _parse_inputs(args: argparse.Namespace) -> dict:
    inputs = json.loads(args.input_json) if args.input_json else {}
    for item in args.inputs:
        name, sep, value = item.partition("=")
        if not sep:
            raise InputRejected(f"-i {item!r}: write NAME=VALUE, e.g. -i prompt='a red fox' -i width=848")
        try:
            inputs[name] = json.loads(value)
        except json.JSONDecodeError:
            inputs[name] = value
    return inputs


def _cmd_jobs_submit(args: argparse.Namespace) -> int:
    from comfy_runtime.farm.client import FarmClient

    def submit() -> int:
        with FarmClient() as client:
            client.ensure_schema()
            prediction = client.submit(_parse_inputs(args), prediction_id=args.id, webhook=args.webhook)
            if args.wait:
                prediction = client.wait(prediction["id"], timeout=args.timeout)
            _print(prediction)
            return _exit_code(prediction) if args.wait else 0

    return _guarded(submit)


def _cmd_jobs(args: argparse.Namespace) -> int:
    from comfy_runtime.farm.client import FarmClient

    def act() -> int:
        with FarmClient() as client:
            if args.action == "status":
                _print(client.get(args.prediction_id))
                return 0
            if args.action == "cancel":
                _print(client.cancel(args.prediction_id))
                return 0
            prediction = client.wait(args.prediction_id, timeout=args.timeout)
            _print(prediction)
            return _exit_code(prediction)

    return _guarded(act)


def _exit_code(prediction: dict) -> int:
    return {"succeeded": 0, "failed": 1, "canceled": 1}.get(prediction["status"], 3)


def _print(prediction: dict) -> None:
    print(json.dumps(prediction, indent=2, default=str))


def _guarded(fn) -> int:
    try:
        return fn()
    except InputRejected as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except HunyuanVideoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
