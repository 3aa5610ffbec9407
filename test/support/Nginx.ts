import { Effect } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freePort } from "./ServerProcess.ts"

export const nginxBinary = "/usr/sbin/nginx"
/** Debian's nginx is installed (`.ci/run` installs it). */
export const nginxAvailable = existsSync(nginxBinary)

/**
 * The `http` block of the README's "Running several instances": round-robin over the instances,
 * SSE passed through unbuffered, and long-lived event streams left open.
 */
export const nginxSite = (ports: ReadonlyArray<number>, listen: number) => `
  upstream turn_runner {
${ports.map((port) => `    server 127.0.0.1:${port};`).join("\n")}
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${listen};
    location / {
      proxy_pass http://turn_runner;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_read_timeout 1h;
    }
  }`

/** A real nginx (its own prefix, in the foreground) in front of `ports`; stopped when the scope closes. */
export const startNginx = (ports: ReadonlyArray<number>): Effect.Effect<{ readonly baseUrl: string }, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const port = yield* freePort
    const prefix = mkdtempSync(join(tmpdir(), "turn-runner-nginx-"))
    mkdirSync(join(prefix, "logs"))
    const config = `worker_processes 1;
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
${nginxSite(ports, port)}
}
`
    writeFileSync(join(prefix, "nginx.conf"), config)
    let output = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(nginxBinary, ["-p", prefix, "-c", join(prefix, "nginx.conf")], { stdio: ["ignore", "pipe", "pipe"] })),
      (child) =>
        Effect.sync(() => {
          child.kill("SIGQUIT")
          rmSync(prefix, { recursive: true, force: true })
        })
    )
    child.stdout?.on("data", (chunk) => (output += chunk))
    child.stderr?.on("data", (chunk) => (output += chunk))
    const baseUrl = `http://127.0.0.1:${port}`
    for (let i = 0; i < 200; i++) {
      if (child.exitCode !== null) return yield* Effect.fail(new Error(`nginx exited: ${output}`))
      const up = yield* Effect.promise(() => fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false))
      if (up) return { baseUrl }
      yield* Effect.sleep("25 millis")
    }
    return yield* Effect.fail(new Error(`nginx did not answer: ${output}`))
  })
