import { Effect } from "effect"
import { hostname } from "node:os"
import { makeId } from "./Uuid.ts"

/** This process among the instances sharing the database: the owner named on its runs' leases. */
export class Instance extends Effect.Service<Instance>()("turn-runner/Instance", {
  effect: Effect.map(makeId<string>(), (id) => ({ id: `${hostname()}/${process.pid}/${id.slice(-12)}` }))
}) {}
