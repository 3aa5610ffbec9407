#!/usr/bin/env bash
# `npm start` as a user runs it: milliseconds to the first 200 on /health, then the resident memory
# of every process it runs (npm, the service) after IDLE_S seconds idle, then a SIGTERM and the
# exit code. Build first (`npm install` does; or `npm run build`).
# Usage: DATA_DIR=memory scripts/startup-time.sh   |   DATABASE_URL=postgres://… scripts/startup-time.sh
# START="node dist/main.js" measures another command the same way.
cd "$(dirname "$0")/.."
PORT=${PORT:-3000}
IDLE_S=${IDLE_S:-5}
START=${START:-npm start}
start=$(date +%s%3N)
PORT=$PORT LOG_LEVEL=${LOG_LEVEL:-Warn} $START > /dev/null 2>&1 &
pid=$!
until curl -sf "127.0.0.1:$PORT/health" > /dev/null; do
  kill -0 $pid 2> /dev/null || { echo "the server exited at start-up"; exit 1; }
  sleep 0.02
done
echo "ready in $(( $(date +%s%3N) - start )) ms"
sleep "$IDLE_S"
tree() { echo "$1"; for child in $(ps -o pid= --ppid "$1"); do tree "$child"; done; }
total=0
for p in $(tree $pid); do
  rss=$(ps -o rss= -p "$p") || continue
  total=$(( total + rss ))
  printf '%8.1f MiB  %s\n' "$(echo "$rss / 1024" | bc -l)" "$(ps -o args= -p "$p" | cut -c1-80)"
done
printf '%8.1f MiB  in all, idle %s s after ready\n' "$(echo "$total / 1024" | bc -l)" "$IDLE_S"
kill -TERM $pid; wait $pid
echo "exit $?"
