"""A minimal widget handler: the contract's shape, and little more. It
stores each create or update as the widget's own fields, removes a widget
on delete, and rejects what is not a widget request.
`widget-host check handler.wasm` lists what the full widget contract asks
beyond this (`new-handler` without `--minimal` writes a complete one).

Built into a component by build.sh with componentize-py; `wit_world` is the
module componentize-py generates from wit/handler.wit.
"""
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types


class WitWorld(wit_world.WitWorld):
    def ordering_key(self, request: bytes):
        # Requests about one widget are handled in order; one without a
        # widget id runs alone.
        try:
            widget_id = json.loads(request).get("widgetId")
        except Exception:
            return None
        return widget_id if isinstance(widget_id, str) else None

    def handle(self, request: bytes, ctx: types.Context) -> types.Plan:
        try:
            r = json.loads(request)
        except ValueError as e:
            raise Err(types.Rejection(reason=f"request is not valid JSON: {e}"))
        for field in ("type", "widgetId", "owner"):
            if not isinstance(r.get(field) if isinstance(r, dict) else None, str):
                raise Err(types.Rejection(reason=f"missing required field `{field}`"))
        kind, widget_id, owner = r["type"], r["widgetId"], r["owner"]
        if ctx.destination == types.Destination.TABLE:
            key = widget_id
        else:
            key = "widgets/" + owner.lower().replace(" ", "-") + "/" + widget_id
        if kind == "delete":
            return types.Plan(kind="delete", operations=[types.Operation_Delete(key)])
        if kind not in ("create", "update"):
            raise Err(types.Rejection(reason=f"field `type` must be create, update or delete, not {kind!r}"))
        widget = {"id": widget_id, "owner": owner}
        widget.update({name: r[name] for name in ("label", "description") if isinstance(r.get(name), str)})
        document = json.dumps(widget)
        return types.Plan(kind=kind, operations=[types.Operation_Put(types.Put(key=key, document=document))])
