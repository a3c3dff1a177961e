import { UserError } from '../errors.js'

/** A command-line mistake: unknown option, bad value, missing argument. */
export class UsageError extends UserError {
  override name = 'UsageError'
}
