"""The HTTP RPC: the aiohttp server and its SSE events, the answer models (pydantic, also the
OpenAPI document), paging cursors, rate limits, TLS, and `NodeApi`, the seam the runtime implements.
"""
