"""GraphQL at ``/graphql`` (Strawberry)."""

from hub.api.graphql.router import graphql_router

__all__ = ["graphql_router"]
