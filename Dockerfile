# syntax=docker/dockerfile:1
#
# digitae's images, CPU-only. The default target serves the committed models:
#     docker build -t digitae . && docker run --rm -p 8000:8000 digitae
# The `train` target retrains them (docker-compose.yml runs it into the shared models volume):
#     docker build --target train -t digitae-train .
#
# Dependencies are installed by scripts/install.sh, the same script `make run` and `make test` use, at the versions
# of the lock (constraints.txt), in builder stages; the final stages copy only the virtual environment.

ARG PYTHON_IMAGE=python:3.11-slim

# -- shared settings ------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    VENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# -- dependencies, cached apart from the code so an edit does not refetch torch -------------------------------------
FROM base AS deps
WORKDIR /src
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY pyproject.toml constraints.txt ./
COPY scripts/install.sh scripts/
RUN --mount=type=cache,target=/root/.cache/pip \
    TORCH_INDEX_URL="$TORCH_INDEX_URL" scripts/install.sh --deps-only

FROM deps AS train-deps
RUN --mount=type=cache,target=/root/.cache/pip \
    scripts/install.sh --deps-only --extras train

# -- digitae itself, installed into the environment above -----------------------------------------------------------
FROM deps AS builder
COPY README.md ./
COPY models models
COPY service service
COPY training training
COPY scripts/trim-venv.sh scripts/
RUN --mount=type=cache,target=/root/.cache/pip \
    scripts/install.sh \
    && scripts/trim-venv.sh

FROM train-deps AS train-builder
COPY README.md ./
COPY models models
COPY service service
COPY training training
COPY scripts/trim-venv.sh scripts/
RUN --mount=type=cache,target=/root/.cache/pip \
    scripts/install.sh --extras train \
    && scripts/trim-venv.sh

# -- what both final images share: a non-root user and the committed checkpoints -----------------------------------
FROM base AS app
RUN groupadd --system --gid 10001 digitae \
    && useradd --system --uid 10001 --gid digitae --create-home --shell /usr/sbin/nologin digitae \
    && mkdir -p /var/lib/digitae \
    && chown digitae:digitae /var/lib/digitae
WORKDIR /home/digitae
# A named volume mounted here starts as a copy of this folder (ownership included), so training can write to it.
COPY --chown=digitae:digitae models/checkpoints /var/lib/digitae/models
ENV DIGITAE_MODELS_DIR=/var/lib/digitae/models

# -- training: `python -m training` with the train extra, writing into the models folder ----------------------------
FROM app AS train
COPY --from=train-builder /opt/venv /opt/venv
USER 10001:10001
CMD ["python", "-m", "training", "sweep", "--out", "/var/lib/digitae/models"]

# -- the service (default target) -----------------------------------------------------------------------------------
FROM app AS api
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
ENV DIGITAE_HOST=0.0.0.0 \
    DIGITAE_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DIGITAE_PORT', '8000') + '/healthz', timeout=4)"]
CMD ["python", "-m", "service"]
