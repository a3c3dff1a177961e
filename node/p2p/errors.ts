import { UserError } from '../errors.js'

/** A peer sent bytes that do not decode as the expected message. */
export class MalformedMessageError extends Error {
  override name = 'MalformedMessageError'
}

/** A peer announced a message larger than the protocol allows. */
export class MessageTooLargeError extends Error {
  override name = 'MessageTooLargeError'
}

/** The stream ended before a whole message arrived. */
export class TruncatedMessageError extends Error {
  override name = 'TruncatedMessageError'
}

/** A bootstrap or join peer could not be reached or belongs to another run. */
export class PeerRefusedError extends UserError {
  override name = 'PeerRefusedError'
}

/** The swarm key file is missing or not in the pnet format. */
export class SwarmKeyError extends UserError {
  override name = 'SwarmKeyError'
}

/** The identity key file exists but cannot be read as a libp2p private key. */
export class IdentityKeyError extends UserError {
  override name = 'IdentityKeyError'
}
