"""digitae's REST service: the auto-encoders in models/checkpoints/ over HTTP (FastAPI, uvicorn).

    settings.py       every setting, from DIGITAE_* environment variables
    app.py            create_app(): middleware, routes, lifespan (loads the models at startup)
    registry.py       the checkpoints, loaded and verified once
    inference.py      what the models compute, in batches; the engine that routes calls to ...
    batching.py       ... micro-batchers: concurrent requests share one forward pass
    api.py            the routes (thin), with deps.py (what they are given) and docs.py (OpenAPI examples)
    schemas.py        request and response bodies
    inputs.py         reading bodies and images; imaging.py decodes and preprocesses images
    arrays.py         .npy bodies read safely, bulk answers computed in chunks and streamed (.npy or JSON)
    render.py         answers: JSON, PNG or .npy, trimmed to the `fields` asked for
    errors.py         one JSON error shape; observability.py request ids, the access log, metrics
    body_limit.py     the cap on request bodies (413); in_flight.py counts requests that may share a batch
    logs.py           the log format (every record one escaped line), written from a background thread
    security.py       optional API keys
    server.py         uvicorn with connection bounds (header size, read timeouts, connection cap) and signals

`python -m service` runs it. The service imports `models` (the networks, the checkpoint format, the image side,
the kinds and the device rule), never `training`.
"""
