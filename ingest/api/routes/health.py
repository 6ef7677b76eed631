"""Liveness, for a load balancer or a probe: no token needed."""

from fastapi import APIRouter

from ingest.api.models import Health


def routes() -> APIRouter:
    router = APIRouter(tags=["service"])

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok")

    return router
