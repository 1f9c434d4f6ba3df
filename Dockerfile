# syntax=docker/dockerfile:1
#
# astrago/trainer-agent: the init-container image. It holds only the single-file agent (dist/trainer-agent, built
# by `npm run build:agent`) and, when run, copies it and the Python helper into a shared volume:
#   /opt/agent/trainer-agent     the agent (Linux x86-64, needs glibc >= 2.28 and libstdc++, no Node.js)
#   /opt/agent/trainer_agent.py  `import trainer_agent` with PYTHONPATH=/opt/agent
# The framework images in images/ copy the agent from this image too.
#
#   docker build -t astrago/trainer-agent:0.1.0 .
#
# The build context is the repository root; .dockerignore sends only what the build needs.
# test/packaging/dockerfile.test.ts checks this file (sources, stages, ARGs, npm scripts) without Docker.

ARG NODE_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${NODE_IMAGE} AS build
# binutils for `strip`: node's debug symbols are 18 MB of the agent that nothing reads at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# trainer-agent local runs the backend stub in-process: its sources are part of the bundle, its dashboard files
# are embedded as assets
COPY backend-stub/src ./backend-stub/src
COPY backend-stub/public ./backend-stub/public
COPY scripts ./scripts
COPY python/trainer_agent.py ./python/trainer_agent.py
# The same script CI runs (test/packaging): bundle, SEA blob, inject, smoke run with an empty environment.
RUN npm run build:agent

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="astrago trainer-agent" \
      org.opencontainers.image.description="Single-file Astrago Trainer agent; copies itself into /opt/agent" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/dist/trainer-agent /usr/local/bin/trainer-agent
# distroless :nonroot runs as 65532; an emptyDir volume is writable by every user.
ENTRYPOINT ["/usr/local/bin/trainer-agent", "install", "/opt/agent"]
