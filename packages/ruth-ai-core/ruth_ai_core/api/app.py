"""The routes: discovery for the frontend and Ruth AI Core (open), and admin changes (bearer token).

Read routes:

- ``GET /v1/health``: the database answers (200) or not (503)
- ``GET /v1/models?enabled=&task=``, ``GET /v1/models/{model_id}``
- ``GET /v1/assignments?node=&camera=``, ``GET /v1/cameras/{camera_id}/assignments``
- ``GET /v1/nodes``, ``GET /v1/nodes/{node}/assignments``

Admin routes (``Authorization: Bearer TOKEN``; see ``auth``):

- ``POST /v1/models``: import a model.yaml document (as JSON)
- ``POST /v1/models/{model_id}/enable`` and ``/disable``
- ``PUT /v1/assignments/{camera_id}/{model_id}``, ``DELETE`` the same
- ``PUT /v1/nodes/{node}/assignments``: replace a node's whole set

Every write goes through the same stores as the CLI, so it is checked the
same way (fail closed: 409 for an unknown or disabled model, or a camera on
another node) and bumps the change revision that the cores follow. A database
that does not answer is 503. The OpenAPI document is at ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ai_model_container.contract.model_config import ModelConfig
from ai_model_container.contract.schema import IDENTIFIER_PATTERN
from ruth_ai_core import __version__

from ..assignments import Assignment
from ..registry import ModelRegistry
from ..storage.assignment_store import NODE_PATTERN, AssignmentStore, PlacedAssignment, WriteResult
from ..storage.database import Database
from ..storage.errors import AssignmentConflict, AssignmentRejected, DatabaseUnavailable, InvalidDocument
from ..storage.registry_store import RegisteredModel, RegistryStore
from ..storage.sql import revision
from .auth import admin_guard
from .schemas import (
    AssignmentIn,
    AssignmentOut,
    CameraAssignments,
    DatabaseHealth,
    Health,
    ModelDetail,
    ModelSummary,
    NodeAssignmentsIn,
    NodeAssignmentsOut,
    NodeSummaryOut,
    PairOut,
    Problem,
    WriteResultOut,
)

ModelIdPath = Path(pattern=IDENTIFIER_PATTERN, description="Model identifier.")
CameraIdPath = Path(pattern=IDENTIFIER_PATTERN, description="Camera identifier.")
NodePath = Path(pattern=NODE_PATTERN, description="Node name.")

UNAVAILABLE = {503: {"model": Problem, "description": "The database does not answer."}}
NOT_FOUND = {404: {"model": Problem, "description": "No such model, camera or assignment."}}
ADMIN = {401: {"model": Problem, "description": "No admin token given."},
         403: {"model": Problem, "description": "Wrong admin token, or the admin API is disabled."}}
REFUSED = {409: {"model": Problem, "description": "Refused: the model is unknown or disabled (fail closed), "
                                                  "or the camera runs on another node."}}


def create_app(db: Database, admin_token: Optional[str] = None) -> FastAPI:
    """The ASGI app on ``db``; admin routes accept only ``admin_token`` (none: admin disabled)."""
    app = FastAPI(title="Ruth AI Core discovery API", version=__version__,
                  description="The model registry and the camera assignments of Ruth AI Core. Read routes are "
                              "open; admin routes need the bearer token the server was started with.")
    registry = ModelRegistry(db)
    models = RegistryStore(db)
    assignments = AssignmentStore(db)
    admin = [Depends(admin_guard(admin_token))]

    @app.exception_handler(DatabaseUnavailable)
    def _unavailable(_request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(InvalidDocument)
    def _invalid(_request: Request, exc: InvalidDocument) -> JSONResponse:
        return _unprocessable(str(exc))

    # -- read -----------------------------------------------------------------------------

    @app.get("/v1/health", response_model=Health, tags=["read"], responses={503: {"model": Health}})
    def health() -> Any:
        """Whether the database answers, its schema revision and change revision."""
        from ..storage.migrate import current_revision

        try:
            state = DatabaseHealth(backend=db.backend, reachable=True, schema_revision=current_revision(db),  # type: ignore[arg-type]
                                   change_revision=revision(db))
        except DatabaseUnavailable as exc:
            body = Health(status="unavailable", database=DatabaseHealth(backend=db.backend, reachable=False,  # type: ignore[arg-type]
                                                                        error=str(exc)))
            return JSONResponse(body.model_dump(mode="json"), status_code=503)
        return Health(status="ok", database=state)

    @app.get("/v1/models", response_model=list[ModelSummary], tags=["read"], responses=UNAVAILABLE)
    def list_models(enabled: Optional[bool] = Query(None, description="Only enabled (true) or disabled (false)."),
                    task: Optional[str] = Query(None, pattern=IDENTIFIER_PATTERN,
                                                description="Only models whose current version declares it.")) -> Any:
        """Registered models, by id."""
        return [_summary(entry) for entry in models.list(enabled=enabled, task=task)]

    @app.get("/v1/models/{model_id}", response_model=ModelDetail, tags=["read"], responses={**NOT_FOUND, **UNAVAILABLE})
    def get_model(model_id: str = ModelIdPath) -> Any:
        """One model: flag, versions, and the current version's metadata."""
        return _detail(_model_or_404(models, model_id))

    @app.get("/v1/assignments", response_model=list[AssignmentOut], tags=["read"], responses=UNAVAILABLE)
    def list_assignments(node: Optional[str] = Query(None, pattern=NODE_PATTERN),
                         camera: Optional[str] = Query(None, pattern=IDENTIFIER_PATTERN)) -> Any:
        """Assignments, optionally of one node or camera; ``runnable`` says whether the registry allows each now."""
        return _assignments_out(registry, assignments.list(node=node, camera_id=camera))

    @app.get("/v1/cameras/{camera_id}/assignments", response_model=CameraAssignments, tags=["read"],
             responses={**NOT_FOUND, **UNAVAILABLE})
    def camera_assignments(camera_id: str = CameraIdPath) -> Any:
        """The node that runs a camera and its assignments."""
        node = assignments.camera_node(camera_id)
        if node is None:
            raise HTTPException(404, f"camera {camera_id!r} is not known")
        return CameraAssignments(camera_id=camera_id, node=node,
                                 assignments=_assignments_out(registry, assignments.list(camera_id=camera_id)))

    @app.get("/v1/nodes", response_model=list[NodeSummaryOut], tags=["read"], responses=UNAVAILABLE)
    def list_nodes() -> Any:
        """Nodes that run cameras, with their counts."""
        return [NodeSummaryOut(node=n.node, cameras=n.cameras, assignments=n.assignments) for n in assignments.nodes()]

    @app.get("/v1/nodes/{node}/assignments", response_model=NodeAssignmentsOut, tags=["read"], responses=UNAVAILABLE)
    def node_assignments(node: str = NodePath) -> Any:
        """Everything a node's core is asked to run (empty for a node with no cameras)."""
        return NodeAssignmentsOut(node=node, assignments=_assignments_out(registry, assignments.list(node=node)))

    # -- admin ----------------------------------------------------------------------------

    @app.post("/v1/models", response_model=ModelDetail, status_code=201, tags=["admin"], dependencies=admin,
              responses={**ADMIN, **UNAVAILABLE})
    def import_model(config: ModelConfig,
                     enabled: Optional[bool] = Query(None, description="New models start enabled unless false; "
                                                                       "re-imports keep the flag unless given.")) -> Any:
        """Import a model.yaml document (as JSON): records the version and makes it current."""
        return _detail(registry.add(config, "api", enabled))

    @app.post("/v1/models/{model_id}/enable", response_model=ModelDetail, tags=["admin"], dependencies=admin,
              responses={**ADMIN, **NOT_FOUND, **UNAVAILABLE})
    def enable_model(model_id: str = ModelIdPath) -> Any:
        """Allow assignments to the model; cores start what was assigned to it."""
        return _detail(_flag_or_404(models, model_id, True))

    @app.post("/v1/models/{model_id}/disable", response_model=ModelDetail, tags=["admin"], dependencies=admin,
              responses={**ADMIN, **NOT_FOUND, **UNAVAILABLE})
    def disable_model(model_id: str = ModelIdPath) -> Any:
        """Refuse assignments to the model; cores stop its subscriptions."""
        return _detail(_flag_or_404(models, model_id, False))

    @app.put("/v1/assignments/{camera_id}/{model_id}", response_model=AssignmentOut, tags=["admin"],
             dependencies=admin, responses={**ADMIN, **REFUSED, **UNAVAILABLE})
    def put_assignment(body: AssignmentIn, camera_id: str = CameraIdPath, model_id: str = ModelIdPath) -> Any:
        """Add or change one assignment (checked against the registry)."""
        assignment = Assignment(camera=camera_id, model=model_id, fps=body.fps, max_in_flight=body.max_in_flight,
                                config=body.config)
        placed = _refusal_to_409(lambda: assignments.put(assignment, body.node))
        return _assignments_out(registry, [placed])[0]

    @app.delete("/v1/assignments/{camera_id}/{model_id}", status_code=204, response_class=Response, tags=["admin"],
                dependencies=admin, responses={**ADMIN, **NOT_FOUND, **UNAVAILABLE})
    def delete_assignment(camera_id: str = CameraIdPath, model_id: str = ModelIdPath) -> Response:
        """Remove one assignment."""
        if not assignments.remove(camera_id, model_id):
            raise HTTPException(404, f"{camera_id} is not assigned to {model_id}")
        return Response(status_code=204)

    @app.put("/v1/nodes/{node}/assignments", response_model=WriteResultOut, tags=["admin"], dependencies=admin,
             responses={**ADMIN, **REFUSED, **UNAVAILABLE})
    def replace_node_assignments(body: NodeAssignmentsIn, node: str = NodePath) -> Any:
        """Make the node's assignments exactly these, all or nothing."""
        try:
            wanted = [Assignment(**item.model_dump()) for item in body.assignments]
            result: WriteResult = _refusal_to_409(lambda: assignments.import_for_node(node, wanted, replace=True))
        except ValidationError as exc:
            return _unprocessable(str(exc))
        pairs = lambda keys: [PairOut(camera_id=c, model_id=m) for c, m in keys]  # noqa: E731
        return WriteResultOut(added=pairs(result.added), changed=pairs(result.changed),
                              removed=pairs(result.removed), unchanged=pairs(result.unchanged))

    return app


