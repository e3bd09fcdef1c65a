"""Web views of jobs, sessions and engine status, answered by the key's owner.

GET /jobs?status=&kind=, GET /jobs/{id}, POST /jobs, POST /jobs/{id}/cancel,
GET /sessions/{id}, GET /sessions/{id}/export, GET /engines/{id}/status.
Mutating calls need `Authorization: Bearer <ENGINESTREAM_API_TOKEN>` (401 without,
403 wrong); reads too when ENGINESTREAM_API_TOKEN_FOR_READS is true (streams.web.auth).
Bad input answers 4xx with a JSON error; during recovery, 503 with Retry-After.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from streams.agents.keyed_state import KeyedState
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.jobs import Job, JobKind, JobStatus, new_job_id
from streams.domain.sessions import Session
from streams.web.auth import check_token
from streams.web.health import recovering, unavailable
from streams.web.peers import PeerUnavailable, ask_owner, ask_peers

Handler = Callable[[], Awaitable[Response]]


def error(view: View, status: int, message: str, **extra: Any) -> Response:
    """A JSON error answer."""
    return view.json({"error": message, **extra}, status=status)


def register_state_views(
    app: faust.App,
    settings: Settings,
    names: TopicNames,
    jobs: KeyedState,
    sessions: KeyedState,
    engines: KeyedState,
) -> None:
    """Add the views to `app`."""

    async def owned(view: View, request: Request, state: KeyedState, key: str,
                    answer: Handler) -> Response:
        """Answer here if this worker owns `key`, else forward to the owner."""
        if recovering(app):
            return unavailable(view)
        try:
            forwarded = await ask_owner(app, state.table.name, key, view, request)
        except PeerUnavailable as exc:
            return unavailable(view, str(exc))
        return forwarded if forwarded is not None else await answer()

    async def publish_command(job_id: str, command: dict[str, Any]) -> None:
        await app.producer.send(
            names.raw["ml_job_command"], job_id.encode(), orjson.dumps(command), None, None, None
        )

    @app.page("/jobs")
    class Jobs(View):
        async def get(self, request: Request) -> Response:
            if recovering(app):
                return unavailable(self)
            status = request.query.get("status")
            kind = request.query.get("kind")
            if status is not None and status not in set(JobStatus):
                choices = sorted(s.value for s in JobStatus)
                return error(self, 400, f"status must be one of {choices}")
            if kind is not None and kind not in set(JobKind):
                return error(self, 400, f"kind must be one of {sorted(k.value for k in JobKind)}")
            found = jobs.records()
            if request.query.get("local") != "1":
                try:
                    for answer in await ask_peers(app, "/jobs?local=1", request):
                        found.extend(answer["jobs"])
                except PeerUnavailable as exc:
                    return unavailable(self, str(exc))
            selected = [
                j for j in found
                if (status is None or j["status"] == status) and (kind is None or j["kind"] == kind)
            ]
            selected.sort(key=lambda j: (j["created_at"], j["id"]))
            return self.json({"jobs": selected, "count": len(selected)})

        async def post(self, request: Request) -> Response:
            refused = check_token(request, settings.api_token)
            if refused:
                return error(self, *refused)
            try:
                body = orjson.loads(await request.read())
            except orjson.JSONDecodeError as exc:
                return error(self, 400, f"body is not JSON: {exc}")
            if not isinstance(body, dict):
                return error(self, 400, "body must be a JSON object")
            kind, target = body.get("kind"), body.get("target")
            if kind not in set(JobKind):
                return error(self, 400, f"kind must be one of {sorted(k.value for k in JobKind)}")
            if not isinstance(target, str) or not target:
                return error(self, 400, "target must be a non-empty string")
            spec = body.get("spec", {})
            spec_text = spec if isinstance(spec, str) else orjson.dumps(spec).decode()
            job_id = new_job_id()
            command = {"command": "submit", "job_id": job_id, "timestamp": time.time(),
                       "kind": kind, "target": target, "spec": spec_text}
            await publish_command(job_id, command)
            return self.json({"id": job_id, "status": "submitted"}, status=202)

    @app.page("/jobs/{job_id}")
    class OneJob(View):
        async def get(self, request: Request, job_id: str) -> Response:
            async def answer() -> Response:
                record = jobs.get(job_id)
                if record is None:
                    return error(self, 404, f"no job {job_id!r}")
                return self.json(record)

            return await owned(self, request, jobs, job_id, answer)

    @app.page("/jobs/{job_id}/cancel")
    class CancelJob(View):
        async def post(self, request: Request, job_id: str) -> Response:
            refused = check_token(request, settings.api_token)
            if refused:
                return error(self, *refused)

            async def answer() -> Response:
                record = jobs.get(job_id)
                if record is None:
                    return error(self, 404, f"no job {job_id!r}")
                job = Job.from_json(record)
                if job.is_terminal:
                    return error(self, 409, f"job is {job.status}: terminal states never change",
                                 rule="terminal_is_final")
                await publish_command(
                    job_id, {"command": "cancel", "job_id": job_id, "timestamp": time.time()}
                )
                return self.json({"id": job_id, "status": "cancelling"}, status=202)

            return await owned(self, request, jobs, job_id, answer)

    @app.page("/sessions/{session_id}")
    class OneSession(View):
        async def get(self, request: Request, session_id: str) -> Response:
            async def answer() -> Response:
                record = sessions.get(session_id)
                if record is None:
                    return error(self, 404, f"no session {session_id!r}")
                return self.json(record)

            return await owned(self, request, sessions, session_id, answer)

    @app.page("/sessions/{session_id}/export")
    class SessionExport(View):
        async def get(self, request: Request, session_id: str) -> Response:
            async def answer() -> Response:
                record = sessions.get(session_id)
                if record is None:
                    return error(self, 404, f"no session {session_id!r}")
                return self.json(Session.from_json(record).export())

            return await owned(self, request, sessions, session_id, answer)

    @app.page("/engines/{engine_id}/status")
    class EngineStatusView(View):
        async def get(self, request: Request, engine_id: str) -> Response:
            async def answer() -> Response:
                record = engines.get(engine_id)
                if record is None:
                    return error(self, 404, f"no engine {engine_id!r}")
                return self.json(record)

            return await owned(self, request, engines, engine_id, answer)
