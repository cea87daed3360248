"""The HTTP surface: routes, request/response schemas, and the one error renderer."""
