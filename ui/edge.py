"""The API's edge: what a request may hand in and what a refusal sends back.
An image must be uploaded with the request; a refusal is one public line for
the client (no server path, input cut short) and one line in the log."""

import functools
import inspect
import logging
import os

import gradio as gr
from gradio.exceptions import InvalidPathError
from gradio.utils import get_upload_folder, is_in_or_equal

from retrieval.data.images import MAX_BYTES
from retrieval.errors import LookalikeError
from retrieval.search.limits import shown
from retrieval.search.public import public

log = logging.getLogger("lookalike.app")
NOT_UPLOADED = "the image must be uploaded with the request (gradio_client's handle_file); server paths are refused"


def uploaded(file) -> bytes:
    """The bytes of a file the client uploaded with this request. Anything
    else (a server path, a file outside gradio's upload folder) is refused
    with one message whether or not it exists, so callers can't probe the
    server's file system."""
    path = file.get("path") if isinstance(file, dict) else file
    if not isinstance(path, str) or not is_in_or_equal(path, get_upload_folder()) or not os.path.isfile(path):
        raise LookalikeError(NOT_UPLOADED)
    if os.path.getsize(path) > MAX_BYTES:
        raise LookalikeError(f"the image is larger than {MAX_BYTES // 1_000_000} MB")
    with open(path, "rb") as f:
        return f.read()


def refused(error: Exception) -> gr.Error:
    """The client gets the message; the log gets one line, not a traceback."""
    message = public(str(error)) or type(error).__name__
    log.info("refused: %s", message)
    return gr.Error(message, print_exception=False)


def refusing(fn):
    """`fn`, its LookalikeErrors sent back as refusals (refused)."""
    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LookalikeError as e:
            raise refused(e) from e
    return guarded



class GuardedBlocks(gr.Blocks):
    """Blocks whose API refuses, in one public line, what gradio would answer
    with a traceback in the log and `{"error": null}` for the client: a file
    the caller did not upload (gradio's own path check), too few inputs on
    the raw REST route (an optional argument left out is given its default,
    as gradio_client does)."""

    def validate_inputs(self, block_fn, inputs: list):
        missing = len(block_fn.inputs) - len(inputs)
        if missing > 0:
            defaults = [p.default for p in inspect.signature(block_fn.fn).parameters.values()][len(inputs):] \
                if block_fn.fn is not None else []
            if len(defaults) < missing or any(d is inspect.Parameter.empty for d in defaults[:missing]):
                raise refused(LookalikeError(f"{block_fn.name or 'this endpoint'} takes {len(block_fn.inputs)} "
                                             f"values, got {len(inputs)}"))
            inputs.extend(defaults[:missing])  # in place: gradio preprocesses this list next
        super().validate_inputs(block_fn, inputs)

    async def preprocess_data(self, *args, **kwargs):
        try:
            return await super().preprocess_data(*args, **kwargs)
        except InvalidPathError as e:
            raise refused(LookalikeError(NOT_UPLOADED)) from e


async def unknown_endpoint(request, error):
    """An API name the app does not have: 404 and one log line (gradio answers 500 with an ASGI traceback)."""
    from fastapi.responses import JSONResponse

    log.info("refused: no endpoint named %s", shown(request.path_params.get("api_name", "")))
    return JSONResponse({"error": "no such endpoint; see the API page (/?view=api) for the ones there are"},
                        status_code=404)
