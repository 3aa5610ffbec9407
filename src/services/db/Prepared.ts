/**
 * Begins a statement the database should parse and plan once per connection rather than at every
 * execution (a turn's start statement, run before every upstream request, and the write-behind
 * batch): it is sent as a named prepared statement, by `PreparedPg.ts` on Postgres and by
 * `PgliteClient.ts` on PGlite. To the database itself it is a comment.
 */
export const prepared = "/* prepared */"
