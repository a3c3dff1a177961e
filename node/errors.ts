/**
 * A failure the user can fix: bad input, a bad file, a peer that refused us. The command line
 * prints these as one line naming the problem and exits non-zero; anything else is a bug and
 * gets a stack trace. Modules subclass it with their own names (e.g. `DataFileError`).
 */
export class UserError extends Error {
  override name = 'UserError'
}
