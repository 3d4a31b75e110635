"""GraphQL at ``/graphql`` (Strawberry)."""

from hub.api.graphql.schema import graphql_router

__all__ = ["graphql_router"]
