"""In-process fake GCS on 127.0.0.1 for tests (offline).

Backed by `gcp-storage-emulator` (PyPI) with a few patches so that BOTH
    * tensorstore's `gcs` kvstore driver (orbax array data), via TENSORSTORE_GCS_HTTP_URL
    * gcsfs (etils.epath 'gs://' fsspec backend) and google-cloud-storage
      (orbax's bucket lookup), via STORAGE_EMULATOR_HOST
talk to the same in-memory bucket.

Patches to the emulator:
    * object listing honours `startOffset` / `endOffset` (tensorstore lists by range)
    * `POST .../o/{src}/moveTo/o/{dst}` (gcsfs rename tries it first; without it
      gcsfs retries with back-off for several seconds, then falls back to copy+delete)
    * `ifGenerationMatch` precondition on uploads (412 on mismatch), so
      create-only writes (ifGenerationMatch=0) behave like real GCS.
    * media downloads carry `x-goog-generation` / `x-goog-metageneration` headers,
      as real GCS sends them. tensorstore takes the generation of an `alt=media`
      read from that header; without it the generation is 0, which tensorstore
      caches and later sends back as a condition (`ifGenerationNotMatch` /
      `ifGenerationMatch`), and it rejects generation 0 as
      "Malformed StorageGeneration" (OCDBT manifest reads/writes then fail, at
      random depending on whether the manifest was re-read from the server).
    * `ifGenerationMatch` / `ifGenerationNotMatch` on object GET (412 / 304) and
      `ifGenerationMatch` on DELETE (412), like real GCS.
    * in-memory mode: deletes are hard deletes (no soft-delete copies kept) and the
      emulator's `.meta` JSON dump after every request is skipped (it is only
      used to persist to disk), so many saves/deletes stay cheap.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from http import HTTPStatus

_ENV_KEYS = (
    "STORAGE_EMULATOR_HOST",
    "TENSORSTORE_GCS_HTTP_URL",
    "GOOGLE_AUTH_TOKEN_FOR_TESTING",
    "FSSPEC_GCS_TOKEN",
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT",
    "GCE_METADATA_ROOT",
    "GCE_METADATA_HOST",
    "GCE_METADATA_IP",
    "NO_GCE_CHECK",
    "GOOGLE_CLOUD_PROJECT",
)

_PATCHED = False


def _patch_emulator() -> None:
    global _PATCHED
    if _PATCHED:
        return
    from gcp_storage_emulator import server as srv
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    orig_ls = objects.ls

    def ls(request, response, storage, *args, **kwargs):
        start = (request.query.get("startOffset") or [None])[0]
        end = (request.query.get("endOffset") or [None])[0]
        if start is None and end is None:
            return orig_ls(request, response, storage, *args, **kwargs)
        orig_json = response.json

        def json(obj):
            items = [
                it
                for it in obj.get("items") or []
                if (start is None or it["name"] >= start) and (end is None or it["name"] < end)
            ]
            obj = dict(obj, items=items)
            return orig_json(obj)

        response.json = json
        return orig_ls(request, response, storage, *args, **kwargs)

    def _precondition_ok(request, storage) -> bool:
        want = (request.query.get("ifGenerationMatch") or [None])[0]
        if want is None:
            return True
        bucket = request.params["bucket_name"]
        name = (request.query.get("name") or [None])[0]
        if name is None:  # multipart/resumable: name is in the JSON metadata
            data = request.data  # parsed once and cached by the emulator
            meta = data.get("meta") if isinstance(data, dict) else None
            if meta is None and isinstance(data, dict):
                meta = data
            name = (meta or {}).get("name")
        if name is None:
            return True
        try:
            cur = storage.get_file_obj(bucket, name)["generation"]
        except NotFound:
            cur = "0"
        return str(cur) == str(want)

    def _gen_params(request):
        q = request.query
        return (
            (q.get("ifGenerationMatch") or [None])[0],
            (q.get("ifGenerationNotMatch") or [None])[0],
        )

    def _live_obj(request, storage):
        p = request.params or {}
        try:
            return storage.get_file_obj(p["bucket_name"], p["object_id"])
        except (KeyError, NotFound):
            return None

    def _read_precondition(request, storage):
        """None if a GET may go on, else the status to answer with (real GCS rules)."""
        match, not_match = _gen_params(request)
        if match is None and not_match is None:
            return None
        obj = _live_obj(request, storage)
        if obj is None:
            # Missing object: 404 from the handler, unless a specific generation
            # was required (real GCS then answers 412; tensorstore handles both).
            if match is not None and str(match) != "0":
                return HTTPStatus.PRECONDITION_FAILED
            return None
        gen = str(obj["generation"])
        if match is not None and gen != str(match):
            return HTTPStatus.PRECONDITION_FAILED
        if not_match is not None and gen == str(not_match):
            return HTTPStatus.NOT_MODIFIED
        return None

    def _add_generation_headers(request, response, storage):
        if response.status not in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
            return
        obj = _live_obj(request, storage)
        if obj is None:
            return
        response["x-goog-generation"] = str(obj["generation"])
        response["x-goog-metageneration"] = str(obj.get("metageneration") or "1")
        if obj.get("size") is not None:
            response["x-goog-stored-content-length"] = str(obj["size"])

    orig_get = objects.get
    orig_download = objects.download
    orig_delete = objects.delete

    def get(request, response, storage, *args, **kwargs):
        status = _read_precondition(request, storage)
        if status is not None:
            response.status = status
            return
        return orig_get(request, response, storage, *args, **kwargs)

    def download(request, response, storage, *args, **kwargs):
        status = _read_precondition(request, storage)
        if status is not None:
            response.status = status
            return
        result = orig_download(request, response, storage, *args, **kwargs)
        _add_generation_headers(request, response, storage)
        return result

    def delete(request, response, storage, *args, **kwargs):
        match, _ = _gen_params(request)
        if match is not None:
            obj = _live_obj(request, storage)
            if obj is not None and str(obj["generation"]) != str(match):
                response.status = HTTPStatus.PRECONDITION_FAILED
                return
        return orig_delete(request, response, storage, *args, **kwargs)

    # `objects.get` calls `download` through the module global for alt=media.
    objects.download = download

    orig_insert = objects.insert

    def insert(request, response, storage, *args, **kwargs):
        if not _precondition_ok(request, storage):
            response.status = HTTPStatus.PRECONDITION_FAILED
            return
        return orig_insert(request, response, storage, *args, **kwargs)

    def move(request, response, storage, *args, **kwargs):
        p = request.params
        try:
            obj = objects._copy(
                request.base_url,
                storage,
                p["bucket_name"],
                p["object_id"],
                p["bucket_name"],
                p["dest_object_id"],
            )
            storage.delete_file(p["bucket_name"], p["object_id"])
            response.json(obj)
        except NotFound:
            response.status = HTTPStatus.NOT_FOUND

    for _, handlers in srv.HANDLERS:
        for method, fn in list(handlers.items()):
            if fn is orig_ls:
                handlers[method] = ls
            elif fn is orig_insert:
                handlers[method] = insert
            elif fn is orig_get:
                handlers[method] = get
            elif fn is orig_download:
                handlers[method] = download
            elif fn is orig_delete:
                handlers[method] = delete
    api = srv.settings.API_ENDPOINT
    move_route = (
        rf"^{api}/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)"
        rf"/moveTo/o/(?P<dest_object_id>.*[^/]+)$",
        {srv.POST: move},
    )
    srv.HANDLERS = (move_route,) + tuple(srv.HANDLERS)

    # Clients (tensorstore) sometimes drop a connection before the response is
    # written; don't print a traceback for that.
    class _QuietHTTPServer(srv.server.HTTPServer):
        # The server answers one request at a time while tensorstore opens many
        # connections at once; a listen backlog of 5 (the default) can overflow,
        # and the kernel then drops connection attempts (client retries after 1 s).
        request_queue_size = 128

        def handle_error(self, request, client_address):
            import sys

            if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                return
            super().handle_error(request, client_address)

    def run(self):
        self._httpd = _QuietHTTPServer(
            (self._host, self._port), srv.partial(srv.RequestHandler, self._storage)
        )
        self.is_running.set()
        # shutdown() waits up to one poll interval (default 0.5 s) per server.
        self._httpd.serve_forever(poll_interval=0.1)

    srv.APIThread.run = run

    # In-memory storage: the `.meta` JSON dump after every request only serves
    # persistence to disk; skip it (it grows with every object ever written).
    from gcp_storage_emulator.storage import Storage

    orig_write_config = Storage._write_config_to_file

    def _write_config_to_file(self):
        if self._use_memory_fs:
            return
        orig_write_config(self)

    Storage._write_config_to_file = _write_config_to_file
    _PATCHED = True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reset_client_caches() -> None:
    """Drop filesystem / client objects cached against a previous server."""
    import fsspec
    from etils.epath import backend

    backend.fsspec_backend._get_filesystem.cache_clear()
    try:
        import gcsfs

        gcsfs.GCSFileSystem.clear_instance_cache()
    except ImportError:
        pass
    fsspec.config.conf.pop("gcs", None)
    fsspec.config.conf.pop("gs", None)
    with contextlib.suppress(ImportError):
        from orbax.checkpoint._src.path import gcs_utils, utils

        gcs_utils.get_bucket.cache_clear()
        utils.get_storage_type.cache_clear()


@contextlib.contextmanager
def fake_gcs(bucket: str = "bucket") -> Iterator[str]:
    """Starts the fake server, sets env vars, yields 'gs://<bucket>'."""
    _patch_emulator()
    import logging

    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _ENV_KEYS}
    os.environ.update(
        {
            "STORAGE_EMULATOR_HOST": url,  # gcsfs + google-cloud-storage
            "TENSORSTORE_GCS_HTTP_URL": url,  # tensorstore 'gcs' kvstore
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake",  # tensorstore: skip real auth
            "FSSPEC_GCS_TOKEN": "anon",  # gcsfs: anonymous (no ADC lookup)
            # gcsfs>=2025.x: the "extended" FS probes bucket type over gRPC
            # (storage-control), which hangs ~60s per call against an HTTP emulator.
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            # Never try the real metadata server (not loopback).
            "GCE_METADATA_ROOT": "127.0.0.1:1",
            "GCE_METADATA_HOST": "127.0.0.1:1",
            "GCE_METADATA_IP": "127.0.0.1:1",
            "NO_GCE_CHECK": "true",
            "GOOGLE_CLOUD_PROJECT": "test",
        }
    )
    _reset_client_caches()
    # In case gcsfs was imported before the env var above was set:
    import fsspec
    import gcsfs.core

    for proto in ("gs", "gcs"):
        fsspec.register_implementation(proto, gcsfs.core.GCSFileSystem, clobber=True)
        # fsspec reads FSSPEC_GCS_TOKEN only at import time; set it explicitly.
        fsspec.config.conf[proto] = {"token": "anon"}
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    # Hard deletes: don't keep a soft-deleted copy of every object ever deleted.
    server._storage.buckets[bucket]["softDeletePolicy"] = {"retentionDurationSeconds": "0"}
    server.start()
    try:
        yield f"gs://{bucket}"
    finally:
        server.stop()
        _reset_client_caches()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


try:
    import pytest

    @pytest.fixture
    def gcs_uri():
        """Yields 'gs://bucket/run' backed by a fresh fake GCS server."""
        with fake_gcs("bucket") as root:
            yield root + "/run"
except ImportError:  # pragma: no cover
    pass