def _unprocessable(message: str) -> JSONResponse:
    """422 in FastAPI's own validation-error shape, as the document declares for every route."""
    return JSONResponse({"detail": [{"loc": ["body"], "msg": message, "type": "value_error"}]}, status_code=422)


def _summary(entry: RegisteredModel) -> ModelSummary:
    return ModelSummary(model_id=entry.model_id, name=entry.name, enabled=entry.enabled,
                        current_version=entry.current_version, tasks=entry.tasks, updated_at=entry.updated_at)


def _detail(entry: RegisteredModel) -> ModelDetail:
    return ModelDetail(**_summary(entry).model_dump(), versions=entry.versions, source=entry.source,
                       metadata=entry.metadata)


def _model_or_404(models: RegistryStore, model_id: str) -> RegisteredModel:
    entry = models.get(model_id)
    if entry is None:
        raise HTTPException(404, f"model {model_id!r} is not in the registry")
    return entry


def _flag_or_404(models: RegistryStore, model_id: str, enabled: bool) -> RegisteredModel:
    entry = models.set_enabled(model_id, enabled)
    if entry is None:
        raise HTTPException(404, f"model {model_id!r} is not in the registry")
    return entry


def _refusal_to_409(write: Any) -> Any:
    try:
        return write()
    except (AssignmentRejected, AssignmentConflict) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


def _assignments_out(registry: ModelRegistry, placed: list[PlacedAssignment]) -> list[AssignmentOut]:
    reasons = registry.rejections(p.assignment.model for p in placed)
    return [AssignmentOut(camera_id=p.assignment.camera, model_id=p.assignment.model, node=p.node,
                          fps=p.assignment.fps, max_in_flight=p.assignment.max_in_flight, config=p.assignment.config,
                          runnable=reasons[p.assignment.model] is None, reason=reasons[p.assignment.model],
                          updated_at=p.updated_at)
            for p in placed]
