// Loggers that name their node. With several nodes in one process (benchmarks, tests), a
// component's log lines must say whose they are: `swarmtrain:registry` logs as
// `swarmtrain:<peer>:registry`, `libp2p:dht` as `libp2p:<peer>:dht`, where <peer> is the end of
// the peer id, so `DEBUG=swarmtrain:*` (or `libp2p:*`) still selects them all.
import { logger } from '@libp2p/logger'
import type { ComponentLogger, PeerId } from '@libp2p/interface'

/** Characters of the peer id's end that name a node in log names. */
const PEER_TAG_LENGTH = 6

export function nodeLogger (peerId: PeerId | string): ComponentLogger {
  const tag = peerId.toString().slice(-PEER_TAG_LENGTH)
  return {
    forComponent (name: string) {
      const colon = name.indexOf(':')
      return logger(colon < 0 ? `${name}:${tag}` : `${name.slice(0, colon)}:${tag}${name.slice(colon)}`)
    }
  }
}
