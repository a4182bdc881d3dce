"""Starting the service: check the settings, open the database, refuse an exposed
address without tokens, connect the executor, and run uvicorn until SIGTERM/SIGINT
(then: no new connections, requests in flight finish, running jobs get `--drain`
seconds, the rest are requeued)."""

from __future__ import annotations

import logging
import os
import sys

from onnxport.errors import BadInput, MissingDependency

from .settings import Settings, is_loopback

log = logging.getLogger("onnxport.serve")


def build_service(settings: Settings, host):
    from .app import Service
    from .catalog import Catalog
    from .db import Database
    from .dispatch import Dispatcher
    from .jobs import JobStore
    from . import tokens

    settings.check()
    db = Database(settings.db_path)
    if not is_loopback(settings.host) and not tokens.usable(db):
        raise BadInput(f"refusing to listen on {settings.host}, which other machines can "
                       "reach, without tokens",
                       f"create one first: onnxport token create --state {settings.state} "
                       "--scope read --scope submit (or bind 127.0.0.1)")
    catalog = Catalog(settings, host)
    slots = settings.jobs or default_slots(settings)
    store = JobStore(db)
    dispatcher = Dispatcher(settings, store, host, slots)  # a disabled executor says why
    return Service(settings=settings, db=db, store=store, catalog=catalog,
                   dispatcher=dispatcher, host=host)


def default_slots(settings: Settings) -> int:
    if settings.executor == "local":
        from onnxport_local.pool import default_jobs

        return default_jobs()
    if settings.executor == "ray":
        import ray

        return max(1, int(ray.cluster_resources().get("CPU", 1)))
    return 2


def connect_ray(settings: Settings) -> None:
    """One Ray connection for the server's life: the ray executor then uses it for
    every job instead of connecting (and disconnecting) per call."""
    try:
        import ray
    except ImportError:
        raise MissingDependency("ray", "ray", "--executor ray") from None
    address = settings.ray_address or os.environ.get("RAY_ADDRESS")
    if address and address != "auto":
        import socket

        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except (OSError, ValueError) as exc:
            raise BadInput(f"the Ray cluster at {address} does not answer ({exc})",
                           "start it (ray start --head), or check --ray-address and "
                           "RAY_ADDRESS") from None
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    settings.ray_address = address


def serve(settings: Settings, host) -> int:
    import uvicorn

    from .app import create_app
    from .events import ENV

    os.environ[ENV] = "1"  # this server's workers record their stages (events.py)
    if settings.executor == "ray":
        settings.check()
        connect_ray(settings)
    service = build_service(settings, host)
    app = create_app(service)
    print(f"onnxport serve: {settings.address} (executor {settings.executor}, "
          f"{service.dispatcher.slots} at once, queue {settings.queue_size}, store "
          f"{settings.store}, state {settings.state}, tokens "
          f"{'required' if _tokens(service) else 'not required (loopback only)'}); "
          "API docs at /docs", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, host=settings.host, port=settings.port,
                            log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=10, server_header=False,
                            proxy_headers=False)
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        if settings.executor == "ray":
            import ray

            ray.shutdown()
    return 0 if server.started else 7


def _tokens(service) -> bool:
    from . import tokens

    return tokens.required(service.db)
