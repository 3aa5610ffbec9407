/**
 * Whose a chat is (spec 85): an API key's owner, a JWT's subject, or, with `AUTH=none`, the one
 * anonymous owner, who also owns every chat made before owners existed. Its chats, runs,
 * generations and events are invisible to every other owner.
 */
export type Owner = string

export const anonymousOwner: Owner = "anonymous"
