#!/usr/bin/env python3
"""An independent reference model of SPEC.md 1-3, written from the spec
alone, to compute the expected end state of a folder of requests.

    python3 tests/reference/model.py REQUESTS_DIR OUT_DIR [object-store|table]

writes OUT_DIR/widgets/... (object store layout, or OUT_DIR/items/<id> for a
table) and OUT_DIR/dead-letter/<key> for each invalid request. The black-box
tests compare the host's output with files made this way and checked in.
"""
import json, os, re, sys

OWNER = re.compile(r"[A-Za-z ]+")
TYPES = {"create": "create", "update": "update", "delete": "delete",
         "WidgetCreateRequest": "create", "WidgetUpdateRequest": "update",
         "WidgetDeleteRequest": "delete"}
RESERVED = {"id", "owner", "label", "description"}


def valid(raw):
    try:
        r = json.loads(raw.decode("utf-8"))
    except Exception:
        return None
    if not isinstance(r, dict):
        return None
    if not isinstance(r.get("type"), str) or r["type"] not in TYPES:
        return None
    for f in ("requestId", "widgetId", "owner"):
        if not isinstance(r.get(f), str):
            return None
    if r["widgetId"] == "" or "/" in r["widgetId"] or not OWNER.fullmatch(r["owner"]):
        return None
    for f in ("label", "description"):
        if f in r and r[f] is not None and not isinstance(r[f], str):
            return None
    attrs = r.get("otherAttributes", [])
    if not isinstance(attrs, list):
        return None
    for a in attrs:
        if not (isinstance(a, dict) and isinstance(a.get("name"), str) and isinstance(a.get("value"), str)):
            return None
        if a["name"] == "" or a["name"] in RESERVED:
            return None
    return r


def main(requests, out, destination="object-store"):
    store = {}  # key -> widget dict with "attrs" as ordered dict
    dead = []
    for key in sorted(os.listdir(requests)):
        path = os.path.join(requests, key)
        if not os.path.isfile(path) or key.startswith("."):
            continue
        raw = open(path, "rb").read()
        r = valid(raw)
        if r is None:
            dead.append((key, raw))
            continue
        kind = TYPES[r["type"]]
        slug = r["owner"].lower().replace(" ", "-")
        skey = f"widgets/{slug}/{r['widgetId']}" if destination == "object-store" else r["widgetId"]
        if kind == "create":
            w = {"id": r["widgetId"], "owner": r["owner"], "attrs": {}}
            for f in ("label", "description"):
                if r.get(f) is not None:
                    w[f] = r[f]
            for a in r.get("otherAttributes", []):
                w["attrs"][a["name"]] = a["value"]
            store[skey] = w
        elif skey in store:
            if kind == "delete":
                del store[skey]
            else:
                w = store[skey]
                for f in ("label", "description"):
                    v = r.get(f)
                    if v == "":
                        w.pop(f, None)
                    elif v is not None:
                        w[f] = v
                # A name given twice: the last value wins, in the place the
                # name first took (so applying the request twice gives the
                # same result).
                named = {}
                for a in r.get("otherAttributes", []):
                    named[a["name"]] = a["value"]
                for name, value in named.items():
                    if value == "":
                        w["attrs"].pop(name, None)
                    else:
                        w["attrs"][name] = value
    for skey, w in store.items():
        doc = {"id": w["id"], "owner": w["owner"]}
        for f in ("label", "description"):
            if f in w:
                doc[f] = w[f]
        if destination == "object-store":
            if w["attrs"]:
                doc["otherAttributes"] = [{"name": n, "value": v} for n, v in w["attrs"].items()]
            target = os.path.join(out, skey)
        else:
            doc.update(w["attrs"])
            target = os.path.join(out, "items", skey)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
    os.makedirs(os.path.join(out, "dead-letter"), exist_ok=True)
    for key, raw in dead:
        with open(os.path.join(out, "dead-letter", key), "wb") as f:
            f.write(raw)


if __name__ == "__main__":
    main(*sys.argv[1:])
