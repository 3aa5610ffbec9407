/** The service's JSON API, same origin. A refusal throws an `ApiError` with the answer's code. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `the server answered ${status}`)
    this.status = status
    this.code = body?.code ?? "http_error"
    this.details = body?.details
  }
}

const credentialKey = "turn-runner.credential"

/** The API key or token this tab sends (spec 85), once the server asked for one; kept for the tab's life only. */
export const credential = () => sessionStorage.getItem(credentialKey)

export const setCredential = (value) =>
  value ? sessionStorage.setItem(credentialKey, value) : sessionStorage.removeItem(credentialKey)

/** `Authorization: Bearer …` when this tab has a credential. */
export const authHeaders = () => (credential() ? { authorization: `Bearer ${credential()}` } : {})

export async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { ...authHeaders(), ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  return readJson(response)
}

export async function readJson(response) {
  const text = await response.text()
  let body = null
  try {
    body = text === "" ? null : JSON.parse(text)
  } catch {
    body = { message: text.slice(0, 200) }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, body)
    // Whatever page asked, the server wants credentials: the app asks for them (`app.js`).
    if (error.code === "unauthorized") dispatchEvent(new CustomEvent("unauthorized"))
    throw error
  }
  return body
}

/** A v4 UUID; `crypto.randomUUID` needs a secure context, `getRandomValues` does not. */
export function uuid() {
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  bytes[6] = (bytes[6] & 0x0f) | 0x40
  bytes[8] = (bytes[8] & 0x3f) | 0x80
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}
