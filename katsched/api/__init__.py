"""The runner/UI HTTP API (SPEC §4): `create_app` builds it, `ApiServer` / `serve` run it in a thread."""

from katsched.api.app import create_app
from katsched.api.server import ApiServer, serve

__all__ = ["ApiServer", "create_app", "serve"]
