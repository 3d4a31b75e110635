"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from hub.api.context import clock_var, request_id_var
from hub.domain.principal import Principal
from hub.domain.vocabulary import Vocabulary
from hub.runtime import Runtime
from hub.services.context import Actor, utcnow


async def get_runtime(request: Request) -> Runtime:  # async: no thread hop per request
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_session(runtime: Annotated[Runtime, Depends(get_runtime)]) -> AsyncIterator[AsyncSession]:
    async with runtime.sessions() as session:
        yield session


async def get_flows_session(runtime: Annotated[Runtime, Depends(get_runtime)]) -> AsyncIterator[AsyncSession]:
    """A session for coordinators' flow reads: on the replica when one is configured (read-only)."""
    async with runtime.flows_sessions() as session:
        yield session


async def get_vocabulary(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Vocabulary:
    return runtime.vocabulary


Session = Annotated[AsyncSession, Depends(get_session)]
FlowsSession = Annotated[AsyncSession, Depends(get_flows_session)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
VocabularyDep = Annotated[Vocabulary, Depends(get_vocabulary)]


def actor_for(principal: Principal) -> Actor:
    """Who acts in this request, at the time the hub sees (the runtime's clock, :class:`hub.runtime.Runtime`)."""
    clock = clock_var.get()
    return Actor(principal=principal, request_id=request_id_var.get(), now=utcnow() if clock is None else clock())
