import type { AiError } from "@effect/ai"

/** How a failed generation is reported (spec 90, "Providers"): a failure code and a safe message. */
export interface LlmFailure {
  readonly code: "llm_error" | "rate_limited" | "upstream_unavailable"
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
 * Classifies any `AiError` (spec 90, the providers' table). Only a request that never got an
 * answer (refused, reset before the first token, DNS) is `upstream_unavailable`; a provider that
 * kept answering 429 is `rate_limited`; whatever else the provider answered is `llm_error`.
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
        const status = error.response.status
        // What a provider says about a refused key can quote part of it: only the status is kept.
        if (status === 401 || status === 403) return { code: "llm_error", message: `the provider refused the credentials (${status})` }
        const detail = error.description ?? providerMessageOf(error.body) ?? "no details"
        return status === 429
          ? { code: "rate_limited", message: clip(`the provider kept answering 429 (rate limited): ${detail}`) }
          : { code: "llm_error", message: clip(`provider answered ${status}: ${detail}`) }
      }
      return { code: "llm_error", message: clip(error.description ?? `the provider's answer could not be read (${error.reason})`) }
    }
    case "MalformedOutput":
      return { code: "llm_error", message: clip(`provider sent malformed output: ${error.description ?? "undecodable data"}`) }
    case "MalformedInput":
      return { code: "llm_error", message: clip(`the prompt cannot be sent to the provider: ${error.description ?? "invalid input"}`) }
    case "UnknownError":
      return { code: "llm_error", message: clip(error.description ?? "the provider failed") }
  }
}
