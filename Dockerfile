# syntax=docker/dockerfile:1
# canary-bot container image.
#
#   docker build -t canary-bot:0.1.0 .
#   docker run --rm -e SLACK_BOT_TOKEN -e SLACK_APP_TOKEN canary-bot:0.1.0
#
# Two stages: the first turns the project and its dependencies into wheels, the second
# installs those wheels and nothing else, so no compiler, source tree or pip cache ends
# up in the image. Both stages use the same Python, so the wheels fit the runtime.
# (tests/deploy/test_dockerfile.py checks these rules; tests/deploy/test_image.py builds
# the image without docker and runs it.)

# Docker builds from the official Python image. The base is an argument so an image can
# be built where no registry is reachable: hack/build-image.sh passes a local base made
# from Debian's python3 (the same Python 3.11 and Debian release).
ARG BASE_IMAGE=python:3.11.17-slim-bookworm

FROM ${BASE_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps everything else out of the
# context, so tests, fixtures and local credentials never reach a layer). sandbox/, the
# local fakes for development, stays out: the product never imports it (import-linter).
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY rollout ./rollout

# The project's wheel plus a wheel of every dependency, resolved here once.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .


FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="canary-bot" \
      org.opencontainers.image.description="Slack-driven canary releases on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"

# The root filesystem is read-only and the user has no home: matplotlib keeps its font
# cache in /tmp (an emptyDir in the Deployment) instead of warning and rebuilding it.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib

# The wheels are bind-mounted from the build stage rather than copied, so they take no
# layer; --no-index means nothing is fetched from the network at this point.
# The fixed uid/gid match runAsUser/runAsGroup in manifests/base/deployment.yaml.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/canary_bot-*.whl \
    && groupadd --system --gid 10001 canary-bot \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin canary-bot

USER 10001:10001

# 3000: HTTP mode's /slack/events (the port to put behind a Service or load balancer);
# 9090: /metrics, /healthz and /readyz (for probes and Prometheus only).
EXPOSE 3000 9090

ENTRYPOINT ["canary-bot"]
CMD ["run"]
