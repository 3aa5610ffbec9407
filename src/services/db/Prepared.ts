/**
 * Begins a statement the database should parse and plan once per connection rather than at every
 * execution (a turn's start statement, run before every upstream request): on Postgres it is sent
 * as a named prepared statement (`PreparedPg.ts`). To the database itself it is a comment, so
 * PGlite runs it as any other statement (its `query` has no named statements).
 */
export const prepared = "/* prepared */"
