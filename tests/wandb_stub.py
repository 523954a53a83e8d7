"""A stub W&B server on 127.0.0.1: a real HTTP GraphQL endpoint that answers the few operations
the Report code sends (viewer, projects, project id, report save, a run and its summary), so
`wandb.Api()` runs unmodified against it. Test code, not part of dfablate."""

from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ENTITY = "team"
PROJECT = "dfablate"
VIEW_ID = "VmlldzoxMjM0"
_OPERATION = re.compile(r"(?:query|mutation)\s+(\w+)")


class StubWandb:
    """What the stub received: every GraphQL operation and the saved reports and summaries."""

    def __init__(self) -> None:
        self.operations: list[str] = []
        self.saved_views: list[dict[str, Any]] = []
        self.summaries: dict[str, dict[str, Any]] = {}
        self.run_ids: dict[str, str] = {}  # run name -> storage id

    def answer(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        match = _OPERATION.search(query)
        name = match.group(1) if match else "?"
        self.operations.append(name)
        if "viewer" in query and "upsertView" not in query:
            return {"viewer": {"id": "VXNlcjox", "entity": ENTITY, "username": "u",
                               "email": None, "flags": "{}", "admin": False,
                               "teams": {"edges": []}}}  # fmt: skip
        if name == "GetProjects" or "models(" in query:
            node = {"__typename": "Project", "id": "UHJvamVjdDox", "name": PROJECT,
                    "entityName": ENTITY, "createdAt": "2026-01-01T00:00:00",
                    "isBenchmark": False, "user": None}  # fmt: skip
            return {"models": {"edges": [{"node": node, "cursor": "c"}],
                               "pageInfo": {"endCursor": "c", "hasNextPage": False}}}  # fmt: skip
        if name == "ProjectInternalId":
            return {"project": {"internalId": "UHJvamVjdDox"}}
        if "upsertView" in query:
            self.saved_views.append(variables)
            view = {"id": VIEW_ID, "type": variables["type"], "name": variables["name"],
                    "displayName": variables["displayName"],
                    "description": variables["description"],
                    "project": {"name": variables["projectName"],
                                "entityName": variables["entityName"]},
                    "spec": variables["spec"]}  # fmt: skip
            return {"upsertView": {"view": view, "inserted": True}}
        if name == "Run":
            storage = self.run_ids.setdefault(variables["name"], f"UnVuOi{len(self.run_ids)}")
            run = {"id": storage, "projectId": "1", "name": variables["name"], "tags": [],
                   "displayName": variables["name"], "sweepName": None, "state": "finished",
                   "config": "{}", "group": None, "jobType": "compare", "commit": None,
                   "readOnly": False, "createdAt": "2026-01-01T00:00:00",
                   "heartbeatAt": "2026-01-01T00:00:00", "description": None, "notes": None,
                   "systemMetrics": "{}", "summaryMetrics": "{}", "historyLineCount": 0,
                   "user": {"name": "u", "username": "u"}, "historyKeys": None}  # fmt: skip
            return {"project": {"run": run}}
        if name == "UpsertBucket":
            self.summaries[variables["id"]] = json.loads(variables["summaryMetrics"])
            return {"upsertBucket": {"bucket": {"id": variables["id"]}}}
        raise AssertionError(f"the stub W&B server got an unexpected operation: {query[:200]}")


@contextmanager
def stub_wandb_server():
    """(url, StubWandb) of a server running on 127.0.0.1 for the `with` block."""
    stub = StubWandb()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                body = json.loads(raw)
            except ValueError:  # not GraphQL (the SDK's own telemetry): accepted, ignored
                body = None
            try:
                payload = (
                    {"data": stub.answer(body.get("query", ""), body.get("variables") or {})}
                    if isinstance(body, dict) and self.path.endswith("/graphql")
                    else {}
                )
            except AssertionError as exc:
                payload = {"errors": [{"message": str(exc)}]}
            out = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", stub
    finally:
        server.shutdown()
        server.server_close()
