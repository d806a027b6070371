"""The widget handler in Python: SPEC.md 1-3, as the built-in Rust handler,
with one variation: it also refuses labels longer than MAX_LABEL characters.

Built into a component by build.sh with componentize-py; `wit_world` is the
module componentize-py generates from wit/handler.wit.
"""
import hashlib
import json
import re

import wit_world
from componentize_py_types import Err
from wit_world.imports import log, store, types

# The variation: a longer label is refused.
MAX_LABEL = 64

OWNER = re.compile(r"[A-Za-z ]+")
KINDS = {
    "create": "create", "update": "update", "delete": "delete",
    "WidgetCreateRequest": "create", "WidgetUpdateRequest": "update", "WidgetDeleteRequest": "delete",
}
RESERVED = ("id", "owner", "label", "description")
OWN_FIELDS = ("id", "owner", "label", "description")


class Invalid(Exception):
    pass


def parse(raw: bytes) -> dict:
    """Validates a request and returns it with `kind` and a list `attrs`."""
    if not raw.strip():
        raise Invalid("request is empty")
    try:
        request = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Invalid(f"request is not valid JSON: {e}")
    if not isinstance(request, dict):
        raise Invalid("request must be a JSON object")
    for field in ("type", "requestId", "widgetId", "owner"):
        if field not in request:
            raise Invalid(f"missing required field `{field}`")
        if not isinstance(request[field], str):
            raise Invalid(f"field `{field}` must be a string")
    if request["type"] not in KINDS:
        raise Invalid(f"field `type` must be create, update or delete, not {request['type']!r}")
    if request["widgetId"] == "" or "/" in request["widgetId"]:
        raise Invalid("field `widgetId` must be non-empty and without '/'")
    if not OWNER.fullmatch(request["owner"]):
        raise Invalid("field `owner` must be letters and spaces only")
    for field in ("label", "description"):
        if request.get(field) is not None and not isinstance(request[field], str):
            raise Invalid(f"field `{field}` must be a string or null")
    if len(request.get("label") or "") > MAX_LABEL:
        raise Invalid(f"field `label` is longer than {MAX_LABEL} characters")
    attrs = request.get("otherAttributes", [])
    if not isinstance(attrs, list):
        raise Invalid("field `otherAttributes` must be an array")
    pairs = []
    for i, attr in enumerate(attrs):
        if not isinstance(attr, dict):
            raise Invalid(f"otherAttributes[{i}] must be an object")
        for part in ("name", "value"):
            if not isinstance(attr.get(part), str):
                raise Invalid(f"otherAttributes[{i}].{part} must be a string")
        if attr["name"] == "":
            raise Invalid(f"otherAttributes[{i}].name must not be empty")
        if attr["name"] in RESERVED:
            raise Invalid(f"otherAttributes[{i}].name {attr['name']!r} is reserved")
        pairs.append((attr["name"], attr["value"]))
    request["kind"] = KINDS[request["type"]]
    request["attrs"] = pairs
    return request


def read_widget(text: str, table: bool) -> dict:
    """A stored widget as {own fields..., "attrs": {name: value}, "extra": {...}}."""
    doc = json.loads(text)
    widget = {"attrs": {}, "extra": {}}
    for name, value in doc.items():
        if name in OWN_FIELDS:
            widget[name] = value
        elif table:
            widget["attrs"][name] = value
        elif name == "otherAttributes":
            for pair in value or []:
                widget["attrs"][pair["name"]] = pair["value"]
        else:
            widget["extra"][name] = value
    return widget


def write_widget(widget: dict, table: bool) -> str:
    doc = {name: widget[name] for name in OWN_FIELDS if widget.get(name) is not None}
    if table:
        doc.update(widget["attrs"])
    elif widget["attrs"]:
        doc["otherAttributes"] = [{"name": n, "value": v} for n, v in widget["attrs"].items()]
    for name, value in widget["extra"].items():
        doc.setdefault(name, value)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


class WitWorld(wit_world.WitWorld):
    def ordering_key(self, request: bytes):
        # A request without a string widgetId is rejected by handle and
        # touches nothing: it gets a key of its own rather than none, so
        # that it never waits behind every widget in flight.
        try:
            widget_id = json.loads(request).get("widgetId")
        except Exception:
            widget_id = None
        if isinstance(widget_id, str):
            return widget_id
        return "!no-widget-id:" + hashlib.sha256(request).hexdigest()[:16]

    def handle(self, request: bytes, ctx: types.Context) -> types.Plan:
        try:
            r = parse(request)
        except Invalid as e:
            raise Err(types.Rejection(reason=str(e)))
        table = ctx.destination == types.Destination.TABLE
        slug = r["owner"].lower().replace(" ", "-")
        key = r["widgetId"] if table else f"widgets/{slug}/{r['widgetId']}"
        if r["kind"] == "create":
            widget = {"id": r["widgetId"], "owner": r["owner"], "label": r.get("label"),
                      "description": r.get("description"), "attrs": dict(r["attrs"]), "extra": {}}
            return put(r["kind"], key, widget, table)
        try:
            stored = store.get(key)
        except Err as e:
            raise Err(types.Rejection(reason=f"cannot read widget at {key}: {e.value}"))
        if stored is None:
            log.log(log.Level.WARN, f"{r['kind']} request {r['requestId']} ({ctx.key}): "
                                    f"widget {r['widgetId']} not found at {key}; nothing changed")
            return types.Plan(kind=r["kind"], operations=[])
        if r["kind"] == "delete":
            return types.Plan(kind="delete", operations=[types.Operation_Delete(key)])
        widget = read_widget(stored, table)
        for field in ("label", "description"):
            change = r.get(field)
            if change == "":
                widget.pop(field, None)
            elif change is not None:
                widget[field] = change
        for name, value in r["attrs"]:
            if value == "":
                widget["attrs"].pop(name, None)
            else:
                widget["attrs"][name] = value
        return put("update", key, widget, table)


def put(kind: str, key: str, widget: dict, table: bool) -> types.Plan:
    document = write_widget(widget, table)
    return types.Plan(kind=kind, operations=[types.Operation_Put(types.Put(key=key, document=document))])
