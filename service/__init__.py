"""digitae's REST service: the auto-encoders in models/checkpoints/ over HTTP (FastAPI, uvicorn).

The folders are the layers, each importing only those below it (import-linter checks it in `make lint`):

    app.py            create_app(): middleware, routes, lifespan (loads the models at startup)
    settings.py       every setting, from DIGITAE_* environment variables
    __main__.py       `python -m service`: uvicorn with the bounds of runtime/server.py
    wire.py           the bytes every layer writes: JSON, and the error envelope (the HTTP server's answers too)
    api/              the HTTP API: routes by group, what they are given, keys, errors, OpenAPI, the explorer, and
                      the fast dispatch that answers the routes needing nothing of FastAPI's per-request machinery
    middleware/       around every request: its id, access line and metrics; the in-flight count; the body cap
    codec/            wire formats: request and answer schemas, images in and out, .npy, answers, errors
    engine/           what the models compute, micro-batched, as traced graphs; knows nothing of HTTP
    catalog/          the checkpoints being served, loaded and verified, and reloaded when they change
    runtime/          the process: the bounded HTTP server and its signals, draining, logs, metrics

The service imports `models` (the networks, the checkpoint format, the image side, the kinds and the device
rule), never `training`.
"""
