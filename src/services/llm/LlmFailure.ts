import type { AiError } from "@effect/ai"

/** How a failed generation is reported (spec 90, "Providers"): a failure code and a safe message. */
export interface LlmFailure {
  readonly code: "llm_error" | "upstream_unavailable"
  readonly message: string
}

/** Messages end up in the database and in SSE events: keep them short. */
const maxMessageLength = 500

const clip = (text: string): string =>
  text.length <= maxMessageLength ? text : `${text.slice(0, maxMessageLength)}…`

/** The `{error: {message}}` of an OpenAI-style error body, when the body has that shape. */
export const providerMessageOf = (body: string | undefined): string | undefined => {
  if (body === undefined) return undefined
  try {
    const parsed: unknown = JSON.parse(body)
    if (typeof parsed === "object" && parsed !== null && "error" in parsed) {
      const error = parsed.error
      if (typeof error === "string") return error
      if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string") {
        return error.message
      }
    }
  } catch {
    // Not JSON: the caller falls back to the raw text or the status alone.
  }
  return undefined
}

/**
 * Classifies any `AiError`. Only a request that never got an answer (refused, reset before the
 * response, DNS) is `upstream_unavailable`; whatever the provider did answer is `llm_error`.
 * Messages are built from the error's fields, never from `error.message`, which can hold URLs,
 * headers and suggestions meant for developers.
 */
export const failureOf = (error: AiError.AiError): LlmFailure => {
  switch (error._tag) {
    case "HttpRequestError":
      return error.reason === "Transport"
        ? { code: "upstream_unavailable", message: clip(`cannot reach the provider: ${error.description ?? "transport error"}`) }
        : { code: "llm_error", message: clip(`could not send the request to the provider (${error.reason})`) }
    case "HttpResponseError": {
      if (error.reason === "StatusCode") {
        const detail = error.description ?? providerMessageOf(error.body) ?? "no details"
        return { code: "llm_error", message: clip(`provider answered ${error.response.status}: ${detail}`) }
      }
      return { code: "llm_error", message: clip(`provider response could not be read: ${error.description ?? error.reason}`) }
    }
    case "MalformedOutput":
      return { code: "llm_error", message: clip(`provider sent malformed output: ${error.description ?? "undecodable data"}`) }
    case "MalformedInput":
      return { code: "llm_error", message: clip(`the prompt cannot be sent to the provider: ${error.description ?? "invalid input"}`) }
    case "UnknownError":
      return { code: "llm_error", message: clip(error.description ?? "the provider failed") }
  }
}
