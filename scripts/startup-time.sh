#!/usr/bin/env bash
# Milliseconds from launching the server to its first 200 on /health, then a SIGTERM.
# Usage: DATA_DIR=memory scripts/startup-time.sh   |   DATABASE_URL=postgres://… scripts/startup-time.sh
cd "$(dirname "$0")/.."
PORT=${PORT:-3000}
start=$(date +%s%3N)
PORT=$PORT node --import tsx src/main.ts > /dev/null 2>&1 &
pid=$!
until curl -sf "127.0.0.1:$PORT/health" > /dev/null; do sleep 0.05; done
echo "ready in $(( $(date +%s%3N) - start )) ms"
kill -TERM $pid; wait $pid
