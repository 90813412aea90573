"""`python -m comfy_runtime worker | gateway | jobs submit|status|cancel|wait|token`: the render farm's commands."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from comfy_runtime.errors import HunyuanVideoError, InputRejected
from comfy_runtime.farm.config import FarmNotConfigured

WORKER_NEEDS = ("Needs HV_FARM_DATABASE_URL (the queue's PostgreSQL) and HV_S3_BUCKET (with HV_S3_ENDPOINT_URL and "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for MinIO or another S3 server), plus the renderer's HV_* "
                "settings; docs/farm.md.")


def add_farm_commands(commands: argparse._SubParsersAction) -> None:
    from comfy_runtime.farm.config import FarmSettings

    worker = commands.add_parser(
        "worker", help="farm GPU worker: boot ComfyUI, then render queued jobs one at a time",
        description="A render-farm GPU worker: checks the weights, nodes and bucket, boots ComfyUI in this process, "
        "then renders queued jobs one at a time and uploads each video. " + WORKER_NEEDS,
    )
    worker.set_defaults(fn=_cmd_worker)

    defaults = FarmSettings.model_fields
    gateway = commands.add_parser(
        "gateway", help="farm HTTP gateway speaking Cog's prediction API (no GPU)",
        description="The render farm's HTTP gateway: Cog's prediction API in front of the queue; no GPU, no state of "
        "its own. Needs HV_FARM_DATABASE_URL (the queue's PostgreSQL); docs/farm.md.",
    )
    gateway.add_argument("--host", help=f"address to listen on (default: {defaults['gateway_host'].default}, "
                         "or HV_FARM_GATEWAY_HOST)")
    gateway.add_argument("--port", type=int, help=f"port to listen on (default: {defaults['gateway_port'].default}, "
                         "or HV_FARM_GATEWAY_PORT)")
    gateway.set_defaults(fn=_cmd_gateway)

    jobs = commands.add_parser(
        "jobs", help="submit and follow farm jobs (HV_FARM_DATABASE_URL)",
        description="Submit, inspect, cancel and wait for farm jobs. Needs HV_FARM_DATABASE_URL.",
    )
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
    _add_verbose(submit)
    for name, help_text in (("status", "print a prediction as JSON"),
                            ("cancel", "cancel a prediction (queued: never starts; running: ComfyUI is interrupted)"),
                            ("wait", "wait until a prediction ends; exit 0 when it succeeded")):
        action = actions.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        action.add_argument("prediction_id")
        _add_verbose(action)
        if name == "wait":
            action.add_argument("--timeout", type=float, help="give up waiting after this many seconds (exit 3)")
        action.set_defaults(fn=_cmd_jobs)
    _add_token_commands(actions)


def _add_token_commands(actions: argparse._SubParsersAction) -> None:
    token = actions.add_parser(
        "token", help="API tokens for the gateway: create, list, rotate, revoke",
        description="API tokens for the gateway (`Authorization: Bearer <token>`). The token and its webhook signing "
        "secret are printed once, at creation; the database keeps only the token's hash. docs/farm.md.",
    )
    verbs = token.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="make a token; prints it and its webhook secret once")
    create.add_argument("--name", required=True, help="who it is for, e.g. alice or ci-bot (1-64 letters, digits, _.@-)")
    create.add_argument("--admin", action="store_true", help="sees and cancels every token's jobs")
    create.add_argument("--max-active", type=int, metavar="K", help="at most K of its jobs queued or running at once "
                        "(the next is answered 429 with Retry-After); default: no limit")
    create.add_argument("--json", action="store_true", help="print {name, token, webhook_secret} as JSON")
    rotate = verbs.add_parser("rotate", help="a new token under the same name (the old one stops working at once)")
    rotate.add_argument("name")
    rotate.add_argument("--new-secret", action="store_true", help="also a new webhook signing secret")
    rotate.add_argument("--json", action="store_true", help="print {name, token, webhook_secret} as JSON")
    verbs.add_parser("list", help="every token's name, role, limit, active jobs, and whether revoked")
    revoke = verbs.add_parser("revoke", help="refuse a token from its next request on; its jobs stay (admins see them)")
    revoke.add_argument("name")
    for verb in verbs.choices.values():
        verb.set_defaults(fn=_cmd_token)


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the queue library's own log lines")


def _quiet_unless_verbose(args: argparse.Namespace) -> None:
    """procrastinate logs each defer and blueprint at INFO: noise around the one JSON object a person asked for."""
    if not args.verbose:
        logging.getLogger("procrastinate").setLevel(logging.WARNING)


def _cmd_worker(args: argparse.Namespace) -> int:
    from comfy_runtime.farm.worker import run_worker

    return _guarded(run_worker)


def _cmd_gateway(args: argparse.Namespace) -> int:
    from comfy_runtime.farm.gateway import run_gateway

    return _guarded(lambda: run_gateway(host=args.host, port=args.port))


def _parse_inputs(args: argparse.Namespace) -> dict:
    inputs = _json_object(args.input_json) if args.input_json else {}
    for item in args.inputs:
        name, sep, value = item.partition("=")
        if not sep:
            raise InputRejected(f"-i {item!r}: write NAME=VALUE, e.g. -i prompt='a red fox' -i width=848")
        try:
            inputs[name] = json.loads(value)
        except json.JSONDecodeError:
            inputs[name] = value
    return inputs


def _json_object(text: str) -> dict:
    example = """write one JSON object, e.g. --json '{"prompt": "a red fox", "num_frames": 49}'"""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputRejected(f"--json is not JSON: {error.msg} at line {error.lineno} column {error.colno} "
                            f"(character {error.pos + 1}); {example}") from None
    if not isinstance(value, dict):
        raise InputRejected(f"--json is a JSON {type(value).__name__}, not an object; {example}")
    return value


def _cmd_jobs_submit(args: argparse.Namespace) -> int:
    from comfy_runtime.farm.client import FarmClient

    _quiet_unless_verbose(args)

    def submit() -> int:
        inputs = _parse_inputs(args)  # before connecting: a typo is refused without a database
        with FarmClient() as client:
            client.ensure_schema()
            prediction = client.submit(inputs, prediction_id=args.id, webhook=args.webhook)
            if args.wait:
                prediction = client.wait(prediction["id"], timeout=args.timeout)
            _print(prediction)
            return _exit_code(prediction) if args.wait else 0

    return _guarded(submit)


def _cmd_jobs(args: argparse.Namespace) -> int:
    from comfy_runtime.farm.client import FarmClient
    from comfy_runtime.farm.schema import TERMINAL

    _quiet_unless_verbose(args)

    def act() -> int:
        with FarmClient() as client:
            if args.action == "status":
                _print(client.get(args.prediction_id))
                return 0
            if args.action == "cancel":
                prediction = client.cancel(args.prediction_id)
                _print(prediction)
                if prediction["status"] not in TERMINAL:
                    print(f"canceling: its worker interrupts ComfyUI at the next step; `jobs wait {prediction['id']}` "
                          "prints the end", file=sys.stderr)
                return 0
            prediction = client.wait(args.prediction_id, timeout=args.timeout)
            _print(prediction)
            return _exit_code(prediction)

    return _guarded(act)


def _cmd_token(args: argparse.Namespace) -> int:
    from comfy_runtime.farm import tokens
    from comfy_runtime.farm.config import FarmSettings
    from comfy_runtime.farm.store import JobStore

    def act() -> int:
        store = JobStore(FarmSettings().require_database(), max_size=1).open()
        try:
            store.ensure_schema()
            with store.connection() as conn:
                if args.verb == "list":
                    _print_tokens(tokens.listed(conn))
                    return 0
                if args.verb == "revoke":
                    tokens.revoke(conn, args.name)
                    print(f"revoked {args.name}: refused from its next request on", file=sys.stderr)
                    return 0
                made = (tokens.create(conn, args.name, admin=args.admin, max_active=args.max_active)
                        if args.verb == "create" else tokens.rotate(conn, args.name, new_secret=args.new_secret))
        finally:
            store.close()
        if args.json:
            print(json.dumps({"name": made.name, "token": made.token, "webhook_secret": made.webhook_secret}))
        else:
            print(f"webhook secret: {made.webhook_secret}\ntoken:          {made.token}")  # the token last: `| tail -1`
        print(f"{made.name}: shown once, now; the farm keeps only the token's hash. Send `Authorization: Bearer "
              "<token>`; check webhooks with the secret (docs/farm.md)", file=sys.stderr)
        return 0

    return _guarded(act)


def _print_tokens(rows: list[dict]) -> None:
    header = ("NAME", "ROLE", "MAX-ACTIVE", "ACTIVE", "CREATED", "STATE")
    lines = [header] + [(row["name"], "admin" if row["admin"] else "member", str(row["max_active"] or "-"),
                         str(row["active"]), row["created_at"][:19],
                         f"revoked {row['revoked_at'][:19]}" if row["revoked_at"] else "active") for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _exit_code(prediction: dict) -> int:
    return {"succeeded": 0, "failed": 1, "canceled": 1}.get(prediction["status"], 3)


def _print(prediction: dict) -> None:
    print(json.dumps(prediction, indent=2, default=str))


def _guarded(fn) -> int:
    try:
        return fn()
    except (InputRejected, FarmNotConfigured) as error:  # the fix is in how it was called: a usage error
        print(f"error: {error}", file=sys.stderr)
        return 2
    except HunyuanVideoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
