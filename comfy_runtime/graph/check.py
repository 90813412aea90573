"""Check an API-format graph against ComfyUI's /object_info, without queueing it.

A ComfyUI server has no validate-only endpoint: POST /prompt validates and queues in one step. The
remote backend's validate() uses this instead, with the rules and messages of ComfyUI 0.3.75's
execution.validate_inputs for what /object_info describes (node exists, required inputs, links and
their types, combo choices, min/max). A node's own VALIDATE_INPUTS hook is not visible from outside;
the server runs it, and every other rule again, when the graph is submitted.
"""

from __future__ import annotations

from typing import Any

from comfy_runtime.graph.types import Graph, is_link

Reason = dict[str, Any]


def check_graph(graph: Graph, object_info: dict[str, dict[str, Any]]) -> tuple[Reason | None, dict[str, Any]]:
    """(error, node_errors) shaped like the body of ComfyUI's 400 answer to /prompt; (None, {}) when valid."""
    outputs = []
    for node_id, node in graph.items():
        class_type = node.get("class_type") if isinstance(node, dict) else None
        if class_type is None:
            return _prompt_error("invalid_prompt", "Cannot execute because a node is missing the class_type property.", f"Node ID '#{node_id}'"), {}
        info = object_info.get(class_type)
        if info is None:
            return _prompt_error("invalid_prompt", f"Cannot execute because node {class_type} does not exist.", f"Node ID '#{node_id}'"), {}
        if info.get("output_node"):
            outputs.append(node_id)
    if not outputs:
        return _prompt_error("prompt_no_outputs", "Prompt has no outputs", ""), {}

    node_errors: dict[str, Any] = {}
    seen: set[str] = set()
    pending = list(outputs)
    while pending:  # only what an output depends on runs, so only that is checked (as ComfyUI does)
        node_id = pending.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        reasons, upstream = _check_node(graph, node_id, object_info)
        pending.extend(upstream)
        if reasons:
            node_errors[node_id] = {"errors": reasons, "dependent_outputs": outputs, "class_type": graph[node_id]["class_type"]}
    if not node_errors:
        return None, {}
    details = "\n".join(f"{r['message']}: {r['details']}" for info in node_errors.values() for r in info["errors"])
    return _prompt_error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details), node_errors


def _check_node(graph: Graph, node_id: str, object_info: dict[str, dict[str, Any]]) -> tuple[list[Reason], list[str]]:
    node = graph[node_id]
    inputs = node.get("inputs", {})
    declared = object_info[node["class_type"]].get("input", {})
    reasons: list[Reason] = []
    upstream: list[str] = []
    for category in ("required", "optional"):
        for name, spec in (declared.get(category) or {}).items():
            if name not in inputs:
                if category == "required":
                    reasons.append(_reason("required_input_missing", "Required input is missing", name))
                continue
            kind, options = _kind_and_options(spec)
            value = inputs[name]
            if is_link(value):
                reason = _check_link(graph, name, value, kind, object_info)
                if reason is None:
                    upstream.append(str(value[0]))
                else:
                    reasons.append(reason)
            else:
                reason = _check_value(name, value, kind, options)
                if reason is not None:
                    reasons.append(reason)
    return reasons, upstream


def _check_link(graph: Graph, name: str, link: list, kind: Any, object_info: dict[str, dict[str, Any]]) -> Reason | None:
    if len(link) != 2:
        return _reason("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]", name)
    source = graph.get(str(link[0]))
    if source is None:
        return _reason("bad_linked_input", "Linked node does not exist", f"{name}: node {link[0]}")
    returns = object_info[source["class_type"]].get("output", [])
    if not isinstance(link[1], int) or not 0 <= link[1] < len(returns):
        return _reason("bad_linked_input", "Linked output slot does not exist", f"{name}: slot {link[1]} of node {link[0]}")
    received = returns[link[1]]
    expected = "COMBO" if isinstance(kind, list) else kind
    if not _types_fit(received, expected):
        return _reason(
            "return_type_mismatch", "Return type mismatch between linked nodes",
            f"{name}, received_type({received}) mismatch input_type({expected})",
        )
    return None


def _check_value(name: str, value: Any, kind: Any, options: dict[str, Any]) -> Reason | None:
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    converters = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
    if isinstance(kind, str) and kind in converters:
        try:
            value = converters[kind](value)
        except (TypeError, ValueError) as error:
            return _reason("invalid_input_type", f"Failed to convert an input value to a {kind} value", f"{name}, {value}, {error}")
    if "min" in options and value < options["min"]:
        return _reason("value_smaller_than_min", f"Value {value} smaller than min of {options['min']}", name)
    if "max" in options and value > options["max"]:
        return _reason("value_bigger_than_max", f"Value {value} bigger than max of {options['max']}", name)
    choices = kind if isinstance(kind, list) else options.get("options") if kind == "COMBO" else None
    if choices is not None and value not in choices:
        listed = f"(list of length {len(choices)})" if len(choices) > 20 else str(choices)
        return _reason("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {listed}")
    return None


def _kind_and_options(spec: Any) -> tuple[Any, dict[str, Any]]:
    kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    options = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
    return kind, options


def _types_fit(received: Any, expected: Any) -> bool:
    if received == expected or "*" in (received, expected):
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in expected.split(",")})


def _reason(kind: str, message: str, details: str) -> Reason:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def _prompt_error(kind: str, message: str, details: str) -> Reason:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}
