"""The GraphQL context: the runtime, and the caller when a bearer token came with the request."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from strawberry.fastapi import BaseContext

from hub.domain.errors import Unauthenticated
from hub.domain.principal import Principal
from hub.runtime import Runtime


class Context(BaseContext):
    def __init__(self, request: Request) -> None:
        super().__init__()
        self.http_request = request
        self.runtime: Runtime = request.app.state.runtime
        self._principal: Principal | None = None

    async def principal(self) -> Principal:
        """The verified caller; raises Unauthenticated when the request carries no valid token."""
        if self._principal is None:
            header = self.http_request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise Unauthenticated("This field needs a bearer token (Authorization: Bearer <token>).")
            verifier = self.http_request.app.state.verifier
            self._principal = await verifier.verify(token.strip(), scope=self.http_request.scope)
        return self._principal


async def get_context(request: Request) -> Context:
    return Context(request)


JSONValue = Any
