"""What the plugin's routes share at the HTTP edge: query parameters, the GET-only guard, JSON responses and the
static files of the tab (the built frontend in `tb_matmul_explainer/static/`).

Errors are TensorBoard's `errors.PublicError`s, answered by TensorBoard's error middleware; responses go through
`http_util.Respond` (a bare werkzeug response triggers TensorBoard's security warnings).
"""

import json
import mimetypes
import os

from tensorboard import errors
from tensorboard.backend import http_util

from tb_matmul_explainer import metadata

_MAX_STEP = 2**63 - 1
STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
ROUTE_PREFIX = "/data/plugin/%s/" % metadata.PLUGIN_NAME
_CONTENT_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".txt": "text/plain",
    ".wasm": "application/wasm",
}
_JSON = "application/json; charset=utf-8"


# ------------------------------------------------------------------------------------------------- parameters


def args(request):
    """The query parameters; a 400 (not a 500) when the raw query string is not UTF-8 (werkzeug decodes strictly)."""
    try:
        return request.args
    except UnicodeDecodeError:
        raise errors.InvalidArgumentError("the query string is not valid UTF-8 (percent-encode it)") from None


def param(request, name, required=True):
    """The one value of parameter `name` (None if absent and not `required`)."""
    values = args(request).getlist(name)
    if len(values) > 1:
        raise errors.InvalidArgumentError("parameter %r must be given once, got %d values" % (name, len(values)))
    if not values:
        if required:
            raise errors.InvalidArgumentError("missing parameter %r" % name)
        return None
    return values[0]


def layer_params(request):
    """(run, role, layer): the parameters naming one layer's tag."""
    return param(request, "run"), role_param(request), param(request, "layer")


def step_param(request):
    """The optional `step` parameter: an int in [0, 2**63), or None."""
    value = param(request, "step", required=False)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > _MAX_STEP:
        raise errors.InvalidArgumentError(
            "parameter 'step' must be a non-negative integer below 2**63, got %r" % value[:40]
        )
    return int(value)


def role_param(request, default=None):
    """The `role` parameter, one of `metadata.ROLES` (required unless a `default` is given)."""
    role = param(request, "role", required=default is None)
    if role is None:
        return default
    if role not in metadata.ROLES:
        raise errors.InvalidArgumentError(
            "parameter 'role' must be one of %s, got %r" % (", ".join(metadata.ROLES), role[:60])
        )
    return role


# ------------------------------------------------------------------------------------------------- responses


def respond_json(request, obj):
    """A 200 response with `obj` as compact JSON (no NaN)."""
    # ASCII escapes keep any str valid, even run names with lone surrogates from non-UTF-8 directory names.
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=True)
    return http_util.Respond(request, body.encode("ascii"), _JSON)


class MethodNotAllowedError(errors.PublicError):
    """405 for any method but GET and HEAD (TensorBoard's error middleware answers it, with an Allow header)."""

    http_code = 405

    def __init__(self, method):
        super().__init__("method %s is not allowed: the Matmul Explainer routes are GET only" % method[:20])
        self.headers = [("Allow", "GET, HEAD")]


def get_only(app):
    """Wraps a route's WSGI app so that only GET and HEAD reach it (every route is read-only)."""

    def get_only_app(environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowedError(method)
        return app(environ, start_response)

    return get_only_app


def serve_static(request):
    """The file under `STATIC_DIR` that the request path names below `ROUTE_PREFIX`; 404 for anything else."""
    path = request.path
    if not path.startswith(ROUTE_PREFIX):
        raise errors.NotFoundError("no such file")
    relative = path[len(ROUTE_PREFIX) :]
    if not relative or "\x00" in relative or "\\" in relative:
        raise errors.NotFoundError("no such file")
    root = os.path.realpath(STATIC_DIR)
    target = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([root, target]) != root or not os.path.isfile(target):
        raise errors.NotFoundError("no such file")
    extension = os.path.splitext(target)[1].lower()
    content_type = _CONTENT_TYPES.get(extension) or mimetypes.guess_type(target)[0] or "application/octet-stream"
    with open(target, "rb") as f:
        body = f.read()
    return http_util.Respond(request, body, content_type)
