# One image for every temporal-mlops process; docker-compose.yml picks the process with `command`:
#   API (default)    node --import tsx server/main.ts
#   main worker      node --import tsx workers/main-worker.ts
#   training worker  node --import tsx workers/training-worker.ts
#   migrations       node --import tsx schema/migrate-cli.ts
# Configuration comes from environment variables only (core/config.ts).
# Written for the classic builder as well as BuildKit (docker-compose 1.29 may use either).

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- dependencies -------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS deps

# package.json's "allowScripts" policy (it denies onnxruntime-node's install script, which downloads CUDA libraries
# from NuGet, and approves the scripts the project needs) is read by npm 11.19 and later. The npm bundled with Node 20
# ignores the field and would run every install script, so install the npm the project is tested with.
ARG NPM_VERSION=11.19.1
RUN npm install --global --no-audit --no-fund "npm@${NPM_VERSION}" && npm --version

WORKDIR /app
# The manifests alone first: this layer, the slow one, is rebuilt only when dependencies change.
COPY package.json package-lock.json .npmrc ./
# Runtime dependencies only: tsx (which runs the TypeScript sources) is one of them. Every native module used here
# (Temporal's core bridge, DuckDB, onnxruntime-node, esbuild) ships prebuilt binaries: no compiler needed.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# ---- runtime ------------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime

ENV NODE_ENV=production \
    API_HOST=0.0.0.0 \
    API_PORT=3000

WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
# Sources stay owned by root (read-only to the app); .dockerignore keeps node_modules, .data, .git and the like out.
COPY . .
# MLOPS_DATA_DIR (default .data, relative to /app) holds the artifact store's scratch cache: the one writable place.
RUN mkdir -p /app/.data && chown node:node /app/.data

# The node user (uid 1000) comes with the base image.
USER node

EXPOSE 3000

# The API's liveness probe. Node's own fetch: the slim image has no curl. Services without an HTTP server (workers,
# migrations) disable it in docker-compose.yml.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.API_PORT || 3000) + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# node --import tsx (rather than npx tsx): one process, which receives the stop signal itself.
CMD ["node", "--import", "tsx", "server/main.ts"]
