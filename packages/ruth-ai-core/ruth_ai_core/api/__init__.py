"""The discovery API of Ruth AI Core over HTTP/JSON (FastAPI on uvicorn), served by ``ruth-ai api``.

- ``schemas``: the request and response documents (what /openapi.json describes)
- ``auth``: the admin bearer token
- ``app``: the routes, read-only ones open, admin ones behind the token
- ``server``: the listen address and uvicorn

Imported only by the ``ruth-ai api`` command and its tests: Core's data path
never loads FastAPI, and this package never loads Core's data path.
"""
